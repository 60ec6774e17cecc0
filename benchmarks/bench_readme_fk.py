"""The README's gradient-free ``feynman_kac`` example (issue 12.5): new path vs the path before, in one run.

The example: ``StateDiagonalDiffusion(16)``, 32 inputs × 1000 samples (B = 32 000 paths), milstein, 50 steps, under
``torch.no_grad``. Three ways of computing it, timed interleaved (CPU time of the process and wall time, medians):

* ``new`` — what ``feynman_kac`` does now: Milstein's g·∂g term takes ∂σ_i/∂x_i from
  ``StateDiagonalDiffusion.sigma_and_slope`` (closed form, one pass), the (rows, d, width) hidden layer is
  evaluated in row blocks of ``SLOPE_BLOCK`` elements that stay in cache, its tanh as 2·sigmoid(2t) − 1 and its
  contraction with the output weights as ``linalg.vecdot``;
* ``blocked`` — the same with torch's tanh and ``einsum`` (the code before 2026-12-03: 2.6 s on an Intel Xeon,
  5.1–6.9 s on an AMD EPYC, where torch's tanh kernel is 4x slower than its sigmoid);
* ``old`` — the path at the issue's filing: torchsde's vjp through the network for g·∂g
  (``FeynmanKacSDE(closed_form_slope=False)``), whole-batch (32 000, 16, 32) temporaries (``SLOPE_BLOCK`` = ∞),
  torch's tanh and ``einsum``.

All three give the same estimate up to float32 round-off (reported). Goal: ≤ 5 s. Usage:
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


def _einsum_dot(h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch.einsum("bdw,dw->bd", h, w)


@contextlib.contextmanager
def _path(mode: str) -> Iterator[None]:
    """Restore, in this process, the code of ``mode`` ("new", "blocked" or "old"; see the module doc)."""
    saved = (state_diffusion.SLOPE_BLOCK, integrate.FeynmanKacSDE, state_diffusion._tanh_, state_diffusion._dot_last)
    if mode in ("blocked", "old"):
        state_diffusion._tanh_, state_diffusion._dot_last = torch.Tensor.tanh_, _einsum_dot
    if mode == "old":
        state_diffusion.SLOPE_BLOCK, integrate.FeynmanKacSDE = 1 << 62, _VjpSDE
    try:
        yield
    finally:
        (state_diffusion.SLOPE_BLOCK, integrate.FeynmanKacSDE, state_diffusion._tanh_,
         state_diffusion._dot_last) = saved


def _example() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.randn(INPUTS, D)
    diffusion = StateDiagonalDiffusion(D)
    with torch.no_grad():
        return feynman_kac(lambda z: torch.sin(2 * z), x, None, diffusion, T=1.0, samples=SAMPLES, steps=STEPS,
                           solver="milstein", seed=1)


MODES = ("old", "blocked", "new")


def bench(repeats: int) -> dict:
    times: dict[str, dict[str, list[float]]] = {m: {"cpu_s": [], "wall_s": []} for m in MODES}
    results = {}
    for _ in range(repeats):
        for mode in MODES:
            with _path(mode):
                c0, w0 = time.process_time(), time.perf_counter()
                results[mode] = _example()
                times[mode]["cpu_s"].append(time.process_time() - c0)
                times[mode]["wall_s"].append(time.perf_counter() - w0)
    med = {m: {k: statistics.median(v) for k, v in t.items()} for m, t in times.items()}
    mean_new, se_new = results["new"]
    return {
        **med, "raw": times,
        "cpu_speedup": med["old"]["cpu_s"] / med["new"]["cpu_s"],
        "wall_speedup": med["old"]["wall_s"] / med["new"]["wall_s"],
        "cpu_speedup_vs_blocked": med["blocked"]["cpu_s"] / med["new"]["cpu_s"],
        "max_abs_diff_mean": max(float((results[m][0] - mean_new).abs().max()) for m in ("old", "blocked")),
        "max_abs_diff_stderr": max(float((results[m][1] - se_new).abs().max()) for m in ("old", "blocked")),
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
          f"/ {res['old']['wall_s']:.2f} s wall, blocked {res['blocked']['cpu_s']:.2f} s CPU, new "
          f"{res['new']['cpu_s']:.2f} s CPU / {res['new']['wall_s']:.2f} s wall: {res['cpu_speedup']:.1f}x less CPU "
          f"than old, {res['cpu_speedup_vs_blocked']:.1f}x than blocked; max |mean difference| "
          f"{res['max_abs_diff_mean']:.2g} "
          f"(Monte Carlo stderr ~{res['median_stderr']:.2g}); goal <= 5 s met: {res['goal_met']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
