"""IKEv1 messages from a relay's datagram log: the ``strongswan-ikev1`` pair's dissector.

``pqike.lab.dissect`` measures IKEv2; this does the same for IKEv1 (RFC 2409) so the two
protocol versions are counted alike. Every datagram is named from its ISAKMP header
(``pqike.wire.isakmp``): main mode, aggressive mode, quick mode, informational. Payloads
after a header with the E flag are not decrypted (pqike has no IKEv1 key schedule): such a
message is its header plus one ``encrypted payloads`` part, whose size is exact, so bytes
and datagrams are exact while the payload list stops at the ciphertext.

IKEv1 has no response flag, so requests and responses are told apart by position: the
messages of one exchange (same initiator cookie, exchange type and message ID) alternate
between the two peers, the exchange's first message is a request and each message
answers the one before it. Main mode is then three request/response pairs (3 round
trips); aggressive mode and quick mode are one pair and a third message that nothing
answers (1 round trip and one request without a response each). ``Trace.totals`` counts
a round trip for each request that a later message of the other side answers, which is
the same rule IKEv2 is counted by.

A retransmission is a datagram whose bytes equal an earlier one of the same sender:
charon resends IKEv1 messages unchanged (RFC 2408 has no retransmission counter).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import ProtocolError
from ..wire import isakmp
from .dissect import HEADER, DissectedMessage, Part, ike_message

ENCRYPTED = "encrypted payloads"
"""The part name of everything after the header of a message with the E flag."""


@dataclass
class _Pending:
    sender: str
    key: tuple[str, bytes, int]
    indexes: list[int] = field(default_factory=list)
    numbers: set[int] = field(default_factory=set)
    last: int = 0
    size: int = 0
    first: bytes = b""
    header: isakmp.IsakmpHeader | None = None


def ikev1_message(udp_payload: bytes) -> bytes | None:
    """The IKEv1 message a UDP payload carries (non-ESP marker removed), else ``None``."""
    data = ike_message(udp_payload)
    if data is None or not isakmp.is_ikev1(data):
        return None
    return data


def initiator_cookie(udp_payload: bytes) -> bytes | None:
    """The initiator cookie of an IKEv1 datagram, ``None`` for anything else."""
    data = ikev1_message(udp_payload)
    return data[:8] if data is not None else None


def opens_phase1(udp_payload: bytes) -> bool:
    """True for the first message of a main or aggressive mode exchange: IKEv1, responder
    cookie zero (RFC 2408 3.1: the responder has not chosen one yet)."""
    data = ikev1_message(udp_payload)
    if data is None:
        return False
    try:
        h = isakmp.parse_header(data)
    except ProtocolError:
        return False
    phase1 = (isakmp.ExchangeType.IDENTITY_PROTECTION, isakmp.ExchangeType.AGGRESSIVE)
    return h.exchange_type in phase1 and h.responder_cookie == bytes(8)


def dissect_ikev1(datagrams: Sequence[tuple[str, bytes]]) -> list[DissectedMessage]:
    """IKEv1 messages from ``(sender, UDP payload)`` datagrams in sending order (``sender``
    is ``initiator`` or ``responder``), as ``DissectedMessage`` objects like IKEv2's.

    Anything that is not an IKEv1 message with a valid ISAKMP header is skipped; fragments
    (payload type 132) of one message join into it once all have been seen (an incomplete
    one is a message of the datagrams seen). Never raises for bad input.
    """
    whole: list[_Pending] = []
    open_: dict[tuple[str, bytes, int], _Pending] = {}
    for index, (sender, payload) in enumerate(datagrams):
        data = ikev1_message(payload)
        if data is None:
            continue
        try:
            h = isakmp.parse_header(data)
            frag = isakmp.fragment_of(data, h)
        except ProtocolError:
            continue
        if frag is None:
            whole.append(
                _Pending(
                    sender, (sender, h.initiator_cookie, -1), [index], set(), 0, h.length, data, h
                )
            )
            continue
        key = (sender, h.initiator_cookie, frag.fragment_id)
        pending = open_.get(key)
        if pending is None or frag.number in pending.numbers:
            pending = _Pending(sender, key, first=data, header=h)
            open_[key] = pending
            whole.append(pending)
        pending.indexes.append(index)
        pending.numbers.add(frag.number)
        pending.size += frag.data_length
        if frag.last:
            pending.last = frag.number
        if pending.last and len(pending.numbers) == pending.last:
            del open_[key]
    return _name(whole)


def _name(pending: list[_Pending]) -> list[DissectedMessage]:
    """Request/response by position in the exchange, retransmissions by content."""
    seen: dict[tuple[str, bytes], bool] = {}
    position: dict[tuple[bytes, int, int], int] = {}
    out = []
    for p in pending:
        h = p.header
        assert h is not None
        first = p.first
        fragmented = len(p.indexes) > 1 or p.key[2] >= 0
        # A fragmented message is its header and the data its fragments carry; each
        # fragment's header repeats the message's exchange type and message ID.
        ike_bytes = isakmp.ISAKMP_HEADER_LENGTH + p.size if fragmented else h.length
        exchange_type, mid = h.exchange_type, h.message_id
        content = (p.sender, first)
        retransmission = content in seen
        if retransmission:
            is_response = seen[content]
        else:
            exchange = (h.initiator_cookie, exchange_type, mid)
            n = position.get(exchange, 0) + 1
            position[exchange] = n
            is_response = n % 2 == 0
            seen[content] = is_response
        parts = [Part(HEADER, isakmp.ISAKMP_HEADER_LENGTH, False)]
        types: tuple[int, ...] = ()
        if h.encrypted or fragmented:
            parts.append(Part(ENCRYPTED, ike_bytes - isakmp.ISAKMP_HEADER_LENGTH, True))
        else:
            try:
                chain = isakmp.payload_chain(first, h)
            except ProtocolError:
                chain = []
            types = tuple(kind for kind, _ in chain)
            names = isakmp.payload_names(chain)
            parts += [Part(n, size, False) for n, (_, size) in zip(names, chain, strict=True)]
            rest = ike_bytes - sum(part.size for part in parts)
            if rest > 0:  # bytes past the last payload (padding): counted, not named
                parts.append(Part("padding", rest, False))
        out.append(
            DissectedMessage(
                sender=p.sender,
                exchange=isakmp.EXCHANGE_NAMES.get(exchange_type, str(exchange_type)),
                message_id=mid,
                is_response=is_response,
                retransmission=retransmission,
                datagrams=tuple(p.indexes),
                ike_bytes=ike_bytes,
                payload_types=types,
                parts=tuple(parts),
                decrypted=not (h.encrypted or fragmented),
                spi_i=h.initiator_cookie,
            )
        )
    return out


def payload_list(message: DissectedMessage) -> str:
    """``SA V V`` style names of a message's payloads; ``E{...}`` for encrypted ones."""
    names = [p.name for p in message.parts if p.name not in (HEADER, "padding")]
    return " ".join("E{...}" if n == ENCRYPTED else n for n in names)


__all__ = [
    "ENCRYPTED",
    "dissect_ikev1",
    "ikev1_message",
    "initiator_cookie",
    "opens_phase1",
    "payload_list",
]
