"""Bytes <-> payload dataclasses for IKEv2 messages (RFC 7296 section 3, RFC 7383 2.5).

Decoding is strict about structure and lenient about values: every length, count and
"Last Substruc" marker must agree with the bytes actually present, but unknown registry
numbers (transform IDs, notify types, ...) are kept as plain ``int``. A malformed message
raises a ``ProtocolError`` subclass whose message starts with ``at offset N:``, where N
is counted from the first byte of the IKE header; nothing else escapes the decoder.

Encoding trusts the caller for values (a research tool must be able to send a 4-byte
nonce to see what a peer does) but refuses what cannot be represented on the wire at
all, such as a 9-byte SPI or a payload over 65535 bytes, with ``LocalProtocolError``.

SK and SKF payloads stay opaque here; ``sk_split`` hands the crypto layer the exact
associated data and ciphertext, and ``decode_payloads`` decodes the plaintext it returns.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

from ..constants import (
    GENERIC_PAYLOAD_HEADER_LENGTH,
    IKE_HEADER_LENGTH,
    ExchangeType,
    PayloadType,
    TsType,
)
from ..errors import (
    InvalidMajorVersion,
    InvalidSyntax,
    LocalProtocolError,
    TruncatedMessage,
    UnsupportedCriticalPayload,
)
from .buffer import Buffer
from .payloads import (
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
    Message,
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
)

__all__ = [
    "decode_header",
    "decode_message",
    "decode_payloads",
    "encode_header",
    "encode_header_as",
    "encode_message",
    "encode_message_typed",
    "encode_payloads",
    "encode_payloads_typed",
    "payload_type_of",
    "sk_split",
]

_HEADER = struct.Struct("!8s8sBBBBII")
# A known exchange type decodes to its ExchangeType member (an int that prints its name);
# a dict lookup keeps the header path as fast as before.
_EXCHANGE_TYPES = {int(e): e for e in ExchangeType}
_GENERIC = struct.Struct("!BBH")
_PROPOSAL = struct.Struct("!BxHBBBB")
_TRANSFORM = struct.Struct("!BxHBxH")
_TWO_U16 = struct.Struct("!HH")
_NOTIFY = struct.Struct("!BBH")  # also the Delete header: Protocol ID, SPI Size, a 16-bit field
_TS = struct.Struct("!BBHHH")
_U8_PAD3 = struct.Struct("!B3x")
_U16_PAD2 = struct.Struct("!H2x")
_U8 = struct.Struct("!B")
_CRITICAL = 0x80
# RFC 7296 3.3.1 / 3.3.2: the "Last Substruc" value announcing another proposal / transform.
_MORE_PROPOSALS = 2
_MORE_TRANSFORMS = 3
_PROPOSAL_HEADER = 8
_TRANSFORM_HEADER = 8
_ATTRIBUTE_TV = 0x8000  # RFC 7296 3.3.5: AF bit set means a 2-byte value follows the type
_CP_TYPE_MASK = 0x7FFF  # RFC 7296 3.15.1: the top bit is reserved
# RFC 7296 3.13.1: selector length for each address family (8 fixed bytes + 2 addresses).
_TS_LENGTH: dict[int, int] = {TsType.TS_IPV4_ADDR_RANGE: 16, TsType.TS_IPV6_ADDR_RANGE: 40}
_TS_MIN_LENGTH = 16
_NONCE_MIN, _NONCE_MAX = 16, 256  # RFC 7296 3.9
_SK, _SKF = int(PayloadType.SK), int(PayloadType.SKF)


def _name(payload_type: int) -> str:
    try:
        return f"{PayloadType(payload_type).name} payload"
    except ValueError:
        return f"payload of type {payload_type}"


# --- header -------------------------------------------------------------------------------


def decode_header(data: bytes) -> IkeHeader:
    """Decode the 28-byte IKE header at the start of ``data`` (RFC 7296 3.1).

    Raises ``TruncatedMessage`` if fewer than 28 bytes are given and
    ``InvalidMajorVersion`` unless the major version is 2. The Length field is returned
    as sent; comparing it with the datagram is ``decode_message``'s job. The exchange
    type is an ``ExchangeType`` when the registry knows it, else the plain ``int``.
    """
    if len(data) < IKE_HEADER_LENGTH:
        raise TruncatedMessage(
            f"the IKE header needs {IKE_HEADER_LENGTH} bytes but only {len(data)} were received",
            offset=0,
        )
    spi_i, spi_r, next_payload, version, exchange, flags, message_id, length = _HEADER.unpack_from(
        data
    )
    major, minor = version >> 4, version & 0x0F
    if major != 2:
        # RFC 7296 2.5: answered with INVALID_MAJOR_VERSION, our version in the header.
        raise InvalidMajorVersion(f"IKE major version {major} is not supported", offset=17)
    # Positional (the field order of IkeHeader): keywords cost a third more per header.
    return IkeHeader(
        spi_i,
        spi_r,
        next_payload,
        _EXCHANGE_TYPES.get(exchange, exchange),
        flags,
        message_id,
        length,
        major,
        minor,
    )


def _pack_header(header: IkeHeader, next_payload: int, length: int) -> bytes:
    if len(header.spi_i) != 8 or len(header.spi_r) != 8:
        raise LocalProtocolError("IKE SPIs must be exactly 8 bytes each")
    if not (0 <= header.major_version <= 15 and 0 <= header.minor_version <= 15):
        raise LocalProtocolError("IKE major and minor versions must each fit in 4 bits")
    try:
        return _HEADER.pack(
            header.spi_i,
            header.spi_r,
            next_payload,
            (header.major_version << 4) | header.minor_version,
            header.exchange_type,
            header.flags,
            header.message_id,
            length,
        )
    except struct.error as exc:
        raise LocalProtocolError(f"IKE header field out of range: {exc}") from None


def encode_header(header: IkeHeader) -> bytes:
    """Encode ``header`` as 28 bytes, taking Next Payload and Length verbatim."""
    return _pack_header(header, header.next_payload, header.length)


# --- message --------------------------------------------------------------------------------


def decode_message(data: bytes) -> Message:
    """Decode one whole IKE message (without the non-ESP marker).

    The header's Length must equal ``len(data)``; the payload chain is then walked from the
    header's Next Payload. SK and SKF payloads are kept encrypted (see ``sk_split``).
    """
    header = decode_header(data)
    if header.length != len(data):
        raise InvalidSyntax(
            f"the IKE header says the message is {header.length} bytes "
            f"but {len(data)} bytes were received",
            offset=24,
        )
    raw = data if type(data) is bytes else bytes(data)
    payloads = _decode_chain(header.next_payload, raw, IKE_HEADER_LENGTH, len(raw), 0)
    return Message(header, payloads, raw=raw)


def encode_message(header: IkeHeader, payloads: Sequence[Payload]) -> bytes:
    """Encode a whole message; the header's Next Payload and Length are recomputed."""
    return encode_message_typed(header, payloads)[0]


def encode_message_typed(
    header: IkeHeader, payloads: Sequence[Payload]
) -> tuple[bytes, tuple[int, ...]]:
    """``encode_message``, and the type of each payload in order."""
    body, types = encode_payloads_typed(payloads)
    return _pack_header(
        header, types[0] if types else 0, IKE_HEADER_LENGTH + len(body)
    ) + body, types


def encode_header_as(header: IkeHeader, next_payload: int, length: int) -> bytes:
    """Encode ``header`` with ``next_payload`` and ``length`` in place of its own (what a
    protected message or fragment needs, without making another ``IkeHeader``)."""
    return _pack_header(header, next_payload, length)


def payload_type_of(payload: Payload) -> int:
    """The payload type number that announces ``payload`` in the chain."""
    return int(payload.payload_type)


def sk_split(message: Message) -> tuple[bytes, bytes]:
    """Split a decoded message ending in SK or SKF into ``(aad, encrypted)``.

    ``aad`` is every byte from the IKE header up to and including the SK header (4 bytes)
    or SKF header (8 bytes), with the lengths as received: RFC 5282 5.1 and RFC 7383 2.5
    authenticate exactly these. ``encrypted`` is IV | ciphertext | ICV.
    """
    last = message.payloads[-1] if message.payloads else None
    if not isinstance(last, SkPayload | SkfPayload):
        raise LocalProtocolError("the message has no SK or SKF payload")
    raw, encrypted = message.raw, last.encrypted
    # The decoder guarantees SK/SKF is last and the header length equals len(raw), so the
    # encrypted bytes are the tail of raw and everything before them is the AAD.
    sk_header = 4 if isinstance(last, SkPayload) else 8
    if len(raw) < IKE_HEADER_LENGTH + sk_header + len(encrypted) or not raw.endswith(encrypted):
        raise LocalProtocolError("the message's raw bytes do not end with its SK payload")
    return raw[: len(raw) - len(encrypted)], encrypted


# --- payload chain: decode ------------------------------------------------------------------


def decode_payloads(first_type: int, data: bytes, *, offset: int = 0) -> tuple[Payload, ...]:
    """Decode a payload chain starting with type ``first_type`` that fills ``data`` exactly.

    Used for the message body and for the plaintext of an SK/SKF payload. ``offset`` is
    where ``data[0]`` sits in the message, so error offsets point into the whole message.
    """
    if type(data) is not bytes:
        data = bytes(data)
    return _decode_chain(first_type, data, 0, len(data), offset)


# The chain walks plain offsets into one bytes object: a Buffer per payload cost more than
# most payloads' own decoding. A decoder gets ``(data, start, end, base, following,
# critical)`` with ``data[start:end]`` the body (already checked against the payload's
# minimum) and ``base + i`` the message offset of ``data[i]``; the structured payloads
# (SA, TS, Delete, CP) still read through a bounds-checked Buffer.


def _decode_chain(
    next_type: int, data: bytes, pos: int, end: int, base: int
) -> tuple[Payload, ...]:
    payloads: list[Payload] = []
    append = payloads.append
    unpack = _GENERIC.unpack_from
    decoders = _DECODERS
    header_length = GENERIC_PAYLOAD_HEADER_LENGTH
    while next_type:
        remaining = end - pos
        if remaining < header_length:
            raise TruncatedMessage(
                f"the payload chain runs off the end: the next is a {_name(next_type)} "
                f"but only {remaining} bytes remain",
                offset=base + pos,
            )
        following, flags, length = unpack(data, pos)
        critical = flags >= _CRITICAL  # the top bit of a byte (RFC 7296 3.2)
        if not header_length <= length <= remaining:  # one test when valid
            if length < header_length:
                raise InvalidSyntax(
                    f"{_name(next_type)} length {length} is less than its 4-byte header",
                    offset=base + pos,
                )
            raise TruncatedMessage(
                f"{_name(next_type)} length {length} runs past the end of the data, "
                f"which has {remaining} bytes left",
                offset=base + pos,
            )
        body_end = pos + length
        entry = decoders.get(next_type)
        if entry is None:
            # RFC 7296 2.5: skip an unknown payload unless its critical bit is set.
            if critical:
                raise UnsupportedCriticalPayload(next_type, offset=base + pos)
            append(UnknownPayload(next_type, data[pos + header_length : body_end]))
        else:
            decoder, min_body = entry
            if length - header_length < min_body:
                raise InvalidSyntax(
                    f"{_name(next_type)} length {length} is less than its minimum of "
                    f"{min_body + header_length} bytes",
                    offset=base + pos,
                )
            append(decoder(data, pos + header_length, body_end, base, following, critical))
        pos = body_end
        if next_type == _SK or next_type == _SKF:
            # RFC 7296 3.14, RFC 7383 2.5: SK/SKF is last; its Next Payload is the first
            # inner payload, so the outer chain ends here.
            if pos < end:
                raise InvalidSyntax(
                    f"{end - pos} bytes follow the {_name(next_type)}, "
                    "which must be the last payload",
                    offset=base + pos,
                )
            break
        next_type = following
    if pos < end:
        raise InvalidSyntax(
            f"{end - pos} bytes follow the last payload of the chain",
            offset=base + pos,
        )
    return tuple(payloads)


def _end_check(body: Buffer, what: str) -> None:
    if not body.eof():
        raise InvalidSyntax(
            f"{body.remaining} unexpected bytes follow {what}", offset=body.position
        )


_MEMO_LIMIT = 512
"""Entries each decode memo holds before it starts over (a flood of distinct payloads
costs the decoding it would have cost anyway, never memory)."""
_SA_MEMO: dict[bytes, SaPayload] = {}
_TRANSFORMS_DECODED: dict[tuple[int, bytes], tuple[Transform, ...]] = {}
"""One tuple per distinct encoding of a proposal's transforms, so the proposal memos
(which key on identity) see the same object every time; an ESP offer differs only in
its SPI, in front of this region."""
_TS_MEMO: dict[tuple[int, bytes], TsiPayload | TsrPayload] = {}


def _decode_sa(
    data: bytes, start: int, end: int, base: int, _next: int, critical: bool
) -> SaPayload:
    # A responder reads the same few offers again and again, and the result is a frozen
    # value: decode each distinct body once. (Only valid bodies are kept; a bad one raises
    # here every time with its offset.)
    body = data[start:end]
    if not critical:
        hit = _SA_MEMO.get(body)
        if hit is not None:
            return hit
    proposals = _known_proposals(data, start, end)
    if proposals is None:
        buf = Buffer(data, start=start, end=end, base=base)
        proposals = []
        while not buf.eof():
            proposals.append(_decode_proposal(buf, len(proposals) + 1))
    payload = SaPayload(tuple(proposals), critical)
    # Child SA offers carry fresh SPIs: such a body never comes again.
    if not critical and not any(p.spi for p in proposals):
        if len(_SA_MEMO) >= _MEMO_LIMIT:
            _SA_MEMO.clear()
        _SA_MEMO[body] = payload
    return payload


def _known_proposals(data: bytes, pos: int, end: int) -> list[Proposal] | None:
    """The proposals of an SA body whose every transform list was decoded before (a Child
    SA offer: known transforms behind a fresh SPI), read without a Buffer; ``None`` when
    anything is new or does not add up, for ``_decode_proposal`` to decode or report."""
    proposals: list[Proposal] = []
    unpack = _PROPOSAL.unpack_from
    known = _TRANSFORMS_DECODED
    while pos < end:
        if end - pos < _PROPOSAL_HEADER:
            return None
        last, length, number, protocol_id, spi_size, count = unpack(data, pos)
        following = pos + length
        spi_end = pos + _PROPOSAL_HEADER + spi_size
        # The same structure checks as _decode_proposal (whose transform checks a
        # known region passed when it was first decoded).
        if (
            length < _PROPOSAL_HEADER
            or following > end
            or spi_end > following
            or (last != 0 and last != _MORE_PROPOSALS)
            or (last == 0) != (following == end)
        ):
            return None
        transforms = known.get((count, data[spi_end:following]))
        if transforms is None:
            return None
        proposals.append(Proposal(number, protocol_id, transforms, data[pos + 8 : spi_end]))
        pos = following
    return proposals


def _decode_proposal(sa: Buffer, index: int) -> Proposal:
    start = sa.position
    last, length, number, protocol_id, spi_size, count = sa.pull_struct(
        _PROPOSAL, f"the header of proposal {index}"
    )
    if last != 0 and last != _MORE_PROPOSALS:
        raise InvalidSyntax(
            f"proposal {index} has Last Substruc {last}, which is neither 0 nor 2", offset=start
        )
    if length < _PROPOSAL_HEADER:
        raise InvalidSyntax(
            f"proposal {index} length {length} is less than its 8-byte header", offset=start
        )
    if length - _PROPOSAL_HEADER > sa.remaining:
        raise TruncatedMessage(
            f"proposal {index} length {length} runs past the end of the SA payload, "
            f"which has {sa.remaining + _PROPOSAL_HEADER} bytes left",
            offset=start,
        )
    p = sa.sub(length - _PROPOSAL_HEADER)
    spi = p.pull_bytes(spi_size, f"the SPI of proposal {index}")
    # Checked up front so an absurd count fails at once with a clear message.
    if count * _TRANSFORM_HEADER > p.remaining:
        raise InvalidSyntax(
            f"proposal {index} announces {count} transforms but only {p.remaining} bytes "
            "remain for them",
            offset=start,
        )
    region = p.peek_rest()
    transforms = _TRANSFORMS_DECODED.get((count, region))
    if transforms is not None:
        p.skip_rest()
    else:
        transforms = tuple(_decode_transform(p, index, i, count) for i in range(1, count + 1))
        _end_check(p, f"the {count} transforms of proposal {index}")
        if len(_TRANSFORMS_DECODED) >= _MEMO_LIMIT:
            _TRANSFORMS_DECODED.clear()
        _TRANSFORMS_DECODED[count, region] = transforms
    # RFC 7296 3.3.1: Last Substruc is 2 exactly when another proposal follows.
    if last == 0 and not sa.eof():
        raise InvalidSyntax(
            f"proposal {index} is marked last but {sa.remaining} bytes follow it", offset=start
        )
    if last == _MORE_PROPOSALS and sa.eof():
        raise InvalidSyntax(
            f"proposal {index} announces another proposal but none follows", offset=start
        )
    return Proposal(number, protocol_id, transforms, spi)


def _decode_transform(p: Buffer, proposal: int, index: int, count: int) -> Transform:
    start = p.position
    last, length, transform_type, transform_id = p.pull_struct(
        _TRANSFORM, f"the header of transform {index} of proposal {proposal}"
    )
    # RFC 7296 3.3.2: Last Substruc is 3 exactly when another transform follows.
    expected = _MORE_TRANSFORMS if index < count else 0
    if last != expected:
        raise InvalidSyntax(
            f"transform {index} of {count} in proposal {proposal} has Last Substruc {last} "
            f"instead of {expected}",
            offset=start,
        )
    if length < _TRANSFORM_HEADER:
        raise InvalidSyntax(
            f"transform {index} of proposal {proposal} has length {length}, "
            "less than its 8-byte header",
            offset=start,
        )
    if length - _TRANSFORM_HEADER > p.remaining:
        raise TruncatedMessage(
            f"transform {index} of proposal {proposal} has length {length}, which runs past "
            f"the end of its proposal",
            offset=start,
        )
    if length == _TRANSFORM_HEADER:
        return Transform(transform_type, transform_id)
    t = p.sub(length - _TRANSFORM_HEADER)
    attributes: list[TransformAttribute] = []
    while not t.eof():
        attr_type, value = t.pull_struct(_TWO_U16, "a transform attribute header")
        if not attr_type & _ATTRIBUTE_TV:
            # RFC 7296 3.3.5: AF clear means TLV, the second field being the value length.
            value = t.pull_bytes(value, "a transform attribute value")
        attributes.append(TransformAttribute(attr_type & 0x7FFF, value))
    return Transform(transform_type, transform_id, tuple(attributes))


def _decode_ke(
    data: bytes, start: int, end: int, base: int, _next: int, critical: bool
) -> KePayload:
    return KePayload((data[start] << 8) | data[start + 1], data[start + 4 : end], critical)


def _decode_nonce(
    data: bytes, start: int, end: int, base: int, _next: int, critical: bool
) -> NoncePayload:
    if not _NONCE_MIN <= end - start <= _NONCE_MAX:
        raise InvalidSyntax(
            f"nonce of {end - start} bytes is outside the 16 to 256 bytes RFC 7296 allows",
            offset=base + start,
        )
    return NoncePayload(data[start:end], critical)


def _decode_idi(
    data: bytes, start: int, end: int, base: int, _next: int, critical: bool
) -> IdiPayload:
    return IdiPayload(data[start], data[start + 4 : end], critical)


def _decode_idr(
    data: bytes, start: int, end: int, base: int, _next: int, critical: bool
) -> IdrPayload:
    return IdrPayload(data[start], data[start + 4 : end], critical)


def _decode_cert(
    data: bytes, start: int, end: int, base: int, _next: int, critical: bool
) -> CertPayload:
    return CertPayload(data[start], data[start + 1 : end], critical)


def _decode_certreq(
    data: bytes, start: int, end: int, base: int, _next: int, critical: bool
) -> CertReqPayload:
    return CertReqPayload(data[start], data[start + 1 : end], critical)


def _decode_auth(
    data: bytes, start: int, end: int, base: int, _next: int, critical: bool
) -> AuthPayload:
    return AuthPayload(data[start], data[start + 4 : end], critical)


_NOTIFY_MEMO_BODY = 4 + 16
"""Notify bodies up to this size (the 4-byte header and 16 bytes of SPI and data) are
decoded once: the status notifies every handshake repeats (FRAGMENTATION_SUPPORTED,
SIGNATURE_HASH_ALGORITHMS, ...) are short; NAT detection hashes (20 bytes of data) and
cookies, which differ every time, are longer and skip the memo."""
_NOTIFY_MEMO: dict[bytes, NotifyPayload] = {}


def _decode_notify(
    data: bytes, start: int, end: int, base: int, _next: int, critical: bool
) -> NotifyPayload:
    if not critical and end - start <= _NOTIFY_MEMO_BODY:
        body = data[start:end]
        hit = _NOTIFY_MEMO.get(body)
        if hit is None:
            hit = _decode_notify_body(data, start, end, base, critical)
            if len(_NOTIFY_MEMO) >= _MEMO_LIMIT:
                _NOTIFY_MEMO.clear()
            _NOTIFY_MEMO[body] = hit
        return hit
    return _decode_notify_body(data, start, end, base, critical)


def _decode_notify_body(
    data: bytes, start: int, end: int, base: int, critical: bool
) -> NotifyPayload:
    protocol_id, spi_size, notify_type = _NOTIFY.unpack_from(data, start)
    pos = start + 4
    spi = b""
    if spi_size:
        if pos + spi_size > end:
            # Raises TruncatedMessage with the Buffer's one-sentence message.
            Buffer(data, start=pos, end=end, base=base).pull_bytes(spi_size, "the Notify SPI")
        spi = data[pos : pos + spi_size]
        pos += spi_size
    return NotifyPayload(notify_type, data[pos:end], protocol_id, spi, critical)


def _decode_delete(
    data: bytes, start: int, end: int, base: int, _next: int, critical: bool
) -> DeletePayload:
    body = Buffer(data, start=start, end=end, base=base)
    protocol_id, spi_size, count = body.pull_struct(_NOTIFY)
    if spi_size == 0 and count:
        raise InvalidSyntax(f"Delete payload announces {count} SPIs of size 0", offset=base + start)
    if count * spi_size != body.remaining:
        raise InvalidSyntax(
            f"Delete payload announces {count} SPIs of {spi_size} bytes "
            f"but carries {body.remaining} bytes of SPIs",
            offset=base + start,
        )
    rest = body.pull_rest()
    spis = tuple(rest[i : i + spi_size] for i in range(0, len(rest), spi_size)) if count else ()
    return DeletePayload(protocol_id, spi_size, spis, critical)


def _decode_vendor_id(
    data: bytes, start: int, end: int, base: int, _next: int, critical: bool
) -> VendorIdPayload:
    return VendorIdPayload(data[start:end], critical)


def _decode_selectors(body: Buffer, name: str) -> tuple[TrafficSelector, ...]:
    start = body.position
    (count,) = body.pull_struct(_U8_PAD3)
    if count * _TS_MIN_LENGTH > body.remaining:
        raise InvalidSyntax(
            f"{name} payload announces {count} traffic selectors but only {body.remaining} "
            "bytes remain for them",
            offset=start,
        )
    selectors: list[TrafficSelector] = []
    for i in range(1, count + 1):
        ts_start = body.position
        ts_type, ip_protocol, length, start_port, end_port = body.pull_struct(
            _TS, f"the header of traffic selector {i}"
        )
        expected = _TS_LENGTH.get(ts_type)
        if expected is None:
            raise InvalidSyntax(
                f"traffic selector type {ts_type} cannot be kept: only IPv4 (7) and "
                "IPv6 (8) address ranges are supported",
                offset=ts_start,
            )
        if length != expected:
            raise InvalidSyntax(
                f"traffic selector {i} of type {ts_type} has length {length} instead of {expected}",
                offset=ts_start,
            )
        size = (expected - 8) // 2
        addresses = body.pull_bytes(2 * size, f"the addresses of traffic selector {i}")
        selectors.append(
            TrafficSelector(
                ts_type, ip_protocol, start_port, end_port, addresses[:size], addresses[size:]
            )
        )
    _end_check(body, f"the {count} traffic selectors of the {name} payload")
    return tuple(selectors)


def _decode_ts(
    cls: type[TsiPayload] | type[TsrPayload],
    name: str,
    data: bytes,
    start: int,
    end: int,
    base: int,
    critical: bool,
) -> TsiPayload | TsrPayload:
    # Like SA payloads: the same selectors (0.0.0.0/0, one host) come in every handshake.
    key = (int(cls.payload_type), data[start:end])
    if not critical:
        hit = _TS_MEMO.get(key)
        if hit is not None:
            return hit
    payload = cls(_decode_selectors(Buffer(data, start=start, end=end, base=base), name), critical)
    if not critical:
        if len(_TS_MEMO) >= _MEMO_LIMIT:
            _TS_MEMO.clear()
        _TS_MEMO[key] = payload
    return payload


def _decode_tsi(
    data: bytes, start: int, end: int, base: int, _next: int, critical: bool
) -> TsiPayload | TsrPayload:
    return _decode_ts(TsiPayload, "TSi", data, start, end, base, critical)


def _decode_tsr(
    data: bytes, start: int, end: int, base: int, _next: int, critical: bool
) -> TsiPayload | TsrPayload:
    return _decode_ts(TsrPayload, "TSr", data, start, end, base, critical)


def _decode_sk(
    data: bytes, start: int, end: int, base: int, following: int, critical: bool
) -> SkPayload:
    return SkPayload(following, data[start:end], critical)


def _decode_skf(
    data: bytes, start: int, end: int, base: int, following: int, critical: bool
) -> SkfPayload:
    number, total = _TWO_U16.unpack_from(data, start)
    # RFC 7383 2.5: fragments are numbered from 1 and the number cannot exceed the total.
    if number == 0 or total == 0 or number > total:
        raise InvalidSyntax(
            f"fragment number {number} of {total} is not a valid fragment", offset=base + start
        )
    return SkfPayload(following, number, total, data[start + 4 : end], critical)


def _decode_cp(
    data: bytes, start: int, end: int, base: int, _next: int, critical: bool
) -> CpPayload:
    body = Buffer(data, start=start, end=end, base=base)
    (cfg_type,) = body.pull_struct(_U8_PAD3)
    attributes: list[ConfigAttribute] = []
    while not body.eof():
        attr_type, length = body.pull_struct(_TWO_U16, "a configuration attribute header")
        value = body.pull_bytes(length, "a configuration attribute value")
        # RFC 7296 3.15.1: the top bit of the type is reserved and ignored.
        attributes.append(ConfigAttribute(attr_type & _CP_TYPE_MASK, value))
    return CpPayload(cfg_type, tuple(attributes), critical)


def _decode_eap(
    data: bytes, start: int, end: int, base: int, _next: int, critical: bool
) -> EapPayload:
    return EapPayload(data[start:end], critical)


_Decoder = Callable[[bytes, int, int, int, int, bool], Payload]

# Payload type -> (decoder, minimum body length after the generic header).
_DECODERS: dict[int, tuple[_Decoder, int]] = {
    PayloadType.SA: (_decode_sa, 0),
    PayloadType.KE: (_decode_ke, 4),
    PayloadType.IDi: (_decode_idi, 4),
    PayloadType.IDr: (_decode_idr, 4),
    PayloadType.CERT: (_decode_cert, 1),
    PayloadType.CERTREQ: (_decode_certreq, 1),
    PayloadType.AUTH: (_decode_auth, 4),
    PayloadType.NONCE: (_decode_nonce, 0),
    PayloadType.NOTIFY: (_decode_notify, 4),
    PayloadType.DELETE: (_decode_delete, 4),
    PayloadType.VENDOR_ID: (_decode_vendor_id, 0),
    PayloadType.TSi: (_decode_tsi, 4),
    PayloadType.TSr: (_decode_tsr, 4),
    PayloadType.SK: (_decode_sk, 0),
    PayloadType.CP: (_decode_cp, 4),
    # RFC 3748 4: an EAP packet has at least Code, Identifier and Length.
    PayloadType.EAP: (_decode_eap, 4),
    PayloadType.SKF: (_decode_skf, 4),
}


# --- payload chain: encode ------------------------------------------------------------------


def encode_payloads(payloads: Sequence[Payload]) -> bytes:
    """Encode a payload chain.

    Each generic header's Next Payload is the type of the following payload (0 for the
    last), except SK and SKF, which must be last and carry their own ``next_payload``
    (the first inner payload, RFC 7296 3.14).
    """
    return encode_payloads_typed(payloads)[0]


def encode_payloads_typed(payloads: Sequence[Payload]) -> tuple[bytes, tuple[int, ...]]:
    """``encode_payloads``, and the payload type of each payload in order (what a sender
    reports in its ``MessageSent`` event), read off the same pass."""
    try:
        return _encode_backwards(payloads)
    except Exception:  # whatever it was, the checked walk below names it
        pass
    # Something is wrong with the chain: walk it front to back, which raises the first
    # fault in payload order with its index (the backward pass cannot tell which is first).
    return _encode_checked(payloads)


def _encode_backwards(payloads: Sequence[Payload]) -> tuple[bytes, tuple[int, ...]]:
    """The usual case, a valid chain, in one pass from the last payload: each generic
    header needs the type of the payload after it, which is then already known. Raises on
    any fault (without saying which payload is first to blame)."""
    parts: list[bytes] = []
    append = parts.append
    types: list[int] = []
    add_type = types.append
    pack = _GENERIC.pack
    encoders = _ENCODERS_TYPED
    following = 0
    for payload in reversed(payloads):
        encoder, number = encoders[type(payload)]
        body = encoder(payload)
        length = GENERIC_PAYLOAD_HEADER_LENGTH + len(body)
        if number == _SK or number == _SKF:
            if types:
                raise LocalProtocolError("an SK or SKF payload must be the last payload")
            # RFC 7296 3.14: SK names the first inner payload; range-checked by pack.
            following = payload.next_payload  # type: ignore[union-attr]
        if length > 0xFFFF:
            raise LocalProtocolError("payload over 65535 bytes")
        append(body)
        append(pack(following, _CRITICAL if payload.critical else 0, length))
        following = number or int(payload.payload_type)  # an UnknownPayload names its own
        add_type(following)
    parts.reverse()
    types.reverse()
    return b"".join(parts), tuple(types)


def _encode_checked(payloads: Sequence[Payload]) -> tuple[bytes, tuple[int, ...]]:
    """The front-to-back walk that reports the first fault of a chain by its index."""
    parts: list[bytes] = []
    append = parts.append
    pack = _GENERIC.pack
    encoders = _ENCODERS
    # The Next Payload of each generic header is the type of the payload after it; a
    # value that is not a payload gets 0 here and its own error when its turn comes.
    types = [getattr(p, "payload_type", 0) for p in payloads]
    types.append(0)
    i = 0
    misplaced_sk = False
    for payload in payloads:
        cls = type(payload)
        encoder = encoders.get(cls)
        if encoder is None:
            raise LocalProtocolError(f"payload {i} ({cls.__name__}) is not a payload")
        try:
            body = encoder(payload)
        except struct.error as exc:
            raise LocalProtocolError(
                f"payload {i} ({cls.__name__}) has a field out of range: {exc}"
            ) from None
        i += 1
        if misplaced_sk:
            continue  # only the bodies still count, as before the order check
        length = GENERIC_PAYLOAD_HEADER_LENGTH + len(body)
        if cls is SkPayload or cls is SkfPayload:
            # Reported after every body is encoded, as a body's own fault comes first.
            if i != len(payloads):
                misplaced_sk = True
                continue
            following = payload.next_payload  # type: ignore[union-attr]
            if not 0 <= following <= 0xFF:
                raise LocalProtocolError(f"SK next payload {following} does not fit in a byte")
        else:
            following = types[i]
        if length > 0xFFFF:
            raise LocalProtocolError(
                f"payload {i - 1} ({cls.__name__}) is {length} bytes, over 65535"
            )
        append(pack(following, _CRITICAL if payload.critical else 0, length))
        append(body)
    if misplaced_sk:
        raise LocalProtocolError("an SK or SKF payload must be the last payload")
    del types[-1]
    return b"".join(parts), tuple(map(int, types))


_TRANSFORMS_ENCODED: dict[int, tuple[tuple[Transform, ...], bytes]] = {}
"""Encoded transforms of a proposal by the identity of its tuple (kept alive by the entry,
so the id cannot be reused): an offer is the configuration's, the same objects in every
handshake with only the SPI changing, and a selected proposal comes from a memo too."""


def _encode_transforms(transforms: tuple[Transform, ...]) -> bytes:
    hit = _TRANSFORMS_ENCODED.get(id(transforms))
    if hit is not None:
        return hit[1]
    last = len(transforms) - 1
    encoded = b"".join(_encode_transform(t, j < last) for j, t in enumerate(transforms))
    if len(_TRANSFORMS_ENCODED) >= _MEMO_LIMIT:
        _TRANSFORMS_ENCODED.clear()
    _TRANSFORMS_ENCODED[id(transforms)] = (transforms, encoded)
    return encoded


def _encode_sa(p: SaPayload) -> bytes:
    parts: list[bytes] = []
    proposals = p.proposals
    last_p = len(proposals) - 1
    for i, prop in enumerate(proposals):
        spi, transforms = prop.spi, prop.transforms
        spi_size, count = len(spi), len(transforms)
        if spi_size > 0xFF or count > 0xFF:
            raise LocalProtocolError(
                f"proposal {prop.number} has an SPI or transform count over 255"
            )
        encoded = _encode_transforms(transforms)
        parts.append(
            _PROPOSAL.pack(
                _MORE_PROPOSALS if i < last_p else 0,
                _PROPOSAL_HEADER + spi_size + len(encoded),
                prop.number,
                prop.protocol_id,
                spi_size,
                count,
            )
            + spi
            + encoded
        )
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _encode_transform(t: Transform, more: bool) -> bytes:
    attrs = b"".join(_encode_attribute(a) for a in t.attributes)
    return (
        _TRANSFORM.pack(
            _MORE_TRANSFORMS if more else 0, _TRANSFORM_HEADER + len(attrs), t.type, t.id
        )
        + attrs
    )


def _encode_attribute(a: TransformAttribute) -> bytes:
    if a.type & _ATTRIBUTE_TV:
        raise LocalProtocolError(f"transform attribute type {a.type} does not fit in 15 bits")
    if isinstance(a.value, int):
        return _TWO_U16.pack(_ATTRIBUTE_TV | a.type, a.value)
    return _TWO_U16.pack(a.type, len(a.value)) + a.value


def _encode_ke(p: KePayload) -> bytes:
    return _U16_PAD2.pack(p.method) + p.data


def _encode_data(p: NoncePayload | VendorIdPayload | EapPayload | UnknownPayload) -> bytes:
    return p.data


def _encode_id(p: IdiPayload | IdrPayload) -> bytes:
    return _U8_PAD3.pack(p.id_type) + p.data


def _encode_cert(p: CertPayload | CertReqPayload) -> bytes:
    return _U8.pack(p.encoding) + p.data


def _encode_auth(p: AuthPayload) -> bytes:
    return _U8_PAD3.pack(p.method) + p.data


def _encode_notify(p: NotifyPayload) -> bytes:
    return _NOTIFY.pack(p.protocol_id, len(p.spi), p.notify_type) + p.spi + p.data


def _encode_delete(p: DeletePayload) -> bytes:
    if any(len(spi) != p.spi_size for spi in p.spis):
        raise LocalProtocolError(f"every SPI of a Delete payload must be {p.spi_size} bytes")
    if p.spi_size == 0 and p.spis:
        raise LocalProtocolError("a Delete payload with SPI size 0 cannot list SPIs")
    return _NOTIFY.pack(p.protocol_id, p.spi_size, len(p.spis)) + b"".join(p.spis)


_TS_ENCODED: dict[int, tuple[tuple[TrafficSelector, ...], bytes]] = {}
"""Encoded TS bodies by the identity of their selectors tuple (kept alive by the entry, so
the id cannot be reused): the configuration's selectors, or ``narrow``'s memoized answer,
come back in every handshake."""


def _encode_ts(p: TsiPayload | TsrPayload) -> bytes:
    selectors = p.selectors
    hit = _TS_ENCODED.get(id(selectors))
    if hit is not None:
        return hit[1]
    encoded = _encode_selectors(selectors)
    if type(selectors) is tuple:  # only an immutable tuple can be known by identity
        if len(_TS_ENCODED) >= _MEMO_LIMIT:
            _TS_ENCODED.clear()
        _TS_ENCODED[id(selectors)] = (selectors, encoded)
    return encoded


def _encode_selectors(selectors: Sequence[TrafficSelector]) -> bytes:
    parts = [_U8_PAD3.pack(len(selectors))]
    for ts in selectors:
        length = _TS_LENGTH.get(ts.ts_type)
        if length is None:
            raise LocalProtocolError(f"traffic selector type {ts.ts_type} cannot be encoded")
        size = (length - 8) // 2
        if len(ts.start_address) != size or len(ts.end_address) != size:
            raise LocalProtocolError(
                f"traffic selector type {ts.ts_type} needs {size}-byte addresses"
            )
        parts.append(_TS.pack(ts.ts_type, ts.ip_protocol, length, ts.start_port, ts.end_port))
        parts.append(ts.start_address)
        parts.append(ts.end_address)
    return b"".join(parts)


def _encode_sk(p: SkPayload) -> bytes:
    return p.encrypted


def _encode_skf(p: SkfPayload) -> bytes:
    return _TWO_U16.pack(p.fragment_number, p.total_fragments) + p.encrypted


def _encode_cp(p: CpPayload) -> bytes:
    parts = [_U8_PAD3.pack(p.cfg_type)]
    for a in p.attributes:
        if a.type & ~_CP_TYPE_MASK:
            raise LocalProtocolError(
                f"configuration attribute type {a.type} does not fit in 15 bits"
            )
        parts.append(_TWO_U16.pack(a.type, len(a.value)))
        parts.append(a.value)
    return b"".join(parts)


def _encode_unknown(p: UnknownPayload) -> bytes:
    if not 0 < p.type <= 0xFF:
        # Type 0 means "no next payload" (RFC 7296 3.2), so it cannot name a payload.
        raise LocalProtocolError(f"payload type {p.type} is not in 1..255")
    return p.data


_ENCODERS: dict[type, Callable[..., bytes]] = {
    SaPayload: _encode_sa,
    KePayload: _encode_ke,
    IdiPayload: _encode_id,
    IdrPayload: _encode_id,
    CertPayload: _encode_cert,
    CertReqPayload: _encode_cert,
    AuthPayload: _encode_auth,
    NoncePayload: _encode_data,
    NotifyPayload: _encode_notify,
    DeletePayload: _encode_delete,
    VendorIdPayload: _encode_data,
    TsiPayload: _encode_ts,
    TsrPayload: _encode_ts,
    SkPayload: _encode_sk,
    SkfPayload: _encode_skf,
    CpPayload: _encode_cp,
    EapPayload: _encode_data,
    UnknownPayload: _encode_unknown,
}


def _type_number(cls: Any) -> int:
    return 0 if cls is UnknownPayload else int(cls.payload_type)


_ENCODERS_TYPED: dict[type, tuple[Callable[..., bytes], int]] = {
    cls: (encoder, _type_number(cls)) for cls, encoder in _ENCODERS.items()
}
"""Each payload class's encoder and type number, a plain int for events and struct.pack
(0: the payload names its own type, as an ``UnknownPayload`` does)."""
