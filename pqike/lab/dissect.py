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

import ipaddress
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..constants import (
    ADDKE_TYPES,
    GENERIC_PAYLOAD_HEADER_LENGTH,
    IKE_HEADER_LENGTH,
    AuthMethod,
    EncrTransform,
    EsnTransform,
    ExchangeType,
    IdType,
    IntegTransform,
    KeyExchangeMethod,
    NotifyType,
    PayloadType,
    PrfTransform,
    ProtocolId,
    TransformType,
    name_of,
)
from ..crypto import auth as crypto_auth
from ..crypto.keys import ike_key_schedule
from ..crypto.prf import get_prf
from ..crypto.protect import Cipher, get_cipher
from ..errors import ProtocolError
from ..ike.events import Event, IkeKeysDerived, IkeSaEstablished, KeyExchangeCompleted
from ..ike.protection import Reassembler, ReassemblyLimits, UnprotectedMessage, unprotect
from ..pcap import CapturedDatagram
from ..proposal import NegotiatedSuite
from ..wire import datagram
from ..wire.codec import decode_message, decode_payloads
from ..wire.payloads import (
    AuthPayload,
    DeletePayload,
    IdiPayload,
    IdrPayload,
    KePayload,
    Message,
    NoncePayload,
    NotifyPayload,
    SaPayload,
    SkfPayload,
    SkPayload,
    TsiPayload,
    TsrPayload,
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
        derived = [
            e
            for e in events
            if isinstance(e, IkeKeysDerived) and e.exchange != ExchangeType.CREATE_CHILD_SA
        ]
        if any(e.ppk_id for e in derived):
            # RFC 9867 3: a PPK epoch cannot be recomputed from the key exchanges alone;
            # the keys the peer derived are in its events.
            first = derived[0].spi_i
            return cls(
                tuple(
                    EpochKeys(e.keys.sk_ei, e.keys.sk_er, e.keys.sk_ai, e.keys.sk_ar)
                    for e in derived
                    if e.spi_i == first
                )
            )
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
    "Check",
    "Decoded",
    "DecodedMessage",
    "DecodedSa",
    "DissectedMessage",
    "EpochKeys",
    "KeySchedule",
    "Node",
    "Part",
    "decode_capture",
    "decode_files",
    "dissect",
    "format_decoded",
    "ike_message",
    "payload_name",
    "suite_of",
    "transform_label",
]


# =========================================================================================
# The decoder: a whole capture, every exchange, with the secrets transcript
# =========================================================================================
#
# ``dissect`` above measures one handshake for byte accounting. ``decode_capture`` is the
# research instrument built on it: every IKE SA of a capture (rekeyed ones included),
# every message decrypted with the key epoch that protected it (pqike.secrets records),
# fragments reassembled and their anomalies flagged, the payload tree with RFC names, the
# key schedule recomputed step by step and the IntAuth chain (RFC 9242 3.3.2) recomputed
# from the capture and compared with the transcript and with the AUTH payloads.


@dataclass
class Node:
    """One payload of the tree: its name, type, length on the wire, details, children."""

    name: str
    payload_type: int
    length: int
    protected: bool
    details: dict[str, object]
    children: list[Node]

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "type": self.payload_type,
            "length": self.length,
            "protected": self.protected,
            **({"details": self.details} if self.details else {}),
            **({"children": [c.as_dict() for c in self.children]} if self.children else {}),
        }


@dataclass
class DecodedMessage:
    """One IKE message of a capture (a retransmission is a message of its own)."""

    frames: tuple[int, ...]
    """Capture frame numbers of its datagrams (fragments in arrival order)."""
    time: float
    src: str
    dst: str
    sender: str
    """``initiator`` or ``responder``: the I flag (RFC 7296 3.1)."""
    exchange: str
    message_id: int
    is_response: bool
    spi_i: bytes
    spi_r: bytes
    ike_bytes: int
    fragments: tuple[tuple[int, int], ...]
    """(Fragment Number, Total Fragments) of each SKF datagram, in arrival order."""
    retransmission: bool
    payloads: list[Node]
    epoch: int | None = None
    """The key epoch that decrypted it (``None``: unprotected or not decrypted)."""
    status: str = "clear"
    """``clear`` (IKE_SA_INIT), ``verified`` (ICV verified, decrypted), ``no keys``,
    ``bad ICV`` or ``incomplete`` (fragments missing)."""
    notes: list[str] = field(default_factory=list)
    """What does not verify or is out of the ordinary, one sentence each."""
    plain: UnprotectedMessage | None = field(default=None, repr=False)
    inner: tuple = field(default=(), repr=False)

    def as_dict(self) -> dict[str, object]:
        return {
            "frames": list(self.frames),
            "time": self.time,
            "src": self.src,
            "dst": self.dst,
            "sender": self.sender,
            "exchange": self.exchange,
            "message_id": self.message_id,
            "response": self.is_response,
            "spi_i": self.spi_i.hex(),
            "spi_r": self.spi_r.hex(),
            "ike_bytes": self.ike_bytes,
            "fragments": [list(f) for f in self.fragments],
            "retransmission": self.retransmission,
            "epoch": self.epoch,
            "status": self.status,
            "notes": self.notes,
            "payloads": [p.as_dict() for p in self.payloads],
        }


@dataclass
class Check:
    """One verification: what was checked, whether it held, and how."""

    what: str
    ok: bool
    detail: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"what": self.what, "ok": self.ok, "detail": self.detail}


@dataclass
class DecodedSa:
    """One IKE SA of the capture and what the transcript said about it."""

    spi_i: bytes
    spi_r: bytes
    suite: NegotiatedSuite | None
    epochs: list = field(default_factory=list)
    """Its ``IKE_KEYS`` records, in order (``pqike.secrets.Record``)."""
    schedule: list[Check] = field(default_factory=list)
    int_auth: list[dict[str, object]] = field(default_factory=list)
    """The IntAuth chain recomputed from the capture, one step per IKE_INTERMEDIATE message."""
    checks: list[Check] = field(default_factory=list)
    rekeyed_from: bytes = b""

    def as_dict(self) -> dict[str, object]:
        return {
            "spi_i": self.spi_i.hex(),
            "spi_r": self.spi_r.hex(),
            "suite": self.suite.describe() if self.suite else None,
            "rekeyed_from": self.rekeyed_from.hex() or None,
            "key_schedule": [
                {
                    "exchange": r.get("exchange"),
                    "epoch": r.get("epoch"),
                    "skeyseed": r.bytes_("skeyseed").hex(),
                    "sk_ei": r.bytes_("sk_ei").hex(),
                    "sk_er": r.bytes_("sk_er").hex(),
                }
                for r in self.epochs
            ],
            "schedule_checks": [c.as_dict() for c in self.schedule],
            "int_auth": self.int_auth,
            "checks": [c.as_dict() for c in self.checks],
        }


@dataclass
class Decoded:
    """What ``decode_capture`` found: the messages, the IKE SAs and every check."""

    messages: list[DecodedMessage]
    sas: list[DecodedSa]
    problems: list[str]
    """Sentences about the whole run (e.g. no secrets matched)."""

    @property
    def ok(self) -> bool:
        """Every protected message verified and every check held."""
        return (
            all(m.status in ("clear", "verified") for m in self.messages)
            and all(c.ok for sa in self.sas for c in (*sa.schedule, *sa.checks))
            and not self.problems
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "messages": [m.as_dict() for m in self.messages],
            "sas": [s.as_dict() for s in self.sas],
            "problems": self.problems,
        }

    def table(self):
        """One row per message as a pandas DataFrame: frames, exchange, sizes, epoch,
        status, the payloads in order (``SK{KE}``) and the notes."""
        import pandas as pd

        rows = []
        for m in self.messages:
            rows.append(
                {
                    "frames": ",".join(map(str, m.frames)),
                    "time": m.time,
                    "sender": m.sender,
                    "exchange": m.exchange,
                    "message_id": m.message_id,
                    "response": m.is_response,
                    "spi_i": m.spi_i.hex(),
                    "ike_bytes": m.ike_bytes,
                    "fragments": len(m.fragments),
                    "retransmission": m.retransmission,
                    "epoch": m.epoch,
                    "status": m.status,
                    "payloads": _payload_summary(m.payloads),
                    "notes": " ".join(m.notes),
                }
            )
        return pd.DataFrame(rows)


def _payload_summary(nodes: list[Node]) -> str:
    out = []
    for n in nodes:
        if n.children:
            out.append(f"{n.name}{{{_payload_summary(n.children)}}}")
        else:
            out.append(n.name)
    return " ".join(out)


def _kem_name(method: int) -> str:
    from ..crypto.kex import DEFAULT_REGISTRY

    try:
        return DEFAULT_REGISTRY.info(method).name
    except Exception:  # an ID the registry does not know: the IANA name or the number
        return name_of(KeyExchangeMethod, method)


def transform_label(t) -> str:
    """``ENCR=ENCR_AES_GCM_16/256``, ``ADDKE1=mlkem768 (36)``: RFC 9370 names transform
    types 6 to 12 ADDKE1 to ADDKE7, which share the KE registry (Transform Type 4)."""
    kind = name_of(TransformType, t.type)
    if t.type == TransformType.KE or t.type in ADDKE_TYPES:
        return f"{kind}={_kem_name(t.id)} ({t.id})"
    registry = {
        TransformType.ENCR: EncrTransform,
        TransformType.PRF: PrfTransform,
        TransformType.INTEG: IntegTransform,
        TransformType.ESN: EsnTransform,
    }.get(t.type)
    value = name_of(registry, t.id) if registry is not None else str(t.id)
    bits = t.key_length
    return f"{kind}={value}" + (f"/{bits}" if bits else "")


def _details(p) -> tuple[dict[str, object], list[Node]]:
    """The fields worth showing of one decoded payload."""
    if isinstance(p, SaPayload):
        kids = []
        for prop in p.proposals:
            kids.append(
                Node(
                    f"Proposal {prop.number}",
                    0,
                    0,
                    False,
                    {
                        "protocol": name_of(ProtocolId, prop.protocol_id),
                        **({"spi": prop.spi.hex()} if prop.spi else {}),
                        "transforms": [transform_label(t) for t in prop.transforms],
                    },
                    [],
                )
            )
        return {}, kids
    if isinstance(p, KePayload):
        return {"method": f"{_kem_name(p.method)} ({p.method})", "data": len(p.data)}, []
    if isinstance(p, NoncePayload):
        return {"data": len(p.data)}, []
    if isinstance(p, NotifyPayload):
        d: dict[str, object] = {"type": p.notify_type}
        if p.protocol_id:
            d["protocol"] = name_of(ProtocolId, p.protocol_id)
        if p.spi:
            d["spi"] = p.spi.hex()
        if p.data:
            d["data"] = p.data.hex() if len(p.data) <= 32 else f"{len(p.data)} bytes"
        d.update(_ppk_fields(p))
        return d, []
    if isinstance(p, IdiPayload | IdrPayload):
        return {"id_type": name_of(IdType, p.id_type), "data": _id_text(p.id_type, p.data)}, []
    if isinstance(p, AuthPayload):
        return {"method": name_of(AuthMethod, p.method), "data": len(p.data)}, []
    if isinstance(p, TsiPayload | TsrPayload):
        return {"selectors": [str(s) for s in p.selectors]}, []
    if isinstance(p, DeletePayload):
        return {
            "protocol": name_of(ProtocolId, p.protocol_id),
            "spis": [s.hex() for s in p.spis],
        }, []
    if isinstance(p, SkfPayload):
        return {"fragment": f"{p.fragment_number}/{p.total_fragments}"}, []
    return {}, []


_PPK_ID_TYPES = {1: "PPK_ID_OPAQUE", 2: "PPK_ID_FIXED"}
"""RFC 8784 5.1: the PPK ID Type octet of PPK_IDENTITY (and of RFC 9867's PPK_IDENTITY_KEY)."""


def _ppk_fields(p: NotifyPayload) -> dict[str, object]:
    """PPK_IDENTITY (RFC 8784 5.1) and PPK_IDENTITY_KEY (RFC 9867 4) split into their
    fields; nothing for other notifies or data too short to hold them."""
    from ..crypto.keys import PPK_CONFIRMATION_SIZE

    data = p.data
    if p.notify_type == NotifyType.PPK_IDENTITY and len(data) >= 2:
        return {"ppk_id_type": _PPK_ID_TYPES.get(data[0], data[0]), "ppk_id": _text(data[1:])}
    if p.notify_type == NotifyType.PPK_IDENTITY_KEY and len(data) >= 2 + PPK_CONFIRMATION_SIZE:
        return {
            "ppk_id_type": _PPK_ID_TYPES.get(data[0], data[0]),
            "ppk_id": _text(data[1:-PPK_CONFIRMATION_SIZE]),
            "ppk_confirmation": data[-PPK_CONFIRMATION_SIZE:].hex(),
        }
    return {}


def _text(data: bytes) -> str:
    """Printable ASCII as it is, anything else as hex digits."""
    return data.decode() if data.isascii() and data.decode().isprintable() else data.hex()


def _id_text(id_type: int, data: bytes) -> str:
    if id_type in (IdType.ID_IPV4_ADDR, IdType.ID_IPV6_ADDR):
        try:
            return str(ipaddress.ip_address(data))
        except ValueError:
            return data.hex()
    if id_type in (IdType.ID_FQDN, IdType.ID_RFC822_ADDR):
        return data.decode("utf-8", "replace")
    return data.hex()


def _tree(first_type: int, data: bytes, protected: bool) -> list[Node]:
    sizes = _walk(first_type, data)
    try:
        decoded = decode_payloads(first_type, data)
    except ProtocolError:
        decoded = ()
    nodes = []
    for i, (t, length) in enumerate(sizes):
        p = decoded[i] if i < len(decoded) else None
        details, kids = _details(p) if p is not None else ({}, [])
        nodes.append(Node(payload_name(p, t), t, length, protected, details, kids))
    return nodes


@dataclass
class _SaKeys:
    spi_i: bytes
    spi_r: bytes
    epochs: list
    suite: NegotiatedSuite | None = None
    cipher: Cipher | None = None
    nonces: bytes = b""
    sa_init: dict[bool, bytes] = field(default_factory=dict)
    """The IKE_SA_INIT request (False) and response (True) as captured."""
    decoded: DecodedSa | None = None
    old_prf: int | None = None
    """For an IKE SA made by a rekey: the old SA's PRF, which computes SKEYSEED."""


def _bind(records, spis: tuple[bytes, bytes], nonces: bytes, rekey: bool) -> list:
    """IKE_KEYS records of the IKE SA with ``spis``: by their SPIs, or, for records that
    do not name them (a converted log), by the nonces."""
    out = []
    for r in records:
        if r.kind != "IKE_KEYS":
            continue
        if "spi_i" in r.fields:
            if (r.bytes_("spi_i"), r.bytes_("spi_r")) == spis:
                out.append(r)
        elif nonces and r.nonces == nonces and (r.get("exchange") == "CREATE_CHILD_SA") == rekey:
            out.append(r)
    # Both peers' transcripts may be given: keep one record per epoch.
    seen, unique = set(), []
    for r in out:
        key = (r.get("exchange"), r.get("epoch"), r.bytes_("sk_ei"))
        if key not in seen:
            seen.add(key)
            unique.append(r)
    return unique


def _verify_epoch(r, prf_id: int | None, spis: tuple[bytes, bytes], old_prf: int | None) -> Check:
    """Recompute one IKE_KEYS record: SKEYSEED from its inputs, then prf+ (RFC 7296 2.14,
    RFC 9370 2.2.2 and 2.2.4)."""
    from ..crypto.keys import derive_ike_keys, skeyseed, skeyseed_additional

    label = f"{r.get('exchange')} epoch {r.get('epoch')}"
    prf_num = r.get("prf", prf_id)
    if prf_num is None:
        return Check(f"key schedule {label}", False, "no PRF known for this IKE SA")
    prf = get_prf(prf_num)
    secrets = [s for _, s in r.ke]
    nonces = r.nonces
    ppk_epoch = bool(r.get("ppk_id"))
    if not secrets and not ppk_epoch:
        return Check(f"key schedule {label}", False, "the record lists no shared secret")
    exchange = r.get("exchange")
    if ppk_epoch:
        # RFC 9867 3: SKEYSEED' = prf+(PPK, SK_d(n-1)) needs the PPK, which no transcript
        # holds; what follows from SKEYSEED' (prf+) is still checked.
        seed = r.bytes_("skeyseed")
    elif exchange == "IKE_SA_INIT":
        seed = skeyseed(prf, nonces, b"", secrets[0])
    else:
        seed_prf = get_prf(old_prf) if exchange == "CREATE_CHILD_SA" and old_prf else prf
        seed = skeyseed_additional(
            seed_prf, r.bytes_("sk_d_prev"), secrets[0], nonces, b"", additional_secrets=secrets[1:]
        )
    if seed != r.bytes_("skeyseed"):
        return Check(f"key schedule {label}", False, "SKEYSEED does not follow from its inputs")
    keys = derive_ike_keys(
        prf,
        seed,
        nonces,
        b"",
        *spis,
        encr_key_size=len(r.bytes_("sk_ei")),
        integ_key_size=len(r.bytes_("sk_ai")),
    )
    names = ("sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr")
    wrong = [n for n in names if getattr(keys, n) != r.bytes_(n)]
    if wrong:
        return Check(
            f"key schedule {label}",
            False,
            f"prf+ does not give {', '.join(wrong)} (SPIs {spis[0].hex()}/{spis[1].hex()})",
        )
    if ppk_epoch:
        return Check(
            f"key schedule {label}",
            True,
            f"PPK {r.bytes_('ppk_id')!r} mixed in (RFC 9867): prf+ over Ni | Nr | SPIi | SPIr "
            "checked; SKEYSEED' = prf+(PPK, SK_d(n-1)) needs the PPK, not in the transcript",
        )
    how = {
        "IKE_SA_INIT": "SKEYSEED = prf(Ni | Nr, SK(0))",
        "IKE_INTERMEDIATE": "SKEYSEED = prf(SK_d(n-1), SK(n) | Ni | Nr)",
        "CREATE_CHILD_SA": "SKEYSEED = prf(SK_d(old), SK(0) | Ni | Nr | SK(1..n))",
    }.get(str(exchange), "")
    return Check(f"key schedule {label}", True, f"{how}; prf+ over Ni | Nr | SPIi | SPIr")


def _expected_epoch(exchange: int, mid: int, last: int, rekeyed: bool) -> int | None:
    """RFC 9370 2.2.2: IKE_INTERMEDIATE message n is protected by the keys of epoch
    n-1; IKE_AUTH and everything after by the last epoch."""
    if rekeyed:
        return 0
    if exchange == ExchangeType.IKE_INTERMEDIATE:
        return max(mid - 1, 0)
    if exchange == ExchangeType.IKE_SA_INIT:
        return None
    return last


def decode_capture(
    datagrams: Sequence[CapturedDatagram],
    records: Sequence = (),
    *,
    psk: bytes | None = None,
) -> Decoded:
    """Decode every IKE message of a capture with the records of a secrets transcript
    (``pqike.secrets``; one or both peers', or converted from a charon log).

    Never raises for what the capture holds: what cannot be decrypted or does not
    verify is said in the message's ``notes``, the SA's checks or ``problems``.
    ``psk`` lets the decoder recompute the AUTH payloads (RFC 7296 2.15) in full.
    """
    msgs: list[tuple[CapturedDatagram, Message]] = []
    for d in datagrams:
        data = ike_message(d.payload)
        if data is None:
            continue
        try:
            msgs.append((d, decode_message(data)))
        except ProtocolError:
            continue
    sas: dict[tuple[bytes, bytes], _SaKeys] = {}
    nonce_i: dict[bytes, bytes] = {}
    out: list[DecodedMessage] = []
    problems: list[str] = []
    seen_keys: set[tuple] = set()
    pending_frag: dict[tuple, list[tuple[CapturedDatagram, Message]]] = {}
    order: list[tuple] = []

    # 1. IKE_SA_INIT first: it names the SAs, their suites and nonces.
    for _, m in msgs:
        h = m.header
        if h.exchange_type != ExchangeType.IKE_SA_INIT:
            continue
        nonce = m.first(NoncePayload)
        if not h.is_response and nonce is not None:
            nonce_i[h.spi_i] = nonce.data
        elif h.is_response and nonce is not None and h.spi_i in nonce_i:
            suite = suite_of([m])
            if suite is None:
                continue
            key = (h.spi_i, h.spi_r)
            nonces = nonce_i[h.spi_i] + nonce.data
            sa = sas.setdefault(key, _SaKeys(h.spi_i, h.spi_r, [], suite, None, nonces))
            sa.sa_init[True] = m.raw
    for _, m in msgs:
        h = m.header
        if h.exchange_type == ExchangeType.IKE_SA_INIT and not h.is_response:
            for sa in sas.values():
                if sa.spi_i == h.spi_i:
                    sa.sa_init[False] = m.raw
    for sa in sas.values():
        sa.epochs = _bind(records, (sa.spi_i, sa.spi_r), sa.nonces, rekey=False)
        _attach(sa)

    # 2. Group datagrams into messages (fragments of one transmission join).
    for d, m in msgs:
        h = m.header
        last = m.payloads[-1] if m.payloads else None
        skf = last if isinstance(last, SkfPayload) else None
        mkey = (h.spi_i, h.spi_r, h.exchange_type, h.message_id, h.is_response)
        if skf is not None:
            group = pending_frag.get(mkey)
            # A fragment after a complete set starts a retransmission.
            if group is None or _complete(group):
                group = pending_frag[mkey] = []
                order.append(("frag", mkey, group))
            group.append((d, m))
        else:
            order.append(("whole", mkey, [(d, m)]))

    # 3. Decode each message in capture order, learning rekeyed SAs on the way.
    for _kind, key, group in order:
        h = group[0][1].header
        retrans = key in seen_keys
        seen_keys.add(key)
        msg = _decode_one(group, sas, records, retrans)
        out.append(msg)
        if msg.plain is not None and h.exchange_type == ExchangeType.CREATE_CHILD_SA:
            _learn_rekey(msg, out, sas, records)
    out.sort(key=lambda m: m.frames[0])

    # 4. Checks per SA: key schedule, IntAuth chain, AUTH.
    for sa in sas.values():
        _check_sa(sa, out, records, psk)
    protected = [m for m in out if m.status != "clear"]
    if msgs and protected and not any(m.status == "verified" for m in protected):
        if not records:
            problems.append(
                "the secrets hold no records, so no protected message could be decrypted"
            )
        elif not any(sa.epochs for sa in sas.values()):
            problems.append(
                "the secrets belong to none of the IKE SAs in the capture "
                "(no IKE_KEYS record has their SPIs or nonces)"
            )
        else:
            problems.append("no protected message verifies with the keys in the secrets")
    decoded_sas = [sa.decoded for sa in sas.values() if sa.decoded is not None]
    return Decoded(out, decoded_sas, problems)


def _attach(sa: _SaKeys) -> None:
    if sa.suite is not None and sa.cipher is None:
        try:
            sa.cipher = get_cipher(sa.suite.encr, sa.suite.key_bits, sa.suite.integ)
        except Exception:  # an algorithm pqike cannot decrypt: messages stay opaque
            sa.cipher = None
    if sa.decoded is None:
        sa.decoded = DecodedSa(sa.spi_i, sa.spi_r, sa.suite, list(sa.epochs))
    else:
        sa.decoded.epochs = list(sa.epochs)


def _complete(group) -> bool:
    total = group[0][1].payloads[-1].total_fragments
    numbers = {g[1].payloads[-1].fragment_number for g in group}
    return numbers >= set(range(1, total + 1))


def _keys_of(r, from_initiator: bool) -> tuple[bytes, bytes]:
    if from_initiator:
        return r.bytes_("sk_ei"), r.bytes_("sk_ai")
    return r.bytes_("sk_er"), r.bytes_("sk_ar")


def _decode_one(group, sas, records, retrans: bool) -> DecodedMessage:
    d0, m0 = group[0]
    h = m0.header
    sender = "initiator" if h.is_initiator else "responder"
    first = m0
    fragments: list[tuple[int, int]] = []
    notes: list[str] = []
    for _, m in group:
        last = m.payloads[-1] if m.payloads else None
        if isinstance(last, SkfPayload):
            fragments.append((last.fragment_number, last.total_fragments))
            if last.fragment_number == 1:
                first = m
    msg = DecodedMessage(
        frames=tuple(d.index for d, _ in group),
        time=d0.time,
        src=f"{d0.src[0]}:{d0.src[1]}",
        dst=f"{d0.dst[0]}:{d0.dst[1]}",
        sender=sender,
        exchange=name_of(ExchangeType, h.exchange_type),
        message_id=h.message_id,
        is_response=h.is_response,
        spi_i=h.spi_i,
        spi_r=h.spi_r,
        ike_bytes=len(m0.raw),
        fragments=tuple(fragments),
        retransmission=retrans,
        payloads=[],
        notes=notes,
    )
    if fragments:
        notes.extend(_fragment_notes(fragments))
    raw = first.raw
    outer = _tree(h.next_payload, raw[IKE_HEADER_LENGTH:], False)
    last = first.payloads[-1] if first.payloads else None
    if not isinstance(last, SkPayload | SkfPayload):
        msg.payloads = outer
        return msg
    clear = outer[:-1]
    if clear:
        # RFC 9242 3.3.2 and RFC 7296 3.14: anything before SK is unauthenticated by SK.
        notes.append(
            f"{len(clear)} payload(s) outside SK ({', '.join(n.name for n in clear)}): "
            "not protected, but covered by IntAuth's A"
        )
    sa = sas.get((h.spi_i, h.spi_r))
    sk_node = outer[-1]
    msg.payloads = [*clear, sk_node]
    if sa is None or not sa.epochs or sa.cipher is None:
        msg.status = "no keys"
        return msg
    from_initiator = h.is_initiator
    n = len(sa.epochs)
    likely = _expected_epoch(
        h.exchange_type,
        h.message_id,
        n - 1,
        sa.decoded is not None and bool(sa.decoded.rekeyed_from),
    )
    tries = ([likely] if likely is not None and likely < n else []) + [
        i for i in range(n) if i != likely
    ]
    plain = None
    for epoch in tries:
        sk_e, sk_a = _keys_of(sa.epochs[epoch], from_initiator)
        plain = _open(group, sa.cipher, sk_e, sk_a)
        if plain is not None:
            msg.epoch = epoch
            break
    if plain is None:
        msg.status = "bad ICV" if not fragments or _complete(group) else "incomplete"
        if msg.status == "bad ICV":
            notes.append(
                f"the ICV verifies with none of the {n} key epoch(s) of this IKE SA in the secrets"
            )
        return msg
    if likely is not None and msg.epoch != likely:
        notes.append(
            f"protected with the keys of epoch {msg.epoch}; RFC 9370 2.2.2 expects epoch {likely}"
        )
    msg.status = "verified"
    msg.plain = plain
    msg.ike_bytes = plain.ike_bytes
    try:
        msg.inner = decode_payloads(plain.first_inner, plain.plaintext)
    except ProtocolError as exc:
        notes.append(f"the decrypted payloads do not parse: {exc}")
    inner = _tree(plain.first_inner, plain.plaintext, True)
    sk = Node(
        sk_node.name,
        sk_node.payload_type,
        plain.ike_bytes - IKE_HEADER_LENGTH - sum(c.length for c in clear),
        False,
        {"epoch": msg.epoch, "icv": "verified"},
        inner,
    )
    msg.payloads = [*clear, sk]
    return msg


def _fragment_notes(fragments: list[tuple[int, int]]) -> list[str]:
    """RFC 7383 2.6: duplicates, numbers beyond the total, totals that change."""
    notes = []
    numbers = [n for n, _ in fragments]
    totals = {t for _, t in fragments}
    dup = sorted({n for n in numbers if numbers.count(n) > 1})
    if dup:
        notes.append(f"fragment(s) {', '.join(map(str, dup))} sent more than once")
    if len(totals) > 1:
        notes.append(f"Total Fragments changed within one message: {sorted(totals)}")
    bad = [n for n, t in fragments if n < 1 or n > t]
    if bad:
        notes.append(f"fragment number(s) {', '.join(map(str, bad))} outside 1..Total Fragments")
    return notes


def _open(group, cipher: Cipher, sk_e: bytes, sk_a: bytes) -> UnprotectedMessage | None:
    """Verify and decrypt a message or its fragments with one key set (RFC 7383 2.6:
    fragments are verified one by one, then joined in Fragment Number order)."""
    last = group[0][1].payloads[-1]
    try:
        if isinstance(last, SkfPayload):
            r = Reassembler(ReassemblyLimits())
            whole = None
            verified = []
            for _, m in group:
                try:
                    verified.append((m, r.add(m, cipher, sk_e, sk_a, now=0.0)))
                except ProtocolError:
                    continue
            whole = next((w for _, w in verified if w is not None), None)
            if whole is None and verified:
                # Out of order or duplicated: retry in number order with distinct numbers.
                r = Reassembler(ReassemblyLimits())
                distinct: dict[int, Message] = {}
                for m, _ in verified:
                    distinct.setdefault(_fragment_number(m), m)
                for num in sorted(distinct):
                    whole = r.add(distinct[num], cipher, sk_e, sk_a, now=0.0) or whole
            return whole
        return unprotect(group[0][1], cipher, sk_e, sk_a)
    except (ProtocolError, ValueError):
        return None


def _learn_rekey(msg: DecodedMessage, out, sas, records) -> None:
    """A CREATE_CHILD_SA response that rekeys the IKE SA names the new SPIs; with the
    request's nonce they find the new SA's keys in the transcript (RFC 7296 2.18)."""
    if not msg.is_response:
        return
    sa_p = next((p for p in msg.inner if isinstance(p, SaPayload)), None)
    nr = next((p for p in msg.inner if isinstance(p, NoncePayload)), None)
    if sa_p is None or nr is None or not sa_p.proposals:
        return
    if sa_p.proposals[0].protocol_id != ProtocolId.IKE:
        return
    request = next(
        (
            m
            for m in reversed(out)
            if m.exchange == "CREATE_CHILD_SA"
            and not m.is_response
            and m.message_id == msg.message_id
            and m.spi_i == msg.spi_i
            and m.inner
        ),
        None,
    )
    if request is None:
        return
    req_sa = next((p for p in request.inner if isinstance(p, SaPayload)), None)
    ni = next((p for p in request.inner if isinstance(p, NoncePayload)), None)
    if req_sa is None or ni is None:
        return
    # The rekey's initiator is the new SA's original initiator (RFC 7296 2.18).
    spis = (req_sa.proposals[0].spi, sa_p.proposals[0].spi)
    try:
        suite = NegotiatedSuite.from_proposal(sa_p.proposals[0])
    except ProtocolError:
        suite = None
    old = sas.get((msg.spi_i, msg.spi_r))
    new = _SaKeys(spis[0], spis[1], [], suite, None, ni.data + nr.data)
    new.old_prf = old.suite.prf if old is not None and old.suite is not None else None
    new.epochs = _bind(records, spis, new.nonces, rekey=True)
    sas[spis] = new
    _attach(new)
    assert new.decoded is not None
    new.decoded.rekeyed_from = msg.spi_i + msg.spi_r
    if old is not None and old.suite is not None:
        new.decoded.checks.append(
            Check(
                "rekey",
                True,
                f"IKE SA {msg.spi_i.hex()} rekeyed into {spis[0].hex()}/{spis[1].hex()}",
            )
        )


def _check_sa(sa: _SaKeys, out: list[DecodedMessage], records, psk: bytes | None) -> None:
    dec = sa.decoded
    assert dec is not None
    prf_id = sa.suite.prf if sa.suite is not None else None
    for r in sa.epochs:
        check = _verify_epoch(r, prf_id, (sa.spi_i, sa.spi_r), sa.old_prf or prf_id)
        dec.schedule.append(check)
    if sa.epochs and sa.nonces and not dec.rekeyed_from:
        first = sa.epochs[0]
        dec.schedule.append(
            Check(
                "nonces",
                first.nonces == sa.nonces,
                "Ni | Nr of the transcript are those of the captured IKE_SA_INIT"
                if first.nonces == sa.nonces
                else "the transcript's nonces differ from the captured IKE_SA_INIT's",
            )
        )
    if not sa.epochs or prf_id is None:
        return
    prf = get_prf(prf_id)
    mine = [m for m in out if (m.spi_i, m.spi_r) == (sa.spi_i, sa.spi_r)]
    # The IntAuth chain, recomputed from the capture (RFC 9242 3.3.2).
    chain = {True: b"", False: b""}
    int_records = [
        r
        for r in records
        if r.kind == "INT_AUTH" and (r.bytes_("spi_i"), r.bytes_("spi_r")) == (sa.spi_i, sa.spi_r)
    ]
    for m in mine:
        if m.exchange != "IKE_INTERMEDIATE" or m.retransmission or m.plain is None:
            continue
        assert m.epoch is not None
        ini = m.sender == "initiator"
        k = sa.epochs[m.epoch]
        sk_p = k.bytes_("sk_pi") if ini else k.bytes_("sk_pr")
        octets = crypto_auth.int_auth_octets(
            m.plain.header_bytes, m.plain.unprotected, m.plain.first_inner, m.plain.plaintext
        )
        value = crypto_auth.int_auth(prf, sk_p, chain[ini], octets)
        step: dict[str, object] = {
            "message_id": m.message_id,
            "response": m.is_response,
            "chain": "IntAuth_i" if ini else "IntAuth_r",
            "epoch": m.epoch,
            "a_bytes": len(octets) - len(m.plain.plaintext),
            "p_bytes": len(m.plain.plaintext),
            "previous": chain[ini].hex(),
            "value": value.hex(),
        }
        rec = next(
            (
                r
                for r in int_records
                if r.get("mid") == m.message_id and r.get("response") == m.is_response
            ),
            None,
        )
        what = f"IntAuth {'request' if not m.is_response else 'response'} {m.message_id}"
        if rec is None:
            step["transcript"] = "absent"
        else:
            same_ap = rec.bytes_("a") + rec.bytes_("p") == octets
            same = rec.bytes_("value") == value
            step["transcript"] = "equal" if same else "differs"
            if not same_ap:
                dec.checks.append(
                    Check(
                        what,
                        False,
                        f"the transcript's A|P ({len(rec.bytes_('a'))}+{len(rec.bytes_('p'))} "
                        f"bytes) is not the captured message's ({step['a_bytes']}+"
                        f"{step['p_bytes']} bytes)",
                    )
                )
            dec.checks.append(
                Check(
                    what,
                    same,
                    "prf(SK_p, IntAuth_(N-1) | A | P) over the capture equals the transcript"
                    if same
                    else "the capture's IntAuth differs from the transcript's",
                )
            )
        chain[ini] = value
        dec.int_auth.append(step)
    # AUTH: the IntAuth tail and the AUTH payloads against what the peers computed.
    auths = [
        r
        for r in records
        if r.kind == "AUTH"
        and (
            (r.bytes_("spi_i"), r.bytes_("spi_r")) == (sa.spi_i, sa.spi_r)
            if "spi_i" in r.fields
            else r.nonces == sa.nonces
        )
    ]
    rounds = sum(
        1
        for m in mine
        if m.exchange == "IKE_INTERMEDIATE" and not m.is_response and not m.retransmission
    )
    for m in mine:
        if m.exchange != "IKE_AUTH" or m.retransmission or m.plain is None:
            continue
        auth = next((p for p in m.inner if isinstance(p, AuthPayload)), None)
        if auth is None:
            continue
        ini = m.sender == "initiator"
        tail = chain[True] + chain[False] + m.message_id.to_bytes(4, "big") if rounds else b""
        side = [r for r in auths if r.get("initiator") == ini]
        who = "initiator" if ini else "responder"
        if side:
            tails = {r.bytes_("int_auth") for r in side}
            dec.checks.append(
                Check(
                    f"IntAuth in the {who}'s AUTH",
                    tail in tails,
                    "IntAuth_i | IntAuth_r | MID recomputed from the capture is the one the "
                    "transcript's AUTH signed"
                    if tail in tails
                    else "the AUTH signed an IntAuth that the captured IKE_INTERMEDIATE "
                    "messages do not give",
                )
            )
            values = {r.bytes_("value") for r in side}
            dec.checks.append(
                Check(
                    f"{who}'s AUTH payload",
                    auth.data in values,
                    "equals the AUTH value in the transcript"
                    if auth.data in values
                    else "differs from every AUTH value in the transcript for this side",
                )
            )
        if psk is not None:
            dec.checks.append(_psk_check(sa, m, auth, ini, tail, prf, psk))


def _psk_check(
    sa: _SaKeys, m: DecodedMessage, auth, ini: bool, tail: bytes, prf, psk: bytes
) -> Check:
    """Recompute a PSK AUTH payload from the capture alone (RFC 7296 2.15)."""
    who = "initiator" if ini else "responder"
    # RFC 7296 2.15: each side signs its own IKE_SA_INIT message and the other's nonce.
    real = sa.sa_init.get(not ini)
    peer_nonce = _nonce_of(sa.sa_init.get(ini, b""))
    id_p = next((p for p in m.inner if isinstance(p, IdiPayload | IdrPayload)), None)
    if real is None or id_p is None or not peer_nonce:
        return Check(f"{who}'s AUTH from the PSK", False, "the capture lacks IKE_SA_INIT or ID")
    k = sa.epochs[-1]
    sk_p = k.bytes_("sk_pi") if ini else k.bytes_("sk_pr")
    octets = crypto_auth.signed_octets(real, peer_nonce, prf, sk_p, id_p.body, tail)
    ok = crypto_auth.psk_auth(prf, psk, octets) == auth.data
    return Check(
        f"{who}'s AUTH from the PSK",
        ok,
        "prf(prf(PSK, key pad), RealMessage | Nonce | prf(SK_p, ID') | IntAuth) matches"
        if ok
        else "does not match the AUTH payload",
    )


def _nonce_of(raw: bytes) -> bytes:
    """The Nonce of a captured IKE_SA_INIT message (the peer's nonce for the other side)."""
    if not raw:
        return b""
    try:
        n = decode_message(raw).first(NoncePayload)
    except ProtocolError:
        return b""
    return n.data if isinstance(n, NoncePayload) else b""


def _node_lines(node: Node, depth: int) -> list[str]:
    pad = "  " * depth
    details = ", ".join(
        f"{k} {', '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in node.details.items()
    )
    size = f" ({node.length} bytes)" if node.length else ""
    lines = [f"{pad}{node.name}{size}" + (f": {details}" if details else "")]
    for child in node.children:
        lines += _node_lines(child, depth + 1)
    return lines


def format_decoded(decoded: Decoded) -> str:
    """The decoder's report as text: each message with its payload tree, then per IKE
    SA the key schedule, the IntAuth chain and every check; ``!`` marks what does not
    verify."""
    lines: list[str] = []
    for m in decoded.messages:
        arrow = "-> responder" if m.sender == "initiator" else "-> initiator"
        kind = "response" if m.is_response else "request"
        frags = f", {len(m.fragments)} fragments" if m.fragments else ""
        again = ", retransmission" if m.retransmission else ""
        keys = f", keys epoch {m.epoch}" if m.epoch is not None else ""
        status = m.status if m.status != "clear" else "not protected"
        frames = ",".join(map(str, m.frames))
        lines.append(
            f"[{frames}] {m.sender} {arrow} {m.exchange} {kind} mid {m.message_id} "
            f"SPIs {m.spi_i.hex()}/{m.spi_r.hex()}: {m.ike_bytes} bytes{frags}{again}"
            f"{keys}, {status}"
        )
        for node in m.payloads:
            lines += _node_lines(node, 1)
        for note in m.notes:
            lines.append(f"  ! {note}")
    for sa in decoded.sas:
        lines.append("")
        suite = sa.suite.describe() if sa.suite else "unknown suite"
        origin = f", rekeyed from {sa.rekeyed_from[:8].hex()}" if sa.rekeyed_from else ""
        lines.append(f"IKE SA {sa.spi_i.hex()}/{sa.spi_r.hex()} ({suite}{origin})")
        if not sa.epochs:
            lines.append("  ! no IKE_KEYS record in the secrets for this IKE SA")
        lines.append("  key schedule:")
        for r in sa.epochs:
            kes = ", ".join(f"{_kem_name(m) if m else 'SK'} {len(s)} bytes" for m, s in r.ke)
            if r.get("ppk_id"):
                kes = f"PPK {r.bytes_('ppk_id')!r} (RFC 9867)"
            lines.append(
                f"    epoch {r.get('epoch')} after {r.get('exchange')}: {kes}; "
                f"SKEYSEED {r.bytes_('skeyseed').hex()[:32]}..."
            )
            for name in ("sk_d", "sk_ei", "sk_er", "sk_ai", "sk_ar", "sk_pi", "sk_pr"):
                if r.bytes_(name):
                    lines.append(f"      {name.upper()[:2] + name[2:]} {r.bytes_(name).hex()}")
        for c in sa.schedule:
            lines.append(f"    {'ok' if c.ok else '!'} {c.what}: {c.detail}")
        if sa.int_auth:
            lines.append("  IntAuth chain (RFC 9242 3.3.2), recomputed from the capture:")
            for step in sa.int_auth:
                kind = "response" if step["response"] else "request"
                lines.append(
                    f"    {step['chain']} after {kind} {step['message_id']} "
                    f"(epoch {step['epoch']}, A {step['a_bytes']} + P {step['p_bytes']} bytes): "
                    f"{str(step['value'])[:32]}... transcript {step['transcript']}"
                )
        for c in sa.checks:
            lines.append(f"  {'ok' if c.ok else '!'} {c.what}: {c.detail}")
    for p in decoded.problems:
        lines.append(f"! {p}")
    verified = sum(m.status == "verified" for m in decoded.messages)
    protected = sum(m.status != "clear" for m in decoded.messages)
    lines.append("")
    lines.append(
        f"{len(decoded.messages)} messages, {protected} protected, {verified} verified; "
        + ("everything verifies" if decoded.ok else "something does not verify (marked !)")
    )
    return "\n".join(lines)


def decode_files(
    capture: str,
    secrets: Sequence[str] = (),
    charon_logs: Sequence[str] = (),
    psk: bytes | None = None,
) -> Decoded:
    """``decode_capture`` of a pcap file with transcripts and charon logs as secrets.

    Raises ``pqike.pcap.CaptureError`` or ``pqike.secrets.TranscriptError`` with one
    sentence for a file it cannot use, and ``CaptureError`` for a capture without IKE.
    """
    from pathlib import Path

    from ..pcap import CaptureError, read_pcap
    from ..secrets import TranscriptError, read_transcript, transcript_from_charon_log

    datagrams = read_pcap(capture)
    if not any(ike_message(d.payload) is not None and _looks_ike(d.payload) for d in datagrams):
        raise CaptureError(
            f"{capture} holds no IKE message ({len(datagrams)} UDP datagrams, "
            "none with an IKEv2 header)"
        )
    records = []
    for path in secrets:
        records += read_transcript(path)
    for path in charon_logs:
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise TranscriptError(f"cannot read charon log {path}: {exc.strerror}") from None
        records += transcript_from_charon_log(text)
    return decode_capture(datagrams, records, psk=psk)


def _looks_ike(payload: bytes) -> bool:
    data = ike_message(payload)
    if data is None or len(data) < IKE_HEADER_LENGTH:
        return False
    # IKEv2 version 2.0 (RFC 7296 3.1) and a length that matches.
    return data[17] == 0x20 and int.from_bytes(data[24:28], "big") == len(data)
