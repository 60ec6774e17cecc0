"""The solver registry: metadata matches torchsde's own classes, and every bad combination names valid choices."""

import pytest
import torchsde._core.methods as tsm

from nsde_coin import solvers


def test_families_and_names():
    sde = solvers.solver_names("sde")
    assert sde == ["euler", "milstein", "srk", "euler_heun", "heun", "midpoint", "reversible_heun", "log_ode"]
    ode = set(solvers.solver_names("ode"))
    assert {"euler", "midpoint", "rk4", "dopri5", "bosh3", "adaptive_heun", "dopri8"} <= ode


@pytest.mark.parametrize("name", ["euler", "milstein", "srk", "euler_heun", "heun", "midpoint",
                                  "reversible_heun", "log_ode"])
def test_sde_metadata_matches_torchsde(name):
    info = solvers.get_solver(name, "sde")
    for sde_type in info.sde_types:
        cls = tsm.select(method=name, sde_type=sde_type)
        assert cls.sde_type == sde_type
        assert set(cls.noise_types) == set(info.noise_types)
        assert cls.weak_order == info.weak_order


def test_torchdiffeq_knows_every_ode_name():
    from torchdiffeq._impl.odeint import SOLVERS
    for name in solvers.solver_names("ode"):
        assert name in SOLVERS


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(name="srk", family="sde", noise_type="general"), "solvers for general noise: euler"),
    (dict(name="reversible_heun", family="sde", sde_type="ito"), "solvers for ito SDEs: euler, milstein, srk"),
    (dict(name="euler", family="sde", grad_mode="adjoint", adjoint_method="srk"), "valid adjoint methods: euler"),
    (dict(name="euler", family="sde", grad_mode="reversible"), "grad_mode='reversible': reversible_heun"),
    (dict(name="rk4", family="sde"), "cannot integrate a diffusion"),
    (dict(name="euler"), "pass family="),
    (dict(name="nope"), "valid choices: adaptive_heun"),
    (dict(name="euler", family="sde", grad_mode="magic"), "valid choices: backprop, adjoint, reversible"),
    (dict(name="euler", family="sde", noise_type="weird"), "valid choices: diagonal"),
])
def test_bad_combinations_name_valid_choices(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(")):
        solvers.check_solver(**kwargs)


def test_valid_combinations():
    assert solvers.check_solver("reversible_heun", family="sde", grad_mode="reversible").name == "reversible_heun"
    info = solvers.check_solver("srk", family="sde", noise_type="diagonal", sde_type="ito")
    assert info.strong_order["diagonal"] == 1.5
    assert solvers.check_solver("dopri5", family="ode", grad_mode="adjoint").adaptive


def test_type_error_on_non_string():
    with pytest.raises(TypeError, match="must be a str"):
        solvers.get_solver(3)


def test_adjoint_method_suggestions_match_sde_type():
    """Itô euler with additive noise: the adjoint SDE has general noise; milstein cannot, and only Itô solvers fit."""
    with pytest.raises(ValueError) as err:
        solvers.check_solver("euler", family="sde", noise_type="additive", sde_type="ito", grad_mode="adjoint",
                         adjoint_method="milstein")
    msg = str(err.value)
    assert "valid adjoint methods here: euler" in msg
    assert "heun" not in msg and "midpoint" not in msg
