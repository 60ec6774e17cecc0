"""The model registry of the graph benchmark: every model built by name (COIN, its ablation and the PyG baselines).

:func:`build_model` returns a model with one contract (PyG's): ``net.log_prob(x, edge_index)`` → log-probabilities
(n, C) of all nodes — a :class:`~nsde_coin.graph.baselines.GraphNet` (whose ``forward`` is ``log_prob``) or a
:class:`~nsde_coin.graph.coin.COIN` (whose ``forward`` gives the probabilities). The model is not bound to the graph;
:func:`graph_inputs` gives ``(x, edge_index)`` of a data set in the layout the model is fastest with (sparse CSR
features, dense for SGC), and ``build_model`` keeps them as ``net.graph_inputs`` for the protocol's
:func:`~nsde_coin.graph.experiment.train.train_run`. ``deterministic`` is ``True`` for models without dropout (COIN,
SGC): the protocol then reads the validation metrics off the training forward pass instead of running a second,
eval-mode pass. The model classes are in :mod:`nsde_coin.graph.baselines`.

Defaults follow the paper's table of baselines (all trained with Adam, lr 0.01, weight decay 5e-4):

======== ==========================================================================================
mlp      2 layers, hidden 64, dropout 0.5 (on the input and the hidden layer)
gcn      2 ``GCNConv`` layers, hidden 64, dropout 0.8 (input and hidden)
gat      ``GATConv`` 8 heads × 64 (concat, ELU) → 1 head; attention dropout 0.3, feature dropout 0.6
appnp    MLP 64 (dropout 0.5) → ``APPNP`` propagation, α = 0.1, K = 10
sgc      ``SGConv`` K = 2: Â²X precomputed once, then logistic regression
coin     COIN (layer_num 20, σ² 0.35, explicit solver: the paper's Cora setting)
coin_base COIN with layer_num = 0, the base ResNet alone (the paper's ablation)
======== ==========================================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from nsde_coin._checks import is_int, is_real
from nsde_coin.errors import invalid_choice
from nsde_coin.graph.baselines import GAT, GCN, MLP, SGC, APPNPNet
from nsde_coin.graph.datasets import csr_features, dense_features

__all__ = ["MODELS", "build_model", "default_hparams", "graph_inputs", "model_names", "resolve_hparams"]


def _count(low: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: is_int(v) and v >= low), f"an int >= {low}"


def _fraction(low_open: bool, high_open: bool) -> tuple[Callable[[Any], bool], str]:
    def ok(v: Any) -> bool:
        if not is_real(v) or not math.isfinite(v):
            return False
        return (0 < v if low_open else 0 <= v) and (v < 1 if high_open else v <= 1)

    return ok, f"a number in {'(' if low_open else '['}0, 1{')' if high_open else ']'}"


# hyper-parameter -> (check, what is valid), for every model that has it (COIN's own in _coin_checks)
_HP_VALID: dict[str, tuple[Callable[[Any], bool], str]] = {
    "hidden": _count(1), "heads": _count(1), "K": _count(1),
    "dropout": _fraction(False, True), "attn_dropout": _fraction(False, True), "alpha": _fraction(True, False),
    "allow_unstable": ((lambda v: isinstance(v, bool)), "true or false"),
}


def _check_hparams(name: str, hp: dict[str, Any]) -> None:
    """One-line ``ValueError`` naming the hyper-parameter, its value and what is valid (before any tensor is made:
    ``hidden='abc'`` or ``hidden=-4`` would otherwise fail deep inside torch)."""
    for key, val in hp.items():
        rule = _HP_VALID.get(key)
        if rule is not None and not rule[0](val):
            raise ValueError(f"hyper-parameter {key}={val!r} of model {name!r} is not valid; expected {rule[1]}")


def _coin_checks(hp: dict[str, Any]) -> None:
    if not isinstance(hp["layer_num"], int) or isinstance(hp["layer_num"], bool) or hp["layer_num"] < 0:
        raise ValueError(f"layer_num must be an int >= 0, got {hp['layer_num']!r}")
    sigma2 = hp["sigma2"]
    if not is_real(sigma2) or not float(sigma2) > 0:
        raise ValueError(f"sigma2 must be > 0 (it is the diffusion coefficient σ²), got {hp['sigma2']!r}")
    from nsde_coin.solvers import get_solver

    get_solver(hp["solver"], "graph")  # unknown solver -> ValueError listing the graph solvers
    from nsde_coin.graph.laplacian import KINDS

    if hp["laplacian_kind"] not in KINDS:
        raise ValueError(invalid_choice("laplacian_kind", hp["laplacian_kind"], KINDS))


def _build_coin(in_dim: int, num_classes: int, hp: dict[str, Any]) -> nn.Module:
    from nsde_coin.graph.coin import COIN

    net = COIN(in_dim, num_classes, **hp)
    net.deterministic = True  # the paper's ResNet base has no dropout
    return net


def _build_coin_base(in_dim: int, num_classes: int, hp: dict[str, Any]) -> nn.Module:
    return _build_coin(in_dim, num_classes, {"layer_num": 0, "sigma2": 1.0, "solver": "explicit"})


# name -> (builder(in_dim, num_classes, hparams), default hparams)
MODELS: dict[str, tuple[Callable[..., nn.Module], dict[str, Any]]] = {
    "coin": (_build_coin, {"layer_num": 20, "sigma2": 0.35, "solver": "explicit", "allow_unstable": False,
                           "laplacian_kind": "paper"}),
    "coin_base": (_build_coin_base, {}),
    "mlp": (lambda d, c, hp: MLP(d, c, **hp), {"hidden": 64, "dropout": 0.5}),
    "gcn": (lambda d, c, hp: GCN(d, c, **hp), {"hidden": 64, "dropout": 0.8}),
    "gat": (lambda d, c, hp: GAT(d, c, **hp), {"hidden": 64, "heads": 8, "attn_dropout": 0.3, "dropout": 0.6}),
    "appnp": (lambda d, c, hp: APPNPNet(d, c, **hp), {"hidden": 64, "dropout": 0.5, "alpha": 0.1, "K": 10}),
    "sgc": (lambda d, c, hp: SGC(d, c, **hp), {"K": 2}),
}
_DENSE = ("sgc",)  # models fed dense features (SGConv propagates X once); the rest take sparse CSR


def graph_inputs(name: str, data) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, edge_index)`` of ``data`` for model ``name``: x (n, d) sparse CSR (dense for ``sgc``), edge_index (2, E)
    — the arguments of ``net.log_prob``. Both are kept per data set, so every run on it shares the operators
    cached for its ``edge_index``."""
    key = _check_name(name)
    return (dense_features(data) if key in _DENSE else csr_features(data)), data.edge_index


def model_names() -> list[str]:
    """Registered model names."""
    return list(MODELS)


def _check_name(name: str) -> str:
    if not isinstance(name, str) or name.lower() not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")
    return name.lower()


def default_hparams(name: str) -> dict[str, Any]:
    """A copy of the default hyper-parameters of model ``name``."""
    return dict(MODELS[_check_name(name)][1])


def resolve_hparams(name: str, hparams: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults of ``name`` updated by ``hparams``; unknown keys and invalid values (a non-integer or non-positive
    ``hidden``, a dropout outside [0, 1) ...) raise a one-line ``ValueError`` naming the key, the value and what is
    valid."""
    hp = default_hparams(name)
    for key, val in (hparams or {}).items():
        if key not in hp:
            valid = ", ".join(hp) or "(none)"
            raise ValueError(f"unknown hyper-parameter {key!r} for model {name!r}; valid: {valid}")
        val = val.item() if isinstance(val, np.generic) else val  # JSON-able records, stable resume keys
        if isinstance(hp[key], float) and isinstance(val, int) and not isinstance(val, bool):
            val = float(val)  # sigma2=1 and sigma2=1.0 are one setting: one record key
        hp[key] = val
    _check_hparams(name.lower(), hp)
    if name.lower() == "coin":
        _coin_checks(hp)
    return hp


def build_model(name: str, data, hparams: dict[str, Any] | None = None, *, seed: int | None = None) -> nn.Module:
    """Build model ``name`` for ``data``'s sizes (parameters drawn from ``torch.manual_seed(seed)`` when given).

    The model is not bound to ``data``: call ``net.log_prob(*net.graph_inputs)`` (or with any other graph of the
    same feature width); ``net.graph_inputs`` is :func:`graph_inputs` of ``data``, what
    :func:`~nsde_coin.graph.experiment.train.train_run` feeds it by default.
    """
    key = _check_name(name)
    builder, _ = MODELS[key]
    hp = resolve_hparams(key, hparams)
    num_classes = int(getattr(data, "num_classes", int(data.y.max()) + 1))
    inputs = graph_inputs(key, data)
    in_dim = int(inputs[0].shape[1])
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            net = builder(in_dim, num_classes, hp)
    else:
        net = builder(in_dim, num_classes, hp)
    net.name = key
    net.graph_inputs = inputs
    return net
