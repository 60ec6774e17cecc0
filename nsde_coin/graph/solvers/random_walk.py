"""``solver="random_walk"``: Feynman–Kac made visible, the Monte Carlo average of ``u`` over random-walk end nodes.

``walk="discrete"``: ``layer_num`` steps of the chain with transition matrix ``P = I − σ²L`` (needs ``P ≥ 0``), whose
expectation is the explicit solver. ``walk="continuous"``: a continuous-time chain with rates ``−σ²L_ij`` run for
``layer_num`` time units (simulated exactly by uniformisation), whose expectation is the exact solver. Needs a Markov
generator (zero row sums, non-positive off-diagonals: kinds ``"paper"``, ``"rw"``, ``"comb"``; ``"sym"`` raises).
Returns the mean and its standard error per entry. Options: ``generator``, ``seed``, ``samples``, ``walk``, ``nodes``.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch

from nsde_coin._checks import is_int
from nsde_coin.graph.operator import GraphOperator
from nsde_coin.graph.solvers._common import _check_nodes
from nsde_coin.solvers import GraphSolverInfo, register_solver

__all__ = ["WALKS"]

WALKS = ("discrete", "continuous")


def _walk_table(op: GraphOperator, s: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CSR of the transition matrix P = I − sL as (row_ptr, col, key) with key = row + cumulative probability."""
    key = ("walk", s)
    hit = op._cache.get(key)
    if hit is None:
        p = sp.csr_matrix(sp.eye(op.n) - s * op.scipy)
        p.data[p.data < 0] = 0.0  # only rounding-level negatives get here (checked by the caller)
        p.eliminate_zeros()
        p.sort_indices()
        keys = np.empty_like(p.data)
        for_rows = np.repeat(np.arange(op.n), np.diff(p.indptr))
        cums = np.cumsum(p.data)
        starts = np.concatenate([[0.0], cums[p.indptr[1:-1] - 1]]) if op.n > 1 else np.zeros(1)
        keys[:] = cums - starts[for_rows]
        totals = keys[p.indptr[1:] - 1]
        keys = keys / totals[for_rows]  # renormalise rows to exactly 1
        keys[p.indptr[1:] - 1] = 1.0
        keys = keys + for_rows
        hit = op._cache[key] = (torch.from_numpy(p.indptr.astype(np.int64)), torch.from_numpy(p.indices.astype(
            np.int64)), torch.from_numpy(keys))
    return hit


def _step_walkers(states: torch.Tensor, table, gen: torch.Generator) -> torch.Tensor:
    indptr, cols, keys = table
    r = torch.rand(states.shape[0], dtype=torch.float64, generator=gen)
    idx = torch.searchsorted(keys, states.double() + r, right=True)
    idx = torch.minimum(torch.maximum(idx, indptr[states]), indptr[states + 1] - 1)
    return cols[idx]


def _random_walk(u: torch.Tensor, op: GraphOperator, s: float, k: int, *, generator=None, seed: int = 0,
                 samples: int = 1000, walk: str = "discrete", nodes=None) -> tuple[torch.Tensor, torch.Tensor]:
    if walk not in WALKS:
        raise ValueError(f"walk={walk!r} is not valid; valid choices: {', '.join(WALKS)}")
    if not is_int(samples) or samples < 2:
        raise ValueError(f"samples must be an int ≥ 2 (needed for a standard error), got {samples!r}")
    if not op.markov:
        raise ValueError(f"solver='random_walk' needs a Laplacian that generates a Markov chain (zero row sums and "
                         f"non-positive off-diagonals): kinds paper, rw, comb; got kind={op.kind!r} "
                         f"(e.g. 'sym' rows do not sum to 0)")
    if walk == "discrete":
        if s * op.max_diag > 1.0 + 1e-12:
            raise ValueError(f"walk='discrete' needs I − sigma2·L ≥ 0, i.e. sigma2·max_i L_ii ≤ 1; got "
                             f"{s:g}·{op.max_diag:.4g} = {s * op.max_diag:.4g} (max sigma2 {1.0 / op.max_diag:.4g}); "
                             f"use walk='continuous' (any sigma2) or a smaller sigma2")
        table, rate = _walk_table(op, s), 0.0
    else:
        rate = op.max_diag  # uniformisation: N ~ Poisson(rate·T) steps of P = I − L/rate
        table = _walk_table(op, 1.0 / rate) if rate > 0 else None
    gen = generator if generator is not None else torch.Generator().manual_seed(int(seed))
    start = torch.arange(op.n) if nodes is None else _check_nodes(nodes, op.n).cpu()
    chunk = max(1, (1 << 20) // samples)
    means, errs = [], []
    for c0 in range(0, start.numel(), chunk):
        states = start[c0:c0 + chunk].repeat_interleave(samples)
        if walk == "discrete":
            for _ in range(k):
                states = _step_walkers(states, table, gen)
        elif table is not None:
            jumps = torch.poisson(torch.full(states.shape, rate * s * k, dtype=torch.float64), generator=gen).long()
            for j in range(int(jumps.max()) if jumps.numel() else 0):
                active = jumps > j
                states = torch.where(active, _step_walkers(states, table, gen), states)
        vals = u[states.to(u.device)].reshape(-1, samples, u.shape[1])
        means.append(vals.mean(1))
        errs.append(vals.detach().std(1) / math.sqrt(samples))
    return torch.cat(means), torch.cat(errs)


register_solver(GraphSolverInfo("random_walk", "nsde_coin",
                                "Monte Carlo average over random-walk end nodes "
                                "(discrete ↔ explicit, continuous ↔ exact)",
                                stochastic=True, impl=_random_walk))
