"""The ``udp`` peer pair: two pqike endpoints over loopback UDP through the relay."""

from __future__ import annotations

import pytest

from pqike.lab import HandshakeCase, MemoryPair, NetworkProfile, ProposalSpec
from pqike.lab.udp_pair import UdpPair

HYBRID = ProposalSpec("hybrid", "aes256gcm16-prfsha384-x25519-ke1_mlkem768", "aes256gcm16")


def test_a_real_handshake_takes_the_delay_and_matches_the_simulated_bytes():
    case = HandshakeCase(HYBRID, NetworkProfile("wan", delay_ms=20), seed=1)
    udp = UdpPair().run(case)
    assert udp.established, udp.failure
    assert udp.negotiated == HYBRID.ike
    assert not udp.simulated and udp.sim_time is None
    # Three round trips at 20 ms one-way: at least 120 ms of wall-clock time.
    assert 0.12 <= udp.wall < 1.0
    assert udp.cpu_initiator > 0 and udp.cpu_responder > 0
    assert [f.fate for f in udp.fates] == ["delivered"] * len(udp.trace.datagrams)
    memory = MemoryPair().run(case)
    # Same messages; over ports other than 500 every datagram carries the 4-byte
    # non-ESP marker (RFC 3948 2.2).
    assert [m.exchange for m in udp.trace.messages] == [m.exchange for m in memory.trace.messages]
    assert [d.udp_bytes for d in udp.trace.datagrams] == [
        d.udp_bytes + 4 for d in memory.trace.datagrams
    ]


def test_a_datagram_too_big_for_the_path_fails_the_real_handshake():
    case = HandshakeCase(
        ProposalSpec("pq", "aes256gcm16-prfsha384-mlkem768", "aes256gcm16"),
        NetworkProfile("narrow", mtu=1280),
        seed=1,
        retransmit_timeout=0.05,
        retransmit_tries=1,
    )
    run = UdpPair().run(case)
    assert not run.established
    assert run.failure == "initiator: no response to IKE_SA_INIT after 1 retransmissions"
    assert [f.fate for f in run.fates] == ["mtu", "mtu"]


@pytest.mark.parametrize("pair", [UdpPair(), MemoryPair()])
def test_the_pairs_are_available_here(pair):
    assert pair.unavailable_reason() is None
