"""Loss, duplication and reordering of any single datagram still ends established.

RFC 7296 2.1: the initiator retransmits until answered; the responder answers a
retransmitted request from its cached response. RFC 7383 2.6.1 for fragments.
"""

from __future__ import annotations

import pytest

from pqike.handshake import run_handshake
from pqike.ike.events import IkeSaEstablished

CASES = [
    ("aes256gcm16-prfsha384-x25519", 1280),
    ("aes256gcm16-prfsha384-x25519-ke1_mlkem768", 1280),
]


def keys_of(events):
    return next(e.keys for e in events if isinstance(e, IkeSaEstablished))


def count_datagrams(proposal, fragment_size):
    return run_handshake(proposal, fragment_size=fragment_size).trace.totals()["datagrams"]


def _lose(victim):
    def deliver(sender, data, index):
        return [] if index == victim else [data]

    return deliver


def _duplicate(victim):
    def deliver(sender, data, index):
        return [data, data] if index == victim else [data]

    return deliver


def _swap(victim):
    """Hold datagram ``victim`` back and deliver it after the next one from that side."""
    held: dict[str, bytes] = {}

    def deliver(sender, data, index):
        if index == victim:
            held[sender] = data
            return []
        if sender in held:
            return [data, held.pop(sender)]
        return [data]

    return deliver


@pytest.mark.parametrize(("proposal", "fragment_size"), CASES)
@pytest.mark.parametrize("fault", [_lose, _duplicate, _swap])
def test_any_single_datagram_fault_still_establishes(proposal, fragment_size, fault):
    n = count_datagrams(proposal, fragment_size)
    for victim in range(n):
        result = run_handshake(proposal, fragment_size=fragment_size, deliver=fault(victim))
        assert result.established, (fault.__name__, victim, result.failures)
        assert keys_of(result.responder_events) == result.ike_keys


def test_lost_request_is_retransmitted_with_back_off():
    result = run_handshake(deliver=_lose(0))
    first = [
        m for m in result.trace.messages if m.exchange == "IKE_SA_INIT" and m.sender == "initiator"
    ]
    assert [m.retransmission for m in first] == [False, True]
    assert first[1].time == pytest.approx(4.0)
    assert result.initiator.stats["retransmissions"] == 1


def test_lost_response_is_answered_from_the_cache():
    result = run_handshake(deliver=_lose(3))  # the IKE_AUTH response
    assert result.established
    assert result.responder.stats["retransmitted_requests"] == 1


def test_initiator_gives_up_after_the_retransmission_limit():
    result = run_handshake(
        deliver=lambda sender, data, index: [] if sender == "initiator" else [data]
    )
    assert not result.established
    failed = [f for f in result.failures]
    assert failed and failed[0].notify is None and "retransmissions" in failed[0].reason
    # 4 s, then x1.8 each time: 4 + 7.2 + 12.96 + 23.33 + 41.99 + 75.58 = 165.06 s
    assert result.simulated_time == pytest.approx(165.06, abs=0.01)
