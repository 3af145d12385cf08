"""IKEv1 (ISAKMP) headers and messages, on datagrams two lab charons really sent.

``tests/data/ikev1/capture.json`` was written by ``tests/data/ikev1/capture.py``: the
relay's log of one main mode and one aggressive mode handshake (each with its quick mode,
a Child SA rekey and the IKE SA's deletion) of the ``strongswan-ikev1`` pair.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pqike.errors import ProtocolError
from pqike.lab.dissect import HEADER
from pqike.lab.ikev1 import ENCRYPTED, dissect_ikev1, ikev1_message, opens_phase1
from pqike.trace import MessageRecord, Trace
from pqike.wire import isakmp

CAPTURE = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "ikev1" / "capture.json").read_text()
)


def datagrams(mode: str) -> list[tuple[str, bytes]]:
    return [(d["sender"], bytes.fromhex(d["udp_payload"])) for d in CAPTURE["handshakes"][mode]]


def headers(mode: str) -> list[tuple[str, isakmp.IsakmpHeader]]:
    out = []
    for sender, payload in datagrams(mode):
        message = ikev1_message(payload)
        assert message is not None
        out.append((sender, isakmp.parse_header(message)))
    return out


def test_the_capture_was_made_by_the_lab():
    assert CAPTURE["made_by"] == "tests/data/ikev1/capture.py"
    assert CAPTURE["strongswan"].startswith("strongSwan ")


def test_the_responder_chose_the_proposal_in_the_clear():
    # Main mode's second message: the responder's SA payload with the one transform it
    # chose (RFC 2409 5), here AES-256-CBC, HMAC-SHA-384, Curve25519, PSK.
    for mode in ("main", "aggressive"):
        second = ikev1_message(datagrams(mode)[1][1])
        assert second is not None
        assert isakmp.phase1_transform(second) == "AES_CBC_256/HMAC_SHA2_384/CURVE_25519/PSK"
    first_quick = ikev1_message(datagrams("main")[6][1])
    assert first_quick is not None and isakmp.phase1_transform(first_quick) is None


def test_main_mode_header_fields():
    (sender, first), (_, second) = headers("main")[:2]
    assert sender == "initiator"
    assert (first.major_version, first.minor_version) == (1, 0)
    assert first.exchange_type == isakmp.ExchangeType.IDENTITY_PROTECTION == 2
    assert first.exchange == "MAIN_MODE"
    # RFC 2408 3.1: the responder cookie is zero until the responder chose one, and main
    # mode's message ID is zero.
    assert first.responder_cookie == bytes(8) and first.initiator_cookie != bytes(8)
    assert second.initiator_cookie == first.initiator_cookie
    assert second.responder_cookie != bytes(8)
    assert first.message_id == 0 and not first.encrypted
    assert first.next_payload == isakmp.PayloadType.SA
    assert opens_phase1(datagrams("main")[0][1])
    assert not opens_phase1(datagrams("main")[1][1])


def test_the_length_field_is_the_whole_message():
    for mode in ("main", "aggressive"):
        for _, payload in datagrams(mode):
            message = ikev1_message(payload)
            assert message is not None
            assert isakmp.parse_header(message).length == len(message)


def test_each_message_is_named_from_its_exchange_type_and_e_flag():
    seen = [(s, h.exchange, h.encrypted) for s, h in headers("main")]
    i, r = "initiator", "responder"
    # Main mode: SA, KE + nonce in the clear, then the identities and hashes encrypted.
    assert seen[:6] == [
        (i, "MAIN_MODE", False),
        (r, "MAIN_MODE", False),
        (i, "MAIN_MODE", False),
        (r, "MAIN_MODE", False),
        (i, "MAIN_MODE", True),
        (r, "MAIN_MODE", True),
    ]
    # Quick mode is encrypted under the ISAKMP SA: the handshake's, then the rekey's.
    assert (
        seen[6:12]
        == [(i, "QUICK_MODE", True), (r, "QUICK_MODE", True), (i, "QUICK_MODE", True)] * 2
    )
    # The IKE SA's deletion: informational exchanges (5), encrypted, that nothing answers.
    assert seen[12:] and set(seen[12:]) == {(i, "INFORMATIONAL_V1", True)}
    quick = [h for _, h in headers("main") if h.exchange_type == isakmp.ExchangeType.QUICK_MODE]
    assert all(h.message_id != 0 for h in quick)
    assert len({h.message_id for h in quick}) == 2  # the handshake's and the rekey's


def test_aggressive_mode_is_exchange_type_4_with_the_identities_in_the_clear():
    seen = headers("aggressive")
    assert [h.exchange_type for _, h in seen[:3]] == [4, 4, 4]
    assert [h.encrypted for _, h in seen[:3]] == [False, False, True]
    first = datagrams("aggressive")[0][1]
    chain = isakmp.payload_chain(first)
    assert isakmp.payload_names(chain)[:4] == ["SA", "KE", "Ni/Nr", "ID"]
    assert isakmp.ISAKMP_HEADER_LENGTH + sum(n for _, n in chain) == len(first)


def test_the_dissector_counts_main_mode_6_and_quick_mode_3_messages():
    messages = dissect_ikev1(datagrams("main"))
    exchanges = [(m.exchange, m.is_response) for m in messages if not m.retransmission]
    assert exchanges[:6] == [("MAIN_MODE", False), ("MAIN_MODE", True)] * 3
    assert exchanges[6:9] == [("QUICK_MODE", False), ("QUICK_MODE", True), ("QUICK_MODE", False)]
    assert exchanges[9:12] == exchanges[6:9]  # the rekey
    for m in messages:
        total = sum(p.size for p in m.parts)
        assert total == m.ike_bytes
        assert m.parts[0].name == HEADER
        assert (m.parts[-1].name == ENCRYPTED) == (not m.decrypted)


def test_round_trips_count_the_answered_requests_in_both_versions():
    def trace(mode: str) -> Trace:
        t = Trace()
        for m in dissect_ikev1(datagrams(mode)):
            if m.exchange in ("MAIN_MODE", "AGGRESSIVE_MODE") or (
                m.exchange == "QUICK_MODE" and m.message_id == first_quick(mode)
            ):
                t.messages.append(
                    MessageRecord(
                        0.0,
                        m.sender,
                        m.exchange,
                        m.message_id,
                        m.is_response,
                        "",
                        m.ike_bytes,
                        m.ike_bytes,
                        m.ike_bytes,
                        1,
                        0,
                        m.retransmission,
                    )
                )
        return t

    def first_quick(mode: str) -> int:
        return next(h.message_id for _, h in headers(mode) if h.exchange == "QUICK_MODE")

    main, aggressive = trace("main").totals(), trace("aggressive").totals()
    assert (main["messages"], main["requests"], main["round_trips"]) == (9, 5, 4)
    assert (aggressive["messages"], aggressive["requests"], aggressive["round_trips"]) == (6, 4, 2)


def test_a_repeated_datagram_is_a_retransmission_of_the_same_role():
    data = datagrams("main")
    messages = dissect_ikev1([*data[:3], data[2], *data[3:6]])
    assert [m.retransmission for m in messages] == [False, False, False, True, False, False, False]
    assert messages[3].is_response is False
    assert [m.is_response for m in messages if not m.retransmission] == [False, True] * 3


def fragment(fid: int, number: int, last: bool, body: bytes) -> bytes:
    payload = struct.pack("!BBHHBB", 0, 0, 8 + len(body), fid, number, int(last)) + body
    header = struct.pack(
        "!8s8sBBBBII", b"\x01" * 8, b"\x02" * 8, 132, 0x10, 2, 0, 0, 28 + len(payload)
    )
    return header + payload


def test_fragments_join_into_one_message():
    parts = [fragment(7, 1, False, b"a" * 100), fragment(7, 2, True, b"b" * 50)]
    (m,) = dissect_ikev1([("initiator", p) for p in parts])
    assert m.datagrams == (0, 1) and m.fragments == 2
    assert m.ike_bytes == 28 + 150
    assert isakmp.fragment_of(parts[1]) == isakmp.Fragment(7, 2, True, 50)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x00" * 27, "needs 28 bytes"),
        (bytes(17) + b"\x20" + bytes(10), "major version 2"),
        (bytes(17) + b"\x10" + bytes(6) + struct.pack("!I", 20), "shorter than its header"),
    ],
)
def test_a_bad_header_is_a_protocol_error(data, words):
    with pytest.raises(ProtocolError, match=words):
        isakmp.parse_header(data)


def test_a_payload_running_past_the_message_is_a_protocol_error():
    first = bytearray(datagrams("main")[0][1])
    struct.pack_into("!H", first, 28 + 2, 4000)
    with pytest.raises(ProtocolError, match="bad length"):
        isakmp.payload_chain(bytes(first))


def test_ikev2_is_not_ikev1():
    ikev2 = Path(__file__).resolve().parents[1] / "data" / "strongswan" / "01-i-IKE_SA_INIT.hex"
    message = bytes.fromhex(ikev2.read_text().strip())
    assert not isakmp.is_ikev1(message)
    assert dissect_ikev1([("initiator", message)]) == []


def _ikev1_ish(data: bytes) -> bytes:
    """Random bytes with IKEv1's version octet, so most reach the parsers."""
    return data[:17] + b"\x10" + data[18:] if len(data) > 18 else data


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["initiator", "responder"]),
            st.binary(max_size=120).map(_ikev1_ish),
        )
    )
)
def test_the_dissector_never_raises(datagrams_):
    for m in dissect_ikev1(datagrams_):
        assert m.ike_bytes >= isakmp.ISAKMP_HEADER_LENGTH
