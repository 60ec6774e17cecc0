"""The roofline of ``benchmarks/_roofline.py`` (issue 12): its byte and flop counts in closed form, the bounds they
give (with and without a gather rate), the concurrent-bandwidth and gather probes (real processes, all gone after)
and ``bench_graph --compare``'s ratios at the roofline."""

from __future__ import annotations

import multiprocessing as mp

import pytest


def test_epoch_work_counts_in_closed_form(bench):
    from _roofline import epoch_work

    n, d, c, nnz_x, nnz_l, steps = 10, 4, 3, 20, 30, 2
    w = epoch_work(n, d, c, nnz_x, nnz_l, steps)
    params = d * d + d + c * d + c
    assert w["parameters"] == params == 35
    assert w["floor_bytes"] == nnz_x * 8 + n * 4 + 6 * 4 * params
    assert w["total_bytes"] == 2 * nnz_x * 12 + (n + d) * 8 + 4 * d * d * 2 + 7 * 4 * params + 2 * 4 * n * d
    assert w["total_flops"] == (4 * nnz_x * d + 6 * n * d * c + 4 * nnz_x * c + 4 * steps * (nnz_l + n) * c
                                + 12 * params)
    # Cora's sizes: Adam's state (3 streams of 2.06 M parameters) is what the floor moves
    cora = epoch_work(2485, 1433, 7, 45487, 12623, 20)
    assert cora["parameters"] == 2064960
    assert 0.45 < cora["floor_bytes"] / cora["total_bytes"] < 0.5


@pytest.mark.parametrize("sizes", [(2485, 1433, 7, 45487, 12623, 20), (2120, 3703, 6, 67000, 9000, 10),
                                   (50, 5, 2, 60, 150, 0)])
def test_the_floor_never_exceeds_the_bound(bench, sizes):
    from _roofline import bounds, epoch_work

    w = epoch_work(*sizes)
    for bw, peak in ((1.0, 1.0), (20.0, 90.0), (100.0, 10.0)):
        r = bounds(w, bw, peak)
        assert r["time_at_bandwidth_ms"] == pytest.approx(w["total_bytes"] / bw / 1e6)
        assert r["time_at_peak_ms"] == pytest.approx(w["total_flops"] / peak / 1e6)
        assert r["floor_ms"] <= r["bound_ms"] == max(r["time_at_bandwidth_ms"], r["time_at_peak_ms"])
        assert r["floor_ms"] >= r["time_at_peak_ms"]
        faster = bounds(w, bw, peak, 2 * bw)  # a faster in-place rate: the floor's bytes take half as long
        assert faster["floor_bytes_at_bandwidth_ms"] == pytest.approx(r["floor_bytes_at_bandwidth_ms"] / 2)
        assert faster["bound_ms"] == r["bound_ms"]
        slower = bounds(w, bw, peak, bw / 2)  # a slower one: the copy's rate still bounds the floor
        assert slower["floor_bytes_at_bandwidth_ms"] == pytest.approx(r["floor_bytes_at_bandwidth_ms"])


@pytest.mark.parametrize("gather", [1.0, 50.0, 150.0, 1e6])
def test_attainable_time_counts_the_gathers_at_their_rate(bench, gather):
    from _roofline import bounds, epoch_work

    w = epoch_work(2485, 1433, 7, 45487, 12623, 20)
    assert w["gathered_bytes"] == 2 * 4 * 45487 * 1433
    bw, peak = 20.0, 90.0
    plain, r = bounds(w, bw, peak, 40.0), bounds(w, bw, peak, 40.0, gather)
    assert "attainable_ms" not in plain and {k: r[k] for k in plain} == plain  # the rest is unchanged
    products = 4 * 45487 * 1433  # flops of X W1 and Xᵀ G
    assert r["gathers_ms"] == pytest.approx(max(w["gathered_bytes"] / gather, products / peak) / 1e6)
    rest = (w["total_flops"] - products) / peak / 1e6
    assert r["attainable_ms"] == pytest.approx(max(r["gathers_ms"] + rest, r["floor_bytes_at_bandwidth_ms"]))
    assert r["attainable_ms"] >= r["floor_ms"]  # a gather never beats the matmul peak in this count
    if gather == 1e6:  # a gather faster than the peak's multiply-adds is counted at the peak: attainable = floor
        assert r["attainable_ms"] == pytest.approx(r["floor_ms"])
    if gather == 1.0:  # 1 GB/s: the 1.04 GB of gathered rows take ~1 s
        assert r["attainable_ms"] == pytest.approx(w["gathered_bytes"] / 1e6 + rest, rel=1e-9)


@pytest.mark.parametrize("bw, peak, gather", [(0.0, 10.0, None), (10.0, -1.0, None), (float("nan"), 10.0, None),
                                              (10.0, 10.0, 0.0), (10.0, 10.0, float("nan"))])
def test_bounds_refuse_limits_that_are_not_positive(bench, bw, peak, gather):
    from _roofline import bounds, epoch_work

    with pytest.raises(ValueError, match="limits must be > 0"):
        bounds(epoch_work(10, 4, 3, 20, 30, 2), bw, peak, gather_gb_s=gather)


def test_gather_rate_measures_torchs_gather_sum(bench):
    import torch
    from _roofline import gather_rate

    cols = torch.randint(0, 300, (5000,), generator=torch.Generator().manual_seed(0))
    offsets = torch.arange(0, 5000, 10)
    got = gather_rate(cols, offsets, torch.rand(5000), rows=300, width=64, repeats=5)
    assert got["width"] == 64 and got["table_kib"] == pytest.approx(300 * 64 * 4 / 1024)
    assert got["gb_s"] > 0.01  # any machine gathers 1.3 MB in far less than 0.1 s
    with pytest.raises(ValueError, match="rows, width and repeats must be >= 1, got 300, 0, 5"):
        gather_rate(cols, offsets, torch.rand(5000), rows=300, width=0, repeats=5)


def test_concurrent_bandwidth_runs_real_processes_and_leaves_none(bench):
    from _roofline import concurrent_bandwidth

    got = concurrent_bandwidth(2, copy_mib=8, seconds=0.3)
    assert got["processes"] == 2 and len(got["per_process_gb_s"]) == 2
    assert all(r > 0.1 for r in got["per_process_gb_s"])  # GB/s: any machine copies 8 MiB faster than that
    assert got["share_gb_s"] == pytest.approx(got["total_gb_s"] / 2) and got["inplace_share_gb_s"] > 0.1
    assert mp.active_children() == []
    with pytest.raises(ValueError, match="processes must be >= 1, got 0"):
        concurrent_bandwidth(0)


def test_a_streaming_process_that_dies_is_reported_as_dead(bench):
    from _roofline import concurrent_bandwidth

    # each child fails to allocate and exits with 1: reported as dead (not as the timeout, which says "within")
    with pytest.raises(RuntimeError, match=r"streaming processes died \(exit codes \[1"):
        concurrent_bandwidth(2, copy_mib=-1, timeout=600.0)
    assert mp.active_children() == []


def test_machine_limits_measure_both_streams(bench):
    from _roofline import machine_limits

    lim = machine_limits(copy_mib=8, mm=64, repeats=3)
    assert lim["bandwidth_gb_s"] > 0.1 and lim["inplace_gb_s"] > 0.1 and lim["peak_gflop_s"] > 0.01


def test_compare_ratios_at_the_roofline(bench):
    from _graph_compare import roofline_ratios
    from _roofline import bounds, epoch_work

    g = {"n": 2485, "d": 1433, "classes": 7, "nnz_x": 45487, "nnz_l": 12623}
    coin = {"graph": g, "hparams": {"layer_num": 20}, "epochs_mean": 130.0, "epoch_cpu_ms_mean": 20.0}
    gcn = {"train_cpu_s_mean": 6.5}
    limits = {"bandwidth_gb_s": 20.0, "peak_gflop_s": 90.0}
    r = roofline_ratios(coin, gcn, limits)
    roof = bounds(epoch_work(2485, 1433, 7, 45487, 12623, 20), 20.0, 90.0)
    assert r["coin_cpu_s_at_bound"] == pytest.approx(130.0 * roof["bound_ms"] / 1e3)
    assert r["coin_at_floor_over_gcn_cpu"] == pytest.approx(130.0 * roof["floor_ms"] / 1e3 / 6.5)
    assert r["coin_at_floor_over_gcn_cpu"] <= r["coin_at_bound_over_gcn_cpu"]
    assert r["coin_epoch_over_bound"] == pytest.approx(20.0 / roof["bound_ms"])


def test_goal_check_takes_the_stricter_target_against_the_attainable_time(bench):
    from _roofline import goal_check

    g = goal_check(bound_ms=5.0, attainable_ms=8.0, legacy_ms=33.0)  # 2x bound 10 ms, a third of legacy 11 ms
    assert g["two_x_bound_ms"] == pytest.approx(10.0) and g["third_of_legacy_ms"] == pytest.approx(11.0)
    assert g["target_ms"] == pytest.approx(10.0)
    assert g["target_over_attainable"] == pytest.approx(1.25)
    g = goal_check(bound_ms=5.0, attainable_ms=12.0, legacy_ms=27.0)  # a third of legacy is the stricter: 9 ms
    assert g["target_ms"] == pytest.approx(9.0) and g["target_over_attainable"] == pytest.approx(0.75)
