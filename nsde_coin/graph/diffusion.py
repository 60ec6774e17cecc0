"""Graph diffusion solvers for the heat equation on a graph, registered in :mod:`nsde_coin.solvers` (family "graph").

Parametrisation (the same for every solver): ``diffuse(u, L, sigma2, layer_num)`` evolves ``u_t = −L u`` (equivalently
``u_t = −σ² L u`` for ``layer_num`` units of time) over the total diffusion time **T = layer_num · σ²**, starting from
``u``. The paper's COIN step ``u ← u − σ² L u`` repeated ``layer_num`` times is the ``"explicit"`` solver.
Alternatively pass ``t=T, steps=k`` (then ``σ² = T/k``, ``layer_num = k``).

Solvers (``solver=``):

* ``"explicit"`` — ``layer_num`` explicit Euler steps ``u ← (I − σ²L) u`` (first order in σ²). Stable only when
  ``σ²·λ_max(L) < 2``; beyond that the solver raises ``ValueError`` unless ``allow_unstable=True`` (needed to reproduce
  the paper's Cora setting σ² = 0.35, where σ²·λ_max ≈ 2.02). It preserves non-negativity only under the stronger bound
  ``σ²·max_i L_ii ≤ 1`` (``I − σ²L`` then is a stochastic matrix); a :class:`PositivityWarning` is issued once per
  operator and step size when that bound is violated.
* ``"implicit"`` — ``layer_num`` implicit Euler steps ``(I + σ²L) u⁺ = u`` (first order, unconditionally stable and
  positivity preserving), each solved by conjugate gradients for symmetric L (and for ``"rw"``, through its symmetric
  similar matrix); other non-symmetric L use a sparse LU factorisation (scipy SuperLU, cached).
* ``"exact"`` — ``exp(−T L) u`` by a Chebyshev expansion of the heat kernel on [0, λ_max] (Bessel coefficients),
  accurate to ``tol`` relative to ‖u‖; needs L symmetric or of kind ``"rw"``.
* ``"random_walk"`` — Feynman–Kac made visible: the Monte Carlo average of ``u`` over the end nodes of random walks.
  ``walk="discrete"``: ``layer_num`` steps of the chain with transition matrix ``P = I − σ²L`` (needs ``P ≥ 0``), whose
  expectation is the explicit solver. ``walk="continuous"``: a continuous-time chain with rates ``−σ²L_ij`` run for
  ``layer_num`` time units (simulated exactly by uniformisation), whose expectation is the exact solver. Needs a Markov
  generator (zero row sums, non-positive off-diagonals: kinds ``"paper"``, ``"rw"``, ``"comb"``; ``"sym"`` raises).
  Returns the mean and, with ``return_stderr=True``, its standard error per entry.

``L`` must be a graph Laplacian (non-positive off-diagonal, non-negative diagonal, symmetric or zero row sums; the
rule is in :mod:`nsde_coin.graph.laplacian_checks`): anything else raises ``ValueError`` instead of returning a
plausible wrong answer. The check runs once per operator (cached); ``check_laplacian=False`` skips it.

Shapes: ``u`` is (n,), (n, C) or (B, n, C) (B independent signals, e.g. a model ensemble). Gradients flow to ``u``
(never to L) through one custom autograd call per solve (see :mod:`nsde_coin.graph.sparse`).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Optional, Union

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from scipy.special import ive

from nsde_coin._checks import is_int, is_real
from nsde_coin.graph.laplacian import GraphOperator, as_operator, torch_csr
from nsde_coin.graph.laplacian_checks import check_laplacian as _check_laplacian
from nsde_coin.graph.sparse import apply_linear, from_columns, propagate, to_columns
from nsde_coin.solvers import SolverInfo, get_solver, register_solver

__all__ = ["WALKS", "PositivityWarning", "diffuse", "stability_report"]

WALKS = ("discrete", "continuous")


class PositivityWarning(UserWarning):
    """An explicit step violates σ²·max_i L_ii ≤ 1, so ``I − σ²L`` has negative entries (u may leave [0, 1])."""


# ------------------------------------------------------------------------------------------------------ validation
def _check_u(u: Any) -> None:
    if not isinstance(u, torch.Tensor):
        raise TypeError(f"u must be a torch.Tensor, got {type(u).__name__}")
    if not u.is_floating_point():
        raise TypeError(f"u must be a floating-point tensor, got dtype {u.dtype}")
    if not bool(torch.isfinite(u).all()):
        raise ValueError(f"u contains NaN or Inf ({int((~torch.isfinite(u)).sum())} non-finite entries)")


def _resolve_time(sigma2, layer_num, t, steps) -> tuple[float, int]:
    if t is not None or steps is not None:
        if sigma2 is not None or layer_num is not None:
            raise ValueError("pass either (sigma2, layer_num) or (t, steps), not both")
        if t is None or steps is None:
            raise ValueError(f"t and steps go together; got t={t!r}, steps={steps!r}")
        steps_i = _check_layers(steps, "steps")
        if not is_real(t) or not math.isfinite(t) or t < 0:
            raise ValueError(f"t must be a finite number ≥ 0, got {t!r}")
        if steps_i == 0:
            if t != 0:
                raise ValueError(f"steps=0 with t={t!r} > 0: use steps ≥ 1")
            return 1.0, 0
        return float(t) / steps_i, steps_i
    if sigma2 is None or layer_num is None:
        raise ValueError(f"sigma2 and layer_num are required (got sigma2={sigma2!r}, layer_num={layer_num!r})")
    if not is_real(sigma2) or not math.isfinite(sigma2) or sigma2 <= 0:
        raise ValueError(f"sigma2 must be a finite number > 0, got {sigma2!r}")
    return float(sigma2), _check_layers(layer_num, "layer_num")


def _check_layers(k: Any, what: str) -> int:
    if not is_int(k) or k < 0:
        raise ValueError(f"{what} must be an int ≥ 0 (0 = identity), got {k!r}")
    return int(k)


def stability_report(L: Any, sigma2: float) -> dict[str, float]:
    """Numbers behind the explicit solver's guards: σ²·λ_max (stable iff < 2), σ²·max L_ii (positive iff ≤ 1)."""
    op = as_operator(L)
    return {"lambda_max": op.lambda_max, "sigma2_lambda_max": sigma2 * op.lambda_max,
            "max_sigma2": 2.0 / op.lambda_max if op.lambda_max > 0 else math.inf,
            "max_diag": op.max_diag, "sigma2_max_diag": sigma2 * op.max_diag,
            "max_sigma2_nonnegative": 1.0 / op.max_diag if op.max_diag > 0 else math.inf}


# ----------------------------------------------------------------------------------------------------------- API
def diffuse(
    u: torch.Tensor,
    L: Union[torch.Tensor, GraphOperator, Any],
    sigma2: Optional[float] = None,
    layer_num: Optional[int] = None,
    *,
    t: Optional[float] = None,
    steps: Optional[int] = None,
    solver: str = "explicit",
    allow_unstable: bool = False,
    generator: Optional[torch.Generator] = None,
    seed: int = 0,
    samples: int = 1000,
    walk: str = "discrete",
    nodes: Optional[torch.Tensor] = None,
    return_stderr: bool = False,
    tol: Optional[float] = None,
    maxiter: Optional[int] = None,
    check_laplacian: bool = True,
) -> Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Diffuse ``u`` on the graph of ``L`` for time ``T = layer_num·σ²`` (``u_t = −L u``) with the named solver.

    Args:
        u: (n,), (n, C) or (B, n, C) floating tensor (finite).
        L: n×n Laplacian: a tensor from :func:`~nsde_coin.graph.laplacian.laplacian` (its cached operator is reused),
            any sparse/dense matrix, or a :class:`~nsde_coin.graph.laplacian.GraphOperator`.
        sigma2: step size σ² > 0 (the paper's σ²).
        layer_num: number of steps k ≥ 0 (0 returns ``u`` unchanged).
        t, steps: alternative to (sigma2, layer_num): total time and number of steps.
        solver: a registered graph solver: ``explicit``, ``implicit``, ``exact``, ``random_walk``.
        allow_unstable: explicit only — run even when σ²·λ_max ≥ 2 (reproduces the paper's Cora σ² = 0.35).
        generator, seed: random_walk randomness (a new ``torch.Generator`` seeded with ``seed`` if not given).
        samples: random_walk walkers per start node.
        walk: random_walk kind, ``"discrete"`` (mirrors explicit) or ``"continuous"`` (mirrors exact).
        nodes: random_walk only — start nodes to estimate (default all); the output then has len(nodes) rows.
        return_stderr: also return the Monte Carlo standard error (zeros for deterministic solvers).
        tol: implicit: CG relative residual; exact: truncation error of the Chebyshev series (relative to ‖u‖).
        maxiter: implicit: CG iterations per step.
        check_laplacian: raise ``ValueError`` when ``L`` is not a graph Laplacian (positive off-diagonal or
            negative diagonal entries, neither symmetric nor zero row sums; the rule is in
            :mod:`nsde_coin.graph.laplacian_checks`). Checked once per operator and cached (a tensor passed again
            maps to the same operator), so a training loop pays it once. ``False`` diffuses any matrix.

    Returns:
        u_T with the shape of ``u`` (and its standard error when ``return_stderr``).
    """
    _check_u(u)
    info = get_solver(solver, "graph")
    s, k = _resolve_time(sigma2, layer_num, t, steps)
    op = as_operator(L)
    if check_laplacian:
        _check_laplacian(op)
    cols, shape = to_columns(u, op.n)
    if nodes is not None and solver != "random_walk":
        raise ValueError(f"nodes= applies to solver='random_walk' only, not to {solver!r}")
    if k == 0:
        out, err = cols, None
        if nodes is not None:
            out = cols[_check_nodes(nodes, op.n)]
    else:
        out, err = info.impl(cols, op, s, k, allow_unstable=allow_unstable, generator=generator, seed=seed,
                             samples=samples, walk=walk, nodes=nodes, tol=tol, maxiter=maxiter)
    if not bool(torch.isfinite(out.detach()).all()):
        raise ValueError(f"graph diffusion with solver={solver!r}, sigma2={s}, layer_num={k} produced NaN/Inf "
                         f"(sigma2·lambda_max = {s * op.lambda_max:.4g}; stable explicit steps need < 2)")
    if nodes is not None:
        shape = _rows_shape(shape, out.shape[0])
    res = from_columns(out, shape)
    if not return_stderr:
        return res
    return res, (from_columns(err, shape) if err is not None else torch.zeros_like(res))


def _rows_shape(shape: tuple[int, ...], rows: int) -> tuple[int, ...]:
    if len(shape) == 3:
        return (shape[0], rows, shape[2])
    return (rows,) + tuple(shape[1:])


def _check_nodes(nodes: Any, n: int) -> torch.Tensor:
    if not isinstance(nodes, torch.Tensor) or nodes.dtype != torch.long or nodes.dim() != 1:
        raise TypeError("nodes must be a 1-D torch.long tensor of node ids")
    if nodes.numel() and (int(nodes.min()) < 0 or int(nodes.max()) >= n):
        raise ValueError(f"nodes must lie in [0, {n}), got range [{int(nodes.min())}, {int(nodes.max())}]")
    return nodes


# ------------------------------------------------------------------------------------------------------- explicit
def _explicit(u: torch.Tensor, op: GraphOperator, s: float, k: int, *, allow_unstable: bool = False,
              **_: Any) -> tuple[torch.Tensor, None]:
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


# ------------------------------------------------------------------------------------------------------- implicit
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


def _default_tol(dtype: torch.dtype, f32: float, f64: float) -> float:
    return f64 if dtype == torch.float64 else f32


def _implicit(u: torch.Tensor, op: GraphOperator, s: float, k: int, *, tol: Optional[float] = None,
              maxiter: Optional[int] = None, **_: Any) -> tuple[torch.Tensor, None]:
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


# ---------------------------------------------------------------------------------------------------------- exact
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


def _exact(u: torch.Tensor, op: GraphOperator, s: float, k: int, *, tol: Optional[float] = None,
           **_: Any) -> tuple[torch.Tensor, None]:
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


# ---------------------------------------------------------------------------------------------------- random walk
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
                 samples: int = 1000, walk: str = "discrete", nodes=None,
                 **_: Any) -> tuple[torch.Tensor, torch.Tensor]:
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


# -------------------------------------------------------------------------------------------------- registration
for _info in (
    SolverInfo("explicit", "graph", "nsde_coin",
               "explicit Euler u ← (I − σ²L)u, the paper's COIN step; stable iff σ²·λ_max < 2", weak_order=1.0,
               impl=_explicit),
    SolverInfo("implicit", "graph", "nsde_coin",
               "implicit Euler (I + σ²L)u⁺ = u by conjugate gradients; unconditionally stable", weak_order=1.0,
               unconditionally_stable=True, impl=_implicit),
    SolverInfo("exact", "graph", "nsde_coin",
               "heat kernel exp(−layer_num·σ²·L)u by a Chebyshev expansion (no time-stepping error)",
               unconditionally_stable=True, impl=_exact),
    SolverInfo("random_walk", "graph", "nsde_coin",
               "Monte Carlo average over random-walk end nodes (discrete ↔ explicit, continuous ↔ exact)",
               stochastic=True, impl=_random_walk),
):
    register_solver(_info, overwrite=True)  # overwrite: a module reload must not fail
