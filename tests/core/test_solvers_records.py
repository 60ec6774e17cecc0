"""Each solver family has its own record type: an ODE record has no noise types, an SDE record no implementation,
a graph record no SDE types; the registry refuses a record of the wrong type for its family."""

import dataclasses
import json

import pytest

from nsde_coin import solvers
from nsde_coin.solvers import GraphSolverInfo, ODESolverInfo, SDESolverInfo, SolverInfo

BASE = {"name", "family", "backend", "description", "weak_order", "grad_modes", "stochastic"}
OWN = {
    "sde": {"sde_types", "noise_types", "strong_order", "levy_area", "adjoint_capable"},
    "ode": {"adaptive"},
    "graph": {"unconditionally_stable", "impl"},
}


def _field_names(info) -> set[str]:
    return {f.name for f in dataclasses.fields(info)}


@pytest.mark.parametrize("family", solvers.FAMILIES)
def test_each_record_has_only_its_familys_fields(family):
    infos = solvers.list_solvers(family)
    assert infos  # every family has registered solvers (graph: loaded on first request)
    others = set().union(*(OWN[f] for f in solvers.FAMILIES if f != family))
    for info in infos:
        assert type(info) is solvers.RECORD_TYPES[family] and isinstance(info, SolverInfo)
        assert _field_names(info) == BASE | OWN[family], info.name
        assert not any(hasattr(info, name) for name in others), info.name
        rec = info.record()
        assert set(rec) == (BASE | OWN[family]) - {"impl"}
        assert json.loads(json.dumps(rec)) == rec  # JSON-serialisable as printed by `nsde-coin solvers --json`


def test_family_is_fixed_by_the_record_type():
    assert SDESolverInfo("x", "b", "d").family == "sde" and SDESolverInfo("x", "b", "d").stochastic
    assert ODESolverInfo("x", "b", "d").family == "ode" and not ODESolverInfo("x", "b", "d").stochastic
    assert GraphSolverInfo("x", "b", "d").family == "graph"
    with pytest.raises(TypeError):
        ODESolverInfo("x", "b", "d", family="sde")  # not a constructor argument


def test_register_rejects_a_record_of_the_wrong_type():
    with pytest.raises(TypeError, match="a graph solver is registered as a GraphSolverInfo, got a SolverInfo"):
        solvers.register_solver(SolverInfo("my_graph", "graph", "mine", "no impl"))
    with pytest.raises(TypeError, match="needs a callable impl"):
        solvers.register_solver(GraphSolverInfo("my_graph", "mine", "no impl"))
    assert "my_graph" not in solvers.solver_names("graph")
