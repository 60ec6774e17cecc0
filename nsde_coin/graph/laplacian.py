"""Graph Laplacians: the four kinds, the input conventions and the constructors (edge list or weight matrix).

Kinds (``A`` is the symmetric, weighted adjacency without self-loops, ``D = diag(A·1)``):

* ``"paper"`` (default) — the COIN paper's ``L = diag(Â·1) − Â`` with ``Â = D̃^{-1/2}(A + I)D̃^{-1/2}`` and
  ``D̃ = D + I`` (self-loops of weight 1 added). This is *not* ``I − Â``: it is the combinatorial Laplacian of the graph
  whose edge weights are ``Â_ij`` (the self-loop terms cancel), so it is symmetric positive semi-definite with zero row
  sums, but its diagonal is not normalised (``L_ii = Σ_{j∼i} Â_ij`` can exceed 1 at hubs; Cora's largest component has
  ``λ_max ≈ 5.78``).
* ``"sym"`` — ``I − D^{-1/2} A D^{-1/2}`` (symmetric, spectrum in [0, 2]; rows do not sum to 0).
* ``"rw"`` — ``I − D^{-1} A`` (not symmetric, zero row sums, real spectrum in [0, 2]: it is similar to ``"sym"``).
* ``"comb"`` — ``D − A`` (symmetric, zero row sums).

Input conventions (documented once, used everywhere):

* The graph is treated as **undirected**: ``A = max(W, Wᵀ)`` elementwise (``symmetrize="max"``, the default), so an
  edge listed in one direction or in both (PyG's convention) gives the same graph. ``symmetrize="mean"`` uses
  ``(W + Wᵀ)/2`` and ``"none"`` trusts the input to be symmetric already (it is checked).
* Duplicate entries of the same directed edge: unweighted graphs (``edge_weight=None``) are binary, duplicates collapse
  to one edge of weight 1; weighted graphs sum the weights of duplicates (scipy's COO convention).
* **Self-loops in the input are dropped** (``"paper"`` adds its own unit self-loops).
* Isolated nodes (degree 0) get an all-zero row and column in ``"sym"`` and ``"rw"`` (Chung's convention, ``0/0 := 0``)
  so ``"rw"`` keeps zero row sums; in ``"paper"`` their row is zero automatically.
* Weights must be finite and non-negative. Weighted graphs: pass ``edge_weight`` (one weight per column of
  ``edge_index``) to :func:`laplacian`, or a weight matrix (scipy sparse, torch sparse or dense) to
  :func:`laplacian_from_weights` — both go through the same code.

Which function (one constructor, the rest are views and converters of what it builds):

* :func:`graph_operator` — **the** constructor: an edge list → :class:`GraphOperator` (exported as
  ``nsde_coin.graph.graph_operator``), what :func:`~nsde_coin.graph.diffusion.diffuse`, ``COIN`` and
  :func:`lambda_max` take.
* :func:`laplacian` — the same matrix as a torch sparse CSR tensor (registered with its operator, so passing the
  tensor to ``diffuse`` reuses the cached λ_max); :func:`laplacian_scipy` — as a scipy CSR matrix.
* :func:`laplacian_from_weights` — the same kinds from an n×n weight matrix instead of an edge list.
* :func:`as_operator` — not a constructor: the operator of a Laplacian you already have (tensor, scipy, numpy).
* ``nsde_coin.apps.knn.weighted_laplacian`` — ``laplacian(..., kind="comb", symmetrize="none")`` for the kNN
  graphs' symmetric weights.

The matrix forms and the cached operator are in :mod:`nsde_coin.graph.operator` (:class:`GraphOperator`,
:func:`as_operator`, :func:`to_scipy`, :func:`torch_csr`), the eigenvalue computation in
:mod:`nsde_coin.graph.spectral`; their public names are importable from here as before.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np
import scipy.sparse as sp
import torch

from nsde_coin._checks import is_int
from nsde_coin.graph.operator import GraphOperator, as_operator, to_scipy, torch_csr  # noqa: F401
from nsde_coin.graph.spectral import _lambda_max_scipy

KINDS = ("paper", "sym", "rw", "comb")
SYMMETRIZE = ("max", "mean", "none")

__all__ = [
    "KINDS",
    "GraphOperator",
    "as_operator",
    "graph_operator",
    "lambda_max",
    "laplacian",
    "laplacian_from_weights",
    "laplacian_scipy",
    "to_scipy",
    "torch_csr",
]


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"laplacian kind={kind!r} is not valid; valid choices: {', '.join(KINDS)}")


def _check_edge_index(edge_index: Any, num_nodes: Any) -> None:
    if not isinstance(edge_index, torch.Tensor):
        raise TypeError(f"edge_index must be a torch.Tensor of shape (2, E) and dtype torch.long, "
                        f"got {type(edge_index).__name__}")
    if not is_int(num_nodes) or num_nodes < 1:
        raise ValueError(f"num_nodes must be a positive int, got {num_nodes!r}")
    if edge_index.dtype != torch.long:
        raise TypeError(f"edge_index must have dtype torch.long (int64), got {edge_index.dtype}")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must have shape (2, E), got {tuple(edge_index.shape)}")
    if edge_index.numel():
        lo, hi = int(edge_index.min()), int(edge_index.max())
        if lo < 0 or hi >= num_nodes:
            bad = lo if lo < 0 else hi
            raise ValueError(f"edge_index contains node id {bad}, outside the valid range [0, {num_nodes}) "
                             f"for num_nodes={num_nodes}")


def _symmetrize(w: sp.csr_matrix, symmetrize: str) -> sp.csr_matrix:
    if symmetrize not in SYMMETRIZE:
        raise ValueError(f"symmetrize={symmetrize!r} is not valid; valid choices: {', '.join(SYMMETRIZE)}")
    if symmetrize == "max":
        w = w.maximum(w.T)
    elif symmetrize == "mean":
        w = (w + w.T) * 0.5
    else:
        asym = abs(w - w.T)
        if asym.nnz and asym.max() > 1e-10 * max(1.0, abs(w).max()):
            raise ValueError(f"symmetrize='none' but the weight matrix is not symmetric (max |W − Wᵀ| = "
                             f"{asym.max():.3g}); use symmetrize='max' or 'mean'")
    w = sp.csr_matrix(w)
    w.setdiag(0)
    w.eliminate_zeros()
    w.sort_indices()
    return w


def _check_weights(values: np.ndarray, what: str) -> None:
    if values.size and not np.all(np.isfinite(values)):
        raise ValueError(f"{what} contains NaN or Inf")
    if values.size and values.min() < 0:
        raise ValueError(f"{what} must be non-negative, found {values.min():.6g}")


def _inv_sqrt(d: np.ndarray) -> np.ndarray:
    out = np.zeros_like(d)
    pos = d > 0
    out[pos] = 1.0 / np.sqrt(d[pos])
    return out


def _build(a: sp.csr_matrix, kind: str) -> tuple[sp.csr_matrix, Optional[np.ndarray]]:
    """Laplacian of the symmetric adjacency ``a`` (no self-loops). Returns ``(L, q)``: ``q`` is set for ``"rw"``
    and gives the similarity ``L = diag(q) M diag(1/q)`` with ``M = D^{-1/2}(D − A)D^{-1/2}`` symmetric."""
    n = a.shape[0]
    deg = np.asarray(a.sum(axis=1)).ravel()
    q = None
    if kind == "paper":
        dt = deg + 1.0
        s = sp.diags(1.0 / np.sqrt(dt))
        ahat = sp.csr_matrix(s @ (a + sp.eye(n, format="csr")) @ s)
        lap = sp.diags(np.asarray(ahat.sum(axis=1)).ravel()) - ahat
    elif kind == "comb":
        lap = sp.diags(deg) - a
    elif kind == "sym":
        s = sp.diags(_inv_sqrt(deg))
        lap = sp.diags((deg > 0).astype(np.float64)) - s @ a @ s
    else:  # rw
        dinv = np.zeros_like(deg)
        dinv[deg > 0] = 1.0 / deg[deg > 0]
        lap = sp.diags((deg > 0).astype(np.float64)) - sp.diags(dinv) @ a
        q = _inv_sqrt(np.where(deg > 0, deg, 1.0))  # L = D^{-1/2} M D^{1/2}
    lap = sp.csr_matrix(lap)
    if kind in ("paper", "comb", "rw"):
        # exact zero row sums: put the diagonal equal to minus the off-diagonal row sum
        off = lap.copy()
        off.setdiag(0)
        off.eliminate_zeros()
        lap = sp.csr_matrix(off - sp.diags(np.asarray(off.sum(axis=1)).ravel()))
    if kind != "rw":
        lap = sp.csr_matrix((lap + lap.T) * 0.5)
    lap.sum_duplicates()
    lap.sort_indices()
    return lap, q


# ------------------------------------------------------------------------------------------------ public builders
def laplacian_scipy(
    edge_index: torch.Tensor,
    num_nodes: int,
    kind: str = "paper",
    edge_weight: Optional[torch.Tensor] = None,
    *,
    symmetrize: str = "max",
) -> sp.csr_matrix:
    """Like :func:`laplacian` but returns the scipy CSR matrix (float64)."""
    return graph_operator(edge_index, num_nodes, kind, edge_weight, torch.float64, symmetrize=symmetrize).scipy


def _adjacency(edge_index: torch.Tensor, num_nodes: int, edge_weight: Optional[torch.Tensor],
               symmetrize: str) -> sp.csr_matrix:
    _check_edge_index(edge_index, num_nodes)
    row, col = edge_index.cpu().numpy()
    if edge_weight is None:
        vals = np.ones(row.shape[0])
    else:
        if not isinstance(edge_weight, torch.Tensor):
            raise TypeError(f"edge_weight must be a torch.Tensor of shape (E,), got {type(edge_weight).__name__}")
        if edge_weight.shape != (row.shape[0],):
            raise ValueError(f"edge_weight must have shape (E,) = ({row.shape[0]},), got {tuple(edge_weight.shape)}")
        vals = edge_weight.detach().cpu().double().numpy()
        _check_weights(vals, "edge_weight")
    w = sp.csr_matrix((vals, (row, col)), shape=(num_nodes, num_nodes))
    w.sum_duplicates()
    if edge_weight is None:
        w.data[:] = 1.0
    return _symmetrize(w, symmetrize)


def _operator(a: sp.csr_matrix, kind: str, dtype: torch.dtype) -> GraphOperator:
    """The operator of the Laplacian of ``kind`` of the symmetric, loop-free adjacency ``a``."""
    lap, q = _build(a, kind)
    return GraphOperator(lap, kind=kind, symmetric=kind != "rw", similarity=q, dtype=dtype)


def graph_operator(
    edge_index: torch.Tensor,
    num_nodes: int,
    kind: str = "paper",
    edge_weight: Optional[torch.Tensor] = None,
    dtype: torch.dtype = torch.float32,
    *,
    symmetrize: str = "max",
) -> GraphOperator:
    """The :class:`GraphOperator` of a graph given as a PyG ``edge_index`` (conventions: the module doc)."""
    _check_kind(kind)
    return _operator(_adjacency(edge_index, num_nodes, edge_weight, symmetrize), kind, dtype)


def laplacian(
    edge_index: torch.Tensor,
    num_nodes: int,
    kind: str = "paper",
    edge_weight: Optional[torch.Tensor] = None,
    dtype: torch.dtype = torch.float32,
    *,
    symmetrize: str = "max",
) -> torch.Tensor:
    """The n×n Laplacian of an undirected graph as a torch sparse CSR tensor.

    Args:
        edge_index: (2, E) int64 PyG edge list with node ids in [0, num_nodes).
        num_nodes: n.
        kind: one of ``"paper"`` (default), ``"sym"``, ``"rw"``, ``"comb"`` (see the module doc).
        edge_weight: optional (E,) non-negative weights; ``None`` = unweighted.
        dtype: dtype of the values.
        symmetrize: ``"max"`` (default), ``"mean"`` or ``"none"``.

    The returned tensor is registered with its :class:`GraphOperator` (kind, cached λ_max, similarity transform), so
    :func:`nsde_coin.graph.diffusion.diffuse` called with this tensor reuses it; see :func:`as_operator`.
    """
    op = graph_operator(edge_index, num_nodes, kind, edge_weight, dtype, symmetrize=symmetrize)
    return op.new_tensor()


def laplacian_from_weights(
    weights: Union[sp.spmatrix, torch.Tensor, np.ndarray],
    kind: str = "paper",
    dtype: torch.dtype = torch.float32,
    *,
    symmetrize: str = "max",
    operator: bool = False,
) -> Union[torch.Tensor, GraphOperator]:
    """Laplacian of a weighted graph given by its n×n weight matrix (scipy sparse, torch sparse/dense or numpy).

    Same conventions as :func:`laplacian` (diagonal dropped, symmetrised by ``symmetrize``). Returns the torch CSR
    tensor, or the :class:`GraphOperator` when ``operator=True``.
    """
    _check_kind(kind)
    w = to_scipy(weights)
    if w.shape[0] != w.shape[1]:
        raise ValueError(f"weight matrix must be square, got shape {w.shape}")
    _check_weights(w.data, "weight matrix")
    op = _operator(_symmetrize(w, symmetrize), kind, dtype)
    return op if operator else op.new_tensor()


# ---------------------------------------------------------------------------------------------------------- λ_max
def lambda_max(L: Union[torch.Tensor, sp.spmatrix, GraphOperator], iters: int = 3000, tol: float = 1e-8) -> float:
    """Largest eigenvalue (largest real part) of a sparse Laplacian, by ARPACK Lanczos (``eigsh``; ``eigs`` when L is
    not symmetric), never forming a dense n×n matrix (graphs with n ≤ 3 are solved directly).

    Args:
        L: torch sparse/dense tensor, scipy sparse matrix or :class:`GraphOperator` (whose value is cached).
        iters: maximum Arnoldi/Lanczos restarts × n (ARPACK's ``maxiter``).
        tol: relative accuracy of the eigenvalue.
    """
    if isinstance(L, GraphOperator):
        return L.lambda_max
    return _lambda_max_scipy(to_scipy(L), symmetric=None, iters=iters, tol=tol)
