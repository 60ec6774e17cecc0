"""COIN on wide graphs and the scaling law: epoch time and peak memory against the work nnz(X)·d and nnz(L)·C.

For each data set (Cora, CiteSeer, PubMed, Amazon Photo, Coauthor CS, Coauthor Physics) one fresh subprocess loads it
with the library's default feature storage, builds COIN (paper setting: 20 explicit steps, σ² 0.35) and trains
``--epochs`` epochs with the graph protocol's ``train_run`` (fused Adam, read-out operator, one thread), then reports
its peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``; also after the imports and after loading, and the
size of the three d×d float32 buffers the protocol's run holds: W1 and Adam's two moments; ∇W1 is consumed inside
the backward by BackwardAdam and the sweep keeps no early-stopping copy, ``train_run(..., keep_best=False)``),
the median epoch wall and CPU time, and the work:
nnz(X)·d (the two base-layer gathers) and nnz(L)·C (one diffusion step). ``--before DIR`` also runs the workers with
``PYTHONPATH=DIR`` (e.g. a checkout of main) for a before/after comparison in the same run.

The fitted slope is the least-squares slope of log(epoch CPU time) against log(nnz(X)·d) (≈ 1: linear in the work).

Usage::

    python benchmarks/bench_scaling.py [--epochs 3] [--datasets cora,...] [--before /work/main]
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from _report import out_file, save_figure, write_json

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DATASETS = ("cora", "citeseer", "pubmed", "amazon_photo", "coauthor_cs", "coauthor_physics")


def worker(name: str, epochs: int) -> dict:
    import torch

    from nsde_coin.graph.baselines import build_model
    from nsde_coin.graph.datasets import load_dataset
    from nsde_coin.graph.protocol import TrainConfig, train_run
    from nsde_coin.graph.splits import random_split

    torch.set_num_threads(1)
    rss_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    t0 = time.perf_counter()
    data = load_dataset(name)
    load_s = time.perf_counter() - t0
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    hp = {"layer_num": 20, "sigma2": 0.35, "solver": "explicit", "allow_unstable": True}
    net = build_model("coin", data, hp, seed=0)
    split = random_split(data.y, 0)
    sweep = {"keep_best": False} if "keep_best" in inspect.signature(train_run).parameters else {}  # older checkouts
    out = train_run(net, data.y, split, TrainConfig(max_epochs=epochs, patience=10 ** 6), **sweep)
    x = data.x_csr
    n, d = x.shape
    nnz_l = int(data.edge_index.shape[1]) + n  # paper Laplacian: off-diagonal entries + the diagonal
    c = int(data.num_classes)
    return {"dataset": name, "n": n, "d": d, "classes": c, "nnz_x": int(x.values().numel()), "nnz_l": nnz_l,
            "work_x_d": int(x.values().numel()) * d, "work_l_c": nnz_l * c, "x_dense": x is not data.x
            and data.x.layout == torch.strided, "load_s": load_s, "epochs": out["epochs"],
            "epoch_wall_s": out["epoch_time_ms"] / 1e3, "epoch_cpu_s": out["epoch_cpu_ms"] / 1e3,
            "peak_rss_gib_after_imports": rss_imports, "peak_rss_gib_after_load": rss_loaded,
            # the d×d float32 buffers a protocol run holds: W1 and Adam's two moments (BackwardAdam consumes ∇W1
            # inside the backward; the sweep keeps no early-stopping copy)
            "dxd_buffers_gib": 3 * d * d * 4 / 2**30,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def spawn(name: str, epochs: int, pythonpath: str, timeout: float) -> dict:
    env = dict(os.environ, PYTHONPATH=pythonpath, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--epochs", str(epochs)]
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"dataset": name, "error": f"timeout after {timeout} s"}
    if p.returncode != 0:
        return {"dataset": name, "error": (p.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def slope(rows: list[dict], key: str) -> float:
    import numpy as np

    ok = [r for r in rows if "error" not in r]
    if len(ok) < 2:
        return float("nan")
    return float(np.polyfit(np.log([r[key] for r in ok]), np.log([r["epoch_cpu_s"] for r in ok]), 1)[0])


def figure(rows: list[dict], path: Path, cpu: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if "error" not in r]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    for ax, key, label in ((axes[0], "work_x_d", "nnz(X)·d"), (axes[1], "work_l_c", "nnz(L)·C")):
        ax.loglog([r[key] for r in ok], [r["epoch_cpu_s"] for r in ok], "o")
        for r in ok:
            ax.annotate(r["dataset"], (r[key], r["epoch_cpu_s"]), fontsize=7)
        ax.set_xlabel(label)
        ax.set_ylabel("COIN epoch CPU s (1 thread)")
        ax.set_title(f"slope {slope(rows, key):.2f}", fontsize=9)
    axes[2].loglog([r["work_x_d"] for r in ok], [r["peak_rss_gib"] for r in ok], "s")
    axes[2].set_xlabel("nnz(X)·d")
    axes[2].set_ylabel("peak RSS GiB")
    fig.suptitle(cpu, fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--before", default=None, help="also run with PYTHONPATH=this checkout (e.g. main)")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--out", type=out_file, default=RESULTS / "bench_scaling.json")
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.epochs)))
        return 0
    import torch

    from nsde_coin.machine import cpu_model

    here = str(HERE.parent)
    names = [s.strip() for s in args.datasets.split(",") if s.strip()]
    out = {"cpu": cpu_model(), "threads": 1, "torch": torch.__version__, "epochs": args.epochs, "after": [],
           "before": [], "load_avg_before": os.getloadavg(), "before_pythonpath": args.before}
    for name in names:  # interleaved per data set: load drifts hit before and after alike
        if args.before:
            out["before"].append(spawn(name, args.epochs, args.before, args.timeout))
            print("before", out["before"][-1], flush=True)
        out["after"].append(spawn(name, args.epochs, here, args.timeout))
        print("after", out["after"][-1], flush=True)
    out["load_avg_after"] = os.getloadavg()
    out["slope_vs_nnzx_d"] = slope(out["after"], "work_x_d")
    out["slope_vs_nnzl_c"] = slope(out["after"], "work_l_c")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, out)
    figure(out["after"], args.out.with_suffix(".png"), out["cpu"])
    print(json.dumps({k: out[k] for k in ("slope_vs_nnzx_d", "slope_vs_nnzl_c")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
