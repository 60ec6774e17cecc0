"""The compiled kernels of COIN (``csrc/panel_kernel.c``: the sparse base layer; ``csrc/csr_power.c``: the explicit
diffusion's k steps), loaded with ctypes.

``pip install`` builds ``nsde_coin/graph/_panel_kernel*.so`` from plain C (no torch headers; Python's only for an
empty module init so that the file is importable). The library holds each kernel three times, built for AVX-512,
AVX2 and baseline x86-64 (SSE2) (``csrc/kernels_*.c``); :func:`isa` says which build runs: the widest this CPU
supports, or the one the environment variable ``NSDE_COIN_NATIVE_ISA`` names (``avx512``, ``avx2``, ``baseline``;
CI runs its second pass on ``baseline``, so the SSE2 code is tested on every machine). The build is optional: where
no C compiler is found, installation still succeeds and :class:`~nsde_coin.graph.sparse_base.SparseBase` runs its
pure-torch panels instead — same results to float32 rounding. :func:`status` says which path runs and why.

What it fuses (Cora, 1 thread, Intel Xeon: the base layer's forward + backward 14 ms vs 22 ms for the torch panels;
see ``benchmarks/bench_coin_epoch.py``): the panel copy of W1 into a contiguous table, the gather, bias and ReLU in
registers and the output layer in one pass per panel; in the backward ``(g W2_J) ⊙ [h_J > 0]`` and ``gᵀ h_J`` in
one pass over h_J (recomputed 32 nodes at a time into L1 where the forward kept no activations), then ∇W1 = xᵀ g_z
written straight into ∇W1 (or into W1 through Adam): gathered from the n×k table g_z, or, where that table would
outgrow L2 (``sparse_base.SCATTER_TABLE_BYTES``), scattered along x's rows into a (d+1)×k accumulator. The residual
branch ``x W2ᵀ + b2`` and its gradients run in the same two calls (``csrc/residual.c``).

:func:`readout_forward` / :func:`readout_backward` (``csrc/readout_head.c``) run the protocol's read-out head
(softmax, the k steps, the read-out rows, floored log) in one call each way, and :func:`adam` one Adam update
(``csrc/adam_row.h``, the same code the backward applies to W1's rows): see
:mod:`nsde_coin.graph.experiment.readout` and :mod:`nsde_coin.graph.compiled_adam`.

:func:`csr_power` runs all k steps ``u ← P u`` of :func:`nsde_coin.graph.sparse.propagate` in one call on a
zero-padded copy of u in panels of up to 32 columns (rows of 8, 16 or 32 floats; Cora's 7 classes: two 80 KB
buffers, in L2), each panel through all k steps, instead of k torch sparse matmuls that each convert P's int64
indices for MKL (Cora, 20 steps × 7 classes, 1 thread, Intel Xeon: see ``benchmarks/bench_propagate.py``).

Threads: the base layer runs on ``torch.get_num_threads()`` threads (at most one per panel and
:data:`MAX_THREADS`; :func:`threads_for`), thread t taking panels t, t + T, .... Built with OpenMP (setup.py's
default), the library binds to the ``libgomp.so.1`` torch loaded, so these are torch's own pool threads; a build
without OpenMP starts POSIX threads per call. The backward's results do not depend on the thread count; the
forward's output differs from one thread's by float rounding of its per-thread sums only. :func:`csr_power` is
single-threaded.

When they run: float32 CPU tensors, int32 feature indices (the base layer), at most
:data:`~nsde_coin.graph.sparse.SMALL_WORK` entries or one thread for :func:`csr_power`, and not disabled by the
environment variable ``NSDE_COIN_NATIVE=0``.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import os
from pathlib import Path
from typing import Optional, Union

import torch

from nsde_coin.errors import invalid_choice

__all__ = ["ENV", "ENV_ISA", "ISAS", "MAX_THREADS", "adam", "available", "backward", "csr_power", "forward", "isa",
           "power_usable", "readout_backward", "readout_forward", "status", "supported_isas", "threads_for",
           "usable"]

ABI_VERSION = 10  # nsde_panel_abi_version() of csrc/module.c this module calls
ENV = "NSDE_COIN_NATIVE"  # "0" disables the compiled kernels (the torch panels and torch's sparse product run)
ENV_ISA = "NSDE_COIN_NATIVE_ISA"  # one of ISAS: run that build of the kernels instead of the CPU's widest
ISAS = ("baseline", "avx2", "avx512")  # the builds, by the level nsde_kernel_best_isa() returns
MAX_THREADS = 64  # NSDE_MAX_THREADS of csrc/kernel_common.h: threads of one base-layer call at most
_I64, _P = ctypes.c_int64, ctypes.c_void_p
_ARGTYPES = {  # each entry point's arguments, in the order of its C signature
    "nsde_panel_chunk": [],
    "nsde_panel_forward": [_I64] * 4 + [_P] * 3 + [_I64] + [_P] * 3 + [_I64] + [_P] * 3 + [_I64, _P, _P, _P],
    "nsde_panel_backward": [_I64] * 4 + [_P] * 3 + [_I64, _P, _I64] + [_P] * 7 + [_I64] + [_P] * 7 + [_I64]
    + [_P] * 3 + [_I64, _P, _I64, _P, _P],
    "nsde_residual_work": [_I64] * 2,
    "nsde_csr_power": [_I64] * 3 + [_P] * 6,
    "nsde_csr_power_work": [_I64] * 2,
    "nsde_readout_forward": [_I64] * 3 + [_P] * 4 + [_I64, _P, ctypes.c_float] + [_P] * 4,
    "nsde_readout_backward": [_I64] * 3 + [_P] * 4 + [_I64, _P, ctypes.c_float] + [_P] * 4,
    "nsde_readout_work": [_I64] * 2,
    "nsde_adam": [_I64] + [_P] * 5,
}
# the scratch-size queries and the read-out head's row check; the other kernels return nothing
_RETURNS_I64 = ("nsde_panel_chunk", "nsde_csr_power_work", "nsde_readout_work", "nsde_residual_work",
                "nsde_readout_forward", "nsde_readout_backward")
_LIB: Optional[ctypes.CDLL] = None
_BEST = 0  # the widest build this CPU runs (an index into ISAS)
_WHY = ""


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    """Declare the argument and return types of every entry point of a loaded kernel library (each build), so
    that ctypes passes 64-bit integers and pointers; returns ``lib``."""
    lib.nsde_kernel_best_isa.restype = _I64
    for name, args in _ARGTYPES.items():
        for level in ISAS:
            fn = getattr(lib, f"{name}_{level}")
            fn.argtypes, fn.restype = args, (_I64 if name in _RETURNS_I64 else None)
    return lib


def _load() -> Optional[ctypes.CDLL]:
    global _LIB, _BEST, _WHY
    if _LIB is not None or _WHY:
        return _LIB
    here = Path(__file__).resolve().parent
    paths = [p for s in importlib.machinery.EXTENSION_SUFFIXES for p in here.glob(f"_panel_kernel{s}")]
    if not paths:
        _WHY = ("not built (no nsde_coin/graph/_panel_kernel*.so: reinstall with a C compiler and the Python "
                "development headers, `pip install -e .`)")
        return None
    try:
        lib = ctypes.CDLL(str(paths[0]))
        lib.nsde_panel_abi_version.restype = _I64
        if lib.nsde_panel_abi_version() != ABI_VERSION:
            _WHY = (f"stale build {paths[0].name} (kernel ABI {lib.nsde_panel_abi_version()}, this package needs "
                    f"{ABI_VERSION}): re-run `pip install -e .`")
            return None
        best = int(_bind(lib).nsde_kernel_best_isa())
    except (OSError, AttributeError) as err:
        _WHY = f"could not load {paths[0].name}: {err}"
        return None
    _LIB, _BEST = lib, min(max(best, 0), len(ISAS) - 1)
    return lib


def supported_isas() -> tuple[str, ...]:
    """The builds of the kernels this CPU runs, narrowest first (empty when the library is not available)."""
    return ISAS[: _BEST + 1] if _load() is not None else ()


def isa() -> str:
    """The build of the kernels that runs (one of :data:`ISAS`): ``NSDE_COIN_NATIVE_ISA`` when set, else the widest
    this CPU supports. Raises ``ValueError`` for a value outside :data:`ISAS` or wider than the CPU supports, and
    ``RuntimeError`` when the library is not available (see :func:`status`)."""
    if _load() is None:
        raise RuntimeError(f"the compiled kernels are not available: {_WHY}")
    want = os.environ.get(ENV_ISA, "").strip()
    if not want:
        return ISAS[_BEST]
    if want not in ISAS:
        raise ValueError(invalid_choice(ENV_ISA, want, ISAS))
    if ISAS.index(want) > _BEST:
        raise ValueError(f"{ENV_ISA}={want!r} is wider than this CPU (or this compiler's build of the library) "
                         f"supports; valid choices here: {', '.join(ISAS[: _BEST + 1])}")
    return want


def _fn(name: str):
    build = isa()  # loads the library first
    return getattr(_LIB, f"{name}_{build}")


def status() -> str:
    """One line: whether the compiled kernels are available in this process and which build runs, and if not, why."""
    if os.environ.get(ENV, "").strip() == "0":
        return f"disabled ({ENV}=0)"
    if _load() is None:
        return _WHY
    try:
        return f"available ({isa()})"
    except ValueError as err:
        return str(err)


def available() -> bool:
    """Whether the compiled kernels are built, loadable and not disabled (:func:`status` says why not)."""
    return status().startswith("available")


def _enabled() -> bool:
    """Not disabled by ``NSDE_COIN_NATIVE=0`` and built; a bad ``NSDE_COIN_NATIVE_ISA`` raises (see :func:`isa`)."""
    if os.environ.get(ENV, "").strip() == "0" or _load() is None:
        return False
    isa()
    return True


def usable(w1: torch.Tensor, index_dtype: torch.dtype, *others: torch.Tensor) -> bool:
    """Whether the compiled kernel runs for weights ``w1`` and feature indices of ``index_dtype`` (see module doc);
    ``others`` (the remaining weights and feature values) must share w1's dtype and device."""
    return (w1.dtype == torch.float32 and w1.device.type == "cpu" and index_dtype == torch.int32
            and all(t.dtype == w1.dtype and t.device == w1.device for t in others) and _enabled())


def power_usable(u: torch.Tensor, p: torch.Tensor, small: bool) -> bool:
    """Whether :func:`csr_power` runs for ``u`` (n, m) and the sparse CSR ``p`` (n, n): float32 CPU tensors, int64
    indices, ``small`` work (:func:`~nsde_coin.graph.sparse.propagate`'s single-thread size) or one thread."""
    return (u.dtype == torch.float32 and u.device.type == "cpu" and u.dim() == 2 and p.layout == torch.sparse_csr
            and p.device.type == "cpu" and tuple(p.shape) == (u.shape[0], u.shape[0])  # else torch's shape error
            and p.dtype == torch.float32 and p.crow_indices().dtype == torch.int64
            and (small or torch.get_num_threads() == 1) and _enabled())


def csr_power(p: torch.Tensor, u: torch.Tensor, k: int) -> torch.Tensor:
    """``P^k u`` (k ≥ 1) for a float32 CSR ``p`` (n, n) and ``u`` (n, m): a new contiguous (n, m) tensor."""
    n, m = u.shape
    u = u.contiguous()
    out = torch.empty_like(u)
    work = torch.empty(_fn("nsde_csr_power_work")(n, m), dtype=u.dtype)  # two n×W panel buffers
    crow, col, val = p.crow_indices(), p.col_indices(), p.values()
    _fn("nsde_csr_power")(n, m, k, _ptr(crow), _ptr(col), _ptr(val), _ptr(u), _ptr(out), _ptr(work))
    return out


def readout_forward(p: torch.Tensor, logits: torch.Tensor, k: int, rows: torch.Tensor,
                    eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The read-out head's forward (``csrc/readout_head.c``): ``lu = log max((P^k softmax(logits))[rows], eps)``.

    ``p`` float32 CSR (n, n) with int64 indices (:func:`power_usable`), ``logits`` (n, C) float32, ``k`` ≥ 1,
    ``rows`` (m,) int64 in [0, n). Returns ``(lu, u0, ur)``: lu (m, C), and for :func:`readout_backward` the
    softmax u0 (n, C) and the diffused rows ur (m, C); all new contiguous tensors."""
    rows = _readout_args(p, logits, k, rows)
    n, c = logits.shape
    logits = logits.contiguous()
    u0, ur, lu = torch.empty_like(logits), logits.new_empty(rows.numel(), c), logits.new_empty(rows.numel(), c)
    work = logits.new_empty(_fn("nsde_readout_work")(n, c))
    _row_check(_fn("nsde_readout_forward")(n, c, k, _ptr(p.crow_indices()), _ptr(p.col_indices()), _ptr(p.values()),
                                           _ptr(logits), rows.numel(), _ptr(rows), eps, _ptr(u0), _ptr(ur), _ptr(lu),
                                           _ptr(work)), rows, n)
    return lu, u0, ur


def _readout_args(p: torch.Tensor, x: torch.Tensor, k: int, rows: torch.Tensor) -> torch.Tensor:
    """Refuse what the read-out kernels cannot take (one line naming it); returns ``rows`` as contiguous int64."""
    n = x.shape[0] if x.dim() == 2 else -1
    if not (x.dim() == 2 and x.shape[1] >= 1 and x.dtype == torch.float32 and x.device.type == "cpu"):
        raise ValueError(f"the read-out head needs float32 CPU node values (n, C) with C >= 1, got "
                         f"{tuple(x.shape)} {x.dtype} on {x.device}")
    if not power_usable(x, p, True):
        raise ValueError(f"the read-out head needs a float32 CSR step matrix ({n}, {n}) with int64 indices on the "
                         f"CPU and the compiled kernels ({status()}); got {p.layout} {tuple(p.shape)} {p.dtype}")
    if not (isinstance(k, int) and k >= 1):
        raise ValueError(f"the read-out head needs k >= 1 steps, got {k!r}")
    if rows.dim() != 1 or rows.is_floating_point() or rows.is_complex() or rows.dtype == torch.bool:
        raise ValueError(f"rows must be a 1-D integer tensor of node indices, got {tuple(rows.shape)} {rows.dtype}")
    return rows.to(torch.int64).contiguous()


def _row_check(code: int, rows: torch.Tensor, n: int) -> None:
    if code:
        raise ValueError(f"rows[{code - 1}] = {int(rows[code - 1])} is not a node index in [0, {n})")


def readout_backward(p_t: torch.Tensor, g: torch.Tensor, k: int, rows: torch.Tensor, eps: float, u0: torch.Tensor,
                     ur: torch.Tensor) -> torch.Tensor:
    """The gradient of :func:`readout_forward`'s ``lu`` with respect to the logits: ``g`` (m, C) → (n, C), through
    ``p_t`` = Pᵀ (float32 CSR, int64 indices) and the ``u0``, ``ur`` the forward returned."""
    rows = _readout_args(p_t, u0, k, rows)
    n, c = u0.shape
    if not (g.dtype == torch.float32 and tuple(g.shape) == tuple(ur.shape) == (rows.numel(), c)):
        raise ValueError(f"the read-out gradient needs float32 (m, C) = ({rows.numel()}, {c}) tensors g and ur, got "
                         f"{tuple(g.shape)} {g.dtype} and {tuple(ur.shape)}")
    g = g.contiguous()
    out = torch.empty_like(u0)
    work = u0.new_empty(_fn("nsde_readout_work")(n, c))
    _row_check(_fn("nsde_readout_backward")(n, c, k, _ptr(p_t.crow_indices()), _ptr(p_t.col_indices()),
                                            _ptr(p_t.values()), _ptr(g), rows.numel(), _ptr(rows), eps, _ptr(u0),
                                            _ptr(ur.contiguous()), _ptr(out), _ptr(work)), rows, n)
    return out


def adam(p: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, grad: torch.Tensor,
         hyper: torch.Tensor) -> None:
    """One Adam step on ``p`` in place (``csrc/adam_row.h``; contiguous float32 CPU tensors of one size, ``hyper``
    as :meth:`~nsde_coin.graph.backward_adam.BackwardAdam.begin` returns it); updates the two moments too."""
    _fn("nsde_adam")(p.numel(), _ptr(p), _ptr(exp_avg), _ptr(exp_avg_sq), _ptr(grad), _ptr(hyper))


def _ptr(t: Optional[torch.Tensor]) -> Optional[int]:
    """The address of ``t``'s data (None for None: an argument the kernel does not touch under its flags)."""
    return None if t is None else t.data_ptr()


_FORKED = False  # set in a child made by fork(): GNU OpenMP's pool does not survive it (a parallel region hangs)


def _after_fork_in_child() -> None:
    global _FORKED
    _FORKED = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def threads_for(d: int, panel: int, threads: Optional[int] = None) -> int:
    """Threads of a base-layer call on ``d`` columns in panels of ``panel``: ``threads`` (default
    ``torch.get_num_threads()``), at most one per panel and :data:`MAX_THREADS`; 1 in a process made by ``fork()``
    (libgomp's threads are not copied into it, and its first parallel region would wait for them forever: with one
    thread the kernel enters none)."""
    want = torch.get_num_threads() if threads is None else int(threads)
    return 1 if _FORKED else max(1, min(want, -(-d // panel), MAX_THREADS))


def forward(feats, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, out: torch.Tensor, panel: int,
            h: Optional[torch.Tensor], threads: Optional[int] = None, b2: Optional[torch.Tensor] = None) -> None:
    """All panels of width ``panel``: write ``h`` (their n×k blocks back to back; ``None``: not kept) and add
    ``W2[:, J] h_J`` into ``out`` (n, C), on :func:`threads_for` threads. With ``b2`` (C,), ``out`` is first set to
    the residual branch and output bias ``x W2ᵀ + b2`` (its contents are not read).

    ``feats``: :class:`~nsde_coin.graph.sparse_base.SparseFeatures` with int32 indices; w1 (d, d), b1 (d,), w2 (C, d)
    contiguous float32; ``out`` contiguous (n, C) float32; ``h`` n·d floats.
    """
    n, d, c = out.shape[0], w1.shape[0], w2.shape[0]
    threads = threads_for(d, panel, threads)
    pack = torch.empty(threads * (d + 1) * panel, dtype=w1.dtype)
    outx = torch.empty((threads - 1) * n * c, dtype=out.dtype) if threads > 1 else None  # other threads' sums
    rwork = None if b2 is None else w1.new_empty(_fn("nsde_residual_work")(d + 1, c))
    _fn("nsde_panel_forward")(n, d, c, panel, _ptr(feats.offsets), _ptr(feats.cols), _ptr(feats.vals),
                              feats.cols.numel(), _ptr(w1), _ptr(b1), _ptr(w2), int(h is not None), _ptr(h),
                              _ptr(out), _ptr(pack), threads, _ptr(outx), _ptr(b2), _ptr(rwork))


def backward(feats, g: torch.Tensor, h: Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]], w2: torch.Tensor,
             gw1: Optional[torch.Tensor], gb1: torch.Tensor, gw2: torch.Tensor, panel: int,
             adam: Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = None,
             scatter: bool = False, threads: Optional[int] = None, gb2: Optional[torch.Tensor] = None) -> None:
    """All panels: write ``gw1[:, J]`` (d, d) and ``gb1[J]``, add ``gᵀ h_J`` into ``gw2[:, J]`` (C, d). With ``gb2``
    (C,), ``gw2`` is first set to the residual branch's ``(xᵀ g)ᵀ`` and ``gb2`` to ``g``'s column sums.

    ``g`` (n, C) contiguous, ``h`` as :func:`forward` left it, or ``(w1, b1)``, the weights of the forward, to
    recompute each panel's activations in L1 (the forward kept none). With ``adam = (w1, exp_avg, exp_avg_sq,
    hyper)`` (see :class:`~nsde_coin.graph.backward_adam.BackwardAdam`) each row of ∇W1[:, J] updates ``w1`` in place
    instead of being stored (``gw1`` may be ``None``). ``scatter``: compute ``xᵀ gz_J`` by adding each node's row of
    ``gz_J`` into a (d+1)×k accumulator along the rows of x, instead of gathering from the n×k table ``gz_J``
    (faster once that table outgrows L2; same sums in another order). Runs on :func:`threads_for` threads, each with
    its own scratch; the results do not depend on their number.
    """
    n, c = g.shape
    d = gb1.shape[0]
    chunk = _fn("nsde_panel_chunk")()
    threads = threads_for(d, panel, threads)
    gz = torch.empty(threads * (chunk if scatter else n) * panel, dtype=g.dtype)
    acc = torch.empty(threads * (d + 1) * panel, dtype=g.dtype) if scatter else None
    tile = torch.empty(threads * (c + 1) * panel, dtype=g.dtype)
    w1, m, v, hy = adam if adam is not None else (None, None, None, None)
    saved, (w1r, b1) = (h, (None, None)) if isinstance(h, torch.Tensor) else (None, h)
    pack = None if saved is not None else torch.empty(threads * (d + chunk) * panel, dtype=g.dtype)
    rwork = None if gb2 is None else g.new_empty(_fn("nsde_residual_work")(n, c) + _fn("nsde_residual_work")(d + 1, c))
    _fn("nsde_panel_backward")(n, d, c, panel, _ptr(feats.t_offsets), _ptr(feats.t_rows), _ptr(feats.t_vals),
                               feats.t_rows.numel(), _ptr(g), int(saved is not None), _ptr(saved), _ptr(w2),
                               _ptr(gz), _ptr(gw1), _ptr(gb1), _ptr(gw2), _ptr(tile), int(adam is not None),
                               _ptr(w1), _ptr(m), _ptr(v), _ptr(hy), _ptr(feats.offsets), _ptr(feats.cols),
                               _ptr(feats.vals), feats.cols.numel(), _ptr(w1r), _ptr(b1), _ptr(pack), int(scatter),
                               _ptr(acc), threads, _ptr(gb2), _ptr(rwork))
