"""The data-set registry: canonical names and spellings, sources, and where files are looked for and cached.

``DATASET_NAMES`` lists the graphs :func:`nsde_coin.graph.datasets.load_dataset` knows; :func:`canonical_name` maps
a user spelling to one of them; :func:`default_data_root` / :func:`default_cache_dir` are the offline copy and the
writable cache; :func:`missing_file_error` is the one message for a file that is neither there nor downloadable.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional, Union

__all__ = ["DATASET_NAMES", "canonical_name", "default_cache_dir", "default_data_root",
           "graphgallery_stem", "missing_file_error", "repo_root", "source_info"]

PathLike = Union[str, os.PathLike]

# name -> (default source, valid sources, display name used by PyG / the files)
_DATASETS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "cora": ("npz", ("npz", "planetoid"), "Cora"),
    "citeseer": ("npz", ("npz", "planetoid"), "CiteSeer"),
    "pubmed": ("planetoid", ("planetoid",), "PubMed"),
    "amazon_computers": ("graphgallery", ("graphgallery", "pyg"), "Computers"),
    "amazon_photo": ("graphgallery", ("graphgallery", "pyg"), "Photo"),
    "coauthor_cs": ("graphgallery", ("graphgallery", "pyg"), "CS"),
    "coauthor_physics": ("graphgallery", ("graphgallery", "pyg"), "Physics"),
}
# accepted spellings -> canonical name
_ALIASES = {
    "computers": "amazon_computers", "amazon-computers": "amazon_computers", "amazon_cs": "amazon_computers",
    "photo": "amazon_photo", "amazon-photo": "amazon_photo",
    "cs": "coauthor_cs", "coauthor-cs": "coauthor_cs",
    "physics": "coauthor_physics", "coauthor-physics": "coauthor_physics", "coauthor_phy": "coauthor_physics",
}
# graphgallery file stems (shared/data/graphgallery/<stem>.npz)
_GRAPHGALLERY_FILES = {"amazon_computers": "amazon_cs", "amazon_photo": "amazon_photo",
                       "coauthor_cs": "coauthor_cs", "coauthor_physics": "coauthor_phy"}

DATASET_NAMES: tuple[str, ...] = tuple(_DATASETS)


def source_info(key: str) -> tuple[str, tuple[str, ...], str]:
    """(default source, valid sources, display name used by PyG / the files) of a canonical name."""
    return _DATASETS[key]


def graphgallery_stem(key: str) -> str:
    """File stem of an Amazon / Coauthor graph in ``<root>/graphgallery/<stem>.npz``."""
    return _GRAPHGALLERY_FILES[key]


def canonical_name(name: str) -> str:
    """Map a user spelling (``"Cora"``, ``"photo"``, ``"coauthor-cs"``) to the canonical key; unknown → ValueError."""
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a str, got {type(name).__name__} ({name!r})")
    key = name.strip().lower().replace(" ", "_")
    key = _ALIASES.get(key, key)
    if key not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}")
    return key


def repo_root() -> Path:
    """The repository root (the folder holding ``nsde_coin/``)."""
    return Path(__file__).resolve().parents[3]


def default_data_root() -> Optional[Path]:
    """Offline data folder: ``$NSDE_COIN_DATA``, else ``<repo>/../shared/data`` if it exists, else ``None``."""
    env = os.environ.get("NSDE_COIN_DATA")
    if env:
        return Path(env)
    cand = repo_root().parent / "shared" / "data"
    return cand if cand.is_dir() else None


def default_cache_dir() -> Path:
    """Writable cache (PyG ``processed/`` files, downloads): ``$NSDE_COIN_CACHE`` or ``~/.cache/nsde_coin``."""
    env = os.environ.get("NSDE_COIN_CACHE")
    path = Path(env) if env else Path.home() / ".cache" / "nsde_coin"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_probe"
        probe.touch()
        probe.unlink()
    except OSError:
        path = Path(tempfile.gettempdir()) / "nsde_coin_cache"
        path.mkdir(parents=True, exist_ok=True)
    return path

def missing_file_error(what: str, where: Path, detail: str = "") -> FileNotFoundError:
    """The error for a data file that is neither at ``where`` nor downloadable (``detail``: why not)."""
    extra = f" ({detail})" if detail else ""
    return FileNotFoundError(
        f"{what} not found and could not be downloaded{extra}. Put the file(s) at {where} (or pass --root DIR / set "
        f"NSDE_COIN_DATA to a folder laid out as planetoid/<Name>/raw/, npz/<name>.npz, graphgallery/<name>.npz)"
    )
