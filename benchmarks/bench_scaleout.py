"""Scale-out benchmark: the graph protocol on Dask and the SDE trainer under torchrun, against their 1-process runs.

(a) Protocol on Cora (COIN, the paper's settings, full early stopping; ``--splits`` × ``--inits`` runs per mode):
    in-process vs an embedded ``LocalCluster`` of 1 and 2 single-threaded workers. Reported per mode: cluster start
    (s), worker warm-up (importing torch/nsde_coin in each worker, s), sweep wall time and runs/s, and the engine's
    per-run overhead = (sweep wall × workers − Σ run wall) / runs, also as a fraction of a run (goal < 5 %; the
    one-off costs — cluster start, worker imports, a first 1-epoch sweep that ships the graph to every worker —
    are reported apart). Also the data hand-off: Cora's pickled size and the time to
    pickle + unpickle it (what the cluster path does once per worker) vs a ``load_dataset`` (what loading from
    ``--root`` on every worker would cost).
(c) One application sweep, ``run_tabular`` (breast cancer, COIN layer_num 40 + its ablation, ``--app-seeds`` seeds,
    ``--app-epochs`` epochs; one unit = a model × 2 seeds): the default in-process path (each model's seeds in one
    stacked ensemble), the same units one after the other in this process, and the units on a ``LocalCluster`` of 1
    and 2 workers (:mod:`nsde_coin.sweep`). Reported: units/s, and the engine's overhead per unit = (sweep wall ×
    workers − Σ unit wall measured inside the workers) / units, also as a fraction of a unit; the one-off costs
    (cluster start, worker imports, a first 1-epoch sweep) apart. Stored under ``apps_tabular`` with its own CPU and
    load figures; the other sections of the JSON file are kept when ``--skip-*`` leaves them out.
(b) ``fit`` of the ``nsde-coin train`` SDE network (spirals, n = 2400, batch 64, 8 paths, 10 Euler steps) under
    ``torchrun --nproc-per-node 1`` and ``2`` (gloo on 127.0.0.1): seconds per epoch and the speed-up.

The figures depend on the machine's load (recorded: CPU model, cores, load average before and after): on a shared
2-core machine two workers cannot be twice as fast. Usage: ``python benchmarks/bench_scaleout.py [--splits 2]
[--inits 2] [--epochs 2] [--app-seeds 8] [--app-epochs 200] [--skip-protocol] [--skip-trainer] [--skip-apps]``;
writes benchmarks/results/bench_scaleout.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import write_json

HERE = Path(__file__).resolve().parent

FIT_SCRIPT = r"""
import json, sys, time
import torch
import torch.distributed as dist
from nsde_coin.job import build_models, resolve_config
from nsde_coin.toydata import make_spirals
from nsde_coin.training import fit

if __name__ == "__main__":
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    cfg = resolve_config({"n": 2400, "models": ["sde"], "no_plot": True})
    data = make_spirals(cfg["n"], dim=cfg["dim"], classes=cfg["classes"], label_noise=cfg["label_noise"], seed=0)
    model = build_models(cfg, data.dim, data.classes)["sde"]
    res = fit(model, data.x_train, data.y_train, epochs=int(sys.argv[2]), batch_size=cfg["batch_size"],
              lr=cfg["lr"], seed=0)
    times = torch.tensor([res.train_time_s], dtype=torch.float64)
    dist.all_reduce(times, op=dist.ReduceOp.MAX)
    if dist.get_rank() == 0:
        json.dump({"ranks": res.ranks, "train_time_s": float(times), "epochs": res.epochs,
                   "final_loss": res.history[-1]["loss"], "n_train": int(data.x_train.shape[0])},
                  open(sys.argv[1], "w"))
    dist.destroy_process_group()
"""


def protocol(splits: int, inits: int) -> dict:
    import distributed
    import torch

    from nsde_coin.graph.datasets import load_dataset
    from nsde_coin.graph.experiment.cluster import open_client
    from nsde_coin.graph.protocol import TrainConfig, run_protocol

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    data = load_dataset("cora")
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    blob = pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
    pickle.loads(blob)
    handoff_s = time.perf_counter() - t0
    hp = {"allow_unstable": True}  # the paper's Cora setting (layer_num 20, sigma2 0.35, explicit)
    out: dict = {"data": {"load_dataset_s": round(load_s, 3), "pickled_mb": round(len(blob) / 2**20, 3),
                          "pickle_unpickle_s": round(handoff_s, 3)}, "modes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("in-process", "LocalCluster-1", "LocalCluster-2"):
            workers = None if mode == "in-process" else int(mode[-1])
            rec: dict = {"workers": workers or 1}
            path = Path(tmp) / f"{mode}.jsonl"
            if workers is None:
                t0 = time.perf_counter()
                s = run_protocol(data, "coin", hp, splits=splits, inits=inits, out=path, progress=False)
                rec["sweep_s"] = time.perf_counter() - t0
            else:
                t0 = time.perf_counter()
                with open_client(workers, None) as cl:
                    rec["cluster_start_s"] = time.perf_counter() - t0
                    t1 = time.perf_counter()
                    cl.run(__import__, "nsde_coin.graph.experiment.cluster")  # what the first task would pay
                    rec["worker_warmup_s"] = time.perf_counter() - t1
                    t1 = time.perf_counter()  # one-off: graph to every worker, first-call costs (1-epoch runs)
                    run_protocol(data, "coin", hp, splits=workers, inits=1, progress=False, client=cl,
                                 config=TrainConfig(max_epochs=1))
                    rec["first_sweep_1_epoch_s"] = time.perf_counter() - t1
                    t2 = time.perf_counter()
                    s = run_protocol(data, "coin", hp, splits=splits, inits=inits, out=path, progress=False, client=cl)
                    rec["sweep_s"] = time.perf_counter() - t2
                    t3 = time.perf_counter()
                rec["cluster_close_s"] = time.perf_counter() - t3
            runs = [json.loads(line) for line in path.read_text().splitlines()]
            run_wall = sum(r["wall_time_s"] for r in runs)
            n = len(runs)
            rec.update(runs=n, test_acc_mean=s["test_acc_mean"], runs_per_s=n / rec["sweep_s"],
                       run_wall_mean_s=run_wall / n, epochs_mean=s["epochs_mean"],
                       overhead_per_run_s=(rec["sweep_s"] * rec["workers"] - run_wall) / n)
            rec["overhead_fraction"] = rec["overhead_per_run_s"] / rec["run_wall_mean_s"]
            out["modes"][mode] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in rec.items()}
            print(mode, json.dumps(out["modes"][mode]), flush=True)
    base = out["modes"]["in-process"]["runs_per_s"]
    out["throughput_vs_in_process"] = {m: round(v["runs_per_s"] / base, 3) for m, v in out["modes"].items()}
    del distributed
    return out


def _timed(fn, *args):
    """A unit and its wall time inside the worker (cloudpickled with this script: workers need not import it)."""
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def apps_tabular(seeds: int, epochs: int) -> dict:
    import torch

    from nsde_coin.apps import tabular as tab
    from nsde_coin.sweep import open_client, run_units

    torch.set_num_threads(1)
    data = tab.breast_cancer()
    cfg = tab.TabularConfig(seeds=seeds, epochs=epochs)
    x = tab.standardize(data.x).float()
    gen = torch.Generator().manual_seed(cfg.seed)
    labelled = torch.stack([tab.stratified_labelled(data.y, cfg.n_train, gen) for _ in range(cfg.seeds)])
    ei, ew, _ = tab.gaussian_knn_edges(x.double(), cfg.k, cfg.m)
    lap = tab.weighted_laplacian(ei, ew.float(), x.shape[0])
    shared = (tab._fit_seeds, data, x, labelled, lap, cfg)
    models = {"coin": cfg.layer_num, "ablation": 0}
    units = [({name: layers}, chunk) for name, layers in models.items() for chunk in tab._chunks(seeds, 2)]
    out: dict = {"cpu": _machine(), "seeds": seeds, "epochs": epochs, "units": len(units), "seeds_per_unit": 2,
                 "modes": {}}
    t0 = time.perf_counter()
    tab.run_tabular(data, cfg)
    out["modes"]["in-process (stacked, default)"] = {"sweep_s": round(time.perf_counter() - t0, 3)}
    t0 = time.perf_counter()
    walls = [_timed(*shared, *u)[1] for u in units]
    rec = {"sweep_s": time.perf_counter() - t0, "unit_wall_sum_s": sum(walls)}
    out["modes"]["in-process units"] = rec
    for workers in (1, 2):
        rec = {"workers": workers}
        t0 = time.perf_counter()
        with open_client(workers, None) as cl:
            rec["cluster_start_s"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            cl.run(__import__, "nsde_coin.apps.tabular")
            rec["worker_warmup_s"] = time.perf_counter() - t1
            t1 = time.perf_counter()
            tiny = tab.TabularConfig(seeds=seeds, epochs=1)
            with run_units(_timed, (tab._fit_seeds, data, x, labelled, lap, tiny), units[:workers], client=cl,
                           name="warmup", threads=1) as done:
                list(done)
            rec["first_sweep_1_epoch_s"] = time.perf_counter() - t1
            t1 = time.perf_counter()
            with run_units(_timed, shared, units, client=cl, name="bench", threads=1) as done:
                walls = [w for _, (_, w) in done]
            rec["sweep_s"] = time.perf_counter() - t1
        rec["unit_wall_sum_s"] = sum(walls)
        out["modes"][f"LocalCluster-{workers}"] = rec
    for mode, rec in out["modes"].items():
        if "unit_wall_sum_s" in rec:
            w = rec.get("workers", 1)
            rec["units_per_s"] = len(units) / rec["sweep_s"]
            rec["unit_wall_mean_s"] = rec["unit_wall_sum_s"] / len(units)
            rec["overhead_per_unit_s"] = (rec["sweep_s"] * w - rec["unit_wall_sum_s"]) / len(units)
            rec["overhead_fraction"] = rec["overhead_per_unit_s"] / rec["unit_wall_mean_s"]
        out["modes"][mode] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in rec.items()}
        print("tabular", mode, json.dumps(out["modes"][mode]), flush=True)
    base = out["modes"]["in-process units"]["units_per_s"]
    out["throughput_vs_in_process_units"] = {m: round(v["units_per_s"] / base, 3) for m, v in out["modes"].items()
                                             if "units_per_s" in v}
    out["cpu"]["load_avg_after"] = [round(v, 2) for v in os.getloadavg()]
    return out


def _machine() -> dict:
    from nsde_coin.commands.common import cpu_model

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "load_avg_before": [round(v, 2) for v in os.getloadavg()]}


def trainer(epochs: int) -> dict:
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "fit.py"
        script.write_text(FIT_SCRIPT)
        env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
        for ranks in (1, 2):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            res = Path(tmp) / f"r{ranks}.json"
            subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks),
                            "--master-addr", "127.0.0.1", "--master-port", str(port), str(script), str(res),
                            str(epochs)], env=env, check=True, timeout=1800, stdout=subprocess.DEVNULL)
            r = json.loads(res.read_text())
            r["s_per_epoch"] = round(r["train_time_s"] / r["epochs"], 3)
            out[f"ranks_{ranks}"] = r
            print(f"torchrun {ranks} rank(s)", json.dumps(r), flush=True)
    out["speedup_2_vs_1"] = round(out["ranks_1"]["s_per_epoch"] / out["ranks_2"]["s_per_epoch"], 3)
    out["final_loss_rel_diff"] = abs(out["ranks_2"]["final_loss"] / out["ranks_1"]["final_loss"] - 1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--splits", type=int, default=2)
    p.add_argument("--inits", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--skip-protocol", action="store_true")
    p.add_argument("--skip-trainer", action="store_true")
    p.add_argument("--skip-apps", action="store_true")
    p.add_argument("--app-seeds", type=int, default=8)
    p.add_argument("--app-epochs", type=int, default=200)
    args = p.parse_args()
    import distributed
    import torch

    from nsde_coin.machine import cpu_model

    load0 = os.getloadavg()
    t0 = time.perf_counter()
    result: dict = {"benchmark": "bench_scaleout", "cpu": cpu_model(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "distributed": distributed.__version__, "load_avg_before": [round(v, 2) for v in load0],
                    "splits": args.splits, "inits": args.inits}
    if not args.skip_protocol:
        result["protocol_cora"] = protocol(args.splits, args.inits)
    if not args.skip_trainer:
        result["trainer"] = trainer(args.epochs)
    if not args.skip_apps:
        result["apps_tabular"] = apps_tabular(args.app_seeds, args.app_epochs)
    result["load_avg_after"] = [round(v, 2) for v in os.getloadavg()]
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    dest = HERE / "results" / "bench_scaleout.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    sections = ("protocol_cora", "trainer", "apps_tabular")
    old = json.loads(dest.read_text()) if dest.exists() else {}
    if args.skip_protocol and args.skip_trainer:  # apps only: the top-level figures stay those of the last full run
        result = {**old, **{k: result[k] for k in sections if k in result}}
    else:  # sections not rerun keep their last figures
        result = {**result, **{k: old[k] for k in sections if k in old and k not in result}}
    write_json(dest, result, indent=1)
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
