"""``_report.median_round_ratio``, the solver / euler ratio of ``bench_constant_noise`` (issue 12.4) and the
speed-ups of ``bench_coin_epoch``: the median over rounds of the two times taken in the same round. A host whose
speed drifts between rounds must not move it, where a ratio of the two medians moves."""

from __future__ import annotations

import pytest


def test_a_drift_between_rounds_cancels(bench):
    from _report import median_round_ratio

    base = [1.0, 1.0, 3.0, 3.0, 3.0]  # the host slows down threefold after two rounds
    times = [1.8 * b for b in base]
    assert median_round_ratio(times, base) == pytest.approx(1.8, rel=1e-12)
    # the slow-down reaches the solver one round before euler (round 2): the ratio of the medians reads 5.4, the
    # median of the per-round ratios the real 1.8 of four rounds out of five
    shifted = [1.8, 1.8, 5.4, 5.4, 5.4]
    skewed = [1.0, 1.0, 1.0, 3.0, 3.0]
    assert median_round_ratio(shifted, skewed) == pytest.approx(1.8, rel=1e-12)
    assert sorted(shifted)[2] / sorted(skewed)[2] == pytest.approx(5.4)


@pytest.mark.parametrize("times, base", [([1.0, 2.0], [1.0]), ([], [])])
def test_rounds_must_pair_up(bench, times, base):
    from _report import median_round_ratio

    with pytest.raises(ValueError, match="same positive number of rounds"):
        median_round_ratio(times, base)
