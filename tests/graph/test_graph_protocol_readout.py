"""The protocol's compiled read-out head (csrc/readout_head.c, nsde_coin.graph.experiment.readout) and its compiled
Adam for the weights outside W1 (nsde_coin.graph.compiled_adam), on every build this CPU runs: the head's forward
and gradient against float64 references (softmax → k steps → rows → floored log), floored entries, repeated rows,
NaN; Adam's weights against torch.optim.Adam over several steps; and that the protocol's run takes both. Skips
where the library was not built."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from compiled import NATIVE_ONLY, RUNS_HERE

from nsde_coin.graph import native
from nsde_coin.graph.compiled_adam import CompiledAdam
from nsde_coin.graph.experiment.readout import CompiledReadoutHead
from nsde_coin.graph.laplacian import laplacian_from_weights

pytestmark = [*NATIVE_ONLY, pytest.mark.usefixtures("compiled_path")]


def _steps(n=300, sigma2=0.35, seed=0):
    """The explicit step matrix I − σ²L of a random graph (scipy float64) and its float32 CSR."""
    rng = np.random.default_rng(seed)
    w = sp.random(n, n, density=6 / n, random_state=rng)
    w = ((w + w.T) > 0).astype(float)
    op = laplacian_from_weights(w, "paper", operator=True)
    s = op.step_matrix(sigma2, torch.float32, torch.device("cpu"))
    return sp.csr_matrix((s.values().double().numpy(), s.col_indices().numpy(), s.crow_indices().numpy()),
                         shape=(n, n)), s


def _reference(logits, s64, k, rows, eps):
    """float64 head: log max((Sᵏ softmax(logits))[rows], eps), as a differentiable function of the logits."""
    u = torch.softmax(logits, -1)
    s = torch.sparse_csr_tensor(torch.from_numpy(s64.indptr).long(), torch.from_numpy(s64.indices).long(),
                                torch.from_numpy(s64.data), s64.shape, check_invariants=True)
    for _ in range(k):
        u = s @ u
    return torch.log(u[rows].clamp_min(eps))


@pytest.mark.parametrize("build", RUNS_HERE)
@pytest.mark.parametrize("c", [1, 2, 7, 16, 17])  # vector tails of the exponential: n·C not a multiple of 4/8/16
@pytest.mark.parametrize("scale", [0.5, 8.0, 60.0])  # softmax entries from ~1/C down to float32 underflow
def test_the_head_equals_the_float64_reference(build, c, scale, monkeypatch):
    monkeypatch.setenv(native.ENV_ISA, build)
    s64, s = _steps()
    n, k, eps = s64.shape[0], 6, 1e-12
    gen = torch.Generator().manual_seed(c)
    logits = (scale * torch.randn(n, c, generator=gen)).requires_grad_()
    rows = torch.randperm(n, generator=gen)[:90]
    g = torch.randn(90, c, generator=gen)
    lu = CompiledReadoutHead.apply(logits, s, s, k, rows, eps)  # S is symmetric here: Sᵀ = S
    (gl,) = torch.autograd.grad(lu, logits, g)
    l64 = logits.detach().double().requires_grad_()
    ref = _reference(l64, s64, k, rows, eps)
    (gref,) = torch.autograd.grad(ref, l64, g.double())
    assert lu.shape == (90, c) and gl.shape == (n, c)
    # float32 through softmax and 6 steps: measured ≤ 3e-7 of the scale (log u) and ≤ 1.3e-6 (gradient)
    np.testing.assert_allclose(lu.detach().double().numpy(), ref.detach().numpy(), rtol=0,
                               atol=1e-5 * max(float(ref.detach().abs().max()), 1.0))
    np.testing.assert_allclose(gl.double().numpy(), gref.numpy(), rtol=0, atol=1e-5 * float(gref.abs().max()))


@pytest.mark.parametrize("build", RUNS_HERE)
def test_floored_entries_get_no_gradient_and_repeated_rows_add(build, monkeypatch):
    monkeypatch.setenv(native.ENV_ISA, build)
    s64, s = _steps(sigma2=3.0)  # far past the non-negativity bound: diffused entries below eps (or negative)
    n, k, eps = s64.shape[0], 3, 1e-3
    logits = torch.randn(n, 5, generator=torch.Generator().manual_seed(1)).requires_grad_()
    rows = torch.tensor([3, 7, 3, 11, 7, 3])  # repeats: their gradients add up
    lu = CompiledReadoutHead.apply(logits, s, s, k, rows, eps)
    l64 = logits.detach().double().requires_grad_()
    ref = _reference(l64, s64, k, rows, eps)
    floored = ref.detach() <= np.log(eps) + 1e-9
    assert 0 < int(floored.sum()) < floored.numel()  # the test sees both kinds of entries
    assert torch.allclose(lu.detach()[floored], torch.log(torch.tensor(eps)), rtol=1e-6, atol=0)
    g = torch.randn(6, 5, generator=torch.Generator().manual_seed(2))
    (gl,) = torch.autograd.grad(lu, logits, g)
    (gref,) = torch.autograd.grad(ref, l64, g.double())
    np.testing.assert_allclose(gl.double().numpy(), gref.numpy(), rtol=0, atol=1e-4 * float(gref.abs().max()))


def _identity(n):
    i = torch.arange(n + 1)
    return torch.sparse_csr_tensor(i, torch.arange(n), torch.ones(n), (n, n), check_invariants=True)


@pytest.mark.parametrize("build", RUNS_HERE)
def test_the_softmax_exponential_is_float32_accurate_down_to_underflow(build, monkeypatch):
    """Rows (0, t) for t from -87 to 0 through one identity step: the diffused rows are the softmax itself, so its
    small entry e^t / (1 + e^t) is checked to a few ulp against float64 (a wrong polynomial coefficient, a lost low
    part of ln 2 or an early underflow cut shows here; through log u at the head's tolerance it would not)."""
    monkeypatch.setenv(native.ENV_ISA, build)
    t = torch.cat([torch.linspace(-87.0, 0.0, 20001), torch.tensor([-87.4, -88.0, -100.0, -1e30])])
    logits = torch.stack([torch.zeros_like(t), t], 1)
    n = logits.shape[0]
    _, u0, ur = native.readout_forward(_identity(n), logits, 1, torch.arange(n), 1e-30)
    want = torch.softmax(logits.double(), 1)
    assert torch.equal(u0, ur)  # one identity step
    ok = t > -87.3
    rel = ((ur[ok].double() - want[ok]).abs() / want[ok]).max()
    assert rel < 1e-6, float(rel)  # measured 2.4e-7 (about 2 ulp) on every build
    assert torch.all(ur[~ok, 1] <= 1.2e-38) and torch.all(ur[~ok, 0] == 1.0)  # float32 underflow, no garbage


def test_bad_head_inputs_are_refused_in_one_line():
    s64, s = _steps(n=40)
    logits = torch.randn(40, 3)
    for rows, match in ((torch.tensor([0, -1]), r"rows\[1\] = -1 is not a node index in \[0, 40\)"),
                        (torch.tensor([40]), r"rows\[0\] = 40 is not a node index in \[0, 40\)"),
                        (torch.tensor([0.5]), "1-D integer tensor")):
        with pytest.raises(ValueError, match=match):
            native.readout_forward(s, logits, 2, rows, 1e-12)
    lu, u0, ur = native.readout_forward(s, logits, 2, torch.arange(0, 40, 2, dtype=torch.int32), 1e-12)  # int32,
    want, _, _ = native.readout_forward(s, logits, 2, torch.arange(40)[::2], 1e-12)  # strided: both as int64
    assert torch.equal(lu, want)
    with pytest.raises(ValueError, match="float32 CPU node values"):
        native.readout_forward(s, logits.double(), 2, torch.arange(3), 1e-12)
    with pytest.raises(ValueError, match="C >= 1"):
        native.readout_forward(s, logits[:, :0], 2, torch.arange(3), 1e-12)
    with pytest.raises(ValueError, match=r"step matrix \(40, 40\)"):
        native.readout_forward(_identity(39), logits, 2, torch.arange(3), 1e-12)
    with pytest.raises(ValueError, match="k >= 1"):
        native.readout_forward(s, logits, 0, torch.arange(3), 1e-12)


def test_a_nan_logit_reaches_the_loss():
    s64, s = _steps()
    logits = torch.randn(s64.shape[0], 4)
    logits[5, 2] = float("nan")
    logits[9, 0] = float("nan")  # a NaN first entry of its row, too
    lu = CompiledReadoutHead.apply(logits, s, s, 4, torch.arange(s64.shape[0]), 1e-12)
    assert torch.isnan(lu[5]).all() and torch.isnan(lu[9]).all()  # each diffuses from its own row
    assert not torch.isfinite(F.nll_loss(lu, torch.zeros(s64.shape[0], dtype=torch.long)))


@pytest.mark.parametrize("build", RUNS_HERE)
def test_compiled_adam_gives_torch_adams_weights(build, monkeypatch):
    monkeypatch.setenv(native.ENV_ISA, build)
    gen = torch.Generator().manual_seed(0)
    shapes = [(33,), (7, 45), (7,)]
    start = [torch.randn(sh, generator=gen) for sh in shapes]
    grads = [[torch.randn(sh, generator=gen) for sh in shapes] for _ in range(8)]
    mine, theirs = [p.clone().requires_grad_() for p in start], [p.clone().requires_grad_() for p in start]
    a = CompiledAdam(mine, 0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=5e-4)
    b = torch.optim.Adam(theirs, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=5e-4)
    for t, gs in enumerate(grads):
        for opt, ps in ((a, mine), (b, theirs)):
            opt.zero_grad(set_to_none=True)
            for i, (p, gr) in enumerate(zip(ps, gs)):
                if not (i == 2 and t % 3 == 1):  # the bias skips some steps: its own step count
                    p.grad = gr.clone()
            opt.step()
    for p, q, s in zip(mine, theirs, start):
        assert not torch.allclose(p, s)  # the weights moved
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-5, atol=1e-7)
    assert a.steps == [8, 8, 5]


def test_compiled_adam_refuses_what_it_cannot_step():
    with pytest.raises(ValueError, match="float32, contiguous CPU parameters"):
        CompiledAdam([torch.zeros(3, dtype=torch.float64)], 0.01)
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        CompiledAdam([torch.zeros(3)], 0.0)


def test_the_protocol_run_takes_the_compiled_head_and_adam(monkeypatch):
    """A COIN run on the explicit steps form calls the compiled head and steps b1, W2, b2 with CompiledAdam; with
    the kernels off (NSDE_COIN_NATIVE=0) it runs torch's head and Adam; the two give the same first epochs."""
    from test_graph_protocol_runs import _sbm

    from nsde_coin.graph import models
    from nsde_coin.graph.experiment import train as train_mod
    from nsde_coin.graph.experiment.train import TrainConfig, train_run
    from nsde_coin.graph.splits import random_split

    data = _sbm()
    split = random_split(data.y, 0)
    calls = {"head": 0, "adam": 0}
    head_apply, adam_step = CompiledReadoutHead.apply, CompiledAdam.step
    monkeypatch.setattr(CompiledReadoutHead, "apply",
                        lambda *a: calls.__setitem__("head", calls["head"] + 1) or head_apply(*a))
    monkeypatch.setattr(CompiledAdam, "step", lambda self: calls.__setitem__("adam", calls["adam"] + 1)
                        or adam_step(self))
    losses = {}
    seen = []
    forward = train_mod._ReadoutCOINTask.train_forward

    def recording(self):
        loss, aux = forward(self)
        seen.append(float(loss.detach()))
        return loss, aux

    monkeypatch.setattr(train_mod._ReadoutCOINTask, "train_forward", recording)
    for flag in ("1", "0"):
        monkeypatch.setenv(native.ENV, flag)
        seen.clear()
        net = models.build_model("coin", data, {"layer_num": 5, "sigma2": 0.2}, seed=2)
        res = train_run(net, data.y, split, TrainConfig(max_epochs=6, patience=50), keep_best=False)
        assert res["readout"] and res["epochs"] == 6
        losses[flag] = list(seen)
        if flag == "1":
            assert calls == {"head": 6, "adam": 6}
    assert calls == {"head": 6, "adam": 6}  # nothing compiled ran with the kernels off
    np.testing.assert_allclose(losses["1"], losses["0"], rtol=1e-5)
    assert losses["1"][-1] < losses["1"][0]  # it trained
