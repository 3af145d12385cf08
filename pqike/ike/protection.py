"""SK and SKF protection of whole messages, with RFC 7383 fragmentation and reassembly.

This joins the codec (bytes <-> payloads) and the crypto layer (``Cipher``): it builds
the exact bytes of a protected message or of its fragments, and recovers the plaintext
inner payloads of a received one. The plaintext and header pieces are returned too,
because IntAuth (RFC 9242 3.3.2) is computed over them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .._fastinit import fast_init
from ..constants import (
    GENERIC_PAYLOAD_HEADER_LENGTH,
    IKE_HEADER_LENGTH,
    NON_ESP_MARKER,
    PayloadType,
)
from ..crypto.protect import Cipher
from ..errors import InvalidSyntax
from ..wire.codec import encode_header, encode_payloads, sk_split
from ..wire.datagram import ip_overhead
from ..wire.payloads import IkeHeader, Message, Payload, SkfPayload, SkPayload

SKF_HEADER_LENGTH = 8


@fast_init
@dataclass(frozen=True, slots=True)
class ProtectedMessage:
    """What ``protect`` built: the IKE messages to send (one, or one per fragment)."""

    messages: tuple[bytes, ...]
    """IKE messages without the non-ESP marker, in fragment order."""
    header: bytes
    """The 28-byte header of the unfragmented form (for IntAuth)."""
    first_inner: int
    """Type of the first inner payload."""
    plaintext: bytes
    """The inner payloads as encoded (no padding): chunk P of IntAuth."""
    ike_bytes: int
    """Length the message has (or would have) unfragmented."""
    inner_types: tuple[int, ...]
    unprotected: bytes = b""
    """Payloads sent in clear before SK (only ever by an impairment): part of IntAuth's A."""


@fast_init
@dataclass(frozen=True, slots=True)
class UnprotectedMessage:
    """A received protected message after decryption (and reassembly)."""

    header: IkeHeader
    header_bytes: bytes
    unprotected: bytes
    """Raw payloads in front of SK (or of SKF in fragment 1); usually empty."""
    first_inner: int
    plaintext: bytes
    fragments: tuple[int, ...]
    """IKE length of each fragment received; empty when not fragmented."""
    ike_bytes: int
    """Length of the whole message as the peer would have sent it unfragmented."""


def _chunk_capacity(cipher: Cipher, room: int) -> int:
    """Largest plaintext that ``cipher`` turns into at most ``room`` bytes (0 if none)."""
    n = max(room - cipher.iv_size - cipher.icv_size - 1, 0)
    while n > 0 and cipher.encrypted_size(n) > room:
        n -= 1
    return n


def fragment_capacity(cipher: Cipher, fragment_size: int, ipv6: bool) -> int:
    """Plaintext bytes one fragment can carry when datagrams may be ``fragment_size`` bytes.

    RFC 7383 2.5.1 leaves the size to the sender. Like strongSwan we count the IP and
    UDP headers and always reserve the 4-byte non-ESP marker, so a fragment fits whether
    or not the exchange has moved to port 4500 (this matches strongSwan's measured
    1248-byte fragments at ``fragment_size = 1280`` over IPv4).
    """
    room = (
        fragment_size
        - ip_overhead(ipv6)
        - len(NON_ESP_MARKER)
        - IKE_HEADER_LENGTH
        - SKF_HEADER_LENGTH
    )
    return _chunk_capacity(cipher, room)


def protect(
    header: IkeHeader,
    inner: list[Payload] | tuple[Payload, ...],
    cipher: Cipher,
    sk_e: bytes,
    sk_a: bytes,
    *,
    fragment_size: int | None = None,
    ipv6: bool = False,
    unprotected: tuple[Payload, ...] = (),
    impairments: frozenset[str] = frozenset(),
) -> ProtectedMessage:
    """Encrypt ``inner`` into an SK payload, or into SKF fragments when it is too big.

    ``fragment_size`` is the largest IP datagram to send (``None``: never fragment). The
    message is fragmented only when its unfragmented form would not fit (RFC 7383 2.5).
    ``unprotected`` payloads go in clear before SK (in fragment 1 only) and
    ``impairments`` break the fragmentation on purpose (``pqike.ike.impair``); both are
    for probing peers and empty otherwise.
    """
    plaintext = encode_payloads(inner)
    inner_types = tuple([int(p.payload_type) for p in inner])
    first_inner = inner_types[0] if inner_types else 0
    clear = _chained(unprotected) if unprotected else b""
    whole = (
        IKE_HEADER_LENGTH
        + len(clear)
        + GENERIC_PAYLOAD_HEADER_LENGTH
        + cipher.encrypted_size(len(plaintext))
    )
    first_outer = int(unprotected[0].payload_type) if unprotected else PayloadType.SK
    plain_header = _with(header, first_outer, whole)
    limit = None
    if fragment_size is not None:
        overhead = ip_overhead(ipv6) + len(NON_ESP_MARKER)
        limit = fragment_size - overhead
    if limit is None or whole <= limit:
        hdr = encode_header(plain_header)
        sk_hdr = bytes([first_inner, 0]) + (whole - IKE_HEADER_LENGTH - len(clear)).to_bytes(
            2, "big"
        )
        aad = hdr + _retyped(clear, PayloadType.SK) + sk_hdr
        body = cipher.encrypt(sk_e, sk_a, aad, plaintext)
        return ProtectedMessage(
            (aad + body,),
            hdr,
            first_inner,
            plaintext,
            whole,
            inner_types,
            aad[IKE_HEADER_LENGTH:-4],
        )

    capacity = fragment_capacity(cipher, fragment_size or 0, ipv6)
    if capacity <= 0:
        raise InvalidSyntax(f"fragment size {fragment_size} leaves no room for data")
    # Clear payloads travel in fragment 1 only, so that fragment carries less (RFC 7383 2.5).
    first_capacity = fragment_capacity(cipher, (fragment_size or 0) - len(clear), ipv6)
    if first_capacity <= 0:
        raise InvalidSyntax(f"fragment size {fragment_size} leaves no room for data")
    # An impaired sender repeats the last 16 bytes of each chunk at the start of the next.
    overlap = 16 if "overlapping-fragments" in impairments else 0
    chunks = [plaintext[:first_capacity]]
    start = len(chunks[0])
    while start < len(plaintext):
        start -= min(overlap, len(chunks[-1]) - 1)
        chunks.append(plaintext[start : start + capacity])
        start += len(chunks[-1])
    numbered = list(enumerate(chunks, start=1))
    total = len(chunks)
    if "out-of-range-fragment" in impairments:
        numbered.append((total + 1, b"\x00" * 16))
    messages = []
    for number, chunk in numbered:
        first = number == 1
        fclear = _retyped(clear, PayloadType.SKF) if first else b""
        length = (
            IKE_HEADER_LENGTH + len(fclear) + SKF_HEADER_LENGTH + cipher.encrypted_size(len(chunk))
        )
        outer = first_outer if first and clear else PayloadType.SKF
        hdr = encode_header(_with(header, outer, length))
        # RFC 7383 2.5: only fragment 1 names the first inner payload type.
        nxt = first_inner if first else 0
        announced = total
        if "changed-total" in impairments and number == total:
            announced = total + 1
        skf_hdr = (
            bytes([nxt, 0])
            + (length - IKE_HEADER_LENGTH - len(fclear)).to_bytes(2, "big")
            + number.to_bytes(2, "big")
            + announced.to_bytes(2, "big")
        )
        aad = hdr + fclear + skf_hdr
        messages.append(aad + cipher.encrypt(sk_e, sk_a, aad, chunk))
        if first and "duplicate-fragment" in impairments:
            messages.append(messages[-1])
    return ProtectedMessage(
        tuple(messages),
        encode_header(plain_header),
        first_inner,
        plaintext,
        whole,
        inner_types,
        # IntAuth's A is the message as if unfragmented: the clear payloads lead to SK.
        _retyped(clear, PayloadType.SK),
    )


def _chained(payloads: tuple[Payload, ...]) -> bytes:
    """Encoded payloads whose last generic header names SK next (set by ``_retyped``)."""
    return encode_payloads(payloads)


def _retyped(chain: bytes, next_type: int) -> bytes:
    """``chain`` with the Next Payload of its last payload set to ``next_type``."""
    if not chain:
        return b""
    pos = 0
    while True:
        length = int.from_bytes(chain[pos + 2 : pos + 4], "big")
        if pos + length >= len(chain):
            return chain[:pos] + bytes([next_type]) + chain[pos + 1 :]
        pos += length


def _with(header: IkeHeader, next_payload: int, length: int) -> IkeHeader:
    return IkeHeader(
        header.spi_i,
        header.spi_r,
        next_payload,
        header.exchange_type,
        header.flags,
        header.message_id,
        length,
    )


def unprotect(message: Message, cipher: Cipher, sk_e: bytes, sk_a: bytes) -> UnprotectedMessage:
    """Verify and decrypt an unfragmented message whose last payload is SK."""
    sk = message.payloads[-1] if message.payloads else None
    if not isinstance(sk, SkPayload):
        raise InvalidSyntax("a protected exchange needs an SK payload as its last payload")
    aad, encrypted = sk_split(message)
    plaintext = cipher.decrypt(sk_e, sk_a, aad, encrypted)
    raw = message.raw
    return UnprotectedMessage(
        message.header,
        raw[:IKE_HEADER_LENGTH],
        raw[IKE_HEADER_LENGTH : len(aad) - GENERIC_PAYLOAD_HEADER_LENGTH],
        sk.next_payload,
        plaintext,
        (),
        len(raw),
    )


@dataclass
class _Assembly:
    message_id: int
    is_response: bool
    total: int
    started: float
    chunks: dict[int, bytes] = field(default_factory=dict)
    sizes: dict[int, int] = field(default_factory=dict)
    size: int = 0
    first: Message | None = None
    first_inner: int = 0


@dataclass
class ReassemblyLimits:
    """Bounds that keep an abusive fragment stream from growing memory (RFC 7383 2.6)."""

    max_fragments: int = 2048
    max_message_size: int = 2 << 20
    timeout: float = 30.0


class Reassembler:
    """Collects verified SKF fragments of one message at a time (window size 1).

    Fragments are decrypted before they are stored (RFC 7383 2.6.1), so only fragments
    from the real peer can occupy memory. Duplicates are ignored; a retransmission with
    a larger Total Fragments replaces the partial message (RFC 7383 2.6.1); anything
    beyond the limits drops the partial message and is counted in ``stats``.
    """

    def __init__(self, limits: ReassemblyLimits) -> None:
        self.limits = limits
        self._current: _Assembly | None = None
        self.stats: dict[str, int] = {
            "fragments_accepted": 0,
            "fragments_duplicate": 0,
            "fragments_dropped": 0,
            "messages_dropped": 0,
            "messages_reassembled": 0,
        }

    @property
    def pending_bytes(self) -> int:
        """Plaintext bytes held for the message being reassembled (bounded by the limits)."""
        return self._current.size if self._current else 0

    @property
    def pending_fragments(self) -> int:
        return len(self._current.chunks) if self._current else 0

    def expire(self, now: float) -> None:
        """Drop a partial message older than the reassembly time-out."""
        cur = self._current
        # Compare with deadline() itself: ``now - started > timeout`` can stay false at
        # the very deadline get_timer() reported, and a driver would fire it forever.
        if cur is not None and now >= cur.started + self.limits.timeout:
            self._current = None
            self.stats["messages_dropped"] += 1

    def deadline(self) -> float | None:
        cur = self._current
        return None if cur is None else cur.started + self.limits.timeout

    def add(
        self, message: Message, cipher: Cipher, sk_e: bytes, sk_a: bytes, *, now: float
    ) -> UnprotectedMessage | None:
        """Verify one SKF message; return the whole message once every fragment is in.

        Raises ``ProtocolError`` (``IntegrityCheckFailed`` for a bad ICV) for a fragment
        that does not verify; the partial message is kept.
        """
        self.expire(now)
        skf = message.payloads[-1] if message.payloads else None
        if not isinstance(skf, SkfPayload):
            raise InvalidSyntax("a fragment needs an SKF payload as its last payload")
        limits = self.limits
        if skf.total_fragments > limits.max_fragments:
            self.stats["fragments_dropped"] += 1
            raise InvalidSyntax(
                f"{skf.total_fragments} fragments announced, more than the limit of "
                f"{limits.max_fragments}"
            )
        hdr = message.header
        cur = self._current
        if cur is not None and (cur.message_id, cur.is_response) == (
            hdr.message_id,
            hdr.is_response,
        ):
            if skf.fragment_number in cur.chunks:
                self.stats["fragments_duplicate"] += 1
                return None
            if skf.total_fragments < cur.total:
                # RFC 7383 2.6.1: a smaller total belongs to an older transmission.
                self.stats["fragments_dropped"] += 1
                return None
        aad, encrypted = sk_split(message)
        chunk = cipher.decrypt(sk_e, sk_a, aad, encrypted)
        if cur is None or (cur.message_id, cur.is_response) != (hdr.message_id, hdr.is_response):
            if cur is not None:
                self.stats["messages_dropped"] += 1
            cur = self._current = _Assembly(
                hdr.message_id, hdr.is_response, skf.total_fragments, now
            )
        elif skf.total_fragments > cur.total:
            # RFC 7383 2.6.1: the sender re-fragmented with a smaller size; start over.
            self.stats["messages_dropped"] += 1
            cur = self._current = _Assembly(
                hdr.message_id, hdr.is_response, skf.total_fragments, now
            )
        if cur.size + len(chunk) > limits.max_message_size:
            self._current = None
            self.stats["messages_dropped"] += 1
            raise InvalidSyntax(
                f"reassembled message would exceed the limit of {limits.max_message_size} bytes"
            )
        cur.chunks[skf.fragment_number] = chunk
        cur.sizes[skf.fragment_number] = len(message.raw)
        cur.size += len(chunk)
        self.stats["fragments_accepted"] += 1
        if skf.fragment_number == 1:
            cur.first = message
            cur.first_inner = skf.next_payload
        if len(cur.chunks) < cur.total:
            return None
        self._current = None
        self.stats["messages_reassembled"] += 1
        plaintext = b"".join(cur.chunks[i] for i in range(1, cur.total + 1))
        first = cur.first
        assert first is not None
        first_aad, _ = sk_split(first)
        # RFC 9242 3.3.2 reads a fragmented message as if unfragmented: payloads in clear
        # before SKF lead to SK there.
        unprotected = _retyped(
            first.raw[IKE_HEADER_LENGTH : len(first_aad) - SKF_HEADER_LENGTH], PayloadType.SK
        )
        sizes = tuple(cur.sizes[i] for i in range(1, cur.total + 1))
        return UnprotectedMessage(
            first.header,
            first.raw[:IKE_HEADER_LENGTH],
            unprotected,
            cur.first_inner,
            plaintext,
            sizes,
            IKE_HEADER_LENGTH
            + len(unprotected)
            + GENERIC_PAYLOAD_HEADER_LENGTH
            + cipher.encrypted_size(len(plaintext)),
        )


__all__ = [
    "ProtectedMessage",
    "Reassembler",
    "ReassemblyLimits",
    "UnprotectedMessage",
    "fragment_capacity",
    "protect",
    "unprotect",
]
