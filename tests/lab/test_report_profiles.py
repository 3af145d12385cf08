"""Every profile in every section of the report, also without a loss-free profile.

Runs the two small specs in ``tests/data/experiments/`` (in memory, a few seconds) and
reads the report they produce.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pqike.lab import load_spec, run_experiment

SPECS = Path(__file__).resolve().parents[1] / "data" / "experiments"
# The sections about profiles; the header and Method are about the run.
SECTIONS = (
    "Findings",
    "Configurations",
    "Bytes per exchange",
    "Cost of each added round",
    "Where fragmentation starts",
    "Retransmissions under loss and jitter",
    "Latency",
    "Overhead relative to x25519",
)


def sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## ", text, flags=re.M)[1:]
    return {part.split("\n", 1)[0]: part for part in parts}


def run(name: str, tmp_path_factory):
    spec = load_spec(SPECS / f"{name}.toml")
    out = tmp_path_factory.mktemp(name)
    result = run_experiment(spec, out)
    return spec, result.report.read_text(), out


@pytest.fixture(scope="module")
def lossy(tmp_path_factory):
    return run("lossy-only", tmp_path_factory)


@pytest.fixture(scope="module")
def jitter(tmp_path_factory):
    return run("jitter", tmp_path_factory)


@pytest.fixture(params=["lossy", "jitter"])
def report(request):
    return request.getfixturevalue(request.param)


def test_every_profile_is_in_every_section(report):
    spec, text, _ = report
    found = sections(text)
    assert set(SECTIONS) <= set(found), sorted(found)
    for section in SECTIONS:
        for profile in spec.profiles:
            assert f"`{profile.name}`" in found[section], (section, profile.name)


def test_every_profile_has_mean_interval_p95_and_retransmissions(report):
    spec, text, _ = report
    findings = sections(text)["Findings"]
    for profile in spec.profiles:
        line = next(li for li in findings.splitlines() if li.startswith(f"  - `{profile.name}`"))
        assert re.search(r"\d ms \[[-\d.]+ m?s, [-\d.]+ m?s\] \(median ", line), line
        assert "p95 " in line and "with a retransmission" in line
        assert "**outside the noise**" in line or "**within the noise**" in line
        latency = [
            li
            for li in sections(text)["Latency"].splitlines()
            if li.startswith(f"| `{profile.name}`")
        ]
        assert len(latency) == len(spec.proposals)


def test_the_report_says_which_reference_it_uses_and_why(report):
    spec, text, _ = report
    if spec.name == "lossy-only":
        assert (
            "Reference profile for byte counts: `lossy_delay5` (5 ms one-way delay, 2 % loss, "
            "MTU 1500, fragment size 1280), chosen as the least impaired profile" in text
        )
        assert "because no profile is free of loss and jitter" in text
    else:
        assert "Reference profile for byte counts: `wan_jitter0`" in text
        assert "chosen as the loss- and jitter-free profile with the smallest one-way delay" in text


def test_the_lossy_profiles_get_their_plots_and_the_retransmission_tail(lossy):
    _, text, out = lossy
    assert (out / "latency_vs_delay.png").exists() and "](latency_vs_delay.png)" in text
    assert (out / "overhead_vs_baseline.png").exists()
    # At 2 % loss some handshakes wait 4 s for a retransmission: the p95 shows it, the
    # median does not.
    retrans = sections(text)["Retransmissions under loss and jitter"]
    rows = [li.split(" | ") for li in retrans.splitlines() if li.startswith("| `lossy_delay50`")]
    assert len(rows) == 2
    assert all(row[-1].endswith(" s |") for row in rows)  # p95 in seconds
    assert all(row[-2].endswith(" ms") for row in rows)  # median in milliseconds
    assert "established (loss-free profiles)" not in text
