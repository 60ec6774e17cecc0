"""The model classes of the graph benchmark: COIN bound to a graph and the PyG baselines, each a :class:`GraphNet`.

A :class:`GraphNet` is an ``nn.Module`` bound to one graph whose ``forward()`` (no arguments) returns
log-probabilities of shape (n, C) for all nodes; ``deterministic`` is ``True`` for models without dropout (COIN, SGC).
The registry that builds them by name with the paper's defaults (``MODELS``, :func:`build_model`,
:func:`resolve_hparams` ...) is :mod:`nsde_coin.graph.models`; those names are still importable from here.

Sparse features: the first layer of MLP / GCN / GAT / APPNP multiplies ``data.x_csr`` (a sparse CSR tensor); input
dropout drops the stored non-zeros, which is the same distribution as dense dropout (dropped zeros stay zero).
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GraphNet", "sparse_dropout"]

_MOVED_TO_MODELS = ("MODELS", "build_model", "default_hparams", "model_names", "resolve_hparams")


def __getattr__(name: str) -> Any:
    """The registry names that moved to :mod:`nsde_coin.graph.models`, loaded on first use (no import cycle)."""
    if name in _MOVED_TO_MODELS:
        return getattr(importlib.import_module("nsde_coin.graph.models"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
