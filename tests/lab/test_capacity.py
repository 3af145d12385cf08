"""``pqike bench capacity``: pqike respond and charon under the same load, in the lab."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from pqike.cli import app
from pqike.interop.capacity import CAVEATS, bench_capacity
from pqike.interop.peer import lab_unavailable


def test_bench_capacity_without_root_says_it_needs_the_lab(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)

    out = CliRunner().invoke(app, ["bench", "capacity", "--seconds", "1"])

    assert out.exit_code == 2
    assert "pqike bench capacity needs the lab: the interop lab needs root" in out.output


@pytest.mark.interop
@pytest.mark.skipif(lab_unavailable() is not None, reason=str(lab_unavailable()))
def test_both_responders_complete_handshakes_under_the_same_load():
    proposal = "aes256gcm16-prfsha384-x25519"

    report = bench_capacity([proposal], concurrency=4, seconds=1.0, warmup=0.5)

    results = report.results[proposal]
    assert [r.responder for r in results] == ["strongSwan", "pqike"]
    for r in results:
        assert r.failed == 0
        assert r.handshakes > 10  # even a loaded machine does more than 10 a second
        # A handshake costs a responder more than nothing and less than 50 ms of CPU.
        assert 0 < r.cpu_per_handshake < 0.05
    assert report.ratio(proposal) == results[1].rate / results[0].rate
    text = report.format()
    assert "pqike / charon handshakes per second" in text
    assert all(c in text for c in CAVEATS)
