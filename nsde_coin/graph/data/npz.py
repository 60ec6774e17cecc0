"""The gnn-benchmark ``.npz`` files (Cora, CiteSeer as the paper's protocol uses them): find, download, read.

Every index is checked before SciPy sees it (:mod:`nsde_coin.datafiles`); a download is written atomically.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

import numpy as np
import scipy.sparse as sp

from nsde_coin.datafiles import csr_from_parts, damaged, read_npz, restore_hint
from nsde_coin.graph.data.registry import missing_file_error

__all__ = ["load_npz", "read_gnn_benchmark_npz"]

_NPZ_URL = "https://github.com/shchur/gnn-benchmark/raw/master/data/npz/{name}.npz"


def read_gnn_benchmark_npz(path: Path, restore: str) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
    """The gnn-benchmark arrays, every index checked before SciPy sees it (a bad index used to segfault)."""
    f = read_npz(path, restore, what="a gnn-benchmark .npz file")
    need = ["adj_data", "adj_indices", "adj_indptr", "adj_shape", "labels"]
    need += ["attr_data", "attr_indices", "attr_indptr", "attr_shape"] if "attr_matrix" not in f else []
    missing = [k for k in need if k not in f]
    if missing:
        raise damaged(path, f"no array {', '.join(missing)} (it holds {', '.join(sorted(f)) or 'nothing'})", restore)
    adj = csr_from_parts(f["adj_data"], f["adj_indices"], f["adj_indptr"], f["adj_shape"], path=path,
                         what="adjacency", restore=restore, prefix="adj_")
    if "attr_matrix" in f:
        x = sp.csr_matrix(f["attr_matrix"])
    else:
        x = csr_from_parts(f["attr_data"], f["attr_indices"], f["attr_indptr"], f["attr_shape"], path=path,
                           what="feature matrix", restore=restore, prefix="attr_")
    y = np.asarray(f["labels"])
    if y.shape != (adj.shape[0],) or x.shape[0] != adj.shape[0] or not np.issubdtype(y.dtype, np.integer):
        raise damaged(path, f"{adj.shape[0]} nodes in the adjacency but features {x.shape} and labels {y.shape} "
                            f"of dtype {y.dtype}", restore)
    return adj, x, y


def load_npz(key: str, root: Optional[Path], cache: Path) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
    """Adjacency, features, labels of ``<root>/npz/<key>.npz`` (else the cache; else downloaded into it)."""
    name = key  # cora / citeseer
    url = _NPZ_URL.format(name=name)
    cands = [root / "npz" / f"{name}.npz"] if root is not None else []
    cands.append(cache / "npz" / f"{name}.npz")
    path = next((p for p in cands if p.is_file()), None)
    if path is None:
        path = cache / "npz" / f"{name}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_suffix(".part")
        try:
            urllib.request.urlretrieve(url, part)  # noqa: S310 (fixed https URL)
        except (urllib.error.URLError, OSError) as exc:
            part.unlink(missing_ok=True)
            raise missing_file_error(f"gnn-benchmark file {name}.npz", cands[0], str(exc)) from None
        part.replace(path)  # never leave a truncated download under the final name
    return read_gnn_benchmark_npz(path, restore_hint(url, download=True))

