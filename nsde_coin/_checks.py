"""Type predicates shared by the argument checks of every module (the messages stay with each caller).

``bool`` is an ``int`` subclass in Python, and NumPy scalars are not ``int``/``float`` instances: these predicates
accept Python and NumPy numbers and reject ``bool``, so every module treats ``np.int64(5)`` like ``5`` and
``True`` as an error.
"""

from __future__ import annotations

from numbers import Integral, Real


def is_int(value: object) -> bool:
    """True for Python and NumPy integers; False for ``bool`` and everything else."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """True for Python and NumPy real numbers (integers included); False for ``bool`` and everything else."""
    return isinstance(value, Real) and not isinstance(value, bool)
