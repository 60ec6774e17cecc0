"""Type predicates shared by the argument checks of every module (the messages stay with each caller), and the one
finiteness test of tensors on hot paths.

``bool`` is an ``int`` subclass in Python, and NumPy scalars are not ``int``/``float`` instances: these predicates
accept Python and NumPy numbers and reject ``bool``, so every module treats ``np.int64(5)`` like ``5`` and
``True`` as an error.
"""

from __future__ import annotations

import cmath
from numbers import Integral, Real

import torch


def is_int(value: object) -> bool:
    """True for Python and NumPy integers; False for ``bool`` and everything else."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """True for Python and NumPy real numbers (integers included); False for ``bool`` and everything else."""
    return isinstance(value, Real) and not isinstance(value, bool)


def all_finite(t: torch.Tensor) -> bool:
    """``bool(torch.isfinite(t).all())``, cheaply: a finite sum proves every entry finite (NaN and ±Inf propagate
    into it); only a sum that is not finite (a bad entry, or overflow of finite ones) runs the entry-wise test. One
    reduction instead of the four passes of ``isfinite`` (a forward pass of the COIN head tests twice per call)."""
    t = t.detach()
    if not t.is_floating_point() and not t.is_complex():
        return True
    return cmath.isfinite(t.sum().item()) or bool(torch.isfinite(t).all())  # cmath: complex sums too
