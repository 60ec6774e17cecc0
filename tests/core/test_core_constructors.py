"""One constructor pattern for the diffusions, ``(dim, sigma, ...)`` with sigma a float or a tensor; the earlier
spellings still build the same field for one release with a DeprecationWarning naming the new call; a float or a
tensor given as ``diffusion=`` means σ·I / diag(σ) (torchsde's and diffrax's reading); gradient-free Milstein with a
state-dependent diagonal σ uses its closed-form ∂σ_i/∂x_i and gets the numbers the autograd vjp gets."""

import warnings

import pytest
import torch
from torch import nn

from nsde_coin import (
    ConvectionDiffusionNet,
    DiagonalDiffusion,
    GeneralDiffusion,
    MLPDrift,
    ScalarDiffusion,
    StateDiagonalDiffusion,
    feynman_kac,
)
from nsde_coin.fields import as_diffusion

F64 = torch.float64


def _no_warning(build):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        return build()


def _deprecated(build, new_call):
    with pytest.warns(DeprecationWarning, match=new_call):
        return build()


def _same_field(a, b):
    x = torch.randn(5, a.dim, generator=torch.Generator().manual_seed(0))
    assert type(a) is type(b) and a.dim == b.dim and a.noise_dim == b.noise_dim and a.noise_type == b.noise_type
    assert torch.equal(a(0.3, x), b(0.3, x))
    assert [n for n, _ in a.named_parameters()] == [n for n, _ in b.named_parameters()]


def test_every_diffusion_takes_dim_then_sigma():
    diag = _no_warning(lambda: DiagonalDiffusion(64, 0.3))  # failed before: the first argument was the sigma tensor
    assert diag.dim == 64 and torch.equal(diag.sigma, torch.full((64,), 0.3))
    vec = torch.tensor([0.1, 0.2, 0.3])
    assert torch.equal(_no_warning(lambda: DiagonalDiffusion(3, vec)).sigma, vec)
    assert torch.equal(_no_warning(lambda: ScalarDiffusion(3, torch.tensor(0.3))).sigma, torch.tensor(0.3))
    state = _no_warning(lambda: StateDiagonalDiffusion(3, sigma=0.2, width=4))
    # the output weights start at ~0.1/sqrt(width) scale: σ(0) within 0.05 of the start value (measured 0.006)
    torch.testing.assert_close(state(0.0, torch.zeros(1, 3)), torch.full((1, 3), 0.2), atol=0.05, rtol=0)
    general = _no_warning(lambda: GeneralDiffusion(3, 0.2, noise_dim=2))
    assert torch.equal(general.matrix, 0.2 * torch.eye(3, 2))
    assert torch.equal(_no_warning(lambda: GeneralDiffusion(3, 0.5)).matrix, 0.5 * torch.eye(3))
    mat = torch.randn(3, 2)
    assert torch.equal(_no_warning(lambda: GeneralDiffusion(3, mat)).matrix, mat)
    assert torch.equal(_no_warning(lambda: GeneralDiffusion(3, noise_dim=2)).matrix, 0.1 * torch.eye(3, 2))


def test_earlier_spellings_warn_and_build_the_same_field():
    vec = torch.tensor([0.1, 0.2, 0.3])
    _same_field(_deprecated(lambda: DiagonalDiffusion(vec), r"DiagonalDiffusion\(d, sigma\)"),
                DiagonalDiffusion(3, vec))
    _same_field(_deprecated(lambda: DiagonalDiffusion(vec, True), r"DiagonalDiffusion\(d, sigma\)"),
                DiagonalDiffusion(3, vec, learnable=True))
    _same_field(_deprecated(lambda: DiagonalDiffusion(sigma=vec), r"DiagonalDiffusion\(d, sigma\)"),
                DiagonalDiffusion(3, vec))
    _same_field(_deprecated(lambda: StateDiagonalDiffusion(3, init_sigma=0.2),
                            r"StateDiagonalDiffusion\(dim, sigma=s\)"), StateDiagonalDiffusion(3, sigma=0.2))
    _same_field(_deprecated(lambda: StateDiagonalDiffusion(3, 8), r"StateDiagonalDiffusion\(dim, width=8\)"),
                StateDiagonalDiffusion(3, width=8))
    mat = torch.randn(3, 2)
    _same_field(_deprecated(lambda: GeneralDiffusion(mat), r"GeneralDiffusion\(d, matrix\)"), GeneralDiffusion(3, mat))
    _same_field(_deprecated(lambda: GeneralDiffusion(matrix=mat, dim=3, noise_dim=2), r"GeneralDiffusion\(d, matrix\)"),
                GeneralDiffusion(3, mat, noise_dim=2))
    _same_field(_deprecated(lambda: GeneralDiffusion(dim=3, noise_dim=2, init_scale=0.4), r"GeneralDiffusion\(d, s, "),
                GeneralDiffusion(3, 0.4, noise_dim=2))


@pytest.mark.parametrize("build,err,fragment", [
    (lambda: DiagonalDiffusion(3, torch.ones(2)), ValueError, r"sigma=\[1, 1\] has shape \(2,\) but "
                                                              r"DiagonalDiffusion\(dim=3\) expects \(3,\)"),
    (lambda: DiagonalDiffusion(3, torch.ones(3, 3)), ValueError, r"got shape \(3, 3\); expected \(3,\)"),
    (lambda: DiagonalDiffusion(3), TypeError, "DiagonalDiffusion needs sigma"),
    (lambda: DiagonalDiffusion(3, -0.1), ValueError, r"sigma must be >= 0 \(a standard deviation\), got \[-0.1"),
    (lambda: ScalarDiffusion(3, torch.ones(3)), ValueError, r"got shape \(3,\) \(\[1, 1, 1\]\); use "
                                                            r"DiagonalDiffusion\(3, sigma\)"),
    (lambda: GeneralDiffusion(3, torch.ones(2, 2)), ValueError, r"matrix shape \(2, 2\) does not match dim=3.*"
                                                                r"expected \(3, m\)"),
    (lambda: GeneralDiffusion(3, torch.ones(3)), ValueError, r"the matrix must have shape \(d, m\), got shape \(3,\)"),
    (lambda: StateDiagonalDiffusion(3, sigma=0.0), ValueError, "sigma=0.0 is not valid; expected a float with 0 <"),
    (lambda: StateDiagonalDiffusion(3, sigma=0.6, sigma_max=0.5), ValueError, "sigma=0.6 is not valid.*< sigma_max"),
])
def test_wrong_sigma_is_one_line_error(build, err, fragment):
    with pytest.raises(err, match=fragment) as info:
        build()
    assert "\n" not in str(info.value)


def test_float_or_tensor_diffusion_means_sigma_identity():
    torch.manual_seed(0)
    x, drift = torch.randn(4, 3, dtype=F64), MLPDrift(3, width=8).double()
    kw = dict(samples=6, steps=5, seed=3)
    # same seed, same field: bit-identical
    assert torch.equal(feynman_kac(torch.tanh, x, drift, 0.3, **kw)[0],
                       feynman_kac(torch.tanh, x, drift, ScalarDiffusion(3, 0.3), **kw)[0])
    vec = torch.tensor([0.1, 0.2, 0.3], dtype=F64)
    assert torch.equal(feynman_kac(torch.tanh, x, drift, vec, **kw)[0],
                       feynman_kac(torch.tanh, x, drift, DiagonalDiffusion(3, vec), **kw)[0])
    assert isinstance(as_diffusion(0.3, 3), ScalarDiffusion) and isinstance(as_diffusion(vec, 3), DiagonalDiffusion)
    assert isinstance(as_diffusion(torch.ones(3, 2), 3), GeneralDiffusion)
    # σ = 0 is the ODE limit: the flow, with zero standard error
    mean, stderr = feynman_kac(torch.tanh, x, drift, 0.0, **kw)
    assert torch.equal(stderr, torch.zeros_like(stderr))
    net = ConvectionDiffusionNet(nn.Linear(3, 2).double(), drift, 0.3, steps=5, samples=6, seed=1)
    assert isinstance(net.diffusion, ScalarDiffusion) and net.diffusion.dim == 3
    assert torch.equal(net.diffusion.sigma, torch.tensor(0.3))


@pytest.mark.parametrize("value,err,fragment", [
    (True, TypeError, "diffusion=True is not valid; expected None"),
    (torch.ones(4), ValueError, r"diffusion has shape \(4,\); expected a float, \(3,\) or \(3, m\)"),
    (torch.ones(3, 3, 3), ValueError, r"diffusion has shape \(3, 3, 3\)"),
    (-0.2, ValueError, "sigma must be >= 0"),
])
def test_bad_diffusion_value_is_one_line_error(value, err, fragment):
    with pytest.raises(err, match=fragment) as info:
        feynman_kac(torch.tanh, torch.zeros(2, 3), None, value)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"diffusion=0.3 needs the dimension d.*ScalarDiffusion\(d, 0.3\)"):
        ConvectionDiffusionNet(nn.Linear(3, 2), None, 0.3)


def test_closed_form_slope_is_the_autograd_jacobian():
    field = StateDiagonalDiffusion(3, width=8, sigma=0.4).double()
    bounded = StateDiagonalDiffusion(3, width=8, sigma=0.3, sigma_max=0.9).double()
    for f in (field, bounded):
        with torch.no_grad():
            f.w2.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
        # more rows than one cache block: the blocked path (SLOPE_BLOCK / (d·width) rows per block)
        x = torch.randn(20000, 3, dtype=F64, generator=torch.Generator().manual_seed(2), requires_grad=True)
        sig, slope = f.sigma_and_slope(0.7, x)
        ref = f(0.7, x)
        (jac,) = torch.autograd.grad(ref.sum(), x)  # σ_i depends on x_i only, so this is ∂σ_i/∂x_i
        # float64: closed form vs autograd measured <= 4e-17; blocked vs whole-batch forward is the same per-row work
        torch.testing.assert_close(sig, ref.detach(), rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(slope, jac, rtol=1e-10, atol=1e-13)
        with torch.no_grad():
            torch.testing.assert_close(f(0.7, x), ref.detach(), rtol=1e-12, atol=1e-14)


def test_gradient_free_milstein_matches_the_autograd_vjp():
    """Under no_grad Milstein's g·∂g comes from the closed form; with grad on it is torchsde's vjp through the
    network. Same seed, same SDE: the two agree to float64 round-off."""
    torch.manual_seed(0)
    field = StateDiagonalDiffusion(2, width=8, sigma=0.5).double()
    with torch.no_grad():
        field.w2.normal_(0, 0.5)
    x = torch.randn(6, 2, dtype=F64)
    kw = dict(samples=400, steps=20, solver="milstein", seed=5)
    with torch.no_grad():
        fast, _ = feynman_kac(torch.sin, x, None, field, **kw)
    taped, _ = feynman_kac(torch.sin, x, None, field, **kw)
    # measured max difference 2e-16 (20 steps, float64); the Monte Carlo error itself is ~1e-2
    torch.testing.assert_close(fast, taped.detach(), rtol=0, atol=1e-12)
