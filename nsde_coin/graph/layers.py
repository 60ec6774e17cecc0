""":class:`GraphDiffusion`, the graph heat equation as an ``nn.Module`` layer with PyTorch Geometric's contract.

``GraphDiffusion(sigma2=0.1, layer_num=10)(u, edge_index)`` evolves node values ``u`` by ``u_t = −L u`` for the time
``T = layer_num·σ²`` on the graph of ``edge_index`` — COIN's diffusion step (``u ← u − σ² L u``, solver
``"explicit"``) or any registered graph solver for the same time — so it can follow any feature extractor, e.g. a
``GCNConv`` stack whose softmax outputs it diffuses. It is :func:`nsde_coin.graph.diffusion.diffuse` on the
Laplacian :func:`nsde_coin.graph.laplacian.graph_operator` builds (conventions: that module's doc); this module only
adds the layer contract:

* ``forward(u, edge_index, edge_weight=None)`` as in PyG's message-passing layers; ``edge_index`` may also be an n×n
  Laplacian (torch sparse/dense, scipy) or a :class:`~nsde_coin.graph.laplacian.GraphOperator` (e.g. a kNN graph).
* ``cached=True`` (PyG's convention for transductive learning): the operator — Laplacian, λ_max, step matrices,
  factorisations — is built from the first graph seen and reused by every later call; :meth:`reset_parameters`
  clears it. A later call with a different number of nodes or edges raises instead of silently using the old graph.
  ``cached=False`` builds the operator on every call.
* The layer has no parameters. Gradients flow to ``u`` (one custom autograd call per solve), never to the graph:
  an ``edge_weight`` that requires grad raises ``ValueError``.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from nsde_coin.errors import invalid_choice
from nsde_coin.graph import cache
from nsde_coin.graph.diffusion import _resolve_time, check_options, diffuse
from nsde_coin.graph.laplacian import KINDS, SYMMETRIZE, GraphOperator, as_operator, graph_operator
from nsde_coin.solvers import get_solver

__all__ = ["GraphDiffusion"]

_TIME_ONLY = ("exact",)  # solvers whose result depends on T = layer_num·σ² alone (t= needs no steps=)


class GraphDiffusion(nn.Module):
    """Diffusion of node values on a graph for time ``T``: ``u ↦ exp(−T L) u`` or its ``layer_num``-step scheme.

    Args:
        sigma2: step σ² > 0 (the paper's σ²); with ``layer_num``, ``T = layer_num·σ²``.
        layer_num: number of steps k ≥ 0 (0 = identity).
        t: alternative to (sigma2, layer_num): total time T ≥ 0, with ``steps`` (σ² = T/steps). ``steps`` may be
            omitted for ``solver="exact"`` and for ``solver="random_walk", walk="continuous"`` (exact in time).
        steps: number of steps with ``t``.
        solver: a registered graph solver: ``"explicit"`` (the paper's step, stable iff σ²·λ_max < 2),
            ``"implicit"``, ``"exact"``, ``"random_walk"`` (see :mod:`nsde_coin.graph.diffusion`).
        kind: Laplacian built from ``edge_index``: ``"paper"`` (default), ``"sym"``, ``"rw"``, ``"comb"``.
        cached: build the operator once, from the first graph, and reuse it (PyG's ``cached``).
        symmetrize: how a directed ``edge_index`` becomes undirected: ``"max"`` (default), ``"mean"``, ``"none"``.
        allow_unstable: let ``explicit`` run with σ²·λ_max ≥ 2 (the paper's Cora σ² = 0.35).
        **solver_options: options of the solver (checked here: one it does not take raises ``ValueError``), e.g.
            ``tol``/``maxiter`` (implicit), ``tol`` (exact), ``samples``/``walk``/``seed``/``generator``
            (random_walk).

    Shapes:
        ``u``: (n, C) node values, e.g. class probabilities (also (n,) or (B, n, C) for B signals on one graph);
        ``edge_index``: (2, E) int64 with node ids in [0, n); ``edge_weight``: (E,) non-negative or ``None``;
        output: the shape of ``u``.
    """

    def __init__(self, sigma2: Optional[float] = None, layer_num: Optional[int] = None, *, t: Optional[float] = None,
                 steps: Optional[int] = None, solver: str = "explicit", kind: str = "paper", cached: bool = True,
                 symmetrize: str = "max", allow_unstable: bool = False, **solver_options: Any):
        super().__init__()
        info = get_solver(solver, "graph")  # unknown name: ValueError listing the graph solvers
        if kind not in KINDS:
            raise ValueError(invalid_choice("kind", kind, KINDS))
        if symmetrize not in SYMMETRIZE:
            raise ValueError(invalid_choice("symmetrize", symmetrize, SYMMETRIZE))
        if not isinstance(cached, bool):
            raise TypeError(f"cached must be a bool, got {cached!r}")
        self.solver_options = check_options(info, solver_options)
        if t is not None and steps is None and sigma2 is None and layer_num is None:
            if solver in _TIME_ONLY or (solver == "random_walk" and solver_options.get("walk") == "continuous"):
                steps = 1
            else:
                raise ValueError(f"t={t!r} with solver={solver!r} needs steps= (the number of steps of size "
                                 f"t/steps); only solver='exact' and random_walk with walk='continuous' take t alone")
        self.sigma2, self.layer_num = _resolve_time(sigma2, layer_num, t, steps)
        self.solver, self.kind, self.cached, self.symmetrize = solver, kind, cached, symmetrize
        self.allow_unstable = bool(allow_unstable)

    @property
    def t(self) -> float:
        """Total diffusion time T = layer_num·σ²."""
        return self.sigma2 * self.layer_num

    @property
    def operator(self) -> Optional[GraphOperator]:
        """The cached operator (``None`` before the first call, after :meth:`reset_parameters`, or uncached)."""
        hit = cache.lookup(self, "operator")
        return None if hit is None else hit[0]

    def reset_parameters(self) -> None:
        """Forget the cached operator (the layer has no parameters); the next call builds it from its graph."""
        cache.clear(self)

    def graph_operator(self, edge_index: Any, num_nodes: int,
                       edge_weight: Optional[torch.Tensor] = None) -> GraphOperator:
        """The operator this layer diffuses with on the graph ``edge_index`` (the cached one when ``cached``)."""
        if edge_weight is not None and isinstance(edge_weight, torch.Tensor) and edge_weight.requires_grad \
                and torch.is_grad_enabled():
            raise ValueError("edge_weight requires grad, but GraphDiffusion gives no gradient with respect to the "
                             "graph (its operator is constant); pass edge_weight.detach()")
        is_edges = isinstance(edge_index, torch.Tensor) and edge_index.layout == torch.strided \
            and not edge_index.is_floating_point()
        shape = (int(num_nodes), int(edge_index.shape[1]) if is_edges else -1)
        hit = cache.lookup(self, "operator") if self.cached else None
        if hit is not None:
            if shape != hit[1]:
                raise ValueError(f"cached=True: this layer's operator was built for a graph with (nodes, edges) = "
                                 f"{hit[1]}, now called with {shape}; call reset_parameters() on a new "
                                 f"graph or use cached=False")
            return hit[0]
        if is_edges:
            op = graph_operator(edge_index, int(num_nodes), self.kind, edge_weight, symmetrize=self.symmetrize)
        else:
            if edge_weight is not None:
                raise ValueError("edge_weight applies to an edge_index only; a Laplacian or GraphOperator carries its "
                                 "weights")
            op = as_operator(edge_index)
        if self.cached:  # kept in the one graph cache (nsde_coin.graph.cache), owned by this layer
            cache.entries(self)["operator"] = (op, shape)
        return op

    def forward(self, u: torch.Tensor, edge_index: Any, edge_weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``u`` (n, C) [or (n,), (B, n, C)] → ``u_T`` of the same shape on the graph ``edge_index`` (2, E)."""
        if not isinstance(u, torch.Tensor):
            raise TypeError(f"u must be a torch.Tensor of shape (n, C), got {type(u).__name__}")
        if u.dim() not in (1, 2, 3):
            raise ValueError(f"u must have shape (n,), (n, C) or (B, n, C), got {tuple(u.shape)}")
        n = u.shape[1] if u.dim() == 3 else u.shape[0]
        op = self.graph_operator(edge_index, n, edge_weight)
        if op.n != n:
            raise ValueError(f"the graph has {op.n} nodes but u has {n} rows (u shape {tuple(u.shape)})")
        return diffuse(u, op, self.sigma2, self.layer_num, solver=self.solver, allow_unstable=self.allow_unstable,
                       **self.solver_options)

    def extra_repr(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self.solver_options.items() if k != "generator")
        return (f"sigma2={self.sigma2:g}, layer_num={self.layer_num}, solver={self.solver!r}, kind={self.kind!r}, "
                f"cached={self.cached}{opts}")
