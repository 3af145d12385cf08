"""The IKEv2 codec on well-formed input: known bytes, round trips and the encoding rules."""

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
from pqike.errors import LocalProtocolError
from pqike.wire import (
    CertReqPayload,
    DeletePayload,
    IdiPayload,
    IkeHeader,
    KePayload,
    Message,
    NoncePayload,
    NotifyPayload,
    Proposal,
    SaPayload,
    SkfPayload,
    SkPayload,
    TrafficSelector,
    Transform,
    TransformAttribute,
    TsiPayload,
    UnknownPayload,
    VendorIdPayload,
    decode_header,
    decode_message,
    decode_payloads,
    encode_header,
    encode_message,
    encode_payloads,
    payload_type_of,
    sk_split,
)

from . import samples
from .samples import SPI_I, SPI_R, ZERO_SPI

# An IKE_SA_INIT request written field by field from RFC 7296 section 3, with the
# transforms strongSwan sends for "aes256gcm16-prfsha512-x25519".
KE_DATA = bytes.fromhex("a5" * 32)
NONCE = bytes.fromhex("3c" * 32)
SA_INIT_HEX = (
    # IKE header (3.1)
    "8a3d5c1e0f9b2a47"  # IKE SA Initiator's SPI
    "0000000000000000"  # IKE SA Responder's SPI: zero in the first message
    "21"  # Next Payload: SA (33)
    "20"  # Major Version 2, Minor Version 0
    "22"  # Exchange Type: IKE_SA_INIT (34)
    "08"  # Flags: Initiator
    "00000000"  # Message ID 0
    "00000098"  # Length 152
    # SA payload (3.3)
    "22"
    "00"
    "0028"  # Next Payload KE (34), not critical, Payload Length 40
    "00"
    "00"
    "0024"
    "01"
    "01"
    "00"
    "03"  # last proposal, length 36, #1, IKE, no SPI, 3 transforms
    "03"
    "00"
    "000c"
    "01"
    "00"
    "0014"
    "800e"
    "0100"  # more; ENCR AES_GCM_16, Key Length 256 (TV)
    "03"
    "00"
    "0008"
    "02"
    "00"
    "0007"  # more; PRF HMAC_SHA2_512
    "00"
    "00"
    "0008"
    "04"
    "00"
    "001f"  # last; KE Curve25519 (31)
    # KE payload (3.4)
    "28"
    "00"
    "0028"
    "001f"
    "0000"
    + KE_DATA.hex()  # Next Nonce, length 40, method 31
    +
    # Nonce payload (3.9)
    "29"
    "00"
    "0024"
    + NONCE.hex()  # Next Notify, length 36
    +
    # Notify payload (3.10)
    "00"
    "00"
    "0008"
    "00"
    "00"
    "402e"  # last, length 8, protocol 0, SPI size 0, type 16430
)


def test_known_ike_sa_init_request_decodes_field_by_field():
    data = bytes.fromhex(SA_INIT_HEX)
    message = decode_message(data)

    assert message.header == IkeHeader(
        spi_i=SPI_I,
        spi_r=ZERO_SPI,
        next_payload=PayloadType.SA,
        exchange_type=ExchangeType.IKE_SA_INIT,
        flags=HeaderFlag.INITIATOR,
        message_id=0,
        length=152,
    )
    assert message.header.is_initiator and not message.header.is_response
    sa, ke, nonce, notify = message.payloads
    (proposal,) = sa.proposals
    assert (proposal.number, proposal.protocol_id, proposal.spi) == (1, ProtocolId.IKE, b"")
    encr, prf, kex = proposal.transforms
    assert encr == Transform(
        TransformType.ENCR, EncrTransform.AES_GCM_16, (TransformAttribute(14, 256),)
    )
    assert encr.key_length == 256
    assert prf == Transform(TransformType.PRF, PrfTransform.HMAC_SHA2_512)
    assert kex == Transform(TransformType.KE, KeyExchangeMethod.CURVE25519)
    assert ke == KePayload(KeyExchangeMethod.CURVE25519, KE_DATA)
    assert nonce == NoncePayload(NONCE)
    assert notify == NotifyPayload(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED)
    assert message.raw == data


def test_known_ike_sa_init_request_encodes_to_the_same_bytes():
    message = decode_message(bytes.fromhex(SA_INIT_HEX))
    # Next Payload and Length are recomputed, so give wrong ones on purpose.
    header = IkeHeader(SPI_I, ZERO_SPI, 0, ExchangeType.IKE_SA_INIT, HeaderFlag.INITIATOR, 0, 9)
    assert encode_message(header, message.payloads).hex() == SA_INIT_HEX


def test_hybrid_sa_with_addke_and_a_fallback_proposal_has_known_bytes():
    expected = (
        "00"
        "00"
        "0054"  # the only payload: Next Payload 0, length 84
        "02"
        "00"
        "002c"
        "01"
        "01"
        "00"
        "04"  # more proposals follow; length 44, #1, IKE, 4
        "03"
        "00"
        "000c"
        "01"
        "00"
        "0014"
        "800e"
        "0100"  # ENCR AES_GCM_16 256
        "03"
        "00"
        "0008"
        "02"
        "00"
        "0006"  # PRF HMAC_SHA2_384
        "03"
        "00"
        "0008"
        "04"
        "00"
        "001f"  # KE Curve25519
        "00"
        "00"
        "0008"
        "06"
        "00"
        "0024"  # ADDKE1 (type 6) ML-KEM-768 (36), RFC 9370 2.2.1
        "00"
        "00"
        "0024"
        "02"
        "01"
        "00"
        "03"  # last proposal; length 36, #2, IKE, 3 transforms
        "03"
        "00"
        "000c"
        "01"
        "00"
        "0014"
        "800e"
        "0100"
        "03"
        "00"
        "0008"
        "02"
        "00"
        "0006"
        "00"
        "00"
        "0008"
        "04"
        "00"
        "001f"
    )
    gcm = samples.aes256gcm16()
    sa = SaPayload(
        (
            Proposal(
                1,
                ProtocolId.IKE,
                (
                    gcm,
                    Transform(TransformType.PRF, PrfTransform.HMAC_SHA2_384),
                    Transform(TransformType.KE, KeyExchangeMethod.CURVE25519),
                    Transform(TransformType.ADDKE1, KeyExchangeMethod.ML_KEM_768),
                ),
            ),
            Proposal(
                2,
                ProtocolId.IKE,
                (
                    gcm,
                    Transform(TransformType.PRF, PrfTransform.HMAC_SHA2_384),
                    Transform(TransformType.KE, KeyExchangeMethod.CURVE25519),
                ),
            ),
        )
    )
    assert encode_payloads([sa]).hex() == expected
    assert decode_payloads(PayloadType.SA, bytes.fromhex(expected)) == (sa,)


def test_tlv_transform_attribute_and_proposal_spi_have_known_bytes():
    sa = SaPayload(
        (
            Proposal(
                3,
                ProtocolId.ESP,
                (Transform(TransformType.ENCR, 99, (TransformAttribute(200, b"\xab\xcd\xef"),)),),
                spi=bytes.fromhex("c0ffee01"),
            ),
        )
    )
    expected = (
        "00"
        "00"
        "001f"  # SA, length 31
        "00"
        "00"
        "001b"
        "03"
        "03"
        "04"
        "01"
        "c0ffee01"  # proposal #3, ESP, 4-byte SPI, 1 transform
        "00"
        "00"
        "000f"
        "01"
        "00"
        "0063"  # ENCR 99, length 15
        "00c8"
        "0003"
        "abcdef"  # AF clear: TLV type 200, length 3
    )
    assert encode_payloads([sa]).hex() == expected
    assert decode_payloads(PayloadType.SA, bytes.fromhex(expected)) == (sa,)


def test_traffic_selectors_have_known_bytes():
    tsi = TsiPayload(
        (
            TrafficSelector.from_network("192.0.2.0/24"),
            TrafficSelector.from_range("2001:db8::1", ip_protocol=17, start_port=500, end_port=500),
        )
    )
    expected = (
        "00"
        "00"
        "0040"  # TSi, length 64
        "02"
        "000000"  # 2 selectors
        "07"
        "00"
        "0010"
        "0000"
        "ffff"
        "c0000200"
        "c00002ff"  # IPv4 range, any protocol
        "08"
        "11"
        "0028"
        "01f4"
        "01f4"  # IPv6, UDP, port 500 only
        "20010db8000000000000000000000001"
        "20010db8000000000000000000000001"
    )
    assert encode_payloads([tsi]).hex() == expected
    assert decode_payloads(PayloadType.TSi, bytes.fromhex(expected)) == (tsi,)


def test_delete_payload_has_known_bytes():
    delete = DeletePayload(
        ProtocolId.ESP, 4, (bytes.fromhex("c0ffee01"), bytes.fromhex("c0ffee02"))
    )
    expected = "0000001003040002c0ffee01c0ffee02"
    assert encode_payloads([delete]).hex() == expected
    assert decode_payloads(PayloadType.DELETE, bytes.fromhex(expected)) == (delete,)
    ike_delete = DeletePayload(ProtocolId.IKE, 0)
    assert encode_payloads([ike_delete]).hex() == "0000000801000000"


def test_notify_with_spi_has_known_bytes():
    notify = NotifyPayload(NotifyType.REKEY_SA, protocol_id=ProtocolId.ESP, spi=b"\x01\x02\x03\x04")
    expected = "0000000c0304400901020304"
    assert encode_payloads([notify]).hex() == expected
    assert decode_payloads(PayloadType.NOTIFY, bytes.fromhex(expected)) == (notify,)


def test_unknown_notify_type_is_kept_as_a_plain_int():
    (notify,) = decode_payloads(PayloadType.NOTIFY, bytes.fromhex("0000000800009999"))
    assert notify.notify_type == 0x9999
    assert type(notify.notify_type) is int


# --- header ---------------------------------------------------------------------------------


def test_decode_header_reads_the_length_field_without_checking_it():
    header = decode_header(bytes.fromhex(SA_INIT_HEX)[:28])
    assert header.length == 152
    assert header.next_payload == PayloadType.SA


def test_decode_header_names_a_known_exchange_type_and_keeps_an_unknown_number():
    header = decode_header(bytes.fromhex(SA_INIT_HEX)[:28])
    assert header.exchange_type is ExchangeType.IKE_SA_INIT
    assert header.exchange_type.name == "IKE_SA_INIT"
    odd = IkeHeader(SPI_I, SPI_R, 0, 240, HeaderFlag.INITIATOR, 0, 28)
    decoded = decode_header(encode_header(odd))
    assert decoded.exchange_type == 240 and type(decoded.exchange_type) is int


def test_encode_header_takes_next_payload_and_length_verbatim():
    header = IkeHeader(SPI_I, SPI_R, 46, ExchangeType.IKE_AUTH, HeaderFlag.RESPONSE, 1, 1234)
    data = encode_header(header)
    assert len(data) == 28
    assert data.hex() == SPI_I.hex() + SPI_R.hex() + "2e20232000000001000004d2"
    assert decode_header(data) == header
    assert decode_header(data).is_response


def test_minor_version_and_unknown_flags_survive_a_round_trip():
    data = bytearray(bytes.fromhex(SA_INIT_HEX))
    data[17] = 0x21  # RFC 7296 3.1: a minor version we do not know is not an error
    data[19] = 0x08 | 0x01
    message = decode_message(bytes(data))
    assert message.header.minor_version == 1
    assert message.header.flags == 0x09
    assert encode_message(message.header, message.payloads) == bytes(data)


def test_decode_message_accepts_a_bytearray():
    data = bytearray(bytes.fromhex(SA_INIT_HEX))
    message = decode_message(data)
    assert message.raw == bytes(data)
    assert isinstance(message.payloads[1].data, bytes)


# --- chains and round trips --------------------------------------------------------------


def test_each_generic_header_names_the_payload_that_follows():
    data = encode_payloads([NoncePayload(bytes(16)), NotifyPayload(NotifyType.COOKIE, b"\x07")])
    assert data.hex() == "29000014" + "00" * 16 + "000000090000400607"


def test_sk_header_carries_the_first_inner_payload_type():
    data = encode_payloads([VendorIdPayload(b"v"), SkPayload(PayloadType.IDi, b"\xee" * 24)])
    assert data[:4].hex() == "2e000005"  # Vendor ID is followed by SK (46)
    assert data[5:9].hex() == "2300001c"  # SK's Next Payload is IDi (35), not 0


def test_encode_message_recomputes_next_payload_and_length():
    header = IkeHeader(SPI_I, SPI_R, 99, ExchangeType.INFORMATIONAL, 0, 5, length=1)
    data = encode_message(header, [DeletePayload(ProtocolId.IKE, 0)])
    assert data[16] == PayloadType.DELETE
    assert int.from_bytes(data[24:28], "big") == len(data) == 36
    empty = encode_message(header, [])
    assert len(empty) == 28
    assert empty[16] == 0
    assert decode_message(empty).payloads == ()


@pytest.mark.parametrize("data", samples.valid_messages(), ids=lambda d: f"{len(d)}B")
def test_real_messages_decode_then_encode_to_the_same_bytes(data):
    message = decode_message(data)
    assert encode_message(message.header, message.payloads) == data


def test_every_payload_kind_round_trips_in_one_chain():
    payloads = samples.ike_auth_inner_payloads()
    data = encode_payloads(payloads)
    assert decode_payloads(payload_type_of(payloads[0]), data) == tuple(payloads)


@pytest.mark.parametrize(
    "payload",
    [
        *samples.sa_init_request_payloads(),
        *samples.ike_auth_inner_payloads(),
        KePayload(KeyExchangeMethod.ML_KEM_768, bytes(1184), critical=True),
        NoncePayload(bytes(256)),
        SkPayload(PayloadType.IDi, b"\x01" * 40, critical=True),
        SkfPayload(0, 3, 3, b"\x02" * 40),
        UnknownPayload(PayloadType.GSA, b"group"),
    ],
    ids=lambda p: type(p).__name__,
)
def test_single_payload_round_trips(payload):
    data = encode_payloads([payload])
    assert decode_payloads(payload_type_of(payload), data) == (payload,)
    assert encode_payloads(decode_payloads(payload_type_of(payload), data)) == data


def test_known_payload_keeps_its_critical_bit():
    data = bytes.fromhex("0080000800004000")
    (notify,) = decode_payloads(PayloadType.NOTIFY, data)
    assert notify == NotifyPayload(NotifyType.INITIAL_CONTACT, critical=True)
    assert encode_payloads([notify]) == data


def test_unknown_non_critical_payload_is_kept_verbatim():
    data = bytes.fromhex("28000007aabbcc") + encode_payloads([NoncePayload(bytes(16))])
    payloads = decode_payloads(200, data)
    assert payloads == (UnknownPayload(200, b"\xaa\xbb\xcc"), NoncePayload(bytes(16)))
    assert encode_payloads(payloads) == data


def test_payload_type_of():
    assert payload_type_of(CertReqPayload(4, b"")) == PayloadType.CERTREQ == 38
    assert payload_type_of(UnknownPayload(201, b"")) == 201
    assert payload_type_of(SkfPayload(0, 2, 2, b"")) == 53


def test_ke_data_is_carried_without_copying_byte_by_byte():
    big = KePayload(KeyExchangeMethod.ML_KEM_1024, bytes(range(256)) * 6 + bytes(32))
    (decoded,) = decode_payloads(PayloadType.KE, encode_payloads([big]))
    assert decoded.data == big.data
    assert len(decoded.data) == 1568


# --- SK / SKF and the associated data -----------------------------------------------------


def test_sk_split_returns_header_and_sk_header_as_aad():
    data = samples.ike_auth_request()
    message = decode_message(data)
    aad, encrypted = sk_split(message)
    # RFC 5282 5.1: AAD is the IKE header through the SK payload's generic header.
    assert aad == data[:32]
    assert aad[28:32] == bytes([PayloadType.IDi, 0]) + (4 + len(encrypted)).to_bytes(2, "big")
    assert encrypted == message.payloads[-1].encrypted
    assert aad + encrypted == data


def test_sk_split_of_a_fragment_includes_the_8_byte_skf_header():
    data = samples.intermediate_fragment()
    aad, encrypted = sk_split(decode_message(data))
    assert len(aad) == 28 + 8  # RFC 7383 2.5: Fragment Number and Total Fragments are in the AAD
    assert aad[32:36] == bytes.fromhex("00010002")
    assert aad + encrypted == data


def test_sk_split_includes_unprotected_payloads_before_sk():
    header = IkeHeader(SPI_I, SPI_R, 0, ExchangeType.IKE_AUTH, HeaderFlag.INITIATOR, 1)
    data = encode_message(header, [VendorIdPayload(b"vid"), SkPayload(0, b"\x00" * 24)])
    aad, encrypted = sk_split(decode_message(data))
    assert aad == data[: 28 + 7 + 4]
    assert encrypted == b"\x00" * 24


def test_sk_split_refuses_a_message_without_sk():
    with pytest.raises(LocalProtocolError):
        sk_split(decode_message(samples.sa_init_request()))
    with pytest.raises(LocalProtocolError):
        sk_split(decode_message(encode_message(IkeHeader(SPI_I, SPI_R, 0, 37, 0, 2), [])))


def test_sk_split_refuses_a_message_that_was_not_decoded():
    header = IkeHeader(SPI_I, SPI_R, 0, ExchangeType.IKE_AUTH, HeaderFlag.INITIATOR, 1)
    with pytest.raises(LocalProtocolError):
        sk_split(Message(header, (SkPayload(PayloadType.IDi, b"\x01" * 24),)))


def test_inner_payloads_of_sk_decode_with_decode_payloads():
    inner = samples.ike_auth_inner_payloads()
    plaintext = encode_payloads(inner)
    assert decode_payloads(PayloadType.IDi, plaintext, offset=40) == tuple(inner)


# --- encoding misuse is a local error -------------------------------------------------------


@pytest.mark.parametrize(
    "payloads",
    [
        [SkPayload(PayloadType.IDi, b""), NoncePayload(bytes(16))],
        [VendorIdPayload(bytes(65532))],
        [KePayload(70000, b"")],
        [NotifyPayload(NotifyType.COOKIE, spi=bytes(256))],
        [TsiPayload((TrafficSelector(7, 0, 0, 65535, bytes(16), bytes(16)),))],
        [TsiPayload((TrafficSelector(9, 0, 0, 65535, bytes(4), bytes(4)),))],
        [DeletePayload(ProtocolId.ESP, 4, (b"\x01\x02\x03",))],
        [DeletePayload(ProtocolId.IKE, 0, (b"",))],
        [SaPayload((Proposal(1, 1, (Transform(1, 12, (TransformAttribute(0x8001, 1),)),)),))],
        [SaPayload((Proposal(1, 1, (Transform(1, 12, (TransformAttribute(14, 65536),)),)),))],
        [SaPayload((Proposal(1, 1, (Transform(2, 5),) * 256),))],
        [UnknownPayload(0, b"")],
        [UnknownPayload(256, b"")],
        [IdiPayload(1, b"\x00", critical=True), object()],
    ],
    ids=[
        "sk-not-last",
        "payload-over-65535",
        "ke-method-over-16-bits",
        "spi-over-255",
        "ts-address-size",
        "ts-unknown-type",
        "delete-spi-size",
        "delete-size-0",
        "attribute-type-15-bits",
        "attribute-value-16-bits",
        "transform-count",
        "unknown-type-0",
        "unknown-type-256",
        "not-a-payload",
    ],
)
def test_encoding_what_the_wire_cannot_hold_is_a_local_error(payloads):
    with pytest.raises(LocalProtocolError):
        encode_payloads(payloads)


def test_encoding_a_header_with_a_bad_spi_is_a_local_error():
    with pytest.raises(LocalProtocolError):
        encode_header(IkeHeader(b"\x01" * 9, SPI_R, 0, 34, 8, 0))
    with pytest.raises(LocalProtocolError):
        encode_message(IkeHeader(SPI_I, b"", 0, 34, 8, 0), [])
    with pytest.raises(LocalProtocolError):
        encode_header(IkeHeader(SPI_I, SPI_R, 0, 34, 8, 1 << 32))
