"""The solver registry: one table of every way nsde_coin can compute u(x, T) = E[f(X_T)].

Each entry is a record of its family's type (a :class:`SolverInfo` subclass). Three families share the table:

* ``"sde"`` — torchsde methods (names verbatim), integrating dX = v dt + σ dW and averaging f over paths
  (:class:`SDESolverInfo`);
* ``"ode"`` — torchdiffeq methods for the σ = 0 limit, u = f(flow_T(x)) (:class:`ODESolverInfo`);
* ``"graph"`` — diffusion of outputs on a graph, u_t = −σ² L u (:class:`GraphSolverInfo`, registered by the
  modules of :mod:`nsde_coin.graph.solvers`).

Imports point one way: this module (the core) never imports :mod:`nsde_coin.graph`. A package whose solvers
register themselves on import tells the registry how to load them with :func:`register_family_loader`
(``nsde_coin/__init__.py`` does so for the graph family), and the loader runs the first time that family is listed
or looked up.

All validation of solver / noise type / SDE type / gradient mode combinations lives in :func:`check_solver`, so every
error message that names the valid choices is produced in one place.

Order conventions (as in torchsde): ``strong_order`` maps a noise type to the strong (pathwise) order of
convergence in dt; ``weak_order`` is the order of E[f(X_T)] in dt. For ODE and graph solvers ``weak_order`` holds the
ordinary order of accuracy in the step size (``None`` for exact or Monte Carlo solvers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Optional

from nsde_coin.errors import deprecated_alias

FAMILIES = ("sde", "ode", "graph")
SDE_TYPES = ("ito", "stratonovich")
NOISE_TYPES = ("diagonal", "additive", "scalar", "general")
GRAD_MODES = ("backprop", "adjoint", "reversible")


@dataclass(frozen=True)
class SolverInfo:
    """The fields every registered solver has; each family's record type adds its own (the base of the three).

    A solver is registered as the record type of its family (:data:`RECORD_TYPES`): :class:`SDESolverInfo`,
    :class:`ODESolverInfo` or :class:`GraphSolverInfo`, so an ODE record has no noise types and an SDE record no
    implementation callable.

    Attributes:
        name: registry key (torchsde/torchdiffeq method names verbatim).
        family: ``"sde"``, ``"ode"`` or ``"graph"`` (fixed by the record type).
        backend: library that runs it (``"torchsde"``, ``"torchdiffeq"``, ``"nsde_coin"``).
        description: one line for tables.
        weak_order: weak order (SDE) or order of accuracy in the step size (ODE/graph); ``None`` for exact / Monte
            Carlo solvers.
        grad_modes: gradient modes it supports as the forward solver.
        stochastic: whether the result is a Monte Carlo estimate with a standard error.
    """

    name: str
    family: str
    backend: str
    description: str
    weak_order: Optional[float] = None
    grad_modes: tuple[str, ...] = ("backprop",)
    stochastic: bool = False

    def record(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the metadata (the record type's fields, without ``impl``)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "impl"}
        return {key: list(val) if isinstance(val, tuple) else (dict(val) if isinstance(val, dict) else val)
                for key, val in out.items()}


@dataclass(frozen=True)
class SDESolverInfo(SolverInfo):
    """A torchsde method integrating dX = v dt + σ dW (family ``"sde"``).

    Attributes:
        sde_types: SDE interpretations it integrates (``"ito"``, ``"stratonovich"``).
        noise_types: torchsde noise types it supports.
        strong_order: noise type → strong (pathwise) order in dt.
        levy_area: Lévy-area approximation the Brownian motion must provide (``None``, ``"space-time"``, ``"foster"``).
        adjoint_capable: whether it may be used as the *adjoint* (backward) method of an SDE solve.
    """

    family: str = field(default="sde", init=False)
    stochastic: bool = True
    sde_types: tuple[str, ...] = ()
    noise_types: tuple[str, ...] = ()
    strong_order: dict[str, float] = field(default_factory=dict)
    levy_area: Optional[str] = None
    adjoint_capable: bool = False


@dataclass(frozen=True)
class ODESolverInfo(SolverInfo):
    """A torchdiffeq method for the σ = 0 limit, u = f(flow_T(x)) (family ``"ode"``).

    Attributes:
        adaptive: whether it chooses its own step size (rtol/atol).
    """

    family: str = field(default="ode", init=False)
    adaptive: bool = False


@dataclass(frozen=True)
class GraphSolverInfo(SolverInfo):
    """A graph diffusion solver for u_t = −σ² L u, run by :func:`nsde_coin.graph.diffusion.diffuse` (family
    ``"graph"``).

    Attributes:
        unconditionally_stable: stable for every step size σ².
        impl: ``impl(u, op, sigma2, layer_num, **options) -> (u_T, stderr or None)`` with ``u`` of shape
            (n, columns); its keyword-only parameters are the options the solver takes.
    """

    family: str = field(default="graph", init=False)
    unconditionally_stable: bool = False
    impl: Optional[Callable[..., Any]] = field(default=None, compare=False, repr=False)


RECORD_TYPES: dict[str, type[SolverInfo]] = {"sde": SDESolverInfo, "ode": ODESolverInfo, "graph": GraphSolverInfo}
"""family → the record type its solvers are registered as."""


_REGISTRY: dict[tuple[str, str], SolverInfo] = {}
_LOADERS: dict[str, list[Callable[[], Any]]] = {}


def register_solver(info: SolverInfo, *, overwrite: bool = False) -> SolverInfo:
    """Add ``info`` (the record type of its family) to the registry, keyed by ``(family, name)``. A new solver is
    exactly one call of this.

    Registering the same metadata again (e.g. a module reload) replaces the entry; different metadata under a taken
    key raises ``ValueError`` unless ``overwrite=True``.
    """
    if info.family not in FAMILIES:
        raise ValueError(f"family={info.family!r} is not one of {FAMILIES}")
    if not isinstance(info, RECORD_TYPES[info.family]):
        raise TypeError(f"a {info.family} solver is registered as a {RECORD_TYPES[info.family].__name__}, "
                        f"got a {type(info).__name__} for {info.name!r}")
    if isinstance(info, GraphSolverInfo) and not callable(info.impl):
        raise TypeError(f"graph solver {info.name!r} needs a callable impl, got {info.impl!r}")
    bad = [g for g in info.grad_modes if g not in GRAD_MODES]
    if bad:
        raise ValueError(f"grad_modes {bad} are not among {GRAD_MODES}")
    key = (info.family, info.name)
    if key in _REGISTRY and not overwrite and _REGISTRY[key] != info:
        raise ValueError(f"{info.family} solver {info.name!r} is already registered")
    _REGISTRY[key] = info
    return info


def register_family_loader(family: str, loader: Callable[[], Any]) -> None:
    """Run ``loader()`` once, the first time the registry is asked about ``family`` (or about all families).

    The loader imports the module whose import registers the family's solvers; the core itself names no such module.
    """
    if family not in FAMILIES:
        raise ValueError(f"family={family!r} is not one of {FAMILIES}")
    _LOADERS.setdefault(family, []).append(loader)


def _load_family(family: Optional[str]) -> None:
    for fam in FAMILIES if family is None else (family,):
        for loader in _LOADERS.pop(fam, ()):  # popped first: a loader that asks the registry does not recurse
            loader()


def _choices(names: list[str]) -> str:
    return ", ".join(sorted(set(names))) if names else "(none)"


def _check_choice(what: str, value: Optional[str], choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        raise ValueError(f"{what}={value!r} is not valid; valid choices: {', '.join(choices)}")


def list_solvers(
    family: Optional[str] = None,
    *,
    noise_type: Optional[str] = None,
    sde_type: Optional[str] = None,
    grad_mode: Optional[str] = None,
) -> list[SolverInfo]:
    """Registered solvers in table order, optionally filtered (each filter value is checked)."""
    _check_choice("family", family, FAMILIES)
    _load_family(family)
    _check_choice("noise_type", noise_type, NOISE_TYPES)
    _check_choice("sde_type", sde_type, SDE_TYPES)
    _check_choice("grad_mode", grad_mode, GRAD_MODES)
    out = []
    for info in _REGISTRY.values():
        if family is not None and info.family != family:
            continue
        if noise_type is not None and info.family == "sde" and noise_type not in info.noise_types:
            continue
        if sde_type is not None and info.family == "sde" and sde_type not in info.sde_types:
            continue
        if grad_mode is not None and grad_mode not in info.grad_modes:
            continue
        out.append(info)
    return out


def solver_names(family: Optional[str] = None) -> list[str]:
    """Names of the registered solvers of ``family`` (all families when ``None``)."""
    return [s.name for s in list_solvers(family)]


def get_solver(name: str, family: Optional[str] = None) -> SolverInfo:
    """Look a solver up by name (and family, needed for names both torchsde and torchdiffeq use: euler, midpoint).

    Unknown names raise ``ValueError`` listing the valid ones; an ambiguous name without ``family`` raises too.
    """
    if not isinstance(name, str):
        raise TypeError(f"solver name must be a str, got {type(name).__name__} ({name!r})")
    _check_choice("family", family, FAMILIES)
    _load_family(family)
    hits = [s for (fam, n), s in _REGISTRY.items() if n == name and (family is None or fam == family)]
    if not hits:
        scope = f"{family} " if family else ""
        raise ValueError(f"unknown {scope}solver {name!r}; valid choices: {_choices(solver_names(family))}")
    if len(hits) > 1:
        fams = ", ".join(repr(s.family) for s in hits)
        raise ValueError(f"solver name {name!r} exists in families {fams}; pass family= to choose one")
    return hits[0]


def check_solver(
    name: str,
    *,
    family: Optional[str] = None,
    noise_type: Optional[str] = None,
    sde_type: Optional[str] = None,
    grad_mode: str = "backprop",
    adjoint_method: Optional[str] = None,
) -> SolverInfo:
    """Check that a solver can be used in the given combination; return its :class:`SolverInfo`.

    Raises ``ValueError`` naming the offending value and the valid choices, e.g. ``srk`` with general noise,
    ``reversible_heun`` with an Itô SDE, ``srk`` as the adjoint method, a ``reversible`` gradient with a solver
    that is not algebraically reversible, or an ODE solver asked to integrate noise (``family="sde"``).
    """
    _check_choice("noise_type", noise_type, NOISE_TYPES)
    _check_choice("sde_type", sde_type, SDE_TYPES)
    _check_choice("grad_mode", grad_mode, GRAD_MODES)
    if family == "sde" and not any(s.name == name and s.family == "sde" for s in list_solvers("sde")) and any(
        s.name == name for s in list_solvers("ode")
    ):
        raise ValueError(
            f"{name!r} is an ODE (torchdiffeq) solver and cannot integrate a diffusion sigma != 0; "
            f"SDE solvers: {_choices(solver_names('sde'))}, or set the diffusion to zero"
        )
    info = get_solver(name, family)
    if info.family == "sde":
        if sde_type is not None and sde_type not in info.sde_types:
            ok = [s.name for s in list_solvers("sde", sde_type=sde_type, noise_type=noise_type)]
            raise ValueError(
                f"solver {name!r} integrates {'/'.join(info.sde_types)} SDEs, not sde_type={sde_type!r}; "
                f"solvers for {sde_type} SDEs" + (f" with {noise_type} noise" if noise_type else "")
                + f": {_choices(ok)}"
            )
        if noise_type is not None and noise_type not in info.noise_types:
            ok = [s.name for s in list_solvers("sde", sde_type=sde_type, noise_type=noise_type)]
            raise ValueError(
                f"solver {name!r} does not support noise_type={noise_type!r} (it supports "
                f"{', '.join(info.noise_types)}); solvers for {noise_type} noise: {_choices(ok)}"
            )
    if grad_mode not in info.grad_modes:
        ok = [s.name for s in list_solvers(info.family, grad_mode=grad_mode)]
        raise ValueError(
            f"{info.family} solver {name!r} does not support grad_mode={grad_mode!r} (it supports "
            f"{', '.join(info.grad_modes)}); {info.family} solvers with grad_mode={grad_mode!r}: {_choices(ok)}"
        )
    if adjoint_method is not None:
        if grad_mode == "backprop":
            raise ValueError(f"adjoint_method={adjoint_method!r} given with grad_mode='backprop'; "
                             f"use grad_mode='adjoint' or drop adjoint_method")
        if info.family != "sde":
            raise ValueError(f"adjoint_method applies to SDE solvers only, not to the {info.family} solver {name!r}")
        fwd_type = sde_type or info.sde_types[0]
        valid_adj = [s.name for s in list_solvers("sde", sde_type=fwd_type) if s.adjoint_capable]
        if name == "reversible_heun":
            valid_adj.append("adjoint_reversible_heun")
        if adjoint_method not in valid_adj:
            raise ValueError(f"adjoint_method={adjoint_method!r} cannot integrate the adjoint SDE of {name!r}; "
                             f"valid adjoint methods: {_choices(valid_adj)}")
        adj = _REGISTRY.get(("sde", adjoint_method))
        if adj is not None and noise_type is not None:
            # the adjoint of an additive-noise SDE has general noise (torchsde's mapping)
            adj_noise = "general" if noise_type == "additive" else noise_type
            if adj_noise not in adj.noise_types:
                ok = [s.name for s in list_solvers("sde", noise_type=adj_noise, sde_type=fwd_type)
                      if s.adjoint_capable]
                raise ValueError(f"adjoint_method={adjoint_method!r} does not support the adjoint SDE's "
                                 f"{adj_noise} noise; valid adjoint methods here: {_choices(ok)}")
    return info


validate = deprecated_alias(check_solver, "nsde_coin.solvers.validate", "nsde_coin.solvers.check_solver")


# --------------------------------------------------------------------------------------------------------------
# The table. SDE orders are torchsde's own (each method's strong_order / weak_order attributes).
_ALL_NOISE = NOISE_TYPES
_ONE_EXCEPT_GENERAL = {"diagonal": 1.0, "additive": 1.0, "scalar": 1.0, "general": 0.5}
_EULER_LIKE = {"diagonal": 0.5, "additive": 1.0, "scalar": 0.5, "general": 0.5}
_SDE_GRADS = ("backprop", "adjoint")

for _info in (
    SDESolverInfo("euler", "torchsde", "Euler–Maruyama (Itô): a ResNet step plus sqrt(dt)·σ·noise", 1.0, _SDE_GRADS,
                  sde_types=("ito",), noise_types=_ALL_NOISE, strong_order=_EULER_LIKE, adjoint_capable=True),
    SDESolverInfo("milstein", "torchsde", "Milstein (derivative-free), Itô or Stratonovich", 1.0, _SDE_GRADS,
                  sde_types=("ito", "stratonovich"), noise_types=("diagonal", "additive", "scalar"),
                  strong_order={"diagonal": 1.0, "additive": 1.0, "scalar": 1.0}, adjoint_capable=True),
    SDESolverInfo("srk", "torchsde", "stochastic Runge–Kutta (Rößler SRI; SRA1 for additive noise, nsde_coin's own "
                  "step for a constant scalar/diagonal σ), uses space-time Lévy area", 1.5,
                  _SDE_GRADS, sde_types=("ito",), noise_types=("diagonal", "additive", "scalar"),
                  strong_order={"diagonal": 1.5, "additive": 1.5, "scalar": 1.5}, levy_area="space-time"),
    SDESolverInfo("euler_heun", "torchsde", "Euler–Heun (Stratonovich)", 1.0, _SDE_GRADS,
                  sde_types=("stratonovich",), noise_types=_ALL_NOISE, strong_order=_ONE_EXCEPT_GENERAL,
                  adjoint_capable=True),
    SDESolverInfo("heun", "torchsde", "Heun (Stratonovich)", 1.0, _SDE_GRADS,
                  sde_types=("stratonovich",), noise_types=_ALL_NOISE, strong_order=_ONE_EXCEPT_GENERAL,
                  adjoint_capable=True),
    SDESolverInfo("midpoint", "torchsde", "midpoint (Stratonovich); torchsde's default Stratonovich adjoint", 1.0,
                  _SDE_GRADS, sde_types=("stratonovich",), noise_types=_ALL_NOISE, strong_order=_ONE_EXCEPT_GENERAL,
                  adjoint_capable=True),
    SDESolverInfo("reversible_heun", "torchsde",
                  "reversible Heun (Stratonovich): exact gradients with adjoint_reversible_heun", 1.0,
                  ("backprop", "adjoint", "reversible"), sde_types=("stratonovich",), noise_types=_ALL_NOISE,
                  strong_order=_EULER_LIKE),
    SDESolverInfo("log_ode", "torchsde", "log-ODE midpoint (Stratonovich), uses Foster Lévy area", 1.0, _SDE_GRADS,
                  sde_types=("stratonovich",), noise_types=_ALL_NOISE, strong_order=_ONE_EXCEPT_GENERAL,
                  levy_area="foster", adjoint_capable=True),
):
    register_solver(_info)

# torchdiffeq, the sigma = 0 limit; weak_order holds the classical order of accuracy.
for _name, _order, _adaptive, _desc in (
    ("euler", 1.0, False, "explicit Euler: exactly a ResNet block x + dt·v(x, t)"),
    ("midpoint", 2.0, False, "explicit midpoint (RK2)"),
    ("heun3", 3.0, False, "Heun's third-order method"),
    ("rk4", 4.0, False, "classical Runge–Kutta 4 (3/8 rule)"),
    ("explicit_adams", 4.0, False, "Adams–Bashforth, fixed step"),
    ("implicit_adams", 4.0, False, "Adams–Moulton predictor-corrector, fixed step"),
    ("fehlberg2", 2.0, True, "Runge–Kutta–Fehlberg 2(1), adaptive"),
    ("adaptive_heun", 2.0, True, "Heun–Euler 2(1), adaptive"),
    ("bosh3", 3.0, True, "Bogacki–Shampine 3(2), adaptive"),
    ("dopri5", 5.0, True, "Dormand–Prince 5(4), adaptive (torchdiffeq's default)"),
    ("dopri8", 8.0, True, "Dormand–Prince 8(7), adaptive"),
):
    register_solver(ODESolverInfo(_name, "torchdiffeq", _desc, weak_order=_order, grad_modes=("backprop", "adjoint"),
                                  adaptive=_adaptive))
