"""``pqike bench interop``: handshake time of pqike and strongSwan 6 in the lab.

Four pairs run the same proposal over real UDP, each in its own pair of network
namespaces (:mod:`pqike.interop.lab`), interleaved run by run with the order rotated, so
load on the machine hits all of them alike:

- strongSwan -> strongSwan (the anchor),
- pqike -> strongSwan and strongSwan -> pqike,
- pqike -> pqike,
- pqike (cold) -> pqike.

**Warm and cold.** charon initiates as a running daemon asked over vici, so the pqike
initiators that stand beside it are running processes too: one
``python -m pqike.interop.drivers warm`` per pair, started (and through one handshake)
before the capture, told to start each IKE SA on a line of its standard input. The
*cold* pair runs ``pqike initiate``, a new Python process for every handshake, as the
bench did before: its first datagram leaves a process that has just imported pqike, and
its figure says what that start costs on the wire.

**What is timed.** The handshake as the network sees it: from the first IKE_SA_INIT
datagram to the last IKE_AUTH datagram of one IKE SA, both taken from one tcpdump
capture in the initiator's namespace, so every pair is timed by the same clock (the
kernel's capture timestamps) at the same place. It holds both peers' computation and
every round trip, fragments and IKE_INTERMEDIATE exchanges included, and leaves out
what is not the protocol: starting a process (the cold ``pqike initiate`` needs about
0.2 s before its first datagram; ``swanctl`` and the warm driver only ask a running
initiator), reading configuration, and the initiator's handling of the final IKE_AUTH
response.

Each pair starts its daemons once per proposal: ``pqike respond`` or charon as the
responder, charon, the warm driver or one ``pqike initiate`` process per handshake as
the initiator.
charon logs at level 1 (its default), not the lab's level 4: hex-dumping every key
and message to a file would slow it down. The first handshake of each pair is a
warm-up and not counted.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import pairwise

from ..constants import ADDKE_TYPES, ExchangeType, HeaderFlag, ProtocolId
from ..proposal import parse_proposals
from .lab import Datagram, Lab, StrongSwanConfig, ensure_strongswan
from .peer import (
    REPO,
    PqikeResponder,
    lab_unavailable,
    run_pqike_initiator,
    write_pqike_config,
)

#: The pairs in the order they are reported; (name, initiator, responder).
PAIRS: tuple[tuple[str, str, str], ...] = (
    ("strongSwan -> strongSwan", "strongswan", "strongswan"),
    ("pqike -> strongSwan", "pqike", "strongswan"),
    ("strongSwan -> pqike", "strongswan", "pqike"),
    ("pqike -> pqike", "pqike", "pqike"),
    ("pqike (cold) -> pqike", "pqike-cold", "pqike"),
)
#: "pqike" initiators are the warm driver; "pqike-cold" is a new process per handshake.
ANCHOR = "strongSwan -> strongSwan"
#: The goal for pqike <-> pqike (warm) against strongSwan <-> strongSwan, with
#: additional key exchanges (where pqike's ML-KEM is cheaper than charon's).
GOAL_RATIO = 0.5
#: The goal without them (one x25519 exchange: the same crypto on both sides).
GOAL_RATIO_CLASSICAL = 1.0


def goal_for(proposal: str) -> float:
    """The pqike -> pqike goal for ``proposal``: 0.5 with ADDKE rounds, else 1.0."""
    (first, *_) = parse_proposals(proposal, protocol=ProtocolId.IKE)
    return (
        GOAL_RATIO if any(t.type in ADDKE_TYPES for t in first.transforms) else GOAL_RATIO_CLASSICAL
    )


DEFAULT_PROPOSALS = (
    "aes256gcm16-prfsha384-x25519-ke1_mlkem768",
    "aes256gcm16-prfsha384-x25519",
)
_PREFIX = "pqbench"
_IKE_SA_INIT, _IKE_AUTH = ExchangeType.IKE_SA_INIT, ExchangeType.IKE_AUTH
_IKE_INTERMEDIATE = ExchangeType.IKE_INTERMEDIATE
# Offsets in the IKE header (RFC 7296 3.1).
_SPI_I_END, _EXCHANGE_TYPE, _FLAGS = 8, 18, 19


class LabUnavailable(RuntimeError):
    """The strongSwan lab cannot run here (not root, no network namespaces)."""


@dataclass(frozen=True)
class WireHandshake:
    """One IKE SA's handshake as captured: when it started and how long it took."""

    spi_i: bytes
    start: float
    seconds: float
    datagrams: int
    #: Between consecutive datagrams: ``("r", s)`` when the later one is a response
    #: (the responder's turn, network included), ``("i", s)`` when it is a request.
    steps: tuple[tuple[str, float], ...] = ()


def wire_handshakes(datagrams: Sequence[Datagram]) -> list[WireHandshake]:
    """The handshakes in a capture, in the order they started.

    ``datagrams`` are :class:`pqike.interop.lab.Datagram` objects. A
    handshake is every IKE_SA_INIT, IKE_INTERMEDIATE and IKE_AUTH datagram with one
    initiator SPI (retransmissions and fragments included); it is complete once an
    IKE_AUTH response was seen, and timed from its first IKE_SA_INIT datagram to its
    last IKE_AUTH datagram. Incomplete ones are left out.
    """
    seen: dict[bytes, list[tuple[float, bool, int]]] = {}
    for d in datagrams:
        msg = d.ike_message
        if msg is None:
            continue  # ESP and keepalives
        exchange = msg[_EXCHANGE_TYPE]
        if exchange not in (_IKE_SA_INIT, _IKE_INTERMEDIATE, _IKE_AUTH):
            continue  # INFORMATIONAL exchanges after the handshake
        spi_i = bytes(msg[:_SPI_I_END])
        if exchange != _IKE_SA_INIT and spi_i not in seen:
            continue  # the capture started in the middle of this handshake
        # The R flag (RFC 7296 3.1) tells a response from a request.
        response = bool(msg[_FLAGS] & HeaderFlag.RESPONSE)
        seen.setdefault(spi_i, []).append((d.time, response, exchange))
    out = []
    for spi_i, rows in seen.items():
        auth = [i for i, (_, _, exchange) in enumerate(rows) if exchange == _IKE_AUTH]
        if not any(rows[i][1] for i in auth):
            continue  # no IKE_AUTH response: not complete
        rows = rows[: auth[-1] + 1]  # a fragmented response ends with its last fragment
        steps = tuple(
            ("r" if response else "i", t - prev)
            for (prev, _, _), (t, response, _) in pairwise(rows)
        )
        out.append(WireHandshake(spi_i, rows[0][0], rows[-1][0] - rows[0][0], len(rows), steps))
    return sorted(out, key=lambda h: h.start)


@dataclass(frozen=True)
class PairResult:
    """The timed handshakes of one pair for one proposal."""

    name: str
    seconds: tuple[float, ...]
    datagrams: int
    #: Median of each step (see ``WireHandshake.steps``) when every handshake had the
    #: same datagrams; empty otherwise.
    steps: tuple[tuple[str, float], ...] = ()

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def quartiles(self) -> tuple[float, float]:
        if len(self.seconds) < 2:
            return self.median, self.median
        q = statistics.quantiles(self.seconds, n=4, method="inclusive")
        return q[0], q[2]

    @classmethod
    def of(cls, name: str, handshakes: Sequence[WireHandshake]) -> PairResult:
        """Summarize ``handshakes`` of one pair."""
        shapes = {tuple(who for who, _ in h.steps) for h in handshakes}
        steps: tuple[tuple[str, float], ...] = ()
        if len(shapes) == 1:
            (shape,) = shapes
            steps = tuple(
                (who, statistics.median(h.steps[i][1] for h in handshakes))
                for i, who in enumerate(shape)
            )
        return cls(
            name,
            tuple(h.seconds for h in handshakes),
            round(statistics.median(h.datagrams for h in handshakes)),
            steps,
        )


@dataclass(frozen=True)
class InteropBenchReport:
    """Median wire handshake times per pair and proposal, with ratios to the anchor."""

    strongswan: str
    runs: int
    esp: str
    results: dict[str, tuple[PairResult, ...]]
    seconds: float

    def ratio(self, proposal: str, pair: str) -> float:
        """``pair``'s median over strongSwan -> strongSwan's, for ``proposal``."""
        by_name = {p.name: p for p in self.results[proposal]}
        return by_name[pair].median / by_name[ANCHOR].median

    def format(self) -> str:
        lines = [
            f"peers:      pqike and {self.strongswan} (charon log level 1), "
            "each pair in its own network namespaces, IPv4, ports 500/4500",
            "timed:      first IKE_SA_INIT to last IKE_AUTH datagram of each IKE SA, "
            "one tcpdump in the initiator's namespace (same clock for every pair)",
            f"runs:       {self.runs} per pair, interleaved, order rotated each run "
            f"(+1 warm-up each); ESP {self.esp}",
        ]
        for proposal, pairs in self.results.items():
            lines += ["", f"{proposal}"]
            lines.append(
                f"  {'pair':<26}{'median':>10}{'p25':>10}{'p75':>10}{'datagrams':>11}"
                f"   ratio to {ANCHOR}"
            )
            for p in pairs:
                q1, q3 = p.quartiles
                ratio = self.ratio(proposal, p.name)
                goal = f" (goal <= {goal_for(proposal)})" if p.name == "pqike -> pqike" else ""
                if p.name == "pqike (cold) -> pqike":
                    goal = " (a new process per handshake)"
                lines.append(
                    f"  {p.name:<26}{p.median * 1e3:>8.2f}ms{q1 * 1e3:>8.2f}ms"
                    f"{q3 * 1e3:>8.2f}ms{p.datagrams:>11}   {ratio:.2f}{goal}"
                )
            lines.append(
                "  steps (median ms between datagrams; r = a response left the responder, "
                "i = the initiator's next request):"
            )
            for p in pairs:
                steps = " ".join(f"{who}{sec * 1e3:.2f}" for who, sec in p.steps) or "-"
                lines.append(f"  {p.name:<26}{steps}")
        lines += [
            "",
            "noise:      shared 2-core machine; interleaving spreads load over all pairs "
            "alike, but single runs vary by tens of percent: compare medians, rerun "
            "with more --runs for tighter quartiles.",
            f"time:       {self.seconds:.1f} s",
        ]
        return "\n".join(lines)


class _Pair:
    """One pair's lab: responder running, initiator ready, capture on the left."""

    def __init__(
        self,
        stack: ExitStack,
        name: str,
        initiator: str,
        responder: str,
        proposal: str,
        esp: str,
    ) -> None:
        self.name = name
        lab = stack.enter_context(Lab(prefix=_PREFIX))
        self.lab = lab
        # Level 1 everywhere: charon's default, no key dumps (see the module doc).
        sw_config = StrongSwanConfig(
            ike_proposal=proposal, esp_proposal=esp, log_levels={"default": 1}
        )
        if responder == "strongswan":
            lab.start_strongswan("right", sw_config)
        else:
            config = write_pqike_config(
                lab.workdir / "right.toml", lab, "right", ike_proposal=proposal, esp_proposal=esp
            )
            PqikeResponder(lab, "right", config, lab.workdir / "right.jsonl").start()
        self.charon = lab.start_strongswan("left", sw_config) if initiator == "strongswan" else None
        self.config = write_pqike_config(
            lab.workdir / "left.toml", lab, "left", ike_proposal=proposal, esp_proposal=esp
        )
        self.warm: subprocess.Popen[str] | None = None
        if initiator == "pqike":
            # Started, and through its first handshake, before the capture begins.
            self.warm = lab.popen_in(
                "left",
                [
                    sys.executable,
                    "-m",
                    "pqike.interop.drivers",
                    "warm",
                    "--config",
                    str(self.config),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                cwd=REPO,
            )
            self._answer("ready")
        self.capture = lab.capture("left")
        self.count = 0

    def _answer(self, expected: str) -> None:
        assert self.warm is not None and self.warm.stdout is not None
        line = self.warm.stdout.readline().strip()
        if line != expected:
            raise RuntimeError(f"{self.name}: the warm pqike initiator answered {line!r}")

    def handshake(self) -> None:
        self.count += 1
        if self.charon is not None:
            self.charon.swanctl(
                "--initiate", "--ike", "conn", "--child", "child", "--timeout", "15", timeout=30
            )
            # A later --initiate would reuse an established IKE SA: close it first.
            self.charon.swanctl("--terminate", "--ike", "conn", "--timeout", "10", timeout=30)
            return
        if self.warm is not None:
            assert self.warm.stdin is not None
            self.warm.stdin.write("go\n")
            self.warm.stdin.flush()
            self._answer("ok")
            return
        events = self.lab.workdir / f"left-{self.count}.jsonl"
        run = run_pqike_initiator(self.lab, "left", self.config, events, delete=True)
        if run.returncode != 0:
            raise RuntimeError(f"{self.name}: pqike initiate failed: {run.stderr.strip()}")

    def timed(self, warmup: int) -> PairResult:
        time.sleep(0.1)  # the last datagrams reach the capture
        self.capture.stop()
        found = wire_handshakes(self.capture.datagrams())
        if len(found) != self.count:
            raise RuntimeError(
                f"{self.name}: {len(found)} complete handshakes captured of {self.count}"
            )
        return PairResult.of(self.name, found[warmup:])


def bench_interop(
    proposals: Sequence[str] = DEFAULT_PROPOSALS,
    esp: str = "aes256gcm16",
    *,
    runs: int = 20,
    progress: Callable[[str], None] | None = None,
) -> InteropBenchReport:
    """Time ``runs`` handshakes per pair and proposal in the lab (needs root).

    Raises ``LabUnavailable`` when the lab cannot run here and ``ConfigurationError``
    for a proposal pqike does not know.
    """
    if runs < 1:
        raise ValueError("runs must be at least 1")
    for text in proposals:
        parse_proposals(text, protocol=ProtocolId.IKE)  # a clear error before any setup
    parse_proposals(esp, protocol=ProtocolId.ESP)
    reason = lab_unavailable()
    if reason is not None:
        raise LabUnavailable(f"pqike bench interop needs the lab: {reason}")
    strongswan = ensure_strongswan(install=True).version()
    started = time.monotonic()
    results: dict[str, tuple[PairResult, ...]] = {}
    for proposal in proposals:
        with ExitStack() as stack:
            pairs = [_Pair(stack, name, ini, resp, proposal, esp) for name, ini, resp in PAIRS]
            for n in range(runs + 1):  # run 0 is the warm-up
                # Rotate the order so no pair always follows the same one.
                for i in range(len(pairs)):
                    pairs[(i + n) % len(pairs)].handshake()
                if progress is not None:
                    progress(f"{proposal}: run {n}/{runs}")
            results[proposal] = tuple(p.timed(warmup=1) for p in pairs)
    return InteropBenchReport(strongswan, runs, esp, results, time.monotonic() - started)


__all__ = [
    "ANCHOR",
    "DEFAULT_PROPOSALS",
    "GOAL_RATIO",
    "GOAL_RATIO_CLASSICAL",
    "PAIRS",
    "InteropBenchReport",
    "LabUnavailable",
    "PairResult",
    "WireHandshake",
    "bench_interop",
    "goal_for",
    "wire_handshakes",
]
