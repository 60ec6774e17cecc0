"""Run records: the resume key, the append-only JSONL results file, the sweep lock on it, and the summary.

The driver of a sweep is the only writer of its results file: it holds an exclusive ``fcntl`` lock on the sidecar
``<out>.lock`` (which names its PID and host) for the whole sweep, so a second driver on the same file refuses at once
instead of running every job again; the lock dies with the process (``kill -9`` included), so a stale file never
blocks a rerun.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import warnings
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from nsde_coin.graph.experiment.train import TrainConfig

__all__ = ["ResultsInUseError", "ResultsLog", "SweepLock", "run_key", "summarize"]


def run_key(dataset: str, source: str, model: str, hparams: dict[str, Any], cfg: TrainConfig, split_seed: int,
            init_seed: int, settings: Optional[dict[str, Any]] = None) -> str:
    """Stable identifier of one run (hash of everything that defines it).

    ``settings``: the execution settings that change a result (threads, read-out path, device type, dtype) that
    differ from their defaults; empty or ``None`` gives the key of a default run, as written before they were keyed.
    """
    spec = {"dataset": dataset, "source": source, "model": model, "hparams": hparams, "train": asdict(cfg),
            "split": int(split_seed), "init": int(init_seed)}
    if settings:
        spec["settings"] = settings
    blob = json.dumps(spec, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:20]


class ResultsLog:
    """An append-only JSONL file of run records (or an in-memory list when ``path`` is ``None``).

    Loading keeps every valid record and lists the line numbers of corrupt ones in ``corrupt_lines`` (each is also
    reported with a ``RuntimeWarning``). Appends are flushed and fsync'ed per record by the one process that holds
    the :class:`SweepLock`; a partial last line (a writer killed mid-write) is ended before the next record.
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
                          f"{len(self.records)} good record(s); a run with no good record is redone when requested",
                          RuntimeWarning, stacklevel=2)

    def keys(self) -> set[str]:
        """The run keys (:func:`run_key`) of the records held."""
        return {r["key"] for r in self.records}

    def append(self, record: dict[str, Any]) -> None:
        """Add one record and write it as a JSON line (flushed and fsync'ed; the driver is the only writer)."""
        self.records.append(record)
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, sort_keys=True) + "\n"
        with open(self.path, "a+b") as fh:
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



class ResultsInUseError(RuntimeError, ValueError):
    """Another live driver holds the results file's lock (the message names its PID and host). Also a ValueError:
    the CLI prints it as one line (the --out given is in use)."""


class SweepLock:
    """Exclusive lock of a results file for the duration of a sweep: ``with SweepLock(out): ...``.

    Takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``<out>.lock`` and writes ``pid host`` into it; raises
    :class:`ResultsInUseError` at once (naming the holder) when another process holds it. The kernel drops the lock
    when the holder dies, however it dies. ``path=None`` (results in memory) locks nothing. On platforms without
    ``fcntl`` it locks nothing either.
    """

    def __init__(self, path: Optional[Union[str, os.PathLike]]):
        self.path = None if path is None else Path(f"{os.fspath(path)}.lock")
        self._fd: Optional[int] = None

    def __enter__(self) -> SweepLock:
        if self.path is None:
            return self
        try:
            import fcntl
        except ImportError:  # pragma: no cover - non-POSIX
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").split() or ["?", "?"]
            os.close(fd)
            out = str(self.path)[: -len(".lock")]
            raise ResultsInUseError(
                f"{out} is being written by another sweep (driver PID {holder[0]} on host {holder[-1]}, lock "
                f"{self.path}); wait for it or stop it: its finished runs are kept and a rerun resumes") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock; the file stays (harmless: a lock is only held by a live fd)
            self._fd = None
