"""The library entry point: run a whole handshake between two in-memory pqike peers.

    >>> from pqike import run_handshake
    >>> result = run_handshake("aes256gcm16-prfsha384-x25519-ke1_mlkem768")
    >>> result.established, result.trace.totals()["udp_bytes"]

To drive the peers yourself (your own delivery, timers or link), ``make_pair`` builds
the two ``IkeSa`` objects from proposal strings and ``drive_pair`` (or
``pqike.lab.link.simulate_handshake``) runs them::

    >>> from pqike.handshake import drive_pair, make_pair
    >>> initiator, responder = make_pair("aes256gcm16-prfsha384-x25519-ke1_mlkem768")
    >>> drive_pair(initiator, responder).established
    True

``make_config`` builds one side's ``IkeConfiguration`` when the two need more than
``make_pair``'s options.

Time is simulated: datagrams arrive instantly unless a ``deliver`` hook says otherwise,
and retransmission timers fire in virtual time, so a run is exact and repeatable.
CPU time is measured for each side around every call into it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .clock import utc_now
from .constants import ProtocolId
from .crypto.keys import ChildKeys, IkeKeys
from .ike.config import Identity, IkeConfiguration
from .ike.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    CreateChildSaFailed,
    Event,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
    IkeSaRekeyed,
    KeyExchangeCompleted,
    LivenessChecked,
)
from .ike.sa import IkeSa
from .proposal import NegotiatedSuite, parse_proposals
from .trace import Trace

INITIATOR_ADDRESS = {4: ("192.0.2.1", 500), 6: ("2001:db8::1", 500)}
RESPONDER_ADDRESS = {4: ("192.0.2.2", 500), 6: ("2001:db8::2", 500)}

T = TypeVar("T")

Deliver = Callable[[str, bytes, int], list[bytes]]
"""``deliver(sender, datagram, index) -> datagrams that arrive`` ([] drops, [d, d] duplicates).
``index`` counts the datagrams sent so far in the run, from 0."""


@dataclass
class HandshakeResult:
    """What one handshake produced: the trace, each side's events and the outcome."""

    established: bool
    trace: Trace
    initiator_events: list[Event]
    responder_events: list[Event]
    cpu_initiator: float
    cpu_responder: float
    wall: float
    simulated_time: float
    initiator: IkeSa = field(repr=False)
    responder: IkeSa = field(repr=False)
    phases: list[PhaseResult] = field(default_factory=list)
    """The handshake, then each phase asked with ``then=``, with its own cost."""

    def phase_rows(self) -> list[dict]:
        """One dict per phase (bytes, datagrams, round trips, time, CPU): for pandas."""
        return [p.row() for p in self.phases]

    def _first(self, events: list[Event], cls: type) -> Event | None:
        return next((e for e in events if isinstance(e, cls)), None)

    @property
    def suite(self) -> NegotiatedSuite | None:
        """The negotiated IKE suite, once established."""
        e = self._first(self.initiator_events, IkeSaEstablished)
        return e.suite if isinstance(e, IkeSaEstablished) else None

    @property
    def ike_keys(self) -> IkeKeys | None:
        e = self._first(self.initiator_events, IkeSaEstablished)
        return e.keys if isinstance(e, IkeSaEstablished) else None

    @property
    def child(self) -> ChildSaEstablished | None:
        e = self._first(self.initiator_events, ChildSaEstablished)
        return e if isinstance(e, ChildSaEstablished) else None

    @property
    def child_keys(self) -> ChildKeys | None:
        return self.child.keys if self.child else None

    @property
    def failures(self) -> list[IkeSaFailed]:
        return [
            e for e in self.initiator_events + self.responder_events if isinstance(e, IkeSaFailed)
        ]

    @property
    def key_exchanges(self) -> list[KeyExchangeCompleted]:
        return [e for e in self.initiator_events if isinstance(e, KeyExchangeCompleted)]

    def summary(self) -> dict:
        """A flat dict for tables and JSON: outcome, suite, sizes and times."""
        t = self.trace.totals()
        suite = self.suite
        return {
            "established": self.established,
            "proposal": suite.describe() if suite else None,
            "intermediate_exchanges": len([k for k in self.key_exchanges if k.round > 0]),
            **t,
            "cpu_initiator_s": self.cpu_initiator,
            "cpu_responder_s": self.cpu_responder,
            "wall_s": self.wall,
            "simulated_s": self.simulated_time,
            "failure": self.failures[0].reason if self.failures else None,
        }


def make_config(
    proposal: str,
    esp: str = "aes256gcm16",
    *,
    local_id: str,
    remote_id: str | None = None,
    psk: bytes = b"pqike-demo-psk",
    **options,
) -> IkeConfiguration:
    """An ``IkeConfiguration`` from strongSwan proposal strings and identity strings.

    Certificates are checked against the wall clock unless ``validation_clock`` is
    given: this is the application layer, the core reads no clock."""
    options.setdefault("validation_clock", utc_now)
    return IkeConfiguration(
        ike_proposals=parse_proposals(proposal, protocol=ProtocolId.IKE),
        esp_proposals=parse_proposals(esp, protocol=ProtocolId.ESP),
        local_id=Identity.parse(local_id),
        remote_id=Identity.parse(remote_id) if remote_id else None,
        psk=psk,
        **options,
    )


INITIATOR_ID = "initiator.pqike.example"
RESPONDER_ID = "responder.pqike.example"


PPK_AUTH = {"ppk8784": "rfc8784", "ppk9867": "rfc9867"}
"""``auth`` suffixes (``psk+ppk9867``, ``mldsa65+ppk8784``): both peers also hold the
demo PPK, mandatory, agreed at IKE_AUTH (RFC 8784) or in IKE_INTERMEDIATE (RFC 9867)."""

DEMO_PPK_ID = b"pqike-demo-ppk"
DEMO_PPK = hashlib.sha256(b"pqike demo post-quantum preshared key").digest()
"""A fixed 32-byte PPK for demonstrations and experiments, like ``run_handshake``'s
default PSK: public, so it protects nothing."""


def check_auth(auth: str) -> str | None:
    """``None`` if ``auth`` names a way to authenticate, else one sentence saying why not."""
    base, plus, suffix = auth.partition("+")
    from .pki import KEY_TYPES

    if base != "psk" and base not in KEY_TYPES:
        return f"must be psk or one of {', '.join(KEY_TYPES)}, got {base!r}"
    if plus and suffix not in PPK_AUTH:
        return f"a +suffix must be one of {', '.join(PPK_AUTH)} (a PPK), got {suffix!r}"
    return None


def ppk_options(auth: str) -> dict[str, Any]:
    """Both peers' PPK options for an ``auth`` with a ``PPK_AUTH`` suffix (the demo PPK,
    mandatory); nothing without one."""
    suffix = auth.partition("+")[2]
    if not suffix:
        return {}
    return {
        "ppk": DEMO_PPK,
        "ppk_id": DEMO_PPK_ID,
        "ppk_required": True,
        "ppk_mode": PPK_AUTH[suffix],
    }


def auth_options(auth: str, *, intermediates: int = 1) -> tuple[dict, dict]:
    """Initiator and responder options for ``auth``: ``psk`` (nothing to add) or a key
    type of ``pqike.pki.KEY_TYPES``, for which a test PKI (a CA, ``intermediates``
    intermediate CAs, both peers' certificates) is made on the fly in a temporary
    directory and loaded; either optionally followed by ``+ppk8784`` or ``+ppk9867``
    (``PPK_AUTH``: both peers hold the demo PPK, mandatory)."""
    problem = check_auth(auth)
    if problem is not None:
        raise ValueError(f"auth {problem}")
    base, _, suffix = auth.partition("+")
    if suffix:
        ppk = ppk_options(auth)
        ini, res = auth_options(base, intermediates=intermediates)
        return {**ini, **ppk}, {**res, **ppk}
    if auth == "psk":
        return {}, {}
    import tempfile

    from .crypto.certs import Credential, TrustStore
    from .pki import make_pki

    with tempfile.TemporaryDirectory(prefix="pqike-pki-") as tmp:
        pki = make_pki(
            tmp, [INITIATOR_ID, RESPONDER_ID], key_type=auth, intermediates=intermediates
        )
    trust = TrustStore((pki.ca,))
    return tuple(  # type: ignore[return-value]
        {
            "credential": Credential(pki.entities[ident].key, pki.chain(ident)),
            "trust": trust,
        }
        for ident in (INITIATOR_ID, RESPONDER_ID)
    )


def make_pair(
    proposal: str = "aes256gcm16-prfsha384-x25519",
    esp: str = "aes256gcm16",
    *,
    responder_proposal: str | None = None,
    responder_esp: str | None = None,
    psk: bytes = b"pqike-demo-psk",
    responder_psk: bytes | None = None,
    ipv6: bool = False,
    initiator_options: dict[str, Any] | None = None,
    responder_options: dict[str, Any] | None = None,
    **options: Any,
) -> tuple[IkeSa, IkeSa]:
    """An initiator and a responder ``IkeSa``, ready for ``drive_pair``.

    ``proposal`` and ``esp`` are what the initiator offers, ``responder_proposal`` and
    ``responder_esp`` (default: the same) what the responder accepts, in strongSwan
    syntax; ``options`` go to both sides' ``IkeConfiguration`` (``fragment_size``,
    ``retransmit_timeout``, ``kex_backends``, ...), ``initiator_options`` and
    ``responder_options`` to one side. The peers use the documentation addresses of
    ``run_handshake``.
    """
    version = 6 if ipv6 else 4
    ini_addr, res_addr = INITIATOR_ADDRESS[version], RESPONDER_ADDRESS[version]
    initiator = IkeSa(
        make_config(
            proposal,
            esp,
            local_id=INITIATOR_ID,
            remote_id=RESPONDER_ID,
            psk=psk,
            **{**options, **(initiator_options or {})},
        ),
        is_initiator=True,
        local=ini_addr,
        remote=res_addr,
    )
    responder = IkeSa(
        make_config(
            responder_proposal or proposal,
            responder_esp or esp,
            local_id=RESPONDER_ID,
            psk=responder_psk if responder_psk is not None else psk,
            **{**options, **(responder_options or {})},
        ),
        is_initiator=False,
        local=res_addr,
        remote=ini_addr,
    )
    return initiator, responder


def run_handshake(
    proposal: str = "aes256gcm16-prfsha384-x25519",
    esp: str = "aes256gcm16",
    *,
    responder_proposal: str | None = None,
    psk: bytes = b"pqike-demo-psk",
    responder_psk: bytes | None = None,
    fragment_size: int = 1280,
    ipv6: bool = False,
    initiator_options: dict | None = None,
    responder_options: dict | None = None,
    deliver: Deliver | None = None,
    max_time: float = 600.0,
    responder_esp: str | None = None,
    then: Sequence[str] = (),
    auth: str = "psk",
    preset: str = "pqike",
) -> HandshakeResult:
    """Run IKE_SA_INIT, any IKE_INTERMEDIATE rounds and IKE_AUTH between two pqike peers,
    then the phases of ``then`` one after the other: ``child`` (Child SA rekey), ``ike``
    (IKE SA rekey), ``new-child``, ``liveness``, ``delete-child``, ``delete``, each
    optionally prefixed ``responder:`` for the responder to start it.

    ``proposal`` is the initiator's IKE proposal in strongSwan syntax; the responder
    accepts ``responder_proposal`` (default: the same). ``esp`` is the ESP proposal
    (KE and ADDKE keywords apply to CREATE_CHILD_SA, as in strongSwan's
    ``esp_proposals``); the responder's is ``responder_esp`` (default: the same).
    ``auth`` is ``psk`` or a key type (``p256``, ``ed25519``, ``rsa3072``, ``mldsa65``,
    ...): both peers then authenticate with certificates of a test PKI made on the fly
    (``auth_options``); ``initiator_options``/``responder_options`` still win.
    ``preset`` is both peers' ``IkeConfiguration.preset`` (``pqike``, ``strongswan``
    or ``minimal``: which optional payloads they send). Returns a ``HandshakeResult``
    with one ``PhaseResult`` per phase; never raises for
    a failed handshake or rekey (see ``result.failures`` and ``result.phases``).
    """
    ini_auth, res_auth = auth_options(auth)
    initiator, responder = make_pair(
        proposal,
        esp,
        responder_proposal=responder_proposal,
        responder_esp=responder_esp,
        psk=psk,
        responder_psk=responder_psk,
        ipv6=ipv6,
        initiator_options={**ini_auth, **(initiator_options or {})},
        responder_options={**res_auth, **(responder_options or {})},
        fragment_size=fragment_size,
        preset=preset,
    )
    return drive_pair(
        initiator, responder, ipv6=ipv6, deliver=deliver, max_time=max_time, then=then
    )


PHASES: dict[str, Callable[[IkeSa, float], None]] = {
    "child": lambda sa, now: sa.rekey_child(now=now),
    "ike": lambda sa, now: sa.rekey(now=now),
    "new-child": lambda sa, now: sa.create_child_sa(now=now),
    "liveness": lambda sa, now: sa.check_liveness(now=now),
    "delete-child": lambda sa, now: sa.delete_child(max(sa.children), now=now),
    "delete": lambda sa, now: sa.delete(now=now),
}
"""What ``then=`` can ask after the handshake: ``child`` rekeys the oldest Child SA,
``ike`` the IKE SA, ``new-child`` creates one more Child SA, ``liveness`` sends a
liveness check, ``delete-child`` and ``delete`` delete. The initiator acts, unless the
name starts with ``responder:`` (``responder:ike``)."""


def parse_phase(name: str) -> tuple[str, Callable[[IkeSa, float], None]]:
    """``(side, action)`` for a phase name; ``ValueError`` names the known ones."""
    side, _, what = name.rpartition(":")
    side = side or "initiator"
    if side not in ("initiator", "responder") or what not in PHASES:
        known = ", ".join(PHASES)
        raise ValueError(
            f"unknown phase {name!r}: use one of {known}, optionally prefixed 'responder:'"
        )
    return side, PHASES[what]


@dataclass(frozen=True)
class PhaseResult:
    """The cost of one part of an SA's life: the handshake or one rekey after it."""

    name: str
    index: int
    ok: bool
    """The phase did what it was for on both sides (an SA established, rekeyed, ...)."""
    start: float
    duration: float
    """Simulated seconds from the command to both sides being idle again."""
    cpu_initiator: float
    cpu_responder: float
    totals: dict[str, int]
    failure: str | None = None
    duration_cpu: float | None = None
    """``duration`` with the CPU each side spent on every step added along the way, on
    the simulated link's CPU clock (``pqike.lab.link``); ``None`` where time is instant."""

    def row(self) -> dict:
        """A flat dict for a pandas table."""
        return {
            "phase": self.name,
            "index": self.index,
            "ok": self.ok,
            "start_s": self.start,
            "duration_s": self.duration,
            "duration_cpu_s": self.duration_cpu,
            "cpu_initiator_s": self.cpu_initiator,
            "cpu_responder_s": self.cpu_responder,
            **self.totals,
            "failure": self.failure,
        }


def drive_pair(
    initiator: IkeSa,
    responder: IkeSa,
    *,
    ipv6: bool = False,
    deliver: Deliver | None = None,
    max_time: float = 600.0,
    then: Sequence[str] = (),
) -> HandshakeResult:
    """Drive two ``IkeSa`` objects against each other in simulated time until both
    settle, then run each phase of ``then`` (see ``PHASES``) the same way, one after
    the other; ``result.phases`` holds the cost of each."""
    plan = [parse_phase(name) for name in then]
    trace = Trace(ipv6=ipv6)
    events: dict[str, list[Event]] = {"initiator": [], "responder": []}
    cpu = {"initiator": 0.0, "responder": 0.0}
    sides = {"initiator": initiator, "responder": responder}
    peer = {"initiator": "responder", "responder": "initiator"}
    now = 0.0
    sent = 0
    wall0 = time.perf_counter()

    def timed(side: str, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        t0 = time.process_time()
        try:
            return fn(*args, **kw)
        finally:
            cpu[side] += time.process_time() - t0

    def drain(side: str) -> None:
        sa = sides[side]
        while (ev := sa.next_event()) is not None:
            events[side].append(ev)
            trace.add(side, ev)

    def settle(limit: float) -> None:
        nonlocal now, sent
        queue: list[tuple[str, bytes, tuple[str, int], tuple[str, int]]] = []
        while True:
            for side in ("initiator", "responder"):
                sa = sides[side]
                for data, dst in timed(side, sa.datagrams_to_send, now=now):
                    arrivals = deliver(side, data, sent) if deliver else [data]
                    sent += 1
                    queue.extend((peer[side], d, sa.local, dst) for d in arrivals)
                drain(side)
            if queue:
                to, data, src, dst = queue.pop(0)
                timed(to, sides[to].receive_datagram, data, src, now=now, local=dst)
                continue
            if _settled(initiator) and _settled(responder):
                return
            timers = [t for t in (initiator.get_timer(), responder.get_timer()) if t is not None]
            if not timers or min(timers) > limit:
                return
            now = max(now, min(timers))
            for side in ("initiator", "responder"):
                t = sides[side].get_timer()
                if t is not None and t <= now:
                    timed(side, sides[side].handle_timer, now=now)

    def run_phase(
        name: str, index: int, side: str, action: Callable[[IkeSa, float], None]
    ) -> PhaseResult:
        trace.phase = name
        begin, cpu0 = now, dict(cpu)
        marks = {side: len(events[side]) for side in sides}
        timed(side, action, sides[side], now)
        settle(begin + max_time)
        new = {side: events[side][marks[side] :] for side in sides}
        ok, failure = phase_outcome(name, initiator, responder, new)
        return PhaseResult(
            name,
            index,
            ok,
            begin,
            now - begin,
            cpu["initiator"] - cpu0["initiator"],
            cpu["responder"] - cpu0["responder"],
            trace.totals(phase=name),
            failure,
        )

    phases = [run_phase("handshake", 0, "initiator", lambda sa, t: sa.initiate(now=t))]
    for index, ((side, action), name) in enumerate(zip(plan, then, strict=True), 1):
        if not (initiator.is_established and responder.is_established):
            break
        phases.append(run_phase(name, index, side, action))
    for side in ("initiator", "responder"):
        drain(side)
    first = phases[0]
    return HandshakeResult(
        first.ok,
        trace,
        events["initiator"],
        events["responder"],
        cpu["initiator"],
        cpu["responder"],
        time.perf_counter() - wall0,
        now,
        initiator,
        responder,
        phases,
    )


_PHASE_GOAL: dict[str, tuple[type[Event], ...]] = {
    "handshake": (IkeSaEstablished,),
    "child": (ChildSaEstablished,),
    "new-child": (ChildSaEstablished,),
    "ike": (IkeSaRekeyed,),
    "liveness": (LivenessChecked,),
    "delete-child": (ChildSaDeleted,),
    "delete": (IkeSaDeleted,),
}


def phase_outcome(
    name: str, initiator: IkeSa, responder: IkeSa, new: dict[str, list[Event]]
) -> tuple[bool, str | None]:
    """``(ok, failure)``: did the phase ``name`` reach its goal on both sides, and if not,
    why not. ``new`` holds each side's events since the phase's command (keys
    ``initiator`` and ``responder``); every driver of phases (``drive_pair``, the
    simulated link of ``pqike.lab.link``) judges them with this one rule."""
    actor, _, what = name.rpartition(":")
    goal = _PHASE_GOAL[what]
    # A liveness check is news only to the side that asked.
    judged = [actor or "initiator"] if what == "liveness" else list(new)
    reached = all(any(isinstance(e, goal) for e in new[side]) for side in judged)
    failures = [
        e
        for side in new.values()
        for e in side
        if isinstance(e, IkeSaFailed) or (not reached and isinstance(e, CreateChildSaFailed))
    ]
    # An exchange refused on the way (INVALID_KE_PAYLOAD, TEMPORARY_FAILURE) and retried
    # with success is part of the phase's cost, not its failure.
    if failures:
        return False, failures[0].reason
    if not reached:
        return False, f"{name}: not finished on both sides"
    if name == "handshake":
        return initiator.is_established and responder.is_established, None
    return True, None


def _settled(sa: IkeSa) -> bool:
    return sa.is_closed or sa.is_idle
