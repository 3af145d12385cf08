"""A record per message and per datagram of a handshake, built from ``IkeSa`` events.

Sizes are given at three levels: the IKE message, the UDP payload (non-ESP marker
included) and the IP datagram (UDP header plus an IPv4 or IPv6 header).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .constants import ExchangeType, PayloadType, name_of
from .ike.events import Event, MessageReceived, MessageSent
from .wire.datagram import ip_overhead

_SHORT: dict[int, str] = {
    PayloadType.SA: "SA",
    PayloadType.KE: "KE",
    PayloadType.NONCE: "No",
    PayloadType.NOTIFY: "N",
    PayloadType.IDi: "IDi",
    PayloadType.IDr: "IDr",
    PayloadType.AUTH: "AUTH",
    PayloadType.TSi: "TSi",
    PayloadType.TSr: "TSr",
    PayloadType.SK: "SK",
    PayloadType.SKF: "SKF",
    PayloadType.DELETE: "D",
    PayloadType.VENDOR_ID: "V",
    PayloadType.CERTREQ: "CERTREQ",
    PayloadType.CERT: "CERT",
    PayloadType.CP: "CP",
    PayloadType.EAP: "EAP",
}


def payload_names(types: tuple[int, ...]) -> str:
    """``SA KE No N N`` style list of payload types (protected ones inside ``SK{...}``)."""
    out = []
    inner: list[str] = []
    in_sk = False
    for t in types:
        label = _SHORT.get(t, str(t))
        if t in (PayloadType.SK, PayloadType.SKF):
            in_sk = True
            out.append(label + "{")
            continue
        (inner if in_sk else out).append(label)
    if in_sk:
        out[-1] += " ".join(inner) + "}"
    return " ".join(out)


@dataclass(frozen=True)
class MessageRecord:
    """One IKE message as one side sent it."""

    time: float
    sender: str
    exchange: str
    message_id: int
    is_response: bool
    payloads: str
    ike_bytes: int
    udp_bytes: int
    ip_bytes: int
    datagrams: int
    fragments: int
    retransmission: bool
    wire_ike_bytes: int = 0
    """IKE bytes on the wire: ``ike_bytes`` unless fragmented, else the fragments' sum
    (each fragment has its own IKE header and SKF overhead)."""
    phase: str = "handshake"
    """The part of the SA's life it belongs to: ``handshake`` or a rekey phase."""


@dataclass(frozen=True)
class DatagramRecord:
    """One UDP datagram (a whole message or one fragment)."""

    time: float
    sender: str
    exchange: str
    message_id: int
    is_response: bool
    fragment: int
    ike_bytes: int
    udp_bytes: int
    ip_bytes: int
    retransmission: bool
    phase: str = "handshake"


@dataclass
class Trace:
    """Messages and datagrams in the order they were sent, from either side's events.

    ``phase`` labels what is recorded from now on (``handshake``, then e.g. ``child``
    for a Child SA rekey), so one trace holds an SA's life and ``totals(phase=...)``
    gives each part's cost.
    """

    ipv6: bool = False
    messages: list[MessageRecord] = field(default_factory=list)
    datagrams: list[DatagramRecord] = field(default_factory=list)
    phase: str = "handshake"

    def add(self, sender: str, event: Event) -> None:
        """Record ``event`` if it is a ``MessageSent``; other events are ignored."""
        if not isinstance(event, MessageSent):
            return
        over = ip_overhead(self.ipv6)
        exchange = name_of(ExchangeType, event.exchange_type)
        udp = sum(event.datagram_sizes)
        self.messages.append(
            MessageRecord(
                event.time,
                sender,
                exchange,
                event.message_id,
                event.is_response,
                payload_names(event.payload_types),
                event.ike_bytes,
                udp,
                udp + over * len(event.datagram_sizes),
                len(event.datagram_sizes),
                event.fragments,
                event.retransmission,
                sum(event.fragment_ike_bytes),
                self.phase,
            )
        )
        fragmented = len(event.datagram_sizes) > 1
        for i, (ike, size) in enumerate(
            zip(event.fragment_ike_bytes, event.datagram_sizes, strict=True), 1
        ):
            self.datagrams.append(
                DatagramRecord(
                    event.time,
                    sender,
                    exchange,
                    event.message_id,
                    event.is_response,
                    i if fragmented else 0,
                    ike,
                    size,
                    size + over,
                    event.retransmission,
                    self.phase,
                )
            )

    def totals(self, phase: str | None = None) -> dict[str, int]:
        """Bytes and counts over every datagram sent (retransmissions included), of one
        ``phase`` or of the whole trace.

        ``round_trips`` counts the requests the other side answered (a request that got
        no response is no round trip); ``requests`` counts every request sent once. A
        request is answered by the first later response of the other side in its exchange
        (exchange and message ID) that answers no earlier request: in IKEv2 each exchange
        is one request and its response; IKEv1's main mode is three such pairs in one
        exchange, and the third message of aggressive and quick mode is a request that
        nothing answers (``pqike.lab.ikev1``).
        """
        messages = [m for m in self.messages if phase is None or m.phase == phase]
        datagrams = [d for d in self.datagrams if phase is None or d.phase == phase]
        reqs = [m for m in messages if not m.is_response and not m.retransmission]
        round_trips = 0
        used: set[int] = set()
        for k, m in enumerate(messages):
            if m.is_response or m.retransmission:
                continue
            for j in range(k + 1, len(messages)):
                r = messages[j]
                if (
                    j not in used
                    and r.is_response
                    and r.sender != m.sender
                    and (r.exchange, r.message_id) == (m.exchange, m.message_id)
                ):
                    used.add(j)
                    round_trips += 1
                    break
        return {
            "messages": len(messages),
            "datagrams": len(datagrams),
            "fragments": sum(m.fragments for m in messages),
            "requests": len(reqs),
            "round_trips": round_trips,
            "ike_bytes": sum(d.ike_bytes for d in datagrams),
            "udp_bytes": sum(d.udp_bytes for d in datagrams),
            "ip_bytes": sum(d.ip_bytes for d in datagrams),
            "retransmissions": sum(1 for m in messages if m.retransmission),
        }

    def message_rows(self) -> list[dict]:
        return [asdict(m) for m in self.messages]

    def datagram_rows(self) -> list[dict]:
        return [asdict(d) for d in self.datagrams]

    def sequence(self) -> str:
        """strongSwan-style size sequence: ``s232 r265 ...`` (s = sent by the initiator).

        A run of equal datagrams is written once with its count: ``s1248x220``.
        """
        tokens = [
            ("s" if d.sender == "initiator" else "r") + str(d.udp_bytes) for d in self.datagrams
        ]
        out: list[str] = []
        i = 0
        while i < len(tokens):
            j = i
            while j < len(tokens) and tokens[j] == tokens[i]:
                j += 1
            out.append(tokens[i] if j - i == 1 else f"{tokens[i]}x{j - i}")
            i = j
        return " ".join(out)

    def format_table(self) -> str:
        """A fixed-width table of the messages and a totals line, for terminals.

        The ike, udp and ip columns count what went on the wire, so each adds up to its
        total; a fragmented message also says its size before fragmentation.
        """
        head = (
            f"{'time':>8} {'dir':<3} {'exchange':<16} {'mid':>3} {'ike':>6} {'udp':>6} "
            f"{'ip':>6} {'dgr':>3}  payloads"
        )
        lines = [head, "-" * len(head)]
        phase = "handshake"
        fragmented = False
        for m in self.messages:
            if m.phase != phase:
                phase = m.phase
                lines.append(f"-- {phase}")
            arrow = "->" if m.sender == "initiator" else "<-"
            flag = " (retransmit)" if m.retransmission else ""
            if m.fragments:
                fragmented = True
                flag += f" [{m.fragments} fragments of one {m.ike_bytes}-byte message]"
            wire = m.wire_ike_bytes or m.ike_bytes
            lines.append(
                f"{m.time:8.3f} {arrow:<3} {m.exchange:<16} {m.message_id:>3} {wire:>6} "
                f"{m.udp_bytes:>6} {m.ip_bytes:>6} {m.datagrams:>3}  {m.payloads}{flag}"
            )
        t = self.totals()
        lines.append("-" * len(head))
        unanswered = t["requests"] - t["round_trips"]
        lines.append(
            f"total: {_count(t['messages'], 'message')}, {_count(t['datagrams'], 'datagram')}, "
            f"{_count(t['fragments'], 'fragment')}, {_count(t['round_trips'], 'round trip')}"
            + (f" ({_count(unanswered, 'request')} without a response)" if unanswered else "")
            + f"; {t['ike_bytes']} IKE / {t['udp_bytes']} UDP / {t['ip_bytes']} IP bytes"
        )
        if fragmented:
            lines.append(
                "(a fragmented message counts each fragment's IKE header and SKF overhead, "
                "so its ike column is larger than the message it carries)"
            )
        return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


__all__ = ["DatagramRecord", "MessageReceived", "MessageRecord", "Trace", "ip_overhead"]
