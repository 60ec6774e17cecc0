"""Bad inputs to the finite-difference solver raise ValueError naming the bad value."""

import math

import numpy as np
import pytest

from nsde_coin.pde import solve_convection_diffusion


def f1(x):
    return np.exp(-x[:, 0] ** 2)


def test_cfl_violation_names_dt_and_bound():
    # h = 0.1, σ = 1: bound = 1 / (σ²/h²) = 0.01; 10 steps to T = 1 is dt = 0.1
    with pytest.raises(ValueError, match=r"dt=0\.1 exceeds the CFL bound 0\.01") as err:
        solve_convection_diffusion(f1, box=[(-5, 5)], n=101, T=1.0, sigma=1.0, method="explicit", steps=10)
    assert "method='cn'" in str(err.value)
    # exactly at the bound is allowed and stays bounded
    sol = solve_convection_diffusion(f1, box=[(-5, 5)], n=101, T=1.0, sigma=1.0, method="explicit", steps=100)
    assert np.abs(sol.final).max() <= 1.0


def test_cfl_includes_convection():
    # h = 0.1, |v| = 5, σ = 0: bound = h / |v| = 0.02
    with pytest.raises(ValueError, match=r"CFL bound 0\.02"):
        solve_convection_diffusion(f1, box=[(-5, 5)], n=101, T=1.0, drift=-5.0, method="explicit", steps=40)


@pytest.mark.parametrize("n", [0, -4, 2, 2.5, (50, 1)])
def test_bad_grid_sizes(n):
    box = [(-1, 1), (-1, 1)] if isinstance(n, tuple) else [(-1, 1)]
    with pytest.raises(ValueError, match=r"n(\[\d\])?=.*grid size"):
        solve_convection_diffusion(lambda x: x[:, 0], box=box, n=n, T=1.0, sigma=1.0)


@pytest.mark.parametrize("box", [[(1, 1)], [(2, -2)], [(0, math.inf)], []])
def test_bad_box(box):
    with pytest.raises(ValueError, match="box"):
        solve_convection_diffusion(f1, box=box, n=11, T=1.0)


def test_nan_in_f_drift_sigma():
    with pytest.raises(ValueError, match="f returned 1 non-finite"):
        solve_convection_diffusion(lambda x: np.where(x[:, 0] == 0, np.nan, 1.0), box=[(-1, 1)], n=11, T=1.0)
    with pytest.raises(ValueError, match="drift returned .* non-finite"):
        solve_convection_diffusion(f1, box=[(-1, 1)], n=11, T=1.0, drift=lambda x: np.where(x > 0.5, np.inf, -x))
    with pytest.raises(ValueError, match="sigma=.*NaN"):
        solve_convection_diffusion(f1, box=[(-1, 1)], n=11, T=1.0, sigma=float("nan"))


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"T": float("nan")}, "T=nan"),
    ({"T": -1.0}, "T=-1.0"),
    ({"dt": 0.0}, "dt=0.0"),
    ({"dt": -0.1}, "dt=-0.1"),
    ({"steps": 0}, "steps=0"),
    ({"dt": 0.1, "steps": 5}, "not both"),
    ({"method": "rk4"}, "method='rk4'.*explicit, implicit, cn"),
    ({"convection": "downwind"}, "convection='downwind'.*upwind, central"),
    ({"times": [2.0]}, "times contains 2.0"),
    ({"drift": [1.0, 2.0, 3.0]}, r"drift has shape \(3,\)"),
    ({"sigma": np.ones((3, 3))}, r"sigma has shape \(3, 3\)"),
])
def test_bad_arguments(kwargs, pattern):
    base = {"box": [(-1, 1)], "n": 11, "T": 1.0}
    base.update(kwargs)
    with pytest.raises(ValueError, match=pattern):
        solve_convection_diffusion(f1, **base)


def test_points_outside_box_for_interpolation():
    sol = solve_convection_diffusion(f1, box=[(-1, 1)], n=11, T=0.1, sigma=0.5)
    with pytest.raises(ValueError, match="outside the box"):
        sol.at(np.array([[1.5]]))
