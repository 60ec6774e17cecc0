"""srk with a constant σ runs nsde_coin.sra's SRA1 step: torchsde's srk numbers and gradients, SRA1's orders.

The reference for the numbers is torchsde's own srk (its SRA1 tableau loop) on the same FeynmanKacSDE and the same
FixedGridBrownian path; the references for the orders are the Ornstein–Uhlenbeck closed forms and a fine-grid solve
on the same Brownian path.
"""

import math

import numpy as np
import pytest
import torch
import torchsde
from torch import nn

import nsde_coin.integrate as integrate
from nsde_coin import (
    DiagonalDiffusion,
    FixedGridBrownian,
    GeneralDiffusion,
    LinearDrift,
    MLPDrift,
    ScalarDiffusion,
    StateDiagonalDiffusion,
    feynman_kac,
)
from nsde_coin.sde import FeynmanKacSDE
from nsde_coin.sra import constant_sigma, sra1_integrate

F64 = torch.float64
SIGMA3 = torch.tensor([0.3, 0.5, 0.2], dtype=F64)


def _sigma(kind, learnable=True):
    if kind == "scalar":
        return ScalarDiffusion(3, 0.4, learnable=learnable).double()
    return DiagonalDiffusion(3, SIGMA3, learnable=learnable).double()


def _drift():
    torch.manual_seed(0)
    return MLPDrift(3, width=8, depth=1, time_dependent=True).double()


def _grads(scalar, tensors):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(scalar, tensors)])


@pytest.fixture
def sra_calls(monkeypatch):
    """The list that gets one entry per call of integrate's sra1_integrate (which still runs)."""
    calls = []
    real = integrate.sra1_integrate
    monkeypatch.setattr(integrate, "sra1_integrate", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


@pytest.mark.parametrize("kind", ["scalar", "diagonal"])
def test_sra1_equals_torchsde_srk_on_the_same_path(kind):
    """Paths, and gradients in x, the drift's parameters and a learnable σ, on a dyadic grid (exact times).

    Measured (float64, 8 steps, time-dependent MLP drift): paths differ by <= 9e-16, gradients by <= 9e-16 (a
    different summation order); the tolerance 1e-12 leaves three orders of magnitude."""
    drift, diffusion = _drift(), _sigma(kind)
    sde = FeynmanKacSDE(drift, diffusion)
    y0 = torch.randn(6, 3, dtype=F64, requires_grad=True)
    bm = FixedGridBrownian(0.0, 1.0, (6, 3), steps=8, seed=3, dtype=F64, levy_area="space-time")
    ts = torch.linspace(0.0, 1.0, 9, dtype=F64)
    ours_T, ours = sra1_integrate(sde, y0, bm, ts.tolist(), return_paths=True)
    ref = torchsde.sdeint(sde, y0, ts, bm=bm, method="srk", dt=1.0 / 8)
    assert ours.shape == ref.shape == (9, 6, 3) and torch.equal(ours_T, ours[-1])
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    assert (ours[-1] - ours[0]).abs().max() > 0.1  # the states moved
    tensors = [y0, *drift.parameters(), *diffusion.parameters()]
    g_ours, g_ref = _grads(torch.tanh(ours[-1]).sum(), tensors), _grads(torch.tanh(ref[-1]).sum(), tensors)
    torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-12)
    assert g_ours[-diffusion.raw_sigma.numel():].abs().min() > 1e-3  # σ gets a real gradient


@pytest.mark.parametrize("kind", ["scalar", "diagonal"])
def test_feynman_kac_srk_keeps_the_torchsde_numbers(kind, sra_calls):
    """feynman_kac(solver="srk") with a constant σ goes through sra1_integrate, on the grid torchsde steps on
    (T = 0.7, 10 steps: the step inflated by 1e-10, the last one clamped to T), and returns what the torchsde call it
    replaced returns: means and gradients within 1e-12 (measured <= 1e-15)."""
    drift, diffusion = _drift(), _sigma(kind)
    x = torch.randn(4, 3, dtype=F64, requires_grad=True)
    T, n, K, seed = 0.7, 10, 5, 11
    mean, _ = feynman_kac(torch.tanh, x, drift, diffusion, T, samples=K, steps=n, solver="srk", seed=seed)
    assert sra_calls == [1]
    tensors = [x, *drift.parameters(), *diffusion.parameters()]
    g_ours = _grads(mean.sum(), tensors)

    sde = FeynmanKacSDE(drift, diffusion)  # the call integrate._solve_sde made before
    y0 = x.unsqueeze(1).expand(4, K, 3).reshape(4 * K, 3)
    bm = FixedGridBrownian(0.0, T, (4 * K, 3), steps=n, seed=seed, dtype=F64, levy_area="space-time",
                           commutative=True)
    ys = torchsde.sdeint(sde, y0, torch.tensor([0.0, T], dtype=F64), bm=bm, method="srk", dt=T / n * (1 + 1e-10))
    ref = torch.tanh(ys[-1]).reshape(4, K, 3).mean(1)
    torch.testing.assert_close(mean, ref, rtol=0, atol=1e-12)
    g_ref = _grads(ref.sum(), tensors)
    torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-12)
    assert g_ours.abs().max() > 1e-2


def test_only_constant_sigma_backprop_fixed_grid_solves_take_the_sra1_step(sra_calls):
    x = torch.randn(2, 3, dtype=F64)
    drift = LinearDrift(-torch.eye(3, dtype=F64))

    def solve(diffusion, **kw):
        sra_calls.clear()
        kw = {"solver": "srk", "samples": 2, "steps": 4, "seed": 0, **kw}
        feynman_kac(torch.tanh, x, drift, diffusion, 1.0, **kw)
        return len(sra_calls)

    assert solve(ScalarDiffusion(3, 0.3)) == 1 and solve(DiagonalDiffusion(3, SIGMA3)) == 1
    assert solve(ScalarDiffusion(3, 0.3), return_paths=True) == 1
    assert solve(ScalarDiffusion(3, 0.3), adaptive=True) == 0  # torchsde's adaptive stepping
    assert solve(ScalarDiffusion(3, 0.3), grad_mode="adjoint", adjoint_params=()) == 0  # torchsde's adjoint
    assert solve(ScalarDiffusion(3, 0.3), solver="euler") == 0
    assert solve(GeneralDiffusion(3, 0.3 * torch.eye(3, dtype=F64), noise_type="additive")) == 0
    assert solve(StateDiagonalDiffusion(3, sigma=0.3).double()) == 0
    assert constant_sigma(ScalarDiffusion(3, 0.3)) and not constant_sigma(StateDiagonalDiffusion(3))


@pytest.mark.parametrize("kind", ["scalar", "diagonal"])
def test_ornstein_uhlenbeck_moments(kind):
    """dX = −θ X dt + σ dW: E X_T = e^{−θT} x, Var X_T = σ²(1 − e^{−2θT})/(2θ) per coordinate.

    SRA1 on this linear SDE is X' = R X + σ(ΔW − θ I₍₁,₀₎), R = 1 − θh + (θh)²/2, so its own moments are known too:
    the mean x Rⁿ and the variance σ² q Σₖ R²ᵏ with q = h − θh² + θ²h³/3 (which needs the exact correlation of ΔW
    and I₍₁,₀₎). 16 steps, 20000 paths: the sample moments must match both within 4 standard errors (measured at
    most 1.98, the variance of the σ = 0.2 coordinate); the
    discretisation bias (relative 6.8e-4 in the mean, 8.7e-4 in the variance; at most 0.18 standard errors of the
    mean and 0.09 of the variance) is below half of one."""
    theta, T, n, K = 1.0, 1.0, 16, 20000
    h = T / n
    x0 = torch.tensor([[1.0, -0.5, 0.5]], dtype=F64)
    diffusion = _sigma(kind, learnable=False)
    sig = diffusion.sigma.expand(3).to(F64)
    drift = LinearDrift(-theta * torch.eye(3, dtype=F64))
    with torch.no_grad():
        mean, se, paths = feynman_kac(lambda z: z, x0, drift, diffusion, T, samples=K, steps=n, solver="srk",
                                      seed=21, return_paths=True)
    xT = paths[-1, 0]  # (K, 3)
    var = xT.var(dim=0)
    se_var = var * math.sqrt(2.0 / (K - 1))
    R, q = 1 - theta * h + (theta * h) ** 2 / 2, h - theta * h**2 + theta**2 * h**3 / 3
    scheme_mean, scheme_var = x0[0] * R**n, sig**2 * q * sum(R ** (2 * k) for k in range(n))
    exact_mean = x0[0] * math.exp(-theta * T)
    exact_var = sig**2 * (1 - math.exp(-2 * theta * T)) / (2 * theta)
    for target_mean, target_var in ((scheme_mean, scheme_var), (exact_mean, exact_var)):
        assert ((mean[0] - target_mean).abs() < 4 * se[0]).all(), (mean, target_mean, se)
        assert ((var - target_var).abs() < 4 * se_var).all(), (var, target_var, se_var)
    assert ((scheme_mean - exact_mean).abs() < 0.5 * se[0]).all()
    assert ((scheme_var - exact_var).abs() < 0.5 * se_var).all()


def test_weak_order_two_on_ornstein_uhlenbeck():
    """SRA1's deterministic order 2 carries over to the OU moments: the scheme's exact mean x Rⁿ and variance
    (see the test above) approach the closed forms with fitted slopes 2 ± 0.1 (closed forms; measured 1.99 / 2.02)."""
    theta, T, ns = 1.0, 1.0, [4, 8, 16, 32, 64]
    em, ev = [], []
    for n in ns:
        h = T / n
        R, q = 1 - theta * h + (theta * h) ** 2 / 2, h - theta * h**2 + theta**2 * h**3 / 3
        em.append(abs(R**n - math.exp(-theta * T)))
        ev.append(abs(q * sum(R ** (2 * k) for k in range(n)) - (1 - math.exp(-2 * theta * T)) / (2 * theta)))
    for errs in (em, ev):
        slope = float(np.polyfit(np.log(T / np.asarray(ns, dtype=float)), np.log(errs), 1)[0])
        assert abs(slope - 2.0) < 0.1, (slope, errs)


class _Pendulum(nn.Module):
    """a(x) = −2 sin x: nonlinear (a'' ≠ 0), so SRA1's missing terms (a'' σ² I₍₁,₁,₀₎, …) set a strong order of 1.5."""

    def forward(self, t, x):
        return -2.0 * torch.sin(x)


@pytest.mark.parametrize("kind", ["scalar", "diagonal"])
def test_strong_order_one_and_a_half(kind):
    """Mean |X_T^h − X_T^ref| over 500 paths on ONE fine Brownian path (1024 steps; a coarse query sums fine steps,
    I₍₁,₀₎ by Chen's relation), the reference being the 1024-step solve, h = 1/16 … 1/128. A large σ (≈ 2) makes
    the stochastic terms dominate (with σ = 0.4 the deterministic order 2 shows instead). Fitted order 1.5 ± 0.15
    (measured 1.546 scalar, 1.552 diagonal; errors 5.4e-3 .. 2.0e-4, far above round-off)."""
    N, fine, T = 500, 1024, 1.0
    diffusion = (ScalarDiffusion(3, 2.0) if kind == "scalar" else DiagonalDiffusion(3, torch.tensor([2.0, 1.5, 2.5])))
    sde = FeynmanKacSDE(_Pendulum(), diffusion.double())
    bm = FixedGridBrownian(0.0, T, (N, 3), steps=fine, seed=5, dtype=F64, levy_area="space-time")
    y0 = torch.full((N, 3), 0.2, dtype=F64)

    def solve(n):
        with torch.no_grad():
            return sra1_integrate(sde, y0, bm, np.linspace(0.0, T, n + 1).tolist())[0]

    ref = solve(fine)
    ns = [16, 32, 64, 128]
    errs = [float((solve(n) - ref).abs().mean()) for n in ns]
    slope = float(np.polyfit(np.log(T / np.asarray(ns, dtype=float)), np.log(errs), 1)[0])
    assert all(a > b for a, b in zip(errs, errs[1:])), errs
    assert abs(slope - 1.5) < 0.15, (slope, errs)


def test_sra1_rejects_a_stratonovich_problem_and_a_bad_grid():
    sde = FeynmanKacSDE(LinearDrift(-torch.eye(3)), ScalarDiffusion(3, 0.3), sde_type="stratonovich")
    bm = FixedGridBrownian(0.0, 1.0, (2, 3), steps=2, levy_area="space-time")
    with pytest.raises(ValueError, match="Itô"):
        sra1_integrate(sde, torch.zeros(2, 3), bm, [0.0, 0.5, 1.0])
    ito = FeynmanKacSDE(LinearDrift(-torch.eye(3)), ScalarDiffusion(3, 0.3))
    with pytest.raises(ValueError, match="increasing"):
        sra1_integrate(ito, torch.zeros(2, 3), bm, [0.0, 0.5, 0.5])
