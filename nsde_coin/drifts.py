"""Drift fields v(x, t) of the Feynman–Kac SDE dX = v dt + σ dW: ``forward(t, x)`` with x (B, d) returns (B, d).

:class:`MLPDrift` (the learned convection of a ResNet), :class:`LinearDrift` (v = A x + b, e.g. Ornstein–Uhlenbeck)
and :class:`ZeroDrift`. ``t`` is a Python float or a 0-dim tensor (the units of the horizon ``T``).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nsde_coin._fast_tanh import tanh
from nsde_coin._field_args import TimeLike, _as_tensor, _check_finite, _check_int

__all__ = ["ACTIVATIONS", "LinearDrift", "MLPDrift", "ZeroDrift"]

ACTIVATIONS = {
    "tanh": tanh,  # 2·sigmoid(2x) − 1 on large tensors (see nsde_coin._fast_tanh)
    "relu": torch.relu,
    "softplus": F.softplus,
    "silu": F.silu,
    "elu": F.elu,
    "gelu": F.gelu,
}


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
