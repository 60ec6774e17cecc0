"""Graph side of nsde_coin: Laplacians, graph diffusion solvers, the COIN model, data sets and the protocol.

Importing this package registers the graph solvers (family ``"graph"``, one module each in
:mod:`nsde_coin.graph.solvers`) with :mod:`nsde_coin.solvers`. The names below are the graph API; the rest lives in
submodules: Laplacian constructors (:mod:`~nsde_coin.graph.laplacian`), the cached operator
(:mod:`~nsde_coin.graph.operator`), λ_max (:mod:`~nsde_coin.graph.spectral`), kNN graphs over samples
(:mod:`~nsde_coin.graph.knn`), ``diffuse`` (:mod:`~nsde_coin.graph.diffusion`), data sets, the model classes
(:mod:`~nsde_coin.graph.baselines`) and their registry (:mod:`~nsde_coin.graph.models`), the benchmark protocol. The
Laplacian builder is ``nsde_coin.graph.laplacian.laplacian`` (not re-exported here: it would hide the submodule's
name).
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
