"""Finite-difference solver: closed forms, signs and the ½ factor, conservation, walls, and grid convergence orders.

Closed forms used (Feynman–Kac with Gaussian f, so E[f(X_t)] is a Gaussian integral):

* heat, u_t = ½ s² u_xx, f = exp(−x²/(2w²)):  u = w/√(w² + s²t) · exp(−x²/(2(w² + s²t)));
* Ornstein–Uhlenbeck, u_t = −θ x u_x + ½ s² u_xx: X_t | x ~ N(x e^{−θt}, s²(1 − e^{−2θt})/(2θ)), so
  u = w/√(w² + V) · exp(−m²/(2(w² + V))) with m = x e^{−θt}, V the variance;
* constant drift, u_t = c u_x, f = sin:  u = sin(x + c t)  (checks the sign of the convection term);
* 2-D constant σ with correlation, f = exp(−|x|²/(2w²)):  u = w²/√det(w²I + tΣ) · exp(−½ xᵀ(w²I + tΣ)⁻¹x),
  Σ = σσᵀ (checks the mixed-derivative stencil and the ½ factor).
"""

import numpy as np
import pytest

from nsde_coin.pde import make_grid, solve_convection_diffusion


def gauss(w):
    return lambda x: np.exp(-np.sum(x**2, axis=1) / (2 * w * w))


def heat_exact(x, t, s, w):
    var = w * w + s * s * t
    return w / np.sqrt(var) * np.exp(-x**2 / (2 * var))


def ou_exact(x, t, theta, s, w):
    m = x * np.exp(-theta * t)
    var = s * s * (1 - np.exp(-2 * theta * t)) / (2 * theta)
    return w / np.sqrt(w * w + var) * np.exp(-m**2 / (2 * (w * w + var)))


@pytest.mark.parametrize("method", ["cn", "implicit", "explicit"])
def test_heat_kernel_closed_form(method):
    s, w, T = 0.8, 0.5, 1.0
    sol = solve_convection_diffusion(gauss(w), box=[(-6, 6)], n=241, T=T, sigma=s, method=method,
                                     steps=None if method == "explicit" else 200)
    if method == "explicit":
        assert sol.dt <= sol.cfl
    err = np.abs(sol.final - heat_exact(sol.axes[0], T, s, w)).max()
    # h = 0.05; backward Euler carries an O(dt) = O(5e-3) time error, the other two are O(h²)-dominated
    assert err < {"cn": 2e-4, "explicit": 4e-4, "implicit": 1e-3}[method], err
    assert sol.times[0] == 0.0 and sol.times[-1] == pytest.approx(T)


def test_sine_heat_mode_decays_at_half_sigma_squared():
    # f = cos(k x) on [0, π] with Neumann walls is an eigenfunction: u = exp(−½ s² k² t) cos(k x)
    s, k, T = 0.6, 3.0, 0.7
    sol = solve_convection_diffusion(lambda x: np.cos(k * x[:, 0]), box=[(0, np.pi)], n=201, T=T, sigma=s, steps=400)
    exact = np.exp(-0.5 * s * s * k * k * T) * np.cos(k * sol.axes[0])
    assert np.abs(sol.final - exact).max() < 2e-4


def test_constant_drift_sign():
    c, T = 0.7, 1.0
    sol = solve_convection_diffusion(lambda x: np.sin(x[:, 0]), box=[(-10, 10)], n=1601, T=T, drift=c,
                                     convection="central", steps=400)
    x = sol.axes[0]
    inner = np.abs(x) < 5
    assert np.abs(sol.final - np.sin(x + c * T))[inner].max() < 1e-3  # u(x, t) = f(x + c t), not f(x − c t)
    assert np.abs(sol.final - np.sin(x - c * T))[inner].max() > 0.5


def test_ornstein_uhlenbeck_closed_form():
    theta, s, w, T = 1.3, 0.9, 0.4, 0.8
    sol = solve_convection_diffusion(gauss(w), box=[(-5, 5)], n=801, T=T, drift=lambda x: -theta * x,
                                     sigma=s, steps=200)
    x = sol.axes[0]
    err = np.abs(sol.final - ou_exact(x, T, theta, s, w)).max()
    assert err < 4e-3, err  # first-order upwind, h = 0.0125 (measured 3.0e-3)


def test_two_d_correlated_diffusion_closed_form():
    w, T = 0.6, 0.5
    sig = np.array([[0.9, 0.0], [0.5, 0.6]])  # Σ = σσᵀ has a non-zero off-diagonal 0.45
    cov = sig @ sig.T
    sol = solve_convection_diffusion(gauss(w), box=[(-4, 4), (-4, 4)], n=121, T=T, sigma=sig, steps=50)
    _, pts = make_grid([(-4, 4), (-4, 4)], 121)
    m = w * w * np.eye(2) + T * cov
    exact = w * w / np.sqrt(np.linalg.det(m)) * np.exp(-0.5 * np.einsum("pi,ij,pj->p", pts, np.linalg.inv(m), pts))
    err = np.abs(sol.final.ravel() - exact).max()
    assert err < 2e-3, err
    # dropping the ½ (using Σ instead of ½Σ) would be visibly wrong
    m2 = w * w * np.eye(2) + 2 * T * cov
    wrong = w * w / np.sqrt(np.linalg.det(m2)) * np.exp(-0.5 * np.einsum("pi,ij,pj->p", pts, np.linalg.inv(m2), pts))
    assert np.abs(sol.final.ravel() - wrong).max() > 50 * err


def test_vector_valued_f_evolves_columnwise_and_interpolates():
    def f(x):
        return np.stack([np.exp(-x[:, 0] ** 2), np.cos(x[:, 0])], axis=1)

    sol = solve_convection_diffusion(f, box=[(-6, 6)], n=301, T=0.5, sigma=1.0, drift=0.3)
    one = solve_convection_diffusion(lambda x: np.cos(x[:, 0]), box=[(-6, 6)], n=301, T=0.5, sigma=1.0, drift=0.3)
    assert sol.final.shape == (301, 2)
    np.testing.assert_allclose(sol.final[:, 1], one.final, rtol=0, atol=1e-13)
    pts = np.array([[sol.axes[0][100]], [sol.axes[0][200]]])
    np.testing.assert_allclose(sol.at(pts), sol.final[[100, 200]], atol=1e-13)


@pytest.mark.parametrize("method", ["explicit", "cn"])
def test_pure_diffusion_conserves_mass_with_zero_flux_walls(method):
    # an off-centre bump that reaches the walls: Neumann walls keep ∫u (trapezoid rule) exactly
    f = lambda x: np.exp(-((x[:, 0] - 1.5) ** 2 + (x[:, 1] + 0.5) ** 2) / 0.5)  # noqa: E731
    sol = solve_convection_diffusion(f, box=[(-2, 2), (-1, 1.5)], n=(41, 31), T=2.0, sigma=[1.2, 0.7],
                                     method=method, times=[0.0, 0.5, 1.0, 2.0])
    mass = np.array([sol.integral(i) for i in range(len(sol.times))])
    np.testing.assert_allclose(mass, mass[0], rtol=1e-11)
    # and the solution has visibly spread (so the test is not vacuous)
    assert sol.final.max() < 0.5 * sol.values[0].max()


def test_constants_are_steady_states_with_drift_and_state_dependent_sigma():
    sol = solve_convection_diffusion(lambda x: np.full(len(x), 2.5), box=[(-3, 3), (-2, 2)], n=25, T=1.0,
                                     drift=lambda x: np.stack([np.sin(x[:, 1]), -x[:, 0]], 1),
                                     sigma=lambda x: 0.5 + 0.1 * x**2)
    np.testing.assert_allclose(sol.final, 2.5, atol=1e-12)


def test_box_size_effect_on_whole_space_solution():
    # reflection at the walls: a small box visibly corrupts the whole-space heat solution, a large one does not
    s, w, T = 1.0, 0.5, 1.0
    errs, inner = {}, {}
    for half in (1.5, 4.0, 8.0):
        n = int(round(2 * half / 0.025)) + 1
        sol = solve_convection_diffusion(gauss(w), box=[(-half, half)], n=n, T=T, sigma=s, steps=200)
        x = sol.axes[0]
        errs[half] = np.abs(sol.final - heat_exact(x, T, s, w)).max()
        inner[half] = sol.at(np.linspace(-1, 1, 21)[:, None])
    assert errs[1.5] > 0.05  # walls within ~1.3 standard deviations of the paths: large error
    assert errs[4.0] < 1e-3 and errs[8.0] < 1e-3
    assert np.abs(inner[4.0] - inner[8.0]).max() < 1e-4


def _slope(hs, errs):
    return float(np.polyfit(np.log(hs), np.log(errs), 1)[0])


@pytest.mark.parametrize(("convection", "order"), [("upwind", 1.0), ("central", 2.0)])
def test_grid_convergence_order_with_drift(convection, order):
    # OU drift with known solution; CN with dt ∝ h so the time error O(dt²) never dominates
    theta, s, w, T = 1.0, 0.7, 0.5, 0.5
    hs, errs = [], []
    for n in (41, 81, 161, 321):
        sol = solve_convection_diffusion(gauss(w), box=[(-4, 4)], n=n, T=T, drift=lambda x: -theta * x, sigma=s,
                                         convection=convection, steps=(n - 1) // 2)
        hs.append(8 / (n - 1))
        errs.append(np.abs(sol.final - ou_exact(sol.axes[0], T, theta, s, w)).max())
    slope = _slope(hs, errs)
    assert abs(slope - order) < 0.2, (slope, errs)


def test_time_convergence_orders():
    # fine grid, shrinking dt: backward Euler is first order in dt, Crank–Nicolson second
    s, w, T = 1.0, 0.4, 1.0
    ref = solve_convection_diffusion(gauss(w), box=[(-6, 6)], n=241, T=T, sigma=s, drift=lambda x: -x,
                                     steps=4096).final
    for method, order in (("implicit", 1.0), ("cn", 2.0)):
        dts, errs = [], []
        for steps in (8, 16, 32, 64):
            sol = solve_convection_diffusion(gauss(w), box=[(-6, 6)], n=241, T=T, sigma=s, drift=lambda x: -x,
                                             method=method, steps=steps)
            dts.append(T / steps)
            errs.append(np.abs(sol.final - ref).max())
        assert abs(_slope(dts, errs) - order) < 0.2, (method, errs)
