"""A simulated network link under two sans-IO ``IkeSa`` peers, in virtual time.

``simulate_handshake`` is a discrete-event loop: a heap of datagram arrivals and IKE
timers ordered by virtual time. Each direction of the link is a ``Channel`` with

- bandwidth: a datagram occupies the link for ``ip_bytes * 8 / bandwidth`` seconds and
  waits while an earlier one is still being sent (a FIFO queue at the sender);
- loss: each datagram is lost with probability ``loss`` (seeded, per datagram);
- an MTU: a datagram whose IP size exceeds it is dropped before it is sent, the way an
  interface refuses it (the IKE fragment size is a separate knob of the peers);
- one-way delay plus jitter: ``delay + uniform(-jitter, +jitter)``, never negative, so
  jitter may reorder datagrams as netem does.

Two clocks run side by side. ``time`` is network-only virtual time: it depends on the
seed and the profile alone, so two runs give identical numbers. ``cpu_time`` adds the
CPU each peer really spent (``time.process_time`` around every call into its ``IkeSa``)
along the causal chain: a peer starts a step when the input is there *and* it has
finished its previous step, and what it sends leaves when the step ends. The order of
events is the one of the network-only schedule; only the CPU clock stretches, so a
retransmission timer armed at ``cpu_time`` c fires at ``c + timeout``.
"""

from __future__ import annotations

import hashlib
import heapq
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..handshake import PhaseResult, parse_phase, phase_outcome
from ..ike.events import Event, IkeSaEstablished, IkeSaFailed, MessageSent
from ..ike.sa import IkeSa
from ..trace import Trace
from ..wire.datagram import ip_overhead

DELIVERED = "delivered"
LOST = "lost"
MTU_DROPPED = "mtu"


@dataclass(frozen=True)
class LinkProfile:
    """Impairments of one direction of a link, in SI units.

    ``delay`` and ``jitter`` in seconds, ``loss`` a probability from 0 to 1, ``mtu`` the
    largest IP datagram in bytes (``None``: no limit), ``bandwidth`` in bit/s (``None``:
    unlimited). Experiment specs (``NetworkProfile``) and the command line use
    milliseconds, percent and kbit/s instead; ``NetworkProfile.link()`` converts, and
    ``LinkProfile.from_spec_units`` does the same for loose values.
    """

    delay: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    mtu: int | None = None
    bandwidth: float | None = None

    def __post_init__(self) -> None:
        if self.delay < 0 or self.jitter < 0:
            raise ValueError("delay and jitter must not be negative")
        if not 0.0 <= self.loss <= 1.0:
            hint = (
                f" ({self.loss:g} looks like a percentage: {self.loss:g} % is "
                f"{self.loss / 100:g}, or use LinkProfile.from_spec_units(loss_pct=...))"
                if 1.0 < self.loss <= 100.0
                else ""
            )
            raise ValueError(f"loss must be a probability from 0 to 1, got {self.loss:g}{hint}")
        if self.mtu is not None and self.mtu <= 0:
            raise ValueError("mtu must be positive")
        if self.bandwidth is not None and self.bandwidth <= 0:
            raise ValueError("bandwidth must be positive")

    @classmethod
    def from_spec_units(
        cls,
        *,
        delay_ms: float = 0.0,
        jitter_ms: float = 0.0,
        loss_pct: float = 0.0,
        mtu: int | None = None,
        bandwidth_kbps: float | None = None,
    ) -> LinkProfile:
        """The profile from the units of experiment specs: ms, percent and kbit/s."""
        return cls(
            delay=delay_ms / 1000.0,
            jitter=jitter_ms / 1000.0,
            loss=loss_pct / 100.0,
            mtu=mtu,
            bandwidth=bandwidth_kbps * 1000.0 if bandwidth_kbps else None,
        )


def channel_rng(seed: int, direction: str) -> random.Random:
    """A random stream for one direction, derived from ``seed`` alone.

    Each direction has its own stream so that the draws one side's datagrams get do not
    depend on how many datagrams the other side sent.
    """
    digest = hashlib.sha256(f"pqike-link:{seed}:{direction}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


@dataclass(frozen=True)
class Draw:
    """The random part of one datagram's fate, drawn once and used on every clock."""

    fate: str
    jitter: float


class Channel:
    """One direction of a link: the seeded draws and one FIFO serialiser per clock."""

    def __init__(self, profile: LinkProfile, rng: random.Random, clocks: int = 1) -> None:
        self.profile = profile
        self._rng = rng
        self._busy_until = [float("-inf")] * clocks

    def draw(self, ip_bytes: int) -> Draw:
        """Decide loss, MTU drop and jitter for a datagram of ``ip_bytes``.

        Two numbers are drawn for every datagram, whatever happens to it, so the
        stream stays aligned with the datagram index.
        """
        p = self.profile
        u_loss = self._rng.random()
        u_jitter = self._rng.random()
        jitter = (2.0 * u_jitter - 1.0) * p.jitter
        if p.mtu is not None and ip_bytes > p.mtu:
            return Draw(MTU_DROPPED, jitter)
        if u_loss < p.loss:
            return Draw(LOST, jitter)
        return Draw(DELIVERED, jitter)

    def transmit(self, clock: int, now: float, ip_bytes: int, draw: Draw) -> float | None:
        """When the datagram arrives on ``clock`` (``None``: never).

        A lost datagram still occupied the link; a datagram over the MTU never did.
        """
        p = self.profile
        if draw.fate == MTU_DROPPED:
            return None
        start = max(now, self._busy_until[clock])
        done = start + (ip_bytes * 8.0 / p.bandwidth if p.bandwidth else 0.0)
        self._busy_until[clock] = done
        if draw.fate == LOST:
            return None
        return done + max(0.0, p.delay + draw.jitter)


@dataclass(frozen=True)
class DatagramFate:
    """What the link did with one datagram (aligned with ``Trace.datagrams``)."""

    fate: str
    arrival: float | None
    arrival_cpu: float | None


@dataclass
class LinkRun:
    """The outcome of ``simulate_handshake``: the trace, the fates and both clocks."""

    trace: Trace
    fates: list[DatagramFate]
    message_cpu_times: list[float]
    """``cpu_time`` at which each message in ``trace.messages`` left."""
    initiator_events: list[Event]
    responder_events: list[Event]
    established: bool
    established_at: float | None
    established_at_cpu: float | None
    end_time: float
    end_time_cpu: float
    cpu_initiator: float
    cpu_responder: float
    wall: float
    timed_out: bool
    initiator: IkeSa = field(repr=False)
    responder: IkeSa = field(repr=False)
    datagrams: list[bytes] = field(default_factory=list, repr=False)
    """The bytes of every datagram sent (UDP payloads), aligned with ``trace.datagrams``."""
    phases: list[PhaseResult] = field(default_factory=list)
    """The handshake, then each phase of ``then`` that ran, with its own cost: simulated
    time from the command until both peers were idle (``duration`` network-only,
    ``duration_cpu`` with the CPU added), CPU per side and the trace's totals."""

    @property
    def failures(self) -> list[tuple[str, IkeSaFailed]]:
        """``(side, event)`` for every ``IkeSaFailed``, initiator's first."""
        return [("initiator", e) for e in self.initiator_events if isinstance(e, IkeSaFailed)] + [
            ("responder", e) for e in self.responder_events if isinstance(e, IkeSaFailed)
        ]

    @property
    def failure(self) -> str | None:
        """One line saying why the handshake did not complete, or ``None``."""
        if self.established:
            return None
        # The initiator's reason first: it is the side that starts and retries the
        # handshake, so its account ("no response to ...") says what went wrong.
        fails = self.failures
        if fails:
            side, event = fails[0]
            return f"{side}: {event.reason}"
        if self.timed_out:
            return f"not established after {self.end_time:g} s of simulated time"
        return "both peers stopped without establishing"


_ARRIVAL = 0
_TIMER = 1
_SIDES = ("initiator", "responder")


def simulate_handshake(
    initiator: IkeSa,
    responder: IkeSa,
    *,
    forward: LinkProfile,
    backward: LinkProfile | None = None,
    seed: int = 0,
    ipv6: bool = False,
    max_time: float = 600.0,
    process_time: Callable[[], float] = time.process_time,
    then: Sequence[str] = (),
) -> LinkRun:
    """Run a handshake between ``initiator`` and ``responder`` over a simulated link,
    then each phase of ``then`` over the same link, one after the other.

    ``forward`` shapes datagrams from the initiator, ``backward`` (default: the same)
    those from the responder. A phase stops when both peers are settled (idle: nothing
    in flight or queued, or closed), when nothing is left to happen, or ``max_time``
    simulated seconds after it started. ``then`` names phases as
    ``pqike.handshake.run_handshake`` does (``child``, ``ike``, ``responder:child``, ...,
    see ``pqike.handshake.PHASES``; ``ValueError`` for an unknown one); loss, delay and
    retransmissions apply to them as to the handshake. ``LinkRun.phases`` holds the
    handshake and then each phase that ran (none after the IKE SA is gone), and the
    trace labels every record with its phase. Never raises for a failed handshake or
    phase.
    """
    plan = [parse_phase(name) for name in then]
    sides = {"initiator": initiator, "responder": responder}
    peer = {"initiator": "responder", "responder": "initiator"}
    channels = {
        "initiator": Channel(forward, channel_rng(seed, "forward"), clocks=2),
        "responder": Channel(backward or forward, channel_rng(seed, "backward"), clocks=2),
    }
    over = ip_overhead(ipv6)
    trace = Trace(ipv6=ipv6)
    fates: list[DatagramFate] = []
    sent: list[bytes] = []
    message_cpu: list[float] = []
    events: dict[str, list[Event]] = {s: [] for s in _SIDES}
    cpu = dict.fromkeys(_SIDES, 0.0)
    busy_cpu = dict.fromkeys(_SIDES, 0.0)
    timer_at: dict[str, float | None] = dict.fromkeys(_SIDES)
    timer_gen = dict.fromkeys(_SIDES, 0)
    established_at: dict[str, tuple[float, float] | None] = dict.fromkeys(_SIDES)
    heap: list[tuple] = []
    seq = 0
    now = 0.0
    wall0 = time.perf_counter()

    def push(t: float, kind: int, side: str, t_cpu: float, payload: tuple) -> None:
        nonlocal seq
        heapq.heappush(heap, (t, seq, kind, side, t_cpu, payload))
        seq += 1

    def step(side: str, now: float, ready_cpu: float, call: Callable[[IkeSa], None]) -> None:
        sa = sides[side]
        start_cpu = max(ready_cpu, busy_cpu[side])
        c0 = process_time()
        call(sa)
        out = sa.datagrams_to_send(now=now)
        spent = process_time() - c0
        cpu[side] += spent
        end_cpu = start_cpu + spent
        busy_cpu[side] = end_cpu
        first_record = len(trace.datagrams)
        while (ev := sa.next_event()) is not None:
            events[side].append(ev)
            if isinstance(ev, MessageSent):
                trace.add(side, ev)
                message_cpu.append(end_cpu)
            elif isinstance(ev, IkeSaEstablished) and established_at[side] is None:
                established_at[side] = (now, end_cpu)
        # Every datagram an IkeSa emits comes with a MessageSent event, in order, so the
        # new trace records line up with ``out`` one to one.
        records = trace.datagrams[first_record:]
        if len(records) != len(out):  # pragma: no cover - guards the invariant above
            raise AssertionError("datagrams and MessageSent events do not line up")
        channel = channels[side]
        for data, dst in out:
            ip_bytes = len(data) + over
            draw = channel.draw(ip_bytes)
            arrival = channel.transmit(0, now, ip_bytes, draw)
            arrival_cpu = channel.transmit(1, end_cpu, ip_bytes, draw)
            fates.append(DatagramFate(draw.fate, arrival, arrival_cpu))
            sent.append(data)
            if arrival is not None and arrival_cpu is not None:
                push(arrival, _ARRIVAL, peer[side], arrival_cpu, (data, sa.local, dst))
        deadline = sa.get_timer()
        if deadline != timer_at[side]:
            timer_gen[side] += 1
            timer_at[side] = deadline
            if deadline is not None:
                at = max(deadline, now)
                # The timer was armed when this step ended on the CPU clock.
                push(at, _TIMER, side, at + (end_cpu - now), (timer_gen[side],))

    def next_event() -> None:
        """Pop the earliest arrival or timer and let its peer handle it."""
        nonlocal now
        t, _, kind, side, t_cpu, payload = heapq.heappop(heap)
        now = t
        if kind == _ARRIVAL:
            data, src, dst = payload

            def arrive(
                sa: IkeSa,
                d: bytes = data,
                s: tuple[str, int] = src,
                to: tuple[str, int] = dst,
                n: float = t,
            ) -> None:
                sa.receive_datagram(d, s, now=n, local=to)

            step(side, t, t_cpu, arrive)
        elif payload[0] == timer_gen[side]:
            timer_at[side] = None

            def fire(sa: IkeSa, n: float = t) -> None:
                sa.handle_timer(now=n)

            step(side, t, t_cpu, fire)

    def settle(limit: float) -> bool:
        """Run until both peers are settled or nothing is left before ``limit``; return
        whether ``limit`` cut the run short."""
        while heap and not (_settled(initiator) and _settled(responder)):
            if heap[0][0] > limit:
                return True
            next_event()
        return False

    def run_phase(
        name: str, index: int, side: str, action: Callable[[IkeSa, float], None]
    ) -> tuple[PhaseResult, bool]:
        trace.phase = name
        begin = now
        # The command starts once both peers have finished what they were doing.
        begin_cpu = max(now, *busy_cpu.values())
        cpu0 = dict(cpu)
        marks = {s: len(events[s]) for s in _SIDES}
        step(side, now, begin_cpu, lambda sa: action(sa, begin))
        cut = settle(begin + max_time)
        new = {s: events[s][marks[s] :] for s in _SIDES}
        ok, failure = phase_outcome(name, initiator, responder, new)
        if (
            cut
            and not ok
            and not any(isinstance(e, IkeSaFailed) for es in new.values() for e in es)
        ):
            # Neither side gave up: the phase ran out of simulated time.
            failure = f"{name}: not finished after {max_time:g} s of simulated time"
        result = PhaseResult(
            name,
            index,
            ok,
            begin,
            now - begin,
            cpu["initiator"] - cpu0["initiator"],
            cpu["responder"] - cpu0["responder"],
            trace.totals(phase=name),
            failure,
            duration_cpu=max(busy_cpu.values()) - begin_cpu,
        )
        return result, cut

    def drain(limit: float) -> None:
        """Deliver what is still on the wire once both peers went idle (a late duplicate,
        say) before the next phase: in a real SA's life rekeys come long after, so
        nothing of one phase should spill into the next one's command."""
        while heap and heap[0][0] <= limit and any(item[2] == _ARRIVAL for item in heap):
            next_event()

    handshake, timed_out = run_phase("handshake", 0, "initiator", lambda sa, t: sa.initiate(now=t))
    established = initiator.is_established and responder.is_established
    phases = [handshake]
    for index, ((side, action), name) in enumerate(zip(plan, then, strict=True), 1):
        if not (initiator.is_established and responder.is_established):
            break
        drain(now + max_time)
        phases.append(run_phase(name, index, side, action)[0])
    done = [established_at[s] for s in _SIDES]
    at = max(d[0] for d in done) if established and all(done) else None  # type: ignore[index]
    at_cpu = max(d[1] for d in done) if established and all(done) else None  # type: ignore[index]
    return LinkRun(
        trace=trace,
        fates=fates,
        message_cpu_times=message_cpu,
        initiator_events=events["initiator"],
        responder_events=events["responder"],
        established=established,
        established_at=at,
        established_at_cpu=at_cpu,
        end_time=now,
        end_time_cpu=max(busy_cpu.values()),
        cpu_initiator=cpu["initiator"],
        cpu_responder=cpu["responder"],
        wall=time.perf_counter() - wall0,
        timed_out=timed_out or (not established and handshake.duration >= max_time),
        initiator=initiator,
        responder=responder,
        datagrams=sent,
        phases=phases,
    )


def _settled(sa: IkeSa) -> bool:
    return sa.is_closed or sa.is_idle


__all__ = [
    "DELIVERED",
    "LOST",
    "MTU_DROPPED",
    "Channel",
    "DatagramFate",
    "Draw",
    "LinkProfile",
    "LinkRun",
    "channel_rng",
    "simulate_handshake",
]
