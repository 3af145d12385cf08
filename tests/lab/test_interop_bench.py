"""``pqike bench interop``: wire handshake times of pqike and strongSwan in the lab."""

from __future__ import annotations

import os
import struct

import pytest
from typer.testing import CliRunner

from pqike.cli import app
from pqike.interop.bench import (
    ANCHOR,
    PAIRS,
    PairResult,
    bench_interop,
    goal_for,
    wire_handshakes,
)
from pqike.interop.lab import Datagram, strongswan_version
from pqike.interop.peer import lab_unavailable

IKE_SA_INIT, IKE_AUTH, INFORMATIONAL, IKE_INTERMEDIATE = 34, 35, 37, 43


def datagram(when: float, spi_i: bytes, exchange: int, *, response: bool) -> Datagram:
    """A port-500 datagram holding an IKE header (RFC 7296 3.1) and some body."""
    flags = (0x20 if response else 0) | (0 if response else 0x08)
    header = spi_i + bytes(8) + bytes([33, 0x20, exchange, flags]) + struct.pack("!II", 0, 60)
    return Datagram(when, "192.0.2.1", 500, "192.0.2.2", 500, header + bytes(32))


def test_a_handshake_is_timed_from_its_first_ike_sa_init_to_its_last_ike_auth_datagram():
    a, b, c = b"A" * 8, b"B" * 8, b"C" * 8
    captured = [
        datagram(10.000, a, IKE_SA_INIT, response=False),
        datagram(10.001, a, IKE_SA_INIT, response=True),
        datagram(10.002, a, IKE_INTERMEDIATE, response=False),
        datagram(10.003, a, IKE_INTERMEDIATE, response=True),
        datagram(10.004, a, IKE_AUTH, response=False),
        # the second handshake overlaps the first one
        datagram(10.0045, b, IKE_SA_INIT, response=False),
        datagram(10.005, a, IKE_AUTH, response=True),
        datagram(10.006, a, IKE_AUTH, response=True),  # its second fragment
        datagram(10.007, a, INFORMATIONAL, response=False),  # the delete: not the handshake
        datagram(10.008, b, IKE_SA_INIT, response=True),
        datagram(10.009, b, IKE_AUTH, response=False),
        datagram(10.0105, b, IKE_AUTH, response=True),
        # never answered: left out
        datagram(10.020, c, IKE_SA_INIT, response=False),
        datagram(10.021, c, IKE_SA_INIT, response=True),
        datagram(10.022, c, IKE_AUTH, response=False),
    ]

    first, second = wire_handshakes(captured)

    assert (first.spi_i, second.spi_i) == (a, b)
    assert first.seconds == pytest.approx(0.006)
    assert second.seconds == pytest.approx(0.006)
    assert (first.datagrams, second.datagrams) == (7, 4)
    # Whose turn each gap was: the responder's (r) before a response, else the initiator's.
    assert [who for who, _ in first.steps] == ["r", "i", "r", "i", "r", "r"]
    assert [who for who, _ in second.steps] == ["r", "i", "r"]
    assert [round(sec * 1e4) for _, sec in second.steps] == [35, 10, 15]


def test_a_pair_reports_the_median_of_each_step_when_the_handshakes_look_alike():
    a, b = b"A" * 8, b"B" * 8
    captured = []
    for spi, start, turn in ((a, 1.0, 0.002), (b, 2.0, 0.004)):
        captured += [
            datagram(start, spi, IKE_SA_INIT, response=False),
            datagram(start + turn, spi, IKE_SA_INIT, response=True),
            datagram(start + 0.010, spi, IKE_AUTH, response=False),
            datagram(start + 0.011, spi, IKE_AUTH, response=True),
        ]

    pair = PairResult.of("pqike -> pqike", wire_handshakes(captured))

    assert pair.median == pytest.approx(0.011)
    assert pair.datagrams == 4
    assert [who for who, _ in pair.steps] == ["r", "i", "r"]
    assert [round(sec * 1e3, 3) for _, sec in pair.steps] == [3.0, 7.0, 1.0]


def test_datagrams_without_their_ike_sa_init_in_the_capture_are_not_a_handshake():
    spi = b"D" * 8
    assert wire_handshakes([datagram(1.0, spi, IKE_AUTH, response=True)]) == []


def test_the_goal_is_half_of_strongswan_with_ml_kem_and_even_without():
    assert goal_for("aes256gcm16-prfsha384-x25519-ke1_mlkem768") == 0.5
    assert goal_for("aes256gcm16-prfsha384-x25519") == 1.0


def test_bench_interop_without_root_says_it_needs_the_lab(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)

    out = CliRunner().invoke(app, ["bench", "interop", "--runs", "1"])

    assert out.exit_code == 2
    assert "pqike bench interop needs the lab: the interop lab needs root" in out.output


def test_bench_interop_refuses_an_unknown_proposal_before_touching_the_lab():
    out = CliRunner().invoke(app, ["bench", "interop", "-p", "aes999-prfsha256-x25519"])

    assert out.exit_code == 2
    assert "aes999" in out.output


@pytest.mark.interop
@pytest.mark.skipif(lab_unavailable() is not None, reason=str(lab_unavailable()))
def test_every_pair_is_timed_on_the_wire_against_strongswan_to_strongswan():
    proposal = "aes256gcm16-prfsha384-x25519"

    report = bench_interop([proposal], runs=3)

    pairs = report.results[proposal]
    assert [p.name for p in pairs] == [name for name, _, _ in PAIRS]
    for pair in pairs:
        assert len(pair.seconds) == 3
        # Two round trips on a veth link take well under a second, and more than nothing.
        assert all(0 < s < 1 for s in pair.seconds)
        assert pair.datagrams == 4  # IKE_SA_INIT and IKE_AUTH, both ways
    assert report.ratio(proposal, ANCHOR) == 1.0
    pq = next(p for p in pairs if p.name == "pqike -> pqike")
    assert report.ratio(proposal, "pqike -> pqike") == pq.median / pairs[0].median
    text = report.format()
    assert report.strongswan == f"strongSwan {strongswan_version()}"
    assert "pqike -> pqike" in text and "(goal <= 1.0)" in text  # x25519 alone
    cold = next(p for p in pairs if p.name == "pqike (cold) -> pqike")
    assert "(a new process per handshake)" in text and cold.datagrams == 4
    assert [who for who, _ in pq.steps] == ["r", "i", "r"]
