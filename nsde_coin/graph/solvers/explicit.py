"""``solver="explicit"``: ``layer_num`` explicit Euler steps ``u ← (I − σ²L) u``, the paper's COIN step.

First order in σ². Stable only when ``σ²·λ_max(L) < 2``; beyond that it raises ``ValueError`` unless
``allow_unstable=True`` (the paper's Cora setting σ² = 0.35 has σ²·λ_max ≈ 2.02). It preserves non-negativity only
under the stronger bound ``σ²·max_i L_ii ≤ 1``; a :class:`PositivityWarning` is issued once per operator and step size
when that bound is violated. Each step is one sparse matmul with the cached ``I − σ²L``.
"""

from __future__ import annotations

import warnings

import torch

from nsde_coin.graph.operator import GraphOperator
from nsde_coin.graph.sparse import propagate
from nsde_coin.solvers import GraphSolverInfo, register_solver

__all__ = ["PositivityWarning"]


class PositivityWarning(UserWarning):
    """An explicit step violates σ²·max_i L_ii ≤ 1, so ``I − σ²L`` has negative entries (u may leave [0, 1])."""


def _explicit(u: torch.Tensor, op: GraphOperator, s: float, k: int, *,
              allow_unstable: bool = False) -> tuple[torch.Tensor, None]:
    lam = op.lambda_max
    if s * lam >= 2.0 and not allow_unstable:
        raise ValueError(
            f"explicit graph diffusion is unstable: sigma2·lambda_max = {s:.6g}·{lam:.6g} = {s * lam:.8g} ≥ 2 "
            f"(stable iff sigma2 < 2/lambda_max = {2.0 / lam:.4g}); use solver='implicit' or 'exact' (stable for "
            f"every sigma2), a smaller sigma2, or allow_unstable=True (CLI: --allow-unstable) to reproduce the "
            f"original behaviour (e.g. the paper's Cora setting sigma2=0.35)")
    if op.nonpositive_offdiag and s * op.max_diag > 1.0 and not op._cache.get(("pos_warned", s)):
        op._cache[("pos_warned", s)] = True
        warnings.warn(
            f"explicit step sigma2={s:g} exceeds the non-negativity bound 1/max_i L_ii = {1.0 / op.max_diag:.4g} "
            f"(sigma2·max L_ii = {s * op.max_diag:.4g} > 1): I − sigma2·L has negative entries, so diffused "
            f"probabilities can become negative; 'implicit' and 'exact' preserve positivity", PositivityWarning,
            stacklevel=4)
    p = op.step_matrix(s, u.dtype, u.device)
    p_t = op.step_matrix(s, u.dtype, u.device, transpose=True)
    return propagate(u, p, k, p_t), None


register_solver(GraphSolverInfo("explicit", "nsde_coin",
                                "explicit Euler u ← (I − σ²L)u, the paper's COIN step; stable iff σ²·λ_max < 2",
                                weak_order=1.0, impl=_explicit))
