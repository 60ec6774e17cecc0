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

from nsde_coin._nbsize import by_size, notebook_size, save_figure
from nsde_coin.apps.covid import CovidConfig, run_covid
from nsde_coin.apps.covid_data import covid_snapshots, load_england_covid
from nsde_coin.apps.fewshot import FewShotConfig, run_fewshot
from nsde_coin.apps.fewshot_data import FewShotFeatures, digits_features, load_features_file
from nsde_coin.apps.knn import gaussian_knn_edges, gaussian_knn_graph, weighted_laplacian
from nsde_coin.apps.tabular import TabularConfig, breast_cancer, load_csv, run_tabular
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
from nsde_coin.graph.baselines import MODELS as GRAPH_MODELS
from nsde_coin.graph.baselines import build_model
from nsde_coin.graph.coin import COIN, COINBase, COINEnsemble, nll_loss
from nsde_coin.graph.datasets import DATASET_NAMES, load_dataset
from nsde_coin.graph.diffusion import PositivityWarning, diffuse, stability_report
from nsde_coin.graph.laplacian import (
    GraphOperator,
    as_operator,
    graph_operator,
    lambda_max,
    laplacian,
    laplacian_from_weights,
)
from nsde_coin.graph.protocol import EarlyStopper, TrainConfig, run_protocol
from nsde_coin.graph.splits import Split, random_split
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
