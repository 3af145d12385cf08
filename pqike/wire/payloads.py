"""Frozen dataclasses for the IKE header and every payload (RFC 7296 section 3).

These are plain values: the codec (``pqike.wire.codec``) turns them into bytes and back.
Numeric fields are plain ``int`` so unknown registry values survive a round trip.
``critical`` is the generic header's C bit (RFC 7296 3.2).
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field
from typing import TypeVar

from .._fastinit import fast_init
from ..constants import (
    IKE_HEADER_LENGTH,
    HeaderFlag,
    PayloadType,
    TransformAttributeType,
    TsType,
)

# Plain ints: IntFlag arithmetic costs a microsecond per test on the hot path.
_RESPONSE = int(HeaderFlag.RESPONSE)
_INITIATOR = int(HeaderFlag.INITIATOR)


@fast_init
@dataclass(frozen=True, slots=True)
class IkeHeader:
    """The fixed 28-byte IKE header (RFC 7296 3.1)."""

    spi_i: bytes
    spi_r: bytes
    next_payload: int
    exchange_type: int
    flags: int
    message_id: int
    length: int = IKE_HEADER_LENGTH
    major_version: int = 2
    minor_version: int = 0

    @property
    def is_response(self) -> bool:
        return bool(self.flags & _RESPONSE)

    @property
    def is_initiator(self) -> bool:
        """The I flag: set by the original initiator of the IKE SA."""
        return bool(self.flags & _INITIATOR)


# --- SA payload ---------------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class TransformAttribute:
    """A transform attribute: TV format when ``value`` is ``int``, TLV when ``bytes``."""

    type: int
    value: int | bytes


@fast_init
@dataclass(frozen=True, slots=True)
class Transform:
    type: int
    id: int
    attributes: tuple[TransformAttribute, ...] = ()

    @property
    def key_length(self) -> int | None:
        """The Key Length attribute in bits (RFC 7296 3.3.5), if present."""
        for a in self.attributes:
            if a.type == TransformAttributeType.KEY_LENGTH and isinstance(a.value, int):
                return a.value
        return None


@fast_init
@dataclass(frozen=True, slots=True)
class Proposal:
    number: int
    protocol_id: int
    transforms: tuple[Transform, ...]
    spi: bytes = b""


@fast_init
@dataclass(frozen=True, slots=True)
class SaPayload:
    proposals: tuple[Proposal, ...]
    critical: bool = False
    payload_type = PayloadType.SA


# --- simple payloads --------------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class KePayload:
    method: int
    data: bytes
    critical: bool = False
    payload_type = PayloadType.KE


@fast_init
@dataclass(frozen=True, slots=True)
class NoncePayload:
    data: bytes
    critical: bool = False
    payload_type = PayloadType.NONCE


@fast_init
@dataclass(frozen=True, slots=True)
class _IdPayload:
    """IDi and IDr share one layout (RFC 7296 3.5): ID Type | RESERVED(3) | data."""

    id_type: int
    data: bytes
    critical: bool = False

    @property
    def body(self) -> bytes:
        """IDType | RESERVED(3) | data: what RFC 7296 2.15 MACs into the AUTH octets."""
        return bytes([self.id_type, 0, 0, 0]) + self.data


@fast_init
@dataclass(frozen=True, slots=True)
class IdiPayload(_IdPayload):
    """Identification of the initiator (RFC 7296 3.5)."""

    payload_type = PayloadType.IDi


@fast_init
@dataclass(frozen=True, slots=True)
class IdrPayload(_IdPayload):
    """Identification of the responder (RFC 7296 3.5)."""

    payload_type = PayloadType.IDr


@fast_init
@dataclass(frozen=True, slots=True)
class CertPayload:
    encoding: int
    data: bytes
    critical: bool = False
    payload_type = PayloadType.CERT


@fast_init
@dataclass(frozen=True, slots=True)
class CertReqPayload:
    encoding: int
    data: bytes
    critical: bool = False
    payload_type = PayloadType.CERTREQ


@fast_init
@dataclass(frozen=True, slots=True)
class AuthPayload:
    method: int
    data: bytes
    critical: bool = False
    payload_type = PayloadType.AUTH


@fast_init
@dataclass(frozen=True, slots=True)
class NotifyPayload:
    notify_type: int
    data: bytes = b""
    protocol_id: int = 0
    spi: bytes = b""
    critical: bool = False
    payload_type = PayloadType.NOTIFY


@fast_init
@dataclass(frozen=True, slots=True)
class DeletePayload:
    """Delete (RFC 7296 3.11); an IKE SA delete has protocol 1, SPI size 0 and no SPIs."""

    protocol_id: int
    spi_size: int
    spis: tuple[bytes, ...] = ()
    critical: bool = False
    payload_type = PayloadType.DELETE


@fast_init
@dataclass(frozen=True, slots=True)
class VendorIdPayload:
    data: bytes
    critical: bool = False
    payload_type = PayloadType.VENDOR_ID


# --- traffic selectors ------------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class TrafficSelector:
    """One selector (RFC 7296 3.13.1); addresses are 4 or 16 raw bytes."""

    ts_type: int
    ip_protocol: int
    start_port: int
    end_port: int
    start_address: bytes
    end_address: bytes

    @classmethod
    def from_range(
        cls,
        start: str,
        end: str | None = None,
        *,
        ip_protocol: int = 0,
        start_port: int = 0,
        end_port: int = 65535,
    ) -> TrafficSelector:
        """Build a selector from address strings; ``end`` defaults to ``start``."""
        a = ipaddress.ip_address(start)
        b = ipaddress.ip_address(end if end is not None else start)
        ts_type = TsType.TS_IPV4_ADDR_RANGE if a.version == 4 else TsType.TS_IPV6_ADDR_RANGE
        return cls(int(ts_type), ip_protocol, start_port, end_port, a.packed, b.packed)

    @classmethod
    def from_network(cls, cidr: str, **kw: int) -> TrafficSelector:
        """Build a selector covering a whole network such as ``0.0.0.0/0``."""
        net = ipaddress.ip_network(cidr, strict=False)
        return cls.from_range(str(net[0]), str(net[-1]), **kw)

    def __str__(self) -> str:
        return _selector_text(self)

    def _text(self) -> str:
        try:
            a = ipaddress.ip_address(self.start_address)
            b = ipaddress.ip_address(self.end_address)
            addr = f"{a}-{b}" if a != b else str(a)
        except ValueError:
            addr = f"{self.start_address.hex()}-{self.end_address.hex()}"
        ports = (
            ""
            if (self.start_port, self.end_port) == (0, 65535)
            else (f"[{self.start_port}-{self.end_port}]")
        )
        proto = f"/{self.ip_protocol}" if self.ip_protocol else ""
        return f"{addr}{proto}{ports}"


@functools.lru_cache(maxsize=1024)
def _selector_text(selector: TrafficSelector) -> str:
    # Event logs print every Child SA's selectors, and ipaddress is slow at it.
    return selector._text()


@fast_init
@dataclass(frozen=True, slots=True)
class _TsPayload:
    """TSi and TSr share one layout (RFC 7296 3.13)."""

    selectors: tuple[TrafficSelector, ...]
    critical: bool = False


@fast_init
@dataclass(frozen=True, slots=True)
class TsiPayload(_TsPayload):
    payload_type = PayloadType.TSi


@fast_init
@dataclass(frozen=True, slots=True)
class TsrPayload(_TsPayload):
    payload_type = PayloadType.TSr


# --- protected payloads -----------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class SkPayload:
    """Encrypted and Authenticated (RFC 7296 3.14), kept opaque: IV | ciphertext | ICV.

    ``next_payload`` is the type of the first inner payload (in the generic header).
    """

    next_payload: int
    encrypted: bytes
    critical: bool = False
    payload_type = PayloadType.SK


@fast_init
@dataclass(frozen=True, slots=True)
class SkfPayload:
    """Encrypted Fragment (RFC 7383 2.5): numbered from 1; ``next_payload`` 0 after fragment 1."""

    next_payload: int
    fragment_number: int
    total_fragments: int
    encrypted: bytes
    critical: bool = False
    payload_type = PayloadType.SKF


# --- configuration, EAP, unknown --------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class ConfigAttribute:
    type: int
    value: bytes = b""


@fast_init
@dataclass(frozen=True, slots=True)
class CpPayload:
    cfg_type: int
    attributes: tuple[ConfigAttribute, ...] = ()
    critical: bool = False
    payload_type = PayloadType.CP


@fast_init
@dataclass(frozen=True, slots=True)
class EapPayload:
    """EAP (RFC 7296 3.16), kept opaque: the whole EAP message."""

    data: bytes
    critical: bool = False
    payload_type = PayloadType.EAP


@fast_init
@dataclass(frozen=True, slots=True)
class UnknownPayload:
    """A payload type we do not implement, kept verbatim (RFC 7296 2.5)."""

    type: int
    data: bytes
    critical: bool = False

    @property
    def payload_type(self) -> int:
        return self.type


Payload = (
    SaPayload
    | KePayload
    | NoncePayload
    | IdiPayload
    | IdrPayload
    | CertPayload
    | CertReqPayload
    | AuthPayload
    | NotifyPayload
    | DeletePayload
    | VendorIdPayload
    | TsiPayload
    | TsrPayload
    | SkPayload
    | SkfPayload
    | CpPayload
    | EapPayload
    | UnknownPayload
)

_P = TypeVar("_P")
"""A payload class, for :meth:`Message.first`."""


@fast_init
@dataclass(frozen=True, slots=True)
class Message:
    """A decoded IKE message: header, payloads in wire order, and the exact bytes parsed.

    An SK or SKF payload, when present, is the last one and is not decrypted here.
    ``raw`` holds the bytes this message was decoded from (or encoded to), without the
    non-ESP marker: AUTH (RFC 7296 2.15) and IntAuth (RFC 9242 3.3.2) sign exact bytes.
    """

    header: IkeHeader
    payloads: tuple[Payload, ...]
    raw: bytes = field(default=b"", repr=False, compare=False)

    def first(self, cls: type[_P]) -> _P | None:
        """The first payload of class ``cls``, or ``None``."""
        for p in self.payloads:
            if isinstance(p, cls):
                return p
        return None

    def notifies(self) -> list[NotifyPayload]:
        return [p for p in self.payloads if isinstance(p, NotifyPayload)]
