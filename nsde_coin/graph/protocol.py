"""The paper's graph benchmark protocol: S random splits × I random initialisations, resumable, one JSON line per run.

Training (Shchur et al. 2018, as in the COIN paper): Adam (lr 0.01, weight decay 5e-4), full batch, at most 10,000
epochs, early stopping with patience 50 where the counter resets whenever the validation loss reaches a new minimum
**or** the validation accuracy a new maximum; the test accuracy is measured with the weights saved at the last reset.

Speed (the protocol runs thousands of trainings):

* Deterministic models (COIN, SGC: no dropout) read the validation loss/accuracy off the *training* forward pass —
  the weights that produced them are the ones saved on a reset (the optimiser steps afterwards) — so each epoch is
  one forward and one backward pass.
* COIN with a linear deterministic solver (explicit / implicit / exact) on a symmetric Laplacian trains through a
  **read-out operator**: the loss and the validation metrics need ``u_T`` only on the m = |train ∪ val| nodes, and
  ``u_T = F u_0`` with ``F`` the solver's fixed linear map, so the rows ``P = (F e_i)ᵀ`` (m × n, dense; ``F = Fᵀ`` for
  symmetric L) are computed once per split by diffusing m indicator vectors. Each epoch then costs one m×n×C
  product instead of ``layer_num`` sparse steps (or CG solves) forward and backward. The test accuracy is computed
  with the model's own full forward pass at the saved weights, so the reported numbers never depend on the shortcut.
  ``fast=False`` turns it off.
* Saved weights are copied into pre-allocated buffers (no allocation per reset); Adam uses the fused CPU kernel;
  freed n×d blocks stay in the C heap (:mod:`nsde_coin._heap`) instead of page-faulting again every epoch.
* ``workers=N`` runs the splits in N spawned processes that share the results file (one per core: the kernels are
  single-threaded at these sizes, so processes scale better than intra-op threads).

Records: every run appends one JSON object to the results file (flushed per record) with the dataset, model,
hyper-parameters, training settings, split and init seeds, status, epochs, best epoch, validation/test accuracy,
times and versions. Re-running the same command skips the runs already recorded (key = dataset, source, model,
hyper-parameters, training settings, split seed, init seed). A corrupt line (e.g. a run killed mid-write) is reported
with its line number and skipped; the good records are kept.

Seeds: split ``s`` is :func:`~nsde_coin.graph.splits.random_split` with seed ``s``; run (s, i) initialises and trains
under ``torch.manual_seed(1_000_003 * s + i)`` (dropout masks included), so every run is reproducible on CPU.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from nsde_coin._checks import is_int
from nsde_coin._heap import keep_large_blocks
from nsde_coin._threads import torch_threads
from nsde_coin.graph.baselines import GraphNet, build_model, resolve_hparams
from nsde_coin.graph.splits import Split, random_split

__all__ = [
    "EarlyStopper",
    "ResultsLog",
    "TrainConfig",
    "run_key",
    "resolve_device",
    "run_protocol",
    "summarize",
    "train_run",
]

LINEAR_SOLVERS = ("explicit", "implicit", "exact")  # deterministic linear maps: the read-out shortcut applies


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser and early-stopping settings (the paper's defaults)."""

    lr: float = 0.01
    weight_decay: float = 5e-4
    max_epochs: int = 10_000
    patience: int = 50

    def __post_init__(self) -> None:
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}")
        if int(self.max_epochs) < 1:
            raise ValueError(f"max_epochs must be >= 1, got {self.max_epochs!r}")
        if int(self.patience) < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience!r}")


class EarlyStopper:
    """Patience counter that resets on a new minimum of the validation loss OR a new maximum of the accuracy.

    ``update(epoch, val_loss, val_acc)`` returns ``True`` on a reset — the caller then saves the weights that produced
    these metrics. ``stop`` becomes ``True`` after ``patience`` consecutive epochs without a reset. Comparisons are
    strict (equal values do not reset); a NaN loss never counts as a new minimum.
    """

    def __init__(self, patience: int = 50):
        if int(patience) < 1:
            raise ValueError(f"patience must be >= 1, got {patience!r}")
        self.patience = int(patience)
        self.best_loss = math.inf
        self.best_acc = -math.inf
        self.counter = 0
        self.best_epoch = -1
        self.loss_at_reset = math.nan
        self.acc_at_reset = math.nan

    def update(self, epoch: int, val_loss: float, val_acc: float) -> bool:
        """Record one epoch's validation loss and accuracy; True when the patience counter was reset (save the
        weights then)."""
        reset = False
        if val_loss < self.best_loss:
            self.best_loss = float(val_loss)
            reset = True
        if val_acc > self.best_acc:
            self.best_acc = float(val_acc)
            reset = True
        if reset:
            self.counter = 0
            self.best_epoch = int(epoch)
            self.loss_at_reset, self.acc_at_reset = float(val_loss), float(val_acc)
        else:
            self.counter += 1
        return reset

    @property
    def stop(self) -> bool:
        """True once ``patience`` epochs have passed without a reset."""
        return self.counter >= self.patience


# ------------------------------------------------------------------------------------------------ training tasks
class _ModuleTask:
    """Generic task: ``net()`` gives log-probabilities of all nodes."""

    def __init__(self, net: GraphNet, y: torch.Tensor, split: Split):
        for part in ("train", "val", "test"):
            if getattr(split, part).numel() == 0:  # the mean over no nodes would be a silent NaN loss/accuracy
                raise ValueError(f"split {split.seed} has no {part} nodes (sizes train/val/test = {split.sizes()}); "
                                 f"every class needs more than train_per_class + val_per_class nodes")
        self.net, self.y, self.split = net, y, split
        self.params = [p for p in net.parameters() if p.requires_grad]
        self.deterministic = bool(net.deterministic)
        self.ytr, self.yva = y[split.train], y[split.val]

    def train_forward(self) -> tuple[torch.Tensor, Optional[tuple[float, float]]]:
        self.net.train()
        out = self.net()
        loss = F.nll_loss(out[self.split.train], self.ytr)
        if self.deterministic:
            return loss, self._metrics(out.detach()[self.split.val])
        return loss, None

    def _metrics(self, out_val: torch.Tensor) -> tuple[float, float]:
        return float(F.nll_loss(out_val, self.yva)), float((out_val.argmax(1) == self.yva).double().mean())

    def eval_val(self) -> tuple[float, float]:
        self.net.eval()
        with torch.no_grad():
            return self._metrics(self.net()[self.split.val])

    def evaluate(self) -> tuple[float, float, float]:
        """(val_loss, val_acc, test_acc) of the current weights with the model's own eval-mode forward."""
        self.net.eval()
        with torch.no_grad():
            out = self.net()
        vl, va = self._metrics(out[self.split.val])
        ta = float((out[self.split.test].argmax(1) == self.y[self.split.test]).double().mean())
        return vl, va, ta


class _Readout(torch.autograd.Function):
    """``P @ u`` for a constant dense read-out ``P`` (m, n) and ``u`` (n, C), computed as wide products
    ``(uᵀ Pᵀ)ᵀ`` / ``(gᵀ P)ᵀ`` (BLAS is slow on the skinny C-column forms)."""

    @staticmethod
    def forward(ctx, u, p):  # noqa: D102
        ctx.p = p
        return torch.mm(u.t(), p.t()).t()

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        return torch.mm(g.t(), ctx.p).t(), None


class _ReadoutCOINTask(_ModuleTask):
    """COIN trained through the m×n read-out rows of its (linear, symmetric) diffusion map (see module doc)."""

    def __init__(self, net: GraphNet, y: torch.Tensor, split: Split):
        super().__init__(net, y, split)
        coin = net.coin
        self.coin, self.x = coin, net.x
        rows = torch.cat([split.train, split.val])
        self.ntr = int(split.train.numel())
        op = coin.operator
        dtype = coin.base.W1.dtype
        if coin.layer_num == 0:
            self.readout = None
            self.rows = rows
        else:
            from nsde_coin.graph.diffusion import diffuse

            device = coin.base.W1.device
            eye = torch.zeros(op.n, rows.numel(), dtype=dtype, device=device)
            eye[rows, torch.arange(rows.numel(), device=device)] = 1.0
            with torch.no_grad():
                cols = diffuse(eye, op, coin.sigma2, coin.layer_num, solver=coin.solver,
                               allow_unstable=coin.allow_unstable, **coin.solver_options)
            self.readout = cols.t().contiguous()  # (m, n)

    @staticmethod
    def applies(net: GraphNet) -> bool:
        coin = getattr(net, "coin", None)
        if coin is None or coin.operator is None:
            return False
        return coin.layer_num == 0 or (coin.solver in LINEAR_SOLVERS and coin.operator.symmetric)

    def train_forward(self) -> tuple[torch.Tensor, Optional[tuple[float, float]]]:
        logits = self.coin.base(self.x)  # sparse x: coin.py's hand-written kernel
        if self.readout is None:
            lu = F.log_softmax(logits[self.rows], dim=1)
        else:
            lu = torch.log(_Readout.apply(logits.softmax(1), self.readout).clamp_min(self.coin.eps))
        loss = F.nll_loss(lu[: self.ntr], self.ytr)
        return loss, self._metrics(lu.detach()[self.ntr:])


def _adam(params: Sequence[torch.Tensor], cfg: TrainConfig) -> torch.optim.Optimizer:
    kwargs: dict[str, Any] = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    try:
        return torch.optim.Adam(params, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):  # fused kernel unavailable for this device/dtype
        return torch.optim.Adam(params, **kwargs)


def train_run(net: GraphNet, y: torch.Tensor, split: Split, cfg: TrainConfig = TrainConfig(), *,
              fast: bool = True) -> dict[str, Any]:
    """Train ``net`` on one split with early stopping; returns a dict of the run's results.

    Keys: ``status`` (``"ok"`` or ``"nonfinite_loss"``), ``message``, ``epochs`` (forward passes run), ``best_epoch``
    (epoch of the last reset, 0-based), ``val_loss``, ``val_acc``, ``test_acc`` (at the saved weights; ``None`` when
    the loss became non-finite), ``train_time_s``, ``epoch_time_ms`` (wall clock), ``train_cpu_s``, ``epoch_cpu_ms``
    (process CPU time: less sensitive to other load on a shared machine), ``readout`` (whether the COIN shortcut ran).
    """
    task: _ModuleTask
    use_readout = fast and _ReadoutCOINTask.applies(net)
    t0 = time.perf_counter()
    task = _ReadoutCOINTask(net, y, split) if use_readout else _ModuleTask(net, y, split)
    setup_s = time.perf_counter() - t0
    opt = _adam(task.params, cfg)
    saved = [p.detach().clone() for p in task.params]
    stopper = EarlyStopper(cfg.patience)
    status, message, epoch = "ok", "", -1
    t1, c1 = time.perf_counter(), time.process_time()
    for epoch in range(int(cfg.max_epochs)):  # noqa: B007 (epoch used after the loop)
        opt.zero_grad(set_to_none=True)
        loss, val = task.train_forward()
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            status = "nonfinite_loss"
            message = (f"training loss became {loss_value} at epoch {epoch}; run stopped "
                       f"(explicit diffusion past its stability bound? try a stable solver or a smaller sigma2)")
            break
        if val is not None:
            if stopper.update(epoch, *val):
                _copy(saved, task.params)
            if stopper.stop:
                break
            loss.backward()
            opt.step()
        else:
            loss.backward()
            opt.step()
            if stopper.update(epoch, *task.eval_val()):
                _copy(saved, task.params)
            if stopper.stop:
                break
    train_s, train_cpu_s = time.perf_counter() - t1, time.process_time() - c1
    epochs = epoch + 1
    out: dict[str, Any] = {"status": status, "message": message, "epochs": epochs, "best_epoch": stopper.best_epoch,
                           "readout": use_readout, "setup_s": round(setup_s, 6), "train_time_s": round(train_s, 6),
                           "epoch_time_ms": round(1e3 * train_s / max(epochs, 1), 4),
                           "train_cpu_s": round(train_cpu_s, 6),
                           "epoch_cpu_ms": round(1e3 * train_cpu_s / max(epochs, 1), 4)}
    if status == "ok":
        _copy(task.params, saved)
        vl, va, ta = task.evaluate()
        if stopper.best_epoch >= 0 and abs(va - stopper.acc_at_reset) > 0.02:
            warnings.warn(f"validation accuracy of the saved weights {va:.4f} differs from the one seen in training "
                          f"{stopper.acc_at_reset:.4f}", RuntimeWarning, stacklevel=2)
        out.update(val_loss=vl, val_acc=va, test_acc=ta)
    else:
        out.update(val_loss=None, val_acc=None, test_acc=None)
    return out


def _copy(dst: Sequence[torch.Tensor], src: Sequence[torch.Tensor]) -> None:
    with torch.no_grad():
        for d, s in zip(dst, src):
            d.copy_(s)


# ---------------------------------------------------------------------------------------------------- records
def run_key(dataset: str, source: str, model: str, hparams: dict[str, Any], cfg: TrainConfig, split_seed: int,
            init_seed: int) -> str:
    """Stable identifier of one run (hash of everything that defines it)."""
    blob = json.dumps({"dataset": dataset, "source": source, "model": model, "hparams": hparams, "train": asdict(cfg),
                       "split": int(split_seed), "init": int(init_seed)}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:20]


class ResultsLog:
    """An append-only JSONL file of run records (or an in-memory list when ``path`` is ``None``).

    Loading keeps every valid record and lists the line numbers of corrupt ones in ``corrupt_lines`` (each is also
    reported with a ``RuntimeWarning``). Appends are flushed and fsync'ed per record, under an exclusive file lock so
    that several processes (``shard=``) can share one file.
    """

    def __init__(self, path: Optional[Union[str, os.PathLike]] = None):
        self.path = Path(path) if path is not None else None
        self.records: list[dict[str, Any]] = []
        self.corrupt_lines: list[int] = []
        if self.path is not None and self.path.exists():
            self.reload()

    def reload(self) -> None:
        """Re-read the file (corrupt lines are skipped, listed in ``corrupt_lines`` and warned about)."""
        assert self.path is not None
        self.records, self.corrupt_lines = _read_records(self.path)
        if self.corrupt_lines:
            lines = ", ".join(map(str, self.corrupt_lines[:10])) + (" ..." if len(self.corrupt_lines) > 10 else "")
            warnings.warn(f"{self.path}: skipped {len(self.corrupt_lines)} corrupt line(s) (line {lines}); kept "
                          f"{len(self.records)} good record(s); those runs will be redone", RuntimeWarning,
                          stacklevel=2)

    def keys(self) -> set[str]:
        """The run keys (:func:`run_key`) of the records held."""
        return {r["key"] for r in self.records}

    def append(self, record: dict[str, Any]) -> None:
        """Add one record and write it as a JSON line (flushed, fsync'ed, under the file lock)."""
        self.records.append(record)
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, sort_keys=True) + "\n"
        with open(self.path, "a+b") as fh:
            with _locked(fh):
                fh.seek(0, os.SEEK_END)
                if fh.tell() > 0:  # a killed writer may have left a partial line: start a fresh one
                    fh.seek(-1, os.SEEK_END)
                    if fh.read(1) != b"\n":
                        fh.write(b"\n")
                fh.write(line.encode())
                fh.flush()
                os.fsync(fh.fileno())


def _read_records(path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    """The run records of a JSONL file and the 1-based numbers of its corrupt lines (blank lines are skipped)."""
    records: list[dict[str, Any]] = []
    corrupt: list[int] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            text = line.strip()
            if not text:
                continue
            try:
                rec = json.loads(text)
                if not isinstance(rec, dict) or "key" not in rec:
                    raise ValueError("not a run record")
            except ValueError:
                corrupt.append(lineno)
                continue
            records.append(rec)
    return records, corrupt


@contextlib.contextmanager
def _locked(fh):
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def summarize(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std (sample std, ddof=1) of test accuracy in %, plus means of epochs and times, over the records."""
    recs = list(records)
    ok = [r for r in recs if r.get("status") == "ok" and r.get("test_acc") is not None]
    acc = np.array([100.0 * r["test_acc"] for r in ok])
    val = np.array([100.0 * r["val_acc"] for r in ok])

    def _mean(key: str) -> Optional[float]:
        vals = [r[key] for r in ok if r.get(key) is not None]
        return float(np.mean(vals)) if vals else None

    return {
        "runs": len(ok),
        "failed": len(recs) - len(ok),
        "test_acc_mean": float(acc.mean()) if acc.size else None,
        "test_acc_std": float(acc.std(ddof=1)) if acc.size > 1 else (0.0 if acc.size else None),
        "val_acc_mean": float(val.mean()) if val.size else None,
        "val_acc_std": float(val.std(ddof=1)) if val.size > 1 else (0.0 if val.size else None),
        "epochs_mean": _mean("epochs"),
        "best_epoch_mean": _mean("best_epoch"),
        "run_time_s_mean": _mean("wall_time_s"),
        "epoch_time_ms_mean": _mean("epoch_time_ms"),
        "epoch_cpu_ms_mean": _mean("epoch_cpu_ms"),
        "train_cpu_s_mean": _mean("train_cpu_s"),
        "splits": sorted({r["split_seed"] for r in ok}),
        "failures": [{"split_seed": r.get("split_seed"), "init_seed": r.get("init_seed"),
                      "message": r.get("message")} for r in recs if r not in ok][:10],
    }


# -------------------------------------------------------------------------------------------------- the protocol
def _parse_shard(shard: Optional[Union[str, tuple[int, int]]]) -> Optional[tuple[int, int]]:
    if shard is None:
        return None
    if isinstance(shard, str):
        try:
            k, n = (int(v) for v in shard.split("/"))
        except ValueError:
            raise ValueError(f"shard must look like 'K/N' (e.g. 0/2), got {shard!r}") from None
    else:
        k, n = shard
    if not (n >= 1 and 0 <= k < n):
        raise ValueError(f"shard {k}/{n}: need N >= 1 and 0 <= K < N")
    return k, n


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
    split_seeds: Optional[Sequence[int]] = None,
    init_seeds: Optional[Sequence[int]] = None,
    config: Optional[TrainConfig] = None,
    threads: Optional[int] = None,
    progress: bool = True,
    fast: bool = True,
    shard: Optional[Union[str, tuple[int, int]]] = None,
    workers: int = 1,
    device: Optional[Union[str, torch.device]] = None,
) -> dict[str, Any]:
    """Run ``splits × inits`` trainings of ``model_name`` on ``dataset`` and summarise them.

    Args:
        dataset: a name for :func:`~nsde_coin.graph.datasets.load_dataset` or a preprocessed PyG ``Data``.
        model_name: a name of :data:`~nsde_coin.graph.baselines.MODELS` (``coin``, ``coin_base``, ``mlp`` ...).
        hparams: overrides of the model's default hyper-parameters (unknown keys raise ``ValueError``).
        splits, inits: number of random splits and of initialisations per split (seeds ``0..splits-1`` and
            ``0..inits-1`` unless ``split_seeds`` / ``init_seeds`` are given).
        out: JSONL results file; existing records with the same key are skipped (resume). ``None``: in memory.
        root, source: data location and source for a dataset given by name.
        config: optimiser / early-stopping settings (default: the paper's).
        threads: ``torch.set_num_threads`` for the duration of the call.
        progress: show a tqdm bar on stderr.
        fast: use the COIN read-out shortcut where it applies (see module doc).
        shard: ``"K/N"`` — run only the splits with index ≡ K (mod N); N processes can share one ``out`` file.
        workers: run the pending splits in this many spawned processes (each a shard with ``threads`` threads,
            default 1) writing to ``out`` (a temporary file when ``out`` is ``None``); the parent shows the
            progress. Records are identical to a one-process run (each run is seeded by its split and init).
        device: where to train (``"cpu"`` default, ``"cuda"``, ``"cuda:1"`` ...). Initial weights are drawn on the
            CPU under the run's seed, so a run starts from the same weights on every device; the records name the
            device, and GPU runs add ``cuda_peak_mb``. The resume key does not include it (same experiment).

    Returns the summary (see :func:`summarize`) of all requested runs found in ``out`` after the call, with
    ``dataset``, ``model``, ``hparams``, ``requested``, ``new_runs``, ``corrupt_lines`` and ``out``.
    """
    from nsde_coin.graph.datasets import load_dataset

    cfg = config or TrainConfig()
    if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
        raise ValueError(f"threads must be an int >= 1 (or None: leave torch's setting), got {threads!r}")
    hp = resolve_hparams(model_name, hparams)  # bad model / hyper-parameters fail before any data is loaded
    dev = resolve_device(device)
    data = load_dataset(dataset, root=root, source=source) if isinstance(dataset, str) else dataset
    name = str(getattr(data, "name", "graph"))
    src = str(getattr(data, "source", "arrays"))
    model = model_name.lower()
    for what, count, given in (("splits", splits, split_seeds), ("inits", inits, init_seeds)):
        if given is None and (isinstance(count, bool) or int(count) < 1):
            raise ValueError(f"{what} must be an int >= 1, got {count!r}")
    s_seeds = list(range(int(splits))) if split_seeds is None else [int(s) for s in split_seeds]
    i_seeds = list(range(int(inits))) if init_seeds is None else [int(i) for i in init_seeds]
    if not s_seeds or not i_seeds:
        raise ValueError(f"need at least one split and one init, got splits={len(s_seeds)}, inits={len(i_seeds)}")
    sh = _parse_shard(shard)
    if not is_int(workers) or int(workers) < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    if int(workers) > 1 and sh is not None:
        raise ValueError(f"give either workers={workers} or shard={shard!r}, not both (workers shards by itself)")
    todo_splits = [s for k, s in enumerate(s_seeds) if sh is None or k % sh[1] == sh[0]]

    log = ResultsLog(out)
    done = log.keys()
    key_src = src if src != "arrays" else f"arrays:{_fingerprint(data)}"  # user graphs share the default name
    if getattr(data, "lcc", True) is False:
        key_src += ":full-graph"  # the whole graph, not its largest component: other runs (default keys unchanged)
    keys = {(s, i): run_key(name, key_src, model, hp, cfg, s, i) for s in s_seeds for i in i_seeds}
    pending = [(s, i) for s in todo_splits for i in i_seeds if keys[(s, i)] not in done]
    bar = _progress(len(todo_splits) * len(i_seeds), len(todo_splits) * len(i_seeds) - len(pending),
                    f"{name}/{model}", progress)
    new = 0
    if int(workers) > 1 and pending:
        return _run_in_workers(dataset, model_name, hparams, int(workers), pending, i_seeds, keys, bar, out,
                               dict(root=root, source=source, config=cfg, threads=threads or 1, fast=fast,
                                    device=str(dev)),
                               (name, src, model, hp))
    keep_large_blocks()  # per-epoch n×d tensors reuse heap blocks instead of page-faulting (nsde_coin._heap)
    on_dev = data if dev.type == "cpu" or not pending else data.clone().to(dev)  # one copy, only if runs are left
    try:
        with torch_threads(threads):
            by_split: dict[int, list[int]] = {}
            for s, i in pending:
                by_split.setdefault(s, []).append(i)
            for s, inits_todo in by_split.items():
                split = random_split(data.y, s, num_classes=int(getattr(data, "num_classes", int(data.y.max()) + 1)))
                split = split.to(dev)  # once per split, not per init
                for i in inits_todo:
                    rec = _one_run(on_dev, name, src, model, hp, cfg, split, s, i, keys[(s, i)], fast)
                    log.append(rec)
                    new += 1
                    if rec["status"] != "ok":
                        _say(bar, f"run split={s} init={i}: {rec['message']}")
                    bar.update(1)
                    acc = [r["test_acc"] for r in log.records if r.get("test_acc") is not None and r["key"] in
                           keys.values()]
                    if acc:
                        bar.set_postfix(acc=f"{100 * np.mean(acc):.2f}%")
    finally:
        bar.close()
    return _summary(log, keys, name, src, model, hp, cfg, new, out)


def _summary(log: ResultsLog, keys: dict[tuple[int, int], str], name: str, src: str, model: str,
             hp: dict[str, Any], cfg: TrainConfig, new: int, out: Optional[Union[str, os.PathLike]]
             ) -> dict[str, Any]:
    wanted = set(keys.values())
    mine = {r["key"]: r for r in log.records if r.get("key") in wanted}  # last record per key wins
    summary = summarize(mine.values())
    summary.update(dataset=name, source=src, model=model, hparams=hp, train=asdict(cfg),
                   requested=len(keys), new_runs=new, corrupt_lines=log.corrupt_lines,
                   out=str(out) if out is not None else None)
    return summary


def _shard_worker(dataset: Any, model_name: str, hparams: Optional[dict[str, Any]], kwargs: dict[str, Any]) -> None:
    run_protocol(dataset, model_name, hparams, progress=False, **kwargs)


def _finished(path: Path, wanted: set[str]) -> list[dict[str, Any]]:
    """Records of ``wanted`` keys in ``path`` (last per key), without warnings: a worker may be mid-write."""
    try:
        records, _ = _read_records(path)
    except FileNotFoundError:
        return []
    return list({r["key"]: r for r in records if r["key"] in wanted}.values())


def _run_in_workers(dataset: Any, model_name: str, hparams: Optional[dict[str, Any]], workers: int,
                    pending: list[tuple[int, int]], i_seeds: list[int], keys: dict[tuple[int, int], str], bar,
                    out: Optional[Union[str, os.PathLike]], kwargs: dict[str, Any],
                    meta: tuple[str, str, str, dict[str, Any]]) -> dict[str, Any]:
    """``run_protocol`` over the pending splits in ``workers`` spawned shard processes sharing one results file."""
    import multiprocessing
    import tempfile

    splits = sorted({s for s, _ in pending})
    workers = min(workers, len(splits))
    tmp = tempfile.TemporaryDirectory(prefix="nsde_coin_runs_") if out is None else None
    path = Path(tmp.name) / "runs.jsonl" if tmp is not None else Path(out)  # type: ignore[arg-type]
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that holds OpenMP / MKL threads
    procs = [ctx.Process(target=_shard_worker, name=f"nsde-coin-shard-{k}-of-{workers}",
                         args=(dataset, model_name, hparams,
                               {**kwargs, "split_seeds": splits, "init_seeds": i_seeds, "out": path,
                                "shard": (k, workers)}))
             for k in range(workers)]
    pending_keys = {keys[p] for p in pending}
    wanted = set(keys.values())
    done = 0
    # torch warns about beta sparse CSR support when a worker unpickles a graph's features: not the user's concern
    quiet = ",".join(f"ignore:{m}:UserWarning" for m in ("Sparse CSR tensor support", "Sparse invariant checks"))
    env_before = os.environ.get("PYTHONWARNINGS")
    try:
        os.environ["PYTHONWARNINGS"] = quiet if env_before is None else f"{env_before},{quiet}"
        try:
            for proc in procs:
                proc.start()
        finally:
            if env_before is None:
                del os.environ["PYTHONWARNINGS"]
            else:
                os.environ["PYTHONWARNINGS"] = env_before
        while True:
            alive = any(proc.is_alive() for proc in procs)
            recs = _finished(path, wanted)
            now = sum(r["key"] in pending_keys for r in recs)
            bar.update(now - done)
            done = now
            acc = [r["test_acc"] for r in recs if r.get("test_acc") is not None]
            if acc:
                bar.set_postfix(acc=f"{100 * np.mean(acc):.2f}%")
            if not alive:
                break
            time.sleep(1.0)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join()
        bar.close()
    bad = [f"{proc.name} (exit code {proc.exitcode})" for proc in procs if proc.exitcode != 0]
    if bad:
        where = f"kept in {path}; re-run to resume" if tmp is None else "lost with the temporary file (pass out=)"
        raise RuntimeError(f"{len(bad)} worker process(es) failed: {', '.join(bad)}; finished runs are {where}")
    log = ResultsLog(path)
    summary = _summary(log, keys, *meta, kwargs["config"], done, out)
    if tmp is not None:
        tmp.cleanup()
    return summary


def resolve_device(device: Optional[Union[str, torch.device]]) -> torch.device:
    """``torch.device`` of a protocol run; ``ValueError`` naming the valid choices for a bad or unusable one."""
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; valid: 'cpu', 'cuda', 'cuda:N'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available here (torch {torch.__version__}); "
                             f"valid: 'cpu'")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {device!r}: only {count} CUDA device(s); valid: 'cuda:0'..'cuda:{count - 1}'")
    elif dev.type != "cpu":
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


def _one_run(data, name: str, src: str, model: str, hp: dict[str, Any], cfg: TrainConfig, split: Split,
             s: int, i: int, key: str, fast: bool) -> dict[str, Any]:
    dev = data.y.device
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[dev] if cuda else []):
        torch.manual_seed(1_000_003 * s + i)
        net = build_model(model, data, hp)  # parameters are created and drawn on the CPU: same start on any device
        res = train_run(net.to(dev), data.y, split, cfg, fast=fast)
    extra = {"device": str(dev)}
    if cuda:
        extra["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 3)
    rec: dict[str, Any] = {
        "key": key, "dataset": name, "source": src, "nodes": int(data.num_nodes), "model": model, "hparams": hp,
        **asdict(cfg), "split_seed": s, "init_seed": i, **res,
        "wall_time_s": round(time.perf_counter() - t0, 6), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra,
    }
    return rec


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


def _say(bar, text: str) -> None:
    bar.write(text)
