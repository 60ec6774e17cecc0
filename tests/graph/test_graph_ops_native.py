"""The compiled panel kernel (nsde_coin.graph.native, csrc/panel_kernel.c) against the float64 dense reference and
against the torch panels: forward and all four gradients for odd sizes (panels not a multiple of 16 wide, a short
last panel, class counts around its 4-class register blocks), all-zero feature rows, NaN propagation, the
recomputing path and the scattered xᵀ gz of wide graphs, and when it is (not) used. Skips where the kernel was not
built."""

import numpy as np
import pytest
import torch
from compiled import NATIVE_ONLY
from problems import bag_of_words, ragged_rows

from nsde_coin.graph import native
from nsde_coin.graph import sparse_base as sb
from nsde_coin.graph.backward_adam import BackwardAdam
from nsde_coin.graph.sparse_base import SparseBase, sparse_features
from nsde_coin.machine import l2_cache_bytes

pytestmark = NATIVE_ONLY


@pytest.fixture(autouse=True, params=["gather", "scatter"])
def one_thread(request, monkeypatch):
    """Every test on one torch thread (test_graph_ops_native_threads.py runs more), once with each form of the
    backward's xᵀ gz (gathered from the n×k table, or scattered along x's rows: wide graphs)."""
    if request.param == "scatter":
        monkeypatch.setattr(sb, "SCATTER_TABLE_BYTES", -1)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _params(d, c, seed=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=torch.float64).to(dtype).requires_grad_() for s in
            ((d, d), (d,), (c, d), (c,))]


def _reference(x, w1, b1, w2, b2):
    return (x + torch.relu(x @ w1 + b1)) @ w2.t() + b2


def _run(x, params, up, panel, use_native, monkeypatch):
    monkeypatch.setenv(native.ENV, "1" if use_native else "0")
    feats = sparse_features(x.float().to_sparse_csr())
    out = SparseBase.apply(*params, feats, panel)
    return [out.detach(), *torch.autograd.grad(out, params, up)]


@pytest.mark.parametrize("n, d, c, panel", [(37, 10, 3, 4), (37, 10, 1, 16), (50, 70, 7, 32), (50, 70, 9, 48),
                                            (45, 150, 4, 128), (45, 150, 5, 64), (64, 33, 16, 17)])
def test_forward_and_gradients_equal_the_float64_reference(n, d, c, panel, monkeypatch):
    x = bag_of_words(n, d, seed=n + d)
    params = _params(d, c)
    up = torch.randn(n, c, generator=torch.Generator().manual_seed(2))
    got = _run(x, params, up, panel, True, monkeypatch)
    p64 = [p.detach().double().requires_grad_() for p in params]
    ref = _reference(x, *p64)
    want = [ref.detach(), *torch.autograd.grad(ref, p64, up.double())]
    # float32 sums of ≤ 150 terms against float64: measured max rel. error 4e-7 (forward), 6e-7 (gradients)
    for a, b in zip(got, want):
        scale = max(float(b.abs().max()), 1e-3)
        np.testing.assert_allclose(a.double().numpy(), b.numpy(), rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("c", [1, 7, 8, 9])
@pytest.mark.parametrize("keep", [True, False])
def test_rows_of_every_length_in_full_panels_equal_the_float64_reference(c, keep, monkeypatch):
    """Full 64-column panels with up to 8 classes run the AVX-512 build's pipelined forward (csrc/pipelined.h: a
    node's dots inside the next node's first gather iterations): rows with 0-5 features (fewer than the 4 iterations
    the dots ride in, and more) and long rows, consecutive; 9 classes take the plain loop. Kept activations and
    recomputed ones (the backward's first pass reads what the forward stored)."""
    n, d = 48, 192
    g = torch.Generator().manual_seed(c)
    x = ragged_rows(n, d, g)
    monkeypatch.setattr(sb, "SAVE_LIMIT_BYTES", sb.SAVE_LIMIT_BYTES if keep else 0)
    params = _params(d, c, seed=c + 10)
    up = torch.randn(n, c, generator=g)
    got = _run(x, params, up, 64, True, monkeypatch)
    p64 = [p.detach().double().requires_grad_() for p in params]
    ref = _reference(x, *p64)
    want = [ref.detach(), *torch.autograd.grad(ref, p64, up.double())]
    for a, b_ in zip(got, want):  # float32 sums against float64, as above
        scale = max(float(b_.abs().max()), 1e-3)
        np.testing.assert_allclose(a.double().numpy(), b_.numpy(), rtol=0, atol=1e-5 * scale)


def test_compiled_and_torch_panels_agree_and_the_switch_works(monkeypatch):
    n, d, c = 80, 200, 7
    x = bag_of_words(n, d, seed=3)
    params = _params(d, c, seed=4)
    up = torch.randn(n, c, generator=torch.Generator().manual_seed(5))
    a = _run(x, params, up, 64, True, monkeypatch)
    b = _run(x, params, up, 64, False, monkeypatch)
    for u, v in zip(a, b):  # same float32 sums in a different order: measured rel. diff ≤ 5e-7
        np.testing.assert_allclose(u.numpy(), v.numpy(), rtol=0, atol=1e-5 * float(v.abs().max()))
    monkeypatch.setenv(native.ENV, "0")
    assert native.status().startswith("disabled") and not native.usable(params[0], torch.int32)
    monkeypatch.setenv(native.ENV, "1")
    assert native.usable(params[0], torch.int32)
    assert not native.usable(params[0].double(), torch.int32)  # float64 runs the torch panels
    assert not native.usable(params[0], torch.int64)


def test_rows_without_features_get_relu_of_the_bias(monkeypatch):
    monkeypatch.setenv(native.ENV, "1")
    x = bag_of_words(9, 20, zero_rows=(0, 6))
    w1, b1, w2, b2 = _params(20, 5)
    out = SparseBase.apply(w1, b1, w2, b2, sparse_features(x.float().to_sparse_csr()), 16)
    want = torch.relu(b1) @ w2.t() + b2
    for r in (0, 6):
        np.testing.assert_allclose(out[r].detach().numpy(), want.detach().numpy(), rtol=0, atol=1e-5)


def test_nan_weights_propagate_instead_of_vanishing(monkeypatch):
    # a NaN in W1 must reach the logits of the rows that read it (ReLU keeps NaN, as torch's does)
    monkeypatch.setenv(native.ENV, "1")
    x = bag_of_words(12, 18, zero_rows=())
    w1, b1, w2, b2 = [p.detach() for p in _params(18, 3)]
    w1[2, 5] = float("nan")
    out = SparseBase.apply(w1, b1, w2, b2, sparse_features(x.float().to_sparse_csr()), 16)
    reads = x[:, 2] != 0
    assert bool(torch.isnan(out[reads]).all()) and not bool(torch.isnan(out[~reads]).any())


@pytest.mark.parametrize("use_native", [True, False])
def test_a_nan_in_the_upstream_gradient_reaches_every_gradient_it_feeds(use_native, monkeypatch):
    """A NaN in g at (node r, class c): the output bias's gradient gb2[c] (the residual branch alone decides it) and
    W2's row c turn NaN, as do W1's and b1's gradients; gb2's other classes stay finite.

    Only entries whose sum multiplies the NaN by a non-zero are asserted NaN: whether a BLAS turns 0·NaN into NaN
    (torch's path) is its own business, so W2[c, j] for a j where node r's input x + relu(z) is 0 may go either way."""
    n, d, c, r, k = 12, 18, 3, 4, 1
    x = bag_of_words(n, d, zero_rows=())
    params = _params(d, c)
    up = torch.randn(n, c, generator=torch.Generator().manual_seed(6))
    up[r, k] = float("nan")
    _, gw1, gb1, gw2, gb2 = _run(x, params, up, 16, use_native, monkeypatch)
    w1, b1 = params[0].detach(), params[1].detach()
    feeds = (x[r].float() + torch.relu(x[r].float() @ w1 + b1)) != 0  # columns j of W2 whose gradient reads g[r, k]
    assert int(feeds.sum()) >= d // 2  # the assertion below covers most of the row
    assert bool(torch.isnan(gb2[k])) and not bool(torch.isnan(gb2[torch.arange(c) != k]).any())
    assert bool(torch.isnan(gw2[k, feeds]).all()) and not bool(torch.isnan(gw2[torch.arange(c) != k]).any())
    assert bool(torch.isnan(gw1[x[r] != 0]).any()) and bool(torch.isnan(gb1).any())


@pytest.mark.parametrize("n, d, panel", [(30, 50, 16), (75, 150, 64)])  # one chunk of nodes; 3 chunks, the last short
def test_recomputing_path_for_wide_graphs_gives_the_same_numbers(monkeypatch, n, d, panel):
    monkeypatch.setenv(native.ENV, "1")
    x = bag_of_words(n, d, seed=7)
    up = torch.randn(n, 6, generator=torch.Generator().manual_seed(8))
    res = []
    for limit in (sb.SAVE_LIMIT_BYTES, 0):
        monkeypatch.setattr(sb, "SAVE_LIMIT_BYTES", limit)
        params = _params(d, 6)
        out = SparseBase.apply(*params, sparse_features(x.float().to_sparse_csr()), panel)
        res.append([out.detach(), *torch.autograd.grad(out, params, up)])
    for a, b in zip(*res):  # the same operations in the same order: equal to rounding (measured: bitwise)
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-6 * max(float(b.abs().max()), 1.0))


def test_more_threads_run_the_compiled_kernel_too(monkeypatch):
    monkeypatch.setenv(native.ENV, "1")
    w = torch.zeros(4, 4)
    torch.set_num_threads(2)
    assert native.usable(w, torch.int32)
    assert native.threads_for(1433, 128) == 2 and native.threads_for(100, 128) == 1  # at most one per panel
    assert native.threads_for(10**6, 16, 10**4) == native.MAX_THREADS


def test_compiled_panel_width_is_a_multiple_of_the_register_block():
    from nsde_coin.graph.sparse_base import panel_width

    # Physics' 32 columns become 64 (measured faster), Cora keeps 128 where its 128-wide tables fit in L2, PubMed
    # 48 → 64; a huge graph keeps the narrow torch width (its n×64 gradient table would exceed 16 MiB)
    graphs = ((34493, 8415), (2485, 1433), (2110, 3703), (19717, 500))
    assert [panel_width(n, d, compiled=True, l2_bytes=2 << 20) for n, d in graphs] == [64, 128, 128, 64]  # Xeon
    assert [panel_width(n, d, compiled=True, l2_bytes=1 << 20) for n, d in graphs] == [64, 64, 64, 64]  # EPYC
    assert panel_width(10**6, 100, compiled=True) == panel_width(10**6, 100) == 16
    # the machine's own L2 decides by default; the width always keeps the table in it unless 64 is the floor
    k = panel_width(2485, 1433, compiled=True)
    assert k == panel_width(2485, 1433, compiled=True, l2_bytes=l2_cache_bytes())
    assert k == 64 or 2485 * k * 4 <= l2_cache_bytes()
    assert panel_width(2485, 1433) == 128  # the torch panels do not depend on the L2 size


def test_l2_size_is_read_from_sysfs_or_defaults(tmp_path, monkeypatch):
    from nsde_coin import machine

    assert machine._size_bytes("1024K") == 1 << 20 and machine._size_bytes("2M\n") == 2 << 20
    assert machine._size_bytes("512") == 512
    assert l2_cache_bytes() >= 64 << 10  # any real L2 (or the default)
    machine.l2_cache_bytes.cache_clear()
    try:
        monkeypatch.setattr(machine, "Path", lambda _: tmp_path / "no_such_cache")
        assert machine.l2_cache_bytes() == machine.DEFAULT_L2_BYTES  # no sysfs: the default
        machine.l2_cache_bytes.cache_clear()
        root = tmp_path / "cache"
        for i, (level, kind, size) in enumerate([(1, "Data", "48K"), (1, "Instruction", "32K"), (2, None, None),
                                                 (2, "Unified", "2048K"), (3, "Unified", "300M")]):
            (root / f"index{i}").mkdir(parents=True)
            for name, val in (("level", level), ("type", kind), ("size", size)):
                if val is not None:  # index2: a level-2 entry without type and size files is skipped
                    (root / f"index{i}" / name).write_text(f"{val}\n")
        monkeypatch.setattr(machine, "Path", lambda _: root)
        assert machine.l2_cache_bytes() == 2 << 20
        assert machine.machine_facts()["l2_cache_bytes"] == 2 << 20  # run records carry it
    finally:
        machine.l2_cache_bytes.cache_clear()


@pytest.mark.parametrize("adam", [False, True])
def test_a_graph_without_nodes_gives_zero_gradients(adam, monkeypatch):
    """n = 0: the kept activations are a zero-size buffer (a NULL data pointer). Before the kernel took an explicit
    keep flag it read that as "not kept" and recomputed from a NULL W1 (it segfaulted). Same results as the torch
    panels: exact zeros."""
    d, c = 10, 3
    x = torch.zeros(0, d)
    got = []
    for use_native in (True, False):
        monkeypatch.setenv(native.ENV, "1" if use_native else "0")
        params = _params(d, c, seed=6)
        step = BackwardAdam(lr=0.1, weight_decay=0.5) if adam else None
        out = SparseBase.apply(*params, sparse_features(x.to_sparse_csr()), 4, step)
        out.sum().backward()
        got.append([out.detach(), *(p.grad if p.grad is not None else p.detach() for p in params)])
    assert got[0][0].shape == (0, c)
    for a, b in zip(*got):  # empty sums are exact zeros; W1 after Adam: float32 rounding of one step (~1e-8)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert not any(bool(t.abs().sum()) for t in got[0][2:4])  # gb1, gW2: exactly zero
