"""What every benchmark script does with its results, written once: print the JSON and write result files
atomically (:func:`nsde_coin._files.atomic_write`), so that a run killed mid-write, or a full disk, leaves the
previous results file in place instead of a truncated one.

Two cases timed in the same rounds are compared by :func:`median_round_ratio`, the median of their per-round ratios,
so that a drift of a shared host's speed between rounds does not enter the ratio.

Output locations are checked before any work: ``--out`` options use :func:`out_file` / :func:`out_folder` as their
argparse ``type``, so a folder given for a file, a read-only location or a path under a file fails at once in one
usage line, not after minutes of measuring (the CLI's rule, :func:`nsde_coin.commands.common.check_output`).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any, Optional, Union

from nsde_coin._files import atomic_write
from nsde_coin.commands.common import check_output

PathLike = Union[str, Path]


def _checked(value: str, folder: bool) -> Path:
    try:
        return check_output(value, folder=folder)
    except ValueError as err:  # argparse prefixes "argument --out: " itself
        raise argparse.ArgumentTypeError(str(err).removeprefix("--out ")) from None


def out_file(value: str) -> Path:
    """argparse ``type`` of a results-file option: the path, checked writable now (one-line usage error if not)."""
    return _checked(value, folder=False)


def out_folder(value: str) -> Path:
    """argparse ``type`` of a results-folder option: the folder (new or existing), checked writable now."""
    return _checked(value, folder=True)


def write_text(path: PathLike, text: str) -> Path:
    """``text`` into ``path`` atomically (missing folders created); returns the path."""
    return atomic_write(path, text)


def write_json(path: PathLike, result: Any, indent: Optional[int] = 2) -> Path:
    """``result`` as JSON (``indent``, trailing newline) into ``path`` atomically; returns the path."""
    return atomic_write(path, json.dumps(result, indent=indent) + "\n")


def emit_json(result: Any, path: Optional[PathLike] = None) -> str:
    """Print ``result`` as indented JSON and, when ``path`` is given, write the same text there atomically."""
    text = json.dumps(result, indent=2)
    print(text)
    if path is not None:
        atomic_write(path, text + "\n")
    return text


def save_figure(fig: Any, path: PathLike, dpi: int = 110) -> Path:
    """A matplotlib figure as PNG into ``path`` atomically (never a half-written PNG); returns the path."""
    return atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=dpi))


def median_round_ratio(times: list[float], base: list[float]) -> float:
    """Median over rounds r of ``times[r] / base[r]``: two cases timed in the same rounds (equal lengths), each
    round's pair close together in time, so a drift of the machine's speed between rounds does not enter the ratio."""
    if len(times) != len(base) or not times:
        raise ValueError(f"need the same positive number of rounds, got {len(times)} and {len(base)}")
    return statistics.median(t / b for t, b in zip(times, base))
