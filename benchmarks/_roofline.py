"""The roofline of a COIN epoch, written once for ``bench_coin_epoch`` and ``bench_graph --compare``.

* :func:`machine_limits` — this machine's streaming bandwidth (a large copy, bytes read + written per second) and
  matmul peak (a large square float32 product, 2n³ flops), measured in the calling process, 1 thread;
* :func:`concurrent_bandwidth` — the bandwidth each of P processes gets while P copy at once (the protocol runs one
  worker process per core, and they share the memory bus);
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
  ``floor_ms`` the same with ``floor_bytes``.

An epoch faster than ``floor_ms`` would need more than the measured bandwidth or matmul rate, as long as Adam's state
(3·4 bytes per parameter) does not stay in the last-level cache between epochs: 24.8 MB on Cora (49.5 MB for the
protocol's two workers), 165 MB on CiteSeer, against the 32 MiB L3 of the AMD EPYC measured here.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import time

__all__ = ["bounds", "concurrent_bandwidth", "epoch_work", "machine_limits"]


def machine_limits(copy_mib: int = 256, mm: int = 2048, repeats: int = 7) -> dict:
    """Streaming bandwidth (GB/s) and matmul peak (GFLOP/s) of this process's threads: medians of CPU time,
    interleaved (other processes' load distorts both alike), the first repeat dropped."""
    import torch

    a = torch.ones(copy_mib * 2**20 // 4)
    b = torch.empty_like(a)
    p = torch.randn(mm, mm)
    q = torch.randn(mm, mm)
    out = torch.empty(mm, mm)
    copies, mms = [], []
    for _ in range(repeats):
        c0 = time.process_time()
        b.copy_(a)
        copies.append(time.process_time() - c0)
        c0 = time.process_time()
        torch.mm(p, q, out=out)
        mms.append(time.process_time() - c0)
    t_copy, t_mm = statistics.median(copies[1:]), statistics.median(mms[1:])
    return {"copy_mib": copy_mib, "bandwidth_gb_s": 2 * a.numel() * 4 / t_copy / 1e9, "mm_n": mm,
            "peak_gflop_s": 2 * mm ** 3 / t_mm / 1e9}


def _copy_rate(copy_mib: int, seconds: float, start, results) -> None:
    """Child of :func:`concurrent_bandwidth`: the copy of :func:`machine_limits` (1 thread, CPU time), repeated for
    ``seconds`` of wall time once all children are ready."""
    import torch

    torch.set_num_threads(1)
    a = torch.ones(copy_mib * 2**20 // 4)
    b = torch.empty_like(a)
    b.copy_(a)  # pages touched before the clock starts
    start.wait()
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        b.copy_(a)
        n += 1
    results.put(2 * a.numel() * 4 * n / (time.process_time() - c0) / 1e9)


def concurrent_bandwidth(processes: int, copy_mib: int = 256, seconds: float = 2.0, timeout: float = 120.0) -> dict:
    """GB/s each of ``processes`` copying processes gets while all copy at once (started together by a barrier,
    spawned, joined or killed within ``timeout`` seconds): ``{"processes", "per_process_gb_s": [...],
    "share_gb_s" (total / processes), "total_gb_s"}``."""
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes!r}")
    ctx = mp.get_context("spawn")
    start, results = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_copy_rate, args=(copy_mib, seconds, start, results), daemon=True)
             for _ in range(processes)]
    for pr in procs:
        pr.start()
    try:
        rates = [results.get(timeout=timeout) for _ in procs]
    finally:
        for pr in procs:
            pr.join(timeout=5.0)
            if pr.is_alive():
                pr.kill()
                pr.join()
    return {"processes": processes, "copy_mib": copy_mib, "per_process_gb_s": sorted(rates),
            "share_gb_s": sum(rates) / processes, "total_gb_s": sum(rates)}


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
            "floor_bytes": sum(floor.values()), "total_flops": sum(flops.values()), "parameters": params}


def bounds(work: dict, bandwidth_gb_s: float, peak_gflop_s: float) -> dict:
    """Milliseconds of ``work`` (:func:`epoch_work`) at the limits: bytes at bandwidth, flops at peak, their max
    (``bound_ms``, issue 12's roofline) and the same with the floor's bytes (``floor_ms``)."""
    if not (bandwidth_gb_s > 0 and peak_gflop_s > 0):
        raise ValueError(f"limits must be > 0, got bandwidth {bandwidth_gb_s!r} GB/s, peak {peak_gflop_s!r} GFLOP/s")
    t_bytes = work["total_bytes"] / bandwidth_gb_s / 1e6
    t_floor = work["floor_bytes"] / bandwidth_gb_s / 1e6
    t_flops = work["total_flops"] / peak_gflop_s / 1e6
    return {"time_at_bandwidth_ms": t_bytes, "floor_bytes_at_bandwidth_ms": t_floor, "time_at_peak_ms": t_flops,
            "bound_ms": max(t_bytes, t_flops), "floor_ms": max(t_floor, t_flops)}
