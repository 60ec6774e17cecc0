"""Build script: metadata lives in setup.cfg; this file adds the optional compiled kernels of COIN.

``nsde_coin/graph/csrc/panel_kernel.c`` (the sparse base layer) and ``csr_power.c`` (the explicit diffusion's k
steps) are plain C, compiled once per instruction set by ``kernels_{avx512,avx2,baseline}.c`` (see
``kernel_common.h``) into one library loaded with ctypes by :mod:`nsde_coin.graph.native`. No torch headers;
``module.c`` uses Python.h only for an empty module init, so that tools walking the package can import it.
``optional=True``: without a C compiler the install still succeeds and the library runs its pure-torch kernels.
Reassociating float sums (``-fassociative-math``) lets the compiler vectorise the reductions; NaN and Inf still
propagate (no ``-ffinite-math-only``).
"""

from setuptools import Extension, setup

CSRC = "nsde_coin/graph/csrc"
PANEL_KERNEL = Extension(
    "nsde_coin.graph._panel_kernel",
    sources=[f"{CSRC}/module.c", f"{CSRC}/kernels_avx512.c", f"{CSRC}/kernels_avx2.c", f"{CSRC}/kernels_baseline.c"],
    depends=[f"{CSRC}/panel_kernel.c", f"{CSRC}/csr_power.c", f"{CSRC}/kernel_common.h"],
    extra_compile_args=["-O3", "-fno-math-errno", "-fno-trapping-math", "-fassociative-math", "-fno-signed-zeros",
                        "-fvisibility=hidden", "-Wno-psabi"],
    define_macros=[("NSDE_PYTHON_MODULE", "1")],
    optional=True,
)

setup(ext_modules=[PANEL_KERNEL])
