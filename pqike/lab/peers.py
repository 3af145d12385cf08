"""Peer pairs: who runs the handshake of a cell, as plug-ins.

A peer pair takes a ``HandshakeCase`` (proposal, network profile, seed, timers) and
returns a ``HandshakeRun``. ``memory`` runs two pqike ``IkeSa`` objects over the
simulated link of ``pqike.lab.link``. The real-time kinds put ``pqike.lab.relay``
between the peers for the profile's impairments and measure wall time: ``udp`` (two
pqike endpoints over loopback UDP, ``pqike.lab.udp_pair``) runs today;
``pqike-strongswan``, ``strongswan-pqike`` and ``strongswan`` (with a strongSwan 6
daemon from ``interop/``) are known to specs but not wired in yet. A pair whose
prerequisites are missing says why through ``unavailable_reason()``; the runner refuses
a spec that needs it before running anything.

To add a kind, write a class with ``name``, ``simulated``, ``unavailable_reason()`` and
``run(case)`` and pass ``pairs={**default_pairs(), "mine": Mine()}`` to the runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from ..handshake import INITIATOR_ADDRESS, RESPONDER_ADDRESS, make_config
from ..ike.events import IkeSaEstablished
from ..ike.sa import IkeSa
from ..trace import Trace
from .link import DatagramFate, simulate_handshake
from .spec import PAIR_KINDS, NetworkProfile, ProposalSpec

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

    def unavailable_reason(self) -> str | None:
        return None

    def run(self, case: HandshakeCase) -> HandshakeRun:
        profile = case.profile
        version = 6 if profile.ipv6 else 4
        ini_addr, res_addr = INITIATOR_ADDRESS[version], RESPONDER_ADDRESS[version]
        common = {
            "fragment_size": profile.fragment_size,
            "retransmit_timeout": case.retransmit_timeout,
            "retransmit_tries": case.retransmit_tries,
            "psk": PSK,
        }
        initiator = IkeSa(
            make_config(
                case.proposal.ike,
                case.proposal.esp,
                local_id=INITIATOR_ID,
                remote_id=RESPONDER_ID,
                **common,
            ),
            is_initiator=True,
            local=ini_addr,
            remote=res_addr,
        )
        responder = IkeSa(
            make_config(
                case.proposal.responder or case.proposal.ike,
                case.proposal.esp,
                local_id=RESPONDER_ID,
                **common,
            ),
            is_initiator=False,
            local=res_addr,
            remote=ini_addr,
        )
        run = simulate_handshake(
            initiator,
            responder,
            forward=profile.link(),
            seed=case.seed,
            ipv6=profile.ipv6,
            max_time=case.max_time,
        )
        est = next((e for e in run.initiator_events if isinstance(e, IkeSaEstablished)), None)
        return HandshakeRun(
            established=run.established,
            failure=run.failure,
            negotiated=est.suite.describe() if est is not None else None,
            trace=run.trace,
            simulated=True,
            wall=run.wall,
            end_time=run.end_time,
            sim_time=run.established_at,
            sim_time_cpu=run.established_at_cpu,
            cpu_initiator=run.cpu_initiator,
            cpu_responder=run.cpu_responder,
            fates=run.fates,
            message_cpu_times=run.message_cpu_times,
        )


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


_PLANNED = MappingProxyType(
    {
        "pqike-strongswan": "strongSwan peers are not wired into the runner yet "
        "(interop/lab.py runs them; see experiments/README.md)",
        "strongswan-pqike": "strongSwan peers are not wired into the runner yet "
        "(interop/lab.py runs them; see experiments/README.md)",
        "strongswan": "strongSwan peers are not wired into the runner yet "
        "(interop/lab.py runs them; see experiments/README.md)",
    }
)


def default_pairs() -> dict[str, PeerPair]:
    """A fresh mapping from every kind in ``PAIR_KINDS`` to its implementation."""
    from .udp_pair import UdpPair  # here: it imports this module

    pairs: dict[str, PeerPair] = {"memory": MemoryPair(), "udp": UdpPair()}
    for name in PAIR_KINDS:
        if name not in pairs:
            pairs[name] = UnavailablePair(name, _PLANNED[name])
    return pairs


__all__ = [
    "HandshakeCase",
    "HandshakeRun",
    "MemoryPair",
    "PeerPair",
    "UnavailablePair",
    "default_pairs",
]
