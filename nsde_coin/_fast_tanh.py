"""tanh as 2·sigmoid(2x) − 1: MLPDrift's default activation and StateDiagonalDiffusion's gradient-free blocks.

torch's CPU tanh kernel ran at 2.7–3.8 ns per float32 element on the AMD EPYC these benchmarks ran on, whatever
``ATEN_CPU_CAPABILITY`` said (AVX-512, AVX2 or default: the same time), its sigmoid at 0.4–0.5 ns. The identity
costs one sigmoid and three cheap passes: 72 against 239 µs on 65 536 elements, 340 against 717 µs on 262 144 (no
gradient, 1 thread; timings of one host, which drifts). Small tensors keep torch's tanh, whose single dispatch is
cheaper there, and so do CUDA, half-precision and integer tensors. tanh was a third of ``nsde-coin train``'s CPU time
under torch's profiler, most of the README's Milstein example.

Accuracy: absolute error ≤ 2e-7 in float32 (torch's tanh: 3e-8) and ≤ 4e-16 in float64; ±1 exactly in the tails,
NaN stays NaN. Near 0 the error is absolute, not relative (float32 tanh(1e-8) gives 0, −0.0 gives +0.0). The
gradient is tanh's own, (1 − y²)·g from the saved output, itself differentiable (double backward, as Itô
corrections of learned diffusions need), with forward mode (``jvp``) and :func:`torch.func.vmap`.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["MIN_ELEMENTS", "MIN_ELEMENTS_GRAD", "tanh", "tanh_"]

# Below these sizes torch's one-kernel tanh wins: the identity's four dispatches cost ~12 µs more, the autograd
# function ~45 µs more (AMD EPYC, 1 thread: break-even near 5 k elements without gradient, 40 k with).
MIN_ELEMENTS = 8192
MIN_ELEMENTS_GRAD = 65536


def _takes(t: Tensor, minimum: int) -> bool:
    """Whether ``t`` takes the identity: a float32/float64 CPU tensor of ≥ ``minimum`` elements (CUDA's tanh is one
    fast kernel; half precision and integers keep torch's tanh, its rounding and its type promotion)."""
    return t.numel() >= minimum and t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64)


def tanh_(t: Tensor) -> Tensor:
    """tanh of ``t`` in place (no autograd: for gradient-free evaluations and fresh temporaries); returns ``t``.
    Other tensors than :func:`_takes` accepts with :data:`MIN_ELEMENTS` take torch's ``tanh_``."""
    return _identity(t.mul_(2)) if _takes(t, MIN_ELEMENTS) else t.tanh_()


class _Tanh(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor) -> Tensor:  # noqa: D102
        return _identity(torch.mul(x, 2))

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # noqa: D102
        ctx.save_for_backward(output)
        ctx.save_for_forward(output)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: D102
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)  # differentiable: y is this function's output

    @staticmethod
    def jvp(ctx, tangent: Tensor) -> Tensor:  # noqa: D102
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(tangent, y)  # forward mode: (1 − y²)·ẋ


def _identity(t2: Tensor) -> Tensor:
    """2·sigmoid(t2) − 1 in place on a fresh ``t2`` = 2x."""
    return t2.sigmoid_().mul_(2).sub_(1)


def tanh(x: Tensor) -> Tensor:
    """tanh(x) as a new tensor, same shape and dtype; differentiable (reverse and forward mode) where ``x`` needs a
    gradient. Other tensors than :func:`_takes` accepts with :data:`MIN_ELEMENTS` (:data:`MIN_ELEMENTS_GRAD` with a
    gradient) go to ``torch.tanh``."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _Tanh.apply(x) if _takes(x, MIN_ELEMENTS_GRAD) else torch.tanh(x)
    return _identity(torch.mul(x, 2)) if _takes(x, MIN_ELEMENTS) else torch.tanh(x)
