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

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .constants import ProtocolId
from .crypto.keys import ChildKeys, IkeKeys
from .ike.config import Identity, IkeConfiguration
from .ike.events import (
    ChildSaEstablished,
    Event,
    IkeSaEstablished,
    IkeSaFailed,
    KeyExchangeCompleted,
)
from .ike.sa import IkeSa
from .proposal import NegotiatedSuite, parse_proposals
from .trace import Trace

INITIATOR_ADDRESS = {4: ("192.0.2.1", 500), 6: ("2001:db8::1", 500)}
RESPONDER_ADDRESS = {4: ("192.0.2.2", 500), 6: ("2001:db8::2", 500)}

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
    """An ``IkeConfiguration`` from strongSwan proposal strings and identity strings."""
    return IkeConfiguration(
        ike_proposals=parse_proposals(proposal, protocol=ProtocolId.IKE),
        esp_proposals=parse_proposals(esp, protocol=ProtocolId.ESP),
        local_id=Identity.parse(local_id),
        remote_id=Identity.parse(remote_id) if remote_id else None,
        psk=psk,
        **options,
    )


def make_pair(
    proposal: str = "aes256gcm16-prfsha384-x25519",
    esp: str = "aes256gcm16",
    *,
    responder_proposal: str | None = None,
    psk: bytes = b"pqike-demo-psk",
    ipv6: bool = False,
    **options,
) -> tuple[IkeSa, IkeSa]:
    """An initiator and a responder ``IkeSa``, ready for ``drive_pair``.

    ``proposal`` is what the initiator offers and ``responder_proposal`` (default: the
    same) what the responder accepts, in strongSwan syntax; ``options`` go to both sides'
    ``IkeConfiguration`` (``fragment_size``, ``retransmit_timeout``, ``kex_backends``,
    ...). The peers use the documentation addresses of ``run_handshake``.
    """
    version = 6 if ipv6 else 4
    ini_addr, res_addr = INITIATOR_ADDRESS[version], RESPONDER_ADDRESS[version]
    initiator = IkeSa(
        make_config(
            proposal,
            esp,
            local_id="initiator.pqike.example",
            remote_id="responder.pqike.example",
            psk=psk,
            **options,
        ),
        is_initiator=True,
        local=ini_addr,
        remote=res_addr,
    )
    responder = IkeSa(
        make_config(
            responder_proposal or proposal,
            esp,
            local_id="responder.pqike.example",
            psk=psk,
            **options,
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
) -> HandshakeResult:
    """Run IKE_SA_INIT, any IKE_INTERMEDIATE rounds and IKE_AUTH between two pqike peers.

    ``proposal`` is the initiator's IKE proposal in strongSwan syntax; the responder
    accepts ``responder_proposal`` (default: the same). Returns a ``HandshakeResult``;
    never raises for a failed handshake (see ``result.failures``).
    """
    version = 6 if ipv6 else 4
    ini_addr, res_addr = INITIATOR_ADDRESS[version], RESPONDER_ADDRESS[version]
    initiator = IkeSa(
        make_config(
            proposal,
            esp,
            local_id="initiator.pqike.example",
            remote_id="responder.pqike.example",
            psk=psk,
            fragment_size=fragment_size,
            **(initiator_options or {}),
        ),
        is_initiator=True,
        local=ini_addr,
        remote=res_addr,
    )
    responder = IkeSa(
        make_config(
            responder_proposal or proposal,
            esp,
            local_id="responder.pqike.example",
            psk=responder_psk if responder_psk is not None else psk,
            fragment_size=fragment_size,
            **(responder_options or {}),
        ),
        is_initiator=False,
        local=res_addr,
        remote=ini_addr,
    )
    return drive_pair(initiator, responder, ipv6=ipv6, deliver=deliver, max_time=max_time)


def drive_pair(
    initiator: IkeSa,
    responder: IkeSa,
    *,
    ipv6: bool = False,
    deliver: Deliver | None = None,
    max_time: float = 600.0,
) -> HandshakeResult:
    """Drive two ``IkeSa`` objects against each other in simulated time until both settle."""
    trace = Trace(ipv6=ipv6)
    events = {"initiator": [], "responder": []}
    cpu = {"initiator": 0.0, "responder": 0.0}
    sides = {"initiator": initiator, "responder": responder}
    peer = {"initiator": "responder", "responder": "initiator"}
    now = 0.0
    sent = 0
    wall0 = time.perf_counter()

    def timed(side: str, fn, *args, **kw):
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

    timed("initiator", initiator.initiate, now=now)
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
            break
        timers = [t for t in (initiator.get_timer(), responder.get_timer()) if t is not None]
        if not timers or min(timers) > max_time:
            break
        now = max(now, min(timers))
        for side in ("initiator", "responder"):
            t = sides[side].get_timer()
            if t is not None and t <= now:
                timed(side, sides[side].handle_timer, now=now)
    for side in ("initiator", "responder"):
        drain(side)
    return HandshakeResult(
        initiator.is_established and responder.is_established,
        trace,
        events["initiator"],
        events["responder"],
        cpu["initiator"],
        cpu["responder"],
        time.perf_counter() - wall0,
        now,
        initiator,
        responder,
    )


def _settled(sa: IkeSa) -> bool:
    return sa.is_closed or (sa.is_established and sa.get_timer() is None)
