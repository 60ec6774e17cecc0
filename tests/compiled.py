"""What the tests of the compiled kernels (:mod:`nsde_coin.graph.native`) share: the marks that skip a module
where the library was not built (and silence torch's beta warning for the sparse CSR tensors they all build), and
the builds this CPU runs, setup.py's arguments for the library and a second build of it with other macros. The
fixture that puts a test on the compiled path is ``compiled_path`` (tests/graph/conftest.py)."""

import ast
import ctypes
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

from nsde_coin.graph import native

NATIVE_ONLY = [pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta state"),
               pytest.mark.skipif(not native.available(), reason=f"compiled kernel: {native.status()}")]
RUNS_HERE = native.supported_isas()  # the builds (NSDE_COIN_NATIVE_ISA) this CPU executes, narrowest first


def setup_extension_arg(name: str):
    """One keyword of the kernel's Extension in setup.py, evaluated with CSRC bound (read, not copied)."""
    tree = ast.parse((Path(__file__).resolve().parents[1] / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Extension":
            kw = next((k.value for k in node.keywords if k.arg == name), None)
            if kw is None:
                break
            code = compile(ast.Expression(kw), "setup.py", "eval")
            return eval(code, {"CSRC": "nsde_coin/graph/csrc"})  # noqa: S307 - the repository's own setup.py
    raise AssertionError(f"setup.py has no Extension(..., {name}=...)")


def build_library(out: Path, *extra: str) -> ctypes.CDLL:
    """The kernel library built again into ``out`` from setup.py's sources and flags (without OpenMP: module.c's
    POSIX-threads nsde_run_jobs) and ``extra`` compiler arguments, bound as :mod:`nsde_coin.graph.native` binds its
    own; skips the test where there is no C compiler. The compiler is the one setuptools used for the installed
    build ($CC, else Python's own): same code and flags, same numbers."""
    cc = shutil.which((os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]) or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler to build the kernel library again")
    root = Path(__file__).resolve().parents[1]
    sources = [root / f for f in setup_extension_arg("sources")]
    flags = [f for f in setup_extension_arg("extra_compile_args") if f != "-fopenmp"]
    subprocess.run([cc, "-shared", "-fPIC", *extra, *flags, *map(str, sources), "-o", str(out), "-pthread"],
                   check=True, timeout=300)
    return native._bind(ctypes.CDLL(str(out)))
