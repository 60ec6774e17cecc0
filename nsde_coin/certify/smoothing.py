"""Randomized-smoothing certificates for SDE networks with a pure-diffusion prefix (docs/certify.md, part 1).

A :class:`~nsde_coin.model.ConvectionDiffusionNet` built with ``prefix_sigma=σ0, prefix_time=t0`` starts with
X_{t0} = x + s·Z, s = σ0·√t0, Z ~ N(0, I), followed by the rest of the network (an SDE or ODE, itself random) whose
one-path output h(y) = f(X_T | X_{t0} = y) lies in [0, 1]^C. Hence

* the vote of one path, ``argmax h``, is a random base classifier, and P(vote = c) = E_Z[q_c(x + sZ)] with q_c ∈ [0, 1]
  — Cohen, Rosenfeld & Kolter (2019) apply: if p_A ≥ p̲_A > 1/2 then the majority vote is constant on the ball of
  radius R = s·Φ⁻¹(p̲_A) (:func:`certify`, :func:`predict`);
* the network's soft output u_c(x) = E[h_c] is a Gaussian smoothing of a [0, 1]-valued function, so Φ⁻¹(u_c) is
  1/s-Lipschitz (Salman et al. 2019): if u_A ≥ u̲_A > 1/2 then argmax u is constant on the ball of radius
  s·Φ⁻¹(u̲_A) (``soft_*`` fields of :func:`certify`; Hoeffding or empirical-Bernstein bound on the MC mean).

Every path here is fresh: the noise comes from this module's generator (``seed``), never from the network's own
seed (whose eval mode reuses one fixed path set), so the n0 selection paths and the n estimation paths are independent.
Work is batched over (input, path) pairs: ``batch`` rows per call of the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from scipy.stats import binomtest
from torch import Tensor

from nsde_coin._checks import all_finite, is_int
from nsde_coin.certify.stats import bernstein_lower, clopper_pearson_lower, hoeffding_lower, radius
from nsde_coin.errors import invalid_choice
from nsde_coin.integrate import draw_seed
from nsde_coin.model import ConvectionDiffusionNet

__all__ = ["BOUNDS", "PathStats", "SmoothingCertificate", "certify", "predict", "sample_paths"]

BOUNDS = ("bernstein", "hoeffding")
ABSTAIN = -1


@dataclass(frozen=True)
class PathStats:
    """Per-input statistics of ``num`` fresh paths: vote ``counts`` (B, C) int64, ``mean`` (B, C) and unbiased
    ``var`` (B, C) float64 of the one-path outputs h(x + sZ)."""

    counts: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    num: int


@dataclass(frozen=True)
class SmoothingCertificate:
    """Result of :func:`certify` for B inputs (numpy arrays).

    Attributes:
        prediction: (B,) Cohen's CERTIFY class, ``-1`` = abstain (p̲_A ≤ 1/2). radius: (B,) R = s·Φ⁻¹(p̲_A) (0 if
            abstained). p_lower: (B,) the Clopper–Pearson bound p̲_A.
        soft_prediction, soft_radius, soft_lower: the same for the soft output u (Lipschitz form).
        scale: s; alpha, n0, n: the arguments; bound: the soft bound used.
    """

    prediction: np.ndarray
    radius: np.ndarray
    p_lower: np.ndarray
    soft_prediction: np.ndarray
    soft_radius: np.ndarray
    soft_lower: np.ndarray
    scale: float
    alpha: float
    n0: int
    n: int
    bound: str

    def accuracy(self, y: np.ndarray, radii: np.ndarray | list[float], soft: bool = False) -> list[float]:
        """Certified accuracy at each radius r: share of inputs with prediction = y and certified radius ≥ r."""
        pred, rad = (self.soft_prediction, self.soft_radius) if soft else (self.prediction, self.radius)
        ok = pred == np.asarray(y)
        return [float(np.mean(ok & (rad >= r))) for r in radii]


def _scale(net: ConvectionDiffusionNet) -> float:
    s = getattr(net, "prefix_scale", None)
    if not isinstance(net, ConvectionDiffusionNet) or s is None:
        raise ValueError("smoothing certificates need a ConvectionDiffusionNet built with prefix_sigma and "
                         "prefix_time (the pure-diffusion prefix that makes u a Gaussian smoothing)")
    return float(s)


def _check_x(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 2 or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor of shape (B, d), got {type(x).__name__} "
                        f"{tuple(getattr(x, 'shape', ()))}")
    if not all_finite(x):
        raise ValueError("x contains NaN or Inf")


def _check_count(name: str, v: object, low: int) -> int:
    if not is_int(v) or v < low:
        raise ValueError(f"{name}={v!r} is not valid; expected an int >= {low}")
    return int(v)


@torch.no_grad()
def sample_paths(net: ConvectionDiffusionNet, x: Tensor, num: int, *, batch: int = 10_000,
                 generator: Optional[torch.Generator] = None, progress: bool = False) -> PathStats:
    """Run ``num`` fresh paths per input (prefix x + s·Z drawn from ``generator``, then the network's SDE) and
    return their votes and output moments. x (B, d); ``batch`` rows per network call."""
    s = _scale(net)
    _check_x(x)
    num, batch = _check_count("num", num, 1), _check_count("batch", batch, 1)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    was_training = net.training
    net.eval()
    b, d = x.shape
    total = b * num
    counts = sums = sq = None
    from tqdm.auto import tqdm

    try:
        for r0 in tqdm(range(0, total, batch), desc="paths", disable=not progress, leave=False):
            idx = torch.arange(r0, min(r0 + batch, total)) // num
            z = torch.randn(idx.numel(), d, generator=gen, dtype=x.dtype).to(x.device)
            out = net.path_outputs(x[idx] + s * z, draw_seed(gen)).detach().double().cpu()
            if out.dim() != 2:
                raise ValueError(f"the network's output must be (N, C), got {tuple(out.shape)}")
            if counts is None:
                c = out.shape[1]
                counts = torch.zeros(b, c, dtype=torch.int64)
                sums = torch.zeros(b, c, dtype=torch.float64)
                sq = torch.zeros(b, c, dtype=torch.float64)
            counts.index_add_(0, idx, torch.nn.functional.one_hot(out.argmax(1), out.shape[1]))
            sums.index_add_(0, idx, out)
            sq.index_add_(0, idx, out * out)
    finally:
        net.train(was_training)
    mean = (sums / num).numpy()
    var = ((sq - sums * sums / num) / max(num - 1, 1)).clamp_min(0).numpy()
    return PathStats(counts.numpy(), mean, var, num)


def certify(net: ConvectionDiffusionNet, x: Tensor, n0: int = 100, n: int = 10_000, alpha: float = 0.001,
            batch: int = 10_000, *, bound: str = "bernstein", seed: int = 0,
            progress: bool = False) -> SmoothingCertificate:
    """Cohen et al.'s CERTIFY for every row of x (B, d), plus the soft-output certificate.

    Class c_A = the most frequent vote among ``n0`` paths (soft: argmax of their mean output); p̲_A = the
    Clopper–Pearson (1 − α) lower bound from ``n`` fresh paths; prediction c_A with radius s·Φ⁻¹(p̲_A) when
    p̲_A > 1/2, else abstain (−1). Soft: u̲_A = ``bound`` (bernstein / hoeffding) lower bound on the mean of h_{c_A}
    over the same n paths (outputs must lie in [0, 1]). Each certificate holds with probability ≥ 1 − α.
    """
    s = _scale(net)
    if bound not in BOUNDS:
        raise ValueError(invalid_choice("bound", bound, BOUNDS))
    n0, n = _check_count("n0", n0, 1), _check_count("n", n, 2)
    gen = torch.Generator().manual_seed(int(seed))
    sel = sample_paths(net, x, n0, batch=batch, generator=gen, progress=progress)
    est = sample_paths(net, x, n, batch=batch, generator=gen, progress=progress)
    rows = np.arange(x.shape[0])
    ca = sel.counts.argmax(1)
    p_lo, tail = clopper_pearson_lower(est.counts[rows, ca], n, alpha)
    pred = np.where(tail < 0.5, ca, ABSTAIN)
    if est.mean.min() < -1e-6 or est.mean.max() > 1 + 1e-6:
        raise ValueError("the soft certificate needs network outputs in [0, 1] (output='probs')")
    sa = sel.mean.argmax(1)
    if bound == "hoeffding":
        u_lo, u_tail = hoeffding_lower(est.mean[rows, sa], n, alpha)
    else:
        u_lo, u_tail = bernstein_lower(est.mean[rows, sa], est.var[rows, sa], n, alpha)
    soft_pred = np.where(u_tail < 0.5, sa, ABSTAIN)
    return SmoothingCertificate(pred, radius(s, tail), p_lo, soft_pred, radius(s, u_tail), u_lo, s, float(alpha),
                                n0, n, bound)


def predict(net: ConvectionDiffusionNet, x: Tensor, n: int = 1000, alpha: float = 0.001, batch: int = 10_000, *,
            seed: int = 0, progress: bool = False) -> np.ndarray:
    """Cohen et al.'s PREDICT: the top vote among n paths, or −1 (abstain) unless a two-sided binomial test of
    n_A vs n_B (the two top counts) rejects p = 1/2 at level α. Returns (B,) int64; wrong with probability ≤ α."""
    _scale(net)
    n = _check_count("n", n, 1)
    st = sample_paths(net, x, n, batch=batch, generator=torch.Generator().manual_seed(int(seed)), progress=progress)
    order = np.argsort(-st.counts, axis=1, kind="stable")
    rows = np.arange(st.counts.shape[0])
    na = st.counts[rows, order[:, 0]]
    nb = st.counts[rows, order[:, 1]] if st.counts.shape[1] > 1 else np.zeros_like(na)
    out = np.full(rows.shape, ABSTAIN, dtype=np.int64)
    for i in rows:
        if binomtest(int(na[i]), int(na[i] + nb[i]), 0.5).pvalue <= alpha:
            out[i] = order[i, 0]
    return out
