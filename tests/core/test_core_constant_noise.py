"""Constant scalar/diagonal σ take the cheap path on every solver, with the same numbers.

ScalarDiffusion/DiagonalDiffusion are "additive" noise; reversible_heun is handed their (B, d) diagonal view, and a
FixedGridBrownian for commutative noise returns a zero Lévy area without drawing it (log_ode multiplies it by ∂σ = 0).
The reference is the same σ written as a dense "general" matrix, which takes torchsde's full path (dense products,
drawn Lévy area, jvp of ∂σ; milstein and srk have no general-noise scheme, so there the dense matrix is declared
"additive") on the same Brownian increments: results and gradients must agree to round-off.
"""

import pytest
import torch

from nsde_coin import DiagonalDiffusion, FixedGridBrownian, GeneralDiffusion, MLPDrift, ScalarDiffusion, feynman_kac

F64 = torch.float64
SOLVERS = ["euler", "milstein", "srk", "heun", "midpoint", "euler_heun", "reversible_heun", "log_ode"]
NO_GENERAL = {"milstein", "srk"}  # no general-noise scheme: compared with the dense matrix declared additive


def _run(diffusion, solver, grad_mode="backprop"):
    torch.manual_seed(0)
    drift = MLPDrift(3, width=8, depth=1).double()
    x = torch.randn(4, 3, dtype=F64, requires_grad=True)
    head = torch.randn(3, 2, dtype=F64)
    mean, _ = feynman_kac(lambda z: torch.tanh(z @ head), x, drift, diffusion, 1.0, samples=5, steps=8,
                          solver=solver, seed=11, grad_mode=grad_mode)
    grads = torch.autograd.grad(mean.sum(), [x, *drift.parameters()])
    return mean.detach(), torch.cat([g.reshape(-1) for g in grads])


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("kind", ["scalar", "diagonal"])
def test_constant_sigma_matches_the_dense_general_matrix(solver, kind):
    sigma = torch.tensor([0.3, 0.5, 0.2], dtype=F64)
    fast = ScalarDiffusion(3, 0.3) if kind == "scalar" else DiagonalDiffusion(3, sigma)
    dense = GeneralDiffusion(3, torch.diag(fast.sigma.expand(3).to(F64)),
                             noise_type="additive" if solver in NO_GENERAL else "general")
    m_fast, g_fast = _run(fast.double(), solver)
    m_dense, g_dense = _run(dense.double(), solver)
    # float64, 8 steps: measured differences <= 1e-15 (round-off of a different summation order)
    torch.testing.assert_close(m_fast, m_dense, rtol=0, atol=1e-12)
    torch.testing.assert_close(g_fast, g_dense, rtol=0, atol=1e-12)
    assert m_fast.abs().max() > 1e-2 and g_fast.abs().max() > 1e-2  # real outputs and gradients


def test_reversible_adjoint_with_the_diagonal_view_is_exact():
    """grad_mode='reversible' (adjoint_reversible_heun) on the diagonal view equals backprop to ~1e-10 (float64)."""
    m_rev, g_rev = _run(ScalarDiffusion(3, 0.4).double(), "reversible_heun", grad_mode="reversible")
    m_bp, g_bp = _run(ScalarDiffusion(3, 0.4).double(), "reversible_heun")
    torch.testing.assert_close(m_rev, m_bp, rtol=0, atol=1e-12)
    torch.testing.assert_close(g_rev, g_bp, rtol=1e-8, atol=1e-10)


def test_commutative_brownian_keeps_the_path_and_returns_a_zero_area():
    kw = dict(steps=8, seed=4, dtype=F64, levy_area="foster")
    full = FixedGridBrownian(0.0, 1.0, (6, 3), **kw)
    comm = FixedGridBrownian(0.0, 1.0, (6, 3), commutative=True, **kw)
    for ta, tb in ((0.0, 0.125), (0.25, 0.75), (0.0, 1.0)):
        W_full, U_full, A_full = full(ta, tb, return_U=True, return_A=True)
        W, U, A = comm(ta, tb, return_U=True, return_A=True)
        assert torch.equal(W, W_full) and torch.equal(U, U_full)
        assert A.shape == A_full.shape == (6, 3, 3) and not A.any() and A_full.abs().max() > 0
        W2, A2 = comm(ta, tb, return_A=True)
        assert torch.equal(W2, W_full) and A2.shape == (6, 3, 3)


def test_commutative_brownian_draws_the_space_time_area_only_for_U():
    """log_ode asks a commutative Brownian motion for W and A only: H (which only U and A use) is not drawn then, and
    a later request for U on the same step draws the step again, with the same W and the U of the full path."""
    kw = dict(steps=8, seed=4, dtype=F64, levy_area="foster")
    full = FixedGridBrownian(0.0, 1.0, (6, 3), **kw)
    comm = FixedGridBrownian(0.0, 1.0, (6, 3), commutative=True, **kw)
    W_full, U_full = full(0.25, 0.375, return_U=True)
    W, A = comm(0.25, 0.375, return_A=True)
    assert comm.draws == 1 and torch.equal(W, W_full) and not A.any()
    assert comm._cache[1] is None  # the step's space-time area was not drawn
    W2, U = comm(0.25, 0.375, return_U=True)
    assert comm.draws == 2 and torch.equal(W2, W_full) and torch.equal(U, U_full)
    comm(0.25, 0.375, return_A=True)  # the cached step now has H: no third draw
    assert comm.draws == 2
    Wm, Am = comm(0.0, 0.5, return_A=True)  # a multi-step increment on the same path
    assert torch.equal(Wm, full(0.0, 0.5)) and Am.shape == (6, 3, 3)
