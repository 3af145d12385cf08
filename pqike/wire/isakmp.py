"""IKEv1 (ISAKMP) messages: enough of RFC 2408 to name and measure each one.

pqike speaks IKEv2 only; this module exists so the experiment runner can measure an IKEv1
peer pair (two strongSwan daemons) from the datagrams the relay logged. It reads:

- the ISAKMP header (RFC 2408 3.1): both cookies, the first payload, the version, the
  exchange type (identity protection = main mode, aggressive, informational, and RFC
  2409's quick mode), the flags (E: the payloads after the header are encrypted) and the
  message ID;
- the chain of generic payload headers (RFC 2408 3.2) of a message sent in the clear,
  which names its payloads and their sizes;
- IKEv1 fragments (strongSwan's and Cisco's IKE fragmentation vendor extension, payload
  type 132: fragment ID, number and a last-fragment flag), so a fragmented message's
  datagrams join into one message.

Encrypted payloads are not decrypted: the E flag says the rest of the message is one
ciphertext whose size is all that is known. Only the standard library and
:mod:`pqike.errors`: no crypto.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag

from ..errors import InvalidSyntax, TruncatedMessage

ISAKMP_HEADER_LENGTH = 28
"""RFC 2408 3.1: two 8-byte cookies, next payload, version, exchange type, flags, message
ID and length (the same size as IKEv2's header)."""
GENERIC_HEADER_LENGTH = 4
"""RFC 2408 3.2: next payload, reserved, payload length."""
IKEV1_MAJOR_VERSION = 1
"""The major version in the high nibble of the version octet (0x10 for IKEv1)."""
_VERSION_OFFSET = 17
_FRAGMENT_BODY = struct.Struct("!HBB")
"""The fragment payload after its generic header: fragment ID, number, flags."""
FRAGMENT_LAST = 0x01
"""The fragment payload's flag that marks the last fragment of a message."""


class ExchangeType(IntEnum):
    """ISAKMP exchange types (RFC 2408 4.1 and RFC 2409 5.5 / 9)."""

    IDENTITY_PROTECTION = 2
    """Main mode (RFC 2409 5): six messages, identities encrypted."""
    AUTHENTICATION_ONLY = 3
    AGGRESSIVE = 4
    """Aggressive mode (RFC 2409 5): three messages, identities in the clear."""
    INFORMATIONAL = 5
    TRANSACTION = 6
    """Mode config (draft-dukes-ike-mode-cfg)."""
    QUICK_MODE = 32
    """Quick mode (RFC 2409 5.5): three messages under the ISAKMP SA, a Child (IPsec) SA."""
    NEW_GROUP_MODE = 33


EXCHANGE_NAMES: dict[int, str] = {
    ExchangeType.IDENTITY_PROTECTION: "MAIN_MODE",
    ExchangeType.AUTHENTICATION_ONLY: "AUTH_ONLY",
    ExchangeType.AGGRESSIVE: "AGGRESSIVE_MODE",
    ExchangeType.INFORMATIONAL: "INFORMATIONAL_V1",
    ExchangeType.TRANSACTION: "TRANSACTION",
    ExchangeType.QUICK_MODE: "QUICK_MODE",
    ExchangeType.NEW_GROUP_MODE: "NEW_GROUP_MODE",
}
"""How the runner's tables name IKEv1 exchanges: the names IKEv1 is discussed in (main
mode is RFC 2408's identity protection exchange); ``_V1`` keeps the informational
exchange apart from IKEv2's INFORMATIONAL."""


class Flag(IntFlag):
    """ISAKMP header flags (RFC 2408 3.1)."""

    ENCRYPTION = 0x01
    """E: every payload after the header is encrypted."""
    COMMIT = 0x02
    AUTHENTICATION_ONLY = 0x04


class PayloadType(IntEnum):
    """ISAKMP payload types (RFC 2408 3.1; NAT-T RFC 3947; fragmentation 132)."""

    NONE = 0
    SA = 1
    PROPOSAL = 2
    TRANSFORM = 3
    KE = 4
    ID = 5
    CERT = 6
    CERTREQ = 7
    HASH = 8
    SIG = 9
    NONCE = 10
    NOTIFY = 11
    DELETE = 12
    VENDOR_ID = 13
    ATTRIBUTE = 14
    NAT_D = 20
    NAT_OA = 21
    FRAGMENT = 132


PAYLOAD_NAMES: dict[int, str] = {
    PayloadType.SA: "SA",
    PayloadType.KE: "KE",
    PayloadType.ID: "ID",
    PayloadType.CERT: "CERT",
    PayloadType.CERTREQ: "CERTREQ",
    PayloadType.HASH: "HASH",
    PayloadType.SIG: "SIG",
    PayloadType.NONCE: "Ni/Nr",
    PayloadType.NOTIFY: "N",
    PayloadType.DELETE: "D",
    PayloadType.VENDOR_ID: "V",
    PayloadType.ATTRIBUTE: "ATTR",
    PayloadType.NAT_D: "NAT-D",
    PayloadType.NAT_OA: "NAT-OA",
    PayloadType.FRAGMENT: "FRAG",
}
"""Short payload names, as strongSwan's log writes them."""


@dataclass(frozen=True, slots=True)
class IsakmpHeader:
    """The ISAKMP header of an IKEv1 message (RFC 2408 3.1)."""

    initiator_cookie: bytes
    responder_cookie: bytes
    next_payload: int
    major_version: int
    minor_version: int
    exchange_type: int
    flags: int
    message_id: int
    length: int

    @property
    def encrypted(self) -> bool:
        """The E flag: the payloads are encrypted with the ISAKMP SA's key."""
        return bool(self.flags & Flag.ENCRYPTION)

    @property
    def exchange(self) -> str:
        """The exchange's name (``MAIN_MODE``, ``QUICK_MODE``, ...; the number if unknown)."""
        return EXCHANGE_NAMES.get(self.exchange_type, str(self.exchange_type))


@dataclass(frozen=True, slots=True)
class Fragment:
    """An IKEv1 fragment payload: one piece of a message too large for one datagram."""

    fragment_id: int
    number: int
    last: bool
    data_length: int


def is_ikev1(message: bytes) -> bool:
    """True when ``message`` (an IKE message, non-ESP marker removed) is long enough for an
    ISAKMP header and its major version is 1."""
    return (
        len(message) >= ISAKMP_HEADER_LENGTH
        and message[_VERSION_OFFSET] >> 4 == IKEV1_MAJOR_VERSION
    )


def parse_header(message: bytes) -> IsakmpHeader:
    """The ISAKMP header of ``message``; ``InvalidSyntax`` when it is not one."""
    if len(message) < ISAKMP_HEADER_LENGTH:
        raise TruncatedMessage(
            f"an ISAKMP header needs {ISAKMP_HEADER_LENGTH} bytes, got {len(message)}"
        )
    i_cookie, r_cookie, next_payload, version, exchange, flags, mid, length = struct.unpack_from(
        "!8s8sBBBBII", message
    )
    major, minor = version >> 4, version & 0x0F
    if major != IKEV1_MAJOR_VERSION:
        raise InvalidSyntax(f"ISAKMP major version {major}, not {IKEV1_MAJOR_VERSION}")
    if length < ISAKMP_HEADER_LENGTH:
        raise InvalidSyntax(f"ISAKMP length {length} is shorter than its header")
    return IsakmpHeader(
        i_cookie, r_cookie, next_payload, major, minor, exchange, flags, mid, length
    )


def payload_chain(message: bytes, header: IsakmpHeader | None = None) -> list[tuple[int, int]]:
    """(type, length) of each payload of a message sent in the clear, from the generic
    payload headers (RFC 2408 3.2); an encrypted message (E flag) has none readable.

    ``InvalidSyntax`` when a length runs past the message or below a generic header.
    """
    header = header or parse_header(message)
    if header.encrypted:
        return []
    out: list[tuple[int, int]] = []
    end = min(header.length, len(message))
    pos, kind = ISAKMP_HEADER_LENGTH, header.next_payload
    while kind != PayloadType.NONE:
        if pos + GENERIC_HEADER_LENGTH > end:
            raise TruncatedMessage(f"payload {kind} at offset {pos} runs past the message")
        following, _, length = struct.unpack_from("!BBH", message, pos)
        if length < GENERIC_HEADER_LENGTH or pos + length > end:
            raise InvalidSyntax(f"payload {kind} at offset {pos} has a bad length {length}")
        out.append((kind, length))
        pos += length
        kind = following
    return out


def fragment_of(message: bytes, header: IsakmpHeader | None = None) -> Fragment | None:
    """The fragment payload of ``message`` when it is an IKEv1 fragment, else ``None``."""
    header = header or parse_header(message)
    if header.next_payload != PayloadType.FRAGMENT or header.encrypted:
        return None
    pos = ISAKMP_HEADER_LENGTH
    if len(message) < pos + GENERIC_HEADER_LENGTH + _FRAGMENT_BODY.size:
        raise TruncatedMessage("a fragment payload needs 8 bytes")
    _, _, length = struct.unpack_from("!BBH", message, pos)
    fid, number, flags = _FRAGMENT_BODY.unpack_from(message, pos + GENERIC_HEADER_LENGTH)
    body = GENERIC_HEADER_LENGTH + _FRAGMENT_BODY.size
    if length < body or pos + length > len(message):
        raise InvalidSyntax(f"fragment payload has a bad length {length}")
    return Fragment(fid, number, bool(flags & FRAGMENT_LAST), length - body)


class Attribute(IntEnum):
    """Phase 1 SA attributes (RFC 2409 appendix A)."""

    ENCRYPTION = 1
    HASH = 2
    AUTH_METHOD = 3
    GROUP = 4
    KEY_LENGTH = 14


_ENCRYPTION = {1: "DES_CBC", 5: "3DES_CBC", 7: "AES_CBC"}
_HASH = {1: "MD5", 2: "SHA1", 4: "SHA2_256", 5: "SHA2_384", 6: "SHA2_512"}
_AUTH = {1: "PSK", 3: "RSA_SIG", 9: "ECDSA_256"}
_GROUP = {2: "MODP_1024", 14: "MODP_2048", 15: "MODP_3072", 19: "ECP_256", 31: "CURVE_25519"}
"""Names of the values strongSwan offers (RFC 2409 appendix A, RFC 3526, RFC 4753;
Curve25519 as group 31, the number strongSwan uses for IKEv1 too)."""
_SA_HEADER = 12
"""SA payload: generic header, DOI, situation (RFC 2407 4.6.1)."""


def phase1_transform(message: bytes, header: IsakmpHeader | None = None) -> str | None:
    """The first transform of a clear message's SA payload, e.g.
    ``AES_CBC_256/HMAC_SHA2_384/CURVE_25519/PSK``: in a main or aggressive mode response
    it is the transform the responder chose. ``None`` when there is no readable SA."""
    header = header or parse_header(message)
    try:
        chain = payload_chain(message, header)
    except InvalidSyntax:
        return None
    pos = ISAKMP_HEADER_LENGTH
    for kind, length in chain:
        if kind == PayloadType.SA:
            return _first_transform(message[pos : pos + length])
        pos += length
    return None


def _first_transform(sa: bytes) -> str | None:
    # Proposal payload: generic header, number, protocol, SPI size, transforms (RFC 2408
    # 3.5); then the first transform payload: generic header, number, ID, reserved (3.6).
    pos = _SA_HEADER
    if len(sa) < pos + 8:
        return None
    spi_size = sa[pos + 6]
    pos += 8 + spi_size
    if len(sa) < pos + 8:
        return None
    _, _, length = struct.unpack_from("!BBH", sa, pos)
    end = min(pos + length, len(sa))
    pos += 8
    values: dict[int, int] = {}
    while pos + 4 <= end:
        kind, value = struct.unpack_from("!HH", sa, pos)
        if kind & 0x8000:  # TV: the value is the two bytes (RFC 2408 3.3, AF = 1)
            values[kind & 0x7FFF] = value
            pos += 4
        else:  # TLV: value is the length; read it as one integer
            data = sa[pos + 4 : pos + 4 + value]
            values[kind] = int.from_bytes(data, "big") if data else 0
            pos += 4 + value
    if Attribute.ENCRYPTION not in values:
        return None
    encr = _ENCRYPTION.get(values[Attribute.ENCRYPTION], str(values[Attribute.ENCRYPTION]))
    if Attribute.KEY_LENGTH in values:
        encr += f"_{values[Attribute.KEY_LENGTH]}"
    parts = [encr]
    if Attribute.HASH in values:
        parts.append("HMAC_" + _HASH.get(values[Attribute.HASH], str(values[Attribute.HASH])))
    if Attribute.GROUP in values:
        parts.append(_GROUP.get(values[Attribute.GROUP], f"group {values[Attribute.GROUP]}"))
    if Attribute.AUTH_METHOD in values:
        method = values[Attribute.AUTH_METHOD]
        parts.append(_AUTH.get(method, f"auth {method}"))
    return "/".join(parts)


def payload_names(chain: list[tuple[int, int]]) -> list[str]:
    """Short names of a payload chain's types."""
    return [PAYLOAD_NAMES.get(kind, str(kind)) for kind, _ in chain]


__all__ = [
    "EXCHANGE_NAMES",
    "FRAGMENT_LAST",
    "ISAKMP_HEADER_LENGTH",
    "Attribute",
    "ExchangeType",
    "Flag",
    "Fragment",
    "IsakmpHeader",
    "PayloadType",
    "fragment_of",
    "is_ikev1",
    "parse_header",
    "payload_chain",
    "payload_names",
    "phase1_transform",
]
