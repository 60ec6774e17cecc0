"""The one training loop of the toolkit: optimiser construction, the step, the non-finite check and epoch callbacks.

Every trainer in the package (:func:`nsde_coin.training.fit`, the graph protocol's ``train_run``, the COVID,
few-shot and tabular apps, the digits backbone) is a use of :func:`train`, so the step and the divergence report are
written once:

* **step** — ``zero_grad`` → ``closure()`` (the forward pass: a scalar loss, or ``(loss, aux)``) → one non-finite
  check of the loss value → ``on_loss`` callbacks (they see the loss and ``aux`` at the pre-step weights and may
  return :data:`STOP`, which ends the loop before this step) → ``backward`` → ``optimizer.step()``. With
  ``reduce`` (data parallel) the order is ``backward`` → ``reduce(loss)`` (which all-reduces the gradients and
  returns the batch loss every rank sees) → check → ``on_loss`` → step, so all ranks stop together.
* **minibatches** — with ``batches(epoch)`` (an iterable of index tensors per epoch) the closure takes the batch's
  indices and one step is taken per batch; without it one full-batch step per epoch.
* **epoch callbacks** — after each epoch's steps every ``on_epoch`` callback gets the :class:`Epoch` (validation,
  best-weights keeping, progress ticks, early stopping); one returning :data:`STOP` ends the loop.
* **divergence** — a non-finite loss raises :class:`Diverged` (a :class:`~nsde_coin.errors.NonFiniteError`) with
  the one message ``"non-finite <what> <value> at epoch <e>[, batch <b>] (<settings>): <hint>"``; the caller's
  :class:`Divergence` names the quantity, the settings and the hint.

The loop draws no random numbers itself: the closure and ``batches`` own their generators, so the random stream of a
trainer is exactly the one it consumed before this module existed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import torch

from nsde_coin._checks import is_real
from nsde_coin.errors import NonFiniteError, invalid_choice

__all__ = ["BestWeights", "Diverged", "Divergence", "EarlyStopper", "Epoch", "OPTIMIZERS", "STOP", "Trained",
           "check_rate", "make_optimizer", "train"]

STOP = "stop"
"""What a callback returns to end the loop."""

OPTIMIZERS = ("adam", "sgd")

Loss = Union[torch.Tensor, tuple[torch.Tensor, Any]]


class Diverged(NonFiniteError):
    """A non-finite training loss; ``value``, ``epoch`` and ``batch`` (``None`` full batch) say where."""

    def __init__(self, message: str, value: float, epoch: int, batch: Optional[int]):
        super().__init__(message)
        self.value, self.epoch, self.batch = value, epoch, batch


@dataclass(frozen=True)
class Divergence:
    """How a trainer reports a non-finite loss: the quantity, the settings to print and a hint on what to try.

    ``message(nan, 3)`` → ``"non-finite training loss nan at epoch 3 (lr=0.01): <hint>"``.
    """

    hint: str = "the training diverged; try a smaller lr"
    settings: Mapping[str, Any] = field(default_factory=dict)
    what: str = "training loss"

    def message(self, value: float, epoch: int, batch: Optional[int] = None) -> str:
        """The one-line report of a non-finite ``value`` at ``epoch`` (and minibatch ``batch``)."""
        where = f"epoch {epoch}" if batch is None else f"epoch {epoch}, batch {batch}"
        shown = ", ".join(f"{k}={_show(v)}" for k, v in self.settings.items())
        return f"non-finite {self.what} {value} at {where}{f' ({shown})' if shown else ''}: {self.hint}"

    def check(self, value: float, epoch: int, batch: Optional[int] = None) -> float:
        """``value`` if finite; else raise :class:`Diverged` with :meth:`message`."""
        if not math.isfinite(value):
            raise Diverged(self.message(value, epoch, batch), value, epoch, batch)
        return value


def _show(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return repr(v) if isinstance(v, str) else str(v)


@dataclass
class Epoch:
    """What a callback sees.

    Attributes:
        index: the epoch (counted from ``train``'s ``start``).
        loss: the last step's loss value (full batch: the epoch's loss at the weights before its step).
        aux: what the closure returned next to the loss on the last step (``None`` for a bare loss).
        batch: the minibatch of the last step (0-based; ``None`` full batch).
        seconds: wall time of the epoch's steps so far (callbacks excluded).
    """

    index: int
    loss: float = math.nan
    aux: Any = None
    batch: Optional[int] = None
    seconds: float = 0.0


@dataclass
class Trained:
    """What :func:`train` returns: ``epochs`` begun (the one a callback stopped counts), ``stopped`` by a
    callback, the ``last`` epoch's :class:`Epoch` and the optimisation ``seconds`` (callbacks excluded)."""

    epochs: int
    stopped: bool
    last: Optional[Epoch]
    seconds: float


Callback = Callable[[Epoch], Optional[str]]


def train(
    closure: Callable[..., Loss],
    optimizer: torch.optim.Optimizer,
    epochs: int,
    *,
    divergence: Divergence,
    batches: Optional[Callable[[int], Iterable[torch.Tensor]]] = None,
    reduce: Optional[Callable[[torch.Tensor], float]] = None,
    on_loss: Sequence[Callback] = (),
    on_epoch: Sequence[Callback] = (),
    start: int = 0,
) -> Trained:
    """Run epochs ``start .. start + epochs - 1`` of optimisation steps (see the module doc for the step's order).

    Args:
        closure: the forward pass: ``closure()`` (full batch) or ``closure(idx)`` with the minibatch's index tensor
            (B,) — a scalar loss tensor, or ``(loss, aux)``.
        optimizer: what steps (see :func:`make_optimizer`).
        epochs: how many epochs at most (an int >= 0).
        divergence: the report of a non-finite loss.
        batches: ``batches(epoch)`` → the epoch's minibatch index tensors; ``None``: one full-batch step per epoch.
        reduce: data parallel: called after ``backward`` with the detached loss; all-reduces the gradients and
            returns the loss value every rank checks.
        on_loss: called after the finite check, before the step, with the step's :class:`Epoch`; STOP ends the
            loop without this step.
        on_epoch: called after each epoch's steps; STOP ends the loop.
        start: the first epoch's number (in messages and :class:`Epoch`).

    Returns:
        :class:`Trained`. Raises :class:`Diverged` on a non-finite loss.
    """
    stopped, state = False, None
    total = 0.0
    end = start + int(epochs)
    epoch = start - 1
    for epoch in range(start, end):  # noqa: B007 (epoch read after the loop)
        t0 = time.perf_counter()
        state = Epoch(epoch)
        if batches is None:
            stopped = _step(closure, (), optimizer, divergence, reduce, on_loss, state, None)
        else:
            for batch, idx in enumerate(batches(epoch)):
                if _step(closure, (idx,), optimizer, divergence, reduce, on_loss, state, batch):
                    stopped = True
                    break
        state.seconds = time.perf_counter() - t0
        total += state.seconds
        if stopped:
            break
        if any(cb(state) == STOP for cb in on_epoch):
            stopped = True
            break
    return Trained(epochs=epoch + 1 - start, stopped=stopped, last=state, seconds=total)


def _step(closure: Callable[..., Loss], args: tuple, optimizer: torch.optim.Optimizer, divergence: Divergence,
          reduce: Optional[Callable[[torch.Tensor], float]], on_loss: Sequence[Callback], state: Epoch,
          batch: Optional[int]) -> bool:
    """One optimisation step; True when an ``on_loss`` callback asked to stop (the step is then not taken)."""
    optimizer.zero_grad(set_to_none=True)
    out = closure(*args)
    loss, aux = out if isinstance(out, tuple) else (out, None)
    if reduce is None:
        value = float(loss.detach())
    else:
        loss.backward()
        value = reduce(loss.detach())
    divergence.check(value, state.index, batch)
    state.loss, state.aux, state.batch = value, aux, batch
    if any(cb(state) == STOP for cb in on_loss):
        return True
    if reduce is None:
        loss.backward()
    optimizer.step()
    return False


# ----------------------------------------------------------------------------------------------------- optimisers
def check_rate(name: str, value: object, *, zero: bool = False) -> float:
    """``float(value)`` if it is a finite real > 0 (>= 0 with ``zero``); else a ValueError naming it."""
    if not (is_real(value) and math.isfinite(value) and (value >= 0 if zero else value > 0)):
        raise ValueError(f"{name}={value!r} is not valid; expected a finite float {'>=' if zero else '>'} 0")
    return float(value)


def make_optimizer(params: Iterable[torch.Tensor], kind: str = "adam", *, lr: float, weight_decay: float = 0.0,
                   fused: bool = False) -> torch.optim.Optimizer:
    """Adam or plain SGD over ``params`` with ``lr`` and (L2) ``weight_decay``.

    ``fused=True`` asks for torch's fused Adam kernel and falls back to the plain one where the device/dtype has none
    (the two agree to rounding). ``lr`` is checked against the parameters' dtype: Adam's first step moves by up to
    ``lr / (1 − β₁)`` (10·lr), which must be a representable number (float32: lr ≲ 3.4e37) — torch would otherwise
    fail inside ``step`` with "value cannot be converted to type float without overflow".
    """
    params = list(params)
    lr, weight_decay = check_rate("lr", lr), check_rate("weight_decay", weight_decay, zero=True)
    if kind not in OPTIMIZERS:
        raise ValueError(invalid_choice("kind", kind, OPTIMIZERS))
    scale = 1.0 / (1.0 - 0.9) if kind == "adam" else 1.0  # the largest step per unit of update (Adam: step 1)
    for dtype in {p.dtype for p in params if p.is_floating_point()}:
        big = torch.finfo(dtype).max
        if lr * scale > big:
            raise ValueError(f"lr={lr!r} is not valid; the first {kind} step (up to {scale:g}·lr) overflows the "
                             f"parameters' {str(dtype).removeprefix('torch.')} (max {big:.3g}): use lr < "
                             f"{big / scale:.3g}")
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if fused:
        try:
            return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
        except (RuntimeError, TypeError, ValueError):  # fused kernel unavailable for this device/dtype
            pass
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


# ------------------------------------------------------------------------------------------------ callback state
class EarlyStopper:
    """Patience counter that resets on a new minimum of the validation loss OR a new maximum of the accuracy.

    ``update(epoch, val_loss, val_acc)`` returns ``True`` on a reset — the caller then saves the weights that produced
    these metrics. ``stop`` becomes ``True`` after ``patience`` consecutive epochs without a reset. Comparisons are
    strict (equal values do not reset); a NaN loss never counts as a new minimum.
    """

    def __init__(self, patience: int = 50):
        if int(patience) < 1:
            raise ValueError(f"patience must be >= 1, got {patience!r}")
        self.patience = int(patience)
        self.best_loss = math.inf
        self.best_acc = -math.inf
        self.counter = 0
        self.best_epoch = -1
        self.loss_at_reset = math.nan
        self.acc_at_reset = math.nan

    def update(self, epoch: int, val_loss: float, val_acc: float) -> bool:
        """Record one epoch's validation loss and accuracy; True when the patience counter was reset (save the
        weights that produced these metrics)."""
        reset = False
        if val_loss < self.best_loss:
            self.best_loss = float(val_loss)
            reset = True
        if val_acc > self.best_acc:
            self.best_acc = float(val_acc)
            reset = True
        if reset:
            self.counter = 0
            self.best_epoch = int(epoch)
            self.loss_at_reset, self.acc_at_reset = float(val_loss), float(val_acc)
        else:
            self.counter += 1
        return reset

    @property
    def stop(self) -> bool:
        """True once ``patience`` epochs have passed without a reset."""
        return self.counter >= self.patience


class BestWeights:
    """Copies of parameters taken at the best epoch so far (pre-allocated once; ``keep`` copies in place).

    ``params`` is a sequence or a name → tensor mapping; :attr:`saved` mirrors it. ``keep(mask)`` with a bool mask
    (R,) copies only the runs ``mask`` marks along every tensor's leading dimension (stacked runs: each keeps its
    own best epoch); ``restore()`` copies the saved values back into ``params``.
    """

    def __init__(self, params: Union[Sequence[torch.Tensor], Mapping[str, torch.Tensor]]):
        self.params = params
        self._live = list(params.values()) if isinstance(params, Mapping) else list(params)
        self._copies = [p.detach().clone() for p in self._live]
        self.saved: Union[list[torch.Tensor], dict[str, torch.Tensor]] = (
            dict(zip(params.keys(), self._copies)) if isinstance(params, Mapping) else self._copies)

    def keep(self, mask: Optional[torch.Tensor] = None) -> None:
        """Save the current values (all of them, or the runs where ``mask`` (R,) is True)."""
        with torch.no_grad():
            for d, s in zip(self._copies, self._live):
                if mask is None:
                    d.copy_(s)
                else:
                    d.copy_(torch.where(mask.view(-1, *([1] * (s.dim() - 1))), s, d))

    def restore(self) -> None:
        """Copy the saved values back into the parameters."""
        with torch.no_grad():
            for d, s in zip(self._live, self._copies):
                d.copy_(s)
