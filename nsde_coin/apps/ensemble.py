"""Many independent copies of one small model trained at once (stacked parameters + :func:`torch.func.vmap`).

The applications train hundreds of tiny models that never interact: one head per few-shot task, one model per
(mask, initialisation) pair in the COVID protocol, one per seed in the tabular protocol. Stacking the R copies'
parameters along a new leading axis and evaluating the module with ``vmap(functional_call(...))`` runs them as one
batched computation. Because the copies share no parameters, summing their losses gives each copy exactly its own
gradient, and element-wise optimisers (SGD, Adam, weight decay) update each slice exactly as R separate runs would.

Each copy is initialised by the module's own constructor (PyTorch's default initialisation) under its own seed,
inside :func:`torch.random.fork_rng`, so the global RNG is left untouched and copy r is bit-identical to
``torch.manual_seed(seeds[r]); make()``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

__all__ = ["init_copies", "module_fn", "forward_copies"]


def init_copies(make: Callable[[], nn.Module], seeds: Sequence[int]) -> tuple[nn.Module, dict[str, Tensor]]:
    """Build ``len(seeds)`` copies of ``make()`` and stack their parameters.

    Returns:
        ``(template, params)``: the module used for its structure (its own parameters are not trained), and
        ``{name: Tensor (R, *shape)}`` — leaf tensors with ``requires_grad=True``, ready for an optimiser.
    """
    if len(seeds) == 0:
        raise ValueError("seeds must name at least one copy")
    states: list[dict[str, Tensor]] = []
    with torch.random.fork_rng(devices=[]):
        for s in seeds:
            torch.manual_seed(int(s))
            mod = make()
            states.append({k: v.detach().clone() for k, v in mod.named_parameters()})
    template = mod
    params = {k: torch.stack([st[k] for st in states]).requires_grad_(True) for k in states[0]}
    return template, params


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
