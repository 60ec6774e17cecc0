"""Benchmark of the Feynman–Kac SDE core: fixed-step speed and adjoint memory.

(a) Speed. Euler–Maruyama, batch 1000, d = 16, MLPDrift(width 64, depth 2), constant diagonal σ, 20 steps on
    [0, 1], forward + backward of a linear read-out of X_T. Three implementations, timed interleaved (one call of
    each per round, so machine load hits all alike), medians after a warm-up:
      * loop      — a hand-written Euler–Maruyama loop (x + v dt + σ √dt ε), the baseline;
      * nsde_coin — ``feynman_kac`` (torchsde's Euler + FixedGridBrownian);
      * torchsde  — ``torchsde.sdeint`` on a plain f/g SDE with its default BrownianInterval.
    Reported as ratios to the loop (goal: nsde_coin ≤ 1.3×).
(b) Memory. Peak resident memory of one forward + backward at 10, 100, 1000 steps for grad_mode backprop, adjoint
    (euler + torchsde's default adjoint) and reversible (reversible_heun + adjoint_reversible_heun). Each
    configuration runs in its own subprocess, which resets its peak-RSS counter after imports and set-up (Linux
    /proc/self/clear_refs) and reports its peak RSS after the solve (VmHWM, i.e. ru_maxrss of the live process)
    minus the RSS before it; the same figure from a baseline subprocess that skips the solve is subtracted.
    Goal: adjoint and reversible grow ≤ 1.3× from 10 to 1000 steps.

Usage: ``python benchmarks/bench_sde.py [--threads 1] [--quick]``; writes benchmarks/results/bench_sde.json and .png.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from _report import out_folder, save_figure, write_json
from torch import nn

from nsde_coin.machine import cpu_model

HERE = Path(__file__).resolve().parent
B, D, WIDTH, STEPS, T, SIGMA = 1000, 16, 64, 20, 1.0, 0.3


def _setup(seed: int = 0):
    from nsde_coin import DiagonalDiffusion, MLPDrift

    torch.manual_seed(seed)
    drift = MLPDrift(D, width=WIDTH, depth=2)
    diffusion = DiagonalDiffusion(D, SIGMA)
    x = torch.randn(B, D)
    head = torch.randn(D, 3) / D**0.5
    return drift, diffusion, x, head


class PlainSDE(nn.Module):
    """How a torchsde user writes this SDE: f and g only (diagonal noise, constant σ)."""

    noise_type, sde_type = "diagonal", "ito"

    def __init__(self, drift: nn.Module, sigma: torch.Tensor) -> None:
        super().__init__()
        self.drift, self.sigma = drift, sigma

    def f(self, t, y):
        return self.drift(t, y)

    def g(self, t, y):
        return self.sigma.expand_as(y)


def bench_speed(repeats: int, warmup: int) -> dict:
    import torchsde

    from nsde_coin import feynman_kac

    drift, diffusion, x, head = _setup()
    sigma = diffusion.sigma
    dt = T / STEPS
    counter = [0]

    def loop():
        gen = torch.Generator().manual_seed(counter[0])
        y, sq = x, sigma * dt**0.5
        for k in range(STEPS):
            y = y + drift(k * dt, y) * dt + sq * torch.randn(y.shape, generator=gen)
        return (y @ head).sum()

    def ours():
        return feynman_kac(lambda z: z @ head, x, drift, diffusion, T, samples=1, steps=STEPS, solver="euler",
                           seed=counter[0])[0].sum()

    plain = PlainSDE(drift, sigma)
    ts = torch.tensor([0.0, T])

    def default_bm():
        ys = torchsde.sdeint(plain, x, ts, method="euler", dt=dt)
        return (ys[-1] @ head).sum()

    fns = {"loop": loop, "nsde_coin": ours, "torchsde_default": default_bm}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(warmup + repeats):
        counter[0] = r
        for name, fn in fns.items():
            drift.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            fn().backward()
            elapsed = time.perf_counter() - t0
            if r >= warmup:
                times[name].append(elapsed)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "config": dict(batch=B, dim=D, width=WIDTH, depth=2, steps=STEPS, T=T, sigma=SIGMA, solver="euler",
                       repeats=repeats, warmup=warmup, what="forward+backward"),
        "median_ms": {k: 1e3 * v for k, v in med.items()},
        "iqr_ms": {k: 1e3 * (statistics.quantiles(v, n=4)[2] - statistics.quantiles(v, n=4)[0])
                   for k, v in times.items()},
        "ratio_to_loop": {k: v / med["loop"] for k, v in med.items()},
        "goal": "nsde_coin <= 1.3x loop",
        "goal_met": med["nsde_coin"] / med["loop"] <= 1.3,
    }


def _status_kib(field: str) -> int:
    """A memory field of /proc/self/status (``VmRSS``, ``VmHWM``) in KiB; 0 where unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _reset_peak() -> bool:
    """Return freed heap pages to the OS (glibc malloc_trim), then reset this process's peak RSS (Linux: writing 5
    to /proc/self/clear_refs resets ru_maxrss/VmHWM). False where either is unavailable."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except (OSError, AttributeError):
        return False


def _child(grad_mode: str, steps: int, threads: int) -> None:
    """One memory configuration, in a fresh interpreter. Prints 'peak_kib start_kib'. Where the peak can be reset
    (Linux), start is the RSS right before the solve and peak the process's VmHWM after it (the same counter as
    ru_maxrss, but without getrusage's max over exited threads, which can hold an import-time peak); import-time
    transients then do not mask small solves. Elsewhere: ru_maxrss and 0."""
    torch.set_num_threads(threads)
    from nsde_coin import feynman_kac

    drift, diffusion, x, head = _setup()
    reset = _reset_peak()
    start = _status_kib("VmRSS") if reset else 0
    if steps > 0:
        solver = "reversible_heun" if grad_mode == "reversible" else "euler"
        mean, _ = feynman_kac(lambda z: z @ head, x, drift, diffusion, T, samples=1, steps=steps, solver=solver,
                              grad_mode=grad_mode, seed=0)
        mean.sum().backward()
    peak = _status_kib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(peak, start)


def _run_child(grad_mode: str, steps: int, threads: int) -> int:
    """ru_maxrss − RSS before the solve (KiB) of one configuration's subprocess."""
    out = subprocess.run([sys.executable, __file__, "--child", grad_mode, str(steps), "--threads", str(threads)],
                         check=True, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    peak, start = (int(v) for v in out.stdout.strip().splitlines()[-1].split())
    return peak - start


def bench_memory(steps_list: list[int], threads: int, reps: int) -> dict:
    baseline = min(_run_child("backprop", 0, threads) for _ in range(reps))
    result: dict = {"baseline_kib": baseline, "steps": steps_list, "peak_mib": {},
                    "method": "per-config subprocess; peak RSS reset before the solve (/proc/self/clear_refs), "
                              "peak RSS (VmHWM = ru_maxrss of the live process) after forward+backward minus RSS "
                              "before it, minus the same figure of a baseline subprocess that skips the solve; "
                              "min over repeats"}
    for mode in ("backprop", "adjoint", "reversible"):
        peaks = []
        for steps in steps_list:
            kib = min(_run_child(mode, steps, threads) for _ in range(reps))
            peaks.append(max(kib - baseline, 0) / 1024.0)
        result["peak_mib"][mode] = peaks
    growth = {m: v[-1] / max(v[0], 1e-9) for m, v in result["peak_mib"].items()}
    result["growth_first_to_last"] = growth
    result["goal"] = "adjoint and reversible grow <= 1.3x from the fewest to the most steps"
    result["goal_met"] = all(growth[m] <= 1.3 for m in ("adjoint", "reversible"))
    return result



def _plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    sp = res["speed"]
    names = list(sp["ratio_to_loop"])
    ax1.bar(names, [sp["ratio_to_loop"][n] for n in names], color=["0.6", "tab:blue", "tab:red"])
    ax1.axhline(1.3, ls="--", c="k", lw=1, label="goal 1.3×")
    for i, n in enumerate(names):
        ax1.text(i, sp["ratio_to_loop"][n], f"{sp['median_ms'][n]:.1f} ms", ha="center", va="bottom")
    ax1.set_ylabel("time / hand-written EM loop")
    ax1.set_title(f"Euler, B={B}, d={D}, MLP {WIDTH}, {STEPS} steps, fwd+bwd")
    ax1.legend()
    mem = res["memory"]
    for mode, peaks in mem["peak_mib"].items():
        ax2.plot(mem["steps"], [max(p, 1e-2) for p in peaks], "o-", label=mode)
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("steps")
    ax2.set_ylabel("peak RSS above baseline (MiB)")
    ax2.set_title("memory of one forward+backward")
    ax2.legend()
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--quick", action="store_true", help="fewer repeats and steps (a smoke run)")
    p.add_argument("--child", nargs=2, metavar=("GRAD_MODE", "STEPS"), help=argparse.SUPPRESS)
    p.add_argument("--out", type=out_folder, default=HERE / "results", help="output folder")
    args = p.parse_args(argv)
    if args.child:
        _child(args.child[0], int(args.child[1]), args.threads)
        return 0
    torch.set_num_threads(args.threads)
    repeats, warmup = (8, 2) if args.quick else (40, 5)
    steps_list = [10, 100] if args.quick else [10, 100, 1000]
    res = {
        "torch": torch.__version__,
        "torchsde": __import__("torchsde").__version__,
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "quick": args.quick,
        "speed": bench_speed(repeats, warmup),
        "memory": bench_memory(steps_list, args.threads, reps=1 if args.quick else 2),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "bench_sde.json", res)
    _plot(res, args.out / "bench_sde.png")
    sp, mem = res["speed"], res["memory"]
    print("(a) median fwd+bwd ms: " + ", ".join(f"{k} {v:.2f}" for k, v in sp["median_ms"].items()))
    print("    ratio to loop: " + ", ".join(f"{k} {v:.2f}x" for k, v in sp["ratio_to_loop"].items())
          + f"  (goal met: {sp['goal_met']})")
    print(f"(b) peak MiB above baseline at steps {mem['steps']}:")
    for mode, peaks in mem["peak_mib"].items():
        print(f"    {mode:10s} " + "  ".join(f"{v:8.1f}" for v in peaks)
              + f"   growth {mem['growth_first_to_last'][mode]:.2f}x")
    print(f"    goal met: {mem['goal_met']}")
    print(f"wrote {args.out / 'bench_sde.json'} and {args.out / 'bench_sde.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
