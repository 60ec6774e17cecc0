"""A fast, reproducible Brownian motion on a fixed time grid, usable as torchsde's ``bm``.

:class:`FixedGridBrownian` lives on the grid t_k = t0 + k·dt, k = 0…steps. The increment over step k (and, when asked
for, its space-time Lévy area and the noise of a Davie/Foster Lévy-area approximation) is drawn from a
``torch.Generator`` seeded by a hash of (seed, k): it is a pure function of (seed, k), so the forward solve and the
adjoint's backward solve see the same path, in any query order, while memory stays O(1) in the number of steps (only
the last queried step is cached).

Queries (ta, tb) must fall on grid points (within ``grid_tol``·dt); a query spanning several steps is the exact
sum of its steps (Lévy areas are combined with Chen's relations). Queries between grid points raise ``ValueError``:
no Brownian bridge is sampled, because an independent bridge sample per query would not be consistent across
queries. For adaptive stepping or off-grid queries use ``torchsde.BrownianInterval`` (the integrator falls back to
it automatically).

Conventions (torchsde's): W = W(tb) − W(ta); U = ∫_ta^tb (W(s) − W(ta)) ds (``return_U``, "space-time" Lévy area,
exact); A = the Lévy area matrix ½∫(W_i dW_j − W_j dW_i), shape (B, m, m) (``return_A``), approximated per step
by Davie's or Foster's Gaussian approximation given (W, H) (see ``_area``; the noise variances are chosen so that
E[A_ij²] = h²/4 exactly, which torchsde's BrownianInterval constants do not quite give).
"""

from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch import Tensor
from torchsde import BaseBrownian

from nsde_coin._checks import is_int, is_real

LEVY_AREAS = ("none", "space-time", "davie", "foster")
_MASK64 = (1 << 64) - 1


def _splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def step_seed(seed: int, k: int) -> int:
    """The generator seed of grid step ``k`` of the path with ``seed`` (a 63-bit hash of the pair)."""
    return _splitmix64(_splitmix64(seed & _MASK64) ^ (k & _MASK64)) >> 1


class FixedGridBrownian(BaseBrownian):
    """Brownian motion of shape ``size`` = (batch, m) on the grid t0 + k·dt.

    Args:
        t0, t1: time interval (t1 > t0).
        size: (batch, noise channels), as torchsde expects.
        dt: grid step; (t1 − t0)/dt must be an integer (within 1e-6). Or give ``steps`` instead.
        steps: number of grid steps (dt = (t1 − t0)/steps).
        seed: int; the path is a pure function of (seed, step index).
        dtype, device: of the returned tensors.
        levy_area: ``None``/"none", "space-time" (exact U, for srk), "davie" or "foster" (approximate A, for
            log_ode; Foster's is torchsde's default for log_ode).
        grid_tol: how far (in units of dt) a query time may be from a grid point.
        commutative: the noise is commutative (diagonal, additive or scalar), so a solver's Lévy-area term
            vanishes identically (torchsde's log_ode multiplies A by ∂σ, zero for such noise): A is then returned as
            zeros of shape (batch, m, m) without drawing or storing it (a stride-0 view), and the space-time area
            that only U and A use is drawn only when U is asked for (log_ode asks for W and A: one normal draw per
            step instead of two). W and U are unchanged — they come first from each step's stream — so the path
            is the same as with ``commutative=False``.
        rows: ``(lo, hi)``: answer only rows ``lo..hi-1`` of the ``size`` draw (shape (hi − lo, m)) — the paths
            those rows get in the whole batch, for a data-parallel rank that holds a shard of it.
    """

    def __init__(self, t0: float, t1: float, size: Union[tuple[int, ...], torch.Size], dt: Optional[float] = None,
                 steps: Optional[int] = None, seed: int = 0, dtype: torch.dtype = torch.float32,
                 device: Union[str, torch.device, None] = None, levy_area: Optional[str] = None,
                 grid_tol: float = 1e-3, commutative: bool = False, rows: Optional[tuple[int, int]] = None) -> None:
        t0, t1 = float(t0), float(t1)
        if not (math.isfinite(t0) and math.isfinite(t1) and t1 > t0):
            raise ValueError(f"need finite t0 < t1, got t0={t0!r}, t1={t1!r}")
        if (dt is None) == (steps is None):
            raise ValueError(f"give exactly one of dt and steps, got dt={dt!r}, steps={steps!r}")
        if steps is None:
            if not (is_real(dt) and dt > 0):
                raise ValueError(f"dt={dt!r} is not valid; expected a float > 0")
            n = (t1 - t0) / dt
            steps = round(n)
            if steps < 1 or abs(n - steps) > 1e-6 * max(1.0, n):
                raise ValueError(f"(t1 - t0)/dt = {n!r} is not an integer; FixedGridBrownian needs a grid that "
                                 f"ends at t1 (pass steps= instead)")
        if not is_int(steps) or steps < 1:
            raise ValueError(f"steps={steps!r} is not valid; expected an int >= 1")
        size = tuple(int(s) for s in size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"size must be (batch, noise_channels) with positive entries, got {size!r}")
        levy_area = "none" if levy_area is None else levy_area
        if levy_area not in LEVY_AREAS:
            raise ValueError(f"levy_area={levy_area!r} is not valid; valid choices: None, {', '.join(LEVY_AREAS)}")
        if not is_int(seed):
            raise TypeError(f"seed must be an int, got {type(seed).__name__} ({seed!r})")
        steps, seed = int(steps), int(seed)
        lo, hi = (0, size[0]) if rows is None else (int(rows[0]), int(rows[1]))
        if not 0 <= lo < hi <= size[0]:
            raise ValueError(f"rows={rows!r} is not valid; expected 0 <= lo < hi <= {size[0]}")
        self._rows = None if (lo, hi) == (0, size[0]) else (lo, hi)
        self._out = (hi - lo, size[1])
        self._t0, self._t1, self._steps = t0, t1, steps
        self._dt = (t1 - t0) / steps
        self._size = size
        self._dtype = dtype
        self._device = torch.device("cpu") if device is None else torch.device(device)
        self._levy = levy_area
        self._have_H = levy_area != "none"
        self._have_A = levy_area in ("davie", "foster")
        self._draw_A = self._have_A and not commutative
        self._lazy_H = self._have_A and commutative  # H then feeds U only: drawn when U is asked for
        self._seed = seed
        self._grid_tol = float(grid_tol)
        self._gen = torch.Generator(device=self._device)
        self._cache_k = -1
        self._cache: tuple = ()
        self.draws = 0  # number of per-step draws (cache misses), for tests and profiling

    # -- torchsde's BaseBrownian interface ----------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        """dtype of the returned increments."""
        return self._dtype

    @property
    def device(self) -> torch.device:
        """Device of the returned increments."""
        return self._device

    @property
    def shape(self) -> torch.Size:
        """(batch, noise channels) of each increment."""
        return torch.Size(self._out)

    @property
    def levy_area_approximation(self) -> str:
        """The Lévy area it provides: ``"none"``, ``"space-time"``, ``"davie"`` or ``"foster"``."""
        return self._levy

    @property
    def steps(self) -> int:
        """Number of grid steps on [t0, t1]."""
        return self._steps

    @property
    def dt(self) -> float:
        """Grid step (t1 − t0) / steps."""
        return self._dt

    @property
    def seed(self) -> int:
        """The seed the path is a pure function of (with the step index)."""
        return self._seed

    def __repr__(self) -> str:
        return (f"FixedGridBrownian(t0={self._t0}, t1={self._t1}, steps={self._steps}, size={self._size}, "
                f"seed={self._seed}, dtype={self._dtype}, device={self._device}, levy_area={self._levy!r})")

    def _index(self, t: Union[float, Tensor], name: str) -> int:
        u = (float(t) - self._t0) / self._dt
        k = round(u)
        if abs(u - k) > self._grid_tol or k < 0 or k > self._steps:
            raise ValueError(
                f"{name}={float(t)!r} is not a point of the grid t0 + k*dt (t0={self._t0}, dt={self._dt}, "
                f"k = 0..{self._steps}); FixedGridBrownian answers grid queries only — use "
                f"torchsde.BrownianInterval for adaptive or off-grid solvers")
        return k

    def _draw(self, k: int, with_H: bool = True) -> tuple:
        """(W, H, N) of step k: increment, standardised space-time area (or None), Lévy-area noise (or None).

        ``with_H=False``: the caller needs no U, so commutative noise (whose A is zero) skips drawing H; a later
        call that needs it draws the step again (W first, so the same W)."""
        want_H = self._have_H and (with_H or not self._lazy_H)
        if k == self._cache_k and (self._cache[1] is not None or not want_H):
            return self._cache
        self.draws += 1
        gen = self._gen
        gen.manual_seed(step_seed(self._seed, k))
        h = self._dt
        W = torch.empty(self._size, dtype=self._dtype, device=self._device).normal_(0.0, math.sqrt(h), generator=gen)
        H = N = None
        if want_H:
            H = torch.empty(self._size, dtype=self._dtype, device=self._device).normal_(
                0.0, math.sqrt(h / 12.0), generator=gen)
        if self._draw_A:
            N = torch.empty((*self._size, self._size[-1]), dtype=self._dtype, device=self._device).normal_(
                generator=gen)
        if self._rows is not None:
            lo, hi = self._rows
            W, H, N = (None if t is None else t[lo:hi] for t in (W, H, N))
        self._cache_k, self._cache = k, (W, H, N)
        return self._cache

    def _area(self, W: Tensor, H: Tensor, N: Tensor, h: float) -> Tensor:
        """Approximate Lévy area of one step: E[A | W, H] = H⊗W − W⊗H plus independent Gaussian noise λ.

        λ_ij = s_ij (N_ij − N_ji) with Var λ_ij = h²/12 (Davie) or h²/20 + h/5·(H_i² + H_j²) (Foster, where H
        here is the standardised space-time area U/h − W/2). Both give the exact total variance E[A_ij²] = h²/4
        of the Lévy area ½∫(W_i dW_j − W_j dW_i) (the convention torchsde's log_ode uses).
        """
        A = H.unsqueeze(-1) * W.unsqueeze(-2) - W.unsqueeze(-1) * H.unsqueeze(-2)
        skew = N - N.transpose(-1, -2)  # variance 2 off the diagonal, 0 on it
        if self._levy == "foster":
            H2 = H * H
            var = h * h / 20.0 + (h / 5.0) * (H2.unsqueeze(-1) + H2.unsqueeze(-2))
            return A + (0.5 * var).sqrt() * skew
        return A + math.sqrt(h * h / 24.0) * skew

    def __call__(self, ta: Union[float, Tensor], tb: Union[float, Tensor, None] = None, return_U: bool = False,
                 return_A: bool = False):
        """Increment W(tb) − W(ta) (or W(ta) − W(t0) when ``tb`` is None), optionally with U and/or A."""
        if (return_U and not self._have_H) or (return_A and not self._have_A):
            what = "return_U (space-time Levy area)" if return_U and not self._have_H else "return_A (Levy area)"
            raise ValueError(f"{what} was requested but levy_area={self._levy!r}; construct FixedGridBrownian with "
                             f"levy_area='space-time' (U) or 'foster'/'davie' (U and A)")
        if tb is None:
            ka, kb = 0, self._index(ta, "ta")
        else:
            ka, kb = self._index(ta, "ta"), self._index(tb, "tb")
        if ka > kb:
            raise ValueError(f"query times must satisfy ta <= tb, got ta={float(ta)!r}, tb={float(tb)!r}")
        h = self._dt
        if return_A and not self._draw_A:  # commutative noise: the area term is multiplied by zero
            zero_area = torch.zeros((), dtype=self._dtype, device=self._device).expand(*self._out, self._out[-1])
            out = self(ta, tb, return_U=return_U)
            return (*out, zero_area) if return_U else (out, zero_area)
        if kb == ka + 1:
            W, H, N = self._draw(ka, return_U or return_A)
            U = h * (0.5 * W + H) if return_U else None
            A = self._area(W, H, N, h) if return_A else None
        else:
            W = torch.zeros(self._out, dtype=self._dtype, device=self._device)
            U = torch.zeros_like(W) if return_U else None
            A = W.new_zeros((*self._out, self._out[-1])) if return_A else None
            for k in range(ka, kb):
                Wk, Hk, Nk = self._draw(k, return_U or return_A)
                if return_A:
                    # Chen: A_{s,t} = A_{s,u} + A_{u,t} + ½ (W_{s,u} ⊗ W_{u,t} − W_{u,t} ⊗ W_{s,u})
                    A = A + self._area(Wk, Hk, Nk, h) + 0.5 * (W.unsqueeze(-1) * Wk.unsqueeze(-2)
                                                                - Wk.unsqueeze(-1) * W.unsqueeze(-2))
                if return_U:
                    # U_{s,t} = U_{s,u} + (t − u) W_{s,u} + U_{u,t}
                    U = U + h * W + h * (0.5 * Wk + Hk)
                W = W + Wk
        if return_U and return_A:
            return W, U, A
        if return_U:
            return W, U
        if return_A:
            return W, A
        return W
