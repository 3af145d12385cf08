"""How the strongSwan pairs measure a handshake, without daemons or root.

The relay's log of a handshake is replayed from the strongSwan reference capture
(tests/data/strongswan): the datagrams wrapped in IPv4/UDP headers as the TUN devices
see them, with send and delivery times. Sizes at every level, fragments, the time to
established and the match with charon's own log come out as the real run would give.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import struct
from pathlib import Path

import pytest

from pqike.lab.strongswan_pairs import (
    _match_in_order,
    _measured_run,
    logged_packets,
    strongswan_pairs,
)
from pqike.lab.tun_relay import TunRecord

DATA = Path(__file__).resolve().parents[1] / "data" / "strongswan"
ADDRESS = {"initiator": "192.0.2.1", "responder": "192.0.2.2"}


def ipv4_udp(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        0,
        0x4000,
        64,
        17,
        0,
        ipaddress.ip_address(src).packed,
        ipaddress.ip_address(dst).packed,
    )
    return header + udp


def replayed_records(lost: int | None = None) -> list[TunRecord]:
    """The reference handshake as the relay logs it: 1 ms between sends, 0.2 ms transit."""
    records = []
    for n, f in enumerate(sorted(DATA.glob("0*.hex"))):
        sender = "initiator" if "-i-" in f.name else "responder"
        other = "responder" if sender == "initiator" else "initiator"
        payload = bytes.fromhex(f.read_text().strip())
        port = 4500 if payload[:4] == b"\0\0\0\0" else 500
        packet = ipv4_udp(ADDRESS[sender], port, ADDRESS[other], port, payload)
        direction = "forward" if sender == "initiator" else "backward"
        sent = 10.0 + n * 0.001
        fate, delivered = ("lost", None) if n == lost else ("delivered", sent + 0.0002)
        records.append(TunRecord(direction, sent, fate, delivered, packet))
    return records


def measure(records, logs):
    return _measured_run(
        records,
        keys=None,
        logs=logs,
        established=True,
        failure=None,
        elapsed=1.0,
        cpu_initiator=None,
        cpu_responder=None,
        ipv6=False,
        record_payloads=False,
    )


def test_the_relay_log_gives_every_size_level_and_the_time_to_established():
    run = measure(replayed_records(), {})

    trace = run.trace
    assert trace.sequence() == "s248 r281 s1252 s70 r1157 s345 r265"
    assert [d.ike_bytes for d in trace.datagrams] == [248, 281, 1248, 66, 1153, 341, 261]
    # IP = UDP payload + 8 (UDP) + 20 (IPv4): read from the packets themselves.
    assert [d.ip_bytes - d.udp_bytes for d in trace.datagrams] == [28] * 7
    assert [m.exchange for m in trace.messages] == [
        "IKE_SA_INIT",
        "IKE_SA_INIT",
        "IKE_INTERMEDIATE",
        "IKE_INTERMEDIATE",
        "IKE_AUTH",
        "IKE_AUTH",
    ]
    assert trace.messages[2].fragments == 2 and trace.messages[2].datagrams == 2
    assert [d.fragment for d in trace.datagrams[2:4]] == [1, 2]
    assert trace.totals()["round_trips"] == 3
    # First IKE_SA_INIT sent at 10.000 s, last IKE_AUTH response delivered at 10.0062 s.
    assert abs(run.wall - 0.0062) < 1e-9
    assert run.negotiated == "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
    assert [f.fate for f in run.fates] == ["delivered"] * 7


def test_each_datagram_is_matched_with_charons_log_of_it():
    logs = {"left": (DATA / "left.log").read_text(), "right": (DATA / "right.log").read_text()}

    run = measure(replayed_records(), logs)

    sizes = [d.ike_bytes for d in run.trace.datagrams]
    assert run.datagram_columns == {"initiator_log_bytes": sizes, "responder_log_bytes": sizes}


def test_a_datagram_the_link_lost_was_never_logged_as_received():
    # The responder's IKE_INTERMEDIATE response (the fifth datagram) is lost; the
    # initiator's log (of the real run, where it arrived) has one received line too many.
    logs = {"left": (DATA / "left.log").read_text()}

    run = measure(replayed_records(lost=4), logs)

    column = run.datagram_columns["initiator_log_bytes"]
    assert column[4] is None
    assert column[:4] == [248, 281, 1248, 66]


def test_logged_packets_reads_charons_net_lines():
    packets = logged_packets((DATA / "left.log").read_text())

    assert packets == {"sending": [248, 1248, 66, 341], "received": [281, 1153, 261]}


def test_log_lines_of_datagrams_that_arrived_together_may_swap():
    wanted = [(5, 1248), (6, 450), (7, 1153)]

    assert _match_in_order(wanted, [450, 1248, 1153]) == {5: 1248, 6: 450, 7: 1153}
    # A size nobody logged is matched with the next line, so it shows as a mismatch.
    assert _match_in_order([(0, 100), (1, 200)], [101, 200]) == {0: 101, 1: 200}


def test_without_root_the_strongswan_pairs_say_why(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)

    for pair in strongswan_pairs().values():
        assert pair.unavailable_reason() == (
            "it needs root (network namespaces, TUN devices, ports 500/4500)"
        )


@pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 is not installed")
def test_without_a_strongswan_build_the_pairs_name_the_installer(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("PQIKE_STRONGSWAN_CACHE", str(tmp_path))
    pairs = strongswan_pairs()

    for name in ("pqike-strongswan", "strongswan-pqike", "strongswan"):
        reason = pairs[name].unavailable_reason()
        assert reason.startswith(f"strongSwan is not installed in {tmp_path / 'install'}")
        assert reason.endswith("install-strongswan.sh")
    # Nothing was built behind our back.
    assert list(tmp_path.iterdir()) == []


IKEV1_CAPTURE = Path(__file__).resolve().parents[1] / "data" / "ikev1" / "capture.json"


def test_an_ikev1_handshake_ends_at_the_third_quick_mode_message_not_a_resent_proposal():
    # Aggressive mode's three messages, then quick mode's proposal, which charon sends
    # again 2 s later (the responder ignored it: phase 1 still incomplete there), then
    # the answer and the third message. The handshake ends at that third message.
    import json

    from pqike.lab.strongswan_pairs import _measured_ikev1_run

    capture = json.loads(IKEV1_CAPTURE.read_text())["handshakes"]["aggressive"][:6]
    am1, am2, am3, qm1, qm2, qm3 = capture
    sends = [(am1, 0.0), (am2, 0.001), (am3, 0.002), (qm1, 0.003), (qm1, 2.003)]
    sends += [(qm2, 2.004), (qm3, 2.005)]
    records = []
    for message, at in sends:
        sender = message["sender"]
        other = "responder" if sender == "initiator" else "initiator"
        packet = ipv4_udp(
            ADDRESS[sender], 500, ADDRESS[other], 500, bytes.fromhex(message["udp_payload"])
        )
        direction = "forward" if sender == "initiator" else "backward"
        records.append(TunRecord(direction, 10.0 + at, "delivered", 10.0 + at + 0.0002, packet))
    run = _measured_ikev1_run(
        records,
        logs={},
        established=True,
        failure=None,
        elapsed=9.0,
        ipv6=False,
        record_payloads=False,
    )
    assert [d.retransmission for d in run.trace.datagrams] == [False] * 4 + [True, False, False]
    assert abs(run.wall - 2.005) < 1e-9
