"""COVID-19 next-day case prediction on England's daily mobility graphs with 90% of training targets missing.

Protocol (PAPER.md §4; choices the paper leaves open are marked *interpretation*):

* data: :mod:`nsde_coin.apps.covid_data` — 53 snapshots (8 lags → next day, standardised per region), split
  chronologically 10 / 10 / 33 into train / validation / test snapshots;
* missing targets (*interpretation*): in each training snapshot only ``round(keep·129)`` regions (13 at 90%
  missing, at least 2) keep their target, the others are missing; the draw is redone until the kept targets of a
  snapshot take ≥ 2 distinct values. The brief's "each region keeps ≥ 2 distinct observed values" cannot hold at
  90% missing with 10 training snapshots (it would need ≥ 20% observed), so the guarantee is per snapshot.
  Missing means *missing from the loss*: the lagged inputs stay observed (a semi-supervised node regression, the
  only reading under which the diffusion can carry information to unlabelled regions). Validation and test targets
  are complete;
* loss (*interpretation*): MSE over the observed (snapshot, region) training targets only, full batch;
* COIN: base u₀ = linear shortcut + MLP 8 → 16 → 1 (ELU), then ``layers`` × [dropout p → u ← u − σ² L_t u] with
  σ² = 0.5, 10 layers, p = 0.25, L_t the paper's Laplacian of day t's symmetrised mobility weights
  (:func:`~nsde_coin.apps.covid_data.daily_laplacian`; σ²·λ_max ≈ 1.66 < 2, stable; the explicit step's
  non-negativity bound does not matter for a regression). This is the one COIN head
  (:func:`nsde_coin.graph.head.head_outputs` without softmax, with :func:`~nsde_coin.graph.head.dropout_diffusion`
  of a one-step :class:`~nsde_coin.graph.layers.GraphDiffusion`); a σ² with σ²·λ_max ≥ 2 is rejected before any
  training unless ``allow_unstable=True``;
* baselines on the same masks: LR (least squares on the 8 lags + bias, closed form, so it has no initialisation),
  MLP (the COIN base alone, i.e. layer_num = 0), GCN (two ``GCNConv`` layers 8 → 16 → 1, ELU, dropout p on the
  hidden layer, on the same symmetrised daily graphs with GCN's own normalisation ``gcn_norm``; evaluated for all
  runs at once by :func:`gcn_forward_stacked`, which a test pins to PyG's ``GCNConv``; input dropout is left out
  because it would need one sparse product per run);
* training (*interpretation*): Adam, lr 0.01, weight decay 5e-4, ``epochs`` full-batch steps; early stopping =
  the weights of the epoch with the lowest validation MSE (evaluated every epoch without dropout) give the test MSE;
* runs: masks × initialisations (10 × 10 by default), all runs of a model trained at once
  (:mod:`nsde_coin.stacked`); reported: mean ± std of the test MSE over runs (LR: over masks).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Optional

import torch
from torch import Tensor

from nsde_coin.apps.covid_data import CovidSnapshots, daily_laplacian
from nsde_coin.apps.covid_models import CovidBase, CovidGCN, gcn_adjacency, gcn_forward_stacked
from nsde_coin.loop import BestWeights, Divergence, Epoch, make_optimizer, train
from nsde_coin.stacked import forward_copies, init_copies, module_fn
from nsde_coin.sweep import check_engine, run_units

__all__ = ["CovidConfig", "CovidBase", "CovidGCN", "gcn_adjacency", "gcn_forward_stacked", "draw_masks",
           "fit_linear_regression", "run_covid", "default_config"]

MODELS = ("lr", "mlp", "gcn", "coin")


@dataclass(frozen=True)
class CovidConfig:
    """Protocol settings (defaults: the paper's where it gives them, see the module doc)."""

    lags: int = 8
    split: tuple[int, int, int] = (10, 10, 33)
    missing: float = 0.9
    masks: int = 10
    inits: int = 10
    hidden: int = 16
    layers: int = 10
    sigma2: float = 0.5
    allow_unstable: bool = False
    dropout: float = 0.25
    epochs: int = 200
    lr: float = 0.01
    weight_decay: float = 5e-4
    models: tuple[str, ...] = MODELS
    seed: int = 0

    def check(self, num_snapshots: int) -> None:
        """Raise ``ValueError`` naming the first invalid setting."""
        if any(s < 1 for s in self.split) or sum(self.split) > num_snapshots:
            raise ValueError(f"split={self.split} needs three positive sizes summing to <= {num_snapshots} snapshots")
        if not 0.0 <= self.missing < 1.0:
            raise ValueError(f"missing must lie in [0, 1), got {self.missing}")
        for name in ("masks", "inits", "hidden", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.layers < 0 or not self.sigma2 > 0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"need layers >= 0, sigma2 > 0, 0 <= dropout < 1; got layers={self.layers}, "
                             f"sigma2={self.sigma2}, dropout={self.dropout}")
        bad = [m for m in self.models if m not in MODELS]
        if bad or not self.models:
            raise ValueError(f"models {bad or '(none)'} not valid; valid choices: {', '.join(MODELS)}")


def draw_masks(y_train: Tensor, missing: float, count: int, generator: torch.Generator) -> Tensor:
    """Observed-target masks (count, S_train, N) bool: per snapshot ``max(2, round((1−missing)·N))`` regions kept,
    redrawn until the kept targets take >= 2 distinct values (see the module doc)."""
    s, n = y_train.shape
    keep = max(2, round((1.0 - missing) * n))
    if keep > n:
        raise ValueError(f"cannot keep {keep} of {n} regions")
    out = torch.zeros(count, s, n, dtype=torch.bool)
    for c in range(count):
        for t in range(s):
            for _ in range(1000):
                idx = torch.randperm(n, generator=generator)[:keep]
                if torch.unique(y_train[t, idx]).numel() >= 2:
                    break
            else:
                raise ValueError(f"training snapshot {t} has fewer than 2 distinct target values among any "
                                 f"{keep} regions")
            out[c, t, idx] = True
    return out


def fit_linear_regression(x: Tensor, y: Tensor) -> Tensor:
    """Least-squares coefficients (lags + 1,) of y ≈ x·w + b on rows x (m, lags), y (m,) (float64, lstsq)."""
    a = torch.cat([x.double(), torch.ones(x.shape[0], 1, dtype=torch.float64)], 1)
    return torch.linalg.lstsq(a, y.double().unsqueeze(1), driver="gelsd").solution.squeeze(1)


def _train(forward: Callable[..., Tensor], params: dict[str, Tensor], ys: dict[str, Tensor], obs: Tensor,
           cfg: CovidConfig, gen: torch.Generator, tick: Callable[[], None]) -> dict[str, Tensor]:
    """Adam on the masked training MSE of every run at once; test MSE with each run's best-validation weights.

    ``forward(params, split, train, gen)`` returns predictions (R, n_split) on the nodes of ``split`` ("train",
    "val" or "test"); ``ys[split]`` are the targets; ``obs`` (R, n_train) float 0/1 marks each run's observed
    training targets. The weights of the epoch with the lowest validation MSE are kept per run (early stopping
    without a patience limit) and evaluated on the test snapshots once at the end.
    """
    opt = make_optimizer(params.values(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    count = obs.sum(1)
    r = obs.shape[0]
    best_val = torch.full((r,), math.inf, dtype=torch.float64)
    best_epoch = torch.zeros(r, dtype=torch.long)
    kept = BestWeights(params)
    best = kept.saved

    def mse() -> Tensor:
        pred = forward(params, "train", True, gen)
        return (((pred - ys["train"]) ** 2 * obs).sum(1) / count).sum()

    def validate(state: Epoch) -> None:
        nonlocal best_val, best_epoch
        with torch.no_grad():
            val = ((forward(params, "val", False, gen) - ys["val"]) ** 2).mean(1).double()
            better = val < best_val
            best_val = torch.where(better, val, best_val)
            best_epoch = torch.where(better, torch.full_like(best_epoch, state.index), best_epoch)
            kept.keep(better)
        tick()

    train(mse, opt, cfg.epochs, on_epoch=(validate,), divergence=Divergence(
        "the training diverged; try a smaller lr or sigma2", {"lr": cfg.lr, "sigma2": cfg.sigma2},
        what="COVID regression training loss"))
    with torch.no_grad():
        test = ((forward(best, "test", False, gen) - ys["test"]) ** 2).mean(1).double()
    return {"val": best_val, "test": test, "epoch": best_epoch}


def _stats(values: Tensor) -> dict[str, float]:
    v = values.double()
    return {"mean": float(v.mean()), "std": float(v.std(unbiased=False)), "min": float(v.min()),
            "max": float(v.max()), "runs": int(v.numel())}


def _model(model: str, cfg: CovidConfig, xs: dict[str, Tensor], graphs: dict[str, dict[str, Tensor]],
           seeds: list[int], sel: slice = slice(None)) -> tuple[Callable[..., Tensor], dict[str, Tensor], str]:
    """``(forward(params, split, train, generator) -> (R, n_split), stacked params, description)`` of one trained
    model; ``xs[split]`` (n_split, lags) and ``graphs[split]`` (its block-diagonal Laplacian ``lap`` and weighted
    edges) cover the snapshots of each split, so training touches only the training days.

    ``sel`` keeps the runs ``seeds[sel]`` only (a Dask unit): the dropout masks are still drawn for all runs and
    sliced, so each run sees the generator's numbers it sees when all runs train at once."""
    if model == "gcn":
        adj = {k: gcn_adjacency(g["edge_index"], g["edge_weight"].float(), xs[k].shape[0]) for k, g in graphs.items()}
        ax = {k: adj[k] @ xs[k] for k in xs}
        _, params = init_copies(lambda: CovidGCN(cfg.lags, cfg.hidden), seeds[sel])

        def forward_gcn(p: dict[str, Tensor], split: str, train: bool, gen: torch.Generator) -> Tensor:
            keep = None
            if train and cfg.dropout > 0:
                shape = (len(seeds), xs[split].shape[0], cfg.hidden)
                keep = (torch.rand(shape, generator=gen)[sel] >= cfg.dropout).float() / (1.0 - cfg.dropout)
            return gcn_forward_stacked(p, ax[split], adj[split], keep)

        return forward_gcn, params, f"GCN (GCNConv {cfg.lags}-{cfg.hidden}-1, ELU, hidden dropout {cfg.dropout:g})"

    template, params = init_copies(lambda: CovidBase(cfg.lags, cfg.hidden), seeds[sel])
    forward_coin = _coin_forward(module_fn(template), {k: g["lap"] for k, g in graphs.items()}, xs,
                                 cfg.layers if model == "coin" else 0, cfg, (len(seeds), sel))

    if model == "coin":
        name = f"COIN (base + {cfg.layers} x [dropout {cfg.dropout:g}, u - {cfg.sigma2:g} L_t u])"
    else:
        name = f"MLP (COIN base: linear + {cfg.lags}-{cfg.hidden}-1 ELU, no diffusion)"
    return forward_coin, params, name


def _coin_forward(fn: Callable[..., Tensor], laps: dict[str, Tensor], xs: dict[str, Tensor], layers: int,
                  cfg: CovidConfig, runs: Optional[tuple[int, slice]] = None) -> Callable[..., Tensor]:
    """``forward(params, split, train, generator) -> (R, n_split)`` of R stacked COVID COINs: base values
    (``fn`` under vmap) → the one COIN head without softmax, ``layers`` × [dropout (training only) → one step of
    ``u − σ² L u``] on the split's block-diagonal Laplacian ``laps[split]``; ``layers = 0`` is the base alone (MLP).
    The R runs are the columns of one (n, R) signal, diffused together. ``runs = (total, sel)``: these R runs are
    ``sel`` of ``total`` (a Dask unit), and the dropout masks are drawn for all ``total`` and sliced. A test pins it
    to COIN's diffusion."""
    from nsde_coin.graph.head import dropout_diffusion, head_outputs
    from nsde_coin.graph.layers import GraphDiffusion

    step = GraphDiffusion(cfg.sigma2, 1, cached=False, allow_unstable=cfg.allow_unstable)

    def forward(p: dict[str, Tensor], split: str, train: bool, gen: torch.Generator) -> Tensor:
        u0 = forward_copies(fn, p, xs[split]).squeeze(-1).T  # (n, R)
        diffusion = None if layers == 0 else dropout_diffusion(lambda u: step(u, laps[split]), layers,
                                                               cfg.dropout if train else 0.0, gen, runs)
        return head_outputs(u0, diffusion, probabilities=False).T

    return forward


def _no_tick() -> None:
    pass


def _fit_runs(cfg: CovidConfig, xs: dict[str, Tensor], ys: dict[str, Tensor], graphs: dict[str, dict[str, Tensor]],
              obs: Tensor, seeds: list[int], trained: list[str], sel: slice = slice(None),
              tick: Callable[[], None] = _no_tick) -> dict[str, tuple[str, dict[str, Tensor]]]:
    """Train the runs ``seeds[sel]`` (observed-target masks ``obs[sel]``) of each model of ``trained``:
    {model: (description, {"val", "test", "epoch"}: (R_sel,) tensors)} (see :func:`_train`). One Dask unit is a
    model × a mask with its inits."""
    from nsde_coin.graph.diffusion import PositivityWarning

    fits = {}
    for model in trained:
        forward, params, name = _model(model, cfg, xs, graphs, seeds, sel)
        g = torch.Generator().manual_seed(cfg.seed + 17)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PositivityWarning)  # a regression: negative values are fine
            out = _train(forward, params, ys, obs[sel], cfg, g, tick)
        fits[model] = (name, out)
    return fits


def _fit_on_dask(cfg: CovidConfig, xs: dict[str, Tensor], ys: dict[str, Tensor],
                 graphs: dict[str, dict[str, Tensor]], obs: Tensor, seeds: list[int], trained: list[str], bar: Any,
                 workers: Optional[int], client: Any) -> dict[str, tuple[str, dict[str, Tensor]]]:
    """:func:`_fit_runs` of every model × mask on Dask (:mod:`nsde_coin.sweep`), the runs put back in order."""
    units = [([model], slice(m * cfg.inits, (m + 1) * cfg.inits)) for model in trained for m in range(cfg.masks)]
    parts: dict[int, dict[str, tuple[str, dict[str, Tensor]]]] = {}
    with run_units(_fit_runs, (cfg, xs, ys, graphs, obs, seeds), units, workers=workers, client=client,
                   name="covid", threads=torch.get_num_threads()) as done:
        for i, part in done:
            parts[i] = part
            if bar is not None:
                bar.update(cfg.epochs)
    fits = {}
    for model in trained:
        mine = [next(iter(parts[i].values())) for i in sorted(parts) if units[i][0] == [model]]
        fits[model] = (mine[0][0], {k: torch.cat([out[k] for _, out in mine]) for k in ("val", "test", "epoch")})
    return fits


def run_covid(snaps: CovidSnapshots, cfg: CovidConfig = CovidConfig(), *, progress: bool = False,
              source: str = "", workers: Optional[int] = None, client: Any = None) -> dict[str, Any]:
    """Run the protocol (module doc) for ``cfg.models``; returns the JSON-ready record.

    ``workers=N`` trains on an embedded Dask ``LocalCluster`` of N single-threaded processes, ``client=`` (a
    ``distributed.Client`` or ``"tcp://host:port"``) on an existing cluster (:mod:`nsde_coin.sweep`): one unit is a
    model × a mask with its ``cfg.inits`` initialisations, the snapshots go to each worker once, and the record
    equals the in-process one to float tolerance (the default, no engine, trains all runs of a model at once here).
    """
    from nsde_coin.graph.diffusion import stability_report

    s_total, n = snaps.y.shape
    cfg.check(s_total)
    check_engine(workers, client)
    n_tr, n_va, n_te = cfg.split
    used = n_tr + n_va + n_te
    days = {"train": range(0, n_tr), "val": range(n_tr, n_tr + n_va), "test": range(n_tr + n_va, used)}
    xs = {k: snaps.x[list(d)].reshape(len(d) * n, -1).float() for k, d in days.items()}
    ys = {k: snaps.y[list(d)].reshape(-1).float() for k, d in days.items()}
    gen = torch.Generator().manual_seed(cfg.seed)
    masks = draw_masks(snaps.y[:n_tr], cfg.missing, cfg.masks, gen)  # (M, S_tr, N)
    runs = cfg.masks * cfg.inits
    obs = masks.reshape(cfg.masks, -1).repeat_interleave(cfg.inits, 0).float()  # (R, n_tr·N)
    seeds = [cfg.seed * 1_000_003 + r for r in range(runs)]
    graphs = {}
    for k, d in days.items():
        lap, ei, ew = daily_laplacian(snaps, list(d))
        graphs[k] = {"lap": lap, "edge_index": ei, "edge_weight": ew}
    stab = stability_report(daily_laplacian(snaps, list(range(used)))[0], cfg.sigma2)
    if "coin" in cfg.models and cfg.layers > 0 and stab["sigma2_lambda_max"] >= 2.0 and not cfg.allow_unstable:
        # checked before any training, with this protocol's own options (it has no solver choice)
        raise ValueError(f"sigma2={cfg.sigma2:g} makes COIN's explicit diffusion step unstable on these mobility "
                         f"graphs: sigma2·lambda_max = {stab['sigma2_lambda_max']:.4g} >= 2 (stable iff sigma2 < "
                         f"{2.0 / stab['lambda_max']:.4g}); use a smaller sigma2 (CLI: --sigma2), or "
                         f"allow_unstable=True (CLI: --allow-unstable) to run it anyway")
    results: dict[str, Any] = {}
    trained = [m for m in cfg.models if m != "lr"]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.epochs * len(trained) * (1 if workers is None and client is None else cfg.masks),
                   desc="covid", unit="epoch")

    def tick() -> None:
        if bar is not None:
            bar.update(1)

    if "lr" in cfg.models:
        tests, vals = [], []
        for mi in range(cfg.masks):
            rows = masks[mi].reshape(-1)
            w = fit_linear_regression(xs["train"][rows], ys["train"][rows])
            for split, acc in (("val", vals), ("test", tests)):
                pred = xs[split].double() @ w[:-1] + w[-1]
                acc.append(((pred - ys[split].double()) ** 2).mean().view(1))
        results["lr"] = {"method": f"linear regression ({cfg.lags} lags + bias, least squares)",
                         "test_mse": _stats(torch.cat(tests)), "val_mse": _stats(torch.cat(vals)),
                         "test_mse_per_mask": torch.cat(tests).tolist()}

    if workers is None and client is None:
        fits = _fit_runs(cfg, xs, ys, graphs, obs, seeds, trained, tick=tick)
    else:
        fits = _fit_on_dask(cfg, xs, ys, graphs, obs, seeds, trained, bar, workers, client)
    for model in trained:
        name, out = fits[model]
        results[model] = {"method": name, "test_mse": _stats(out["test"]), "val_mse": _stats(out["val"]),
                          "best_epoch_median": int(out["epoch"].median()),
                          "test_mse_per_mask": out["test"].view(cfg.masks, cfg.inits).mean(1).tolist()}
    if bar is not None:
        bar.close()
    record: dict[str, Any] = {
        "data": {"source": source, "regions": n, "snapshots_used": used, "split": list(cfg.split)},
        "config": {**asdict(cfg), "split": list(cfg.split), "models": list(cfg.models)},
        "stability": {k: stab[k] for k in ("lambda_max", "sigma2_lambda_max", "max_diag", "sigma2_max_diag")},
        "observed_training_targets_per_snapshot": int(masks[0, 0].sum()),
        "results": results,
    }
    if "coin" in results and "lr" in results:
        diff = torch.tensor(results["lr"]["test_mse_per_mask"]) - torch.tensor(results["coin"]["test_mse_per_mask"])
        record["lr_minus_coin_per_mask"] = {"mean": float(diff.mean()), "std": float(diff.std(unbiased=False)),
                                            "masks_coin_better": int((diff > 0).sum()), "masks": cfg.masks}
    return record


def default_config(small: bool = False, **overrides: Any) -> CovidConfig:
    """The default protocol, or a reduced one (3 masks × 2 inits, 100 epochs) for tests and small mode."""
    base = CovidConfig(masks=3, inits=2, epochs=100) if small else CovidConfig()
    return CovidConfig(**{**asdict(base), **overrides}) if overrides else base

