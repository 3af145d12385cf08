"""The ``strongswan-ikev1`` pair for real: two charons in IKEv1, beside IKEv2's ``strongswan``.

One handshake in each IKEv1 mode and one in IKEv2, each followed by a Child SA rekey
(``phases = ["child"]``), through the runner as ``experiments/ikev1-vs-ikev2.toml`` does:
main mode 6 + quick mode 3 messages, aggressive mode 3 + quick mode 3, IKEv2 2 + 2; the
rekey is quick mode's 3 messages against CREATE_CHILD_SA's 2; every captured size equals
charon's own log. Needs root and network namespaces; a missing strongSwan build is
installed (interop/install-strongswan.sh), as in tests/interop.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from pqike.interop.lab import ensure_strongswan
from pqike.lab import parse_spec, run_experiment
from pqike.lab.registry import default_pairs
from pqike.lab.strongswan_pairs import strongswan_pairs

from .strongswan_lab import MARKS

pytestmark = MARKS

SPEC = """
[experiment]
seed = 3
repetitions = 1
pairs = ["strongswan-ikev1", "strongswan"]
esp = "aes256gcm16-x25519"
phases = ["child"]
retransmit_timeout_s = 2.0
retransmit_tries = 3
max_time_s = 30

[proposals]
main = { ike = "aes256-sha384-x25519", ikev1_mode = "main" }
aggressive = { ike = "aes256-sha384-x25519", ikev1_mode = "aggressive" }
ikev2 = "aes256-sha384-x25519"

[profiles.lan]
delay_ms = 5
"""
PREFIX = f"pqxv{os.getpid()}"


@pytest.fixture(scope="module")
def result():
    ensure_strongswan(install=True)
    pairs = {**default_pairs(), **strongswan_pairs(prefix=PREFIX)}
    return run_experiment(parse_spec(SPEC, source="test-ikev1.toml"), pairs=pairs)


def counts(result, proposal: str, phase: str) -> dict[str, int]:
    m = result.messages
    m = m[(m["proposal"] == proposal) & (m["phase"] == phase) & ~m["retransmission"]]
    return m.groupby("exchange").size().to_dict()


def test_every_handshake_and_rekey_succeeds(result):
    hs = result.handshakes.set_index("proposal")
    assert hs["established"].all(), hs["failure"].to_dict()
    assert list(hs["pair"]) == ["strongswan-ikev1", "strongswan-ikev1", "strongswan"]
    ph = result.phases
    assert ph[ph["phase"] == "child"]["ok"].all(), ph["failure"].tolist()


def test_the_isakmp_sa_uses_the_nearest_algorithms_ikev1_has(result):
    hs = result.handshakes.set_index("proposal")
    for mode in ("main", "aggressive"):
        assert hs.loc[mode, "negotiated"] == "AES_CBC_256/HMAC_SHA2_384/CURVE_25519/PSK"
    assert "x25519" in hs.loc["ikev2", "negotiated"].lower()


def test_message_counts_per_exchange(result):
    assert counts(result, "main", "handshake") == {"MAIN_MODE": 6, "QUICK_MODE": 3}
    assert counts(result, "aggressive", "handshake") == {"AGGRESSIVE_MODE": 3, "QUICK_MODE": 3}
    assert counts(result, "ikev2", "handshake") == {"IKE_SA_INIT": 2, "IKE_AUTH": 2}
    # The rekey: quick mode's three messages against CREATE_CHILD_SA's two (IKEv2 then
    # deletes the old Child SA; strongSwan's IKEv1 lets it expire).
    assert counts(result, "main", "child") == {"QUICK_MODE": 3}
    assert counts(result, "aggressive", "child") == {"QUICK_MODE": 3}
    ikev2 = counts(result, "ikev2", "child")
    assert ikev2["CREATE_CHILD_SA"] == 2
    assert set(ikev2) <= {"CREATE_CHILD_SA", "INFORMATIONAL"}


def test_round_trips_and_requests(result):
    hs = result.handshakes.set_index("proposal")
    assert hs.loc["main", "round_trips"] == 4  # 3 main mode + 1 quick mode
    assert hs.loc["aggressive", "round_trips"] == 2
    assert hs.loc["ikev2", "round_trips"] == 2
    ph = result.phases.set_index(["proposal", "phase"])
    assert ph.loc[("main", "child"), "round_trips"] == 1
    assert ph.loc[("main", "child"), "requests"] == 2  # the third message answers nothing
    assert ph.loc[("ikev2", "child"), "messages"] == 4


def test_time_runs_to_the_third_quick_mode_message(result):
    hs = result.handshakes.set_index("proposal")
    m = result.messages
    for proposal in ("main", "aggressive"):
        mine = m[(m["proposal"] == proposal) & (m["phase"] == "handshake")]
        third = mine[(mine["exchange"] == "QUICK_MODE") & (mine["sender"] == "initiator")]
        assert hs.loc[proposal, "time_to_established_s"] == pytest.approx(
            third["sent_s"].iloc[-1], abs=1e-6
        )
    # 5 ms each way: main + quick mode waits for four answers, IKEv2 for two.
    assert hs.loc["main", "time_to_established_s"] >= 4 * 0.010
    assert hs.loc["ikev2", "time_to_established_s"] >= 2 * 0.010


def test_captured_sizes_equal_charons_logs(result):
    d = result.datagrams
    ikev1 = d[d["pair"] == "strongswan-ikev1"]
    for column in ("initiator_log_bytes", "responder_log_bytes"):
        logged = ikev1[ikev1[column].notna()]
        assert len(logged) == len(ikev1)
        assert (logged[column].astype(int) == logged["ike_bytes"]).all()


def test_the_pairs_leave_nothing_behind(result):
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [line for line in listing.splitlines() if line.startswith(PREFIX + "-")]
