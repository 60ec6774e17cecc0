"""The one COIN head (nsde_coin.graph.head) as used by COIN, the few-shot heads and the COVID model, and the one
stacking utility (nsde_coin.stacked) as used by COINEnsemble: each use equals COIN on the same weights."""

import numpy as np
import pytest
import torch
from problems import ring_graph

from nsde_coin.apps.covid import CovidBase, CovidConfig, _coin_forward
from nsde_coin.apps.fewshot import _task_heads
from nsde_coin.graph.coin import COIN, COINBase
from nsde_coin.graph.diffusion import diffuse
from nsde_coin.graph.ensemble import COINEnsemble
from nsde_coin.graph.head import LOG_FLOOR, dropout_diffusion, head_log, head_outputs
from nsde_coin.graph.knn import gaussian_knn_edges, weighted_laplacian
from nsde_coin.graph.laplacian import laplacian
from nsde_coin.graph.layers import GraphDiffusion
from nsde_coin.stacked import init_copies, load_copy, module_fn, stack_parameters

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta state")
F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_fewshot_heads_equal_coin_forward_per_task():
    b, n, d, c, k, s2 = 3, 20, 8, 4, 6, 0.3
    x = torch.randn(b, n, d, generator=_gen(0), dtype=F64)
    x = x / x.norm(dim=-1, keepdim=True)
    ei, ew, nn_ = gaussian_knn_edges(x, 8, 4)
    lap = weighted_laplacian(ei, ew, nn_).to(F64)  # block-diagonal over the B tasks
    dense = lap.to_dense()
    coins = [COIN(d, c, layer_num=k, sigma2=s2, generator=_gen(10 + i), dtype=F64) for i in range(b)]
    params = stack_parameters([m.base for m in coins])
    logits, u = _task_heads(params, x, GraphDiffusion(s2, k, cached=False), lap)
    ns = 5
    logp = head_log(logits[:, :ns], u[:, :ns])
    for i, m in enumerate(coins):
        blk = dense[i * n:(i + 1) * n, i * n:(i + 1) * n]
        # float64 throughout; measured max |difference| 0 (the same products per block), tolerance far above it
        np.testing.assert_allclose(u[i].detach().numpy(), m(x[i], blk).detach().numpy(), atol=1e-12)
        np.testing.assert_allclose(logp[i].detach().numpy(), m.log_prob(x[i], blk)[:ns].detach().numpy(),
                                   atol=1e-12)
    # layer_num = 0: the base alone, log u = log_softmax exactly as COIN's ablation
    logits0, u0 = _task_heads(params, x, None, None)
    base = COIN(d, c, layer_num=0, generator=_gen(10), dtype=F64)
    np.testing.assert_allclose(u0[0].detach().numpy(), base(x[0], dense[:n, :n]).detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(head_log(logits0[0]).detach().numpy(),
                               base.log_prob(x[0], dense[:n, :n]).detach().numpy(), atol=1e-12)


def test_covid_head_equals_coin_diffusion_and_keeps_its_dropout_stream():
    n, layers, runs = 30, 4, 3
    lap = laplacian(ring_graph(n, 25, seed=1), n)
    x = torch.randn(n, 8, generator=_gen(1))
    cfg = CovidConfig(layers=layers, sigma2=0.3, dropout=0.25)
    template, params = init_copies(lambda: CovidBase(8, 16), [1, 2, 3])
    forward = _coin_forward(module_fn(template), {"val": lap}, {"val": x}, layers, cfg)
    out = forward(params, "val", False, _gen(5))
    assert out.shape == (runs, n)
    for r in range(runs):
        base = load_copy(CovidBase(8, 16), params, r)
        coin = COIN(base=base, layer_num=layers, sigma2=cfg.sigma2)  # COIN's diffusion of the same base outputs
        ref = coin.diffusion(base(x), lap)[:, 0]
        # float32 values of size ~1 (vmapped vs single base, one 4-step call vs four 1-step calls): measured max
        # |difference| 7e-7 over both comparisons here, 14× below the tolerance
        np.testing.assert_allclose(out[r].detach().numpy(), ref.detach().numpy(), atol=1e-5)
    # training: [dropout -> one step] x layers, masks drawn in layer order from the given generator
    got = forward(params, "val", True, _gen(7))
    g = _gen(7)
    u = torch.stack([load_copy(CovidBase(8, 16), params, r)(x)[:, 0] for r in range(runs)]).T
    for _ in range(layers):
        u = u * ((torch.rand(u.shape, generator=g) >= 0.25).float() / 0.75)
        u = diffuse(u, lap, cfg.sigma2, 1)
    np.testing.assert_allclose(got.detach().numpy(), u.T.detach().numpy(), atol=1e-5)  # float32, as above


def test_head_pieces():
    logits = torch.randn(5, 3, generator=_gen(2), dtype=F64)
    torch.testing.assert_close(head_outputs(logits), logits.softmax(-1), rtol=1e-14, atol=0)  # another sum order
    assert torch.equal(head_outputs(logits, probabilities=False), logits)
    u = torch.tensor([[0.5, 0.5, 0.0], [1.0, -0.1, 0.1]], dtype=F64)
    assert torch.equal(head_log(logits[:2], u), torch.log(u.clamp_min(LOG_FLOOR)))
    assert float(head_log(logits[:2], u).min()) == pytest.approx(np.log(LOG_FLOOR))
    twice = dropout_diffusion(lambda v: 0.5 * v, 2)
    assert torch.equal(twice(logits), 0.25 * logits)


def test_ensemble_member_equals_coin_with_its_weights():
    n, d, c = 24, 7, 3
    ei = ring_graph(n, 30, seed=3)
    x = torch.rand(n, d, generator=_gen(4), dtype=F64)
    x[x < 0.6] = 0.0
    seeds = [11, 12, 13]
    ens = COINEnsemble(3, d, c, layer_num=5, sigma2=0.2, seeds=seeds, dtype=F64)
    ens.set_graph(ei, n)
    out, logp = ens(x.to_sparse_csr()), ens.log_prob(x)
    for i, s in enumerate(seeds):
        torch.manual_seed(s)
        alone = COIN(d, c, layer_num=5, sigma2=0.2, dtype=F64)  # seeds=: member i is this COIN's initialisation
        for name, p in alone.base.named_parameters():
            assert torch.equal(getattr(ens, name)[i], p)
        alone.set_graph(ei, n)
        # float64; sparse stacked kernel vs the single-model kernel, measured max |difference| ~1e-16
        np.testing.assert_allclose(out[i].detach().numpy(), alone(x).detach().numpy(), atol=1e-12)
        np.testing.assert_allclose(logp[i].detach().numpy(), alone.log_prob(x).detach().numpy(), atol=1e-12)
        mem = ens.member(i)
        assert all(torch.equal(p, q) for p, q in zip(mem.parameters(), alone.parameters()))
    assert not torch.equal(ens.W1[0], ens.W1[1])
    with pytest.raises(ValueError, match="one seed per member"):
        COINEnsemble(2, d, c, seeds=[1])


def test_stacking_round_trip_and_mismatch():
    mods = [COINBase(4, 2, generator=_gen(i)) for i in range(3)]
    params = stack_parameters(mods)
    assert params["W1"].shape == (3, 4, 4) and not params["W1"].requires_grad
    back = load_copy(COINBase(4, 2), params, 2)
    assert all(torch.equal(p, q) for p, q in zip(back.parameters(), mods[2].parameters()))
    with pytest.raises(ValueError, match="does not have the parameters of module 0"):
        stack_parameters([COINBase(4, 2), COINBase(5, 2)])
    with pytest.raises(ValueError, match="do not match the module's"):
        load_copy(CovidBase(8, 16), params, 0)
    from nsde_coin.apps import ensemble as old  # the old import path is the same utility

    assert old.init_copies is init_copies and old.stack_parameters is stack_parameters


@pytest.mark.parametrize("shape", [(50, 7), (3, 40, 5), (30, 16), (20, 1)])
def test_few_class_softmax_equals_torch_with_its_gradient(shape):
    """The head's softmax runs along a transposed copy below 16 classes (torch's last-axis kernel is slow there):
    the same values, log-values and gradients as torch's, and a contiguous result of the input's shape."""
    from nsde_coin.graph.head import _class_softmax

    x = torch.randn(*shape, generator=_gen(9), dtype=F64, requires_grad=True)
    w = torch.randn(*shape, generator=_gen(10), dtype=F64)
    for log, ref in ((False, torch.softmax), (True, torch.log_softmax)):
        got, want = _class_softmax(x, log=log), ref(x, -1)
        assert got.shape == x.shape and got.is_contiguous()
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
        (g_got,) = torch.autograd.grad((got * w).sum(), x)
        (g_want,) = torch.autograd.grad((want * w).sum(), x)
        torch.testing.assert_close(g_got, g_want, rtol=1e-12, atol=1e-14)
