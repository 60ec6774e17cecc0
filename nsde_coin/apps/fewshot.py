"""Transductive few-shot learning with a COIN head (the paper's §4 pipeline), many tasks at once.

One N-way K-shot task with Q queries per class has n = N·(K+Q) nodes, ordered support first (way 0's K shots,
way 1's, ...) then queries (way 0's Q, ...). Ways are N classes drawn at random, samples drawn without replacement.

Pipeline per task (features x_i ∈ R^d from a backbone):

1. x ← x − base_mean (mean feature of the base classes), x ← x / ‖x‖₂;
2. queries shifted by (mean of support − mean of queries), so both sets share a centre;
3. Gaussian kNN graph over support + query (:mod:`nsde_coin.graph.knn`: k = 8 incl. self, scale d^(m) with m = 4,
   symmetric normalisation, symmetrised), L = diag(W1) − W;
4. COIN head: the base ResNet h = x + ReLU(W₁x) → linear → softmax (:class:`nsde_coin.graph.coin.COINBase`), then
   the softmax outputs diffused by a :class:`~nsde_coin.graph.layers.GraphDiffusion` (``layer_num`` = 10 steps of
   σ² = 0.5, explicit by default) — the one COIN head of :mod:`nsde_coin.graph.head`; trained on the support
   nodes only (NLL of log u, 100 epochs of plain SGD, lr 0.1, full batch), then each query is labelled by argmax u.

Baselines on the same tasks and preprocessed features: nearest class mean (NCM, Euclidean distance to the support
mean of each way) and the same head with ``layer_num = 0`` (same initialisation, same optimiser; no diffusion).

Vectorisation: a batch of B tasks is one block-diagonal graph over B·n nodes (one sparse product per diffusion step
for all tasks) and B heads with stacked parameters (:mod:`nsde_coin.stacked`); the sum of the B per-task mean
losses gives every head exactly its own gradient, so this equals B separate runs.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from nsde_coin._checks import all_finite
from nsde_coin.apps.fewshot_data import FewShotFeatures
from nsde_coin.graph.knn import gaussian_knn_edges, weighted_laplacian
from nsde_coin.loop import Divergence, make_optimizer, train
from nsde_coin.solvers import get_solver
from nsde_coin.stacked import forward_copies, init_copies
from nsde_coin.sweep import check_engine, run_units

__all__ = ["FewShotConfig", "eligible_classes", "sample_tasks", "preprocess_tasks", "ncm_predict",
           "coin_head_predict", "run_fewshot", "mean_ci95"]

@dataclass(frozen=True)
class FewShotConfig:
    """Protocol settings (defaults: the paper's, with 600 tasks instead of 10,000)."""

    n_way: int = 5
    k_shot: int = 1
    n_query: int = 15
    n_tasks: int = 600
    k: int = 8
    m: int = 4
    layer_num: int = 10
    sigma2: float = 0.5
    epochs: int = 100
    lr: float = 0.1
    solver: str = "explicit"
    allow_unstable: bool = False
    task_batch: int = 150
    seed: int = 0

    def check(self) -> None:
        """Raise ``ValueError`` naming the first invalid setting."""
        for name in ("n_way", "k_shot", "n_query", "n_tasks", "epochs", "task_batch"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        if self.n_way < 2:
            raise ValueError(f"n_way must be >= 2, got {self.n_way}")
        if self.layer_num < 0:
            raise ValueError(f"layer_num must be >= 0, got {self.layer_num}")
        if not self.sigma2 > 0:
            raise ValueError(f"sigma2 must be > 0, got {self.sigma2}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        get_solver(self.solver, family="graph")  # unknown names: ValueError listing the graph solvers
        nodes = self.n_way * (self.k_shot + self.n_query)
        if not 2 <= self.m <= self.k <= nodes:
            raise ValueError(f"need 2 <= m <= k <= nodes per task = {nodes}; got k={self.k}, m={self.m}")


def mean_ci95(values: Any) -> tuple[float, float]:
    """Mean and half-width of the normal 95% confidence interval of the mean, 1.96·std/√T (population std, as in
    the few-shot literature's code)."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        raise ValueError("mean_ci95 of an empty sequence")
    return float(a.mean()), float(1.96 * a.std() / math.sqrt(a.size))


def eligible_classes(labels: Tensor, per_class: int, n_way: int) -> tuple[Tensor, dict[int, int]]:
    """Classes with at least ``per_class`` samples; ``ValueError`` if fewer than ``n_way`` such classes exist.

    Returns ``(classes, dropped)`` with ``dropped`` = {class: count} of the classes too small to use.
    """
    classes, counts = torch.unique(labels, return_counts=True)
    ok = counts >= per_class
    dropped = {int(c): int(n) for c, n in zip(classes[~ok], counts[~ok])}
    if int(ok.sum()) < n_way:
        listing = ", ".join(f"{int(c)}: {int(n)}" for c, n in zip(classes, counts))
        raise ValueError(f"a {n_way}-way task with K-shot + Q queries needs {n_way} classes with >= {per_class} "
                         f"samples each; only {int(ok.sum())} of {len(classes)} classes have that many "
                         f"(samples per class: {listing}); lower n_way, k_shot or n_query")
    return classes[ok], dropped


def sample_tasks(labels: Tensor, n_way: int, k_shot: int, n_query: int, n_tasks: int,
                 generator: torch.Generator) -> Tensor:
    """Indices (n_tasks, n_way·(k_shot+n_query)) into ``labels``: support block then query block (see module doc).

    Ways: a random N-subset of the eligible classes per task, in random order; samples: a uniformly random
    (K+Q)-subset of each class, drawn without replacement. Vectorised over tasks (padded per-class index pools).
    """
    per = k_shot + n_query
    classes, _ = eligible_classes(labels, per, n_way)
    pools = [torch.nonzero(labels == c).view(-1) for c in classes]
    width = max(len(p) for p in pools)
    pool = torch.full((len(pools), width), -1, dtype=torch.long)
    for i, p in enumerate(pools):
        pool[i, : len(p)] = p
    valid = pool >= 0
    ways = torch.rand(n_tasks, len(pools), generator=generator).argsort(dim=1)[:, :n_way]  # (T, N)
    keys = torch.rand(n_tasks, n_way, width, generator=generator)
    keys = keys.masked_fill(~valid[ways], -1.0)  # padding never chosen (each pool has >= per entries)
    pick = keys.topk(per, dim=-1).indices  # (T, N, K+Q)
    idx = torch.gather(pool[ways], 2, pick)
    support = idx[:, :, :k_shot].reshape(n_tasks, -1)
    query = idx[:, :, k_shot:].reshape(n_tasks, -1)
    return torch.cat([support, query], dim=1)


def preprocess_tasks(x: Tensor, n_support: int, base_mean: Optional[Tensor]) -> Tensor:
    """Steps 1–2 of the pipeline on (B, n, d) task features (support = first ``n_support`` nodes)."""
    if base_mean is not None:
        x = x - base_mean
    x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    s, q = x[:, :n_support], x[:, n_support:]
    q = q + (s.mean(1, keepdim=True) - q.mean(1, keepdim=True))
    return torch.cat([s, q], dim=1)


def ncm_predict(x: Tensor, n_way: int, k_shot: int) -> Tensor:
    """Nearest class mean: (B, n, d) preprocessed tasks → (B, N·Q) predicted ways of the queries."""
    ns = n_way * k_shot
    means = x[:, :ns].reshape(x.shape[0], n_way, k_shot, -1).mean(2)
    return torch.cdist(x[:, ns:], means).argmin(-1)


def _base_logits_one(p: dict[str, Tensor], x: Tensor) -> Tensor:
    """Logits (n, C) of one :class:`~nsde_coin.graph.coin.COINBase` with parameters ``p`` on features x (n, d).

    This is ``COINBase.forward`` without its value check (``bool(isfinite(x).all())`` cannot run under vmap; the
    features are checked once per batch in :func:`run_fewshot`); a test pins it to ``COINBase.forward``."""
    from nsde_coin.graph.coin import base_logits

    return base_logits(x, p["W1"][None], p["b1"][None], p["W2"][None], p["b2"][None])[0]


def _task_heads(params: dict[str, Tensor], x: Tensor, diffusion: Any, lap: Optional[Tensor]
                ) -> tuple[Tensor, Tensor]:
    """``(logits, u)`` (B, n, N) of B stacked COIN heads on their tasks: the one COIN head
    (:func:`nsde_coin.graph.head.head_outputs`) on the stacked base logits, ``diffusion`` a
    :class:`~nsde_coin.graph.layers.GraphDiffusion` applied to all tasks at once on the block-diagonal ``lap``
    (B·n nodes), or ``None`` (layer_num = 0). A test pins task b to ``COIN.forward`` with task b's weights."""
    from nsde_coin.graph.head import head_outputs

    b, n, _ = x.shape
    logits = forward_copies(_base_logits_one, params, x, batched=(True,))
    if diffusion is None:
        return logits, head_outputs(logits)
    return logits, head_outputs(logits, lambda u: diffusion(u.reshape(b * n, -1), lap).reshape(u.shape))


def coin_head_predict(
    x: Tensor,
    lap: Optional[Tensor],
    n_way: int,
    k_shot: int,
    *,
    layer_num: int,
    sigma2: float,
    epochs: int,
    lr: float,
    seeds: list[int],
    solver: str = "explicit",
    allow_unstable: bool = False,
) -> Tensor:
    """Train one COIN head per task on its support nodes and predict its queries.

    Args:
        x: (B, n, d) preprocessed task features (support first).
        lap: block-diagonal Laplacian (B·n, B·n) of the B task graphs; unused (may be ``None``) when layer_num = 0.
        seeds: one initialisation seed per task (the same seeds give the same heads for every ``layer_num``).

    Returns:
        (B, N·Q) predicted ways of the query nodes.
    """
    from nsde_coin.graph.coin import COINBase
    from nsde_coin.graph.head import head_log
    from nsde_coin.graph.layers import GraphDiffusion

    b, n, d = x.shape
    ns = n_way * k_shot
    _, params = init_copies(lambda: COINBase(d, n_way), seeds)
    y = torch.arange(n_way).repeat_interleave(k_shot).expand(b, ns)
    opt = make_optimizer(params.values(), "sgd", lr=lr)
    diffusion = None if layer_num == 0 else GraphDiffusion(sigma2, layer_num, solver=solver, cached=False,
                                                           allow_unstable=allow_unstable)

    def outputs() -> Tensor:  # u (B, n, N)
        return _task_heads(params, x, diffusion, lap)[1]

    def support_log_prob() -> Tensor:  # log u of the support nodes (B, N·K, N), the head's floored log
        logits, u = _task_heads(params, x, diffusion, lap)
        return head_log(logits[:, :ns], None if diffusion is None else u[:, :ns])

    def nll() -> Tensor:
        logp = support_log_prob()
        return -torch.gather(logp, 2, y.unsqueeze(-1)).mean(dim=(1, 2)).sum()

    train(nll, opt, epochs, divergence=Divergence(
        "the diffusion is unstable — use solver='implicit' or a smaller sigma2",
        {"solver": solver, "sigma2": sigma2, "layer_num": layer_num, "lr": lr},
        what="few-shot COIN head training loss"))
    with torch.no_grad():
        return outputs()[:, ns:].argmax(-1)


def _task_batches(data: FewShotFeatures, cfg: FewShotConfig, idx: Tensor, starts: list[int], bar: Any = None
                  ) -> tuple[dict[str, list[Tensor]], dict[str, float], bool]:
    """The task batches starting at ``starts`` (indices into the tasks ``idx`` (T, n)): per-method query accuracies
    of each task ({method: [one (B,) tensor per batch]}), the worst stability numbers over their graphs and whether
    a positivity warning was raised. One Dask unit is one batch."""
    from nsde_coin.graph.diffusion import PositivityWarning, stability_report

    ns = cfg.n_way * cfg.k_shot
    yq = torch.arange(cfg.n_way).repeat_interleave(cfg.n_query)
    acc: dict[str, list[Tensor]] = {"coin": [], "ablation": [], "ncm": []}
    worst: dict[str, float] = {}
    neg_warned = False
    for t0 in starts:
        t1 = min(cfg.n_tasks, t0 + cfg.task_batch)
        x = preprocess_tasks(data.features[idx[t0:t1]].double(), ns, data.base_mean).float()
        if not all_finite(x):
            raise ValueError("few-shot features contain NaN or Inf after preprocessing")
        seeds = [cfg.seed * 1_000_003 + t for t in range(t0, t1)]
        lap = None
        if cfg.layer_num > 0:
            ei, ew, nn_ = gaussian_knn_edges(x, cfg.k, cfg.m)
            lap = weighted_laplacian(ei, ew, nn_)
            rep = stability_report(lap, cfg.sigma2)
            for key in ("lambda_max", "sigma2_lambda_max", "max_diag", "sigma2_max_diag"):
                worst[key] = max(worst.get(key, -math.inf), rep[key])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PositivityWarning)
            pred = coin_head_predict(x, lap, cfg.n_way, cfg.k_shot, layer_num=cfg.layer_num, sigma2=cfg.sigma2,
                                     epochs=cfg.epochs, lr=cfg.lr, seeds=seeds, solver=cfg.solver,
                                     allow_unstable=cfg.allow_unstable)
        neg_warned = neg_warned or any(issubclass(w.category, PositivityWarning) for w in caught)
        pred0 = coin_head_predict(x, None, cfg.n_way, cfg.k_shot, layer_num=0, sigma2=cfg.sigma2,
                                  epochs=cfg.epochs, lr=cfg.lr, seeds=seeds)
        acc["coin"].append((pred == yq).float().mean(1))
        acc["ablation"].append((pred0 == yq).float().mean(1))
        acc["ncm"].append((ncm_predict(x, cfg.n_way, cfg.k_shot) == yq).float().mean(1))
        if bar is not None:
            bar.update(t1 - t0)
    return acc, worst, neg_warned


def run_fewshot(data: FewShotFeatures, cfg: FewShotConfig = FewShotConfig(), *, progress: bool = False,
                desc: str = "few-shot", workers: Optional[int] = None, client: Any = None) -> dict[str, Any]:
    """Run ``cfg.n_tasks`` tasks with COIN, its layer_num = 0 ablation and NCM; return the JSON-ready record.

    The record holds per-method mean accuracy (%) and 95% CI over tasks, the paired difference COIN − ablation,
    the stability numbers of the explicit step on the task graphs (worst σ²·λ_max and σ²·max L_ii over batches),
    and the settings. ``workers=N`` runs the task batches on an embedded Dask ``LocalCluster`` of N
    single-threaded processes, ``client=`` (a ``distributed.Client`` or ``"tcp://host:port"``) on an existing
    cluster (:mod:`nsde_coin.sweep`): one unit per batch of ``cfg.task_batch`` tasks, the features and task indices
    sent to each worker once; the record is the in-process one (each batch is the same computation).
    """
    cfg.check()
    check_engine(workers, client)
    gen = torch.Generator().manual_seed(cfg.seed)
    per = cfg.k_shot + cfg.n_query
    _, dropped = eligible_classes(data.labels, per, cfg.n_way)
    idx = sample_tasks(data.labels, cfg.n_way, cfg.k_shot, cfg.n_query, cfg.n_tasks, gen)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.n_tasks, desc=desc, unit="task")
    starts = list(range(0, cfg.n_tasks, cfg.task_batch))
    if workers is None and client is None:
        acc, worst, neg_warned = _task_batches(data, cfg, idx, starts, bar)
    else:
        acc, worst, neg_warned = {"coin": [], "ablation": [], "ncm": []}, {}, False
        parts = {}
        with run_units(_task_batches, (data, cfg, idx), [([t0],) for t0 in starts], workers=workers, client=client,
                       name="fewshot", threads=torch.get_num_threads()) as done:
            for i, part in done:
                parts[i] = part
                if bar is not None:
                    bar.update(min(cfg.n_tasks, starts[i] + cfg.task_batch) - starts[i])
        for i in sorted(parts):  # in task order: the same per-task lists as in this process
            for key, values in parts[i][0].items():
                acc[key] += values
            for key, value in parts[i][1].items():
                worst[key] = max(worst.get(key, -math.inf), value)
            neg_warned = neg_warned or parts[i][2]
    if bar is not None:
        bar.close()
    per_task = {k: torch.cat(v).numpy() * 100.0 for k, v in acc.items()}
    methods = {
        "coin": f"COIN head (layer_num={cfg.layer_num}, sigma2={cfg.sigma2}, {cfg.solver})",
        "ablation": "same head, layer_num=0",
        "ncm": "nearest class mean",
    }
    results = {}
    for key, name in methods.items():
        mean, ci = mean_ci95(per_task[key])
        results[key] = {"method": name, "accuracy": mean, "ci95": ci}
    diff_mean, diff_ci = mean_ci95(per_task["coin"] - per_task["ablation"])
    return {
        "task": f"{cfg.n_way}-way {cfg.k_shot}-shot, {cfg.n_query} queries/class",
        "config": asdict(cfg),
        "data": {"source": data.source, "classes_dropped_too_few_samples": dropped, **data.info},
        "results": results,
        "coin_minus_ablation": {"mean": diff_mean, "ci95": diff_ci},
        "stability": {**worst, "explicit_stable": worst.get("sigma2_lambda_max", 0.0) < 2.0,
                      "positivity_warning": neg_warned} if worst else {},
    }
