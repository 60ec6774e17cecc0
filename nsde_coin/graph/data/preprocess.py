"""The paper's preprocessing (Shchur et al. 2018 protocol) and the feature-storage decision, for every loader.

:func:`preprocess` makes the graph unweighted, undirected and loop-free, cuts it to its largest connected component,
binarises and row-normalises the features and builds the PyG ``Data`` (feature storage: see
:mod:`nsde_coin.graph.datasets`); :func:`validate_graph` checks a ``Data``; :func:`dense_features` /
:func:`csr_features` give the features in the layout a model needs; :func:`graph_stats` summarises a graph.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components

from nsde_coin._checks import all_finite

__all__ = ["DENSE_LIMIT_BYTES", "arrays_from_pyg", "csr_features", "dense_features", "graph_stats",
           "largest_connected_component", "preprocess", "validate_graph"]

DENSE_LIMIT_BYTES = 256 << 20  # dense data.x by default only up to this size (PubMed: 39 MB; Coauthor CS: 0.5 GB)


def largest_connected_component(adj: sp.spmatrix) -> np.ndarray:
    """Sorted node indices of the largest connected component of the undirected graph ``adj`` (ties: lowest id)."""
    _, comp = connected_components(adj, directed=False)
    sizes = np.bincount(comp)
    return np.flatnonzero(comp == int(np.argmax(sizes)))


def arrays_from_pyg(d) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
    """Adjacency (unit weights), features (CSR) and labels of a PyG ``Data`` from a PyG data set class: the input of
    :func:`preprocess`."""
    ei = d.edge_index.numpy()
    n = int(d.num_nodes)
    adj = sp.csr_matrix((np.ones(ei.shape[1]), (ei[0], ei[1])), shape=(n, n))
    return adj, sp.csr_matrix(d.x.numpy()), d.y.numpy()


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
    if not all_finite(values):
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
