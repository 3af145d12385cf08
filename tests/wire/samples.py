"""Valid IKE messages built from payload objects, shared by the codec tests.

They follow what strongSwan 6 sends for ``aes256gcm16-prfsha384-x25519-ke1_mlkem768``
(see docs/ikev2-pq-reference.md); key shares, nonces and ciphertexts are fixed filler
bytes of the right sizes, since the codec never looks inside them.
"""

from __future__ import annotations

from pathlib import Path

from pqike.constants import (
    NON_ESP_MARKER,
    AuthMethod,
    CertEncoding,
    CfgType,
    EncrTransform,
    ExchangeType,
    HeaderFlag,
    IdType,
    KeyExchangeMethod,
    NotifyType,
    PayloadType,
    PrfTransform,
    ProtocolId,
    TransformAttributeType,
    TransformType,
)
from pqike.wire import (
    AuthPayload,
    CertPayload,
    CertReqPayload,
    ConfigAttribute,
    CpPayload,
    DeletePayload,
    EapPayload,
    IdiPayload,
    IdrPayload,
    IkeHeader,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    Proposal,
    SaPayload,
    SkfPayload,
    SkPayload,
    TrafficSelector,
    Transform,
    TransformAttribute,
    TsiPayload,
    TsrPayload,
    UnknownPayload,
    VendorIdPayload,
    encode_message,
)

SPI_I = bytes.fromhex("8a3d5c1e0f9b2a47")
SPI_R = bytes.fromhex("c41f00e2975b6d38")
ZERO_SPI = bytes(8)


def filler(n: int, seed: int = 0) -> bytes:
    """``n`` deterministic, non-constant bytes (stand-ins for keys, nonces, ciphertext)."""
    return bytes((seed + 7 * i) & 0xFF for i in range(n))


def aes256gcm16() -> Transform:
    return Transform(
        TransformType.ENCR,
        EncrTransform.AES_GCM_16,
        (TransformAttribute(TransformAttributeType.KEY_LENGTH, 256),),
    )


def hybrid_ike_sa() -> SaPayload:
    """Two IKE proposals: x25519 + ADDKE1 ML-KEM-768, then a classical fallback."""
    return SaPayload(
        (
            Proposal(
                1,
                ProtocolId.IKE,
                (
                    aes256gcm16(),
                    Transform(TransformType.PRF, PrfTransform.HMAC_SHA2_384),
                    Transform(TransformType.KE, KeyExchangeMethod.CURVE25519),
                    Transform(TransformType.ADDKE1, KeyExchangeMethod.ML_KEM_768),
                ),
            ),
            Proposal(
                2,
                ProtocolId.IKE,
                (
                    aes256gcm16(),
                    Transform(TransformType.PRF, PrfTransform.HMAC_SHA2_256),
                    Transform(TransformType.PRF, PrfTransform.HMAC_SHA2_384),
                    Transform(TransformType.KE, KeyExchangeMethod.CURVE25519),
                    Transform(TransformType.KE, KeyExchangeMethod.ECP256),
                ),
            ),
        )
    )


def esp_sa() -> SaPayload:
    return SaPayload(
        (
            Proposal(
                1,
                ProtocolId.ESP,
                (aes256gcm16(), Transform(TransformType.ESN, 0)),
                spi=bytes.fromhex("c0ffee01"),
            ),
        )
    )


def selectors_i() -> TsiPayload:
    return TsiPayload(
        (
            TrafficSelector.from_network("192.0.2.0/24"),
            TrafficSelector.from_range("2001:db8::1", ip_protocol=17, start_port=500, end_port=500),
        )
    )


def selectors_r() -> TsrPayload:
    return TsrPayload((TrafficSelector.from_network("198.51.100.0/24"),))


def sa_init_request_payloads() -> list[Payload]:
    return [
        hybrid_ike_sa(),
        KePayload(KeyExchangeMethod.CURVE25519, filler(32, 1)),
        NoncePayload(filler(32, 2)),
        NotifyPayload(NotifyType.NAT_DETECTION_SOURCE_IP, filler(20, 3)),
        NotifyPayload(NotifyType.NAT_DETECTION_DESTINATION_IP, filler(20, 4)),
        NotifyPayload(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED),
        NotifyPayload(NotifyType.SIGNATURE_HASH_ALGORITHMS, bytes.fromhex("000200030004")),
        NotifyPayload(NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED),
        VendorIdPayload(filler(16, 5)),
    ]


def sa_init_request() -> bytes:
    header = IkeHeader(SPI_I, ZERO_SPI, 0, ExchangeType.IKE_SA_INIT, HeaderFlag.INITIATOR, 0)
    return encode_message(header, sa_init_request_payloads())


def sa_init_response() -> bytes:
    sa = SaPayload((hybrid_ike_sa().proposals[0],))
    header = IkeHeader(SPI_I, SPI_R, 0, ExchangeType.IKE_SA_INIT, HeaderFlag.RESPONSE, 0)
    return encode_message(
        header,
        [
            sa,
            KePayload(KeyExchangeMethod.CURVE25519, filler(32, 6)),
            NoncePayload(filler(32, 7)),
            NotifyPayload(NotifyType.NAT_DETECTION_SOURCE_IP, filler(20, 8)),
            NotifyPayload(NotifyType.NAT_DETECTION_DESTINATION_IP, filler(20, 9)),
            CertReqPayload(CertEncoding.X509_SIGNATURE, b""),
            NotifyPayload(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED),
            NotifyPayload(NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED),
        ],
    )


def ike_auth_inner_payloads() -> list[Payload]:
    """What an initiator's IKE_AUTH request carries inside SK (RFC 7296 1.2)."""
    return [
        IdiPayload(IdType.ID_FQDN, b"initiator.example"),
        CertPayload(CertEncoding.X509_SIGNATURE, filler(40, 10)),
        CertReqPayload(CertEncoding.X509_SIGNATURE, filler(20, 11)),
        NotifyPayload(NotifyType.INITIAL_CONTACT),
        IdrPayload(IdType.ID_FQDN, b"responder.example"),
        AuthPayload(AuthMethod.SHARED_KEY_MESSAGE_INTEGRITY_CODE, filler(48, 12)),
        CpPayload(
            CfgType.CFG_REQUEST,
            (ConfigAttribute(1), ConfigAttribute(8), ConfigAttribute(3, bytes([192, 0, 2, 53]))),
        ),
        esp_sa(),
        selectors_i(),
        selectors_r(),
        NotifyPayload(NotifyType.USE_TRANSPORT_MODE, protocol_id=ProtocolId.ESP),
        # EAP Response (2), Identifier 1, Length 9, Type Identity (1), "john" (RFC 3748 4, 5.1)
        EapPayload(bytes([2, 1, 0, 9, 1]) + b"john"),
        DeletePayload(ProtocolId.ESP, 4, (bytes.fromhex("c0ffee01"), bytes.fromhex("c0ffee02"))),
        DeletePayload(ProtocolId.IKE, 0),
        UnknownPayload(200, b"\x01\x02\x03"),
    ]


def ike_auth_request() -> bytes:
    """IKE_AUTH with one SK payload: IV(8) | ciphertext | ICV(16), first inner payload IDi."""
    header = IkeHeader(SPI_I, SPI_R, 0, ExchangeType.IKE_AUTH, HeaderFlag.INITIATOR, 1)
    sk = SkPayload(PayloadType.IDi, filler(8, 13) + filler(200, 14) + filler(16, 15))
    return encode_message(header, [sk])


def intermediate_fragment() -> bytes:
    """Fragment 1 of 2 of an IKE_INTERMEDIATE request carrying KEi(ML-KEM-768) (RFC 7383)."""
    header = IkeHeader(SPI_I, SPI_R, 0, ExchangeType.IKE_INTERMEDIATE, HeaderFlag.INITIATOR, 1)
    skf = SkfPayload(PayloadType.KE, 1, 2, filler(8, 16) + filler(600, 17) + filler(16, 18))
    return encode_message(header, [skf])


def every_payload_message() -> bytes:
    """Not a real exchange: every plaintext payload type in one chain, for mutation tests."""
    header = IkeHeader(SPI_I, SPI_R, 0, ExchangeType.INFORMATIONAL, HeaderFlag.RESPONSE, 7)
    return encode_message(header, ike_auth_inner_payloads())


def valid_messages() -> list[bytes]:
    return [
        sa_init_request(),
        sa_init_response(),
        ike_auth_request(),
        intermediate_fragment(),
        every_payload_message(),
    ]


CAPTURES = Path(__file__).parent.parent / "data" / "strongswan"


def strongswan_capture(name: str) -> bytes:
    """A UDP payload strongSwan 6.0.1 sent in the interop lab, without the non-ESP marker."""
    data = bytes.fromhex((CAPTURES / name).read_text())
    # RFC 3948 2.2: on port 4500 the IKE message follows four zero bytes; SPIi is never 0.
    return data[4:] if data[:4] == NON_ESP_MARKER else data


STRONGSWAN_CAPTURES = [
    "01-i-IKE_SA_INIT.hex",
    "02-r-IKE_SA_INIT.hex",
    "03-i-IKE_INTERMEDIATE-frag1of2.hex",
    "04-i-IKE_INTERMEDIATE-frag2of2.hex",
    "05-r-IKE_INTERMEDIATE.hex",
    "06-i-IKE_AUTH.hex",
    "07-r-IKE_AUTH.hex",
]
