"""The fit / evaluate loop: safe NLL, determinism, and that it actually trains (numbers, fixed seeds)."""

import math

import pytest
import torch
from torch import nn

from nsde_coin.toydata import make_spirals
from nsde_coin.training import evaluate, fit, log_probs_from, nll_loss


def _linear_probs(dim, classes, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(dim, classes), nn.Softmax(dim=-1))


def test_nll_clamps_zero_probability():
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    y = torch.tensor([1, 0])
    loss = nll_loss(p, y, eps=1e-6)
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx((-math.log(1e-6) + math.log(2)) / 2, rel=1e-6)
    # the three output conventions agree on the same distribution
    logits = torch.tensor([[0.3, -1.2, 2.0]])
    lp = torch.log_softmax(logits, -1)
    assert torch.allclose(log_probs_from(logits, "logits"), lp)
    assert torch.allclose(log_probs_from(lp.exp(), "probs"), lp, atol=1e-6)
    assert torch.equal(log_probs_from(lp, "log_probs"), lp)


def test_bad_output_kind_names_choices():
    with pytest.raises(ValueError, match="probs, log_probs, logits"):
        log_probs_from(torch.ones(2, 2), "softmax")


def test_fit_separable_data_and_evaluate():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 5, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    model = _linear_probs(5, 2)
    before = evaluate(model, x, y)["nll"]
    res = fit(model, x, y, epochs=20, lr=0.05, seed=0)
    after = evaluate(model, x, y)
    assert len(res.history) == 20 and res.train_time_s > 0
    assert res.history[-1]["loss"] < 0.5 * res.history[0]["loss"]
    assert after["accuracy"] >= 0.97
    assert after["nll"] < 0.3 * before


def test_fit_is_bit_reproducible():
    d = make_spirals(300, seed=0)
    runs = []
    for _ in range(2):
        model = _linear_probs(d.dim, d.classes, seed=1)
        res = fit(model, d.x_train, d.y_train, epochs=3, seed=7)
        runs.append(([h["loss"] for h in res.history], model[0].weight.detach().clone()))
    assert runs[0][0] == runs[1][0]
    assert torch.equal(runs[0][1], runs[1][1])


def test_validation_history_and_callback():
    d = make_spirals(300, seed=0)
    seen = []
    res = fit(_linear_probs(d.dim, d.classes), d.x_train, d.y_train, epochs=2, x_val=d.x_test, y_val=d.y_test,
              on_epoch=seen.append)
    assert [h["epoch"] for h in res.history] == [1, 2] and seen == res.history
    assert 0.0 <= res.history[-1]["val_acc"] <= 1.0


class _NaNModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return torch.full((x.shape[0], 2), float("nan")) * self.w


def test_non_finite_loss_raises():
    x, y = torch.randn(8, 3), torch.zeros(8, dtype=torch.long)
    with pytest.raises(FloatingPointError, match="non-finite"):
        fit(_NaNModel(), x, y, epochs=1)


def test_evaluate_restores_mode_and_counts_correctly():
    model = nn.Sequential(nn.Linear(2, 2), nn.Softmax(-1))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(2))
        model[0].bias.zero_()
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 3.0]])
    y = torch.tensor([0, 1, 1, 1])  # third is wrong
    model.train()
    ev = evaluate(model, x, y, batch_size=3)
    assert ev["accuracy"] == pytest.approx(0.75)
    assert model.training


@pytest.mark.parametrize("kwargs, word", [({"epochs": 0}, "epochs=0"), ({"batch_size": 0}, "batch_size=0"),
                                          ({"lr": -1.0}, "lr=-1.0"), ({"output": "x"}, "valid choices"),
                                          ({"epochs": True}, "epochs=True"), ({"lr": True}, "lr=True")])
def test_fit_rejects_bad_settings(kwargs, word):
    x, y = torch.randn(8, 3), torch.zeros(8, dtype=torch.long)
    with pytest.raises(ValueError, match=word):
        fit(_linear_probs(3, 2), x, y, **kwargs)


def test_fit_rejects_float_labels():
    with pytest.raises(TypeError, match="int64"):
        fit(_linear_probs(3, 2), torch.randn(8, 3), torch.zeros(8), epochs=1)


def test_fit_accepts_numpy_scalars_like_python_ones():
    """Settings read from numpy (e.g. a grid) behave exactly like Python numbers, and the record stays JSON-able."""
    import json

    import numpy as np

    x, y = torch.randn(16, 3, generator=torch.Generator().manual_seed(0)), torch.arange(16) % 2
    torch.manual_seed(0)
    m1 = _linear_probs(3, 2)
    r1 = fit(m1, x, y, epochs=2, batch_size=4, lr=0.1)
    torch.manual_seed(0)
    m2 = _linear_probs(3, 2)
    r2 = fit(m2, x, y, epochs=np.int64(2), batch_size=np.int64(4), lr=np.float64(0.1))
    assert [h["loss"] for h in r1.history] == [h["loss"] for h in r2.history]
    assert json.loads(json.dumps(r2.record()))["epochs"] == 2
