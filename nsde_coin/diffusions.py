"""Diffusion fields σ(x, t) of the Feynman–Kac SDE dX = v dt + σ dW, and :func:`as_diffusion`.

Every diffusion is an ``nn.Module`` with ``forward(t, x)`` in torchsde's layout (see :mod:`nsde_coin.fields` for the
attributes ``noise_type``, ``noise_dim``, ``dim``, ``is_zero``, ``state_dependent``, ``prod``, ``ito_correction``).
The constructors share one pattern, ``(dim, sigma, ...)`` with ``sigma`` a float or a tensor:

* :class:`ScalarDiffusion` ``(dim, sigma)`` — σ·I, sigma a float (or a 0-dim tensor);
* :class:`DiagonalDiffusion` ``(dim, sigma)`` — diag(σ), sigma a float (the same σ on every coordinate) or (dim,);
* :class:`GeneralDiffusion` ``(dim, sigma=None, noise_dim=None)`` — a constant (dim, noise_dim) matrix, sigma the
  matrix or a float (σ times the rectangular identity);
* :class:`~nsde_coin.state_diffusion.StateDiagonalDiffusion` ``(dim, sigma=0.1)`` — learned σ_i(x_i, t), sigma its
  starting value;
* :class:`ZeroDiffusion` — σ = 0.

The earlier spellings ``DiagonalDiffusion(sigma_tensor)``, ``GeneralDiffusion(matrix, ...)`` /
``GeneralDiffusion(matrix=..., init_scale=...)`` and ``StateDiagonalDiffusion(dim, init_sigma=...)`` still work for
one release and raise a ``DeprecationWarning`` naming the new call.
"""

from __future__ import annotations

from numbers import Real
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nsde_coin._checks import is_real
from nsde_coin._field_args import (
    TimeLike,
    _as_tensor,
    _check_finite,
    _check_int,
    _check_nonnegative,
    _deprecated,
    _fmt,
    _inv_softplus,
)
from nsde_coin.solvers import NOISE_TYPES

__all__ = ["DiagonalDiffusion", "Diffusion", "GeneralDiffusion", "ScalarDiffusion", "ZeroDiffusion", "as_diffusion"]


class Diffusion(nn.Module):
    """Base class of diffusion fields (see the module docstring for the attributes).

    Subclasses set ``noise_type``, ``noise_dim``, ``dim``, ``state_dependent`` and implement ``forward``; ``prod``
    and ``ito_correction`` have generic (autograd) defaults that subclasses may override with faster exact ones.
    """

    noise_type: str = "general"
    noise_dim: int = 1
    dim: Optional[int] = None
    state_dependent: bool = True

    @property
    def is_zero(self) -> bool:
        """True when σ ≡ 0 (the network is then an ODE and routes to the torchdiffeq family)."""
        return False

    def prod(self, t: TimeLike, x: Tensor, v: Tensor) -> Tensor:
        """σ(x, t) v for Brownian increments v of shape (B, m); returns (B, d)."""
        g = self(t, x)
        if self.noise_type == "diagonal":
            return g * v
        return torch.bmm(g, v.unsqueeze(-1)).squeeze(-1)

    def ito_correction(self, t: TimeLike, x: Tensor) -> Tensor:
        """c_i = ½ Σ_{j,k} σ_kj ∂σ_ij/∂x_k, shape (B, d) (autograd; differentiable when grad is enabled)."""
        if not self.state_dependent:
            return torch.zeros_like(x)
        create = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters()))
        with torch.enable_grad():
            y = x if x.requires_grad else x.detach().requires_grad_(True)
            g = self(t, y)
            if not g.requires_grad:  # sigma does not depend on x after all (state_dependent left True): c = 0
                return torch.zeros_like(x)
            if self.noise_type == "diagonal":
                # σ_i depends on x_i only, so J^T σ = diag(J) σ = (σ_i ∂σ_i/∂x_i)_i
                (out,) = torch.autograd.grad(g, y, grad_outputs=g.detach() if not create else g,
                                             create_graph=create, allow_unused=True)
                out = torch.zeros_like(x) if out is None else out
            else:
                # column j: J_j σ_j (a Jacobian-vector product), by the double-vjp trick
                out = torch.zeros_like(x)
                for j in range(g.shape[-1]):
                    col = g[..., j]
                    u = torch.zeros_like(col, requires_grad=True)
                    (vjp,) = torch.autograd.grad(col, y, grad_outputs=u, create_graph=True, allow_unused=True)
                    if vjp is None:
                        continue
                    (jvp,) = torch.autograd.grad(vjp, u, grad_outputs=col, create_graph=create, allow_unused=True)
                    if jvp is not None:
                        out = out + jvp
        return 0.5 * out


class ZeroDiffusion(Diffusion):
    """σ = 0: the convection (ODE / ResNet) limit; the integrator routes it to torchdiffeq."""

    noise_type = "additive"
    state_dependent = False

    def __init__(self, dim: Optional[int] = None) -> None:
        super().__init__()
        self.dim = None if dim is None else _check_int("dim", dim)
        self.noise_dim = 1

    @property
    def is_zero(self) -> bool:
        return True

    def forward(self, t: TimeLike, x: Tensor) -> Tensor:
        """Zeros of shape (B, d, 1)."""
        return x.new_zeros(x.shape[0], x.shape[1], 1)

    def prod(self, t: TimeLike, x: Tensor, v: Tensor) -> Tensor:
        return torch.zeros_like(x)


class _PositiveParam(Diffusion):
    """Shared storage of a positive constant diagonal σ (fixed, or learnable through softplus) and its products."""

    def _store_sigma(self, sigma: Tensor, learnable: bool) -> None:
        self.learnable = bool(learnable)
        if self.learnable:
            self.raw_sigma = nn.Parameter(_inv_softplus(sigma))
        else:
            self.register_buffer("_sigma", sigma)

    @property
    def sigma(self) -> Tensor:
        """The current σ (positive when learnable)."""
        return F.softplus(self.raw_sigma) if self.learnable else self._sigma

    @property
    def is_zero(self) -> bool:
        return (not self.learnable) and bool((self._sigma == 0).all())

    def prod(self, t: TimeLike, x: Tensor, v: Tensor) -> Tensor:
        return self.sigma.to(v.dtype) * v

    def diagonal(self, t: TimeLike, x: Tensor) -> Tensor:
        """σ's diagonal (σ, …, σ) or (σ_1, …, σ_d), expanded to (B, d) (torchsde's diagonal-noise layout)."""
        return self.sigma.to(x.dtype).expand(x.shape[0], self.dim)


def _is_tensor_like(value: Any) -> bool:
    """A tensor, array or sequence (an old-style positional sigma/matrix), not a number."""
    return not isinstance(value, (Real, str)) and (isinstance(value, Tensor) or hasattr(value, "__len__")
                                                    or hasattr(value, "__array__"))


class ScalarDiffusion(_PositiveParam):
    """Isotropic constant σ·I with d independent Brownian motions (noise type ``"additive"``, m = d).

    Args:
        dim: d, the number of features.
        sigma: σ ≥ 0, a float or a 0-dim tensor (> 0 when learnable).
        learnable: make σ a parameter (stored as its inverse softplus).

    The generator is (σ²/2) Δ: the paper's heat-equation diffusion with a = σ²/2 · I.
    """

    noise_type = "additive"
    state_dependent = False

    def __init__(self, dim: int, sigma: float, learnable: bool = False) -> None:
        super().__init__()
        self.dim = _check_int("dim", dim)
        self.noise_dim = self.dim
        s = _as_tensor("sigma", sigma)
        if s.dim() != 0:
            raise ValueError(f"sigma must be a scalar for ScalarDiffusion, got shape {tuple(s.shape)} ({_fmt(s)}); "
                             f"use DiagonalDiffusion({self.dim}, sigma) for one sigma per coordinate")
        _check_nonnegative("sigma", s, learnable)
        self._store_sigma(s, learnable)

    def forward(self, t: TimeLike, x: Tensor) -> Tensor:
        """σ·I expanded to (B, d, d)."""
        eye = torch.eye(self.dim, dtype=x.dtype, device=x.device) * self.sigma.to(x.dtype)
        return eye.expand(x.shape[0], self.dim, self.dim)


class DiagonalDiffusion(_PositiveParam):
    """Constant diag(σ_1, …, σ_d) with d independent Brownian motions (noise type ``"additive"``, m = d).

    Args:
        dim: d, the number of features.
        sigma: a float (the same σ on every coordinate) or a tensor of shape (d,); each ≥ 0 (> 0 when learnable).
        learnable: make σ a parameter (stored as its inverse softplus).

    ``DiagonalDiffusion(sigma_tensor)`` (d read from the tensor) is the earlier spelling: deprecated.
    """

    noise_type = "additive"
    state_dependent = False

    def __init__(self, dim: Any = None, sigma: Any = None, learnable: bool = False) -> None:
        super().__init__()
        if _is_tensor_like(dim) and (sigma is None or isinstance(sigma, bool)):
            learnable = bool(sigma) if isinstance(sigma, bool) else learnable
            dim, sigma = None, dim
            _deprecated("DiagonalDiffusion(sigma)", "DiagonalDiffusion(d, sigma)")
        elif dim is None and sigma is not None:
            _deprecated("DiagonalDiffusion(sigma=...) without dim", "DiagonalDiffusion(d, sigma)")
        elif sigma is None:
            raise TypeError(f"DiagonalDiffusion needs sigma: DiagonalDiffusion(dim, sigma) with sigma a float or a "
                            f"tensor of shape (dim,), got dim={dim!r}, sigma=None")
        s = _as_tensor("sigma", sigma)
        if dim is not None:
            dim = _check_int("dim", dim)
            if s.dim() == 0:
                s = s.expand(dim).clone()
        if s.dim() != 1 or s.numel() < 1:
            raise ValueError(f"sigma must be a float or a 1-D tensor of shape (d,), got shape {tuple(s.shape)}"
                             + (f"; expected ({dim},)" if dim is not None else ""))
        if dim is not None and s.shape[0] != dim:
            raise ValueError(f"sigma={_fmt(s)} has shape {tuple(s.shape)} but DiagonalDiffusion(dim={dim}) expects "
                             f"({dim},) (or a float)")
        _check_nonnegative("sigma", s, learnable)
        self.dim = s.numel()
        self.noise_dim = self.dim
        self._store_sigma(s, learnable)

    def forward(self, t: TimeLike, x: Tensor) -> Tensor:
        """diag(σ) expanded to (B, d, d)."""
        return torch.diag_embed(self.sigma.to(x.dtype)).expand(x.shape[0], self.dim, self.dim)


class GeneralDiffusion(Diffusion):
    """A constant d×m matrix σ driving m Brownian motions (noise type ``"additive"`` by default).

    Args:
        dim: d, the number of features.
        sigma: the (d, m) matrix; or a float s (σ = s times the (d, m) rectangular identity, m = ``noise_dim``,
            default d); or None (then ``noise_dim`` is required and σ starts as 0.1 times the identity).
        noise_dim: m, the number of Brownian motions (checked against the matrix when both are given).
        learnable: make σ a parameter (no sign constraint: a = ½σσᵀ is PSD for every σ).
        noise_type: ``"additive"`` (default, the cheapest exact choice for a constant matrix), ``"general"`` (any
            matrix; fewer solvers) or ``"scalar"`` (m = 1: one Brownian motion shared by every coordinate).

    ``GeneralDiffusion(matrix, ...)``, ``GeneralDiffusion(matrix=..., dim=..., noise_dim=...)`` and ``init_scale=``
    are the earlier spellings: deprecated.
    """

    state_dependent = False

    def __init__(self, dim: Any = None, sigma: Any = None, noise_dim: Optional[int] = None, *,
                 learnable: bool = False, noise_type: str = "additive", matrix: Any = None,
                 init_scale: Optional[float] = None) -> None:
        super().__init__()
        if _is_tensor_like(dim):
            if sigma is not None or matrix is not None:
                raise TypeError(f"GeneralDiffusion(dim, sigma): dim must be an int, got {type(dim).__name__}")
            dim, matrix = None, dim
            _deprecated("GeneralDiffusion(matrix)", "GeneralDiffusion(d, matrix)")
        if matrix is not None:
            if sigma is not None:
                raise TypeError("give sigma (the matrix) or the deprecated matrix=, not both")
            sigma = matrix
            _deprecated("GeneralDiffusion(matrix=...)", "GeneralDiffusion(d, matrix)")
        if init_scale is not None:
            if sigma is not None:
                raise TypeError("give sigma or the deprecated init_scale=, not both")
            _deprecated("GeneralDiffusion(..., init_scale=s)", "GeneralDiffusion(d, s, noise_dim=m)")
            sigma = float(init_scale)
        d = None if dim is None else _check_int("dim", dim)
        m = None if noise_dim is None else _check_int("noise_dim", noise_dim)
        if sigma is None or (is_real(sigma) and not isinstance(sigma, bool)):
            if d is None or (sigma is None and m is None):
                raise ValueError("GeneralDiffusion needs sigma (a (d, m) matrix or a float) or both dim and "
                                 f"noise_dim, got sigma={sigma!r}, dim={dim!r}, noise_dim={noise_dim!r}")
            m = d if m is None else m
            sigma = (0.1 if sigma is None else float(sigma)) * torch.eye(d, m)
        m_t = _as_tensor("sigma", sigma)
        if m_t.dim() != 2:
            raise ValueError(f"sigma={_fmt(m_t)}: the matrix must have shape (d, m), got shape "
                             f"{tuple(m_t.shape)}" + (f"; expected ({d}, m)" if d is not None else ""))
        if (d is not None and m_t.shape[0] != d) or (m is not None and m_t.shape[1] != m):
            raise ValueError(f"matrix shape {tuple(m_t.shape)} does not match dim={dim!r}, noise_dim={noise_dim!r}; "
                             f"expected ({d if d is not None else 'd'}, {m if m is not None else 'm'})")
        _check_finite("matrix", m_t)
        valid = ("additive", "general", "scalar")
        if noise_type not in valid:
            raise ValueError(f"noise_type={noise_type!r} is not valid for a constant matrix; valid choices: "
                             f"{', '.join(valid)}")
        if noise_type == "scalar" and m_t.shape[1] != 1:
            raise ValueError(f"noise_type='scalar' needs a single Brownian motion (m = 1), got m={m_t.shape[1]}")
        assert noise_type in NOISE_TYPES
        self.noise_type = noise_type
        self.dim, self.noise_dim = int(m_t.shape[0]), int(m_t.shape[1])
        self.learnable = bool(learnable)
        if self.learnable:
            self.matrix = nn.Parameter(m_t)
        else:
            self.register_buffer("matrix", m_t)

    @property
    def is_zero(self) -> bool:
        return (not self.learnable) and bool((self.matrix == 0).all())

    def forward(self, t: TimeLike, x: Tensor) -> Tensor:
        """σ expanded to (B, d, m)."""
        return self.matrix.to(x.dtype).expand(x.shape[0], self.dim, self.noise_dim)

    def prod(self, t: TimeLike, x: Tensor, v: Tensor) -> Tensor:
        return F.linear(v, self.matrix.to(v.dtype))


def as_diffusion(value: Any, dim: Optional[int]) -> nn.Module:
    """The diffusion module a ``diffusion=`` argument stands for, as torchsde/diffrax users read it.

    Args:
        value: a diffusion module (returned as is); a float σ (or 0-dim tensor) → :class:`ScalarDiffusion` σ·I;
            a (d,) tensor → :class:`DiagonalDiffusion` diag(σ); a (d, m) tensor → :class:`GeneralDiffusion`.
        dim: d, the number of features (from x), or None when unknown (then a float cannot be resolved).

    Raises a one-line ``TypeError``/``ValueError`` naming the value and the valid forms.
    """
    if isinstance(value, nn.Module) or (callable(value) and hasattr(value, "noise_type")):
        return value
    valid = ("None (sigma = 0), a float sigma (sigma*I), a (d,) tensor (diag(sigma)), a (d, m) tensor or a "
             "diffusion module (nsde_coin.fields)")
    if isinstance(value, bool) or not (is_real(value) or isinstance(value, Tensor)):
        raise TypeError(f"diffusion={value!r} is not valid; expected {valid}")
    s = _as_tensor("diffusion", value)
    if s.dim() == 0:
        if dim is None:
            raise ValueError(f"diffusion={value!r} needs the dimension d to mean sigma*I; give a drift with a dim "
                             f"or ScalarDiffusion(d, {value!r})")
        return ScalarDiffusion(dim, value)
    if dim is not None and s.shape[0] != dim or s.dim() > 2:
        raise ValueError(f"diffusion has shape {tuple(s.shape)}; expected a float, ({dim if dim else 'd'},) or "
                         f"({dim if dim else 'd'}, m) for d = {dim if dim else 'the number of features'}")
    if s.dim() == 1:
        return DiagonalDiffusion(s.shape[0], s)
    return GeneralDiffusion(s.shape[0], s)
