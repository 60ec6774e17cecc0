"""Every build of the compiled kernels (AVX-512, AVX2, baseline SSE2; ``NSDE_COIN_NATIVE_ISA``) that this CPU runs,
against the float64 references: the base layer's forward and gradients (keep and recompute, gather and scatter,
Adam inside the backward) and the explicit diffusion's power; and the choice itself: the default, the variable, and
one-line errors for a name outside the builds or wider than the CPU. Skips where the library was not built."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from compiled import NATIVE_ONLY, RUNS_HERE
from problems import bag_of_words

from nsde_coin.graph import native
from nsde_coin.graph import sparse_base as sb
from nsde_coin.graph.backward_adam import BackwardAdam
from nsde_coin.graph.laplacian import torch_csr
from nsde_coin.graph.sparse_base import SparseBase, sparse_features

pytestmark = [*NATIVE_ONLY, pytest.mark.usefixtures("compiled_path")]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _params(d, c, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=torch.float64).float().requires_grad_() for s in
            ((d, d), (d,), (c, d), (c,))]


@pytest.mark.parametrize("build", RUNS_HERE)
@pytest.mark.parametrize("keep, scatter", [(True, False), (False, True)])
@pytest.mark.parametrize("n, d, panel", [(50, 70, 64), (45, 150, 128)])  # short last panels: 6 and 22 columns
@pytest.mark.parametrize("c", [1, 3, 4, 7, 8, 9, 16, 17])  # every group size of the output layer's reduction trees
def test_each_build_gives_the_float64_forward_and_gradients(build, keep, scatter, n, d, panel, c, monkeypatch):
    monkeypatch.setenv(native.ENV_ISA, build)
    assert native.isa() == build and native.status() == f"available ({build})"
    if not keep:
        monkeypatch.setattr(sb, "SAVE_LIMIT_BYTES", -1)
    if scatter:
        monkeypatch.setattr(sb, "SCATTER_TABLE_BYTES", -1)
    x = bag_of_words(n, d, seed=n + c)
    params = _params(d, c)
    up = torch.randn(n, c, generator=torch.Generator().manual_seed(2))
    out = SparseBase.apply(*params, sparse_features(x.float().to_sparse_csr()), panel)
    got = [out.detach(), *torch.autograd.grad(out, params, up)]
    p64 = [p.detach().double().requires_grad_() for p in params]
    ref = (x + torch.relu(x @ p64[0] + p64[1])) @ p64[2].t() + p64[3]
    want = [ref.detach(), *torch.autograd.grad(ref, p64, up.double())]
    for a, b in zip(got, want):  # float32 sums of ≤ 150 terms: measured max rel. error < 1e-6 on every build
        np.testing.assert_allclose(a.double().numpy(), b.numpy(), rtol=0, atol=1e-5 * max(float(b.abs().max()), 1.0))


@pytest.mark.parametrize("build", RUNS_HERE)
def test_each_build_steps_adam_like_the_widest(build, monkeypatch):
    """Adam inside the backward, on one build against the widest: the same float32 update to rounding."""
    x = bag_of_words(40, 60, seed=3)
    feats = sparse_features(x.float().to_sparse_csr())
    up = torch.randn(40, 4, generator=torch.Generator().manual_seed(4))
    weights = []
    for b in (build, native.ISAS[len(RUNS_HERE) - 1]):
        monkeypatch.setenv(native.ENV_ISA, b)
        params = _params(60, 4, seed=5)
        step = BackwardAdam(lr=0.01, weight_decay=5e-4)
        for _ in range(3):
            SparseBase.apply(*params, feats, 64, step).backward(up)
        weights.append(params[0].detach())
    np.testing.assert_allclose(weights[0].numpy(), weights[1].numpy(), rtol=0, atol=1e-6)  # measured ≤ 6e-8


@pytest.mark.parametrize("build", RUNS_HERE)
@pytest.mark.parametrize("m", [1, 7, 9, 17, 33, 70])  # 33, 70: several column panels, the last 8 / 8 wide
def test_each_build_gives_the_float64_power(build, m, monkeypatch):
    monkeypatch.setenv(native.ENV_ISA, build)
    a = sp.random(50, 50, density=0.1, random_state=np.random.default_rng(m), format="csr")
    a.data -= 0.5
    u = torch.randn(50, m, generator=torch.Generator().manual_seed(m), dtype=torch.float64)
    want = u.numpy()
    for _ in range(3):
        want = a @ want
    got = native.csr_power(torch_csr(a, torch.float32), u.float(), 3)
    np.testing.assert_allclose(got.double().numpy(), want, rtol=0, atol=1e-5 * max(np.abs(want).max(), 1.0))


def test_the_default_is_the_widest_build_and_bad_names_are_one_line_errors(monkeypatch):
    assert native.isa() == RUNS_HERE[-1] and native.status() == f"available ({native.isa()})"
    monkeypatch.setenv(native.ENV_ISA, "avx9000")
    with pytest.raises(ValueError, match=r"NSDE_COIN_NATIVE_ISA='avx9000' is not valid; valid choices: baseline, avx2, "
                                         r"avx512"):
        native.usable(torch.zeros(2, 2), torch.int32)
    assert "avx9000" in native.status() and not native.available()  # status() reports instead of raising
    monkeypatch.setattr(native, "_BEST", 0)  # a CPU with the baseline only
    monkeypatch.setenv(native.ENV_ISA, "avx2")
    with pytest.raises(ValueError, match=r"'avx2' is wider than this CPU .* supports; valid choices here: baseline$"):
        native.power_usable(torch.zeros(2, 2), torch_csr(sp.eye(2, format="csr"), torch.float32), True)
    monkeypatch.setenv(native.ENV_ISA, "baseline")
    assert native.isa() == "baseline" and native.usable(torch.zeros(2, 2), torch.int32)
