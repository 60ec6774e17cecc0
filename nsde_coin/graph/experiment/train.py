"""One protocol run: the paper's optimiser settings and early stopping on :func:`nsde_coin.loop.train`.

Training (Shchur et al. 2018, as in the COIN paper): Adam (lr 0.01, weight decay 5e-4), full batch, at most 10,000
epochs, early stopping with patience 50 where the counter resets whenever the validation loss reaches a new minimum
**or** the validation accuracy a new maximum; the test accuracy is the one of the weights of the last reset (measured
with a saved copy, or read off that reset's own forward pass with ``keep_best=False``, the runner's choice).
The speed devices (validation read off the training pass, the COIN read-out operator, no weight copy in sweeps,
Adam for W1 inside the sparse kernel's backward pass: :mod:`nsde_coin.graph.backward_adam`, the read-out head and
Adam for the other weights compiled: :mod:`nsde_coin.graph.experiment.readout`, :mod:`nsde_coin.graph.compiled_adam`)
are described in :mod:`nsde_coin.graph.protocol`.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from nsde_coin.errors import warn_deprecated
from nsde_coin.graph import native
from nsde_coin.graph.baselines import takes_inputs
from nsde_coin.graph.compiled_adam import CompiledAdam
from nsde_coin.graph.experiment.readout import CompiledReadoutHead, DenseReadout
from nsde_coin.graph.splits import Split
from nsde_coin.loop import STOP, BestWeights, Diverged, Divergence, EarlyStopper, Epoch, make_optimizer, train

__all__ = ["TrainConfig", "train_run"]  # EarlyStopper (imported above) lives in nsde_coin.loop

LINEAR_SOLVERS = ("explicit", "implicit", "exact")  # deterministic linear maps: the read-out shortcut applies


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser and early-stopping settings (the paper's defaults)."""

    lr: float = 0.01
    weight_decay: float = 5e-4
    max_epochs: int = 10_000
    patience: int = 50

    def __post_init__(self) -> None:
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}")
        if int(self.max_epochs) < 1:
            raise ValueError(f"max_epochs must be >= 1, got {self.max_epochs!r}")
        if int(self.patience) < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience!r}")


# ------------------------------------------------------------------------------------------------ training tasks
def check_split(split: Split) -> None:
    """Refuse a split with no train, validation or test nodes (the mean over no nodes would be a silent NaN
    loss/accuracy)."""
    for part in ("train", "val", "test"):
        if getattr(split, part).numel() == 0:
            raise ValueError(f"split {split.seed} has no {part} nodes (sizes train/val/test = {split.sizes()}); "
                             f"every class needs more than train_per_class + val_per_class nodes")


class _ModuleTask:
    """Generic task: ``net.log_prob(*inputs)`` gives log-probabilities of all nodes (``net()`` for a model of the old
    contract, bound to its graph: ``inputs`` is then ``None``)."""

    def __init__(self, net: nn.Module, y: torch.Tensor, split: Split, inputs: Optional[tuple] = None):
        check_split(split)
        self.net, self.y, self.split = net, y, split
        self.params = [p for p in net.parameters() if p.requires_grad]
        self.deterministic = bool(getattr(net, "deterministic", False))
        self.ytr, self.yva = y[split.train], y[split.val]
        self.inputs = _inputs(net, inputs)
        self._seen: Optional[torch.Tensor] = None  # all-node outputs the last validation metrics were read from

    def _out(self) -> torch.Tensor:
        return self.net() if self.inputs is None else self.net.log_prob(*self.inputs)

    def train_forward(self) -> tuple[torch.Tensor, Optional[tuple[float, float]]]:
        self.net.train()
        out = self._out()
        loss = F.nll_loss(out[self.split.train], self.ytr)
        if self.deterministic:
            self._seen = out.detach()
            return loss, self._metrics(self._seen[self.split.val])
        return loss, None

    def _metrics(self, out_val: torch.Tensor) -> tuple[float, float]:
        return float(F.nll_loss(out_val, self.yva)), float((out_val.argmax(1) == self.yva).double().mean())

    def eval_val(self) -> tuple[float, float]:
        self.net.eval()
        with torch.no_grad():
            self._seen = self._out()
        return self._metrics(self._seen[self.split.val])

    def _scores(self, out: torch.Tensor) -> tuple[float, float, float]:
        """(val_loss, val_acc, test_acc) of all-node log-probabilities ``out`` (n, C)."""
        vl, va = self._metrics(out[self.split.val])
        return vl, va, float((out[self.split.test].argmax(1) == self.y[self.split.test]).double().mean())

    def snapshot(self) -> torch.Tensor:
        """A copy of the all-node outputs (n, C) the last validation metrics were read from: what
        :meth:`scores_of` needs for those weights' records, instead of a copy of the weights."""
        assert self._seen is not None, "snapshot before any validation metrics"
        return self._seen.clone()

    def scores_of(self, snap: torch.Tensor) -> tuple[float, float, float]:
        """(val_loss, val_acc, test_acc) of the weights a :meth:`snapshot` was taken at."""
        return self._scores(snap)

    def evaluate(self) -> tuple[float, float, float]:
        """(val_loss, val_acc, test_acc) of the current weights with the model's own eval-mode forward."""
        self.net.eval()
        with torch.no_grad():
            return self._scores(self._out())


def _steps_are_cheaper(op: Any, solver: str, layer_num: int, sigma2: float, rows: int, classes: int,
                       dtype: torch.dtype, device: torch.device) -> bool:
    """Whether the read-out rows are cheaper as ``layer_num`` compiled explicit steps on the whole graph (then the
    rows taken) than as the dense (rows × n) read-out: the solver is ``"explicit"``, the model is on the CPU, the
    compiled :func:`~nsde_coin.graph.native.csr_power` runs for its step matrix and
    ``layer_num·nnz(I − σ²L) ≤ rows·n``.
    Cora (20 steps, 640 rows): 0.6 against 1.5 ms per epoch, forward and backward, and no 2 × 6.4 MB read-out to
    build and keep per run; Coauthor Physics (250 rows, nnz 530 k) keeps the read-out."""
    from nsde_coin.graph.sparse import SMALL_WORK

    if solver != "explicit" or layer_num < 1 or torch.device(device).type != "cpu":
        return False
    p = op.step_matrix(sigma2, dtype, torch.device("cpu"))  # cached on the operator: the steps form uses it
    if layer_num * p.values().numel() > rows * op.n:
        return False
    probe = torch.empty(op.n, classes, dtype=dtype)
    return native.power_usable(probe, p, probe.numel() <= SMALL_WORK)


class _ReadoutCOINTask(_ModuleTask):
    """COIN trained through the m×n read-out rows of its (linear, symmetric) diffusion map (see module doc), in one
    of two forms: the dense rows ``P`` (m × n, built once per run), or — where :func:`_steps_are_cheaper` — the
    explicit solver's compiled steps on the whole graph followed by taking the m rows (the same map, to float
    rounding), the whole head in one compiled call each way (:class:`CompiledReadoutHead`: ``_steps_are_cheaper``
    admits the steps form only where those kernels run)."""

    def __init__(self, net: nn.Module, y: torch.Tensor, split: Split, inputs: Optional[tuple] = None):
        super().__init__(net, y, split, inputs)
        coin = net
        self.coin, self.x = coin, self.inputs[0]
        self.rows = rows = torch.cat([split.train, split.val]).long()
        self.ntr = int(split.train.numel())
        op = self.op = coin._operator(self.inputs[1], self.x.shape[0])
        dtype, device = coin.base.W1.dtype, coin.base.W1.device
        self.readout: Optional[torch.Tensor] = None
        self.steps: Optional[tuple[torch.Tensor, torch.Tensor]] = None  # (I − σ²L, its transpose) for the steps form
        if coin.layer_num == 0:
            return
        from nsde_coin.graph.diffusion import diffuse

        options = dict(solver=coin.solver, allow_unstable=coin.allow_unstable, **coin.solver_options)
        if _steps_are_cheaper(op, coin.solver, coin.layer_num, coin.sigma2, rows.numel(), coin.base.W2.shape[0],
                              dtype, device):
            # the solver's checks and warnings, once, as the dense form's setup gives them; a random probe (not
            # zeros) also overflows where the indicator columns would (NonFiniteError, not a recorded failed run)
            probe = torch.rand(op.n, 1, dtype=dtype, generator=torch.Generator().manual_seed(0))
            with torch.no_grad():
                diffuse(probe, op, coin.sigma2, coin.layer_num, **options)
            self.steps = (op.step_matrix(coin.sigma2, dtype, device),
                          op.step_matrix(coin.sigma2, dtype, device, transpose=True))
            return
        eye = torch.zeros(op.n, rows.numel(), dtype=dtype, device=device)
        eye[rows, torch.arange(rows.numel(), device=device)] = 1.0
        with torch.no_grad():
            cols = diffuse(eye, op, coin.sigma2, coin.layer_num, **options)
        self.readout = cols.t().contiguous()  # (m, n)
        self.readout_t = cols.contiguous()  # (n, m), for the forward product

    def _rows_of(self, u0: torch.Tensor) -> torch.Tensor:
        """The diffusion map's m read-out rows of ``u0`` (n, C) → (m, C) in the dense form."""
        return DenseReadout.apply(u0, self.readout, self.readout_t, self.ntr)

    @staticmethod
    def applies(net: nn.Module, inputs: Optional[tuple]) -> bool:
        """A COIN with the paper's base (no dropout) and a linear, symmetric diffusion on the graph of ``inputs``."""
        from nsde_coin.graph.coin import COIN, COINBase

        if not isinstance(inputs, tuple) or type(net) is not COIN or not isinstance(net.base, COINBase):
            return False
        if net.layer_num == 0:
            return True
        return net.solver in LINEAR_SOLVERS and net._operator(inputs[1], inputs[0].shape[0]).symmetric

    def train_forward(self) -> tuple[torch.Tensor, Optional[tuple[float, float]]]:
        from nsde_coin.graph.head import head_log, head_outputs

        logits = self.coin.base(self.x)  # sparse x: coin.py's hand-written kernel
        self._seen = logits.detach()  # base logits of all nodes: scores_of diffuses them on the whole graph
        if self.coin.layer_num == 0:
            lu = head_log(logits[self.rows])
        elif self.steps is not None:  # the steps form: softmax, steps, rows and log in one compiled call
            lu = CompiledReadoutHead.apply(logits, *self.steps, self.coin.layer_num, self.rows, self.coin.eps)
        else:  # the one COIN head, its diffusion restricted to the dense read-out rows
            u = head_outputs(logits, self._rows_of)
            lu = head_log(logits, u, self.coin.eps)
        loss = F.nll_loss(lu[: self.ntr], self.ytr)
        return loss, self._metrics(lu.detach()[self.ntr:])

    def scores_of(self, snap: torch.Tensor) -> tuple[float, float, float]:
        """(val_loss, val_acc, test_acc) of the weights a :meth:`snapshot` (their base logits) was taken at, from
        the model's own full diffusion of those logits on the whole graph (not the read-out rows)."""
        with torch.no_grad():
            return self._scores(self.coin.log_prob_of_logits(snap, self.op))


def _attach_backward_adam(task: _ReadoutCOINTask, cfg: TrainConfig) -> Optional[nn.Module]:
    """Give the COIN base Adam inside its backward pass for W1 (:mod:`nsde_coin.graph.backward_adam`: the d×d
    gradient is never stored) when its features are sparse; returns the base, or ``None`` where it does not apply."""
    from nsde_coin.graph.backward_adam import BackwardAdam

    base = task.coin.base
    if not (task.x.layout in (torch.sparse_csr, torch.sparse_coo) and base.W1.is_contiguous()):
        return None
    base.w1_step = BackwardAdam(lr=cfg.lr, weight_decay=cfg.weight_decay)
    return base


def _inputs(net: nn.Module, inputs: Optional[tuple]) -> Optional[tuple]:
    """The ``(x, edge_index)`` fed to ``net.log_prob``: ``inputs``, else the ones :func:`build_model` kept; ``None``
    for a model of the old contract (``forward()`` bound to its graph; deprecated)."""
    if inputs is None:
        inputs = getattr(net, "graph_inputs", None)
    if inputs is None and not takes_inputs(net):
        warn_deprecated("a graph model whose forward() takes no inputs", "forward(x, edge_index) (log_prob for "
                        "COIN) and train_run(..., inputs=(x, edge_index))", stacklevel=4)
        return None
    if inputs is None:
        raise ValueError(f"train_run needs the model's inputs: pass inputs=(x, edge_index) (build_model's models keep "
                         f"them as net.graph_inputs); got a {type(net).__name__} without them")
    if not (isinstance(inputs, tuple) and len(inputs) == 2):
        raise TypeError(f"inputs must be a tuple (x, edge_index), got {type(inputs).__name__}")
    return inputs


def train_run(net: nn.Module, y: torch.Tensor, split: Split, cfg: TrainConfig = TrainConfig(), *,
              fast: bool = True, inputs: Optional[tuple] = None, keep_best: bool = True) -> dict[str, Any]:
    """Train ``net`` on one split with early stopping; returns a dict of the run's results.

    ``net`` follows the graph models' contract: ``net.log_prob(*inputs)`` → (n, C) log-probabilities, with
    ``inputs = (x, edge_index)`` (default: ``net.graph_inputs``, kept by
    :func:`~nsde_coin.graph.models.build_model`). Models bound to their graph with a ``forward()`` that takes no
    inputs still run, with a deprecation warning.

    Keys: ``status`` (``"ok"`` or ``"nonfinite_loss"``), ``message``, ``epochs`` (forward passes run), ``best_epoch``
    (epoch of the last reset, 0-based), ``val_loss``, ``val_acc``, ``test_acc`` (at the saved weights; ``None`` when
    the loss became non-finite), ``train_time_s``, ``epoch_time_ms`` (wall clock), ``train_cpu_s``, ``epoch_cpu_ms``
    (process CPU time: less sensitive to other load on a shared machine), ``readout`` (whether the COIN shortcut ran).

    ``keep_best=True`` copies the parameters at every reset and leaves ``net`` with those weights. ``False`` (the
    protocol runner's choice: it discards the model) keeps no copy: at every reset it keeps the (n, C) outputs of
    the forward pass that gave the validation metrics, the records are read off the last of them at the end (through
    the model's full diffusion, as with the copy), and ``net`` ends with the last epoch's weights. The records are
    the same either way (to float rounding of ``val_loss``); the copy is W1's size again (283 MB on Coauthor Physics).
    """
    task: _ModuleTask
    if inputs is None:
        inputs = getattr(net, "graph_inputs", None)  # checked (or the old contract's deprecation told) by the task
    use_readout = fast and _ReadoutCOINTask.applies(net, inputs)
    t0 = time.perf_counter()
    task = _ReadoutCOINTask(net, y, split, inputs) if use_readout else _ModuleTask(net, y, split, inputs)
    setup_s = time.perf_counter() - t0
    w1_before = getattr(getattr(net, "base", None), "w1_step", None)  # a user's own BackwardAdam, put back after
    w1_base = _attach_backward_adam(task, cfg) if use_readout else None
    params = [p for p in task.params if w1_base is None or p is not w1_base.W1]  # W1 is stepped in the backward
    opt: Any = (CompiledAdam(params, cfg.lr, weight_decay=cfg.weight_decay)  # W1 stepped in the backward
                if w1_base is not None and CompiledAdam.usable(params)
                else make_optimizer(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True))
    best = BestWeights(task.params) if keep_best else None
    seen: Optional[torch.Tensor] = None  # keep_best=False: the all-node outputs of the last reset (n, C)
    stopper = EarlyStopper(cfg.patience)
    status, message = "ok", ""
    deterministic = use_readout or task.deterministic  # metrics read off the training pass: judged before the step

    def early_stop(state: Epoch) -> Optional[str]:
        """Patience on the validation metrics; a reset keeps the weights that produced them."""
        nonlocal seen
        if stopper.update(state.index, *(state.aux if deterministic else task.eval_val())):
            if best is not None:
                best.keep()
            else:
                seen = task.snapshot()
        return STOP if stopper.stop else None

    divergence = Divergence("run stopped, recorded as failed; explicit diffusion past its stability bound? try a "
                            "stable solver or a smaller sigma2", {"lr": cfg.lr, "weight_decay": cfg.weight_decay})
    t1, c1 = time.perf_counter(), time.process_time()
    try:
        epochs = train(task.train_forward, opt, int(cfg.max_epochs), divergence=divergence,
                       on_loss=(early_stop,) if deterministic else (),
                       on_epoch=() if deterministic else (early_stop,)).epochs
    except Diverged as err:
        status, message, epochs = "nonfinite_loss", str(err), err.epoch + 1
    finally:
        if w1_base is not None:
            w1_base.w1_step = w1_before
    train_s, train_cpu_s = time.perf_counter() - t1, time.process_time() - c1
    out: dict[str, Any] = {"status": status, "message": message, "epochs": epochs, "best_epoch": stopper.best_epoch,
                           "readout": use_readout, "setup_s": round(setup_s, 6), "train_time_s": round(train_s, 6),
                           "epoch_time_ms": round(1e3 * train_s / max(epochs, 1), 4),
                           "train_cpu_s": round(train_cpu_s, 6),
                           "epoch_cpu_ms": round(1e3 * train_cpu_s / max(epochs, 1), 4)}
    if status == "ok":
        if best is not None:
            best.restore()
        vl, va, ta = task.scores_of(seen) if best is None and seen is not None else task.evaluate()
        if stopper.best_epoch >= 0 and abs(va - stopper.acc_at_reset) > 0.02:
            warnings.warn(f"validation accuracy of the kept weights {va:.4f} differs from the one seen in training "
                          f"{stopper.acc_at_reset:.4f}", RuntimeWarning, stacklevel=2)
        out.update(val_loss=vl, val_acc=va, test_acc=ta)
    else:
        out.update(val_loss=None, val_acc=None, test_acc=None)
    return out

