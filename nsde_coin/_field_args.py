"""Argument checks and small helpers shared by the field constructors (:mod:`nsde_coin.drifts`,
:mod:`nsde_coin.diffusions`, :mod:`nsde_coin.state_diffusion`): one-line errors naming the value and what is expected.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor

from nsde_coin._checks import all_finite, is_int
from nsde_coin.errors import warn_deprecated

TimeLike = Union[float, Tensor]


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
    if not all_finite(value):
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


def _deprecated(old: str, new: str) -> None:
    """Warn (:func:`nsde_coin.errors.warn_deprecated`, pointing at the caller's line) that ``old`` is spelled
    ``new`` from now on."""
    warn_deprecated(old, new, stacklevel=3)
