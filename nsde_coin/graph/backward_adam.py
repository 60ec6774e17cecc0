"""Adam for COIN's d×d weight W1, applied inside the sparse base layer's backward pass.

The base layer's backward produces ∇W1 one column panel at a time (:mod:`nsde_coin.graph.sparse_base`). With a
:class:`BackwardAdam` attached (``COINBase.w1_step``), each panel's gradient is applied to W1 right where it is
computed — by the compiled kernel row by row while the row is in registers, else by torch ops on the whole
gradient — and no gradient is stored for W1 (``W1.grad`` stays ``None``, so the regular optimizer, which owns
every other parameter, skips it). What that saves per epoch: writing the d×d gradient and reading it back in the
optimizer's pass, and the memory of that gradient (Coauthor Physics, d = 8415: 283 MB).

The update is ``torch.optim.Adam``'s (L2 weight decay added to the gradient, no amsgrad): the same numbers to float32
rounding (tests/graph/test_graph_ops_backward_adam.py). It runs once per backward pass of the layer, so it suits
training loops that call ``backward`` once per optimizer step with no gradient clipping or accumulation between
them — the graph protocol's loop (:func:`~nsde_coin.graph.experiment.train.train_run` attaches it itself). W1
must be used by that one layer only (a second use or another loss term on W1 raises ``ValueError``: its gradient
would be dropped). Its state is not part of the model's or the optimizer's ``state_dict``: save
``base.w1_step.state_dict()`` beside them, and a new ``BackwardAdam`` resumes from it with ``load_state_dict`` (the
moments are saved in W1's layout, so the panel width may change in between).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch

from nsde_coin._checks import all_finite, is_int, is_real

__all__ = ["BackwardAdam"]


class BackwardAdam:
    """Adam state and hyper-parameters for one W1 (see the module doc).

    Args:
        lr: learning rate (> 0).
        betas: (β1, β2), each in [0, 1).
        eps: term added to the denominator (> 0).
        weight_decay: L2 penalty added to the gradient (≥ 0), as ``torch.optim.Adam``'s ``weight_decay``.

    State (created at the first step, W1's size, stored panel by panel: :meth:`moments` gives W1's layout):
    ``exp_avg``, ``exp_avg_sq``; ``steps`` counts updates.
    """

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        for name, value, ok, rule in (("lr", lr, lambda v: v > 0, "> 0"), ("eps", eps, lambda v: v > 0, "> 0"),
                                      ("weight_decay", weight_decay, lambda v: v >= 0, ">= 0")):
            if not (is_real(value) and math.isfinite(value) and ok(value)):
                raise ValueError(f"{name} must be a finite number {rule}, got {value!r}")
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2
                and all(is_real(b) and 0 <= b < 1 for b in betas)):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        self.lr, self.betas, self.eps, self.weight_decay = float(lr), tuple(map(float, betas)), float(eps), \
            float(weight_decay)
        self.exp_avg: Optional[torch.Tensor] = None
        self.exp_avg_sq: Optional[torch.Tensor] = None
        self.panel = 0
        self.steps = 0
        self._loaded: Optional[tuple[torch.Tensor, torch.Tensor]] = None  # moments from load_state_dict, W1's layout

    def begin(self, w1: torch.Tensor, panel: int) -> torch.Tensor:
        """Count one step and return its hyper-parameters as the float32 vector the kernel reads:
        ``[lr, β1, β2, eps, weight_decay, 1 − β1^t, √(1 − β2^t)]``; creates the moments on the first call.

        The moments are stored panel by panel for column panels of width ``panel`` (panel J's d×k block
        contiguous, in the order the kernel computes them); :meth:`moments` gives them in W1's layout.
        Raises ``ValueError`` when ``w1.grad`` is set: another term of the loss reaches W1, and nothing would apply
        that gradient."""
        if w1.grad is not None:
            raise ValueError("W1 has a .grad while BackwardAdam steps it inside the backward pass: another term of the "
                             "loss (a penalty, a second use of W1) reaches W1 and would be dropped; put W1 in the "
                             "optimizer instead (COINBase.w1_step = None)")
        if self._loaded is not None:
            m, v = self._loaded
            if m.shape != w1.shape:
                raise ValueError(f"BackwardAdam state loaded for W1 {tuple(m.shape)}, got W1 {tuple(w1.shape)}")
            self.exp_avg, self.exp_avg_sq = (_pack(t.to(w1), panel) for t in (m, v))  # W1's dtype and device
            self.panel, self._loaded = int(panel), None
        if self.exp_avg is None or self.exp_avg.numel() != w1.numel() or self.panel != panel:
            if self.steps:
                raise ValueError(f"BackwardAdam state is for {self.exp_avg.numel()} weights in panels of "
                                 f"{self.panel}, got W1 {tuple(w1.shape)} in panels of {panel}: call reset() first")
            self.exp_avg, self.exp_avg_sq = w1.new_zeros(w1.numel()), w1.new_zeros(w1.numel())
            self.panel = int(panel)
        self.steps += 1
        b1, b2 = self.betas
        return torch.tensor([self.lr, b1, b2, self.eps, self.weight_decay, 1 - b1 ** self.steps,
                             math.sqrt(1 - b2 ** self.steps)], dtype=torch.float32)

    @torch.no_grad()
    def apply(self, w1: torch.Tensor, grad: torch.Tensor, panel: int) -> None:
        """One Adam step on ``w1`` (d, d) in place from ``grad`` with torch ops (the path without the compiled
        kernel), on the same panel-ordered moments."""
        self.begin(w1, panel)
        b1, b2 = self.betas
        w, g = _pack(w1, panel), _pack(grad, panel)
        if self.weight_decay:
            g.add_(w, alpha=self.weight_decay)
        self.exp_avg.lerp_(g, 1 - b1)
        self.exp_avg_sq.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = (self.exp_avg_sq.sqrt() / math.sqrt(1 - b2 ** self.steps)).add_(self.eps)
        w.addcdiv_(self.exp_avg, denom, value=-self.lr / (1 - b1 ** self.steps))
        _unpack(w, w1, panel)

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(exp_avg, exp_avg_sq)`` in W1's (d, d) layout (copies), as ``torch.optim.Adam`` keeps them."""
        if self._loaded is not None:  # loaded, not yet laid out for a panel width
            return self._loaded[0].clone(), self._loaded[1].clone()
        if self.exp_avg is None:
            raise ValueError("BackwardAdam has no moments before its first step")
        d = int(round(self.exp_avg.numel() ** 0.5))
        out = []
        for m in (self.exp_avg, self.exp_avg_sq):
            t = m.new_empty(d, d)
            _unpack(m, t, self.panel)
            out.append(t)
        return out[0], out[1]

    def reset(self) -> None:
        """Forget the moments and the step count (a new training run)."""
        self.exp_avg = self.exp_avg_sq = self._loaded = None
        self.steps = 0

    def state_dict(self) -> dict[str, Any]:
        """Hyper-parameters, ``steps`` and the moments in W1's (d, d) layout (``None`` before the first step)."""
        m, v = self.moments() if self.exp_avg is not None or self._loaded is not None else (None, None)  # copies
        return {"lr": self.lr, "betas": self.betas, "eps": self.eps, "weight_decay": self.weight_decay,
                "steps": self.steps, "exp_avg": m, "exp_avg_sq": v}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`: the next step continues its moments and step count (on any panel
        width; the moments are laid out for it at that step)."""
        want = {"lr", "betas", "eps", "weight_decay", "steps", "exp_avg", "exp_avg_sq"}
        if not isinstance(state, dict) or set(state) != want:
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"BackwardAdam.load_state_dict needs the keys {sorted(want)}, got {got}")
        m, v = state["exp_avg"], state["exp_avg_sq"]
        steps = state["steps"]
        if not (is_int(steps) and steps >= 0) or (m is None) != (steps == 0) or (
                m is not None and not (isinstance(m, torch.Tensor) and isinstance(v, torch.Tensor)
                                       and m.dim() == 2 and m.shape == v.shape)):
            raise ValueError(f"BackwardAdam state: steps={steps!r} needs two (d, d) moments when > 0 and none at 0, "
                             f"got {type(m).__name__} / {type(v).__name__}")
        if m is not None and not (m.is_floating_point() and v.is_floating_point() and all_finite(m)
                                  and all_finite(v) and bool((v >= 0).all())):
            raise ValueError("BackwardAdam state: exp_avg and exp_avg_sq must be finite floating-point tensors and "
                             "exp_avg_sq >= 0 (they would turn W1 into NaN at the next step)")
        fresh = BackwardAdam(state["lr"], tuple(state["betas"]), state["eps"], state["weight_decay"])  # checks
        self.lr, self.betas, self.eps, self.weight_decay = fresh.lr, fresh.betas, fresh.eps, fresh.weight_decay
        self.exp_avg = self.exp_avg_sq = None
        self.steps, self.panel = int(steps), 0
        self._loaded = None if m is None else (m.detach().clone(), v.detach().clone())

    def __repr__(self) -> str:
        return (f"BackwardAdam(lr={self.lr:g}, betas={self.betas}, eps={self.eps:g}, "
                f"weight_decay={self.weight_decay:g}, steps={self.steps})")


def _pack(t: torch.Tensor, panel: int) -> torch.Tensor:
    """(d, d) → the d·d vector of its column panels of width ``panel``, each d×k block row-major, in order."""
    return torch.cat([t[:, j:j + panel].reshape(-1) for j in range(0, t.shape[1], panel)])


def _unpack(flat: torch.Tensor, out: torch.Tensor, panel: int) -> None:
    """Inverse of :func:`_pack`, written into ``out`` (d, d)."""
    d, at = out.shape[0], 0
    for j in range(0, out.shape[1], panel):
        k = min(panel, out.shape[1] - j)
        out[:, j:j + k] = flat[at:at + d * k].view(d, k)
        at += d * k
