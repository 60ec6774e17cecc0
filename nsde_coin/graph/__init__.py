"""Graph side of nsde_coin: Laplacians, graph diffusion solvers, the COIN model, data sets and the protocol.

Importing this package registers the graph solvers (family ``"graph"``) with :mod:`nsde_coin.solvers`. The names
below are the graph API; data sets, baselines and the benchmark protocol live in their submodules. The Laplacian
builder is ``nsde_coin.graph.laplacian.laplacian`` (not re-exported here: it would hide the submodule's name).
"""

from nsde_coin.graph.coin import COIN, COINBase, COINEnsemble, nll_loss
from nsde_coin.graph.diffusion import PositivityWarning, diffuse, solver_options, stability_report
from nsde_coin.graph.laplacian import (
    KINDS,
    GraphOperator,
    as_operator,
    graph_operator,
    lambda_max,
    laplacian_from_weights,
)
from nsde_coin.graph.layers import GraphDiffusion

__all__ = [
    "COIN",
    "COINBase",
    "COINEnsemble",
    "GraphDiffusion",
    "GraphOperator",
    "KINDS",
    "PositivityWarning",
    "as_operator",
    "diffuse",
    "graph_operator",
    "lambda_max",
    "laplacian_from_weights",
    "nll_loss",
    "solver_options",
    "stability_report",
]
