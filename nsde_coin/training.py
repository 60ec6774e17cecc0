"""A small, reusable fit / evaluate loop for probability models (B, d) -> (B, C).

The models of this toolkit output class *probabilities* (the Monte Carlo mean of softmax(f(X_T)) over sample
paths), not logits, so the loss is the negative log-likelihood of the clamped probabilities,
``-log(max(p_y, eps))``: the clamp keeps the loss finite when a Monte Carlo mean underflows to 0. A non-finite loss
raises instead of training on NaN. Minibatch order is drawn from a ``torch.Generator`` seeded with ``seed``; the
model's own noise (Brownian paths) is the model's business (its ``seed``).

Data parallel: run under ``torchrun`` with a ``torch.distributed`` process group initialised (gloo on CPU, nccl on
GPU) and :func:`fit` splits every minibatch into contiguous shards, one per rank. Each rank solves its shard with the
paths those inputs get in the whole batch (``batch_rows`` of :class:`~nsde_coin.model.ConvectionDiffusionNet`: the
rows of the batch's fixed-grid Brownian motion), weighs its shard's summed loss by 1/|batch| and the gradients are
summed over the ranks (one all-reduce per step), so every rank takes the 1-process step: the parameters after N steps
equal the 1-process run's up to summation order (float64: ~1e-15). Parameters are broadcast from rank 0 at the start.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
from torch import nn

from nsde_coin._checks import is_int
from nsde_coin.loop import Divergence, Epoch, check_rate, make_optimizer, train

OUTPUTS = ("probs", "log_probs", "logits")


def log_probs_from(out: torch.Tensor, output: str = "probs", eps: float = 1e-6) -> torch.Tensor:
    """Convert a model's output (B, C) to log-probabilities (B, C).

    ``output="probs"`` clamps below at ``eps`` before the log (so a zero probability costs log(1/eps), not ∞);
    ``"log_probs"`` is passed through; ``"logits"`` goes through ``log_softmax``.
    """
    if output == "probs":
        return torch.log(out.clamp_min(eps))
    if output == "log_probs":
        return out
    if output == "logits":
        return torch.log_softmax(out, dim=-1)
    raise ValueError(f"output={output!r} is not valid; valid choices: {', '.join(OUTPUTS)}")


def nll_loss(out: torch.Tensor, y: torch.Tensor, output: str = "probs", eps: float = 1e-6) -> torch.Tensor:
    """Mean negative log-likelihood of labels ``y`` (B,) under the model output ``out`` (B, C); a scalar."""
    if out.ndim != 2 or y.ndim != 1 or out.shape[0] != y.shape[0]:
        raise ValueError(f"expected out (B, C) and y (B,), got {tuple(out.shape)} and {tuple(y.shape)}")
    return -log_probs_from(out, output, eps).gather(1, y[:, None]).mean()


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        history: one dict per epoch: ``epoch``, ``loss`` (mean training NLL), ``train_acc`` (accuracy on the
            training minibatches as seen during the epoch), ``seconds`` (wall time of the epoch), and ``val_acc`` /
            ``val_loss`` when validation data were given (over the whole batch on every rank).
        ranks: data-parallel processes that trained (``torch.distributed`` world size; 1 without a group).
        train_time_s: total wall time of the optimisation (seconds, validation passes excluded).
        epochs, batch_size, lr, seed: the settings used.
    """

    history: list[dict] = field(default_factory=list)
    train_time_s: float = 0.0
    epochs: int = 0
    batch_size: int = 0
    lr: float = 0.0
    seed: int = 0
    ranks: int = 1

    def record(self) -> dict:
        """JSON-serialisable dict."""
        return asdict(self)


def _check_data(x: torch.Tensor, y: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"x and y must be tensors, got {type(x).__name__} and {type(y).__name__}")
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"expected x (N, d) and y (N,) with N > 0, got {tuple(x.shape)} and {tuple(y.shape)}")
    if y.dtype != torch.int64:
        raise TypeError(f"labels y must be int64 class indices, got dtype {y.dtype}")


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 2048,
    output: str = "probs",
    eps: float = 1e-6,
) -> dict:
    """Accuracy and mean NLL of ``model`` on (x (N, d), y (N,)), in eval mode, without gradients.

    Returns ``{"accuracy": float in [0, 1], "nll": float, "seconds": wall time}``. The model's training flag is
    restored afterwards.
    """
    _check_data(x, y)
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} is not valid; expected an int >= 1")
    was_training = model.training
    model.eval()
    t0 = time.perf_counter()
    correct, nll = 0, 0.0
    try:
        for i in range(0, x.shape[0], batch_size):
            out = model(x[i:i + batch_size])
            lp = log_probs_from(out, output, eps)
            yb = y[i:i + batch_size]
            correct += int((lp.argmax(dim=1) == yb).sum())
            nll += float(-lp.gather(1, yb[:, None]).sum())
    finally:
        model.train(was_training)
    n = x.shape[0]
    return {"accuracy": correct / n, "nll": nll / n, "seconds": time.perf_counter() - t0}


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 30,
    batch_size: int = 128,
    lr: float = 5e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
    output: str = "probs",
    eps: float = 1e-6,
    x_val: Optional[torch.Tensor] = None,
    y_val: Optional[torch.Tensor] = None,
    progress: bool = False,
    desc: str = "fit",
    on_epoch: Optional[Callable[[dict], None]] = None,
) -> FitResult:
    """Train ``model`` (B, d) -> (B, C) by Adam on the NLL of its output, in shuffled minibatches.

    Args:
        model: a module whose forward maps (B, d) to probabilities (or ``output`` kind) of shape (B, C).
        x, y: training inputs (N, d) and int64 labels (N,).
        epochs, batch_size, lr, weight_decay: optimisation settings (Adam).
        seed: seeds the generator of the minibatch order (the model's own randomness is not touched).
        output: what the model returns: ``"probs"`` (clamped at ``eps`` before the log), ``"log_probs"``, ``"logits"``.
        x_val, y_val: optional validation data, evaluated after each epoch (not counted in ``train_time_s``).
        progress: show a tqdm bar over epochs on stderr.
        desc: label of the progress bar.
        on_epoch: called with each epoch's history dict.

    Under ``torch.distributed`` (see module doc) every rank calls ``fit`` with the same data, model and settings;
    each trains on its shard of every batch and they all end with the same parameters.

    Returns:
        A :class:`FitResult`. Raises :class:`~nsde_coin.errors.NonFiniteError` (a ``FloatingPointError``
        and ``ValueError``) if the loss becomes non-finite.
    """
    _check_data(x, y)
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not is_int(value) or value < 1:
            raise ValueError(f"{name}={value!r} is not valid; expected an int >= 1")
    check_rate("lr", lr)
    epochs, batch_size = int(epochs), int(batch_size)
    if output not in OUTPUTS:
        raise ValueError(f"output={output!r} is not valid; valid choices: {', '.join(OUTPUTS)}")
    if (x_val is None) != (y_val is None):
        raise ValueError("give both x_val and y_val, or neither")
    if x_val is not None:
        _check_data(x_val, y_val)

    from tqdm.auto import tqdm

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    n = x.shape[0]
    rank, world = _world()
    if world > 1:
        smallest = min(batch_size, n - (n - 1) // batch_size * batch_size)
        if smallest < world:
            raise ValueError(f"a minibatch of {smallest} inputs cannot be split over {world} ranks; use a batch_size "
                             f"(and N mod batch_size) of at least {world}")
        _broadcast(params)
    opt = make_optimizer(params, lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    result = FitResult(epochs=epochs, batch_size=batch_size, lr=float(lr), seed=seed, ranks=world)
    bar = tqdm(total=epochs, desc=desc, disable=not progress or rank != 0, leave=False, dynamic_ncols=True)
    sharded = [m for m in model.modules() if hasattr(m, "batch_rows")] if world > 1 else []
    tally = [0.0, 0]  # this epoch's summed loss over inputs, correct training predictions (this rank's shards)

    def batches(epoch: int) -> list[torch.Tensor]:
        perm = torch.randperm(n, generator=gen)
        tally[:] = [0.0, 0]
        return [perm[i:i + batch_size] for i in range(0, n, batch_size)]

    def closure(idx: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, int]]:
        nb = idx.numel()
        lo, hi = rank * nb // world, (rank + 1) * nb // world  # this rank's shard: inputs lo..hi-1
        for m in sharded:
            m.batch_rows = (lo, nb)
        mine = idx[lo:hi]
        lp = log_probs_from(model(x[mine]), output, eps)
        nll = -lp.gather(1, y[mine, None])
        return (nll.mean() if world == 1 else nll.sum() / nb), (lp, mine, nb)  # shares of the batch mean sum to it

    def count(state: Epoch) -> None:
        lp, mine, nb = state.aux
        tally[0] += state.loss * nb
        tally[1] += int((lp.detach().argmax(dim=1) == y[mine]).sum())

    def end_epoch(state: Epoch) -> None:
        correct = tally[1]
        if world > 1:
            correct = int(_sum_over_ranks(torch.tensor([float(correct)], dtype=torch.float64, device=x.device)))
        result.train_time_s += state.seconds
        row = {"epoch": state.index, "loss": tally[0] / n, "train_acc": correct / n, "seconds": state.seconds}
        if x_val is not None:
            ev = evaluate(model, x_val, y_val, output=output, eps=eps)
            row["val_acc"], row["val_loss"] = ev["accuracy"], ev["nll"]
        result.history.append(row)
        bar.update(1)
        bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['train_acc']:.3f}")
        if on_epoch is not None:
            on_epoch(row)

    divergence = Divergence("the training diverged; try a smaller lr or more solver steps",
                            {"lr": float(lr), "batch_size": batch_size})
    model.train()
    try:  # every rank checks the summed loss (``reduce``): they all stop together
        train(closure, opt, epochs, divergence=divergence, batches=batches, start=1, on_loss=(count,),
              on_epoch=(end_epoch,), reduce=None if world == 1 else (lambda loss: _all_reduce_grads(params, loss)))
    finally:
        for m in sharded:
            m.batch_rows = None
    bar.close()
    return result


def _world() -> tuple[int, int]:
    """(rank, world size) of the initialised ``torch.distributed`` process group; (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _broadcast(params: list[torch.Tensor]) -> None:
    """Every rank starts from rank 0's parameters."""
    import torch.distributed as dist

    with torch.no_grad():
        for p in params:
            dist.broadcast(p.data, src=0)


def _sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def _all_reduce_grads(params: list[torch.Tensor], loss: torch.Tensor) -> float:
    """Sum the gradients (and this rank's loss share) over the ranks in one all-reduce; returns the batch loss."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = _sum_over_ranks(torch.cat([g.reshape(-1) for g in grads] + [loss.reshape(1).to(grads[0].dtype)]))
    offset = 0
    for p, g in zip(params, grads):
        if p.grad is not None:  # a parameter the loss does not touch keeps grad None (Adam skips it, as in 1 process)
            p.grad = flat[offset:offset + g.numel()].view_as(p).clone()
        offset += g.numel()
    return float(flat[-1])
