"""Argument checks and choices of :func:`~nsde_coin.integrate.feynman_kac` that do not integrate anything.

The time grid (:func:`resolve_steps`), the seed (:func:`draw_seed`), every setting that does not depend on x
(:func:`check_settings`, also run by :class:`~nsde_coin.model.ConvectionDiffusionNet` at construction), the input
(:func:`check_input`), the adjoint's reach (:func:`check_adjoint_fields`, :func:`adjoint_tensors`) and the solver for
a diffusion (:func:`choose_solver`). Each check raises a one-line ``ValueError``/``TypeError`` naming the value and
the valid choices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Optional

import torch
import torchsde
from torch import Tensor, nn

from nsde_coin._checks import all_finite, is_int, is_real
from nsde_coin.errors import invalid_choice
from nsde_coin.solvers import GRAD_MODES, SDE_TYPES, SolverInfo, check_solver

__all__ = ["SOLVER_KWARGS", "adjoint_tensors", "check_adjoint_fields", "check_input", "check_settings",
           "check_solver_kwargs", "choose_solver", "draw_seed", "resolve_steps"]


def draw_seed(generator: Optional[torch.Generator] = None) -> int:
    """A fresh 62-bit seed from ``generator`` (torch's global generator when None)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator).item())


def resolve_steps(T: float, steps: Optional[int], dt: Optional[float]) -> int:
    """The number of equal steps on [0, T] from ``steps`` or ``dt`` (default 20); validated."""
    if steps is not None and dt is not None:
        raise ValueError(f"give steps or dt, not both (got steps={steps!r}, dt={dt!r})")
    if dt is not None:
        if not is_real(dt) or not math.isfinite(dt) or dt <= 0:
            raise ValueError(f"dt={dt!r} is not valid; expected a finite float > 0")
        n = T / float(dt)
        steps = max(1, math.ceil(n - 1e-9 * n))
    if steps is None:
        steps = 20
    if not is_int(steps) or steps < 1:
        raise ValueError(f"steps={steps!r} is not valid; expected an int >= 1")
    return int(steps)


def check_settings(f: Any, drift: Any, diffusion: Any, T: Any, samples: Any, sde_type: Any, grad_mode: Any,
                   rtol: Any = 1e-3, atol: Any = 1e-4, adaptive: Any = False, brownian: Any = None,
                   adjoint_params: Any = None) -> None:
    """Check every argument of :func:`feynman_kac` that does not depend on x (``drift``/``diffusion`` already with
    None replaced by the zero fields). :class:`~nsde_coin.model.ConvectionDiffusionNet` calls it at construction.
    Raises a one-line ``ValueError``/``TypeError`` naming the value and the valid choices."""
    if not callable(f):
        raise TypeError(f"f must be callable (the base model, (N, d) -> (N, C)), got {type(f).__name__}")
    if not is_real(T) or not math.isfinite(T) or T <= 0:
        raise ValueError(f"T={T!r} is not valid; expected a finite float > 0 (the diffusion time)")
    if not is_int(samples) or samples < 1:
        raise ValueError(f"samples={samples!r} is not valid; expected an int >= 1")
    if sde_type not in SDE_TYPES:
        raise ValueError(invalid_choice("sde_type", sde_type, SDE_TYPES))
    if grad_mode not in GRAD_MODES:
        raise ValueError(invalid_choice("grad_mode", grad_mode, GRAD_MODES))
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if not is_real(tol) or not math.isfinite(tol) or tol < 0:
            raise ValueError(f"{name}={tol!r} is not valid; expected a finite float >= 0 (adaptive solver tolerance)")
    if not isinstance(adaptive, bool):
        raise TypeError(f"adaptive must be True or False, got {type(adaptive).__name__} ({adaptive!r})")
    if brownian is not None and not isinstance(brownian, torchsde.BaseBrownian):
        raise TypeError(f"brownian must be a torchsde Brownian motion (e.g. nsde_coin.FixedGridBrownian) or None, "
                        f"got {type(brownian).__name__}")
    if adjoint_params is not None and (isinstance(adjoint_params, Tensor) or not all(
            isinstance(p, Tensor) for p in adjoint_params)):
        raise TypeError("adjoint_params must be a sequence of tensors (the ones a plain-callable field uses) or None")
    if not callable(drift):
        raise TypeError(f"drift must be callable (t, x) -> (B, d) or None, got {type(drift).__name__}")
    if not callable(diffusion) or not hasattr(diffusion, "noise_type"):
        raise TypeError("diffusion must be a diffusion module with forward(t, x) and noise_type (see "
                        f"nsde_coin.fields) or None, got {type(diffusion).__name__}")
    dims = {name: getattr(field, "dim", None) for name, field in (("drift", drift), ("diffusion", diffusion))}
    if None not in dims.values() and dims["drift"] != dims["diffusion"]:
        raise ValueError(f"the drift has dim={dims['drift']} but the diffusion has dim={dims['diffusion']}; "
                         f"both fields must act on the same d features")


def check_input(x: Any, drift: Any, diffusion: Any) -> None:
    """x must be a finite floating (B, d) tensor with B >= 1 and d matching the fields' ``dim``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape (B, d), got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"x must be 2-D of shape (B, d), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    if x.shape[0] < 1:
        raise ValueError(f"x must hold at least one row, got shape {tuple(x.shape)}")
    if not all_finite(x):
        raise ValueError(f"x contains NaN or Inf ({int((~torch.isfinite(x)).sum())} non-finite entries)")
    d = x.shape[1]
    for name, field in (("drift", drift), ("diffusion", diffusion)):
        dim = getattr(field, "dim", None)
        if dim is not None and dim != d:
            raise ValueError(f"x has {d} features but the {name} expects dim={dim}")


SOLVER_KWARGS = ("rtol", "atol", "adaptive", "brownian", "adjoint_params")


def check_solver_kwargs(kwargs: dict[str, Any]) -> None:
    """Keywords a model passes on to :func:`feynman_kac` unchanged must be among :data:`SOLVER_KWARGS`."""
    for key in kwargs:
        if key not in SOLVER_KWARGS:
            raise TypeError(f"unexpected keyword argument {key!r} (passed on to feynman_kac); valid keywords: "
                            f"{', '.join(SOLVER_KWARGS)}")


def adjoint_tensors(*modules: Any, extra: Sequence[Tensor] = ()) -> tuple[Tensor, ...]:
    """The tensors an adjoint solve differentiates: the modules' trainable parameters, then ``extra`` (no repeats)."""
    seen: dict[int, Tensor] = {}
    for m in modules:
        if isinstance(m, nn.Module):
            for p in m.parameters():
                if p.requires_grad:
                    seen.setdefault(id(p), p)
    for p in extra:
        seen.setdefault(id(p), p)
    return tuple(seen.values())


def check_adjoint_fields(drift: Any, diffusion: Any, grad_mode: str,
                         adjoint_params: Optional[Sequence[Tensor]] = None) -> None:
    """Adjoint gradients reach only the tensors handed to the adjoint solver: the parameters of ``drift`` and
    ``diffusion`` when they are ``nn.Module``s, plus ``adjoint_params``. A plain callable's captured tensors cannot be
    found, so with ``grad_mode`` ``"adjoint"``/``"reversible"`` a non-module field needs ``adjoint_params`` (``()``
    when it has no parameters) — otherwise its parameters would silently get no gradient. Raises ``TypeError``."""
    if grad_mode == "backprop" or adjoint_params is not None:
        return
    for name, field in (("drift", drift), ("diffusion", diffusion)):
        if field is not None and not isinstance(field, nn.Module):
            raise TypeError(f"grad_mode={grad_mode!r} with a {name} that is not an nn.Module "
                            f"({type(field).__name__}): the adjoint pass cannot find the tensors it depends on, so "
                            f"they would get no gradient; make the {name} an nn.Module, pass adjoint_params=(tensors "
                            f"it uses) (or () if it has none), or use grad_mode='backprop'")


def choose_solver(diffusion: Any, solver: Optional[str] = None, grad_mode: str = "backprop",
                  sde_type: str = "ito", adjoint_method: Optional[str] = None) -> tuple[SolverInfo, str]:
    """Validate the solver for this diffusion and return (info, the SDE convention it will integrate in).

    Defaults: ``"euler"`` (ODE family when σ = 0; Euler–Maruyama for SDEs), ``"reversible_heun"`` for
    ``grad_mode="reversible"``.
    """
    if sde_type not in SDE_TYPES:
        raise ValueError(invalid_choice("sde_type", sde_type, SDE_TYPES))
    if grad_mode not in GRAD_MODES:
        raise ValueError(invalid_choice("grad_mode", grad_mode, GRAD_MODES))
    if getattr(diffusion, "is_zero", False):
        name = "euler" if solver is None else solver
        return check_solver(name, family="ode", grad_mode=grad_mode, adjoint_method=adjoint_method), "ode"
    name = solver if solver is not None else ("reversible_heun" if grad_mode == "reversible" else "euler")
    info = check_solver(name, family="sde", noise_type=diffusion.noise_type, grad_mode=grad_mode)
    integrate_as = sde_type if sde_type in info.sde_types else info.sde_types[0]
    if grad_mode == "reversible" and adjoint_method not in (None, "adjoint_reversible_heun"):
        raise ValueError(f"grad_mode='reversible' uses adjoint_method='adjoint_reversible_heun', got "
                         f"adjoint_method={adjoint_method!r}; use grad_mode='adjoint' for other adjoint methods")
    info = check_solver(name, family="sde", noise_type=diffusion.noise_type, sde_type=integrate_as, grad_mode=grad_mode,
                    adjoint_method=adjoint_method)
    return info, integrate_as
