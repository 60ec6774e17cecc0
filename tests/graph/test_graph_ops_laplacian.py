"""Laplacians: every kind equals its formula built densely, invariants (row sums, symmetry, PSD), λ_max, bad inputs."""

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from nsde_coin.graph.laplacian import (
    GraphOperator,
    as_operator,
    graph_operator,
    lambda_max,
    laplacian,
    laplacian_from_weights,
    laplacian_scipy,
    to_scipy,
)

N = 12
# one-directional, both-directional, duplicated edges, a self-loop; node 11 is isolated
EDGES = [(0, 1), (1, 0), (1, 2), (2, 3), (3, 0), (3, 4), (4, 5), (5, 6), (6, 4), (6, 7), (7, 8), (8, 9), (9, 10),
         (2, 2), (5, 6), (0, 5)]


def _edge_index():
    return torch.tensor(EDGES, dtype=torch.long).t()


def _dense_adjacency():
    a = np.zeros((N, N))
    for i, j in EDGES:
        if i != j:
            a[i, j] = a[j, i] = 1.0
    return a


def _dense_formula(a, kind):
    n = a.shape[0]
    d = a.sum(1)
    if kind == "paper":
        at = a + np.eye(n)
        s = np.diag(1 / np.sqrt(at.sum(1)))
        ahat = s @ at @ s
        return np.diag(ahat.sum(1)) - ahat
    if kind == "comb":
        return np.diag(d) - a
    with np.errstate(divide="ignore"):
        inv = np.where(d > 0, 1 / d, 0.0)
    if kind == "sym":
        return np.diag((d > 0).astype(float)) - np.diag(np.sqrt(inv)) @ a @ np.diag(np.sqrt(inv))
    return np.diag((d > 0).astype(float)) - np.diag(inv) @ a


@pytest.mark.parametrize("kind", ["paper", "sym", "rw", "comb"])
def test_matches_dense_formula(kind):
    lap = laplacian(_edge_index(), N, kind, dtype=torch.float64)
    assert lap.layout == torch.sparse_csr and lap.shape == (N, N) and lap.dtype == torch.float64
    np.testing.assert_allclose(lap.to_dense().numpy(), _dense_formula(_dense_adjacency(), kind), atol=1e-14)


def test_paper_is_not_i_minus_ahat_and_invariants():
    dense = laplacian(_edge_index(), N, "paper", dtype=torch.float64).to_dense().numpy()
    a = _dense_adjacency()
    at = a + np.eye(N)
    s = np.diag(1 / np.sqrt(at.sum(1)))
    assert np.abs(dense - (np.eye(N) - s @ at @ s)).max() > 0.05  # a different operator from I − Â (diagonals)
    np.testing.assert_allclose(dense.sum(1), 0, atol=1e-14)
    np.testing.assert_array_equal(dense, dense.T)
    ev = np.linalg.eigvalsh(dense)
    assert ev.min() > -1e-12
    off = dense - np.diag(np.diag(dense))
    assert off.max() <= 0


@pytest.mark.parametrize("kind", ["paper", "sym", "rw", "comb"])
def test_lambda_max_matches_dense_eigenvalues(kind):
    lap = laplacian(_edge_index(), N, kind, dtype=torch.float64)
    ref = np.linalg.eigvals(lap.to_dense().numpy()).real.max()
    assert lambda_max(lap) == pytest.approx(ref, rel=1e-8)
    assert as_operator(lap).lambda_max == pytest.approx(ref, rel=1e-8)
    assert lambda_max(to_scipy(lap)) == pytest.approx(ref, rel=1e-8)


@pytest.mark.parametrize("kind", ["paper", "sym", "rw", "comb"])
def test_edgeless_graph_has_lambda_max_zero_and_diffusion_is_identity(kind):
    """No edges: L = 0 for every kind, λ_max = 0 (ARPACK used to fail on the zero operator), u stays unchanged."""
    from nsde_coin.graph.diffusion import diffuse

    lap = laplacian(torch.empty(2, 0, dtype=torch.long), 6, kind, dtype=torch.float64)
    assert lambda_max(lap) == 0.0 and as_operator(lap).lambda_max == 0.0
    u = torch.rand(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for solver in ("explicit", "implicit"):
        assert torch.equal(diffuse(u, lap, 0.5, 4, solver=solver), u)
    torch.testing.assert_close(diffuse(u, lap, 0.5, 4, solver="exact"), u, rtol=0, atol=1e-14)


def test_row_sums_and_spectra_of_rw_and_sym():
    rw = laplacian(_edge_index(), N, "rw", dtype=torch.float64).to_dense().numpy()
    sym = laplacian(_edge_index(), N, "sym", dtype=torch.float64).to_dense().numpy()
    np.testing.assert_allclose(rw.sum(1), 0, atol=1e-14)
    assert np.abs(sym.sum(1)).max() > 0.05
    np.testing.assert_allclose(np.sort(np.linalg.eigvals(rw).real), np.linalg.eigvalsh(sym), atol=1e-12)
    op = as_operator(laplacian(_edge_index(), N, "rw", dtype=torch.float64))
    assert not op.symmetric and op.markov and op.similarity is not None


def test_operator_is_cached_per_tensor():
    lap = laplacian(_edge_index(), N, "paper")
    assert as_operator(lap) is as_operator(lap)
    assert as_operator(lap).kind == "paper"
    dense = lap.to_dense()
    op = as_operator(dense)
    assert op is as_operator(dense) and op.kind is None and op.symmetric


def test_weighted_edges_and_weight_matrix_agree():
    ei = torch.tensor([[0, 1, 2, 3, 1], [1, 2, 3, 0, 3]])
    w = torch.tensor([0.5, 2.0, 1.5, 3.0, 0.25], dtype=torch.float64)
    wmat = np.zeros((4, 4))
    for (i, j), v in zip(ei.t().tolist(), w.tolist()):
        wmat[i, j] = wmat[j, i] = v
    for kind in ("paper", "comb", "sym", "rw"):
        a = laplacian(ei, 4, kind, edge_weight=w, dtype=torch.float64).to_dense().numpy()
        b = laplacian_from_weights(sp.csr_matrix(wmat), kind, dtype=torch.float64).to_dense().numpy()
        np.testing.assert_allclose(a, b, atol=1e-14)
        np.testing.assert_allclose(a, _dense_formula(wmat, kind), atol=1e-14)
    c = laplacian_from_weights(torch.from_numpy(wmat), "comb", dtype=torch.float64).to_dense().numpy()
    np.testing.assert_allclose(c, np.diag(wmat.sum(1)) - wmat, atol=1e-14)


def test_symmetrize_modes_and_duplicates():
    ei = torch.tensor([[0, 0], [1, 1]])  # the same directed edge twice
    w = torch.tensor([1.0, 2.0], dtype=torch.float64)
    comb = laplacian(ei, 2, "comb", edge_weight=w, dtype=torch.float64, symmetrize="max").to_dense()
    assert comb[0, 1] == -3.0  # weighted duplicates are summed, then max(W, Wᵀ)
    mean = laplacian(ei, 2, "comb", edge_weight=w, dtype=torch.float64, symmetrize="mean").to_dense()
    assert mean[0, 1] == -1.5
    unweighted = laplacian(ei, 2, "comb", dtype=torch.float64).to_dense()
    assert unweighted[0, 1] == -1.0  # unweighted graphs are binary
    with pytest.raises(ValueError, match="not symmetric"):
        laplacian(ei, 2, "comb", edge_weight=w, symmetrize="none")
    with pytest.raises(ValueError, match="valid choices: max, mean, none"):
        laplacian(ei, 2, "comb", symmetrize="sum")


def test_scipy_form_and_operator_builder():
    m = laplacian_scipy(_edge_index(), N, "paper")
    op = graph_operator(_edge_index(), N, "paper", dtype=torch.float64)
    assert isinstance(op, GraphOperator) and op.n == N
    np.testing.assert_allclose(m.toarray(), op.csr().to_dense().numpy(), atol=1e-15)
    p = op.step_matrix(0.1).to_dense().numpy()
    np.testing.assert_allclose(p, np.eye(N) - 0.1 * m.toarray(), atol=1e-15)


@pytest.mark.parametrize("args, exc, fragment", [
    ((torch.tensor([[0, 12]]).t().reshape(2, 1), 12), ValueError, r"node id 12, outside the valid range \[0, 12\)"),
    ((torch.tensor([[0, -1]]).t().reshape(2, 1), 12), ValueError, "node id -1"),
    ((torch.zeros(3, 4, dtype=torch.long), 12), ValueError, r"shape \(2, E\), got \(3, 4\)"),
    ((torch.zeros(2, 4), 12), TypeError, "dtype torch.long"),
    (([[0, 1], [1, 0]], 12), TypeError, "must be a torch.Tensor"),
    ((torch.zeros(2, 1, dtype=torch.long), 0), ValueError, "num_nodes must be a positive int"),
])
def test_bad_edge_index(args, exc, fragment):
    with pytest.raises(exc, match=fragment):
        laplacian(*args)


def test_bad_kind_and_weights():
    with pytest.raises(ValueError, match="kind='normalized' is not valid; valid choices: paper, sym, rw, comb"):
        laplacian(_edge_index(), N, "normalized")
    with pytest.raises(ValueError, match="non-negative"):
        laplacian(_edge_index(), N, edge_weight=-torch.ones(len(EDGES)))
    with pytest.raises(ValueError, match="NaN or Inf"):
        laplacian(_edge_index(), N, edge_weight=torch.full((len(EDGES),), float("nan")))
    with pytest.raises(ValueError, match=r"shape \(E,\)"):
        laplacian(_edge_index(), N, edge_weight=torch.ones(3))
    with pytest.raises(ValueError, match="must be square"):
        laplacian_from_weights(np.ones((3, 4)))


def _data_root() -> Path:
    return Path(os.environ.get("NSDE_COIN_DATA", Path(__file__).resolve().parents[2] / ".." / "shared" / "data"))


@pytest.mark.data
def test_cora_largest_component_lambda_max():
    path = _data_root() / "npz" / "cora.npz"
    if not path.exists():
        pytest.skip(f"Cora npz not found at {path} (set NSDE_COIN_DATA)")
    from scipy.sparse.csgraph import connected_components

    z = np.load(path)
    a = sp.csr_matrix((z["adj_data"], z["adj_indices"], z["adj_indptr"]), shape=tuple(z["adj_shape"]))
    a = ((a + a.T) > 0).astype(np.float64)
    _, comp = connected_components(a, directed=False)
    keep = comp == np.bincount(comp).argmax()
    a = a[keep][:, keep]
    assert a.shape[0] == 2485
    op = laplacian_from_weights(a, "paper", operator=True)
    assert op.lambda_max == pytest.approx(5.78, abs=0.005)
    assert 0.35 * op.lambda_max == pytest.approx(2.02, abs=0.003)  # the paper's Cora setting is past the bound
    np.testing.assert_allclose(np.asarray(op.scipy.sum(1)).ravel(), 0, atol=1e-12)


def test_registration_does_not_leak():
    import gc
    import weakref

    from nsde_coin.graph import cache

    gc.collect()  # entries of earlier tests' dead tensors must go first, or they vanish mid-test and `before` is off
    before = cache.owners()
    refs = []
    for seed in range(20):
        t = laplacian(torch.randint(0, N, (2, 30), generator=torch.Generator().manual_seed(seed)), N)
        refs.append(weakref.ref(as_operator(t)))
        del t
    gc.collect()
    assert all(r() is None for r in refs)  # operators die with their tensors
    assert cache.owners() == before
