"""COIN: the base ResNet formula with sparse and dense features, gradchecks, the diffusion head, safe logs, the
ensemble's exact equivalence to independent models under Adam, and bad inputs."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from problems import ring_graph

from nsde_coin.graph.coin import COIN, COINBase, COINEnsemble, base_logits, node_nll_loss
from nsde_coin.graph.diffusion import PositivityWarning, diffuse
from nsde_coin.graph.laplacian import as_operator, graph_operator, laplacian

N, D, C = 16, 6, 3
pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta state")


def _graph(n=N, extra=20, seed=0):
    return ring_graph(n, extra, seed)


def _features(n=N, d=D, seed=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g, dtype=torch.float64)
    x[x < 0.6] = 0.0  # sparse bag-of-words-like rows
    return x


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_base_formula_dense_and_sparse():
    m = COINBase(D, C, generator=_gen(), dtype=torch.float64)
    x = _features()
    ref = (x + torch.relu(x @ m.W1 + m.b1)) @ m.W2.t() + m.b2
    for xin in (x, x.to_sparse_csr(), x.to_sparse_coo()):
        np.testing.assert_allclose(m(xin).detach().numpy(), ref.detach().numpy(), atol=1e-13)
    # gradients with respect to the weights agree between the sparse and the dense path
    grads = []
    for xin in (x, x.to_sparse_csr()):
        m.zero_grad()
        (m(xin) ** 2).sum().backward()
        grads.append([p.grad.clone() for p in m.parameters()])
    for a, b in zip(*grads):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-12)


def test_initialisation_is_seeded_and_linear_like():
    a = COINBase(D, C, generator=_gen(5))
    b = COINBase(D, C, generator=_gen(5))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert float(a.W1.detach().abs().max()) <= 1 / np.sqrt(D)
    assert a.W1.shape == (D, D) and a.W2.shape == (C, D)


def test_gradcheck_base_sparse_features():
    x = _features().to_sparse_csr()
    g = _gen(1)
    params = [torch.randn(s, generator=g, dtype=torch.float64, requires_grad=True)
              for s in ((1, D, D), (1, D), (1, C, D), (1, C))]
    assert torch.autograd.gradcheck(lambda *p: base_logits(x, *p), params)


@pytest.mark.parametrize("solver", ["explicit", "implicit", "exact"])
def test_gradcheck_coin(solver):
    x = _features().to_sparse_csr()
    lap = laplacian(_graph(), N, dtype=torch.float64)
    g = _gen(2)
    params = [torch.randn(s, generator=g, dtype=torch.float64, requires_grad=True)
              for s in ((1, D, D), (1, D), (1, C, D), (1, C))]

    def f(*p):
        return diffuse(base_logits(x, *p)[0].softmax(-1), lap, 0.1, 5, solver=solver).log()

    assert torch.autograd.gradcheck(f, params)


def test_coin_equals_base_then_diffusion_and_preserves_rows():
    x = _features()
    ei = _graph()
    m = COIN(D, C, layer_num=7, sigma2=0.15, generator=_gen(), dtype=torch.float64)
    u = m(x.to_sparse_csr(), ei)
    lap = laplacian(ei, N, "paper", dtype=torch.float64)
    ref = diffuse(m.base(x).softmax(-1), lap, 0.15, 7)
    np.testing.assert_allclose(u.detach().numpy(), ref.detach().numpy(), atol=1e-13)
    np.testing.assert_allclose(u.sum(1).detach().numpy(), 1.0, atol=1e-12)
    # set_graph once, then forward without a graph: same result
    m.set_graph(ei, N)
    np.testing.assert_allclose(m(x).detach().numpy(), u.detach().numpy(), atol=1e-14)
    assert m(x, ei) is not None and m._operator(ei, N) is m._operator(ei, N)  # the edge_index operator is cached


def test_layer_num_zero_is_the_base_model():
    x = _features()
    m = COIN(D, C, layer_num=0, generator=_gen(), dtype=torch.float64)
    m.set_graph(_graph(), N)
    logits = m.base(x)
    np.testing.assert_allclose(m(x).detach().numpy(), logits.softmax(-1).detach().numpy(), atol=1e-15)
    np.testing.assert_allclose(m.log_prob(x).detach().numpy(), F.log_softmax(logits, -1).detach().numpy(),
                               atol=1e-15)


@pytest.mark.parametrize("solver", ["implicit", "exact", "random_walk"])
def test_other_solvers_in_coin(solver):
    x = _features()
    m = COIN(D, C, layer_num=4, sigma2=0.3, solver=solver, generator=_gen(), dtype=torch.float64,
             solver_options={"samples": 64, "walk": "continuous"} if solver == "random_walk" else None)
    m.set_graph(_graph(), N)
    lp = m.log_prob(x)
    assert lp.shape == (N, C) and torch.isfinite(lp).all()
    np.testing.assert_allclose(lp.exp().sum(1).detach().numpy(), 1.0, atol=1e-9)
    assert m.last_negative_fraction == 0.0


def _unstable_setup():
    ei = _graph()
    op = graph_operator(ei, N, "paper", dtype=torch.float64)
    sigma2 = 2.3 / op.lambda_max  # past the stability bound
    return op, sigma2


def test_unstable_sigma_needs_opt_in_and_is_clamped_and_flagged():
    op, sigma2 = _unstable_setup()
    x = _features()
    m = COIN(D, C, layer_num=30, sigma2=sigma2, generator=_gen(3), dtype=torch.float64)
    m.set_graph(op)
    with pytest.raises(ValueError, match="allow_unstable=True"):
        m.log_prob(x)
    m = COIN(D, C, layer_num=30, sigma2=sigma2, allow_unstable=True, generator=_gen(3), dtype=torch.float64)
    m.set_graph(op)
    with pytest.warns(PositivityWarning):
        lp = m.log_prob(x)
    u = m(x)
    neg = float((u.detach() <= 0).double().mean())
    assert neg > 0 and m.last_negative_fraction == pytest.approx(neg)
    assert m.last_min_prob == pytest.approx(float(u.detach().min()))
    assert torch.isfinite(lp).all() and float(lp.detach().min()) == pytest.approx(np.log(m.eps))
    loss = node_nll_loss(lp, torch.zeros(N, dtype=torch.long))
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters())
    strict = COIN(D, C, layer_num=30, sigma2=sigma2, allow_unstable=True, on_negative="raise",
                  generator=_gen(3), dtype=torch.float64)
    strict.set_graph(op)
    with pytest.raises(ValueError, match="entries ≤ 0"):
        strict.log_prob(x)


def test_ensemble_matches_independent_models_under_adam():
    x = _features().to_sparse_csr()
    op = graph_operator(_graph(), N, dtype=torch.float64)
    y = torch.randint(0, C, (N,), generator=_gen(4))
    idx = torch.arange(0, N, 2)
    models = [COIN(D, C, layer_num=5, sigma2=0.2, generator=_gen(10 + i), dtype=torch.float64) for i in range(3)]
    for m in models:
        m.set_graph(op)
    ens = COINEnsemble.from_models(models)
    out = ens(x)
    assert out.shape == (3, N, C)
    for i, m in enumerate(models):
        np.testing.assert_allclose(out[i].detach().numpy(), m(x).detach().numpy(), atol=1e-14)
    opts = [torch.optim.Adam(m.parameters(), lr=0.05, weight_decay=5e-4) for m in models]
    opt_e = torch.optim.Adam(ens.parameters(), lr=0.05, weight_decay=5e-4)
    for _ in range(5):
        for m, o in zip(models, opts):
            o.zero_grad()
            node_nll_loss(m.log_prob(x), y, idx).backward()
            o.step()
        opt_e.zero_grad()
        losses = node_nll_loss(ens.log_prob(x), y, idx)
        assert losses.shape == (3,)
        losses.sum().backward()
        opt_e.step()
    for i, m in enumerate(models):
        mem = ens.member(i)
        for p, q in zip(m.parameters(), mem.parameters()):
            np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), atol=1e-12)
    assert not torch.allclose(models[0].base.W1, models[1].base.W1)


def test_nll_loss_matches_torch():
    lp = torch.log_softmax(torch.randn(2, N, C, generator=_gen()), -1)
    y = torch.randint(0, C, (N,), generator=_gen(1))
    idx = torch.tensor([1, 4, 5])
    per = node_nll_loss(lp, y, idx)
    for i in range(2):
        assert float(per[i]) == pytest.approx(float(F.nll_loss(lp[i, idx], y[idx])))
    assert float(node_nll_loss(lp[0], y, idx)) == pytest.approx(float(per[0]))


@pytest.mark.parametrize("kwargs, exc, fragment", [
    (dict(solver="euler"), ValueError, "unknown graph solver 'euler'; valid choices: exact, explicit"),
    (dict(laplacian_kind="normalized"), ValueError, "valid choices: paper, sym, rw, comb"),
    (dict(sigma2=0.0), ValueError, "sigma2 must be a finite number > 0, got 0.0"),
    (dict(layer_num=-2), ValueError, "layer_num must be an int ≥ 0"),
    (dict(on_negative="ignore"), ValueError, "valid choices: clamp, raise"),
])
def test_bad_settings(kwargs, exc, fragment):
    with pytest.raises(exc, match=fragment):
        COIN(D, C, **kwargs)


def test_numpy_scalar_settings_are_accepted():
    """sigma2 from a numpy grid (np.float32/np.float64) and layer_num as np.int64 are valid numbers."""
    m = COIN(D, C, layer_num=np.int64(3), sigma2=np.float32(0.25))
    assert m.layer_num == 3 and isinstance(m.sigma2, float) and m.sigma2 == pytest.approx(0.25)


def test_bad_features_and_graphs():
    m = COIN(D, C, layer_num=2, sigma2=0.1)
    x = _features().float()
    with pytest.raises(ValueError, match="no graph"):
        m(x)
    m.set_graph(_graph(), N)
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        m(bad)
    sparse_bad = bad.to_sparse_csr()
    with pytest.raises(ValueError, match="NaN or Inf"):
        m(sparse_bad)
    with pytest.raises(ValueError, match=r"shape \(n, in_dim=6\)"):
        m(torch.ones(N, D + 1))
    with pytest.raises(ValueError, match="has 16 nodes but the features have 15 rows"):
        m(x[:15])
    with pytest.raises(ValueError, match="outside the valid range"):
        m(x, torch.tensor([[0], [N]]))
    with pytest.raises(ValueError, match="num_models must be a positive int"):
        COINEnsemble(0, D, C)


def test_operator_reuse_with_laplacian_tensor():
    lap = laplacian(_graph(), N)
    m = COIN(D, C, layer_num=3, sigma2=0.1)
    m.set_graph(lap)
    assert m.operator is as_operator(lap)
