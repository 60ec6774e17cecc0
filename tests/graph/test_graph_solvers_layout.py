"""The graph package's layout: one small module per graph solver, each registering exactly the solver it is named
after, in the table order; the modules that were split or moved keep their old import paths."""

import importlib
import inspect
from pathlib import Path

import pytest

import nsde_coin.graph.solvers as graph_solvers
from nsde_coin.solvers import GraphSolverInfo, list_solvers

PACKAGE = Path(graph_solvers.__file__).parent
GRAPH = PACKAGE.parent


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_one_small_module_per_registered_graph_solver():
    modules = sorted(p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("_"))
    infos = list_solvers("graph")
    assert [i.name for i in infos] == list(graph_solvers.TABLE)  # table order = the order the registry lists
    assert sorted(graph_solvers.TABLE) == modules  # every module registers a solver, every solver has a module
    for info in infos:
        assert isinstance(info, GraphSolverInfo)
        assert info.impl.__module__ == f"{graph_solvers.__name__}.{info.name}"  # registered by its own module
        assert _lines(PACKAGE / f"{info.name}.py") <= 150, info.name  # small (the largest, random_walk: 101)
        # the contract diffuse calls: impl(u, op, sigma2, layer_num, **options), options keyword-only
        params = list(inspect.signature(info.impl).parameters.values())
        assert [p.name for p in params[:4]] == ["u", "op", "s", "k"]
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[4:]), info.name


@pytest.mark.parametrize("module", ["laplacian", "operator", "spectral", "diffusion", "knn", "models", "baselines"])
def test_graph_modules_stay_under_400_lines(module):
    assert _lines(GRAPH / f"{module}.py") < 400


@pytest.mark.parametrize("old, new, names", [
    ("nsde_coin.graph.laplacian", "nsde_coin.graph.operator", ["GraphOperator", "as_operator", "to_scipy",
                                                               "torch_csr"]),
    ("nsde_coin.graph.diffusion", "nsde_coin.graph.solvers.explicit", ["PositivityWarning"]),
    ("nsde_coin.graph.diffusion", "nsde_coin.graph.solvers.random_walk", ["WALKS"]),
    ("nsde_coin.apps.knn", "nsde_coin.graph.knn", ["gaussian_knn_edges", "gaussian_knn_graph", "weighted_laplacian",
                                                   "edges_to_sparse"]),
    ("nsde_coin.graph.baselines", "nsde_coin.graph.models", ["MODELS", "build_model", "default_hparams",
                                                             "model_names", "resolve_hparams"]),
])
def test_old_import_paths_give_the_moved_objects(old, new, names):
    old_mod, new_mod = importlib.import_module(old), importlib.import_module(new)
    for name in names:
        assert getattr(old_mod, name) is getattr(new_mod, name), (old, name)
