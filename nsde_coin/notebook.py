"""Size switch and figure export for the notebooks in ``notebooks/`` (``from nsde_coin.notebook import by_size``).

Public but not re-exported by :mod:`nsde_coin`: these helpers serve the project's notebooks and figures, not models.

Environment variables:

* ``NSDE_COIN_SMALL`` — ``1``/``true``/``yes`` selects the small mode (seconds per notebook; ``conftest.py`` sets it
  under pytest so CI executes the notebooks quickly); anything else, or unset, selects the full size that produces
  publication-quality figures.
* ``NSDE_COIN_FIGDIR`` — when set, :func:`save_figure` writes PNGs there (the README figures in ``docs/figures`` are
  made this way); when unset it does nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, TypeVar

from nsde_coin._files import atomic_write

__all__ = ["by_size", "notebook_size", "save_figure"]

T = TypeVar("T")


def notebook_size() -> str:
    """``"small"`` when env ``NSDE_COIN_SMALL`` is 1/true/yes (case-insensitive), else ``"full"``."""
    return "small" if os.environ.get("NSDE_COIN_SMALL", "").strip().lower() in ("1", "true", "yes") else "full"


def by_size(small: T, full: T) -> T:
    """``small`` in small mode, ``full`` otherwise (e.g. ``samples = by_size(500, 20_000)``)."""
    return small if notebook_size() == "small" else full


def save_figure(fig: Any, name: str, *, dpi: int = 150) -> Optional[Path]:
    """Save a matplotlib figure as ``$NSDE_COIN_FIGDIR/<name>.png`` when that variable is set; return the path.

    ``name`` must be a plain file stem (letters, digits, ``_``, ``-``); returns ``None`` when no folder is set.
    """
    if not name or not all(c.isalnum() or c in "_-" for c in name):
        raise ValueError(f"name={name!r} must be a non-empty file stem of letters, digits, '_' or '-'")
    folder = os.environ.get("NSDE_COIN_FIGDIR")
    if not folder:
        return None
    return atomic_write(Path(folder) / f"{name}.png",
                        lambda fh: fig.savefig(fh, format="png", dpi=dpi, bbox_inches="tight"))
