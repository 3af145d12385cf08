"""The secrets transcript: every key epoch of every IKE SA, one record per line.

Wireshark's ``ikev2_decryption_table`` holds one key set per SPI pair, so it cannot
decrypt the IKE_INTERMEDIATE messages of RFC 9370 (each protected by the keys of the
previous round) nor show what went into IntAuth (RFC 9242 3.3.2). This transcript
records, as they are computed:

- ``IKE_KEYS``: SKEYSEED and SK_* after IKE_SA_INIT, after every additional key
  exchange, and for every IKE SA made by a rekey, with the inputs (nonces, shared
  secrets with their methods, the SK_d that keyed the update);
- ``INT_AUTH``: for every IKE_INTERMEDIATE message, the chain step
  ``value = prf(SK_p, prev | A | P)`` with A and P;
- ``AUTH``: the AUTH values computed (ours and the one expected from the peer) with the
  IntAuth tail they signed;
- ``CHILD_KEYS``: the KEYMAT of every Child SA and its inputs.

The format is in ``docs/secrets-transcript.md``. ``TranscriptWriter`` turns
``pqike.ike.events`` into lines; ``read_transcript`` reads a file back;
``transcript_from_charon_log`` converts strongSwan's level-4 charon log into the same
records, so a strongSwan <-> strongSwan capture decodes too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from .constants import (
    IKE_HEADER_LENGTH,
    ExchangeType,
    HeaderFlag,
    PayloadType,
    name_of,
)
from .files import open_private
from .ike.events import (
    AuthComputed,
    ChildKeysDerived,
    Event,
    IkeKeysDerived,
    IntAuthComputed,
)

MAGIC = "# pqike secrets transcript 1"
"""The first line of a transcript file."""

RECORD_TYPES = ("IKE_KEYS", "INT_AUTH", "AUTH", "CHILD_KEYS")

_IKE_KEY_NAMES = ("sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr")
_CHILD_KEY_NAMES = ("encr_i", "integ_i", "encr_r", "integ_r")
_HEX_FIELDS = frozenset(
    {
        "spi_i",
        "spi_r",
        "old_spi_i",
        "old_spi_r",
        "ni",
        "nr",
        "nonces",
        "skeyseed",
        "sk_d_prev",
        "ppk_id",
        *_IKE_KEY_NAMES,
        "sk_p",
        "prev",
        "a",
        "p",
        "value",
        "int_auth",
        "octets",
        "child_spi_i",
        "child_spi_r",
        "sk_d",
        *_CHILD_KEY_NAMES,
        "seed",
    }
)
_INT_FIELDS = frozenset({"epoch", "mid", "prf"})
_BOOL_FIELDS = frozenset({"response", "initiator", "ours"})


class TranscriptError(ValueError):
    """A transcript (or a log converted into one) cannot be read; the message is one
    sentence naming the file, line and field."""


@dataclass(frozen=True)
class Record:
    """One line of a transcript: its type and its fields, decoded.

    Hex fields are ``bytes``, ``epoch``/``mid``/``prf`` ``int``, flags ``bool``; ``ke``
    is a tuple of ``(method, shared secret)``; others (``exchange``, ``purpose``,
    ``source``) stay text. Absent fields are absent from ``fields``.
    """

    kind: str
    fields: dict[str, object]
    line: int = 0

    def get(self, name: str, default=None):
        return self.fields.get(name, default)

    def bytes_(self, name: str) -> bytes:
        value = self.fields.get(name, b"")
        assert isinstance(value, bytes)
        return value

    @property
    def ke(self) -> tuple[tuple[int, bytes], ...]:
        value = self.fields.get("ke", ())
        assert isinstance(value, tuple)
        return value

    @property
    def nonces(self) -> bytes:
        """Ni | Nr: from ``ni`` and ``nr``, or ``nonces`` when the split is unknown."""
        if "nonces" in self.fields:
            return self.bytes_("nonces")
        return self.bytes_("ni") + self.bytes_("nr")

    def format(self) -> str:
        """The record as one transcript line."""
        parts = [self.kind]
        for name, value in self.fields.items():
            parts.append(f"{name}={_format_value(name, value)}")
        return " ".join(parts)


def _format_value(name: str, value: object) -> str:
    if name == "ke":
        assert isinstance(value, tuple)
        return ",".join(f"{method}:{secret.hex()}" for method, secret in value) or "-"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, bytes):
        return value.hex() or "-"
    return str(value)


def _parse_value(name: str, text: str, where: str) -> object:
    try:
        if name == "ke":
            if text == "-":
                return ()
            out = []
            for item in text.split(","):
                method, _, secret = item.partition(":")
                out.append((int(method), bytes.fromhex(secret)))
            return tuple(out)
        if name in _HEX_FIELDS:
            return b"" if text == "-" else bytes.fromhex(text)
        if name in _INT_FIELDS:
            return int(text)
        if name in _BOOL_FIELDS:
            if text not in ("0", "1"):
                raise ValueError(text)
            return text == "1"
    except ValueError:
        raise TranscriptError(f"{where}: field {name!r} has a bad value {text[:40]!r}") from None
    return text


# --------------------------------------------------------------------------- writing


def records_of(event: Event) -> list[Record]:
    """The transcript records of one core event (none for events without secrets)."""
    if isinstance(event, IkeKeysDerived):
        k = event.keys
        fields: dict[str, object] = {
            "spi_i": event.spi_i,
            "spi_r": event.spi_r,
            "exchange": name_of(ExchangeType, event.exchange),
            "epoch": event.epoch,
            "prf": event.prf,
            "ni": event.nonce_i,
            "nr": event.nonce_r,
            "ke": event.key_exchanges,
        }
        if event.previous_sk_d:
            fields["sk_d_prev"] = event.previous_sk_d
        if event.ppk_id:
            # RFC 9867 3: this epoch is SKEYSEED' = prf+(PPK, sk_d_prev); the PPK itself
            # is never written, only its ID.
            fields["ppk_id"] = event.ppk_id
        if event.old_spi_i:
            fields["old_spi_i"] = event.old_spi_i
            fields["old_spi_r"] = event.old_spi_r
        fields["skeyseed"] = k.skeyseed
        for name in _IKE_KEY_NAMES:
            fields[name] = getattr(k, name)
        return [Record("IKE_KEYS", fields)]
    if isinstance(event, IntAuthComputed):
        return [
            Record(
                "INT_AUTH",
                {
                    "spi_i": event.spi_i,
                    "spi_r": event.spi_r,
                    "mid": event.message_id,
                    "response": event.is_response,
                    "initiator": event.initiator,
                    "epoch": event.epoch,
                    "sk_p": event.sk_p,
                    "prev": event.previous,
                    "a": event.a,
                    "p": event.p,
                    "value": event.value,
                },
            )
        ]
    if isinstance(event, AuthComputed):
        return [
            Record(
                "AUTH",
                {
                    "spi_i": event.spi_i,
                    "spi_r": event.spi_r,
                    "mid": event.message_id,
                    "initiator": event.initiator,
                    "ours": event.ours,
                    "int_auth": event.int_auth,
                    "octets": event.octets,
                    "value": event.value,
                },
            )
        ]
    if isinstance(event, ChildKeysDerived):
        ck = event.keys
        child: dict[str, object] = {
            "spi_i": event.spi_i,
            "spi_r": event.spi_r,
            "child_spi_i": event.child_spi_i,
            "child_spi_r": event.child_spi_r,
            "purpose": event.purpose.value,
            "ni": event.nonce_i,
            "nr": event.nonce_r,
            "ke": event.key_exchanges,
            "sk_d": event.sk_d,
        }
        for name in _CHILD_KEY_NAMES:
            child[name] = getattr(ck, name)
        return [Record("CHILD_KEYS", child)]
    return []


def open_secret_file(path: str | os.PathLike[str]) -> TextIO:
    """Open ``path`` for writing a transcript, created (or truncated) with mode 0600
    before anything is written: it holds keys."""
    return open_private(path, "secrets")


class TranscriptWriter:
    """Writes the records of events to a text stream, flushed per event so a reader
    sees every epoch while the peer still runs."""

    def __init__(self, stream: TextIO, *, source: str = "pqike") -> None:
        self._stream = stream
        stream.write(f"{MAGIC}\n# source={source}\n")
        stream.flush()

    def event(self, event: Event) -> None:
        records = records_of(event)
        if not records:
            return
        for record in records:
            self._stream.write(record.format() + "\n")
        self._stream.flush()

    def events(self, events: Iterable[Event]) -> None:
        for e in events:
            self.event(e)


def write_transcript(path: str | os.PathLike[str], events: Iterable[Event]) -> int:
    """Write the transcript of ``events`` (one side's) to ``path`` (0600); return the
    number of records."""
    n = 0
    with open_secret_file(path) as f:
        w = TranscriptWriter(f)
        for e in events:
            recs = records_of(e)
            n += len(recs)
            w.event(e)
    return n


# --------------------------------------------------------------------------- reading


def parse_transcript(text: str, name: str = "transcript") -> list[Record]:
    """The records of a transcript's text; raises ``TranscriptError`` naming the line."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# pqike secrets transcript"):
        raise TranscriptError(
            f"{name} is not a pqike secrets transcript (its first line is not {MAGIC!r})"
        )
    out = []
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        kind, *items = line.split()
        where = f"{name} line {number}"
        if kind not in RECORD_TYPES:
            raise TranscriptError(f"{where}: unknown record type {kind[:30]!r}")
        fields: dict[str, object] = {}
        for item in items:
            key, sep, value = item.partition("=")
            if not sep:
                raise TranscriptError(f"{where}: {item[:30]!r} is not name=value")
            fields[key] = _parse_value(key, value, where)
        out.append(Record(kind, fields, number))
    return out


def read_transcript(path: str | os.PathLike[str]) -> list[Record]:
    """Read a transcript file (``TranscriptError`` with one sentence if it cannot)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise TranscriptError(f"cannot read secrets file {p}: {exc.strerror}") from None
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise TranscriptError(f"{p} is not a pqike secrets transcript (not ASCII text)") from None
    return parse_transcript(text, str(p))


def write_records(path: str | os.PathLike[str], records: Iterable[Record], source: str) -> None:
    """Write ``records`` as a transcript file (0600)."""
    with open_secret_file(path) as f:
        f.write(f"{MAGIC}\n# source={source}\n")
        for r in records:
            f.write(r.format() + "\n")


# --------------------------------------------------------------------------- charon logs

_DUMP_HEAD = re.compile(r"(?:<(?P<sa>[^>|]+\|\d+)> )?(?P<label>[^<>]+?) => (?P<n>\d+) bytes @ ")
_DUMP_LINE = re.compile(r">\s+\d+: (?P<hex>(?:[0-9A-F]{2} )*[0-9A-F]{2})")


def charon_dumps(log: str) -> Iterator[tuple[str, str, bytes, int]]:
    """``(sa, label, data, line)`` for every hex dump in a charon log, in log order.

    ``sa`` is the ``name|unique id`` charon prints with ``ike_name = yes`` (empty
    without it). A dump cut short (a truncated log) raises ``TranscriptError``.
    """
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if " bytes @ " not in line:
            continue
        head = _DUMP_HEAD.search(line)
        if not head:
            continue
        size, data = int(head.group("n")), b""
        for follow in lines[i + 1 :]:
            if len(data) >= size:
                break
            m = _DUMP_LINE.search(follow)
            if not m:
                break
            data += bytes.fromhex(m.group("hex").replace(" ", ""))
        if len(data) != size:
            raise TranscriptError(
                f"charon log line {i + 1}: the hex dump of {head.group('label')!r} is cut short"
            )
        yield head.group("sa") or "", head.group("label").strip(), data, i + 1


def _header_fields(a: bytes) -> dict[str, object]:
    """SPIs, message ID and flags from the IKE header at the start of an IntAuth A."""
    flags = a[19]
    return {
        "spi_i": a[0:8],
        "spi_r": a[8:16],
        "mid": int.from_bytes(a[20:24], "big"),
        "response": bool(flags & HeaderFlag.RESPONSE),
        "initiator": bool(flags & HeaderFlag.INITIATOR),
    }


def _split_a_p(data: bytes) -> tuple[bytes, bytes]:
    """A and P of an ``IntAuth_A|P`` dump: A runs to the end of the SK generic header
    (RFC 9242 3.3.2), found by walking the unprotected payloads."""
    if len(data) < IKE_HEADER_LENGTH + 4:
        return data, b""
    pos, nxt = IKE_HEADER_LENGTH, data[16]
    while nxt not in (PayloadType.SK, PayloadType.SKF) and pos + 4 <= len(data):
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 4:
            break
        nxt = data[pos]
        pos += length
    end = pos + 4
    return data[:end], data[end:]


@dataclass
class _CharonSa:
    nonces: bytes = b""
    epoch: int = 0
    pending: dict[str, bytes] = field(default_factory=dict)
    int_auth: dict[str, bytes] = field(default_factory=dict)
    spis: tuple[bytes, bytes] | None = None
    sk_d: bytes = b""
    unbound: list[Record] = field(default_factory=list)
    """Records of this IKE SA written before a dump showed its SPIs."""


def transcript_from_charon_log(log: str) -> list[Record]:
    """Convert the key dumps of a charon log (``ike = 4``, ``chd = 4``) into records.

    charon dumps, per IKE SA (``<name|id>``): ``key exchange secret``, ``additional key
    exchange secret``, ``nonces`` (Ni | Nr), ``SKEYSEED`` and ``Sk_*`` for each key
    derivation; ``IntAuth_N-1``, ``IntAuth_A|P``, ``SK_p`` and ``IntAuth_N`` for each
    IKE_INTERMEDIATE message; ``octets = ...`` and ``AUTH = ...`` for each AUTH value;
    ``seed`` and the ESP keys for each Child SA. A derivation with the nonces of the
    IKE SA's first one is an IKE_INTERMEDIATE update (RFC 9370 2.2.2: those keep the
    IKE_SA_INIT nonces), one with new nonces a rekey. The charon log names no SPIs and
    no key exchange methods: records carry the SPIs only where a dumped IntAuth header
    shows them (the decoder binds the rest by nonces), and methods as 0.
    """
    sas: dict[str, _CharonSa] = {}
    by_nonces: dict[bytes, _CharonSa] = {}
    out: list[Record] = []
    ike_order = ("Sk_d secret", "Sk_ai secret", "Sk_ar secret", "Sk_ei secret")
    for sa_name, label, data, line in charon_dumps(log):
        st = sas.setdefault(sa_name, _CharonSa())
        p = st.pending
        if label in ("key exchange secret", "additional key exchange secret", "nonces"):
            if label == "key exchange secret":
                p.clear()
            p[label] = data
        elif label == "SKEYSEED":
            p[label] = data
        elif label in ike_order or label in ("Sk_er secret", "Sk_pi secret"):
            p[label] = data
        elif label == "Sk_pr secret" and "SKEYSEED" in p:
            p[label] = data
            out.append(_charon_ike_keys(st, by_nonces, p, line))
            p.clear()
        elif label == "IntAuth_N-1":
            st.int_auth = {"prev": data}
        elif label == "IntAuth_A|P":
            st.int_auth["ap"] = data
        elif label == "SK_p" and "ap" in st.int_auth:
            st.int_auth["sk_p"] = data
        elif label == "IntAuth_N = prf(Sk_px, data)" and "ap" in st.int_auth:
            a, pp = _split_a_p(st.int_auth["ap"])
            hdr = _header_fields(a)
            # The chain is the sender's: its own message goes into IntAuth_i or _r.
            fields = {
                **hdr,
                "epoch": st.epoch,
                "sk_p": st.int_auth.get("sk_p", b""),
                "prev": st.int_auth.get("prev", b""),
                "a": a,
                "p": pp,
                "value": data,
            }
            st.spis = (a[0:8], a[8:16])
            out.append(Record("INT_AUTH", fields, line))
            st.int_auth = {}
        elif label.startswith("octets = message + nonce"):
            p["octets"] = data
        elif label.startswith("AUTH = prf(prf(secret, keypad), octets)") and "octets" in p:
            octets = p.pop("octets")
            # RealMessage starts the octets: its R flag says whose AUTH this is.
            is_request = len(octets) > 19 and not octets[19] & HeaderFlag.RESPONSE
            prf_len = len(data)
            tail = b""
            if st.epoch > 0 and len(octets) >= 2 * prf_len + 4:
                tail = octets[-(2 * prf_len + 4) :]
            fields = {"mid": int.from_bytes(tail[-4:], "big") if tail else 1}
            if st.spis is not None:
                fields = {"spi_i": st.spis[0], "spi_r": st.spis[1], **fields}
            fields.update(
                {"initiator": is_request, "int_auth": tail, "octets": octets, "value": data}
            )
            if st.nonces:
                fields["nonces"] = st.nonces
            out.append(Record("AUTH", fields, line))
        elif label == "seed":
            p.clear()
            p["seed"] = data
        elif (
            label
            in (
                "encryption initiator key",
                "encryption responder key",
                "integrity initiator key",
                "integrity responder key",
            )
            and "seed" in p
        ):
            p[label] = data
            if label == "encryption responder key" or label == "integrity responder key":
                out.append(_charon_child_keys(st, p, line))
    for st in sas.values():
        if st.spis is not None:
            for r in st.unbound:
                r.fields.update({"spi_i": st.spis[0], "spi_r": st.spis[1]})
    return _merge_child_records(out)


def _charon_ike_keys(
    st: _CharonSa, by_nonces: dict[bytes, _CharonSa], p: dict[str, bytes], line: int
) -> Record:
    nonces = p.get("nonces", b"")
    secrets = [p.get("key exchange secret", b"")]
    if p.get("additional key exchange secret"):
        secrets.append(p["additional key exchange secret"])
    fields: dict[str, object] = {}
    if not st.nonces:
        exchange, st.epoch = "IKE_SA_INIT", 0
        st.nonces = nonces
        by_nonces[nonces] = st
    elif nonces == st.nonces:
        exchange = "IKE_INTERMEDIATE"
        st.epoch += 1
        fields["sk_d_prev"] = st.sk_d
    else:
        # New nonces on a known IKE SA: the keys of the IKE SA a rekey made.
        exchange = "CREATE_CHILD_SA"
        fields["sk_d_prev"] = st.sk_d
    fields = {
        "exchange": exchange,
        "epoch": st.epoch if exchange != "CREATE_CHILD_SA" else 0,
        "nonces": nonces,
        # charon logs SK(1)..SK(n) of a rekey concatenated, and no methods: 0 = unknown.
        "ke": tuple((0, s) for s in secrets),
        **fields,
        "skeyseed": p.get("SKEYSEED", b""),
        "sk_d": p.get("Sk_d secret", b""),
        "sk_ai": p.get("Sk_ai secret", b""),
        "sk_ar": p.get("Sk_ar secret", b""),
        "sk_ei": p.get("Sk_ei secret", b""),
        "sk_er": p.get("Sk_er secret", b""),
        "sk_pi": p.get("Sk_pi secret", b""),
        "sk_pr": p.get("Sk_pr secret", b""),
        "source": "charon",
    }
    record = Record("IKE_KEYS", fields, line)
    if exchange != "CREATE_CHILD_SA":
        st.sk_d = p.get("Sk_d secret", b"")
        st.unbound.append(record)
    return record


def _charon_child_keys(st: _CharonSa, p: dict[str, bytes], line: int) -> Record:
    return Record(
        "CHILD_KEYS",
        {
            "seed": p.get("seed", b""),
            "encr_i": p.get("encryption initiator key", b""),
            "integ_i": p.get("integrity initiator key", b""),
            "encr_r": p.get("encryption responder key", b""),
            "integ_r": p.get("integrity responder key", b""),
            "source": "charon",
        },
        line,
    )


def _merge_child_records(records: list[Record]) -> list[Record]:
    """charon dumps the encryption keys before the integrity keys: a Child SA with an
    integrity algorithm produced two CHILD_KEYS records with one seed; keep the last."""
    out: list[Record] = []
    for r in records:
        if (
            r.kind == "CHILD_KEYS"
            and out
            and out[-1].kind == "CHILD_KEYS"
            and out[-1].get("seed") == r.get("seed")
        ):
            out[-1] = r
            continue
        out.append(r)
    return out


__all__ = [
    "MAGIC",
    "RECORD_TYPES",
    "Record",
    "TranscriptError",
    "TranscriptWriter",
    "charon_dumps",
    "open_secret_file",
    "parse_transcript",
    "read_transcript",
    "records_of",
    "transcript_from_charon_log",
    "write_records",
    "write_transcript",
]
