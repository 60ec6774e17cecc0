"""What the tests of the compiled kernels (:mod:`nsde_coin.graph.native`) share: the marks that skip a module
where the library was not built (and silence torch's beta warning for the sparse CSR tensors they all build), and
the builds this CPU runs. The fixture that puts a test on the compiled path is ``compiled_path``
(tests/graph/conftest.py)."""

import pytest

from nsde_coin.graph import native

NATIVE_ONLY = [pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta state"),
               pytest.mark.skipif(not native.available(), reason=f"compiled kernel: {native.status()}")]
RUNS_HERE = native.supported_isas()  # the builds (NSDE_COIN_NATIVE_ISA) this CPU executes, narrowest first
