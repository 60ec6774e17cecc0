"""COIN, the COnvection-dIffusion Network of Wang, Bao & Shi (2024), for transductive node classification.

Operator splitting (PAPER.md §2):

* convection = the base ResNet classifier, per node: ``h = x + ReLU(x W1 + b1)`` with ``W1 ∈ R^{d×d}`` (d = input
  feature dimension; no hidden size, no dropout), ``logits = h W2 + b2`` (d → C) and ``u0 = softmax(logits)``;
* diffusion = ``layer_num`` steps of the heat equation on the graph applied to the **outputs**:
  ``u ← u − σ² L u`` (solver ``"explicit"``), or any registered graph solver for the same time ``layer_num·σ²``.

Loss: NLL of ``log u`` on the training nodes; prediction: ``argmax u``. ``layer_num = 0`` is the base model alone
(the paper's ablation); its log-probabilities are then ``log_softmax(logits)`` exactly.

Sparse features: ``x`` may be a torch sparse CSR/COO tensor (bag-of-words graphs: Cora has ~18 non-zeros per row
of 1433). Then ``x W1`` and the residual's contribution ``x W2`` are sparse × dense products and the dense n×d copy of
``x`` is never formed (``h W2 = x W2 + ReLU(·) W2``). The backward pass of the weights uses a cached CSR of ``xᵀ``.
Features are data: no gradient flows to a sparse ``x`` (a dense ``x`` gets ordinary autograd).

Non-positive probabilities: with a stable solver ``u`` stays a probability vector, but explicit steps past the
non-negativity bound (σ²·max L_ii > 1, e.g. the paper's Cora setting, which needs ``allow_unstable=True``) can
produce ``u ≤ 0``. :meth:`COIN.log_prob` then clamps ``u`` to ``eps`` (default 1e-12) before the log — the original
code produced NaN losses there — and records ``last_negative_fraction`` (share of entries ≤ 0) and ``last_min_prob``;
``on_negative="raise"`` raises ``ValueError`` instead. Clamped entries get zero gradient.

:class:`COINEnsemble` trains I independent COINs at once with stacked weights (one sparse product for all models).
Adam and weight decay act elementwise, so with the summed loss ``Σ_i loss_i`` each member follows exactly the
trajectory it would follow alone.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from nsde_coin._checks import is_int, is_real
from nsde_coin.errors import deprecated_alias
from nsde_coin.graph.laplacian import KINDS, GraphOperator, as_operator, graph_operator
from nsde_coin.graph.layers import GraphDiffusion
from nsde_coin.graph.sparse_base import SparseBase, SparseFeatures, sparse_features

__all__ = ["COIN", "COINBase", "COINEnsemble", "SparseFeatures", "base_logits", "node_nll_loss", "sparse_features"]

ON_NEGATIVE = ("clamp", "raise")


_SparseBase = SparseBase  # the kernel (nsde_coin.graph.sparse_base), under its historical name


def _is_sparse(x: torch.Tensor) -> bool:
    return x.layout in (torch.sparse_csr, torch.sparse_coo)


def _checked_features(x: torch.Tensor, w: torch.Tensor) -> SparseFeatures:
    feats = sparse_features(x)
    if feats.vals.dtype != w.dtype:
        raise TypeError(f"features dtype {feats.vals.dtype} does not match the weights' dtype {w.dtype}")
    return feats


def _check_features(x: Any, in_dim: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"node features must be a torch.Tensor (dense, sparse CSR or COO), got {type(x).__name__}")
    if x.dim() != 2 or x.shape[1] != in_dim:
        raise ValueError(f"node features must have shape (n, in_dim={in_dim}), got {tuple(x.shape)}")
    if x.layout == torch.strided:
        if not x.is_floating_point():
            raise TypeError(f"dense node features must be floating point, got {x.dtype}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("node features contain NaN or Inf")
    elif not _is_sparse(x):
        raise TypeError(f"unsupported feature layout {x.layout}; valid: torch.strided, sparse_csr, sparse_coo")


def base_logits(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
                b2: torch.Tensor) -> torch.Tensor:
    """Logits of I stacked base ResNets ``(x + ReLU(x W1_i + b1_i)) W2_iᵀ + b2_i``.

    Shapes: x (n, d) dense or sparse; w1 (I, d, d) used as ``x @ w1[i]``; b1 (I, d); w2 (I, C, d) (``nn.Linear``
    layout); b2 (I, C) → (I, n, C).

    Performance (CPU, measured): the output layer is computed as ``(W2 hᵀ)ᵀ`` so that it and its two gradients are
    "wide" matrix products; MKL's skinny n×d @ d×C products (C = 7) are ~10× slower. Members are looped over: one
    sparse product with the stacked (d, I·d) weight is far slower than I products whose d×d weight stays in cache.
    Sparse x runs each member through the one hand-written kernel :class:`_SparseBase`.
    """
    if _is_sparse(x):
        feats = _checked_features(x, w1)
        # unbind, not w1[i]: the backward of unbind stacks the members' gradients once, whereas indexing would
        # allocate and accumulate a full (I, d, d) gradient per member
        return torch.stack([_SparseBase.apply(*p, feats) for p in zip(w1.unbind(0), b1.unbind(0), w2.unbind(0),
                                                                       b2.unbind(0))])
    res = x @ w2.reshape(-1, w2.shape[-1]).t()  # x W2ᵀ for all members, (n, I·C): the residual branch
    out = [(w2_i @ torch.relu(x @ w1_i + b1_i).t()).t() for w1_i, b1_i, w2_i in zip(w1.unbind(0), b1.unbind(0),
                                                                                      w2.unbind(0))]  # I × (n, C)
    return torch.stack(out) + res.view(x.shape[0], w1.shape[0], -1).transpose(0, 1) + b2[:, None, :]


def _init_uniform(params: Sequence[torch.Tensor], in_dim: int, generator: Optional[torch.Generator]) -> None:
    """U(−1/√d, 1/√d) for every tensor, in order (the ``nn.Linear`` default; one generator stream)."""
    bound = 1.0 / math.sqrt(in_dim)
    with torch.no_grad():
        for t in params:
            t.uniform_(-bound, bound, generator=generator)


# -------------------------------------------------------------------------------------------------------- models
class COINBase(nn.Module):
    """The base (convection) classifier: ``logits = (x + ReLU(x W1 + b1)) W2 + b2``.

    Args:
        in_dim: feature dimension d (W1 is d×d).
        num_classes: C.
        generator: optional ``torch.Generator`` for the initialisation (U(−1/√d, 1/√d) for every weight and bias,
            the ``nn.Linear`` default); the global RNG when ``None``.
        dtype: parameter dtype.

    Parameters: ``W1`` (d, d) used as ``x @ W1``, ``b1`` (d,), ``W2`` (C, d) (``nn.Linear`` layout: ``h @ W2ᵀ``),
    ``b2`` (C,).
    """

    def __init__(self, in_dim: int, num_classes: int, *, generator: Optional[torch.Generator] = None,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        _check_dims(in_dim, num_classes)
        self.in_dim, self.num_classes = int(in_dim), int(num_classes)
        self.W1 = nn.Parameter(torch.empty(in_dim, in_dim, dtype=dtype))
        self.b1 = nn.Parameter(torch.empty(in_dim, dtype=dtype))
        self.W2 = nn.Parameter(torch.empty(num_classes, in_dim, dtype=dtype))
        self.b2 = nn.Parameter(torch.empty(num_classes, dtype=dtype))
        self.reset_parameters(generator)

    def reset_parameters(self, generator: Optional[torch.Generator] = None) -> None:
        """Redraw every weight from U(−1/√d, 1/√d) with d = ``in_dim`` (one stream of ``generator`` when given)."""
        _init_uniform((self.W1, self.b1, self.W2, self.b2), self.in_dim, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (n, d) dense or sparse → logits (n, C)."""
        _check_features(x, self.in_dim)
        if _is_sparse(x):  # the kernel directly: no stacking of one member's weights and gradients
            return _SparseBase.apply(self.W1, self.b1, self.W2, self.b2, _checked_features(x, self.W1))
        return base_logits(x, self.W1[None], self.b1[None], self.W2[None], self.b2[None])[0]


def _check_dims(in_dim: Any, num_classes: Any) -> None:
    for name, v in (("in_dim", in_dim), ("num_classes", num_classes)):
        if not is_int(v) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")


class _DiffusionHead(nn.Module):
    """Graph handling + output diffusion + safe log shared by :class:`COIN` and :class:`COINEnsemble`."""

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
        if not is_real(sigma2) or not math.isfinite(sigma2) \
                or sigma2 <= 0:
            raise ValueError(f"sigma2 must be a finite number > 0, got {sigma2!r}")
        if laplacian_kind not in KINDS:
            raise ValueError(f"laplacian_kind={laplacian_kind!r} is not valid; valid choices: {', '.join(KINDS)}")
        if on_negative not in ON_NEGATIVE:
            raise ValueError(f"on_negative={on_negative!r} is not valid; valid choices: {', '.join(ON_NEGATIVE)}")
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
        self._edge_cache: Optional[tuple[weakref.ref, int, GraphOperator]] = None
        self.last_negative_fraction: Union[float, torch.Tensor] = 0.0
        self.last_min_prob: Union[float, torch.Tensor] = float("nan")

    def set_graph(self, graph: Any, num_nodes: Optional[int] = None,
                  edge_weight: Optional[torch.Tensor] = None) -> GraphOperator:
        """Fix the graph once: an edge_index (2, E) (needs ``num_nodes``; Laplacian of ``laplacian_kind``), a
        Laplacian (torch sparse/dense, scipy) or a :class:`GraphOperator`. Returns the operator."""
        self._op = self._operator(graph, num_nodes, edge_weight)
        return self._op

    @property
    def operator(self) -> Optional[GraphOperator]:
        return self._op

    def _operator(self, graph: Any, num_nodes: Optional[int], edge_weight: Optional[torch.Tensor] = None
                  ) -> GraphOperator:
        if graph is None:
            if self._op is None:
                raise ValueError("no graph: pass an edge_index / Laplacian to forward or call set_graph first")
            return self._op
        if isinstance(graph, torch.Tensor) and graph.layout == torch.strided and not graph.is_floating_point():
            if num_nodes is None:
                raise ValueError("num_nodes is required with an edge_index")
            c = self._edge_cache
            if c is not None and c[0]() is graph and c[1] == num_nodes and edge_weight is None:
                return c[2]
            op = graph_operator(graph, int(num_nodes), self.laplacian_kind, edge_weight)
            if edge_weight is None:
                self._edge_cache = (weakref.ref(graph), num_nodes, op)
            return op
        return as_operator(graph)

    def _diffuse(self, u0: torch.Tensor, graph: Any, n: int) -> torch.Tensor:
        op = self._operator(graph, n)
        if op.n != n:
            raise ValueError(f"the graph has {op.n} nodes but the features have {n} rows")
        if self.layer_num == 0:
            return u0
        return self.diffusion(u0, op)

    def _safe_log(self, u: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        if self.layer_num == 0:
            self.last_negative_fraction, self.last_min_prob = self._stats(logits.softmax(-1))
            return F.log_softmax(logits, dim=-1)
        frac, umin = self._stats(u)
        self.last_negative_fraction, self.last_min_prob = frac, umin
        if self.on_negative == "raise" and bool(torch.as_tensor(frac).gt(0).any()):
            raise ValueError(f"diffused probabilities have entries ≤ 0 (fraction {frac}, min {umin}); "
                             f"sigma2·max L_ii > 1 with the explicit solver — use solver='implicit'/'exact', a "
                             f"smaller sigma2, or on_negative='clamp'")
        return torch.log(u.clamp_min(self.eps))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Base logits: (n, C) for :class:`COIN`, (I, n, C) for :class:`COINEnsemble`."""
        raise NotImplementedError

    def _logits_and_u(self, x: torch.Tensor, graph: Any) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.logits(x)
        return logits, self._diffuse(logits.softmax(-1), graph, logits.shape[-2])

    def forward(self, x: torch.Tensor, graph: Any = None) -> torch.Tensor:
        """x (n, d) dense/sparse, graph (edge_index, Laplacian or operator; ``None`` = the one set) → u with the
        shape of :meth:`logits`: (n, C) for :class:`COIN`, (I, n, C) for :class:`COINEnsemble`."""
        return self._logits_and_u(x, graph)[1]

    def log_prob(self, x: torch.Tensor, graph: Any = None) -> torch.Tensor:
        """Safe ``log u`` (the shape of :meth:`forward`) — the input of ``F.nll_loss`` / :func:`nll_loss`."""
        logits, u = self._logits_and_u(x, graph)
        return self._safe_log(u, logits)

    def _stats(self, u: torch.Tensor) -> tuple[Any, Any]:
        with torch.no_grad():
            if u.dim() == 3:
                return (u <= 0).flatten(1).double().mean(1), u.flatten(1).amin(1)
            return float((u <= 0).double().mean()), float(u.min())


class COIN(_DiffusionHead):
    """COIN: a base classifier (the paper's ResNet :class:`COINBase` by default) followed by diffusion of its softmax
    outputs on the graph (a :class:`~nsde_coin.graph.layers.GraphDiffusion`, ``self.diffusion``).

    Args:
        in_dim, num_classes: d and C of the default base ``COINBase(in_dim, num_classes)``; omit both with ``base``.
        base: any ``nn.Module`` mapping the features x to logits (n, C) (e.g. an MLP or a GNN closed over its
            graph); ``None`` = the paper's ResNet.
        layer_num: diffusion steps k (0 = the base model alone).
        sigma2: step σ² (total diffusion time k·σ²).
        solver: graph solver name (``explicit`` as in the paper, ``implicit``, ``exact``, ``random_walk``).
        allow_unstable: let ``explicit`` run past σ²·λ_max ≥ 2 (needed for the paper's Cora σ² = 0.35).
        laplacian_kind: Laplacian built from an edge_index (default the paper's).
        eps: floor of u inside the log (see the module doc); on_negative: ``"clamp"`` or ``"raise"``.
        solver_options: extra keywords for :func:`~nsde_coin.graph.diffusion.diffuse` (e.g. ``samples``, ``walk``).
        generator, dtype: initialisation RNG and parameter dtype.

    Attributes after a :meth:`log_prob` call: ``last_negative_fraction`` (float), ``last_min_prob`` (float).
    """

    def __init__(self, in_dim: Optional[int] = None, num_classes: Optional[int] = None, layer_num: int = 20,
                 sigma2: float = 0.35, solver: str = "explicit", allow_unstable: bool = False,
                 laplacian_kind: str = "paper", *, base: Optional[nn.Module] = None, eps: float = 1e-12,
                 on_negative: str = "clamp", solver_options: Optional[dict] = None,
                 generator: Optional[torch.Generator] = None, dtype: torch.dtype = torch.float32):
        super().__init__()
        if base is None:
            if in_dim is None or num_classes is None:
                raise ValueError(f"COIN needs in_dim and num_classes (for the default COINBase) or base=; got "
                                 f"in_dim={in_dim!r}, num_classes={num_classes!r}")
            base = COINBase(in_dim, num_classes, generator=generator, dtype=dtype)
        elif not isinstance(base, nn.Module):
            raise TypeError(f"base must be an nn.Module mapping features to logits (n, C), got {type(base).__name__}")
        elif in_dim is not None or num_classes is not None or generator is not None:
            raise ValueError("pass either base= or (in_dim, num_classes, generator) for the default COINBase, not "
                             "both")
        self.base = base
        self._setup(layer_num, sigma2, solver, allow_unstable, laplacian_kind, eps, on_negative, solver_options)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Base logits (n, C)."""
        return self.base(x)


class COINEnsemble(_DiffusionHead):
    """I independent COINs trained at once: stacked weights, one sparse product and one diffusion for all.

    Same arguments as :class:`COIN` plus ``num_models``. Parameters: ``W1`` (I, d, d), ``b1`` (I, d), ``W2``
    (I, C, d), ``b2`` (I, C); member i is ``W1[i]`` etc. ``forward`` returns u (I, n, C), :meth:`log_prob`
    (I, n, C); ``last_negative_fraction`` / ``last_min_prob`` are (I,) tensors. Train with the **sum** of the
    members' losses (:func:`node_nll_loss` returns them per member) so that each member's gradient is its own.
    """

    def __init__(self, num_models: int, in_dim: int, num_classes: int, layer_num: int = 20, sigma2: float = 0.35,
                 solver: str = "explicit", allow_unstable: bool = False, laplacian_kind: str = "paper", *,
                 eps: float = 1e-12, on_negative: str = "clamp", solver_options: Optional[dict] = None,
                 generator: Optional[torch.Generator] = None, dtype: torch.dtype = torch.float32):
        super().__init__()
        _check_dims(in_dim, num_classes)
        if not is_int(num_models) or num_models < 1:
            raise ValueError(f"num_models must be a positive int, got {num_models!r}")
        self.num_models, self.in_dim, self.num_classes = int(num_models), int(in_dim), int(num_classes)
        d, i, c = self.in_dim, self.num_models, self.num_classes
        self.W1 = nn.Parameter(torch.empty(i, d, d, dtype=dtype))
        self.b1 = nn.Parameter(torch.empty(i, d, dtype=dtype))
        self.W2 = nn.Parameter(torch.empty(i, c, d, dtype=dtype))
        self.b2 = nn.Parameter(torch.empty(i, c, dtype=dtype))
        self._setup(layer_num, sigma2, solver, allow_unstable, laplacian_kind, eps, on_negative, solver_options)
        self.reset_parameters(generator)

    def reset_parameters(self, generator: Optional[torch.Generator] = None) -> None:
        """Redraw every weight from U(−1/√d, 1/√d) with d = ``in_dim`` (one stream of ``generator`` when given)."""
        _init_uniform((self.W1, self.b1, self.W2, self.b2), self.in_dim, generator)

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
        with torch.no_grad():
            for i, m in enumerate(models):
                if (m.base.in_dim, m.base.num_classes) != (ens.in_dim, ens.num_classes):
                    raise ValueError(f"model {i} has dims {(m.base.in_dim, m.base.num_classes)}, "
                                     f"expected {(ens.in_dim, ens.num_classes)}")
                ens.W1[i] = m.base.W1
                ens.b1[i] = m.base.b1
                ens.W2[i] = m.base.W2
                ens.b2[i] = m.base.b2
        ens._op = m0._op
        return ens

    def member(self, i: int) -> COIN:
        """Member ``i`` as a stand-alone :class:`COIN` (a copy of its weights; same settings and graph)."""
        if not 0 <= i < self.num_models:
            raise ValueError(f"member index {i} out of range [0, {self.num_models})")
        m = COIN(self.in_dim, self.num_classes, self.layer_num, self.sigma2, self.solver, self.allow_unstable,
                 self.laplacian_kind, eps=self.eps, on_negative=self.on_negative, solver_options=self.solver_options,
                 dtype=self.W1.dtype)
        with torch.no_grad():
            m.base.W1.copy_(self.W1[i])
            m.base.b1.copy_(self.b1[i])
            m.base.W2.copy_(self.W2[i])
            m.base.b2.copy_(self.b2[i])
        m._op = self._op
        return m

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Base logits of every member, (I, n, C)."""
        _check_features(x, self.in_dim)
        return base_logits(x, self.W1, self.b1, self.W2, self.b2)



def node_nll_loss(log_u: torch.Tensor, y: torch.Tensor, index: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean NLL over the nodes ``index`` (all when ``None``) of node log-probabilities: a scalar for log_u (n, C),
    per member (I,) for (I, n, C) — sum the latter for an ensemble step. (The core's
    :func:`nsde_coin.training.nll_loss` is the NLL of a batch output given as probabilities, logits or
    log-probabilities.)"""
    if index is not None:
        log_u, y = log_u[..., index, :], y[index]
    if log_u.dim() == 2:
        return F.nll_loss(log_u, y)
    return -log_u.gather(-1, y.expand(log_u.shape[0], -1).unsqueeze(-1)).squeeze(-1).mean(-1)


nll_loss = deprecated_alias(node_nll_loss, "nsde_coin.graph.coin.nll_loss", "nsde_coin.graph.node_nll_loss")
