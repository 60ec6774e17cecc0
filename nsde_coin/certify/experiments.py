"""The measured comparisons of ``nsde-coin certify`` (benchmarks/results/certify_*.json).

* :func:`sde_experiment` — certified accuracy vs L2 radius of (a) an SDE network with a pure-diffusion prefix of
  scale s, (b) the same network without diffusion after the prefix (``ode``: isolates the internal diffusion) and
  (c) Cohen et al.'s baseline, an MLP trained with Gaussian noise augmentation of the same s and smoothed
  with the same s (the same CERTIFY code: the MLP is wrapped as a prefix-only network with the identity flow), on
  the embedded spirals (:func:`nsde_coin.toydata.make_spirals`) or scikit-learn's digits (pixels scaled to [0, 1]).
* :func:`graph_experiment` — certified accuracy vs k of COIN on a citation graph (split ``split``, the paper's
  training protocol), for each certifiable solver and the layer_num = 0 ablation, with and without node i itself in
  the attacker's set. Solvers whose map is not provably non-negative are recorded as refused, with the reason.
"""

from __future__ import annotations

import time
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from nsde_coin.certify.graph import _certify
from nsde_coin.certify.smoothing import certify
from nsde_coin.errors import invalid_choice

__all__ = ["RADII", "SDE_DATASETS", "SDE_MODELS", "build_smoothed", "graph_experiment", "load_sde_data",
           "sde_experiment"]

RADII = (0.0, 0.25, 0.5, 0.75, 1.0)
SDE_DATASETS = ("spirals", "digits")
SDE_MODELS = ("sde", "ode", "gaussian_aug")


def load_sde_data(name: str, seed: int = 0, small: bool = False) -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, x_test, y_test) float32 / int64 for ``spirals`` (dim 12, 3 classes) or ``digits``."""
    if name == "spirals":
        from nsde_coin.toydata import make_spirals

        d = make_spirals(n=900 if small else 2400, seed=seed)
        return d.x_train, d.y_train, d.x_test, d.y_test
    if name == "digits":
        from sklearn.datasets import load_digits

        dg = load_digits()
        x = torch.as_tensor(dg.data / 16.0, dtype=torch.float32)
        y = torch.as_tensor(dg.target, dtype=torch.int64)
        perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
        n_test = x.shape[0] // 4
        te, tr = perm[:n_test], perm[n_test:]
        return x[tr], y[tr], x[te], y[te]
    raise ValueError(invalid_choice("dataset", name, SDE_DATASETS))


def _mlp(d: int, c: int, width: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, c))


def build_smoothed(kind: str, d: int, c: int, scale: float, *, width: int = 64, steps: int = 8,
                   sigma: float = 0.3, samples: int = 8):
    """``"sde"``: prefix (σ0 = s, t0 = 1) + MLP drift + learnable scalar diffusion on [0, 1] + linear base;
    ``"ode"``: the same without the diffusion after the prefix; ``"gaussian_aug"``: prefix + identity flow + MLP
    base (Cohen's noise-augmented base classifier)."""
    from nsde_coin.fields import MLPDrift, ScalarDiffusion
    from nsde_coin.model import ConvectionDiffusionNet

    if kind == "sde":
        return ConvectionDiffusionNet(nn.Linear(d, c), MLPDrift(d, width=width), ScalarDiffusion(d, sigma, True),
                                      T=1.0, steps=steps, samples=samples, prefix_sigma=scale, prefix_time=1.0)
    if kind == "ode":
        return ConvectionDiffusionNet(nn.Linear(d, c), MLPDrift(d, width=width), None, T=1.0, steps=steps,
                                      samples=samples, prefix_sigma=scale, prefix_time=1.0)
    if kind == "gaussian_aug":  # one noise draw per example and step: Cohen's training
        return ConvectionDiffusionNet(_mlp(d, c, width), None, None, steps=1, samples=1, prefix_sigma=scale,
                                      prefix_time=1.0)
    raise ValueError(invalid_choice("kind", kind, SDE_MODELS))


def sde_experiment(dataset: str, scale: float, *, n0: int = 100, n: int = 2000, alpha: float = 0.001,
                   points: int = 300, epochs: int = 20, seed: int = 0, batch: int = 20_000, small: bool = False,
                   progress: bool = False, radii: tuple[float, ...] = RADII) -> dict[str, Any]:
    """Train both smoothed models on ``dataset`` and certify ``points`` test inputs; a JSON-able record."""
    from nsde_coin.training import evaluate, fit

    xtr, ytr, xte, yte = load_sde_data(dataset, seed, small)
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(xte.shape[0], generator=g)[:points]
    xc, yc = xte[pick], yte[pick].numpy()
    d, c = xtr.shape[1], int(ytr.max()) + 1
    grid = np.linspace(0.0, max(radii) * 1.25, 61)
    out: dict[str, Any] = {"dataset": dataset, "scale": scale, "n0": n0, "n": n, "alpha": alpha,
                           "points": int(xc.shape[0]), "epochs": epochs, "seed": seed, "radii": list(radii),
                           "max_radius": float(scale * _phi_inv_max(n, alpha)), "models": {}}
    for kind in SDE_MODELS:
        torch.manual_seed(seed)
        net = build_smoothed(kind, d, c, scale)
        t0 = time.perf_counter()
        fit(net, xtr, ytr, epochs=epochs, batch_size=64, lr=5e-3, seed=seed, progress=progress, desc=kind)
        train_s = time.perf_counter() - t0
        net.eval_samples = 64
        clean = evaluate(net, xte, yte)["accuracy"]
        t1 = time.perf_counter()
        cert = certify(net, xc, n0=n0, n=n, alpha=alpha, batch=batch, seed=seed + 1, progress=progress)
        rec = {"train_s": round(train_s, 2), "certify_s": round(time.perf_counter() - t1, 2),
               "mc_accuracy_64_paths": clean,
               "certified_accuracy": dict(zip(map(str, radii), cert.accuracy(yc, list(radii)))),
               "soft_certified_accuracy": dict(zip(map(str, radii), cert.accuracy(yc, list(radii), soft=True))),
               "abstain": float(np.mean(cert.prediction < 0)),
               "curve": {"radius": grid.round(4).tolist(), "hard": cert.accuracy(yc, grid),
                         "soft": cert.accuracy(yc, grid, soft=True)}}
        if kind == "sde":
            rec["learned_sigma"] = float(net.diffusion.sigma.detach().mean())
        out["models"][kind] = rec
    return out


def _phi_inv_max(n: int, alpha: float) -> float:
    from nsde_coin.certify.stats import clopper_pearson_lower, radius

    return float(radius(1.0, clopper_pearson_lower(np.array([n]), n, alpha)[1])[0])


GRAPH_SETTINGS: dict[str, dict[str, Any]] = {  # Cora: the paper's; CiteSeer / PubMed: the grid's choice (README)
    "cora": {"layer_num": 20, "sigma2": 0.35},
    "citeseer": {"layer_num": 10, "sigma2": 0.3},
    "pubmed": {"layer_num": 10, "sigma2": 0.1},
}


def graph_experiment(dataset: str, *, solvers: tuple[str, ...] = ("explicit", "implicit", "exact"),
                     layer_num: Optional[int] = None, sigma2: Optional[float] = None, k_max: int = 10,
                     split: int = 0, init: int = 0, max_epochs: int = 10_000, root: Optional[str] = None,
                     max_nodes: Optional[int] = None, progress: bool = False) -> dict[str, Any]:
    """Train COIN (each solver, same diffusion time) and its layer_num = 0 ablation on one split; certify the test
    nodes (at most ``max_nodes``, a seeded random subset) for k = 0..k_max with and without node i itself."""
    from nsde_coin.graph.baselines import build_model
    from nsde_coin.graph.datasets import load_dataset
    from nsde_coin.graph.protocol import TrainConfig, train_run
    from nsde_coin.graph.splits import random_split

    data = load_dataset(dataset, root=root, dense=False)
    hp = dict(GRAPH_SETTINGS.get(dataset.lower(), {"layer_num": 20, "sigma2": 0.35}))
    if layer_num is not None:
        hp["layer_num"] = int(layer_num)
    if sigma2 is not None:
        hp["sigma2"] = float(sigma2)
    sp = random_split(data.y, split)
    nodes = sp.test
    if max_nodes is not None and nodes.numel() > max_nodes:
        nodes = nodes[torch.randperm(nodes.numel(), generator=torch.Generator().manual_seed(split))[:max_nodes]]
    cfg = TrainConfig(max_epochs=max_epochs)
    out: dict[str, Any] = {"dataset": dataset, "layer_num": hp["layer_num"], "sigma2": hp["sigma2"],
                           "diffusion_time": hp["layer_num"] * hp["sigma2"], "k_max": k_max, "split": split,
                           "init": init, "test_nodes": int(nodes.numel()), "models": {}}
    configs = [(s, {**hp, "solver": s, "allow_unstable": s == "explicit"}) for s in solvers]
    configs.append(("layer_num=0", {"layer_num": 0, "sigma2": 1.0, "solver": "explicit"}))
    for name, h in configs:
        net = build_model("coin", data, h, seed=1_000_003 * split + init)
        op = net.set_graph(data.edge_index, data.num_nodes)  # the operator train_run's COIN diffuses with
        rec: dict[str, Any] = {"solver": h["solver"], "layer_num": h["layer_num"],
                               "sigma2_max_diag": h["sigma2"] * op.max_diag}
        try:
            from nsde_coin.certify.graph import check_nonnegative_map

            check_nonnegative_map(op, h["solver"], h["sigma2"], h["layer_num"])
        except ValueError as exc:
            rec["refused"] = str(exc)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1_000_003 * split + init)
            import warnings

            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*non-negativity bound.*")
                run = train_run(net, data.y, sp, cfg)
        rec.update(test_acc=run["test_acc"], epochs=run["epochs"], train_s=run["train_time_s"])
        if "refused" not in rec:
            t0 = time.perf_counter()
            for inc, cert in zip((True, False), _certify(net, data, k_max, (True, False), nodes, chunk=512,
                                                         progress=progress)):
                rec["certified_accuracy_" + ("any" if inc else "others")] = [round(a, 5) for a in cert.accuracy(data.y)]
                rec["median_k_" + ("any" if inc else "others")] = float(cert.certified_k.double().median())
            rec["certify_s"] = round(time.perf_counter() - t0, 2)
        out["models"][name] = rec
    return out
