"""The SDE object torchsde integrates: dX = v(X, t) dt + σ(X, t) dW, in the convention the chosen solver needs.

The network is *defined* by an Itô SDE (Feynman–Kac's u(x, T) = E[f(X_T) | X_0 = x] is a statement about the Itô
process). Stratonovich solvers (heun, midpoint, euler_heun, reversible_heun, log_ode, Stratonovich milstein)
integrate ∘dW instead, so :class:`FeynmanKacSDE` hands them the converted drift

    v_strat = v_ito − c,   c_i = ½ Σ_{j,k} σ_kj ∂σ_ij/∂x_k   (= ½ σ_i ∂σ_i/∂x_i for diagonal noise),

which makes every solver approximate the SAME u(x, T). c = 0 for constant (additive) noise. If the user's model is
itself Stratonovich (``sde_type="stratonovich"``), Itô solvers get v_ito = v_strat + c instead.

Every evaluation is shape-checked (not only torchsde's probe at t0): the drift must return exactly the state's shape
(B, d), a diagonal diffusion (B, d), any other diffusion (B, d, m). A field that returns a broadcastable shape such as
(B, 1) raises a one-line ``ValueError`` naming the field, t, the expected and the received shape
instead of being silently broadcast. A field that fails on a dtype mismatch (float64 x, float32 parameters) raises a
``TypeError`` naming both dtypes and the fix (both checks live in :mod:`nsde_coin._field_checks`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from nsde_coin._field_checks import check_shape, field_call
from nsde_coin.fields import Diffusion
from nsde_coin.solvers import NOISE_TYPES, SDE_TYPES


class _KnownSlope(torch.autograd.Function):
    """σ (B, d) as a function of y whose vjp is ``grad * slope`` (a diagonal Jacobian known in closed form)."""

    @staticmethod
    def forward(ctx: Any, y: Tensor, sig: Tensor, slope: Tensor) -> Tensor:
        ctx.save_for_backward(slope)
        return sig.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (slope,) = ctx.saved_tensors
        return grad * slope, None, None


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
        closed_form_slope: for solves that need no gradient of the result (run under ``torch.no_grad``): when the
            diffusion is diagonal and has ``sigma_and_slope(t, x)`` (σ and ∂σ_i/∂x_i in closed form), a ``g``
            evaluated for a vjp (grad enabled, ``y.requires_grad`` — Milstein's g·∂g term) is a node whose backward
            is ``grad * slope`` instead of a tape through the network (first derivatives only).
        as_diagonal: present a constant diagonal σ (a diffusion with a ``diagonal(t, x)`` method) to torchsde as
            ``"diagonal"`` noise, with ``g`` returning the (B, d) diagonal instead of the (B, d, d) matrix. The SDE is
            the same; solvers that would multiply the dense matrix every step (reversible_heun) become O(B·d).

    Attributes:
        sde_type: the solver's convention (torchsde's attribute); ``model_sde_type``: the model's convention.
        noise_type: the diffusion's torchsde noise type.
        correction_sign: 0 (no conversion), −1 (Itô model, Stratonovich solver), +1 (the reverse).

    The last drift evaluation is memoised (by tensor identity and time value), so torchsde's shape probe in
    ``sdeint`` and srk's repeated stage evaluation cost no extra network evaluation.
    """

    def __init__(self, drift: Callable[..., Tensor], diffusion: nn.Module, sde_type: str = "ito",
                 integrate_as: Optional[str] = None, as_diagonal: bool = False,
                 closed_form_slope: bool = False) -> None:
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
        if as_diagonal and not callable(getattr(diffusion, "diagonal", None)):
            raise TypeError(f"as_diagonal=True needs a constant diagonal diffusion with a diagonal(t, x) method, got "
                            f"{type(diffusion).__name__}")
        self.drift = drift
        self.diffusion = diffusion
        self.noise_type = "diagonal" if as_diagonal else noise_type
        self._g = diffusion.diagonal if as_diagonal else diffusion
        self.sde_type = integrate_as
        self.model_sde_type = sde_type
        state_dependent = getattr(diffusion, "state_dependent", noise_type != "additive")
        if sde_type == integrate_as or not state_dependent or noise_type == "additive":
            self.correction_sign = 0
        else:
            self.correction_sign = -1 if sde_type == "ito" else 1
        self._diagonal = self.noise_type == "diagonal"  # the layout g returns: (B, d), else (B, d, m)
        self._noise_dim: Optional[int] = getattr(diffusion, "noise_dim", None)
        prod = getattr(type(diffusion), "prod", None)
        # the generic product (and, for a diagonal-noise field, any product: it is g * v) goes through the checked
        # g, so a wrongly shaped sigma cannot hide behind broadcasting in g * v; constant fields (additive, also
        # under as_diagonal) keep their fast products
        self._prod = (self._generic_prod if noise_type == "diagonal" or prod is None or prod is Diffusion.prod
                      else diffusion.prod)
        self._correction = getattr(diffusion, "ito_correction", None) or (
            lambda t, x: Diffusion.ito_correction(diffusion, t, x))
        slope = getattr(diffusion, "sigma_and_slope", None)
        self._slope = slope if closed_form_slope and noise_type == "diagonal" and callable(slope) else None
        self._memo: Optional[tuple[Tensor, Tensor, bool, Tensor]] = None
        self.drift_evals = 0

    def forget(self) -> None:
        """Drop the memoised drift evaluation (called by the integrator after a solve)."""
        self._memo = None

    # -- torchsde contract -------------------------------------------------------------------------------------
    def f(self, t: Tensor, y: Tensor) -> Tensor:
        """Drift in the solver's convention, (B, d).

        The last evaluation is memoised by tensor identity of ``y``, the time value and the grad mode: torchsde
        evaluates f twice at the same point in places (its shape probe before the first step; srk's SRA1 stage
        at y0 inside every step), and a repeat costs a network evaluation. The time is compared (a host sync on
        a GPU) only when ``y`` is the very tensor of the last call.
        """
        memo = self._memo
        grad = torch.is_grad_enabled()
        if memo is not None and y is memo[0] and grad == memo[2] and (t is memo[1] or float(t) == float(memo[1])):
            return memo[3]
        val = self._drift(t, y)
        self._memo = (y, t, grad, val)
        return val

    def _drift(self, t: Tensor, y: Tensor) -> Tensor:
        self.drift_evals += 1
        v = check_shape("drift", t, field_call("drift", self.drift, y, t, y), y.shape)
        if self.correction_sign:
            c = check_shape("diffusion's ito_correction", t, self._correction(t, y), y.shape)
            v = v + self.correction_sign * c
        return v

    def g(self, t: Tensor, y: Tensor) -> Tensor:
        """Diffusion in torchsde's layout: (B, d) for diagonal noise, (B, d, m) otherwise."""
        if self._slope is not None and y.requires_grad and torch.is_grad_enabled():
            sig, slope = self._slope(t, y.detach())
            g = _KnownSlope.apply(y, check_shape("diffusion", t, sig, y.shape, "diagonal noise: B, d"), slope)
        else:
            g = field_call("diffusion", self._g, y, t, y)
        if self._diagonal:
            return check_shape("diffusion", t, g, y.shape, "diagonal noise: B, d")
        m = y.shape[1] if self._noise_dim is None else self._noise_dim
        return check_shape("diffusion", t, g, (y.shape[0], y.shape[1], m), f"{self.noise_type} noise: B, d, m")

    def _generic_prod(self, t: Tensor, y: Tensor, v: Tensor) -> Tensor:
        g = self.g(t, y)
        return g * v if self._diagonal else torch.bmm(g, v.unsqueeze(-1)).squeeze(-1)

    def g_prod(self, t: Tensor, y: Tensor, v: Tensor) -> Tensor:
        """σ(y, t) v, (B, d)."""
        return check_shape("diffusion's product sigma·dW", t, field_call("diffusion", self._prod, y, t, y, v),
                           y.shape)

    def f_and_g(self, t: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Drift and diffusion together (torchsde's fused call)."""
        return self.f(t, y), self.g(t, y)

    def f_and_g_prod(self, t: Tensor, y: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Drift and the diffusion applied to the increments v, σ(t, y) v (torchsde's fused call)."""
        return self.f(t, y), self.g_prod(t, y, v)

    def extra_repr(self) -> str:
        return (f"model_sde_type={self.model_sde_type!r}, integrate_as={self.sde_type!r}, "
                f"noise_type={self.noise_type!r}, correction_sign={self.correction_sign}")
