"""Shared output of the CLI commands: plain-text tables, common options, run metadata and the JSON record.

Every application command prints a table (or, with ``--json``, the JSON record) and writes the record to
``--out`` when given. The record carries the wall time, thread count, torch version and CPU model so numbers can be
compared across machines.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import torch

from nsde_coin._nbsize import notebook_size

__all__ = ["cpu_model", "format_table", "small_mode", "add_common_arguments", "add_coin_arguments", "set_threads",
           "environment", "emit"]


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


def emit(record: dict[str, Any], table: str, args: argparse.Namespace) -> None:
    """Print the table (or the JSON with ``--json``) and write the JSON to ``--out``."""
    text = json.dumps(record, indent=1, default=str)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text if args.json else table)
