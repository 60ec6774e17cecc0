"""Many independent copies of one small model trained at once: stacked parameters (+ :func:`torch.func.vmap`).

The applications train hundreds of tiny models that never interact: one head per few-shot task, one model per
(mask, initialisation) pair in the COVID protocol, one per seed in the tabular protocol. Stacking the R copies'
parameters along a new leading axis and evaluating the module with ``vmap(functional_call(...))`` runs them as one
batched computation. Because the copies share no parameters, summing their losses gives each copy exactly its own
gradient, and element-wise optimisers (SGD, Adam, weight decay) update each slice exactly as R separate runs would.

Each copy is initialised by the module's own constructor (PyTorch's default initialisation) under its own seed,
inside :func:`torch.random.fork_rng`, so the global RNG is left untouched and copy r is bit-identical to
``torch.manual_seed(seeds[r]); make()``.

This is the package's one stacking utility: :func:`stack_parameters` / :func:`load_copy` move weights between R
modules and the stacked ``{name: (R, ...)}`` tensors, :func:`init_copies` initialises them, :func:`forward_copies`
evaluates them through ``vmap``. The one model that stacks without ``vmap`` is
:class:`nsde_coin.graph.ensemble.COINEnsemble` (its stacking and initialisation go through this module; its forward
loops over members because its sparse-feature kernel is a custom ``autograd.Function`` on a sparse tensor, which
``vmap`` cannot batch, and because one product per member is faster there than a batched one — see that class).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

__all__ = ["forward_copies", "init_copies", "load_copy", "module_fn", "stack_parameters"]


def stack_parameters(modules: Sequence[nn.Module]) -> dict[str, Tensor]:
    """``{name: (R, *shape)}``: the parameters of R modules of one structure stacked along a new leading axis
    (detached copies; module r is slice r)."""
    if len(modules) == 0:
        raise ValueError("stack_parameters needs at least one module")
    states = [dict(m.named_parameters()) for m in modules]
    names = list(states[0])
    for r, st in enumerate(states[1:], 1):
        shapes = {k: tuple(v.shape) for k, v in st.items()}
        if list(st) != names or any(shapes[k] != tuple(states[0][k].shape) for k in names):
            raise ValueError(f"module {r} does not have the parameters of module 0: "
                             f"{shapes} vs {({k: tuple(v.shape) for k, v in states[0].items()})}")
    with torch.no_grad():
        return {k: torch.stack([st[k].detach() for st in states]) for k in names}


def load_copy(module: nn.Module, params: dict[str, Tensor], index: int) -> nn.Module:
    """Copy slice ``index`` of stacked ``params`` into ``module``'s parameters (in place; returns ``module``)."""
    own = dict(module.named_parameters())
    if set(own) != set(params):
        raise ValueError(f"stacked parameters {sorted(params)} do not match the module's {sorted(own)}")
    with torch.no_grad():
        for k, p in own.items():
            p.copy_(params[k][index])
    return module


def init_copies(make: Callable[[], nn.Module], seeds: Sequence[int]) -> tuple[nn.Module, dict[str, Tensor]]:
    """Build ``len(seeds)`` copies of ``make()`` and stack their parameters.

    Returns:
        ``(template, params)``: the module used for its structure (its own parameters are not trained), and
        ``{name: Tensor (R, *shape)}`` — leaf tensors with ``requires_grad=True``, ready for an optimiser.
    """
    if len(seeds) == 0:
        raise ValueError("seeds must name at least one copy")
    mods: list[nn.Module] = []
    with torch.random.fork_rng(devices=[]):
        for s in seeds:
            torch.manual_seed(int(s))
            mods.append(make())
    params = {k: v.requires_grad_(True) for k, v in stack_parameters(mods).items()}
    return mods[-1], params


def module_fn(template: nn.Module) -> Callable[..., Tensor]:
    """``fn(params, x, *args)`` evaluating ``template`` with the given parameters (for :func:`forward_copies`)."""
    def fn(p: dict[str, Tensor], x: Tensor, *args: Any) -> Tensor:
        return functional_call(template, p, (x, *args))

    return fn


def forward_copies(fn: Callable[..., Tensor], params: dict[str, Tensor], *inputs: Any,
                   batched: Sequence[bool] = ()) -> Tensor:
    """Evaluate every copy: returns (R, *out_shape).

    Args:
        fn: ``fn(params_of_one_copy, *inputs) -> Tensor`` — e.g. :func:`module_fn` of the template. It runs
            under :func:`torch.func.vmap`, so it must not branch on tensor values.
        params: ``{name: (R, ...)}`` from :func:`init_copies`.
        inputs: the module's inputs; input j is shared by all copies unless ``batched[j]`` is true, in which case
            it has a leading axis R (one slice per copy). Missing entries of ``batched`` mean shared.
    """
    flags = tuple(batched) + (False,) * (len(inputs) - len(batched))
    return vmap(fn, in_dims=(0, *(0 if f else None for f in flags)))(params, *inputs)
