"""The COIN head, written once: base outputs → softmax → diffusion on the graph → floored log.

Every COIN-style model in the package ends the same way (PAPER.md §2, §4):

1. :func:`head_outputs`: ``u0 = softmax(logits)`` over the last axis (classification; a regression head such as the
   COVID model keeps its raw outputs, ``probabilities=False``), then ``u = diffusion(u0)`` with ``diffusion`` any
   map of node values — normally a :class:`~nsde_coin.graph.layers.GraphDiffusion` bound to a graph, or
   :func:`dropout_diffusion`'s repeated [dropout → one diffusion step] (the COVID variant); ``None`` = the base alone;
2. :func:`head_log`: ``log u`` for the NLL, ``log max(u, eps)`` with the one floor :data:`LOG_FLOOR` (explicit steps
   past the non-negativity bound can push entries of ``u`` to ≤ 0), or exactly ``log_softmax(logits)`` when there
   is no diffusion.

:class:`DiffusionHead` is the ``nn.Module`` form shared by :class:`~nsde_coin.graph.coin.COIN` and
:class:`~nsde_coin.graph.ensemble.COINEnsemble`: settings, graph resolution (an ``edge_index``'s operator is kept in
:mod:`nsde_coin.graph.cache`, shared by every model on that tensor), the two steps above and the negativity
statistics. The few-shot heads (:mod:`nsde_coin.apps.fewshot`) and the COVID model (:mod:`nsde_coin.apps.covid`)
call the two functions directly on their stacked base outputs, and the protocol's read-out training
(:mod:`nsde_coin.graph.experiment.train`) with its diffusion restricted to the training and validation rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Optional, Union

import torch
from torch import Tensor, nn

from nsde_coin._checks import is_int, is_real
from nsde_coin.errors import invalid_choice
from nsde_coin.graph import cache
from nsde_coin.graph.laplacian import KINDS, GraphOperator, as_operator, graph_operator
from nsde_coin.graph.layers import GraphDiffusion

__all__ = ["LOG_FLOOR", "ON_NEGATIVE", "DiffusionHead", "dropout_diffusion", "edge_operator", "head_log",
           "head_outputs"]

LOG_FLOOR = 1e-12  # floor of u inside log u (the original code produced NaN losses at u ≤ 0)
ON_NEGATIVE = ("clamp", "raise")
FEW_CLASSES = 16  # below this many classes the CPU softmax runs along a transposed copy (see _class_softmax)


def _class_softmax(logits: Tensor, log: bool = False) -> Tensor:
    """(log-)softmax over the last axis, (..., n, C) → same shape, contiguous. On the CPU with fewer than
    :data:`FEW_CLASSES` classes it runs over the node axis of a transposed copy: torch's last-axis kernel vectorises
    along the C entries, and with C < 16 it was ~7× slower (Cora (2485, 7), 1 thread, Intel Xeon: 365 µs against
    51 µs; forward + backward 572 µs against 118 µs; Coauthor Physics (34493, 5): 3.9 ms against 0.5 ms)."""
    if logits.device.type != "cpu" or logits.dim() < 2 or logits.shape[-1] >= FEW_CLASSES:
        return logits.log_softmax(-1) if log else logits.softmax(-1)
    t = logits.transpose(-1, -2).contiguous()
    return (t.log_softmax(-2) if log else t.softmax(-2)).transpose(-1, -2).contiguous()


def head_outputs(logits: Tensor, diffusion: Optional[Callable[[Tensor], Tensor]] = None, *,
                 probabilities: bool = True) -> Tensor:
    """``u = diffusion(softmax(logits))`` (softmax over the last axis; skipped when ``probabilities=False``).

    Shapes: logits (..., n, C) → u of the same shape (``diffusion`` must keep it); ``diffusion=None`` = the base
    model alone (u = softmax(logits)).
    """
    u0 = _class_softmax(logits) if probabilities else logits
    return u0 if diffusion is None else diffusion(u0)


def head_log(logits: Tensor, u: Optional[Tensor] = None, eps: float = LOG_FLOOR) -> Tensor:
    """``log u`` of the head: ``log max(u, eps)`` for diffused probabilities ``u``, and ``log_softmax(logits)``
    (exact, no floor needed) when ``u`` is ``None`` (no diffusion). Shape of ``u`` (of ``logits`` without ``u``);
    floored entries get zero gradient."""
    if u is None:
        return _class_softmax(logits, log=True)
    return torch.log(u.clamp_min(eps))


def dropout_diffusion(step: Callable[[Tensor], Tensor], layers: int, p: float = 0.0,
                      generator: Optional[torch.Generator] = None,
                      columns: Optional[tuple[int, slice]] = None) -> Callable[[Tensor], Tensor]:
    """``layers`` × [inverted dropout with probability p → ``step``] as one diffusion map (the COVID model's head:
    dropout on the diffused values is multiplicative noise, PAPER.md §1). ``p = 0`` is ``step`` applied ``layers``
    times. The dropout masks are drawn from ``generator`` (the global RNG when ``None``) in layer order.
    ``columns = (total, sel)``: u (n, R) holds the columns ``sel`` of a (n, total) signal, so each mask is drawn
    (n, total) and sliced — the numbers those columns get when all ``total`` run at once (a sweep's unit)."""

    def mask(u: Tensor) -> Tensor:
        if columns is None:
            return torch.rand(u.shape, generator=generator)
        return torch.rand(u.shape[0], columns[0], generator=generator)[:, columns[1]]

    def run(u: Tensor) -> Tensor:
        for _ in range(layers):
            if p > 0:
                u = u * ((mask(u) >= p).to(u.dtype) / (1.0 - p))
            u = step(u)
        return u

    return run


def edge_operator(edge_index: Tensor, num_nodes: int, kind: str = "paper",
                  edge_weight: Optional[Tensor] = None) -> GraphOperator:
    """The :class:`GraphOperator` of an ``edge_index`` (2, E), kept per (tensor, num_nodes, kind) in
    :mod:`nsde_coin.graph.cache` while the tensor lives (weighted graphs are built afresh: the weights may change)."""
    if edge_weight is not None:
        return graph_operator(edge_index, int(num_nodes), kind, edge_weight)
    return cache.get_or_build(edge_index, ("operator", int(num_nodes), kind),
                              lambda: graph_operator(edge_index, int(num_nodes), kind))


class DiffusionHead(nn.Module):
    """Graph handling + output diffusion + safe log shared by COIN and COINEnsemble (subclasses define
    :meth:`logits`)."""

    # the step count and step size live in the diffusion layer only (one source of truth: setting coin.sigma2
    # after construction changes what the model computes)
    @property
    def sigma2(self) -> float:
        """Step σ² of the explicit scheme (total diffusion time ``layer_num · sigma2``)."""
        return self.diffusion.sigma2

    @sigma2.setter
    def sigma2(self, value: float) -> None:
        self.diffusion.sigma2 = float(value)

    @property
    def layer_num(self) -> int:
        """Diffusion steps k (0 = the base model alone)."""
        return self.diffusion.layer_num

    @layer_num.setter
    def layer_num(self, value: int) -> None:
        self.diffusion.layer_num = int(value)

    def _setup(self, layer_num: int, sigma2: float, solver: str, allow_unstable: bool, laplacian_kind: str,
               eps: float, on_negative: str, solver_options: Optional[dict]) -> None:
        if not is_int(layer_num) or layer_num < 0:
            raise ValueError(f"layer_num must be an int ≥ 0 (0 = base model only), got {layer_num!r}")
        if not is_real(sigma2) or not math.isfinite(sigma2) or sigma2 <= 0:
            raise ValueError(f"sigma2 must be a finite number > 0, got {sigma2!r}")
        if laplacian_kind not in KINDS:
            raise ValueError(invalid_choice("laplacian_kind", laplacian_kind, KINDS))
        if on_negative not in ON_NEGATIVE:
            raise ValueError(invalid_choice("on_negative", on_negative, ON_NEGATIVE))
        if not (0 < eps < 1):
            raise ValueError(f"eps must lie in (0, 1), got {eps!r}")
        self.solver = solver
        self.allow_unstable, self.laplacian_kind = bool(allow_unstable), laplacian_kind
        self.eps, self.on_negative = float(eps), on_negative
        self.solver_options = dict(solver_options or {})
        # the diffusion itself (checks the solver name and its options); the head resolves the graph (set_graph,
        # edge_index cache) and hands the layer an operator, so the layer's own cache stays off
        self.diffusion = GraphDiffusion(float(sigma2), int(layer_num), solver=solver, kind=laplacian_kind, cached=False,
                                        allow_unstable=self.allow_unstable, **self.solver_options)
        self._op: Optional[GraphOperator] = None
        self.last_negative_fraction: Union[float, Tensor] = 0.0
        self.last_min_prob: Union[float, Tensor] = float("nan")

    def set_graph(self, graph: Any, num_nodes: Optional[int] = None,
                  edge_weight: Optional[Tensor] = None) -> GraphOperator:
        """Fix the graph once: an edge_index (2, E) (needs ``num_nodes``; Laplacian of ``laplacian_kind``), a
        Laplacian (torch sparse/dense, scipy) or a :class:`GraphOperator`. Returns the operator."""
        self._op = self._operator(graph, num_nodes, edge_weight)
        return self._op

    @property
    def operator(self) -> Optional[GraphOperator]:
        """The graph fixed by :meth:`set_graph` (``None`` before)."""
        return self._op

    def _operator(self, graph: Any, num_nodes: Optional[int], edge_weight: Optional[Tensor] = None
                  ) -> GraphOperator:
        if graph is None:
            if self._op is None:
                raise ValueError("no graph: pass an edge_index / Laplacian to forward or call set_graph first")
            return self._op
        if isinstance(graph, Tensor) and graph.layout == torch.strided and not graph.is_floating_point():
            if num_nodes is None:
                raise ValueError("num_nodes is required with an edge_index")
            return edge_operator(graph, int(num_nodes), self.laplacian_kind, edge_weight)
        return as_operator(graph)

    def _diffusion_on(self, graph: Any, n: int) -> Optional[Callable[[Tensor], Tensor]]:
        """The diffusion map of :func:`head_outputs` on ``graph`` (``None`` when layer_num = 0)."""
        op = self._operator(graph, n)
        if op.n != n:
            raise ValueError(f"the graph has {op.n} nodes but the features have {n} rows")
        if self.layer_num == 0:
            return None
        return lambda u0: self.diffusion(u0, op)

    def _safe_log(self, u: Tensor, logits: Tensor) -> Tensor:
        if self.layer_num == 0:
            self.last_negative_fraction, self.last_min_prob = self._stats(u)
            return head_log(logits)
        frac, umin = self._stats(u)
        self.last_negative_fraction, self.last_min_prob = frac, umin
        if self.on_negative == "raise" and bool(torch.as_tensor(frac).gt(0).any()):
            raise ValueError(f"diffused probabilities have entries ≤ 0 (fraction {frac}, min {umin}); "
                             f"sigma2·max L_ii > 1 with the explicit solver — use solver='implicit'/'exact', a "
                             f"smaller sigma2, or on_negative='clamp'")
        return head_log(logits, u, self.eps)

    def logits(self, x: Tensor) -> Tensor:
        """Base logits: (n, C) for COIN, (I, n, C) for COINEnsemble."""
        raise NotImplementedError

    def _logits_and_u(self, x: Tensor, graph: Any) -> tuple[Tensor, Tensor]:
        logits = self.logits(x)
        return logits, head_outputs(logits, self._diffusion_on(graph, logits.shape[-2]))

    def forward(self, x: Tensor, graph: Any = None) -> Tensor:
        """x (n, d) dense/sparse, graph (edge_index, Laplacian or operator; ``None`` = the one set) → u with the
        shape of :meth:`logits`: (n, C) for COIN, (I, n, C) for COINEnsemble."""
        return self._logits_and_u(x, graph)[1]

    def log_prob(self, x: Tensor, graph: Any = None) -> Tensor:
        """Safe ``log u`` (the shape of :meth:`forward`) — the input of ``F.nll_loss`` / ``node_nll_loss``."""
        return self.log_prob_of_logits(self.logits(x), graph)

    def log_prob_of_logits(self, logits: Tensor, graph: Any = None) -> Tensor:
        """:meth:`log_prob` from base logits already computed ((n, C), or (I, n, C) for COINEnsemble): the head's
        diffusion on ``graph`` and its safe log, without running the base again."""
        return self._safe_log(head_outputs(logits, self._diffusion_on(graph, logits.shape[-2])), logits)

    def _stats(self, u: Tensor) -> tuple[Any, Any]:
        with torch.no_grad():
            if u.dim() == 3:
                return (u <= 0).flatten(1).double().mean(1), u.flatten(1).amin(1)
            return float((u <= 0).double().mean()), float(u.min())
