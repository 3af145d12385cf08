"""Take the captured datagrams of one handshake apart: messages, payloads, bytes of each.

``dissect`` gets the UDP payloads of a handshake in the order they were sent, with who
sent each, and the IKE SA's keys. It groups datagrams into messages (RFC 7383 fragments
joined, retransmissions marked), decrypts the protected ones, and splits every message
into named parts whose sizes add up to the message's IKE length: the IKE header, every
payload (a Notify named by its type, ``N(SIGNATURE_HASH_ALGORITHMS)``) and the SK
overhead (SK header, IV, padding, ICV). Two implementations' messages can then be
compared part by part, and every byte of difference has a name.

A fragmented message is measured as it would be unfragmented (the length pqike's
``MessageSent.ike_bytes`` gives), so messages compare whether or not a peer split them.

Keys come from either peer: strongSwan dumps them in its level-4 log
(``KeySchedule.from_dumps``), a pqike peer reports the shared secrets and nonces in its
events (``KeySchedule.from_events``). Without keys the protected part stays one
``SK (not decrypted)`` part.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..constants import (
    GENERIC_PAYLOAD_HEADER_LENGTH,
    IKE_HEADER_LENGTH,
    ExchangeType,
    NotifyType,
    PayloadType,
    name_of,
)
from ..crypto.keys import ike_key_schedule
from ..crypto.prf import get_prf
from ..crypto.protect import Cipher, get_cipher
from ..errors import ProtocolError
from ..ike.events import Event, IkeSaEstablished, KeyExchangeCompleted
from ..ike.protection import Reassembler, ReassemblyLimits, UnprotectedMessage, unprotect
from ..proposal import NegotiatedSuite
from ..wire import datagram
from ..wire.codec import decode_message, decode_payloads
from ..wire.payloads import (
    Message,
    NoncePayload,
    NotifyPayload,
    SaPayload,
    SkfPayload,
    SkPayload,
)

HEADER = "IKE header"
"""Name of the 28-byte IKE header part."""
SK_OVERHEAD = "SK overhead"
"""Name of the part an SK payload adds around its plaintext (header, IV, padding, ICV)."""
SK_OPAQUE = "SK (not decrypted)"
"""Name of the protected part of a message that could not be decrypted."""

_SHORT_NAMES: dict[int, str] = {
    PayloadType.NONCE: "Nonce",
    PayloadType.VENDOR_ID: "V",
    PayloadType.DELETE: "D",
}


@dataclass(frozen=True)
class EpochKeys:
    """The SK_e and SK_a keys of both directions in one key epoch."""

    sk_ei: bytes
    sk_er: bytes
    sk_ai: bytes = b""
    sk_ar: bytes = b""


@dataclass(frozen=True)
class KeySchedule:
    """The keys of each epoch of an IKE SA: 0 after IKE_SA_INIT, n after the n-th
    IKE_INTERMEDIATE exchange (RFC 9370 2.2.2), the last protecting IKE_AUTH."""

    epochs: tuple[EpochKeys, ...]

    @classmethod
    def from_dumps(
        cls,
        sk_ei: Sequence[bytes],
        sk_er: Sequence[bytes],
        sk_ai: Sequence[bytes] = (),
        sk_ar: Sequence[bytes] = (),
    ) -> KeySchedule:
        """From the keys in derivation order, as charon dumps them (``Sk_ei secret``, ...).

        An AEAD suite has no SK_a: leave ``sk_ai``/``sk_ar`` empty.
        """
        n = min(len(sk_ei), len(sk_er))

        def at(keys: Sequence[bytes], i: int) -> bytes:
            return keys[i] if i < len(keys) else b""

        return cls(
            tuple(EpochKeys(sk_ei[i], sk_er[i], at(sk_ai, i), at(sk_ar, i)) for i in range(n))
        )

    @classmethod
    def from_events(
        cls, events: Iterable[Event], datagrams: Sequence[tuple[str, bytes]] = ()
    ) -> KeySchedule | None:
        """Recompute every epoch from a pqike peer's events (``None`` if they do not suffice).

        ``KeyExchangeCompleted`` gives each round's shared secret; nonces, SPIs and suite
        come from ``IkeSaEstablished`` or, for a handshake that never got there, from
        its IKE_SA_INIT messages among ``datagrams`` (``(sender, UDP payload)``). The
        derivation is RFC 7296 2.14 and RFC 9370 2.2.2.
        """
        events = list(events)
        secrets = [
            secret
            for _, secret in sorted(
                (e.round, e.shared_secret) for e in events if isinstance(e, KeyExchangeCompleted)
            )
        ]
        est = next((e for e in events if isinstance(e, IkeSaEstablished)), None)
        if est is not None:
            params = (est.suite, est.nonce_i, est.nonce_r, est.spi_i, est.spi_r)
        else:
            params = _sa_init_parameters(datagrams)
        if params is None or not secrets:
            return None
        return cls.from_secrets(secrets, *params)

    @classmethod
    def from_secrets(
        cls,
        secrets: Sequence[bytes],
        suite: NegotiatedSuite,
        nonce_i: bytes,
        nonce_r: bytes,
        spi_i: bytes,
        spi_r: bytes,
    ) -> KeySchedule | None:
        """Every epoch from the shared secret of each round (IKE_SA_INIT first)."""
        if suite.prf is None or not secrets:
            return None
        cipher = get_cipher(suite.encr, suite.key_bits, suite.integ)
        epochs = ike_key_schedule(
            get_prf(suite.prf),
            secrets,
            nonce_i,
            nonce_r,
            spi_i,
            spi_r,
            encr_key_size=cipher.key_size,
            integ_key_size=cipher.integ_key_size,
        )
        return cls(tuple(EpochKeys(k.sk_ei, k.sk_er, k.sk_ai, k.sk_ar) for k in epochs))


def _sa_init_parameters(datagrams: Sequence[tuple[str, bytes]]):
    """(suite, Ni, Nr, SPIi, SPIr) from the last IKE_SA_INIT response that chose a suite
    and the request it answered, or ``None``."""
    requests: dict[bytes, Message] = {}
    found = None
    for sender, payload in datagrams:
        data = ike_message(payload)
        if data is None:
            continue
        try:
            m = decode_message(data)
        except ProtocolError:
            continue
        h = m.header
        if h.exchange_type != ExchangeType.IKE_SA_INIT:
            continue
        if not h.is_response and sender == "initiator":
            requests[h.spi_i] = m
            continue
        suite = suite_of([m])
        request = requests.get(h.spi_i)
        nonce_r = m.first(NoncePayload)
        nonce_i = request.first(NoncePayload) if request is not None else None
        if suite is not None and nonce_i is not None and nonce_r is not None:
            found = (suite, nonce_i.data, nonce_r.data, h.spi_i, h.spi_r)
    return found


@dataclass(frozen=True)
class Part:
    """A named piece of a message and its size in bytes."""

    name: str
    size: int
    protected: bool


@dataclass(frozen=True)
class DissectedMessage:
    """One IKE message as sent (a retransmission is a message of its own)."""

    sender: str
    exchange: str
    message_id: int
    is_response: bool
    retransmission: bool
    datagrams: tuple[int, ...]
    """Indexes of its datagrams in the input, in order."""
    ike_bytes: int
    """The message's IKE length, as it would be unfragmented."""
    payload_types: tuple[int, ...]
    """Outer payload types, then the inner (decrypted) ones: as ``MessageSent``."""
    parts: tuple[Part, ...]
    """Header, payloads and SK overhead; their sizes add up to ``ike_bytes``."""
    decrypted: bool
    spi_i: bytes

    @property
    def fragments(self) -> int:
        """Number of fragments (0 when the message was sent whole)."""
        return len(self.datagrams) if len(self.datagrams) > 1 else 0


def ike_message(udp_payload: bytes) -> bytes | None:
    """The IKE message in a UDP payload (non-ESP marker removed), or ``None`` for a NAT
    keepalive or anything too short to be IKE.

    The ports are not known here, so the marker is recognised by its content
    (``pqike.wire.datagram.ike_message``).
    """
    return datagram.ike_message(udp_payload)


def payload_name(payload: object, payload_type: int) -> str:
    """``N(NAME)`` for a Notify, the registry's short name for anything else."""
    if isinstance(payload, NotifyPayload):
        return f"N({name_of(NotifyType, payload.notify_type)})"
    if payload_type in _SHORT_NAMES:
        return _SHORT_NAMES[payload_type]
    return name_of(PayloadType, payload_type)


def _walk(first_type: int, data: bytes) -> list[tuple[int, int]]:
    """(type, length) of each payload in a chain, from the generic headers alone."""
    out = []
    pos, next_type = 0, first_type
    while next_type and pos + GENERIC_PAYLOAD_HEADER_LENGTH <= len(data):
        following, _, length = struct.unpack_from("!BBH", data, pos)
        out.append((next_type, length))
        pos += length
        if next_type in (PayloadType.SK, PayloadType.SKF):
            break
        next_type = following
    return out


def _named(first_type: int, data: bytes, protected: bool) -> list[Part]:
    sizes = _walk(first_type, data)
    decoded = decode_payloads(first_type, data)
    return [
        Part(payload_name(p, t), length, protected)
        for p, (t, length) in zip(decoded, sizes, strict=True)
    ]


def suite_of(messages: Iterable[Message]) -> NegotiatedSuite | None:
    """The suite the responder chose: its IKE_SA_INIT response's SA payload."""
    for m in messages:
        h = m.header
        if h.exchange_type == ExchangeType.IKE_SA_INIT and h.is_response:
            sa = m.first(SaPayload)
            if isinstance(sa, SaPayload) and len(sa.proposals) == 1:
                try:
                    return NegotiatedSuite.from_proposal(sa.proposals[0])
                except ProtocolError:
                    return None
    return None


@dataclass
class _Instance:
    sender: str
    key: tuple
    retransmission: bool
    indexes: list[int]
    messages: list[Message]
    numbers: set[int]
    total: int


def _group(decoded: list[tuple[int, str, Message]]) -> list[_Instance]:
    """Datagrams into messages: fragments of one transmission join, a repeat is new."""
    seen: set[tuple] = set()
    open_: dict[tuple, _Instance] = {}
    out: list[_Instance] = []
    for index, sender, m in decoded:
        h = m.header
        key = (sender, h.spi_i, h.exchange_type, h.message_id, h.is_response)
        skf = m.payloads[-1] if m.payloads and isinstance(m.payloads[-1], SkfPayload) else None
        current = open_.get(key)
        if (
            skf is not None
            and current is not None
            and skf.fragment_number not in current.numbers
            and skf.total_fragments == current.total
        ):
            current.indexes.append(index)
            current.messages.append(m)
            current.numbers.add(skf.fragment_number)
            continue
        inst = _Instance(
            sender,
            key,
            key in seen,
            [index],
            [m],
            {skf.fragment_number} if skf else set(),
            skf.total_fragments if skf else 0,
        )
        seen.add(key)
        out.append(inst)
        if skf is not None:
            open_[key] = inst
        else:
            open_.pop(key, None)
    return out


def _fragment_number(m: Message) -> int:
    """The Fragment Number of a message that ends in an SKF payload (RFC 7383 2.5)."""
    skf = m.payloads[-1]
    assert isinstance(skf, SkfPayload)
    return skf.fragment_number


def _decrypt(inst: _Instance, cipher: Cipher, keys: KeySchedule) -> UnprotectedMessage | None:
    """The ``UnprotectedMessage`` of a protected message, trying the likely epoch first."""
    h = inst.messages[0].header
    likely = max(0, h.message_id - 1)
    order = [likely] + [i for i in range(len(keys.epochs)) if i != likely]
    from_initiator = inst.sender == "initiator"
    for epoch in order:
        if epoch >= len(keys.epochs):
            continue
        k = keys.epochs[epoch]
        sk_e, sk_a = (k.sk_ei, k.sk_ai) if from_initiator else (k.sk_er, k.sk_ar)
        try:
            if inst.total:
                r = Reassembler(ReassemblyLimits())
                whole = None
                for m in sorted(inst.messages, key=_fragment_number):
                    whole = r.add(m, cipher, sk_e, sk_a, now=0.0) or whole
                if whole is not None:
                    return whole
            else:
                return unprotect(inst.messages[0], cipher, sk_e, sk_a)
        except (ProtocolError, ValueError):
            continue
    return None


def dissect(
    datagrams: Sequence[tuple[str, bytes]],
    keys: KeySchedule | None,
    *,
    suite: NegotiatedSuite | None = None,
) -> list[DissectedMessage]:
    """Messages of one handshake from its datagrams, ``(sender, UDP payload)`` in sending
    order; ``sender`` is ``initiator`` or ``responder``.

    Datagrams that are not IKE (keepalives, garbage) are skipped. ``suite`` defaults to
    the one in the IKE_SA_INIT response. Never raises for what it cannot decode: such a
    message keeps its protected part as one ``SK (not decrypted)`` part.
    """
    decoded: list[tuple[int, str, Message]] = []
    for index, (sender, payload) in enumerate(datagrams):
        data = ike_message(payload)
        if data is None:
            continue
        try:
            decoded.append((index, sender, decode_message(data)))
        except ProtocolError:
            continue
    suite = suite or suite_of(m for _, _, m in decoded)
    cipher = None
    if suite is not None:
        try:
            cipher = get_cipher(suite.encr, suite.key_bits, suite.integ)
        except Exception:  # an algorithm pqike cannot decrypt: leave SK opaque
            cipher = None
    out = []
    for inst in _group(decoded):
        first = inst.messages[0]
        h = first.header
        last = first.payloads[-1] if first.payloads else None
        protected = isinstance(last, SkPayload | SkfPayload)
        outer_types = [t for t, _ in _walk(h.next_payload, first.raw[IKE_HEADER_LENGTH:])]
        outer = _named(h.next_payload, first.raw[IKE_HEADER_LENGTH:], False)
        if not protected:
            parts = [Part(HEADER, IKE_HEADER_LENGTH, False), *outer]
            out.append(_message(inst, len(first.raw), tuple(outer_types), parts, True))
            continue
        plain = None
        if cipher is not None and keys is not None:
            plain = _decrypt(inst, cipher, keys)
        clear = [p for p in outer[:-1]]
        clear_bytes = sum(p.size for p in clear)
        if plain is None:
            ike_bytes = sum(len(m.raw) for m in inst.messages)
            if inst.total:
                ike_bytes = len(first.raw)  # the rest cannot be known without the keys
            rest = ike_bytes - IKE_HEADER_LENGTH - clear_bytes
            parts = [Part(HEADER, IKE_HEADER_LENGTH, False), *clear, Part(SK_OPAQUE, rest, True)]
            out.append(_message(inst, ike_bytes, tuple(outer_types), parts, False))
            continue
        inner = _named(plain.first_inner, plain.plaintext, True)
        inner_types = [t for t, _ in _walk(plain.first_inner, plain.plaintext)]
        overhead = plain.ike_bytes - IKE_HEADER_LENGTH - clear_bytes - len(plain.plaintext)
        parts = [
            Part(HEADER, IKE_HEADER_LENGTH, False),
            *clear,
            Part(SK_OVERHEAD, overhead, False),
            *inner,
        ]
        types = (*outer_types, *inner_types)
        out.append(_message(inst, plain.ike_bytes, types, parts, True))
    return out


def _message(
    inst: _Instance, ike_bytes: int, types: tuple[int, ...], parts: list[Part], decrypted: bool
) -> DissectedMessage:
    h = inst.messages[0].header
    return DissectedMessage(
        sender=inst.sender,
        exchange=name_of(ExchangeType, h.exchange_type),
        message_id=h.message_id,
        is_response=h.is_response,
        retransmission=inst.retransmission,
        datagrams=tuple(inst.indexes),
        ike_bytes=ike_bytes,
        payload_types=types,
        parts=tuple(parts),
        decrypted=decrypted,
        spi_i=h.spi_i,
    )


__all__ = [
    "HEADER",
    "SK_OPAQUE",
    "SK_OVERHEAD",
    "DissectedMessage",
    "EpochKeys",
    "KeySchedule",
    "Part",
    "dissect",
    "ike_message",
    "payload_name",
    "suite_of",
]
