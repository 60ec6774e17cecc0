"""Models of the graph benchmark, built by name: COIN, its layer_num = 0 ablation and PyG baselines.

Every builder returns a :class:`GraphNet`: an ``nn.Module`` bound to one graph whose ``forward()`` (no arguments)
returns log-probabilities of shape (n, C) for all nodes. ``deterministic`` is ``True`` for models without dropout
(COIN, SGC): the protocol then reads the validation metrics off the training forward pass instead of running a
second, eval-mode pass.

Defaults follow the paper's table of baselines (all trained with Adam, lr 0.01, weight decay 5e-4):

======== ==========================================================================================
mlp      2 layers, hidden 64, dropout 0.5 (on the input and the hidden layer)
gcn      2 ``GCNConv`` layers, hidden 64, dropout 0.8 (input and hidden)
gat      ``GATConv`` 8 heads × 64 (concat, ELU) → 1 head; attention dropout 0.3, feature dropout 0.6
appnp    MLP 64 (dropout 0.5) → ``APPNP`` propagation, α = 0.1, K = 10
sgc      ``SGConv`` K = 2: Â²X precomputed once, then logistic regression
coin     COIN (layer_num 20, σ² 0.35, explicit solver: the paper's Cora setting)
coin_base COIN with layer_num = 0, the base ResNet alone (the paper's ablation)
======== ==========================================================================================

Sparse features: the first layer of MLP / GCN / GAT / APPNP multiplies ``data.x_csr`` (a sparse CSR tensor); input
dropout drops the stored non-zeros, which is the same distribution as dense dropout (dropped zeros stay zero).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nsde_coin._checks import is_int, is_real
from nsde_coin.errors import invalid_choice
from nsde_coin.graph.datasets import csr_features, dense_features

__all__ = ["MODELS", "GraphNet", "build_model", "default_hparams", "model_names", "resolve_hparams", "sparse_dropout"]


def sparse_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout on the stored values of a sparse CSR tensor (kept values scaled by 1/(1−p)); dense input → F.dropout."""
    if not training or p == 0.0:
        return x
    if x.layout != torch.sparse_csr:
        return F.dropout(x, p, True)
    vals = x.values()
    keep = torch.rand_like(vals) >= p
    return torch.sparse_csr_tensor(x.crow_indices(), x.col_indices(), vals * keep / (1.0 - p), size=x.shape,
                                   check_invariants=False)


class GraphNet(nn.Module):
    """A model bound to one graph: ``forward()`` → (n, C) log-probabilities.

    Attributes:
        deterministic: no dropout/noise: the training forward pass also gives the validation metrics.
        name: registry name.
    """

    deterministic: bool = False
    name: str = "model"

    def forward(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class MLP(GraphNet):
    """x → dropout → Linear(d, h) → ReLU → dropout → Linear(h, C) → log-softmax."""

    def __init__(self, x: torch.Tensor, num_classes: int, hidden: int = 64, dropout: float = 0.5):
        super().__init__()
        self.x = x
        self.lin1 = nn.Linear(x.shape[1], hidden)
        self.lin2 = nn.Linear(hidden, num_classes)
        self.p = dropout

    def forward(self) -> torch.Tensor:
        h = self.lin1(sparse_dropout(self.x, self.p, self.training)).relu()
        return F.log_softmax(self.lin2(F.dropout(h, self.p, self.training)), dim=1)


class GCN(GraphNet):
    """Two ``GCNConv`` layers (Kipf & Welling), dropout on the input and the hidden layer."""

    def __init__(self, x: torch.Tensor, edge_index: torch.Tensor, num_classes: int, hidden: int = 64,
                 dropout: float = 0.8):
        super().__init__()
        from torch_geometric.nn import GCNConv

        self.x, self.edge_index, self.p = x, edge_index, dropout
        self.conv1 = GCNConv(x.shape[1], hidden, cached=True)
        self.conv2 = GCNConv(hidden, num_classes, cached=True)

    def forward(self) -> torch.Tensor:
        h = self.conv1(sparse_dropout(self.x, self.p, self.training), self.edge_index).relu()
        return F.log_softmax(self.conv2(F.dropout(h, self.p, self.training), self.edge_index), dim=1)


class GAT(GraphNet):
    """``GATConv`` heads × hidden (concat, ELU) → ``GATConv`` 1 head; attention and feature dropout."""

    def __init__(self, x: torch.Tensor, edge_index: torch.Tensor, num_classes: int, hidden: int = 64,
                 heads: int = 8, attn_dropout: float = 0.3, dropout: float = 0.6):
        super().__init__()
        from torch_geometric.nn import GATConv

        self.x, self.edge_index, self.p = x, edge_index, dropout
        self.conv1 = GATConv(x.shape[1], hidden, heads=heads, dropout=attn_dropout)
        self.conv2 = GATConv(hidden * heads, num_classes, heads=1, concat=False, dropout=attn_dropout)

    def forward(self) -> torch.Tensor:
        h = F.elu(self.conv1(sparse_dropout(self.x, self.p, self.training), self.edge_index))
        return F.log_softmax(self.conv2(F.dropout(h, self.p, self.training), self.edge_index), dim=1)


class APPNPNet(GraphNet):
    """MLP (dropout) → personalised-PageRank propagation ``APPNP(K, alpha)`` (Klicpera et al.)."""

    def __init__(self, x: torch.Tensor, edge_index: torch.Tensor, num_classes: int, hidden: int = 64,
                 dropout: float = 0.5, alpha: float = 0.1, K: int = 10):
        super().__init__()
        from torch_geometric.nn import APPNP

        self.x, self.edge_index, self.p = x, edge_index, dropout
        self.lin1 = nn.Linear(x.shape[1], hidden)
        self.lin2 = nn.Linear(hidden, num_classes)
        self.prop = APPNP(K=K, alpha=alpha, cached=True)

    def forward(self) -> torch.Tensor:
        h = self.lin1(sparse_dropout(self.x, self.p, self.training)).relu()
        h = self.lin2(F.dropout(h, self.p, self.training))
        return F.log_softmax(self.prop(h, self.edge_index), dim=1)


class SGC(GraphNet):
    """Simplified graph convolution: ``SGConv`` with K hops; Â^K X is computed once (cached), then a linear layer."""

    deterministic = True

    def __init__(self, x: torch.Tensor, edge_index: torch.Tensor, num_classes: int, K: int = 2):
        super().__init__()
        from torch_geometric.nn import SGConv

        self.x, self.edge_index = x, edge_index
        self.conv = SGConv(x.shape[1], num_classes, K=K, cached=True)

    def forward(self) -> torch.Tensor:
        return F.log_softmax(self.conv(self.x, self.edge_index), dim=1)


class COINNet(GraphNet):
    """Wraps :class:`nsde_coin.graph.coin.COIN` bound to one graph (deterministic: no dropout)."""

    deterministic = True

    def __init__(self, x: torch.Tensor, edge_index: torch.Tensor, num_classes: int, layer_num: int = 20,
                 sigma2: float = 0.35, solver: str = "explicit", allow_unstable: bool = False,
                 laplacian_kind: str = "paper"):
        super().__init__()
        from nsde_coin.graph.coin import COIN

        self.x = x
        self.coin = COIN(x.shape[1], num_classes, layer_num=layer_num, sigma2=sigma2, solver=solver,
                         allow_unstable=allow_unstable, laplacian_kind=laplacian_kind)
        # the operator is kept per (edge_index tensor, kind) in nsde_coin.graph.cache: built once per graph and
        # shared by every run on it
        self.coin.set_graph(edge_index, x.shape[0])

    def forward(self) -> torch.Tensor:
        return self.coin.log_prob(self.x)


def _count(low: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: is_int(v) and v >= low), f"an int >= {low}"


def _fraction(low_open: bool, high_open: bool) -> tuple[Callable[[Any], bool], str]:
    def ok(v: Any) -> bool:
        if not is_real(v) or not math.isfinite(v):
            return False
        return (0 < v if low_open else 0 <= v) and (v < 1 if high_open else v <= 1)

    return ok, f"a number in {'(' if low_open else '['}0, 1{')' if high_open else ']'}"


# hyper-parameter -> (check, what is valid), for every model that has it (COIN's own in _coin_checks)
_HP_VALID: dict[str, tuple[Callable[[Any], bool], str]] = {
    "hidden": _count(1), "heads": _count(1), "K": _count(1),
    "dropout": _fraction(False, True), "attn_dropout": _fraction(False, True), "alpha": _fraction(True, False),
    "allow_unstable": ((lambda v: isinstance(v, bool)), "true or false"),
}


def _check_hparams(name: str, hp: dict[str, Any]) -> None:
    """One-line ``ValueError`` naming the hyper-parameter, its value and what is valid (before any tensor is made:
    ``hidden='abc'`` or ``hidden=-4`` would otherwise fail deep inside torch)."""
    for key, val in hp.items():
        rule = _HP_VALID.get(key)
        if rule is not None and not rule[0](val):
            raise ValueError(f"hyper-parameter {key}={val!r} of model {name!r} is not valid; expected {rule[1]}")


def _coin_checks(hp: dict[str, Any]) -> None:
    if not isinstance(hp["layer_num"], int) or isinstance(hp["layer_num"], bool) or hp["layer_num"] < 0:
        raise ValueError(f"layer_num must be an int >= 0, got {hp['layer_num']!r}")
    sigma2 = hp["sigma2"]
    if not is_real(sigma2) or not float(sigma2) > 0:
        raise ValueError(f"sigma2 must be > 0 (it is the diffusion coefficient σ²), got {hp['sigma2']!r}")
    from nsde_coin.solvers import get_solver

    get_solver(hp["solver"], "graph")  # unknown solver -> ValueError listing the graph solvers
    from nsde_coin.graph.laplacian import KINDS

    if hp["laplacian_kind"] not in KINDS:
        raise ValueError(invalid_choice("laplacian_kind", hp["laplacian_kind"], KINDS))


def _build_coin(data, num_classes: int, hp: dict[str, Any]) -> GraphNet:
    return COINNet(csr_features(data), data.edge_index, num_classes, **hp)


def _build_coin_base(data, num_classes: int, hp: dict[str, Any]) -> GraphNet:
    return COINNet(csr_features(data), data.edge_index, num_classes, layer_num=0, sigma2=1.0, solver="explicit")


def _sgc(data, num_classes: int, hp: dict[str, Any]) -> GraphNet:
    return SGC(dense_features(data), data.edge_index, num_classes, **hp)


# name -> (builder(data, num_classes, hparams), default hparams)
MODELS: dict[str, tuple[Callable[..., GraphNet], dict[str, Any]]] = {
    "coin": (_build_coin, {"layer_num": 20, "sigma2": 0.35, "solver": "explicit", "allow_unstable": False,
                           "laplacian_kind": "paper"}),
    "coin_base": (_build_coin_base, {}),
    "mlp": (lambda d, c, hp: MLP(csr_features(d), c, **hp), {"hidden": 64, "dropout": 0.5}),
    "gcn": (lambda d, c, hp: GCN(csr_features(d), d.edge_index, c, **hp), {"hidden": 64, "dropout": 0.8}),
    "gat": (lambda d, c, hp: GAT(csr_features(d), d.edge_index, c, **hp),
            {"hidden": 64, "heads": 8, "attn_dropout": 0.3, "dropout": 0.6}),
    "appnp": (lambda d, c, hp: APPNPNet(csr_features(d), d.edge_index, c, **hp),
              {"hidden": 64, "dropout": 0.5, "alpha": 0.1, "K": 10}),
    "sgc": (_sgc, {"K": 2}),
}


def model_names() -> list[str]:
    """Registered model names."""
    return list(MODELS)


def _check_name(name: str) -> str:
    if not isinstance(name, str) or name.lower() not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")
    return name.lower()


def default_hparams(name: str) -> dict[str, Any]:
    """A copy of the default hyper-parameters of model ``name``."""
    return dict(MODELS[_check_name(name)][1])


def resolve_hparams(name: str, hparams: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults of ``name`` updated by ``hparams``; unknown keys and invalid values (a non-integer or non-positive
    ``hidden``, a dropout outside [0, 1) ...) raise a one-line ``ValueError`` naming the key, the value and what is
    valid."""
    hp = default_hparams(name)
    for key, val in (hparams or {}).items():
        if key not in hp:
            valid = ", ".join(hp) or "(none)"
            raise ValueError(f"unknown hyper-parameter {key!r} for model {name!r}; valid: {valid}")
        val = val.item() if isinstance(val, np.generic) else val  # JSON-able records, stable resume keys
        if isinstance(hp[key], float) and isinstance(val, int) and not isinstance(val, bool):
            val = float(val)  # sigma2=1 and sigma2=1.0 are one setting: one record key
        hp[key] = val
    _check_hparams(name.lower(), hp)
    if name.lower() == "coin":
        _coin_checks(hp)
    return hp


def build_model(name: str, data, hparams: dict[str, Any] | None = None, *, seed: int | None = None) -> GraphNet:
    """Build model ``name`` bound to ``data`` (parameters drawn from ``torch.manual_seed(seed)`` when given)."""
    key = _check_name(name)
    builder, _ = MODELS[key]
    hp = resolve_hparams(key, hparams)
    num_classes = int(getattr(data, "num_classes", int(data.y.max()) + 1))
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            net = builder(data, num_classes, hp)
    else:
        net = builder(data, num_classes, hp)
    net.name = key
    return net

