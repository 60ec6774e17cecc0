"""``run_protocol``: the splits × inits sweep, in this process or on a Dask cluster, with one writer of the records.

The driver (the process that calls :func:`run_protocol`) loads the graph, computes every run's key, takes the
:class:`~nsde_coin.graph.experiment.records.SweepLock` of ``out``, skips the runs already recorded and then either
trains the pending ones itself (default) or submits each once to Dask (``workers=N``: an embedded ``LocalCluster``;
``client=``: an existing cluster, see :mod:`nsde_coin.graph.experiment.cluster`). Either way it appends and fsyncs
each record as its run finishes and shows one progress bar. Ctrl-C and SIGTERM stop the sweep cleanly: futures are
cancelled, an embedded cluster is closed, finished records are kept and a rerun resumes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Optional, Union

import numpy as np
import torch

from nsde_coin._checks import is_int
from nsde_coin._heap import keep_large_blocks
from nsde_coin._threads import torch_threads
from nsde_coin.graph.baselines import build_model, resolve_hparams
from nsde_coin.graph.experiment.batched import check_batchable, train_members
from nsde_coin.graph.experiment.records import ResultsLog, SweepLock, run_key, summarize
from nsde_coin.graph.experiment.train import TrainConfig, train_run
from nsde_coin.graph.splits import Split, random_split
from nsde_coin.machine import l2_cache_bytes
from nsde_coin.sweep import check_engine
from nsde_coin.sweep import stop_on_sigterm as _stop_on_sigterm

__all__ = ["RunSpec", "resolve_device", "run_one", "run_protocol", "run_split"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class RunSpec:
    """Everything a run needs besides the graph and its (split, init) seeds: what a Dask task carries."""

    name: str
    source: str
    model: str
    hparams: dict[str, Any]
    config: TrainConfig
    fast: bool = True
    device: str = "cpu"
    threads: int = 1
    dtype: str = "float32"
    batch_inits: bool = False  # a split's inits trained as one COINEnsemble (nsde_coin.graph.experiment.batched)

    def settings(self) -> dict[str, Any]:
        """The execution settings that change results and differ from the defaults (part of the resume key)."""
        out: dict[str, Any] = {}
        if self.threads != 1:
            out["threads"] = self.threads  # summation order of the intra-op kernels
        if not self.fast and not self.batch_inits:  # a batch never takes the shortcut: fast changes nothing there
            out["fast"] = False  # the read-out shortcut sums in another order
        if torch.device(self.device).type != "cpu":
            out["device"] = torch.device(self.device).type
        if self.dtype != "float32":
            out["dtype"] = self.dtype
        if self.batch_inits:
            out["batch_inits"] = True  # another optimiser path and early stopping in one loop: other trajectories
        return out


def run_protocol(
    dataset: Union[str, Any],
    model_name: str,
    hparams: Optional[dict[str, Any]] = None,
    *,
    splits: int = 10,
    inits: int = 2,
    out: Optional[Union[str, os.PathLike]] = None,
    root: Optional[Union[str, os.PathLike]] = None,
    source: Optional[str] = None,
    split_seeds: Optional[list[int]] = None,
    init_seeds: Optional[list[int]] = None,
    config: Optional[TrainConfig] = None,
    threads: Optional[int] = 1,
    progress: bool = True,
    fast: bool = True,
    workers: Optional[int] = None,
    client: Any = None,
    device: Optional[Union[str, torch.device]] = None,
    batch_inits: bool = False,
) -> dict[str, Any]:
    """Run ``splits × inits`` trainings of ``model_name`` on ``dataset`` and summarise them.

    Args:
        dataset: a name for :func:`~nsde_coin.graph.datasets.load_dataset` or a preprocessed PyG ``Data``.
        model_name: a name of :data:`~nsde_coin.graph.baselines.MODELS` (``coin``, ``coin_base``, ``mlp`` ...).
        hparams: overrides of the model's default hyper-parameters (unknown keys raise ``ValueError``).
        splits, inits: number of random splits and of initialisations per split (seeds ``0..splits-1`` and
            ``0..inits-1`` unless ``split_seeds`` / ``init_seeds`` are given).
        out: JSONL results file; existing records with the same key are skipped (resume); locked for the sweep
            (a second driver on it raises ``ResultsInUseError`` naming this one's PID). ``None``: in memory.
        root, source: data location and source for a dataset given by name (loaded here, on the driver).
        config: optimiser / early-stopping settings (default: the paper's).
        threads: intra-op threads of each run (default 1; ``None``: torch's current setting). Part of the key.
        progress: show a tqdm bar on stderr (the driver's only, in every mode).
        fast: use the COIN read-out shortcut where it applies. Part of the key when off (not with
            ``batch_inits``, which never takes the shortcut).
        workers: run on an embedded Dask ``LocalCluster`` of this many single-threaded worker processes
            (127.0.0.1, no dashboard), closed at the end. ``None`` (default): train in this process. The workers
            are spawned: a script that passes ``workers=`` needs the ``if __name__ == "__main__":`` guard.
        client: a ``distributed.Client`` or a scheduler address (``"tcp://host:8786"``) of an existing cluster.
        device: ``"cpu"`` (default), ``"cuda"``, ``"cuda:1"`` ... Initial weights are drawn on the CPU under the run's
            seed; GPU runs add ``cuda_peak_mb``; on Dask they go to workers that declare a ``GPU`` resource.
        batch_inits: train the pending inits of each split together, as one
            :class:`~nsde_coin.graph.ensemble.COINEnsemble` with per-member early stopping (model ``coin`` only;
            one Dask task per split; see :mod:`nsde_coin.graph.experiment.batched`). Part of the key when on.

    Records are identical in every mode (each run is seeded by its split and init and runs with ``threads``
    threads), except that ``batch_inits`` gives records of its own (their own key). Returns the summary (see
    :func:`summarize`) of all requested runs found in ``out`` after the call, with ``dataset``, ``model``,
    ``hparams``, ``requested``, ``new_runs``, ``corrupt_lines`` and ``out``.
    """
    from nsde_coin.graph.datasets import load_dataset

    cfg = config or TrainConfig()
    if threads is not None and (not is_int(threads) or int(threads) < 1):
        raise ValueError(f"threads must be an int >= 1 (or None: leave torch's setting), got {threads!r}")
    check_engine(workers, client)
    hp = resolve_hparams(model_name, hparams)  # bad model / hyper-parameters fail before any data is loaded
    if batch_inits:
        check_batchable(model_name)
    dev = resolve_device(device, here=client is None)  # a remote cluster's workers check CUDA themselves
    dtype = str(torch.get_default_dtype()).replace("torch.", "")
    if dtype not in _DTYPES:
        raise ValueError(f"default dtype {dtype} is not supported; valid: {', '.join(_DTYPES)}")
    data = load_dataset(dataset, root=root, source=source) if isinstance(dataset, str) else dataset
    name = str(getattr(data, "name", "graph"))
    src = str(getattr(data, "source", "arrays"))
    for what, count, given in (("splits", splits, split_seeds), ("inits", inits, init_seeds)):
        if given is None and (not is_int(count) or int(count) < 1):
            raise ValueError(f"{what} must be an int >= 1, got {count!r}")
    s_seeds = list(range(int(splits))) if split_seeds is None else [int(s) for s in split_seeds]
    i_seeds = list(range(int(inits))) if init_seeds is None else [int(i) for i in init_seeds]
    if not s_seeds or not i_seeds:
        raise ValueError(f"need at least one split and one init, got splits={len(s_seeds)}, inits={len(i_seeds)}")
    spec = RunSpec(name, src, model_name.lower(), hp, cfg, bool(fast), str(dev),
                   int(threads) if threads is not None else torch.get_num_threads(), dtype, bool(batch_inits))
    key_src = src if src != "arrays" else f"arrays:{_fingerprint(data)}"  # user graphs share the default name
    if getattr(data, "lcc", True) is False:
        key_src += ":full-graph"  # the whole graph, not its largest component: other runs (default keys unchanged)
    keys = {(s, i): run_key(name, key_src, spec.model, hp, cfg, s, i, spec.settings()) for s in s_seeds
            for i in i_seeds}
    new = 0
    with SweepLock(out), _stop_on_sigterm():
        log = ResultsLog(out)
        done = log.keys()
        pending = [(s, i) for s in s_seeds for i in i_seeds if keys[(s, i)] not in done]
        bar = _progress(len(keys), len(keys) - len(pending), f"{name}/{spec.model}", progress)
        acc = [r["test_acc"] for r in log.records if r.get("key") in keys.values() and r.get("test_acc") is not None]
        with contextlib.ExitStack() as stack:
            stack.callback(bar.close)
            if not pending:
                records: Iterator[dict[str, Any]] = iter(())
            elif workers is None and client is None:
                records = _local_records(data, spec, pending, keys)
            else:
                from nsde_coin.graph.experiment import cluster

                units = len({s for s, _ in pending}) if spec.batch_inits else len(pending)  # one task per split
                size = None if workers is None else min(int(workers), units)  # no idle processes
                cl = stack.enter_context(cluster.open_client(size, client, gpu=dev.type == "cuda"))
                records = stack.enter_context(contextlib.closing(
                    cluster.dask_records(cl, data, spec, pending, keys)))
            for rec in records:
                log.append(rec)
                new += 1
                if rec["status"] != "ok":
                    bar.write(f"run split={rec['split_seed']} init={rec['init_seed']}: {rec['message']}")
                if rec.get("test_acc") is not None:
                    acc.append(rec["test_acc"])
                    bar.set_postfix(acc=f"{100 * np.mean(acc):.2f}%")
                bar.update(1)
    return _summary(log, keys, spec, new, out)


def _local_records(data, spec: RunSpec, pending: list[tuple[int, int]],
                   keys: dict[tuple[int, int], str]) -> Iterator[dict[str, Any]]:
    """Train the pending runs here, one split at a time (the split and the device copy are made once)."""
    dev = torch.device(spec.device)
    on_dev = data if dev.type == "cpu" else data.clone().to(dev)
    for s, inits_todo in _by_split(pending).items():
        split = _split(data, s).to(dev)
        if spec.batch_inits:
            yield from run_split(on_dev, spec, s, inits_todo, keys, split)
            continue
        for i in inits_todo:
            yield run_one(on_dev, spec, s, i, keys[(s, i)], split)


def _split(data, s: int) -> Split:
    return random_split(data.y, s, num_classes=int(getattr(data, "num_classes", int(data.y.max()) + 1)))


def _by_split(pending: list[tuple[int, int]]) -> dict[int, list[int]]:
    """The pending (split, init) pairs grouped by split, splits and inits in their order in ``pending``."""
    out: dict[int, list[int]] = {}
    for s, i in pending:
        out.setdefault(s, []).append(i)
    return out


def run_one(data, spec: RunSpec, s: int, i: int, key: str, split: Optional[Split] = None) -> dict[str, Any]:
    """Train run (split ``s``, init ``i``) of ``spec`` on ``data`` (already on ``spec.device``); its record.

    Sets the run's thread count and default dtype for its duration; the same function runs in a Dask worker.
    """
    dev = data.y.device
    split = (split or _split(data, s)).to(dev)
    with _run_settings(spec, dev) as box, _seeded(s, i, dev):  # dropout masks included
        net = build_model(spec.model, data, spec.hparams)  # drawn on the CPU: same start on any device
        res = train_run(net.to(dev), data.y, split, spec.config, fast=spec.fast, keep_best=False)
    return _record(data, spec, s, i, key, res, box)


def run_split(data, spec: RunSpec, s: int, inits: list[int], keys: dict[tuple[int, int], str],
              split: Optional[Split] = None) -> list[dict[str, Any]]:
    """Train the runs (split ``s``, init i) for all ``inits`` as one ensemble
    (:func:`~nsde_coin.graph.experiment.batched.train_members`: each member drawn as :func:`run_one` draws it);
    their records, in the order of ``inits``, with ``wall_time_s`` the batch's shared out by member-epochs."""
    dev = data.y.device
    split = (split or _split(data, s)).to(dev)
    with _run_settings(spec, dev) as box:
        nets = []
        for i in inits:
            with _seeded(s, i, dev):
                nets.append(build_model(spec.model, data, spec.hparams))  # on the CPU, stacked, then moved
        results = train_members(nets, data.y, split, spec.config)  # COIN: deterministic, no random numbers
    total = max(sum(r["epochs"] for r in results), 1)  # the wall time shared out by member-epochs, as the others
    return [_record(data, spec, s, i, keys[(s, i)], res, {**box, "wall": box["wall"] * res["epochs"] / total})
            for i, res in zip(inits, results)]


@contextlib.contextmanager
def _seeded(s: int, i: int, dev: torch.device) -> Iterator[None]:
    """The global random state seeded for run (s, i) inside the block, restored after (CUDA's too on a GPU)."""
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(1_000_003 * s + i)
        yield


@contextlib.contextmanager
def _run_settings(spec: RunSpec, dev: torch.device) -> Iterator[dict[str, Any]]:
    """The run's threads and default dtype (restored after), the heap setting, CUDA's peak counter; yields a dict
    that receives ``wall`` (seconds), ``threads`` and (CUDA) ``cuda_peak_mb`` when the block ends."""
    keep_large_blocks()  # per-epoch n×d tensors reuse heap blocks instead of page-faulting (nsde_coin._heap)
    cuda = dev.type == "cuda"
    before = torch.get_default_dtype()
    box: dict[str, Any] = {}
    with torch_threads(spec.threads):
        torch.set_default_dtype(_DTYPES[spec.dtype])
        try:
            if cuda:
                torch.cuda.reset_peak_memory_stats(dev)
            t0 = time.perf_counter()
            yield box
            box["wall"] = time.perf_counter() - t0
            box["threads"] = torch.get_num_threads()
        finally:
            torch.set_default_dtype(before)
    if cuda:
        box["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 3)


def _record(data, spec: RunSpec, s: int, i: int, key: str, res: dict[str, Any], box: dict[str, Any]
            ) -> dict[str, Any]:
    extra: dict[str, Any] = {"device": str(data.y.device)}
    if "cuda_peak_mb" in box:
        extra["cuda_peak_mb"] = box["cuda_peak_mb"]
    if spec.dtype != "float32":
        extra["dtype"] = spec.dtype
    return {
        "key": key, "dataset": spec.name, "source": spec.source, "nodes": int(data.num_nodes), "model": spec.model,
        "hparams": spec.hparams, **asdict(spec.config), "split_seed": s, "init_seed": i, **res,
        "wall_time_s": round(box["wall"], 6), "threads": box["threads"],
        "fast": spec.fast and not spec.batch_inits,  # a batch never takes the read-out shortcut
        "torch": torch.__version__, "l2_cache_bytes": l2_cache_bytes(),  # the compiled kernel's panels follow it
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra,
    }


def _summary(log: ResultsLog, keys: dict[tuple[int, int], str], spec: RunSpec, new: int,
             out: Optional[Union[str, os.PathLike]]) -> dict[str, Any]:
    wanted = set(keys.values())
    mine = {r["key"]: r for r in log.records if r.get("key") in wanted}  # last record per key wins
    # in (split, init) order, not completion order: the same sums whatever order the workers finished in
    summary = summarize(mine[k] for k in keys.values() if k in mine)
    summary.update(dataset=spec.name, source=spec.source, model=spec.model, hparams=spec.hparams,
                   train=asdict(spec.config), requested=len(keys), new_runs=new, corrupt_lines=log.corrupt_lines,
                   out=str(out) if out is not None else None)
    return summary


def resolve_device(device: Optional[Union[str, torch.device]], here: bool = True) -> torch.device:
    """``torch.device`` of a protocol run; ``ValueError`` naming the valid choices for a bad or unusable one.

    ``here=False`` checks only the name (the runs go to other machines, which check CUDA themselves).
    """
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; valid: 'cpu', 'cuda', 'cuda:N'") from None
    if dev.type == "cuda" and here:
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available here (torch {torch.__version__}); "
                             f"valid: 'cpu'")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {device!r}: only {count} CUDA device(s); valid: 'cuda:0'..'cuda:{count - 1}'")
    elif dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r} is not supported; valid: 'cpu', 'cuda', 'cuda:N'")
    return dev


def _fingerprint(data) -> str:
    """Hash of a graph's nodes, edges, labels and features: graphs built from arrays (source ``"arrays"``) are
    told apart in the resume key even when they share a name (``preprocess`` defaults every name to ``"graph"``)."""
    h = hashlib.sha1(str(int(data.num_nodes)).encode())
    x = getattr(data, "x_csr", None)
    x = data.x if x is None else x
    parts = [data.edge_index, data.y]
    parts += [x.crow_indices(), x.col_indices(), x.values()] if x.layout == torch.sparse_csr else [x]
    for t in parts:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix(self, **kw: Any) -> None: ...
    def close(self) -> None: ...
    def write(self, s: str) -> None:
        print(s, file=sys.stderr)


def _progress(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="run", file=sys.stderr, dynamic_ncols=True)
