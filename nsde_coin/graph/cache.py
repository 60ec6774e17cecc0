"""One cache for everything derived from a graph object: values keyed by an object's identity, freed with it.

The graph code reuses work built from a fixed object: the :class:`~nsde_coin.graph.laplacian.GraphOperator` of a
Laplacian tensor or of an ``edge_index`` tensor, and, per operator, the solvers' factorisations, step matrices,
random-walk tables and warnings given. All of it lives here, in one store:

* an entry is keyed by the **identity** of its owner (``id`` plus a weak reference, never ``==``/hash: tensors
  compare elementwise) and then by a key of the caller's choice, e.g. ``("operator", num_nodes, kind)``;
* the store holds its owners **weakly**: when the owner is garbage-collected its entries are dropped (many graphs,
  e.g. one per few-shot task, do not accumulate). Values must not reference their owner, or it never dies;
* owners are assumed not to change in place after their first entry (a tensor modified in place keeps its stale
  operator);
* :func:`clear` forgets one owner's entries (``reset_parameters`` of a layer) or everything (tests, memory).

Owners must support weak references (tensors, modules, plain Python objects do; ints and tuples do not).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Hashable
from typing import Any, Optional, TypeVar

__all__ = ["clear", "entries", "get_or_build", "lookup", "owners"]

T = TypeVar("T")

_STORE: dict[int, tuple[weakref.ref, dict[Hashable, Any]]] = {}


def _forget(key: int, ref: weakref.ref, store: dict[int, tuple[weakref.ref, dict[Hashable, Any]]]) -> None:
    hit = store.get(key)
    if hit is not None and hit[0] is ref:  # not an entry of a later object that reuses the id
        del store[key]


def entries(owner: Any) -> dict[Hashable, Any]:
    """The dict of values cached for ``owner`` (created empty on first use, dropped when ``owner`` is collected)."""
    key = id(owner)
    hit = _STORE.get(key)
    if hit is not None and hit[0]() is owner:
        return hit[1]
    # the callback holds the store and the function itself: an owner that dies while the interpreter tears this
    # module's globals down (e.g. one kept by gc.freeze() until exit) found _STORE gone (an AttributeError at exit)
    ref = weakref.ref(owner, functools.partial(_forget, key, store=_STORE))
    values: dict[Hashable, Any] = {}
    _STORE[key] = (ref, values)
    return values


def lookup(owner: Any, key: Hashable, default: Optional[Any] = None) -> Any:
    """The value cached for (``owner``, ``key``), or ``default``; creates no entry."""
    hit = _STORE.get(id(owner))
    if hit is None or hit[0]() is not owner:
        return default
    return hit[1].get(key, default)


def get_or_build(owner: Any, key: Hashable, build: Callable[[], T]) -> T:
    """The value cached for (``owner``, ``key``), built by ``build()`` and stored on the first call."""
    values = entries(owner)
    if key not in values:
        values[key] = build()
    return values[key]


def clear(owner: Optional[Any] = None) -> None:
    """Forget the entries of ``owner``, or of every owner when ``None``."""
    if owner is None:
        _STORE.clear()
        return
    hit = _STORE.get(id(owner))
    if hit is not None and hit[0]() is owner:
        del _STORE[id(owner)]


def owners() -> int:
    """Number of live owners with entries (for tests and memory checks)."""
    return sum(1 for ref, _ in _STORE.values() if ref() is not None)
