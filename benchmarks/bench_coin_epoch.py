"""Roofline of one COIN training epoch on Cora: this machine's limits, the work the epoch must do, and two kernels.

The epoch is the paper setting (Cora LCC 2485 × 1433 row-normalised bag-of-words features, 7 classes, 20 explicit
diffusion steps of σ² 0.35 on the paper Laplacian, NLL on 140 training nodes), full batch: base forward, diffusion,
backward, one fused Adam step (lr 0.01, weight decay 5e-4) — one thread (``--threads``). Random features/graph of the
same size when ../shared/data is absent.

Measured in the same process:

* **limits** — streaming bandwidth of a large copy (``--copy-mib`` per buffer; bytes read + written per second) and
  the peak of a large square float32 matmul (``--mm`` × ``--mm``; 2n³ flops);
* **work** — the bytes the epoch must move through DRAM (features in both orders, W1 read, ∇W1 written, Adam's
  7 streams over all parameters, the n×d activations written once and read once by the backward) and the flops it
  must do (2·nnz(X)·d for ``X W1`` and again for ``Xᵀ G``, 3 n×d×C output-layer products, 2 × 20 steps of
  nnz(L)·C, ~12 flops per parameter for Adam); ``bound = max(bytes / bandwidth, flops / peak)``, and ``floor_ms``
  the same with only the bytes no implementation avoids (Adam's state read and written once, the features once):
  :mod:`_roofline`, shared with ``bench_graph --compare``;
* **gather limit** — the rate of torch's own gather-sum (``embedding_bag``) over Cora's feature rows from a table
  one compiled panel wide (in L2), and ``attainable_ms``: the epoch with the two nnz(X)·d products at that rate and
  the other flops at the peak (:func:`_roofline.bounds`), a limit a gather of these rows can reach;
* **protocol floor** — ``--protocol-runs`` × ``--protocol-epochs`` epochs at the floor over ``--workers``
  processes, with the bandwidth each gets while ``--workers`` processes copy at once (measured): the least time
  the full 100 × 20 protocol can take on this machine (and the same at ``attainable_ms``);
* **kernels** — ``legacy`` (main's unpanelled kernel before issue 12, copied below as the baseline), ``panelled``
  (:class:`nsde_coin.graph.sparse_base.SparseBase` on its pure-torch panels, ``NSDE_COIN_NATIVE=0``) and
  ``compiled`` (the same class on the compiled panel kernel, :mod:`nsde_coin.graph.native`, when it is built) and
  ``compiled_backward_adam`` (that kernel with W1's Adam step inside its backward pass, as the protocol runs it),
  ``compiled_protocol`` (that, with the protocol's compiled head and Adam for the other weights),
  and ``compiled_backward_adam_<build>`` for each narrower build this CPU also runs (``NSDE_COIN_NATIVE_ISA``: the
  AVX2 and baseline SSE2 code on this machine's memory system, what a CPU without AVX-512 would execute),
  timed interleaved (one epoch of each per repeat, medians of wall and process CPU time) so that load from other
  processes hits all alike; each speed-up is the median of the per-repeat ratios against ``legacy``;
* **checks** — at the same weights, each kernel's logits against ``legacy``'s (``forward_rel_diff_vs_legacy``) and
  ``compiled_protocol``'s compiled head (log u on the training rows) against torch's
  ``log max(u, 1e-12)`` of the legacy epoch (``head_log_u_rel_diff_vs_legacy``), relative to the largest entry.

Usage::

    python benchmarks/bench_coin_epoch.py [--threads 1] [--repeats 30] [--workers 2] [--out results/....json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import emit_json, median_round_ratio, out_file, save_figure  # noqa: E402
from _roofline import bounds, concurrent_bandwidth, epoch_work, gather_rate, goal_check, machine_limits  # noqa: E402
from bench_propagate import cora_adjacency  # noqa: E402
from bench_propagate import sparse_features as random_features  # noqa: E402

from nsde_coin._heap import keep_large_blocks  # noqa: E402
from nsde_coin.graph import native  # noqa: E402
from nsde_coin.graph.backward_adam import BackwardAdam  # noqa: E402
from nsde_coin.graph.compiled_adam import CompiledAdam  # noqa: E402
from nsde_coin.graph.diffusion import diffuse  # noqa: E402
from nsde_coin.graph.experiment.readout import CompiledReadoutHead  # noqa: E402
from nsde_coin.graph.head import head_outputs  # noqa: E402
from nsde_coin.graph.laplacian import laplacian_from_weights, to_scipy, torch_csr  # noqa: E402
from nsde_coin.graph.sparse import small_work_threads  # noqa: E402
from nsde_coin.graph.sparse_base import SparseBase, panel_width, sparse_features  # noqa: E402
from nsde_coin.machine import cpu_model, l2_cache_bytes  # noqa: E402

warnings.filterwarnings("ignore", category=UserWarning)
RESULTS = Path(__file__).resolve().parent / "results"


class LegacyFeatures(NamedTuple):
    """The feature layout before issue 12 (baseline only): x and xᵀ as int64 CSR gathers, biases separate."""

    cols: torch.Tensor
    offsets: torch.Tensor
    vals: torch.Tensor
    t_rows: torch.Tensor
    t_offsets: torch.Tensor
    t_vals: torch.Tensor

    def matmul(self, w: torch.Tensor) -> torch.Tensor:
        return F.embedding_bag(self.cols, w, self.offsets, mode="sum", per_sample_weights=self.vals)

    def t_matmul(self, g: torch.Tensor) -> torch.Tensor:
        return F.embedding_bag(self.t_rows, g, self.t_offsets, mode="sum", per_sample_weights=self.t_vals)


def legacy_features(x: torch.Tensor) -> LegacyFeatures:
    m = to_scipy(x)
    xs, xts = torch_csr(m, x.dtype), torch_csr(m.T.tocsr(), x.dtype)
    return LegacyFeatures(xs.col_indices(), xs.crow_indices()[:-1].contiguous(), xs.values(),
                          xts.col_indices(), xts.crow_indices()[:-1].contiguous(), xts.values())


class LegacyBase(torch.autograd.Function):
    """The kernel before issue 12 (baseline only): whole-width gathers against the full d×d W1 and n×d gradient."""

    @staticmethod
    def forward(ctx, w1, b1, w2, b2, feats: LegacyFeatures):  # noqa: D102
        with small_work_threads(w1):
            h = feats.matmul(w1).add_(b1).relu_()
            res = feats.matmul(w2.t().contiguous())
            logits = torch.mm(w2, h.t()).t().add(res).add_(b2)
        ctx.save_for_backward(h, w2)
        ctx.feats = feats
        return logits

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        h, w2 = ctx.saved_tensors
        feats: LegacyFeatures = ctx.feats
        g = g.contiguous()
        with small_work_threads(w2):
            gw2 = torch.mm(g.t(), h).add_(feats.t_matmul(g).t())
            gz = torch.mm(g, w2)
            torch.ops.aten.threshold_backward(gz, h, 0, grad_input=gz)
            gw1 = feats.t_matmul(gz)
        return gw1, gz.sum(0), gw2, g.sum(0), None


def cora_features():
    """Cora LCC features (CSR torch tensor) and labels from the loader, or random ones of the same shape."""
    try:
        from nsde_coin.graph.datasets import load_dataset

        data = load_dataset("cora", dense=False)
        return data.x_csr, data.y, "cora_lcc"
    except (FileNotFoundError, ImportError):
        x = torch_csr(random_features(2485))
        return x, torch.randint(0, 7, (2485,), generator=torch.Generator().manual_seed(1)), "random_2485"


def make_epoch(kernel, feats, op, y, train, n: int, d: int, c: int, seed: int = 0, compiled: str = "1",
               backward_adam: bool = False, build: str = "", protocol: bool = False):
    """One full-batch epoch closure with its own weights and fused Adam (same init for every kernel);
    ``compiled`` is the value of ``NSDE_COIN_NATIVE`` it runs under ("0": the torch panels); ``backward_adam``:
    W1 stepped inside the kernel's backward pass (:class:`~nsde_coin.graph.backward_adam.BackwardAdam`); ``build``:
    the value of ``NSDE_COIN_NATIVE_ISA`` ("": the widest build this CPU runs); ``protocol`` (with
    ``backward_adam``): the rest as the graph protocol runs it, the head on the training rows in one compiled call
    each way (:class:`~nsde_coin.graph.experiment.readout.CompiledReadoutHead`: the same 20 steps on the whole
    graph, then the rows) and b1, W2, b2 stepped by :class:`~nsde_coin.graph.compiled_adam.CompiledAdam`."""
    g = torch.Generator().manual_seed(seed)
    bound = 1.0 / d ** 0.5
    params = [torch.empty(s).uniform_(-bound, bound, generator=g).requires_grad_() for s in ((d, d), (d,), (c, d),
                                                                                             (c,))]
    step = BackwardAdam(lr=0.01, weight_decay=5e-4) if backward_adam else None
    rest = params[1:] if step else params
    opt = (CompiledAdam(rest, 0.01, weight_decay=5e-4) if protocol
           else torch.optim.Adam(rest, lr=0.01, weight_decay=5e-4, fused=True))
    steps = tuple(op.step_matrix(0.35, torch.float32, torch.device("cpu"), transpose=t) for t in (False, True)
                  ) if protocol else ()

    def forward():
        os.environ[native.ENV], os.environ[native.ENV_ISA] = compiled, build  # this kernel's path and build
        logits = kernel.apply(*params, feats, None, step) if step else kernel.apply(*params, feats)
        if protocol:  # log u on the training rows
            return logits, CompiledReadoutHead.apply(logits, *steps, 20, train, 1e-12)
        u = head_outputs(logits, lambda u0: diffuse(u0, op, 0.35, 20, solver="explicit", allow_unstable=True))
        return logits, u

    def run():
        opt.zero_grad(set_to_none=True)
        _, u = forward()
        lu = u if protocol else torch.log(u[train].clamp_min(1e-12))
        loss = F.nll_loss(lu, y[train])
        loss.backward()
        opt.step()
        return float(loss)

    run.forward, run.params = forward, params
    return run


def protocol_floor(work: dict, peak: float, args: argparse.Namespace, gather_gb_s: Optional[float] = None) -> dict:
    """The least time the full protocol can take here: ``--protocol-runs`` × ``--protocol-epochs`` epochs at the
    floor (:mod:`_roofline`), spread over ``--workers`` processes, each with its share of the bandwidth while all
    copy at once; the time outside the epochs (setup, evaluation: ~0.02 s per run in the EPYC protocol) not counted.
    With ``gather_gb_s``, the same at the attainable time (the products at that gather rate)."""
    shared = concurrent_bandwidth(args.workers, args.copy_mib)
    roof = bounds(work, shared["share_gb_s"], peak, shared["inplace_share_gb_s"], gather_gb_s)
    epochs = args.protocol_runs * args.protocol_epochs
    out = {"workers": args.workers, "runs": args.protocol_runs, "epochs_per_run": args.protocol_epochs,
           "bandwidth_under_load": shared, "floor_ms_under_load": roof["floor_ms"],
           "bound_ms_under_load": roof["bound_ms"],
           "protocol_min_at_floor": epochs * roof["floor_ms"] / args.workers / 6e4,
           "protocol_min_at_bound": epochs * roof["bound_ms"] / args.workers / 6e4}
    if gather_gb_s is not None:
        out.update(attainable_ms_under_load=roof["attainable_ms"],
                   protocol_min_at_attainable=epochs * roof["attainable_ms"] / args.workers / 6e4)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--copy-mib", type=int, default=256)
    p.add_argument("--mm", type=int, default=2048)
    p.add_argument("--workers", type=int, default=2,
                   help="protocol worker processes sharing the memory bus for the protocol floor (0: skip it)")
    p.add_argument("--protocol-runs", type=int, default=2000, help="runs of the protocol (100 splits × 20 inits)")
    p.add_argument("--protocol-epochs", type=float, default=133.0,
                   help="mean epochs per run (133.0: the 100 × 20 Cora protocol, results/cora_full_100x20*.json)")
    p.add_argument("--out", type=out_file, default=RESULTS / "bench_coin_epoch.json")
    args = p.parse_args(argv)
    if args.workers < 0 or args.protocol_runs < 1 or not args.protocol_epochs > 0:
        p.error(f"need --workers >= 0, --protocol-runs >= 1, --protocol-epochs > 0; got {args.workers}, "
                f"{args.protocol_runs}, {args.protocol_epochs}")
    torch.set_num_threads(args.threads)
    keep_large_blocks()  # as the graph protocol does: per-epoch blocks reuse the heap (both kernels alike)
    x, y, graph = cora_features()
    a, _ = cora_adjacency()
    op = laplacian_from_weights(a, "paper", operator=True)
    feats = sparse_features(x)
    n, d = x.shape
    c = int(y.max()) + 1
    train = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:20 * c]
    kernels = {"legacy": (LegacyBase, legacy_features(x), "0"), "panelled": (SparseBase, feats, "0")}
    builds = {}
    if native.available():
        kernels["compiled"] = (SparseBase, feats, "1")
        kernels["compiled_backward_adam"] = (SparseBase, feats, "1")
        kernels["compiled_protocol"] = (SparseBase, feats, "1")
        for b in native.supported_isas()[:-1]:  # the narrower builds, on this CPU
            kernels[f"compiled_backward_adam_{b}"] = (SparseBase, feats, "1")
            builds[f"compiled_backward_adam_{b}"] = b
    runs = {k: make_epoch(kern, f, op, y, train, n, d, c, compiled=s,
                          backward_adam="backward_adam" in k or k == "compiled_protocol", build=builds.get(k, ""),
                          protocol=k == "compiled_protocol")
            for k, (kern, f, s) in kernels.items()}

    # same weights → same forward (float32 rounding of the output layer's sum only)
    # and the same head: the compiled one's log u on the training rows against log max(u, eps) of torch's
    with torch.no_grad():
        fw = {k: r.forward() for k, r in runs.items()}
    lg = {k: v[0] for k, v in fw.items()}
    fwd_diff = {k: float((lg[k] - lg["legacy"]).abs().max() / lg["legacy"].abs().max()) for k in lg if k != "legacy"}
    ref_lu = torch.log(fw["legacy"][1][train].clamp_min(1e-12))
    head_diff = {k: float((fw[k][1] - ref_lu).abs().max() / ref_lu.abs().max()) for k in fw if k == "compiled_protocol"}

    limits = machine_limits(args.copy_mib, args.mm)
    work = epoch_work(n, d, c, feats.cols.numel() - n, op.scipy.nnz, 20)
    for r in runs.values():  # warm-up (allocator, caches)
        for _ in range(3):
            r()
    wall = {k: [] for k in runs}
    cpu = {k: [] for k in runs}
    for _ in range(args.repeats):
        for k, r in runs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            r()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    limits_after = machine_limits(args.copy_mib, args.mm)
    legacy = kernels["legacy"][1]  # int64 CSR of x, what embedding_bag takes
    gather = gather_rate(legacy.cols, legacy.offsets, legacy.vals, d,
                         panel_width(n, d, 4, compiled=native.available()))
    os.environ.pop(native.ENV_ISA, None)  # status() below: the default build, not the last one timed
    bw = max(limits["bandwidth_gb_s"], limits_after["bandwidth_gb_s"])
    peak = max(limits["peak_gflop_s"], limits_after["peak_gflop_s"])
    inplace = max(limits["inplace_gb_s"], limits_after["inplace_gb_s"])
    roof = bounds(work, bw, peak, inplace, gather["gb_s"])
    bound_ms = roof["bound_ms"]
    protocol = protocol_floor(work, peak, args, gather["gb_s"]) if args.workers else None
    res = {}
    for k in runs:
        med_cpu, med_wall = 1e3 * statistics.median(cpu[k]), 1e3 * statistics.median(wall[k])
        res[k] = {"epoch_cpu_ms": med_cpu, "epoch_wall_ms": med_wall, "cpu_ms_p25_p75":
                  [1e3 * float(np.percentile(cpu[k], q)) for q in (25, 75)],
                  "fraction_of_bound_cpu": bound_ms / med_cpu, "times_bound_cpu": med_cpu / bound_ms,
                  "times_bound_wall": med_wall / bound_ms,  # with --threads > 1: wall time against the limits
                  "times_attainable_cpu": med_cpu / roof["attainable_ms"]}
    ratio_cpu = {k: median_round_ratio(cpu["legacy"], cpu[k]) for k in runs if k != "legacy"}
    ratio_wall = {k: median_round_ratio(wall["legacy"], wall[k]) for k in runs if k != "legacy"}
    goals = goal_check(bound_ms, roof["attainable_ms"], res["legacy"]["epoch_cpu_ms"])
    out = {"graph": graph, "n": n, "d": d, "classes": c, "nnz_x": feats.cols.numel() - n, "nnz_l": op.scipy.nnz,
           "threads": args.threads, "repeats": args.repeats, "torch": torch.__version__,
           "python": sys.version.split()[0], "cpu": cpu_model(), "l2_cache_bytes": l2_cache_bytes(),
           "compiled_panel": panel_width(n, d, 4, compiled=True) if native.available() else None,
           "limits_before": limits, "limits_after": limits_after,
           "bandwidth_gb_s": bw, "inplace_gb_s": inplace, "peak_gflop_s": peak, "gather_limit": gather,
           "work": work, **roof,
           "protocol_floor": protocol,
           "forward_rel_diff_vs_legacy": fwd_diff, "head_log_u_rel_diff_vs_legacy": head_diff,
           "compiled_kernel": native.status(), "compiled_builds": list(native.supported_isas()),
           "kernels": res, "goals": goals, "speedup_cpu_median_of_ratios": ratio_cpu,
           "speedup_wall_median_of_ratios": ratio_wall}
    emit_json(out, args.out)
    _figure(out, args.out.with_suffix(".png"))
    return 0


def _figure(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.8, 3.8))
    kern = list(out["kernels"])
    names = ["floor\n(max of\nleast bytes/\nin-place BW,\nflops/peak)", "bound\n(max of\nbytes/BW,\nflops/peak)",
             "bytes at\nbandwidth", "flops at\npeak", "attainable\n(gathers at\ntorch's\nrate)"]
    names += [k.replace("_", "\n") for k in kern]
    vals = [out["floor_ms"], out["bound_ms"], out["time_at_bandwidth_ms"], out["time_at_peak_ms"],
            out["attainable_ms"]] + [out["kernels"][k]["epoch_cpu_ms"] for k in kern]
    ax.tick_params(axis="x", labelsize=7)
    ax.bar(names, vals, color=["0.3", "k", "0.5", "0.7", "0.15", "tab:red", "tab:orange", "tab:green", "tab:blue",
                              "tab:cyan", "tab:purple", "tab:brown"][: len(names)])
    for i, v in enumerate(vals):
        ax.text(i, v, f"{v:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("ms per epoch (CPU time, median)")
    ax.set_title(f"COIN epoch roofline, {out['graph']}, {out['threads']} thread\n{out['cpu']}", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
