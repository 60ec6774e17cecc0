"""The finite-difference PDE solution agrees with nsde_coin's Monte Carlo Feynman–Kac estimate (the theorem, checked).

u(x, T) from the PDE u_t = v·∇u + ½σσᵀ:∇²u must match E[f(X_T)] estimated by :func:`nsde_coin.integrate.feynman_kac`
for the same v and σ, within 4 standard errors plus the two discretisation errors (the PDE's grid error, measured
here by halving h, and Euler–Maruyama's weak O(dt) bias, bounded by EULER_BIAS = 2e-3 at the step counts used —
measured once with 200,000 paths against fine grids: 1-D, 80 steps: 1.5e-3 (it halves with dt: 9.9e-3, 5.7e-3,
3.1e-3, 1.5e-3 at 10..80 steps); 2-D, 20 steps: ≲ 1.7e-3).
"""

import numpy as np
import pytest
import torch

from nsde_coin.fields import LinearDrift, MLPDrift, ScalarDiffusion
from nsde_coin.integrate import feynman_kac
from nsde_coin.pde import solve_convection_diffusion

EULER_BIAS = 2e-3


def sigmoid_classifier(w, b):
    w = torch.tensor(w, dtype=torch.float64)

    def f(x):
        return torch.sigmoid(torch.as_tensor(x, dtype=torch.float64) @ w + b)

    return f


def test_one_d_nonlinear_drift_matches_monte_carlo():
    def drift(t, x):
        return torch.sin(2.0 * x) - 0.5 * x  # two stable points near ±0.95: a genuinely non-linear flow

    f = sigmoid_classifier([3.0], -0.5)
    sigma, T = 0.6, 1.0
    kw = dict(box=[(-5.0, 5.0)], T=T, drift=drift, sigma=sigma, steps=200)
    fine = solve_convection_diffusion(f, n=2001, **kw)
    coarse = solve_convection_diffusion(f, n=1001, **kw)
    x0 = torch.tensor([[-1.0], [-0.3], [0.0], [0.4], [1.2]], dtype=torch.float64)
    grid_err = np.abs(fine.at(x0.numpy()) - coarse.at(x0.numpy())).max()
    with torch.no_grad():
        mean, se = feynman_kac(f, x0, drift, ScalarDiffusion(1, sigma), T, samples=10_000, steps=80, seed=7)
    diff = np.abs(fine.at(x0.numpy()) - mean.numpy())
    print("|PDE - MC|", diff, "stderr", se.numpy(), "grid", grid_err)
    assert np.all(diff <= 4 * se.numpy() + grid_err + EULER_BIAS), (diff, se, grid_err)
    # and the test can fail: without the drift the values are far off
    still = solve_convection_diffusion(f, n=1001, box=[(-5.0, 5.0)], T=T, sigma=sigma, steps=200)
    assert np.abs(still.at(x0.numpy()) - mean.numpy()).max() > 20 * se.max()


def test_two_d_mlp_drift_matches_monte_carlo():
    torch.manual_seed(0)
    drift = MLPDrift(2, width=16, depth=2, time_dependent=False).double()
    diffusion = ScalarDiffusion(2, 0.5)
    f = sigmoid_classifier([2.0, -1.5], 0.3)
    T = 1.0
    kw = dict(box=[(-5.0, 5.0), (-5.0, 5.0)], T=T, drift=drift, sigma=diffusion, steps=40)
    fine = solve_convection_diffusion(f, n=121, **kw)
    coarse = solve_convection_diffusion(f, n=61, **kw)
    x0 = torch.tensor([[-1.0, 0.5], [0.0, 0.0], [0.7, -0.4], [1.0, 1.0]], dtype=torch.float64)
    grid_err = np.abs(fine.at(x0.numpy()) - coarse.at(x0.numpy())).max()
    assert grid_err < 0.02
    with torch.no_grad():
        mean, se = feynman_kac(f, x0, drift, diffusion, T, samples=10_000, steps=20, seed=3)
    diff = np.abs(fine.at(x0.numpy()) - mean.numpy())
    print("|PDE - MC|", diff, "stderr", se.numpy(), "grid", grid_err)
    assert np.all(diff <= 4 * se.numpy() + grid_err + EULER_BIAS), (diff, se, grid_err)
    # the drift matters: dropping it moves u by far more than the tolerance
    no_drift = solve_convection_diffusion(f, n=61, box=kw["box"], T=T, sigma=diffusion, steps=40)
    assert np.abs(no_drift.at(x0.numpy()) - mean.numpy()).max() > 10 * (4 * se.max() + grid_err + EULER_BIAS)


def test_fields_modules_give_the_ornstein_uhlenbeck_closed_form():
    theta, s, w, T = 1.3, 0.9, 0.4, 0.8
    drift = LinearDrift(torch.tensor([[-theta]], dtype=torch.float64))
    sol = solve_convection_diffusion(lambda x: np.exp(-x[:, 0] ** 2 / (2 * w * w)), box=[(-5, 5)], n=801, T=T,
                                     drift=drift, sigma=ScalarDiffusion(1, s), steps=200)
    x = sol.axes[0]
    m = x * np.exp(-theta * T)
    var = s * s * (1 - np.exp(-2 * theta * T)) / (2 * theta)
    exact = w / np.sqrt(w * w + var) * np.exp(-m**2 / (2 * (w * w + var)))
    assert np.abs(sol.final - exact).max() < 4e-3


def test_time_dependent_field_is_refused():
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="drift depends on t"):
        solve_convection_diffusion(lambda x: x[:, 0], box=[(-1, 1), (-1, 1)], n=11, T=1.0,
                                   drift=MLPDrift(2, width=8, depth=1, time_dependent=True))
