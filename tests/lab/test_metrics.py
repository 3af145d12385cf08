"""Statistics of the summary: Student's t quantiles and the described columns."""

from __future__ import annotations

import math

import pytest

from pqike.lab.metrics import bootstrap_interval, describe, outside_noise, t_quantile


@pytest.mark.parametrize(
    ("df", "expected"),
    # Two-sided 95 % critical values from any t table.
    [(1, 12.706), (2, 4.303), (3, 3.182), (5, 2.571), (10, 2.228), (30, 2.042), (120, 1.980)],
)
def test_t_quantiles_match_the_table(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-3)


def test_large_samples_approach_the_normal_quantile():
    assert t_quantile(0.975, 10_000) == pytest.approx(1.95996, abs=1e-4)


def test_describe_gives_mean_interval_and_percentiles():
    d = describe([1, 2, 3, 4, 5])
    assert d["n"] == 5
    assert d["mean"] == 3
    half = 2.776445 * math.sqrt(2.5) / math.sqrt(5)
    assert d["ci95_low"] == pytest.approx(3 - half)
    assert d["ci95_high"] == pytest.approx(3 + half)
    assert (d["median"], d["p5"], d["p95"], d["min"], d["max"]) == (3, 1.2, 4.8, 1, 5)


def test_describe_skips_missing_values_and_handles_tiny_samples():
    assert describe([])["n"] == 0
    one = describe([float("nan"), 2.0])
    assert one["n"] == 1 and one["mean"] == 2.0 and math.isnan(one["ci95_low"])


def test_a_clear_difference_is_outside_the_noise_and_the_interval_holds_it():
    slow = [10.0 + (i % 5) * 0.1 for i in range(40)]
    fast = [5.0 + (i % 5) * 0.1 for i in range(40)]
    diff = bootstrap_interval(slow, fast)
    assert diff[0] == pytest.approx(5.0)
    assert diff[1] <= 5.0 <= diff[2] and diff[2] - diff[1] < 0.2
    assert outside_noise(diff)
    ratio = bootstrap_interval(slow, fast, ratio=True)
    assert ratio[0] == pytest.approx(10.2 / 5.2) and outside_noise(ratio, ratio=True)


def test_noise_alone_is_not_a_difference_and_the_interval_is_repeatable():
    # The same long-tailed sample twice, shuffled: the means are equal.
    tail = [0.03] * 45 + [4.03, 11.2, 0.03, 24.0, 0.03]
    other = list(reversed(tail))
    diff = bootstrap_interval(tail, other)
    assert diff[0] == pytest.approx(0.0, abs=1e-12)
    assert diff[1] < 0 < diff[2]
    assert not outside_noise(diff)
    assert bootstrap_interval(tail, other) == diff
    assert math.isnan(bootstrap_interval([], other)[0])
