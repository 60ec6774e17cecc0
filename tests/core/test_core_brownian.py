"""FixedGridBrownian: distribution of increments and Lévy areas, additivity, query-order independence, errors."""

import math

import pytest
import torch
import torchsde

from nsde_coin.brownian import FixedGridBrownian

F64 = torch.float64


def _bm(**kw):
    args = dict(t0=0.0, t1=1.0, size=(4000, 3), steps=8, seed=11, dtype=F64)
    args.update(kw)
    return FixedGridBrownian(**args)


def test_is_a_torchsde_brownian_with_its_attributes():
    bm = _bm(levy_area="space-time")
    assert isinstance(bm, torchsde.BaseBrownian)
    assert bm.shape == torch.Size((4000, 3)) and bm.size() == torch.Size((4000, 3))
    assert bm.dtype == F64 and bm.device == torch.device("cpu")
    assert bm.levy_area_approximation == "space-time"
    assert _bm().levy_area_approximation == "none"


@pytest.mark.parametrize("span", [1, 3])
def test_increment_variance_chi_square(span):
    """Sum of W²/h over n = 12000 entries is χ²_n: mean n, std sqrt(2n); accept within 4 std."""
    bm = _bm()
    h = span / 8
    W = bm(0.25, 0.25 + h)
    n = W.numel()
    stat = float((W**2).sum() / h)
    assert abs(stat - n) < 4 * math.sqrt(2 * n), (stat, n)
    assert abs(float(W.mean())) < 4 * math.sqrt(h / n)
    # increments of disjoint steps are uncorrelated: correlation within 4/sqrt(n)
    W2 = bm(0.75, 0.875)
    corr = float((W[:, 0] * W2[:, 0]).mean() / math.sqrt(h * 0.125))
    assert abs(corr) < 4 / math.sqrt(W.shape[0])


def test_additivity_and_point_queries():
    bm = _bm()
    whole = bm(0.0, 1.0)
    parts = bm(0.0, 0.5) + bm(0.5, 1.0)
    torch.testing.assert_close(whole, parts, rtol=0, atol=1e-12)
    torch.testing.assert_close(bm(0.5), bm(0.0, 0.5), rtol=0, atol=0)  # W(ta) - W(t0)
    steps = sum(bm(k / 8, (k + 1) / 8) for k in range(8))
    torch.testing.assert_close(whole, steps, rtol=0, atol=1e-12)
    assert torch.equal(bm(0.5, 0.5), torch.zeros(4000, 3, dtype=F64))


def test_same_path_on_repeat_and_reverse_order_queries():
    bm = _bm()
    forward = [bm(k / 8, (k + 1) / 8).clone() for k in range(8)]
    backward = [bm(k / 8, (k + 1) / 8).clone() for k in reversed(range(8))][::-1]
    fresh = _bm()  # a new object with the same seed
    again = [fresh(k / 8, (k + 1) / 8) for k in (3, 0, 7, 1, 2, 6, 5, 4)]
    for k in range(8):
        assert torch.equal(forward[k], backward[k])
    for k, w in zip((3, 0, 7, 1, 2, 6, 5, 4), again):
        assert torch.equal(forward[k], w)
    # tensor-valued query times (as torchsde passes them) and torchsde's reversed adjoint queries
    assert torch.equal(bm(torch.tensor(0.25, dtype=F64), torch.tensor(0.375, dtype=F64)), forward[2])
    rev = torchsde._brownian.ReverseBrownian(bm)
    assert torch.equal(rev(-0.375, -0.25), forward[2])


def test_seeds_differ_and_levy_mode_does_not_change_W():
    a, b = _bm(seed=1), _bm(seed=2)
    assert not torch.equal(a(0.0, 0.125), b(0.0, 0.125))
    c = _bm(seed=1, levy_area="foster")
    assert torch.equal(a(0.0, 1.0), c(0.0, 1.0))


def test_space_time_levy_area_moments_and_chen_relation():
    """U = ∫(W_s − W_ta) ds: Var U = h³/3, Cov(W, U) = h²/2 (n = 12000, 4-sigma bounds); multi-step U is exact."""
    bm = _bm(levy_area="space-time")
    for span in (1, 4):
        h = span / 8
        W, U = bm(0.0, h, return_U=True)
        n = U.numel()
        var_u = float((U**2).mean())
        assert abs(var_u - h**3 / 3) < 4 * math.sqrt(2 / n) * h**3 / 3, (span, var_u)
        cov = float((W * U).mean())
        # Var(W U) = E[W²U²] − (h²/2)² = h·h³/3 + 2(h²/2)² − h⁴/4 = h⁴(1/3 + 1/4)
        assert abs(cov - h**2 / 2) < 4 * math.sqrt((1 / 3 + 1 / 4) / n) * h**2, (span, cov)
    # Chen: U(0, 2h) = U(0, h) + h W(0, h) + U(h, 2h)
    h = 0.125
    W1, U1 = bm(0.0, h, return_U=True)
    W2, U2 = bm(h, 2 * h, return_U=True)
    W12, U12 = bm(0.0, 2 * h, return_U=True)
    torch.testing.assert_close(U12, U1 + h * W1 + U2, rtol=0, atol=1e-13)
    torch.testing.assert_close(W12, W1 + W2, rtol=0, atol=1e-13)


@pytest.mark.parametrize("levy", ["davie", "foster"])
def test_levy_area_is_skew_symmetric_with_the_exact_variance(levy):
    """E[A_12²] of the Lévy area ½∫(W1 dW2 − W2 dW1) is h²/4; the Chen combination of two steps gives (2h)²/4.

    n = 20000 samples; the relative standard error of a second moment of this (heavier than Gaussian) variable is
    below sqrt(3/n) ≈ 1.2%, so 6% is a > 4-sigma bound.
    """
    bm = _bm(levy_area=levy, size=(20000, 2))
    h = 0.125
    W, U, A = bm(0.0, h, return_U=True, return_A=True)
    assert A.shape == (20000, 2, 2)
    torch.testing.assert_close(A, -A.transpose(-1, -2), rtol=0, atol=0)
    v1 = float((A[:, 0, 1] ** 2).mean())
    assert abs(v1 / (h * h / 4) - 1) < 0.06, v1 / (h * h / 4)
    _, A2 = bm(0.0, 2 * h, return_A=True)
    v2 = float((A2[:, 0, 1] ** 2).mean())
    assert abs(v2 / (h * h) - 1) < 0.06, v2 / (h * h)
    # the conditional mean given (W, U) is H⊗W − W⊗H with H = U/h − W/2: regression slope 1
    H = U / h - 0.5 * W
    m = H[:, 0] * W[:, 1] - W[:, 0] * H[:, 1]
    slope = float((A[:, 0, 1] * m).mean() / (m * m).mean())
    assert abs(slope - 1) < 0.05, slope


def test_errors_name_the_bad_value():
    bm = _bm()
    with pytest.raises(ValueError, match="not a point of the grid"):
        bm(0.0, 0.0625)
    with pytest.raises(ValueError, match="ta <= tb"):
        bm(0.5, 0.25)
    with pytest.raises(ValueError, match="return_U"):
        bm(0.0, 0.125, return_U=True)
    with pytest.raises(ValueError, match="not an integer"):
        FixedGridBrownian(0.0, 1.0, (2, 2), dt=0.3)
    with pytest.raises(ValueError, match="levy_area='bogus'"):
        FixedGridBrownian(0.0, 1.0, (2, 2), steps=4, levy_area="bogus")
    with pytest.raises(ValueError, match="exactly one of dt and steps"):
        FixedGridBrownian(0.0, 1.0, (2, 2))
    with pytest.raises(ValueError, match="size must be"):
        FixedGridBrownian(0.0, 1.0, (2,), steps=4)
    with pytest.raises(ValueError, match="t0 < t1"):
        FixedGridBrownian(1.0, 1.0, (2, 2), steps=4)


def test_memory_is_constant_in_steps():
    """Only the last queried step is cached; every other step is redrawn from (seed, k)."""
    bm = FixedGridBrownian(0.0, 1.0, (3, 2), steps=1000, seed=5, dtype=F64)
    for k in range(1000):
        bm(k / 1000, (k + 1) / 1000)
    assert bm.draws == 1000
    bm(0.999, 1.0)  # the cached last step
    assert bm.draws == 1000
    assert not any(isinstance(v, (list, dict)) and len(v) > 1 for v in vars(bm).values())
