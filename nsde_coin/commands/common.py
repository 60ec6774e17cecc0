"""Shared output of the CLI commands: plain-text tables, common options, run metadata and the JSON record.

Every application command prints a table (or, with ``--json``, the JSON record) and writes the record to
``--out`` when given. The record carries the wall time, thread count, torch version and CPU model so numbers can be
compared across machines.

One vocabulary across the sub-commands (tests/commands/test_cli_vocabulary.py holds the table): ``--out FILE`` is
always the results file, and a figure goes next to it as ``FILE`` with ``.png``; ``--epochs`` is the epoch budget (a
maximum where early stopping ends training sooner); ``--layer-num`` / ``--sigma2`` are the diffusion steps and the
step σ²; ``--threads`` defaults to 1; ``--json`` prints the record instead of the table; ``--no-progress`` hides the
progress bars. Every option's help shows its default (:class:`HelpFormatter`); an old spelling stays for one release
as a hidden alias that says on stderr which flag replaces it (:func:`add_deprecated_alias`).

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
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import torch

from nsde_coin._files import atomic_write, write_with_fallback
from nsde_coin.machine import cpu_model, machine_facts
from nsde_coin.notebook import notebook_size

__all__ = ["cpu_model", "format_table", "small_mode", "HelpFormatter", "add_deprecated_alias", "add_common_arguments",
           "add_coin_arguments", "set_threads", "environment", "emit", "check_output", "save_result"]

THREADS_HELP = ("torch CPU threads (default 1: these tensors are small and, on a shared or loaded CPU, extra threads "
                "mostly wait for each other; raise it on an idle multi-core machine)")
"""The help of ``--threads``, the same in every sub-command."""


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


def _shown(value: Any) -> str:
    """A default as a user types it: list items separated by spaces."""
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return str(value)


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, plus ``(default: X)`` after the help of every option that takes a value, has a default
    and whose help does not already say it (flags, whose default is off, are left alone)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text.lower() or not action.option_strings or action.nargs == 0
                or action.default is None or action.default is argparse.SUPPRESS):
            return text
        return f"{text} (default: {_shown(action.default).replace('%', '%%')})"


class _DeprecatedAlias(argparse.Action):
    """An old spelling of an option: stores like the new one and, each time it is used, says on stderr which flag
    replaces it."""

    def __init__(self, option_strings: list[str], dest: str, *, new: str, **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: Optional[str] = None) -> None:
        print(f"{parser.prog}: warning: {option_string} is deprecated, use {self.new} (the old spelling is removed "
              f"in the next release)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_deprecated_alias(p: Union[argparse.ArgumentParser, argparse._ArgumentGroup], old: str, new: str) -> None:
    """Accept ``old`` (hidden from ``--help``) as the earlier spelling of the option ``new``, already added to ``p``:
    same destination, type and number of values, plus a one-line deprecation warning on stderr naming ``new``."""
    target = next(a for a in p._actions if new in a.option_strings)
    p.add_argument(old, dest=target.dest, type=target.type, nargs=target.nargs, metavar=target.metavar,
                   default=argparse.SUPPRESS, help=argparse.SUPPRESS, action=_DeprecatedAlias, new=new)


def add_common_arguments(p: argparse.ArgumentParser, figure: Optional[str] = None) -> None:
    """``--out``, ``--json``, ``--threads``, ``--no-progress``; ``figure`` names the PNG written next to ``--out``
    (``None``: the command writes no figure)."""
    o = p.add_argument_group("output")
    extra = f"; {figure} goes next to it as FILE with .png" if figure else ""
    o.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help=f"results file: the JSON record, written atomically{extra} (default: none, the record is "
                        f"only printed)")
    o.add_argument("--json", action="store_true", help="print the JSON record instead of the table")
    o.add_argument("--threads", type=int, default=1, help=THREADS_HELP)
    o.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")


def check_coin_arguments(args: argparse.Namespace) -> None:
    """Refuse an unknown ``--solver`` (one line listing the graph solvers) before the command loads data or starts a
    progress bar; the other COIN options are checked by the command's config."""
    from nsde_coin.solvers import get_solver

    try:
        get_solver(args.solver, family="graph")
    except ValueError as err:
        raise ValueError(f"--solver: {err}") from None


def add_coin_arguments(g: argparse._ArgumentGroup, *, k: int, m: int, layer_num: int, sigma2: float, epochs: int,
                       lr: float, optimizer: str) -> None:
    """The COIN head options shared by the kNN-graph commands (few-shot, tabular), with per-command defaults:
    ``--k``, ``--m``, ``--layer-num``, ``--sigma2``, ``--solver``, ``--allow-unstable``, ``--epochs``, ``--lr``."""
    g.add_argument("--k", type=int, default=k, help=f"neighbours per node incl. itself (default {k})")
    g.add_argument("--m", type=int, default=m, help=f"Gaussian scale = m-th nearest distance, self first (default {m})")
    g.add_argument("--layer-num", type=int, default=layer_num, help=f"diffusion steps (default {layer_num})")
    g.add_argument("--sigma2", type=float, default=sigma2, help=f"diffusion step σ² (default {sigma2})")
    g.add_argument("--solver", default="explicit",
                   help="graph solver: explicit, implicit, exact, random_walk (default explicit)")
    g.add_argument("--allow-unstable", action="store_true",
                   help="let the explicit solver run past sigma2·lambda_max >= 2 (otherwise an error)")
    g.add_argument("--epochs", type=int, default=epochs, help=f"epoch budget: {optimizer} steps (default {epochs})")
    g.add_argument("--lr", type=float, default=lr, help=f"{optimizer} learning rate (default {lr})")


def set_threads(threads: Optional[int]) -> int:
    """Apply ``--threads`` (validated; ``None`` leaves torch's setting) and return the thread count in use."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def environment(wall_s: float) -> dict[str, Any]:
    """Run metadata for the JSON record."""
    return {"wall_s": round(wall_s, 2), **machine_facts(), "command": " ".join(sys.argv)}


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
