"""Exact certificates for COIN against arbitrary feature changes at up to k nodes (docs/certify.md, part 2).

COIN's base classifier acts on each node's own features, so changing the features of a node set S (to any values)
moves only the rows p_j, j ∈ S, of the base probabilities p (n × C), each anywhere in the probability simplex. The
prediction is ``u = P p`` with P the solver's linear diffusion map (``(I − σ²L)^k``, ``(I + σ²L)^{-k}`` or
``exp(−kσ²L)``). For node i with prediction a and another class b, changing the rows in S lowers the margin
``u_ia − u_ib`` by at most ``Σ_{j∈S} P_ij (1 + p_ja − p_jb)`` when ``P ≥ 0`` (worst case ``p'_j = e_b``), so

    node i is certified at k  ⇔  for every b ≠ a:  u_ia − u_ib > (sum of the k largest w_j^b),
    w_j^b = P_ij (1 + p_ja − p_jb)   (j ≠ i when the attacker may not change node i itself).

The bound is tight: the attack ``p'_j = e_b`` on the k largest terms reaches it (as a limit of feature changes:
softmax approaches e_b as one logit grows). P is entrywise non-negative for ``implicit`` and ``exact`` whenever L
has non-positive off-diagonal entries (a Z-matrix: every kind of :mod:`nsde_coin.graph.laplacian`), and for
``explicit`` when, in addition, ``σ²·max_i L_ii ≤ 1``; otherwise :func:`certify_nodes` refuses.

Numerics: P's rows and the margins are computed in float64; a node counts as certified at k only if the margin
exceeds the bound by ``tol`` (default 1e-6, far above the solvers' float64 error: CG tolerance 1e-12, Chebyshev
truncation 1e-14), so float error can only make a certificate smaller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from nsde_coin._checks import is_int, is_real
from nsde_coin.errors import invalid_choice
from nsde_coin.graph.coin import COIN, COINBase
from nsde_coin.graph.diffusion import diffuse
from nsde_coin.graph.laplacian import GraphOperator

__all__ = ["CERTIFIABLE_SOLVERS", "GraphCertificate", "certify_nodes", "diffusion_rows", "check_nonnegative_map"]

CERTIFIABLE_SOLVERS = ("explicit", "implicit", "exact")


@dataclass(frozen=True)
class GraphCertificate:
    """Per-node certificates of :func:`certify_nodes`.

    Attributes:
        nodes: (m,) node ids certified.
        prediction: (m,) predicted class (argmax of u in float64).
        certified_k: (m,) the largest k ≤ ``k_max`` such that no change of the features of at most k nodes can
            change the prediction; ``-1`` when the unperturbed margin itself is ≤ ``tol`` (a tie).
        margin: (m,) u_ia − max_{b≠a} u_ib.
        k_max, include_self: the arguments; solver, layer_num, sigma2: the model's diffusion; num_nodes: n.
    """

    nodes: torch.Tensor
    prediction: torch.Tensor
    certified_k: torch.Tensor
    margin: torch.Tensor
    k_max: int
    include_self: bool
    solver: str
    layer_num: int
    sigma2: float
    num_nodes: int

    def accuracy(self, y: torch.Tensor) -> list[float]:
        """Certified accuracy at k = 0, 1, …, k_max: share of ``nodes`` predicted correctly with certified_k ≥ k.

        ``y`` holds the labels of all n nodes (indexed by ``nodes``) or of the m certified nodes."""
        if y.shape[0] not in (self.num_nodes, self.nodes.shape[0]):
            raise ValueError(f"y must hold the labels of all {self.num_nodes} nodes or of the "
                             f"{self.nodes.shape[0]} certified ones, got shape {tuple(y.shape)}")
        yy = y[self.nodes] if y.shape[0] == self.num_nodes else y
        ok = self.prediction.eq(yy.to(self.prediction.device))
        return [float((ok & (self.certified_k >= k)).double().mean()) for k in range(self.k_max + 1)]


def _coin_of(model: Any) -> COIN:
    coin = getattr(model, "coin", model)  # a wrapper of the old contract holding its COIN as .coin
    if not isinstance(coin, COIN):
        raise TypeError(f"certify_nodes needs a COIN, got "
                        f"{type(model).__name__}; for an ensemble certify each member (COINEnsemble.member(i))")
    if type(coin.base) is not COINBase:
        raise TypeError(f"certify_nodes needs COIN's per-node base (COINBase); the base "
                        f"{type(coin.base).__name__} may mix neighbours' features, so a change at one node could "
                        f"move several rows of the base probabilities and the certificate would not hold")
    return coin


def check_nonnegative_map(op: GraphOperator, solver: str, sigma2: float, layer_num: int) -> None:
    """Raise ``ValueError`` unless the solver's diffusion map is provably entrywise non-negative (see module doc)."""
    if solver not in CERTIFIABLE_SOLVERS:
        raise ValueError(invalid_choice("solver", solver, CERTIFIABLE_SOLVERS)
                         + " (random_walk is a Monte Carlo estimate: certify the deterministic solver with the same "
                           "expectation, explicit for walk='discrete' or exact for walk='continuous')")
    if layer_num == 0:
        return
    if not op.nonpositive_offdiag:
        raise ValueError("the Laplacian has positive off-diagonal entries, so the diffusion map is not guaranteed to "
                         "be non-negative and the certificate does not apply")
    if solver == "explicit" and sigma2 * op.max_diag > 1.0 + 1e-12:
        raise ValueError(
            f"explicit map (I − sigma2·L)^{layer_num} is not entrywise non-negative: sigma2·max_i L_ii = "
            f"{sigma2:g}·{op.max_diag:.4g} = {sigma2 * op.max_diag:.4g} > 1 (needs sigma2 ≤ {1.0 / op.max_diag:.4g}); "
            f"the certificate does not apply — certify the same model with solver='implicit' or 'exact' "
            f"(non-negative for every sigma2) or use a smaller sigma2")


def diffusion_rows(coin: COIN, op: GraphOperator, rows: torch.Tensor) -> torch.Tensor:
    """Rows ``P[rows, :]`` of COIN's diffusion map, (m, n) float64 (identity rows for layer_num = 0)."""
    n, m = op.n, rows.numel()
    eye = torch.zeros(n, m, dtype=torch.float64)
    eye[rows, torch.arange(m)] = 1.0
    if coin.layer_num == 0:
        return eye.t().contiguous()
    kw = dict(solver=coin.solver, allow_unstable=coin.allow_unstable, **coin.solver_options)
    if op.symmetric:  # P = Pᵀ: the columns P e_i are the rows
        with torch.no_grad():
            return diffuse(eye, op, coin.sigma2, coin.layer_num, **kw).t().contiguous()
    v = torch.zeros(n, m, dtype=torch.float64, requires_grad=True)  # Pᵀ e_i by one vector-Jacobian product
    with torch.enable_grad():
        out = diffuse(v, op, coin.sigma2, coin.layer_num, **kw)
        (g,) = torch.autograd.grad(out, v, grad_outputs=eye)
    return g.t().contiguous()


def _features(data: Any) -> torch.Tensor:
    x = getattr(data, "x_csr", None)
    return data.x if x is None else x


def certify_nodes(model: nn.Module, data: Any, k_max: int, include_self: bool = True, *,
                  nodes: Optional[torch.Tensor] = None, chunk: int = 256, tol: float = 1e-6,
                  progress: bool = False) -> GraphCertificate:
    """Largest certified k per node: no change of the features of ≤ k nodes can change COIN's prediction.

    Args:
        model: a :class:`~nsde_coin.graph.coin.COIN` with its per-node base (as ``build_model`` builds it).
        data: a PyG ``Data`` with ``x`` (or ``x_csr``) and, if the model has no graph set, ``edge_index``.
        k_max: the largest k to certify (≥ 0).
        include_self: ``True`` — the attacker may change node i itself (any k nodes); ``False`` — only other nodes.
        nodes: (m,) node ids to certify (default all).
        chunk: rows of P computed at once (memory ≈ chunk·n·(C + 2) float64 values).
        tol: numerical slack on the margin (see the module doc).
        progress: tqdm bar over the chunks.

    Returns:
        A :class:`GraphCertificate`. Raises ``TypeError`` for a base that may mix neighbours, ``ValueError`` when
        the diffusion map is not provably non-negative (e.g. the paper's Cora σ² = 0.35 with ``explicit``).
    """
    return _certify(model, data, k_max, (bool(include_self),), nodes, chunk, tol, progress)[0]


def _certify(model: nn.Module, data: Any, k_max: int, modes: tuple[bool, ...], nodes: Optional[torch.Tensor],
             chunk: int = 256, tol: float = 1e-6, progress: bool = False) -> list[GraphCertificate]:
    """:func:`certify_nodes` for several ``include_self`` modes from one computation of the rows of P."""
    coin = _coin_of(model)
    if not is_int(k_max) or k_max < 0:
        raise ValueError(f"k_max={k_max!r} is not valid; expected an int >= 0")
    if not is_int(chunk) or chunk < 1:
        raise ValueError(f"chunk={chunk!r} is not valid; expected an int >= 1")
    if not is_real(tol) or not tol >= 0:
        raise ValueError(f"tol={tol!r} is not valid; expected a float >= 0")
    x = _features(data)
    n = int(x.shape[0])
    op = coin.operator
    if op is None:
        op = coin.set_graph(data.edge_index, n)
    if op.n != n:
        raise ValueError(f"the model's graph has {op.n} nodes but the data has {n}")
    check_nonnegative_map(op, coin.solver, coin.sigma2, coin.layer_num)
    nodes = torch.arange(n) if nodes is None else torch.as_tensor(nodes, dtype=torch.long).cpu()
    if nodes.dim() != 1 or (nodes.numel() and (int(nodes.min()) < 0 or int(nodes.max()) >= n)):
        raise ValueError(f"nodes must be a 1-D tensor of ids in [0, {n})")
    with torch.no_grad():
        p = coin.logits(x).detach().cpu().double().softmax(-1)  # (n, C) base probabilities
    parts: list[list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = [[] for _ in modes]
    from tqdm.auto import tqdm

    starts = range(0, nodes.numel(), chunk)
    for c0 in tqdm(starts, desc="certify nodes", disable=not progress, leave=False):
        rows = nodes[c0:c0 + chunk]
        prow = diffusion_rows(coin, op, rows)  # (m, n)
        if bool((prow < -1e-9).any()):
            raise ValueError(f"the diffusion map has negative entries (min {float(prow.min()):.3g}); the certificate "
                             f"does not apply")
        for part, inc in zip(parts, modes):
            part.append(_certify_rows(prow, p, rows, k_max, inc, tol))
    return [GraphCertificate(nodes, *(torch.cat([t[j] for t in part]) for j in range(3)), int(k_max), bool(inc),
                             coin.solver, coin.layer_num, coin.sigma2, n) for part, inc in zip(parts, modes)]


def _certify_rows(prow: torch.Tensor, p: torch.Tensor, rows: torch.Tensor, k_max: int, include_self: bool,
                  tol: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(prediction, certified k, margin) for the m nodes whose P rows are ``prow`` (m, n); p (n, C) float64."""
    m, n = prow.shape
    u = prow @ p  # (m, C)
    a = u.argmax(1)
    ar = torch.arange(m)
    ua = u[ar, a]
    pa = p[:, a].t()  # (m, n): p_{j a_i}
    absp = prow.abs()
    allowed = n if include_self else n - 1
    kk = min(k_max, allowed)
    cert = torch.full((m,), k_max, dtype=torch.long)
    margin = torch.full((m,), float("inf"), dtype=torch.float64)
    for b in range(p.shape[1]):
        mb = ua - u[:, b]  # (m,)
        # worst-case decrease per changed node, valid for either sign of P_ij: |P_ij| + P_ij (p_ja − p_jb)
        w = absp + prow * (pa - p[:, b][None, :])
        if not include_self:
            w[ar, rows] = 0.0
        if kk > 0:
            top = torch.topk(w, kk, dim=1).values.cumsum(1)  # (m, kk): S_1 ≤ … ≤ S_kk
            kb = (top < (mb - tol)[:, None]).sum(1)
            if kk < k_max:  # every allowed node changed already: more budget changes nothing
                kb = torch.where(kb == kk, torch.full_like(kb, k_max), kb)
        else:
            kb = torch.full((m,), k_max, dtype=torch.long)
        is_a = a == b
        kb = torch.where(is_a, torch.full_like(kb, k_max), kb)
        cert = torch.minimum(cert, kb)
        margin = torch.where(is_a, margin, torch.minimum(margin, mb))
    cert = torch.where(margin > tol, cert, torch.full_like(cert, -1))
    return a, cert, margin
