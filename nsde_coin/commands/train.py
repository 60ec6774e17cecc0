"""Train a base classifier, a σ = 0 ODE network and an SDE network on the embedded spiral data set, and compare.

All three share the same base classifier f (a linear layer + softmax, same initial weights). The ODE network is
u(x) = f(flow_T(x)) with an MLP drift integrated by torchdiffeq; the SDE network is the Feynman–Kac average
u(x) = E[f(X_T) | X_0 = x] of the same construction plus a learnable diffusion σ, integrated by torchsde. Prints a
table (or JSON with ``--json``), writes ``train.json`` and ``decision_regions.png`` into ``--out``.

Data parallel: ``torchrun --nproc-per-node R -m nsde_coin.cli train ...`` (or ``--nnodes`` for several machines,
through torchrun's rendezvous) trains each model on R processes (gloo on CPU): every rank takes a shard of each
minibatch with the paths the whole batch would get, so the results equal a 1-process run (see
:mod:`nsde_coin.training`); rank 0 prints and writes the results.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from nsde_coin._files import atomic_write
from nsde_coin._threads import torch_threads
from nsde_coin.commands.common import check_output, save_result, small_mode
from nsde_coin.commands.common import format_table as _table

MODEL_NAMES = ("base", "ode", "sde")
DIFFUSIONS = ("diagonal", "scalar", "state")
# torchsde noise type of each diffusion field (constant fields are additive noise)
_NOISE_TYPE = {"diagonal": "additive", "scalar": "additive", "state": "diagonal"}
DEFAULT_OUT = "nsde_coin_results"

# defaults; NSDE_COIN_SMALL=1 (set under pytest) selects the small column
_DEFAULTS = {
    #              normal  small
    "n": (2400, 900),
    "epochs": (20, 15),
}


def add_parser(p: argparse.ArgumentParser) -> None:
    d = p.add_argument_group("data (embedded spirals)")
    d.add_argument("--n", "--points", dest="n", type=int, default=None,
                   help="number of points, train + test (default 2400; under torchrun write --points: torchrun "
                        "reads --n as an abbreviation of its own options)")
    d.add_argument("--dim", type=int, default=12, help="ambient dimension of the embedding (default 12)")
    d.add_argument("--classes", type=int, default=3, help="number of spiral arms / classes (default 3)")
    d.add_argument("--label-noise", type=float, default=0.08, help="fraction of training labels flipped (0.08)")
    m = p.add_argument_group("models")
    m.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=list(MODEL_NAMES),
                   help="which models to train (default: all three)")
    m.add_argument("--solver", default="euler", help="SDE solver (torchsde name; `nsde-coin solvers --family sde`)")
    m.add_argument("--ode-solver", default="euler", help="ODE solver for the σ = 0 network (torchdiffeq name)")
    m.add_argument("--grad-mode", default="backprop", help="SDE gradient mode: backprop, adjoint or reversible")
    m.add_argument("--ode-grad-mode", default="backprop", help="ODE gradient mode: backprop or adjoint")
    m.add_argument("--adjoint-method", default=None, help="SDE solver of the adjoint pass (grad-mode adjoint)")
    m.add_argument("--sde-type", default=None, help="ito or stratonovich (default: what --solver integrates)")
    m.add_argument("--steps", type=int, default=10, help="fixed time steps over [0, T] (default 10)")
    m.add_argument("--T", type=float, default=1.0, help="terminal time (default 1.0)")
    m.add_argument("--sigma", type=float, default=0.3, help="initial diffusion σ of the SDE network (default 0.3)")
    m.add_argument("--diffusion", default="diagonal", help="SDE diffusion, all learnable: diagonal (constant, one σ "
                   "per coordinate), scalar (constant σ·I), state (state-dependent diagonal σ_i(x_i, t))")
    m.add_argument("--samples", type=int, default=8, help="Monte Carlo paths per input while training (default 8)")
    m.add_argument("--eval-samples", type=int, default=32, help="Monte Carlo paths per input at test (default 32)")
    m.add_argument("--width", type=int, default=64, help="hidden width of the MLP drift (default 64)")
    o = p.add_argument_group("optimisation and output")
    o.add_argument("--epochs", type=int, default=None, help="training epochs per model (default 20)")
    o.add_argument("--batch-size", type=int, default=64, help="minibatch size (default 64)")
    o.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (default 1e-2)")
    o.add_argument("--seed", type=int, default=0, help="seed of data, initial weights, minibatches and noise")
    o.add_argument("--threads", type=int, default=1,
                   help="torch.set_num_threads (default 1: the tensors are small and, on a loaded CPU, extra threads "
                        "mostly wait for each other)")
    o.add_argument("--out", default=DEFAULT_OUT, help=f"output folder for train.json and the PNG ({DEFAULT_OUT})")
    o.add_argument("--json", action="store_true", help="print the results JSON to stdout instead of the table")
    o.add_argument("--no-plot", action="store_true", help="skip the decision-region PNG")


def resolve(args: argparse.Namespace) -> dict[str, Any]:
    """Fill defaults, check every option, and return the run configuration (raises ValueError naming choices)."""
    from nsde_coin.solvers import GRAD_MODES, SDE_TYPES, check_solver

    cfg = dict(vars(args))
    cfg.pop("_run", None)
    cfg.pop("command", None)
    small = small_mode()
    for key, (normal, little) in _DEFAULTS.items():
        if cfg[key] is None:
            cfg[key] = little if small else normal
    cfg["small"] = small
    models = list(dict.fromkeys(cfg["models"]))  # de-duplicate, keep order
    bad = [m for m in models if m not in MODEL_NAMES]
    if bad or not models:
        raise ValueError(f"--models {bad or models} is not valid; valid choices: {', '.join(MODEL_NAMES)}")
    cfg["models"] = models
    for key, low in (("steps", 1), ("samples", 1), ("eval_samples", 1), ("epochs", 1), ("batch_size", 1),
                     ("width", 1), ("dim", 2), ("classes", 2)):
        if cfg[key] < low:
            raise ValueError(f"--{key.replace('_', '-')}={cfg[key]} is not valid; expected an int >= {low}")
    if cfg["threads"] < 1:
        raise ValueError(f"--threads={cfg['threads']} is not valid; expected an int >= 1")
    if not cfg["T"] > 0:
        raise ValueError(f"--T={cfg['T']} is not valid; expected a float > 0")
    if not cfg["lr"] > 0:
        raise ValueError(f"--lr={cfg['lr']} is not valid; expected a float > 0")
    if cfg["diffusion"] not in DIFFUSIONS:
        raise ValueError(f"--diffusion={cfg['diffusion']!r} is not valid; valid choices: {', '.join(DIFFUSIONS)}")
    if cfg["grad_mode"] not in GRAD_MODES:
        raise ValueError(f"--grad-mode={cfg['grad_mode']!r} is not valid; valid choices: {', '.join(GRAD_MODES)}")
    if cfg["sde_type"] is not None and cfg["sde_type"] not in SDE_TYPES:
        raise ValueError(f"--sde-type={cfg['sde_type']!r} is not valid; valid choices: {', '.join(SDE_TYPES)}")
    if "ode" in models:
        check_solver(cfg["ode_solver"], family="ode", grad_mode=cfg["ode_grad_mode"])
    if "sde" in models:
        if not (cfg["sigma"] > 0 and math.isfinite(cfg["sigma"])):
            raise ValueError(f"--sigma={cfg['sigma']} is not valid for the SDE network; expected a finite float > 0 "
                             f"(the σ = 0 network is --models ode)")
        from nsde_coin.solvers import get_solver

        info = get_solver(cfg["solver"], "sde") if cfg["solver"] in _sde_names() else None
        if cfg["sde_type"] is None:
            cfg["sde_type"] = "ito" if info is None or "ito" in info.sde_types else info.sde_types[0]
        check_solver(cfg["solver"], family="sde", noise_type=_NOISE_TYPE[cfg["diffusion"]], sde_type=cfg["sde_type"],
                 grad_mode=cfg["grad_mode"], adjoint_method=cfg["adjoint_method"])
    return cfg


def _sde_names() -> list[str]:
    from nsde_coin.solvers import solver_names

    return solver_names("sde")


# σ·√T (the SDE's noise at T, per coordinate) over the data's per-coordinate spread: measured on the default spirals
# (900 points, 15 epochs), σ = 1 (ratio 2.7) reaches test accuracy 0.92 and σ = 3 (ratio 8) stays at chance (0.38),
# so above _NOISE_WARN the run is warned about; above _NOISE_MAX X_T is pure noise whatever training does, an error
_NOISE_WARN, _NOISE_MAX = 5.0, 1e3


class NoiseScaleWarning(RuntimeWarning):
    """The SDE network's σ·√T dominates the data's spread (see :func:`check_noise_scale`)."""


def check_noise_scale(cfg: dict[str, Any], x_train: torch.Tensor, classes: int) -> Optional[str]:
    """Compare the SDE network's initial noise σ·√T with the spread of ``x_train`` (N, d) (RMS per-coordinate std).

    Returns a warning message when the noise dominates (ratio > 5: accuracy near chance unless σ shrinks in
    training), ``None`` when it does not; raises ``ValueError`` when the ratio exceeds 1000 (X_T is pure noise at the
    data's scale: the network would train to chance, and e.g. σ = 1e38 would overflow float32 in the solver).
    """
    if "sde" not in cfg["models"]:
        return None
    scale = float(x_train.double().var(0).mean().sqrt())
    noise = float(cfg["sigma"]) * math.sqrt(float(cfg["T"]))
    ratio = noise / scale if scale > 0 else math.inf
    bound = _NOISE_WARN * scale / math.sqrt(float(cfg["T"]))
    what = (f"the SDE's noise at T, sigma·sqrt(T) = {noise:.3g}, is {ratio:.3g} times the data's per-coordinate "
            f"spread {scale:.3g}")
    if not ratio <= _NOISE_MAX:
        raise ValueError(f"--sigma={cfg['sigma']:g} is not valid for this data: {what}, so X_T is pure noise and the "
                         f"SDE network would train to chance (1/{classes}); use a sigma of the data's scale, "
                         f"at most {bound:.3g} (default 0.3)")
    if ratio > _NOISE_WARN:
        return (f"--sigma={cfg['sigma']:g}: {what}; X_T is dominated by noise and the SDE network may stay near chance "
                f"(1/{classes}) unless sigma shrinks in training (sigma <= {bound:.3g} keeps the ratio <= "
                f"{_NOISE_WARN:g})")
    return None


def build_models(cfg: dict[str, Any], dim: int, classes: int) -> dict[str, nn.Module]:
    """Construct the requested models; the one place that knows the model classes.

    Every model gets a base classifier with identical initial weights (``torch.manual_seed(cfg["seed"])`` before
    each construction). ``base`` returns softmax(f(x)); ``ode`` and ``sde`` are
    :class:`~nsde_coin.model.ConvectionDiffusionNet` instances returning probabilities (B, C).
    """
    from nsde_coin.fields import DiagonalDiffusion, MLPDrift, ScalarDiffusion, StateDiagonalDiffusion, ZeroDiffusion
    from nsde_coin.model import ConvectionDiffusionNet

    out: dict[str, nn.Module] = {}
    for name in cfg["models"]:
        torch.manual_seed(cfg["seed"])
        base = nn.Linear(dim, classes)
        if name == "base":
            out[name] = nn.Sequential(base, nn.Softmax(dim=-1))
            continue
        drift = MLPDrift(dim, width=cfg["width"], depth=2, time_dependent=True)
        if name == "ode":
            out[name] = ConvectionDiffusionNet(base, drift, ZeroDiffusion(dim), T=cfg["T"], steps=cfg["steps"],
                                               solver=cfg["ode_solver"], grad_mode=cfg["ode_grad_mode"])
        else:
            if cfg["diffusion"] == "diagonal":
                diffusion = DiagonalDiffusion(dim, float(cfg["sigma"]), learnable=True)
            elif cfg["diffusion"] == "scalar":
                diffusion = ScalarDiffusion(dim, float(cfg["sigma"]), learnable=True)
            else:
                diffusion = StateDiagonalDiffusion(dim, sigma=float(cfg["sigma"]))
            out[name] = ConvectionDiffusionNet(
                base, drift, diffusion, T=cfg["T"], steps=cfg["steps"], solver=cfg["solver"],
                grad_mode=cfg["grad_mode"], samples=cfg["samples"], eval_samples=cfg["eval_samples"],
                sde_type=cfg["sde_type"], adjoint_method=cfg["adjoint_method"], seed=cfg["seed"])
    return out


def _describe(name: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Solver / gradient / sampling settings of one model, for the table and JSON."""
    if name == "base":
        return {"solver": "-", "family": "-", "grad_mode": "backprop", "steps": 0, "samples": 1, "eval_samples": 1}
    if name == "ode":
        return {"solver": cfg["ode_solver"], "family": "ode", "grad_mode": cfg["ode_grad_mode"],
                "steps": cfg["steps"], "samples": 1, "eval_samples": 1}
    return {"solver": cfg["solver"], "family": "sde", "sde_type": cfg["sde_type"], "grad_mode": cfg["grad_mode"],
            "adjoint_method": cfg["adjoint_method"], "steps": cfg["steps"], "samples": cfg["samples"],
            "eval_samples": cfg["eval_samples"], "diffusion": cfg["diffusion"], "sigma_init": cfg["sigma"]}


def _learned_sigma(model: nn.Module, x: torch.Tensor) -> Optional[float]:
    """Mean σ of the model's diffusion after training: of its constant σ, or of σ(x, 0) over ``x`` (B, d) when it
    depends on the state; ``None`` when the model has no diffusion."""
    diffusion = getattr(model, "diffusion", None)
    if diffusion is None:
        return None
    sigma = getattr(diffusion, "sigma", None)
    with torch.no_grad():
        if not isinstance(sigma, torch.Tensor):
            sigma = diffusion(0.0, x)
        return float(sigma.abs().mean())


def run_training(cfg: dict[str, Any], *, progress: bool = True,
                 on_warning: Optional[Callable[[str], None]] = None) -> dict[str, Any]:
    """Run the whole job for a resolved configuration; returns the results dict (also what train.json holds).

    Sets ``torch.set_num_threads(cfg["threads"])`` for the run and restores the previous value afterwards. Warnings
    about the configuration (see :func:`check_noise_scale`) are listed under ``"warnings"`` and, before training,
    passed to ``on_warning`` (default: ``warnings.warn`` with :class:`NoiseScaleWarning`).
    """
    with torch_threads(cfg["threads"]):
        return _run_training(cfg, progress, on_warning)


def _run_training(cfg: dict[str, Any], progress: bool, on_warning: Optional[Callable[[str], None]]
                  ) -> dict[str, Any]:
    from nsde_coin.toydata import make_spirals
    from nsde_coin.training import evaluate, fit

    t_start = time.perf_counter()
    data = make_spirals(cfg["n"], dim=cfg["dim"], classes=cfg["classes"], label_noise=cfg["label_noise"],
                        seed=cfg["seed"])
    notes = [w for w in (check_noise_scale(cfg, data.x_train, data.classes),) if w]
    for note in notes:
        if on_warning is None:
            warnings.warn(note, NoiseScaleWarning, stacklevel=4)
        else:
            on_warning(note)
    models = build_models(cfg, data.dim, data.classes)
    rows = []
    for name, model in models.items():
        fit_res = fit(model, data.x_train, data.y_train, epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                      lr=cfg["lr"], seed=cfg["seed"], progress=progress, desc=f"train {name}")
        test = evaluate(model, data.x_test, data.y_test)
        train = evaluate(model, data.x_train, data.y_train_clean)
        row = {"model": name, "test_accuracy": test["accuracy"], "test_nll": test["nll"],
               "train_accuracy_clean_labels": train["accuracy"], "train_time_s": fit_res.train_time_s,
               "eval_time_s": test["seconds"], "parameters": sum(p.numel() for p in model.parameters()),
               **_describe(name, cfg),
               "sigma_learned": _learned_sigma(model, data.x_test) if name == "sde" else None,
               "history": fit_res.history}
        rows.append(row)
    out_dir = Path(cfg["out"])
    plot_path, t_plot = None, time.perf_counter()
    if not cfg["no_plot"] and _rank() == 0:  # one writer of the PNG under torchrun
        from nsde_coin.plotting import plot_decision_regions

        titles = {r["model"]: f"{_LABELS[r['model']]}\ntest acc {r['test_accuracy']:.3f}" for r in rows}
        plot_path = str(save_result(out_dir / "decision_regions.png", lambda p: plot_decision_regions(
            models, data, p, titles=titles, suptitle="nsde-coin train: decision regions on the latent plane"),
            "train"))
    return {
        "command": "train",
        "config": cfg,
        "data": data.summary(),
        "models": rows,
        "plot": plot_path,
        "plot_time_s": time.perf_counter() - t_plot if plot_path else 0.0,
        "wall_time_s": time.perf_counter() - t_start,
        "warnings": notes,
        "environment": {"torch": torch.__version__, "threads": torch.get_num_threads(), "ranks": _ranks(),
                        "python": platform.python_version(), "machine": platform.machine(),
                        "processor": platform.processor() or platform.machine()},
    }


def _ranks() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


_LABELS = {"base": "base f alone (linear)", "ode": "ODE network (σ = 0)", "sde": "SDE network (σ learned)"}


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


@contextlib.contextmanager
def _process_group() -> Iterator[int]:
    """Join the ``torch.distributed`` group torchrun describes in the environment (``WORLD_SIZE`` > 1) for the
    block, with gloo (nccl when CUDA is there); yields this process's rank (0 without torchrun)."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available() or dist.is_initialized():
        yield dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        return
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield dist.get_rank()
    finally:
        dist.destroy_process_group()


def run(args: argparse.Namespace) -> int:
    cfg = resolve(args)
    check_output(cfg["out"], folder=True)  # a bad --out fails now, not after the training
    with _process_group() as rank:
        results = run_training(cfg, progress=not cfg["json"] and rank == 0,
                               on_warning=(lambda note: print(f"nsde-coin train: warning: {note}", file=sys.stderr))
                               if rank == 0 else (lambda note: None))
    if rank != 0:
        return 0  # rank 0 reports and writes the (identical) results
    want = Path(cfg["out"]) / "train.json"

    def save_json(path: Path) -> None:
        results["json"] = str(path)  # the file names where it is, also when it went to the fallback folder
        atomic_write(path, json.dumps(results, indent=1) + "\n")

    json_path = save_result(want, save_json, "train")
    rc = 0 if json_path == want and (results["plot"] is None or Path(results["plot"]).parent == want.parent) else 1
    if cfg["json"]:
        print(json.dumps(results, indent=1))
        return rc
    d = results["data"]
    print(f"embedded spirals: {d['classes']} classes, dim {d['dim']}, {d['n_train']} train / {d['n_test']} test, "
          f"{d['label_noise_train']:.0%} training labels flipped, seed {d['seed']}")
    print(format_table(results))
    print(f"wall time {results['wall_time_s']:.1f} s ({results['environment']['threads']} threads); "
          f"results: {json_path}" + (f"; plot: {results['plot']}" if results["plot"] else ""))
    sys.stdout.flush()
    return rc
