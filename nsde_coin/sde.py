"""The SDE object torchsde integrates: dX = v(X, t) dt + σ(X, t) dW, in the convention the chosen solver needs.

The network is *defined* by an Itô SDE (Feynman–Kac's u(x, T) = E[f(X_T) | X_0 = x] is a statement about the Itô
process). Stratonovich solvers (heun, midpoint, euler_heun, reversible_heun, log_ode, Stratonovich milstein)
integrate ∘dW instead, so :class:`FeynmanKacSDE` hands them the converted drift

    v_strat = v_ito − c,   c_i = ½ Σ_{j,k} σ_kj ∂σ_ij/∂x_k   (= ½ σ_i ∂σ_i/∂x_i for diagonal noise),

which makes every solver approximate the SAME u(x, T). c = 0 for constant (additive) noise. If the user's model is
itself Stratonovich (``sde_type="stratonovich"``), Itô solvers get v_ito = v_strat + c instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import torch
from torch import Tensor, nn

from nsde_coin.fields import Diffusion
from nsde_coin.solvers import NOISE_TYPES, SDE_TYPES


class FeynmanKacSDE(nn.Module):
    """torchsde's SDE contract (``f``, ``g``, ``g_prod``, ``f_and_g``, ``f_and_g_prod``, ``noise_type``,
    ``sde_type``) for a drift and a diffusion module.

    Args:
        drift: module/callable (t, x) → (B, d).
        diffusion: a :class:`~nsde_coin.fields.Diffusion` (or any module with ``forward(t, x)``, ``noise_type`` and
            optionally ``prod``/``ito_correction``/``state_dependent``).
        sde_type: the convention the model is written in: ``"ito"`` (default, Feynman–Kac) or ``"stratonovich"``.
        integrate_as: the convention of the solver that will integrate it (defaults to ``sde_type``). This is what
            torchsde reads from the ``sde_type`` attribute; the drift is converted when the two differ.

    Attributes:
        sde_type: the solver's convention (torchsde's attribute); ``model_sde_type``: the model's convention.
        noise_type: the diffusion's torchsde noise type.
        correction_sign: 0 (no conversion), −1 (Itô model, Stratonovich solver), +1 (the reverse).

    The first drift evaluation at the initial state is memoised (by tensor identity and time value) so torchsde's
    shape probes in ``sdeint`` cost no extra network evaluation.
    """

    def __init__(self, drift: Callable[..., Tensor], diffusion: nn.Module, sde_type: str = "ito",
                 integrate_as: Optional[str] = None) -> None:
        super().__init__()
        if sde_type not in SDE_TYPES:
            raise ValueError(f"sde_type={sde_type!r} is not valid; valid choices: {', '.join(SDE_TYPES)}")
        integrate_as = sde_type if integrate_as is None else integrate_as
        if integrate_as not in SDE_TYPES:
            raise ValueError(f"integrate_as={integrate_as!r} is not valid; valid choices: {', '.join(SDE_TYPES)}")
        noise_type = getattr(diffusion, "noise_type", None)
        if noise_type not in NOISE_TYPES:
            raise ValueError(f"diffusion.noise_type={noise_type!r} is not valid; valid choices: "
                             f"{', '.join(NOISE_TYPES)}")
        if not callable(drift):
            raise TypeError(f"drift must be callable (t, x) -> (B, d), got {type(drift).__name__}")
        self.drift = drift
        self.diffusion = diffusion
        self.noise_type = noise_type
        self.sde_type = integrate_as
        self.model_sde_type = sde_type
        state_dependent = getattr(diffusion, "state_dependent", noise_type != "additive")
        if sde_type == integrate_as or not state_dependent or noise_type == "additive":
            self.correction_sign = 0
        else:
            self.correction_sign = -1 if sde_type == "ito" else 1
        self._prod = getattr(diffusion, "prod", None) or (lambda t, x, v: Diffusion.prod(diffusion, t, x, v))
        self._correction = getattr(diffusion, "ito_correction", None) or (
            lambda t, x: Diffusion.ito_correction(diffusion, t, x))
        self._memo: Optional[tuple[Tensor, float, bool, Tensor]] = None
        self.drift_evals = 0

    def forget(self) -> None:
        """Drop the memoised first drift evaluation (called by the integrator after a solve)."""
        self._memo = None

    def prime(self, x: Tensor) -> None:
        """Enable memoisation of the drift at the initial state ``x`` (the next solve's y0)."""
        self._memo = (x, float("nan"), torch.is_grad_enabled(), x)

    # -- torchsde contract -------------------------------------------------------------------------------------
    def f(self, t: Tensor, y: Tensor) -> Tensor:
        """Drift in the solver's convention, (B, d)."""
        memo = self._memo
        if memo is not None:
            x0, t0, grad, val = memo
            if y is x0 and grad == torch.is_grad_enabled():
                tf = float(t)
                if t0 != t0:  # not evaluated yet (NaN marker)
                    val = self._drift(t, y)
                    self._memo = (x0, tf, grad, val)
                    return val
                if tf == t0:
                    return val
            else:
                self._memo = None
        return self._drift(t, y)

    def _drift(self, t: Tensor, y: Tensor) -> Tensor:
        self.drift_evals += 1
        v = self.drift(t, y)
        if self.correction_sign:
            v = v + self.correction_sign * self._correction(t, y)
        return v

    def g(self, t: Tensor, y: Tensor) -> Tensor:
        """Diffusion in torchsde's layout: (B, d) for diagonal noise, (B, d, m) otherwise."""
        return self.diffusion(t, y)

    def g_prod(self, t: Tensor, y: Tensor, v: Tensor) -> Tensor:
        """σ(y, t) v, (B, d)."""
        return self._prod(t, y, v)

    def f_and_g(self, t: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Drift and diffusion together (torchsde's fused call)."""
        return self.f(t, y), self.g(t, y)

    def f_and_g_prod(self, t: Tensor, y: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Drift and the diffusion applied to the increments v, σ(t, y) v (torchsde's fused call)."""
        return self.f(t, y), self._prod(t, y, v)

    def extra_repr(self) -> str:
        return (f"model_sde_type={self.model_sde_type!r}, integrate_as={self.sde_type!r}, "
                f"noise_type={self.noise_type!r}, correction_sign={self.correction_sign}")
