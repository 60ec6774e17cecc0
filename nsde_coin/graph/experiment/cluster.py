"""The protocol on Dask distributed: an embedded ``LocalCluster`` or an existing cluster, one task per pending run.

* **Data**: the driver has loaded the graph (it needs it for the resume keys); it pickles it once and puts the bytes
  into the cluster as one task (``nsde-graph-<fingerprint>-<sweep id>``). Each worker fetches them once (from the
  worker that holds them, peer to peer), unpickles them once and keeps the graph for all its runs. The scheduler
  keeps the task, so the graph is recomputed from it if every worker that held it dies; the workers need neither
  the data folder nor a shared file system. (Loading from ``--root`` on every worker was the alternative: it needs
  the data on every machine and costs a full ``load_dataset`` per worker — see ``benchmarks/bench_scaleout.py``.)
* **Runs**: each pending (split, init) is submitted exactly once, as a task with the explicit key
  ``nsde-run-<run key>`` (``pure=False``); a worker that dies has its tasks rerun elsewhere by the scheduler
  (``distributed.scheduler.allowed-failures`` times). Workers *return* records; only the driver writes them.
* **Stop**: leaving :func:`dask_records` early (Ctrl-C, SIGTERM, an error) cancels every future of the sweep;
  :func:`open_client` closes an embedded cluster, whose worker processes also exit by themselves if the driver is
  killed (``kill -9``): Dask's worker processes watch a pipe from their parent.
* **GPU**: with ``device="cuda"`` the tasks ask for the resource ``GPU=1``: start workers with
  ``dask worker ... --resources GPU=1`` (one per GPU, ``CUDA_VISIBLE_DEVICES`` set per worker).
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import uuid
import warnings
from collections.abc import Iterator
from typing import Any, Optional

import torch

from nsde_coin.graph.experiment.runner import RunSpec, _fingerprint, resolve_device, run_one

__all__ = ["dask_records", "open_client"]

_GRAPHS: dict[str, Any] = {}  # in a worker process: fingerprint -> the unpickled graph (on its device)


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise ValueError("workers= / --workers and client= / --scheduler need Dask distributed: "
                         "pip install 'nsde_coin[distributed]'") from None
    return distributed


@contextlib.contextmanager
def open_client(workers: Optional[int], client: Any, *, gpu: bool = False) -> Iterator[Any]:
    """A ``distributed.Client``: of a new ``LocalCluster`` of ``workers`` single-threaded processes on 127.0.0.1
    (closed on exit), of the scheduler address ``client`` (disconnected on exit), or ``client`` itself (left open)."""
    distributed = _import_distributed()
    if client is not None and not isinstance(client, str):
        yield client
        return
    if isinstance(client, str):
        with distributed.Client(client, timeout="30s") as cl:
            yield cl
        return
    import dask

    # no dashboard, so no use for the workers' statistical profiler (a thread that samples the task's Python stack
    # every 10 ms, under the GIL the training loop needs); spawned workers inherit this config
    with dask.config.set({"distributed.worker.profile.enabled": False}):
        cluster = distributed.LocalCluster(
            n_workers=int(workers), threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
            silence_logs=logging.ERROR, resources={"GPU": 1} if gpu else None)
    try:
        with distributed.Client(cluster) as cl:
            yield cl
    finally:
        cluster.close()


def _graph_from(blob: bytes, fingerprint: str, device: str):
    """The graph of ``blob`` in this worker process, unpickled once and moved to ``device`` once."""
    key = f"{fingerprint}@{device}"
    if key not in _GRAPHS:
        with warnings.catch_warnings():  # torch's beta warnings about sparse CSR on unpickling: not the user's concern
            warnings.filterwarnings("ignore", "Sparse CSR tensor support", UserWarning)
            warnings.filterwarnings("ignore", "Sparse invariant checks", UserWarning)
            data = pickle.loads(blob)
        dev = resolve_device(device)  # a worker without the GPU says so
        _GRAPHS.clear()  # one graph per worker at a time: a new sweep's graph replaces the last
        _GRAPHS[key] = data if dev.type == "cpu" else data.clone().to(dev)
    return _GRAPHS[key]


def _remote_run(blob: bytes, fingerprint: str, spec: RunSpec, s: int, i: int, key: str) -> dict[str, Any]:
    """The task: one run in a worker, its record returned to the driver."""
    return run_one(_graph_from(blob, fingerprint, spec.device), spec, s, i, key)


def _identity(blob: bytes) -> bytes:
    return blob


def dask_records(client: Any, data, spec: RunSpec, pending: list[tuple[int, int]],
                 keys: dict[tuple[int, int], str]) -> Iterator[dict[str, Any]]:
    """Submit each pending run once to ``client``'s cluster and yield the records as the runs finish.

    Closing the generator (or an exception in it) cancels every future still running.
    """
    distributed = _import_distributed()
    if spec.device != "cpu" and torch.device(spec.device).type == "cuda":
        infos = client.scheduler_info().get("workers", {}).values()
        if not any(w.get("resources", {}).get("GPU", 0) >= 1 for w in infos):
            raise ValueError(f"device {spec.device!r}: no worker of the cluster declares a GPU resource; start "
                             f"workers with: dask worker SCHEDULER --nthreads 1 --resources GPU=1")
    fp = _fingerprint(data)
    blob = pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
    resources = {"GPU": 1} if torch.device(spec.device).type == "cuda" else None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sending large graph", UserWarning)  # the graph, sent once on purpose
        graph = client.submit(_identity, blob, key=f"nsde-graph-{fp}-{uuid.uuid4().hex[:12]}", pure=False)
        futures = [client.submit(_remote_run, graph, fp, spec, s, i, keys[(s, i)], key=f"nsde-run-{keys[(s, i)]}",
                                 pure=False, resources=resources) for s, i in pending]
    try:
        for fut in distributed.as_completed(futures):
            yield fut.result()  # a run's exception (not a dead worker: those are retried) stops the sweep
            fut.release()
    finally:
        client.cancel([f for f in futures if not f.done()] + [graph], force=True)
