"""Train a base classifier, a σ = 0 ODE network and an SDE network on the embedded spiral data set, and compare.

All three share the same base classifier f (a linear layer + softmax, same initial weights); the job itself is
:mod:`nsde_coin.job`. Prints a table (or JSON with ``--json``), writes the results JSON to ``--out FILE.json`` and the
decision-region PNG next to it as ``FILE.png`` (default ``nsde_coin_results/train.json``; a path not ending in
``.json`` is a folder, the earlier form: ``DIR/train.json``, ``DIR/decision_regions.png``).

Data parallel: ``torchrun --nproc-per-node R -m nsde_coin.cli train ...`` (or ``--nnodes`` for several machines,
through torchrun's rendezvous) trains each model on R processes (gloo on CPU): every rank takes a shard of each
minibatch with the paths the whole batch would get, so the results equal a 1-process run (see
:mod:`nsde_coin.training`); rank 0 prints and writes the results.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nsde_coin._files import atomic_write
from nsde_coin.commands.common import THREADS_HELP, check_output, save_result
from nsde_coin.commands.common import format_table as _table
from nsde_coin.job import (  # noqa: F401  (re-exported: the job's names were public here)
    DEFAULT_OUT,
    DIFFUSIONS,
    MODEL_NAMES,
    SMALL_DEFAULTS,
    TRAIN_DEFAULTS,
    NoiseScaleWarning,
    build_models,
    check_noise_scale,
    output_paths,
    process_group,
    resolve_config,
    run_training,
)

_D = TRAIN_DEFAULTS
_N, _SMALL_N = SMALL_DEFAULTS["n"]
_EPOCHS, _SMALL_EPOCHS = SMALL_DEFAULTS["epochs"]


def _opt(g: argparse._ArgumentGroup, flag: str, type_: Any, text: str) -> None:
    """One option whose default is the job's (:data:`~nsde_coin.job.TRAIN_DEFAULTS`); the help shows it."""
    g.add_argument(flag, type=type_, default=_D[flag.lstrip("-").replace("-", "_")], help=text)


def add_parser(p: argparse.ArgumentParser) -> None:
    d = p.add_argument_group("data (embedded spirals)")
    d.add_argument("--n", "--points", dest="n", type=int, default=None,
                   help=f"number of points, train + test (default {_N}; {_SMALL_N} in small mode; under torchrun "
                        f"write --points: torchrun reads --n as an abbreviation of its own options)")
    _opt(d, "--dim", int, "ambient dimension of the embedding")
    _opt(d, "--classes", int, "number of spiral arms / classes")
    _opt(d, "--label-noise", float, "fraction of training labels flipped")
    m = p.add_argument_group("models")
    m.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=list(MODEL_NAMES),
                   help=f"which models to train (default: all three, {' '.join(MODEL_NAMES)})")
    _opt(m, "--solver", str, "SDE solver (torchsde name; `nsde-coin solvers --family sde`)")
    _opt(m, "--ode-solver", str, "ODE solver for the σ = 0 network (torchdiffeq name)")
    _opt(m, "--grad-mode", str, "SDE gradient mode: backprop, adjoint or reversible")
    _opt(m, "--ode-grad-mode", str, "ODE gradient mode: backprop or adjoint")
    _opt(m, "--adjoint-method", str,
         "SDE solver of the adjoint pass (with --grad-mode adjoint; default: torchsde's choice for --solver)")
    _opt(m, "--sde-type", str, "ito or stratonovich (default: what --solver integrates)")
    _opt(m, "--steps", int, "fixed time steps over [0, T]")
    _opt(m, "--T", float, "terminal time")
    _opt(m, "--sigma", float, "initial diffusion σ of the SDE network")
    _opt(m, "--diffusion", str, "SDE diffusion, all learnable: diagonal (constant, one σ per coordinate), scalar "
         "(constant σ·I), state (state-dependent diagonal σ_i(x_i, t))")
    _opt(m, "--samples", int, "Monte Carlo paths per input while training")
    _opt(m, "--eval-samples", int, "Monte Carlo paths per input at test")
    _opt(m, "--width", int, "hidden width of the MLP drift")
    o = p.add_argument_group("optimisation and output")
    o.add_argument("--epochs", type=int, default=None,
                   help=f"epoch budget: training epochs per model (default {_EPOCHS}; {_SMALL_EPOCHS} in small mode)")
    _opt(o, "--batch-size", int, "minibatch size")
    _opt(o, "--lr", float, "Adam learning rate")
    _opt(o, "--seed", int, "seed of data, initial weights, minibatches and noise")
    o.add_argument("--threads", type=int, default=_D["threads"], help=THREADS_HELP)
    o.add_argument("--out", default=DEFAULT_OUT, metavar="FILE",
                   help=f"results file (JSON); the decision-region PNG goes next to it as FILE with .png (default "
                        f"{DEFAULT_OUT}; a path not ending in .json is a folder, as before: DIR/train.json and "
                        f"DIR/decision_regions.png)")
    o.add_argument("--json", action="store_true", help="print the results JSON to stdout instead of the table")
    o.add_argument("--no-progress", action="store_true", help="no tqdm progress bars (--json also hides them)")
    o.add_argument("--no-plot", action="store_true", help="skip the decision-region PNG")


def resolve(args: argparse.Namespace) -> dict[str, Any]:
    """The run configuration of parsed arguments: :func:`nsde_coin.job.resolve_config` of the options (raises
    ValueError naming the option and its valid values)."""
    cfg = dict(vars(args))
    cfg.pop("_run", None)
    cfg.pop("command", None)
    return resolve_config(cfg)


def format_table(results: dict[str, Any]) -> str:
    """The human-readable table of :func:`run_training`'s results."""
    head = ("model", "test acc", "train time s", "solver", "grad mode", "steps", "samples (train/eval)", "σ")
    rows = []
    for r in results["models"]:
        sig = "-" if r["sigma_learned"] is None else f"{r['sigma_init']:g} -> {r['sigma_learned']:.3f}"
        samples = "-" if r["model"] != "sde" else f"{r['samples']}/{r['eval_samples']}"
        rows.append((r["model"], f"{r['test_accuracy']:.3f}", f"{r['train_time_s']:.1f}", r["solver"],
                     r["grad_mode"] if r["model"] != "base" else "-", str(r["steps"] or "-"), samples, sig))
    return _table(head, rows)


def run(args: argparse.Namespace) -> int:
    cfg = resolve(args)
    want, png = output_paths(cfg["out"])
    # a bad --out fails now, not after the training
    check_output(cfg["out"], folder=want.parent == Path(cfg["out"]))
    with process_group() as rank:
        results = run_training(cfg, progress=not (cfg["json"] or cfg["no_progress"]) and rank == 0,
                               on_warning=(lambda note: print(f"nsde-coin train: warning: {note}", file=sys.stderr))
                               if rank == 0 else (lambda note: None),
                               save=lambda path, write: save_result(path, write, "train"))
    if rank != 0:
        return 0  # rank 0 reports and writes the (identical) results

    def save_json(path: Path) -> None:
        results["json"] = str(path)  # the file names where it is, also when it went to the fallback folder
        atomic_write(path, json.dumps(results, indent=1) + "\n")

    json_path = save_result(want, save_json, "train")
    rc = 0 if json_path == want and (results["plot"] is None or Path(results["plot"]) == png) else 1
    if cfg["json"]:
        print(json.dumps(results, indent=1))
        return rc
    d = results["data"]
    print(f"embedded spirals: {d['classes']} classes, dim {d['dim']}, {d['n_train']} train / {d['n_test']} test, "
          f"{d['label_noise_train']:.0%} training labels flipped, seed {d['seed']}")
    print(format_table(results))
    threads = results['environment']['threads']
    print(f"wall time {results['wall_time_s']:.1f} s ({threads} thread{'' if threads == 1 else 's'}); "
          f"results: {json_path}" + (f"; plot: {results['plot']}" if results["plot"] else ""))
    sys.stdout.flush()
    return rc
