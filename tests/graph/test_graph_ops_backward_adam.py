"""Adam on W1 inside the sparse base layer's backward pass (nsde_coin.graph.backward_adam): a few training steps
give torch.optim.Adam's weights on both kernel paths (compiled and torch panels) and on the recomputing path of
wide graphs; no ∇W1 is kept; bad settings and dense features are refused."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nsde_coin.graph import native
from nsde_coin.graph import sparse_base as sb
from nsde_coin.graph.backward_adam import BackwardAdam
from nsde_coin.graph.coin import COINBase

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta state")
PATHS = ["0"] + (["1"] if native.available() else [])


def _data(n=60, d=150, c=5, seed=0):  # d > PANEL: two column panels, the last 22 wide
    g = torch.Generator().manual_seed(seed)
    b = (torch.rand(n, d, generator=g) < 0.15).float()
    x = b / b.sum(1, keepdim=True).clamp_min(1)
    return x.to_sparse_csr(), torch.randint(0, c, (n,), generator=g)


def _train(x, y, fused, steps=6, lr=0.01, wd=5e-4):
    m = COINBase(x.shape[1], int(y.max()) + 1, generator=torch.Generator().manual_seed(1))
    if fused:
        m.w1_step = BackwardAdam(lr=lr, weight_decay=wd)
        params = [m.b1, m.W2, m.b2]
    else:
        params = list(m.parameters())
    opt = torch.optim.Adam(params, lr=lr, weight_decay=wd)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(m(x), y).backward()
        opt.step()
    return m


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("keep", [True, False])
@pytest.mark.parametrize("scatter", [False, True])
def test_steps_equal_torch_adam(path, keep, scatter, monkeypatch):
    monkeypatch.setenv(native.ENV, path)
    if not keep:
        monkeypatch.setattr(sb, "SAVE_LIMIT_BYTES", 0)  # the wide-graph path: h recomputed per panel
    if scatter:
        monkeypatch.setattr(sb, "SCATTER_TABLE_BYTES", -1)  # compiled path: xᵀ gz scattered (wide graphs)
    x, y = _data()
    ref = _train(x, y, fused=False)
    got = _train(x, y, fused=True)
    assert got.W1.grad is None and got.w1_step.steps == 6
    moved = float((ref.W1 - COINBase(150, 5, generator=torch.Generator().manual_seed(1)).W1).detach().abs().max())
    assert moved > 0.03  # six steps of lr 0.01 really moved W1 (measured 0.06)
    for a, b in zip(got.parameters(), ref.parameters()):
        # float32, six steps: Adam's division amplifies rounding where v is tiny; measured ≤ 3e-6 absolute
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=0, atol=5e-5)


def test_the_moments_match_torch_adams_state(monkeypatch):
    monkeypatch.setenv(native.ENV, PATHS[-1])
    x, y = _data(seed=2)
    m = COINBase(150, 5, generator=torch.Generator().manual_seed(1))
    m.w1_step = BackwardAdam(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.0)
    w = m.W1.detach().clone().requires_grad_()
    opt = torch.optim.Adam([w], lr=0.02, betas=(0.8, 0.99), eps=1e-6)
    for _ in range(3):
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        # the same loss with the reference W1: its gradient steps torch's Adam
        m2 = COINBase(150, 5)
        m2.load_state_dict({**m.state_dict(), "W1": w.detach()})
        m2.W1.requires_grad_()
        F.cross_entropy(m2(x), y).backward()
        w.grad = m2.W1.grad
        opt.step()
    st = opt.state[w]
    ma, va = m.w1_step.moments()
    np.testing.assert_allclose(ma.numpy(), st["exp_avg"].numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(va.numpy(), st["exp_avg_sq"].numpy(), rtol=0, atol=1e-8)
    np.testing.assert_allclose(m.W1.detach().numpy(), w.detach().numpy(), rtol=0, atol=5e-5)


def test_bad_settings_and_dense_features_are_refused():
    for kw, msg in (({"lr": 0}, "lr must be a finite number > 0"), ({"eps": -1}, "eps must be"),
                    ({"weight_decay": float("nan")}, "weight_decay must be"), ({"betas": (1.0, 0.9)}, "betas")):
        with pytest.raises(ValueError, match=msg):
            BackwardAdam(**kw)
    x, _ = _data()
    m = COINBase(150, 5)
    m.w1_step = BackwardAdam()
    with pytest.raises(ValueError, match="needs sparse features"):
        m(x.to_dense())
    with torch.no_grad():  # evaluation with dense features is fine: nothing is updated
        assert m(x.to_dense()).shape == (60, 5)


@pytest.mark.parametrize("path", PATHS)
def test_misuse_is_refused_or_harmless(path, monkeypatch):
    # found by review: each of these silently did the wrong thing
    monkeypatch.setenv(native.ENV, path)
    x, y = _data()
    m = COINBase(150, 5, generator=torch.Generator().manual_seed(1))
    m.w1_step = BackwardAdam(lr=0.1)
    m.W1 = torch.nn.Parameter(m.W1.detach().t().contiguous().t())  # a transposed (non-contiguous) W1
    with pytest.raises(ValueError, match="needs a contiguous W1"):
        F.cross_entropy(m(x), y).backward()
    m.W1 = torch.nn.Parameter(m.W1.detach().contiguous())
    m.W1.requires_grad_(False)  # frozen: not stepped
    before = m.W1.detach().clone()
    F.cross_entropy(m(x), y).backward()
    assert torch.equal(m.W1, before) and m.w1_step.steps == 0
    m.W1.requires_grad_(True)
    loss = F.cross_entropy(m(x), y) + (m.W1 ** 2).sum()  # another term on W1: its gradient would be dropped
    with pytest.raises(ValueError, match="another term of the loss"):
        loss.backward()
        F.cross_entropy(m(x), y).backward()


def test_mixed_dtypes_do_not_reach_the_compiled_kernel(monkeypatch):
    monkeypatch.setenv(native.ENV, "1")
    x, _ = _data()
    w1, b1, w2, b2 = [p.detach() for p in COINBase(150, 5).parameters()]
    feats = sb.sparse_features(x)
    with pytest.raises(RuntimeError):  # torch's own dtype error, not garbage from the C kernel
        sb.SparseBase.apply(w1, b1.double(), w2, b2, feats)


@pytest.mark.skipif(not native.available(), reason=f"compiled kernel: {native.status()}")
def test_a_stale_build_is_refused(monkeypatch):
    monkeypatch.setattr(native, "ABI_VERSION", native.ABI_VERSION + 1)
    monkeypatch.setattr(native, "_LIB", None)
    monkeypatch.setattr(native, "_WHY", "")
    assert native.status().startswith("stale build") and not native.usable(torch.zeros(2, 2), torch.int32)


@pytest.mark.parametrize("path", PATHS)
def test_a_checkpoint_resumes_the_moments_on_another_panel_width(path, monkeypatch):
    """3 steps, state_dict, a new BackwardAdam (and a new panel width) loads it, 3 more steps: the weights of 6
    uninterrupted steps; a state for another W1 or with missing keys is refused."""
    monkeypatch.setenv(native.ENV, path)
    x, y = _data()
    ref = _train(x, y, fused=True, steps=6)
    m = COINBase(x.shape[1], int(y.max()) + 1, generator=torch.Generator().manual_seed(1))
    m.w1_step = BackwardAdam(lr=0.01, weight_decay=5e-4)
    opt = torch.optim.Adam([m.b1, m.W2, m.b2], lr=0.01, weight_decay=5e-4)
    for i in range(6):
        if i == 3:
            state, opt_state = m.w1_step.state_dict(), opt.state_dict()
            assert state["steps"] == 3 and state["exp_avg"].shape == (150, 150)
            m.w1_step = BackwardAdam()
            m.w1_step.load_state_dict(state)
            assert torch.equal(m.w1_step.moments()[1], state["exp_avg_sq"])  # readable before the next step
            opt = torch.optim.Adam([m.b1, m.W2, m.b2], lr=0.01, weight_decay=5e-4)
            opt.load_state_dict(opt_state)
            monkeypatch.setattr(sb, "panel_width", lambda *a, **k: 64)  # another layout of the moments
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(m(x), y).backward()
        opt.step()
    assert m.w1_step.steps == 6 and m.w1_step.panel == 64
    for a, b in zip(m.parameters(), ref.parameters()):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=0, atol=1e-6)
    other = BackwardAdam()
    other.load_state_dict(ref.w1_step.state_dict())
    with pytest.raises(ValueError, match=r"loaded for W1 \(150, 150\), got W1 \(40, 40\)"):
        other.begin(torch.zeros(40, 40), 16)
    with pytest.raises(ValueError, match="needs the keys"):
        BackwardAdam().load_state_dict({"lr": 0.1})
    assert BackwardAdam().state_dict()["exp_avg"] is None


def test_a_state_that_would_make_w1_nan_or_alias_it_is_refused():
    """load_state_dict refuses moments that would turn W1 into NaN at the next step (exp_avg_sq < 0, NaN/Inf,
    integer tensors) and a bool step count; state_dict returns copies (editing it does not change the state)."""
    w, g = torch.randn(6, 6), torch.randn(6, 6)
    a = BackwardAdam(lr=0.1)
    a.apply(w, g, 4)
    good = a.state_dict()
    bad = [{"exp_avg_sq": -torch.ones(6, 6)}, {"exp_avg": torch.full((6, 6), float("nan"))},
           {"exp_avg_sq": torch.full((6, 6), float("inf"))},
           {"exp_avg": torch.zeros(6, 6, dtype=torch.long), "exp_avg_sq": torch.zeros(6, 6, dtype=torch.long)}]
    for change in bad:
        with pytest.raises(ValueError, match="finite floating-point"):
            BackwardAdam().load_state_dict({**good, **change})
    with pytest.raises(ValueError, match="steps=True"):
        BackwardAdam().load_state_dict({**good, "steps": True})
    b = BackwardAdam()
    b.load_state_dict({**good, "steps": np.int64(1)})
    assert type(b.steps) is int and b.steps == 1
    out = b.state_dict()
    out["exp_avg"].add_(1.0)  # before b's first step its state is the loaded copy: the dict must not alias it
    torch.testing.assert_close(b.state_dict()["exp_avg"], good["exp_avg"], rtol=0, atol=0)
