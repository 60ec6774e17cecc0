"""Node certificates of COIN (nsde_coin.certify.graph): brute-force soundness and tightness on small random graphs."""

import itertools

import pytest
import torch
from torch_geometric.data import Data

from nsde_coin.certify import certify_nodes, diffusion_rows
from nsde_coin.graph.coin import COIN
from nsde_coin.graph.diffusion import diffuse


def _graph(n: int, p_edge: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, n, generator=g) < p_edge
    a = torch.triu(a, 1)
    a[torch.arange(n - 1), torch.arange(1, n)] = True  # a path keeps it connected
    i, j = a.nonzero(as_tuple=True)
    return torch.stack([torch.cat([i, j]), torch.cat([j, i])])


def _model(n=7, C=3, d=4, layer_num=3, sigma2=0.3, solver="implicit", seed=0):
    g = torch.Generator().manual_seed(seed)
    data = Data(x=2.0 * torch.randn(n, d, generator=g, dtype=torch.float64), edge_index=_graph(n, 0.35, seed))
    coin = COIN(d, C, layer_num=layer_num, sigma2=sigma2, solver=solver, generator=g, dtype=torch.float64)
    with torch.no_grad():
        coin.base.W2.mul_(4.0)  # confident base predictions: a mix of certified and uncertified nodes
    coin.set_graph(data.edge_index, n)
    return coin, data


def _structured(n=8, C=3, layer_num=4, sigma2=0.5, solver="implicit", seed=0):  # noqa: D103
    """Two homophilous clusters and confident, mostly right base predictions: certificates with k >= 1 exist even
    when node i itself may change (on unstructured tiny graphs the diffused margins are too small for that)."""
    g = torch.Generator().manual_seed(seed)
    cls = torch.arange(n) % 2
    a = (torch.rand(n, n, generator=g) < 0.15) | (cls[:, None] == cls[None, :]) & (torch.rand(n, n, generator=g) < 0.8)
    a = torch.triu(a, 1)
    a[torch.arange(n - 1), torch.arange(1, n)] = True
    i, j = a.nonzero(as_tuple=True)
    ei = torch.stack([torch.cat([i, j]), torch.cat([j, i])])
    x = 1.5 * torch.nn.functional.one_hot(cls, C).double() + 0.7 * torch.randn(n, C, generator=g, dtype=torch.float64)
    coin = COIN(C, C, layer_num=layer_num, sigma2=sigma2 or 0.3, solver=solver, generator=g, dtype=torch.float64)
    with torch.no_grad():
        coin.base.W1.zero_()
        coin.base.b1.zero_()
        coin.base.W2.copy_(3.0 * torch.eye(C))
        coin.base.b2.zero_()
    coin.set_graph(ei, n)
    if sigma2 is None:  # explicit at its non-negativity bound sigma2 = 1 / max L_ii
        coin.sigma2 = 1.0 / coin.operator.max_diag
    return coin, Data(x=x, edge_index=ei)


def _attacked_margin(P, p, i, a, b, S):
    """u'_ia − u'_ib after the worst-case attack p'_j = e_b for j in S (P: the solver's map, from diffuse)."""
    q = p.clone()
    q[list(S)] = 0.0
    q[list(S), b] = 1.0
    u = P[i] @ q
    return float(u[a] - u[b])


CASES = [(_model, "implicit", 3, 0.3, 0), (_model, "exact", 4, 0.4, 1), (_model, "explicit", 5, 0.25, 2),
         (_model, "implicit", 0, 1.0, 3), (_structured, "exact", 6, 0.5, 0), (_structured, "implicit", 8, 0.6, 0),
         (_structured, "explicit", 12, None, 0)]


@pytest.mark.parametrize("make,solver,layer_num,sigma2,seed", CASES)
@pytest.mark.parametrize("include_self", [True, False])
def test_brute_force_sound_and_tight(make, solver, layer_num, sigma2, seed, include_self):
    coin, data = make(layer_num=layer_num, sigma2=sigma2, solver=solver, seed=seed)
    k_max = 3
    cert = certify_nodes(coin, data, k_max, include_self=include_self)
    with torch.no_grad():
        p = coin.logits(data.x).softmax(-1)
        u = coin(data.x)
    assert torch.equal(cert.prediction, u.argmax(1))
    n, C = p.shape
    # the map itself, by the solver (independent of certify's row extraction): P = diffuse(I); u = P p
    P = diffuse(torch.eye(n, dtype=torch.float64), coin.operator, coin.sigma2, coin.layer_num, solver=coin.solver)
    assert torch.allclose(P @ p, u, atol=1e-9)
    seen_cert, seen_tight = 0, 0
    for i in range(n):
        a, k_i = int(cert.prediction[i]), int(cert.certified_k[i])
        pool = [j for j in range(n) if include_self or j != i]
        worst = {}  # k -> min over |S| = k, b of the attacked margin
        for k in range(1, k_max + 1):
            worst[k] = min(_attacked_margin(P, p, i, a, b, S) for b in range(C) if b != a
                           for S in itertools.combinations(pool, min(k, len(pool))))
        for k in range(1, k_max + 1):
            if k <= k_i:  # certified: the strongest attack of this size leaves a strictly ahead
                assert worst[k] > 0, (i, k, worst[k])
                seen_cert += 1
        if 0 <= k_i < k_max:  # tight: one more node is enough to tie or flip (margins equal up to float error)
            assert worst[k_i + 1] <= 1e-6 + 1e-9, (i, k_i, worst[k_i + 1])
            seen_tight += 1
    if layer_num == 0 and include_self:
        assert int(cert.certified_k.max()) == 0  # base alone: changing node i itself can set p_i = e_b
    if layer_num == 0 and not include_self:
        assert bool((cert.certified_k == k_max).all())  # base alone: other nodes cannot reach node i
    assert seen_cert + seen_tight > 0
    if make is _structured:
        assert int(cert.certified_k.max()) >= 1  # non-trivial certificates are part of what is checked


@pytest.mark.parametrize("solver,layer_num,sigma2", [("implicit", 6, 0.8), ("exact", 5, 1.5),
                                                     ("explicit", 4, 0.2)])
def test_map_nonnegative_where_claimed(solver, layer_num, sigma2):
    coin, data = _model(n=9, layer_num=layer_num, sigma2=sigma2, solver=solver, seed=4)
    rows = diffusion_rows(coin, coin.operator, torch.arange(9))
    assert float(rows.min()) >= -1e-12  # measured min −3e-17 (exact, Chebyshev round-off)
    assert torch.allclose(rows.sum(1), torch.ones(9, dtype=torch.float64), atol=1e-9)  # zero row sums of L


def test_explicit_past_nonnegativity_bound_refused():
    coin, data = _model(layer_num=20, sigma2=0.9, solver="explicit", seed=5)
    coin.allow_unstable = True
    coin.sigma2 = 1.05 / coin.operator.max_diag  # just past the bound, still stable (sigma2·lambda_max < 2)
    with pytest.raises(ValueError, match="not entrywise non-negative.*implicit"):
        certify_nodes(coin, data, 2)


def test_random_walk_and_mixing_base_refused():
    coin, data = _model(solver="random_walk")
    with pytest.raises(ValueError, match="solver='random_walk' is not valid"):
        certify_nodes(coin, data, 1)
    coin, data = _model()

    class Mixing(torch.nn.Module):
        def forward(self, x):
            return x.mean(0, keepdim=True).expand(x.shape[0], -1)[:, :3]

    coin.base = Mixing()
    with pytest.raises(TypeError, match="mix neighbours"):
        certify_nodes(coin, data, 1)
    with pytest.raises(TypeError, match="needs a COIN"):
        certify_nodes(torch.nn.Linear(2, 2), data, 1)


def test_accuracy_curve_monotone_and_subset_nodes():
    coin, data = _model(n=12, layer_num=4, sigma2=0.3, seed=6)
    y = torch.randint(0, 3, (12,), generator=torch.Generator().manual_seed(0))
    full = certify_nodes(coin, data, 4, include_self=False, chunk=5)
    part = certify_nodes(coin, data, 4, include_self=False, nodes=torch.tensor([3, 7, 11]))
    assert torch.equal(part.certified_k, full.certified_k[[3, 7, 11]])
    acc = full.accuracy(y)
    assert all(x >= y_ for x, y_ in zip(acc, acc[1:]))
    assert acc[0] == pytest.approx(float((full.prediction == y).double().mean()))
