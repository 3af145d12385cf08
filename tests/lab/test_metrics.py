"""Statistics of the summary: Student's t quantiles and the described columns."""

from __future__ import annotations

import math

import pytest

from pqike.lab.metrics import describe, t_quantile


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
