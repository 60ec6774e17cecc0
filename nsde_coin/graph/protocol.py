"""The paper's graph benchmark protocol: S random splits × I random initialisations, resumable, one JSON line per run.

Training (Shchur et al. 2018, as in the COIN paper): Adam (lr 0.01, weight decay 5e-4), full batch, at most 10,000
epochs, early stopping with patience 50 where the counter resets whenever the validation loss reaches a new minimum
**or** the validation accuracy a new maximum; the test accuracy is measured with the weights saved at the last reset.

Speed (the protocol runs thousands of trainings):

* Deterministic models (COIN, SGC: no dropout) read the validation loss/accuracy off the *training* forward pass —
  the weights that produced them are the ones saved on a reset (the optimiser steps afterwards) — so each epoch is
  one forward and one backward pass.
* COIN with a linear deterministic solver (explicit / implicit / exact) on a symmetric Laplacian trains through a
  **read-out operator**: the loss and the validation metrics need ``u_T`` only on the m = |train ∪ val| nodes, and
  ``u_T = F u_0`` with ``F`` the solver's fixed linear map, so the rows ``P = (F e_i)ᵀ`` (m × n, dense; ``F = Fᵀ`` for
  symmetric L) are computed once per split by diffusing m indicator vectors. Each epoch then costs one m×n×C
  product instead of ``layer_num`` sparse steps (or CG solves) forward and backward. For the explicit solver, where
  its compiled steps are less work (``layer_num·nnz(I − σ²L) ≤ m·n``: Cora, CiteSeer, PubMed), the same rows come
  from those steps on the whole graph instead, and no P is built (epoch 1.02-1.05× faster on Cora, 1.26× on
  PubMed; ``_steps_are_cheaper`` in :mod:`nsde_coin.graph.experiment.train`). The test accuracy is computed with the
  model's own full diffusion on the whole graph, so the reported numbers never depend on the shortcut.
  ``fast=False`` turns it off.
* The sweep keeps no copy of the weights (``train_run(..., keep_best=False)``): at each reset it keeps the (n, C)
  outputs of the forward pass that produced the validation metrics (for the read-out COIN: its base logits), and at
  the end reads the recorded validation loss/accuracy and test accuracy off the last of them (the read-out COIN's
  logits diffused on the whole graph once, the model's own full diffusion): the records a restored copy would
  give, without W1's size again in memory (283 MB on Coauthor Physics) and a d×d copy per reset. Called directly,
  ``train_run`` saves the weights into pre-allocated buffers and leaves the model with them. Adam uses the fused
  CPU kernel, or with the compiled base layer one compiled call per weight
  (:class:`~nsde_coin.graph.compiled_adam.CompiledAdam`); in the steps form the whole head (softmax, steps, rows,
  floored log) is one compiled call each way (:mod:`nsde_coin.graph.experiment.readout`): torch's ~20 small ops
  and its optimiser step ran cold after each kernel call (Cora: 0.65 and 0.25 ms per epoch saved, AMD EPYC);
  freed n×d blocks stay in the C heap (:mod:`nsde_coin._heap`) instead of page-faulting again every epoch.
* ``workers=N`` runs the pending runs on an embedded Dask ``LocalCluster`` of N single-threaded worker processes, and
  ``client=`` on an existing Dask cluster (one process per core: the compiled base layer splits its panels over
  threads, but torch's small ops between its calls do not, so for many runs processes scale better than intra-op
  threads); the driver stays the only writer of the records
  (:mod:`nsde_coin.graph.experiment.cluster`).

Records: every run appends one JSON object to the results file (fsync'ed per record, by the driver only, which
holds an exclusive lock on ``<out>.lock`` for the sweep) with the dataset, model, hyper-parameters, training
settings, split and init seeds, status, epochs, best epoch, validation/test accuracy, times and versions. Re-running
the same command skips the runs already recorded (key = dataset, source, model, hyper-parameters, training settings,
split seed, init seed, and the execution settings that change a result when they differ from the defaults: threads
≠ 1, ``fast=False``, a CUDA device, float64 — so files written with the defaults keep their keys).
A corrupt line (e.g. a run killed mid-write) is reported
with its line number and skipped; the good records are kept.

Seeds: split ``s`` is :func:`~nsde_coin.graph.splits.random_split` with seed ``s``; run (s, i) initialises and trains
under ``torch.manual_seed(1_000_003 * s + i)`` (dropout masks included), so every run is reproducible on CPU.

The code lives in :mod:`nsde_coin.graph.experiment` (``train``: one run; ``records``: keys, results file, lock,
summary; ``runner``: the sweep; ``cluster``: Dask); this module re-exports it.
"""

from __future__ import annotations

from nsde_coin.graph.experiment.readout import DenseReadout as _Readout  # noqa: F401 (the old name)
from nsde_coin.graph.experiment.records import (  # noqa: F401 (re-exported)
    ResultsInUseError,
    ResultsLog,
    SweepLock,
    _read_records,
    run_key,
    summarize,
)
from nsde_coin.graph.experiment.runner import RunSpec, resolve_device, run_one, run_protocol  # noqa: F401
from nsde_coin.graph.experiment.train import (  # noqa: F401 (re-exported)
    LINEAR_SOLVERS,
    EarlyStopper,
    TrainConfig,
    _ModuleTask,
    _ReadoutCOINTask,
    train_run,
)

__all__ = [
    "EarlyStopper",
    "ResultsInUseError",
    "ResultsLog",
    "TrainConfig",
    "run_key",
    "resolve_device",
    "run_protocol",
    "summarize",
    "train_run",
]
