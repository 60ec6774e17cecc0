"""nsde_coin: neural networks as convection-diffusion equations.

A network is the evolution u(x, T) = E[f(X_T) | X_0 = x] of a base model f under the SDE dX = v dt + σ dW
(Feynman–Kac). The top level holds the core API (``nsde_coin.__all__``); each idea lives in one module:

* :mod:`nsde_coin.solvers` — the solver registry (SDE, ODE and graph families).
* :mod:`nsde_coin.fields`, :mod:`nsde_coin.sde`, :mod:`nsde_coin.brownian`, :mod:`nsde_coin.integrate`,
  :mod:`nsde_coin.model` — the Feynman–Kac SDE network; :mod:`nsde_coin.training` — ``fit`` / ``evaluate``.
* :mod:`nsde_coin.pde` — finite-difference reference solver for the convection-diffusion equation.
* :mod:`nsde_coin.graph` — Laplacians, graph diffusion solvers and layer, COIN, data sets, benchmark protocol
  (its own ``__all__``).
* :mod:`nsde_coin.apps` — few-shot learning, COVID-19 forecasting, label-scarce tabular classification (its own
  ``__all__``, loaded on first use).
* :mod:`nsde_coin.toydata`, :mod:`nsde_coin.plotting`, :mod:`nsde_coin.notebook` — the demo's data and figures and
  the notebooks' size switch (public modules, not re-exported here).

``import nsde_coin`` imports neither :mod:`nsde_coin.graph` nor :mod:`nsde_coin.apps`. The graph and application
names that used to live here still resolve for one release, with a
:class:`~nsde_coin.errors.NsdeDeprecationWarning` naming the new import path.
"""

import importlib

from nsde_coin import solvers as _solvers
from nsde_coin.brownian import FixedGridBrownian
from nsde_coin.errors import deprecated_getattr
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
from nsde_coin.loop import EarlyStopper
from nsde_coin.model import ConvectionDiffusionNet
from nsde_coin.pde import PDESolution, cfl_limit, make_grid, solve_convection_diffusion
from nsde_coin.sde import FeynmanKacSDE
from nsde_coin.solvers import (
    GRAD_MODES,
    NOISE_TYPES,
    SDE_TYPES,
    SolverInfo,
    check_solver,
    get_solver,
    list_solvers,
    register_solver,
)
from nsde_coin.training import FitResult, evaluate, fit

__version__ = "0.1.0"

__all__ = [
    # solver registry
    "GRAD_MODES",
    "NOISE_TYPES",
    "SDE_TYPES",
    "SolverInfo",
    "check_solver",
    "get_solver",
    "list_solvers",
    "register_solver",
    # fields, SDE, Brownian motion, Feynman–Kac, the network, training
    "ConvectionDiffusionNet",
    "DiagonalDiffusion",
    "Diffusion",
    "FeynmanKacSDE",
    "FixedGridBrownian",
    "FitResult",
    "GeneralDiffusion",
    "LinearDrift",
    "MLPDrift",
    "ScalarDiffusion",
    "StateDiagonalDiffusion",
    "ZeroDiffusion",
    "ZeroDrift",
    "evaluate",
    "feynman_kac",
    "fit",
    "EarlyStopper",
    # finite-difference PDE reference
    "PDESolution",
    "cfl_limit",
    "make_grid",
    "solve_convection_diffusion",
]

_GRAPH = ("COIN", "COINBase", "COINEnsemble", "DATASET_NAMES", "GRAPH_MODELS", "GraphDiffusion",
          "GraphOperator", "PositivityWarning", "Split", "TrainConfig", "as_operator", "build_model", "diffuse",
          "gaussian_knn_edges", "gaussian_knn_graph", "graph_operator", "lambda_max", "laplacian_from_weights",
          "load_dataset", "random_split", "run_protocol", "stability_report", "weighted_laplacian")
_APPS = ("CovidConfig", "FewShotConfig", "FewShotFeatures", "TabularConfig", "breast_cancer", "covid_snapshots",
         "digits_features", "load_csv", "load_england_covid",
         "load_features_file", "run_covid", "run_fewshot", "run_tabular")
# old top-level spellings (0.1.0) → their public home; each use warns (NsdeDeprecationWarning) and returns that object
DEPRECATED: dict[str, tuple[str, str]] = {
    **{name: ("nsde_coin.graph", name) for name in _GRAPH},
    **{name: ("nsde_coin.apps", name) for name in _APPS},
    "laplacian": ("nsde_coin.graph.laplacian", "laplacian"),
    "nll_loss": ("nsde_coin.graph", "node_nll_loss"),
    "validate": ("nsde_coin", "check_solver"),
    "by_size": ("nsde_coin.notebook", "by_size"),
    "notebook_size": ("nsde_coin.notebook", "notebook_size"),
    "save_figure": ("nsde_coin.notebook", "save_figure"),
    "ToyData": ("nsde_coin.toydata", "ToyData"),
    "make_spirals": ("nsde_coin.toydata", "make_spirals"),
    "plot_decision_regions": ("nsde_coin.plotting", "plot_decision_regions"),
}

# the graph solvers register themselves when nsde_coin.graph is imported: the registry loads it on first request
_solvers.register_family_loader("graph", lambda: importlib.import_module("nsde_coin.graph"))

__getattr__ = deprecated_getattr(__name__, DEPRECATED)
