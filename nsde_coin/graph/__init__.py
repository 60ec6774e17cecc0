"""Graph side of nsde_coin: Laplacians, graph diffusion solvers and layer, the COIN model, data sets and the protocol.

Importing this package registers the graph solvers (family ``"graph"``) with :mod:`nsde_coin.solvers`. The names in
``__all__`` are the graph API; data sets, splits, baselines and the protocol load on first use (they import
torch_geometric and the experiment runner). Build a graph's Laplacian with :func:`graph_operator` (edge list →
:class:`GraphOperator`, what every solver, :func:`diffuse`, :class:`COIN` and :func:`lambda_max` take); the same
matrix as a torch sparse tensor is ``nsde_coin.graph.laplacian.laplacian`` (not re-exported here: it would hide the
submodule's name); :func:`laplacian_from_weights` builds it from a weight matrix and :func:`as_operator` wraps a
Laplacian you already have.

The solvers are one module each in :mod:`nsde_coin.graph.solvers`; the rest lives in submodules: the cached
operator (:mod:`~nsde_coin.graph.operator`), λ_max (:mod:`~nsde_coin.graph.spectral`), kNN graphs over samples
(:mod:`~nsde_coin.graph.knn`), the model classes (:mod:`~nsde_coin.graph.baselines`) and their registry
(:mod:`~nsde_coin.graph.models`).
"""

from nsde_coin._lazy import lazy_attributes
from nsde_coin.graph.coin import COIN, COINBase, node_nll_loss
from nsde_coin.graph.diffusion import PositivityWarning, diffuse, solver_options, stability_report
from nsde_coin.graph.ensemble import COINEnsemble
from nsde_coin.graph.laplacian import (
    KINDS,
    GraphOperator,
    as_operator,
    graph_operator,
    lambda_max,
    laplacian_from_weights,
)
from nsde_coin.graph.layers import GraphDiffusion

_LAZY = {
    "DATASET_NAMES": "nsde_coin.graph.datasets", "load_dataset": "nsde_coin.graph.datasets",
    "Split": "nsde_coin.graph.splits", "random_split": "nsde_coin.graph.splits",
    "GRAPH_MODELS": ("nsde_coin.graph.models", "MODELS"), "build_model": "nsde_coin.graph.models",
    "TrainConfig": "nsde_coin.graph.experiment.train",
    "run_protocol": "nsde_coin.graph.experiment.runner",
    "gaussian_knn_edges": "nsde_coin.graph.knn", "gaussian_knn_graph": "nsde_coin.graph.knn",
    "weighted_laplacian": "nsde_coin.graph.knn",
}
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, {"nll_loss": ("nsde_coin.graph", "node_nll_loss"),
                                                                "EarlyStopper": ("nsde_coin", "EarlyStopper")})

__all__ = [
    # operators and diffusion
    "KINDS",
    "GraphDiffusion",
    "GraphOperator",
    "PositivityWarning",
    "as_operator",
    "diffuse",
    "graph_operator",
    "lambda_max",
    "laplacian_from_weights",
    "solver_options",
    "stability_report",
    # COIN
    "COIN",
    "COINBase",
    "COINEnsemble",
    "node_nll_loss",
    # data, baselines, protocol (loaded on first use)
    "DATASET_NAMES",
    "GRAPH_MODELS",
    "Split",
    "TrainConfig",
    "build_model",
    "load_dataset",
    "random_split",
    "run_protocol",
    # Gaussian kNN graphs over samples (loaded on first use)
    "gaussian_knn_edges",
    "gaussian_knn_graph",
    "weighted_laplacian",
]
