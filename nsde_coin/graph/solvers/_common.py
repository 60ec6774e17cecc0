"""What more than one graph solver needs: the symmetric form of L, default tolerances, start-node checks."""

from __future__ import annotations

from typing import Any, Optional

import scipy.sparse as sp
import torch

from nsde_coin.graph.operator import GraphOperator, torch_csr


def _check_nodes(nodes: Any, n: int) -> torch.Tensor:
    if not isinstance(nodes, torch.Tensor) or nodes.dtype != torch.long or nodes.dim() != 1:
        raise TypeError("nodes must be a 1-D torch.long tensor of node ids")
    if nodes.numel() and (int(nodes.min()) < 0 or int(nodes.max()) >= n):
        raise ValueError(f"nodes must lie in [0, {n}), got range [{int(nodes.min())}, {int(nodes.max())}]")
    return nodes


def _sym_parts(op: GraphOperator, dtype: torch.dtype, device: Any) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(M, q) with L = diag(q) M diag(1/q) and M symmetric (q = None when L itself is symmetric)."""
    if op.symmetric:
        return op.csr(dtype, device), None
    if op.similarity is None:
        raise ValueError("no symmetric form known for this non-symmetric Laplacian")
    key = ("M", dtype, torch.device(device) if device is not None else torch.device("cpu"))
    hit = op._cache.get(key)
    if hit is None:
        q = op.similarity
        m = sp.csr_matrix(sp.diags(1.0 / q) @ op.scipy @ sp.diags(q))
        m = sp.csr_matrix((m + m.T) * 0.5)
        hit = op._cache[key] = (torch_csr(m, dtype, device), torch.as_tensor(q, dtype=dtype, device=device)[:, None])
    return hit


def _default_tol(dtype: torch.dtype, f32: float, f64: float) -> float:
    return f64 if dtype == torch.float64 else f32
