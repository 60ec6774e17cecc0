"""Fast differentiable application of fixed linear graph maps (no autograd tape of many sparse ops).

Every deterministic graph solver computes ``u_T = F(u_0)`` with ``F`` a fixed linear map (``P^k``, ``(I + sL)^{-k}``,
a Chebyshev polynomial of L). The gradient of a loss with respect to ``u_0`` is then ``Fᵀ(grad)``; for symmetric L,
``Fᵀ = F``. :class:`LinearMap` does one custom ``torch.autograd.Function`` call: ``F`` in the forward pass,
``Fᵀ`` in the backward pass — instead of recording k sparse matmuls (whose sparse backward is slow in torch).

Threads: a step here is tiny (Cora: 12.6k non-zeros × 7 columns), and torch's CSR product with several OpenMP
threads then costs far more in synchronisation than it saves — on a loaded 2-core machine a 20-step propagation took
~50 ms with 2 threads and ~0.6 ms with 1. So CPU maps on inputs of at most ``SMALL_WORK`` entries run with one
intra-op thread (the previous setting is restored afterwards; the switch costs well under a microsecond).

Shapes: maps act on (n, m) dense tensors (m columns propagated together); :func:`to_columns` / :func:`from_columns`
fold (n,), (n, C) and batched (B, n, C) inputs into that layout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

from nsde_coin._threads import torch_threads
from nsde_coin.graph import native

__all__ = ["SMALL_WORK", "LinearMap", "apply_linear", "from_columns", "propagate", "small_work_threads", "to_columns",
           "work_threads"]

Fn = Callable[[torch.Tensor], torch.Tensor]
SMALL_WORK = 1 << 20  # entries of the (n, m) input below which CPU maps run single-threaded


def work_threads(u: torch.Tensor) -> int:
    """Threads for work on ``u``: 1 when it is a small CPU tensor (see the module doc), else
    ``torch.get_num_threads()``."""
    return 1 if u.device.type == "cpu" and u.numel() <= SMALL_WORK else torch.get_num_threads()


@contextlib.contextmanager
def small_work_threads(u: torch.Tensor) -> Iterator[None]:
    """Run the block with one intra-op thread when ``u`` is a small CPU tensor (see the module doc)."""
    with torch_threads(work_threads(u)):
        yield


class LinearMap(torch.autograd.Function):
    """``y = forward_fn(u)``; ``grad_u = adjoint_fn(grad_y)``. Both act on (n, m) tensors and must be linear."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, forward_fn: Fn, adjoint_fn: Fn) -> torch.Tensor:  # noqa: D102
        ctx.adjoint_fn = adjoint_fn
        with torch.no_grad(), small_work_threads(u):
            return forward_fn(u)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        with torch.no_grad(), small_work_threads(grad):
            g = ctx.adjoint_fn(grad.contiguous())
        return g, None, None


def apply_linear(u: torch.Tensor, forward_fn: Fn, adjoint_fn: Fn) -> torch.Tensor:
    """Apply a linear map with a known adjoint; uses the custom Function only when a gradient is needed."""
    if torch.is_grad_enabled() and u.requires_grad:
        return LinearMap.apply(u, forward_fn, adjoint_fn)
    with small_work_threads(u):
        return forward_fn(u)


def _power(mat: torch.Tensor, k: int) -> Fn:
    def run(v: torch.Tensor) -> torch.Tensor:
        if k > 0 and native.power_usable(v, mat, v.numel() <= SMALL_WORK):
            return native.csr_power(mat, v, k)  # all k steps in one compiled call (see native's doc)
        for _ in range(k):
            v = mat @ v
        return v

    return run


def propagate(u: torch.Tensor, p: torch.Tensor, k: int, p_t: torch.Tensor | None = None) -> torch.Tensor:
    """``P^k u`` for a sparse CSR ``P`` (n×n) and dense ``u`` (n, m), differentiable in ``u``.

    The backward pass is ``(Pᵀ)^k grad`` with ``p_t`` (defaults to ``p``: pass it when P is not symmetric).
    """
    if k == 0:
        return u
    return apply_linear(u, _power(p, k), _power(p if p_t is None else p_t, k))


def to_columns(u: torch.Tensor, n: int) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Fold (n,), (n, C) or (B, n, C) into an (n, m) tensor; returns it and the original shape."""
    shape = tuple(u.shape)
    if u.dim() == 1 and shape[0] == n:
        return u.reshape(n, 1), shape
    if u.dim() == 2 and shape[0] == n:
        return u, shape
    if u.dim() == 3 and shape[1] == n:
        return u.permute(1, 0, 2).reshape(n, shape[0] * shape[2]), shape
    raise ValueError(f"u must have shape (n,), (n, C) or (B, n, C) with n = {n} nodes, got {shape}")


def from_columns(v: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`to_columns`."""
    if len(shape) == 3:
        b, n, c = shape
        return v.reshape(n, b, c).permute(1, 0, 2)
    return v.reshape(shape)
