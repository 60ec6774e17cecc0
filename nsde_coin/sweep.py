"""One engine for every sweep on Dask distributed: open a client, ship the data once, submit each unit once, collect
the results as they finish, cancel everything on exit.

Used by the graph protocol (:mod:`nsde_coin.graph.experiment.cluster`: one unit per (split, init) run) and by the
application sweeps (:func:`~nsde_coin.apps.tabular.run_tabular`: a model × a chunk of seeds,
:func:`~nsde_coin.apps.fewshot.run_fewshot`: a task batch, :func:`~nsde_coin.apps.covid.run_covid`: a model × a mask
with its inits). The module is core-neutral: it imports neither ``nsde_coin.graph`` nor ``nsde_coin.apps``, and
Dask only when a sweep asks for it (:func:`import_distributed` says how to install it).

* **Client**: :func:`open_client` — an embedded ``LocalCluster`` of N single-threaded worker processes on 127.0.0.1
  (no dashboard; closed on exit), a scheduler address ``tcp://HOST:PORT`` (disconnected on exit) or a
  ``distributed.Client`` (left open).
* **Data**: the driver pickles the shared inputs once and puts the bytes into the cluster as *one task*
  (``nsde-<name>-data-<sweep id>``). Each worker fetches them once (peer to peer from the worker holding them),
  unpickles them once (:func:`unpack`, cached per process by a token) and reuses them for all its units. The
  scheduler keeps the task, so the data is recomputed from it if every worker holding it dies; workers need no data
  folder and no shared file system.
* **Units**: each is submitted exactly once with an explicit key (``pure=False``); a worker that dies has its units
  rerun elsewhere by the scheduler. Workers *return* results; the driver alone writes anything.
* **Stop**: leaving :func:`submit_each_once` (or :func:`run_units`) early — Ctrl-C, SIGTERM (turned into
  ``KeyboardInterrupt`` by :func:`stop_on_sigterm`), an error — cancels every future of the sweep, and an embedded
  cluster is closed; its worker processes also exit by themselves if the driver is killed with ``kill -9``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import pickle
import signal
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Optional

from nsde_coin._checks import is_int
from nsde_coin._threads import torch_threads

__all__ = ["import_distributed", "check_engine", "open_client", "stop_on_sigterm", "loads", "unpack",
           "submit_each_once", "run_units"]

_SHARED: dict[str, Any] = {}  # in a worker process: token -> the unpickled shared inputs of the current sweep


def import_distributed():
    """The ``distributed`` package, or a one-line ``ValueError`` saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise ValueError("workers= / --workers and client= / --scheduler need Dask distributed: "
                         "pip install 'nsde_coin[distributed]'") from None
    return distributed


def check_engine(workers: Optional[int], client: Any) -> None:
    """``ValueError`` for a bad ``workers`` (an int >= 1 or ``None``) or for ``workers`` and ``client`` together."""
    if workers is not None and (not is_int(workers) or int(workers) < 1):
        raise ValueError(f"workers must be an int >= 1 (or None: run in this process), got {workers!r}")
    if workers is not None and client is not None:
        raise ValueError(f"give either workers={workers} (a local cluster) or client= (an existing one), not both")


@contextlib.contextmanager
def open_client(workers: Optional[int], client: Any, *, gpu: bool = False) -> Iterator[Any]:
    """A ``distributed.Client``: of a new ``LocalCluster`` of ``workers`` single-threaded processes on 127.0.0.1
    (closed on exit), of the scheduler address ``client`` (disconnected on exit), or ``client`` itself (left open).
    ``gpu``: the embedded workers declare the resource ``GPU=1``."""
    distributed = import_distributed()
    if client is not None and not isinstance(client, str):
        yield client
        return
    if isinstance(client, str):
        with distributed.Client(client, timeout="30s") as cl:
            yield cl
        return
    import dask

    # no dashboard, so no use for the workers' statistical profiler (a thread that samples the task's Python stack
    # every 10 ms, under the GIL the training loop needs); spawned workers inherit this config. The scheduler's HTTP
    # routes (health, metrics) take a free port of 127.0.0.1: None meant :8787 and a warning when that port is taken
    with dask.config.set({"distributed.worker.profile.enabled": False}):
        cluster = distributed.LocalCluster(
            n_workers=int(workers), threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR, resources={"GPU": 1} if gpu else None)
    try:
        with distributed.Client(cluster) as cl:
            yield cl
    finally:
        cluster.close()


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM (what ``timeout`` and schedulers send) into KeyboardInterrupt for the block, so the sweep's
    clean-up (cancel futures, close the cluster, release locks) runs as for Ctrl-C. No-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    before = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def loads(blob: bytes) -> Any:
    """``pickle.loads`` without torch's beta warnings about sparse CSR tensors (not the user's concern)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sparse CSR tensor support", UserWarning)
        warnings.filterwarnings("ignore", "Sparse invariant checks", UserWarning)
        return pickle.loads(blob)


def unpack(blob: bytes, token: str, load: Callable[[bytes], Any] = loads) -> Any:
    """``load(blob)``, made once per worker process for ``token`` and kept for the sweep's other units (one shared
    object per process at a time: a new sweep's data replaces the last)."""
    if token not in _SHARED:
        obj = load(blob)
        _SHARED.clear()
        _SHARED[token] = obj
    return _SHARED[token]


def _identity(blob: bytes) -> bytes:
    return blob


def submit_each_once(client: Any, fn: Callable[..., Any], blob: bytes, units: Sequence[tuple],
                     keys: Sequence[str], *, data_key: str, resources: Optional[dict[str, float]] = None
                     ) -> Iterator[tuple[int, Any]]:
    """Put ``blob`` into ``client``'s cluster as one task (key ``data_key``), submit ``fn(blob, *units[i])`` once per
    unit under ``keys[i]`` and yield ``(i, result)`` as the units finish (completion order).

    A unit's exception stops the sweep (it is re-raised here; dead workers are not exceptions: their units are
    retried). Closing the generator, or an exception in it, cancels every future still running.
    """
    distributed = import_distributed()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sending large graph", UserWarning)  # the data, sent once on purpose
        shared = client.submit(_identity, blob, key=data_key, pure=False)
        futures = [client.submit(fn, shared, *args, key=key, pure=False, resources=resources)
                   for args, key in zip(units, keys)]
    index = {f.key: i for i, f in enumerate(futures)}
    try:
        for fut in distributed.as_completed(futures):
            yield index[fut.key], fut.result()
            fut.release()
    finally:
        client.cancel([f for f in futures if not f.done()] + [shared], force=True)


def _apply(blob: bytes, token: str, threads: Optional[int], fn: Callable[..., Any], *args: Any) -> Any:
    """A unit in a worker: ``fn(*shared, *args)`` with the driver's thread count."""
    with torch_threads(threads):
        return fn(*unpack(blob, token), *args)


@contextlib.contextmanager
def run_units(fn: Callable[..., Any], shared: tuple, units: Sequence[tuple], *, workers: Optional[int] = None,
              client: Any = None, name: str = "sweep", threads: Optional[int] = None
              ) -> Iterator[Iterator[tuple[int, Any]]]:
    """Run ``fn(*shared, *unit)`` for every unit on Dask; the block gets an iterator of ``(index, result)`` in
    completion order.

    Args:
        fn: a module-level function (workers import it by name).
        shared: the inputs every unit needs, pickled once and sent once per worker (module doc).
        units: the per-unit arguments (small: seeds, indices).
        workers / client: an embedded ``LocalCluster`` of ``min(workers, len(units))`` processes, or an existing
            cluster (a scheduler address or a ``distributed.Client``); see :func:`open_client`.
        name: prefix of the task keys (``nsde-<name>-<sweep id>-<i>``).
        threads: torch intra-op threads of each unit (the driver's count keeps results equal to an in-process run).

    SIGTERM inside the block raises ``KeyboardInterrupt``; leaving it cancels the futures and closes an embedded
    cluster.
    """
    check_engine(workers, client)
    if workers is None and client is None:
        raise ValueError("run_units needs workers= (a local Dask cluster) or client= (an existing one)")
    blob = pickle.dumps(shared, protocol=pickle.HIGHEST_PROTOCOL)
    token = hashlib.sha1(blob).hexdigest()[:16]
    sweep = uuid.uuid4().hex[:12]
    size = None if workers is None else min(int(workers), max(1, len(units)))  # no idle processes
    with stop_on_sigterm(), open_client(size, client) as cl:
        done = submit_each_once(cl, _apply, blob, [(token, threads, fn, *u) for u in units],
                                [f"nsde-{name}-{sweep}-{i}" for i in range(len(units))],
                                data_key=f"nsde-{name}-data-{sweep}")
        with contextlib.closing(done):
            yield done
