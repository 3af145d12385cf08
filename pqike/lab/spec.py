"""Experiment specs: a TOML file naming proposals x peer pairs x network profiles.

::

    [experiment]
    description = "Hybrid ML-KEM against classical key exchange"
    seed = 1
    repetitions = 20
    pairs = ["memory"]              # memory, udp, pqike-strongswan, strongswan-pqike, strongswan,
                                    # strongswan-ikev1 (IKEv1: proposals with ikev1_mode)
    esp = "aes256gcm16"
    baseline = "x25519"             # what overheads are relative to
    highlight = "x25519+mlkem768"   # the proposal the report's headline is about
    preset = "pqike"                # pqike peers' optional payloads: pqike, strongswan, minimal

    [proposals]
    x25519 = "aes256gcm16-prfsha384-x25519"
    "x25519+mlkem768" = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
    mismatch = { ike = "aes256gcm16-prfsha384-x25519", responder = "aes256gcm16-prfsha384-ecp256" }
    lean = { ike = "aes256gcm16-prfsha384-x25519", preset = "minimal" }   # per proposal
    mldsa = { ike = "aes256gcm16-prfsha384-x25519", auth = "mldsa65", chain = 1 }
    bad-intauth = { ike = "aes256gcm16-prfsha384-x25519-ke1_mlkem768", impair = ["wrong-int-auth"] }

    [profiles.wan]
    delay_ms = [0, 50]              # a list expands into one profile per value
    loss = 1                        # percent

The whole file is checked before anything runs; the first problem found raises one
``ConfigurationError`` whose ``field`` is the dotted path of the offending key and whose
message starts with the file name and that path.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

from ..constants import ADDKE_TYPES, ProtocolId, TransformType
from ..crypto.kex import DEFAULT_REGISTRY, KeyExchangeRegistry
from ..errors import ConfigurationError
from ..handshake import PHASES, check_auth, parse_phase
from ..ike.config import PRESETS
from ..ike.impair import IMPAIRMENTS
from ..proposal import parse_proposals
from .auth import DEFAULT_CHAIN, MAX_CHAIN
from .link import LinkProfile

PAIR_KINDS: tuple[str, ...] = (
    "memory",
    "udp",
    "pqike-strongswan",
    "strongswan-pqike",
    "strongswan",
    "strongswan-ikev1",
)
"""Peer pairs a spec may name: initiator-responder. ``memory`` is two pqike peers in one
process over a simulated link; the others use real UDP sockets (and strongSwan);
``strongswan-ikev1`` is two strongSwan daemons speaking IKEv1, for proposals with an
``ikev1_mode`` (and only those)."""
IKEV1_PAIRS: tuple[str, ...] = ("strongswan-ikev1",)
"""Peer pairs that speak IKEv1: they run the proposals with ``ikev1_mode``, the others
every proposal without it."""
IKEV1_MODES: tuple[str, ...] = ("main", "aggressive")
"""``ikev1_mode`` values: RFC 2409 main mode or aggressive mode, each followed by quick mode."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")

_EXPERIMENT_KEYS = (
    "name",
    "description",
    "seed",
    "repetitions",
    "pairs",
    "esp",
    "baseline",
    "highlight",
    "max_time_s",
    "retransmit_timeout_s",
    "retransmit_tries",
    "record_datagrams",
    "record_messages",
    "record_payloads",
    "phases",
    "preset",
    "compress_tables",
    "published",
)
_PROPOSAL_KEYS = (
    "ike",
    "esp",
    "responder",
    "description",
    "impair",
    "responder_impair",
    "preset",
    "auth",
    "chain",
    "ikev1_mode",
)
IMPAIR_PAIRS: tuple[str, ...] = ("memory", "udp")
"""Peer pairs that apply a proposal's ``impair``, ``responder_impair``, ``auth`` and
``preset`` (two pqike peers)."""
_PROFILE_KEYS = (
    "delay_ms",
    "jitter_ms",
    "loss",
    "mtu",
    "fragment_size",
    "bandwidth_kbps",
    "ipv6",
    "repetitions",
    "pairs",
    "description",
)
_SWEEPABLE = ("delay_ms", "jitter_ms", "loss", "mtu", "fragment_size", "bandwidth_kbps")


@dataclass(frozen=True)
class ProposalSpec:
    """One IKE proposal of the matrix: what the initiator offers and the responder accepts."""

    name: str
    ike: str
    esp: str
    responder: str | None = None
    """The responder's IKE proposal when it differs (default: ``ike``)."""
    description: str = ""
    impair: frozenset[str] = frozenset()
    """Impairments of the initiator (``pqike.ike.impair``), applied by the pqike pairs."""
    responder_impair: frozenset[str] = frozenset()
    """Impairments of the responder."""
    preset: str = "pqike"
    """Both pqike peers' ``IkeConfiguration.preset`` (``pqike``, ``strongswan`` or
    ``minimal``); the proposal's ``preset`` key, else the experiment's."""
    auth: str = "psk"
    """How the pqike <-> pqike pairs (memory, udp) authenticate: ``psk`` or a key type of
    ``pqike.pki.KEY_TYPES`` (``mldsa65``, ``p256``, ...: certificates of a test PKI made
    for the run, as ``run_handshake(auth=...)``), optionally with ``+ppk8784`` or
    ``+ppk9867`` for a mandatory PPK (RFC 8784 / RFC 9867, ``pqike.handshake.PPK_AUTH``)."""
    chain: int = DEFAULT_CHAIN
    """With certificate ``auth``: how many certificates each peer sends in IKE_AUTH, 1
    (the end entity, signed by the CA) to 4 (the end entity and three intermediate CAs);
    the CA itself is never sent. Default 2: one intermediate."""
    ikev1_mode: str | None = None
    """``main`` or ``aggressive``: an IKEv1 proposal (then ``ike`` is an IKEv1 proposal,
    run by the ``strongswan-ikev1`` pair only); ``None``: IKEv2, for the other pairs."""


@dataclass(frozen=True)
class NetworkProfile:
    """A network profile: what the link between the peers does, in the spec's units.

    The same impairments apply in both directions.
    """

    name: str
    delay_ms: float = 0.0
    """One-way delay in milliseconds."""
    jitter_ms: float = 0.0
    """Each datagram's delay varies uniformly by up to this much either way."""
    loss: float = 0.0
    """Per-datagram loss in percent, each direction."""
    mtu: int = 1500
    """Largest IP datagram the link carries; larger ones are dropped."""
    fragment_size: int = 1280
    """Largest IP datagram the peers send for a fragmented message (RFC 7383)."""
    bandwidth_kbps: float | None = None
    """Link rate in kbit/s; ``None`` for unlimited."""
    ipv6: bool = False
    """Peers talk over IPv6 (40-byte IP headers instead of 20)."""
    repetitions: int | None = None
    """Handshakes per cell in this profile (default: the experiment's ``repetitions``);
    lossy profiles need more for their tails than loss-free ones, whose bytes and
    network-only times do not vary."""
    pairs: tuple[str, ...] | None = None
    """Peer pairs this profile runs with (default: the experiment's ``pairs``): real-time
    pairs can skip profiles whose failures would wait out every retransmission."""
    description: str = ""

    def link(self) -> LinkProfile:
        """The same profile in SI units for ``pqike.lab.link`` (loss as a probability)."""
        return LinkProfile.from_spec_units(
            delay_ms=self.delay_ms,
            jitter_ms=self.jitter_ms,
            loss_pct=self.loss,
            mtu=self.mtu,
            bandwidth_kbps=self.bandwidth_kbps,
        )

    def as_row(self) -> dict[str, Any]:
        """The profile's parameters as table columns."""
        return {
            "delay_ms": self.delay_ms,
            "jitter_ms": self.jitter_ms,
            "loss_pct": self.loss,
            "mtu": self.mtu,
            "fragment_size": self.fragment_size,
            "bandwidth_kbps": self.bandwidth_kbps,
            "ipv6": self.ipv6,
        }


@dataclass(frozen=True)
class Cell:
    """One configuration of the matrix: a proposal, a peer pair and a profile."""

    proposal: ProposalSpec
    pair: str
    profile: NetworkProfile

    @property
    def id(self) -> str:
        """A name safe in file names: ``<proposal>__<pair>__<profile>``."""
        return f"{self.proposal.name}__{self.pair}__{self.profile.name}"


@dataclass(frozen=True)
class ExperimentSpec:
    """A validated experiment: build it with ``load_spec`` or ``parse_spec``."""

    name: str
    description: str
    seed: int
    repetitions: int
    pairs: tuple[str, ...]
    proposals: tuple[ProposalSpec, ...]
    profiles: tuple[NetworkProfile, ...]
    baseline: str | None = None
    highlight: str | None = None
    max_time_s: float = 600.0
    """Simulated seconds after which a handshake that has not settled counts as failed."""
    retransmit_timeout_s: float = 4.0
    retransmit_tries: int = 5
    record_datagrams: bool = True
    """Write ``datagrams.csv`` (one row per datagram); off for very large runs."""
    record_messages: bool = True
    """Write ``messages.csv`` (one row per IKE message); off for grids of hundreds of
    cells, whose reports then count bytes from ``handshakes.csv`` alone."""
    record_payloads: bool = False
    """Write ``payloads.csv``: every message split into its payloads (decrypted with the
    handshake's keys) by the pairs that can; the report then compares the pairs' payloads."""
    compress_tables: bool = False
    """Write the per-handshake tables (handshakes, messages, datagrams, payloads, phases)
    gzip-compressed, ``<name>.csv.gz``, for big runs whose results are committed; the
    summaries stay plain CSV."""
    phases: tuple[str, ...] = ()
    """What each handshake is followed by, in order, on the same SA and link: ``child``
    (a Child SA rekey, with the proposal's ``esp`` KE/ADDKE), ``ike`` (an IKE SA rekey),
    ... (``pqike.handshake.PHASES``); each phase gets its own row in ``phases.csv``."""
    published: str | None = None
    """A published source the report sets beside the results (a key of
    ``pqike.lab.published.SOURCES``: ``paquin-tls``, ``strongswan-netem``)."""
    repeat: int | None = None
    """Repetitions forced on every cell (``--repeat``), overriding the spec's counts."""
    source: str = "<spec>"
    """Where the spec came from (the file path), for messages."""
    sha256: str = ""
    """SHA-256 of the spec file's bytes."""
    text: str = ""
    """The spec file's text, copied next to the results."""

    def cells(self) -> list[Cell]:
        """Every configuration, proposals outermost, then pairs, then profiles."""
        return [
            Cell(proposal, pair, profile)
            for proposal in self.proposals
            for pair in self.pairs
            for profile in self.profiles
            if (profile.pairs is None or pair in profile.pairs)
            and (proposal.ikev1_mode is not None) == (pair in IKEV1_PAIRS)
        ]

    def repetitions_for(self, cell: Cell) -> int:
        """How many handshakes ``cell`` runs."""
        return self.profile_repetitions(cell.profile)

    def profile_repetitions(self, profile: NetworkProfile) -> int:
        """How many handshakes each cell of ``profile`` runs."""
        return self.repeat or profile.repetitions or self.repetitions

    def with_repetitions(self, repetitions: int) -> ExperimentSpec:
        """The same spec run ``repetitions`` times in every cell (``--repeat``)."""
        if isinstance(repetitions, bool) or not isinstance(repetitions, int) or repetitions < 1:
            raise ConfigurationError(
                f"{self.source}: --repeat: must be a positive integer, got {repetitions!r}",
                field="repetitions",
            )
        return replace(self, repeat=repetitions)

    def proposal(self, name: str) -> ProposalSpec:
        """The proposal called ``name``."""
        return next(p for p in self.proposals if p.name == name)


def load_spec(
    path: str | Path, *, registry: KeyExchangeRegistry = DEFAULT_REGISTRY
) -> ExperimentSpec:
    """Read and validate the spec at ``path``; ``ConfigurationError`` names the bad field."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{p}: cannot read the spec: {exc.strerror}", field=None) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigurationError(f"{p}: the spec is not UTF-8 text", field=None) from None
    return parse_spec(text, source=str(p), default_name=p.stem, registry=registry)


def parse_spec(
    text: str,
    *,
    source: str = "<spec>",
    default_name: str = "experiment",
    registry: KeyExchangeRegistry = DEFAULT_REGISTRY,
) -> ExperimentSpec:
    """Validate a spec given as TOML text (see the module docstring for the format)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{source}: not valid TOML: {exc}", field=None) from None
    v = _Validator(source, registry)
    v.keys(data, "", ("experiment", "proposals", "profiles"))
    exp = v.table(data.get("experiment", {}), "experiment")
    v.keys(exp, "experiment", _EXPERIMENT_KEYS)

    name = v.name(exp.get("name", default_name), "experiment.name")
    description = v.string(exp.get("description", ""), "experiment.description")
    seed = v.integer(exp.get("seed", 0), "experiment.seed", 0, 2**63 - 1)
    repetitions = v.integer(exp.get("repetitions", 1), "experiment.repetitions", 1, 1_000_000)
    pairs = v.pairs(exp.get("pairs", ["memory"]), "experiment.pairs")
    esp = v.string(exp.get("esp", "aes256gcm16"), "experiment.esp")
    v.esp(esp, "experiment.esp")
    max_time = v.number(exp.get("max_time_s", 600.0), "experiment.max_time_s", 0.001, 1e7)
    rt_timeout = v.number(
        exp.get("retransmit_timeout_s", 4.0), "experiment.retransmit_timeout_s", 0.001, 3600
    )
    rt_tries = v.integer(exp.get("retransmit_tries", 5), "experiment.retransmit_tries", 0, 100)
    record_datagrams = v.boolean(exp.get("record_datagrams", True), "experiment.record_datagrams")
    record_payloads = v.boolean(exp.get("record_payloads", False), "experiment.record_payloads")
    compress_tables = v.boolean(exp.get("compress_tables", False), "experiment.compress_tables")
    record_messages = v.boolean(exp.get("record_messages", True), "experiment.record_messages")
    phases = v.phases(exp.get("phases", []), "experiment.phases")
    preset = v.preset(exp.get("preset", "pqike"), "experiment.preset")
    # Imported here, not above: `python -m pqike.lab.published` runs that module as
    # __main__, which must not be imported already by the package's own import.
    from .published import SOURCES

    published = exp.get("published")
    if published is not None and published not in SOURCES:
        v.fail(
            "experiment.published",
            f"must be one of {', '.join(SOURCES)} (pqike.lab.published), got {_show(published)}",
        )

    proposals = v.proposals(data.get("proposals"), esp, preset)
    profiles = v.profiles(data.get("profiles"))
    for profile in profiles:
        for pair in profile.pairs or ():
            if pair not in pairs:
                v.fail(
                    f"profiles.{profile.name}.pairs",
                    f"peer pair {pair!r} is not in experiment.pairs ({', '.join(pairs)})",
                )
    other = [pair for pair in pairs if pair not in IMPAIR_PAIRS]
    for proposal in proposals:
        # What only two pqike peers can do: a strongSwan pair would silently ignore it,
        # and its cells would then be labelled with something they did not do.
        pqike_only = {
            "impair": bool(proposal.impair),
            "responder_impair": bool(proposal.responder_impair),
            "auth": proposal.auth != "psk",
            "preset": proposal.preset != "pqike",
        }
        key = next((k for k, used in pqike_only.items() if used), None)
        if key is not None and other:
            what = (
                "impairments apply"
                if "impair" in key
                else f"{key} = {getattr(proposal, key)!r} applies"
            )
            v.fail(
                f"proposals.{proposal.name}.{key}",
                f"{what} only to the {' and '.join(IMPAIR_PAIRS)} pairs (two pqike peers), "
                f"but experiment.pairs has {other[0]!r}",
            )
    v.ikev1(proposals, pairs)
    names = [p.name for p in proposals]
    baseline = exp.get("baseline")
    highlight = exp.get("highlight")
    for key, value in (("baseline", baseline), ("highlight", highlight)):
        if value is not None and value not in names:
            v.fail(
                f"experiment.{key}",
                f"must name one of the proposals ({', '.join(names)}), got {value!r}",
            )
    return ExperimentSpec(
        name=name,
        description=description,
        seed=seed,
        repetitions=repetitions,
        pairs=pairs,
        proposals=proposals,
        profiles=profiles,
        baseline=baseline,
        highlight=highlight,
        max_time_s=max_time,
        retransmit_timeout_s=rt_timeout,
        retransmit_tries=rt_tries,
        record_datagrams=record_datagrams,
        record_payloads=record_payloads,
        compress_tables=compress_tables,
        record_messages=record_messages,
        phases=phases,
        published=published,
        source=source,
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        text=text,
    )


def describe_spec(path: str | Path) -> str:
    """The spec's one-line description without validating it (for ``experiment list``)."""
    try:
        data = tomllib.loads(Path(path).read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return "(unreadable spec)"
    exp = data.get("experiment")
    if isinstance(exp, dict) and isinstance(exp.get("description"), str):
        return exp["description"].strip().splitlines()[0] if exp["description"].strip() else ""
    return ""


class _Validator:
    """Checks values and raises one ``ConfigurationError`` naming the dotted field."""

    def __init__(self, source: str, registry: KeyExchangeRegistry) -> None:
        self.source = source
        self.registry = registry

    def fail(self, field: str, message: str) -> NoReturn:
        raise ConfigurationError(f"{self.source}: {field}: {message}", field=field)

    def keys(self, table: Mapping[str, Any], where: str, allowed: Sequence[str]) -> None:
        for key in table:
            if key not in allowed:
                path = f"{where}.{key}" if where else key
                self.fail(path, f"unknown key (expected one of {', '.join(allowed)})")

    def table(self, value: Any, field: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(field, f"must be a table, got {_show(value)}")
        return value

    def string(self, value: Any, field: str) -> str:
        if not isinstance(value, str):
            self.fail(field, f"must be a string, got {_show(value)}")
        return value

    def name(self, value: Any, field: str) -> str:
        self.string(value, field)
        if not _NAME.fullmatch(value):
            self.fail(
                field,
                "must be 1 to 64 letters, digits or '_.+-', starting with a letter or digit "
                f"(it names files), got {value!r}",
            )
        return value

    def integer(self, value: Any, field: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(field, f"must be an integer from {low} to {high}, got {_show(value)}")
        return value

    def number(self, value: Any, field: str, low: float, high: float, what: str = "") -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not low <= value <= high:
            kind = what or "a number"
            self.fail(field, f"must be {kind} from {low:g} to {high:g}, got {_show(value)}")
        return float(value)

    def boolean(self, value: Any, field: str) -> bool:
        if not isinstance(value, bool):
            self.fail(field, f"must be true or false, got {_show(value)}")
        return value

    def pairs(self, value: Any, field: str) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            self.fail(field, f"must be a non-empty list of peer pairs, got {_show(value)}")
        out: list[str] = []
        for i, item in enumerate(value):
            if item not in PAIR_KINDS:
                self.fail(
                    f"{field}[{i}]",
                    f"unknown peer pair {_show(item)} (expected one of {', '.join(PAIR_KINDS)})",
                )
            if item in out:
                self.fail(f"{field}[{i}]", f"peer pair {item!r} is listed twice")
            out.append(item)
        return tuple(out)

    def phases(self, value: Any, field: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            self.fail(
                field, f'must be a list of phases such as ["child", "ike"], got {_show(value)}'
            )
        out: list[str] = []
        for i, item in enumerate(value):
            where = f"{field}[{i}]"
            if not isinstance(item, str):
                self.fail(where, f"must be a phase name, got {_show(item)}")
            try:
                parse_phase(item)
            except ValueError:
                self.fail(
                    where,
                    f"unknown phase {item!r} (expected one of {', '.join(PHASES)}, "
                    "optionally prefixed 'responder:')",
                )
            if item.rpartition(":")[2] == "delete" and i != len(value) - 1:
                self.fail(
                    where,
                    f"{item!r} deletes the IKE SA, so nothing can follow it: make it the "
                    "last phase",
                )
            out.append(item)
        return tuple(out)

    def impairments(self, value: Any, field: str) -> frozenset[str]:
        if not isinstance(value, list):
            self.fail(
                field,
                f'must be a list of impairments such as ["wrong-int-auth"], got {_show(value)}',
            )
        for i, item in enumerate(value):
            if item not in IMPAIRMENTS:
                self.fail(
                    f"{field}[{i}]",
                    f"unknown impairment {_show(item)} (`pqike impairments` lists them)",
                )
        return frozenset(value)

    def esp(self, text: str, field: str) -> None:
        try:
            parse_proposals(text, protocol=ProtocolId.ESP)
        except ConfigurationError as exc:
            self.fail(field, str(exc))

    def ike(self, text: str, field: str) -> None:
        try:
            proposals = parse_proposals(text, protocol=ProtocolId.IKE)
        except ConfigurationError as exc:
            self.fail(field, str(exc))
        ke_types = (TransformType.KE, *ADDKE_TYPES)
        for proposal in proposals:
            for t in proposal.transforms:
                # NONE (0) makes an additional key exchange optional: nothing to create.
                if t.type not in ke_types or t.id == 0:
                    continue
                if not self.registry.is_available(t.id):
                    try:
                        name = self.registry.info(t.id).name
                    except ConfigurationError:
                        name = f"method {t.id}"
                    self.fail(
                        field,
                        f"key exchange {name} is not available here "
                        "(no installed backend implements it; see `pqike algorithms`)",
                    )

    def preset(self, value: Any, field: str) -> str:
        text = self.string(value, field)
        if text not in PRESETS:
            self.fail(field, f"must be one of {', '.join(PRESETS)}, got {text!r}")
        return text

    def proposals(
        self, value: Any, default_esp: str, default_preset: str = "pqike"
    ) -> tuple[ProposalSpec, ...]:
        if value is None:
            self.fail("proposals", "the spec needs a [proposals] table with at least one proposal")
        table = self.table(value, "proposals")
        if not table:
            self.fail("proposals", "at least one proposal is required")
        out = []
        for name, entry in table.items():
            field = f"proposals.{name}"
            self.name(name, field)
            if isinstance(entry, str):
                entry = {"ike": entry}
            if not isinstance(entry, dict):
                self.fail(
                    field,
                    "must be a proposal string or a table with ike/esp/responder, "
                    f"got {_show(entry)}",
                )
            self.keys(entry, field, _PROPOSAL_KEYS)
            if "ike" not in entry:
                self.fail(f"{field}.ike", "is required")
            ike_field = f"{field}.ike" if len(entry) > 1 else field
            ike = self.string(entry["ike"], ike_field)
            self.ike(ike, ike_field)
            esp = self.string(entry.get("esp", default_esp), f"{field}.esp")
            self.esp(esp, f"{field}.esp")
            responder = entry.get("responder")
            if responder is not None:
                self.string(responder, f"{field}.responder")
                self.ike(responder, f"{field}.responder")
            description = self.string(entry.get("description", ""), f"{field}.description")
            preset = self.preset(entry.get("preset", default_preset), f"{field}.preset")
            auth = self.string(entry.get("auth", "psk"), f"{field}.auth")
            problem = check_auth(auth)
            if problem is not None:
                self.fail(f"{field}.auth", problem)
            chain = DEFAULT_CHAIN
            if "chain" in entry:
                if auth.partition("+")[0] == "psk":
                    self.fail(
                        f"{field}.chain",
                        "applies only to certificate authentication, but auth is psk "
                        "(set auth to a key type such as mldsa65)",
                    )
                chain = self.integer(entry["chain"], f"{field}.chain", 1, MAX_CHAIN)
            impair = self.impairments(entry.get("impair", []), f"{field}.impair")
            responder_impair = self.impairments(
                entry.get("responder_impair", []), f"{field}.responder_impair"
            )
            ikev1_mode = None
            if "ikev1_mode" in entry:
                ikev1_mode = self.string(entry["ikev1_mode"], f"{field}.ikev1_mode")
                if ikev1_mode not in IKEV1_MODES:
                    self.fail(
                        f"{field}.ikev1_mode",
                        f"must be one of {', '.join(IKEV1_MODES)}, got {ikev1_mode!r}",
                    )
                self.ikev1_proposal(ike, ike_field)
            out.append(
                ProposalSpec(
                    name,
                    ike,
                    esp,
                    responder,
                    description,
                    impair,
                    responder_impair,
                    preset,
                    auth,
                    chain,
                    ikev1_mode,
                )
            )
        return tuple(out)

    def ikev1_proposal(self, text: str, field: str) -> None:
        """IKEv1 (RFC 2409) protects its ISAKMP SA with a cipher and a separate hash and
        has one Diffie-Hellman exchange: no AEAD, no additional key exchanges."""
        for proposal in parse_proposals(text):
            types = {t.type for t in proposal.transforms}
            if TransformType.INTEG not in types:
                self.fail(
                    field,
                    "an IKEv1 proposal needs an integrity algorithm: IKEv1 has no AEAD for "
                    f"its ISAKMP SA (e.g. aes256-sha384-x25519), got {text!r}",
                )
            if types & set(ADDKE_TYPES):
                self.fail(
                    field,
                    f"an IKEv1 proposal has one key exchange only, got {text!r} with "
                    "additional key exchanges (ke1_...)",
                )

    def ikev1(self, proposals: Sequence[ProposalSpec], pairs: Sequence[str]) -> None:
        """IKEv1 proposals need an IKEv1 pair, and an IKEv1 pair needs IKEv1 proposals."""
        ikev1_pairs = [p for p in pairs if p in IKEV1_PAIRS]
        for proposal in proposals:
            if proposal.ikev1_mode is not None and not ikev1_pairs:
                self.fail(
                    f"proposals.{proposal.name}.ikev1_mode",
                    f"IKEv1 runs only on the {', '.join(IKEV1_PAIRS)} pair, which "
                    f"experiment.pairs ({', '.join(pairs)}) does not list",
                )
        if not [p for p in pairs if p not in IKEV1_PAIRS]:
            for proposal in proposals:
                if proposal.ikev1_mode is None:
                    self.fail(
                        f"proposals.{proposal.name}",
                        "an IKEv2 proposal (no ikev1_mode) runs on none of experiment.pairs "
                        f"({', '.join(pairs)}): add an IKEv2 pair or give it an ikev1_mode",
                    )
        if ikev1_pairs and not any(p.ikev1_mode for p in proposals):
            self.fail(
                "experiment.pairs",
                f"peer pair {ikev1_pairs[0]!r} runs only proposals with an ikev1_mode "
                "(main or aggressive), and no proposal has one",
            )

    def profiles(self, value: Any) -> tuple[NetworkProfile, ...]:
        if value is None:
            self.fail("profiles", "the spec needs at least one [profiles.<name>] table")
        table = self.table(value, "profiles")
        if not table:
            self.fail("profiles", "at least one profile is required")
        out: list[NetworkProfile] = []
        for name, entry in table.items():
            field = f"profiles.{name}"
            self.name(name, field)
            self.table(entry, field)
            self.keys(entry, field, _PROFILE_KEYS)
            fixed: dict[str, Any] = {}
            sweeps: list[tuple[str, list[Any]]] = []
            for key, raw in entry.items():
                if key in _SWEEPABLE and isinstance(raw, list):
                    if not raw:
                        self.fail(f"{field}.{key}", "a list of values must not be empty")
                    values = [
                        self.profile_value(key, x, f"{field}.{key}[{i}]") for i, x in enumerate(raw)
                    ]
                    if len(set(values)) != len(values):
                        self.fail(f"{field}.{key}", f"lists a value twice: {raw}")
                    sweeps.append((key, values))
                else:
                    fixed[key] = self.profile_value(key, raw, f"{field}.{key}")
            for combo in itertools.product(*(vals for _, vals in sweeps)):
                params = dict(fixed)
                suffix = ""
                for (key, _), val in zip(sweeps, combo, strict=True):
                    params[key] = val
                    suffix += f"_{key.split('_')[0]}{_fmt(val)}"
                profile_name = name + suffix
                if any(p.name == profile_name for p in out):
                    self.fail(field, f"profile name {profile_name!r} is generated twice")
                out.append(NetworkProfile(profile_name, **params))
        return tuple(out)

    def profile_value(self, key: str, value: Any, field: str) -> Any:
        if key == "delay_ms":
            return self.number(value, field, 0, 3_600_000, "a one-way delay in milliseconds")
        if key == "jitter_ms":
            return self.number(value, field, 0, 3_600_000, "a jitter in milliseconds")
        if key == "loss":
            return self.number(value, field, 0, 100, "a percentage")
        if key == "mtu":
            return self.integer(value, field, 576, 65535)
        if key == "fragment_size":
            return self.integer(value, field, 576, 65535)
        if key == "bandwidth_kbps":
            if isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
                self.fail(field, f"must be a positive rate in kbit/s, got {_show(value)}")
            return self.number(value, field, 1e-3, 1e9, "a rate in kbit/s")
        if key == "ipv6":
            return self.boolean(value, field)
        if key == "repetitions":
            return self.integer(value, field, 1, 1_000_000)
        if key == "pairs":
            return self.pairs(value, field)
        return self.string(value, field)


def _fmt(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict):
        return "a table"
    return str(value)


__all__ = [
    "IKEV1_MODES",
    "IKEV1_PAIRS",
    "PAIR_KINDS",
    "Cell",
    "ExperimentSpec",
    "NetworkProfile",
    "ProposalSpec",
    "describe_spec",
    "load_spec",
    "parse_spec",
]
