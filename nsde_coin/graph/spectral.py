"""Spectral bounds of sparse Laplacians: the largest eigenvalue λ_max (ARPACK Lanczos) and a symmetry test.

λ_max sets the explicit solver's stability bound (σ²·λ_max < 2) and the Chebyshev interval of the exact solver.
These are plain scipy functions; :class:`~nsde_coin.graph.operator.GraphOperator` caches their results and
:func:`nsde_coin.graph.laplacian.lambda_max` is the public entry.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

__all__: list[str] = []


def _lambda_max_scipy(m: sp.csr_matrix, symmetric: Optional[bool], iters: int, tol: float,
                      similarity: Optional[np.ndarray] = None) -> float:
    n = m.shape[0]
    if similarity is not None:  # L = diag(q) M diag(1/q): same spectrum as the symmetric M
        m = sp.csr_matrix(sp.diags(1.0 / similarity) @ m @ sp.diags(similarity))
        m = sp.csr_matrix((m + m.T) * 0.5)
        symmetric = True
    if symmetric is None:
        symmetric = _is_symmetric(m)
    if not np.any(m.data):  # L = 0 (no edges): ARPACK fails on the zero operator ("starting vector is zero")
        return 0.0
    if n <= 3:
        ev = np.linalg.eigvals(m.toarray())
        return float(np.max(ev.real))
    v0 = np.random.default_rng(0).standard_normal(n)
    try:
        if symmetric:
            val = spla.eigsh(m, k=1, which="LA", v0=v0, maxiter=iters * n, tol=tol, return_eigenvectors=False)
        else:
            val = spla.eigs(m, k=1, which="LR", v0=v0, maxiter=iters * n, tol=tol, return_eigenvectors=False)
    except spla.ArpackNoConvergence as err:  # pragma: no cover - ARPACK practically always converges here
        if len(err.eigenvalues) == 0:
            raise ValueError(f"lambda_max: ARPACK did not converge in {iters * n} iterations (tol={tol})") from err
        val = err.eigenvalues
    return float(np.max(np.real(val)))


def _is_symmetric(m: sp.csr_matrix) -> bool:
    diff = abs(m - m.T)
    scale = max(1.0, float(abs(m).max()) if m.nnz else 1.0)
    return not diff.nnz or float(diff.max()) <= 1e-12 * scale
