"""Every SDE solver with a constant scalar σ: forward + backward time relative to euler, before and after the fast path.

ScalarDiffusion(d, σ) is torchsde "additive" noise. Two ways of integrating it, timed interleaved (one call of each
per round, the fast paths first, medians after a warm-up), batch 256, MLPDrift(width 64, depth 2), 20 steps on
[0, 1], 1 thread. A solver's ``fast_over_euler`` is the median over rounds of its CPU time over euler's CPU time in
the same round, so a change of the host's speed between rounds (these are shared KVM guests) cancels; the ``*_ms``
figures are medians of wall time:

* ``fast``  — what ``feynman_kac`` does now: reversible_heun gets the (B, d) diagonal view of σ, and the Brownian
  motion of commutative noise returns a zero Lévy area without drawing it (log_ode multiplies it by ∂σ = 0);
* ``dense`` — the path before: σ as a dense (B, d, d) additive matrix (``GeneralDiffusion``) and a Brownian motion
  that draws the (B, d, d) Foster area noise, i.e. torchsde's general machinery for the same SDE.

srk's ``fast`` path is nsde_coin's own SRA1 step (:mod:`nsde_coin.sra`); a third timing, ``srk_torchsde``, is the
call it replaced (torchsde's SRA1 on the same ScalarDiffusion, FeynmanKacSDE and FixedGridBrownian).

Goal (issue 12.4): every solver's ``fast`` time within 2x of euler's at d = 64 and d = 256.
Usage: ``python benchmarks/bench_constant_noise.py [--dims 64 256] [--repeats 7]``; writes
benchmarks/results/bench_constant_noise.json and .png.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torchsde
from _report import median_round_ratio, out_folder, save_figure, write_json

from nsde_coin import FixedGridBrownian, GeneralDiffusion, MLPDrift, ScalarDiffusion, feynman_kac, get_solver
from nsde_coin.machine import cpu_model
from nsde_coin.sde import FeynmanKacSDE

HERE = Path(__file__).resolve().parent
SOLVERS = ["euler", "milstein", "srk", "heun", "midpoint", "euler_heun", "reversible_heun", "log_ode"]
B, STEPS, SIGMA = 256, 20, 0.3


def _case(d: int, solver: str, mode: str):
    torch.manual_seed(0)
    drift = MLPDrift(d, width=64, depth=2)
    x = torch.randn(B, d)
    head = torch.randn(d, 3) / d**0.5
    if mode == "torchsde":  # srk before nsde_coin.sra: integrate's torchsde call for the same constant sigma
        sde = FeynmanKacSDE(drift, ScalarDiffusion(d, SIGMA))

        def run_torchsde() -> None:
            drift.zero_grad(set_to_none=True)
            bm = FixedGridBrownian(0.0, 1.0, (B, d), steps=STEPS, seed=1, levy_area="space-time", commutative=True)
            ys = torchsde.sdeint(sde, x, torch.tensor([0.0, 1.0], dtype=torch.float64), bm=bm, method=solver,
                                 dt=1.0 / STEPS * (1 + 1e-10))
            sde.forget()
            (ys[-1] @ head).sum().backward()

        return run_torchsde
    if mode == "fast":
        diffusion, bm = ScalarDiffusion(d, SIGMA), None
    else:
        diffusion = GeneralDiffusion(d, SIGMA * torch.eye(d), noise_type="additive")
        levy = get_solver(solver, "sde").levy_area
        bm = FixedGridBrownian(0.0, 1.0, (B, d), steps=STEPS, seed=1, levy_area=levy)

    def run() -> None:
        drift.zero_grad(set_to_none=True)
        mean, _ = feynman_kac(lambda z: z @ head, x, drift, diffusion, 1.0, samples=1, steps=STEPS, solver=solver,
                              seed=1, brownian=bm)
        mean.sum().backward()

    return run


def bench(dims: list[int], repeats: int, warmup: int) -> dict:
    out: dict = {}
    for d in dims:
        # each round: every fast path and torchsde's srk first, close to euler in time, then the dense baselines
        fns = {(s, "fast"): _case(d, s, "fast") for s in SOLVERS}
        fns["srk", "torchsde"] = _case(d, "srk", "torchsde")
        fns.update({(s, "dense"): _case(d, s, "dense") for s in SOLVERS})
        times: dict = {k: [] for k in fns}
        cpu: dict = {k: [] for k in fns}
        for r in range(warmup + repeats):
            for k, fn in fns.items():
                if k[1] == "dense" and len(times[k]) >= 2 and statistics.median(times[k]) > 5.0:
                    continue  # a dense baseline of many seconds (log_ode at d = 256): two timed calls suffice
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                if r >= warmup or (k[1] == "dense" and r >= 1 and time.perf_counter() - t0 > 5.0):
                    times[k].append(time.perf_counter() - t0)
                    cpu[k].append(time.process_time() - c0)
        med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
        euler = med[("euler", "fast")]
        base = cpu[("euler", "fast")]
        out[str(d)] = {
            s: {"fast_ms": med[(s, "fast")], "dense_ms": med[(s, "dense")],
                "fast_over_euler": median_round_ratio(cpu[(s, "fast")], base),
                "fast_over_euler_of_medians": med[(s, "fast")] / euler,
                "dense_over_euler": med[(s, "dense")] / euler, "speedup": med[(s, "dense")] / med[(s, "fast")]}
            for s in SOLVERS}
        out[str(d)]["srk"].update(torchsde_ms=med[("srk", "torchsde")],
                                  torchsde_over_euler=median_round_ratio(cpu[("srk", "torchsde")], base))
    worst = max(v["fast_over_euler"] for per_d in out.values() for v in per_d.values())
    return {"per_dim": out, "worst_fast_over_euler": worst, "goal": "every solver <= 2x euler",
            "goal_met": worst <= 2.0}


def _plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = list(res["per_dim"])
    fig, axes = plt.subplots(1, len(dims), figsize=(5.5 * len(dims), 4), squeeze=False)
    for ax, d in zip(axes[0], dims):
        per = res["per_dim"][d]
        xs = range(len(SOLVERS))
        ax.bar([i - 0.2 for i in xs], [per[s]["dense_over_euler"] for s in SOLVERS], 0.4,
               label="dense σ (before; ratio of wall medians)", color="0.6")
        ax.bar([i + 0.2 for i in xs], [per[s]["fast_over_euler"] for s in SOLVERS], 0.4,
               label="fast path (median of per-round CPU ratios)", color="tab:blue")
        ax.axhline(2.0, ls="--", c="k", lw=1, label="goal 2x euler")
        ax.set_yscale("log")
        ax.set_xticks(list(xs), SOLVERS, rotation=40, ha="right")
        ax.set_ylabel("fwd+bwd time / euler")
        ax.set_title(f"constant σ, d = {d}, B = {B}, {STEPS} steps")
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dims", type=int, nargs="+", default=[64, 256], help="state dimensions d (default 64 256)")
    p.add_argument("--repeats", type=int, default=7, help="timed rounds after the warm-up (default 7)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--out", type=out_folder, default=HERE / "results", help="output folder")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    res = {"torch": torch.__version__, "python": platform.python_version(), "cpu": cpu_model(),
           "threads": args.threads, "batch": B, "steps": STEPS, **bench(args.dims, args.repeats, warmup=2)}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "bench_constant_noise.json", res)
    _plot(res, args.out / "bench_constant_noise.png")
    for d, per in res["per_dim"].items():
        print(f"d = {d}: " + ", ".join(f"{s} {v['fast_ms']:.1f} ms ({v['fast_over_euler']:.2f}x euler; dense "
                                         f"{v['dense_ms']:.1f} ms)" for s, v in per.items()))
        print(f"d = {d}: srk via torchsde's SRA1 {per['srk']['torchsde_ms']:.1f} ms "
              f"({per['srk']['torchsde_over_euler']:.2f}x euler)")
    print(f"worst fast/euler {res['worst_fast_over_euler']:.2f}x, goal met: {res['goal_met']} ({res['cpu']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
