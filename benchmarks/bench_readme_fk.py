"""The README's gradient-free ``feynman_kac`` example (issue 12.5): new path vs the path before, in one run.

The example: ``StateDiagonalDiffusion(16)``, 32 inputs × 1000 samples (B = 32 000 paths), milstein, 50 steps, under
``torch.no_grad``. Two ways of computing it, timed interleaved (CPU time of the process and wall time, medians):

* ``new`` — what ``feynman_kac`` does now: Milstein's g·∂g term takes ∂σ_i/∂x_i from
  ``StateDiagonalDiffusion.sigma_and_slope`` (closed form, one pass) and the (rows, d, width) hidden layer is
  evaluated in row blocks of ``SLOPE_BLOCK`` elements that stay in cache;
* ``old`` — the path before, restored in this process: torchsde's vjp through the network for g·∂g
  (``FeynmanKacSDE(closed_form_slope=False)``) and whole-batch (32 000, 16, 32) temporaries (``SLOPE_BLOCK`` = ∞).

Both give the same estimate up to float32 round-off (reported). Goal: ≤ 5 s. Usage:
``python benchmarks/bench_readme_fk.py [--repeats 3] [--threads 1]``; writes benchmarks/results/bench_readme_fk.json.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from _report import out_folder, write_json

import nsde_coin.integrate as integrate
import nsde_coin.state_diffusion as state_diffusion
from nsde_coin import StateDiagonalDiffusion, feynman_kac
from nsde_coin.commands.common import cpu_model
from nsde_coin.sde import FeynmanKacSDE

HERE = Path(__file__).resolve().parent
D, INPUTS, SAMPLES, STEPS = 16, 32, 1000, 50


class _VjpSDE(FeynmanKacSDE):
    """The SDE object as before: g·∂g by torchsde's vjp through the diffusion network."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["closed_form_slope"] = False
        super().__init__(*args, **kwargs)


@contextlib.contextmanager
def _old_path() -> Iterator[None]:
    block, sde = state_diffusion.SLOPE_BLOCK, integrate.FeynmanKacSDE
    state_diffusion.SLOPE_BLOCK, integrate.FeynmanKacSDE = 1 << 62, _VjpSDE
    try:
        yield
    finally:
        state_diffusion.SLOPE_BLOCK, integrate.FeynmanKacSDE = block, sde


def _example() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.randn(INPUTS, D)
    diffusion = StateDiagonalDiffusion(D)
    with torch.no_grad():
        return feynman_kac(lambda z: torch.sin(2 * z), x, None, diffusion, T=1.0, samples=SAMPLES, steps=STEPS,
                           solver="milstein", seed=1)


def bench(repeats: int) -> dict:
    times: dict[str, dict[str, list[float]]] = {m: {"cpu_s": [], "wall_s": []} for m in ("old", "new")}
    results = {}
    for _ in range(repeats):
        for mode in ("old", "new"):
            ctx = _old_path() if mode == "old" else contextlib.nullcontext()
            with ctx:
                c0, w0 = time.process_time(), time.perf_counter()
                results[mode] = _example()
                times[mode]["cpu_s"].append(time.process_time() - c0)
                times[mode]["wall_s"].append(time.perf_counter() - w0)
    med = {m: {k: statistics.median(v) for k, v in t.items()} for m, t in times.items()}
    (mean_old, se_old), (mean_new, se_new) = results["old"], results["new"]
    return {
        "old": med["old"], "new": med["new"], "raw": times,
        "cpu_speedup": med["old"]["cpu_s"] / med["new"]["cpu_s"],
        "wall_speedup": med["old"]["wall_s"] / med["new"]["wall_s"],
        "max_abs_diff_mean": float((mean_old - mean_new).abs().max()),
        "max_abs_diff_stderr": float((se_old - se_new).abs().max()),
        "median_stderr": float(se_new.median()),
        "goal": "new cpu_s <= 5", "goal_met": med["new"]["cpu_s"] <= 5.0,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="timed rounds of each path (default 3)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--out", type=out_folder, default=HERE / "results", help="output folder")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    _example()  # warm-up (first-call allocations and imports)
    res = {"torch": torch.__version__, "python": platform.python_version(), "cpu": cpu_model(),
           "threads": args.threads, "inputs": INPUTS, "samples": SAMPLES, "steps": STEPS, "dim": D,
           "solver": "milstein", **bench(args.repeats)}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "bench_readme_fk.json", res)
    print(f"README feynman_kac example ({res['cpu']}, {args.threads} thread(s)): old {res['old']['cpu_s']:.2f} s CPU "
          f"/ {res['old']['wall_s']:.2f} s wall, new {res['new']['cpu_s']:.2f} s CPU / {res['new']['wall_s']:.2f} s "
          f"wall: {res['cpu_speedup']:.1f}x less CPU; max |mean difference| {res['max_abs_diff_mean']:.2g} "
          f"(Monte Carlo stderr ~{res['median_stderr']:.2g}); goal <= 5 s met: {res['goal_met']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
