"""Build script: metadata lives in setup.cfg; this file adds the optional compiled kernels of COIN.

``nsde_coin/graph/csrc/panel_kernel.c`` (the sparse base layer), ``csr_power.c`` (the explicit diffusion's k
steps) and ``readout_head.c`` (the protocol's read-out head) are plain C, compiled once per instruction set by
``kernels_{avx512,avx2,baseline}.c`` (see ``kernel_common.h``) into one library loaded with ctypes by
:mod:`nsde_coin.graph.native` (``adam_row.h``: the Adam update, inside the base layer's backward and on its own). No
torch headers; ``module.c`` uses Python.h only for an empty module init, so that tools walking the package can import
it.
``optional=True``: without a C compiler the install still succeeds and the library runs its pure-torch kernels.
Reassociating float sums (``-fassociative-math``) lets the compiler vectorise the reductions; NaN and Inf still
propagate (no ``-ffinite-math-only``).

Threads: built with ``-fopenmp`` where the compiler has OpenMP, so that a multi-threaded kernel call runs on the
OpenMP pool torch already loaded (``libgomp.so.1``) instead of threads of its own; a compiler without OpenMP builds
the POSIX-threads fallback of ``module.c`` (same results).
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OPENMP = ["-fopenmp"]


class BuildExt(build_ext):
    """Build with OpenMP, and once more without it where the compiler has none."""

    def build_extension(self, ext: Extension) -> None:
        ext.extra_compile_args += OPENMP
        ext.extra_link_args += OPENMP
        try:
            super().build_extension(ext)
            return
        except Exception as err:  # CompileError / LinkError: no OpenMP here (e.g. Apple clang)
            self.warn(f"{ext.name}: no OpenMP build ({type(err).__name__}); building with POSIX threads")
        ext.extra_compile_args = [a for a in ext.extra_compile_args if a not in OPENMP]
        ext.extra_link_args = [a for a in ext.extra_link_args if a not in OPENMP]
        super().build_extension(ext)

CSRC = "nsde_coin/graph/csrc"
PANEL_KERNEL = Extension(
    "nsde_coin.graph._panel_kernel",
    sources=[f"{CSRC}/module.c", f"{CSRC}/kernels_avx512.c", f"{CSRC}/kernels_avx2.c", f"{CSRC}/kernels_baseline.c"],
    depends=[f"{CSRC}/{f}" for f in ("panel_kernel.c", "out_dots.h", "pipelined.h", "adam_row.h", "csr_power.c",
                                      "readout_head.c", "residual.c", "kernel_common.h")],
    extra_compile_args=["-O3", "-fno-math-errno", "-fno-trapping-math", "-fassociative-math", "-fno-signed-zeros",
                        "-fvisibility=hidden", "-Wno-psabi", "-pthread"],
    extra_link_args=["-pthread"],
    libraries=["m"],  # logf (readout_head.c)
    define_macros=[("NSDE_PYTHON_MODULE", "1")],
    optional=True,
)

setup(ext_modules=[PANEL_KERNEL], cmdclass={"build_ext": BuildExt})
