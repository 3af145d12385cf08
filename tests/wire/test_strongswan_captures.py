"""Messages strongSwan 6.0.1 sent in the interop lab decode as expected and re-encode exactly.

The lab ran ``aes256gcm16-prfsha384-x25519-ke1_mlkem768`` with PSK authentication over
IPv4 (tests/data/strongswan: swanctl.conf, charon logs and one hex file per datagram).
"""

from __future__ import annotations

import pytest

from pqike.constants import (
    EncrTransform,
    ExchangeType,
    HeaderFlag,
    KeyExchangeMethod,
    NotifyType,
    PayloadType,
    PrfTransform,
    ProtocolId,
    TransformType,
)
from pqike.wire import (
    CertReqPayload,
    KePayload,
    NoncePayload,
    Proposal,
    SaPayload,
    SkfPayload,
    SkPayload,
    Transform,
    TransformAttribute,
    decode_message,
    encode_message,
    sk_split,
)

from .samples import STRONGSWAN_CAPTURES, strongswan_capture

HYBRID = Proposal(
    1,
    ProtocolId.IKE,
    (
        Transform(TransformType.ENCR, EncrTransform.AES_GCM_16, (TransformAttribute(14, 256),)),
        Transform(TransformType.PRF, PrfTransform.HMAC_SHA2_384),
        Transform(TransformType.KE, KeyExchangeMethod.CURVE25519),
        Transform(TransformType.ADDKE1, KeyExchangeMethod.ML_KEM_768),
    ),
)


@pytest.mark.parametrize("name", STRONGSWAN_CAPTURES)
def test_capture_decodes_and_encodes_to_the_same_bytes(name):
    data = strongswan_capture(name)
    message = decode_message(data)
    assert encode_message(message.header, message.payloads) == data


def test_initiator_ike_sa_init():
    message = decode_message(strongswan_capture("01-i-IKE_SA_INIT.hex"))
    header = message.header
    assert (header.exchange_type, header.flags, header.message_id) == (
        ExchangeType.IKE_SA_INIT,
        HeaderFlag.INITIATOR,
        0,
    )
    assert header.spi_r == bytes(8)
    sa, ke, nonce, *notifies = message.payloads
    assert sa == SaPayload((HYBRID,))
    assert isinstance(ke, KePayload)
    assert (ke.method, len(ke.data)) == (KeyExchangeMethod.CURVE25519, 32)
    assert isinstance(nonce, NoncePayload)
    assert len(nonce.data) == 32
    assert [n.notify_type for n in notifies] == [
        NotifyType.NAT_DETECTION_SOURCE_IP,
        NotifyType.NAT_DETECTION_DESTINATION_IP,
        NotifyType.IKEV2_FRAGMENTATION_SUPPORTED,
        NotifyType.SIGNATURE_HASH_ALGORITHMS,
        NotifyType.REDIRECT_SUPPORTED,
        NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED,
    ]
    assert len(notifies[0].data) == 20  # SHA-1 (RFC 7296 2.23)
    assert notifies[3].data == bytes.fromhex("0002000300040005")


def test_responder_ike_sa_init_selects_the_hybrid_proposal():
    message = decode_message(strongswan_capture("02-r-IKE_SA_INIT.hex"))
    assert message.header.is_response and not message.header.is_initiator
    assert message.header.spi_r != bytes(8)
    assert message.payloads[0] == SaPayload((HYBRID,))
    assert any(isinstance(p, CertReqPayload) for p in message.payloads)
    types = [p.notify_type for p in message.notifies()]
    assert NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED in types
    assert NotifyType.MULTIPLE_AUTH_SUPPORTED in types


def test_ike_intermediate_request_arrives_in_two_fragments():
    first = decode_message(strongswan_capture("03-i-IKE_INTERMEDIATE-frag1of2.hex"))
    second = decode_message(strongswan_capture("04-i-IKE_INTERMEDIATE-frag2of2.hex"))
    for message in (first, second):
        assert message.header.exchange_type == ExchangeType.IKE_INTERMEDIATE
        assert message.header.message_id == 1
        assert message.header.next_payload == PayloadType.SKF
    (frag1,) = first.payloads
    (frag2,) = second.payloads
    assert isinstance(frag1, SkfPayload) and isinstance(frag2, SkfPayload)
    # RFC 7383 2.5: only the first fragment names the first inner payload (KEi here).
    assert (frag1.fragment_number, frag1.total_fragments, frag1.next_payload) == (1, 2, 34)
    assert (frag2.fragment_number, frag2.total_fragments, frag2.next_payload) == (2, 2, 0)
    aad, encrypted = sk_split(first)
    assert len(aad) == 36
    assert aad + encrypted == first.raw


@pytest.mark.parametrize(
    ("name", "exchange", "inner"),
    [
        ("05-r-IKE_INTERMEDIATE.hex", ExchangeType.IKE_INTERMEDIATE, PayloadType.KE),
        ("06-i-IKE_AUTH.hex", ExchangeType.IKE_AUTH, PayloadType.IDi),
        ("07-r-IKE_AUTH.hex", ExchangeType.IKE_AUTH, PayloadType.IDr),
    ],
)
def test_protected_messages_end_in_sk(name, exchange, inner):
    message = decode_message(strongswan_capture(name))
    assert message.header.exchange_type == exchange
    (sk,) = message.payloads
    assert isinstance(sk, SkPayload)
    assert sk.next_payload == inner
    aad, encrypted = sk_split(message)
    assert aad == message.raw[:32]
    assert len(encrypted) >= 8 + 16  # AES-GCM-16: 8-byte IV and 16-byte ICV (RFC 5282)
