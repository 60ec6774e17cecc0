"""The panelled sparse base-layer kernel (nsde_coin.graph.sparse_base): forward and gradients equal the dense
float64 reference for every panel width (several panels, a short last one, all-zero feature rows), gradcheck, and
the ones column that folds the biases into the gathers."""

import numpy as np
import pytest
import torch
from problems import bag_of_words

from nsde_coin.graph import native
from nsde_coin.graph.coin import COINBase
from nsde_coin.graph.sparse_base import PANEL, SparseBase, panel_width, sparse_features

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta state")


def _params(d, c, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=torch.float64, requires_grad=True) for s in ((d, d), (d,), (c, d),
                                                                                           (c,))]


def _reference(x, w1, b1, w2, b2):
    return (x + torch.relu(x @ w1 + b1)) @ w2.t() + b2


@pytest.mark.parametrize("n, d, panel", [(12, 10, 1), (12, 10, 3), (12, 10, 4), (12, 10, 10), (12, 10, 64),
                                         (40, 300, PANEL)])
def test_forward_and_gradients_equal_dense_reference(n, d, panel):
    x = bag_of_words(n, d)
    c = 3
    feats = sparse_features(x.to_sparse_csr())
    params = _params(d, c)
    up = torch.randn(n, c, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    out = SparseBase.apply(*params, feats, panel)
    ref = _reference(x, *params)
    # float64: summation order differs (gathers, panelled sums); measured rel. diff ≤ 8e-16, margin > 1000×
    scale = float(ref.detach().abs().max())
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), rtol=0, atol=1e-12 * scale)
    got = torch.autograd.grad(out, params, up)
    want = torch.autograd.grad(ref, params, up)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-12 * max(float(b.abs().max()), 1.0))


def test_panel_width_shrinks_on_large_graphs_only():
    # Cora / CiteSeer keep the widest panel; Coauthor Physics (34493 × 8415) gets 32 columns; always a multiple of 16
    assert panel_width(2485, 1433) == PANEL and panel_width(2110, 3703) == PANEL
    assert panel_width(34493, 8415) == 32 and panel_width(34493, 8415, itemsize=8) == 16
    widths = [panel_width(n, 100) for n in (10, 10**4, 10**5, 10**6, 10**8)]
    assert widths == sorted(widths, reverse=True) and all(w % 16 == 0 and 16 <= w <= PANEL for w in widths)


def test_default_panel_on_a_large_graph_equals_dense_reference():
    # n = 40000 rows: the default width is 16 (float64), so d = 40 runs three panels, the last one short
    n, d, c = 40000, 40, 3
    assert panel_width(n, d, itemsize=8) == 16
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(n, d, generator=g, dtype=torch.float64) < 0.05).double()
    params = _params(d, c)
    out = SparseBase.apply(*params, sparse_features(x.to_sparse_csr()))
    ref = _reference(x, *params)
    # float64, different summation order only: measured rel. diff ≤ 7e-15 (forward and gradients), margin > 100×
    scale = float(ref.detach().abs().max())
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), rtol=0, atol=1e-12 * scale)
    up = torch.randn(n, c, generator=g, dtype=torch.float64)
    for a, b in zip(torch.autograd.grad(out, params, up), torch.autograd.grad(ref, params, up)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-12 * max(float(b.abs().max()), 1.0))


def test_all_zero_rows_get_the_biases():
    # a row without features is ReLU(b1) W2ᵀ + b2 (the ones column carries the bias, not the features)
    x = bag_of_words(8, 10, zero_rows=(0, 5))
    w1, b1, w2, b2 = _params(10, 4)
    out = SparseBase.apply(w1, b1, w2, b2, sparse_features(x.to_sparse_csr()), 3)
    want = torch.relu(b1) @ w2.t() + b2
    for r in (0, 5):
        np.testing.assert_allclose(out[r].detach().numpy(), want.detach().numpy(), atol=1e-13)


def test_gradcheck_with_several_panels():
    x = bag_of_words(9, 7).to_sparse_csr()
    feats = sparse_features(x)
    params = _params(7, 2, seed=3)
    assert torch.autograd.gradcheck(lambda *p: SparseBase.apply(*p, feats, 3), params)


def test_features_layout_and_cache():
    x = bag_of_words(10, 6).to_sparse_csr()
    f = sparse_features(x)
    assert f is sparse_features(x)  # cached per tensor
    assert f.dim == 6 and f.cols.dtype == torch.int32 and f.offsets.dtype == torch.int32
    assert f.cols.numel() == x.values().numel() + 10  # one ones-column entry per row
    assert f.t_offsets.numel() == 7  # d feature columns + the ones column
    xd = x.to_dense()
    w = torch.randn(6, 5, dtype=torch.float64)
    g = torch.randn(10, 5, dtype=torch.float64)
    np.testing.assert_allclose(f.matmul(w).numpy(), (xd @ w).numpy(), atol=1e-13)
    np.testing.assert_allclose(f.t_matmul(g).numpy(), (xd.t() @ g).numpy(), atol=1e-13)
    np.testing.assert_allclose(f.t_gather(g)[6].numpy(), g.sum(0).numpy(), atol=1e-13)


def test_coinbase_uses_the_kernel_for_wide_features():
    # d > PANEL: COINBase's sparse path (several panels) equals its dense path
    n, d = 30, PANEL + 37
    x = bag_of_words(n, d, seed=4)
    m = COINBase(d, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    np.testing.assert_allclose(m(x.to_sparse_csr()).detach().numpy(), m(x).detach().numpy(), atol=1e-12)
    with pytest.raises(ValueError, match="NaN or Inf"):
        bad = x.clone()
        bad[0, 0] = float("nan")
        sparse_features(bad.to_sparse_csr())


def test_recomputed_activations_give_the_same_gradients(monkeypatch):
    # above SAVE_LIMIT_BYTES the backward re-gathers each panel instead of keeping h: same numbers
    import nsde_coin.graph.sparse_base as sb

    x = bag_of_words(20, 11, seed=5)
    feats = sparse_features(x.to_sparse_csr())
    up = torch.randn(20, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    res = []
    for limit in (sb.SAVE_LIMIT_BYTES, 0):
        monkeypatch.setattr(sb, "SAVE_LIMIT_BYTES", limit)
        params = _params(11, 3)
        out = SparseBase.apply(*params, feats, 4)
        res.append([out.detach(), *torch.autograd.grad(out, params, up)])
    for a, b in zip(*res):  # identical operations in the same order: equal to rounding (measured: bitwise)
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-14)


@pytest.mark.parametrize("use_native", [False] + ([True] if native.available() else []))
@pytest.mark.parametrize("which, shape", [("b2", (1,)), ("b2", (4,)), ("b2", (1, 3)), ("w2", (3, 17)),
                                          ("w2", (3,)), ("b1", (17,)), ("w1", (18, 19))])
def test_weights_that_do_not_fit_the_features_are_refused_in_one_line(use_native, which, shape, monkeypatch):
    """Found by review: the compiled path read W2 as C×d and b2[c] for every class without checking their shapes
    (a (1,) b2 was read past its end, silently giving logits ~1e30); both paths now name the shapes."""
    monkeypatch.setenv(native.ENV, "1" if use_native else "0")
    params = dict(zip(("w1", "b1", "w2", "b2"), [p.detach().float().requires_grad_() for p in _params(18, 3)]))
    params[which] = torch.zeros(shape, requires_grad=True)
    with pytest.raises(ValueError) as err:
        SparseBase.apply(*params.values(), sparse_features(bag_of_words(6, 18).float().to_sparse_csr()), 16)
    msg = str(err.value)
    assert "\n" not in msg and f"{which.upper() if which[0] == 'w' else which} {shape}" in msg and "b2 (C,)" in msg, msg
