"""The main job on the embedded spirals (what ``nsde-coin train`` runs), as a library.

Three models share one base classifier f (a linear layer + softmax, same initial weights): ``base`` is f alone,
``ode`` is u(x) = f(flow_T(x)) with an MLP drift integrated by torchdiffeq (σ = 0), ``sde`` is the Feynman–Kac
average u(x) = E[f(X_T) | X_0 = x] of the same construction plus a learnable diffusion σ, integrated by torchsde.

::

    from nsde_coin.job import resolve_config, run_training

    cfg = resolve_config({"models": ["base", "sde"], "epochs": 5, "no_plot": True})
    results = run_training(cfg, progress=False)   # results["models"][i]["test_accuracy"], ...

A configuration is a dict whose keys are the ``nsde-coin train`` options (``--batch-size`` → ``"batch_size"``);
:data:`TRAIN_DEFAULTS` holds their defaults, which the CLI shows. Under ``torchrun`` (see :func:`process_group`)
each model trains data-parallel, with the results of a 1-process run (see :mod:`nsde_coin.training`).
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

from nsde_coin._threads import torch_threads
from nsde_coin.notebook import notebook_size

__all__ = ["MODEL_NAMES", "DIFFUSIONS", "DEFAULT_OUT", "TRAIN_DEFAULTS", "SMALL_DEFAULTS", "resolve_config",
           "NoiseScaleWarning", "check_noise_scale", "build_models", "output_paths", "run_training", "process_group"]

MODEL_NAMES = ("base", "ode", "sde")
DIFFUSIONS = ("diagonal", "scalar", "state")
# torchsde noise type of each diffusion field (constant fields are additive noise)
_NOISE_TYPE = {"diagonal": "additive", "scalar": "additive", "state": "diagonal"}
DEFAULT_OUT = "nsde_coin_results/train.json"

TRAIN_DEFAULTS: dict[str, Any] = {
    # data (embedded spirals); n and epochs: None = the normal or small-mode value of SMALL_DEFAULTS
    "n": None, "dim": 12, "classes": 3, "label_noise": 0.08,
    # models
    "models": list(MODEL_NAMES), "solver": "euler", "ode_solver": "euler", "grad_mode": "backprop",
    "ode_grad_mode": "backprop", "adjoint_method": None, "sde_type": None, "steps": 10, "T": 1.0, "sigma": 0.3,
    "diffusion": "diagonal", "samples": 8, "eval_samples": 32, "width": 64,
    # optimisation and output
    "epochs": None, "batch_size": 64, "lr": 1e-2, "seed": 0, "threads": 1, "out": DEFAULT_OUT, "json": False,
    "no_plot": False, "no_progress": False,
}
"""Defaults of the job's configuration (the ``nsde-coin train`` options)."""

SMALL_DEFAULTS: dict[str, tuple[int, int]] = {"n": (2400, 900), "epochs": (20, 15)}
"""``key: (normal, small)``: the defaults that depend on small mode (``NSDE_COIN_SMALL``, set under pytest)."""


def resolve_config(overrides: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """:data:`TRAIN_DEFAULTS` updated with ``overrides``, small-mode defaults filled in and every value checked.

    Raises ``ValueError`` in one line naming the option (as the CLI spells it) and the valid values. Adds
    ``"small"`` (bool) and, for the SDE network, the resolved ``"sde_type"``.
    """
    from nsde_coin.errors import invalid_choice
    from nsde_coin.solvers import GRAD_MODES, SDE_TYPES, check_solver

    unknown = sorted(set(overrides or {}) - set(TRAIN_DEFAULTS) - {"small"})
    if unknown:
        raise ValueError(invalid_choice("train option", unknown[0], sorted(TRAIN_DEFAULTS)))
    cfg = {**TRAIN_DEFAULTS, **(overrides or {})}
    small = notebook_size() == "small"
    for key, (normal, little) in SMALL_DEFAULTS.items():
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
        from nsde_coin.solvers import get_solver, solver_names

        info = get_solver(cfg["solver"], "sde") if cfg["solver"] in solver_names("sde") else None
        if cfg["sde_type"] is None:
            cfg["sde_type"] = "ito" if info is None or "ito" in info.sde_types else info.sde_types[0]
        check_solver(cfg["solver"], family="sde", noise_type=_NOISE_TYPE[cfg["diffusion"]], sde_type=cfg["sde_type"],
                     grad_mode=cfg["grad_mode"], adjoint_method=cfg["adjoint_method"])
    return cfg


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


def output_paths(out: Union[str, os.PathLike]) -> tuple[Path, Path]:
    """Where the results JSON and the decision-region PNG of ``cfg["out"]`` go.

    The CLI's rule for ``--out``: it names the results file, and a figure goes next to it with the same name and
    ``.png`` (``runs/a.json`` → ``runs/a.json``, ``runs/a.png``). A path that does not end in ``.json`` is a folder,
    the form ``nsde-coin train --out`` had before that rule: ``DIR/train.json`` and ``DIR/decision_regions.png``.
    """
    path = Path(out)
    if path.suffix.lower() == ".json":
        return path, path.with_suffix(".png")
    return path / "train.json", path / "decision_regions.png"


Saver = Callable[[Path, Callable[[Path], object]], Path]


def _save_here(path: Path, write: Callable[[Path], object]) -> Path:
    write(path)
    return path


_LABELS = {"base": "base f alone (linear)", "ode": "ODE network (σ = 0)", "sde": "SDE network (σ learned)"}


def run_training(cfg: dict[str, Any], *, progress: bool = True,
                 on_warning: Optional[Callable[[str], None]] = None, save: Optional[Saver] = None) -> dict[str, Any]:
    """Run the whole job for a configuration from :func:`resolve_config`; returns the results dict (what the
    results JSON holds, less its ``"json"`` key).

    Sets ``torch.set_num_threads(cfg["threads"])`` for the run and restores the previous value afterwards. Warnings
    about the configuration (see :func:`check_noise_scale`) are listed under ``"warnings"`` and, before training,
    passed to ``on_warning`` (default: ``warnings.warn`` with :class:`NoiseScaleWarning`). Unless ``cfg["no_plot"]``,
    rank 0 draws the decision regions to the PNG of :func:`output_paths` through ``save(path, write)`` (which calls
    ``write(path)`` and returns where the file went; default: write it there).
    """
    with torch_threads(cfg["threads"]):
        return _run_training(cfg, progress, on_warning, save or _save_here)


def _run_training(cfg: dict[str, Any], progress: bool, on_warning: Optional[Callable[[str], None]], save: Saver
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
    plot_path, t_plot = None, time.perf_counter()
    if not cfg["no_plot"] and _rank() == 0:  # one writer of the PNG under torchrun
        from nsde_coin.plotting import plot_decision_regions

        titles = {r["model"]: f"{_LABELS[r['model']]}\ntest acc {r['test_accuracy']:.3f}" for r in rows}
        plot_path = str(save(output_paths(cfg["out"])[1], lambda p: plot_decision_regions(
            models, data, p, titles=titles, suptitle="nsde-coin train: decision regions on the latent plane")))
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


@contextlib.contextmanager
def process_group() -> Iterator[int]:
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
