"""The two forms of the protocol's read-out map as autograd functions (used by
:class:`~nsde_coin.graph.experiment.train._ReadoutCOINTask`):

* :class:`DenseReadout`: ``P @ u`` for a dense read-out ``P`` (m, n), the m rows of the diffusion map;
* :class:`CompiledReadoutHead`: the whole COIN head on the read-out rows in one compiled call each way
  (``graph/csrc/readout_head.c``): ``lu = log max((Sᵏ softmax(logits))[rows], eps)`` with S the explicit step
  matrix, where torch ran ~20 small ops each way (Cora: (2485, 7), each op's dispatch costing more than its sums).
  It computes what :func:`~nsde_coin.graph.head.head_outputs` with the k steps and
  :func:`~nsde_coin.graph.head.head_log` compute, to float32 rounding (tests/graph/test_graph_protocol_readout.py).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

__all__ = ["CompiledReadoutHead", "DenseReadout"]


class DenseReadout(torch.autograd.Function):
    """``P @ u`` for a constant dense read-out ``P`` (m, n) and ``u`` (n, C), computed as wide products
    ``(uᵀ Pᵀ)ᵀ`` / ``(gᵀ P)ᵀ`` (BLAS is slow on the skinny C-column forms). ``p_t`` is ``Pᵀ`` stored contiguous
    (n, m): MKL's product with the transposed view ``P.t()`` took 6.4 ms on Cora (m = 640, C = 7, 1 thread, Intel
    Xeon), with the contiguous copy 0.37 ms.

    Only the first ``rows`` rows of ``P`` (the training nodes) get a gradient: the loss reads no other row, so the
    backward multiplies by those rows alone (Cora: 140 of 640, 1.4 of the 6.4 MB ``P`` reads per epoch); a gradient
    that is not zero on the other rows (a NaN there, another loss) takes the full product."""

    @staticmethod
    def forward(ctx, u, p, p_t, rows):  # noqa: D102
        ctx.p, ctx.rows = p, rows
        return torch.mm(u.t(), p_t).t()

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        r = ctx.rows if not bool(g[ctx.rows:].any()) else g.shape[0]
        return torch.mm(g[:r].t(), ctx.p[:r]).t(), None, None, None


class CompiledReadoutHead(torch.autograd.Function):
    """``log max((Sᵏ softmax(logits))[rows], eps)``: logits (n, C) float32 → (m, C), differentiable in the logits.

    ``s``, ``s_t``: the step matrix and its transpose (float32 CSR, int64 indices, as
    :func:`nsde_coin.graph.native.power_usable` accepts), ``k`` ≥ 1 steps, ``rows`` (m,) int64 node indices.
    Entries of the diffused rows below ``eps`` are floored and get zero gradient, as in ``head_log``."""

    @staticmethod
    def forward(ctx, logits, s, s_t, k: int, rows, eps: float):  # noqa: D102
        from nsde_coin.graph import native

        lu, u0, ur = native.readout_forward(s, logits.detach(), k, rows, eps)
        ctx.save_for_backward(u0, ur)
        ctx.s_t, ctx.k, ctx.rows, ctx.eps = s_t, k, rows, eps
        return lu

    @staticmethod
    @once_differentiable
    def backward(ctx, g):  # noqa: D102
        from nsde_coin.graph import native

        u0, ur = ctx.saved_tensors
        return native.readout_backward(ctx.s_t, g, ctx.k, ctx.rows, ctx.eps, u0, ur), None, None, None, None, None
