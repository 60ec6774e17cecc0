"""Finite-difference reference solver for the convection-diffusion (backward Kolmogorov) equation.

The equation, with every sign and factor explicit::

    u_t(x, t) = v(x) · ∇u(x, t) + ½ Σ_ij a_ij(x) ∂_i ∂_j u(x, t),    a = σ σᵀ,    u(x, 0) = f(x),

for x in a box ∏_k [lo_k, hi_k] ⊂ R^d (d = 1 and 2 are tested; the code is dimension-generic). It is the backward
Kolmogorov equation of the Itô SDE ``dX = v(X) dt + σ(X) dW``: its generator is v·∇ + ½ a:∇², so (Feynman–Kac,
time-homogeneous coefficients, no killing)

    u(x, t) = E[ f(X_t) | X_0 = x ].

Note the **plus** sign in front of v·∇u (information travels *from* x + v dt, so u(x, t + dt) ≈ u(x + v dt, t)) and
the **½** in front of σσᵀ: a PDE written as u_t = v·∇u + Σ a_ij ∂_ij u (the paper's form) has a = ½σσᵀ there.

Boundary condition: homogeneous Neumann, ∂u/∂n = 0 on the walls of the box. In Feynman–Kac terms this is the SDE
*reflected* at the walls. It approximates the whole-space problem in the interior when the box is large enough that
paths started at the points of interest rarely reach a wall within time t (``tests/core/test_pde_*.py`` shows the
box-size effect on a closed-form heat solution). On the node-centred grid x_k = lo + k·h, k = 0..n-1, it is imposed
with mirror ghost nodes (u_{-1} = u_1) for the second derivatives, and with zero one-sided differences across a wall
for upwind convection, so that pure diffusion conserves the trapezoid-rule integral of u exactly.

Space discretisation (sparse operator A, u_t = A u):

* convection: first-order **upwind** by default (``v_k ≥ 0`` → forward difference, ``v_k < 0`` → backward;
  monotone, first order in h) or ``convection="central"`` (second order, can oscillate when |v| h / a > 2);
* diffusion: second-order central differences; mixed derivatives (d ≥ 2, a_ij ≠ 0) with the 4-point central stencil.

Time stepping (``method``):

* ``"explicit"`` — forward Euler u⁺ = u + dt A u; requires dt ≤ 1 / max_p(−A_pp) (the CFL/positivity bound
  ``dt · max(Σ_k a_kk/h_k² + Σ_k |v_k|/h_k) ≤ 1``; with mixed derivatives it is the usual criterion but no
  positivity guarantee) and raises ``ValueError`` naming dt and the bound otherwise;
* ``"implicit"`` — backward Euler (I − dt A) u⁺ = u, unconditionally stable, first order in dt;
* ``"cn"`` — Crank–Nicolson (I − dt/2 A) u⁺ = (I + dt/2 A) u, unconditionally stable, second order in dt (default).

The implicit systems are factorised once with :func:`scipy.sparse.linalg.splu`; all work is vectorised.

The grid and the operator live in :mod:`nsde_coin.pde_operator` (re-exported here); this module holds the time
stepping and :class:`PDESolution`.

Shapes: grid points are flattened in C order; ``f`` may return one value per point (N,) or C values (N, C) (e.g.
class probabilities) — the equation is linear, so each column evolves independently.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from scipy.interpolate import RegularGridInterpolator

from nsde_coin._checks import is_int
from nsde_coin.pde_operator import (
    CONVECTIONS,
    FieldLike,
    _call,
    cfl_limit,
    coefficients,
    convection_diffusion_operator,
    make_grid,
)

__all__ = ["PDESolution", "cfl_limit", "convection_diffusion_operator", "make_grid", "solve_convection_diffusion"]

METHODS = ("explicit", "implicit", "cn")


# ----------------------------------------------------------------------------------------------------------------
# the solution object and the solver
@dataclass
class PDESolution:
    """Finite-difference solution of the convection-diffusion equation.

    Attributes:
        axes: per-dimension grid coordinates, ``axes[k]`` of shape (n_k,).
        times: (S,) times at which ``values`` are stored (0 and T always included).
        values: (S, n_1, ..., n_d) or (S, n_1, ..., n_d, C) float64 — u(x, t) on the grid.
        dt: time step used; ``steps``: number of steps to T; ``method``, ``convection``: the scheme.
        cfl: explicit-Euler step bound 1 / max(−A_pp) of this grid and coefficients (for information).
    """

    axes: tuple[np.ndarray, ...]
    times: np.ndarray
    values: np.ndarray
    dt: float
    steps: int
    method: str
    convection: str
    cfl: float

    @property
    def final(self) -> np.ndarray:
        """u(·, T) on the grid, (n_1, ..., n_d[, C])."""
        return self.values[-1]

    def at(self, x: Union[np.ndarray, torch.Tensor], time_index: int = -1) -> np.ndarray:
        """u(x, times[time_index]) at arbitrary points by multilinear interpolation.

        Args:
            x: (M, d) points inside the box (the same units as the grid).
            time_index: which stored time (default: the last, T).

        Returns:
            (M,) or (M, C) float64.
        """
        pts = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
        d = len(self.axes)
        if pts.ndim != 2 or pts.shape[1] != d:
            raise ValueError(f"x has shape {pts.shape}; expected (M, {d})")
        for k, ax in enumerate(self.axes):
            lo, hi = ax[0], ax[-1]
            if np.any(pts[:, k] < lo) or np.any(pts[:, k] > hi):
                raise ValueError(f"points outside the box along dimension {k}: range "
                                 f"[{pts[:, k].min():.4g}, {pts[:, k].max():.4g}] vs box [{lo:.4g}, {hi:.4g}]")
        interp = RegularGridInterpolator(self.axes, self.values[time_index], method="linear")
        return interp(pts)

    def integral(self, time_index: int = -1) -> np.ndarray:
        """Trapezoid-rule integral of u(·, times[time_index]) over the box (scalar, or (C,))."""
        out = self.values[time_index]
        for ax in self.axes:
            out = np.trapezoid(out, ax, axis=0)
        return np.asarray(out)


def solve_convection_diffusion(
    f: Callable[..., Any],
    *,
    box: Sequence[Sequence[float]],
    n: Union[int, Sequence[int]],
    T: float,
    drift: FieldLike = None,
    sigma: FieldLike = None,
    method: str = "cn",
    convection: str = "upwind",
    dt: Optional[float] = None,
    steps: Optional[int] = None,
    times: Optional[Sequence[float]] = None,
) -> PDESolution:
    """Solve u_t = v·∇u + ½ σσᵀ:∇²u, u(·, 0) = f, on ``box`` with Neumann walls, up to time T.

    The solution is the Feynman–Kac expectation u(x, t) = E[f(X_t) | X_0 = x] for dX = v(X) dt + σ(X) dW (Itô),
    reflected at the walls (see the module docstring for signs, the ½ factor and the scheme).

    Args:
        f: initial condition / base model, x (N, d) ↦ (N,) or (N, C). numpy callables get float64 arrays; torch
            modules and torch-only functions get float64 (module: parameter dtype) tensors.
        box: ``[(lo, hi), ...]`` one pair per dimension (units of x).
        n: grid points per dimension (≥ 3), int or one per dimension.
        T: final time (units of t), ≥ 0.
        drift: v — ``None`` (0), a constant (d,) vector, or a callable x ↦ (N, d) (or ``v(t, x)`` such as an
            nsde_coin drift module, called with t = 0: coefficients must be time-homogeneous).
        sigma: σ — ``None`` (0), a scalar, a (d,) diagonal, a (d, m) matrix, or a callable x ↦ (N,), (N, d)
            diagonal or (N, d, m) general σ(x). The PDE uses a = σσᵀ with the ½ in front.
        method: ``"cn"`` (Crank–Nicolson, default), ``"implicit"`` (backward Euler) or ``"explicit"`` (forward Euler,
            CFL-checked).
        convection: ``"upwind"`` (default) or ``"central"``.
        dt: time step (> 0; rounded down so that T is a whole number of steps). Exclusive with ``steps``. Default:
            0.9 × the CFL bound for ``"explicit"``, min_k h_k otherwise.
        steps: number of time steps (≥ 1) instead of ``dt``.
        times: times in [0, T] at which to store u (each snapped to the nearest step); default ``[0, T]``.

    Returns:
        :class:`PDESolution`.

    Raises:
        ValueError: bad box / grid size / T / dt / steps / method names, NaN or inf in f, v or σ, or an explicit step
            above the CFL bound (the message names dt and the bound and suggests method="cn").
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not valid; valid choices: {', '.join(METHODS)}")
    if convection not in CONVECTIONS:
        raise ValueError(f"convection={convection!r} is not valid; valid choices: {', '.join(CONVECTIONS)}")
    T = float(T)
    if not (math.isfinite(T) and T >= 0):
        raise ValueError(f"T={T!r} must be a finite number >= 0")
    if dt is not None and steps is not None:
        raise ValueError(f"give dt={dt!r} or steps={steps!r}, not both")
    if dt is not None and not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt={dt!r} must be a finite number > 0")
    if steps is not None and (not is_int(steps) or steps < 1):
        raise ValueError(f"steps={steps!r} must be an integer >= 1")

    axes, x = make_grid(box, n)
    shape = tuple(len(ax) for ax in axes)
    u0 = _call(f, x, "f")
    if u0.shape[0] != x.shape[0] or u0.ndim > 2:
        raise ValueError(f"f returned shape {u0.shape}; expected (N,) or (N, C) with N={x.shape[0]} grid points")
    v, a = coefficients(drift, sigma, x, T)
    A = convection_diffusion_operator(axes, v, a, convection=convection)
    bound = cfl_limit(A)

    if steps is None:
        if dt is None:
            dt = 0.9 * bound if method == "explicit" else min(float(ax[1] - ax[0]) for ax in axes)
            dt = min(dt, T) if T > 0 else 1.0
        steps = max(1, math.ceil(T / dt - 1e-9)) if T > 0 else 0
    else:
        steps = int(steps) if T > 0 else 0
    dt_used = T / steps if steps else 0.0
    if method == "explicit" and dt_used > bound * (1 + 1e-12):
        raise ValueError(
            f"explicit Euler step dt={dt_used:.6g} exceeds the CFL bound {bound:.6g} = 1/max(sum_k a_kk/h_k^2 + "
            f"|v_k|/h_k) for this grid; use steps >= {math.ceil(T / bound)} or method='cn'/'implicit'"
        )

    want = [0.0, T] if times is None else [float(t) for t in times]
    for t in want:
        if not (math.isfinite(t) and -1e-12 <= t <= T + 1e-12):
            raise ValueError(f"times contains {t!r}, outside [0, T={T}]")
    save_steps = sorted({int(round(t / dt_used)) if steps else 0 for t in want})

    u = u0.reshape(x.shape[0], -1)
    ident = sp.identity(A.shape[0], format="csc")
    if method == "implicit":
        lu = spla.splu((ident - dt_used * A).tocsc()) if steps else None
    elif method == "cn":
        lu = spla.splu((ident - 0.5 * dt_used * A).tocsc()) if steps else None
        rhs_op = (ident + 0.5 * dt_used * A).tocsr()
    stored: list[np.ndarray] = []
    for step in range(steps + 1):
        if step in save_steps:
            stored.append(u.copy())
        if step == steps:
            break
        if method == "explicit":
            u = u + dt_used * (A @ u)
        elif method == "implicit":
            u = lu.solve(u)
        else:
            u = lu.solve(rhs_op @ u)
    if not np.all(np.isfinite(u)):
        raise ValueError(f"the {method} solution became non-finite (dt={dt_used:.3g}); check the coefficients")
    tail = () if u0.ndim == 1 else (u0.shape[1],)
    values = np.stack([s.reshape(shape + tail) for s in stored])
    return PDESolution(axes=axes, times=np.array(save_steps, dtype=np.float64) * dt_used, values=values,
                       dt=dt_used, steps=steps, method=method, convection=convection, cfl=bound)
