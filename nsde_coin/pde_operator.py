"""The finite-difference operator of :mod:`nsde_coin.pde`: the grid, the coefficients on it, and the sparse matrix A.

:func:`make_grid` builds the node-centred tensor grid on a box; the drift v and a = σσᵀ are evaluated at its points
(numpy or torch fields, time-homogeneity checked); :func:`convection_diffusion_operator` assembles A with
(A u)_p ≈ v·∇u + ½ a:∇²u and Neumann walls (upwind or central convection, 4-point mixed derivatives);
:func:`cfl_limit` is explicit Euler's step bound. Signs, factors and the scheme are described in :mod:`nsde_coin.pde`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, Union

import numpy as np
import scipy.sparse as sp
import torch

from nsde_coin._checks import is_int

__all__ = ["CONVECTIONS", "FieldLike", "cfl_limit", "coefficients", "convection_diffusion_operator", "make_grid"]

CONVECTIONS = ("upwind", "central")

FieldLike = Union[None, float, Sequence[float], np.ndarray, torch.Tensor, Callable[..., Any]]


# ----------------------------------------------------------------------------------------------------------------
# grid and coefficient evaluation
def _check_box(box: Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    try:
        pairs = [(float(lo), float(hi)) for lo, hi in box]
    except (TypeError, ValueError) as err:
        raise ValueError(f"box={box!r} must be a sequence of (lo, hi) pairs, one per dimension") from err
    if not pairs:
        raise ValueError(f"box={box!r} is empty; give one (lo, hi) pair per dimension")
    for k, (lo, hi) in enumerate(pairs):
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"box[{k}]=({lo}, {hi}) must be finite")
        if not hi > lo:
            raise ValueError(f"box[{k}]=({lo}, {hi}) needs lo < hi")
    return pairs


def _check_n(n: Union[int, Sequence[int]], dim: int) -> tuple[int, ...]:
    if isinstance(n, (int, np.integer, float, np.floating)):
        ns = (n,) * dim
    else:
        try:
            ns = tuple(n)
        except TypeError as err:
            raise ValueError(f"n={n!r} is not a valid grid size; need an integer >= 3 per dimension") from err
    if len(ns) != dim:
        raise ValueError(f"n={n!r} gives {len(ns)} grid sizes for a {dim}-dimensional box")
    for k, nk in enumerate(ns):
        if not is_int(nk) or nk < 3:
            raise ValueError(f"n[{k}]={nk!r} is not a valid grid size; need an integer >= 3 points per dimension")
    return tuple(int(nk) for nk in ns)


def make_grid(
    box: Sequence[Sequence[float]], n: Union[int, Sequence[int]]
) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Node-centred tensor grid on ``box``.

    Args:
        box: ``[(lo_1, hi_1), ..., (lo_d, hi_d)]``, lo < hi (same units as x).
        n: points per dimension (int or one per dimension), each ≥ 3; walls are grid points.

    Returns:
        ``(axes, points)``: ``axes[k]`` is the (n_k,) coordinate vector of dimension k; ``points`` is (N, d) float64
        with N = ∏ n_k, flattened in C order (last dimension fastest).
    """
    pairs = _check_box(box)
    ns = _check_n(n, len(pairs))
    axes = tuple(np.linspace(lo, hi, nk) for (lo, hi), nk in zip(pairs, ns))
    mesh = np.meshgrid(*axes, indexing="ij")
    return axes, np.stack([m.ravel() for m in mesh], axis=1)


def _n_positional(fn: Callable[..., Any]) -> int:
    target = fn.forward if isinstance(fn, torch.nn.Module) else fn
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params):
        return 1
    return sum(1 for p in params if p.kind in kinds and p.default is inspect.Parameter.empty)


def _call(fn: Callable[..., Any], x: np.ndarray, what: str, T: float = 0.0) -> np.ndarray:
    """Evaluate a field at points x (N, d): numpy callables get the array, torch modules / functions a float64 tensor.

    A callable taking two positional arguments is called as ``fn(t, x)`` (torchsde's / :mod:`nsde_coin.fields`'
    convention) at t = 0, and again at t = T to check that it does not depend on t (the solver needs
    time-homogeneous coefficients; a time-dependent field raises ``ValueError``). ``torch.nn.Module`` objects are
    called under ``torch.no_grad()`` in the dtype of their parameters.
    """
    two = _n_positional(fn) == 2

    def run(t: float) -> Any:
        if isinstance(fn, torch.nn.Module):
            p = next(iter(fn.parameters()), None)
            dtype = p.dtype if p is not None else torch.float64
            xt = torch.as_tensor(x, dtype=dtype)
            with torch.no_grad():
                return fn(torch.tensor(t, dtype=dtype), xt) if two else fn(xt)
        try:
            return fn(t, x) if two else fn(x)
        except TypeError:  # a torch-only function (e.g. torch.sigmoid) given a numpy array
            xt = torch.as_tensor(x, dtype=torch.float64)
            with torch.no_grad():
                return fn(torch.tensor(t, dtype=torch.float64), xt) if two else fn(xt)

    def to_numpy(out: Any) -> np.ndarray:
        if isinstance(out, torch.Tensor):
            out = out.detach().cpu().double().numpy()
        out = np.asarray(out, dtype=np.float64)
        if not np.all(np.isfinite(out)):
            bad = int(np.size(out) - np.isfinite(out).sum())
            raise ValueError(f"{what} returned {bad} non-finite value(s) (NaN/inf) on the grid; it must be finite")
        return out

    out = to_numpy(run(0.0))
    if two and T > 0:
        late = to_numpy(run(T))
        if late.shape != out.shape or not np.allclose(late, out, rtol=1e-6, atol=1e-9):
            raise ValueError(f"{what} depends on t (values at t=0 and t=T={T} differ by up to "
                             f"{np.abs(late - out).max() if late.shape == out.shape else 'shape'}); the "
                             f"finite-difference solver needs time-homogeneous coefficients (e.g. "
                             f"MLPDrift(..., time_dependent=False))")
    return out


def _drift_values(drift: FieldLike, x: np.ndarray, T: float = 0.0) -> np.ndarray:
    """v at the grid points, (N, d)."""
    n, d = x.shape
    if drift is None:
        return np.zeros((n, d))
    if callable(drift):
        v = _call(drift, x, "drift", T)
    else:
        v = np.asarray(drift.detach().cpu() if isinstance(drift, torch.Tensor) else drift, dtype=np.float64)
        if not np.all(np.isfinite(v)):
            raise ValueError(f"drift={drift!r} contains NaN/inf")
        if v.ndim == 0:
            v = np.full(d, float(v))
    if v.shape in ((d,), (1, d)):
        v = np.broadcast_to(v.reshape(d), (n, d))
    if v.shape != (n, d):
        raise ValueError(f"drift has shape {v.shape}; expected ({d},) or (N, d) = ({n}, {d})")
    return np.asarray(v, dtype=np.float64)


def _diffusion_matrix(sigma: FieldLike, x: np.ndarray, T: float = 0.0) -> np.ndarray:
    """a = σ σᵀ at the grid points, (N, d, d).

    ``sigma`` may be ``None`` (0), a scalar s (σ = s·I), a (d,) vector (diagonal σ), a (d, m) matrix (general σ), or a
    callable x ↦ σ(x) returning (N,) scalar, (N, d) diagonal or (N, d, m) general values.
    """
    n, d = x.shape
    if sigma is None:
        return np.zeros((n, d, d))
    if callable(sigma):
        s = _call(sigma, x, "sigma", T)
        if s.shape == (n,) or s.shape == (n, 1) and d != 1:
            s = s.reshape(n)[:, None] * np.ones((n, d))
        if s.shape == (n, d):
            return np.einsum("pi,ij->pij", s**2, np.eye(d))
        if s.ndim == 3 and s.shape[:2] == (n, d):
            return np.einsum("pim,pjm->pij", s, s)
        raise ValueError(f"sigma(x) returned shape {s.shape}; expected (N,), (N, d) or (N, d, m) with N={n}, d={d}")
    s = np.asarray(sigma.detach().cpu() if isinstance(sigma, torch.Tensor) else sigma, dtype=np.float64)
    if not np.all(np.isfinite(s)):
        raise ValueError(f"sigma={sigma!r} contains NaN/inf")
    if s.ndim == 0:
        a = float(s) ** 2 * np.eye(d)
    elif s.shape == (d,):
        a = np.diag(s**2)
    elif s.ndim == 2 and s.shape[0] == d:
        a = s @ s.T
    else:
        raise ValueError(f"sigma has shape {s.shape}; expected a scalar, ({d},) or ({d}, m)")
    return np.broadcast_to(a, (n, d, d)).copy()


def coefficients(drift: FieldLike, sigma: FieldLike, x: np.ndarray, T: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """v (N, d) and a = σσᵀ (N, d, d) at the grid points x (N, d), float64 (see ``solve_convection_diffusion``'s
    ``drift``/``sigma`` for the accepted forms); a callable is checked to be time-homogeneous on [0, T]."""
    return _drift_values(drift, x, T), _diffusion_matrix(sigma, x, T)


# ----------------------------------------------------------------------------------------------------------------
# the operator
def convection_diffusion_operator(
    axes: Sequence[np.ndarray], v: np.ndarray, a: np.ndarray, *, convection: str = "upwind"
) -> sp.csr_matrix:
    """Sparse matrix A with (A u)_p ≈ v(x_p)·∇u(x_p) + ½ Σ_ij a_ij(x_p) ∂_ij u(x_p), Neumann walls.

    Args:
        axes: per-dimension coordinate vectors (uniform spacing, from :func:`make_grid`).
        v: (N, d) drift at the grid points.
        a: (N, d, d) σσᵀ at the grid points (symmetric positive semi-definite).
        convection: ``"upwind"`` (first order, monotone) or ``"central"`` (second order).

    Returns:
        (N, N) CSR matrix. Each row sums to 0 (constants are steady states).
    """
    if convection not in CONVECTIONS:
        raise ValueError(f"convection={convection!r} is not valid; valid choices: {', '.join(CONVECTIONS)}")
    shape = tuple(len(ax) for ax in axes)
    d = len(shape)
    n = int(np.prod(shape))
    hs = [float(ax[1] - ax[0]) for ax in axes]
    idx = np.arange(n).reshape(shape)
    multi = np.unravel_index(np.arange(n), shape)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []

    def neighbour(k: int, step: int, ghost: str) -> np.ndarray:
        """Flat index of the neighbour at offset ``step`` along axis k; beyond a wall: mirror or clamp ghost."""
        pos = multi[k] + step
        last = shape[k] - 1
        if ghost == "mirror":
            pos = np.where(pos < 0, -pos, np.where(pos > last, 2 * last - pos, pos))
        else:
            pos = np.clip(pos, 0, last)
        coords = list(multi)
        coords[k] = pos
        return idx[tuple(coords)].ravel()

    def add(col: np.ndarray, val: np.ndarray) -> None:
        rows.append(np.arange(n))
        cols.append(col)
        vals.append(val)

    me = np.arange(n)
    for k in range(d):
        h = hs[k]
        plus_m, minus_m = neighbour(k, 1, "mirror"), neighbour(k, -1, "mirror")
        # diffusion ½ a_kk ∂_kk
        dk = 0.5 * a[:, k, k] / h**2
        add(plus_m, dk)
        add(minus_m, dk)
        add(me, -2.0 * dk)
        # convection v_k ∂_k
        vk = v[:, k]
        if convection == "upwind":
            plus_c, minus_c = neighbour(k, 1, "clamp"), neighbour(k, -1, "clamp")
            pos, neg = np.maximum(vk, 0.0) / h, np.minimum(vk, 0.0) / h
            add(plus_c, pos)
            add(me, -pos)
            add(me, neg)
            add(minus_c, -neg)
        else:
            add(plus_m, vk / (2 * h))
            add(minus_m, -vk / (2 * h))
    # mixed derivatives: ½ (a_kl + a_lk) ∂_kl = a_kl ∂_kl for k < l, 4-point central stencil
    for k in range(d):
        for l_ in range(k + 1, d):
            akl = a[:, k, l_]
            if not np.any(akl):
                continue
            c = akl / (4 * hs[k] * hs[l_])
            for sk in (1, -1):
                for sl in (1, -1):
                    pos = list(multi)
                    for axis, step in ((k, sk), (l_, sl)):
                        p = multi[axis] + step
                        last = shape[axis] - 1
                        pos[axis] = np.where(p < 0, -p, np.where(p > last, 2 * last - p, p))
                    add(idx[tuple(pos)].ravel(), sk * sl * c)
    mat = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    return mat.tocsr()


def cfl_limit(operator: sp.spmatrix) -> float:
    """Largest stable forward-Euler step for ``u_t = A u``: 1 / max_p(−A_pp) (``inf`` when A has a zero diagonal)."""
    worst = float(np.max(-operator.diagonal())) if operator.shape[0] else 0.0
    return math.inf if worst <= 0 else 1.0 / worst
