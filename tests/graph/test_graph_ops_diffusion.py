"""Graph diffusion solvers: closed forms, convergence, invariants, random walks vs their deterministic mirrors,
the stability guard, custom autograd vs plain autograd, gradchecks, bad inputs."""

import numpy as np
import pytest
import scipy.linalg
import torch
from problems import ring_graph

from nsde_coin.graph.diffusion import PositivityWarning, diffuse, stability_report
from nsde_coin.graph.laplacian import as_operator, laplacian
from nsde_coin.solvers import get_solver, list_solvers

N, C = 20, 3


def _graph(n=N, extra=30, seed=0):
    """A connected random graph: a ring plus random chords."""
    return ring_graph(n, extra, seed)


def _lap(kind="paper", n=N):
    return laplacian(_graph(n), n, kind, dtype=torch.float64)


def _probs(n=N, c=C, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(3 * torch.randn(n, c, generator=g, dtype=torch.float64), 1)


def _dense(lap):
    return lap.to_dense().numpy()


def test_registry_entries():
    graph = {s.name: s for s in list_solvers("graph")}
    assert set(graph) == {"explicit", "implicit", "exact", "random_walk"}
    assert graph["implicit"].unconditionally_stable and graph["exact"].unconditionally_stable
    assert not graph["explicit"].unconditionally_stable and graph["explicit"].weak_order == 1.0
    assert graph["random_walk"].stochastic and not graph["exact"].stochastic
    assert all(s.impl is not None and s.backend == "nsde_coin" for s in graph.values())


@pytest.mark.parametrize("kind", ["paper", "rw", "sym", "comb"])
def test_deterministic_solvers_match_dense_closed_forms(kind):
    lap = _lap(kind)
    dense, u = _dense(lap), _probs()
    s, k = 0.3 / as_operator(lap).lambda_max, 7
    ex = np.linalg.matrix_power(np.eye(N) - s * dense, k) @ u.numpy()
    np.testing.assert_allclose(diffuse(u, lap, s, k).numpy(), ex, atol=1e-13)
    im = u.numpy()
    for _ in range(k):
        im = np.linalg.solve(np.eye(N) + s * dense, im)
    np.testing.assert_allclose(diffuse(u, lap, s, k, solver="implicit").numpy(), im, atol=1e-10)
    heat = scipy.linalg.expm(-s * k * dense) @ u.numpy()
    np.testing.assert_allclose(diffuse(u, lap, s, k, solver="exact").numpy(), heat, atol=1e-12)


def test_general_nonsymmetric_matrix_uses_lu_and_matches():
    rw = _dense(_lap("rw"))
    user = torch.from_numpy(rw.copy())  # a plain dense tensor: no 'rw' metadata, so the generic path is used
    op = as_operator(user)
    assert not op.symmetric and op.similarity is None
    u = _probs()
    im = u.numpy()
    for _ in range(5):
        im = np.linalg.solve(np.eye(N) + 0.4 * rw, im)
    np.testing.assert_allclose(diffuse(u, user, 0.4, 5, solver="implicit").numpy(), im, atol=1e-12)
    with pytest.raises(ValueError, match="solver='exact' needs a symmetric Laplacian"):
        diffuse(u, user, 0.4, 5, solver="exact")


@pytest.mark.parametrize("solver", ["implicit", "explicit"])
def test_first_order_convergence_to_exact(solver):
    lap, u, t = _lap(), _probs(), 1.5
    ref = diffuse(u, lap, t=t, steps=1, solver="exact")
    errs = [float((diffuse(u, lap, t=t, steps=k, solver=solver) - ref).abs().max()) for k in (8, 16, 32, 64)]
    ratios = np.array(errs[:-1]) / np.array(errs[1:])
    assert np.all(ratios > 1.8) and np.all(ratios < 2.2), (errs, ratios)  # error ∝ 1/steps
    assert errs[-1] < 5e-3


@pytest.mark.parametrize("kind", ["paper", "rw", "comb"])
@pytest.mark.parametrize("solver", ["explicit", "implicit", "exact"])
def test_row_sums_preserved(kind, solver):
    lap, u = _lap(kind), _probs()
    s = 0.9 / as_operator(lap).lambda_max
    out = diffuse(u, lap, s, 10, solver=solver)
    np.testing.assert_allclose(out.sum(1).numpy(), 1.0, atol=1e-10)


@pytest.mark.parametrize("walk", ["discrete", "continuous"])
def test_random_walk_rows_sum_to_one(walk):
    lap, u = _lap(), _probs()
    out = diffuse(u, lap, 0.1, 5, solver="random_walk", walk=walk, samples=50)
    np.testing.assert_allclose(out.sum(1).numpy(), 1.0, atol=1e-12)


@pytest.mark.parametrize("kind", ["paper", "sym", "comb"])
@pytest.mark.parametrize("solver", ["explicit", "implicit", "exact"])
def test_symmetric_operator_stays_symmetric(kind, solver):
    lap = _lap(kind)
    s = 0.5 / as_operator(lap).lambda_max
    out = diffuse(torch.eye(N, dtype=torch.float64), lap, s, 6, solver=solver).numpy()
    np.testing.assert_allclose(out, out.T, atol=1e-12)
    assert np.abs(out - np.eye(N)).max() > 1e-2  # it did diffuse


def test_nonnegativity():
    lap, u = _lap(), _probs()
    op = as_operator(lap)
    s_pos = 1.0 / op.max_diag
    assert diffuse(u, lap, s_pos, 30).min() >= 0  # I − sL ≥ 0: stochastic matrix
    for solver in ("implicit", "exact"):
        assert diffuse(u, lap, 50.0, 3, solver=solver).min() >= -1e-12
    # past the non-negativity bound (but stable) a point mass goes negative, with a warning
    s_bad = 1.9 / op.lambda_max
    assert s_bad * op.max_diag > 1
    spike = torch.zeros(N, 1, dtype=torch.float64)
    spike[int(np.argmax(np.diag(_dense(lap))))] = 1.0
    with pytest.warns(PositivityWarning, match="non-negativity bound"):
        out = diffuse(spike, lap, s_bad, 1)
    assert out.min() < 0


def test_stability_guard_triggers_exactly_at_two():
    lap, u = _lap(), _probs()
    lam = float(np.linalg.eigvalsh(_dense(lap)).max())
    with pytest.warns(PositivityWarning):
        diffuse(u, lap, 2 / lam * (1 - 1e-6), 3)  # just below: runs
    with pytest.raises(ValueError, match=r"= 2\.00000\d* ≥ 2 \(stable iff sigma2 < 2/lambda_max = .*implicit"):
        diffuse(u, lap, 2 / lam * (1 + 1e-6), 3)
    rep = stability_report(lap, 0.1)
    assert rep["max_sigma2"] == pytest.approx(2 / lam, rel=1e-8)
    assert rep["sigma2_lambda_max"] == pytest.approx(0.1 * lam, rel=1e-8)


def test_allow_unstable_reproduces_blow_up():
    lap = _lap()
    w, v = np.linalg.eigh(_dense(lap))
    top = torch.from_numpy(v[:, -1:].copy())
    s, k = 2.5 / w[-1], 12
    with pytest.warns(PositivityWarning):
        out = diffuse(top, lap, s, k, allow_unstable=True)
    # the top mode is multiplied by (1 − sλ)^k = (−1.5)^12 ≈ 129.7
    np.testing.assert_allclose(out.numpy(), (1 - s * w[-1]) ** k * v[:, -1:], rtol=1e-8)
    assert abs(out).max() > 100 * abs(top).max()


def _z_scores(mean, err, ref):
    mask = err > 0
    return ((mean - ref).abs()[mask] / err[mask]).numpy()


def test_discrete_walk_matches_explicit():
    lap, u = _lap(), _probs()
    s, k = 0.8 / as_operator(lap).max_diag, 6
    mean, err = diffuse(u, lap, s, k, solver="random_walk", walk="discrete", samples=4000, return_stderr=True,
                        generator=torch.Generator().manual_seed(3))
    ref = diffuse(u, lap, s, k, solver="explicit")
    z = _z_scores(mean, err, ref)
    assert z.size > N and z.max() < 4.0, z.max()
    # the test can fail: the continuous-time expectation is a different vector, far from these estimates
    assert _z_scores(mean, err, diffuse(u, lap, s, k + 3, solver="explicit")).max() > 4


def test_continuous_walk_matches_exact():
    lap, u = _lap(), _probs()
    s, k = 1.0, 2  # any σ² works in continuous time (here σ²·max L_ii > 1)
    assert s * as_operator(lap).max_diag > 1
    mean, err = diffuse(u, lap, s, k, solver="random_walk", walk="continuous", samples=4000, return_stderr=True,
                        seed=7)
    ref = diffuse(u, lap, s, k, solver="exact")
    z = _z_scores(mean, err, ref)
    assert z.size > N and z.max() < 4.0, z.max()
    assert err.max() < 0.02


def test_random_walk_reproducible_and_nodes_subset():
    lap, u = _lap("rw"), _probs()
    a = diffuse(u, lap, 0.3, 4, solver="random_walk", samples=200, seed=5)
    b = diffuse(u, lap, 0.3, 4, solver="random_walk", samples=200, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    nodes = torch.tensor([3, 0, 7])
    mean, err = diffuse(u, lap, 0.3, 4, solver="random_walk", samples=3000, nodes=nodes, return_stderr=True)
    assert mean.shape == (3, C)
    ref = diffuse(u, lap, 0.3, 4)[nodes]
    assert _z_scores(mean, err, ref).max() < 4.0


def test_random_walk_rejects_non_generators():
    u = _probs()
    with pytest.raises(ValueError, match="kinds paper, rw, comb; got kind='sym'"):
        diffuse(u, _lap("sym"), 0.1, 3, solver="random_walk")
    lap = _lap()
    big = 1.5 / as_operator(lap).max_diag
    with pytest.raises(ValueError, match="sigma2·max_i L_ii ≤ 1.*walk='continuous'"):
        diffuse(u, lap, big, 3, solver="random_walk")
    with pytest.raises(ValueError, match="valid choices: discrete, continuous"):
        diffuse(u, lap, 0.1, 3, solver="random_walk", walk="levy")


def test_layer_num_zero_is_identity_and_batched_shapes():
    lap, u = _lap(), _probs()
    for solver in ("explicit", "implicit", "exact", "random_walk"):
        assert torch.equal(diffuse(u, lap, 0.3, 0, solver=solver), u)
    batch = torch.stack([u, u.flip(1)])
    out = diffuse(batch, lap, 0.1, 5, solver="implicit")
    assert out.shape == (2, N, C)
    np.testing.assert_allclose(out[1].numpy(), diffuse(u.flip(1), lap, 0.1, 5, solver="implicit").numpy(),
                               atol=1e-12)
    vec = diffuse(u[:, 0], lap, 0.1, 5)
    assert vec.shape == (N,)
    np.testing.assert_allclose(vec.numpy(), diffuse(u, lap, 0.1, 5)[:, 0].numpy(), atol=1e-14)


@pytest.mark.parametrize("kind", ["paper", "rw"])
def test_custom_autograd_equals_plain_sparse_autograd(kind):
    lap = _lap(kind)
    coo = lap.to_sparse_coo()
    s, k = 0.2, 8
    g = torch.Generator().manual_seed(0)
    u = torch.randn(N, C, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(N, C, generator=g, dtype=torch.float64)
    fast = diffuse(u, lap, s, k)
    (gf,) = torch.autograd.grad((fast * w).sum(), u)
    v = u
    for _ in range(k):
        v = v - s * torch.sparse.mm(coo, v)
    (gs,) = torch.autograd.grad((v * w).sum(), u)
    np.testing.assert_allclose(fast.detach().numpy(), v.detach().numpy(), atol=1e-13)
    np.testing.assert_allclose(gf.numpy(), gs.numpy(), atol=1e-13)


@pytest.mark.parametrize("kind", ["paper", "rw"])
@pytest.mark.parametrize("solver", ["explicit", "implicit", "exact"])
def test_gradcheck(kind, solver):
    n = 8
    lap = laplacian(_graph(n, 6), n, kind, dtype=torch.float64)
    u = torch.randn(n, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: diffuse(x, lap, 0.2, 4, solver=solver), (u,))


def test_gradcheck_generic_lu_path():
    lap = torch.from_numpy(_dense(laplacian(_graph(8, 6), 8, "rw", dtype=torch.float64)).copy())
    u = torch.randn(8, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: diffuse(x, lap, 0.3, 3, solver="implicit"), (u,))


@pytest.mark.parametrize("kwargs, exc, fragment", [
    (dict(sigma2=0.0, layer_num=3), ValueError, "sigma2 must be a finite number > 0, got 0.0"),
    (dict(sigma2=-1, layer_num=3), ValueError, "got -1"),
    (dict(sigma2=float("inf"), layer_num=3), ValueError, "got inf"),
    (dict(sigma2=0.1, layer_num=-1), ValueError, "layer_num must be an int ≥ 0"),
    (dict(sigma2=0.1, layer_num=2.5), ValueError, "got 2.5"),
    (dict(sigma2=0.1, layer_num=3, solver="rk4"), ValueError,
     "unknown graph solver 'rk4'; valid choices: exact, explicit, implicit, random_walk"),
    (dict(sigma2=0.1, layer_num=3, t=1.0), ValueError, "not both"),
    (dict(t=1.0), ValueError, "t and steps go together"),
    (dict(sigma2=0.1, layer_num=3, nodes=torch.tensor([0])), ValueError, "applies to solver='random_walk' only"),
])
def test_bad_parameters(kwargs, exc, fragment):
    with pytest.raises(exc, match=fragment):
        diffuse(_probs(), _lap(), **kwargs)


def test_bad_u():
    lap = _lap()
    u = _probs()
    u[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        diffuse(u, lap, 0.1, 2)
    with pytest.raises(ValueError, match="Inf"):
        diffuse(torch.full((N, 2), float("inf"), dtype=torch.float64), lap, 0.1, 2)
    with pytest.raises(TypeError, match="floating-point"):
        diffuse(torch.ones(N, 2, dtype=torch.long), lap, 0.1, 2)
    with pytest.raises(ValueError, match=r"shape \(n,\), \(n, C\) or \(B, n, C\) with n = 20"):
        diffuse(torch.ones(N + 1, 2), lap, 0.1, 2)
    with pytest.raises(TypeError, match="must be a str"):
        get_solver(3, "graph")
