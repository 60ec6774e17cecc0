"""Gaussian k-nearest-neighbour graphs over samples (the graph COIN diffuses on when no graph is given).

The paper's construction (few-shot and tabular applications), for feature vectors x_1 … x_n:

1. keep each node's ``k`` nearest nodes, **itself included** (the node is its own first neighbour, distance 0);
2. weights w_ij = exp(−(d_ij / d_i^(m))²), with d_i^(m) the m-th smallest distance in node i's sorted list — the
   list counts the node itself first, so ``m = 4`` is the 3rd-nearest *other* node (the original code's
   ``kthvalue(distance, m)``); hence ``m >= 2`` (``m = 1`` would be the zero self-distance, a zero scale);
3. symmetric normalisation W ← D^{-1/2} W D^{-1/2} with D = diag(W 1) the row sums of the truncated W (≥ 1,
   because the self weight is exp(0) = 1, so no division by zero);
4. symmetrisation W ← (W + Wᵀ) / 2;
5. Laplacian L = diag(W 1) − W (rows sum to zero; this is *not* I − W).

The original code truncates with a strict ``distance < kthvalue(distance, k)`` and so keeps ``k − 1`` nodes; this
module keeps exactly ``k`` as the paper's text says. Ties at the k-th distance are broken by :func:`torch.topk`.

Distances are computed in blocks of rows (``chunk_size`` rows × n columns at a time) followed by ``topk``, so no
dense n × n matrix is ever formed: memory is O(chunk_size · n + n · k). A batch of independent point sets
(``x`` of shape (B, n, d), e.g. few-shot tasks) gives one block-diagonal graph over B·n nodes, node b·n + i being
point i of set b — diffusing on it diffuses every set independently in one sparse product.
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import Tensor

from nsde_coin._checks import all_finite

__all__ = ["gaussian_knn_edges", "gaussian_knn_graph", "weighted_laplacian", "edges_to_sparse"]

_DEFAULT_BLOCK = 2**22  # distance entries per block (32 MiB in float64)


def _check(x: Tensor, k: int, m: int) -> tuple[int, int, int]:
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape (n, d) or (B, n, d), got {type(x).__name__}")
    if x.dim() not in (2, 3):
        raise ValueError(f"x must have shape (n, d) or (B, n, d), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be floating point, got dtype {x.dtype}")
    batch, n, d = (1, *x.shape) if x.dim() == 2 else tuple(x.shape)
    if n == 0 or d == 0:
        raise ValueError(f"x has no points or no features (shape {tuple(x.shape)})")
    for name, val in (("k", k), ("m", m)):
        if isinstance(val, bool) or not isinstance(val, int):
            raise TypeError(f"{name} must be an int, got {val!r}")
    if not 2 <= m <= k:
        raise ValueError(f"need 2 <= m <= k (m counts the node itself first, so m = 1 is the zero self-distance); "
                         f"got k={k}, m={m}")
    if k > n:
        raise ValueError(f"k={k} exceeds the number of points n={n}; choose k <= n")
    if not all_finite(x):
        raise ValueError("x contains NaN or infinite values")
    return batch, n, d


def gaussian_knn_edges(
    x: Tensor, k: int = 8, m: int = 4, *, chunk_size: Optional[int] = None, symmetrize: bool = True
) -> tuple[Tensor, Tensor, int]:
    """Edges of the normalised, symmetrised Gaussian kNN graph.

    Args:
        x: features, shape (n, d) or (B, n, d) for B independent point sets (block-diagonal graph).
        k: neighbours kept per node, the node itself included (1 <= k <= n).
        m: the scale d_i^(m) is the m-th smallest distance, self counted first (2 <= m <= k).
        chunk_size: rows per distance block; default keeps a block at ~4M entries.
        symmetrize: return (W + Wᵀ)/2 (the paper); ``False`` returns the normalised, non-symmetric W.

    Returns:
        ``(edge_index, edge_weight, num_nodes)``: ``edge_index`` (2, E) long, coalesced (sorted by row, then
        column, no duplicates); ``edge_weight`` (E,) in ``x``'s dtype, dimensionless; ``num_nodes`` = B·n.
    """
    batch, n, _ = _check(x, k, m)
    xb = x.unsqueeze(0) if x.dim() == 2 else x
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                   or chunk_size < 1):
        raise ValueError(f"chunk_size must be None or an int >= 1 (rows per distance block), got {chunk_size!r}")
    rows_per_block = chunk_size if chunk_size is not None else max(1, _DEFAULT_BLOCK // n)
    sets_per_block = max(1, rows_per_block // n)
    tiny = torch.finfo(x.dtype).tiny
    rows, cols, vals = [], [], []
    for b0 in range(0, batch, sets_per_block):
        b1 = min(batch, b0 + sets_per_block)
        for r0 in range(0, n, rows_per_block):
            r1 = min(n, r0 + rows_per_block)
            dist = torch.cdist(xb[b0:b1, r0:r1], xb[b0:b1])  # (bs, rs, n)
            local = torch.arange(r0, r1, device=x.device)
            # the node is its own first neighbour even among duplicates: mark it below every distance
            dist[:, torch.arange(r1 - r0, device=x.device), local] = -1.0
            top, idx = torch.topk(dist, k, dim=-1, largest=False, sorted=True)
            top[..., 0] = 0.0
            scale = top[..., m - 1 : m].clamp_min(tiny)
            w = torch.exp(-((top / scale) ** 2))  # (bs, rs, k)
            offset = (torch.arange(b0, b1, device=x.device) * n).view(-1, 1, 1)
            rows.append((local.view(1, -1, 1) + offset).expand_as(idx).reshape(-1))
            cols.append((idx + offset).reshape(-1))
            vals.append(w.reshape(-1))
    row, col, w = torch.cat(rows), torch.cat(cols), torch.cat(vals)
    num_nodes = batch * n
    deg = torch.zeros(num_nodes, dtype=w.dtype, device=w.device).index_add_(0, row, w)
    inv_sqrt = deg.rsqrt()
    w = inv_sqrt[row] * w * inv_sqrt[col]
    if symmetrize:
        row, col, w = torch.cat([row, col]), torch.cat([col, row]), torch.cat([w, w]) * 0.5
    coo = torch.sparse_coo_tensor(torch.stack([row, col]), w, (num_nodes, num_nodes), check_invariants=False).coalesce()
    return coo.indices(), coo.values(), num_nodes


def edges_to_sparse(edge_index: Tensor, edge_weight: Tensor, num_nodes: int) -> Tensor:
    """A (num_nodes, num_nodes) torch sparse CSR matrix with the given entries (duplicates summed)."""
    coo = torch.sparse_coo_tensor(edge_index, edge_weight, (num_nodes, num_nodes), check_invariants=False).coalesce()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support.*")
        return coo.to_sparse_csr()


def weighted_laplacian(edge_index: Tensor, edge_weight: Tensor, num_nodes: int) -> Tensor:
    """L = diag(W 1) − W for a symmetric weight matrix W given by its edges; torch sparse CSR (n, n).

    Built by :func:`nsde_coin.graph.laplacian.laplacian` with ``kind="comb"`` and ``symmetrize="none"`` (W is
    checked to be symmetric, nothing is renormalised). Self-loops of W cancel in diag(W 1) − W, so the graph
    package dropping them gives the same matrix. The returned tensor carries the graph package's cached operator
    (λ_max, step matrices), so :func:`nsde_coin.graph.diffusion.diffuse` reuses them.
    """
    from nsde_coin.graph.laplacian import laplacian

    return laplacian(edge_index, num_nodes, kind="comb", edge_weight=edge_weight, dtype=edge_weight.dtype,
                     symmetrize="none")


def gaussian_knn_graph(
    x: Tensor,
    k: int = 8,
    m: int = 4,
    *,
    chunk_size: Optional[int] = None,
    output: str = "both",
) -> tuple[Optional[Tensor], Optional[Tensor]]:
    """The paper's Gaussian kNN graph over the rows of ``x`` as sparse matrices.

    Args:
        x, k, m, chunk_size: as in :func:`gaussian_knn_edges`.
        output: ``"W"`` (weights only), ``"L"`` (Laplacian only) or ``"both"``.

    Returns:
        ``(W, L)``, torch sparse CSR (N, N) with N = n or B·n; the one not requested is ``None``.
    """
    if output not in ("W", "L", "both"):
        raise ValueError(f"output={output!r} is not valid; valid choices: W, L, both")
    edge_index, edge_weight, num_nodes = gaussian_knn_edges(x, k, m, chunk_size=chunk_size)
    w = edges_to_sparse(edge_index, edge_weight, num_nodes) if output in ("W", "both") else None
    lap = weighted_laplacian(edge_index, edge_weight, num_nodes) if output in ("L", "both") else None
    return w, lap
