"""Shared output of the CLI commands: plain-text tables, common options, run metadata and the JSON record.

Every application command prints a table (or, with ``--json``, the JSON record) and writes the record to
``--out`` when given. The record carries the wall time, thread count, torch version and CPU model so numbers can be
compared across machines.

Results are never lost to a bad output location: every command calls :func:`check_output` on its ``--out`` before
any work (a folder where a file is expected, a file where a folder is expected, a folder that cannot be written:
one-line ``ValueError``), writes each result file atomically (:func:`nsde_coin._files.atomic_write`) and, if the
final write still fails, saves the result to a temporary folder and says where in one line on stderr
(:func:`save_result`; the command then exits 1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import torch

from nsde_coin._files import atomic_write, write_with_fallback
from nsde_coin.notebook import notebook_size

__all__ = ["cpu_model", "format_table", "small_mode", "add_common_arguments", "add_coin_arguments", "set_threads",
           "environment", "emit", "check_output", "save_result"]


def small_mode() -> bool:
    """True in small mode (env ``NSDE_COIN_SMALL``, set under pytest; the same rule as the notebooks' switch)."""
    return notebook_size() == "small"


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces, a dashed rule under the header."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[k]) for r in cells) for k in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """``--out``, ``--json``, ``--threads``, ``--no-progress``."""
    o = p.add_argument_group("output")
    o.add_argument("--out", type=Path, default=None, help="write the JSON record to this file")
    o.add_argument("--json", action="store_true", help="print the JSON record instead of the table")
    o.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; 1 is fastest on a loaded machine)")
    o.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")


def add_coin_arguments(g: argparse._ArgumentGroup, *, k: int, m: int, layer_num: int, sigma2: float, epochs: int,
                       lr: float, optimizer: str) -> None:
    """The COIN head options shared by the kNN-graph commands (few-shot, tabular), with per-command defaults:
    ``--k``, ``--m``, ``--layer-num``, ``--sigma2``, ``--solver``, ``--allow-unstable``, ``--epochs``, ``--lr``."""
    g.add_argument("--k", type=int, default=k, help=f"neighbours per node incl. itself (default {k})")
    g.add_argument("--m", type=int, default=m, help=f"Gaussian scale = m-th nearest distance, self first (default {m})")
    g.add_argument("--layer-num", type=int, default=layer_num, help=f"diffusion steps (default {layer_num})")
    g.add_argument("--sigma2", type=float, default=sigma2, help=f"diffusion step σ² (default {sigma2})")
    g.add_argument("--solver", default="explicit", help="graph solver: explicit, implicit, exact, random_walk")
    g.add_argument("--allow-unstable", action="store_true", help="let explicit run past σ²·λ_max ≥ 2")
    g.add_argument("--epochs", type=int, default=epochs, help=f"{optimizer} steps (default {epochs})")
    g.add_argument("--lr", type=float, default=lr, help=f"{optimizer} learning rate (default {lr})")


def set_threads(threads: Optional[int]) -> int:
    """Apply ``--threads`` (validated) and return the thread count in use."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def cpu_model() -> str:
    """The CPU model name (from /proc/cpuinfo where available), for benchmark and run records."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(wall_s: float) -> dict[str, Any]:
    """Run metadata for the JSON record."""
    return {"wall_s": round(wall_s, 2), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "cpu": cpu_model(), "command": " ".join(sys.argv)}


def check_output(path: Optional[Union[str, os.PathLike]], *, folder: bool = False, append: bool = False,
                 option: str = "--out") -> Optional[Path]:
    """Check, before any work, that results can be written to ``path`` (``None``: nothing to check).

    ``folder=False``: ``path`` is a file to create or replace (an existing one must be writable: a read-only result
    is not replaced; ``append=True``: a file appended to); ``folder=True``: a folder to write files into. The nearest
    existing ancestor must be a folder in which a file can really be created (probed with a temporary file, so a
    read-only file system or missing permissions are caught for every user, root included). Raises ``ValueError`` in
    one line naming the option, the
    path and what is wrong; creates nothing.
    """
    if path is None:
        return None
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path} is an existing file, but it names the folder the result files are written "
                         f"into; give a folder (new or existing)")
    if not folder and path.is_dir():
        raise ValueError(f"{option} {path} is a folder, but it names the result file; give a file name, e.g. "
                         f"{path / 'result.json'}")
    if not folder and append and path.exists():
        try:
            with open(path, "ab"):
                pass
        except OSError as exc:
            raise ValueError(f"{option} {path}: the file cannot be appended to ({type(exc).__name__}: "
                             f"{exc.strerror or exc})") from None
    elif not folder and path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{option} {path}: the file is read-only; give another file name or make it writable")
    base = path if folder else path.parent
    anc = Path(os.path.abspath(base))
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise ValueError(f"{option} {path}: {anc} is a file, so no folder can be created under it")
    try:
        fd, probe = tempfile.mkstemp(dir=anc, prefix=".nsde_coin_probe_")
    except OSError as exc:
        raise ValueError(f"{option} {path}: cannot write into {anc} ({type(exc).__name__}: {exc.strerror or exc}); "
                         f"give a writable location") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return path


def save_result(path: Union[str, os.PathLike], save: Callable[[Path], object], command: str) -> Path:
    """``save(path)`` (which should write atomically, e.g. with :func:`~nsde_coin._files.atomic_write`); if it fails
    with an ``OSError``, ``save`` into the fallback folder instead and say so in one stderr line::

        nsde-coin <command>: warning: could not write <path> (<error>); the result was saved to <fallback> instead

    Returns where the result is (``path`` or the fallback file).
    """
    where, reason = write_with_fallback(path, save)
    if reason is not None:
        sys.stdout.flush()
        print(f"nsde-coin {command}: warning: could not write {path} ({reason}); the result was saved to {where} "
              f"instead", file=sys.stderr)
    return where


def emit(record: dict[str, Any], table: str, args: argparse.Namespace) -> int:
    """Print the table (or the JSON with ``--json``) and write the JSON to ``--out`` (atomically, with the fallback
    of :func:`save_result`). Returns the exit code: 0, or 1 when the record had to go to the fallback folder."""
    text = json.dumps(record, indent=1, default=str)
    print(text if args.json else table)
    if args.out is None:
        return 0
    where = save_result(args.out, lambda p: atomic_write(p, text + "\n"), args.command)
    return 0 if where == Path(args.out) else 1
