"""SK and SKF protection of whole messages, with RFC 7383 fragmentation and reassembly.

This joins the codec (bytes <-> payloads) and the crypto layer (``Cipher``): it builds
the exact bytes of a protected message or of its fragments, and recovers the plaintext
inner payloads of a received one. The plaintext and header pieces are returned too,
because IntAuth (RFC 9242 3.3.2) is computed over them.
"""

from __future__ import annotations

import functools
import struct
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
from ..wire.codec import encode_header_as, encode_payloads, encode_payloads_typed, sk_split
from ..wire.datagram import ip_overhead
from ..wire.payloads import IkeHeader, Message, Payload, SkfPayload, SkPayload

SKF_HEADER_LENGTH = 8
_SK = int(PayloadType.SK)
_SK_HEADER = struct.Struct("!BBH")
_SKF_HEADER = struct.Struct("!BBHHH")
_OVERHEAD = {ipv6: ip_overhead(ipv6) + len(NON_ESP_MARKER) for ipv6 in (False, True)}
"""IP, UDP and non-ESP marker bytes around each fragment, by address family (RFC 7383
2.5.1 as ``fragment_capacity`` counts them)."""


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


# A pure function of a shared Cipher and two numbers that every fragmented message asks
# twice, counting down byte by byte: worked out once per combination (bounded).
@functools.lru_cache(maxsize=64)
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
    plaintext, inner_types = encode_payloads_typed(inner)
    first_inner = inner_types[0] if inner_types else 0
    clear = _chained(unprotected) if unprotected else b""
    whole = (
        IKE_HEADER_LENGTH
        + len(clear)
        + GENERIC_PAYLOAD_HEADER_LENGTH
        + cipher.encrypted_size(len(plaintext))
    )
    first_outer = int(unprotected[0].payload_type) if unprotected else _SK
    if fragment_size is None or whole <= fragment_size - _OVERHEAD[ipv6]:
        hdr = encode_header_as(header, first_outer, whole)
        # The SK generic header: first inner type, no flags, its length (RFC 7296 3.14).
        sk_hdr = _SK_HEADER.pack(first_inner, 0, whole - IKE_HEADER_LENGTH - len(clear))
        aad = hdr + _retyped(clear, _SK) + sk_hdr if clear else hdr + sk_hdr
        body = cipher.encrypt(sk_e, sk_a, aad, plaintext)
        return ProtectedMessage(
            (aad + body,),
            hdr,
            first_inner,
            plaintext,
            whole,
            inner_types,
            aad[IKE_HEADER_LENGTH:-4] if clear else b"",
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
        fclear = _retyped(clear, PayloadType.SKF) if first and clear else b""
        length = (
            IKE_HEADER_LENGTH + len(fclear) + SKF_HEADER_LENGTH + cipher.encrypted_size(len(chunk))
        )
        outer = first_outer if first and clear else PayloadType.SKF
        hdr = encode_header_as(header, outer, length)
        # RFC 7383 2.5: only fragment 1 names the first inner payload type.
        nxt = first_inner if first else 0
        announced = total
        if "changed-total" in impairments and number == total:
            announced = total + 1
        # RFC 7383 2.5: the generic header, then Fragment Number and Total Fragments.
        skf_hdr = _SKF_HEADER.pack(
            nxt, 0, length - IKE_HEADER_LENGTH - len(fclear), number, announced
        )
        aad = hdr + fclear + skf_hdr
        messages.append(aad + cipher.encrypt(sk_e, sk_a, aad, chunk))
        if first and "duplicate-fragment" in impairments:
            messages.append(messages[-1])
    return ProtectedMessage(
        tuple(messages),
        encode_header_as(header, first_outer, whole),
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
    cost: int = 0
    """Bytes charged to the ``ReassemblyBudget``: payload plus per-object overhead."""
    first: Message | None = None
    first_inner: int = 0


FRAGMENT_OVERHEAD = 320
"""Bytes of overhead charged per stored fragment on top of its data (a ``bytes`` object's
header and malloc's, two dict slots, an int; measured with ``pqike bench flood --mode
fragments``): a flood of tiny fragments is bounded too."""

FIRST_FRAGMENT_OVERHEAD = 1024
"""Charged for the decoded first fragment kept for its header and unprotected payloads."""


@dataclass
class ReassemblyLimits:
    """Bounds that keep an abusive fragment stream from growing memory (RFC 7383 2.6)."""

    max_fragments: int = 2048
    max_message_size: int = 2 << 20
    timeout: float = 30.0


class ReassemblyBudget:
    """Memory for partial fragmented messages, shared by every ``Reassembler`` of an
    endpoint (RFC 7383 2.6 asks receivers to bound reassembly resources).

    - ``total_bytes`` bounds what all partial messages together may hold;
    - ``per_peer_bytes`` what the partial messages of one peer IP address may hold;
    - ``half_open_bytes`` the largest message an IKE SA that is not yet established may
      reassemble (it still must fit the biggest KEi it negotiated, in IKE_INTERMEDIATE);
      an established IKE SA may use its full ``ReassemblyLimits.max_message_size``.

    When a fragment would go over ``total_bytes`` or ``per_peer_bytes``, the oldest
    partial messages (globally, or of that peer) are evicted first, expired ones before
    anything else; the message being added is dropped only when nothing older is left.
    Every fragment is charged its data plus ``FRAGMENT_OVERHEAD``, so the figures bound
    real memory, and evicted messages release every reference to their data. Nothing
    here reads a clock; ``now`` comes from the caller.
    """

    def __init__(
        self,
        total_bytes: int = 48 << 20,
        *,
        per_peer_bytes: int | None = 16 << 20,
        half_open_bytes: int | None = 1536 << 10,
    ) -> None:
        if total_bytes < 0 or (per_peer_bytes is not None and per_peer_bytes < 0):
            raise ValueError("reassembly budgets must not be negative")
        if half_open_bytes is not None and half_open_bytes < 0:
            raise ValueError("the half-open reassembly allowance must not be negative")
        self.total_bytes = total_bytes
        self.per_peer_bytes = per_peer_bytes
        self.half_open_bytes = half_open_bytes
        self.used = 0
        self._charged: dict[Reassembler, int] = {}  # insertion order: oldest partial first
        self._peer_used: dict[str | None, int] = {}
        self._peer_order: dict[str | None, dict[Reassembler, None]] = {}
        self.stats: dict[str, int] = {
            "evicted_total": 0,
            "evicted_peer": 0,
            "evicted_expired": 0,
            "dropped_over_budget": 0,
            "dropped_half_open_allowance": 0,
        }

    @property
    def partial_messages(self) -> int:
        """Partial messages currently charged."""
        return len(self._charged)

    def peer_bytes(self, peer: str | None) -> int:
        """Bytes currently charged to ``peer``'s partial messages."""
        return self._peer_used.get(peer, 0)

    def _start(self, owner: Reassembler) -> None:
        """``owner`` began a new partial message: it becomes the newest."""
        self.release(owner)
        self._charged[owner] = 0
        self._peer_order.setdefault(owner.peer, {})[owner] = None

    def release(self, owner: Reassembler) -> None:
        """Forget what ``owner`` was charged (its partial message is gone)."""
        cost = self._charged.pop(owner, None)
        if cost is None:
            return
        self.used -= cost
        peer = owner.peer
        left = self._peer_used.get(peer, 0) - cost
        if left > 0:
            self._peer_used[peer] = left
        else:
            self._peer_used.pop(peer, None)
        order = self._peer_order.get(peer)
        if order is not None:
            order.pop(owner, None)
            if not order:
                del self._peer_order[peer]

    def _evict(self, victim: Reassembler, reason: str) -> None:
        self.stats[reason] += 1
        victim._evicted()  # calls release()

    def charge(self, owner: Reassembler, cost: int, now: float) -> bool:
        """Charge ``cost`` more bytes to ``owner``'s partial message, evicting older
        partial messages to make room; ``False`` when it cannot fit even so."""
        # Expired partial messages go first, whoever holds them.
        for victim in list(self._charged):
            cur = victim._current
            if victim is owner or cur is None or now < cur.started + victim.limits.timeout:
                break
            self._evict(victim, "evicted_expired")
        peer = owner.peer
        if self.per_peer_bytes is not None:
            order = self._peer_order.get(peer, {})
            while self._peer_used.get(peer, 0) + cost > self.per_peer_bytes:
                oldest = next((r for r in order if r is not owner), None)
                if oldest is None:
                    self.stats["dropped_over_budget"] += 1
                    return False
                self._evict(oldest, "evicted_peer")
        while self.used + cost > self.total_bytes:
            oldest = next((r for r in self._charged if r is not owner), None)
            if oldest is None:
                self.stats["dropped_over_budget"] += 1
                return False
            self._evict(oldest, "evicted_total")
        self._charged[owner] = self._charged.get(owner, 0) + cost
        self.used += cost
        self._peer_used[peer] = self._peer_used.get(peer, 0) + cost
        return True


class Reassembler:
    """Collects verified SKF fragments of one message at a time (window size 1).

    Fragments are decrypted before they are stored (RFC 7383 2.6.1), so only fragments
    from the real peer can occupy memory. Duplicates are ignored; a retransmission with
    a larger Total Fragments replaces the partial message (RFC 7383 2.6.1); anything
    beyond the limits drops the partial message and is counted in ``stats``.

    With a shared ``budget`` (one per endpoint) the partial message is also charged to
    it under ``peer`` (the peer's IP address), and until ``established()`` is called it
    may not grow beyond ``budget.half_open_bytes``.
    """

    def __init__(
        self,
        limits: ReassemblyLimits,
        *,
        budget: ReassemblyBudget | None = None,
        peer: str | None = None,
    ) -> None:
        self.limits = limits
        self.budget = budget
        self.peer = peer
        self._is_established = False
        self._current: _Assembly | None = None
        self.stats: dict[str, int] = {
            "fragments_accepted": 0,
            "fragments_duplicate": 0,
            "fragments_dropped": 0,
            "messages_dropped": 0,
            "messages_reassembled": 0,
            "messages_evicted": 0,
        }

    @property
    def pending_bytes(self) -> int:
        """Plaintext bytes held for the message being reassembled (bounded by the limits)."""
        return self._current.size if self._current else 0

    @property
    def pending_fragments(self) -> int:
        return len(self._current.chunks) if self._current else 0

    @property
    def max_message_size(self) -> int:
        """The largest message this reassembler accepts now: the half-open allowance of
        its budget until ``established()``, ``limits.max_message_size`` after."""
        limit = self.limits.max_message_size
        budget = self.budget
        if budget is not None and not self._is_established and budget.half_open_bytes is not None:
            return min(limit, budget.half_open_bytes)
        return limit

    def established(self) -> None:
        """The IKE SA is established: allow messages up to ``limits.max_message_size``."""
        self._is_established = True

    def clear(self) -> None:
        """Drop the partial message, if any, and give its memory back to the budget."""
        if self._current is not None:
            self._current = None
            self.stats["messages_dropped"] += 1
        if self.budget is not None:
            self.budget.release(self)

    def _evicted(self) -> None:
        self.stats["messages_evicted"] += 1
        self.clear()

    def _drop_current(self) -> None:
        self._current = None
        if self.budget is not None:
            self.budget.release(self)

    def _begin(self, hdr: IkeHeader, total: int, now: float) -> _Assembly:
        cur = self._current = _Assembly(hdr.message_id, hdr.is_response, total, now)
        if self.budget is not None:
            self.budget._start(self)
        return cur

    def expire(self, now: float) -> None:
        """Drop a partial message older than the reassembly time-out."""
        cur = self._current
        # Compare with deadline() itself: ``now - started > timeout`` can stay false at
        # the very deadline get_timer() reported, and a driver would fire it forever.
        if cur is not None and now >= cur.started + self.limits.timeout:
            self._drop_current()
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
            cur = self._begin(hdr, skf.total_fragments, now)
        elif skf.total_fragments > cur.total:
            # RFC 7383 2.6.1: the sender re-fragmented with a smaller size; start over.
            self.stats["messages_dropped"] += 1
            cur = self._begin(hdr, skf.total_fragments, now)
        allowed = self.max_message_size
        if cur.size + len(chunk) > allowed:
            self._drop_current()
            self.stats["messages_dropped"] += 1
            if allowed < limits.max_message_size and self.budget is not None:
                self.budget.stats["dropped_half_open_allowance"] += 1
            raise InvalidSyntax(
                f"reassembled message would exceed the limit of {allowed} bytes"
                + (" before the IKE SA is established" if allowed < limits.max_message_size else "")
            )
        cost = len(chunk) + FRAGMENT_OVERHEAD
        if skf.fragment_number == 1:
            cost += len(message.raw) + FIRST_FRAGMENT_OVERHEAD
        if self.budget is not None and not self.budget.charge(self, cost, now):
            self._drop_current()
            self.stats["messages_dropped"] += 1
            raise InvalidSyntax("no reassembly memory left for this peer or endpoint")
        cur.cost += cost
        cur.chunks[skf.fragment_number] = chunk
        cur.sizes[skf.fragment_number] = len(message.raw)
        cur.size += len(chunk)
        self.stats["fragments_accepted"] += 1
        if skf.fragment_number == 1:
            cur.first = message
            cur.first_inner = skf.next_payload
        if len(cur.chunks) < cur.total:
            return None
        self._drop_current()
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
    "FRAGMENT_OVERHEAD",
    "ProtectedMessage",
    "Reassembler",
    "ReassemblyBudget",
    "ReassemblyLimits",
    "UnprotectedMessage",
    "fragment_capacity",
    "protect",
    "unprotect",
]
