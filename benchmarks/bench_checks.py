"""Cost of the per-evaluation field checks (shape of every drift/diffusion value, dtype-error naming, NaN check of
f(X_T)): this checkout's ``feynman_kac`` against a baseline git ref (default ``main``), in the same run.

Workload: a 50-step Euler solve on [0, 1], forward + backward of a linear read-out of X_T, batch 256, d = 64,
MLPDrift(64, width 64, depth 2), for three paths: ``ode`` (σ = 0, torchdiffeq euler), ``sde-additive`` (constant
ScalarDiffusion, its fast σ·dW product) and ``sde-diagonal`` (StateDiagonalDiffusion: every σ evaluation checked).
Baseline and candidate each run in one persistent worker subprocess (one torch thread, warmed up); the driver asks
them for one call at a time, alternately and never both at once, so machine load hits both alike. Calls are timed in
process CPU time (one thread, so other processes on a shared machine perturb it far less than wall time). Reported:
median and minimum call time of each, and candidate/baseline ratios (goal: within noise, ≲ 1.02).

Usage: ``python benchmarks/bench_checks.py [--baseline main] [--calls 40]``; writes
benchmarks/results/bench_checks.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # this checkout's package, installed or not (even --help imports _report's helpers)

from _report import write_json  # noqa: E402

CASES = ("ode", "sde-additive", "sde-diagonal")
B, D, WIDTH, STEPS = 256, 64, 64, 50

WORKER = r"""
import sys, time
import torch
torch.set_num_threads(1)
from nsde_coin import MLPDrift, ScalarDiffusion, StateDiagonalDiffusion, feynman_kac
B, D, WIDTH, STEPS, warmup = (int(a) for a in sys.argv[1:6])
calls = {}
for case in sys.argv[6].split(","):
    torch.manual_seed(0)
    drift = MLPDrift(D, width=WIDTH, depth=2)
    diffusion = {"ode": None, "sde-additive": ScalarDiffusion(D, 0.3),
                 "sde-diagonal": StateDiagonalDiffusion(D, width=8)}[case]
    x = torch.randn(B, D)
    head = torch.randn(D, 3) / D ** 0.5
    def call(drift=drift, diffusion=diffusion, x=x, head=head):
        mean, _ = feynman_kac(lambda z: z @ head, x, drift, diffusion, 1.0, samples=1, steps=STEPS, solver="euler",
                              seed=1)
        mean.sum().backward()
    for _ in range(warmup):
        call()
    calls[case] = call
print("ready", flush=True)
for line in sys.stdin:  # one case name per line -> one timed call, its CPU seconds on stdout
    t0 = time.process_time()
    calls[line.strip()]()
    print(time.process_time() - t0, flush=True)
"""


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout.strip()


def _export(ref: str, dest: Path) -> None:
    """The package ``nsde_coin`` as of git ``ref``, unpacked under ``dest``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "nsde_coin"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def _start(pythonpath: Path, warmup: int) -> subprocess.Popen:
    """A worker holding every case, warmed up, timing one call per line it is sent."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    args = [str(a) for a in (B, D, WIDTH, STEPS, warmup)] + [",".join(CASES)]
    proc = subprocess.Popen([sys.executable, "-c", WORKER, *args], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=tempfile.gettempdir())
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError(f"benchmark worker for {pythonpath} failed to start")
    return proc


def _time(proc: subprocess.Popen, case: str) -> float:
    proc.stdin.write(case + "\n")
    proc.stdin.flush()
    return float(proc.stdout.readline())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="main", help="git ref of the baseline package (default main)")
    parser.add_argument("--calls", type=int, default=40, help="timed calls per case and implementation")
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    from nsde_coin.machine import cpu_model

    start = time.perf_counter()
    times: dict[str, dict[str, list[float]]] = {impl: {c: [] for c in CASES} for impl in ("baseline", "candidate")}
    baseline_commit = _git("rev-parse", args.baseline)  # resolved once: the ref may move during the run
    with tempfile.TemporaryDirectory() as tmp:
        _export(baseline_commit, Path(tmp))
        workers = {"baseline": _start(Path(tmp), args.warmup), "candidate": _start(ROOT, args.warmup)}
        try:
            for r in range(args.calls):
                order = ("baseline", "candidate") if r % 2 == 0 else ("candidate", "baseline")
                for case in CASES:
                    for impl in order:  # one call each, back to back: both see the same machine load
                        times[impl][case].append(_time(workers[impl], case))
        finally:
            for proc in workers.values():
                proc.stdin.close()
                proc.wait(timeout=60)
    result: dict[str, object] = {
        "workload": {"batch": B, "d": D, "width": WIDTH, "steps": STEPS, "solver": "euler", "pass": "fwd+bwd"},
        "baseline_ref": args.baseline, "baseline_commit": baseline_commit,
        "candidate_commit": _git("rev-parse", "HEAD") + (" (+ uncommitted changes)" if _git("status", "--porcelain",
                                                                                             "nsde_coin") else ""),
        "calls_per_case": args.calls,
        "cpu": cpu_model(), "threads": 1, "clock": "process CPU time", "wall_s": round(time.perf_counter() - start, 1),
        "command": " ".join(sys.argv), "cases": {},
    }
    for case in CASES:
        base = statistics.median(times["baseline"][case])
        cand = statistics.median(times["candidate"][case])
        bmin, cmin = min(times["baseline"][case]), min(times["candidate"][case])
        result["cases"][case] = {"baseline_ms": round(1e3 * base, 3), "candidate_ms": round(1e3 * cand, 3),
                                 "ratio": round(cand / base, 4), "baseline_min_ms": round(1e3 * bmin, 3),
                                 "candidate_min_ms": round(1e3 * cmin, 3), "ratio_min": round(cmin / bmin, 4)}
        print(f"{case:14s} median: baseline {1e3 * base:8.3f} ms, candidate {1e3 * cand:8.3f} ms, ratio "
              f"{cand / base:.4f}; min: {1e3 * bmin:8.3f} / {1e3 * cmin:8.3f} ms, ratio {cmin / bmin:.4f}")
    out = HERE / "results" / "bench_checks.json"
    write_json(out, result)
    print(f"wrote {out} ({result['cpu']})")


if __name__ == "__main__":
    main()
