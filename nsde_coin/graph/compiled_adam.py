"""Adam in one compiled call per parameter (``csrc/adam_row.h``, :func:`nsde_coin.graph.native.adam`): the graph
protocol's optimiser for COIN's weights outside W1 (b1, W2, b2; W1 is stepped inside the base layer's backward
pass, :mod:`nsde_coin.graph.backward_adam`).

Why: ``torch.optim.Adam.step`` is a long Python path (hooks, parameter grouping, the fused kernel's dispatch).
Right after the base layer's kernels have streamed ~60 MB through the caches, that path runs cold: 0.45 ms per
Cora epoch for the 11.5 k weights (AMD EPYC, 1 thread; 49 µs when warm), against a few µs for their compiled update.

The update is ``torch.optim.Adam``'s (L2 weight decay added to the gradient, no amsgrad, both bias corrections, a
step count per parameter): the same numbers to float32 rounding (tests/graph/test_graph_protocol_readout.py). The
object offers what :func:`nsde_coin.loop.train` calls, ``zero_grad`` and ``step``, plus ``state`` (the moments).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from nsde_coin.graph import native

__all__ = ["CompiledAdam"]


class CompiledAdam:
    """Adam over float32, contiguous CPU parameters (see the module doc; :meth:`usable` says whether it applies).

    Args:
        params: the parameters (each updated in place from its ``.grad``; one without a gradient is skipped and its
            step count not advanced, as in torch).
        lr, betas, eps, weight_decay: as ``torch.optim.Adam`` (lr > 0, betas in [0, 1), eps > 0, weight_decay ≥ 0).
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        from nsde_coin.graph.backward_adam import BackwardAdam

        self.params = list(params)
        if not self.usable(self.params):
            raise ValueError("CompiledAdam needs the compiled kernels "
                             f"({native.status()}) and float32, contiguous CPU parameters; got "
                             f"{[(str(p.dtype), p.device.type, p.is_contiguous()) for p in self.params]}")
        self._settings = BackwardAdam(lr, betas, eps, weight_decay)  # the same checks and hyper-parameters
        self.state = [(torch.zeros_like(p), torch.zeros_like(p)) for p in self.params]  # (exp_avg, exp_avg_sq)
        self.steps = [0] * len(self.params)

    @staticmethod
    def usable(params: Iterable[torch.Tensor]) -> bool:
        """Whether the compiled update runs for ``params``: built kernels, float32 contiguous CPU tensors."""
        return native.available() and all(p.dtype == torch.float32 and p.device.type == "cpu" and p.is_contiguous()
                                           for p in params)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop (or zero) every parameter's gradient."""
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.detach_().zero_()

    def _hyper(self, steps: int) -> torch.Tensor:
        s = self._settings
        b1, b2 = s.betas
        return torch.tensor([s.lr, b1, b2, s.eps, s.weight_decay, 1 - b1 ** steps, (1 - b2 ** steps) ** 0.5],
                            dtype=torch.float32)

    @torch.no_grad()
    def step(self) -> None:
        """One Adam step of every parameter that has a gradient."""
        hyper: dict[int, torch.Tensor] = {}  # by step count: one vector per step when all parameters move together
        for i, (p, (m, v)) in enumerate(zip(self.params, self.state)):
            if p.grad is None:
                continue
            g = p.grad
            if g.shape != p.shape or g.dtype != p.dtype or g.device != p.device:
                raise ValueError(f"gradient {tuple(g.shape)} {g.dtype} does not match its parameter "
                                 f"{tuple(p.shape)} {p.dtype}")
            self.steps[i] += 1
            t = self.steps[i]
            if t not in hyper:
                hyper[t] = self._hyper(t)
            native.adam(p, m, v, g.contiguous(), hyper[t])
