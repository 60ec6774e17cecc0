"""Confidence bounds behind the smoothing certificates, computed so that no rounding can inflate a radius.

* :func:`clopper_pearson_lower` — one-sided (1 − α) lower bound on a binomial proportion, returned together with its
  upper tail ``1 − p̲`` computed directly (``beta.isf`` of the mirrored Beta law) rather than as ``1 − p̲``, so that
  :func:`radius` can take ``Φ⁻¹(p̲) = Φ̄⁻¹(1 − p̲)`` without cancellation when p̲ is within 1e-12 of 1.
* :func:`hoeffding_lower` and :func:`bernstein_lower` — one-sided (1 − α) lower bounds on the mean of [0, 1]-valued
  samples (Hoeffding 1963; the empirical Bernstein bound of Maurer & Pontil 2009, Thm. 4), also with their tails.
* :func:`radius` — ``s·Φ⁻¹(p̲)`` from the tail, ``norm.isf`` (accurate for tails down to ~1e-300).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import beta, norm

__all__ = ["bernstein_lower", "clopper_pearson_lower", "hoeffding_lower", "radius"]


def _check_alpha(alpha: float) -> None:
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise ValueError(f"alpha={alpha!r} is not valid; expected a float in (0, 1)")


def clopper_pearson_lower(k: np.ndarray, n: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(p̲, 1 − p̲): the exact one-sided lower confidence bound of a proportion from k successes in n trials.

    p̲ = Beta⁻¹(α; k, n − k + 1) (0 when k = 0); ``1 − p̲`` = the upper α quantile of Beta(n − k + 1, k)."""
    _check_alpha(alpha)
    k = np.asarray(k, dtype=np.int64)
    if n < 1 or np.any(k < 0) or np.any(k > n):
        raise ValueError(f"need 0 <= k <= n with n >= 1, got n={n}, k in [{k.min()}, {k.max()}]")
    kk = np.maximum(k, 1)
    lower = np.where(k > 0, beta.ppf(alpha, kk, n - kk + 1), 0.0)
    tail = np.where(k > 0, beta.isf(alpha, n - kk + 1, kk), 1.0)
    return lower, tail


def hoeffding_lower(mean: np.ndarray, n: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(lower, 1 − lower) for the mean of n i.i.d. samples in [0, 1]: mean − sqrt(log(1/α) / (2n))."""
    _check_alpha(alpha)
    w = math.sqrt(math.log(1.0 / alpha) / (2.0 * n))
    mean = np.asarray(mean, dtype=np.float64)
    return mean - w, (1.0 - mean) + w


def bernstein_lower(mean: np.ndarray, var: np.ndarray, n: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(lower, 1 − lower), empirical Bernstein: mean − sqrt(2 V log(2/α) / n) − 7 log(2/α) / (3(n − 1)), with V the
    unbiased sample variance of n ≥ 2 samples in [0, 1] (Maurer & Pontil 2009)."""
    _check_alpha(alpha)
    if n < 2:
        raise ValueError(f"the Bernstein bound needs n >= 2 samples, got {n}")
    lg = math.log(2.0 / alpha)
    w = np.sqrt(2.0 * np.maximum(np.asarray(var, dtype=np.float64), 0.0) * lg / n) + 7.0 * lg / (3.0 * (n - 1))
    mean = np.asarray(mean, dtype=np.float64)
    return mean - w, (1.0 - mean) + w


def radius(scale: float, tail: np.ndarray) -> np.ndarray:
    """s·Φ⁻¹(1 − tail) = s·Φ̄⁻¹(tail) where tail < 1/2, else 0 (abstain)."""
    tail = np.asarray(tail, dtype=np.float64)
    return np.where(tail < 0.5, scale * norm.isf(np.clip(tail, 1e-300, 0.5)), 0.0)
