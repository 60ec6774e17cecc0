"""The PyG baselines of the graph benchmark, each a :class:`GraphNet` with PyG's contract.

One contract for every graph model (PyG's): the inputs go to the call, never to the constructor. A
:class:`GraphNet` is built from sizes, ``GCN(in_dim, num_classes, ...)``, and ``forward(x, edge_index)`` /
``log_prob(x, edge_index)`` return log-probabilities (n, C) of all nodes; :class:`~nsde_coin.graph.coin.COIN` takes
the same arguments in the same order (``log_prob(x, edge_index)`` → log-probabilities, ``forward`` → probabilities).
``deterministic`` is ``True`` for models without dropout (SGC; COIN as built by the registry).
What is built per graph is built once: the PyG layers run with ``cached=True`` (normalised adjacency, SGC's Â^K X,
on the first call) and COIN keeps its operator per ``edge_index`` tensor in :mod:`nsde_coin.graph.cache`.
The registry that builds them by name with the paper's defaults (``MODELS``, :func:`build_model`,
:func:`resolve_hparams` ...) is :mod:`nsde_coin.graph.models`; those names are still importable from here.

Sparse features: the first layer of MLP / GCN / GAT / APPNP multiplies ``data.x_csr`` (a sparse CSR tensor); input
dropout drops the stored non-zeros, which is the same distribution as dense dropout (dropped zeros stay zero).
"""

from __future__ import annotations

import inspect
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from nsde_coin._lazy import lazy_attributes
from nsde_coin.errors import warn_deprecated

__all__ = ["GraphNet", "sparse_dropout", "takes_inputs"]

_MOVED_TO_MODELS = ("MODELS", "build_model", "default_hparams", "model_names", "resolve_hparams")


# the registry moved to nsde_coin.graph.models, which imports this module: its names load on first use (no cycle)
__getattr__, __dir__ = lazy_attributes(__name__, {name: "nsde_coin.graph.models" for name in _MOVED_TO_MODELS})


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
    """A graph model with PyG's contract: ``forward(x, edge_index)`` → (n, C) log-probabilities.

    Shapes: ``x`` (n, d) dense or sparse CSR features, ``edge_index`` (2, E) int64; output (n, C).

    Attributes:
        deterministic: no dropout/noise: the training forward pass also gives the validation metrics.
        name: registry name.
    """

    deterministic: bool = False
    name: str = "model"

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # the old contract's ``net()`` on a build_model model: its data's inputs, with a deprecation warning
        if not args and not kwargs and getattr(self, "graph_inputs", None) is not None and takes_inputs(self):
            warn_deprecated("net() without inputs", "net(x, edge_index) or net.log_prob(*net.graph_inputs)")
            args = self.graph_inputs
        return super().__call__(*args, **kwargs)

    def log_prob(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """(n, C) log-probabilities (the baselines' ``forward``; named as COIN's, so one call serves every model)."""
        return self(x, edge_index)


class MLP(GraphNet):
    """x → dropout → Linear(d, h) → ReLU → dropout → Linear(h, C) → log-softmax (``edge_index`` is ignored)."""

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 64, dropout: float = 0.5):
        super().__init__()
        self.lin1 = nn.Linear(in_dim, hidden)
        self.lin2 = nn.Linear(hidden, num_classes)
        self.p = dropout

    def forward(self, x: torch.Tensor, edge_index: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.lin1(sparse_dropout(x, self.p, self.training)).relu()
        return F.log_softmax(self.lin2(F.dropout(h, self.p, self.training)), dim=1)


class GCN(GraphNet):
    """Two ``GCNConv`` layers (Kipf & Welling), dropout on the input and the hidden layer."""

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 64, dropout: float = 0.8):
        super().__init__()
        from torch_geometric.nn import GCNConv

        self.p = dropout
        self.conv1 = GCNConv(in_dim, hidden, cached=True)
        self.conv2 = GCNConv(hidden, num_classes, cached=True)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = self.conv1(sparse_dropout(x, self.p, self.training), edge_index).relu()
        return F.log_softmax(self.conv2(F.dropout(h, self.p, self.training), edge_index), dim=1)


class GAT(GraphNet):
    """``GATConv`` heads × hidden (concat, ELU) → ``GATConv`` 1 head; attention and feature dropout."""

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 64, heads: int = 8, attn_dropout: float = 0.3,
                 dropout: float = 0.6):
        super().__init__()
        from torch_geometric.nn import GATConv

        self.p = dropout
        self.conv1 = GATConv(in_dim, hidden, heads=heads, dropout=attn_dropout)
        self.conv2 = GATConv(hidden * heads, num_classes, heads=1, concat=False, dropout=attn_dropout)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = F.elu(self.conv1(sparse_dropout(x, self.p, self.training), edge_index))
        return F.log_softmax(self.conv2(F.dropout(h, self.p, self.training), edge_index), dim=1)


class APPNPNet(GraphNet):
    """MLP (dropout) → personalised-PageRank propagation ``APPNP(K, alpha)`` (Klicpera et al.)."""

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 64, dropout: float = 0.5, alpha: float = 0.1,
                 K: int = 10):
        super().__init__()
        from torch_geometric.nn import APPNP

        self.p = dropout
        self.lin1 = nn.Linear(in_dim, hidden)
        self.lin2 = nn.Linear(hidden, num_classes)
        self.prop = APPNP(K=K, alpha=alpha, cached=True)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = self.lin1(sparse_dropout(x, self.p, self.training)).relu()
        h = self.lin2(F.dropout(h, self.p, self.training))
        return F.log_softmax(self.prop(h, edge_index), dim=1)


class SGC(GraphNet):
    """Simplified graph convolution: ``SGConv`` with K hops; Â^K X is computed once (cached), then a linear layer.

    ``x`` dense (n, d): the first call's features are propagated and kept (PyG's ``cached=True``)."""

    deterministic = True

    def __init__(self, in_dim: int, num_classes: int, K: int = 2):
        super().__init__()
        from torch_geometric.nn import SGConv

        self.conv = SGConv(in_dim, num_classes, K=K, cached=True)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.conv(x, edge_index), dim=1)


def takes_inputs(net: nn.Module) -> bool:
    """Whether ``net`` follows the contract (its ``forward`` takes the inputs); ``False`` for a model written for the
    old one, bound to its graph with ``forward()`` taking nothing."""
    return len(inspect.signature(net.forward).parameters) > 0
