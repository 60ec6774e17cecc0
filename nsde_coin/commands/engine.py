"""``--workers N`` / ``--scheduler tcp://HOST:PORT`` of the application commands (covid, tabular, fewshot): where
their sweep units run (:mod:`nsde_coin.sweep`). Without either flag they run in this process, as before."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Iterator
from typing import Any, Optional, TypeVar

__all__ = ["add_engine_arguments", "engine_options", "with_one_client"]

T = TypeVar("T")


def add_engine_arguments(p: argparse.ArgumentParser, unit: str) -> None:
    """Add ``--workers`` and ``--scheduler`` (group "engine"); ``unit`` says what one Dask task is."""
    e = p.add_argument_group("engine")
    e.add_argument("--workers", type=int, default=None,
                   help=f"run the sweep on an embedded Dask cluster of this many single-threaded worker processes "
                        f"(one task = {unit}; default: in this process)")
    e.add_argument("--scheduler", metavar="tcp://HOST:PORT", default=None,
                   help="run the sweep on an existing Dask cluster (`dask scheduler` / `dask worker --nthreads 1`; "
                        "default: none)")


def engine_options(args: argparse.Namespace) -> dict[str, Any]:
    """``{"workers": N or None, "client": address or None}`` for ``run_*``; ``ValueError`` for a bad combination
    (every sweep command, ``graph`` included, checks its engine flags here)."""
    workers: Optional[int] = args.workers
    if workers is not None and workers < 1:
        raise ValueError(f"--workers {workers} is not valid; expected an int >= 1")
    if workers is not None and args.scheduler:
        raise ValueError("give either --workers N (a local Dask cluster) or --scheduler ADDRESS, not both")
    return {"workers": workers, "client": args.scheduler or None}


def with_one_client(engine: dict[str, Any], items: Iterable[T]) -> Iterator[tuple[T, dict[str, Any]]]:
    """``(item, engine)`` for each item, with one Dask client (one embedded cluster) for all of them instead of one
    per ``run_*`` call; the cluster closes when the loop ends or stops (the generator is closed), and on SIGTERM the
    loop raises ``KeyboardInterrupt``. Without an engine, the items and ``engine`` unchanged."""
    if engine.get("workers") is None and engine.get("client") is None:
        for item in items:
            yield item, engine
        return
    from nsde_coin.sweep import open_client, stop_on_sigterm

    with stop_on_sigterm(), open_client(engine["workers"], engine["client"]) as cl:
        for item in items:
            yield item, {"workers": None, "client": cl}
