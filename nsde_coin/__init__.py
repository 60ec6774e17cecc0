"""nsde_coin: neural networks as convection-diffusion equations.

A network is the evolution u(x, T) = E[f(X_T) | X_0 = x] of a base model f under the SDE dX = v dt + σ dW
(Feynman–Kac). The public API is re-exported here; each idea lives in one module:

* :mod:`nsde_coin.solvers` — the solver registry (SDE, ODE and graph families).
* :mod:`nsde_coin.fields`, :mod:`nsde_coin.sde`, :mod:`nsde_coin.brownian`, :mod:`nsde_coin.integrate`,
  :mod:`nsde_coin.model` — the Feynman–Kac SDE network.
* :mod:`nsde_coin.pde` — finite-difference reference solver for the convection-diffusion equation.
* :mod:`nsde_coin.graph` — Laplacians, graph diffusion solvers, COIN, data sets, benchmark protocol.
* :mod:`nsde_coin.apps` — few-shot learning, COVID-19 forecasting, label-scarce tabular classification.
"""

import importlib
from typing import Any

from nsde_coin import solvers as _solvers
from nsde_coin._nbsize import by_size, notebook_size, save_figure
from nsde_coin.brownian import FixedGridBrownian
from nsde_coin.fields import (
    DiagonalDiffusion,
    Diffusion,
    GeneralDiffusion,
    LinearDrift,
    MLPDrift,
    ScalarDiffusion,
    StateDiagonalDiffusion,
    ZeroDiffusion,
    ZeroDrift,
)
from nsde_coin.integrate import feynman_kac
from nsde_coin.model import ConvectionDiffusionNet
from nsde_coin.pde import PDESolution, cfl_limit, make_grid, solve_convection_diffusion
from nsde_coin.plotting import plot_decision_regions
from nsde_coin.sde import FeynmanKacSDE
from nsde_coin.solvers import (
    GRAD_MODES,
    NOISE_TYPES,
    SDE_TYPES,
    SolverInfo,
    get_solver,
    list_solvers,
    register_solver,
    validate,
)
from nsde_coin.toydata import ToyData, make_spirals
from nsde_coin.training import FitResult, evaluate, fit

# Graph and application names load on first use (PEP 562): ``import nsde_coin`` (and so every core module) never
# imports nsde_coin.graph or nsde_coin.apps, which keeps the imports of the core one-way and the CLI fast.
_LAZY = {
    "CovidConfig": "nsde_coin.apps.covid", "run_covid": "nsde_coin.apps.covid",
    "covid_snapshots": "nsde_coin.apps.covid_data", "load_england_covid": "nsde_coin.apps.covid_data",
    "FewShotConfig": "nsde_coin.apps.fewshot", "run_fewshot": "nsde_coin.apps.fewshot",
    "FewShotFeatures": "nsde_coin.apps.fewshot_data", "digits_features": "nsde_coin.apps.fewshot_data",
    "load_features_file": "nsde_coin.apps.fewshot_data",
    "gaussian_knn_edges": "nsde_coin.apps.knn", "gaussian_knn_graph": "nsde_coin.apps.knn",
    "weighted_laplacian": "nsde_coin.apps.knn",
    "TabularConfig": "nsde_coin.apps.tabular", "breast_cancer": "nsde_coin.apps.tabular",
    "load_csv": "nsde_coin.apps.tabular", "run_tabular": "nsde_coin.apps.tabular",
    "GRAPH_MODELS": ("nsde_coin.graph.baselines", "MODELS"), "build_model": "nsde_coin.graph.baselines",
    "COIN": "nsde_coin.graph.coin", "COINBase": "nsde_coin.graph.coin", "COINEnsemble": "nsde_coin.graph.coin",
    "nll_loss": "nsde_coin.graph.coin",
    "DATASET_NAMES": "nsde_coin.graph.datasets", "load_dataset": "nsde_coin.graph.datasets",
    "PositivityWarning": "nsde_coin.graph.diffusion", "diffuse": "nsde_coin.graph.diffusion",
    "stability_report": "nsde_coin.graph.diffusion",
    "GraphDiffusion": "nsde_coin.graph.layers",
    "GraphOperator": "nsde_coin.graph.laplacian", "as_operator": "nsde_coin.graph.laplacian",
    "graph_operator": "nsde_coin.graph.laplacian", "lambda_max": "nsde_coin.graph.laplacian",
    "laplacian": "nsde_coin.graph.laplacian", "laplacian_from_weights": "nsde_coin.graph.laplacian",
    "EarlyStopper": "nsde_coin.graph.protocol", "TrainConfig": "nsde_coin.graph.protocol",
    "run_protocol": "nsde_coin.graph.protocol",
    "Split": "nsde_coin.graph.splits", "random_split": "nsde_coin.graph.splits",
}
# the graph solvers register themselves when nsde_coin.graph is imported: the registry loads it on first request
_solvers.register_family_loader("graph", lambda: importlib.import_module("nsde_coin.graph"))


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'nsde_coin' has no attribute {name!r}")
    module, attr = target if isinstance(target, tuple) else (target, name)
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "GRAD_MODES",
    "NOISE_TYPES",
    "SDE_TYPES",
    "SolverInfo",
    "get_solver",
    "list_solvers",
    "register_solver",
    "validate",
    # core SDE network (issue 2)
    "ConvectionDiffusionNet",
    "DiagonalDiffusion",
    "Diffusion",
    "FeynmanKacSDE",
    "FixedGridBrownian",
    "GeneralDiffusion",
    "LinearDrift",
    "MLPDrift",
    "ScalarDiffusion",
    "StateDiagonalDiffusion",
    "ZeroDiffusion",
    "ZeroDrift",
    "feynman_kac",
    "FitResult",
    "ToyData",
    "evaluate",
    "fit",
    "make_spirals",
    "plot_decision_regions",
    # finite-difference PDE (issue 4)
    "PDESolution",
    "by_size",
    "cfl_limit",
    "make_grid",
    "notebook_size",
    "save_figure",
    "solve_convection_diffusion",
    # graph COIN (issue 3)
    "COIN",
    "COINBase",
    "COINEnsemble",
    "GraphDiffusion",
    "GraphOperator",
    "PositivityWarning",
    "as_operator",
    "diffuse",
    "graph_operator",
    "lambda_max",
    "laplacian",
    "laplacian_from_weights",
    "nll_loss",
    "stability_report",
    "DATASET_NAMES",
    "EarlyStopper",
    "GRAPH_MODELS",
    "Split",
    "TrainConfig",
    "build_model",
    "load_dataset",
    "random_split",
    "run_protocol",
    # applications (issue 5)
    "CovidConfig",
    "FewShotConfig",
    "FewShotFeatures",
    "TabularConfig",
    "breast_cancer",
    "covid_snapshots",
    "digits_features",
    "gaussian_knn_edges",
    "gaussian_knn_graph",
    "load_csv",
    "load_england_covid",
    "load_features_file",
    "run_covid",
    "run_fewshot",
    "run_tabular",
    "weighted_laplacian",
]
