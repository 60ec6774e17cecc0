"""Label-scarce tabular classification with COIN on a Gaussian kNN graph over the samples (the paper's prostate-
cancer setting, whose data is not obtainable offline, run on scikit-learn's breast cancer Wisconsin set or a CSV).

Protocol per seed:

* features standardised over all samples (transductive: no labels are used), constant columns left at 0;
* ``n_train`` labelled samples (20 by default) drawn stratified — each class gets its proportional share by the
  largest-remainder rule and at least one — and every other sample is unlabelled and scored (the test set);
* one Gaussian kNN graph over all samples (:mod:`nsde_coin.graph.knn`; 40 neighbours as in the paper, scale
  d^(m) with m = 20 — the paper gives no m here, so the few-shot ratio m = k/2 is kept), L = diag(W1) − W;
* COIN: the base ResNet (:class:`~nsde_coin.graph.ensemble.COINEnsemble`, one member per seed) and ``layer_num`` = 40
  explicit steps of σ² = 0.2 (checked: σ²·λ_max < 2); the ablation is the same ensemble, same initialisation, with
  ``layer_num = 0``. Adam (lr 0.01, weight decay 5e-4), ``epochs`` full-batch steps on the labelled samples' NLL;
  there is no validation set with 20 labels, so no early stopping;
* metrics on the unlabelled samples: accuracy, ROC-AUC and AUPR (average precision) — binary: of the positive
  class (breast cancer: malignant = 1); multiclass: macro one-vs-rest, "N/A" when a class is missing from the
  scored samples. Mean ± std over seeds.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import Tensor

from nsde_coin._checks import is_int
from nsde_coin.graph.knn import gaussian_knn_edges, weighted_laplacian
from nsde_coin.loop import Divergence, make_optimizer, train
from nsde_coin.solvers import get_solver
from nsde_coin.sweep import check_engine, run_units

__all__ = ["TabularData", "TabularConfig", "breast_cancer", "load_csv", "stratified_labelled", "standardize",
           "classification_metrics", "run_tabular"]


@dataclass
class TabularData:
    """``x`` (n, d) float64 raw features, ``y`` (n,) int64 class ids 0..C−1, ``classes`` their names,
    ``feature_names`` (d,), ``source``."""

    x: Tensor
    y: Tensor
    classes: list[str]
    feature_names: list[str]
    source: str


@dataclass(frozen=True)
class TabularConfig:
    """Protocol settings (see the module doc)."""

    n_train: int = 20
    seeds: int = 30
    k: int = 40
    m: int = 20
    layer_num: int = 40
    sigma2: float = 0.2
    epochs: int = 200
    lr: float = 0.01
    weight_decay: float = 5e-4
    solver: str = "explicit"
    allow_unstable: bool = False
    seed: int = 0


def breast_cancer() -> TabularData:
    """scikit-learn's breast cancer Wisconsin data (569 × 30, ships with scikit-learn); label 1 = malignant."""
    from sklearn.datasets import load_breast_cancer

    raw = load_breast_cancer()
    y = 1 - np.asarray(raw.target)  # sklearn: 0 = malignant, 1 = benign
    return TabularData(torch.as_tensor(raw.data, dtype=torch.float64), torch.as_tensor(y, dtype=torch.long),
                       ["benign", "malignant"], list(raw.feature_names), "sklearn breast cancer Wisconsin")


def load_csv(path: Union[str, Path], label: str) -> TabularData:
    """Read a CSV with a header row: column ``label`` holds the classes (any strings), all others must be numbers.

    Raises ``ValueError`` naming the missing label column (with the columns present), a non-numeric or empty cell
    (column and line), fewer than two classes, or a ragged row.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"CSV file {p} does not exist")
    with open(p, newline="") as f:
        rows = list(csv.reader(f))
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if len(rows) < 2:
        raise ValueError(f"{p}: need a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    if label not in header:
        raise ValueError(f"{p}: label column {label!r} not found; columns: {', '.join(header)}")
    li = header.index(label)
    feat_cols = [i for i in range(len(header)) if i != li]
    if not feat_cols:
        raise ValueError(f"{p}: no feature columns besides the label {label!r}")
    feats = np.empty((len(rows) - 1, len(feat_cols)))
    labels = []
    for r, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ValueError(f"{p}, line {r}: {len(row)} fields, the header has {len(header)}")
        labels.append(row[li].strip())
        for j, c in enumerate(feat_cols):
            try:
                feats[r - 2, j] = float(row[c])
            except ValueError:
                raise ValueError(f"{p}, line {r}: column {header[c]!r} holds {row[c]!r}, not a number (feature "
                                 f"columns must be numeric; missing values are not supported)") from None
    if not np.all(np.isfinite(feats)):
        raise ValueError(f"{p}: features contain NaN or Inf")
    if any(lab == "" for lab in labels):
        raise ValueError(f"{p}: the label column {label!r} has empty cells")
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ValueError(f"{p}: the label column {label!r} has a single class {classes}; need >= 2")
    lookup = {c: i for i, c in enumerate(classes)}
    y = torch.tensor([lookup[lab] for lab in labels], dtype=torch.long)
    return TabularData(torch.as_tensor(feats), y, classes, [header[c] for c in feat_cols], str(p))


def standardize(x: Tensor) -> Tensor:
    """Column z-scores over all rows (population std); constant columns become 0."""
    std = x.std(0, unbiased=False)
    return (x - x.mean(0)) / torch.where(std > 0, std, torch.ones_like(std))


def stratified_labelled(y: Tensor, n_train: int, generator: torch.Generator) -> Tensor:
    """Boolean mask (n,) of ``n_train`` labelled samples, stratified by class (module doc); each class keeps at
    least one unlabelled sample. ``ValueError`` when that is impossible."""
    classes, counts = torch.unique(y, return_counts=True)
    c = len(classes)
    if not c <= n_train <= len(y) - c:
        raise ValueError(f"n_train={n_train} must lie in [{c}, {len(y) - c}] for {c} classes and {len(y)} samples "
                         f"(at least one labelled and one unlabelled sample per class)")
    small = [int(k) for k, n in zip(classes, counts) if n < 2]
    if small:
        raise ValueError(f"classes {small} have fewer than 2 samples (one labelled, one to score)")
    share = counts.double() * n_train / len(y)
    alloc = share.floor().long().clamp(1, None)
    alloc = torch.minimum(alloc, counts - 1)
    order = torch.argsort(share - share.floor(), descending=True)
    i = 0
    while int(alloc.sum()) != n_train:
        j = order[i % c]
        if int(alloc.sum()) < n_train and alloc[j] < counts[j] - 1:
            alloc[j] += 1
        elif int(alloc.sum()) > n_train and alloc[j] > 1:
            alloc[j] -= 1
        i += 1
    mask = torch.zeros(len(y), dtype=torch.bool)
    for k, cls in enumerate(classes):
        idx = torch.nonzero(y == cls).view(-1)
        mask[idx[torch.randperm(len(idx), generator=generator)[: int(alloc[k])]]] = True
    return mask


def classification_metrics(y: np.ndarray, prob: np.ndarray, num_classes: int) -> dict[str, Optional[float]]:
    """Accuracy (%), ROC-AUC and AUPR of probabilities ``prob`` (n, C); AUC/AUPR ``None`` when undefined."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    p = np.clip(prob, 0.0, None)
    p = p / np.where(p.sum(1, keepdims=True) > 0, p.sum(1, keepdims=True), 1.0)
    out: dict[str, Optional[float]] = {"accuracy": float((p.argmax(1) == y).mean() * 100.0)}
    present = np.unique(y)
    if num_classes == 2:
        ok = len(present) == 2
        out["roc_auc"] = float(roc_auc_score(y, p[:, 1])) if ok else None
        out["aupr"] = float(average_precision_score(y, p[:, 1])) if ok else None
    else:
        ok = len(present) == num_classes
        out["roc_auc"] = float(roc_auc_score(y, p, multi_class="ovr", average="macro")) if ok else None
        onehot = np.eye(num_classes)[y]
        out["aupr"] = float(average_precision_score(onehot, p, average="macro")) if ok else None
    return out


def _agg(values: list[Optional[float]]) -> dict[str, Any]:
    v = [x for x in values if x is not None]
    if len(v) < len(values) or not v:
        return {"mean": None, "std": None, "note": "N/A (a class is missing from the scored samples)"}
    a = np.asarray(v)
    return {"mean": float(a.mean()), "std": float(a.std())}


def _fit_seeds(data: TabularData, x: Tensor, labelled: Tensor, lap: Tensor, cfg: TabularConfig,
               models: dict[str, int], members: Optional[list[int]] = None, bar: Any = None
               ) -> dict[str, list[dict[str, Optional[float]]]]:
    """Train the ensembles of ``models`` ({name: layer_num}) for the seeds ``members`` (default: all ``cfg.seeds``)
    on standardised features ``x`` (n, d) with the labelled masks ``labelled`` (cfg.seeds, n) and Laplacian ``lap``;
    returns their per-seed metrics {name: [metrics of each member]}.

    A chunk of seeds starts from the same weights as in the all-seeds ensemble (drawn for all seeds, then the
    chunk's members are kept); the stacked members share no parameters, so a chunk trains each seed as the
    all-seeds run does (to float tolerance: see tests/apps/test_apps_dask.py). One Dask unit is a model × a chunk.
    """
    from nsde_coin.graph.coin import COINEnsemble

    n, d = x.shape
    c = len(data.classes)
    if members is not None:
        labelled = labelled[members]
    per_seed: dict[str, list[dict[str, Optional[float]]]] = {}
    lab_f = labelled.float()
    for name, layers in models.items():
        ens = COINEnsemble(cfg.seeds, d, c, layer_num=layers, sigma2=cfg.sigma2, solver=cfg.solver,
                           allow_unstable=cfg.allow_unstable, generator=torch.Generator().manual_seed(cfg.seed + 1))
        if members is not None:
            ens = COINEnsemble.from_models([ens.member(i) for i in members])
        ens.set_graph(lap)
        opt = make_optimizer(ens.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

        def nll(ens: COINEnsemble = ens) -> torch.Tensor:
            logp = ens.log_prob(x)  # (I, n, C)
            per_node = -logp.gather(-1, data.y.expand(ens.num_models, n).unsqueeze(-1)).squeeze(-1)
            return ((per_node * lab_f).sum(1) / lab_f.sum(1)).sum()

        train(nll, opt, cfg.epochs, on_epoch=() if bar is None else (lambda _: bar.update(1),),
              divergence=Divergence("the training diverged; try a smaller lr or sigma2, or solver='implicit'",
                                    {"lr": cfg.lr, "sigma2": cfg.sigma2}, what="tabular COIN training loss"))
        with torch.no_grad():
            prob = ens(x).numpy()
        y = data.y.numpy()
        per_seed[name] = [classification_metrics(y[~labelled[i].numpy()], prob[i][~labelled[i].numpy()], c)
                          for i in range(ens.num_models)]
    return per_seed


def _chunks(count: int, size: int) -> list[list[int]]:
    return [list(range(a, min(count, a + size))) for a in range(0, count, size)]


def run_tabular(data: TabularData, cfg: TabularConfig = TabularConfig(), *, progress: bool = False,
                workers: Optional[int] = None, client: Any = None, seeds_per_unit: Optional[int] = None
                ) -> dict[str, Any]:
    """COIN vs its layer_num = 0 ablation over ``cfg.seeds`` seeds (module doc); returns the JSON-ready record.

    ``workers=N`` trains on an embedded Dask ``LocalCluster`` of N single-threaded processes, ``client=`` (a
    ``distributed.Client`` or ``"tcp://host:port"``) on an existing cluster (:mod:`nsde_coin.sweep`): one unit is a
    model × a chunk of ``seeds_per_unit`` seeds (default: the seeds split into ~2 chunks per worker), the data
    goes to each worker once, and the record equals the in-process one to float tolerance (the default, no
    engine, trains each model's seeds in one ensemble here).
    """
    from nsde_coin.graph.diffusion import stability_report

    if cfg.seeds < 1 or cfg.epochs < 1:
        raise ValueError(f"seeds and epochs must be >= 1, got seeds={cfg.seeds}, epochs={cfg.epochs}")
    get_solver(cfg.solver, family="graph")  # an unknown name fails here, before any work (or progress bar)
    check_engine(workers, client)
    if seeds_per_unit is not None and (not is_int(seeds_per_unit) or seeds_per_unit < 1):
        raise ValueError(f"seeds_per_unit must be an int >= 1 (or None: ~2 chunks per worker), got {seeds_per_unit!r}")
    n, d = data.x.shape
    x = standardize(data.x).float()
    gen = torch.Generator().manual_seed(cfg.seed)
    labelled = torch.stack([stratified_labelled(data.y, cfg.n_train, gen) for _ in range(cfg.seeds)])  # (I, n)
    ei, ew, _ = gaussian_knn_edges(x.double(), cfg.k, cfg.m)
    lap = weighted_laplacian(ei, ew.float(), n)
    stab = stability_report(lap, cfg.sigma2)
    models = {"coin": cfg.layer_num, "ablation": 0}
    bar = None
    if workers is None and client is None:
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.epochs * len(models), desc="tabular", unit="epoch")
        per_seed = _fit_seeds(data, x, labelled, lap, cfg, models, bar=bar)
    else:
        size = seeds_per_unit or math.ceil(cfg.seeds / (2 * (workers or 1)))
        units = [({name: layers}, chunk) for name, layers in models.items() for chunk in _chunks(cfg.seeds, size)]
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(units), desc="tabular", unit="unit")
        parts: dict[int, dict[str, list[dict[str, Optional[float]]]]] = {}
        with run_units(_fit_seeds, (data, x, labelled, lap, cfg), units, workers=workers, client=client,
                       name="tabular", threads=torch.get_num_threads()) as done:
            for i, part in done:
                parts[i] = part
                if bar is not None:
                    bar.update(1)
        per_seed = {name: [m for i in sorted(parts) for m in parts[i].get(name, [])] for name in models}
    if bar is not None:
        bar.close()
    results = {}
    for name, label in (("coin", f"COIN (layer_num={cfg.layer_num}, sigma2={cfg.sigma2}, {cfg.solver})"),
                        ("ablation", "same model, layer_num=0")):
        results[name] = {"method": label, **{m: _agg([r[m] for r in per_seed[name]])
                                             for m in ("accuracy", "roc_auc", "aupr")}}
    diff = [a["accuracy"] - b["accuracy"] for a, b in zip(per_seed["coin"], per_seed["ablation"])]
    return {
        "data": {"source": data.source, "samples": n, "features": d, "classes": data.classes,
                 "labelled_per_seed": cfg.n_train, "scored_per_seed": n - cfg.n_train},
        "config": asdict(cfg),
        "stability": {k: stab[k] for k in ("lambda_max", "sigma2_lambda_max", "max_diag", "sigma2_max_diag")}
        | {"explicit_stable": stab["sigma2_lambda_max"] < 2.0},
        "results": results,
        "per_seed": per_seed,
        "accuracy_gain": {"mean": float(np.mean(diff)), "std": float(np.std(diff)),
                          "seeds_improved": int(sum(v > 0 for v in diff)), "seeds": cfg.seeds,
                          "se": float(np.std(diff, ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else None},
    }
