"""The protocol on Dask distributed: an embedded ``LocalCluster`` or an existing cluster, one task per pending run.

The engine (client, data sent once, each unit submitted once, cancel on exit) is :mod:`nsde_coin.sweep`, shared with
the application sweeps; this module adds what is the protocol's own.

* **Data**: the driver has loaded the graph (it needs it for the resume keys); it pickles it once and puts the bytes
  into the cluster as one task (``nsde-graph-<fingerprint>-<sweep id>``). Each worker fetches them once (from the
  worker that holds them, peer to peer), unpickles them once and keeps the graph for all its runs. The scheduler
  keeps the task, so the graph is recomputed from it if every worker that held it dies; the workers need neither
  the data folder nor a shared file system. (Loading from ``--root`` on every worker was the alternative: it needs
  the data on every machine and costs a full ``load_dataset`` per worker — see ``benchmarks/bench_scaleout.py``.)
* **Runs**: each pending (split, init) is submitted exactly once (with ``batch_inits``: each split, its pending inits
  together, key ``nsde-split-<hash of their run keys>``), as a task with the explicit key
  ``nsde-run-<run key>`` (``pure=False``); a worker that dies has its tasks rerun elsewhere by the scheduler
  (``distributed.scheduler.allowed-failures`` times). Workers *return* records; only the driver writes them.
* **Stop**: leaving :func:`dask_records` early (Ctrl-C, SIGTERM, an error) cancels every future of the sweep;
  :func:`open_client` closes an embedded cluster, whose worker processes also exit by themselves if the driver is
  killed (``kill -9``): Dask's worker processes watch a pipe from their parent.
* **GPU**: with ``device="cuda"`` the tasks ask for the resource ``GPU=1``: start workers with
  ``dask worker ... --resources GPU=1`` (one per GPU, ``CUDA_VISIBLE_DEVICES`` set per worker).
"""

from __future__ import annotations

import hashlib
import pickle
import uuid
from collections.abc import Iterator
from typing import Any

import torch

from nsde_coin.graph.experiment.runner import RunSpec, _by_split, _fingerprint, resolve_device, run_one, run_split
from nsde_coin.sweep import loads, open_client, submit_each_once, unpack

__all__ = ["dask_records", "open_client"]


def _load_graph(blob: bytes, device: str):
    data = loads(blob)
    dev = resolve_device(device)  # a worker without the GPU says so
    return data if dev.type == "cpu" else data.clone().to(dev)


def _graph_from(blob: bytes, fingerprint: str, device: str):
    """The graph of ``blob`` in this worker process, unpickled once and moved to ``device`` once."""
    return unpack(blob, f"{fingerprint}@{device}", lambda b: _load_graph(b, device))


def _remote_run(blob: bytes, fingerprint: str, spec: RunSpec, s: int, i: int, key: str) -> dict[str, Any]:
    """The task: one run in a worker, its record returned to the driver."""
    return run_one(_graph_from(blob, fingerprint, spec.device), spec, s, i, key)


def _remote_split(blob: bytes, fingerprint: str, spec: RunSpec, s: int, inits: list[int],
                  keys: dict[tuple[int, int], str]) -> list[dict[str, Any]]:
    """The task of ``batch_inits``: a split's pending inits as one ensemble in a worker, their records returned."""
    return run_split(_graph_from(blob, fingerprint, spec.device), spec, s, inits, keys)


def dask_records(client: Any, data, spec: RunSpec, pending: list[tuple[int, int]],
                 keys: dict[tuple[int, int], str]) -> Iterator[dict[str, Any]]:
    """Submit each pending run once to ``client``'s cluster and yield the records as the runs finish.

    Closing the generator (or an exception in it) cancels every future still running.
    """
    if spec.device != "cpu" and torch.device(spec.device).type == "cuda":
        infos = client.scheduler_info().get("workers", {}).values()
        if not any(w.get("resources", {}).get("GPU", 0) >= 1 for w in infos):
            raise ValueError(f"device {spec.device!r}: no worker of the cluster declares a GPU resource; start "
                             f"workers with: dask worker SCHEDULER --nthreads 1 --resources GPU=1")
    fp = _fingerprint(data)
    blob = pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
    resources = {"GPU": 1} if torch.device(spec.device).type == "cuda" else None
    data_key = f"nsde-graph-{fp}-{uuid.uuid4().hex[:12]}"
    if spec.batch_inits:
        units = [(fp, spec, s, inits, {(s, i): keys[(s, i)] for i in inits})
                 for s, inits in _by_split(pending).items()]
        names = [f"nsde-split-{hashlib.sha256(''.join(u[4].values()).encode()).hexdigest()[:24]}" for u in units]
        done = submit_each_once(client, _remote_split, blob, units, names, data_key=data_key, resources=resources)
    else:
        done = submit_each_once(client, _remote_run, blob, [(fp, spec, s, i, keys[(s, i)]) for s, i in pending],
                                [f"nsde-run-{keys[(s, i)]}" for s, i in pending], data_key=data_key,
                                resources=resources)
    try:
        for _, out in done:
            # a unit's exception (not a dead worker: those are retried) stops the sweep
            yield from (out if spec.batch_inits else [out])
    finally:
        done.close()
