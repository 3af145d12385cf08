"""A pqike peer on real UDP: what ``pqike initiate`` and ``pqike respond`` run.

``initiate(peer, ...)`` brings one IKE SA (and its first Child SA) up against the
configured remote and returns an ``InitiatorResult`` with the trace of every message
sent and received. ``serve(peer, stop, ...)`` answers IKE_SA_INIT requests until
``stop`` is set, reporting each IKE SA that comes up or fails. Both can write a pcap
of every datagram (``pqike.pcap``), the Wireshark IKEv2 key table, and an event log:
one JSON object per line for every SA that comes up, fails or is deleted, keys
included (``event_record``), for scripts that check pqike against another peer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from ..constants import NotifyType, name_of
from ..ike.config import IkeConfiguration
from ..ike.endpoint import IkeEndpoint
from ..ike.events import (
    ChildSaEstablished,
    Event,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
    MessageReceived,
    MessageSent,
)
from ..ike.sa import IkeSa
from ..pcap import PcapWriter, ikev2_decryption_line
from ..secrets import TranscriptWriter, open_secret_file
from ..trace import Trace
from .config import PeerConfig
from .udp import UdpEndpoint, format_address


@dataclass
class InitiatorResult:
    """How one ``initiate`` went: outcome, the events of our SA and the message trace."""

    established: bool
    failure: str | None
    ike: IkeSaEstablished | None
    child: ChildSaEstablished | None
    trace: Trace
    events: list[Event]
    local: tuple[str, int]
    remote: tuple[str, int]
    elapsed: float

    def summary(self) -> dict:
        """A JSON-ready dict: outcome, suite, SPIs, Child SA, totals and the trace rows."""
        ike, child = self.ike, self.child
        return {
            "established": self.established,
            "failure": self.failure,
            "suite": ike.suite.describe() if ike else None,
            "spi_i": ike.spi_i.hex() if ike else None,
            "spi_r": ike.spi_r.hex() if ike else None,
            "intermediate_exchanges": ike.intermediate_exchanges if ike else None,
            "child": None
            if child is None
            else {
                "suite": child.suite.describe(),
                "spi_i": child.spi_i.hex(),
                "spi_r": child.spi_r.hex(),
                "ts_i": [str(t) for t in child.ts_i],
                "ts_r": [str(t) for t in child.ts_r],
                "transport_mode": child.transport_mode,
            },
            "local": list(self.local),
            "remote": list(self.remote),
            "elapsed_s": self.elapsed,
            "totals": self.trace.totals(),
            "messages": self.trace.message_rows(),
            "datagrams": self.trace.datagram_rows(),
        }


def received_as_sent(event: MessageReceived) -> MessageSent:
    """The peer's message as a ``MessageSent`` record, so one side's events give a
    two-sided ``Trace``."""
    return MessageSent(
        event.time,
        event.exchange_type,
        event.message_id,
        event.is_response,
        event.payload_types,
        event.ike_bytes,
        event.fragment_ike_bytes,
        event.datagram_sizes,
        event.retransmission,
        event.source,
    )


def trace_of(events: list[Event], *, initiator: bool, ipv6: bool, start: float = 0.0) -> Trace:
    """A ``Trace`` of what one side sent and accepted, times relative to ``start``."""
    trace = Trace(ipv6=ipv6)
    me, peer = ("initiator", "responder") if initiator else ("responder", "initiator")
    for e in events:
        if isinstance(e, MessageSent):
            trace.add(me, replace(e, time=e.time - start))
        elif isinstance(e, MessageReceived):
            trace.add(peer, replace(received_as_sent(e), time=e.time - start))
    return trace


EVENT_FLUSH_DELAY = 0.05
"""Seconds an event record may wait before it is written to the ``--events`` file."""


class _Artefacts:
    """The optional pcap, key log and event log files of one run."""

    def __init__(
        self,
        stack: ExitStack,
        pcap: Path | None,
        keylog: Path | None,
        events: Path | None = None,
        secrets: Path | None = None,
    ) -> None:
        self.pcap = PcapWriter(stack.enter_context(open(pcap, "wb"))) if pcap else None
        self.secrets = (
            TranscriptWriter(stack.enter_context(open_secret_file(secrets))) if secrets else None
        )
        self.keylog: TextIO | None = (
            stack.enter_context(open(keylog, "w", encoding="ascii")) if keylog else None
        )
        self.events: TextIO | None = (
            stack.enter_context(open(events, "w", encoding="utf-8")) if events else None
        )
        self._records: list[dict] = []
        self._flush_armed = False
        stack.callback(self.flush)  # runs before the file closes (LIFO)

    def datagram(self, direction: str, data: bytes, src, dst) -> None:
        if self.pcap is not None:
            self.pcap.write_udp(data, src, dst, timestamp=time.time())
            self.pcap.flush()

    def event(self, sa: IkeSa, event: Event) -> None:
        if self.secrets is not None:
            self.secrets.event(event)
        if isinstance(event, IkeSaEstablished) and self.keylog is not None:
            line = ikev2_decryption_line(event.spi_i, event.spi_r, event.suite, event.keys)
            self.keylog.write(line + "\n")
            self.keylog.flush()
        if self.events is not None:
            record = event_record(sa, event)
            if record is not None:
                # Written off the hot path: formatting and writing a line per SA cost a
                # responder 0.15 ms a handshake. A script that reads the file while we
                # run sees each line within EVENT_FLUSH_DELAY.
                self._records.append(record)
                if not self._flush_armed:
                    try:
                        loop = asyncio.get_running_loop()
                    except RuntimeError:  # no loop (a direct call): write now
                        self.flush()
                        return
                    self._flush_armed = True
                    loop.call_later(EVENT_FLUSH_DELAY, self.flush)

    def flush(self) -> None:
        """Write the event records kept so far."""
        self._flush_armed = False
        records, self._records = self._records, []
        if records and self.events is not None and not self.events.closed:
            self.events.write("".join(json.dumps(r) + "\n" for r in records))
            self.events.flush()


def event_record(sa: IkeSa, event: Event) -> dict | None:
    """A JSON-ready dict for an IKE SA or Child SA that came up, failed or was deleted;
    ``None`` for other events.

    Every record has ``event`` (``ike_sa_established``, ``child_sa_established``,
    ``ike_sa_failed``, ``ike_sa_deleted``), ``time`` (the loop clock), the IKE SPIs
    (``spi_i``, ``spi_r``, hex), ``local``/``peer`` (``address:port``) and ``initiator``
    (our role). Established SAs add ``suite`` in strongSwan syntax and ``keys`` (hex,
    named as in RFC 7296 2.14 and 2.17); a Child SA's ESP SPIs are ``child_spi_i`` and
    ``child_spi_r``; a failure adds ``notify`` (the error Notify number or ``None``),
    ``notify_name``, ``reason`` and ``round``.
    """
    if not isinstance(event, _RECORDED):
        return None  # most events are messages: decided before building anything
    base = {
        "spi_i": sa.spi_i.hex(),
        "spi_r": sa.spi_r.hex(),
        "local": format_address(sa.local),
        "peer": format_address(sa.remote),
        "initiator": sa.is_initiator,
    }
    if isinstance(event, IkeSaEstablished):
        keys = event.keys
        return {
            "event": "ike_sa_established",
            "time": event.time,
            **base,
            "suite": event.suite.describe(),
            "intermediate_exchanges": event.intermediate_exchanges,
            "local_id": str(event.local_id),
            "remote_id": str(event.remote_id),
            "nat_local": event.nat_local,
            "nat_remote": event.nat_remote,
            "keys": {
                "sk_d": keys.sk_d.hex(),
                "sk_ai": keys.sk_ai.hex(),
                "sk_ar": keys.sk_ar.hex(),
                "sk_ei": keys.sk_ei.hex(),
                "sk_er": keys.sk_er.hex(),
                "sk_pi": keys.sk_pi.hex(),
                "sk_pr": keys.sk_pr.hex(),
            },
        }
    if isinstance(event, ChildSaEstablished):
        child_keys = event.keys
        return {
            "event": "child_sa_established",
            **base,
            "child_spi_i": event.spi_i.hex(),
            "child_spi_r": event.spi_r.hex(),
            "suite": event.suite.describe(),
            "mode": "transport" if event.transport_mode else "tunnel",
            "ts_i": [str(t) for t in event.ts_i],
            "ts_r": [str(t) for t in event.ts_r],
            "keys": {
                "encr_i": child_keys.encr_i.hex(),
                "integ_i": child_keys.integ_i.hex(),
                "encr_r": child_keys.encr_r.hex(),
                "integ_r": child_keys.integ_r.hex(),
            },
        }
    if isinstance(event, IkeSaFailed):
        return {
            "event": "ike_sa_failed",
            "time": event.time,
            **base,
            "notify": event.notify,
            "notify_name": None if event.notify is None else name_of(NotifyType, event.notify),
            "reason": event.reason,
            "round": event.round,
        }
    if isinstance(event, IkeSaDeleted):
        return {"event": "ike_sa_deleted", "time": event.time, **base, "by_peer": event.by_peer}
    return None


_RECORDED = (IkeSaEstablished, ChildSaEstablished, IkeSaFailed, IkeSaDeleted)


def _bound_config(peer: PeerConfig, udp: UdpEndpoint) -> IkeConfiguration:
    # With nat_t_port = 0 the NAT-T port is known only once bound.
    if udp.nat_t_port and udp.nat_t_port != peer.ike.nat_t_port:
        return replace(peer.ike, nat_t_port=udp.nat_t_port)
    return peer.ike


async def initiate(
    peer: PeerConfig,
    *,
    timeout: float = 30.0,
    pcap: Path | None = None,
    keylog: Path | None = None,
    delete: bool = True,
    events: Path | None = None,
    secrets: Path | None = None,
) -> InitiatorResult:
    """Bring up one IKE SA with ``peer.remote``; never raises for a failed handshake.

    With ``delete`` the IKE SA is deleted again (INFORMATIONAL) once it is up, so the
    responder does not keep it; the trace then shows that exchange too. ``events``
    names a file for the JSON-lines event log (see ``event_record``), ``secrets`` one
    for the secrets transcript (``pqike.secrets``, created 0600).
    """
    remote = peer.remote
    local_host = peer.local_for(remote[0])
    with ExitStack() as stack:
        files = _Artefacts(stack, pcap, keylog, events, secrets)

        udp = await UdpEndpoint.open(
            IkeEndpoint(None, limits=peer.limits),
            [local_host],
            port=peer.port,
            nat_t_port=peer.nat_t_port,
            on_event=files.event,
            on_datagram=files.datagram,
        )
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            # On a wildcard socket UdpEndpoint looks up the real source address.
            wildcard = ipaddress.ip_address(local_host).is_unspecified
            local = None if wildcard else (local_host, udp.port)
            sa = udp.initiate(_bound_config(peer, udp), remote, local=local)
            watch = udp.watch(sa)
            settled = await watch.wait(timeout)
            elapsed = loop.time() - start
            up = watch.established
            if up is not None and delete and sa.is_established:
                udp.delete(sa)
                deadline = loop.time() + min(2.0, timeout)
                while not sa.is_closed and loop.time() < deadline:
                    await asyncio.sleep(0.01)
        finally:
            await udp.close()
    failure = None
    if not settled:
        failure = f"no result within {timeout:g} s (state {sa.state.name})"
    elif watch.failure is not None:
        failure = watch.failure.reason
    elif up is None:
        failure = f"the IKE SA ended in state {sa.state.name}"
    elif watch.child is None:
        failure = "the IKE SA is up but the responder did not create the Child SA"
    ipv6 = ":" in remote[0]
    return InitiatorResult(
        established=failure is None,
        failure=failure,
        ike=up,
        child=watch.child,
        trace=trace_of(watch.events, initiator=True, ipv6=ipv6, start=start),
        events=list(watch.events),
        local=sa.local,
        remote=remote,
        elapsed=elapsed,
    )


def describe_event(sa: IkeSa, event: Event) -> str | None:
    """One log line for an IKE or Child SA that came up, failed or was deleted; ``None``
    for other events."""
    peer = format_address(sa.remote)
    spis = f"{sa.spi_i.hex()}_i {sa.spi_r.hex()}_r"
    if isinstance(event, IkeSaEstablished):
        rounds = event.intermediate_exchanges
        return (
            f"established {spis} peer {peer} id {event.remote_id} "
            f"suite {event.suite.describe()}"
            + (f" (additional key exchanges: {rounds})" if rounds else "")
        )
    if isinstance(event, ChildSaEstablished):
        return (
            f"child SA {event.spi_i.hex()}_i {event.spi_r.hex()}_r peer {peer} "
            f"suite {event.suite.describe()} "
            f"{'transport' if event.transport_mode else 'tunnel'} mode"
        )
    if isinstance(event, IkeSaFailed):
        return f"failed {spis} peer {peer}: {event.reason}"
    if isinstance(event, IkeSaDeleted):
        return f"deleted {spis} peer {peer} by {'the peer' if event.by_peer else 'us'}"
    return None


async def serve(
    peer: PeerConfig,
    stop: asyncio.Event,
    *,
    log: Callable[[str], None] = print,
    pcap: Path | None = None,
    keylog: Path | None = None,
    ready: Callable[[UdpEndpoint], None] | None = None,
    events: Path | None = None,
    secrets: Path | None = None,
) -> dict[str, int]:
    """Answer IKE_SA_INIT requests on every ``[peer] local`` address until ``stop`` is set.

    Each IKE SA that comes up or fails is reported through ``log``; ``ready`` is called
    once the sockets are bound. On stop, established IKE SAs are deleted (with a short
    grace period for the answers) and the endpoint's counters are returned. ``events``
    names a file for the JSON-lines event log (see ``event_record``), ``secrets`` one
    for the secrets transcript (``pqike.secrets``, created 0600).
    """
    with ExitStack() as stack:
        files = _Artefacts(stack, pcap, keylog, events, secrets)

        def on_event(sa: IkeSa, event: Event) -> None:
            files.event(sa, event)
            line = describe_event(sa, event)
            if line is not None:
                log(line)

        # Replaced once bound (nat_t_port = 0); a datagram may arrive before that.
        holder: list[IkeConfiguration] = [peer.ike]
        config_for = peer.responder_config()

        def bound_config_for(local, remote):
            # One configuration object shared by every SA (they keep a reference).
            return None if config_for(local, remote) is None else holder[0]

        endpoint = IkeEndpoint(bound_config_for, limits=peer.limits)
        udp = await UdpEndpoint.open(
            endpoint,
            peer.local_addresses,
            port=peer.port,
            nat_t_port=peer.nat_t_port,
            on_event=on_event,
            on_datagram=files.datagram,
        )
        holder[0] = _bound_config(peer, udp)
        try:
            if ready is not None:
                ready(udp)
            await stop.wait()
        finally:
            await udp.close(delete=True, grace=1.0)
        return endpoint.stats


__all__ = [
    "InitiatorResult",
    "describe_event",
    "event_record",
    "initiate",
    "received_as_sent",
    "serve",
    "trace_of",
]
