"""Gaussian kNN graph (nsde_coin.graph.knn) against a direct dense computation, invariants and input checks."""

import pytest
import torch

from nsde_coin.graph.knn import gaussian_knn_edges, gaussian_knn_graph


def dense_reference(x: torch.Tensor, k: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's construction written densely: n×n distances, keep k nearest (self first), Gaussian weights with
    the m-th smallest distance (self counted) as scale, D^{-1/2} W D^{-1/2} with row sums, (W + Wᵀ)/2, L."""
    d = torch.cdist(x, x)
    d.fill_diagonal_(0.0)
    ranked, _ = torch.sort(d, dim=1)
    scale = ranked[:, m - 1 : m]
    order = torch.argsort(d.clone().fill_diagonal_(-1.0), dim=1)[:, :k]
    keep = torch.zeros_like(d, dtype=torch.bool).scatter_(1, order, True)
    w = torch.where(keep, torch.exp(-((d / scale) ** 2)), torch.zeros_like(d))
    s = w.sum(1).rsqrt()
    w = s[:, None] * w * s[None, :]
    w = 0.5 * (w + w.T)
    return w, torch.diag(w.sum(1)) - w


@pytest.mark.parametrize("n,d,k,m,chunk", [(50, 3, 8, 4, 7), (40, 5, 40, 20, None), (33, 2, 5, 2, 1)])
def test_matches_dense_computation(n, d, k, m, chunk):
    x = torch.randn(n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(n + k))
    w, lap = gaussian_knn_graph(x, k, m, chunk_size=chunk)
    w_ref, l_ref = dense_reference(x, k, m)
    assert torch.allclose(w.to_dense(), w_ref, atol=1e-12, rtol=0)
    assert torch.allclose(lap.to_dense(), l_ref, atol=1e-12, rtol=0)


def test_batched_sets_give_block_diagonal_graph():
    x = torch.randn(4, 20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    w, lap = gaussian_knn_graph(x, 6, 3, chunk_size=5)
    refs = [dense_reference(x[b], 6, 3) for b in range(4)]
    assert torch.allclose(w.to_dense(), torch.block_diag(*[r[0] for r in refs]), atol=1e-12, rtol=0)
    assert torch.allclose(lap.to_dense(), torch.block_diag(*[r[1] for r in refs]), atol=1e-12, rtol=0)


def test_invariants_symmetry_zero_row_sums_degree():
    x = torch.randn(200, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    w, lap = gaussian_knn_graph(x, 8, 4, chunk_size=16)
    wd, ld = w.to_dense(), lap.to_dense()
    assert torch.equal(wd, wd.T)
    assert ld.sum(1).abs().max() < 1e-12
    assert ((wd > 0).sum(1) >= 8).all()  # k kept per row, plus edges from symmetrisation
    assert (torch.linalg.eigvalsh(ld) > -1e-12).all()  # positive semi-definite


def test_duplicate_points_give_finite_weights():
    x = torch.tensor([[0.0, 0.0]] * 5 + [[1.0, 1.0], [2.0, 0.5]], dtype=torch.float64)
    ei, ew, n = gaussian_knn_edges(x, 4, 3)
    assert n == 7 and torch.isfinite(ew).all() and (ew > 0).all()


@pytest.mark.parametrize("k,m,match", [(8, 1, "2 <= m <= k"), (4, 5, "2 <= m <= k"), (60, 4, "exceeds the number")])
def test_bad_k_m(k, m, match):
    with pytest.raises(ValueError, match=match):
        gaussian_knn_edges(torch.randn(50, 3), k, m)


def test_bad_inputs():
    with pytest.raises(ValueError, match="shape"):
        gaussian_knn_edges(torch.randn(5), 2, 2)
    with pytest.raises(TypeError, match="floating"):
        gaussian_knn_edges(torch.ones(5, 2, dtype=torch.long), 2, 2)
    x = torch.randn(10, 2)
    x[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        gaussian_knn_edges(x, 3, 2)
    with pytest.raises(ValueError, match="output"):
        gaussian_knn_graph(torch.randn(10, 2), 3, 2, output="X")
    for bad in (0, 2.5, True):  # 2.5 used to fail inside range() with "'float' object cannot be interpreted"
        with pytest.raises(ValueError, match=f"chunk_size must be None or an int >= 1.*got {bad!r}"):
            gaussian_knn_edges(torch.randn(10, 2), 3, 2, chunk_size=bad)
