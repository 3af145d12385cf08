"""Taking captured handshakes apart: messages, payloads and the bytes of each.

The strongSwan reference capture (tests/data/strongswan) is decrypted with the keys in
charon's level-4 log; a pqike handshake with the keys recomputed from pqike's events.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pqike.handshake import drive_pair
from pqike.interop.lab import log_dumps
from pqike.lab.dissect import HEADER, SK_OPAQUE, SK_OVERHEAD, KeySchedule, dissect

DATA = Path(__file__).resolve().parents[1] / "data" / "strongswan"
HYBRID = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"


def reference_datagrams():
    out = []
    for f in sorted(DATA.glob("0*.hex")):
        sender = "initiator" if "-i-" in f.name else "responder"
        out.append((sender, bytes.fromhex(f.read_text().strip())))
    return out


def reference_keys():
    log = (DATA / "left.log").read_text()
    return KeySchedule.from_dumps(log_dumps(log, "Sk_ei secret"), log_dumps(log, "Sk_er secret"))


def names(message):
    return [p.name for p in message.parts]


def test_the_strongswan_capture_comes_apart_into_named_payloads():
    messages = dissect(reference_datagrams(), reference_keys())

    assert [(m.sender, m.exchange, m.message_id) for m in messages] == [
        ("initiator", "IKE_SA_INIT", 0),
        ("responder", "IKE_SA_INIT", 0),
        ("initiator", "IKE_INTERMEDIATE", 1),
        ("responder", "IKE_INTERMEDIATE", 1),
        ("initiator", "IKE_AUTH", 2),
        ("responder", "IKE_AUTH", 2),
    ]
    assert all(m.decrypted and not m.retransmission for m in messages)
    # charon's own account of these messages (tests/data/strongswan/README.md).
    assert [m.ike_bytes for m in messages] == [248, 281, 1249, 1153, 341, 261]
    for m in messages:
        assert sum(p.size for p in m.parts) == m.ike_bytes
    assert names(messages[0]) == [
        HEADER,
        "SA",
        "KE",
        "Nonce",
        "N(NAT_DETECTION_SOURCE_IP)",
        "N(NAT_DETECTION_DESTINATION_IP)",
        "N(IKEV2_FRAGMENTATION_SUPPORTED)",
        "N(SIGNATURE_HASH_ALGORITHMS)",
        "N(REDIRECT_SUPPORTED)",
        "N(INTERMEDIATE_EXCHANGE_SUPPORTED)",
    ]
    assert names(messages[5]) == [
        HEADER,
        SK_OVERHEAD,
        "IDr",
        "AUTH",
        "N(ESP_TFC_PADDING_NOT_SUPPORTED)",
        "SA",
        "TSi",
        "TSr",
        "N(MOBIKE_SUPPORTED)",
        "N(ADDITIONAL_IP6_ADDRESS)",
    ]


def test_a_fragmented_message_is_measured_as_if_it_were_whole():
    request = dissect(reference_datagrams(), reference_keys())[2]

    # Two SKF datagrams of 1248 + 66 IKE bytes; unfragmented the message is 1249 bytes:
    # header, SK overhead (SK header, IV, pad length, ICV) and the ML-KEM-768 KE payload.
    assert request.datagrams == (2, 3) and request.fragments == 2
    assert [(p.name, p.size) for p in request.parts] == [
        (HEADER, 28),
        (SK_OVERHEAD, 29),
        ("KE", 1192),
    ]


def test_without_keys_the_protected_part_stays_one_piece():
    auth_response = dissect(reference_datagrams(), None)[5]

    assert not auth_response.decrypted
    assert [(p.name, p.size) for p in auth_response.parts] == [(HEADER, 28), (SK_OPAQUE, 233)]


def test_a_datagram_sent_again_is_a_retransmission():
    datagrams = reference_datagrams()
    again = [*datagrams[:1], datagrams[0], *datagrams[1:]]

    messages = dissect(again, reference_keys())

    assert [m.retransmission for m in messages[:3]] == [False, True, False]
    assert messages[1].datagrams == (1,)


def pqike_handshake(pair):
    """Drive ``pair`` (from the ``sa_pair`` fixture); the result and every datagram sent."""
    sent = []

    def deliver(sender, data, index):
        sent.append((sender, data))
        return [data]

    initiator, responder = pair
    result = drive_pair(initiator, responder, deliver=deliver)
    assert result.established
    return result, sent


@pytest.mark.parametrize(
    "proposal", [HYBRID, "aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke2_mlkem1024"]
)
def test_keys_recomputed_from_pqike_events_decrypt_every_round(proposal, sa_pair):
    result, sent = pqike_handshake(sa_pair(proposal, fragment_size=1280))
    keys = KeySchedule.from_events(result.initiator_events)

    messages = dissect(sent, keys)

    # One epoch after IKE_SA_INIT and one more per IKE_INTERMEDIATE round (RFC 9370).
    assert len(keys.epochs) == 1 + len(result.suite.rounds)
    assert all(m.decrypted for m in messages)
    assert [(m.exchange, m.ike_bytes) for m in messages] == [
        (m.exchange, m.ike_bytes) for m in result.trace.messages
    ]
    auth_request = messages[-2]
    assert names(auth_request) == [HEADER, SK_OVERHEAD, "IDi", "IDr", "AUTH", "SA", "TSi", "TSr"]


def test_an_unfinished_handshake_takes_nonces_and_spis_from_its_ike_sa_init(sa_pair):
    result, sent = pqike_handshake(sa_pair(HYBRID, fragment_size=1280))
    before_auth = [e for e in result.initiator_events if type(e).__name__ != "IkeSaEstablished"]

    assert KeySchedule.from_events(before_auth) is None
    assert KeySchedule.from_events(before_auth, sent) == KeySchedule.from_events(
        result.initiator_events
    )
