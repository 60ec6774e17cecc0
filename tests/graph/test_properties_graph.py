"""Property-based tests (hypothesis) of what the theory promises about the graph side, on random small graphs.

Every test draws graphs of 1–10 nodes with duplicate, one- or two-directional edges, self-loops, isolated nodes and
(optionally) weights that span six decades or are exactly zero, and checks an invariant of the library's public
functions against a dense float64 reference (numpy/scipy on n ≤ 10 nodes):

* every Laplacian kind: the documented formula, symmetry, zero row sums, non-positive off-diagonal, PSD, and
  max L_ii ≤ λ_max ≤ its bound; ``lambda_max`` (ARPACK) agrees with ``eigvalsh``;
* the graph is undirected and unlabelled: edge direction, duplicates and self-loops do not matter, relabelling the
  nodes permutes L;
* the diffusion solvers conserve the mass the kind promises (explicit, implicit, exact), keep u ≥ 0 under the
  explicit bound σ²·max L_ii ≤ 1 (and the bound is sharp), contract the max norm (implicit, exact: any σ²) and the
  exact solver is the semigroup exp(−TL);
* random-walk means lie within 4 standard errors of the deterministic solves they mirror;
* the Gaussian kNN graph is symmetric with weights in [0, 1] and a zero-row-sum PSD Laplacian.

Runs under the "ci" hypothesis profile of tests/conftest.py (derandomised, bounded examples), so a failure is
reproducible; ``--hypothesis-profile=thorough`` searches more examples.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nsde_coin.graph.diffusion import PositivityWarning, diffuse
from nsde_coin.graph.knn import gaussian_knn_edges, gaussian_knn_graph
from nsde_coin.graph.laplacian import KINDS, as_operator, graph_operator, lambda_max, laplacian

MARKOV = ("paper", "rw", "comb")  # −L generates a Markov chain: zero row sums, non-positive off-diagonal
SYMMETRIC = ("paper", "sym", "comb")


@dataclass
class Graph:
    n: int
    edge_index: torch.Tensor  # (2, E) long, possibly with duplicates and self-loops
    edge_weight: Optional[torch.Tensor]  # (E,) float64 or None (unweighted)

    def dense_adjacency(self) -> np.ndarray:
        """The documented convention, built independently: binary or summed duplicates, A = max(W, Wᵀ), no loops."""
        w = np.zeros((self.n, self.n))
        vals = np.ones(self.edge_index.shape[1]) if self.edge_weight is None else self.edge_weight.numpy()
        for (i, j), v in zip(self.edge_index.T.tolist(), vals):
            w[i, j] = 1.0 if self.edge_weight is None else w[i, j] + v
        a = np.maximum(w, w.T)
        np.fill_diagonal(a, 0.0)
        return a


@st.composite
def graphs(draw, min_n: int = 1, max_n: int = 8, weighted=None) -> Graph:
    """A random directed edge list: an Erdős–Rényi draw over all n² ordered pairs (so one- and two-directional edges
    and self-loops) plus up to n edges hypothesis picks itself (duplicates, isolated nodes when the draw is sparse).
    Weights, when drawn, are log-uniform over six decades [1e-3, 1e3] with one in ten exactly 0 (an edge that is no
    edge), so degrees, λ_max and the step sizes below span a wide range; tolerances are relative for that reason."""
    n = draw(st.integers(min_n, max_n))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    density = draw(st.sampled_from([0.3, 0.1, 0.6]))
    pairs = (torch.rand(n, n, generator=gen) < density).nonzero().tolist()
    node = st.integers(0, n - 1)
    pairs += draw(st.lists(st.tuples(node, node), max_size=n))
    edge_index = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2).T.contiguous()
    weight = None
    if draw(st.booleans() if weighted is None else st.just(weighted)):
        e = edge_index.shape[1]
        weight = 10.0 ** (6.0 * torch.rand(e, generator=gen, dtype=torch.float64) - 3.0)
        weight = weight * (torch.rand(e, generator=gen) >= 0.1)
    return Graph(n, edge_index, weight)


def dense_formula(a: np.ndarray, kind: str) -> np.ndarray:
    """The module doc's formulas on the dense adjacency (Chung's 0/0 := 0 for isolated nodes)."""
    n, d = a.shape[0], a.sum(1)
    if kind == "paper":
        s = np.diag(1.0 / np.sqrt(d + 1.0))
        ahat = s @ (a + np.eye(n)) @ s
        return np.diag(ahat.sum(1)) - ahat
    if kind == "comb":
        return np.diag(d) - a
    inv = np.divide(1.0, d, out=np.zeros(n), where=d > 0)
    if kind == "sym":
        return np.diag((d > 0).astype(float)) - np.sqrt(inv)[:, None] * a * np.sqrt(inv)[None, :]
    return np.diag((d > 0).astype(float)) - inv[:, None] * a


def dense(g: Graph, kind: str) -> tuple[torch.Tensor, np.ndarray]:
    """(the library's float64 Laplacian tensor, the same as a dense numpy array)."""
    lap = laplacian(g.edge_index, g.n, kind, g.edge_weight, dtype=torch.float64)
    return lap, lap.to_dense().numpy()


def spectrum(lap: np.ndarray, kind: str) -> np.ndarray:
    """Eigenvalues, real by the theory: symmetric kinds directly; 'rw' through its symmetric similar matrix."""
    if kind != "rw":
        return np.linalg.eigvalsh(lap)
    ev = np.linalg.eigvals(lap)
    return np.sort(ev.real)


def scale_of(lap: np.ndarray) -> float:
    return max(1.0, float(np.abs(lap).max()))


# ---------------------------------------------------------------------------------------------------- Laplacians
@pytest.mark.parametrize("kind", KINDS)
@given(g=graphs())
def test_laplacian_is_the_documented_formula(kind, g):
    _, lap = dense(g, kind)
    # float64 sums of ≤ 24 terms: measured ≤ 2.3e-16·scale over 120 examples; 1e-10·scale allowed
    np.testing.assert_allclose(lap, dense_formula(g.dense_adjacency(), kind), rtol=0,
                               atol=1e-10 * scale_of(lap))


@pytest.mark.parametrize("kind", KINDS)
@given(g=graphs())
def test_laplacian_structure_and_spectrum(kind, g):
    _, lap = dense(g, kind)
    sc = scale_of(lap)
    off = lap - np.diag(np.diag(lap))
    assert off.max(initial=0.0) <= 0.0, "an off-diagonal entry is positive"
    assert np.diag(lap).min() >= 0.0
    if kind in SYMMETRIC:
        np.testing.assert_array_equal(lap, lap.T)  # symmetrised by (L + Lᵀ)/2, exact
    if kind in MARKOV:
        # the diagonal is set to minus the off-diagonal row sum: rounding of ≤ 30 terms only
        assert np.abs(lap.sum(1)).max() <= 1e-12 * sc
    ev = spectrum(lap, kind)
    if kind == "rw":  # similar to 'sym': the same (real) spectrum
        np.testing.assert_allclose(ev, spectrum(dense(g, "sym")[1], "sym"), rtol=0, atol=1e-9)
    lam, diag_max = ev[-1], np.diag(lap).max(initial=0.0)
    # PSD: eigvalsh's backward error is ~n·eps·‖L‖ ≈ 2e-15·scale; allow 1e-10·scale
    assert ev[0] >= -1e-10 * sc, ev
    # λ_max ≥ max_i L_ii (Rayleigh quotient of e_i; for 'rw' via 'sym', which has the same diagonal)
    assert lam >= diag_max - 1e-10 * sc
    if kind in ("sym", "rw"):
        assert lam <= 2.0 + 1e-10
    else:  # a combinatorial Laplacian (paper: with weights Â_ij): Anderson–Morley, λ_max ≤ max_{i∼j} L_ii + L_jj
        i, j = np.nonzero(off)
        bound = float((np.diag(lap)[i] + np.diag(lap)[j]).max(initial=0.0))
        assert lam <= bound + 1e-10 * sc, (lam, bound)


@pytest.mark.parametrize("kind", KINDS)
@given(g=graphs(max_n=10))
def test_lambda_max_agrees_with_dense_eigvalsh(kind, g):
    lap_t, lap = dense(g, kind)
    ref = spectrum(lap, kind)[-1]
    # ARPACK is asked for tol=1e-8 relative: measured ≤ 1.1e-15 relative over 120 examples;
    # 1e-7 relative + 1e-12 absolute allowed
    tol = 1e-7 * abs(ref) + 1e-12
    assert abs(as_operator(lap_t).lambda_max - ref) <= tol  # the registered operator (rw: its similarity)
    assert abs(lambda_max(torch.from_numpy(lap.copy())) - ref) <= tol  # a plain dense tensor ('rw': eigs)
    assert abs(lambda_max(sp.csr_matrix(lap)) - ref) <= tol  # scipy


@pytest.mark.parametrize("kind", KINDS)
@given(g=graphs(weighted=False), data=st.data())
def test_graph_is_undirected_and_unlabelled(kind, g, data):
    _, lap = dense(g, kind)
    ei = g.edge_index
    loops = torch.arange(g.n).repeat(2, 1)
    for variant in (ei.flip(0), torch.cat([ei, ei.flip(0)], 1), torch.cat([ei, loops], 1)):
        other = laplacian(variant, g.n, kind, dtype=torch.float64).to_dense().numpy()
        np.testing.assert_array_equal(other, lap)  # the same adjacency, so the same arithmetic
    perm = np.array(data.draw(st.permutations(range(g.n))))
    relabelled = laplacian(torch.from_numpy(perm)[ei], g.n, kind, dtype=torch.float64).to_dense().numpy()
    # node i becomes perm[i]: L' = P L Pᵀ; sums of the same terms in another order, measured ≤ 4e-16
    np.testing.assert_allclose(relabelled[np.ix_(perm, perm)], lap, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------------------ solvers
def _probabilities(gen: torch.Generator, n: int, c: int) -> torch.Tensor:
    return torch.softmax(3.0 * torch.randn(n, c, generator=gen, dtype=torch.float64), 1)


def _left_null_vector(g: Graph, kind: str) -> np.ndarray:
    """v with vᵀL = 0, i.e. the mass Σ_i v_i u_i every solver conserves: 1 (paper, comb), D·1 (rw), √D·1 (sym)."""
    d = g.dense_adjacency().sum(1)
    return {"paper": np.ones(g.n), "comb": np.ones(g.n), "rw": d, "sym": np.sqrt(d)}[kind]


SEEDS = st.integers(0, 2**31 - 1)


@pytest.mark.parametrize("solver", ["explicit", "implicit", "exact"])
@pytest.mark.parametrize("kind", KINDS)
@given(g=graphs(), seed=SEEDS, frac=st.floats(0.05, 1.0), k=st.integers(1, 5))
def test_solvers_conserve_mass(kind, solver, g, seed, frac, k):
    lap_t, lap = dense(g, kind)
    op = as_operator(lap_t)
    s = frac / op.max_diag if op.max_diag > 0 else frac
    u = _probabilities(torch.Generator().manual_seed(seed), g.n, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PositivityWarning)  # frac ≤ 1 is inside the positivity bound
        # allow_unstable: s·λ_max ≤ 2 (λ_max ≤ 2·max L_ii for every kind), = 2 on bipartite graphs at frac = 1
        out = diffuse(u, lap_t, s, k, solver=solver, allow_unstable=True).numpy()
    v = _left_null_vector(g, kind)
    # bound from the solver tolerances (CG residual 1e-12 per step, Chebyshev tail 1e-14): 1e-9·‖v‖₁;
    # measured ≤ 4.4e-16·‖v‖₁ for all three solvers (120 examples)
    np.testing.assert_allclose(v @ out, v @ u.numpy(), rtol=0, atol=1e-9 * max(1.0, np.abs(v).sum()))
    if kind in MARKOV:  # L·1 = 0: rows of u that are probability vectors stay probability vectors
        np.testing.assert_allclose(out.sum(1), 1.0, rtol=0, atol=1e-9)


@pytest.mark.parametrize("kind", KINDS)
@given(g=graphs(), seed=SEEDS, frac=st.floats(1e-3, 1.0), k=st.integers(1, 6))
def test_explicit_stays_nonnegative_within_the_bound(kind, g, seed, frac, k):
    lap_t, _ = dense(g, kind)
    op = as_operator(lap_t)
    s = frac / op.max_diag if op.max_diag > 0 else frac
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(g.n, 2, generator=gen, dtype=torch.float64) * (torch.rand(g.n, 2, generator=gen) < 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PositivityWarning)
        # allow_unstable: at frac = 1 a bipartite graph has s·λ_max = 2 exactly; positivity is what is tested here
        out = diffuse(u, lap_t, s, k, allow_unstable=True)
    # I − sL ≥ 0 entrywise; at frac = 1 its diagonal 1 − s·L_ii is 0 up to 1 ulp, so allow −1e-13 (half of u is
    # exactly 0, so outputs of 0 are common; measured min ≥ 0)
    assert float(out.min()) >= -1e-13
    if kind in MARKOV:  # a stochastic matrix: each channel stays within [min u, max u] (maximum principle)
        assert bool((out <= u.max(0).values + 1e-12).all()) and bool((out >= u.min(0).values - 1e-12).all())


@pytest.mark.parametrize("kind", KINDS)
@given(g=graphs(min_n=2), excess=st.floats(1e-3, 1.0))
def test_explicit_positivity_bound_is_sharp(kind, g, excess):
    lap_t, _ = dense(g, kind)
    op = as_operator(lap_t)
    if op.max_diag == 0:  # no edges: I − sL = I for every s
        return
    s = (1.0 + excess) / op.max_diag
    i = int(np.argmax(np.diag(lap_t.to_dense().numpy())))
    u = torch.zeros(g.n, dtype=torch.float64)
    u[i] = 1.0
    with pytest.warns(PositivityWarning, match="non-negativity bound"):
        out = diffuse(u, lap_t, s, 1, allow_unstable=True)
    assert float(out[i]) == pytest.approx(-excess, abs=1e-9)  # 1 − s·L_ii


@pytest.mark.parametrize("solver", ["implicit", "exact"])
@pytest.mark.parametrize("kind", KINDS)
@given(g=graphs(), seed=SEEDS, log_t=st.floats(-3.0, 2.0), k=st.integers(1, 4))
def test_implicit_and_exact_are_contractive(kind, solver, g, seed, log_t, k):
    lap_t, _ = dense(g, kind)
    op = as_operator(lap_t)
    t = 10.0**log_t / max(op.lambda_max, 1e-3)  # total time from 1e-3 to 1e2 relaxation times
    u = torch.randn(g.n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    out = diffuse(u, lap_t, t=t, steps=k, solver=solver)
    # solver errors ≤ 1e-12·‖u‖ per step (CG residual, Chebyshev tail): 1e-9 relative to ‖u‖_∞ allowed; measured
    # excess ≤ 1.3e-16·‖u‖_∞ (max norm) and ≤ 2.3e-16 (2-norm ratio − 1) over 270 examples
    slack = 1e-9 * float(u.abs().max())
    if kind in MARKOV:  # non-negative, row-stochastic solution operators: contractive in the max norm, any t
        assert float(out.abs().max()) <= float(u.abs().max()) + slack
        assert bool((out <= u.max(0).values + slack).all()) and bool((out >= u.min(0).values - slack).all())
    else:  # 'sym' rows do not sum to 1; symmetric PSD: contractive in the 2-norm instead
        assert bool((out.norm(dim=0) <= u.norm(dim=0) * (1 + 1e-9)).all())


@pytest.mark.parametrize("kind", KINDS)
@given(g=graphs(), seed=SEEDS, s=st.floats(1e-3, 3.0), t=st.floats(1e-3, 3.0))
def test_exact_solver_is_the_heat_semigroup(kind, g, seed, s, t):
    lap_t, lap = dense(g, kind)
    lam = max(as_operator(lap_t).lambda_max, 1e-3)
    s, t = s / lam, t / lam  # up to 3 relaxation times each
    u = torch.randn(g.n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    both = diffuse(u, lap_t, t=s + t, steps=1, solver="exact")
    split = diffuse(diffuse(u, lap_t, t=t, steps=1, solver="exact"), lap_t, t=s, steps=1, solver="exact")
    # Chebyshev tail 1e-14·‖u‖ per solve plus rounding: measured ≤ 7.4e-16·‖u‖_∞ (split) and ≤ 5.9e-15·‖u‖_∞ (vs
    # expm) over 270 examples; 1e-11·‖u‖_∞ allowed
    atol = 1e-11 * float(u.abs().max())
    torch.testing.assert_close(split, both, rtol=0, atol=atol)
    ref = scipy.linalg.expm(-(s + t) * lap) @ u.numpy()  # and it is exp(−TL), not another semigroup
    np.testing.assert_allclose(both.numpy(), ref, rtol=0, atol=atol)


# -------------------------------------------------------------------------------------------------- random walks
# Each example makes ONE z-test per walk kind: Z = Σ_i c_i (mean_i − exact_i) / sqrt(Σ_i c_i² Var_i / N) with random
# weights c (so a bias, a wrong node or a wrong step count shows, while no single rare node decides), Var_i the exact
# variance of u(X) from the deterministic solve of u² (not the sample variance, which is 0 when a rare transition was
# never sampled) and N walkers per node. Sample sizes: max_examples = 5 per walk kind → 10 z-tests in the whole run;
# with |Z| ≤ 4 per test the false-failure probability of a correct solver is ≤ 10 · P(|N(0,1)| > 4) = 6.3e-4 (the
# sum over ≥ 2·N = 8000 independent walkers of values in [0, 1] is close to normal: unweighted graphs of ≤ 8 nodes
# and σ²·max L_ii ≥ 0.5 keep every transition probability ≥ 9e-3 per step). Measured over 142 examples: max |Z| = 2.5,
# std(Z) = 0.86. The run is deterministic (fixed seeds, derandomised hypothesis): a pass stays a pass.
WALKERS = 4000
RW_EXAMPLES = 5


@pytest.mark.parametrize("walk, mirror", [("discrete", "explicit"), ("continuous", "exact")])
@settings(max_examples=RW_EXAMPLES)
@given(g=graphs(min_n=2, weighted=False), kind=st.sampled_from(MARKOV), seed=SEEDS,
       frac=st.floats(0.5, 1.0), k=st.integers(1, 4))
def test_random_walk_means_within_4_standard_errors(walk, mirror, g, kind, seed, frac, k):
    lap_t, _ = dense(g, kind)
    op = as_operator(lap_t)
    s = frac / op.max_diag if op.max_diag > 0 else frac
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(g.n, generator=gen, dtype=torch.float64)
    c = torch.randn(g.n, generator=gen, dtype=torch.float64)
    mean = diffuse(u, lap_t, s, k, solver="random_walk", walk=walk, samples=WALKERS, seed=seed)
    det = diffuse(u, lap_t, s, k, solver=mirror, allow_unstable=True)
    var = (diffuse(u * u, lap_t, s, k, solver=mirror, allow_unstable=True) - det**2).clamp_min(0.0)
    se = math.sqrt(float((c * c * var).sum()) / WALKERS)
    dev = float((c * (mean - det)).sum())
    assert abs(dev) <= 4.0 * se + 1e-12, (dev / se if se else dev, se)


# -------------------------------------------------------------------------------------------------------- kNN graph
@st.composite
def point_sets(draw):
    n, d = draw(st.integers(2, 12)), draw(st.integers(1, 3))
    coords = st.floats(-100.0, 100.0, allow_subnormal=False)
    x = torch.tensor(draw(st.lists(coords, min_size=n * d, max_size=n * d)), dtype=torch.float64).reshape(n, d)
    k = draw(st.integers(2, n))
    return x, k, draw(st.integers(2, k))


@given(xkm=point_sets(), batch=st.integers(1, 3), data=st.data())
def test_gaussian_knn_graph_is_symmetric_with_a_laplacian(xkm, batch, data):
    x, k, m = xkm
    if batch > 1:  # B independent sets: perturbed copies (hypothesis may also make them equal)
        shifts = torch.tensor(data.draw(st.lists(st.floats(-1, 1), min_size=batch, max_size=batch)))
        x = torch.stack([x + sh for sh in shifts.tolist()])
    ei, w, num = gaussian_knn_edges(x, k, m)
    n = x.shape[-2]
    assert num == batch * n
    wd = torch.zeros(num, num, dtype=w.dtype)
    wd[ei[0], ei[1]] = w  # coalesced: no duplicate (i, j)
    assert torch.equal(wd, wd.T)  # (W + Wᵀ)/2 with at most two summands per entry: exactly symmetric
    assert float(w.min()) >= 0.0 and float(w.max()) <= 1.0  # exp(−·) ≤ 1 over degrees ≥ 1
    assert bool((wd.diagonal() >= 1.0 / k - 1e-15).all())  # self weight 1/deg_i with deg_i ≤ k
    assert bool((torch.bincount(ei[0], minlength=num) >= k).all())  # k kept per node (itself included), then ∪ Wᵀ
    blocks = torch.arange(num) // n
    assert bool((blocks[ei[0]] == blocks[ei[1]]).all())  # no edge between two sets
    _, lap = gaussian_knn_graph(x, k, m, output="L")
    lap = lap.to_dense().numpy()
    np.testing.assert_array_equal(lap, lap.T)
    assert np.abs(lap.sum(1)).max() <= 1e-12 * scale_of(lap)
    off = wd.numpy() - np.diag(wd.diagonal().numpy())
    np.testing.assert_allclose(lap, np.diag(off.sum(1)) - off, rtol=0, atol=1e-12)  # L = diag(W1) − W (loops cancel)
    assert np.linalg.eigvalsh(lap)[0] >= -1e-12  # PSD (entries ≤ 1, n ≤ 36: eigvalsh error ≤ 1e-14)


# a graph operator built from a matrix the library did not make still follows the kind's promises
@given(g=graphs(min_n=2))
def test_operator_flags_match_the_kind(g):
    for kind in KINDS:
        op = graph_operator(g.edge_index, g.n, kind, g.edge_weight, dtype=torch.float64)
        assert op.symmetric == (kind in SYMMETRIC)  # 'rw' is treated as non-symmetric (its similarity is used)
        assert op.nonpositive_offdiag
        if kind in MARKOV:
            assert op.zero_row_sums and op.markov
        user = as_operator(torch.from_numpy(op.scipy.toarray()))  # the same matrix with no metadata
        assert user.markov == op.markov and user.max_diag == op.max_diag
