"""Graph benchmark in the paper's protocol: accuracy, epoch time, convergence time and memory of COIN and baselines.

For each data set (Cora, CiteSeer, PubMed) and model (COIN, its layer_num = 0 ablation, MLP, GCN, GAT, APPNP, SGC),
one worker subprocess runs ``run_protocol`` on the same splits (seeds 0..S-1) and inits (0..I-1), resumably, into
``benchmarks/results/bench_runs/<dataset>_<model>.jsonl``, and reports

* mean ± std test accuracy (%), mean epochs, mean epoch time (ms) and mean wall time per run (s, "convergence time");
* peak memory: the worker resets its peak-RSS counter after imports and data loading (Linux ``/proc/self/clear_refs``)
  and reports the growth of VmHWM during training (``train_peak_mb``) and ``ru_maxrss`` of the whole process.
  With ``--memory`` each configuration is also measured in a separate one-run subprocess (``--memory-epochs``,
  default 50; the peak is reached in the first epoch) whose result is kept in ``bench_runs/<ds>_<model>.memory.json``
  — this is the figure the table and the bar chart show when present.

The "original implementation" reference (``--reference``): COIN exactly as the research code computes it — dense
features, ``X @ W1`` as a dense ``nn.Linear``, the diffusion ``u ← u − σ² L u`` with a *dense* L, plain autograd,
Adam — timed for a few epochs in its own subprocess (median epoch time after a warm-up); its time per run is
estimated as that epoch time × the mean number of epochs of our COIN runs on the same data, and the speed-up ratio
is measured against our per-run time from the same invocation of this script.

Figures (``bench_graph.png``): per data set, a log-log scatter of epoch time vs convergence time coloured by test
accuracy (the paper's figure), and bars of training peak memory.

Per-run comparison (``--compare``, issue 12 item 2): COIN, PyG GCN and the original-style reference on the same
splits with fresh run files, reduced splits × inits (:data:`COMPARE_SPLITS`), and COIN's time at this machine's
roofline: :mod:`_graph_compare`.

Usage::

    python benchmarks/bench_graph.py --compare             # COIN vs reference vs GCN, reduced splits, 3 data sets
    python benchmarks/bench_graph.py                       # 10 splits x 2 inits, all models, 3 data sets
    python benchmarks/bench_graph.py --datasets cora --models coin gcn --splits 2 --inits 1
    python benchmarks/bench_graph.py --report-only         # rebuild JSON / table / figure from the run files
    python benchmarks/bench_graph.py --report-only --memory  # ... and (re)measure memory, one run per config
    python benchmarks/bench_graph.py --datasets cora --reference-only   # only the original-style reference

Threads: every worker uses ``--threads`` (default 1) intra-op threads. Times on a shared machine are noisy; the
speed-up ratio compares two measurements of this invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

from _graph_report import figure, markdown
from _report import out_file, write_json, write_text

from nsde_coin.machine import cpu_model

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
RUNS = RESULTS / "bench_runs"
MODELS = ("coin", "coin_base", "mlp", "gcn", "appnp", "sgc", "gat")
DATASETS = ("cora", "citeseer", "pubmed")
# COIN settings: Cora is the paper's; CiteSeer / PubMed are the choices of `nsde-coin graph --grid` (README).
COIN_HP: dict[str, dict[str, Any]] = {
    "cora": {"layer_num": 20, "sigma2": 0.35, "solver": "explicit", "allow_unstable": True},
}
COMPARE_SPLITS = {"cora": 3, "citeseer": 2, "pubmed": 1}  # --compare: splits × 1 init (the protocol: 100 × 20)


def coin_hparams(dataset: str) -> dict[str, Any]:
    """COIN hyper-parameters for ``dataset``: the paper's for Cora, else the grid's choice if recorded."""
    if dataset in COIN_HP:
        return dict(COIN_HP[dataset])
    grid = RESULTS / f"grid_{dataset}.json"
    if grid.exists():
        try:
            chosen = json.loads(grid.read_text())["chosen"]
            return {"layer_num": int(chosen["layer_num"]), "sigma2": float(chosen["sigma2"]), "solver": "explicit"}
        except (ValueError, KeyError):
            pass
    return {"layer_num": 20, "sigma2": 0.35, "solver": "explicit", "allow_unstable": True}


def _hparams(dataset: str, model: str) -> dict[str, Any]:
    return coin_hparams(dataset) if model == "coin" else {}


# ------------------------------------------------------------------------------------------------ memory helpers
def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _status_mb(field: str) -> Optional[float]:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


# ---------------------------------------------------------------------------------------------------- workers
def worker(args: argparse.Namespace) -> None:
    import torch

    from nsde_coin.graph.datasets import load_dataset
    from nsde_coin.graph.protocol import TrainConfig, run_protocol

    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset, dense=False)  # SGC densifies Â²X itself (counted in its memory)
    import warnings

    warnings.filterwarnings("ignore", message=".*non-negativity bound.*")
    rss0 = _status_mb("VmRSS")
    reset = _reset_peak()
    runs = Path(args.runs_dir) if args.runs_dir else RUNS
    runs.mkdir(parents=True, exist_ok=True)
    out = runs / f"{args.dataset}_{args.model}.jsonl"
    hp = _hparams(args.dataset, args.model)
    if args.memory_run:  # one run, not recorded, only for the memory peak
        cfg = TrainConfig(max_epochs=args.memory_epochs)
        summary = run_protocol(data, args.model, hp, split_seeds=[0], init_seeds=[0], config=cfg, progress=False,
                               threads=args.threads)
    else:
        cfg = TrainConfig(max_epochs=args.max_epochs)
        summary = run_protocol(data, args.model, hp, splits=args.splits, inits=args.inits, out=out, config=cfg,
                               progress=False, threads=args.threads)
    n, (src, dst) = int(data.num_nodes), data.edge_index  # the sizes of --compare's roofline
    off = src != dst  # nnz(L): the distinct off-diagonal entries (both directions of each edge) and the diagonal
    summary["graph"] = {"n": n, "d": int(data.x_csr.shape[1]), "classes": int(data.y.max()) + 1,
                        "nnz_x": int(data.x_csr.values().numel()),
                        "nnz_l": int(torch.unique(src[off] * n + dst[off]).numel()) + n}
    hwm = _status_mb("VmHWM")
    summary["memory"] = {
        "train_peak_mb": (hwm - rss0) if (reset and hwm is not None and rss0 is not None) else None,
        "rss_before_mb": rss0,
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "epochs": summary["epochs_mean"],
    }
    if args.memory_run:
        write_json(RUNS / f"{args.dataset}_{args.model}.memory.json", summary["memory"], indent=None)
    print(json.dumps(summary))


class _Reference:
    """COIN as the original research code computes it: dense everything, plain autograd (see module doc)."""

    def __init__(self, x, lap, num_classes: int, layer_num: int, sigma2: float):
        import torch
        from torch import nn

        self.x, self.lap, self.k, self.s = x, lap, layer_num, sigma2
        d = x.shape[1]
        self.fc1, self.fc2 = nn.Linear(d, d), nn.Linear(d, num_classes)
        self.params = list(self.fc1.parameters()) + list(self.fc2.parameters())
        self.torch = torch

    def log_prob(self):
        torch = self.torch
        h = self.x + torch.relu(self.fc1(self.x))
        u = torch.softmax(self.fc2(h), dim=1)
        for _ in range(self.k):
            u = u - self.s * (self.lap @ u)
        return torch.log(u)


def reference_worker(args: argparse.Namespace) -> None:
    import torch
    import torch.nn.functional as F

    from nsde_coin.graph.datasets import load_dataset
    from nsde_coin.graph.laplacian import laplacian
    from nsde_coin.graph.splits import random_split

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = load_dataset(args.dataset)
    hp = coin_hparams(args.dataset)
    lap = laplacian(data.edge_index, int(data.num_nodes), "paper").to_dense().float()
    ref = _Reference(data.x, lap, int(data.num_classes), hp["layer_num"], hp["sigma2"])
    split = random_split(data.y, 0)
    opt = torch.optim.Adam(ref.params, lr=0.01, weight_decay=5e-4)
    times, cpu = [], []
    for _ in range(args.reference_epochs + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad()
        out = ref.log_prob()
        loss = F.nll_loss(out[split.train], data.y[split.train])
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    print(json.dumps({"dataset": args.dataset, "epoch_time_ms": 1e3 * statistics.median(times[1:]),
                      "epoch_cpu_ms": 1e3 * statistics.median(cpu[1:]),
                      "epochs_timed": args.reference_epochs, "hparams": hp,
                      "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}))


def _spawn(extra: list[str], threads: int, timeout: float) -> Optional[dict[str, Any]]:
    cmd = [sys.executable, str(Path(__file__).resolve()), *extra, "--threads", str(threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        print(f"  timed out: {' '.join(extra)}", file=sys.stderr)
        return None
    if proc.returncode != 0:
        print(f"  failed: {' '.join(extra)}\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------- report
def _summary_from_runs(dataset: str, model: str, splits: int, inits: int) -> Optional[dict[str, Any]]:
    """Rebuild a summary from a run file (for --report-only); memory is not re-measured."""
    from nsde_coin.graph.baselines import resolve_hparams
    from nsde_coin.graph.protocol import ResultsLog, summarize

    path = RUNS / f"{dataset}_{model}.jsonl"
    if not path.exists():
        return None
    hp = resolve_hparams(model, _hparams(dataset, model))
    recs = [r for r in ResultsLog(path).records
            if r["split_seed"] < splits and r["init_seed"] < inits and r["hparams"] == hp
            and r["max_epochs"] == 10_000 and r["status"] == "ok"]
    if not recs:
        return None
    s = summarize({(r["split_seed"], r["init_seed"]): r for r in recs}.values())
    s.update(dataset=dataset, model=model, hparams=recs[-1]["hparams"], requested=splits * inits)
    return s


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS))
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--splits", type=int, default=None, help="random splits (default 10; --compare: COMPARE_SPLITS)")
    ap.add_argument("--inits", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-epochs", type=int, default=10_000)
    ap.add_argument("--reference", action=argparse.BooleanOptionalAction, default=True,
                    help="time the original-style dense COIN for the speed-up ratio")
    ap.add_argument("--reference-epochs", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=7200.0, help="seconds per worker")
    ap.add_argument("--report-only", action="store_true", help="no training: rebuild outputs from the run files")
    ap.add_argument("--out", type=out_file, default=None,
                    help="results file (default results/bench_graph.json; --compare: results/bench_graph_compare.json)")
    ap.add_argument("--memory", action="store_true",
                    help="measure training peak memory of each config in a one-run subprocess (--memory-epochs)")
    ap.add_argument("--memory-epochs", type=int, default=50)
    ap.add_argument("--reference-only", action="store_true", help="only time the original-style reference")
    ap.add_argument("--compare", action="store_true",
                    help="COIN vs GCN vs the original-style reference per run, same splits, reduced splits × inits")
    ap.add_argument("--runs-dir", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--memory-run", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--worker", nargs=2, metavar=("DATASET", "MODEL"), help=argparse.SUPPRESS)
    ap.add_argument("--reference-worker", metavar="DATASET", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.splits_given, args.splits = args.splits, 10 if args.splits is None else args.splits
    if args.worker:
        args.dataset, args.model = args.worker
        worker(args)
        return
    if args.reference_worker:
        args.dataset = args.reference_worker
        reference_worker(args)
        return

    if args.out is None:  # the default, checked here (the workers never write it)
        try:
            args.out = out_file(str(RESULTS / ("bench_graph_compare.json" if args.compare else "bench_graph.json")))
        except argparse.ArgumentTypeError as err:
            ap.error(f"argument --out: {err}")
    if args.compare:
        from _graph_compare import compare

        compare(args, _spawn, COMPARE_SPLITS)
        return
    import torch

    out_path = Path(args.out)
    previous = json.loads(out_path.read_text()) if out_path.exists() else {}
    prev_rows = {(r["dataset"], r["model"]): r for r in previous.get("rows", [])}
    refs: dict[str, Any] = dict(previous.get("reference", {}))
    if args.report_only:  # also merge the outputs of partial invocations (e.g. --out results/bench_graph_<ds>.json)
        for other in sorted(RESULTS.glob("bench_graph*.json")):
            if other.resolve() != out_path.resolve():
                prev = json.loads(other.read_text())
                for r in prev.get("rows", []):
                    prev_rows.setdefault((r["dataset"], r["model"]), r)
                for ds, ref in prev.get("reference", {}).items():
                    refs.setdefault(ds, ref)
    rows: list[dict[str, Any]] = []
    failed: list[str] = []  # workers that gave no result: reported, and the exit status says so
    common = ["--splits", str(args.splits), "--inits", str(args.inits), "--max-epochs", str(args.max_epochs)]
    for ds in args.datasets:
        for model in [] if args.reference_only else args.models:
            if args.memory and _spawn(["--worker", ds, model, "--memory-run", "--memory-epochs",
                                       str(args.memory_epochs)], args.threads, args.timeout) is None:
                failed.append(f"{ds} {model} (memory)")
            if args.report_only:
                s = _summary_from_runs(ds, model, args.splits, args.inits)
                mem_file = RUNS / f"{ds}_{model}.memory.json"
                if s is not None and mem_file.exists():
                    s["memory"] = json.loads(mem_file.read_text())
                elif s is not None and (ds, model) in prev_rows:
                    s["memory"] = prev_rows[(ds, model)].get("memory")
            else:
                t0 = time.perf_counter()
                s = _spawn(["--worker", ds, model, *common], args.threads, args.timeout)
                failed += [] if s else [f"{ds} {model}"]
                print(f"{ds:9s} {model:9s} " + (f"{s['test_acc_mean']:.2f} ± {s['test_acc_std']:.2f} "
                                                 f"({s['runs']} runs, {time.perf_counter() - t0:.0f} s)"
                                                 if s else "no result"), file=sys.stderr, flush=True)
            if s is not None and s.get("runs"):
                rows.append(s)
        if args.reference and (args.reference_only or not args.report_only):
            ref = _spawn(["--reference-worker", ds, "--reference-epochs", str(args.reference_epochs)],
                         args.threads, args.timeout)
            if ref is not None:
                refs[ds] = ref
            else:
                failed.append(f"{ds} reference")
    done = {(r["dataset"], r["model"]) for r in rows}
    rows += [r for k, r in prev_rows.items() if k not in done and not (k[0] in args.datasets
                                                                        and k[1] in args.models)]
    rows.sort(key=lambda r: (DATASETS.index(r["dataset"]) if r["dataset"] in DATASETS else 99,
                             MODELS.index(r["model"]) if r["model"] in MODELS else 99))
    for ds, ref in refs.items():
        coin = next((r for r in rows if r["dataset"] == ds and r["model"] == "coin"), None)
        if coin is not None:
            est = ref["epoch_time_ms"] * 1e-3 * (coin["epochs_mean"] + 0.0)
            ref.update(run_time_s_est=est, ours_run_time_s=coin["run_time_s_mean"],
                       ours_epoch_time_ms=coin["epoch_time_ms_mean"],
                       speedup_per_run=est / coin["run_time_s_mean"],
                       speedup_per_epoch=ref["epoch_time_ms"] / coin["epoch_time_ms_mean"])
            if ref.get("epoch_cpu_ms") and coin.get("epoch_cpu_ms_mean"):
                ref.update(ours_epoch_cpu_ms=coin["epoch_cpu_ms_mean"],
                           speedup_per_epoch_cpu=ref["epoch_cpu_ms"] / coin["epoch_cpu_ms_mean"])
    result = {
        "splits": args.splits, "inits": args.inits, "threads": args.threads, "torch": torch.__version__,
        "python": platform.python_version(), "cpu": cpu_model(), "machine_load_1min": os.getloadavg()[0],
        "rows": rows, "reference": refs,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_json(out_path, result, indent=1)
    md = markdown(rows, refs)
    write_text(out_path.with_suffix(".md"), md)
    figure(rows, out_path.with_suffix(".png"), DATASETS)
    print(md)
    if failed:
        raise SystemExit(f"bench_graph: no result from {len(failed)} worker(s): {', '.join(failed)} (see above)")



if __name__ == "__main__":
    main()
