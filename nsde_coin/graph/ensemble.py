""":class:`COINEnsemble`: I independent COINs trained at once, with stacked weights and one diffusion for all.

The stacking is :mod:`nsde_coin.stacked`'s (member i's parameters are slice i of ``{W1, b1, W2, b2}``;
:meth:`COINEnsemble.from_models`, :meth:`COINEnsemble.member` and ``seeds=`` initialisation go through
:func:`~nsde_coin.stacked.stack_parameters`, :func:`~nsde_coin.stacked.load_copy` and
:func:`~nsde_coin.stacked.init_copies`) and the head is :class:`~nsde_coin.graph.head.DiffusionHead`, as for
:class:`~nsde_coin.graph.coin.COIN`. The forward is the stacking utility's one documented special case: it does
not go through :func:`~nsde_coin.stacked.forward_copies` (``vmap``) but through
:func:`~nsde_coin.graph.coin.base_logits`, which loops over the members, because

* sparse features (the bag-of-words graphs) run through :class:`~nsde_coin.graph.sparse_base.SparseBase`, a custom
  ``autograd.Function`` on a sparse CSR tensor: ``vmap`` supports neither sparse inputs nor such a function without
  a batching rule, and a batched rule would be the per-member loop again;
* dense features share one residual product ``x W2ᵀ`` for all members, and each member's d×d product stays in cache,
  which is measurably faster than a batched (I, d, d) product (see ``base_logits``).

Adam and weight decay act elementwise, so with the summed loss ``Σ_i loss_i`` each member follows exactly the
trajectory it would follow alone (a test pins member i to a COIN trained alone).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
from torch import nn

from nsde_coin._checks import is_int
from nsde_coin.graph.coin import COIN, COINBase, _check_dims, _check_features, _init_uniform, base_logits
from nsde_coin.graph.head import LOG_FLOOR, DiffusionHead
from nsde_coin.stacked import init_copies, load_copy, stack_parameters

__all__ = ["COINEnsemble"]

_NAMES = ("W1", "b1", "W2", "b2")  # COINBase's parameters, in order


class COINEnsemble(DiffusionHead):
    """I independent COINs trained at once: stacked weights, one sparse product and one diffusion for all.

    Same arguments as :class:`~nsde_coin.graph.coin.COIN` plus ``num_models``, and ``seeds``: when given (one per
    member), member i is initialised exactly as ``torch.manual_seed(seeds[i]); COINBase(in_dim, num_classes)``
    (:func:`nsde_coin.stacked.init_copies`; the global RNG is left untouched); otherwise every stacked tensor is drawn
    from U(−1/√d, 1/√d) in one stream of ``generator``. Parameters: ``W1`` (I, d, d), ``b1`` (I, d), ``W2``
    (I, C, d), ``b2`` (I, C); member i is ``W1[i]`` etc. ``forward`` returns u (I, n, C), :meth:`log_prob`
    (I, n, C); ``last_negative_fraction`` / ``last_min_prob`` are (I,) tensors. Train with the **sum** of the
    members' losses (:func:`~nsde_coin.graph.coin.node_nll_loss` returns them per member) so that each member's gradient
    is its own.
    """

    def __init__(self, num_models: int, in_dim: int, num_classes: int, layer_num: int = 20, sigma2: float = 0.35,
                 solver: str = "explicit", allow_unstable: bool = False, laplacian_kind: str = "paper", *,
                 eps: float = LOG_FLOOR, on_negative: str = "clamp", solver_options: Optional[dict] = None,
                 generator: Optional[torch.Generator] = None, seeds: Optional[Sequence[int]] = None,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        _check_dims(in_dim, num_classes)
        if not is_int(num_models) or num_models < 1:
            raise ValueError(f"num_models must be a positive int, got {num_models!r}")
        if seeds is not None and (len(seeds) != num_models or generator is not None):
            raise ValueError(f"seeds= needs one seed per member ({num_models}, got {len(seeds)}) and no generator=")
        self.num_models, self.in_dim, self.num_classes = int(num_models), int(in_dim), int(num_classes)
        d, i, c = self.in_dim, self.num_models, self.num_classes
        self.W1 = nn.Parameter(torch.empty(i, d, d, dtype=dtype))
        self.b1 = nn.Parameter(torch.empty(i, d, dtype=dtype))
        self.W2 = nn.Parameter(torch.empty(i, c, d, dtype=dtype))
        self.b2 = nn.Parameter(torch.empty(i, c, dtype=dtype))
        self._setup(layer_num, sigma2, solver, allow_unstable, laplacian_kind, eps, on_negative, solver_options)
        if seeds is None:
            self.reset_parameters(generator)
        else:
            self._load(init_copies(lambda: COINBase(d, c, dtype=dtype), seeds)[1])

    def reset_parameters(self, generator: Optional[torch.Generator] = None) -> None:
        """Redraw every weight from U(−1/√d, 1/√d) with d = ``in_dim`` (one stream of ``generator`` when given)."""
        _init_uniform(self.stacked(), self.in_dim, generator)

    def stacked(self) -> tuple[nn.Parameter, ...]:
        """The stacked parameters ``(W1, b1, W2, b2)`` (views of the members' weights, see the class doc)."""
        return tuple(getattr(self, k) for k in _NAMES)

    def _load(self, params: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for k, p in zip(_NAMES, self.stacked()):
                p.copy_(params[k])

    @classmethod
    def from_models(cls, models: Sequence[COIN]) -> COINEnsemble:
        """Stack the weights of COINs with equal settings (their diffusion settings are taken from the first)."""
        if not models:
            raise ValueError("from_models needs at least one COIN")
        for i, m in enumerate(models):
            if not isinstance(m.base, COINBase):
                raise TypeError(f"from_models stacks COINBase weights; model {i} has a {type(m.base).__name__} base")
        m0 = models[0]
        ens = cls(len(models), m0.base.in_dim, m0.base.num_classes, m0.layer_num, m0.sigma2, m0.solver,
                  m0.allow_unstable, m0.laplacian_kind, eps=m0.eps, on_negative=m0.on_negative,
                  solver_options=m0.solver_options, dtype=m0.base.W1.dtype)
        for i, m in enumerate(models):
            if (m.base.in_dim, m.base.num_classes) != (ens.in_dim, ens.num_classes):
                raise ValueError(f"model {i} has dims {(m.base.in_dim, m.base.num_classes)}, "
                                 f"expected {(ens.in_dim, ens.num_classes)}")
        ens._load(stack_parameters([m.base for m in models]))
        ens._op = m0._op
        return ens

    def member(self, i: int) -> COIN:
        """Member ``i`` as a stand-alone :class:`~nsde_coin.graph.coin.COIN` (a copy of its weights; same settings
        and graph)."""
        if not 0 <= i < self.num_models:
            raise ValueError(f"member index {i} out of range [0, {self.num_models})")
        m = COIN(self.in_dim, self.num_classes, self.layer_num, self.sigma2, self.solver, self.allow_unstable,
                 self.laplacian_kind, eps=self.eps, on_negative=self.on_negative, solver_options=self.solver_options,
                 dtype=self.W1.dtype)
        load_copy(m.base, dict(zip(_NAMES, self.stacked())), i)
        m._op = self._op
        return m

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Base logits of every member, (I, n, C)."""
        _check_features(x, self.in_dim)
        return base_logits(x, *self.stacked())
