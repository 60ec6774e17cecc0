"""Is this matrix a graph Laplacian? The check :func:`~nsde_coin.graph.diffusion.diffuse` runs once per operator.

Every graph solver assumes ``u_t = −L u`` is a diffusion: mass moves from node to node, never appears from nothing.
A matrix that is not a Laplacian runs through the same arithmetic and gives a plausible-looking wrong answer
(``diffuse(u, torch.rand(6, 6), 0.1, 2)`` has negative "probabilities"; ``−I`` with ``solver="implicit"`` amplifies
``u``). The rule, with ``tol = 1e-9·max(1, max|L_ij|)`` for rounding:

1. off-diagonal entries are non-positive: ``L_ij ≤ tol`` for ``i ≠ j`` (edge weights are ``−L_ij ≥ 0``);
2. the diagonal is non-negative: ``L_ii ≥ −tol``;
3. L is symmetric, or every row sums to 0 (``|Σ_j L_ij| ≤ tol``: a Markov generator such as ``I − D⁻¹A``);
4. if L is symmetric without zero row sums (e.g. ``I − D^{-1/2} A D^{-1/2}``), every 2×2 principal minor is
   non-negative: ``L_ij² ≤ L_ii·L_jj·(1 + 1e-9)`` for each stored ``L_ij`` — a necessary condition for L ⪰ 0 that
   rejects, e.g., ``[[0, −1], [−1, 0]]``.

With zero row sums, 1–2 make ``−L`` the generator of a Markov chain (so every solver is positivity-preserving and
stable in the max norm). A symmetric matrix passing 1, 2 and 4 can still have a negative eigenvalue (a 3-cycle with
``L_ii = 1``, ``L_ij = −0.9``); detecting that needs an eigenvalue solve, which this once-per-operator check does not
pay for. Every kind built by :func:`~nsde_coin.graph.laplacian.laplacian` passes.

Cost: ``O(nnz)`` NumPy work on the operator's SciPy matrix, done the first time an operator is diffused and cached
in the operator (``op._cache``), so training pays it once per graph, not once per epoch. ``diffuse(...,
check_laplacian=False)`` skips it (to diffuse a general matrix on purpose).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from nsde_coin.graph.laplacian import GraphOperator

__all__ = ["check_laplacian", "laplacian_problem"]

_KEY = "laplacian_problem"
_HOW = ("a Laplacian has L_ij <= 0 off the diagonal, L_ii >= 0, and is symmetric or has zero row sums: build one "
        "with nsde_coin.graph.laplacian.laplacian / laplacian_from_weights, or pass check_laplacian=False to "
        "diffuse a general matrix on purpose")


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _find_problem(op: GraphOperator) -> Optional[str]:
    m = op.scipy  # float64 CSR, sorted, no duplicates
    if op.n == 0 or m.nnz == 0:
        return None
    tol = 1e-9 * max(1.0, float(np.abs(m.data).max()))
    rows = np.repeat(np.arange(op.n), np.diff(m.indptr))
    cols = m.indices
    off = rows != cols
    pos = off & (m.data > tol)
    if pos.any():
        k = _first(pos)
        return f"off-diagonal entry L[{rows[k]}, {cols[k]}] = {m.data[k]:.6g} > 0"
    diag = m.diagonal()
    if diag.min() < -tol:
        i = _first(diag < -tol)
        return f"diagonal entry L[{i}, {i}] = {diag[i]:.6g} < 0"
    if not (op.symmetric or op.zero_row_sums):
        sums = np.asarray(m.sum(axis=1)).ravel()
        i = int(np.argmax(np.abs(sums)))
        return f"L is neither symmetric nor has zero row sums (row {i} sums to {sums[i]:.6g})"
    if op.symmetric and not op.zero_row_sums:
        minor = m.data[off] ** 2 > diag[rows[off]] * diag[cols[off]] * (1.0 + 1e-9) + tol * tol
        if minor.any():
            k = np.flatnonzero(off)[_first(minor)]
            i, j = rows[k], cols[k]
            return (f"L[{i}, {j}]² = {m.data[k] ** 2:.6g} exceeds L[{i}, {i}]·L[{j}, {j}] = {diag[i] * diag[j]:.6g}, "
                    f"so L is not positive semi-definite")
    return None


def laplacian_problem(op: GraphOperator) -> Optional[str]:
    """Why ``op`` is not a graph Laplacian (one phrase), or ``None`` when it passes; cached in the operator."""
    if _KEY not in op._cache:
        op._cache[_KEY] = _find_problem(op)
    return op._cache[_KEY]


def check_laplacian(op: GraphOperator) -> None:
    """Raise ``ValueError`` when ``op`` fails the rule of the module doc (once per operator; cached)."""
    problem = laplacian_problem(op)
    if problem is not None:
        raise ValueError(f"L is not a graph Laplacian: {problem}; {_HOW}")
