"""Early stopping of the protocol: reset on a new val-loss minimum OR val-accuracy maximum, patience, best weights."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nsde_coin.graph.baselines import GraphNet
from nsde_coin.graph.protocol import EarlyStopper, TrainConfig, train_run
from nsde_coin.graph.splits import Split


def test_resets_on_loss_minimum_or_accuracy_maximum():
    st = EarlyStopper(patience=3)
    script = [  # (loss, acc, expected reset)
        (1.0, 0.5, True),   # first epoch always resets
        (0.9, 0.4, True),   # new loss minimum only
        (0.95, 0.6, True),  # new accuracy maximum only
        (0.95, 0.6, False),  # ties do not reset
        (1.2, 0.55, False),
        (float("nan"), 0.55, False),  # NaN never counts as a minimum
    ]
    for epoch, (loss, acc, want) in enumerate(script):
        assert st.update(epoch, loss, acc) is want, epoch
    assert st.best_epoch == 2 and st.counter == 3 and st.stop
    assert (st.best_loss, st.best_acc) == (0.9, 0.6)
    assert (st.loss_at_reset, st.acc_at_reset) == (0.95, 0.6)


def test_patience_fifty_counts_consecutive_non_improving_epochs():
    st = EarlyStopper(50)
    st.update(0, 1.0, 0.5)
    for e in range(1, 50):
        st.update(e, 2.0, 0.1)
        assert not st.stop
    st.update(50, 2.0, 0.1)
    assert st.stop and st.best_epoch == 0
    with pytest.raises(ValueError, match="patience"):
        EarlyStopper(0)


class _Scripted(GraphNet):
    """A deterministic 'model' whose validation metrics follow a script indexed by its weight.

    The training loss is ``const + w/10``: its gradient is constant, so each Adam step (lr 1, no weight decay) moves
    ``w`` by exactly −1 and ``-w`` counts the optimiser steps. The validation metrics are read off the script at
    index ``round(-w)``, so restoring the saved weights restores the metrics seen at the last reset.
    """

    deterministic = True

    def __init__(self, val_acc_script, val_loss_script, nan_at=None):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.accs, self.losses, self.nan_at = val_acc_script, val_loss_script, nan_at

    def forward(self, x=None, edge_index=None):
        e = int(round(-float(self.w.detach())))
        acc, loss = self.accs[min(e, len(self.accs) - 1)], self.losses[min(e, len(self.losses) - 1)]
        # nodes 0..9 train, 10..19 val (label 0); val node 10+i is right iff i < 10*acc, with prob exp(-loss)
        p_right = math.exp(-loss)
        out = torch.full((20, 2), 0.5)
        for i in range(10):
            ok = i < round(10 * acc)
            out[10 + i, 0] = p_right if ok else 1 - p_right
            out[10 + i, 1] = 1 - out[10 + i, 0]
        logp = out.log()
        train = torch.stack([math.log(0.9) - self.w / 10, math.log(0.1) + 0 * self.w]).expand(10, 2)
        logp = torch.cat([train, logp[10:]])
        if self.nan_at is not None and e >= self.nan_at:
            logp = logp * float("nan")
        return logp


def _split():
    return Split(torch.arange(10), torch.arange(10, 20), torch.arange(10, 20), 0)


def test_train_run_stops_after_patience_and_restores_the_weights_of_the_last_reset():
    # accuracy improves until epoch 4, loss (> 0.69 for right nodes) never improves after epoch 0
    accs = [0.5, 0.6, 0.6, 0.7, 0.8] + [0.3] * 100
    losses = [0.3] + [0.4] * 200
    net = _Scripted(accs, losses)
    y = torch.zeros(20, dtype=torch.long)
    cfg = TrainConfig(lr=1.0, weight_decay=0.0, max_epochs=1000, patience=5)
    res = train_run(net, y, _split(), cfg, inputs=(None, None))
    assert res["status"] == "ok"
    assert res["best_epoch"] == 4
    assert res["epochs"] == 4 + 5 + 1  # 5 epochs without a reset after epoch 4, the last one stops
    assert res["val_acc"] == pytest.approx(0.8)


class _ScriptedDropout(_Scripted):
    """The same script, flagged stochastic: the protocol then steps first and evaluates the stepped weights."""

    deterministic = False


def test_dropout_branch_evaluates_after_the_step_and_restores_the_evaluated_weights():
    # epoch k steps to w = -(k+1) and then evaluates script index k+1: resets at k = 0 (first), 2 (acc 0.7),
    # 3 (acc 0.8); nothing improves after, so 5 more epochs and the stop; the restored w = -4 gives acc 0.8
    accs = [0.5, 0.6, 0.6, 0.7, 0.8] + [0.3] * 100
    losses = [0.3] + [0.4] * 200
    net = _ScriptedDropout(accs, losses)
    cfg = TrainConfig(lr=1.0, weight_decay=0.0, max_epochs=1000, patience=5)
    res = train_run(net, torch.zeros(20, dtype=torch.long), _split(), cfg, inputs=(None, None))
    assert res["status"] == "ok" and res["readout"] is False
    assert res["best_epoch"] == 3 and res["epochs"] == 3 + 5 + 1
    assert float(net.w.detach()) == pytest.approx(-4.0, abs=1e-4)  # the evaluated weights, not the last step's
    nll = (8 * 0.4 - 2 * math.log(1 - math.exp(-0.4))) / 10  # 8 right val nodes at p = e^-0.4, 2 wrong
    assert res["val_acc"] == pytest.approx(0.8) and res["val_loss"] == pytest.approx(nll, abs=1e-5)


def test_nonfinite_loss_stops_the_run_with_a_flag():
    net = _Scripted([0.5] * 10, [0.3] * 10, nan_at=3)
    cfg = TrainConfig(lr=1.0, weight_decay=0.0, max_epochs=100, patience=50)
    res = train_run(net, torch.zeros(20, dtype=torch.long), _split(), cfg, inputs=(None, None))
    assert res["status"] == "nonfinite_loss"
    assert "epoch 3" in res["message"] and res["test_acc"] is None and res["epochs"] == 4


@pytest.mark.parametrize("kw", [{"lr": math.inf}, {"lr": math.nan}, {"lr": 0.0}, {"weight_decay": math.inf},
                                {"weight_decay": math.nan}, {"weight_decay": -1e-4}])
def test_train_config_rejects_non_finite_or_out_of_range_lr_and_weight_decay(kw):
    # lr = inf used to be accepted: every run then "failed" with a NaN loss and was recorded as done
    with pytest.raises(ValueError, match=f"{next(iter(kw))} must be a finite number"):
        TrainConfig(**kw)


def test_a_split_without_test_or_val_nodes_is_an_error_not_a_nan():
    net = _Scripted([0.5] * 10, [0.3] * 10)
    y = torch.zeros(20, dtype=torch.long)
    empty = torch.zeros(0, dtype=torch.long)
    no_test = Split(torch.arange(10), torch.arange(10, 20), empty, 0)  # used to give test_acc = NaN
    with pytest.raises(ValueError, match=r"split 0 has no test nodes \(sizes train/val/test = \(10, 10, 0\)\)"):
        train_run(net, y, no_test, TrainConfig(max_epochs=5), inputs=(None, None))
    no_val = Split(torch.arange(10), empty, torch.arange(10, 20), 0)  # NaN metrics: never a reset
    with pytest.raises(ValueError, match="has no val nodes"):
        train_run(net, y, no_val, TrainConfig(max_epochs=5), inputs=(None, None))


def test_loss_function_is_nll_of_log_probs():
    lp = torch.log(torch.tensor([[0.25, 0.75]]))
    assert F.nll_loss(lp, torch.tensor([1])).item() == pytest.approx(-math.log(0.75))
