"""The one training loop (nsde_coin.loop): step order, the non-finite report, callbacks, optimisers, best weights."""

from __future__ import annotations

import math
import re

import pytest
import torch

from nsde_coin.errors import NonFiniteError
from nsde_coin.loop import STOP, BestWeights, Diverged, Divergence, make_optimizer, train

DIV = Divergence("try a smaller lr", {"lr": 0.5, "solver": "explicit"})


def _quadratic(w0: float = 2.0):
    """f(w) = w²/2: plain SGD with lr gives w_k = (1 − lr)^k w0 exactly (float64, powers of 1/2)."""
    w = torch.tensor([w0], dtype=torch.float64, requires_grad=True)
    return w, (lambda: 0.5 * (w ** 2).sum())


def test_full_batch_sgd_follows_the_closed_form_and_sees_pre_step_losses():
    w, f = _quadratic()
    seen = []
    res = train(f, make_optimizer([w], "sgd", lr=0.5), 4, divergence=DIV, on_loss=(lambda s: seen.append(s.loss),))
    assert res.epochs == 4 and not res.stopped
    assert float(w.detach()) == 2.0 * 0.5 ** 4  # exact: every product is a power of two
    assert seen == [0.5 * (2.0 * 0.5 ** k) ** 2 for k in range(4)]  # the loss at the weights before each step


def test_non_finite_loss_raises_naming_epoch_batch_settings_and_hint():
    w = torch.ones(2, requires_grad=True)
    calls = []

    def closure(idx):
        calls.append(int(idx[0]))
        return (w * (math.nan if len(calls) == 5 else 1.0)).sum()

    with pytest.raises(Diverged) as err:  # a NonFiniteError, so the CLI prints it as one line
        train(closure, make_optimizer([w], lr=0.1), 10, divergence=DIV, start=1,
              batches=lambda e: [torch.tensor([0, 1]), torch.tensor([2])])
    assert isinstance(err.value, NonFiniteError) and isinstance(err.value, ValueError)
    assert str(err.value) == ("non-finite training loss nan at epoch 3, batch 0 (lr=0.5, solver='explicit'): "
                              "try a smaller lr")  # 5th step = epoch 3 (start 1, two batches per epoch), batch 0
    assert (err.value.epoch, err.value.batch) == (3, 0) and math.isnan(err.value.value)


def test_full_batch_message_has_no_batch_and_the_step_is_not_taken():
    w = torch.ones(1, requires_grad=True)
    with pytest.raises(NonFiniteError, match=r"^non-finite training loss inf at epoch 0: the training diverged"):
        train(lambda: (w * math.inf).sum(), make_optimizer([w], lr=0.1), 3, divergence=Divergence())
    assert float(w.detach()) == 1.0 and w.grad is None  # checked before backward and step


def test_early_stop_on_epoch_stops_after_that_epoch_and_on_loss_before_its_step():
    w, f = _quadratic()
    ends = []
    res = train(f, make_optimizer([w], "sgd", lr=0.5), 100, divergence=DIV,
                on_epoch=(lambda s: ends.append(s.index) or (STOP if s.index == 6 else None),))
    assert res.stopped and res.epochs == 7 and ends == list(range(7)) and res.last.index == 6
    assert float(w.detach()) == 2.0 * 0.5 ** 7  # epoch 6's step was taken
    w, f = _quadratic()
    res = train(f, make_optimizer([w], "sgd", lr=0.5), 100, divergence=DIV, start=10,
                on_loss=(lambda s: STOP if s.index == 13 else None,))
    # epochs 10..13 begun, 13's step not taken
    assert res.stopped and res.epochs == 4 and float(w.detach()) == 2.0 * 0.5 ** 3


def test_callback_counts_and_batch_indices():
    w = torch.zeros(3, requires_grad=True)
    asked, losses, ends = [], [], []
    data = torch.arange(10, dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)

    def batches(epoch):
        asked.append(epoch)
        perm = torch.randperm(10, generator=gen)
        return [perm[i:i + 4] for i in range(0, 10, 4)]  # 4 + 4 + 2

    res = train(lambda idx: ((w.sum() - data[idx]) ** 2).mean(), make_optimizer([w], lr=0.01), 5, divergence=DIV,
                batches=batches, on_loss=(lambda s: losses.append((s.index, s.batch)),),
                on_epoch=(lambda s: ends.append(s.index), lambda s: None))
    assert asked == ends == list(range(5)) and res.epochs == 5
    assert losses == [(e, b) for e in range(5) for b in range(3)]
    assert res.last.batch == 2 and res.seconds >= 0


def test_fused_and_plain_adam_take_the_same_steps():
    torch.manual_seed(0)
    p0 = torch.randn(64, 7)
    grads = [torch.rand(64, 7) + 0.1 for _ in range(5)]  # one sign: every entry moves ~lr per step
    runs = []
    for fused in (False, True):
        p = p0.clone().requires_grad_(True)
        opt = make_optimizer([p], lr=0.01, weight_decay=5e-4, fused=fused)
        for g in grads:
            p.grad = g.clone()
            opt.step()
        runs.append((p.detach(), bool(opt.defaults.get("fused"))))
    (plain, f0), (fused_p, f1) = runs
    assert not f0
    assert f1 == (torch.optim.Adam([torch.zeros(1, requires_grad=True)], fused=True).defaults["fused"] is True)
    moved = (plain - p0).abs()
    assert moved.min() > 0.02  # 5 steps of ~lr = 0.01 each, all one way
    # the fused and single-tensor kernels may differ in rounding only: measured max |diff| 0 here (Xeon, float32,
    # 5 steps); 1e-6 is 1e-4 of the distance moved
    assert torch.allclose(fused_p, plain, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype, lr, ok", [(torch.float32, 1e38, False), (torch.float32, 3e37, True),
                                           (torch.float64, 1e38, True), (torch.float16, 1e4, False)])
def test_lr_whose_first_adam_step_overflows_the_dtype_is_a_value_error(dtype, lr, ok):
    p = torch.zeros(3, dtype=dtype, requires_grad=True)
    if ok:
        opt = make_optimizer([p], lr=lr)
        p.grad = torch.ones_like(p)
        opt.step()  # torch's own step runs: 10·lr is representable
        assert torch.isfinite(p).all()
    else:
        with pytest.raises(ValueError, match=re.escape(f"lr={lr!r} is not valid") + f".*{str(dtype)[6:]}"):
            make_optimizer([p], lr=lr)


@pytest.mark.parametrize("kw, words", [({"lr": 0.0}, "lr=0.0"), ({"lr": math.nan}, "lr=nan"),
                                       ({"lr": True}, "lr=True"), ({"lr": 0.1, "weight_decay": -1.0},
                                                                   "weight_decay=-1.0"),
                                       ({"lr": 0.1, "kind": "lbfgs"}, "valid choices: adam, sgd")])
def test_bad_optimizer_settings_name_the_value(kw, words):
    with pytest.raises(ValueError, match=words):
        make_optimizer([torch.zeros(1, requires_grad=True)], **kw)


def test_best_weights_keep_per_run_and_restore():
    p = {"w": torch.zeros(3, 2, requires_grad=True), "b": torch.zeros(3, requires_grad=True)}
    best = BestWeights(p)
    with torch.no_grad():
        for v in p.values():
            v.add_(1.0)
    best.keep(torch.tensor([True, False, True]))
    assert best.saved["w"][:, 0].tolist() == [1.0, 0.0, 1.0] and best.saved["b"].tolist() == [1.0, 0.0, 1.0]
    with torch.no_grad():
        p["w"].add_(5.0)
    best.restore()
    assert p["w"][:, 1].tolist() == [1.0, 0.0, 1.0] and p["w"].requires_grad
