"""Graph COIN and baselines on real graphs with the paper's protocol (random splits × inits, early stopping).

Examples::

    nsde-coin graph --dataset cora --model coin --layer-num 20 --sigma2 0.35 --allow-unstable --splits 10 --inits 2 \\
        --out runs.jsonl
    nsde-coin graph --dataset cora --model mlp --epochs 200 --patience 20 --out runs.jsonl
    nsde-coin graph --dataset cora --model gcn --splits 10 --inits 2 --out runs.jsonl --json
    nsde-coin graph --dataset citeseer --model coin --grid --out grid.jsonl
    nsde-coin graph --dataset cora --model coin --allow-unstable --splits 100 --inits 20 --out cora.jsonl --workers 8
    nsde-coin graph --dataset cora --model coin --allow-unstable --splits 100 --inits 20 --out cora.jsonl \\
        --scheduler tcp://10.0.0.1:8786

Re-running a command with the same ``--out`` resumes: finished runs are skipped (the command holds ``<out>.lock``
while it runs; a second one on the same file refuses). ``--workers N`` runs on an embedded Dask cluster of N
processes, ``--scheduler`` on an existing one; this process stays the only writer of ``--out``. ``--grid`` evaluates
``layer_num × sigma2`` by mean validation accuracy over a few splits and prints the chosen pair.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import warnings
from collections.abc import Iterator
from typing import Any, Optional

from nsde_coin.commands.common import THREADS_HELP, add_deprecated_alias, check_output
from nsde_coin.graph.baselines import MODELS, default_hparams, resolve_hparams
from nsde_coin.graph.datasets import DATASET_NAMES
from nsde_coin.graph.experiment.batched import check_batchable

GRID_LAYERS = (5, 10, 20, 40)
GRID_SIGMA2 = (0.1, 0.2, 0.3, 0.4, 0.5)


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help=f"one of: {', '.join(DATASET_NAMES)} (required)")
    p.add_argument("--model", default="coin", help=f"one of: {', '.join(MODELS)} (default coin)")
    p.add_argument("--layer-num", type=int, help="COIN: diffusion steps (default 20)")
    p.add_argument("--sigma2", type=float, help="COIN: diffusion step sigma^2 (default 0.35)")
    p.add_argument("--solver", help="COIN: graph solver (explicit, implicit, exact, random_walk; default explicit)")
    p.add_argument("--allow-unstable", action="store_true",
                   help="COIN: let the explicit solver run past sigma2*lambda_max >= 2 (the paper's Cora setting)")
    p.add_argument("--hparam", action="append", default=[], metavar="KEY=VALUE",
                   help="any other model hyper-parameter (repeatable), e.g. --hparam hidden=32 (default: none, the "
                        "model's defaults)")
    p.add_argument("--splits", type=int, default=10, help="random splits (seeds 0..S-1; default 10)")
    p.add_argument("--inits", type=int, default=2, help="initialisations per split (default 2)")
    p.add_argument("--out", metavar="FILE",
                   help="results file: JSON Lines, one record per run, appended to and resumable (default: none, "
                        "results kept in memory)")
    p.add_argument("--root", help="offline data folder (default $NSDE_COIN_DATA or <repo>/../shared/data)")
    p.add_argument("--source", help="data source: npz / planetoid (cora, citeseer), planetoid (pubmed), graphgallery / "
                                    "pyg (Amazon, Coauthor) (default: the first listed)")
    p.add_argument("--epochs", dest="max_epochs", metavar="EPOCHS", type=int, default=10_000,
                   help="epoch budget per run: a maximum, as early stopping (--patience) usually ends a run sooner "
                        "(default 10000)")
    add_deprecated_alias(p, "--max-epochs", "--epochs")
    p.add_argument("--patience", type=int, default=50,
                   help="early stopping: stop after this many epochs without a new lowest validation loss (default "
                        "50)")
    p.add_argument("--lr", type=float, default=0.01, help="Adam learning rate (default 0.01)")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="Adam weight decay (default 0.0005)")
    p.add_argument("--threads", type=int, default=1, help=THREADS_HELP)
    p.add_argument("--shard", help=argparse.SUPPRESS)  # removed: one driver spreads the runs (--workers/--scheduler)
    p.add_argument("--workers", type=int, default=None,
                   help="run on an embedded Dask cluster of this many single-threaded worker processes (each run "
                        "--threads threads; default: in this process). On an idle N-core machine --workers N is "
                        "the fastest way through a long protocol")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="run on an existing Dask cluster (started with `dask scheduler` / `dask worker --nthreads 1`);"
                        " this process stays the only writer of --out (default: none)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--no-fast", action="store_true", help="disable the COIN read-out shortcut (same maths, slower)")
    p.add_argument("--batch-inits", action="store_true",
                   help="train each split's inits as one COIN ensemble with per-member early stopping (--model coin;"
                        " one diffusion and one optimiser step for all of them: for a GPU; records of their own)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary record as JSON instead of the table")
    p.add_argument("--grid", action="store_true", help="COIN hyper-parameter grid: layer_num x sigma2 by val acc")
    p.add_argument("--grid-layers", default=",".join(map(str, GRID_LAYERS)),
                   help=f"grid values of layer_num, comma-separated (default {','.join(map(str, GRID_LAYERS))})")
    p.add_argument("--grid-sigma2", default=",".join(map(str, GRID_SIGMA2)),
                   help=f"grid values of sigma2, comma-separated (default {','.join(map(str, GRID_SIGMA2))})")
    p.add_argument("--grid-splits", type=int, default=3, help="splits per grid point (default 3)")
    p.add_argument("--grid-inits", type=int, default=1, help="inits per grid point (default 1)")


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _hparams(args: argparse.Namespace) -> dict[str, Any]:
    default_hparams(args.model)  # an unknown model is named first (ValueError listing the models): flags depend on it
    hp: dict[str, Any] = {}
    for item in args.hparam:
        if "=" not in item:
            raise ValueError(f"--hparam expects KEY=VALUE, got {item!r}")
        key, val = item.split("=", 1)
        hp[key.strip()] = _parse_value(val.strip())
    coin_flags = {"layer_num": args.layer_num, "sigma2": args.sigma2, "solver": args.solver,
                  "allow_unstable": True if args.allow_unstable else None}
    given = {k: v for k, v in coin_flags.items() if v is not None}
    if given and args.model.lower() != "coin":
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise ValueError(f"{flags} apply to --model coin only, not to {args.model!r}")
    hp.update(given)
    return hp


def _config(args: argparse.Namespace):
    from nsde_coin.graph.protocol import TrainConfig

    if args.max_epochs < 1:
        raise ValueError(f"--epochs={args.max_epochs} is not valid; expected an int >= 1")
    return TrainConfig(lr=args.lr, weight_decay=args.weight_decay, max_epochs=args.max_epochs,
                       patience=args.patience)


def _fmt(v: Optional[float], spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def _table(rows: list[dict[str, Any]]) -> None:
    head = ("dataset", "model", "hyper-parameters", "runs", "test acc (%)", "val acc (%)", "epochs", "s/run",
            "ms/epoch")
    body = []
    for s in rows:
        hp = ", ".join(f"{k}={v}" for k, v in s["hparams"].items() if k not in ("laplacian_kind",))
        acc = f"{_fmt(s['test_acc_mean'])} ± {_fmt(s['test_acc_std'])}"
        body.append((s["dataset"], s["model"], hp or "-", f"{s['runs']}/{s['requested']}", acc,
                     _fmt(s["val_acc_mean"]), _fmt(s["epochs_mean"], ".0f"), _fmt(s["run_time_s_mean"]),
                     _fmt(s["epoch_time_ms_mean"], ".1f")))
    widths = [max(len(str(r[k])) for r in [head, *body]) for k in range(len(head))]
    for r in [head, tuple("-" * w for w in widths), *body]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


def run(args: argparse.Namespace) -> int:
    from nsde_coin.graph.datasets import canonical_name, load_dataset
    from nsde_coin.graph.protocol import run_protocol

    dataset = canonical_name(args.dataset)
    hp = _hparams(args)
    resolve_hparams(args.model, hp)  # fail fast on bad names / values
    if args.batch_inits:  # before the data are loaded
        check_batchable(args.model, "--batch-inits", "--model")
    cfg = _config(args)
    check_output(args.out, append=True)  # the JSONL log is appended to, run by run
    _check_engine(args)
    if args.grid:
        with _engine(args) as client:
            return _run_grid(args, dataset, hp, cfg, client)
    data = load_dataset(dataset, root=args.root, source=args.source)
    with _engine(args) as client, _corrupt_lines_reported_once():
        summary = run_protocol(data, args.model, hp, splits=args.splits, inits=args.inits, out=args.out, config=cfg,
                               threads=args.threads, progress=not args.no_progress, fast=not args.no_fast,
                               client=client, device=args.device, batch_inits=args.batch_inits)
    _report_corrupt(summary)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        _table([summary])
    return 0 if summary["failed"] == 0 else 1


@contextlib.contextmanager
def _corrupt_lines_reported_once() -> Iterator[None]:
    """Silence the results log's own corrupt-line RuntimeWarning: :func:`_report_corrupt` says it in one line, with
    what actually happened to the runs."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*corrupt line", category=RuntimeWarning)
        yield


def _check_engine(args: argparse.Namespace) -> None:
    if args.shard is not None:
        raise ValueError(f"--shard {args.shard} was removed: one command now spreads the runs over --workers N local "
                         f"processes or a Dask cluster (--scheduler tcp://HOST:PORT) and is the only writer of --out")
    from nsde_coin.commands.engine import engine_options

    engine_options(args)  # --workers / --scheduler: the checks every sweep command shares


def _engine(args: argparse.Namespace):
    """One Dask client for the whole command (every grid point reuses it), or ``None``: run in this process."""
    if args.workers is None and not args.scheduler:
        return contextlib.nullcontext(None)
    from nsde_coin.graph.experiment.cluster import open_client

    return open_client(args.workers, args.scheduler, gpu=args.device.startswith("cuda"))


def _report_corrupt(summary: dict[str, Any]) -> None:
    """One stderr line for corrupt lines of the results file, saying what happened: how many runs this call ran
    (runs without a good record) and how many requested runs still have none; never that runs were redone when none
    were."""
    lines = summary.get("corrupt_lines")
    if not lines:
        return
    shown = ", ".join(map(str, lines[:10])) + (" ..." if len(lines) > 10 else "")
    missing = summary["requested"] - summary["runs"] - summary["failed"]
    text = f"warning: {summary['out']}: skipped {len(lines)} corrupt line(s) (line {shown})"
    if summary["new_runs"]:
        text += f"; ran {summary['new_runs']} run(s) that had no good record"
    if missing:
        text += f"; {missing} requested run(s) still have no record (other shards, or re-run to resume)"
    if not summary["new_runs"] and not missing:
        text += "; no run was redone: every requested run already has a good record"
    print(text, file=sys.stderr)


def _floats(text: str, what: str, cast=float) -> list:
    try:
        vals = [cast(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--{what} expects comma-separated numbers, got {text!r}") from None
    if not vals:
        raise ValueError(f"--{what} is empty")
    return vals


def _run_grid(args: argparse.Namespace, dataset: str, hp: dict[str, Any], cfg, client=None) -> int:
    from nsde_coin.graph.datasets import load_dataset
    from nsde_coin.graph.diffusion import stability_report
    from nsde_coin.graph.laplacian import graph_operator
    from nsde_coin.graph.protocol import run_protocol

    if args.model.lower() != "coin":
        raise ValueError(f"--grid tunes COIN's layer_num x sigma2; got --model {args.model!r}")
    layers = _floats(args.grid_layers, "grid-layers", int)
    sigmas = _floats(args.grid_sigma2, "grid-sigma2", float)
    for k in layers:
        resolve_hparams("coin", {**hp, "layer_num": k})
    for s2 in sigmas:
        resolve_hparams("coin", {**hp, "sigma2": s2})
    data = load_dataset(dataset, root=args.root, source=args.source)
    solver = hp.get("solver", "explicit")
    op = graph_operator(data.edge_index, int(data.num_nodes), hp.get("laplacian_kind", "paper"))
    points: list[dict[str, Any]] = []
    for k in layers:
        for s2 in sigmas:
            rep = stability_report(op, s2)
            point: dict[str, Any] = {"layer_num": k, "sigma2": s2, "sigma2_lambda_max": rep["sigma2_lambda_max"]}
            unstable = solver == "explicit" and rep["sigma2_lambda_max"] >= 2.0
            if unstable and not hp.get("allow_unstable", False):
                point.update(status="skipped", reason=f"explicit solver unstable: sigma2*lambda_max = "
                                                      f"{rep['sigma2_lambda_max']:.3f} >= 2 (use --allow-unstable "
                                                      f"or --solver implicit)")
                points.append(point)
                continue
            with _corrupt_lines_reported_once():
                s = run_protocol(data, "coin", {**hp, "layer_num": k, "sigma2": s2}, splits=args.grid_splits,
                                 inits=args.grid_inits, out=args.out, config=cfg, threads=args.threads,
                                 progress=not args.no_progress, fast=not args.no_fast, client=client,
                                 device=args.device, batch_inits=args.batch_inits)
            _report_corrupt(s)
            point.update(status="ok" if s["runs"] else "failed", val_acc_mean=s["val_acc_mean"],
                         val_acc_std=s["val_acc_std"], test_acc_mean=s["test_acc_mean"], runs=s["runs"],
                         failed=s["failed"], epochs_mean=s["epochs_mean"])
            points.append(point)
    scored = [p for p in points if p.get("val_acc_mean") is not None and not math.isnan(p["val_acc_mean"])]
    if not scored:
        raise ValueError("no grid point could be evaluated (all skipped or failed)")
    best = max(scored, key=lambda p: (round(p["val_acc_mean"], 6), -p["layer_num"], -p["sigma2"]))
    result = {"dataset": dataset, "model": "coin", "solver": solver, "lambda_max": op.lambda_max,
              "grid_splits": args.grid_splits, "grid_inits": args.grid_inits, "points": points,
              "chosen": {"layer_num": best["layer_num"], "sigma2": best["sigma2"],
                         "val_acc_mean": best["val_acc_mean"], "test_acc_mean": best["test_acc_mean"]}}
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{dataset}: COIN grid, solver={solver}, lambda_max(L)={op.lambda_max:.3f}, "
          f"{args.grid_splits} split(s) x {args.grid_inits} init(s) per point; mean validation accuracy (%)")
    print("layer_num \\ sigma2  " + "  ".join(f"{s2:>6g}" for s2 in sigmas))
    for k in layers:
        cells = []
        for s2 in sigmas:
            p = next(q for q in points if q["layer_num"] == k and q["sigma2"] == s2)
            cells.append(f"{p['val_acc_mean']:6.2f}" if p.get("val_acc_mean") is not None else "  skip")
        print(f"{k:>18d}  " + "  ".join(cells))
    for p in points:
        if p["status"] == "skipped":
            print(f"  skipped layer_num={p['layer_num']} sigma2={p['sigma2']}: {p['reason']}")
    c = result["chosen"]
    print(f"chosen: layer_num={c['layer_num']} sigma2={c['sigma2']} (val {c['val_acc_mean']:.2f}%, "
          f"test {c['test_acc_mean']:.2f}%)")
    return 0
