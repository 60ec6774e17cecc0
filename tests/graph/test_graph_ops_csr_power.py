"""The compiled k-step CSR power (csrc/csr_power.c, :func:`nsde_coin.graph.native.csr_power`) that runs the
explicit diffusion: against the float64 dense reference for column counts around its 8-float rows, a
non-symmetric P with empty rows, through :func:`~nsde_coin.graph.sparse.propagate`'s gradient (Pᵀ)^k, equal to the
torch path it replaces, NaN propagation, and when it is (not) used. Skips where the library was not built."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from compiled import NATIVE_ONLY

from nsde_coin.graph import native
from nsde_coin.graph.diffusion import diffuse
from nsde_coin.graph.laplacian import laplacian_from_weights, torch_csr
from nsde_coin.graph.sparse import SMALL_WORK, propagate

pytestmark = NATIVE_ONLY


def _matrix(n: int, seed: int = 0) -> sp.csr_matrix:
    """A random non-symmetric n×n sparse matrix (entries in [-0.5, 0.5]) whose rows 1 and 5 are empty."""
    rng = np.random.default_rng(seed)
    m = sp.random(n, n, density=0.08, random_state=rng, format="lil")
    m.setdiag(1.0)
    m[1, :] = 0
    m[5, :] = 0
    m = m.tocsr()
    m.data = m.data - 0.5
    m.eliminate_zeros()
    return m


@pytest.mark.parametrize("m", [1, 7, 8, 9, 16, 17, 24, 32, 33, 45, 50, 70])  # panels of 8, 16, 32 columns
@pytest.mark.parametrize("k", [1, 4])
def test_power_equals_the_float64_reference(m, k):
    a = _matrix(60, seed=m + k)
    u = torch.randn(60, m, generator=torch.Generator().manual_seed(m), dtype=torch.float64)
    want = u.numpy()
    for _ in range(k):
        want = a @ want
    got = native.csr_power(torch_csr(a, torch.float32), u.float(), k)
    assert got.shape == (60, m) and got.dtype == torch.float32 and got.is_contiguous()
    assert np.all(got[[1, 5]].numpy() == 0)  # empty rows of P give zero rows
    # float32 products of ≤ k·(row length) terms: measured max error 3e-7 of the scale
    np.testing.assert_allclose(got.double().numpy(), want, rtol=0, atol=1e-5 * max(np.abs(want).max(), 1.0))


@pytest.mark.parametrize("symmetric", [True, False])
def test_propagate_forward_and_gradient_equal_the_torch_path(symmetric, monkeypatch):
    a = _matrix(70, seed=3)
    a = (a + a.T).tocsr() if symmetric else a
    p, p_t = torch_csr(a, torch.float32), torch_csr(a.T.tocsr(), torch.float32)
    u = torch.randn(70, 7, generator=torch.Generator().manual_seed(4), requires_grad=True)
    up = torch.randn(70, 7, generator=torch.Generator().manual_seed(5))
    runs = {}
    for flag in ("1", "0"):
        monkeypatch.setenv(native.ENV, flag)
        assert native.power_usable(u.detach(), p, True) == (flag == "1")
        out = propagate(u, p, 5, p_t)
        runs[flag] = (out.detach(), *torch.autograd.grad(out, u, up))
    for a_, b_ in zip(runs["1"], runs["0"]):
        np.testing.assert_allclose(a_.numpy(), b_.numpy(), rtol=0, atol=1e-5 * float(b_.abs().max()))
    grad64 = up.double().numpy()
    for _ in range(5):
        grad64 = a.T @ grad64  # the adjoint is (Pᵀ)^k, not P^k, for a non-symmetric P
    np.testing.assert_allclose(runs["1"][1].double().numpy(), grad64, rtol=0, atol=1e-5 * np.abs(grad64).max())


def test_the_cora_sized_explicit_diffusion_matches_the_torch_path(monkeypatch):
    rng = np.random.default_rng(0)
    n = 400
    w = sp.random(n, n, density=0.01, random_state=rng)
    w = ((w + w.T) > 0).astype(float)
    op = laplacian_from_weights(w, "paper", operator=True)
    u = torch.rand(3, n, 7, generator=torch.Generator().manual_seed(1))  # batched (B, n, C): 21 columns
    res = {}
    for flag in ("1", "0"):
        monkeypatch.setenv(native.ENV, flag)
        res[flag] = diffuse(u, op, 0.35, 20, solver="explicit", allow_unstable=True)
    assert res["1"].shape == (3, n, 7)
    np.testing.assert_allclose(res["1"].numpy(), res["0"].numpy(), rtol=0, atol=1e-5)


def test_nan_propagates_into_the_rows_that_reach_it():
    a = sp.csr_matrix(np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    u = torch.tensor([[1.0], [float("nan")], [2.0]])
    got = native.csr_power(torch_csr(a, torch.float32), u, 3)
    assert torch.isnan(got[0, 0]) and torch.isnan(got[1, 0]) and float(got[2, 0]) == 2.0


def test_when_it_is_not_used(monkeypatch):
    p = torch_csr(_matrix(20), torch.float32)
    u = torch.rand(20, 3)
    monkeypatch.setenv(native.ENV, "1")
    assert native.power_usable(u, p, True)
    assert not native.power_usable(u.double(), p, True)  # float64 runs torch's product
    assert not native.power_usable(u, torch_csr(_matrix(20), torch.float64), True)
    assert not native.power_usable(u[:, 0], p, True)  # only the (n, m) layout propagate passes
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert not native.power_usable(u, p, False)  # large work on several threads: torch's parallel product
        assert native.power_usable(u, p, u.numel() <= SMALL_WORK)
    finally:
        torch.set_num_threads(before)
    monkeypatch.setenv(native.ENV, "0")
    assert not native.power_usable(u, p, True)


def test_a_matrix_of_another_size_is_refused_as_on_the_torch_path(monkeypatch):
    """u with fewer rows than P: the compiled power would read P's columns past u (silently wrong values) and with
    more rows past P's row pointers; torch's product raises its shape error, and so must propagate."""
    p = torch_csr(_matrix(40), torch.float32)
    u = torch.ones(20, 3)
    monkeypatch.setenv(native.ENV, "1")
    assert not native.power_usable(u, p, True) and not native.power_usable(torch.ones(41, 3), p, True)
    with pytest.raises(RuntimeError, match="shape"):
        propagate(u, p, 2)
