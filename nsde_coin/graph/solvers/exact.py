"""``solver="exact"``: the heat kernel ``exp(−T L) u`` with ``T = layer_num·σ²``, no time-stepping error.

A Chebyshev expansion of the heat kernel on [0, λ_max] (Bessel coefficients), accurate to ``tol`` relative to ‖u‖;
needs L symmetric or of kind ``"rw"`` (diffused through its symmetric similar matrix).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from scipy.special import ive

from nsde_coin.graph.operator import GraphOperator
from nsde_coin.graph.solvers._common import _default_tol, _sym_parts
from nsde_coin.graph.sparse import apply_linear
from nsde_coin.solvers import GraphSolverInfo, register_solver

__all__: list[str] = []


def _chebyshev_coeffs(alpha: float, tol: float) -> np.ndarray:
    """Coefficients c_j of exp(−α(1 + x)) = Σ_j c_j T_j(x) on [−1, 1], truncated where the tail is below ``tol``."""
    coeffs = [float(ive(0, alpha))]
    j = 1
    while True:
        c = float(ive(j, alpha))
        coeffs.append(2.0 * c * (-1) ** j)
        if j > alpha and 2.0 * c < tol * 0.5:
            break
        j += 1
    return np.asarray(coeffs)


def _exact(u: torch.Tensor, op: GraphOperator, s: float, k: int, *,
           tol: Optional[float] = None) -> tuple[torch.Tensor, None]:
    if not (op.symmetric or op.similarity is not None):
        raise ValueError("solver='exact' needs a symmetric Laplacian (kinds paper, sym, comb) or one built with "
                         "kind='rw'; use solver='implicit' or 'explicit' for a general non-symmetric L")
    tol = _default_tol(u.dtype, 1e-7, 1e-14) if tol is None else float(tol)
    m, q = _sym_parts(op, u.dtype, u.device)
    b = max(op.lambda_max, 0.0) * (1.0 + 1e-6) + 1e-12  # spectrum of M inside [0, b]
    alpha = s * k * b / 2.0
    coeffs = _chebyshev_coeffs(alpha, tol)
    scale = 2.0 / b

    def heat(v: torch.Tensor) -> torch.Tensor:
        t_prev, t_cur = v, scale * (m @ v) - v
        out = coeffs[0] * t_prev + coeffs[1] * t_cur
        for c in coeffs[2:]:
            t_prev, t_cur = t_cur, 2.0 * (scale * (m @ t_cur) - t_cur) - t_prev
            out = out + c * t_cur
        return out

    if q is None:
        return apply_linear(u, heat, heat), None
    return apply_linear(u, lambda v: q * heat(v / q), lambda g: heat(q * g) / q), None


register_solver(GraphSolverInfo("exact", "nsde_coin",
                                "heat kernel exp(−layer_num·σ²·L)u by a Chebyshev expansion (no time-stepping error)",
                                unconditionally_stable=True, impl=_exact))
