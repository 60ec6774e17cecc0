"""The sparse base-layer kernel of COIN: ``(x + ReLU(x W1 + b1)) W2ᵀ + b2`` for constant sparse features x.

:class:`SparseFeatures` holds x (n×d) in the two orders the kernel reads (CSR rows for ``x W``, CSC columns for the
weight gradient ``xᵀ G``); :func:`sparse_features` builds and caches it per feature tensor; :class:`SparseBase` is
the autograd Function with the hand-written backward used by :class:`~nsde_coin.graph.coin.COINBase`,
:class:`~nsde_coin.graph.ensemble.COINEnsemble` and the graph protocol.

Column panels (the speed of the kernel): the two nnz(x)·d products gather whole rows of a d×d matrix — ``x W1``
gathers rows of W1, ``xᵀ G`` rows of the n×d gradient G — and on Cora (d = 1433) those 8–14 MB tables do not fit
in a core's L2 cache, so every gathered row comes from L3/DRAM. The kernel therefore cuts the hidden dimension into
panels of :data:`PANEL` columns: for each panel J it gathers ``x W1[:, J]`` (a d×128 table, ~0.7 MB, stays in L2),
applies bias and ReLU, and accumulates the panel's share of the output layer ``W2[:, J] h_J`` while the panel is
still in cache. The backward pass runs the same panels: ``G_J = (g W2[:, J]) ⊙ [h_J > 0]`` (an n×128 block, in L2)
and ``∇W1[:, J] = xᵀ G_J``. The n×d activations are stored once (as panels; the ReLU output doubles as the
backward's mask) and no full n×d gradient is ever formed.

Panel width (:func:`panel_width`): the two gathered tables are ``[W1[:, J]; b1[J]]`` ((d+1)×k) in the forward pass
and ``G_J`` (n×k) in the backward pass, so the width shrinks on wide or large graphs until the larger of them takes
about :data:`PANEL_TABLE_BYTES`: 128 columns on Cora, CiteSeer; 48 on PubMed, 64 on Coauthor CS, 32 on Coauthor
Physics (n = 34493: a 128-wide G_J is 17.7 MB; one forward + backward of the kernel took 6.1 s with 128-wide
panels and 4.7 s with 32-wide ones, 1 thread, Xeon, idle machine). The compiled kernel's width is a multiple of
64 and wider than 64 only where that table fits in one core's L2 (:func:`~nsde_coin.machine.l2_cache_bytes`):
Cora and CiteSeer run 128 columns on the Xeon (2 MiB L2), 64 on the AMD EPYC (1 MiB; CiteSeer's epoch 1.04-1.10×,
Cora's 1.00-1.02× faster than with 128 there, interleaved runs).

Wide graphs: when the n×d activations would take more than :data:`SAVE_LIMIT_BYTES` (Coauthor Physics: 34493 × 8415
floats = 1.16 GB) they are not kept; the backward pass gathers each panel ``h_J`` again (one more nnz(x)·d gather,
~+30% kernel time) so the kernel's extra memory is a few n×PANEL blocks.
"""

from __future__ import annotations

import weakref
from typing import NamedTuple, Optional

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from nsde_coin._threads import torch_threads
from nsde_coin.graph import native
from nsde_coin.graph.backward_adam import BackwardAdam
from nsde_coin.graph.laplacian import to_scipy
from nsde_coin.graph.sparse import small_work_threads, work_threads
from nsde_coin.machine import l2_cache_bytes

__all__ = ["PANEL", "PANEL_TABLE_BYTES", "SparseBase", "SparseFeatures", "panel_width", "sparse_features"]

PANEL = 128  # widest panel: a d×PANEL float32 slice of W1 (Cora, d = 1433: 0.7 MB) stays in a 1-2 MB L2
# target size of the larger gathered table, max(d+1, n)×k (measured, 1 thread, Xeon with 2 MB L2 per core: PubMed's
# backward gathers 48 wide took ~0.75× the 128-wide time; a 3-epoch COIN run's epoch 0.84× on Coauthor CS (64 wide)
# and 0.83× on Coauthor Physics (32 wide), benchmarks/results/bench_scaling_wide_before_after.json)
PANEL_TABLE_BYTES = 4 << 20
# compiled backward: an n×k gradient table above this is scattered, not gathered (measured on the Xeon; on the AMD
# EPYC, 1 MiB L2, Cora's 128-wide 1.27 MB table still gathered faster in the epoch: 0.96-0.99x scattered)
SCATTER_TABLE_BYTES = 2 << 20
SAVE_LIMIT_BYTES = 256 << 20  # n×d activations above this are recomputed panel by panel in the backward pass


class SparseFeatures(NamedTuple):
    """A constant sparse feature matrix x (n×d) with a column of ones appended, ``x₁ = [x | 1]`` (n × (d+1)), in
    the two orders the base layer's kernel reads.

    ``cols`` (nnz + n,) column index of each stored entry of x₁, ``offsets`` (n,) start of each row (CSR row
    pointers without the last), ``vals`` the entries; ``t_rows``, ``t_offsets`` (d+1,), ``t_vals`` the same for
    ``x₁ᵀ`` (its last row is all ones). ``dim`` = d. The ones column folds the biases into the gathers:
    ``x₁ [W; bᵀ] = x W + b`` and ``x₁ᵀ G = [xᵀ G; Σ_rows G]`` (the bias gradient), so neither needs its own pass.
    """

    cols: torch.Tensor
    offsets: torch.Tensor
    vals: torch.Tensor
    t_rows: torch.Tensor
    t_offsets: torch.Tensor
    t_vals: torch.Tensor
    dim: int

    def gather(self, table: torch.Tensor) -> torch.Tensor:
        """``x₁ @ table`` for a dense (d+1, k) ``table = [W; bᵀ]`` → ``x W + b`` (n, k), one gather-sum."""
        return F.embedding_bag(self.cols, table, self.offsets, mode="sum", per_sample_weights=self.vals)

    def t_gather(self, g: torch.Tensor) -> torch.Tensor:
        """``x₁ᵀ @ g`` for a dense ``g`` (n, k) → (d+1, k): ``xᵀ g`` and, as the last row, ``g.sum(0)``."""
        return F.embedding_bag(self.t_rows, g, self.t_offsets, mode="sum", per_sample_weights=self.t_vals)

    def matmul(self, w: torch.Tensor) -> torch.Tensor:
        """``x @ w`` for a dense ``w`` (d, k) → (n, k)."""
        return self.gather(torch.cat([w, w.new_zeros(1, w.shape[1])]))

    def t_matmul(self, g: torch.Tensor) -> torch.Tensor:
        """``xᵀ @ g`` for a dense ``g`` (n, k) → (d, k), as one gather-sum (no scatter into the output)."""
        return self.t_gather(g)[: self.dim]


_FEATURES: dict[int, tuple[weakref.ref, SparseFeatures]] = {}


def sparse_features(x: torch.Tensor) -> SparseFeatures:
    """:class:`SparseFeatures` of a sparse CSR/COO tensor, validated and cached per tensor (features are fixed data).

    Integer features are converted to float32. Raises ``ValueError`` for NaN/Inf entries. Indices are int32 when
    they fit (half the index traffic of int64).
    """
    hit = _FEATURES.get(id(x))
    if hit is not None and hit[0]() is x:
        return hit[1]
    m = to_scipy(x)
    if m.nnz and not np.all(np.isfinite(m.data)):
        raise ValueError(f"node features contain NaN or Inf ({int((~np.isfinite(m.data)).sum())} entries)")
    dtype = x.dtype if x.is_floating_point() else torch.float32
    n, d = m.shape
    m1 = sp.hstack([m, np.ones((n, 1), dtype=m.dtype)], format="csr")
    m1.sort_indices()
    m1t = m1.T.tocsr()
    m1t.sort_indices()
    itype = torch.int32 if m1.nnz < 2**31 - 1 else torch.int64
    parts = []
    for a in (m1, m1t):
        parts += [torch.from_numpy(a.indices).to(x.device, itype), torch.from_numpy(a.indptr[:-1]).to(x.device, itype),
                  torch.from_numpy(a.data).to(x.device, dtype)]
    feats = SparseFeatures(*parts, int(d))
    key = id(x)
    _FEATURES[key] = (weakref.ref(x), feats)
    weakref.finalize(x, _FEATURES.pop, key, None)
    return feats


def _panels(d: int, width: int) -> list[slice]:
    """Column slices of ``width`` covering ``range(d)`` (the last one shorter): panel starts and widths stay
    multiples of 16 floats, which MKL's small products need to run at speed (119-wide panels at odd offsets
    were measured ~3× slower per flop than 128-wide ones)."""
    return [slice(j, min(j + width, d)) for j in range(0, d, width)]


def panel_width(n: int, d: int, itemsize: int = 4, compiled: bool = False, l2_bytes: Optional[int] = None) -> int:
    """Columns per panel for n nodes and d features: the multiple of 16 nearest to
    :data:`PANEL_TABLE_BYTES` / (itemsize · max(d+1, n)), between 16 and :data:`PANEL` (see the module doc).

    ``compiled``: the width for the compiled kernel (:mod:`nsde_coin.graph.native`), a multiple of its 64-column
    register block and at least 64 while the n×64 gradient table stays ≤ 16 MiB. Measured (1 thread, Intel Xeon,
    forward + backward with Adam in it): Coauthor Physics 3.4–4.5 s with 64 columns against 5.4–6.7 s with 32 (96
    was slower: its last 32 columns take the narrow path); PubMed equal at 48 and 64, slower at 128. Wider than
    64 only while the larger gathered table, max(d+1, n)×k floats, fits in ``l2_bytes`` (one core's L2, default
    :func:`~nsde_coin.machine.l2_cache_bytes`): Cora's 128-wide tables (1.27 MB) fit the Xeon's 2 MiB L2, not the
    AMD EPYC's 1 MiB, where 64 columns ran the epoch faster (``issue12_session_runs.json`` in benchmarks/results)."""
    k = 16 * round(PANEL_TABLE_BYTES / (itemsize * max(d + 1, n)) / 16)
    k = int(min(PANEL, max(16, k)))
    if compiled and (k >= 64 or n * 64 * itemsize <= 16 << 20):
        k = 64 * max(1, k // 64)
        l2 = l2_cache_bytes() if l2_bytes is None else l2_bytes
        while k > 64 and max(d + 1, n) * k * itemsize > l2:
            k -= 64
    return k


def _hidden(feats: SparseFeatures, w1: torch.Tensor, b1: torch.Tensor, j: slice) -> torch.Tensor:
    """Panel ``h_J = ReLU(x W1[:, J] + b1[J])`` (n, k): one gather from the L2-sized table ``[W1[:, J]; b1[J]]``."""
    return feats.gather(torch.cat([w1[:, j], b1[None, j]])).relu_()


class SparseBase(torch.autograd.Function):
    """One base ResNet ``(x + ReLU(x W1 + b1)) W2ᵀ + b2`` for a constant sparse x, panelled (see the module doc).

    Shapes: w1 (d, d) used as ``x @ w1``, b1 (d,), w2 (C, d), b2 (C,), x (n, d) as :class:`SparseFeatures`
    → logits (n, C). ``panel`` (columns per panel, default :func:`panel_width` of n and d) changes only the
    blocking, not the result beyond float rounding of the output layer's sum. No gradient flows to the features.

    The output layer is accumulated as the wide product ``(W2[:, J] h_Jᵀ)`` into a (C, n) buffer (MKL's skinny
    n×k @ k×C form is ~2× slower).
    """

    @staticmethod
    def forward(ctx, w1, b1, w2, b2, feats: SparseFeatures, panel: Optional[int] = None,  # noqa: D102
                w1_step: Optional[BackwardAdam] = None):
        _check_shapes(w1, b1, w2, b2, feats)
        d, w1_param = w1.shape[1], w1
        compiled = native.usable(w1, feats.cols.dtype, b1, w2, b2, feats.vals)
        threads = work_threads(w1)  # the compiled kernel's own threads; torch's small (n, C) ops then run on one
        with torch_threads(1 if compiled else threads):
            if panel is None:
                panel = panel_width(feats.offsets.numel(), d, w1.element_size(), compiled)
            n = feats.offsets.numel()
            keep = n * d * w1.element_size() <= SAVE_LIMIT_BYTES
            if compiled:  # sets res to x W2ᵀ + b2 (the residual branch, output bias), then accumulates into it
                w1, b1, w2, b2 = w1.contiguous(), b1.contiguous(), w2.contiguous(), b2.contiguous()
                res = w1.new_empty(n, w2.shape[0])
                hs = _native_hidden(feats, w1, b1, w2, res, panel, keep, threads, b2)
                out_t = res.t()
            else:  # x W2ᵀ + b2 (n, C), accumulated into its transpose, (C, n): the wide product form
                res = feats.gather(torch.cat([w2.t(), b2[None]]))
                out_t = res.t().contiguous()
                hs = []
                for j in _panels(d, panel):
                    h = _hidden(feats, w1, b1, j)  # (n, k)
                    out_t.addmm_(w2[:, j], h.t())
                    if keep:
                        hs.append(h)
        if keep:
            ctx.save_for_backward(w2, *hs)
        else:
            ctx.save_for_backward(w2, w1, b1)
        ctx.feats, ctx.panel, ctx.d, ctx.keep, ctx.compiled, ctx.threads = feats, panel, d, keep, compiled, threads
        ctx.w1_step = w1_step if ctx.needs_input_grad[0] else None  # a frozen W1 is not stepped
        if ctx.w1_step is not None:
            if not w1_param.is_contiguous():
                raise ValueError("w1_step needs a contiguous W1 (it is updated in place); got strides "
                                 f"{w1_param.stride()}: use W1.data = W1.data.contiguous()")
            ctx.w1 = w1_param  # the parameter itself (not a contiguous copy): the backward updates it in place
        return out_t.t()

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        if ctx.keep:
            w2, *hs = ctx.saved_tensors
        else:
            w2, w1, b1 = ctx.saved_tensors
        feats: SparseFeatures = ctx.feats
        g = g.contiguous()
        d = ctx.d
        with torch_threads(1) if ctx.compiled else small_work_threads(w2):
            step = ctx.w1_step
            gb1 = g.new_empty(d)
            if ctx.compiled:  # the kernel also gives the residual branch's xᵀ g and the output bias's g.sum(0)
                adam = None
                if step is not None:
                    hy = step.begin(ctx.w1, ctx.panel)
                    adam = (ctx.w1, step.exp_avg, step.exp_avg_sq, hy)
                gw1 = None if step is not None else g.new_empty(d, d)
                gw2, gb2 = g.new_empty(w2.shape), g.new_empty(w2.shape[0])
                _native_backward(ctx, feats, g, w2, hs if ctx.keep else (w1, b1), gw1, gb1, gw2, adam, gb2)
                return gw1, gb1, gw2, gb2, None, None, None
            t = feats.t_gather(g)  # (d+1, C): xᵀ g (residual branch) and g.sum(0) (output bias)
            gw2 = t[:d].t().contiguous()
            gb2 = t[d]
            gw1 = g.new_empty(d, d)
            g_t = g.t()
            for i, j in enumerate(_panels(d, ctx.panel)):
                h = hs[i] if ctx.keep else _hidden(feats, w1, b1, j)
                gz = torch.mm(g, w2[:, j])  # (n, k)
                torch.ops.aten.threshold_backward(gz, h, 0, grad_input=gz)  # in place: ReLU mask from h > 0
                gw2[:, j].addmm_(g_t, h)  # h_J is in cache from the mask
                tz = feats.t_gather(gz)  # (d+1, k): ∇W1[:, J] and ∇b1[J]
                gw1[:, j] = tz[:d]
                gb1[j] = tz[d]
        if step is not None:  # Adam on W1 here, no gradient stored (see nsde_coin.graph.backward_adam)
            step.apply(ctx.w1, gw1, ctx.panel)
            gw1 = None
        return gw1, gb1, gw2, gb2, None, None, None


def _check_shapes(w1, b1, w2, b2, feats: SparseFeatures) -> None:
    """Refuse weights that do not fit the features, in one line, on either path: the compiled kernel reads
    ``W2`` as C×d and ``b2[c]`` for every class c without looking at their shapes (a (1,) b2 read past its end)."""
    d = feats.dim
    c = w2.shape[0] if w2.dim() == 2 else None
    if not (tuple(w1.shape) == (d, d) and tuple(b1.shape) == (d,) and c is not None and w2.shape[1] == d
            and tuple(b2.shape) == (c,)):
        raise ValueError(f"the sparse base layer needs W1 ({d}, {d}), b1 ({d},), W2 (C, {d}) and b2 (C,) for {d} "
                         f"features; got W1 {tuple(w1.shape)}, b1 {tuple(b1.shape)}, W2 {tuple(w2.shape)}, "
                         f"b2 {tuple(b2.shape)}")


def _native_hidden(feats: SparseFeatures, w1, b1, w2, out, panel: int, keep: bool,
                   threads: int, b2=None) -> list[torch.Tensor]:
    """Compiled forward (:mod:`nsde_coin.graph.native`, on up to ``threads`` threads) into ``out`` (n, C) (first set
    to ``x W2ᵀ + b2`` when ``b2`` is given); returns the saved activations: all panels in one n×d buffer when
    ``keep``, else nothing (the backward recomputes them)."""
    n, d = out.shape[0], w1.shape[0]
    h = w1.new_empty(n * d) if keep else None
    native.forward(feats, w1, b1, w2, out, panel, h, threads, b2)
    return [] if h is None else [h]


def _native_backward(ctx, feats: SparseFeatures, g, w2, saved, gw1, gb1, gw2, adam, gb2=None) -> None:
    """Compiled backward of all panels: from the saved activations, or recomputing each panel's h_J in L1 from
    ``saved = (w1, b1)`` (each panel before its columns of W1 are updated, when ``adam`` is given)."""
    h = saved[0] if ctx.keep else (saved[0].contiguous(), saved[1].contiguous())
    scatter = g.shape[0] * ctx.panel * g.element_size() > SCATTER_TABLE_BYTES
    native.backward(feats, g, h, w2, gw1, gb1, gw2, ctx.panel, adam, scatter, ctx.threads, gb2)
