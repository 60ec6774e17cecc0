"""Amazon / Coauthor graphs: the graphgallery ``.npz`` copies (pickled SciPy CSR, read with a restricted
unpickler), else PyG's own ``Amazon`` / ``Coauthor`` download."""

from __future__ import annotations

import io
import pickle
import urllib.error
import zipfile
from pathlib import Path
from typing import Any, Optional

import numpy as np
import scipy.sparse as sp
from numpy.lib import format as npy_format

from nsde_coin.datafiles import READ_ERRORS, check_csr, damaged, restore_hint
from nsde_coin.graph.data.preprocess import arrays_from_pyg
from nsde_coin.graph.data.registry import PathLike, graphgallery_stem, missing_file_error

__all__ = ["load_graphgallery", "load_pickled_npz", "read_graphgallery"]


class _CSRUnpickler(pickle.Unpickler):
    """Unpickler that builds only NumPy arrays/dtypes and SciPy CSR matrices.

    graphgallery's files pickle ``scipy.sparse.csr.csr_matrix`` (a module removed in SciPy 2.0); it is mapped to
    ``scipy.sparse``. Any other global (functions, os, builtins ...) raises ``pickle.UnpicklingError``.
    """

    _RECONSTRUCT = np.ndarray.__reduce__(np.empty(0))[0]  # numpy's array _reconstruct, whatever its module is now
    _ALLOWED: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("scipy.sparse.csr", "csr_matrix"): sp.csr_matrix,
        ("scipy.sparse._csr", "csr_matrix"): sp.csr_matrix,
        ("scipy.sparse", "csr_matrix"): sp.csr_matrix,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to unpickle global {module}.{name}; only NumPy arrays and SciPy CSR matrices are allowed"
            ) from None


def load_pickled_npz(path: PathLike) -> dict[str, Any]:
    """Read an ``.npz`` whose object entries are pickles, through :class:`_CSRUnpickler` (never plain ``pickle``).

    Returns ``{key: value}``: 0-d object arrays are unwrapped to the object they hold (a ``csr_matrix`` or dict).
    """
    out: dict[str, Any] = {}
    with zipfile.ZipFile(path) as zf:
        for member in zf.namelist():
            key = member[:-4] if member.endswith(".npy") else member
            with zf.open(member) as fh:
                version = npy_format.read_magic(fh)
                reader = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
                shape, fortran, dtype = reader(fh)
                if dtype.hasobject:
                    arr = _CSRUnpickler(io.BytesIO(fh.read())).load()
                    if isinstance(arr, np.ndarray) and arr.shape == () and arr.dtype == object:
                        arr = arr.item()
                else:
                    count = int(np.prod(shape)) if shape else 1
                    arr = np.frombuffer(fh.read(count * dtype.itemsize), dtype=dtype, count=count)
                    arr = arr.reshape(shape, order="F" if fortran else "C").copy()
            out[key] = arr
    return out

def read_graphgallery(path: Path) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
    """adjacency, features, labels of a graphgallery npz; a damaged file or matrix → one DataFileError line."""
    restore = restore_hint("the graphgallery file", extra=", or delete it to use PyG's download instead "
                                                          "(--source pyg)")
    try:
        z = load_pickled_npz(path)
    except READ_ERRORS as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError)):
            raise
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise damaged(path, f"cannot be read as a graphgallery .npz file (truncated or corrupt? {detail})",
                      restore) from None
    missing = [k for k in ("adj_matrix", "node_attr", "node_label") if k not in z]
    if missing:
        raise damaged(path, f"no array {', '.join(missing)} (it holds {', '.join(sorted(z)) or 'nothing'})", restore)
    adj = check_csr(z["adj_matrix"], path=path, what="adj_matrix", restore=restore)
    x = z["node_attr"]
    x = check_csr(x, path=path, what="node_attr", restore=restore) if sp.issparse(x) else sp.csr_matrix(x)
    y = np.asarray(z["node_label"])
    if y.shape != (adj.shape[0],) or x.shape[0] != adj.shape[0]:
        raise damaged(path, f"{adj.shape[0]} nodes in adj_matrix but node_attr {x.shape} and node_label {y.shape}",
                      restore)
    return adj, x, y


def load_graphgallery(key: str, display: str, root: Optional[Path], cache: Path, source: str
                      ) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
    """Adjacency, features, labels of an Amazon / Coauthor graph: ``<root>/graphgallery/<stem>.npz`` when
    ``source="graphgallery"`` and the file is there, else PyG's download into ``cache``."""
    if source == "graphgallery":
        path = root / "graphgallery" / f"{graphgallery_stem(key)}.npz" if root is not None else None
        if path is not None and path.is_file():
            return read_graphgallery(path)
    # PyG download (Amazon / Coauthor classes read the same gnn-benchmark files)
    from torch_geometric.datasets import Amazon, Coauthor

    cls = Amazon if key.startswith("amazon") else Coauthor
    try:
        ds = cls(root=str(cache / "pyg" / cls.__name__.lower()), name=display)
    except (urllib.error.URLError, OSError) as exc:
        where = (root or Path("<data root>")) / "graphgallery" / f"{graphgallery_stem(key)}.npz"
        raise missing_file_error(f"{cls.__name__} {display}", where, str(exc)) from None
    return arrays_from_pyg(ds[0])

