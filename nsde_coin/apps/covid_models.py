"""The COVID-19 forecasting models' building blocks (see :mod:`nsde_coin.apps.covid` for the protocol).

* :class:`CovidBase` — COIN's base for a regression: a linear map of the ``lags`` daily counts plus a small ELU
  network, one value per node.
* :class:`CovidGCN` and its stacked form :func:`gcn_forward_stacked` over the GCN-normalised adjacency
  :func:`gcn_adjacency` — the paper's GCN baseline, R independent copies evaluated at once.
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CovidBase", "CovidGCN", "gcn_adjacency", "gcn_forward_stacked"]


class CovidBase(nn.Module):
    """COIN's base regressor: ``shortcut(x) + lin2(ELU(lin1(x)))``, x (n, lags) → (n, 1)."""

    def __init__(self, lags: int = 8, hidden: int = 16):
        super().__init__()
        self.shortcut = nn.Linear(lags, 1)
        self.lin1 = nn.Linear(lags, hidden)
        self.lin2 = nn.Linear(hidden, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.lin2(F.elu(self.lin1(x)))


class CovidGCN(nn.Module):
    """Two-layer GCN baseline built from PyG ``GCNConv`` (normalisation precomputed by ``gcn_norm``, passed as
    weights): ``conv2(dropout(ELU(conv1(x))))``, x (n, lags) → (n, 1). Used to initialise and to check
    :func:`gcn_forward_stacked`, which evaluates many copies of it at once."""

    def __init__(self, lags: int = 8, hidden: int = 16, dropout: float = 0.0):
        super().__init__()
        from torch_geometric.nn import GCNConv

        self.conv1 = GCNConv(lags, hidden, normalize=False)
        self.conv2 = GCNConv(hidden, 1, normalize=False)
        self.dropout = dropout

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor) -> Tensor:
        h = F.dropout(F.elu(self.conv1(x, edge_index, edge_weight)), self.dropout, self.training)
        return self.conv2(h, edge_index, edge_weight)


def gcn_adjacency(edge_index: Tensor, edge_weight: Tensor, num_nodes: int) -> Tensor:
    """GCN's propagation matrix Â = D̃^{-1/2}(A + I)D̃^{-1/2} (PyG ``gcn_norm``) as torch sparse CSR, Â[i, j] being
    the weight of the message j → i (what ``GCNConv`` sums)."""
    from torch_geometric.nn.conv.gcn_conv import gcn_norm

    ei, ew = gcn_norm(edge_index, edge_weight, num_nodes, add_self_loops=True)
    coo = torch.sparse_coo_tensor(ei.flip(0), ew, (num_nodes, num_nodes), check_invariants=False).coalesce()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support.*")
        return coo.to_sparse_csr()


def gcn_forward_stacked(params: dict[str, Tensor], ax: Tensor, adj: Tensor, keep: Optional[Tensor] = None
                        ) -> Tensor:
    """R copies of :class:`CovidGCN` at once: (R, n) predictions.

    GCNConv computes Â(xΘ) + b = (Âx)Θ + b, so the first layer uses ``ax`` = Â x (n, lags), computed once for
    all copies, and the second layer is a single sparse product Â z with z (n, R). ``keep`` (R, n, hidden) is the
    inverted-dropout multiplier of the hidden layer (``None`` at evaluation). ``params`` are stacked
    :class:`CovidGCN` parameters (``conv*.lin.weight`` in ``nn.Linear`` layout, ``conv*.bias``).
    """
    w1, b1 = params["conv1.lin.weight"], params["conv1.bias"]  # (R, H, lags), (R, H)
    w2, b2 = params["conv2.lin.weight"], params["conv2.bias"]  # (R, 1, H), (R, 1)
    h = F.elu(torch.einsum("nf,rhf->rnh", ax, w1) + b1[:, None, :])
    if keep is not None:
        h = h * keep
    z = torch.einsum("rnh,rh->nr", h, w2[:, 0, :])
    return (adj @ z).T + b2
