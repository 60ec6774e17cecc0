"""u(x, T) = E[f(X_T) | X_0 = x] by Monte Carlo over SDE paths (torchsde) or, for σ = 0, one ODE flow (torchdiffeq).

:func:`feynman_kac` is the one entry point. It validates every argument (solver combinations through
:func:`nsde_coin.solvers.check_solver`), replicates each input ``samples`` times, integrates dX = v dt + σ dW from 0
to T, evaluates f on X_T and returns the Monte Carlo mean and its standard error.

Brownian motion: fixed-step solves use :class:`~nsde_coin.brownian.FixedGridBrownian` (cheap, O(1) memory,
identical on the adjoint pass, with whatever Lévy area the solver needs); adaptive SDE stepping
(``adaptive=True``) uses ``torchsde.BrownianInterval`` seeded with the same seed.

``solver="srk"`` with a constant scalar/diagonal σ (:func:`~nsde_coin.sra.constant_sigma`), backprop gradients and
fixed steps runs :func:`nsde_coin.sra.sra1_integrate` (Rößler's SRA1 written out for constant σ: torchsde's numbers at
little more than the cost of two drift evaluations per step); every other solve goes to torchsde. It steps on the grid
torchsde would (:func:`_step_times`); with ``return_paths`` its states are those at the step ends, where torchsde
interpolates linearly to the grid times 1e-10·t away (a difference of order 1e-10 relative).

Time grid: ``steps`` equal steps of dt = T/steps (a ``dt`` that does not divide T is rounded to the nearest
dividing step, steps = ceil(T/dt)). Times are passed to torchsde in float64 and its step is inflated by 1e-10
relative so that float round-off can never add a spurious extra step; the solver's last step ends exactly at T.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from numbers import Real
from typing import Any, Optional, Union

import torch
import torchdiffeq
import torchsde
from torch import Tensor, nn

from nsde_coin._checks import all_finite, is_int
from nsde_coin._field_checks import check_shape, field_call
from nsde_coin.brownian import FixedGridBrownian
from nsde_coin.diffusions import ZeroDiffusion, as_diffusion
from nsde_coin.drifts import ZeroDrift
from nsde_coin.errors import NonFiniteError
from nsde_coin.sde import FeynmanKacSDE
from nsde_coin.solve_options import (  # noqa: F401  (re-exported: nsde_coin.integrate.check_settings & co.)
    SOLVER_KWARGS,
    adjoint_tensors,
    check_adjoint_fields,
    check_input,
    check_settings,
    check_solver_kwargs,
    choose_solver,
    draw_seed,
    resolve_steps,
)
from nsde_coin.solvers import SolverInfo
from nsde_coin.sra import constant_sigma, sra1_integrate

__all__ = ["feynman_kac"]

_STEP_INFLATION = 1e-10
# solvers whose additive-noise path multiplies the dense (B, d, d) σ every step: a constant diagonal σ is handed to
# them as torchsde "diagonal" noise (the same SDE; measured 47 -> 17 ms fwd+bwd at d = 64, B = 256, 20 steps). The
# other solvers are as fast or faster with "additive" (srk's SRA1 is 3.5x cheaper than its diagonal SRID2). srk with
# such a σ and backprop gradients runs nsde_coin.sra's SRA1 step instead of torchsde's (the same numbers, cheaper).
_DIAGONAL_VIEW = frozenset({"reversible_heun"})
_COMMUTATIVE = frozenset({"diagonal", "additive", "scalar"})


class _ODEFunc(nn.Module):
    """dx/dt = v(x, t) for torchdiffeq (argument order (t, x) as torchdiffeq calls it)."""

    def __init__(self, drift: Callable[..., Tensor]) -> None:
        super().__init__()
        self.drift = drift

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        return check_shape("drift", t, field_call("drift", self.drift, x, t, x), x.shape)


def feynman_kac(
    f: Callable[[Tensor], Tensor],
    x: Tensor,
    drift: Optional[Callable[..., Tensor]],
    diffusion: Union[None, float, Tensor, nn.Module],
    T: float = 1.0,
    *,
    samples: int = 16,
    steps: Optional[int] = None,
    dt: Optional[float] = None,
    solver: Optional[str] = None,
    grad_mode: str = "backprop",
    sde_type: str = "ito",
    adjoint_method: Optional[str] = None,
    seed: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    rtol: float = 1e-3,
    atol: float = 1e-4,
    return_paths: bool = False,
    adaptive: bool = False,
    brownian: Optional[torchsde.BaseBrownian] = None,
    adjoint_params: Optional[Sequence[Tensor]] = None,
    batch_rows: Optional[tuple[int, int]] = None,
) -> Union[tuple[Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]:
    """Monte Carlo Feynman–Kac: u(x, T) = E[f(X_T) | X_0 = x], dX = v(X, t) dt + σ(X, t) dW.

    Args:
        f: base model, (N, d) → (N, C) or (N,).
        x: initial states, (B, d).
        drift: v(t, x) → (B, d), or None for v = 0.
        diffusion: a diffusion field (:mod:`nsde_coin.fields`); or a float σ for σ·I (:class:`ScalarDiffusion`, as
            in torchsde/diffrax), a (d,) tensor for diag(σ), a (d, m) tensor for a constant matrix
            (:func:`~nsde_coin.diffusions.as_diffusion`); or None for σ = 0.
        T: diffusion time (> 0).
        samples: K paths per input (forced to 1 when σ = 0).
        steps / dt: time grid (default 20 steps). Ignored by adaptive ODE solvers except as the first step.
        solver: registry name (``nsde-coin solvers`` lists them); default ``"euler"`` (``"reversible_heun"`` for
            ``grad_mode="reversible"``).
        grad_mode: ``"backprop"`` (through the solver), ``"adjoint"`` (``sdeint_adjoint``/``odeint_adjoint``,
            O(1) memory in steps), ``"reversible"`` (reversible_heun + adjoint_reversible_heun: exact adjoint).
        sde_type: the convention the SDE is written in (``"ito"``, Feynman–Kac's; or ``"stratonovich"``). The drift
            is converted when the solver integrates the other convention, so every solver targets the same u.
        adjoint_method: the backward solver for ``grad_mode="adjoint"`` (default: torchsde's choice).
        seed / generator: the Brownian path's seed; with neither, a seed is drawn from torch's global generator.
        rtol, atol: tolerances of adaptive solvers.
        return_paths: also return the paths at the grid times, shape (steps + 1, B, K, d).
        adaptive: adaptive SDE stepping (torchsde; uses BrownianInterval).
        brownian: a Brownian motion of shape (B·K, m) to use instead of the default one.
        adjoint_params: ``grad_mode`` adjoint/reversible only — tensors besides the parameters of ``drift`` and
            ``diffusion`` (when those are ``nn.Module``s) that the adjoint pass must differentiate; required (``()``
            if there are none) when a field is a plain callable (see :func:`check_adjoint_fields`).
        batch_rows: ``(offset, total)``: ``x`` holds inputs ``offset .. offset + B - 1`` of a batch of ``total``
            inputs, and gets exactly the paths those inputs get when the whole batch is solved with this ``seed``
            (a data-parallel rank's shard; fixed-grid solvers only).

    Checks: every drift/diffusion evaluation (forward, adjoint, every solver) must return exactly (B, d) (drift,
    diagonal σ) or (B, d, m) (other σ): a broadcastable shape such as (B, 1) raises ``ValueError`` naming the field,
    t and both shapes. NaN/Inf states X_T or outputs f(X_T) raise :class:`~nsde_coin.errors.NonFiniteError`.

    Dtypes: nothing is cast implicitly. x, the fields' parameters and f must share one floating dtype (constant σ
    buffers of the built-in diffusions are the exception: they are cast to x's dtype); a mismatch raises
    ``TypeError`` naming both dtypes and the fix (``net.double()``/``net.to(x.dtype)`` or ``x.float()``).

    Returns:
        ``(mean, stderr)``, each (B, C) (or (B,) when f returns (N,)); ``stderr`` = sample std / sqrt(K) — zeros for
        σ = 0 and +inf when K = 1 with noise (not estimable). With ``return_paths`` a third tensor (see above).
        Path k of input b is row b·K + k of the replicated batch.
    """
    drift = ZeroDrift(None) if drift is None else drift
    if diffusion is None:
        diffusion = ZeroDiffusion(None)
    elif isinstance(diffusion, (Real, Tensor)):  # a float / tensor σ
        check_input(x, drift, None)
        diffusion = as_diffusion(diffusion, x.shape[1])
    check_settings(f, drift, diffusion, T, samples, sde_type, grad_mode, rtol, atol, adaptive, brownian,
                   adjoint_params)
    check_input(x, drift, diffusion)
    check_adjoint_fields(drift, diffusion, grad_mode, adjoint_params)
    extra = tuple(adjoint_params or ())
    T = float(T)
    n_steps = resolve_steps(T, steps, dt)
    info, integrate_as = choose_solver(diffusion, solver, grad_mode, sde_type, adjoint_method)
    if seed is not None and not is_int(seed):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__} ({seed!r})")
    B, d = x.shape

    if integrate_as == "ode":
        K = 1
        xT, paths = _solve_ode(x, drift, T, n_steps, info, grad_mode, rtol, atol, return_paths, extra)
    else:
        K = int(samples)
        if seed is None:
            seed = draw_seed(generator)
        if brownian is not None:
            _check_brownian(brownian, (B * K, int(getattr(diffusion, "noise_dim", d))), x.dtype)
        y0 = x.unsqueeze(1).expand(B, K, d).reshape(B * K, d)
        if batch_rows is not None:
            brownian = _shard_brownian(batch_rows, B, K, diffusion, x, T, n_steps, info, int(seed), adaptive,
                                       brownian)
        xT, paths = _solve_sde(y0, drift, diffusion, T, n_steps, info, integrate_as, sde_type, grad_mode,
                               adjoint_method, int(seed), rtol, atol, return_paths, adaptive, brownian, extra)
    if not all_finite(xT):
        raise NonFiniteError(f"the {info.name!r} solve produced NaN/Inf states X_T at T={T}; the dynamics blew up — "
                             f"use more steps (now {n_steps}) or a smaller drift/diffusion")
    out = field_call("base model f", f, xT, xT)
    if not isinstance(out, Tensor) or out.dim() not in (1, 2) or out.shape[0] != B * K:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"f must map (N, d) -> (N, C) or (N,) with N = {B * K}, got {shape}")
    if not all_finite(out):
        bad = int((~torch.isfinite(out)).sum())
        raise NonFiniteError(f"the base model f returned NaN/Inf on finite states X_T ({bad} of {out.numel()} "
                             f"outputs f(X_T)); check f's parameters and inputs (e.g. log of a non-positive value)")
    vec = out.dim() == 1
    out = out.reshape(B, K, -1)
    mean = out.mean(dim=1)
    if integrate_as == "ode":
        stderr = torch.zeros_like(mean)
    elif K == 1:
        stderr = torch.full_like(mean, math.inf)
    else:
        stderr = out.detach().std(dim=1) / math.sqrt(K)
    if vec:
        mean, stderr = mean.squeeze(-1), stderr.squeeze(-1)
    if return_paths:
        return mean, stderr, paths.reshape(paths.shape[0], B, K, d)
    return mean, stderr


def _check_brownian(bm: torchsde.BaseBrownian, size: tuple[int, int], dtype: torch.dtype) -> None:
    """A user-supplied Brownian motion must have this solve's size (B·samples, noise_dim) and x's dtype."""
    if tuple(bm.shape) != size:
        raise ValueError(f"brownian has shape {tuple(bm.shape)} but this solve needs {size} = (B*samples, the "
                         f"diffusion's noise_dim); build it with size={size}")
    if bm.dtype != dtype:
        raise TypeError(f"brownian has dtype {bm.dtype} but x has dtype {dtype}; build it with dtype={dtype}")


def _solve_ode(x: Tensor, drift: Callable[..., Tensor], T: float, n_steps: int, info: SolverInfo, grad_mode: str,
               rtol: float, atol: float, return_paths: bool, extra: tuple[Tensor, ...] = ()
               ) -> tuple[Tensor, Optional[Tensor]]:
    func = _ODEFunc(drift)
    if return_paths:
        ts = torch.linspace(0.0, T, n_steps + 1, dtype=x.dtype, device=x.device)
    else:
        ts = torch.tensor([0.0, T], dtype=x.dtype, device=x.device)
    if info.adaptive:
        options: dict[str, Any] = {"first_step": T / n_steps}
    else:
        def grid(func: Any, y0: Tensor, t: Tensor) -> Tensor:  # the same n equal steps forward and backward
            return torch.linspace(float(t[0]), float(t[-1]), n_steps + 1, dtype=t.dtype, device=t.device)
        options = {"grid_constructor": grid}
    if grad_mode == "adjoint":
        ys = torchdiffeq.odeint_adjoint(func, x, ts, rtol=rtol, atol=atol, method=info.name, options=options,
                                        adjoint_params=adjoint_tensors(drift, extra=extra))
    else:
        ys = torchdiffeq.odeint(func, x, ts, rtol=rtol, atol=atol, method=info.name, options=options)
    return ys[-1], (ys if return_paths else None)


def _shard_brownian(batch_rows: tuple[int, int], B: int, K: int, diffusion: nn.Module, x: Tensor, T: float,
                    n_steps: int, info: SolverInfo, seed: int, adaptive: bool,
                    brownian: Optional[torchsde.BaseBrownian]) -> FixedGridBrownian:
    """The rows of the whole batch's fixed-grid Brownian motion that inputs ``offset .. offset + B - 1`` get."""
    offset, total = (int(v) for v in batch_rows)
    if brownian is not None or adaptive:
        raise ValueError("batch_rows selects rows of the default fixed-grid Brownian motion; it cannot be combined "
                         "with brownian= or adaptive=True")
    if not 0 <= offset < offset + B <= total:
        raise ValueError(f"batch_rows={batch_rows!r} is not valid for a shard of {B} inputs; expected "
                         f"0 <= offset and offset + {B} <= total")
    levy = {None: "none"}.get(info.levy_area, info.levy_area)
    size = (total * K, int(getattr(diffusion, "noise_dim", x.shape[1])))
    return FixedGridBrownian(0.0, T, size, steps=n_steps, seed=seed, dtype=x.dtype, device=x.device, levy_area=levy,
                             commutative=diffusion.noise_type in _COMMUTATIVE, rows=(offset * K, (offset + B) * K))


def _step_times(T: float, n_steps: int) -> list[float]:
    """The times torchsde's fixed-step loop steps through on [0, T]: t + the inflated step, the last one clamped to T
    (so a solver run outside torchsde, :mod:`nsde_coin.sra`, steps on exactly the same grid)."""
    step = T / n_steps * (1.0 + _STEP_INFLATION)
    times = [0.0]
    while times[-1] < T:
        times.append(min(times[-1] + step, T))
    return times


def _solve_sde(y0: Tensor, drift: Callable[..., Tensor], diffusion: nn.Module, T: float, n_steps: int,
               info: SolverInfo, integrate_as: str, sde_type: str, grad_mode: str, adjoint_method: Optional[str],
               seed: int, rtol: float, atol: float, return_paths: bool, adaptive: bool,
               brownian: Optional[torchsde.BaseBrownian], extra: tuple[Tensor, ...] = ()
               ) -> tuple[Tensor, Optional[Tensor]]:
    as_diagonal = info.name in _DIAGONAL_VIEW and callable(getattr(diffusion, "diagonal", None))
    sde = FeynmanKacSDE(drift, diffusion, sde_type=sde_type, integrate_as=integrate_as, as_diagonal=as_diagonal,
                        closed_form_slope=not torch.is_grad_enabled())
    size = (y0.shape[0], int(getattr(diffusion, "noise_dim", y0.shape[1])))
    levy = {None: "none", "space-time": "space-time", "foster": "foster"}.get(info.levy_area, info.levy_area)
    if brownian is not None:
        bm = brownian
    elif adaptive:
        bm = torchsde.BrownianInterval(t0=0.0, t1=T, size=size, dtype=y0.dtype, device=y0.device, entropy=seed,
                                       levy_area_approximation=levy)
    else:
        bm = FixedGridBrownian(0.0, T, size, steps=n_steps, seed=seed, dtype=y0.dtype, device=y0.device,
                               levy_area=levy, commutative=diffusion.noise_type in _COMMUTATIVE)
    if return_paths:
        ts = torch.linspace(0.0, T, n_steps + 1, dtype=torch.float64, device=y0.device)
    else:
        ts = torch.tensor([0.0, T], dtype=torch.float64, device=y0.device)
    if info.name == "srk" and grad_mode == "backprop" and not adaptive and constant_sigma(diffusion):
        try:  # a constant scalar/diagonal sigma: our own SRA1 step, the same numbers without torchsde's machinery
            return sra1_integrate(sde, y0, bm, _step_times(T, n_steps), return_paths)
        finally:
            sde.forget()
    step = T / n_steps * (1.0 + _STEP_INFLATION)
    kwargs: dict[str, Any] = dict(bm=bm, method=info.name, dt=step, adaptive=adaptive, rtol=rtol, atol=atol)
    try:
        if grad_mode == "backprop":
            ys = torchsde.sdeint(sde, y0, ts, **kwargs)
        else:
            if grad_mode == "reversible":
                adjoint_method = "adjoint_reversible_heun"
            ys = torchsde.sdeint_adjoint(sde, y0, ts, adjoint_method=adjoint_method, adjoint_adaptive=adaptive,
                                         adjoint_rtol=rtol, adjoint_atol=atol,
                                         adjoint_params=adjoint_tensors(drift, diffusion, extra=extra), **kwargs)
    finally:
        sde.forget()
    return ys[-1], (ys if return_paths else None)
