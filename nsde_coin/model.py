"""ConvectionDiffusionNet: a base model f turned into the network u(x, T) = E[f(X_T) | X_0 = x].

The drift v is the convection (a ResNet's residual branch in the limit), the diffusion σ the noise injection;
``forward`` returns the Monte Carlo mean over ``samples`` SDE paths (one ODE flow when σ = 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Real
from typing import Any, Optional, Union

import torch
from torch import Tensor, nn

from nsde_coin._checks import is_int, is_real
from nsde_coin.brownian import step_seed
from nsde_coin.diffusions import ZeroDiffusion, as_diffusion
from nsde_coin.drifts import ZeroDrift
from nsde_coin.integrate import (
    check_adjoint_fields,
    check_settings,
    check_solver_kwargs,
    choose_solver,
    draw_seed,
    feynman_kac,
    resolve_steps,
)
from nsde_coin.solvers import SolverInfo

OUTPUTS = ("probs", "identity")
_EVAL_STREAM = 0x5EED_E7A1


class ConvectionDiffusionNet(nn.Module):
    """u(x, T) = E[f(X_T) | X_0 = x] with dX = v(X, t) dt + σ(X, t) dW, as an ``nn.Module``.

    Args:
        base: the base model f, (N, d) → (N, C) (logits for classifiers).
        drift: v(t, x) → (B, d) (e.g. :class:`~nsde_coin.fields.MLPDrift`), or None for v = 0.
        diffusion: a diffusion field (:mod:`nsde_coin.fields`), or None for σ = 0 (an ODE network); a float σ means
            σ·I (:class:`~nsde_coin.fields.ScalarDiffusion`, its d taken from the drift's ``dim``) and a (d,) tensor
            diag(σ), as for :func:`~nsde_coin.integrate.feynman_kac`.
        T: diffusion time.
        steps: time steps on [0, T].
        solver, grad_mode, sde_type, adjoint_method: see :func:`~nsde_coin.integrate.feynman_kac`; checked here.
        samples: Monte Carlo paths per input in training mode; ``eval_samples`` in eval mode (default ``samples``).
        seed: None → every call draws a fresh seed from torch's global generator (training sees new noise;
            reproducible under ``torch.manual_seed``). An int → call n of training mode uses the path
            seed hash(seed, n) (counter ``calls``), and eval mode always uses one fixed path seed derived from
            ``seed`` (common random numbers: evaluation is a deterministic function). Same seed ⇒ bit-identical
            outputs on CPU.
        output: ``"probs"`` → f = softmax(base logits), the network averages probabilities (the Feynman–Kac
            solution with a probability-valued base model); ``"identity"`` → averages raw base outputs.
        prefix_sigma, prefix_time: an optional pure-diffusion prefix (v = 0, constant isotropic σ0 on [0, t0])
            before the SDE above (whose clock then starts at t0 as 0): X_{t0} = x + s·Z, s = σ0·√t0, Z ~ N(0, I),
            computed exactly from one Gaussian draw per path. It makes u(x) a Gaussian smoothing of scale s, which
            :mod:`nsde_coin.certify` turns into a certified L2 radius. Give both or neither.
        **solver_kwargs: passed on to :func:`feynman_kac`: ``rtol``, ``atol``, ``adaptive``, ``brownian``,
            ``adjoint_params``.

    Every argument is validated here, at construction (a bad value raises a one-line ``ValueError``/``TypeError``
    naming it and the valid choices), not at the first forward. Dtypes are not cast: inputs must have the dtype of
    the base model's and fields' parameters (``net.double()`` for float64 inputs); see
    :func:`~nsde_coin.integrate.feynman_kac`.
    """

    def __init__(self, base: Callable[[Tensor], Tensor], drift: Optional[nn.Module],
                 diffusion: Union[None, float, Tensor, nn.Module],
                 T: float = 1.0, *, steps: int = 20, solver: Optional[str] = None, grad_mode: str = "backprop",
                 samples: int = 8, eval_samples: Optional[int] = None, sde_type: str = "ito",
                 adjoint_method: Optional[str] = None, seed: Optional[int] = None, output: str = "probs",
                 prefix_sigma: Optional[float] = None, prefix_time: Optional[float] = None,
                 **solver_kwargs: Any) -> None:
        super().__init__()
        if not callable(base):
            raise TypeError(f"base must be callable (N, d) -> (N, C), got {type(base).__name__}")
        if output not in OUTPUTS:
            raise ValueError(f"output={output!r} is not valid; valid choices: {', '.join(OUTPUTS)}")
        for name, value in (("samples", samples), ("eval_samples", eval_samples)):
            if value is not None and (not is_int(value) or value < 1):
                raise ValueError(f"{name}={value!r} is not valid; expected an int >= 1")
        if seed is not None and not is_int(seed):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__} ({seed!r})")
        if not is_real(T) or not T > 0 or T == float("inf"):
            raise ValueError(f"T={T!r} is not valid; expected a finite float > 0 (the diffusion time)")
        self.base = base
        self.drift = ZeroDrift(None) if drift is None else drift
        if isinstance(diffusion, (Real, Tensor)):  # a float / tensor σ
            diffusion = as_diffusion(diffusion, getattr(self.drift, "dim", None))
        self.diffusion = ZeroDiffusion(None) if diffusion is None else diffusion
        self.T = float(T)
        self.steps = resolve_steps(self.T, steps, None)
        self.grad_mode = grad_mode
        self.sde_type = sde_type
        self.adjoint_method = adjoint_method
        self.samples = int(samples)
        self.eval_samples = None if eval_samples is None else int(eval_samples)
        self.seed = None if seed is None else int(seed)
        # (offset, total) while a data-parallel trainer feeds this rank's shard of a batch (training.fit): the shard
        # gets the paths its rows get in the whole batch, so the estimate does not depend on the number of ranks
        self.batch_rows: Optional[tuple[int, int]] = None
        self.output = output
        self.solver_kwargs = solver_kwargs
        self.calls = 0
        self.prefix_scale = _prefix_scale(prefix_sigma, prefix_time)  # s = σ0·√t0, or None (no prefix)
        # validate the combination now (errors at construction, not at the first batch)
        check_solver_kwargs(solver_kwargs)
        check_settings(base, self.drift, self.diffusion, self.T, self.samples, sde_type, grad_mode, **solver_kwargs)
        self._info, self._integrate_as = choose_solver(self.diffusion, solver, grad_mode, sde_type, adjoint_method)
        check_adjoint_fields(drift, diffusion, grad_mode, solver_kwargs.get("adjoint_params"))
        self.solver = self._info.name

    @property
    def family(self) -> str:
        """``"sde"`` (Monte Carlo over paths) or ``"ode"`` (σ = 0, one flow)."""
        return self._info.family

    @property
    def solver_info(self) -> SolverInfo:
        """The registry record of the solver in use."""
        return self._info

    @property
    def current_samples(self) -> int:
        """Paths per input in the current mode (1 for the ODE family)."""
        if self.family == "ode" and self.prefix_scale is None:
            return 1
        return self.samples if self.training or self.eval_samples is None else self.eval_samples

    def _f(self, z: Tensor) -> Tensor:
        out = self.base(z)
        return torch.softmax(out, dim=-1) if self.output == "probs" else out

    def _next_seed(self) -> Optional[int]:
        if self.family == "ode" and self.prefix_scale is None:
            return 0
        if self.seed is None:
            return draw_seed()
        if not self.training:
            return step_seed(self.seed, _EVAL_STREAM)
        s = step_seed(self.seed, self.calls)
        self.calls += 1
        return s

    def forward_with_stderr(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, stderr), each (B, C): the Monte Carlo estimate of u(x, T) and its standard error."""
        if self.prefix_scale is not None:
            return self._prefixed(x, self.current_samples, self._next_seed())
        return feynman_kac(self._f, x, self.drift, self.diffusion, self.T, samples=self.current_samples,
                           steps=self.steps, solver=self.solver, grad_mode=self.grad_mode, sde_type=self.sde_type,
                           adjoint_method=self.adjoint_method, seed=self._next_seed(),
                           batch_rows=self.batch_rows, **self.solver_kwargs)

    def path_outputs(self, y0: Tensor, seed: Optional[int]) -> Tensor:
        """f(X_T) along one path of the SDE (without the prefix) from each row of ``y0`` (N, d) → (N, C)."""
        return feynman_kac(self._f, y0, self.drift, self.diffusion, self.T, samples=1, steps=self.steps,
                           solver=self.solver, grad_mode=self.grad_mode, sde_type=self.sde_type,
                           adjoint_method=self.adjoint_method, seed=seed, **self.solver_kwargs)[0]

    def _prefixed(self, x: Tensor, k: int, seed: Optional[int]) -> tuple[Tensor, Tensor]:
        """K paths per input through the exact prefix x + s·Z, then one path of the SDE each."""
        if not isinstance(x, Tensor) or x.dim() != 2:
            raise ValueError(f"x must be a 2-D tensor (B, d), got {type(x).__name__} {tuple(getattr(x, 'shape', ()))}")
        seed = draw_seed() if seed is None else int(seed)
        gen = torch.Generator(device=x.device).manual_seed(seed % 2**63)
        z = torch.randn(x.shape[0], k, x.shape[1], generator=gen, dtype=x.dtype, device=x.device)
        y0 = (x.unsqueeze(1) + self.prefix_scale * z).reshape(-1, x.shape[1])
        out = self.path_outputs(y0, step_seed(seed, 1)).reshape(x.shape[0], k, -1)
        err = out.detach().std(dim=1) / k ** 0.5 if k > 1 else torch.full_like(out[:, 0], float("inf"))
        return out.mean(dim=1), err

    def forward(self, x: Tensor) -> Tensor:
        """The Monte Carlo mean of f(X_T), (B, C) (probabilities when ``output="probs"``)."""
        return self.forward_with_stderr(x)[0]

    def extra_repr(self) -> str:
        prefix = "" if self.prefix_scale is None else f"prefix_scale={self.prefix_scale:g}, "
        return (prefix + f"T={self.T}, steps={self.steps}, solver={self.solver!r}, family={self.family!r}, "
                f"grad_mode={self.grad_mode!r}, samples={self.samples}, eval_samples={self.eval_samples}, "
                f"sde_type={self.sde_type!r}, seed={self.seed}, output={self.output!r}")


def _prefix_scale(sigma0: Optional[float], t0: Optional[float]) -> Optional[float]:
    """s = σ0·√t0 of the pure-diffusion prefix (validated), or None without one."""
    if sigma0 is None and t0 is None:
        return None
    for name, v in (("prefix_sigma", sigma0), ("prefix_time", t0)):
        if v is None or not is_real(v) or not math.isfinite(v) or not v > 0:
            raise ValueError(f"{name}={v!r} is not valid; expected a finite float > 0 (give prefix_sigma and "
                             f"prefix_time together)")
    return float(sigma0) * math.sqrt(float(t0))
