"""Lazy package attributes (PEP 562): names imported on first use, plus deprecated aliases of moved names.

A package ``__init__`` that would otherwise import heavy submodules (torch_geometric data sets, the apps) lists them
here instead, so ``import nsde_coin`` / ``import nsde_coin.graph`` stays cheap and the imports keep pointing one way.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any, Union

from nsde_coin.errors import deprecated_getattr

Target = Union[str, tuple[str, str]]  # "module" (same attribute name) or ("module", "attribute")


def lazy_attributes(module: str, lazy: Mapping[str, Target], deprecated: Mapping[str, tuple[str, str]] | None = None,
                    ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module's ``(__getattr__, __dir__)``: ``__getattr__`` imports the names of ``lazy`` on first use (then caches
    them in the module) and serves ``deprecated`` through :func:`nsde_coin.errors.deprecated_getattr` (warning on
    every use); ``__dir__`` lists the module's names and the lazy ones (not the deprecated ones).

    Use: ``__getattr__, __dir__ = lazy_attributes(__name__, {"load_dataset": "nsde_coin.graph.datasets"})``.
    """
    old = deprecated_getattr(module, deprecated or {})

    def __getattr__(name: str) -> Any:
        target = lazy.get(name)
        if target is None:
            return old(name)  # raises AttributeError when the name is not a deprecated alias either
        source, attr = target if isinstance(target, tuple) else (target, name)
        value = getattr(importlib.import_module(source), attr)
        setattr(sys.modules[module], name, value)  # later look-ups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[module])) | set(lazy))

    return __getattr__, __dir__
