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
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from ..constants import ExchangeType, NotifyType, name_of
from ..crypto.keys import ChildKeys, IkeKeys
from ..errors import LocalProtocolError
from ..files import open_private
from ..ike.config import IkeConfiguration
from ..ike.endpoint import IkeEndpoint
from ..ike.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    CreateChildSaFailed,
    Event,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
    IkeSaRekeyed,
    LivenessChecked,
    MessageReceived,
    MessageSent,
)
from ..ike.sa import IkeSa
from ..pcap import PcapWriter, ikev2_decryption_line
from ..secrets import TranscriptWriter
from ..trace import Trace, payload_names
from .config import PeerConfig
from .udp import DatagramHook, SaWatch, UdpEndpoint, format_address


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
    """Where IKE_SA_INIT was sent from."""
    remote: tuple[str, int]
    """Where IKE_SA_INIT was sent to."""
    elapsed: float
    final_local: tuple[str, int] | None = None
    """The SA's local address at the end, when it moved (NAT-T, RFC 7296 2.23); else None."""
    final_remote: tuple[str, int] | None = None
    """The peer's address at the end, when the SA moved; else None."""

    def path(self) -> str:
        """``a:500 -> b:500``, and ``, then a:4500 -> b:4500`` once the SA moved to NAT-T."""
        text = f"{format_address(self.local)} -> {format_address(self.remote)}"
        if self.final_local is not None and self.final_remote is not None:
            text += (
                f", then {format_address(self.final_local)} -> {format_address(self.final_remote)}"
            )
        return text

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
            "final_local": list(self.final_local) if self.final_local else None,
            "final_remote": list(self.final_remote) if self.final_remote else None,
            "elapsed_s": self.elapsed,
            "totals": self.trace.totals(),
            "messages": self.trace.message_rows(),
            "datagrams": self.trace.datagram_rows(),
        }


def received_as_sent(event: MessageReceived) -> MessageSent:
    """The peer's message as a ``MessageSent`` record, so one side's events give a
    two-sided ``Trace``."""
    return MessageSent(
        time=event.time,
        exchange_type=event.exchange_type,
        message_id=event.message_id,
        is_response=event.is_response,
        payload_types=event.payload_types,
        ike_bytes=event.ike_bytes,
        fragment_ike_bytes=event.fragment_ike_bytes,
        datagram_sizes=event.datagram_sizes,
        retransmission=event.retransmission,
        destination=event.source,
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
    """The optional pcap, key log and event log files of one run.

    The key log and the event log hold IKE keys: they are created mode 0600. The pcap
    holds only what crossed the wire (IKE_AUTH and later encrypted), like tcpdump's.
    """

    def __init__(
        self,
        stack: ExitStack,
        pcap: Path | None,
        keylog: Path | None,
        events: Path | None = None,
        secrets: Path | None = None,
    ) -> None:
        self.pcap = (
            PcapWriter(stack.enter_context(open_private(pcap, "pcap", binary=True, private=False)))
            if pcap
            else None
        )
        self.secrets = (
            TranscriptWriter(stack.enter_context(open_private(secrets, "secrets")))
            if secrets
            else None
        )
        self.keylog: TextIO | None = (
            stack.enter_context(open_private(keylog, "keylog")) if keylog else None
        )
        self.events: TextIO | None = (
            stack.enter_context(open_private(events, "events")) if events else None
        )
        self._records: list[dict] = []
        self._flush_armed = False
        stack.callback(self.flush)  # runs before the file closes (LIFO)

    @property
    def on_datagram(self) -> DatagramHook | None:
        """The UDP driver's per-datagram hook: none without a pcap, since it would be a
        call per datagram between a request and its answer."""
        return self._write_datagram if self.pcap is not None else None

    def _write_datagram(self, direction: str, data: bytes, src, dst) -> None:
        assert self.pcap is not None
        self.pcap.write_udp(data, src, dst, timestamp=time.time())
        self.pcap.flush()

    def event(self, sa: IkeSa, event: Event) -> None:
        if self.secrets is not None:
            self.secrets.event(event)
        # One key table line per IKE SA: the first, and each one an IKE SA rekey made
        # (RFC 7296 2.18: new SPIs, new keys).
        if isinstance(event, IkeSaEstablished | IkeSaRekeyed) and self.keylog is not None:
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


_LOGGED_EXCHANGES = frozenset(
    {ExchangeType.CREATE_CHILD_SA, ExchangeType.IKE_FOLLOWUP_KE, ExchangeType.INFORMATIONAL}
)
"""The exchanges of an established IKE SA whose every message is logged (RFC 7296 1.3,
1.4; RFC 9370 2.2.4): the rekeys, new Child SAs, Deletes and liveness checks."""


def _ike_keys(keys: IkeKeys) -> dict[str, str]:
    return {
        "sk_d": keys.sk_d.hex(),
        "sk_ai": keys.sk_ai.hex(),
        "sk_ar": keys.sk_ar.hex(),
        "sk_ei": keys.sk_ei.hex(),
        "sk_er": keys.sk_er.hex(),
        "sk_pi": keys.sk_pi.hex(),
        "sk_pr": keys.sk_pr.hex(),
    }


def _child_keys(keys: ChildKeys) -> dict[str, str]:
    return {
        "encr_i": keys.encr_i.hex(),
        "integ_i": keys.integ_i.hex(),
        "encr_r": keys.encr_r.hex(),
        "integ_r": keys.integ_r.hex(),
    }


def _notify(notify: int | None) -> dict:
    return {
        "notify": notify,
        "notify_name": None if notify is None else name_of(NotifyType, notify),
    }


def event_record(sa: IkeSa, event: Event) -> dict | None:
    """A JSON-ready dict for an IKE SA or Child SA that came up, was rekeyed, failed or
    was deleted, for a liveness check, and for every message of the exchanges of an
    established SA (CREATE_CHILD_SA, IKE_FOLLOWUP_KE, INFORMATIONAL); ``None`` for other
    events.

    Every record has ``event``, ``time`` (the loop clock), the IKE SPIs in force
    (``spi_i``, ``spi_r``, hex), ``local``/``peer`` (``address:port``) and ``initiator``
    (our role in the IKE SA). The kinds and what they add:

    - ``ike_sa_established``: ``suite`` (strongSwan syntax), ``keys`` (hex, named as in
      RFC 7296 2.14), identities, ``intermediate_exchanges``, NAT flags.
    - ``ike_sa_rekeyed``: ``old_spi_i``/``old_spi_r``, the new ``spi_i``/``spi_r``,
      ``suite``, ``keys``, ``initiated`` (we started the rekey) and ``key_exchanges``.
    - ``child_sa_established``: ``child_spi_i``/``child_spi_r`` (the ESP SPIs chosen by
      the initiator and responder *of the exchange*, which is also the key order of RFC
      7296 2.17), ``suite``, ``mode``, ``ts_i``/``ts_r``, ``keys``, ``purpose``
      (``ike_auth``, ``new_child``, ``rekey_child``), ``initiated``, ``rekeyed_spi``
      (our inbound SPI of the Child SA it replaces) and ``key_exchanges``.
    - ``child_sa_deleted``: ``child_spi_in``/``child_spi_out`` (ours), ``by_peer``,
      ``reason``.
    - ``child_sa_failed``: a CREATE_CHILD_SA that failed, ``purpose``, ``notify``,
      ``notify_name``, ``reason``, ``round``.
    - ``ike_sa_failed``: ``notify``, ``notify_name``, ``reason``, ``round``.
    - ``ike_sa_deleted``: ``by_peer``.
    - ``liveness_checked``: ``round_trip`` seconds.
    - ``message``: ``direction`` (``sent``/``received``), ``exchange``, ``message_id``,
      ``response``, ``payloads`` (``SK{SA No KE}`` style), ``ike_bytes``, ``fragments``,
      ``retransmission``.
    """
    if not isinstance(event, _RECORDED) or (
        isinstance(event, MessageSent | MessageReceived)
        and event.exchange_type not in _LOGGED_EXCHANGES
    ):
        return None  # most events are handshake messages: decided before building anything
    base = {
        "spi_i": sa.spi_i.hex(),
        "spi_r": sa.spi_r.hex(),
        "local": format_address(sa.local),
        "peer": format_address(sa.remote),
        "initiator": sa.is_initiator,
    }
    if isinstance(event, IkeSaEstablished):
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
            "keys": _ike_keys(event.keys),
        }
    if isinstance(event, IkeSaRekeyed):
        return {
            "event": "ike_sa_rekeyed",
            "time": event.time,
            **base,
            "old_spi_i": event.old_spi_i.hex(),
            "old_spi_r": event.old_spi_r.hex(),
            "spi_i": event.spi_i.hex(),
            "spi_r": event.spi_r.hex(),
            "suite": event.suite.describe(),
            "initiated": event.initiated,
            "key_exchanges": event.key_exchanges,
            "keys": _ike_keys(event.keys),
        }
    if isinstance(event, ChildSaEstablished):
        return {
            "event": "child_sa_established",
            "time": event.time,
            **base,
            "child_spi_i": event.spi_i.hex(),
            "child_spi_r": event.spi_r.hex(),
            "suite": event.suite.describe(),
            "mode": "transport" if event.transport_mode else "tunnel",
            "ts_i": [str(t) for t in event.ts_i],
            "ts_r": [str(t) for t in event.ts_r],
            "purpose": event.purpose.value,
            "initiated": event.initiated,
            "rekeyed_spi": None if event.rekeyed_spi is None else event.rekeyed_spi.hex(),
            "key_exchanges": event.key_exchanges,
            "keys": _child_keys(event.keys),
        }
    if isinstance(event, ChildSaDeleted):
        return {
            "event": "child_sa_deleted",
            "time": event.time,
            **base,
            "child_spi_in": event.spi_in.hex(),
            "child_spi_out": event.spi_out.hex(),
            "by_peer": event.by_peer,
            "reason": event.reason,
        }
    if isinstance(event, CreateChildSaFailed):
        return {
            "event": "child_sa_failed",
            "time": event.time,
            **base,
            "purpose": event.purpose.value,
            **_notify(event.notify),
            "reason": event.reason,
            "round": event.round,
        }
    if isinstance(event, IkeSaFailed):
        return {
            "event": "ike_sa_failed",
            "time": event.time,
            **base,
            **_notify(event.notify),
            "reason": event.reason,
            "round": event.round,
        }
    if isinstance(event, IkeSaDeleted):
        return {"event": "ike_sa_deleted", "time": event.time, **base, "by_peer": event.by_peer}
    if isinstance(event, LivenessChecked):
        return {
            "event": "liveness_checked",
            "time": event.time,
            **base,
            "round_trip": event.round_trip,
        }
    if isinstance(event, MessageSent | MessageReceived):
        if event.exchange_type not in _LOGGED_EXCHANGES:
            return None
        return {
            "event": "message",
            "time": event.time,
            **base,
            "direction": "sent" if isinstance(event, MessageSent) else "received",
            "exchange": name_of(ExchangeType, event.exchange_type),
            "message_id": event.message_id,
            "response": event.is_response,
            "payloads": payload_names(event.payload_types),
            "ike_bytes": event.ike_bytes,
            "fragments": event.fragments,
            "retransmission": event.retransmission,
        }
    return None


_RECORDED = (
    IkeSaEstablished,
    ChildSaEstablished,
    IkeSaFailed,
    IkeSaDeleted,
    IkeSaRekeyed,
    ChildSaDeleted,
    CreateChildSaFailed,
    LivenessChecked,
    MessageSent,
    MessageReceived,
)
"""The events ``event_record`` turns into a line (messages only of the exchanges after
the handshake, ``_LOGGED_EXCHANGES``)."""


def _bound_config(peer: PeerConfig, udp: UdpEndpoint) -> IkeConfiguration:
    # With nat_t_port = 0 the NAT-T port is known only once bound.
    if udp.nat_t_port and udp.nat_t_port != peer.ike.nat_t_port:
        return replace(peer.ike, nat_t_port=udp.nat_t_port)
    return peer.ike


STEPS = ("child", "ike", "new-child", "delete-child", "dpd")
"""What ``initiate(steps=...)`` can do on the established IKE SA, in the given order:
rekey the oldest Child SA (``child``, RFC 7296 1.3.3), rekey the IKE SA (``ike``,
1.3.2), create another Child SA (``new-child``, 1.3.1), delete the newest Child SA
(``delete-child``, 1.4.1), check the peer's liveness (``dpd``, 1.4)."""


def _step_done(step: str, event: Event) -> str | None:
    """``"ok"`` or ``"failed"`` when ``event`` ends ``step`` (one we started), else None."""
    if isinstance(event, CreateChildSaFailed):
        wanted = {"child": "rekey_child", "ike": "rekey_ike", "new-child": "new_child"}
        return "failed" if wanted.get(step) == event.purpose.value else None
    if step == "child" or step == "new-child":
        purpose = "rekey_child" if step == "child" else "new_child"
        if isinstance(event, ChildSaEstablished) and event.initiated:
            return "ok" if event.purpose.value == purpose else None
        return None
    if step == "ike":
        return "ok" if isinstance(event, IkeSaRekeyed) else None
    if step == "delete-child":
        return "ok" if isinstance(event, ChildSaDeleted) and not event.by_peer else None
    if step == "dpd":
        return "ok" if isinstance(event, LivenessChecked) else None
    return None


def _start_step(sa: IkeSa, step: str, now: float) -> None:
    if step == "child":
        sa.rekey_child(now=now)
    elif step == "ike":
        sa.rekey(now=now)
    elif step == "new-child":
        sa.create_child_sa(now=now)
    elif step == "delete-child":
        newest = max(sa.children.values(), key=lambda c: c.created, default=None)
        if newest is None:
            raise ValueError("there is no Child SA to delete")
        sa.delete_child(newest.spi_in, now=now)
    elif step == "dpd":
        sa.check_liveness(now=now)
    else:
        raise ValueError(f"unknown step {step!r}; use one of {', '.join(STEPS)}")


async def _run_step(
    udp: UdpEndpoint, watch: SaWatch, step: str, timeout: float, log: Callable[[str], None]
) -> str | None:
    """Run one step on the established SA; ``None`` when done, else why it failed."""
    loop = asyncio.get_running_loop()
    sa = watch.sa
    seen = len(watch.events)
    log(f"step {step}: started")
    try:
        udp.command(sa, lambda sa: _start_step(sa, step, loop.time()))
    except (ValueError, LocalProtocolError) as exc:
        return f"step {step}: {exc}"
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for event in watch.events[seen:]:
            outcome = _step_done(step, event)
            if outcome == "ok":
                log(f"step {step}: done")
                return None
            if outcome == "failed":
                assert isinstance(event, CreateChildSaFailed)
                return f"step {step}: {_ended_by(event.notify, event.reason)}"
        seen = len(watch.events)
        if not sa.is_established:
            return f"step {step}: the IKE SA ended (state {sa.state.name})"
        await asyncio.sleep(0.01)
    return f"step {step}: not done within {timeout:g} s"


async def _stay(
    watch: SaWatch, seconds: float | None, stop: asyncio.Event | None, log: Callable[[str], None]
) -> None:
    """Hold the SA (its timers rekey it) until ``seconds`` passed, ``stop`` is set or the
    SA ended; ``seconds`` ``None`` waits for ``stop`` alone."""
    loop = asyncio.get_running_loop()
    end = None if seconds is None else loop.time() + seconds
    log("staying " + ("until interrupted" if end is None else f"for {seconds:g} s"))
    while watch.sa.is_established and not (stop is not None and stop.is_set()):
        if end is not None and loop.time() >= end:
            break
        await asyncio.sleep(0.05)


async def initiate(
    peer: PeerConfig,
    *,
    timeout: float = 30.0,
    pcap: Path | None = None,
    keylog: Path | None = None,
    delete: bool = True,
    events: Path | None = None,
    secrets: Path | None = None,
    steps: Sequence[str] = (),
    stay: float | None = 0.0,
    stop: asyncio.Event | None = None,
    log: Callable[[str], None] | None = None,
) -> InitiatorResult:
    """Bring up one IKE SA with ``peer.remote``; never raises for a failed handshake.

    Once it is up, ``steps`` (see ``STEPS``) run one after the other, each waited for
    up to ``timeout`` seconds; then the SA is held ``stay`` seconds (``None``: until
    ``stop`` is set), rekeyed by its lifetimes meanwhile. With ``delete`` the IKE SA is
    then deleted (INFORMATIONAL), so the responder does not keep it; the trace shows
    every exchange. ``events`` names a file for the JSON-lines event log (see
    ``event_record``), ``secrets`` one for the secrets transcript (``pqike.secrets``,
    created 0600); ``log`` gets a line per step and per ``describe_event`` line of
    the established SA (its rekeys, Deletes and their messages).
    """
    for step in steps:
        if step not in STEPS:
            raise ValueError(f"unknown step {step!r}; use one of {', '.join(STEPS)}")
    say = log or (lambda line: None)
    remote = peer.remote
    local_host = peer.local_for(remote[0])
    step_failure: str | None = None
    with ExitStack() as stack:
        files = _Artefacts(stack, pcap, keylog, events, secrets)

        live = False  # log lines once the SA is up: the trace table shows the handshake

        def on_event(sa: IkeSa, event: Event) -> None:
            files.event(sa, event)
            line = describe_event(sa, event) if live else None
            if line is not None:
                say(line)

        udp = await UdpEndpoint.open(
            IkeEndpoint(None, limits=peer.limits),
            [local_host],
            port=peer.port,
            nat_t_port=peer.nat_t_port,
            on_event=on_event,
            on_datagram=files.on_datagram,
        )
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            # On a wildcard socket UdpEndpoint looks up the real source address.
            wildcard = ipaddress.ip_address(local_host).is_unspecified
            local = None if wildcard else (local_host, udp.port)
            sa = udp.initiate(_bound_config(peer, udp), remote, local=local)
            first_local = sa.local  # before any move to the NAT-T port
            watch = udp.watch(sa)
            settled = await watch.wait(timeout)
            elapsed = loop.time() - start
            up = watch.established
            if up is not None and sa.is_established and (steps or stay != 0.0):
                for event in (up, watch.child):
                    line = describe_event(sa, event) if event is not None else None
                    if line is not None:
                        say(line)
                live = True
            for step in steps if up is not None else ():
                if stop is not None and stop.is_set():
                    break
                step_failure = await _run_step(udp, watch, step, timeout, say)
                if step_failure is not None:
                    say(step_failure)
                    break
            if up is not None and sa.is_established and stay != 0.0 and step_failure is None:
                await _stay(watch, stay, stop, say)
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
    elif up is None and watch.failure is not None:
        failure = watch.failure.reason
    elif up is None:
        failure = f"the IKE SA ended in state {sa.state.name}"
    elif watch.child is None:
        failure = "the IKE SA is up but the responder did not create the Child SA"
    elif step_failure is not None:
        failure = step_failure
    elif watch.failure is not None:
        # Up, then lost: e.g. the peer stopped answering (RFC 7296 1.4 liveness).
        failure = f"the IKE SA failed later: {watch.failure.reason}"
    ipv6 = ":" in remote[0]
    moved = (sa.local, sa.remote) if (sa.local, sa.remote) != (first_local, remote) else None
    return InitiatorResult(
        established=failure is None,
        failure=failure,
        ike=up,
        child=watch.child,
        trace=trace_of(watch.events, initiator=True, ipv6=ipv6, start=start),
        events=list(watch.events),
        local=first_local,
        remote=remote,
        elapsed=elapsed,
        final_local=moved[0] if moved else None,
        final_remote=moved[1] if moved else None,
    )


def _spis(spi_i: bytes, spi_r: bytes) -> str:
    return f"{spi_i.hex()}_i {spi_r.hex()}_r"


def _ended_by(notify: int | None, reason: str) -> str:
    return reason if notify is None else f"{name_of(NotifyType, notify)}: {reason}"


def describe_event(sa: IkeSa, event: Event) -> str | None:
    """One log line for an IKE or Child SA that came up, was rekeyed, failed or was
    deleted (with the Notify that ended it), a liveness check, and each message of
    CREATE_CHILD_SA, IKE_FOLLOWUP_KE and INFORMATIONAL; ``None`` for other events."""
    peer = format_address(sa.remote)
    spis = _spis(sa.spi_i, sa.spi_r)
    if isinstance(event, IkeSaEstablished):
        # The rounds negotiated, not the IKE_INTERMEDIATE exchanges: an RFC 9867 PPK
        # may have had one of its own.
        rounds = len(event.suite.rounds)
        return (
            f"established {spis} peer {peer} id {event.remote_id} "
            f"suite {event.suite.describe()}"
            + (f" (additional key exchanges: {rounds})" if rounds else "")
        )
    if isinstance(event, IkeSaRekeyed):
        who = "us" if event.initiated else "the peer"
        return (
            f"IKE SA rekeyed by {who}: {_spis(event.old_spi_i, event.old_spi_r)} -> "
            f"{_spis(event.spi_i, event.spi_r)} peer {peer} suite {event.suite.describe()} "
            f"(key exchanges: {event.key_exchanges})"
        )
    if isinstance(event, ChildSaEstablished):
        if event.purpose.value == "ike_auth":
            what = "child SA"
        else:
            made = "rekeyed" if event.purpose.value == "rekey_child" else "created"
            what = f"child SA {made} by {'us' if event.initiated else 'the peer'}:"
        replaces = f" replaces {event.rekeyed_spi.hex()}" if event.rekeyed_spi else ""
        kes = f" (key exchanges: {event.key_exchanges})" if event.key_exchanges else ""
        return (
            f"{what} {event.spi_i.hex()}_i {event.spi_r.hex()}_r{replaces} peer {peer} "
            f"suite {event.suite.describe()} "
            f"{'transport' if event.transport_mode else 'tunnel'} mode{kes}"
        )
    if isinstance(event, ChildSaDeleted):
        by = "the peer" if event.by_peer else "us"
        return (
            f"child SA deleted by {by}: in {event.spi_in.hex()} out {event.spi_out.hex()} "
            f"peer {peer} ({event.reason})"
        )
    if isinstance(event, CreateChildSaFailed):
        rnd = f" in round {event.round}" if event.round is not None else ""
        return (
            f"{event.purpose.value.replace('_', ' ')} failed{rnd} {spis} peer {peer}: "
            f"{_ended_by(event.notify, event.reason)}"
        )
    if isinstance(event, IkeSaFailed):
        return f"failed {spis} peer {peer}: {_ended_by(event.notify, event.reason)}"
    if isinstance(event, IkeSaDeleted):
        return f"deleted {spis} peer {peer} by {'the peer' if event.by_peer else 'us'}"
    if isinstance(event, LivenessChecked):
        return f"peer {peer} is alive {spis} (round trip {event.round_trip * 1e3:.1f} ms)"
    if isinstance(event, MessageSent | MessageReceived):
        if event.exchange_type not in _LOGGED_EXCHANGES:
            return None
        sent = isinstance(event, MessageSent)
        kind = "response" if event.is_response else "request"
        again = " (retransmission)" if event.retransmission else ""
        return (
            f"{'sent' if sent else 'received'} {name_of(ExchangeType, event.exchange_type)} "
            f"{kind} {event.message_id} [ {payload_names(event.payload_types)} ] "
            f"{event.ike_bytes} bytes {'to' if sent else 'from'} {peer}{again}"
        )
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
            on_datagram=files.on_datagram,
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
