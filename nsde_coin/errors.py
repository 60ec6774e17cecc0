"""The project's error types and the one "valid choices" message every argument check uses.

* :class:`NonFiniteError` — a computation produced NaN/Inf (a diverging solve, a base model that returns NaN, a
  training loss that blew up). It subclasses both ``FloatingPointError`` (what torch users catch for numerical
  blow-ups) and ``ValueError`` (what the CLI turns into a one-line exit), so existing ``except`` clauses keep working.
* :class:`DataFileError` — a data file that exists but cannot be read (truncated, corrupt, out-of-range indices);
  the message names the file, what is wrong and how to restore it. Subclasses ``ValueError``.
* :func:`invalid_choice` — ``"name='x' is not valid; valid choices: a, b, c"``.
* :class:`NsdeDeprecationWarning`, :func:`warn_deprecated`, :func:`deprecated_alias`, :func:`deprecated_getattr` —
  the one deprecation mechanism: every old spelling kept for a release (a moved import path, a renamed function, a
  CLI flag, a constructor keyword) warns with this category, naming the old spelling and its replacement. The
  pytest configuration (``setup.cfg``) turns this category into an error, so an internal use of an old spelling fails
  CI while users only see a warning.
"""

from __future__ import annotations

import functools
import importlib
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

__all__ = [
    "DataFileError",
    "NonFiniteError",
    "NsdeDeprecationWarning",
    "deprecated_alias",
    "deprecated_getattr",
    "invalid_choice",
    "warn_deprecated",
]

REMOVAL = "0.2.0"  # the release in which the deprecated spellings of 0.1.x go away

F = TypeVar("F", bound=Callable[..., Any])


class NonFiniteError(FloatingPointError, ValueError):
    """A computation produced NaN or Inf values; the message says which quantity, where, and what to try."""


class DataFileError(ValueError):
    """A data file that cannot be read as what it claims to be; the message names the file and how to restore it."""


def invalid_choice(name: str, value: object, choices: Iterable[object]) -> str:
    """The one-line message for a value outside a fixed set: names the argument, the value and every valid choice."""
    return f"{name}={value!r} is not valid; valid choices: {', '.join(str(c) for c in choices)}"


class NsdeDeprecationWarning(DeprecationWarning):
    """An old spelling of nsde_coin (import path, name, keyword, CLI flag) that still works for one release.

    A subclass of ``DeprecationWarning``, so users' filters for that category apply; the project's own tests turn
    exactly this category into an error (``error::nsde_coin.errors.NsdeDeprecationWarning`` in ``setup.cfg``).
    """


def warn_deprecated(old: str, new: str, *, stacklevel: int = 2) -> None:
    """Warn that ``old`` is deprecated in favour of ``new`` (both as the user writes them, e.g. ``"nsde_coin.COIN"``
    and ``"nsde_coin.graph.COIN"``, or ``"--layers"`` and ``"--layer-num"``).

    ``stacklevel`` counts like :func:`warnings.warn`'s from the caller of this function: the default 2 points at
    whoever called the function that calls :func:`warn_deprecated`.
    """
    warnings.warn(f"{old} is deprecated and will be removed in nsde_coin {REMOVAL}; use {new} instead",
                  NsdeDeprecationWarning, stacklevel=stacklevel + 1)


def deprecated_alias(func: F, old: str, new: str) -> F:
    """A wrapper of ``func`` that warns (:func:`warn_deprecated`) on every call, for a renamed function.

    Example: ``validate = deprecated_alias(check_solver, "nsde_coin.solvers.validate",
    "nsde_coin.solvers.check_solver")``. The wrapper keeps ``func``'s signature and docstring (prefixed by the
    deprecation note). For a moved class or constant, whose identity must be kept, use :func:`deprecated_getattr`.
    """

    @functools.wraps(func)
    def alias(*args: Any, **kwargs: Any) -> Any:
        warn_deprecated(old, new)
        return func(*args, **kwargs)

    alias.__doc__ = f"Deprecated alias of :func:`{new}` (removed in {REMOVAL}).\n\n{func.__doc__ or ''}"
    return alias  # type: ignore[return-value]


def deprecated_getattr(module: str, aliases: Mapping[str, tuple[str, str]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) serving moved names as deprecated aliases, imported on first use.

    ``aliases`` maps an old attribute name to ``(new_module, new_name)``; accessing ``module.old`` warns that
    ``module.old`` is deprecated in favour of ``new_module.new_name`` and returns that very object (so ``is`` and
    ``isinstance`` keep working). Names are resolved on every access and not cached, so each use warns. Use::

        __getattr__ = deprecated_getattr(__name__, {"COIN": ("nsde_coin.graph", "COIN")})
    """

    def __getattr__(name: str) -> Any:
        target = aliases.get(name)
        if target is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        new_module, new_name = target
        warn_deprecated(f"{module}.{name}", f"{new_module}.{new_name}")
        return getattr(importlib.import_module(new_module), new_name)

    return __getattr__
