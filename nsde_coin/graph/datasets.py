"""Real graph data sets with the paper's preprocessing (Shchur et al. 2018 protocol).

Every loader returns a PyG :class:`~torch_geometric.data.Data` built by :func:`preprocess`:

* the graph is made **unweighted, undirected, without self-loops**, then cut to its **largest connected component**
  (``lcc=True``, the paper's protocol);
* node features are **binarised, then row-normalised** (each non-zero row sums to 1; all-zero rows stay zero).

Feature storage (decided once, for every loader): ``data.x_csr`` is always the feature matrix as a sparse CSR
tensor — COIN's d×d base layer and the first layer of every baseline multiply it (≈ 1% non-zeros on Cora), which is
where their speed comes from. ``data.x`` is a *dense* ``float32`` tensor ``(n, d)`` when that is small
(``dense=None``, the default: at most :data:`DENSE_LIMIT_BYTES`; Cora, CiteSeer, PubMed, Amazon Photo) so that
plain PyG code works unchanged, and otherwise *is* the CSR tensor (Coauthor Physics is 34493 × 8415 = 1.2 GB dense
in float32, a copy COIN never reads); :func:`dense_features` densifies on demand for the models that need it (SGC).
``dense=True`` / ``False`` forces either.

Other attributes: ``y`` (n,) long, ``edge_index`` (2, 2·E) long with both directions, sorted, ``num_nodes``,
``num_classes`` (int), ``name`` (str), ``source`` (str) and ``node_map`` (n,) long — the node's index in the raw file.

Where the files come from (first hit wins):

1. ``root=`` argument, else environment variable ``NSDE_COIN_DATA``, else ``<repo>/../shared/data`` — an offline
   copy laid out as ``planetoid/<Name>/raw/``, ``npz/<name>.npz`` and ``graphgallery/<name>.npz`` (see
   ``shared/data/README.md``). Planetoid raw folders are copied into a cache directory first because PyG writes
   ``processed/`` next to ``raw/`` and the shared folder is read-only.
2. Otherwise the standard download (PyG's ``Planetoid``/``Amazon``/``Coauthor``, the gnn-benchmark npz on GitHub).
   With no network the error says exactly which file to put where.

Sources: ``cora``/``citeseer`` default to ``source="npz"`` (the gnn-benchmark npz files the paper's protocol uses:
LCC 2485 nodes / 5069 edges and 2110 / 3668); ``source="planetoid"`` loads the Planetoid release instead (LCC 2485 /
5069 and 2120 / 3679). PubMed comes from Planetoid. Amazon / Coauthor come from the graphgallery npz copies (pickled
SciPy CSR matrices read with a restricted unpickler) or from PyG when those are absent.

Damaged files (see :mod:`nsde_coin.datafiles`): a truncated or corrupt file, or one whose sparse arrays are
inconsistent (an index out of range, a decreasing ``indptr``), raises one :class:`~nsde_coin.errors.DataFileError`
line naming the file, what is wrong and how to restore it; every index is checked before SciPy sees it. Downloads
and the Planetoid cache copy are written atomically, and a cache copy whose file sizes differ from the source is
copied again.
"""

from __future__ import annotations

import filecmp
import io
import os
import pickle
import shutil
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import scipy.sparse as sp
import torch
from numpy.lib import format as npy_format
from scipy.sparse.csgraph import connected_components

from nsde_coin.datafiles import READ_ERRORS, check_csr, csr_from_parts, damaged, read_npz, restore_hint
from nsde_coin.errors import DataFileError

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
_NPZ_URL = "https://github.com/shchur/gnn-benchmark/raw/master/data/npz/{name}.npz"

DATASET_NAMES: tuple[str, ...] = tuple(_DATASETS)
DENSE_LIMIT_BYTES = 256 << 20  # dense data.x by default only up to this size (PubMed: 39 MB; Coauthor CS: 0.5 GB)


def canonical_name(name: str) -> str:
    """Map a user spelling (``"Cora"``, ``"photo"``, ``"coauthor-cs"``) to the canonical key; unknown → ValueError."""
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a str, got {type(name).__name__} ({name!r})")
    key = name.strip().lower().replace(" ", "_")
    key = _ALIASES.get(key, key)
    if key not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}")
    return key


# ----------------------------------------------------------------------------------------------------------------
# locations
def repo_root() -> Path:
    """The repository root (the folder holding ``nsde_coin/``)."""
    return Path(__file__).resolve().parents[2]


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


# ----------------------------------------------------------------------------------------------------------------
# restricted unpickling of graphgallery npz files
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


# ----------------------------------------------------------------------------------------------------------------
# preprocessing (the paper's protocol)
def largest_connected_component(adj: sp.spmatrix) -> np.ndarray:
    """Sorted node indices of the largest connected component of the undirected graph ``adj`` (ties: lowest id)."""
    _, comp = connected_components(adj, directed=False)
    sizes = np.bincount(comp)
    return np.flatnonzero(comp == int(np.argmax(sizes)))


def _validate_arrays(adj: sp.spmatrix, features: sp.spmatrix, labels: np.ndarray) -> None:
    n = adj.shape[0]
    if adj.shape[0] != adj.shape[1]:
        raise ValueError(f"adjacency must be square, got shape {adj.shape}")
    if features.shape[0] != n or labels.shape[0] != n:
        raise ValueError(f"{n} nodes in the adjacency but features {features.shape} and labels {labels.shape}")
    data = features.data if sp.issparse(features) else np.asarray(features)
    bad = ~np.isfinite(data)
    if bad.any():
        raise ValueError(f"features contain {int(bad.sum())} non-finite values (NaN/Inf); clean the input first")
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels must be >= 0, got min {labels.min()}")


def preprocess(
    adj: Any,
    features: Any,
    labels: Any,
    *,
    name: str = "graph",
    lcc: bool = True,
    dense: Optional[bool] = None,
    source: str = "arrays",
    num_classes: Optional[int] = None,
):
    """Apply the paper's preprocessing and build a PyG ``Data``.

    Args:
        adj: (n, n) adjacency (SciPy sparse or dense array); weights and direction are dropped.
        features: (n, d) node features (SciPy sparse or dense); binarised then row-normalised.
        labels: (n,) integer classes ≥ 0.
        name: stored as ``data.name``.
        lcc: keep only the largest connected component (the protocol's choice).
        dense: also keep ``data.x`` dense (see the module docstring); ``None``: only when n·d float32 values take
            at most :data:`DENSE_LIMIT_BYTES`. ``data.x_csr`` is always there.
        num_classes: defaults to ``labels.max() + 1`` over the input (before the LCC cut).

    Raises ``ValueError`` for NaN/Inf features, mismatched sizes or negative labels.
    """
    from torch_geometric.data import Data

    adj = sp.csr_matrix(adj)
    features = sp.csr_matrix(features, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    _validate_arrays(adj, features, labels)
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 0

    # unweighted, undirected, no self-loops
    a = adj.copy()
    a.data = np.ones_like(a.data, dtype=np.float64)
    a = ((a + a.T) > 0).astype(np.float64).tocsr()
    a.setdiag(0)
    a.eliminate_zeros()
    nodes = largest_connected_component(a) if lcc else np.arange(a.shape[0])
    a = a[nodes][:, nodes].tocsr()
    a.sort_indices()

    # binarise, then row-normalise
    x = features[nodes].tocsr()
    x.data = (x.data != 0).astype(np.float64)
    x.eliminate_zeros()
    rows = np.asarray(x.sum(axis=1)).reshape(-1)
    x = sp.diags(np.divide(1.0, rows, out=np.zeros_like(rows), where=rows > 0)) @ x
    x = x.tocsr().astype(np.float32)
    x.sort_indices()

    coo = a.tocoo()
    edge_index = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support is in beta.*")
        x_csr = torch.sparse_csr_tensor(
            torch.from_numpy(x.indptr.astype(np.int64)), torch.from_numpy(x.indices.astype(np.int64)),
            torch.from_numpy(x.data), size=x.shape, check_invariants=False,
        )
    data = Data(
        x=torch.from_numpy(x.toarray()) if _keep_dense(dense, x.shape) else x_csr,
        edge_index=edge_index,
        y=torch.from_numpy(labels[nodes]),
        num_nodes=int(len(nodes)),
    )
    data.x_csr = x_csr
    data.num_classes = int(num_classes)
    data.name = name
    data.source = source
    data.lcc = bool(lcc)
    data.node_map = torch.from_numpy(nodes.astype(np.int64))
    validate_graph(data)
    return data


def _keep_dense(dense: Optional[bool], shape: tuple[int, int]) -> bool:
    if dense is None:
        return shape[0] * shape[1] * 4 <= DENSE_LIMIT_BYTES
    return bool(dense)


def validate_graph(data) -> None:
    """Check a ``Data`` for the things that silently break training: NaN/Inf features, edge ids out of range,
    label/feature row counts that differ from ``num_nodes``. Raises ``ValueError`` naming the problem."""
    n = int(data.num_nodes)
    x = data.x_csr if getattr(data, "x_csr", None) is not None else data.x
    values = x.values() if x.layout == torch.sparse_csr else x
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"{getattr(data, 'name', 'graph')}: features contain NaN/Inf values")
    if x.shape[0] != n:
        raise ValueError(f"features have {x.shape[0]} rows but the graph has num_nodes={n}")
    ei = data.edge_index
    if ei.dim() != 2 or ei.shape[0] != 2:
        raise ValueError(f"edge_index must have shape (2, E), got {tuple(ei.shape)}")
    if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= n):
        raise ValueError(f"edge_index holds node ids in [{int(ei.min())}, {int(ei.max())}], "
                         f"outside the valid range [0, {n - 1}]")
    if data.y is not None and data.y.shape[0] != n:
        raise ValueError(f"y has {data.y.shape[0]} entries but the graph has num_nodes={n}")


# ----------------------------------------------------------------------------------------------------------------
# raw readers
def _missing(what: str, where: Path, detail: str = "") -> FileNotFoundError:
    extra = f" ({detail})" if detail else ""
    return FileNotFoundError(
        f"{what} not found and could not be downloaded{extra}. Put the file(s) at {where} (or pass --root DIR / set "
        f"NSDE_COIN_DATA to a folder laid out as planetoid/<Name>/raw/, npz/<name>.npz, graphgallery/<name>.npz)"
    )


def _read_gnn_benchmark_npz(path: Path, restore: str) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
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


def _load_npz(key: str, root: Optional[Path], cache: Path):
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
            raise _missing(f"gnn-benchmark file {name}.npz", cands[0], str(exc)) from None
        part.replace(path)  # never leave a truncated download under the final name
    return _read_gnn_benchmark_npz(path, restore_hint(url, download=True))


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


def _load_planetoid(key: str, display: str, root: Optional[Path], cache: Path):
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
        raise _missing(f"Planetoid raw files ind.{key}.*", where, str(exc)) from None
    except READ_ERRORS as exc:
        raise _planetoid_damage(exc, key, raw_dst, raw_src) from None
    d = ds[0]
    ei = d.edge_index.numpy()
    n = int(d.num_nodes)
    adj = sp.csr_matrix((np.ones(ei.shape[1]), (ei[0], ei[1])), shape=(n, n))
    return adj, sp.csr_matrix(d.x.numpy()), d.y.numpy(), int(ds.num_classes)


def _read_graphgallery(path: Path) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
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


def _load_graphgallery(key: str, display: str, root: Optional[Path], cache: Path, source: str):
    if source == "graphgallery":
        path = root / "graphgallery" / f"{_GRAPHGALLERY_FILES[key]}.npz" if root is not None else None
        if path is not None and path.is_file():
            return _read_graphgallery(path)
    # PyG download (Amazon / Coauthor classes read the same gnn-benchmark files)
    from torch_geometric.datasets import Amazon, Coauthor

    cls = Amazon if key.startswith("amazon") else Coauthor
    try:
        ds = cls(root=str(cache / "pyg" / cls.__name__.lower()), name=display)
    except (urllib.error.URLError, OSError) as exc:
        where = (root or Path("<data root>")) / "graphgallery" / f"{_GRAPHGALLERY_FILES[key]}.npz"
        raise _missing(f"{cls.__name__} {display}", where, str(exc)) from None
    d = ds[0]
    ei = d.edge_index.numpy()
    n = int(d.num_nodes)
    adj = sp.csr_matrix((np.ones(ei.shape[1]), (ei[0], ei[1])), shape=(n, n))
    return adj, sp.csr_matrix(d.x.numpy()), d.y.numpy()


def load_dataset(
    name: str,
    *,
    root: Optional[PathLike] = None,
    source: Optional[str] = None,
    lcc: bool = True,
    dense: Optional[bool] = None,
    cache_dir: Optional[PathLike] = None,
):
    """Load a benchmark graph with the paper's preprocessing; returns a PyG ``Data`` (see the module docstring).

    Args:
        name: one of :data:`DATASET_NAMES` (case-insensitive; ``photo``, ``cs``, ``physics`` ... also accepted).
        root: offline data folder (default :func:`default_data_root`).
        source: ``"npz"`` (gnn-benchmark, default for cora/citeseer), ``"planetoid"``, ``"graphgallery"``
            (default for Amazon/Coauthor) or ``"pyg"`` (PyG's own Amazon/Coauthor download).
        lcc: cut to the largest connected component (protocol default ``True``).
        dense: keep a dense ``data.x`` besides ``data.x_csr`` (``None``: only when small, see :func:`preprocess`).
        cache_dir: writable folder for PyG's ``processed/`` and downloads (default :func:`default_cache_dir`).
    """
    key = canonical_name(name)
    default_source, sources, display = _DATASETS[key]
    source = default_source if source is None else str(source).lower()
    if source not in sources:
        raise ValueError(f"source={source!r} is not available for {key}; valid sources: {', '.join(sources)}")
    root_path = Path(root) if root is not None else default_data_root()
    if root_path is not None and not root_path.is_dir():
        raise FileNotFoundError(f"data root {root_path} does not exist (from --root / NSDE_COIN_DATA)")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    num_classes = None
    if source == "npz":
        adj, x, y = _load_npz(key, root_path, cache)
    elif source == "planetoid":
        adj, x, y, num_classes = _load_planetoid(key, display, root_path, cache)
    else:
        adj, x, y = _load_graphgallery(key, display, root_path, cache, source)
    return preprocess(adj, x, y, name=key, lcc=lcc, dense=dense, source=source, num_classes=num_classes)


def dense_features(data) -> torch.Tensor:
    """``data.x`` as a dense float tensor (densifies a CSR ``x`` loaded with ``dense=False``)."""
    x = data.x
    return x.to_dense() if x.layout != torch.strided else x


def csr_features(data) -> torch.Tensor:
    """The sparse CSR feature matrix (``data.x_csr``, or ``data.x`` converted)."""
    x = getattr(data, "x_csr", None)
    if x is None:
        x = data.x
    return x if x.layout == torch.sparse_csr else x.to_sparse_csr()


def graph_stats(data) -> dict[str, Any]:
    """Nodes, undirected edges, features, classes and per-class counts (a JSON-friendly dict)."""
    y = data.y
    return {
        "name": getattr(data, "name", "graph"),
        "nodes": int(data.num_nodes),
        "edges": int(data.edge_index.shape[1] // 2),
        "features": int(data.x_csr.shape[1] if getattr(data, "x_csr", None) is not None else data.x.shape[1]),
        "classes": int(data.num_classes),
        "class_counts": torch.bincount(y, minlength=int(data.num_classes)).tolist(),
    }
