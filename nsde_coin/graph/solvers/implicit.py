"""``solver="implicit"``: ``layer_num`` implicit Euler steps ``(I + σ²L) u⁺ = u``.

First order, unconditionally stable and positivity preserving. Each step is solved by conjugate gradients for
symmetric L (and for ``"rw"``, through its symmetric similar matrix); other non-symmetric L use a sparse LU
factorisation (scipy SuperLU, cached in the operator). Options: ``tol`` (CG relative residual), ``maxiter``.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from nsde_coin.graph.operator import GraphOperator
from nsde_coin.graph.solvers._common import _default_tol, _sym_parts
from nsde_coin.graph.sparse import apply_linear
from nsde_coin.solvers import GraphSolverInfo, register_solver

__all__: list[str] = []


def _cg(apply_a, b: torch.Tensor, x0: torch.Tensor, tol: float, maxiter: int) -> torch.Tensor:
    """Conjugate gradients for A X = B column by column in parallel (A SPD), relative residual ``tol`` per column."""
    x = x0.clone()
    r = b - apply_a(x)
    bnorm = b.norm(dim=0).clamp_min(torch.finfo(b.dtype).tiny)
    p = r.clone()
    rs = (r * r).sum(0)
    for _ in range(maxiter):
        if bool((rs.sqrt() <= tol * bnorm).all()):
            return x
        ap = apply_a(p)
        denom = (p * ap).sum(0)
        alpha = torch.where(denom > 0, rs / denom.clamp_min(torch.finfo(b.dtype).tiny), torch.zeros_like(rs))
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = (r * r).sum(0)
        beta = torch.where(rs > 0, rs_new / rs.clamp_min(torch.finfo(b.dtype).tiny), torch.zeros_like(rs))
        p = r + beta * p
        rs = rs_new
    if bool((rs.sqrt() <= tol * bnorm).all()):
        return x
    worst = float((rs.sqrt() / bnorm).max())
    raise ValueError(f"implicit solver: conjugate gradients did not reach tol={tol:g} in maxiter={maxiter} "
                     f"iterations (relative residual {worst:.3g}); raise maxiter or tol")


def _implicit(u: torch.Tensor, op: GraphOperator, s: float, k: int, *, tol: Optional[float] = None,
              maxiter: Optional[int] = None) -> tuple[torch.Tensor, None]:
    tol = _default_tol(u.dtype, 1e-6, 1e-12) if tol is None else float(tol)
    maxiter = max(100, 10 * op.n) if maxiter is None else int(maxiter)
    if op.symmetric or op.similarity is not None:
        m, q = _sym_parts(op, u.dtype, u.device)

        def solve_sym(v: torch.Tensor) -> torch.Tensor:
            for _ in range(k):
                v = _cg(lambda x: x + s * (m @ x), v, v, tol, maxiter)
            return v

        if q is None:
            return apply_linear(u, solve_sym, solve_sym), None
        return apply_linear(u, lambda v: q * solve_sym(v / q), lambda g: solve_sym(q * g) / q), None

    key = ("lu", s)
    lu = op._cache.get(key)
    if lu is None:
        lu = op._cache[key] = spla.splu(sp.csc_matrix(sp.eye(op.n) + s * op.scipy))

    def lu_solve(trans: str):
        def run(v: torch.Tensor) -> torch.Tensor:
            x = v.detach().cpu().double().numpy()
            for _ in range(k):
                x = lu.solve(np.ascontiguousarray(x), trans=trans)
            return torch.from_numpy(np.ascontiguousarray(x)).to(dtype=v.dtype, device=v.device)
        return run

    return apply_linear(u, lu_solve("N"), lu_solve("T")), None


register_solver(GraphSolverInfo("implicit", "nsde_coin",
                                "implicit Euler (I + σ²L)u⁺ = u by conjugate gradients; unconditionally stable",
                                weak_order=1.0, unconditionally_stable=True, impl=_implicit))
