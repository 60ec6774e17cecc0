"""Reading data files so that a damaged file ends in one :class:`~nsde_coin.errors.DataFileError` line.

A truncated download, an interrupted copy or a corrupted disk block must never reach the user as a raw
``BadZipFile``/``EOFError`` traceback, and an out-of-range index in a sparse matrix must never reach SciPy's C code
(which then reads outside its arrays: a segmentation fault with no message). Every loader of the project reads its
files through these helpers, and every message has the same three parts::

    <file>: <what is wrong with it>; <how to restore it>

* :func:`damaged` — build that error (``restore`` is a sentence such as :func:`restore_hint` returns).
* :func:`restore_hint` — "replace it with a good copy of <origin>, or delete it so it is downloaded again".
* :func:`read_npz` — every array of an ``.npz`` read eagerly, any read error mapped to :func:`damaged`.
* :func:`csr_from_parts` — a SciPy CSR matrix from ``(data, indices, indptr, shape)`` after checking every index
  (``O(nnz)``, once per file) so SciPy never sees an inconsistent matrix.
* :func:`check_csr` — the same checks for a CSR matrix that already exists (e.g. unpickled from a file).
"""

from __future__ import annotations

import os
import pickle
import zipfile
import zlib
from typing import Any, Optional, Union

import numpy as np
import scipy.sparse as sp

from nsde_coin.errors import DataFileError

__all__ = ["READ_ERRORS", "check_csr", "csr_from_parts", "damaged", "read_npz", "restore_hint"]

PathLike = Union[str, os.PathLike]

# what the readers raise on truncated / corrupt bytes (OSError only for its "bad content" cases, see _is_damage)
READ_ERRORS: tuple[type[BaseException], ...] = (zipfile.BadZipFile, EOFError, ValueError, zlib.error,
                                                pickle.UnpicklingError, KeyError, IndexError, OSError)
_NOT_DAMAGE = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def _is_damage(exc: BaseException) -> bool:
    """A read error that says the bytes are bad (not that the file is missing or unreadable for the user)."""
    return isinstance(exc, READ_ERRORS) and not isinstance(exc, _NOT_DAMAGE)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "no details"
    return f"{type(exc).__name__}: {text}"


def damaged(path: PathLike, problem: str, restore: str) -> DataFileError:
    """``DataFileError("<path>: <problem>; <restore>")`` — one line (newlines in ``problem`` are folded)."""
    return DataFileError(f"{path}: {' '.join(problem.split())}; {restore}")


def restore_hint(origin: Optional[str] = None, *, download: bool = False, extra: str = "") -> str:
    """The "how to restore it" sentence: a fresh copy of ``origin`` and/or deleting the file to re-download it."""
    parts = []
    if origin:
        parts.append(f"replace it with a good copy of {origin}")
    if download:
        parts.append("delete it so that it is downloaded again")
    text = " or ".join(parts) if parts else "replace it with a good copy"
    return f"{text}{extra}"


def read_npz(path: PathLike, restore: str, *, what: str = "an .npz file") -> dict[str, np.ndarray]:
    """All arrays of a plain ``.npz`` (no pickles), read eagerly; a truncated/corrupt file → :func:`damaged`."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except BaseException as exc:
        if not _is_damage(exc):
            raise
        raise damaged(path, f"cannot be read as {what} (truncated or corrupt? {_reason(exc)})", restore) from None


def _check_parts(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int], prefix: str,
                 what: str) -> Optional[str]:
    """The first inconsistency of CSR parts (a phrase naming the array ``prefix + "indices"`` ...), or ``None``."""
    n, m = shape
    for name, arr in (("indices", indices), ("indptr", indptr)):
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            return f"{prefix}{name} must be a 1-D integer array, got dtype {arr.dtype} and shape {arr.shape}"
    if data.ndim != 1 or data.shape[0] != indices.shape[0]:
        return f"{prefix}data has shape {data.shape} but {prefix}indices has {indices.shape[0]} entries"
    if indptr.shape[0] != n + 1:
        return f"{prefix}indptr has {indptr.shape[0]} entries, expected rows + 1 = {n + 1} for the {n}×{m} {what}"
    if indptr[0] != 0 or indptr[-1] != indices.shape[0]:
        return (f"{prefix}indptr runs from {int(indptr[0])} to {int(indptr[-1])}, expected 0 to "
                f"{indices.shape[0]} (the number of stored entries)")
    if n and np.any(np.diff(indptr) < 0):
        return f"{prefix}indptr decreases at row {int(np.flatnonzero(np.diff(indptr) < 0)[0])}"
    if indices.size:
        lo, hi = int(indices.min()), int(indices.max())
        if lo < 0 or hi >= m:
            bad = lo if lo < 0 else hi
            return f"{prefix}indices holds column {bad}, outside [0, {m}) of the {n}×{m} {what}"
    return None


def csr_from_parts(data: Any, indices: Any, indptr: Any, shape: Any, *, path: PathLike, what: str,
                   restore: str, prefix: str = "") -> sp.csr_matrix:
    """``sp.csr_matrix((data, indices, indptr), shape)`` after checking the parts. ``what`` names the matrix and
    ``prefix`` the arrays in the message (``"adjacency"``, ``"adj_"`` → "adj_indices holds column 9, outside
    [0, 4) of the 4×4 adjacency"). Raises :class:`DataFileError` naming the first inconsistency."""
    shape_arr = np.asarray(shape)
    if shape_arr.shape != (2,) or not np.issubdtype(shape_arr.dtype, np.integer) or shape_arr.min() < 0:
        raise damaged(path, f"{prefix}shape of the {what} must be two non-negative integers, got "
                            f"{shape_arr.tolist()}", restore)
    dims = (int(shape_arr[0]), int(shape_arr[1]))
    parts = np.asarray(data), np.asarray(indices), np.asarray(indptr)
    problem = _check_parts(*parts, dims, prefix, what)
    if problem is not None:
        raise damaged(path, problem, restore)
    return sp.csr_matrix(parts, shape=dims)


def check_csr(mat: Any, *, path: PathLike, what: str, restore: str) -> sp.csr_matrix:
    """Check a CSR matrix that already exists (e.g. unpickled) the same way as :func:`csr_from_parts`."""
    if not isinstance(mat, sp.csr_matrix):
        raise damaged(path, f"{what} must be a SciPy CSR matrix, got {type(mat).__name__}", restore)
    shape = mat.shape
    problem = _check_parts(np.asarray(mat.data), np.asarray(mat.indices), np.asarray(mat.indptr),
                           (int(shape[0]), int(shape[1])), f"{what}.", what)
    if problem is not None:
        raise damaged(path, problem, restore)
    return mat

