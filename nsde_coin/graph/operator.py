"""`GraphOperator`, the cached sparse operator every graph solver works on, and the matrix conversions under it.

A :class:`GraphOperator` holds one fixed n×n Laplacian in every form the solvers reuse (scipy CSR, torch CSR per
dtype/device, ``I − sL`` step matrices, λ_max, symmetry and Markov flags). :func:`as_operator` maps a tensor returned
by :func:`~nsde_coin.graph.laplacian.laplacian` back to its operator (a weak tensor → operator table), so λ_max and
the like are computed once per graph. The Laplacian constructors are in :mod:`nsde_coin.graph.laplacian`; the
eigenvalue computation in :mod:`nsde_coin.graph.spectral`.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional, Union

import numpy as np
import scipy.sparse as sp
import torch

from nsde_coin.graph import cache
from nsde_coin.graph.spectral import _is_symmetric, _lambda_max_scipy

__all__ = ["GraphOperator", "as_operator", "to_scipy", "torch_csr"]


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
