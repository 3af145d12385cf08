"""Published tables reproduced: the paquin-tls grid and the strongswan-netem scenarios.

The comparisons are computed from the experiment's own tables; the published numbers
come from ``pqike.lab.published``. The committed results must be what the code gives.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pqike.errors import ConfigurationError
from pqike.lab import build_report, load_spec, parse_spec, run_experiment
from pqike.lab.published import (
    NETEM_SCENARIOS,
    PAQUIN_LOSS_PCT,
    PAQUIN_RTT_MS,
    PAQUIN_TLS,
    SOURCES,
)
from pqike.lab.reproductions import (
    COMPARISONS,
    GRID_PLOTS,
    LOSS_GRID,
    loss_grid,
    paquin_comparison,
    quantile_failures_last,
    scenario_comparison,
    scenario_table,
)

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "experiments"


@pytest.fixture(scope="module")
def paquin(tmp_path_factory):
    out = tmp_path_factory.mktemp("paquin") / "out"
    run_experiment(DATA / "paquin-mini.toml", out)
    return out


@pytest.fixture(scope="module")
def netem(tmp_path_factory):
    out = tmp_path_factory.mktemp("netem") / "out"
    run_experiment(DATA / "netem-mini.toml", out)
    return out


def test_every_source_has_a_comparison_writer():
    assert set(COMPARISONS) == set(SOURCES)


def test_quantiles_without_failures_are_numpys():
    times = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0]
    for q in (0.5, 0.95, 0.0, 1.0):
        expected = float(np.percentile(times, 100 * q))
        assert quantile_failures_last(times, [False] * len(times), q) == pytest.approx(expected)


def test_a_quantile_that_falls_on_a_failure_is_infinite():
    times = [1.0] * 18 + [0.0, 0.0]
    failed = [False] * 18 + [True, True]
    # 18 of 20 established: the median is theirs, the p95 lands among the failures.
    assert quantile_failures_last(times, failed, 0.5) == 1.0
    assert math.isinf(quantile_failures_last(times, failed, 0.95))
    # One failure in 100: the p95 still falls on established handshakes.
    # (rank 0.95 * 99 = 94.05, between the established 94 and 95).
    assert quantile_failures_last(list(range(100)), [False] * 99 + [True], 0.95) == (
        pytest.approx(94.05)
    )
    with pytest.raises(ValueError):
        quantile_failures_last([1.0], [False], 1.5)


def test_published_must_name_a_known_source():
    text = (DATA / "paquin-mini.toml").read_text()
    assert parse_spec(text).published == "paquin-tls"
    with pytest.raises(ConfigurationError) as err:
        parse_spec(text.replace('"paquin-tls"', '"someone-else"'), source="x.toml")
    assert err.value.field == "experiment.published"
    assert str(err.value).startswith("x.toml: experiment.published: must be one of paquin-tls")


def test_the_grid_spec_is_the_papers_grid():
    spec = load_spec(ROOT / "experiments" / "paquin-grid.toml")
    assert spec.published == "paquin-tls"
    delays = sorted({p.delay_ms for p in spec.profiles})
    losses = sorted({p.loss for p in spec.profiles})
    assert delays == sorted(PAQUIN_RTT_MS)
    assert losses == sorted(PAQUIN_LOSS_PCT)
    assert len(losses) == 25
    assert {p.bandwidth_kbps for p in spec.profiles} == {1_000_000}
    assert not spec.record_datagrams and not spec.record_messages
    names = {p.name for p in spec.proposals}
    assert {p.proposal for p in PAQUIN_TLS if p.proposal} <= names


def test_paquin_report_sets_the_papers_numbers_beside_the_grid(paquin):
    report = (paquin / "report.md").read_text()
    published = (paquin / "published.md").read_text()
    assert "## Beside the published numbers: Paquin, Stebila, Tamvada (TLS)" in report
    assert published.splitlines()[0] in report.replace("## Beside", "# Beside")
    assert "Paquin, Douglas Stebila, Goutam Tamvada" in published
    for name in (LOSS_GRID, *GRID_PLOTS.values()):
        assert (paquin / name).stat().st_size > 0
    assert not (paquin / "messages.csv").exists()
    grid = pd.read_csv(paquin / LOSS_GRID)
    hs = pd.read_csv(paquin / "handshakes.csv")
    for p in PAQUIN_TLS:
        theirs = f"| {p.scheme} | {p.loss_pct:g} % | {p.median_ms:,.1f} / {p.p95_ms:,.1f} |"
        assert theirs in published
        if p.proposal is None:
            continue
        row = grid[(grid["proposal"] == p.proposal) & (grid["loss_pct"] == p.loss_pct)].iloc[0]
        times = hs[(hs["proposal"] == p.proposal) & (hs["loss_pct"] == p.loss_pct)]
        # Everything established in this small run: the median is the table's median.
        assert times["established"].all()
        assert row["median_ms"] == pytest.approx(times["time_to_established_s"].median() * 1000)
        assert f"| `{p.proposal}` | {row['median_ms']:,.1f} / " in published


def test_paquin_comparison_rebuilds_from_the_grid_table_alone(paquin, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("run.json", LOSS_GRID):
        (copy / name).write_bytes((paquin / name).read_bytes())
    assert paquin_comparison(copy) == (paquin / "published.md").read_text()
    # And it follows the table: another median, another comparison.
    grid = pd.read_csv(copy / LOSS_GRID)
    grid.loc[0, "median_ms"] += 1000
    grid.to_csv(copy / LOSS_GRID, index=False)
    assert paquin_comparison(copy) != (paquin / "published.md").read_text()


def test_report_without_handshakes_rebuilds_the_comparison_alone(paquin, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in paquin.iterdir():
        if path.name != "handshakes.csv" and path.is_file():
            copy.joinpath(path.name).write_bytes(path.read_bytes())
    grid = pd.read_csv(copy / LOSS_GRID)
    grid.loc[0, "median_ms"] += 1000
    grid.to_csv(copy / LOSS_GRID, index=False)
    report = build_report(copy).read_text()
    before = (paquin / "report.md").read_text()
    head = before.split("\n## Beside the published numbers", 1)[0].rstrip("\n")
    # The general sections stay as they were; the comparison follows the grid table.
    assert report.startswith(head + "\n\n## Beside the published numbers")
    assert report.count("## Beside the published numbers") == 1
    assert report != before
    assert report.endswith(
        re.sub(r"^#", "##", (copy / "published.md").read_text(), flags=re.MULTILINE)
    )


def test_scenario_table_splits_first_try_retransmitted_and_failed(netem):
    hs = pd.read_csv(netem / "handshakes.csv")
    table = scenario_table(hs)
    assert list(table["profile"]) == ["clean", "loss_loss30"]
    for _, row in table.iterrows():
        cell = hs[hs["profile"] == row["profile"]]
        first = cell["established"] & (cell["retransmissions"] == 0)
        assert row["first_try_share"] == first.mean()
        assert row["failed_share"] == (~cell["established"]).mean()
        total = row["first_try_share"] + row["retransmitted_share"] + row["failed_share"]
        assert total == pytest.approx(1.0)
    lossy = table.set_index("profile").loc["loss_loss30"]
    assert lossy["retransmitted_share"] > 0  # 30 % loss each way: some retries in 20


def test_scenario_report_names_the_source_and_its_numbers(netem):
    report = (netem / "report.md").read_text()
    published = (netem / "published.md").read_text()
    assert published == scenario_comparison(netem)
    assert "## Beside the published numbers: a strongSwan 6.0.1 netem study" in report
    clean = next(s for s in NETEM_SCENARIOS if s.name == "clean")
    assert f"clean: {clean.time_ms:,.1f} ms" in published
    assert "30 % loss: 95 % established eventually; retransmitted: 14,277 ms" in published
    assert "failed within 30 s" in published


COMMITTED = {
    "paquin-grid": paquin_comparison,
    "strongswan-scenarios": scenario_comparison,
}


@pytest.mark.parametrize("name", sorted(COMMITTED))
def test_committed_comparisons_are_what_the_committed_tables_give(name, tmp_path):
    results = ROOT / "results" / name
    # Written to a copy: loss_grid.csv is rewritten when handshakes.csv is there. The
    # grid's (compressed) handshakes table stays behind: its committed comparison comes
    # from loss_grid.csv, which test_the_grid_summary_is_what_its_handshakes_give checks.
    copy = tmp_path / name
    copy.mkdir()
    for path in results.iterdir():
        if name == "paquin-grid" and path.name.startswith("handshakes.csv"):
            continue
        if path.suffix in (".csv", ".json", ".toml"):
            copy.joinpath(path.name).write_bytes(path.read_bytes())
    assert COMMITTED[name](copy) == (results / "published.md").read_text()


def test_the_grid_summary_is_what_its_handshakes_give():
    # The committed loss_grid.csv (what the comparison and its plots read) is the
    # committed per-handshake table reduced, not a table of its own.
    results = ROOT / "results" / "paquin-grid"
    handshakes = pd.read_csv(results / "handshakes.csv.gz")
    assert len(handshakes) == 600_000
    pd.testing.assert_frame_equal(
        loss_grid(handshakes), pd.read_csv(results / "loss_grid.csv"), check_dtype=False
    )
