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

The head — softmax, diffusion, floored log, graph resolution — is :mod:`nsde_coin.graph.head` (shared with the
few-shot and COVID applications); :class:`~nsde_coin.graph.ensemble.COINEnsemble` (I COINs with stacked weights,
importable from here too) is :mod:`nsde_coin.graph.ensemble`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from nsde_coin._checks import all_finite, is_int
from nsde_coin._lazy import lazy_attributes
from nsde_coin.errors import deprecated_alias
from nsde_coin.graph.backward_adam import BackwardAdam
from nsde_coin.graph.head import LOG_FLOOR, ON_NEGATIVE, DiffusionHead  # noqa: F401 (ON_NEGATIVE: its old import path)
from nsde_coin.graph.sparse_base import SparseBase, SparseFeatures, sparse_features

__all__ = ["COIN", "COINBase", "SparseFeatures", "base_logits", "node_nll_loss", "sparse_features"]


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
        if not all_finite(x):
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

    ``w1_step``: ``None``, or a :class:`~nsde_coin.graph.backward_adam.BackwardAdam` that updates W1 inside the
    backward pass of the sparse kernel (no ∇W1 is stored; leave W1 out of the optimizer). Sparse features only.
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
        self.w1_step: Optional[BackwardAdam] = None
        self.reset_parameters(generator)

    def reset_parameters(self, generator: Optional[torch.Generator] = None) -> None:
        """Redraw every weight from U(−1/√d, 1/√d) with d = ``in_dim`` (one stream of ``generator`` when given)."""
        _init_uniform((self.W1, self.b1, self.W2, self.b2), self.in_dim, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (n, d) dense or sparse → logits (n, C)."""
        _check_features(x, self.in_dim)
        if _is_sparse(x):  # the kernel directly: no stacking of one member's weights and gradients
            return _SparseBase.apply(self.W1, self.b1, self.W2, self.b2, _checked_features(x, self.W1), None,
                                     self.w1_step if torch.is_grad_enabled() and self.W1.requires_grad else None)
        if self.w1_step is not None and torch.is_grad_enabled():
            raise ValueError("COINBase.w1_step (Adam inside the backward pass) needs sparse features x; got a dense "
                             "tensor: pass x.to_sparse_csr(), or set w1_step = None and optimise W1 as usual")
        return base_logits(x, self.W1[None], self.b1[None], self.W2[None], self.b2[None])[0]


def _check_dims(in_dim: Any, num_classes: Any) -> None:
    for name, v in (("in_dim", in_dim), ("num_classes", num_classes)):
        if not is_int(v) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")


class COIN(DiffusionHead):
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
                 laplacian_kind: str = "paper", *, base: Optional[nn.Module] = None, eps: float = LOG_FLOOR,
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


# ``from nsde_coin.graph.coin import COINEnsemble`` (its old home) without an import cycle: ensemble imports coin
__getattr__, __dir__ = lazy_attributes(__name__, {"COINEnsemble": "nsde_coin.graph.ensemble"})
