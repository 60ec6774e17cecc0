"""Graph Laplacians and :class:`GraphOperator`, the cached sparse operator every graph solver works on.

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
"""

from __future__ import annotations

import warnings
from typing import Any, Optional, Union

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from nsde_coin._checks import is_int
from nsde_coin.graph import cache

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


# ---------------------------------------------------------------------------------------------------------- helpers
def torch_csr(mat: sp.spmatrix, dtype: torch.dtype = torch.float32, device: Any = None) -> torch.Tensor:
    """scipy sparse (n×m) → torch sparse CSR tensor of ``dtype`` (int64 indices, no invariant-check warnings)."""
    mat = sp.csr_matrix(mat)
    mat.sort_indices()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        out = torch.sparse_csr_tensor(
            torch.from_numpy(mat.indptr.astype(np.int64)),
            torch.from_numpy(mat.indices.astype(np.int64)),
            torch.from_numpy(np.asarray(mat.data)).to(dtype),
            size=mat.shape,
            check_invariants=False,
        )
    return out.to(device) if device is not None else out


def to_scipy(mat: Union[torch.Tensor, sp.spmatrix, np.ndarray, GraphOperator]) -> sp.csr_matrix:
    """Any supported matrix form (torch sparse CSR/COO/dense, scipy, numpy, :class:`GraphOperator`) → scipy CSR
    (float64, sorted indices). Never densifies a sparse input."""
    if isinstance(mat, GraphOperator):
        return mat.scipy
    if sp.issparse(mat):
        out = sp.csr_matrix(mat, dtype=np.float64)
    elif isinstance(mat, np.ndarray):
        out = sp.csr_matrix(mat.astype(np.float64))
    elif isinstance(mat, torch.Tensor):
        if mat.dim() != 2:
            raise ValueError(f"expected a 2-D matrix, got a tensor of shape {tuple(mat.shape)}")
        m = mat.detach().cpu()
        if m.layout == torch.sparse_csr:
            out = sp.csr_matrix((m.values().double().numpy(), m.col_indices().numpy(), m.crow_indices().numpy()),
                                shape=tuple(m.shape))
        elif m.layout == torch.sparse_coo:
            m = m.coalesce()
            idx = m.indices().numpy()
            out = sp.csr_matrix((m.values().double().numpy(), (idx[0], idx[1])), shape=tuple(m.shape))
        elif m.layout == torch.strided:
            out = sp.csr_matrix(m.double().numpy())
        else:
            raise TypeError(f"unsupported tensor layout {m.layout}; valid: torch.strided, sparse_coo, sparse_csr")
    else:
        raise TypeError(f"expected a torch tensor, scipy sparse matrix, numpy array or GraphOperator, "
                        f"got {type(mat).__name__}")
    out.sum_duplicates()
    out.sort_indices()
    return out


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


def _lambda_max_scipy(m: sp.csr_matrix, symmetric: Optional[bool], iters: int, tol: float,
                      similarity: Optional[np.ndarray] = None) -> float:
    n = m.shape[0]
    if similarity is not None:  # L = diag(q) M diag(1/q): same spectrum as the symmetric M
        m = sp.csr_matrix(sp.diags(1.0 / similarity) @ m @ sp.diags(similarity))
        m = sp.csr_matrix((m + m.T) * 0.5)
        symmetric = True
    if symmetric is None:
        symmetric = _is_symmetric(m)
    if not np.any(m.data):  # L = 0 (no edges): ARPACK fails on the zero operator ("starting vector is zero")
        return 0.0
    if n <= 3:
        ev = np.linalg.eigvals(m.toarray())
        return float(np.max(ev.real))
    v0 = np.random.default_rng(0).standard_normal(n)
    try:
        if symmetric:
            val = spla.eigsh(m, k=1, which="LA", v0=v0, maxiter=iters * n, tol=tol, return_eigenvectors=False)
        else:
            val = spla.eigs(m, k=1, which="LR", v0=v0, maxiter=iters * n, tol=tol, return_eigenvectors=False)
    except spla.ArpackNoConvergence as err:  # pragma: no cover - ARPACK practically always converges here
        if len(err.eigenvalues) == 0:
            raise ValueError(f"lambda_max: ARPACK did not converge in {iters * n} iterations (tol={tol})") from err
        val = err.eigenvalues
    return float(np.max(np.real(val)))


def _is_symmetric(m: sp.csr_matrix) -> bool:
    diff = abs(m - m.T)
    scale = max(1.0, float(abs(m).max()) if m.nnz else 1.0)
    return not diff.nnz or float(diff.max()) <= 1e-12 * scale


# ----------------------------------------------------------------------------------------------------- the operator
class GraphOperator:
    """A fixed sparse n×n Laplacian with everything the solvers reuse, computed once and cached.

    Attributes:
        scipy: float64 scipy CSR of L.
        kind: Laplacian kind if built here (``None`` for a user matrix).
        symmetric: whether L = Lᵀ.
        similarity: (n,) float64 array ``q`` with ``L = diag(q) M diag(1/q)``, M symmetric (``"rw"``), else ``None``.
        zero_row_sums: rows sum to 0 (|row sum| ≤ 1e-9·max|L_ij|), i.e. −L generates a Markov chain when also
            ``nonpositive_offdiag``.
        max_diag: max_i L_ii; ``1/max_diag`` is the largest explicit step that keeps ``I − sL`` non-negative.
        lambda_max: largest eigenvalue (cached, computed on first use by Lanczos).

    Tensors: :meth:`csr` (L), :meth:`csr_t` (Lᵀ), :meth:`step_matrix` (``I − sL``), each cached per dtype/device.
    The operator is treated as constant: solvers give no gradient with respect to L's values.
    """

    def __init__(self, L: Any, *, kind: Optional[str] = None, symmetric: Optional[bool] = None,
                 similarity: Optional[np.ndarray] = None, dtype: torch.dtype = torch.float32):
        m = to_scipy(L)
        if m.shape[0] != m.shape[1]:
            raise ValueError(f"a Laplacian must be square, got shape {m.shape}")
        if m.nnz and not np.all(np.isfinite(m.data)):
            raise ValueError("the Laplacian contains NaN or Inf")
        self.scipy: sp.csr_matrix = m
        self.n: int = m.shape[0]
        self.kind = kind
        self.dtype = dtype
        self.symmetric: bool = _is_symmetric(m) if symmetric is None else bool(symmetric)
        self.similarity = similarity
        scale = float(abs(m).max()) if m.nnz else 1.0
        self.zero_row_sums = bool(np.all(np.abs(np.asarray(m.sum(axis=1)).ravel()) <= 1e-9 * max(scale, 1.0)))
        off = m - sp.diags(m.diagonal())
        self.nonpositive_offdiag = bool(off.nnz == 0 or off.data.max() <= 0)
        self.max_diag = float(m.diagonal().max()) if self.n else 0.0
        self._lambda_max: Optional[float] = None
        self._tensors: dict[tuple, torch.Tensor] = {}
        self.csr(dtype)

    @property
    def _cache(self) -> dict[Any, Any]:
        """Solver-specific values (factorisations, walk tables, warnings given): this operator's entries in the
        one graph cache, :mod:`nsde_coin.graph.cache`."""
        return cache.entries(self)

    # -- spectra
    @property
    def lambda_max(self) -> float:
        """Largest eigenvalue of L (ARPACK Lanczos, computed once and cached)."""
        if self._lambda_max is None:
            self._lambda_max = _lambda_max_scipy(self.scipy, self.symmetric, 3000, 1e-8, self.similarity)
        return self._lambda_max

    @property
    def markov(self) -> bool:
        """−L is the generator of a continuous-time Markov chain (zero row sums, non-positive off-diagonals)."""
        return self.zero_row_sums and self.nonpositive_offdiag

    # -- tensors
    def _get(self, key: tuple, make) -> torch.Tensor:
        t = self._tensors.get(key)
        if t is None:
            t = self._tensors[key] = make()
        return t

    def csr(self, dtype: Optional[torch.dtype] = None, device: Any = None) -> torch.Tensor:
        """L as a torch sparse CSR tensor."""
        dtype = dtype or self.dtype
        dev = torch.device(device) if device is not None else torch.device("cpu")
        return self._get(("L", dtype, dev), lambda: torch_csr(self.scipy, dtype, dev))

    def csr_t(self, dtype: Optional[torch.dtype] = None, device: Any = None) -> torch.Tensor:
        """Lᵀ as a torch sparse CSR tensor (the same tensor as :meth:`csr` when L is symmetric)."""
        if self.symmetric:
            return self.csr(dtype, device)
        dtype = dtype or self.dtype
        dev = torch.device(device) if device is not None else torch.device("cpu")
        return self._get(("LT", dtype, dev), lambda: torch_csr(self.scipy.T.tocsr(), dtype, dev))

    def step_matrix(self, s: float, dtype: Optional[torch.dtype] = None, device: Any = None,
                    transpose: bool = False) -> torch.Tensor:
        """``P = I − sL`` (or Pᵀ) as a torch CSR tensor, so an explicit Euler step is one sparse matmul."""
        dtype = dtype or self.dtype
        dev = torch.device(device) if device is not None else torch.device("cpu")
        transpose = transpose and not self.symmetric

        def make() -> torch.Tensor:
            p = sp.csr_matrix(sp.eye(self.n, format="csr") - float(s) * self.scipy)
            return torch_csr(p.T.tocsr() if transpose else p, dtype, dev)

        if len(self._tensors) > 64:  # many different step sizes: keep memory bounded
            self._tensors = {k: v for k, v in self._tensors.items() if k[0] != "P"}
        return self._get(("P", float(s), transpose, dtype, dev), make)

    def new_tensor(self) -> torch.Tensor:
        """A torch CSR tensor of L (sharing memory with the cached one) registered with this operator, so that
        :func:`as_operator` maps it back here. The operator holds no reference to it: the registration ends when the
        tensor is garbage-collected (no leak when many graphs are built, e.g. one per few-shot task)."""
        base = self.csr()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
            t = torch.sparse_csr_tensor(base.crow_indices(), base.col_indices(), base.values(), size=base.shape,
                                        check_invariants=False)
        _register(t, self)
        return t

    def __repr__(self) -> str:
        lam = f"{self._lambda_max:.4g}" if self._lambda_max is not None else "not computed"
        return (f"GraphOperator(n={self.n}, nnz={self.scipy.nnz}, kind={self.kind!r}, symmetric={self.symmetric}, "
                f"lambda_max={lam})")


# ------------------------------------------------------------------ tensor → operator (in the one weak graph cache)
def _register(t: torch.Tensor, op: GraphOperator) -> None:
    cache.entries(t)["operator"] = op


def _reject_edge_index(L: torch.Tensor) -> None:
    """A PyG edge_index passed where a Laplacian belongs: say so (instead of "a Laplacian must be square")."""
    if (L.layout == torch.strided and not L.is_floating_point() and not L.is_complex() and L.dim() == 2
            and L.shape[0] == 2 and L.shape[1] != 2):
        raise ValueError(f"got an edge_index-like {L.dtype} tensor of shape {tuple(L.shape)} where a Laplacian "
                         f"(n×n) is expected; pass laplacian(edge_index, num_nodes) or a GraphOperator, or use the "
                         f"layer nsde_coin.graph.GraphDiffusion, whose forward takes (u, edge_index)")


def as_operator(L: Any, dtype: Optional[torch.dtype] = None) -> GraphOperator:
    """The :class:`GraphOperator` of ``L``: itself if it is one; the registered one if ``L`` is a tensor returned by
    :func:`laplacian`; otherwise a new operator, registered so that the next call with the same tensor reuses it
    (λ_max is then computed once). Tensors are assumed not to be modified in place after registration."""
    if isinstance(L, GraphOperator):
        return L
    if isinstance(L, torch.Tensor):
        hit = cache.lookup(L, "operator")
        if hit is not None:
            return hit
        _reject_edge_index(L)
        op = GraphOperator(L, dtype=dtype or (L.dtype if L.is_floating_point() else torch.float32))
        _register(L, op)  # the operator keeps its own copy, never a reference to L
        return op
    return GraphOperator(L, dtype=dtype or torch.float32)
