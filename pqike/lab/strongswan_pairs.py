"""The strongSwan peer pairs: ``pqike-strongswan``, ``strongswan-pqike``, ``strongswan``
and ``strongswan-ikev1`` (the ``strongswan`` pair's two charons speaking IKEv1).

Each handshake runs between two real peers in the interop lab's two network namespaces
(:mod:`pqike.interop.lab`), the initiator on the left (192.0.2.1 / 2001:db8::1), the responder
on the right (.2)::

    left netns                          TUN relay process                  right netns
    initiator --> route to .2 via TUN --> Channel(forward)  --> TUN --> responder
    initiator <-- TUN <-- Channel(backward) <-- route to .1 via TUN <-- responder

- A strongSwan peer is a charon 6.0.1 from the lab's build (``lab.start_strongswan``),
  driven with swanctl; a pqike peer is a ``pqike.io.udp.UdpEndpoint`` on a thread of
  this process that entered the namespace (``pqike.lab.netns``), so its events (and
  with them its keys) and its CPU time (``time.thread_time``) are at hand.
- Both use ports 500 and 4500 as deployed. strongSwan moves to 4500 after IKE_SA_INIT
  (MOBIKE); pqike follows its peer (and stays on 500 as initiator).
- The network profile is applied by ``pqike.lab.tun_relay`` on the IP path: the peers
  see each other's real addresses and ports, so there is no NAT for them to detect, and
  floating to port 4500 goes through the same impairments.
- Every datagram is taken from the relay's log: read when its sender sent it, delivered
  (or not) per the profile. Bytes per datagram at IKE, UDP and IP level, messages,
  fragments and round trips come from decoding those datagrams
  (``pqike.lab.dissect``), so all three pairs are measured the same way. The time to
  established runs from the first IKE_SA_INIT datagram leaving the initiator to the
  last IKE_AUTH response datagram reaching it.
- Protected messages are decrypted with the keys charon dumps at log level 4, which
  gives each message's payloads (``HandshakeRun.payloads``) and its unfragmented size.
  Each datagram is also matched with the ``sending packet`` / ``received packet`` lines
  of each strongSwan peer's log: the ``initiator_log_bytes`` and ``responder_log_bytes``
  columns of ``datagrams.csv`` hold the sizes charon reports, to compare with the capture.
- CPU per side: measured for pqike peers; ``None`` for charon (a multi-threaded daemon
  writing level-4 logs; its CPU would not compare with pqike's).

Daemons, relay and namespaces live for as long as consecutive handshakes share the
same proposal and peer settings (a cell's repetitions, and a proposal's profiles); the
IKE SA is deleted between handshakes. ``close()`` (called by the runner at the end)
tears everything down; a failed handshake also starts the next one from scratch.

``strongswan-ikev1`` configures both charons with swanctl ``version = 1`` (and
``aggressive = yes`` for a proposal whose ``ikev1_mode`` is ``aggressive``); its datagrams
are dissected by ``pqike.lab.ikev1`` (ISAKMP headers; IKEv1's encrypted payloads are not
decrypted) and its handshake runs to the initiator's third quick mode message.

The two strongSwan <-> strongSwan pairs also run the ``child`` phase after the handshake
(``HandshakeCase.phases``): ``swanctl --rekey --child`` on the initiator, measured from
the relay's log until both daemons hold the new Child SA and every IKEv2 request of the
phase has its response; ``HandshakeRun.phases`` holds its cost.

Both peers use the identities and PSK of the ``memory`` and ``udp`` pairs and the same
traffic selectors (0.0.0.0/0 and ::/0 both ways), so the pairs' messages differ only
where the implementations do. strongSwan's ``send_certreq`` is off: with the lab's
``load-tester`` (needed because this kernel cannot hold IPsec SAs) charon would ask for
certificates of the load-tester's test CA, which is an artefact of the lab.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import threading
import time
import weakref
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from ..constants import IKE_PORT, NAT_T_PORT
from ..errors import ProtocolError
from ..handshake import PhaseResult, make_config
from ..ike.events import Event, IkeSaFailed
from ..interop.lab import Lab, LabError, StrongSwanConfig, ensure_strongswan, log_dumps
from ..trace import DatagramRecord, MessageRecord, Trace, payload_names
from ..wire import isakmp
from .dissect import DissectedMessage, KeySchedule, dissect, ike_message, suite_of
from .ikev1 import dissect_ikev1, ikev1_message, initiator_cookie, opens_phase1, payload_list
from .link import DatagramFate
from .netns import enter_namespace
from .peers import (
    INITIATOR_ID,
    PSK,
    RESPONDER_ID,
    HandshakeCase,
    HandshakeRun,
    payload_records,
)
from .tun_relay import TunRecord, TunRelay, TunRelayError

T = TypeVar("T")
_Outcome = tuple[str, bool, str | None]
"""A phase's name, whether it reached its goal, and why not."""

LAB_PREFIX = "pqxp"
"""Name prefix of the lab namespaces these pairs create (``pqxp-<hex>-left``...):
not the lab's default, so ``python -m pqike.interop down`` of other runs leaves them alone
(``python -m pqike.interop down --prefix pqxp`` removes leftovers)."""

ALL_TRAFFIC = "0.0.0.0/0,::/0"
"""Traffic selectors both ways: pqike's default, so TSi/TSr are alike on every pair."""

_HANDSHAKE = ("IKE_SA_INIT", "IKE_INTERMEDIATE", "IKE_AUTH")
_PACKET_LINE = re.compile(
    r"\[NET\].*? (?P<verb>sending|received) packet: from (?P<src>\S+)\[(?P<sport>\d+)\] "
    r"to (?P<dst>\S+)\[(?P<dport>\d+)\] \((?P<size>\d+) bytes\)"
)
_FAILURE_LINES = (
    re.compile(r"received (\S+) notify error"),
    re.compile(r"giving up after \d+ retransmits"),
    re.compile(r"tried \d+ shared key.*"),
    re.compile(r"no proposal found|received proposals unacceptable|no IKE config found.*"),
    re.compile(r"establishing IKE_SA failed.*|initiate failed:.*"),
)


class _NamespaceLoop:
    """An asyncio event loop on its own thread, inside a network namespace."""

    def __init__(self, namespace: str, name: str) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        ready = threading.Event()

        def run() -> None:
            try:
                enter_namespace(namespace)
                loop = asyncio.new_event_loop()
            except BaseException as exc:  # reported to the creating thread below
                self._error = exc
                ready.set()
                return
            asyncio.set_event_loop(loop)
            self.loop = loop
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._thread.start()
        ready.wait(10)
        if self._error is not None:
            raise OSError(f"cannot enter network namespace {namespace}: {self._error}")
        if self.loop is None:
            raise OSError(f"the thread for namespace {namespace} did not start")

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self.loop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


async def _thread_time() -> float:
    return time.thread_time()


@dataclass(frozen=True)
class _Setup:
    """What daemons and pqike endpoints are built with; handshakes sharing it reuse them."""

    ike: str
    responder_ike: str
    esp: str
    ipv6: bool
    fragment_size: int
    retransmit_timeout: float
    retransmit_tries: int
    ikev1_mode: str | None = None
    """``main`` or ``aggressive``: both daemons speak IKEv1 (the ``strongswan-ikev1``
    pair); ``None``: IKEv2."""

    @classmethod
    def of(cls, case: HandshakeCase, ikev1: bool = False) -> _Setup:
        p = case.proposal
        return cls(
            p.ike,
            p.responder or p.ike,
            p.esp,
            case.profile.ipv6,
            case.profile.fragment_size,
            case.retransmit_timeout,
            case.retransmit_tries,
            (p.ikev1_mode or "main") if ikev1 else None,
        )


def _global_addresses(namespace: str, device: str) -> dict[int, str]:
    """{4: address, 6: address} of ``device`` in ``namespace`` (scope global)."""
    out = subprocess.run(
        ["ip", "-j", "-n", namespace, "addr", "show", "dev", device, "scope", "global"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found: dict[int, str] = {}
    for link in json.loads(out or "[]"):
        for a in link.get("addr_info", []):
            if "local" not in a:
                continue  # iproute2 5.x closes the list with an empty object
            version = 6 if a.get("family") == "inet6" else 4
            found.setdefault(version, a["local"])
    return found


class _Environment:
    """A lab, its TUN relay and the two peers of one pair kind and ``_Setup``."""

    def __init__(self, kinds: tuple[str, str], setup: _Setup, prefix: str, install: bool):
        self.kinds = kinds
        self.setup = setup
        self.lab = Lab(ipv6=setup.ipv6, prefix=prefix)
        self.relay: TunRelay | None = None
        self.daemons: dict[str, Any] = {}
        self.loops: dict[str, _NamespaceLoop] = {}
        self.endpoints: dict[str, Any] = {}
        self.responder_events: list[tuple[Any, Event]] = []
        self.last_datagrams: list[tuple[str, bytes]] = []
        try:
            self._build(install)
        except BaseException:
            self.close()
            raise

    # -- building ------------------------------------------------------------

    def _build(self, install: bool) -> None:
        lab = self.lab
        lab.up()
        left, right = lab.namespaces["left"], lab.namespaces["right"]
        self.addresses = {
            "left": _global_addresses(left, "lab0"),
            "right": _global_addresses(right, "lab0"),
        }
        # The TUN devices and their routes exist before any daemon starts: a charon
        # that saw them appear later would take it for a roaming event (MOBIKE).
        self.relay = TunRelay([left, right])
        self.relay.start()
        for side, peer in (("left", "right"), ("right", "left")):
            for version in (4, 6):
                self.relay.route(
                    lab.namespaces[side],
                    self.addresses[peer][version],
                    source=self.addresses[side][version],
                )
        version = 6 if self.setup.ipv6 else 4
        self.address = {side: self.addresses[side][version] for side in ("left", "right")}
        initiator, responder = self.kinds
        if initiator == "strongswan":
            self.daemons["left"] = lab.start_strongswan(
                "left", self._charon_config("left"), install=install
            )
        else:
            self._open_pqike("left", None)
        if responder == "strongswan":
            self.daemons["right"] = lab.start_strongswan(
                "right", self._charon_config("right"), install=install
            )
        else:
            self._open_pqike("right", self._pqike_config("right"))

    def _charon_config(self, side: str) -> Any:
        s = self.setup
        ours, theirs = (INITIATOR_ID, RESPONDER_ID)
        if side == "right":
            ours, theirs = theirs, ours
        return StrongSwanConfig(
            ike_proposal=s.ike if side == "left" else s.responder_ike,
            esp_proposal=s.esp,
            psk=PSK.decode(),
            local_id=ours,
            remote_id=theirs,
            local_ts=ALL_TRAFFIC,
            remote_ts=ALL_TRAFFIC,
            fragment_size=s.fragment_size,
            send_certreq=False,
            retransmit_timeout=s.retransmit_timeout,
            retransmit_tries=s.retransmit_tries,
            version=1 if s.ikev1_mode else 2,
            aggressive=s.ikev1_mode == "aggressive",
        )

    def _pqike_config(self, side: str) -> Any:
        s = self.setup
        common: dict[str, Any] = {
            "fragment_size": s.fragment_size,
            "retransmit_timeout": s.retransmit_timeout,
            "retransmit_tries": s.retransmit_tries,
            "psk": PSK,
        }
        if side == "left":
            return make_config(
                s.ike, s.esp, local_id=INITIATOR_ID, remote_id=RESPONDER_ID, **common
            )
        return make_config(s.responder_ike, s.esp, local_id=RESPONDER_ID, **common)

    def _open_pqike(self, side: str, responder_config: Any) -> None:
        from ..ike.endpoint import IkeEndpoint
        from ..io.udp import UdpEndpoint

        loop = _NamespaceLoop(self.lab.namespaces[side], f"pqike-lab-{side}")
        self.loops[side] = loop
        events = self.responder_events if side == "right" else None

        async def open_endpoint() -> Any:
            return await UdpEndpoint.open(
                IkeEndpoint(responder_config),
                [self.address[side]],
                port=IKE_PORT,
                nat_t_port=NAT_T_PORT,
                on_event=(lambda sa, ev: events.append((sa, ev))) if events is not None else None,
            )

        self.endpoints[side] = loop.call(open_endpoint())

    # -- one handshake ---------------------------------------------------------

    def handshake(self, case: HandshakeCase) -> tuple[HandshakeRun, bool]:
        """Run one handshake; return it and whether the peers are clean for another."""
        assert self.relay is not None
        self.relay.reset(case.profile.link(), seed=case.seed)
        offsets = {side: _size(d.log_path) for side, d in self.daemons.items()}
        first_event = len(self.responder_events)
        cpu_r0 = self.loops["right"].call(_thread_time()) if "right" in self.loops else None
        started = time.monotonic()
        initiator_events: list[Event] = []
        cpu_i = None
        if "left" in self.daemons:
            result = self.daemons["left"].initiate(timeout=case.max_time, check=False, child=None)
            established = result.established
            swanctl_output = result.output
            sa = None
        else:
            sa, watch, settled, cpu_i = self.loops["left"].call(
                self._pqike_initiate(case.max_time), case.max_time + 30
            )
            initiator_events = list(watch.events)
            established = settled and watch.established is not None and watch.child is not None
            swanctl_output = ""
        elapsed = time.monotonic() - started
        cpu_r = None
        if cpu_r0 is not None:
            cpu_r = self.loops["right"].call(_thread_time()) - cpu_r0
        records = self.relay.records()
        outcomes: list[_Outcome] = []
        bounds = [len(records)]
        if established and case.phases:
            outcomes, bounds = self._run_phases(case)
            records = self.relay.records()
        logs = {side: _read_from(d.log_path, offsets[side]) for side, d in self.daemons.items()}
        responder_events = [ev for _, ev in self.responder_events[first_event:]]
        clean = established and self._terminate(sa)
        # Every datagram of the handshake, its phases and the IKE SA's deletion, for
        # captures of real messages (tests/data/ikev1/capture.py).
        self.last_datagrams = [
            (_SENDER[r.direction], r.udp_payload) for r in self.relay.records() if r.is_udp
        ]

        failure = None
        if not established:
            failure = self._failure(initiator_events, responder_events, swanctl_output, logs, case)
        if self.setup.ikev1_mode:
            return (
                _measured_ikev1_run(
                    records,
                    logs=logs,
                    established=established,
                    failure=failure,
                    elapsed=elapsed,
                    ipv6=case.profile.ipv6,
                    record_payloads=case.record_payloads,
                    phases=outcomes,
                    bounds=bounds,
                ),
                clean,
            )
        keys = self._keys(logs, initiator_events, responder_events)
        run = _measured_run(
            records,
            keys=keys,
            logs=logs,
            established=established,
            failure=failure,
            elapsed=elapsed,
            cpu_initiator=cpu_i,
            cpu_responder=cpu_r,
            ipv6=case.profile.ipv6,
            record_payloads=case.record_payloads,
            phases=outcomes,
            bounds=bounds,
        )
        return run, clean

    def _run_phases(self, case: HandshakeCase) -> tuple[list[_Outcome], list[int]]:
        """Each phase of ``case.phases`` on the established SA, one after the other.

        A phase starts once both daemons hold the Child SA (and the relay's log so far,
        whose length is the phase's first bound, holds the handshake) and ends when both
        hold the rekeyed Child SA and no longer the old one, so the next phase (or the
        IKE SA's deletion) finds the peers idle. Returns each phase's (name, ok, failure)
        and the relay log's length before each phase and after the last one.
        """
        assert self.relay is not None
        outcomes: list[_Outcome] = []
        timeout = max(
            _gives_up_after(case.retransmit_timeout, case.retransmit_tries), PHASE_SETTLE_S
        )
        if not _wait_until(lambda: self._both_hold_child(), timeout):
            return [(case.phases[0], False, "the responder never installed the Child SA")], [
                len(self.relay.records())
            ]
        bounds = [len(self.relay.records())]
        for name in case.phases:
            before = self._child_spis()
            ok, failure = True, None
            try:
                self.daemons["left"].rekey_child(timeout=timeout)
            except LabError as exc:
                ok, failure = False, f"initiator (strongSwan): {str(exc).splitlines()[0]}"
            if ok and not _wait_until(partial(self._rekeyed, before), timeout):
                # An IKEv1 delete (with delete_rekeyed) is sent once, unacknowledged (RFC
                # 2408 4.8): when the link lost it the responder still holds the old Child
                # SA beside the new one, which is rekeyed all the same.
                if not self._rekeyed(before, lingering=True):
                    ok, failure = False, "the Child SA was not rekeyed on both peers"
            # Both peers hold the new Child SA before the last exchange of the phase is
            # over (IKEv2's delete of the old one): the phase ends when every IKEv2
            # request in it has had a response delivered, and that response has arrived.
            _wait_until(partial(self._answered_since, bounds[-1]), timeout)
            time.sleep(case.profile.delay_ms / 1e3 + case.profile.jitter_ms / 1e3 + ARRIVAL_S)
            bounds.append(len(self.relay.records()))
            outcomes.append((name, ok, failure))
            if not ok:
                break
        return outcomes, bounds

    def _answered_since(self, start: int) -> bool:
        """Every IKEv2 request the relay carried since record ``start`` has a response the
        link delivered (RFC 7296 2.1: the R flag, 0x20; matched by exchange and message
        ID in the other direction). IKEv1 messages have no responses to wait for."""
        assert self.relay is not None
        requests, answered = set(), set()
        for r in self.relay.records()[start:]:
            msg = ike_message(r.udp_payload) if r.is_udp else None
            if msg is None or msg[17] >> 4 != 2:
                continue
            key = (msg[18], msg[20:24])
            from_initiator = r.direction == "forward"
            if msg[19] & 0x20:
                if r.delivered is not None:
                    answered.add((key, not from_initiator))
            else:
                requests.add((key, from_initiator))
        return requests <= answered

    def _child_spis(self) -> dict[str, set[str]]:
        """The inbound SPIs of the installed Child SAs each daemon holds."""
        out: dict[str, set[str]] = {}
        for side, daemon in self.daemons.items():
            out[side] = {
                str(c.raw.get("spi-in"))
                for sa in daemon.list_sas()
                for c in sa.children
                if c.state == "INSTALLED"
            }
        return out

    def _both_hold_child(self) -> bool:
        return all(self._child_spis().values())

    def _rekeyed(self, before: dict[str, set[str]], lingering: bool = False) -> bool:
        """Each daemon holds exactly one installed Child SA, and not one it held before;
        with ``lingering`` the responder may still hold the old one beside the new."""
        now = self._child_spis()
        for side, spis in now.items():
            new = spis - before[side]
            if not new or (len(spis) != 1 and not (lingering and side == "right")):
                return False
        return True

    async def _pqike_initiate(self, max_time: float) -> tuple[Any, Any, bool, float]:
        udp = self.endpoints["left"]
        c0 = time.thread_time()
        config = self._pqike_config("left")
        sa = udp.initiate(
            config, (self.address["right"], IKE_PORT), local=(self.address["left"], IKE_PORT)
        )
        watch = udp.watch(sa)
        settled = await watch.wait(timeout=max_time)
        return sa, watch, settled, time.thread_time() - c0

    def _terminate(self, sa: Any, timeout: float = 5.0) -> bool:
        """Delete the IKE SA and wait until neither peer holds one; False if that failed."""
        if "left" in self.daemons:
            self.daemons["left"].swanctl(
                "--terminate", "--ike", "conn", "--timeout", str(int(timeout)), check=False
            )
        else:

            async def delete() -> bool:
                udp = self.endpoints["left"]
                udp.delete(sa)
                deadline = asyncio.get_running_loop().time() + timeout
                while not sa.is_closed and asyncio.get_running_loop().time() < deadline:
                    await asyncio.sleep(0.005)
                udp.unwatch(sa)
                return sa.is_closed

            if not self.loops["left"].call(delete(), timeout + 5):
                return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._responder_holds_sa():
                return True
            time.sleep(0.01)
        return False

    def _responder_holds_sa(self) -> bool:
        if "right" in self.daemons:
            return bool(self.daemons["right"].list_sas())

        async def holds() -> bool:
            return any(sa.is_established for sa in self.endpoints["right"].endpoint)

        return self.loops["right"].call(holds())

    def _keys(
        self, logs: dict[str, str], initiator_events: list[Event], responder_events: list[Event]
    ) -> KeySchedule | None:
        for side in ("left", "right"):
            log = logs.get(side)
            if log:
                dump = log_dumps
                try:
                    dumped = KeySchedule.from_dumps(
                        dump(log, "Sk_ei secret"),
                        dump(log, "Sk_er secret"),
                        dump(log, "Sk_ai secret"),
                        dump(log, "Sk_ar secret"),
                    )
                except LabError:
                    continue
                if dumped.epochs:
                    return dumped
        for events in (initiator_events, responder_events):
            keys = KeySchedule.from_events(events)
            if keys is not None:
                return keys
        return None

    def _failure(
        self,
        initiator_events: list[Event],
        responder_events: list[Event],
        swanctl_output: str,
        logs: dict[str, str],
        case: HandshakeCase,
    ) -> str:
        for side, events, log in (
            ("initiator", initiator_events, logs.get("left")),
            ("responder", responder_events, logs.get("right")),
        ):
            fail = next((e for e in events if isinstance(e, IkeSaFailed)), None)
            if fail is not None:
                return f"{side}: {fail.reason}"
            if log:
                reason = _strongswan_failure(log)
                if reason:
                    return f"{side} (strongSwan): {reason}"
        if swanctl_output.strip():
            return "initiator (strongSwan): " + swanctl_output.strip().splitlines()[-1]
        return f"not established within {case.max_time:g} s"

    # -- teardown --------------------------------------------------------------

    def close(self) -> None:
        for side, udp in list(self.endpoints.items()):
            try:
                self.loops[side].call(udp.close(), 10)
            except Exception:  # the loop or the lab is already gone
                pass
        self.endpoints.clear()
        for loop in self.loops.values():
            loop.stop()
        self.loops.clear()
        if self.relay is not None:
            self.relay.close()
            self.relay = None
        self.lab.down()


PHASE_SETTLE_S = 10.0
"""The shortest wait for a phase's outcome on both peers (longer with more
retransmissions). IKEv2 deletes the old Child SA with an INFORMATIONAL exchange (RFC
7296 2.8); strongSwan's IKEv1 leaves it to expire (``charon.delete_rekeyed = no``), in
state REKEYED, which is no longer installed for this check."""
PHASES_SUPPORTED = ("child",)
"""Phases the strongSwan <-> strongSwan pairs run: ``child``, a Child SA rekey by
``swanctl --rekey --child`` on the initiator (charon in the lab does not rekey on its own:
the load-tester's fake kernel sends no expire events)."""


ARRIVAL_S = 0.05
"""Margin for the relay to deliver a phase's last datagram after its delay, before the
phase's window of the relay's log closes."""
RETRANSMIT_BASE = 1.8
"""strongSwan's ``charon.retransmit_base``: the n-th retransmission waits
``retransmit_timeout * retransmit_base ** n``."""


def _gives_up_after(timeout: float, tries: int) -> float:
    """Seconds until charon gives up on a request (every wait of its schedule), plus one
    more timeout for the answer to the last retransmission: how long a phase may take
    (the old Child SA's delete may follow the rekey, each retransmitted)."""
    return 2 * sum(timeout * RETRANSMIT_BASE**n for n in range(tries + 1)) + timeout


def _wait_until(condition: Any, timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(step)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def _strongswan_failure(log: str) -> str | None:
    """The most telling line of a failed handshake in a charon log, if any."""
    for pattern in _FAILURE_LINES:
        found = pattern.search(log)
        if found:
            return found.group(0)
    return None


def logged_packets(log: str) -> dict[str, list[int]]:
    """The IKE sizes charon logged, in log order: ``{"sending": [...], "received": [...]}``."""
    out: dict[str, list[int]] = {"sending": [], "received": []}
    for line in log.splitlines():
        m = _PACKET_LINE.search(line)
        if m:
            out[m.group("verb")].append(int(m.group("size")))
    return out


def _measured_run(
    records: Sequence[TunRecord],
    *,
    keys: KeySchedule | None,
    logs: dict[str, str],
    established: bool,
    failure: str | None,
    elapsed: float,
    cpu_initiator: float | None,
    cpu_responder: float | None,
    ipv6: bool,
    record_payloads: bool,
    phases: Sequence[_Outcome] = (),
    bounds: Sequence[int] = (),
) -> HandshakeRun:
    """A ``HandshakeRun`` from the relay's log of one handshake and the phases after it
    (see the module docstring)."""
    udp = [r for r in records if r.is_udp]
    spi = None
    for r in udp:
        msg = ike_message(r.udp_payload)
        # The handshake is the IKE SA of the first IKE_SA_INIT request (exchange 34,
        # R flag clear): earlier leftovers and later exchanges are not part of it.
        if msg is not None and r.direction == "forward" and msg[18] == 34 and not msg[19] & 0x20:
            spi = msg[:8]
            break
    kept: list[TunRecord] = []
    for r in udp:
        msg = ike_message(r.udp_payload)
        if msg is not None and msg[:8] == spi:
            kept.append(r)
    messages = dissect([(_SENDER[r.direction], r.udp_payload) for r in kept], keys)
    labels = _phase_labels(
        messages, kept, records, phases, bounds, lambda m: m.exchange in _HANDSHAKE
    )
    trace, fates, _ = _trace_of(kept, messages, labels, ipv6, payload_lists=None)
    columns = _log_columns(trace, fates, logs)
    wall = elapsed
    if established:
        auth = [
            f.arrival
            for d, f in zip(trace.datagrams, fates, strict=True)
            if d.exchange == "IKE_AUTH" and d.is_response and f.arrival is not None
        ]
        if auth:
            wall = max(auth)
    suite = suite_of_records(kept)
    handshake = [m for m in messages if labels.get(id(m)) == HANDSHAKE]
    payloads = payload_records(trace, handshake) if record_payloads and not phases else None
    return HandshakeRun(
        established=established,
        failure=failure,
        negotiated=suite.describe() if established and suite is not None else None,
        trace=trace,
        simulated=False,
        wall=wall,
        end_time=wall,
        cpu_initiator=cpu_initiator,
        cpu_responder=cpu_responder,
        fates=fates,
        payloads=payloads,
        datagram_columns=columns,
        phases=_phase_results(trace, fates, phases) if phases else None,
    )


_SENDER = {"forward": "initiator", "backward": "responder"}
HANDSHAKE = "handshake"


def _phase_labels(
    messages: Sequence[DissectedMessage],
    kept: Sequence[TunRecord],
    records: Sequence[TunRecord],
    phases: Sequence[_Outcome],
    bounds: Sequence[int],
    is_handshake: Any,
) -> dict[int, str]:
    """``id(message) -> phase`` for the messages that count: the handshake's exchanges,
    and every other message that the relay read while a phase ran (``bounds`` are the
    relay log's lengths before each phase and after the last). Others (an exchange
    between the handshake and the first phase) are left out."""
    position = {id(r): i for i, r in enumerate(records)}
    labels: dict[int, str] = {}
    for m in messages:
        if is_handshake(m):
            labels[id(m)] = HANDSHAKE
            continue
        at = position[id(kept[m.datagrams[0]])]
        for k, (name, _, _) in enumerate(phases):
            if k + 1 < len(bounds) and bounds[k] <= at < bounds[k + 1]:
                labels[id(m)] = name
                break
    return labels


def _trace_of(
    kept: Sequence[TunRecord],
    messages: Sequence[DissectedMessage],
    labels: dict[int, str],
    ipv6: bool,
    payload_lists: Any,
) -> tuple[Trace, list[DatagramFate], list[DissectedMessage]]:
    """The trace (messages and datagrams with their phase), each datagram's fate, and the
    messages kept, in the order their first datagrams were sent. Times are seconds from
    the first kept datagram; ``payload_lists(message)`` names the payloads (IKEv2's
    payload types when ``None``)."""
    chosen = sorted((m for m in messages if id(m) in labels), key=lambda m: m.datagrams[0])
    owner = {i: m for m in chosen for i in m.datagrams}
    kept_index = sorted(owner)
    start = kept[kept_index[0]].time if kept_index else 0.0
    trace = Trace(ipv6=ipv6)
    for m in chosen:
        recs = [kept[i] for i in m.datagrams]
        names = payload_lists(m) if payload_lists else payload_names(m.payload_types)
        trace.messages.append(
            MessageRecord(
                recs[0].time - start,
                m.sender,
                m.exchange,
                m.message_id,
                m.is_response,
                names,
                m.ike_bytes,
                sum(len(r.udp_payload) for r in recs),
                sum(len(r.packet) for r in recs),
                len(recs),
                m.fragments,
                m.retransmission,
                sum(len(ike_message(r.udp_payload) or b"") for r in recs),
                labels[id(m)],
            )
        )
    fates = []
    for i in kept_index:
        r, m = kept[i], owner[i]
        trace.datagrams.append(
            DatagramRecord(
                r.time - start,
                m.sender,
                m.exchange,
                m.message_id,
                m.is_response,
                m.datagrams.index(i) + 1 if m.fragments else 0,
                len(ike_message(r.udp_payload) or b""),
                len(r.udp_payload),
                len(r.packet),
                m.retransmission,
                labels[id(m)],
            )
        )
        arrival = r.delivered - start if r.delivered is not None else None
        fates.append(DatagramFate(r.fate, arrival, arrival))
    return trace, fates, chosen


NOT_MEASURED = float("nan")
"""charon's CPU time per phase: not measured (an empty cell in ``phases.csv``)."""


def _phase_results(
    trace: Trace,
    fates: Sequence[DatagramFate],
    phases: Sequence[_Outcome],
) -> list[PhaseResult]:
    """Each phase's cost from the relay's log: its datagrams' bytes and counts, and the
    wall time from its first datagram leaving a peer to its last one reaching the other
    (then both are idle again). The handshake itself is ``handshakes.csv``'s row."""
    out = []
    for index, (name, ok, failure) in enumerate(phases, 1):
        sent = [d.time for d in trace.datagrams if d.phase == name]
        arrived = [
            f.arrival
            for d, f in zip(trace.datagrams, fates, strict=True)
            if d.phase == name and f.arrival is not None
        ]
        start = min(sent) if sent else 0.0
        end = max([*arrived, *sent]) if sent else 0.0
        out.append(
            PhaseResult(
                name=name,
                index=index,
                ok=ok,
                start=start,
                duration=end - start,
                cpu_initiator=NOT_MEASURED,
                cpu_responder=NOT_MEASURED,
                totals=trace.totals(phase=name),
                failure=failure,
            )
        )
    return out


def _measured_ikev1_run(
    records: Sequence[TunRecord],
    *,
    logs: dict[str, str],
    established: bool,
    failure: str | None,
    elapsed: float,
    ipv6: bool,
    record_payloads: bool,
    phases: Sequence[_Outcome] = (),
    bounds: Sequence[int] = (),
) -> HandshakeRun:
    """``_measured_run`` for two IKEv1 daemons (``pqike.lab.ikev1``).

    The handshake is the ISAKMP SA of the first main or aggressive mode message the
    initiator sent, and the first quick mode under it (its message ID). Its time runs from
    that first datagram to the initiator's third quick mode message, the last one the
    Child SA needs (RFC 2409 5.5): the first such datagram that reached the responder, or
    the last one sent when none did.
    """
    udp = [r for r in records if r.is_udp]
    cookie = next(
        (
            initiator_cookie(r.udp_payload)
            for r in udp
            if r.direction == "forward" and opens_phase1(r.udp_payload)
        ),
        None,
    )
    kept = [r for r in udp if cookie is not None and initiator_cookie(r.udp_payload) == cookie]
    messages = dissect_ikev1([(_SENDER[r.direction], r.udp_payload) for r in kept])
    quick = next((m.message_id for m in messages if m.exchange == "QUICK_MODE"), None)

    def is_handshake(m: DissectedMessage) -> bool:
        if m.exchange in ("MAIN_MODE", "AGGRESSIVE_MODE"):
            return True
        return m.exchange == "QUICK_MODE" and m.message_id == quick

    labels = _phase_labels(messages, kept, records, phases, bounds, is_handshake)
    trace, fates, chosen = _trace_of(kept, messages, labels, ipv6, payload_lists=payload_list)
    columns = _log_columns(trace, fates, logs)
    wall = elapsed
    if established:
        # The bytes of each trace datagram (_trace_of orders them by their index in kept).
        sent = [kept[i].udp_payload for i in sorted(i for m in chosen for i in m.datagrams)]
        quick_mode = [
            (d, f, data)
            for d, f, data in zip(trace.datagrams, fates, sent, strict=True)
            if d.phase == HANDSHAKE and d.exchange == "QUICK_MODE"
        ]
        # Not the third message: the initiator's proposal (the first quick mode datagram)
        # and its copies, which charon sends again when the responder ignored the first
        # one ("ignoring QUICK_MODE request while phase 1 is incomplete").
        proposal = quick_mode[0][2] if quick_mode else None
        third = [
            (f.arrival is None, d.time)
            for d, f, data in quick_mode
            if d.sender == "initiator" and not d.is_response and data != proposal
        ]
        delivered = [t for lost, t in third if not lost]
        if delivered:
            wall = min(delivered)
        elif third:
            wall = max(t for _, t in third)
    payloads = None
    if record_payloads and not phases:
        handshake = [m for m in messages if labels.get(id(m)) == HANDSHAKE]
        payloads = payload_records(trace, handshake)
    return HandshakeRun(
        established=established,
        failure=failure,
        negotiated=_ikev1_suite(kept) if established else None,
        trace=trace,
        simulated=False,
        wall=wall,
        end_time=wall,
        fates=fates,
        payloads=payloads,
        datagram_columns=columns,
        phases=_phase_results(trace, fates, phases) if phases else None,
    )


def _ikev1_suite(records: Sequence[TunRecord]) -> str | None:
    """The ISAKMP SA's transform the responder chose: its first main or aggressive mode
    message carries it in the clear (the Child SA's, in quick mode, is encrypted)."""
    for r in records:
        data = ikev1_message(r.udp_payload)
        if data is None or r.direction != "backward":
            continue
        try:
            header = isakmp.parse_header(data)
        except ProtocolError:
            continue
        if header.exchange in ("MAIN_MODE", "AGGRESSIVE_MODE") and not header.encrypted:
            return isakmp.phase1_transform(data, header)
    return None


def suite_of_records(records: Sequence[TunRecord]) -> Any:
    """The suite in the IKE_SA_INIT response among ``records`` (``None`` if there is none)."""
    from ..errors import ProtocolError
    from ..wire.codec import decode_message

    decoded = []
    for r in records:
        msg = ike_message(r.udp_payload)
        if msg is not None and msg[18] == 34:
            try:
                decoded.append(decode_message(msg))
            except ProtocolError:
                continue
    return suite_of(decoded)


def _log_columns(
    trace: Trace, fates: Sequence[DatagramFate], logs: dict[str, str]
) -> dict[str, list[int | None]]:
    """``initiator_log_bytes`` / ``responder_log_bytes``: the size each strongSwan peer's
    log gives for each datagram.

    A peer logs ``sending packet`` for every datagram it sends and ``received packet``
    for every one that reaches it (none for a datagram the link lost). Datagrams are
    matched with those lines in order, per direction: sent ones in sending order,
    received ones in arrival order.
    """
    columns: dict[str, list[int | None]] = {}
    for side, role in (("left", "initiator"), ("right", "responder")):
        log = logs.get(side)
        if log is None:
            continue
        packets = logged_packets(log)
        column: list[int | None] = [None] * len(trace.datagrams)
        sent = [(i, d.ike_bytes) for i, d in enumerate(trace.datagrams) if d.sender == role]
        arrivals = sorted(
            (f.arrival, i)
            for i, (d, f) in enumerate(zip(trace.datagrams, fates, strict=True))
            if d.sender != role and f.arrival is not None
        )
        received = [(i, trace.datagrams[i].ike_bytes) for _, i in arrivals]
        for wanted, lines in ((sent, packets["sending"]), (received, packets["received"])):
            for i, size in _match_in_order(wanted, lines).items():
                column[i] = size
        columns[f"{role}_log_bytes"] = column
    return columns


LOG_REORDER_WINDOW = 4
"""How far ahead a datagram's log line may be. charon's receiver hands each datagram to
a worker thread, and two that arrive together can log ``received packet`` in either
order: a datagram takes the first unused line of its size among the next few."""


def _match_in_order(wanted: Sequence[tuple[int, int]], lines: Sequence[int]) -> dict[int, int]:
    """Datagram index -> the logged size matched to it (the next unused line when none
    of the next ``LOG_REORDER_WINDOW`` has its size: then the sizes differ)."""
    used = [False] * len(lines)
    out: dict[int, int] = {}
    head = 0
    for index, size in wanted:
        while head < len(lines) and used[head]:
            head += 1
        if head >= len(lines):
            break
        window = [k for k in range(head, min(head + LOG_REORDER_WINDOW, len(lines))) if not used[k]]
        choice = next((k for k in window if lines[k] == size), head)
        used[choice] = True
        out[index] = lines[choice]
    return out


class StrongSwanPair:
    """One of the strongSwan peer pairs; ``initiator`` and ``responder`` are ``pqike`` or
    ``strongswan``."""

    simulated = False

    def __init__(
        self,
        name: str,
        initiator: str,
        responder: str,
        *,
        prefix: str = LAB_PREFIX,
        install: bool = False,
        ikev1: bool = False,
    ) -> None:
        if {initiator, responder} - {"pqike", "strongswan"}:
            raise ValueError("initiator and responder are 'pqike' or 'strongswan'")
        if ikev1 and (initiator, responder) != ("strongswan", "strongswan"):
            raise ValueError("IKEv1 needs strongSwan on both sides (pqike speaks IKEv2 only)")
        self.name = name
        self.kinds = (initiator, responder)
        self.ikev1 = ikev1
        self.last_datagrams: list[tuple[str, bytes]] = []
        """``(sender, UDP payload)`` of every datagram the relay carried in the last
        handshake, its phases and the IKE SA's deletion, in the order it read them."""
        self.prefix = prefix
        self.install = install
        self._holder: dict[str, _Environment | None] = {"env": None}
        # Namespaces and daemons must not outlive the process, also when nobody calls
        # close(): the finalizer runs at garbage collection or interpreter exit.
        self._finalizer = weakref.finalize(self, _close_holder, self._holder)

    def __repr__(self) -> str:
        return f"StrongSwanPair({self.name!r})"

    @property
    def runs_phases(self) -> bool:
        """Two strongSwan daemons run phases after the handshake (``PHASES_SUPPORTED``):
        swanctl drives both; a pqike peer here has no command for them yet."""
        return self.kinds == ("strongswan", "strongswan")

    def refuse_phases(self, phases: Sequence[str]) -> str | None:
        """Why this pair cannot run ``phases`` (one sentence), or ``None`` when it can."""
        for name in phases:
            if name not in PHASES_SUPPORTED:
                return (
                    f"peer pair {self.name!r} runs only the phases "
                    f"{', '.join(PHASES_SUPPORTED)} (swanctl --rekey --child), not {name!r}"
                )
        return None

    def unavailable_reason(self) -> str | None:
        """Why this pair cannot run here (root, iproute2, TUN, the lab, a strongSwan build)."""
        if os.geteuid() != 0:
            return "it needs root (network namespaces, TUN devices, ports 500/4500)"
        if shutil.which("ip") is None:
            return "the ip command (iproute2) is missing"
        if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
            return "ip netns does not work here"
        if not Path("/dev/net/tun").exists():
            return "/dev/net/tun is missing (the impairment relay needs TUN devices)"
        if "strongswan" in self.kinds:
            try:
                ensure_strongswan(install=self.install)
            except LabError as exc:
                return str(exc)
        return None

    def run(self, case: HandshakeCase) -> HandshakeRun:
        """One handshake between real peers; raises ``RuntimeError`` only when the lab
        itself breaks (a daemon or the relay does not start)."""
        setup = _Setup.of(case, ikev1=self.ikev1)
        env = self._holder["env"]
        if env is not None and env.setup != setup:
            self.close()
            env = None
        errors = (OSError, TunRelayError, TimeoutError, LabError)
        try:
            if env is None:
                env = _Environment(self.kinds, setup, self.prefix, self.install)
                self._holder["env"] = env
            run, clean = env.handshake(case)
            self.last_datagrams = env.last_datagrams
        except errors as exc:
            self.close()
            raise RuntimeError(f"peer pair {self.name}: the lab failed: {exc}") from exc
        if not clean:
            # Whatever is left (a half-open SA, retransmissions) must not leak into the
            # next handshake.
            self.close()
        return run

    def close(self) -> None:
        """Stop the daemons, the relay and the pqike peers; delete the namespaces."""
        _close_holder(self._holder)


def _close_holder(holder: dict[str, _Environment | None]) -> None:
    env, holder["env"] = holder.get("env"), None
    if env is not None:
        env.close()


def strongswan_pairs(**options: Any) -> dict[str, StrongSwanPair]:
    """The strongSwan pair kinds by name (options as for ``StrongSwanPair``): three
    IKEv2 pairs and ``strongswan-ikev1``."""
    return {
        "pqike-strongswan": StrongSwanPair("pqike-strongswan", "pqike", "strongswan", **options),
        "strongswan-pqike": StrongSwanPair("strongswan-pqike", "strongswan", "pqike", **options),
        "strongswan": StrongSwanPair("strongswan", "strongswan", "strongswan", **options),
        "strongswan-ikev1": StrongSwanPair(
            "strongswan-ikev1", "strongswan", "strongswan", ikev1=True, **options
        ),
    }


__all__ = [
    "LAB_PREFIX",
    "StrongSwanPair",
    "logged_packets",
    "strongswan_pairs",
    "suite_of_records",
]
