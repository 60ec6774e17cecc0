"""The Planetoid release (PubMed; Cora / CiteSeer with ``source="planetoid"``) through PyG's ``Planetoid``.

The raw folder of the offline copy is copied into the cache first (PyG writes ``processed/`` next to ``raw/`` and the
shared folder is read-only), atomically, and again when a copy's file sizes differ from the source; a file PyG cannot
read raises one :class:`~nsde_coin.errors.DataFileError` line naming it and saying whether the copy or the original
is bad.
"""

from __future__ import annotations

import filecmp
import shutil
import tempfile
import urllib.error
from pathlib import Path
from typing import Optional

import numpy as np
import scipy.sparse as sp

from nsde_coin.datafiles import READ_ERRORS, damaged
from nsde_coin.errors import DataFileError
from nsde_coin.graph.data.preprocess import arrays_from_pyg
from nsde_coin.graph.data.registry import missing_file_error

__all__ = ["load_planetoid"]

_PLANETOID_URL = "https://github.com/kimiyoung/planetoid/raw/master/data"


def _same_files(src: Path, dst: Path) -> bool:
    """``dst`` holds the files of ``src`` with the same sizes (a copy cut short is copied again)."""
    if not dst.is_dir():
        return False
    want = {p.name: p.stat().st_size for p in src.iterdir()}
    have = {p.name: p.stat().st_size for p in dst.iterdir()}
    return want == have


def _copy_raw(raw_src: Path, raw_dst: Path) -> None:
    """Copy the Planetoid raw folder into the cache atomically (a temporary folder, then one rename)."""
    shutil.rmtree(raw_dst.parent, ignore_errors=True)
    raw_dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".raw-", dir=raw_dst.parent))
    try:
        shutil.copytree(raw_src, tmp / "raw")
        (tmp / "raw").replace(raw_dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _planetoid_damage(exc: BaseException, key: str, raw_dst: Path,
                      raw_src: Optional[Path]) -> Optional[DataFileError]:
    """The DataFileError for a Planetoid raw file PyG could not read: which file (from the reader's frame), and
    whether the cache copy or the original is bad. ``None`` for an ``OSError`` raised outside the reader."""
    bad = None
    tb = exc.__traceback__
    while tb is not None:  # PyG's read_file(folder, prefix, name) holds the path it was reading
        if tb.tb_frame.f_code.co_name == "read_file" and "path" in tb.tb_frame.f_locals:
            bad = Path(str(tb.tb_frame.f_locals["path"]))
        tb = tb.tb_next
    detail = " ".join(f"{type(exc).__name__}: {exc}".split())
    if bad is None:
        if isinstance(exc, OSError):  # not raised while reading a raw file: a download/permission problem
            return None
        return damaged(raw_dst.parent, f"the Planetoid files ind.{key}.* cannot be read (truncated or corrupt? "
                                       f"{detail})", "delete this folder so it is copied or downloaded again")
    src = raw_src / bad.name if raw_src is not None else None
    if src is not None and src.is_file() and not filecmp.cmp(src, bad, shallow=False):
        restore = f"delete {raw_dst.parent} so it is copied again from {raw_src}"
    elif src is not None and src.is_file():
        bad, restore = src, f"replace it with a good copy of {_PLANETOID_URL}/{src.name}"
    else:
        restore = f"delete {raw_dst.parent} so it is downloaded again"
    return damaged(bad, f"cannot be read as a Planetoid raw file (truncated or corrupt? {detail})", restore)


def load_planetoid(key: str, display: str, root: Optional[Path], cache: Path
                   ) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray, int]:
    """Adjacency, features, labels and class count of the Planetoid graph ``display`` (PyG's name, e.g. "PubMed")."""
    from torch_geometric.datasets import Planetoid

    raw_src = root / "planetoid" / display / "raw" if root is not None else None
    dest = cache / "planetoid"
    raw_dst = dest / display / "raw"
    if raw_src is not None and raw_src.is_dir():
        if not _same_files(raw_src, raw_dst):
            _copy_raw(raw_src, raw_dst)
    else:
        raw_src = None
    try:
        ds = Planetoid(root=str(dest), name=display)
    except (urllib.error.URLError, OSError) as exc:
        err = _planetoid_damage(exc, key, raw_dst, raw_src)
        if err is not None and not isinstance(exc, (urllib.error.URLError, FileNotFoundError, PermissionError)):
            raise err from None
        where = (root / "planetoid" / display / "raw") if root is not None else dest / display / "raw"
        raise missing_file_error(f"Planetoid raw files ind.{key}.*", where, str(exc)) from None
    except READ_ERRORS as exc:
        raise _planetoid_damage(exc, key, raw_dst, raw_src) from None
    return (*arrays_from_pyg(ds[0]), int(ds.num_classes))

