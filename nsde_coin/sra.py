"""Rößler's SRA1 step for a constant σ: what ``solver="srk"`` runs for :class:`~nsde_coin.diffusions.ScalarDiffusion`
and :class:`~nsde_coin.diffusions.DiagonalDiffusion` under backprop.

SRA1 (Rößler 2010, "Runge–Kutta methods for the strong approximation of solutions of stochastic differential
equations", SIAM J. Numer. Anal. 48(3), 922–952; strong order 1.5, deterministic order 2) integrates the Itô SDE
dX = a(X, t) dt + b(t) dW with additive noise in two stages. Its tableau is

    c⁽⁰⁾ = (0, 3/4), c⁽¹⁾ = (1, 0), A⁽⁰⁾₂₁ = 3/4, B⁽⁰⁾₂₁ = 3/2, α = (1/3, 2/3), β⁽¹⁾ = (1, 0), β⁽²⁾ = (−1, 1),

and one step of length h, with ΔW = W(t + h) − W(t) and the space-time area I₍₁,₀₎ = ∫ₜ^{t+h} (W(s) − W(t)) ds
(torchsde's ``U``, which :class:`~nsde_coin.brownian.FixedGridBrownian` draws exactly), is

    H₁ = Y,   H₂ = Y + A⁽⁰⁾₂₁ a(H₁, t) h + B⁽⁰⁾₂₁ b(t + c⁽¹⁾₁ h) I₍₁,₀₎ / h,
    Y' = Y + Σᵢ αᵢ a(Hᵢ, t + c⁽⁰⁾ᵢ h) h + Σᵢ (β⁽¹⁾ᵢ ΔW + β⁽²⁾ᵢ I₍₁,₀₎ / h) b(t + c⁽¹⁾ᵢ h).

When b = σ does not depend on t either, the noise sum collapses to (1 + 0) σ ΔW + (−1 + 1) σ I₍₁,₀₎ / h = σ ΔW, so

    H₂ = Y + ¾ h a(Y, t) + (3 / (2h)) σ I₍₁,₀₎,   Y' = Y + h (a(Y, t) / 3 + 2 a(H₂, t + ¾ h) / 3) + σ ΔW:

two drift evaluations and two fused multiply-adds with σ's diagonal per step, nothing else. torchsde's SRA1
computes the same numbers through its general tableau loop (three σ products with per-stage weight tensors, a third
drift call that the integrator's memo absorbs); this module is that step written out, so a constant-σ srk costs
little more than its two drift evaluations (benchmarks/bench_constant_noise.py).

Gradients are by backprop through the steps. Adjoint solves and adaptive stepping stay with torchsde (the integrator
routes only ``grad_mode="backprop"`` fixed-grid solves here).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import torch
from torch import Tensor

from nsde_coin._field_checks import check_shape

__all__ = ["constant_sigma", "sra1_integrate"]

# the SRA1 tableau (Rößler 2010) entries that survive for a constant σ
_C2 = 3.0 / 4.0  # c⁽⁰⁾₂: the time of the second stage, in units of h
_A21 = 3.0 / 4.0  # A⁽⁰⁾₂₁
_B21 = 3.0 / 2.0  # B⁽⁰⁾₂₁
_ALPHA = (1.0 / 3.0, 2.0 / 3.0)


def constant_sigma(diffusion: Any) -> bool:
    """Whether ``diffusion`` is a constant (x- and t-independent) scalar or diagonal σ: torchsde ``"additive"`` noise
    with a ``diagonal(t, x)`` view (:class:`~nsde_coin.diffusions.ScalarDiffusion`,
    :class:`~nsde_coin.diffusions.DiagonalDiffusion`), the diffusions :func:`sra1_integrate` is for."""
    return getattr(diffusion, "noise_type", None) == "additive" and callable(getattr(diffusion, "diagonal", None))


def sra1_integrate(sde: Any, y0: Tensor, bm: Any, times: Sequence[float], return_paths: bool = False
                   ) -> tuple[Tensor, Optional[Tensor]]:
    """Integrate dX = a dt + σ dW (Itô, constant σ) with one SRA1 step per interval of ``times``.

    Args:
        sde: a :class:`~nsde_coin.sde.FeynmanKacSDE` (or any object with torchsde's ``f(t, y)`` → (N, d) and a
            ``diffusion`` attribute) whose diffusion is constant in x and t (see :func:`constant_sigma`): its
            ``diagonal(t, y)`` (N, d) is evaluated once; ``sde_type`` must be ``"ito"``.
        y0: initial states, (N, d), at ``times[0]``.
        bm: a Brownian motion of shape (N, d) (one per coordinate) answering ``bm(ta, tb, return_U=True)`` →
            (ΔW, I₍₁,₀₎), each (N, d), for consecutive ``times`` (a :class:`~nsde_coin.brownian.FixedGridBrownian`
            with ``levy_area="space-time"``, or torchsde's Brownian motions with that Lévy area).
        times: increasing step boundaries t_0 < … < t_n (floats, the fields' time unit); step k has length
            t_{k+1} − t_k.
        return_paths: also return the states at every time of ``times``.

    Returns:
        ``(X_{t_n}, paths)``: the final states (N, d); ``paths`` (n + 1, N, d) (the first being ``y0``) when
        ``return_paths``, else ``None``. Differentiable in y0 and every parameter of the fields.

    Times are passed to the fields as 0-dim float64 tensors, as torchsde passes them.
    """
    if getattr(sde, "sde_type", "ito") != "ito":
        raise ValueError(f"SRA1 integrates Itô SDEs, got sde_type={sde.sde_type!r}")
    grid = [float(t) for t in times]
    if len(grid) < 2 or any(tb <= ta for ta, tb in zip(grid, grid[1:])):
        raise ValueError(f"times must be at least two increasing floats, got {grid!r}")
    f = sde.f
    dev = y0.device
    t1 = torch.tensor(grid[0], dtype=torch.float64, device=dev)
    # σ's diagonal, (N, d), evaluated once: it depends on neither x nor t (and a learnable σ's softplus runs once)
    sig = check_shape("diffusion's diagonal", t1, sde.diffusion.diagonal(t1, y0), y0.shape)
    y = y0
    paths = [y0] if return_paths else None
    for k, (ta, tb) in enumerate(zip(grid, grid[1:])):
        h = tb - ta
        if k:
            t1 = torch.tensor(ta, dtype=torch.float64, device=dev)
        t2 = torch.tensor(ta + _C2 * h, dtype=torch.float64, device=dev)
        dW, area = bm(ta, tb, return_U=True)
        a1 = f(t1, y)
        H2 = torch.addcmul(torch.add(y, a1, alpha=_A21 * h), sig, area, value=_B21 / h)
        a2 = f(t2, H2)
        y = torch.addcmul(torch.add(torch.add(y, a1, alpha=_ALPHA[0] * h), a2, alpha=_ALPHA[1] * h), sig, dW)
        if paths is not None:
            paths.append(y)
    return y, (torch.stack(paths) if paths is not None else None)
