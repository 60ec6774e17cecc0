"""The public API of the core: argument validation (messages name the value and the choices), reproducibility,
the ConvectionDiffusionNet module, and the fields' own checks."""

import math

import pytest
import torch
from torch import nn

from nsde_coin import (
    ConvectionDiffusionNet,
    DiagonalDiffusion,
    FeynmanKacSDE,
    GeneralDiffusion,
    LinearDrift,
    MLPDrift,
    ScalarDiffusion,
    StateDiagonalDiffusion,
    ZeroDiffusion,
    ZeroDrift,
    feynman_kac,
)

F64 = torch.float64


def _args():
    torch.manual_seed(0)
    return torch.randn(3, 2), MLPDrift(2, width=8), ScalarDiffusion(2, 0.3)


# --------------------------------------------------------------------------------------------------------------
# feynman_kac validation


@pytest.mark.parametrize("kwargs,err,fragment", [
    (dict(T=0.0), ValueError, "T=0.0 is not valid"),
    (dict(T=-1.0), ValueError, "T=-1.0 is not valid"),
    (dict(T=float("nan")), ValueError, "T=nan"),
    (dict(steps=0), ValueError, "steps=0 is not valid"),
    (dict(steps=2.5), ValueError, "steps=2.5"),
    (dict(dt=-0.1), ValueError, "dt=-0.1"),
    (dict(steps=4, dt=0.1), ValueError, "not both"),
    (dict(samples=0), ValueError, "samples=0 is not valid"),
    (dict(samples=True), ValueError, "samples=True"),
    (dict(solver="rk4"), ValueError, "ODE (torchdiffeq) solver"),
    (dict(solver="bogus"), ValueError, "unknown sde solver 'bogus'; valid choices: euler"),
    (dict(grad_mode="magic"), ValueError, "grad_mode='magic' is not valid; valid choices: backprop"),
    (dict(sde_type="levy"), ValueError, "sde_type='levy' is not valid; valid choices: ito"),
    (dict(solver="euler", grad_mode="reversible"), ValueError, "does not support grad_mode='reversible'"),
    (dict(grad_mode="reversible", adjoint_method="midpoint"), ValueError, "adjoint_reversible_heun"),
    (dict(solver="srk", grad_mode="adjoint", adjoint_method="srk"), ValueError, "adjoint_method='srk'"),
    (dict(adjoint_method="euler"), ValueError, "grad_mode='backprop'"),
    (dict(seed=1.5), TypeError, "seed must be an int"),
])
def test_bad_arguments_raise_with_the_value_named(kwargs, err, fragment):
    x, drift, diff = _args()
    with pytest.raises(err, match=fragment.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        feynman_kac(torch.tanh, x, drift, diff, **{"T": 1.0, **kwargs})


def test_bad_inputs_raise():
    x, drift, diff = _args()
    with pytest.raises(ValueError, match="NaN or Inf"):
        feynman_kac(torch.tanh, torch.tensor([[0.0, float("nan")]]), drift, diff)
    with pytest.raises(ValueError, match="NaN or Inf"):
        feynman_kac(torch.tanh, torch.tensor([[0.0, float("inf")]]), drift, diff)
    with pytest.raises(ValueError, match=r"x must be 2-D of shape \(B, d\), got shape \(2,\)"):
        feynman_kac(torch.tanh, torch.zeros(2), drift, diff)
    with pytest.raises(ValueError, match="x has 3 features but the drift expects dim=2"):
        feynman_kac(torch.tanh, torch.zeros(4, 3), drift, None)
    with pytest.raises(ValueError, match="x has 3 features but the diffusion expects dim=2"):
        feynman_kac(torch.tanh, torch.zeros(4, 3), None, diff)
    with pytest.raises(TypeError, match="f must be callable"):
        feynman_kac("softmax", x, drift, diff)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        feynman_kac(torch.tanh, [[0.0, 1.0]], drift, diff)
    with pytest.raises(TypeError, match="diffusion must be a diffusion module"):
        feynman_kac(torch.tanh, x, drift, lambda t, z: z)
    with pytest.raises(ValueError, match=r"f must map \(N, d\) -> \(N, C\) or \(N,\) with N = 12"):
        feynman_kac(lambda z: z[:1], x, drift, diff, samples=4)
    # sigma = 0 routes to the ODE family: SDE-only options are rejected by the registry
    with pytest.raises(ValueError, match="unknown ode solver 'milstein'"):
        feynman_kac(torch.tanh, x, drift, None, solver="milstein")
    with pytest.raises(ValueError, match="does not support grad_mode='reversible'"):
        feynman_kac(torch.tanh, x, drift, ZeroDiffusion(2), grad_mode="reversible")


def test_blow_up_is_reported_not_returned_as_nan():
    x = torch.ones(2, 1)
    with pytest.raises(FloatingPointError, match="NaN/Inf"):
        feynman_kac(lambda z: z, x, LinearDrift(torch.tensor([[1e3]])), ScalarDiffusion(1, 0.1), steps=200,
                    samples=2, seed=0)


def test_shapes_stderr_and_paths():
    x, drift, diff = _args()
    mean, se, paths = feynman_kac(lambda z: torch.softmax(z, -1), x, drift, diff, 0.5, samples=6, steps=5, seed=1,
                                  return_paths=True)
    assert mean.shape == se.shape == (3, 2) and paths.shape == (6, 3, 6, 2)
    torch.testing.assert_close(mean.sum(-1), torch.ones(3))  # averaging probabilities keeps them probabilities
    assert torch.equal(paths[0], x.unsqueeze(1).expand(3, 6, 2))
    # stderr is the sample std over paths / sqrt(K), recomputed from the returned terminal states
    probs = torch.softmax(paths[-1], -1)
    torch.testing.assert_close(se, probs.std(dim=1) / math.sqrt(6))
    torch.testing.assert_close(mean, probs.mean(dim=1))
    m1, s1 = feynman_kac(lambda z: z.sum(-1), x, drift, diff, samples=1, seed=1)
    assert m1.shape == (3,) and torch.isinf(s1).all()  # one path: no standard error estimate
    m0, s0 = feynman_kac(lambda z: z, x, drift, None, samples=9)
    assert m0.shape == (3, 2) and torch.equal(s0, torch.zeros(3, 2))


def test_dt_that_does_not_divide_T_is_rounded_to_equal_steps():
    x, drift, _ = _args()
    a, _ = feynman_kac(lambda z: z, x, drift, None, 1.0, dt=0.3)  # ceil(1/0.3) = 4 steps of 0.25
    b, _ = feynman_kac(lambda z: z, x, drift, None, 1.0, steps=4)
    assert torch.equal(a, b)


def test_no_spurious_extra_step_and_no_extra_drift_evaluations():
    """torchsde's shape probes and float round-off of the time grid cost no extra drift evaluation."""
    calls = []

    class Counting(nn.Module):
        def forward(self, t, z):
            calls.append(float(t))
            return -z

    x = torch.randn(2, 2)
    for steps in (3, 10, 20, 49):
        calls.clear()
        feynman_kac(lambda z: z, x, Counting(), ScalarDiffusion(2, 0.2), 1.0, steps=steps, samples=2, seed=0)
        assert len(calls) == steps, (steps, len(calls))
        assert calls == pytest.approx([k / steps for k in range(steps)], abs=1e-9)


# --------------------------------------------------------------------------------------------------------------
# reproducibility


@pytest.mark.parametrize("solver", ["euler", "srk", "log_ode", "reversible_heun"])
def test_same_seed_bit_identical_and_different_seeds_differ(solver):
    x, drift, diff = _args()
    a = feynman_kac(torch.tanh, x, drift, diff, samples=4, seed=7, solver=solver)[0]
    b = feynman_kac(torch.tanh, x, drift, diff, samples=4, seed=7, solver=solver)[0]
    c = feynman_kac(torch.tanh, x, drift, diff, samples=4, seed=8, solver=solver)[0]
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    g = torch.Generator().manual_seed(3)
    d = feynman_kac(torch.tanh, x, drift, diff, samples=4, generator=g, solver=solver)[0]
    g = torch.Generator().manual_seed(3)
    e = feynman_kac(torch.tanh, x, drift, diff, samples=4, generator=g, solver=solver)[0]
    assert torch.equal(d, e)
    torch.manual_seed(11)
    f1 = feynman_kac(torch.tanh, x, drift, diff, samples=4, solver=solver)[0]
    torch.manual_seed(11)
    f2 = feynman_kac(torch.tanh, x, drift, diff, samples=4, solver=solver)[0]
    assert torch.equal(f1, f2)


def test_adaptive_stepping_uses_brownian_interval_reproducibly():
    x, drift, diff = _args()
    a = feynman_kac(torch.tanh, x, drift, diff, samples=4, seed=2, adaptive=True, solver="milstein")[0]
    b = feynman_kac(torch.tanh, x, drift, diff, samples=4, seed=2, adaptive=True, solver="milstein")[0]
    assert torch.equal(a, b)


# --------------------------------------------------------------------------------------------------------------
# ConvectionDiffusionNet


def _net(**kw):
    torch.manual_seed(0)
    base = nn.Linear(2, 3)
    args = dict(steps=5, samples=4, seed=3)
    args.update(kw)
    return ConvectionDiffusionNet(base, MLPDrift(2, width=8), ScalarDiffusion(2, 0.3), 1.0, **args)


def test_net_outputs_probabilities_and_stderr():
    net = _net()
    x = torch.randn(5, 2)
    p, se = net.forward_with_stderr(x)
    assert p.shape == se.shape == (5, 3)
    torch.testing.assert_close(p.sum(-1), torch.ones(5))
    assert (p > 0).all() and (se > 0).all()
    assert net.family == "sde" and net.solver_info.name == "euler"
    ident = _net(output="identity")
    assert not torch.allclose(ident(x).sum(-1), torch.ones(5))


def test_net_same_seed_bit_identical_sequences_and_eval_is_deterministic():
    x = torch.randn(5, 2)
    a, b, c = _net(), _net(), _net(seed=4)
    seq_a = [a(x) for _ in range(3)]
    seq_b = [b(x) for _ in range(3)]
    for u, v in zip(seq_a, seq_b):
        assert torch.equal(u, v)
    assert not torch.equal(seq_a[0], seq_a[1])  # training sees fresh noise each call
    assert not torch.equal(c(x), _net()(x))
    a.eval()
    assert torch.equal(a(x), a(x))  # evaluation uses one fixed path (common random numbers)
    fresh = _net(seed=None)
    torch.manual_seed(5)
    u = fresh(x)
    torch.manual_seed(5)
    assert torch.equal(u, fresh(x))
    assert not torch.equal(fresh(x), fresh(x))


def test_net_train_and_eval_sample_counts():
    seen = []

    class Base(nn.Module):
        def forward(self, z):
            seen.append(z.shape[0])
            return z

    net = ConvectionDiffusionNet(Base(), None, DiagonalDiffusion(2, torch.tensor([0.1, 0.2])), steps=3, samples=4,
                                 eval_samples=16, seed=0, output="identity")
    x = torch.randn(2, 2)
    net(x)
    net.eval()
    net(x)
    assert seen == [8, 32]
    assert net.current_samples == 16
    ode = ConvectionDiffusionNet(Base(), MLPDrift(2, 4), None, steps=3, samples=4)
    assert ode.family == "ode" and ode.current_samples == 1


def test_net_trains_with_every_grad_mode():
    """A few Adam steps reduce the NLL with backprop, adjoint and reversible gradients alike."""
    torch.manual_seed(1)
    x = torch.randn(64, 2)
    y = (x[:, 0] * x[:, 1] > 0).long()
    for grad_mode in ("backprop", "adjoint", "reversible"):
        net = _net(grad_mode=grad_mode, samples=2, steps=4)
        opt = torch.optim.Adam(net.parameters(), lr=0.05)
        losses = []
        for _ in range(15):
            loss = nn.functional.nll_loss(torch.log(net(x) + 1e-8), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < losses[0] - 0.05, (grad_mode, losses)


def test_net_validates_at_construction():
    with pytest.raises(ValueError, match="output='logits' is not valid; valid choices: probs, identity"):
        _net(output="logits")
    with pytest.raises(ValueError, match="eval_samples=0"):
        _net(eval_samples=0)
    with pytest.raises(ValueError, match="does not support grad_mode='reversible'"):
        _net(solver="euler", grad_mode="reversible")
    with pytest.raises(TypeError, match="base must be callable"):
        ConvectionDiffusionNet(3, None, None)
    with pytest.raises(ValueError, match="T=0"):
        ConvectionDiffusionNet(nn.Linear(2, 2), None, None, 0)
    with pytest.raises(TypeError, match="drift that is not an nn.Module.*adjoint_params"):
        ConvectionDiffusionNet(nn.Linear(2, 2), lambda t, x: -x, None, grad_mode="adjoint")
    assert ConvectionDiffusionNet(nn.Linear(2, 2), lambda t, x: -x, None, grad_mode="adjoint",
                                  adjoint_params=()).family == "ode"


# --------------------------------------------------------------------------------------------------------------
# fields


def test_field_validation_messages():
    with pytest.raises(ValueError, match=r"sigma must be >= 0 \(a standard deviation\), got -0.5"):
        ScalarDiffusion(2, -0.5)
    with pytest.raises(ValueError, match=r"got \[0.1, -0.2\]"):
        DiagonalDiffusion(2, torch.tensor([0.1, -0.2]))
    with pytest.raises(ValueError, match="learnable sigma must be > 0"):
        ScalarDiffusion(2, 0.0, learnable=True)
    with pytest.raises(ValueError, match=r"shape \(d,\), got shape \(2, 2\)"):
        DiagonalDiffusion(2, torch.ones(2, 2))
    with pytest.raises(ValueError, match="must be a scalar"):
        ScalarDiffusion(2, torch.ones(2))
    with pytest.raises(ValueError, match=r"matrix must have shape \(d, m\)"):
        GeneralDiffusion(3, torch.ones(3))
    with pytest.raises(ValueError, match="noise_type='scalar' needs a single Brownian motion"):
        GeneralDiffusion(3, torch.ones(3, 2), noise_type="scalar")
    with pytest.raises(ValueError, match="noise_type='diagonal' is not valid for a constant matrix"):
        GeneralDiffusion(3, torch.ones(3, 2), noise_type="diagonal")
    with pytest.raises(ValueError, match="both dim and noise_dim"):
        GeneralDiffusion(dim=3)
    with pytest.raises(ValueError, match=r"square matrix of shape \(d, d\)"):
        LinearDrift(torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"b must have shape \(2,\)"):
        LinearDrift(torch.eye(2), torch.ones(3))
    with pytest.raises(ValueError, match="activation='sine' is not valid; valid choices: tanh"):
        MLPDrift(2, activation="sine")
    with pytest.raises(ValueError, match="width=0"):
        MLPDrift(2, width=0)
    with pytest.raises(ValueError, match="sigma_max=-1"):
        StateDiagonalDiffusion(2, sigma_max=-1.0)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 2\)"):
        StateDiagonalDiffusion(2)(0.0, torch.zeros(3, 4))
    with pytest.raises(ValueError, match="integrate_as='both'"):
        FeynmanKacSDE(ZeroDrift(), ScalarDiffusion(2, 0.1), integrate_as="both")


def test_field_attributes_and_positivity():
    assert ZeroDiffusion(3).is_zero and ScalarDiffusion(3, 0.0).is_zero
    assert not ScalarDiffusion(3, 0.1).is_zero and not ScalarDiffusion(3, 0.1, learnable=True).is_zero
    assert GeneralDiffusion(2, torch.zeros(2, 2)).is_zero
    assert not GeneralDiffusion(2, torch.zeros(2, 2), learnable=True).is_zero
    for field, nt, m in ((ScalarDiffusion(3, 0.2), "additive", 3), (DiagonalDiffusion(3, torch.ones(3)), "additive", 3),
                         (StateDiagonalDiffusion(3), "diagonal", 3), (GeneralDiffusion(dim=3, noise_dim=2),
                                                                      "additive", 2)):
        assert field.noise_type == nt and field.noise_dim == m
        x, v = torch.randn(4, 3), torch.randn(4, m)
        g = field(0.2, x)
        expect = g * v if nt == "diagonal" else torch.einsum("bdm,bm->bd", g, v)
        torch.testing.assert_close(field.prod(0.2, x, v), expect)
    learn = DiagonalDiffusion(2, torch.tensor([0.5, 1e-3]), learnable=True)
    torch.testing.assert_close(learn.sigma, torch.tensor([0.5, 1e-3]))
    with torch.no_grad():
        learn.raw_sigma.sub_(20.0)  # a huge optimiser step keeps sigma positive
    assert (learn.sigma > 0).all()
    bounded = StateDiagonalDiffusion(3, sigma_max=0.5, sigma=0.2)
    s = bounded(0.0, 100 * torch.randn(50, 3))
    assert (s > 0).all() and (s < 0.5).all()
    torch.testing.assert_close(StateDiagonalDiffusion(3, sigma=0.2)(0.0, torch.zeros(1, 3)),
                               torch.full((1, 3), 0.2), atol=0.05, rtol=0)
    drift = MLPDrift(3, width=8, time_dependent=False)
    assert torch.equal(drift(0.0, x := torch.randn(2, 3)), drift(5.0, x))
    assert not torch.equal(MLPDrift(3, width=8)(0.0, x), MLPDrift(3, width=8)(5.0, x))


def test_numpy_scalars_are_valid_numbers():
    """np.int64 / np.float32 arguments (e.g. from a numpy grid) were rejected as "not an int/float"."""
    import numpy as np

    from nsde_coin.brownian import FixedGridBrownian

    assert ConvectionDiffusionNet(nn.Linear(2, 2), None, None, np.float32(0.5)).T == 0.5
    d = MLPDrift(np.int64(3), width=np.int64(4))
    assert d.dim == 3 and type(d.dim) is int and d.inp.out_features == 4
    assert StateDiagonalDiffusion(2, sigma=np.float32(0.25), sigma_max=np.float64(1.0)).sigma_max == 1.0
    a = FixedGridBrownian(0.0, 1.0, (3, 2), steps=np.int64(4), seed=np.int64(7), dtype=torch.float64)
    b = FixedGridBrownian(0.0, 1.0, (3, 2), steps=4, seed=7, dtype=torch.float64)
    assert a.steps == 4 and torch.equal(a(0.25, 0.75), b(0.25, 0.75))
