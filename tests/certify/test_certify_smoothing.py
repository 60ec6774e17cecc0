"""Randomized-smoothing certificates of SDE networks (nsde_coin.certify.smoothing): closed forms and coverage."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import binomtest, norm

from nsde_coin.certify import (
    bernstein_lower,
    certify,
    clopper_pearson_lower,
    hoeffding_lower,
    predict,
    radius,
    sample_paths,
)
from nsde_coin.fields import MLPDrift, ScalarDiffusion
from nsde_coin.model import ConvectionDiffusionNet

W = torch.tensor([0.6, 0.8], dtype=torch.float64)  # unit normal of the decision boundary w·y + b = 0
B = -0.2
SIGMA0, T0 = 0.5, 1.44  # s = 0.5 · 1.2 = 0.6
S = SIGMA0 * math.sqrt(T0)


class HardLinear(torch.nn.Module):
    """Logits (0, β(w·y + b)): with β = 1e6 the one-path vote is exactly the half-plane w·y + b > 0."""

    def forward(self, y):
        z = 1e6 * (y @ W + B)
        return torch.stack([torch.zeros_like(z), z], 1)


class ProbitLinear(torch.nn.Module):
    """Probabilities (1 − Φ(z/τ), Φ(z/τ)), z = w·y + b: its Gaussian smoothing is Φ(z/√(τ² + s²)) in closed form."""

    tau = 0.4

    def forward(self, y):
        p = torch.special.ndtr((y @ W + B) / self.tau)
        return torch.stack([1 - p, p], 1)


def _net(base, output="probs"):
    return ConvectionDiffusionNet(base, None, None, steps=1, prefix_sigma=SIGMA0, prefix_time=T0, output=output)


def _points(dist):
    """Points at signed distance ``dist`` (B,) from the boundary (class 1 side for dist > 0)."""
    foot = torch.tensor([-B * 0.6, -B * 0.8], dtype=torch.float64)
    return foot + torch.as_tensor(dist, dtype=torch.float64)[:, None] * W


def test_prefix_is_exact_gaussian_smoothing():
    net = _net(ProbitLinear(), output="identity")
    net.eval()
    net.eval_samples = 20000
    x = _points([0.3, -0.5])
    u = net(x)[:, 1].double()
    want = norm.cdf(np.array([0.3, -0.5]) / math.hypot(ProbitLinear.tau, S))
    assert np.allclose(u.numpy(), want, atol=0.012)  # 5 standard errors (sd ≤ 0.5/√20000 = 0.0035 … measured 0.002)
    assert net.prefix_scale == pytest.approx(S)


@pytest.mark.parametrize("n", [2000, 200_000])
def test_linear_radius_converges_to_boundary_distance(n):
    dist = np.array([0.15, 0.3, 0.6, 1.0])
    cert = certify(_net(HardLinear()), _points(dist), n0=1000, n=n, alpha=0.001, batch=100_000, seed=1)
    assert (cert.prediction == 1).all()
    p = norm.cdf(dist / S)
    # certified radius = s·Φ⁻¹(p̲) with p̲ ≥ p − (z_{α} + 4)·sd w.p. ≥ 1 − 3e-5 per point; never above the distance
    # except with probability α
    lo = S * norm.ppf(p - (3.1 + 4.0) * np.sqrt(p * (1 - p) / n))
    assert (cert.radius <= dist + 1e-12).all()
    assert (cert.radius >= lo).all(), (cert.radius, lo)
    if n == 200_000:
        assert np.abs(cert.radius - dist).max() < 0.03  # measured ≤ 0.015 over 7 seeds
    # soft (Lipschitz) radius of the probit base: s·Φ⁻¹(u̲) → s·z/√(τ² + s²) < z
    soft = certify(_net(ProbitLinear(), output="identity"), _points(dist), n0=1000, n=n, alpha=0.001,
                   batch=100_000, seed=2)
    target = S * dist / math.hypot(ProbitLinear.tau, S)
    assert (soft.soft_radius <= target + 1e-9).all()
    if n == 200_000:
        assert np.abs(soft.soft_radius - target).max() < 0.03  # measured ≤ 0.011 over 7 seeds


def test_lower_bound_coverage_binomial():
    """200 independent certifications of one point: p̲ ≤ p_A must hold in at least (1 − α) of them."""
    alpha, reps, n = 0.05, 200, 400
    dist = 0.25
    x = _points(np.full(reps, dist))
    p_true = norm.cdf(dist / S)
    st = sample_paths(_net(HardLinear()), x, n, batch=100_000, generator=torch.Generator().manual_seed(3))
    lo, _ = clopper_pearson_lower(st.counts[:, 1], n, alpha)
    misses = int((lo > p_true).sum())
    assert binomtest(misses, reps, alpha, alternative="greater").pvalue > 1e-3, misses  # measured 2 misses
    # the point estimate itself would miss about half the time: the test can fail
    assert int((st.counts[:, 1] / n > p_true).sum()) > 60
    # the soft lower bounds (probit base, closed-form u_A) cover as well
    st = sample_paths(_net(ProbitLinear(), output="identity"), x, n, batch=100_000,
                      generator=torch.Generator().manual_seed(4))
    u_true = norm.cdf(dist / math.hypot(ProbitLinear.tau, S))
    for lower in (hoeffding_lower(st.mean[:, 1], n, alpha)[0],
                  bernstein_lower(st.mean[:, 1], st.var[:, 1], n, alpha)[0]):
        misses = int((lower > u_true).sum())
        assert binomtest(misses, reps, alpha, alternative="greater").pvalue > 1e-3, misses


def test_radius_tail_is_accurate_near_one():
    # all n votes for A: p̲ = α^{1/n}; 1 − p̲ ≈ −log(α)/n must come from the tail, not from 1 − p̲ in floats
    n, alpha = 10**9, 1e-3
    lo, tail = clopper_pearson_lower(np.array([n]), n, alpha)
    assert tail[0] == pytest.approx(-math.expm1(math.log(alpha) / n), rel=1e-9)
    assert radius(1.0, tail)[0] == pytest.approx(norm.isf(-math.expm1(math.log(alpha) / n)), rel=1e-9)
    assert radius(1.0, np.array([0.5, 0.7]))[0] == 0.0 and radius(1.0, np.array([0.7]))[0] == 0.0


def _sde_net(seed=0):
    torch.manual_seed(seed)
    base = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    with torch.no_grad():
        base[2].weight.mul_(4.0)
    return ConvectionDiffusionNet(base, MLPDrift(2, width=16), ScalarDiffusion(2, 0.2), T=0.5, steps=4,
                                  prefix_sigma=0.4, prefix_time=1.0, samples=256)


def test_perturbations_inside_radius_keep_prediction():
    net = _sde_net()
    g = torch.Generator().manual_seed(5)
    x = 1.5 * torch.randn(12, 2, generator=g)
    cert = certify(net, x, n0=100, n=4000, alpha=0.001, batch=50_000, seed=6)
    s = cert.scale
    # perturbation norm: as close to R as keeps the guaranteed p_A(x + δ) = Φ(Φ⁻¹(p̲) − |δ|/s) ≥ 0.56, so a 20000-path
    # majority vote at x + δ is decided (p_A − p_B ≥ 0.12 ≫ its sd 0.007)
    norm_d = cert.radius - s * norm.ppf(0.56)
    keep = np.flatnonzero((cert.prediction >= 0) & (norm_d > 0.05))
    assert keep.size >= 4
    xs = x[keep]
    rand = torch.randn(keep.size, 2, generator=g)
    rand = rand / rand.norm(dim=1, keepdim=True)
    # along −∇u_A of the estimated soft output (the direction that lowers class A fastest)
    net.train()
    xg = xs.clone().requires_grad_(True)
    ua = net(xg)[torch.arange(keep.size), torch.as_tensor(cert.prediction[keep])]
    (grad,) = torch.autograd.grad(ua.sum(), xg)
    down = -grad / grad.norm(dim=1, keepdim=True)
    scale = torch.as_tensor(norm_d[keep], dtype=x.dtype)[:, None]
    moved = torch.cat([xs + scale * rand, xs + scale * down])
    st = sample_paths(net, moved, 20000, batch=200_000, generator=torch.Generator().manual_seed(7))
    want = np.concatenate([cert.prediction[keep]] * 2)
    assert (st.counts.argmax(1) == want).all()
    # and the guaranteed lower bound on p_A at the moved points holds (5 sd slack)
    pa = st.counts[np.arange(want.size), want] / 20000
    assert (pa >= 0.56 - 5 * math.sqrt(0.25 / 20000)).all()


def test_predict_abstains_at_the_boundary_and_is_right_far_from_it():
    pred = predict(_net(HardLinear()), _points(np.array([0.0, 1.0, -1.0])), n=2000, alpha=0.001, seed=8)
    assert pred[1] == 1 and pred[2] == 0
    assert pred[0] in (-1, 0, 1)
    # at the boundary p_A = 1/2: the binomial test rejects only with probability ≤ α
    many = predict(_net(HardLinear()), _points(np.zeros(400)), n=200, alpha=0.01, seed=9)
    assert int((many >= 0).sum()) <= 12  # mean 4 at α = 0.01 (Binomial(400, ≤ 0.01) ≥ 13 has probability 1e-3)


def test_errors():
    with pytest.raises(ValueError, match="prefix_sigma"):
        certify(ConvectionDiffusionNet(HardLinear(), None, None), _points(np.array([0.1])))
    with pytest.raises(ValueError, match="prefix_time"):
        ConvectionDiffusionNet(HardLinear(), None, None, prefix_sigma=0.5)
    with pytest.raises(ValueError, match="bound='x' is not valid"):
        certify(_net(HardLinear()), _points(np.array([0.1])), bound="x")
