"""AUTH payload inputs, IntAuth, NAT detection hashes and cookies.

RFC 7296 2.15 (signed octets, PSK AUTH), RFC 9242 3.3 (IntAuth over IKE_INTERMEDIATE
messages), RFC 7296 2.23 (NAT_DETECTION_*_IP) and RFC 7296 2.6 (COOKIE).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress

from ..constants import IKE_HEADER_LENGTH, PayloadType
from ..errors import LocalProtocolError
from .prf import Prf

KEY_PAD = b"Key Pad for IKEv2"
"""RFC 7296 2.15: the 17 ASCII bytes keyed into the PSK, without a terminating NUL."""

_IpAddress = str | ipaddress.IPv4Address | ipaddress.IPv6Address


def signed_octets(
    real_message: bytes,
    peer_nonce: bytes,
    prf: Prf,
    sk_p: bytes,
    id_body: bytes,
    int_auth: bytes = b"",
) -> bytes:
    """Return the octets an AUTH payload signs or MACs (RFC 7296 2.15, RFC 9242 3.3.2).

    ``RealMessage | NonceData | prf(SK_p, IDType | RESERVED | IDData) [| IntAuth]``:
    ``real_message`` is the IKE_SA_INIT message this side sent (without a non-ESP marker),
    ``peer_nonce`` the other side's Nonce data, ``sk_p`` this side's SK_pi or SK_pr,
    ``id_body`` this side's ID payload body and ``int_auth`` the RFC 9242 IntAuth
    (``IntAuth_iN | IntAuth_rN | IKE_AUTH MID``; empty without IKE_INTERMEDIATE).
    """
    return b"".join((real_message, peer_nonce, prf(sk_p, id_body), int_auth))


def psk_auth(prf: Prf, psk: bytes, octets: bytes) -> bytes:
    """Return the PSK AUTH data ``prf(prf(PSK, "Key Pad for IKEv2"), octets)`` (RFC 7296 2.15)."""
    return prf(prf(psk, KEY_PAD), octets)


def int_auth_octets(
    header: bytes, unprotected: bytes, sk_next_payload: int, plaintext: bytes
) -> bytes:
    """Return ``A | P`` of one IKE_INTERMEDIATE message (RFC 9242 3.3.2).

    ``header`` is the 28-byte IKE header as sent (of the first fragment when the message
    was fragmented), ``unprotected`` the payloads between it and the SK payload,
    ``sk_next_payload`` the type of the first inner payload and ``plaintext`` the inner
    payloads after decryption or reassembly (P; empty when the SK payload is empty).

    A is the header with Next Payload 53 (SKF) turned into 46 (SK) and Length set to
    ``|A| + |P|``, then the unprotected payloads, then a 4-byte SK generic header with
    Payload Length ``4 + |P|``: the message as if it had been sent unfragmented with no
    IV, padding or ICV.
    """
    if len(header) != IKE_HEADER_LENGTH:
        raise LocalProtocolError(f"an IKE header is 28 bytes, not {len(header)}")
    next_payload = header[16]
    if next_payload == PayloadType.SKF:
        next_payload = PayloadType.SK
    length = IKE_HEADER_LENGTH + len(unprotected) + 4 + len(plaintext)
    # An SK payload over 64 KB can only exist fragmented (pqike's split KE payloads for
    # Classic McEliece), and its 16-bit length cannot be written: it wraps modulo 2^16,
    # a pqike convention (docs/protocol-notes.md). Within 64 KB this is RFC 9242 exactly.
    sk_length = (4 + len(plaintext)) & 0xFFFF
    return b"".join(
        (
            header[:16],
            bytes((next_payload,)),
            header[17:24],
            length.to_bytes(4, "big"),
            unprotected,
            bytes((sk_next_payload, 0)),
            sk_length.to_bytes(2, "big"),
            plaintext,
        )
    )


def int_auth(prf: Prf, sk_p: bytes, previous: bytes, octets: bytes) -> bytes:
    """Return ``IntAuth_N = prf(SK_p, IntAuth_(N-1) | A | P)`` (RFC 9242 3.3.2).

    ``previous`` is empty for the first IKE_INTERMEDIATE exchange; ``sk_p`` is the SK_pi or
    SK_pr in force when the message was protected, i.e. before this exchange's key update.
    """
    return prf(sk_p, previous + octets)


def _packed(address: _IpAddress) -> bytes:
    if type(address) is str:
        return _packed_text(address)
    if isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return address.packed  # already parsed: skip ip_address(), which re-parses
    return _packed_text(address)


@functools.lru_cache(maxsize=4096)
def _packed_text(address: str) -> bytes:
    """Parsing an address costs more than the hash over it, and a peer meets the same few
    addresses again and again (a bad one raises every time: exceptions are not cached)."""
    try:
        return ipaddress.ip_address(address).packed
    except ValueError:
        raise LocalProtocolError(f"{address!r} is not an IPv4 or IPv6 address") from None


def nat_detection_hash(spi_i: bytes, spi_r: bytes, address: _IpAddress, port: int) -> bytes:
    """Return NAT_DETECTION_*_IP data: ``SHA-1(SPIi | SPIr | IP | Port)`` (RFC 7296 2.23).

    The IP is 4 or 16 bytes, the port 2 bytes; SPIr is zero in IKE_SA_INIT requests.
    """
    return hashlib.sha1(spi_i + spi_r + _packed(address) + port.to_bytes(2, "big")).digest()


def cookie(secret: bytes, ni: bytes, address: _IpAddress, spi_i: bytes, version: int = 0) -> bytes:
    """Return COOKIE data ``VersionIDofSecret | SHA-256(Ni | IPi | SPIi | secret)`` (RFC 7296 2.6).

    The responder keeps only ``secret`` and its 4-byte ``version``, and recomputes the
    cookie to check the initiator's retry without holding per-request state.
    ``pqike.ike.cookies.CookieJar`` draws the random secrets and rotates them, as RFC
    7296 2.6 asks.
    """
    digest = hashlib.sha256(ni + _packed(address) + spi_i + secret).digest()
    return version.to_bytes(4, "big") + digest
