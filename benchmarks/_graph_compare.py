"""``bench_graph.py --compare`` (issue 12 item 2): COIN, PyG GCN and the original-style reference per run.

On the same splits in one invocation, with fresh run files (a temporary folder: nothing resumed) and fewer
splits × inits than the protocol (``COMPARE_SPLITS``, ``--splits`` overrides) so that it finishes in minutes; per data
set: the test accuracies, seconds per run, the ratios reference / COIN (goal ≥ 15×) and COIN / GCN (goal ≤ 0.4×),
and the same COIN / GCN ratio for a COIN that ran every epoch at the roofline of :mod:`_roofline` on this machine
(limits measured once, at the start): ``at bound`` with issue 12's byte count, ``at floor`` with only the bytes no
implementation avoids. A goal below the ``at floor`` ratio cannot be met here by any kernel. With the load average
before and after, into ``bench_graph_compare.json`` / ``.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from _report import write_json, write_text
from _roofline import bounds, epoch_work, machine_limits

from nsde_coin.machine import cpu_model

__all__ = ["compare", "roofline_ratios"]

Spawn = Callable[[list[str], int, float], Optional[dict[str, Any]]]


def roofline_ratios(coin: dict[str, Any], gcn: dict[str, Any], limits: dict[str, Any]) -> dict[str, Any]:
    """COIN's training CPU seconds per run if each of its epochs took the bound / the floor, and those over GCN's
    (``coin``/``gcn``: worker summaries; COIN's carries its graph's sizes and hyper-parameters)."""
    g = coin["graph"]
    work = epoch_work(g["n"], g["d"], g["classes"], g["nnz_x"], g["nnz_l"], int(coin["hparams"]["layer_num"]))
    roof = bounds(work, limits["bandwidth_gb_s"], limits["peak_gflop_s"], limits.get("inplace_gb_s"))
    at = {k: roof[f"{k}_ms"] * 1e-3 * coin["epochs_mean"] for k in ("bound", "floor")}
    return {"bound_ms": roof["bound_ms"], "floor_ms": roof["floor_ms"], "coin_cpu_s_at_bound": at["bound"],
            "coin_cpu_s_at_floor": at["floor"], "coin_at_bound_over_gcn_cpu": at["bound"] / gcn["train_cpu_s_mean"],
            "coin_at_floor_over_gcn_cpu": at["floor"] / gcn["train_cpu_s_mean"],
            "coin_epoch_over_bound": coin["epoch_cpu_ms_mean"] / roof["bound_ms"]}


def _write(result: dict[str, Any], lines: list[str], args: argparse.Namespace) -> str:
    """Write the JSON and Markdown (after every data set: a run cut short keeps what it measured)."""
    result["load_avg_after"] = os.getloadavg()
    load0, load1 = (tuple(round(v, 2) for v in result[k]) for k in ("load_avg_before", "load_avg_after"))
    lim = result["limits"]
    note = (f"\n{result['cpu']}, {args.threads} thread(s), torch {result['torch']}; load average (1, 5, 15 min) "
            f"before {load0}, after {load1}. Reduced protocol: splits × 1 init per data set as shown (the paper's is "
            f"100 × 20); the reference's s / run = its median epoch time ({args.reference_epochs} epochs after a "
            f"warm-up) × COIN's mean epochs; wall s / run includes setup and the final evaluation, CPU s / run is the "
            f"training loop's process time (less sensitive to other load on a shared machine). Roofline: "
            f"{lim['bandwidth_gb_s']:.1f} GB/s, {lim['peak_gflop_s']:.0f} GFLOP/s measured at the start; COIN at "
            f"bound / floor = COIN's mean epochs × the epoch's bound / floor (benchmarks/_roofline.py) over GCN's CPU "
            f"s / run.\n")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, result, indent=1)
    write_text(out.with_suffix(".md"), "\n".join(lines) + "\n" + note)
    return "\n".join(lines) + "\n" + note


def compare(args: argparse.Namespace, spawn: Spawn, splits_of: dict[str, int]) -> None:
    """Run the comparison (module doc); ``spawn(extra_args, threads, timeout)`` runs one bench_graph worker."""
    import torch

    load0 = os.getloadavg()
    torch.set_num_threads(1)
    limits = machine_limits()
    result: dict[str, Any] = {"threads": args.threads, "torch": torch.__version__, "cpu": cpu_model(),
                              "python": platform.python_version(), "load_avg_before": load0, "limits": limits,
                              "datasets": {}}
    lines = ["| data set | splits × inits | COIN test acc (%) | GCN test acc (%) | s / run wall: COIN, GCN, reference "
             "(est.) | s / run CPU: COIN, GCN, reference (est.) | reference / COIN (goal ≥ 15×) wall, CPU | COIN / GCN "
             "(goal ≤ 0.4×) wall, CPU | COIN at bound, at floor / GCN (CPU) |", "|---|---|---|---|---|---|---|---|---|"]
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench_graph_compare_") as runs:
        for ds in args.datasets:
            splits = args.splits_given or splits_of.get(ds, 3)
            common = ["--splits", str(splits), "--inits", "1", "--max-epochs", str(args.max_epochs),
                      "--runs-dir", runs]
            got = {m: spawn(["--worker", ds, m, *common], args.threads, args.timeout) for m in ("coin", "gcn")}
            ref = spawn(["--reference-worker", ds, "--reference-epochs", str(args.reference_epochs)], args.threads,
                        args.timeout)
            coin, gcn = got["coin"], got["gcn"]
            if coin is None or gcn is None or ref is None:
                print(f"{ds}: a worker failed; no comparison", file=sys.stderr)
                skipped.append(ds)
                continue
            # the reference trains for as many epochs as our COIN did; CPU: the training loop's process time
            ref_run = ref["epoch_time_ms"] * 1e-3 * coin["epochs_mean"]
            ref_cpu = ref["epoch_cpu_ms"] * 1e-3 * coin["epochs_mean"]
            roof = roofline_ratios(coin, gcn, limits)
            row = {"splits": splits, "inits": 1, "coin_test_acc": coin["test_acc_mean"],
                   "gcn_test_acc": gcn["test_acc_mean"], "coin_run_s": coin["run_time_s_mean"],
                   "gcn_run_s": gcn["run_time_s_mean"], "coin_cpu_s": coin["train_cpu_s_mean"],
                   "gcn_cpu_s": gcn["train_cpu_s_mean"], "reference_run_s_est": ref_run,
                   "reference_cpu_s_est": ref_cpu, "reference_over_coin": ref_run / coin["run_time_s_mean"],
                   "reference_over_coin_cpu": ref_cpu / coin["train_cpu_s_mean"],
                   "coin_over_gcn": coin["run_time_s_mean"] / gcn["run_time_s_mean"],
                   "coin_over_gcn_cpu": coin["train_cpu_s_mean"] / gcn["train_cpu_s_mean"], "roofline": roof,
                   "load_avg_after": os.getloadavg(), "coin": coin, "gcn": gcn, "reference": ref}
            result["datasets"][ds] = row
            lines.append(f"| {ds} | {splits} × 1 | {row['coin_test_acc']:.2f} | {row['gcn_test_acc']:.2f} | "
                         f"{row['coin_run_s']:.2f}, {row['gcn_run_s']:.2f}, {ref_run:.1f} | {row['coin_cpu_s']:.2f}, "
                         f"{row['gcn_cpu_s']:.2f}, {ref_cpu:.1f} | {row['reference_over_coin']:.1f}×, "
                         f"{row['reference_over_coin_cpu']:.1f}× | {row['coin_over_gcn']:.2f}×, "
                         f"{row['coin_over_gcn_cpu']:.2f}× | {roof['coin_at_bound_over_gcn_cpu']:.2f}×, "
                         f"{roof['coin_at_floor_over_gcn_cpu']:.2f}× |")
            print(lines[-1], file=sys.stderr, flush=True)
            _write(result, lines, args)
    print(_write(result, lines, args))
    if skipped:
        raise SystemExit(f"bench_graph --compare: no comparison for {', '.join(skipped)} (a worker failed, see above)")
