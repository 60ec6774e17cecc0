"""Drift v(x, t) and diffusion σ(x, t) fields of the Feynman–Kac SDE dX = v dt + σ dW.

Every field is an ``nn.Module`` with ``forward(t, x)``; ``x`` has shape (B, d) and ``t`` is a Python float or a
0-dim tensor (time, in the same units as the horizon ``T``).

Drifts return v(x, t) with shape (B, d): :class:`MLPDrift` (the learned convection of a ResNet), :class:`LinearDrift`
(v = A x + b, e.g. Ornstein–Uhlenbeck) and :class:`ZeroDrift`.

Diffusions follow torchsde's layout: for ``noise_type == "diagonal"`` ``forward`` returns the diagonal σ_i(x, t) with
shape (B, d) (and σ_i may depend on x_i only — torchsde's diagonal/commutative-noise convention, which Milstein and
the Itô–Stratonovich correction rely on); for every other noise type it returns the matrix σ(x, t) with shape
(B, d, m), m = ``noise_dim`` Brownian motions. Besides ``forward`` each diffusion has

* ``noise_type`` — the cheapest torchsde noise type that is exact for the field:
  constant fields (:class:`ScalarDiffusion` σ·I, :class:`DiagonalDiffusion` diag(σ), :class:`GeneralDiffusion`) are
  ``"additive"`` (σ independent of x; Euler is then strong order 1 and srk uses the two-stage SRA1 scheme);
  :class:`StateDiagonalDiffusion` is ``"diagonal"``. torchsde's ``"scalar"`` means ONE Brownian motion shared by
  all coordinates (σ of shape (B, d, 1)), which is not σ·I; :class:`GeneralDiffusion` can be asked for it.
* ``noise_dim`` — m; ``dim`` — d (``None`` when any d is accepted);
* ``is_zero`` — True only for :class:`ZeroDiffusion` or a constant, non-learnable σ = 0 (the ODE limit);
* ``state_dependent`` — False when σ does not depend on x (then the Itô–Stratonovich correction vanishes);
* ``prod(t, x, v)`` — σ(x, t) applied to Brownian increments v of shape (B, m), giving (B, d) (fast paths);
* ``ito_correction(t, x)`` — c_i = ½ Σ_{j,k} σ_kj ∂σ_ij/∂x_k, shape (B, d): Stratonovich drift = Itô drift − c.
* ``diagonal(t, x)`` — only on the constant diagonal fields (:class:`ScalarDiffusion`, :class:`DiagonalDiffusion`):
  σ's diagonal, (B, d). Solvers whose additive-noise path multiplies the dense (B, d, d) matrix every step
  (reversible_heun and its adjoint) are handed this diagonal view instead — the same σ, so the same numbers.

Learnable positive parameters are stored as the inverse softplus of σ, so σ = softplus(raw) > 0 stays positive
under any optimiser step.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nsde_coin._checks import is_int
from nsde_coin.solvers import NOISE_TYPES

TimeLike = Union[float, Tensor]
SLOPE_BLOCK = 1 << 18  # elements of one (rows, d, width) block of StateDiagonalDiffusion.sigma_and_slope (1 MiB)

ACTIVATIONS = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "softplus": F.softplus,
    "silu": F.silu,
    "elu": F.elu,
    "gelu": F.gelu,
}


# --------------------------------------------------------------------------------------------------------------
# helpers


def _check_int(name: str, value: object, minimum: int = 1) -> int:
    if not is_int(value) or value < minimum:
        raise ValueError(f"{name}={value!r} is not valid; expected an int >= {minimum}")
    return int(value)


def _inv_softplus(y: Tensor) -> Tensor:
    """x with softplus(x) = y, for y > 0 (stable for large and small y)."""
    return y + torch.log(-torch.expm1(-y))


def _as_tensor(name: str, value: object) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach().clone()
    try:
        return torch.as_tensor(value, dtype=torch.get_default_dtype())
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{name} must be a number or a tensor, got {type(value).__name__} ({value!r})") from err


def _fmt(value: Tensor) -> str:
    """A short, readable rendering of a small tensor's values (for error messages)."""
    flat = [f"{v:.6g}" for v in value.detach().reshape(-1)[:8].tolist()]
    more = ", ..." if value.numel() > 8 else ""
    return flat[0] if value.dim() == 0 else "[" + ", ".join(flat) + more + "]"


def _check_finite(name: str, value: Tensor) -> None:
    if not torch.isfinite(value).all():
        raise ValueError(f"{name} must be finite, got {_fmt(value)}")


def _check_nonnegative(name: str, value: Tensor, learnable: bool) -> None:
    _check_finite(name, value)
    if (value < 0).any():
        raise ValueError(f"{name} must be >= 0 (a standard deviation), got {_fmt(value)}")
    if learnable and (value <= 0).any():
        raise ValueError(f"a learnable {name} must be > 0 (it is stored as inverse softplus), got {_fmt(value)}")


def _check_x(x: Tensor, dim: Optional[int], who: str) -> None:
    if x.dim() != 2 or (dim is not None and x.shape[1] != dim):
        want = f"(B, {dim})" if dim is not None else "(B, d)"
        raise ValueError(f"{who}: x must have shape {want}, got {tuple(x.shape)}")


# --------------------------------------------------------------------------------------------------------------
# drifts


class ZeroDrift(nn.Module):
    """v = 0 (pure diffusion). ``dim=None`` accepts any feature size."""

    def __init__(self, dim: Optional[int] = None) -> None:
        super().__init__()
        self.dim = None if dim is None else _check_int("dim", dim)

    def forward(self, t: TimeLike, x: Tensor) -> Tensor:
        """Zeros of shape (B, d)."""
        return torch.zeros_like(x)


class LinearDrift(nn.Module):
    """v(x) = A x + b with A of shape (d, d) and b of shape (d,) (autonomous; e.g. OU: A = −θ I).

    ``learnable=True`` makes A and b parameters (b then starts at zero when omitted).
    """

    def __init__(self, A: Tensor, b: Optional[Tensor] = None, learnable: bool = False) -> None:
        super().__init__()
        A = _as_tensor("A", A)
        if A.dim() != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"A must be a square matrix of shape (d, d), got shape {tuple(A.shape)}")
        _check_finite("A", A)
        d = A.shape[0]
        if b is None:
            b = torch.zeros(d, dtype=A.dtype)
        b = _as_tensor("b", b)
        if b.shape != (d,):
            raise ValueError(f"b must have shape ({d},) to match A, got shape {tuple(b.shape)}")
        _check_finite("b", b)
        self.dim = d
        if learnable:
            self.A = nn.Parameter(A)
            self.b = nn.Parameter(b)
        else:
            self.register_buffer("A", A)
            self.register_buffer("b", b)

    def forward(self, t: TimeLike, x: Tensor) -> Tensor:
        """A x + b, shape (B, d)."""
        return F.linear(x, self.A, self.b)


class MLPDrift(nn.Module):
    """A learned velocity field v(x, t): an MLP d → width → … → d (``depth`` hidden layers).

    With ``time_dependent=True`` time enters the first layer as an extra input column (t·w_t is added to the first
    pre-activation, which is the same as concatenating t but cheaper). One Euler step x + dt·v(x, t) is a residual
    block.
    """

    def __init__(self, dim: int, width: int = 64, depth: int = 2, time_dependent: bool = True,
                 activation: str = "tanh") -> None:
        super().__init__()
        self.dim = _check_int("dim", dim)
        self.width = _check_int("width", width)
        self.depth = _check_int("depth", depth)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is not valid; valid choices: {', '.join(ACTIVATIONS)}")
        self.activation = activation
        self._act = ACTIVATIONS[activation]
        self.time_dependent = bool(time_dependent)
        self.inp = nn.Linear(dim, width)
        if self.time_dependent:
            self.time_weight = nn.Parameter(torch.empty(width).uniform_(-1.0 / math.sqrt(dim + 1),
                                                                         1.0 / math.sqrt(dim + 1)))
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(depth - 1))
        self.out = nn.Linear(width, dim)

    def forward(self, t: TimeLike, x: Tensor) -> Tensor:
        """v(x, t), shape (B, d)."""
        h = self.inp(x)
        if self.time_dependent:
            h = h + t * self.time_weight
        h = self._act(h)
        for layer in self.hidden:
            h = self._act(layer(h))
        return self.out(h)


# --------------------------------------------------------------------------------------------------------------
# diffusions


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
    """Shared storage of a positive σ (constant, or learnable through softplus)."""

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


class ScalarDiffusion(_PositiveParam):
    """Isotropic constant σ·I with d independent Brownian motions (noise type ``"additive"``, m = d).

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
            raise ValueError(f"sigma must be a scalar for ScalarDiffusion, got shape {tuple(s.shape)}; "
                             f"use DiagonalDiffusion for one sigma per coordinate")
        _check_nonnegative("sigma", s, learnable)
        self._store_sigma(s, learnable)

    def forward(self, t: TimeLike, x: Tensor) -> Tensor:
        """σ·I expanded to (B, d, d)."""
        eye = torch.eye(self.dim, dtype=x.dtype, device=x.device) * self.sigma.to(x.dtype)
        return eye.expand(x.shape[0], self.dim, self.dim)

    def prod(self, t: TimeLike, x: Tensor, v: Tensor) -> Tensor:
        return self.sigma.to(v.dtype) * v

    def diagonal(self, t: TimeLike, x: Tensor) -> Tensor:
        """The diagonal of σ, (σ, …, σ), expanded to (B, d) (torchsde's diagonal-noise layout)."""
        return self.sigma.to(x.dtype).expand(x.shape[0], self.dim)


class DiagonalDiffusion(_PositiveParam):
    """Constant diag(σ_1, …, σ_d) with d independent Brownian motions (noise type ``"additive"``, m = d)."""

    noise_type = "additive"
    state_dependent = False

    def __init__(self, sigma: Tensor, learnable: bool = False) -> None:
        super().__init__()
        s = _as_tensor("sigma", sigma)
        if s.dim() != 1 or s.numel() < 1:
            raise ValueError(f"sigma must be a 1-D tensor of shape (d,), got shape {tuple(s.shape)}")
        _check_nonnegative("sigma", s, learnable)
        self.dim = s.numel()
        self.noise_dim = self.dim
        self._store_sigma(s, learnable)

    def forward(self, t: TimeLike, x: Tensor) -> Tensor:
        """diag(σ) expanded to (B, d, d)."""
        return torch.diag_embed(self.sigma.to(x.dtype)).expand(x.shape[0], self.dim, self.dim)

    def prod(self, t: TimeLike, x: Tensor, v: Tensor) -> Tensor:
        return self.sigma.to(v.dtype) * v

    def diagonal(self, t: TimeLike, x: Tensor) -> Tensor:
        """(σ_1, …, σ_d) expanded to (B, d) (torchsde's diagonal-noise layout)."""
        return self.sigma.to(x.dtype).expand(x.shape[0], self.dim)


class StateDiagonalDiffusion(Diffusion):
    """A learned state-dependent diagonal σ_i(x_i, t) > 0 (noise type ``"diagonal"``, m = d).

    Each coordinate has its own small network of its own coordinate (so the noise is commutative, as torchsde's
    diagonal noise and Milstein assume):
    σ_i = softplus(Σ_k w2_ik tanh(w1_ik x_i + wt_ik t + b1_ik) + b2_i), or ``sigma_max``·sigmoid(…) when a bound is
    given. It starts at σ ≈ ``init_sigma`` everywhere (the output weights start small). The Itô–Stratonovich
    correction ½ σ_i ∂σ_i/∂x_i is computed in closed form.
    """

    noise_type = "diagonal"
    state_dependent = True

    def __init__(self, dim: int, width: int = 32, sigma_max: Optional[float] = None, init_sigma: float = 0.1,
                 time_dependent: bool = True) -> None:
        super().__init__()
        self.dim = _check_int("dim", dim)
        self.noise_dim = self.dim
        self.width = _check_int("width", width)
        if sigma_max is not None and not (isinstance(sigma_max, Real) and math.isfinite(sigma_max)
                                          and sigma_max > 0):
            raise ValueError(f"sigma_max={sigma_max!r} is not valid; expected None or a finite float > 0")
        if not (isinstance(init_sigma, Real) and init_sigma > 0
                and (sigma_max is None or init_sigma < sigma_max)):
            raise ValueError(f"init_sigma={init_sigma!r} is not valid; expected 0 < init_sigma"
                             + (f" < sigma_max={sigma_max}" if sigma_max is not None else ""))
        self.sigma_max = None if sigma_max is None else float(sigma_max)
        init_sigma = float(init_sigma)
        self.time_dependent = bool(time_dependent)
        g = torch.Generator().manual_seed(0)
        self.w1 = nn.Parameter(torch.randn(dim, width, generator=g))
        self.b1 = nn.Parameter(torch.randn(dim, width, generator=g))
        self.wt = nn.Parameter(torch.zeros(dim, width)) if self.time_dependent else None
        self.w2 = nn.Parameter(torch.randn(dim, width, generator=g) * (0.1 / math.sqrt(width)))
        if self.sigma_max is None:
            b2 = _inv_softplus(torch.tensor(float(init_sigma)))
        else:
            p = init_sigma / self.sigma_max
            b2 = torch.tensor(math.log(p / (1 - p)))
        self.b2 = nn.Parameter(b2.expand(dim).clone())

    def _pre(self, t: TimeLike, x: Tensor) -> tuple[Tensor, Tensor]:
        # one pass over the (B, d, width) temporary for each of: the affine map, tanh (in place: its backward needs
        # only the output), the contraction with w2 — a Monte Carlo batch of 32k paths makes it 64 MB (float32)
        shift = self.b1 if self.wt is None else self.b1 + t * self.wt  # (d, width)
        h = torch.addcmul(shift, x.unsqueeze(-1), self.w1).tanh_()  # (B, d, width)
        s = torch.einsum("bdw,dw->bd", h, self.w2) + self.b2  # (B, d)
        return h, s

    def _block_rows(self) -> int:
        return max(1, SLOPE_BLOCK // (self.dim * self.width))

    def _squash(self, s: Tensor) -> Tensor:
        if self.sigma_max is None:
            return F.softplus(s)
        return self.sigma_max * torch.sigmoid(s)

    def forward(self, t: TimeLike, x: Tensor) -> Tensor:
        """σ(x, t), shape (B, d)."""
        _check_x(x, self.dim, "StateDiagonalDiffusion")
        rows = self._block_rows()
        if torch.is_grad_enabled() or x.shape[0] <= rows:
            return self._squash(self._pre(t, x)[1])
        s = torch.empty_like(x)  # no tape to keep: blocks of rows whose temporaries stay in cache
        for lo in range(0, x.shape[0], rows):
            s[lo:lo + rows] = self._pre(t, x[lo:lo + rows])[1]
        return self._squash(s)

    def prod(self, t: TimeLike, x: Tensor, v: Tensor) -> Tensor:
        return self(t, x) * v

    def _sigma_slope(self, h: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        """σ and ∂σ_i/∂x_i, each (B, d), from :meth:`_pre`'s tanh layer h and pre-activation s."""
        ds_dx = ((1 - h * h) * self.w1 * self.w2).sum(-1)
        if self.sigma_max is None:
            return F.softplus(s), torch.sigmoid(s) * ds_dx
        p = torch.sigmoid(s)
        sig = self.sigma_max * p
        return sig, sig * (1 - p) * ds_dx

    def ito_correction(self, t: TimeLike, x: Tensor) -> Tensor:
        """½ σ_i ∂σ_i/∂x_i in closed form, shape (B, d)."""
        sig, dsig = self._sigma_slope(*self._pre(t, x))
        return 0.5 * sig * dsig

    def sigma_and_slope(self, t: TimeLike, x: Tensor) -> tuple[Tensor, Tensor]:
        """σ(x, t) and its diagonal Jacobian ∂σ_i/∂x_i in closed form, each (B, d), without autograd.

        For solves that need no gradient (``torch.no_grad``): rows go through in blocks whose (rows, d, width)
        temporaries stay in cache (:data:`SLOPE_BLOCK` elements), so a 32 000-path batch neither allocates nor
        page-faults 64 MB temporaries per call. Milstein's g·∂g term uses it through
        :class:`~nsde_coin.sde.FeynmanKacSDE` instead of a vjp through the network (the same numbers up to rounding).
        """
        _check_x(x, self.dim, "StateDiagonalDiffusion")
        with torch.no_grad():
            w12 = self.w1 * self.w2  # (d, width)
            total = w12.sum(-1)  # Σ_k w1 w2: ∂s/∂x = Σ_k (1 - h²) w1 w2 = total − Σ_k h² w1 w2
            s, ds_dx = torch.empty_like(x), torch.empty_like(x)
            rows = self._block_rows()
            for lo in range(0, x.shape[0], rows):
                h, s[lo:lo + rows] = self._pre(t, x[lo:lo + rows])
                torch.sub(total, torch.einsum("bdw,dw->bd", h.mul_(h), w12), out=ds_dx[lo:lo + rows])
            if self.sigma_max is None:
                return F.softplus(s), ds_dx.mul_(torch.sigmoid(s))
            p = torch.sigmoid(s)
            sig = self.sigma_max * p
            return sig, ds_dx.mul_(sig * (1 - p))


class GeneralDiffusion(Diffusion):
    """A constant d×m matrix σ driving m Brownian motions (noise type ``"additive"`` by default).

    Give ``matrix`` (d, m), or ``dim`` and ``noise_dim`` (then σ starts as ``init_scale`` times the rectangular
    identity). ``noise_type`` may be forced to ``"general"`` (any matrix; fewer solvers) or ``"scalar"`` (m = 1:
    one Brownian motion shared by every coordinate); the default ``"additive"`` is the cheapest exact choice for a
    constant matrix. Learnable matrices need no sign constraint (a = ½σσᵀ is PSD for every σ).
    """

    state_dependent = False

    def __init__(self, matrix: Optional[Tensor] = None, *, dim: Optional[int] = None, noise_dim: Optional[int] = None,
                 learnable: bool = False, init_scale: float = 0.1, noise_type: str = "additive") -> None:
        super().__init__()
        if matrix is None:
            if dim is None or noise_dim is None:
                raise ValueError("GeneralDiffusion needs either matrix (d, m) or both dim and noise_dim, got "
                                 f"matrix=None, dim={dim!r}, noise_dim={noise_dim!r}")
            d, m = _check_int("dim", dim), _check_int("noise_dim", noise_dim)
            matrix = float(init_scale) * torch.eye(d, m)
        m_t = _as_tensor("matrix", matrix)
        if m_t.dim() != 2:
            raise ValueError(f"matrix must have shape (d, m), got shape {tuple(m_t.shape)}")
        if (dim is not None and m_t.shape[0] != dim) or (noise_dim is not None and m_t.shape[1] != noise_dim):
            raise ValueError(f"matrix shape {tuple(m_t.shape)} does not match dim={dim!r}, noise_dim={noise_dim!r}")
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
