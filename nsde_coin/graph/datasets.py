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

The code lives in :mod:`nsde_coin.graph.data` (registry, preprocessing, one reader per file format); this module
is the front door and re-exports its public names.

Damaged files (see :mod:`nsde_coin.datafiles`): a truncated or corrupt file, or one whose sparse arrays are
inconsistent (an index out of range, a decreasing ``indptr``), raises one :class:`~nsde_coin.errors.DataFileError`
line naming the file, what is wrong and how to restore it; every index is checked before SciPy sees it. Downloads
and the Planetoid cache copy are written atomically, and a cache copy whose file sizes differ from the source is
copied again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from nsde_coin.graph.data.graphgallery import load_graphgallery, load_pickled_npz
from nsde_coin.graph.data.npz import load_npz
from nsde_coin.graph.data.planetoid import load_planetoid
from nsde_coin.graph.data.preprocess import (
    DENSE_LIMIT_BYTES,
    csr_features,
    dense_features,
    graph_stats,
    largest_connected_component,
    preprocess,
    validate_graph,
)
from nsde_coin.graph.data.registry import (
    DATASET_NAMES,
    PathLike,
    canonical_name,
    default_cache_dir,
    default_data_root,
    repo_root,
    source_info,
)

__all__ = ["DATASET_NAMES", "DENSE_LIMIT_BYTES", "canonical_name", "csr_features", "default_cache_dir",
           "default_data_root", "dense_features", "graph_stats", "largest_connected_component", "load_dataset",
           "load_pickled_npz", "preprocess", "repo_root", "validate_graph"]


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
    default_source, sources, display = source_info(key)
    source = default_source if source is None else str(source).lower()
    if source not in sources:
        raise ValueError(f"source={source!r} is not available for {key}; valid sources: {', '.join(sources)}")
    root_path = Path(root) if root is not None else default_data_root()
    if root_path is not None and not root_path.is_dir():
        raise FileNotFoundError(f"data root {root_path} does not exist (from --root / NSDE_COIN_DATA)")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    num_classes = None
    if source == "npz":
        adj, x, y = load_npz(key, root_path, cache)
    elif source == "planetoid":
        adj, x, y, num_classes = load_planetoid(key, display, root_path, cache)
    else:
        adj, x, y = load_graphgallery(key, display, root_path, cache, source)
    return preprocess(adj, x, y, name=key, lcc=lcc, dense=dense, source=source, num_classes=num_classes)

