"""nsde_coin._fast_tanh: tanh as 2·sigmoid(2x) − 1 (the drift and diffusion networks' default activation) against
torch.tanh — values over the whole range, its gradient and second derivative, vmap, and that it leaves its input
alone — MLPDrift with it against the same network written with torch.tanh, and which sizes take which path."""

import pytest
import torch
from torch.func import grad, vmap

import nsde_coin._fast_tanh as fast_tanh
from nsde_coin import MLPDrift
from nsde_coin._fast_tanh import tanh, tanh_

F64 = torch.float64


@pytest.fixture(autouse=True)
def identity_at_every_size(monkeypatch):
    """Small tensors go to torch.tanh (cheaper to dispatch); these tests take the identity at every size."""
    monkeypatch.setattr(fast_tanh, "MIN_ELEMENTS", 0)
    monkeypatch.setattr(fast_tanh, "MIN_ELEMENTS_GRAD", 0)


def _grid(dtype):
    return torch.cat([torch.linspace(-30, 30, 20001, dtype=F64),
                      torch.tensor([0.0, -0.0, 1e-30, -1e-8, 700.0, -700.0], dtype=F64)]).to(dtype)


@pytest.mark.parametrize("fn", [tanh, lambda t: tanh_(t.clone())], ids=["tanh", "tanh_"])
def test_values_equal_torch_tanh(fn):
    ref = torch.tanh(_grid(F64))
    torch.testing.assert_close(fn(_grid(F64)), ref, rtol=0, atol=4e-16)
    got32 = fn(_grid(torch.float32))
    assert got32.dtype == torch.float32
    assert float((got32.double() - ref).abs().max()) <= 2.5e-7  # measured 1.8e-7; torch's own float32 tanh 3e-8
    assert bool((got32.abs() <= 1).all()) and float(got32[-2]) == 1.0 and float(got32[-1]) == -1.0
    specials = fn(torch.tensor([float("nan"), float("inf"), -float("inf")]))
    assert bool(torch.isnan(specials[0])) and specials[1:].tolist() == [1.0, -1.0]


def test_out_of_place_form_leaves_its_input_alone():
    x = torch.randn(50, dtype=F64)
    before = x.clone()
    tanh(x)
    with torch.no_grad():
        tanh(x.requires_grad_())
    assert torch.equal(x.detach(), before)


def test_gradient_and_second_derivative_are_tanh_s():
    x = torch.randn(6, 4, dtype=F64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    assert torch.autograd.gradcheck(tanh, (x,), check_forward_ad=True)
    assert torch.autograd.gradgradcheck(tanh, (x,), check_fwd_over_rev=True)
    (g,) = torch.autograd.grad(tanh(x).sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), x)
    y = torch.tanh(x.detach())
    torch.testing.assert_close(g.detach(), 1 - y * y, rtol=0, atol=1e-15)
    torch.testing.assert_close(gg, -2 * y * (1 - y * y), rtol=0, atol=1e-15)


def test_forward_mode_and_hessian_through_mlp_drift():
    """Forward-mode AD (jvp) and torch.func.hessian through the drift network, against the same network with
    torch.tanh."""
    import torch.autograd.forward_ad as fwAD
    from torch.func import hessian

    torch.manual_seed(2)
    net = MLPDrift(3, width=8, depth=2).double()
    x, v = torch.randn(7, 3, dtype=F64), torch.randn(7, 3, dtype=F64)
    with fwAD.dual_level():
        got = fwAD.unpack_dual(net(0.2, fwAD.make_dual(x, v))).tangent
    ref = torch.func.jvp(lambda z: _with_torch_tanh(net, 0.2, z), (x,), (v,))[1]
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-14)
    h = hessian(lambda z: net(0.2, z.unsqueeze(0)).sum())(x[0])
    h_ref = hessian(lambda z: _with_torch_tanh(net, 0.2, z.unsqueeze(0)).sum())(x[0])
    torch.testing.assert_close(h, h_ref, rtol=0, atol=1e-13)


def _with_torch_tanh(net, t, x):
    h = torch.tanh(net.inp(x) + t * net.time_weight)
    for layer in net.hidden:
        h = torch.tanh(layer(h))
    return net.out(h)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int64])
def test_half_precision_and_integers_keep_torch_tanh(dtype):
    x = (torch.randn(64) * 3).to(dtype)
    want = torch.tanh(x)
    assert torch.equal(tanh(x), want) and tanh(x).dtype == want.dtype
    if dtype.is_floating_point:
        assert torch.equal(tanh_(x.clone()), torch.tanh(x))


def test_vmap_of_its_gradient():
    x = torch.randn(5, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    got = vmap(grad(lambda v: tanh(v).sum()))(x)
    torch.testing.assert_close(got, 1 - torch.tanh(x) ** 2, rtol=0, atol=1e-15)


def test_mlp_drift_equals_the_same_network_with_torch_tanh():
    torch.manual_seed(0)
    net = MLPDrift(5, width=16, depth=3).double()
    x = torch.randn(40, 5, dtype=F64, requires_grad=True)

    out, ref = net(0.3, x), _with_torch_tanh(net, 0.3, x)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-14)
    up = torch.randn_like(out)
    got = torch.autograd.grad(out, [x, *net.parameters()], up)
    want = torch.autograd.grad(ref, [x, *net.parameters()], up)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-13)


def test_small_tensors_take_torch_tanh_and_large_ones_the_identity(monkeypatch):
    monkeypatch.setattr(fast_tanh, "MIN_ELEMENTS", 100)
    monkeypatch.setattr(fast_tanh, "MIN_ELEMENTS_GRAD", 1000)
    small, large = torch.randn(99), torch.randn(100)
    assert torch.equal(tanh(small), torch.tanh(small))
    assert torch.equal(tanh(large), torch.mul(large, 2).sigmoid_().mul_(2).sub_(1))
    with_grad = torch.randn(999, requires_grad=True)
    assert tanh(with_grad).grad_fn.name() == "TanhBackward0"
    assert tanh(torch.randn(1000, requires_grad=True)).grad_fn.name() != "TanhBackward0"
