"""The project's error types and the one "valid choices" message every argument check uses.

* :class:`NonFiniteError` — a computation produced NaN/Inf (a diverging solve, a base model that returns NaN, a
  training loss that blew up). It subclasses both ``FloatingPointError`` (what torch users catch for numerical
  blow-ups) and ``ValueError`` (what the CLI turns into a one-line exit), so existing ``except`` clauses keep working.
* :class:`DataFileError` — a data file that exists but cannot be read (truncated, corrupt, out-of-range indices);
  the message names the file, what is wrong and how to restore it. Subclasses ``ValueError``.
* :func:`invalid_choice` — ``"name='x' is not valid; valid choices: a, b, c"``.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["DataFileError", "NonFiniteError", "invalid_choice"]


class NonFiniteError(FloatingPointError, ValueError):
    """A computation produced NaN or Inf values; the message says which quantity, where, and what to try."""


class DataFileError(ValueError):
    """A data file that cannot be read as what it claims to be; the message names the file and how to restore it."""


def invalid_choice(name: str, value: object, choices: Iterable[object]) -> str:
    """The one-line message for a value outside a fixed set: names the argument, the value and every valid choice."""
    return f"{name}={value!r} is not valid; valid choices: {', '.join(str(c) for c in choices)}"
