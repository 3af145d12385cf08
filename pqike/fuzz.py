"""A fuzzer for pqike's peer-facing code: ``python -m pqike.fuzz --minutes 10``.

Hypothesis mutates real messages (strongSwan's, captured in ``tests/data/strongswan/``
when the source tree is there, and pqike's own from an in-memory handshake) with bit
flips, odd bytes, cuts, inserts, deletions, rewritten length fields and duplicated
runs, and feeds them to the public sans-IO entry points only, so the IKE core can be
rewritten underneath without touching this file:

``codec``
    ``decode_message(data)`` raises nothing but ``ProtocolError``.
``endpoint``
    A responder ``IkeEndpoint.receive_datagram(...)`` never raises (ports 500 or 4500,
    with or without the non-ESP marker, cookies on or off), nor do its timers.
``initiator``
    An initiator ``IkeSa`` that sent IKE_SA_INIT gets a mutated response carrying its
    own SPIi (so it gets past the SPI check): ``receive_datagram`` never raises.
``handshake``
    Two ``IkeEndpoint`` peers run a whole hybrid handshake while one datagram is
    mutated, dropped or duplicated on the way; nothing raises, and once the timers of
    the first 15 minutes have run (half-open time-outs, every retransmission; rekeys
    come hours later) each IKE SA is either established or closed, none left hanging.

Any other exception is a bug: it is printed with the shrunk input that raises it and
the run exits with status 1. ``run(...)`` is what ``pqike fuzz`` and the test suite call.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .constants import NON_ESP_MARKER
from .errors import ProtocolError
from .handshake import make_config
from .ike.endpoint import EndpointLimits, IkeEndpoint
from .ike.sa import IkeSa
from .wire.codec import decode_message

PROPOSAL = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
"""What strongSwan's captured handshake negotiated; both sides offer it."""
RESPONDER = ("192.0.2.2", 500)
INITIATOR = ("192.0.2.1", 500)
CAPTURES = Path(__file__).resolve().parents[1] / "tests" / "data" / "strongswan"
HORIZON = 900.0
"""Seconds of simulated time a fuzzed handshake runs: past the half-open time-out (30 s)
and the last retransmission (about 165 s), well before any rekey (hours)."""

TARGETS = ("codec", "endpoint", "initiator", "handshake")


def _initiator_config():
    return make_config(
        PROPOSAL,
        local_id="initiator.fuzz.pqike.example",
        remote_id="responder.fuzz.pqike.example",
        fragment_size=576,
    )


def _responder_config():
    return make_config(PROPOSAL, local_id="responder.fuzz.pqike.example", fragment_size=576)


@cache
def seeds() -> tuple[bytes, ...]:
    """Real IKE messages without a non-ESP marker: strongSwan's captures (when the source
    tree is here) and every datagram of one pqike <-> pqike handshake."""
    out: list[bytes] = []
    if CAPTURES.is_dir():
        for path in sorted(CAPTURES.glob("*.hex")):
            raw = bytes.fromhex(path.read_text().strip())
            out.append(raw.removeprefix(NON_ESP_MARKER))
    ini, res = IkeEndpoint(), IkeEndpoint(_responder_config())
    ini.initiate(_initiator_config(), RESPONDER, local=INITIATOR, now=0.0)
    for data in _pump(ini, res, 0.0, lambda n, d: [d]):
        out.append(data)
    return tuple(out)


def _pump(a: IkeEndpoint, b: IkeEndpoint, now: float, deliver) -> list[bytes]:
    """Carry datagrams both ways until quiet; ``deliver(index, data)`` may alter them."""
    carried: list[bytes] = []
    for _ in range(200):
        moved = False
        for src, dst in ((a, b), (b, a)):
            for data, local, remote in src.datagrams_to_send(now=now):
                moved = True
                carried.append(data)
                for d in deliver(len(carried) - 1, data):
                    dst.receive_datagram(d, local, local=remote, now=now)
        if not moved:
            break
    return carried


# ------------------------------------------------------------------ strategies

_INTERESTING = (0x00, 0x01, 0x02, 0x08, 0x20, 0x21, 0x22, 0x28, 0x29, 0x2E, 0x35, 0x7F, 0x80, 0xFF)


@st.composite
def mutated(draw, base=None) -> bytes:
    """A seed message with up to eight mutations, or (rarely) random bytes."""
    if base is None:
        if draw(st.integers(0, 19)) == 0:
            return draw(st.binary(max_size=2048))
        base = draw(st.sampled_from(seeds()))
    data = bytearray(base)
    for _ in range(draw(st.integers(0, 8))):
        op = draw(st.sampled_from(("flip", "set", "cut", "insert", "delete", "len16", "dup")))
        n = len(data)
        if op == "flip" and n:
            data[draw(st.integers(0, n - 1))] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and n:
            value = draw(st.sampled_from(_INTERESTING) | st.integers(0, 255))
            data[draw(st.integers(0, n - 1))] = value
        elif op == "cut":
            del data[draw(st.integers(0, n)) :]
        elif op == "insert":
            at = draw(st.integers(0, n))
            data[at:at] = draw(st.binary(max_size=64))
        elif op == "delete" and n:
            at = draw(st.integers(0, n - 1))
            del data[at : at + draw(st.integers(1, 64))]
        elif op == "len16" and n >= 2:
            at = draw(st.integers(0, n - 2))
            value = draw(
                st.sampled_from((0, 1, 3, 4, 5, 8, 27, 28, 29, 0xFFFF)) | st.integers(0, 65535)
            )
            data[at : at + 2] = value.to_bytes(2, "big")
        elif op == "dup" and n:
            at = draw(st.integers(0, n - 1))
            run = bytes(data[at : at + draw(st.integers(1, 128))])
            to = draw(st.integers(0, n))
            data[to:to] = run
    return bytes(data)


# ------------------------------------------------------------------ targets


def fuzz_codec(data: bytes) -> None:
    """``decode_message`` raises nothing but ``ProtocolError``."""
    try:
        decode_message(data)
    except ProtocolError:
        pass


def fuzz_endpoint(data: bytes, nat_t: bool, marker: bool, cookies: bool, now: float) -> None:
    """A responder endpoint never raises for one datagram, nor in its timers after."""
    limits = EndpointLimits(cookie_threshold=0 if cookies else None)
    res = IkeEndpoint(_responder_config(), limits=limits)
    port = 4500 if nat_t else 500
    payload = NON_ESP_MARKER + data if marker else data
    res.receive_datagram(payload, ("198.51.100.7", port), local=("192.0.2.2", port), now=now)
    res.datagrams_to_send(now=now)
    while res.next_event() is not None:
        pass
    when = res.get_timer()
    for _ in range(16):
        if when is None:
            break
        res.handle_timer(now=when)
        res.datagrams_to_send(now=when)
        when = res.get_timer()


def fuzz_initiator(data: bytes, patch_spi: bool, now: float) -> None:
    """An initiator waiting for the IKE_SA_INIT response never raises for a datagram."""
    sa = IkeSa(_initiator_config(), is_initiator=True, local=INITIATOR, remote=RESPONDER)
    sa.initiate(now=0.0)
    sa.datagrams_to_send(now=0.0)
    if patch_spi and len(data) >= 8:
        data = sa.spi_i + data[8:]
    sa.receive_datagram(data, RESPONDER, now=now)
    sa.datagrams_to_send(now=now)
    while sa.next_event() is not None:
        pass
    if (when := sa.get_timer()) is not None:
        sa.handle_timer(now=when)


def fuzz_handshake(victim: int, action: str, replacement: bytes | None) -> None:
    """A whole handshake with one datagram mutated, dropped or duplicated: no exception,
    no timer that fires again and again, and after ``HORIZON`` seconds every IKE SA is
    established or closed."""
    ini, res = IkeEndpoint(), IkeEndpoint(_responder_config())
    ini.initiate(_initiator_config(), RESPONDER, local=INITIATOR, now=0.0)

    def deliver(index: int, data: bytes) -> list[bytes]:
        if index != victim:
            return [data]
        if action == "drop":
            return []
        if action == "duplicate":
            return [data, data]
        if action == "append":
            return [data, replacement or b""]
        return [replacement or b""]

    now = 0.0
    _pump(ini, res, now, deliver)
    for _ in range(400):
        timers = [t for t in (ini.get_timer(), res.get_timer()) if t is not None]
        if not timers or min(timers) > HORIZON:
            break
        now = max(now, min(timers))
        ini.handle_timer(now=now)
        res.handle_timer(now=now)
        _pump(ini, res, now, lambda n, d: [d])
    else:
        raise AssertionError(f"400 timer rounds did not get past {now:g} s: a timer spins")
    for endpoint in (ini, res):
        while endpoint.next_event() is not None:
            pass
        for sa in endpoint:
            if not (sa.is_established or sa.is_closed):
                raise AssertionError(f"an IKE SA hangs in state {sa.state!r} with no timer left")


_NOW = st.floats(0.0, 1e6, allow_nan=False)
_STRATEGIES: dict[str, tuple[Callable, dict]] = {
    "codec": (fuzz_codec, {"data": mutated()}),
    "endpoint": (
        fuzz_endpoint,
        {
            "data": mutated(),
            "nat_t": st.booleans(),
            "marker": st.booleans(),
            "cookies": st.booleans(),
            "now": _NOW,
        },
    ),
    "initiator": (fuzz_initiator, {"data": mutated(), "patch_spi": st.booleans(), "now": _NOW}),
    "handshake": (
        fuzz_handshake,
        {
            "victim": st.integers(0, 9),
            "action": st.sampled_from(("mutate", "mutate", "append", "drop", "duplicate")),
            "replacement": st.none() | mutated(),
        },
    ),
}


# ------------------------------------------------------------------ the runner


@dataclass
class FuzzReport:
    """Examples run per target and the failures found (each with its shrunk input)."""

    examples: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def format(self) -> str:
        counts = ", ".join(f"{name} {n}" for name, n in self.examples.items())
        head = (
            f"fuzz: {sum(self.examples.values())} examples in {self.seconds:.0f} s ({counts}); "
            f"{len(self.failures)} uncaught exceptions"
        )
        return "\n\n".join([head, *self.failures])


def _one_batch(name: str, examples: int, report: FuzzReport) -> None:
    target, strategies = _STRATEGIES[name]
    count = [0]

    def body(**kwargs) -> None:
        count[0] += 1
        target(**kwargs)

    test = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )(given(**strategies)(body))
    try:
        test()
    except Exception as exc:  # a finding: keep it and go on with the other targets
        notes = "\n".join(getattr(exc, "__notes__", []))
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        report.failures.append(f"[{name}] {type(exc).__name__}: {exc}\n{notes}\n{trace}")
    report.examples[name] = report.examples.get(name, 0) + count[0]


def run(
    *,
    minutes: float | None = None,
    examples: int = 100,
    targets: tuple[str, ...] = TARGETS,
    progress: Callable[[str], None] | None = None,
) -> FuzzReport:
    """Fuzz ``targets``: ``examples`` each once, or batches of them until ``minutes``
    have passed. Never raises for a finding: see ``FuzzReport.failures``."""
    unknown = [t for t in targets if t not in _STRATEGIES]
    if unknown:
        raise ValueError(f"unknown fuzz target {unknown[0]!r}; expected one of {TARGETS}")
    report = FuzzReport()
    start = time.monotonic()
    deadline = None if minutes is None else start + minutes * 60.0
    while True:
        for name in targets:
            _one_batch(name, examples, report)
        report.seconds = time.monotonic() - start
        if progress is not None:
            progress(report.format().split("\n", 1)[0])
        if deadline is None or time.monotonic() >= deadline:
            return report


def main(argv: list[str] | None = None) -> int:
    """``python -m pqike.fuzz [--minutes N] [--examples N] [--target NAME ...]``."""
    parser = argparse.ArgumentParser(
        prog="python -m pqike.fuzz", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=None, help="run batches this long")
    parser.add_argument("--examples", type=int, default=200, help="examples per target and batch")
    parser.add_argument("--target", action="append", choices=TARGETS, help="repeatable")
    args = parser.parse_args(argv)
    report = run(
        minutes=args.minutes,
        examples=args.examples,
        targets=tuple(args.target or TARGETS),
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(report.format())
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
