"""AUTH octets, PSK AUTH, IntAuth, NAT detection and cookies with fixed inputs."""

import hashlib
import hmac

import pytest

from pqike.constants import PrfTransform
from pqike.crypto.auth import (
    KEY_PAD,
    cookie,
    int_auth,
    int_auth_octets,
    nat_detection_hash,
    psk_auth,
    signed_octets,
)
from pqike.crypto.prf import get_prf
from pqike.errors import LocalProtocolError

PRF256 = get_prf(PrfTransform.HMAC_SHA2_256)
PRF384 = get_prf(PrfTransform.HMAC_SHA2_384)

SPI_I = bytes.fromhex("0123456789abcdef")
SPI_R = bytes.fromhex("fedcba9876543210")
# A stand-in IKE_SA_INIT request: header (SA first, length 256) and a zero body.
REAL_MESSAGE = SPI_I + bytes(8) + bytes.fromhex("2120220800000000") + (256).to_bytes(4, "big")
REAL_MESSAGE += bytes(256 - len(REAL_MESSAGE))
NR = bytes(range(0x20, 0x40))
SK_PI = bytes(range(0x40, 0x60))
ID_BODY = bytes([2, 0, 0, 0]) + b"moon.strongswan.org"  # ID_FQDN
PSK = b"This is a strong password"


def test_key_pad_is_17_ascii_bytes_without_nul():
    assert KEY_PAD == b"Key Pad for IKEv2"
    assert len(KEY_PAD) == 17


def test_signed_octets_layout():
    maced_id = hmac.new(SK_PI, ID_BODY, "sha256").digest()
    octets = signed_octets(REAL_MESSAGE, NR, PRF256, SK_PI, ID_BODY)
    assert octets == REAL_MESSAGE + NR + maced_id
    int_auth_data = b"\xaa" * 32 + b"\xbb" * 32 + (3).to_bytes(4, "big")
    with_int_auth = signed_octets(REAL_MESSAGE, NR, PRF256, SK_PI, ID_BODY, int_auth_data)
    assert with_int_auth == octets + int_auth_data


def test_psk_auth_known_answer():
    octets = signed_octets(REAL_MESSAGE, NR, PRF256, SK_PI, ID_BODY)
    # Straight-line RFC 7296 2.15: prf(prf(Shared Secret, "Key Pad for IKEv2"), octets).
    pad_key = hmac.new(PSK, b"Key Pad for IKEv2", "sha256").digest()
    expected = hmac.new(pad_key, octets, "sha256").digest()
    auth = psk_auth(PRF256, PSK, octets)
    assert auth == expected
    assert auth.hex() == "f5858c982ec83ab0dcab657be51d61e35661698148067fd7ff19d7ea8d5b2227"


def intermediate_header(next_payload: int, length: int) -> bytes:
    """An IKE_INTERMEDIATE request header (exchange 43, I flag, Message ID 1)."""
    return (
        SPI_I
        + SPI_R
        + bytes([next_payload, 0x20, 43, 0x08])
        + (1).to_bytes(4, "big")
        + length.to_bytes(4, "big")
    )


def test_int_auth_octets_of_a_fragmented_message_field_by_field():
    # First fragment of an IKE_INTERMEDIATE request carrying KEi(1) = ML-KEM-768.
    ek = bytes(range(256)) * 4 + bytes(160)
    ke_payload = bytes([0, 0]) + (8 + len(ek)).to_bytes(2, "big") + bytes([0, 36, 0, 0]) + ek
    header = intermediate_header(53, 1248)
    octets = int_auth_octets(header, b"", 34, ke_payload)

    assert octets[0:8] == SPI_I
    assert octets[8:16] == SPI_R
    assert octets[16] == 46  # SKF (53) becomes SK (46)
    assert octets[17] == 0x20
    assert octets[18] == 43
    assert octets[19] == 0x08
    assert octets[20:24] == (1).to_bytes(4, "big")
    assert int.from_bytes(octets[24:28], "big") == 28 + 4 + len(ke_payload) == len(octets)
    assert octets[28] == 34  # SK header: Next Payload = first inner payload (KE)
    assert octets[29] == 0  # C bit and RESERVED
    assert int.from_bytes(octets[30:32], "big") == 4 + len(ke_payload)
    assert octets[32:] == ke_payload


def test_int_auth_octets_keep_unprotected_payloads_and_a_plain_sk_header():
    vendor_id = bytes([46, 0, 0, 12]) + b"pqike-vd"  # VID, then SK
    plaintext = bytes([0, 0, 0, 8]) + b"\x01\x02\x03\x04"
    header = intermediate_header(43, 999)
    octets = int_auth_octets(header, vendor_id, 41, plaintext)
    assert octets[16] == 43  # not SKF: left alone
    assert int.from_bytes(octets[24:28], "big") == len(octets) == 28 + 12 + 4 + 8
    assert octets[28:40] == vendor_id
    assert octets[40:44] == bytes([41, 0, 0, 12])
    assert octets[44:] == plaintext


def test_int_auth_octets_with_an_empty_sk_payload():
    octets = int_auth_octets(intermediate_header(46, 60), b"", 0, b"")
    assert len(octets) == 32
    assert int.from_bytes(octets[24:28], "big") == 32
    assert octets[28:] == bytes([0, 0, 0, 4])


def test_int_auth_octets_need_a_whole_header():
    with pytest.raises(LocalProtocolError):
        int_auth_octets(b"\x00" * 27, b"", 0, b"")


def test_int_auth_chains_over_the_exchanges():
    sk_p = bytes(range(48))
    a_p1, a_p2 = bytes(range(40)), bytes(range(50))
    first = int_auth(PRF384, sk_p, b"", a_p1)
    second = int_auth(PRF384, sk_p, first, a_p2)
    assert first == hmac.new(sk_p, a_p1, "sha384").digest()
    assert second == hmac.new(sk_p, first + a_p2, "sha384").digest()
    assert first.hex() == (
        "5a2eabe81e277674303e598dc83bb4c6d55d3c042f96881f37c83e3c5abc4609"
        "672bcc9ea1776ce77af0665e697a2734"
    )
    assert second.hex() == (
        "fe71607277736cc2b06804f9291efcce9baf075bb81f57a52d6bffe102b3344f"
        "e8de25c66e3ece0eeb4c9b38275e57ea"
    )


@pytest.mark.parametrize(
    ("spi_r", "address", "packed", "port", "expected"),
    [
        (
            bytes(8),
            "192.0.2.1",
            bytes([192, 0, 2, 1]),
            500,
            "9426429034924268452f8e3ff79fb69e2a8d71eb",
        ),
        (
            SPI_R,
            "2001:db8::1",
            bytes.fromhex("20010db8000000000000000000000001"),
            4500,
            "9de8bfefaab479f0d5a5609a6de20595c6307502",
        ),
    ],
)
def test_nat_detection_hash(spi_r, address, packed, port, expected):
    digest = nat_detection_hash(SPI_I, spi_r, address, port)
    assert digest == hashlib.sha1(SPI_I + spi_r + packed + port.to_bytes(2, "big")).digest()
    assert digest.hex() == expected


def test_cookie_is_version_then_sha256():
    ni = bytes(range(32))
    value = cookie(b"responder secret", ni, "192.0.2.1", SPI_I, 7)
    assert value[:4] == (7).to_bytes(4, "big")
    assert (
        value[4:]
        == hashlib.sha256(ni + bytes([192, 0, 2, 1]) + SPI_I + b"responder secret").digest()
    )
    assert value.hex() == (
        "00000007233d0125174f4ca89b7073c142f62cbfc09dfc1fded032e08aa88ea827621388"
    )
    assert cookie(b"another secret", ni, "192.0.2.1", SPI_I, 7) != value
    assert cookie(b"responder secret", ni, "192.0.2.2", SPI_I, 7) != value


def test_addresses_must_be_ip_addresses():
    with pytest.raises(LocalProtocolError):
        nat_detection_hash(SPI_I, SPI_R, "moon.strongswan.org", 500)
    with pytest.raises(LocalProtocolError):
        cookie(b"s", bytes(32), "300.0.0.1", SPI_I)
