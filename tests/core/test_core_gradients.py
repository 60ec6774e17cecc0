"""Gradients: adjoint vs backprop on the same Brownian path, and the σ = 0 network as an exact ResNet."""

import numpy as np
import pytest
import torch

from nsde_coin import DiagonalDiffusion, MLPDrift, StateDiagonalDiffusion, ZeroDiffusion, feynman_kac

F64 = torch.float64


def _setup(diffusion="state"):
    torch.manual_seed(0)
    drift = MLPDrift(2, width=16).double()
    if diffusion == "state":
        diff = StateDiagonalDiffusion(2, width=8, sigma=0.4).double()
        with torch.no_grad():
            diff.w2.normal_(0, 0.3)
    else:
        diff = DiagonalDiffusion(2, torch.tensor([0.3, 0.5], dtype=F64), learnable=True)
    x = torch.randn(4, 2, dtype=F64, requires_grad=True)
    return drift, diff, x


def _grads(drift, diff, x, **kw):
    params = [x, *drift.parameters(), *diff.parameters()]
    mean, _ = feynman_kac(torch.tanh, x, drift, diff, 1.0, samples=8, seed=4, **kw)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(mean.sum(), params)])


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def test_reversible_heun_adjoint_equals_backprop():
    """reversible_heun + adjoint_reversible_heun reconstructs the forward states exactly: ≤ 1e-8 relative."""
    drift, diff, x = _setup()
    backprop = _grads(drift, diff, x, solver="reversible_heun", steps=10)
    reversible = _grads(drift, diff, x, grad_mode="reversible", steps=10)
    assert _rel(reversible, backprop) < 1e-8
    assert backprop.abs().max() > 1e-3  # a real gradient, not zeros
    # ... while a different Brownian path gives a visibly different gradient (the comparison is sharp)
    params = [x, *drift.parameters(), *diff.parameters()]
    mean, _ = feynman_kac(torch.tanh, x, drift, diff, 1.0, samples=8, seed=5, solver="reversible_heun", steps=10)
    other = torch.cat([g.reshape(-1) for g in torch.autograd.grad(mean.sum(), params)])
    assert _rel(other, backprop) > 1e-3


@pytest.mark.parametrize("solver,diffusion", [("euler", "state"), ("milstein", "state"), ("euler", "const")])
def test_adjoint_gradient_converges_to_backprop(solver, diffusion):
    """The adjoint solves the backward SDE with its own discretisation: its gradient differs from backprop
    through the same forward solve by O(dt). Errors must decrease monotonically with a fitted slope 1 ± 0.3."""
    drift, diff, x = _setup(diffusion)
    ns = [8, 16, 32, 64]
    errs = [_rel(_grads(drift, diff, x, solver=solver, steps=n, grad_mode="adjoint"),
                 _grads(drift, diff, x, solver=solver, steps=n)) for n in ns]
    assert all(a > b for a, b in zip(errs, errs[1:])), errs
    slope = float(np.polyfit(np.log(1.0 / np.asarray(ns)), np.log(errs), 1)[0])
    # measured (float64, both kernel paths, same to 4 digits): slopes 0.827 (euler/state), 0.947 (milstein/state),
    # 0.985 (euler/const); errs[-1] 8.7e-3, 7.0e-3, 6.7e-3 — every error is far above round-off
    assert abs(slope - 1.0) < 0.3, (slope, errs)
    assert errs[-1] < 0.02


def test_sigma_zero_is_a_resnet_exactly():
    """σ = 0 with fixed-step Euler is x ← x + dt·v(x, t_k), k = 0..n−1 (float64, atol 1e-12), gradients too."""
    drift, _, x = _setup()
    head = torch.randn(2, 3, dtype=F64)

    def f(z):
        return z @ head

    n, T = 7, 1.3
    mean, se = feynman_kac(f, x, drift, ZeroDiffusion(2), T, steps=n, samples=5)
    assert torch.equal(se, torch.zeros_like(se))
    h = x
    dt = T / n
    for k in range(n):
        h = h + dt * drift(k * dt, h)
    ref = f(h)
    torch.testing.assert_close(mean, ref, rtol=0, atol=1e-12)
    g1 = torch.autograd.grad(mean.sum(), [x, *drift.parameters()])
    g2 = torch.autograd.grad(ref.sum(), [x, *drift.parameters()])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    # the same network through the ODE adjoint (torchdiffeq) gives the same output and close gradients
    mean_adj, _ = feynman_kac(f, x, drift, None, T, steps=n, grad_mode="adjoint")
    torch.testing.assert_close(mean_adj, ref, rtol=0, atol=1e-12)
    g3 = torch.autograd.grad(mean_adj.sum(), [x, *drift.parameters()])
    # (the adjoint ODE is solved by its own Euler steps backwards: an O(dt) difference, ~7% at dt = 0.19)
    assert _rel(torch.cat([g.reshape(-1) for g in g3]), torch.cat([g.reshape(-1) for g in g2])) < 0.15


def test_higher_order_ode_solver_converges_to_the_flow():
    """σ = 0 with rk4: doubling the steps shrinks the change by ~2⁴ (order 4 on a smooth flow)."""
    drift, _, x = _setup()
    with torch.no_grad():
        outs = [feynman_kac(lambda z: z, x, drift, None, 1.0, steps=n, solver="rk4")[0] for n in (4, 8, 16)]
    r = float((outs[0] - outs[1]).abs().max() / (outs[1] - outs[2]).abs().max())
    assert 10 < r < 25, r


@pytest.mark.parametrize("with_noise", [True, False])
def test_plain_callable_drift_needs_adjoint_params(with_noise):
    """A closure drift hides its parameters from the adjoint pass: grad_mode='adjoint' must refuse it (their gradient
    would silently be missing) unless adjoint_params names them; then the gradients equal the module drift's."""
    drift, diff, x = _setup()
    diff = diff if with_noise else None

    def closure(t, y):
        return drift(t, y)

    with pytest.raises(TypeError, match="adjoint_params"):
        feynman_kac(torch.tanh, x, closure, diff, 1.0, samples=4, steps=4, seed=2, grad_mode="adjoint")
    params = list(drift.parameters())
    kw = dict(samples=4, steps=4, seed=2, grad_mode="adjoint")
    m_mod, _ = feynman_kac(torch.tanh, x, drift, diff, 1.0, **kw)
    m_fun, _ = feynman_kac(torch.tanh, x, closure, diff, 1.0, adjoint_params=params, **kw)
    g_mod = torch.autograd.grad(m_mod.sum(), [x, *params])
    g_fun = torch.autograd.grad(m_fun.sum(), [x, *params])
    for a, b in zip(g_fun, g_mod):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert all(float(g.abs().sum()) > 0 for g in g_fun)
