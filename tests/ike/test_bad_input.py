"""A peer's fault never raises out of IkeSa and never loses state.

A bad request gets the right error Notify (RFC 7296 2.21, 3.10.1); a bad response is
dropped and counted; the handshake then goes on as if nothing happened.
"""

from __future__ import annotations

import os
import random

import pytest

from pqike.constants import ExchangeType, NotifyType
from pqike.handshake import drive_pair
from pqike.ike.events import DatagramDropped
from pqike.ike.protection import protect
from pqike.wire.codec import decode_message, encode_message
from pqike.wire.payloads import IkeHeader, NotifyPayload, UnknownPayload

PROPOSAL = "aes256gcm16-prfsha384-x25519"
# Where the sa_pair fixture (tests/conftest.py) puts the initiator and the responder.
I_ADDR, R_ADDR = ("192.0.2.1", 500), ("192.0.2.2", 500)


def test_truncated_ike_sa_init_request_gets_invalid_syntax(sa_pair, first_request, answer_to):
    ini, res = sa_pair()
    data = first_request(ini)
    broken = data[:60] + (len(data) - 1).to_bytes(4, "big")[:0] + data[61:]
    broken = broken[:24] + len(broken).to_bytes(4, "big") + broken[28:]
    (raw,) = answer_to(res, broken)
    reply = decode_message(raw)
    assert reply.header.is_response and reply.header.spi_i == data[:8]
    assert [n.notify_type for n in reply.notifies()] == [NotifyType.INVALID_SYNTAX]
    # the responder kept no state: the real request still works
    res.receive_datagram(data, I_ADDR, now=0.0)
    assert res.state.name == "RESPONDER_EXPECT_AUTH_REQUEST"


def test_unknown_critical_payload_gets_unsupported_critical_payload(
    sa_pair, first_request, answer_to
):
    ini, res = sa_pair()
    msg = decode_message(first_request(ini))
    bad = encode_message(msg.header, [*msg.payloads, UnknownPayload(200, b"x", critical=True)])
    (raw,) = answer_to(res, bad)
    reply = decode_message(raw)
    (n,) = reply.notifies()
    assert n.notify_type == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD and n.data == bytes([200])


def test_unknown_non_critical_payload_is_skipped(sa_pair, first_request, answer_to):
    ini, res = sa_pair()
    msg = decode_message(first_request(ini))
    ok = encode_message(msg.header, [*msg.payloads, UnknownPayload(200, b"x")])
    (raw,) = answer_to(res, ok)
    reply = decode_message(raw)
    assert reply.first(type(msg.payloads[0])) is not None  # an SA payload: accepted


def test_higher_major_version_gets_invalid_major_version(sa_pair, first_request, answer_to):
    ini, res = sa_pair()
    data = bytearray(first_request(ini))
    data[17] = 0x30
    (raw,) = answer_to(res, bytes(data))
    reply = decode_message(raw)
    assert [n.notify_type for n in reply.notifies()] == [NotifyType.INVALID_MAJOR_VERSION]


def test_bad_protected_request_gets_a_protected_invalid_syntax(sa_pair, first_request):
    ini, res = sa_pair()
    res.receive_datagram(first_request(ini), I_ADDR, now=0.0)
    for data, _ in res.datagrams_to_send(now=0.0):
        ini.receive_datagram(data, R_ADDR, now=0.0)
    ini.datagrams_to_send(now=0.0)  # the real IKE_AUTH request is discarded
    c = ini.gen.crypto
    header = IkeHeader(ini.spi_i, ini.spi_r, 0, ExchangeType.IKE_AUTH, 0x08, 1)
    # an IDi payload too short to hold its ID type: malformed inside SK
    garbage = protect(header, [UnknownPayload(35, b"")], c.cipher, c.keys.sk_ei, c.keys.sk_ai)
    res.receive_datagram(garbage.messages[0], I_ADDR, now=0.0)
    ((reply, _),) = res.datagrams_to_send(now=0.0)
    ini.receive_datagram(reply, R_ADDR, now=0.0)
    failures = [e for e in drain(ini) if type(e).__name__ == "IkeSaFailed"]
    assert [f.notify for f in failures] == [NotifyType.INVALID_SYNTAX]


def drain(sa):
    out = []
    while (e := sa.next_event()) is not None:
        out.append(e)
    return out


@pytest.mark.parametrize(
    "junk", [b"", b"\x00" * 3, os.urandom(27), os.urandom(28), os.urandom(400)]
)
def test_garbage_responses_are_dropped_and_counted_then_the_handshake_goes_on(junk, sa_pair):
    ini, res = sa_pair()

    def deliver(sender, data, index):
        # junk arrives ahead of every responder datagram
        return [junk, data] if sender == "responder" else [data]

    result = drive_pair(ini, res, deliver=deliver)
    assert result.established
    assert ini.stats["dropped"] >= 2
    assert any(isinstance(e, DatagramDropped) for e in result.initiator_events)


def test_response_with_a_wrong_message_id_is_dropped(sa_pair):
    ini, res = sa_pair()

    def deliver(sender, data, index):
        msg = decode_message(data)
        if sender == "responder" and msg.header.exchange_type == ExchangeType.IKE_AUTH:
            wrong = bytearray(data)
            wrong[20:24] = (7).to_bytes(4, "big")
            return [bytes(wrong), data]
        return [data]

    result = drive_pair(ini, res, deliver=deliver)
    assert result.established
    reasons = [e.reason for e in result.initiator_events if isinstance(e, DatagramDropped)]
    assert reasons == ["response to no outstanding request"]


def test_request_with_a_future_message_id_is_dropped(sa_pair):
    ini, res = sa_pair()

    def deliver(sender, data, index):
        if sender == "initiator" and decode_message(data).header.message_id == 1:
            ahead = bytearray(data)
            ahead[20:24] = (5).to_bytes(4, "big")
            return [bytes(ahead), data]
        return [data]

    result = drive_pair(ini, res, deliver=deliver)
    assert result.established
    reasons = [e.reason for e in result.responder_events if isinstance(e, DatagramDropped)]
    assert reasons == ["request message ID 5, expected 1"]


def test_tampered_ciphertext_is_dropped_silently_and_the_retransmission_succeeds(sa_pair):
    ini, res = sa_pair()
    hit = {"done": False}

    def deliver(sender, data, index):
        if (
            sender == "initiator"
            and decode_message(data).header.exchange_type == 35
            and not hit["done"]
        ):
            hit["done"] = True
            bad = bytearray(data)
            bad[-1] ^= 0x55
            return [bytes(bad)]
        return [data]

    result = drive_pair(ini, res, deliver=deliver)
    assert result.established
    reasons = [e.reason for e in result.responder_events if isinstance(e, DatagramDropped)]
    assert reasons == ["integrity check failed"]
    assert ini.stats["retransmissions"] == 1


def _mutate(rnd, data):
    mutated = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        mutated[rnd.randrange(len(mutated))] = rnd.randrange(256)
    return bytes(mutated)


def test_mutated_protected_datagrams_never_stop_the_handshake(sa_pair):
    """Mutated copies of every protected datagram (fragments included) arrive first."""
    rnd = random.Random(7)
    for trial in range(30):
        ini, res = sa_pair(PROPOSAL + "-ke1_mlkem768")

        def deliver(sender, data, index, trial=trial):
            if decode_message(data).header.exchange_type == ExchangeType.IKE_SA_INIT:
                return [data]
            junk = [_mutate(rnd, data)] + ([os.urandom(rnd.randint(0, 200))] if trial % 2 else [])
            return [*junk, data]

        result = drive_pair(ini, res, deliver=deliver)
        assert result.established, (trial, result.failures)
        assert ini.stats["dropped"] + res.stats["dropped"] >= 4


def test_mutated_datagrams_anywhere_never_raise(sa_pair):
    """IKE_SA_INIT is unauthenticated, so a mutation there may end the SA, but only ever
    through an event: nothing raises, both sides settle, and agreeing keys when both
    establish."""
    rnd = random.Random(11)
    outcomes = set()
    # About 1 run in 15 establishes (the mutation hits nothing that IKE_SA_INIT keeps):
    # run until both outcomes were seen, so the test cannot fail by bad luck (at 40 runs
    # it did, 7 % of the time).
    for _ in range(400):
        if outcomes == {True, False}:
            break
        ini, res = sa_pair(PROPOSAL + "-ke1_mlkem768")
        result = drive_pair(
            ini, res, deliver=lambda sender, data, index: [_mutate(rnd, data), data]
        )
        assert ini.is_closed or ini.is_established
        assert res.is_closed or res.is_established
        if result.established:
            assert result.ike_keys == res_keys(result)
        outcomes.add(result.established)
    assert outcomes == {True, False}


def res_keys(result):
    return next(e.keys for e in result.responder_events if type(e).__name__ == "IkeSaEstablished")


def test_notify_from_unauthenticated_source_does_not_kill_an_established_sa(sa_pair):
    ini, res = sa_pair()
    result = drive_pair(ini, res)
    assert result.established
    fake = encode_message(
        IkeHeader(ini.spi_i, ini.spi_r, 0, ExchangeType.INFORMATIONAL, 0x20, 2),
        [NotifyPayload(NotifyType.AUTHENTICATION_FAILED)],
    )
    ini.receive_datagram(fake, R_ADDR, now=1.0)
    assert ini.is_established
