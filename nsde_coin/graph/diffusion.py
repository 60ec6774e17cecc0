"""``diffuse``: the one entry to the graph diffusion solvers (family ``"graph"`` of :mod:`nsde_coin.solvers`).

Parametrisation (the same for every solver): ``diffuse(u, L, sigma2, layer_num)`` evolves ``u_t = −L u`` (equivalently
``u_t = −σ² L u`` for ``layer_num`` units of time) over the total diffusion time **T = layer_num · σ²**, starting from
``u``. The paper's COIN step ``u ← u − σ² L u`` repeated ``layer_num`` times is the ``"explicit"`` solver.
Alternatively pass ``t=T, steps=k`` (then ``σ² = T/k``, ``layer_num = k``).

Solvers (``solver=``; each is one small module of :mod:`nsde_coin.graph.solvers`):

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

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any, Optional, Union

import torch

from nsde_coin._checks import all_finite, is_int, is_real
from nsde_coin.errors import NonFiniteError
from nsde_coin.graph.laplacian import GraphOperator, as_operator
from nsde_coin.graph.laplacian_checks import check_laplacian as _check_laplacian
from nsde_coin.graph.solvers._common import _check_nodes  # importing the package registers the solvers
from nsde_coin.graph.solvers.explicit import PositivityWarning
from nsde_coin.graph.solvers.random_walk import WALKS
from nsde_coin.graph.sparse import from_columns, to_columns
from nsde_coin.solvers import GraphSolverInfo, get_solver, list_solvers

__all__ = ["WALKS", "PositivityWarning", "check_options", "diffuse", "solver_options", "stability_report"]


# ------------------------------------------------------------------------------------------------------ validation
def _check_u(u: Any) -> None:
    if not isinstance(u, torch.Tensor):
        raise TypeError(f"u must be a torch.Tensor, got {type(u).__name__}")
    if not u.is_floating_point():
        raise TypeError(f"u must be a floating-point tensor, got dtype {u.dtype}")
    if not all_finite(u):
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
    seed: Optional[int] = None,
    samples: Optional[int] = None,
    walk: Optional[str] = None,
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
        allow_unstable: explicit — run even when σ²·λ_max ≥ 2 (reproduces the paper's Cora σ² = 0.35). A
            permission, accepted by every solver (the stable ones never need it).
        generator, seed: random_walk randomness (a new ``torch.Generator`` seeded with ``seed``, default 0, if not
            given).
        samples: random_walk walkers per start node (default 1000).
        walk: random_walk kind, ``"discrete"`` (default, mirrors explicit) or ``"continuous"`` (mirrors exact).
        nodes: random_walk only — start nodes to estimate (default all); the output then has len(nodes) rows.
        return_stderr: also return the Monte Carlo standard error (zeros for deterministic solvers).
        tol: implicit: CG relative residual; exact: truncation error of the Chebyshev series (relative to ‖u‖).
        maxiter: implicit: CG iterations per step.
        check_laplacian: raise ``ValueError`` when ``L`` is not a graph Laplacian (positive off-diagonal or
            negative diagonal entries, neither symmetric nor zero row sums; the rule is in
            :mod:`nsde_coin.graph.laplacian_checks`). Checked once per operator and cached (a tensor passed again
            maps to the same operator), so a training loop pays it once. ``False`` diffuses any matrix.

    Solver options (generator, seed, samples, walk, nodes, tol, maxiter) are the keyword-only parameters of the
    solver's implementation; one the solver does not take raises ``ValueError`` (e.g. ``solver="exact",
    samples=10``), see :func:`solver_options`.

    Returns:
        u_T with the shape of ``u`` (and its standard error when ``return_stderr``).
    """
    _check_u(u)
    info = get_solver(solver, "graph")
    given = {"generator": generator, "seed": seed, "samples": samples, "walk": walk, "nodes": nodes, "tol": tol,
             "maxiter": maxiter}
    kwargs = check_options(info, {key: val for key, val in given.items() if val is not None})
    if allow_unstable and "allow_unstable" in solver_options(info):
        kwargs["allow_unstable"] = True
    s, k = _resolve_time(sigma2, layer_num, t, steps)
    op = as_operator(L)
    if check_laplacian:
        _check_laplacian(op)
    cols, shape = to_columns(u, op.n)
    if k == 0:
        out, err = cols, None
        if nodes is not None:
            out = cols[_check_nodes(nodes, op.n)]
    else:
        out, err = info.impl(cols, op, s, k, **kwargs)
    if not all_finite(out):
        raise NonFiniteError(f"graph diffusion with solver={solver!r}, sigma2={s}, layer_num={k} produced NaN/Inf "
                             f"(sigma2·lambda_max = {s * op.lambda_max:.4g}; stable explicit steps need < 2)")
    if nodes is not None:
        shape = _rows_shape(shape, out.shape[0])
    res = from_columns(out, shape)
    if not return_stderr:
        return res
    return res, (from_columns(err, shape) if err is not None else torch.zeros_like(res))


def solver_options(solver: Union[str, GraphSolverInfo]) -> tuple[str, ...]:
    """The options a graph solver takes: the keyword-only parameters of its implementation, in order."""
    info = solver if isinstance(solver, GraphSolverInfo) else get_solver(solver, "graph")
    return _keyword_only(info.impl)


@functools.cache
def _keyword_only(impl: Callable) -> tuple[str, ...]:
    """Keyword-only parameter names of a solver implementation (cached: ``inspect.signature`` took ~0.1 ms, paid
    three times per ``diffuse`` call, every epoch)."""
    params = inspect.signature(impl).parameters.values()
    return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


@functools.cache
def _var_keyword(impl: Callable) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(impl).parameters.values())


def _takes_any(info: GraphSolverInfo) -> bool:
    return _var_keyword(info.impl)


def _short(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"<tensor of shape {tuple(value.shape)}>"
    return repr(value) if len(repr(value)) <= 40 else f"<{type(value).__name__}>"


def check_options(solver: Union[str, GraphSolverInfo], options: dict[str, Any]) -> dict[str, Any]:
    """``options`` if the graph solver takes every one of them; else a one-line ``ValueError`` naming the option, the
    solver's valid options and the solvers that do take it. ``allow_unstable`` is a permission every solver takes."""
    info = solver if isinstance(solver, GraphSolverInfo) else get_solver(solver, "graph")
    valid = solver_options(info)
    if _takes_any(info):
        return dict(options)
    for key, val in options.items():
        if key == "allow_unstable" or key in valid:
            continue
        takers = [other.name for other in list_solvers("graph") if key in solver_options(other)]
        where = (f"; {key}= applies to solver=" + " or ".join(map(repr, takers)) + " only") if takers else ""
        raise ValueError(f"{key}={_short(val)} is not an option of graph solver {info.name!r} (valid options: "
                         f"{', '.join(valid) or '(none)'}){where}")
    return {key: val for key, val in options.items() if key != "allow_unstable" or key in valid}


def _rows_shape(shape: tuple[int, ...], rows: int) -> tuple[int, ...]:
    if len(shape) == 3:
        return (shape[0], rows, shape[2])
    return (rows,) + tuple(shape[1:])
