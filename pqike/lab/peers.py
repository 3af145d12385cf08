"""Peer pairs: who runs the handshake of a cell, as plug-ins.

A peer pair takes a ``HandshakeCase`` (proposal, network profile, seed, timers) and
returns a ``HandshakeRun``. ``memory`` runs two pqike ``IkeSa`` objects over the
simulated link of ``pqike.lab.link``. The real-time kinds apply the profile's
impairments with a relay between the peers and measure wall time: ``udp`` (two pqike
endpoints over loopback UDP through ``pqike.lab.relay``, ``pqike.lab.udp_pair``), and
``pqike-strongswan``, ``strongswan-pqike`` and ``strongswan`` (pqike and strongSwan 6
daemons in the network namespaces of ``pqike.interop.lab``, through
``pqike.lab.tun_relay``; ``pqike.lab.strongswan_pairs``). A pair whose prerequisites
are missing says why through ``unavailable_reason()``; the runner refuses a spec that
needs it before running anything. A pair may also have ``close()``, which the runner
calls when a run ends, for what it keeps between handshakes.

A pair that can go on after the handshake (``HandshakeCase.phases``: rekeys and the
like, on the same SA and link) says so with ``runs_phases = True`` and returns each
phase's cost in ``HandshakeRun.phases``; the runner refuses a spec with phases for the
others before running anything. ``memory`` runs every phase; the strongSwan <->
strongSwan pairs (``strongswan``, ``strongswan-ikev1``) run ``child`` and refuse the
others through ``refuse_phases(phases)``, which the runner asks too.

To add a kind, write a class with ``name``, ``simulated``, ``unavailable_reason()`` and
``run(case)`` and pass ``pairs={**default_pairs(), "mine": Mine()}`` to the runner.
This module is the base the concrete pairs build on, so it imports none of them: the
runner's default set of kinds is ``pqike.lab.registry.default_pairs``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..handshake import (
    INITIATOR_ADDRESS,
    RESPONDER_ADDRESS,
    PhaseResult,
    make_config,
)
from ..ike.config import IkeConfiguration
from ..ike.events import IkeSaEstablished, KeyExchangeCompleted
from ..ike.sa import IkeSa
from ..trace import Trace
from .auth import LabAuth, lab_auth
from .dissect import DissectedMessage, KeySchedule, dissect
from .link import DatagramFate, simulate_handshake
from .spec import NetworkProfile, ProposalSpec

INITIATOR_ID = "initiator.pqike.example"
RESPONDER_ID = "responder.pqike.example"
PSK = b"pqike-experiment-psk"


@dataclass(frozen=True)
class HandshakeCase:
    """One handshake to run: a proposal over a network profile, with its seed."""

    proposal: ProposalSpec
    profile: NetworkProfile
    seed: int
    retransmit_timeout: float = 4.0
    retransmit_tries: int = 5
    max_time: float = 600.0
    record_payloads: bool = False
    """Ask the pair for ``HandshakeRun.payloads``: every message split into its payloads
    (decrypted with the handshake's keys), when the pair can."""
    phases: tuple[str, ...] = ()
    """Phases to run after the handshake, in order (``pqike.handshake.PHASES`` names):
    only for pairs with ``runs_phases``."""


@dataclass(frozen=True)
class PayloadRecord:
    """One part of one message: the IKE header, a payload or the SK overhead.

    ``message`` indexes ``trace.messages``; the sizes of a message's parts add up to its
    ``ike_bytes`` (see ``pqike.lab.dissect``).
    """

    message: int
    name: str
    size: int
    protected: bool


@dataclass
class HandshakeRun:
    """What a peer pair measured for one handshake.

    Times are seconds. For simulated pairs ``sim_time`` is the network-only virtual time
    to established (deterministic for a seed), ``sim_time_cpu`` the same with each
    step's measured CPU added, and ``wall`` what the simulation took on this machine;
    for real peers ``sim_time*`` are ``None`` and ``wall`` is the wall-clock time to
    established. ``fates`` and ``message_cpu_times`` line up with ``trace.datagrams``
    and ``trace.messages`` when the pair knows them.
    """

    established: bool
    failure: str | None
    negotiated: str | None
    trace: Trace
    simulated: bool
    wall: float
    end_time: float
    """When the run stopped: virtual time for simulated pairs, else wall time."""
    sim_time: float | None = None
    sim_time_cpu: float | None = None
    cpu_initiator: float | None = None
    cpu_responder: float | None = None
    fates: list[DatagramFate] | None = None
    message_cpu_times: list[float] | None = None
    payloads: list[PayloadRecord] | None = None
    """Each message split into named parts, when ``HandshakeCase.record_payloads`` asked
    for it and the pair could decrypt its messages."""
    datagram_columns: dict[str, list[Any]] | None = None
    """Extra columns of ``datagrams.csv``, each a list aligned with ``trace.datagrams``
    (the strongSwan pairs add the size each peer's own log reports for the datagram)."""
    phases: list[PhaseResult] | None = None
    """The handshake and each phase of ``HandshakeCase.phases`` that ran, with its own
    cost, from pairs that run phases (``trace`` then labels every record's phase; the
    other fields describe the handshake alone)."""
    initiator_sign_cpu: float | None = None
    """CPU seconds the initiator spent signing its AUTH (``pqike.lab.auth``); ``None``
    for a PSK or a pair that cannot measure it."""
    initiator_verify_cpu: float | None = None
    """CPU seconds the initiator spent validating the responder's certificate chain and
    verifying its AUTH signature."""
    responder_sign_cpu: float | None = None
    """The same for the responder's signature."""
    responder_verify_cpu: float | None = None
    """The same for the responder's check of the initiator's chain and AUTH."""


@runtime_checkable
class PeerPair(Protocol):
    """The plug-in interface of a peer pair kind."""

    name: str
    simulated: bool

    def unavailable_reason(self) -> str | None:
        """Why this pair cannot run here, or ``None`` when it can."""
        ...

    def run(self, case: HandshakeCase) -> HandshakeRun:
        """Run one handshake; never raises for a handshake that fails."""
        ...


class MemoryPair:
    """Two pqike peers in this process over a simulated link, in virtual time."""

    name = "memory"
    simulated = True
    runs_phases = True

    def unavailable_reason(self) -> str | None:
        return None

    def _configs_for(
        self, case: HandshakeCase
    ) -> tuple[IkeConfiguration, IkeConfiguration, LabAuth]:
        """Both sides' configurations, made once per cell (what they depend on) rather
        than twice per handshake: ``IkeSa`` never changes one. The third item holds the
        meters of their signing and verifying."""
        p = case.proposal
        key = (p, case.profile.fragment_size, case.retransmit_timeout, case.retransmit_tries)
        # Made on first use: subclasses (tests' pairs) need not call an __init__.
        cache: dict[tuple, tuple[IkeConfiguration, IkeConfiguration, LabAuth]]
        cache = vars(self).setdefault("_configs", {})
        configs = cache.get(key)
        if configs is None:
            common: dict[str, Any] = {
                "fragment_size": case.profile.fragment_size,
                "retransmit_timeout": case.retransmit_timeout,
                "retransmit_tries": case.retransmit_tries,
                "psk": PSK,
                "preset": p.preset,
            }
            # Certificates of a reproducible test PKI when the proposal asks (``auth``,
            # ``chain``), kept on the pair between cells (RSA keys take a while).
            auth = lab_auth(
                p.auth, p.chain, INITIATOR_ID, RESPONDER_ID, vars(self).setdefault("_pkis", {})
            )
            ini_auth, res_auth = auth.initiator, auth.responder
            configs = (
                make_config(
                    p.ike,
                    p.esp,
                    local_id=INITIATOR_ID,
                    remote_id=RESPONDER_ID,
                    impairments=p.impair,
                    **common,
                    **ini_auth,
                ),
                make_config(
                    p.responder or p.ike,
                    p.esp,
                    local_id=RESPONDER_ID,
                    impairments=p.responder_impair,
                    **common,
                    **res_auth,
                ),
                auth,
            )
            if len(cache) >= 64:
                cache.clear()
            cache[key] = configs
        return configs

    def run(self, case: HandshakeCase) -> HandshakeRun:
        profile = case.profile
        version = 6 if profile.ipv6 else 4
        ini_addr, res_addr = INITIATOR_ADDRESS[version], RESPONDER_ADDRESS[version]
        ini_config, res_config, auth = self._configs_for(case)
        auth.reset()
        initiator = IkeSa(ini_config, is_initiator=True, local=ini_addr, remote=res_addr)
        responder = IkeSa(res_config, is_initiator=False, local=res_addr, remote=ini_addr)
        run = simulate_handshake(
            initiator,
            responder,
            forward=profile.link(),
            seed=case.seed,
            ipv6=profile.ipv6,
            max_time=case.max_time,
            then=case.phases,
        )
        est = next((e for e in run.initiator_events if isinstance(e, IkeSaEstablished)), None)
        payloads = None
        if case.record_payloads:
            # The handshake's keys open the handshake's messages; after an IKE SA rekey
            # other keys would be needed, so the payloads stay the handshake's.
            sent = [
                (d.sender, raw)
                for d, raw in zip(run.trace.datagrams, run.datagrams, strict=True)
                if d.phase == "handshake"
            ]
            handshake_events = [
                e
                for e in run.initiator_events
                if not (isinstance(e, KeyExchangeCompleted) and e.purpose is not None)
            ]
            keys = KeySchedule.from_events(handshake_events, sent)
            payloads = payload_records(run.trace, dissect(sent, keys))
        # With phases after it, the handshake's own CPU and end are its phase's: the
        # handshakes table describes the handshake alone.
        handshake = run.phases[0]
        return HandshakeRun(
            established=run.established,
            failure=run.failure,
            negotiated=est.suite.describe() if est is not None else None,
            trace=run.trace,
            simulated=True,
            wall=run.wall,
            end_time=handshake.start + handshake.duration,
            sim_time=run.established_at,
            sim_time_cpu=run.established_at_cpu,
            cpu_initiator=handshake.cpu_initiator,
            cpu_responder=handshake.cpu_responder,
            fates=run.fates,
            message_cpu_times=run.message_cpu_times,
            payloads=payloads,
            phases=run.phases if case.phases else None,
            **auth.columns(),
        )


def payload_records(trace: Trace, messages: Sequence[DissectedMessage]) -> list[PayloadRecord]:
    """``PayloadRecord``s of dissected messages, keyed to the messages of ``trace``.

    Both list messages in the order they were sent, so the n-th message of one sender
    with a given exchange, Message ID and direction is the same message in both.
    """
    index: dict[tuple, list[int]] = {}
    for i, m in enumerate(trace.messages):
        index.setdefault((m.sender, m.exchange, m.message_id, m.is_response), []).append(i)
    out: list[PayloadRecord] = []
    for dm in messages:
        slots = index.get((dm.sender, dm.exchange, dm.message_id, dm.is_response))
        if not slots:
            continue
        i = slots.pop(0)
        out.extend(PayloadRecord(i, part.name, part.size, part.protected) for part in dm.parts)
    return out


class UnavailablePair:
    """A pair kind that is known but cannot run here; ``reason`` says why."""

    simulated = False

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason

    def unavailable_reason(self) -> str | None:
        return self.reason

    def run(self, case: HandshakeCase) -> HandshakeRun:
        raise RuntimeError(f"peer pair {self.name!r} is not available: {self.reason}")


__all__ = [
    "HandshakeCase",
    "HandshakeRun",
    "MemoryPair",
    "PayloadRecord",
    "PeerPair",
    "UnavailablePair",
    "payload_records",
]
