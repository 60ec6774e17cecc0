"""The roofline of a COIN epoch, written once for ``bench_coin_epoch`` and ``bench_graph --compare``.

* :func:`machine_limits` — this machine's streaming bandwidth (a large copy, bytes read + written per second, issue
  12's measure; and an in-place update of one buffer, the access Adam makes, which moves the same counted bytes
  faster: a plain store also reads each line of the copy's target first) and matmul peak (a large square float32
  product, 2n³ flops), measured on the calling process's threads;
* :func:`concurrent_bandwidth` — the bandwidth each of P processes gets while P copy at once (the protocol runs one
  worker process per core, and they share the memory bus);
* :func:`gather_rate` — the rate of torch's own gather-sum (``embedding_bag``) over the graph's feature rows from a
  table one column panel wide, which sits in L2: what the two nnz(X)·d products reach here at best, far below the
  matmul peak the floor counts them at (they load a table row per multiply-add);
* :func:`epoch_work` — the bytes and flops one epoch of COIN (sparse features, d×d W1, C classes) must move and do,
  in two counts:

  - ``total_bytes`` (issue 12's roofline): features in both orders, W1 read, ∇W1 written, Adam's 7 streams over all
    parameters (read p, g, m, v; write p, m, v), the n×d activations written once and read once;
  - ``floor_bytes``, what *no* implementation of this model and optimiser can avoid: the features read once (int32
    indices, float32 values) and Adam's state read and written once (6 streams: p, m, v; the gradient consumed in
    registers, the forward's read of W1 fused into the previous step, activations recomputed instead of stored);

  and ``total_flops``: 2·nnz(X)·d for ``X W1`` and again for ``Xᵀ G``, 3 n×d×C output-layer products, the residual
  ``X W2`` both ways, 2 × steps × (nnz(L) + n)·C for the diffusion, ~12 flops per parameter for Adam;
* :func:`bounds` — time of each at the limits (ms) and ``bound_ms = max(bytes / bandwidth, flops / peak)``,
  ``floor_ms`` the same with ``floor_bytes`` at the larger (in-place) bandwidth, and, given a gather rate,
  ``attainable_ms``: the two products at that rate plus the other flops at the peak (both run on the same vector
  units), or the floor's bytes if those take longer (memory traffic overlaps the arithmetic).
* :func:`goal_check` — issue 12.1's targets (2× the bound, a third of the legacy kernel) as epoch times, and the
  stricter one over ``attainable_ms``: below 1, meeting it needs gathers faster than torch's own.

An epoch faster than ``floor_ms`` would need more than the measured bandwidth or matmul rate, as long as Adam's state
(3·4 bytes per parameter) does not stay in the last-level cache between epochs: 24.8 MB on Cora (49.5 MB for the
protocol's two workers), 165 MB on CiteSeer, against the 32 MiB L3 of the AMD EPYC measured here.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import statistics
import time
from typing import Optional

__all__ = ["bounds", "concurrent_bandwidth", "epoch_work", "gather_rate", "goal_check", "machine_limits"]


def _stream_pass(a, b) -> tuple[float, float]:
    """CPU seconds of one copy ``b ← a`` (read a, write b: 2 transfers counted, though a plain store also reads each
    line of b first) and of one in-place update ``a ← 1·a`` (read and write a: 2 transfers, what Adam does to its
    state)."""
    import torch

    c0 = time.process_time()
    b.copy_(a)
    c1 = time.process_time()
    torch.mul(a, 1.0, out=a)
    return c1 - c0, time.process_time() - c1


def _gb_s(a, seconds: list[float]) -> float:
    """GB/s of 2 transfers of ``a`` in the median of ``seconds`` (the first, warm-up pass dropped)."""
    return 2 * a.numel() * a.element_size() / 1e9 / statistics.median(seconds[1:])


def machine_limits(copy_mib: int = 256, mm: int = 2048, repeats: int = 7) -> dict:
    """Streaming bandwidth (GB/s: a copy, and an in-place update of one buffer) and matmul peak (GFLOP/s) on the
    calling process's threads: medians of CPU time, interleaved (other processes' load distorts all alike)."""
    import torch

    a = torch.ones(copy_mib * 2**20 // 4)
    b = torch.empty_like(a)
    p = torch.randn(mm, mm)
    q = torch.randn(mm, mm)
    out = torch.empty(mm, mm)
    copies, updates, mms = [], [], []
    for _ in range(repeats):
        tc, tu = _stream_pass(a, b)
        copies.append(tc)
        updates.append(tu)
        c0 = time.process_time()
        torch.mm(p, q, out=out)
        mms.append(time.process_time() - c0)
    return {"copy_mib": copy_mib, "bandwidth_gb_s": _gb_s(a, copies), "inplace_gb_s": _gb_s(a, updates), "mm_n": mm,
            "peak_gflop_s": 2 * mm ** 3 / statistics.median(mms[1:]) / 1e9}


def _copy_rate(copy_mib: int, seconds: float, start, results) -> None:
    """Child of :func:`concurrent_bandwidth`: the streams of :func:`machine_limits` (1 thread), repeated for
    ``seconds`` of wall time once all children are ready; puts (copy GB/s, in-place GB/s)."""
    import torch

    torch.set_num_threads(1)
    a = torch.ones(copy_mib * 2**20 // 4)
    b = torch.empty_like(a)
    b.copy_(a)  # pages touched before the clock starts
    start.wait(timeout=60.0)
    copies, updates = [], []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(copies) < 2:
        tc, tu = _stream_pass(a, b)
        copies.append(tc)
        updates.append(tu)
    results.put((_gb_s(a, copies), _gb_s(a, updates)))


def concurrent_bandwidth(processes: int, copy_mib: int = 256, seconds: float = 2.0, timeout: float = 120.0) -> dict:
    """GB/s each of ``processes`` processes gets while all stream at once (spawned, started together by a barrier):
    ``{"processes", "per_process_gb_s": [...] (copy), "share_gb_s" (copy total / processes), "total_gb_s",
    "inplace_share_gb_s"}``. The whole call takes at most ``timeout`` seconds; a child that dies or hangs raises
    ``RuntimeError``, and every child is gone when it returns or raises."""
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes!r}")
    ctx = mp.get_context("spawn")
    start, results = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_copy_rate, args=(copy_mib, seconds, start, results), daemon=True)
             for _ in range(processes)]
    deadline = time.monotonic() + timeout
    rates: list[tuple[float, float]] = []
    try:
        for pr in procs:
            pr.start()
        while len(rates) < processes:
            try:
                rates.append(results.get(timeout=1.0))
            except queue.Empty:
                dead = [pr.exitcode for pr in procs if pr.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"concurrent_bandwidth: {len(dead)} of {processes} streaming processes died "
                                       f"(exit codes {dead}) before reporting") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"concurrent_bandwidth: {len(rates)} of {processes} streaming processes "
                                       f"reported within {timeout:g} s") from None
    finally:
        for pr in procs:
            if pr.pid is not None:
                pr.join(timeout=5.0)
                if pr.is_alive():
                    pr.kill()
                    pr.join()
    copy = sorted(r[0] for r in rates)
    return {"processes": processes, "copy_mib": copy_mib, "per_process_gb_s": copy,
            "share_gb_s": sum(copy) / processes, "total_gb_s": sum(copy),
            "inplace_share_gb_s": sum(r[1] for r in rates) / processes}


def gather_rate(cols, offsets, vals, rows: int, width: int = 64, repeats: int = 30) -> dict:
    """GB/s of torch's own gather-sum over sparse rows — ``embedding_bag(mode="sum")`` with the values as weights:
    ``cols`` (nnz,) and ``offsets`` (n,) int64 CSR indices, ``vals`` (nnz,) float32 — from a (``rows`` × ``width``)
    float32 table, counting ``width``·4 gathered bytes per non-zero: the graph's own access pattern against a table
    one column panel wide (Cora, 1433 × 64: 367 KB, held in L2), on the calling process's threads; median CPU time
    of ``repeats`` calls after one warm-up. ``{"width", "table_kib", "gb_s"}``."""
    import torch
    import torch.nn.functional as F

    if width < 1 or rows < 1 or repeats < 1:
        raise ValueError(f"rows, width and repeats must be >= 1, got {rows!r}, {width!r}, {repeats!r}")
    table = torch.randn(rows, width, generator=torch.Generator().manual_seed(0))
    times = []
    for _ in range(repeats + 1):
        c0 = time.process_time()
        F.embedding_bag(cols, table, offsets, mode="sum", per_sample_weights=vals)
        times.append(time.process_time() - c0)
    return {"width": width, "table_kib": table.numel() * 4 / 1024,
            "gb_s": cols.numel() * width * 4 / 1e9 / max(statistics.median(times[1:]), 1e-9)}


def epoch_work(n: int, d: int, c: int, nnz_x: int, nnz_l: int, steps: int) -> dict:
    """Bytes and flops of one COIN epoch: n nodes, d features (W1 is d×d), c classes, nnz_x feature non-zeros,
    nnz_l Laplacian non-zeros, ``steps`` explicit diffusion steps (module doc for what each term counts)."""
    params = d * d + d + c * d + c
    features = 2 * nnz_x * (8 + 4) + (n + d) * 8  # CSR and CSC: int64 index + float32 value, offsets
    bytes_ = {"features_csr_and_csc": features, "w1_read": 4 * d * d, "grad_w1_write": 4 * d * d,
              "adam_7_streams": 7 * 4 * params, "activations_write_read": 2 * 4 * n * d}
    floor = {"features_once": nnz_x * (4 + 4) + n * 4, "adam_state_6_streams": 6 * 4 * params}
    flops = {"x_w1": 2 * nnz_x * d, "xT_g": 2 * nnz_x * d, "output_layer_3_products": 3 * 2 * n * d * c,
             "residual_x_w2": 2 * 2 * nnz_x * c, "diffusion_fwd_bwd": 2 * steps * 2 * (nnz_l + n) * c,
             "adam": 12 * params}
    return {"bytes": bytes_, "floor": floor, "flops": flops, "total_bytes": sum(bytes_.values()),
            "floor_bytes": sum(floor.values()), "total_flops": sum(flops.values()), "parameters": params,
            "gathered_bytes": 2 * 4 * nnz_x * d}  # the two products' table rows, one float32 per multiply-add


def bounds(work: dict, bandwidth_gb_s: float, peak_gflop_s: float, inplace_gb_s: Optional[float] = None,
           gather_gb_s: Optional[float] = None) -> dict:
    """Milliseconds of ``work`` (:func:`epoch_work`) at the limits: bytes at bandwidth, flops at peak, their max
    (``bound_ms``, issue 12's roofline) and the floor's bytes at the faster of the copy and the in-place rate
    (``inplace_gb_s``, when measured), so that the floor stays a lower bound, against the same flops
    (``floor_ms``). With ``gather_gb_s`` (:func:`gather_rate`) also ``gathers_ms``, the two nnz(X)·d products'
    ``gathered_bytes`` at that rate (or their flops at the peak, if faster), and ``attainable_ms``: those plus the
    other flops at the peak, or the floor's bytes if they take longer; never below ``floor_ms``."""
    floor_gb_s = bandwidth_gb_s if inplace_gb_s is None else max(bandwidth_gb_s, inplace_gb_s)
    if not (bandwidth_gb_s > 0 and peak_gflop_s > 0 and floor_gb_s > 0 and (gather_gb_s is None or gather_gb_s > 0)):
        raise ValueError(f"limits must be > 0, got bandwidth {bandwidth_gb_s!r} GB/s (in-place {inplace_gb_s!r}), "
                         f"peak {peak_gflop_s!r} GFLOP/s, gather {gather_gb_s!r} GB/s")
    t_bytes = work["total_bytes"] / bandwidth_gb_s / 1e6
    t_floor = work["floor_bytes"] / floor_gb_s / 1e6
    t_flops = work["total_flops"] / peak_gflop_s / 1e6
    out = {"time_at_bandwidth_ms": t_bytes, "floor_bytes_at_bandwidth_ms": t_floor, "time_at_peak_ms": t_flops,
           "bound_ms": max(t_bytes, t_flops), "floor_ms": max(t_floor, t_flops)}
    if gather_gb_s is not None:
        products = work["flops"]["x_w1"] + work["flops"]["xT_g"]
        t_gathers = max(work["gathered_bytes"] / gather_gb_s, products / peak_gflop_s) / 1e6
        t_rest = (work["total_flops"] - products) / peak_gflop_s / 1e6
        out.update(gathers_ms=t_gathers, attainable_ms=max(t_gathers + t_rest, t_floor))
    return out


def goal_check(bound_ms: float, attainable_ms: float, legacy_ms: float) -> dict:
    """Issue 12.1's two targets as epoch times, next to what this machine's gathers allow: ``target_ms`` is the
    stricter of 2× the bound and a third of the legacy kernel's time; ``target_over_attainable`` < 1 says the target
    lies below ``attainable_ms`` (the two nnz(X)·d products at torch's measured gather rate plus the other flops at
    the peak), i.e. a kernel meeting it would gather faster than torch's own gather-sum over the same rows."""
    target = min(2.0 * bound_ms, legacy_ms / 3.0)
    return {"two_x_bound_ms": 2.0 * bound_ms, "third_of_legacy_ms": legacy_ms / 3.0, "target_ms": target,
            "attainable_ms": attainable_ms, "target_over_attainable": target / attainable_ms}
