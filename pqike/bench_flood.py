"""``pqike bench flood``: a bounded denial-of-service probe of a real ``pqike respond``.

Everything stays on loopback: the responder listens on 127.0.0.1, attackers send from
other addresses of 127.0.0.0/8 (Linux routes the whole block to ``lo``, so any of them
can be bound without configuration), and every flood runs at a fixed rate for a fixed
time and stops by itself.

Two modes:

``init``
    Spoofed-source IKE_SA_INIT requests (a fresh SPIi each, from ``sources`` different
    addresses) that never answer what comes back, as an attacker who forges source
    addresses must. The responder should answer with N(COOKIE) and keep no state.
``fragments``
    An attacker that owns its addresses: ``sas`` real IKE_SA_INITs (COOKIE round trip
    included) from as many addresses, then, for each half-open IKE SA, every IKE
    fragment of a Classic McEliece IKE_INTERMEDIATE request but the last, so the
    responder parks partial messages until its reassembly budget evicts them.

Meanwhile legitimate initiators (pqike's own, from 127.0.0.1) start handshakes at
``legit_rate`` per second; the report gives the share that completed and their
latency, the responder's resident set before, at its peak and after, and its own
counters (half-open peak, cookies sent, drops) from the line it prints when stopped.
"""

from __future__ import annotations

import asyncio
import ipaddress
import multiprocessing
import os
import random
import re
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .constants import NON_ESP_MARKER, ExchangeType
from .errors import ConfigurationError

PSK = "pqike-flood-bench-psk"
RESPONDER_ID = "responder.flood.pqike.example"
LEGIT_PROPOSAL = "aes256gcm16-prfsha384-x25519"
FRAGMENT_PROPOSAL = "aes256gcm16-prfsha384-x25519-ke1_mceliece348864"
"""What the fragment-flood attacker offers: a 261,120-byte KEi, ~220 fragments."""


@dataclass
class FloodReport:
    """What one ``bench_flood`` run measured."""

    mode: str
    rate: float
    duration: float
    """Seconds the attack datagrams took to send."""
    sent: int
    """Attack datagrams sent."""
    sas: int
    """Fragment mode: half-open IKE SAs the attacker got (0 in init mode)."""
    rss_before: int
    rss_peak: int
    rss_after: int
    legit_started: int
    legit_completed: int
    latencies: list[float] = field(default_factory=list)
    responder: dict[str, int] = field(default_factory=dict)
    """The responder's counters from its ``stopped:`` line."""
    budget: int = 0
    """The responder's reassembly budget in bytes."""

    @property
    def completed_share(self) -> float:
        return self.legit_completed / self.legit_started if self.legit_started else 0.0

    def format(self) -> str:
        """A short human report."""
        mib = 1 << 20
        lat = sorted(self.latencies)
        lines = [
            f"flood mode {self.mode}: {self.sent} datagrams in {self.duration:g} s "
            f"({self.sent / self.duration:.0f}/s, target {self.rate:g}/s)"
            + (
                f", {self.sas} half-open IKE SAs parking fragments"
                if self.mode == "fragments"
                else ""
            ),
            f"responder RSS: before {self.rss_before / mib:.1f} MiB, peak "
            f"{self.rss_peak / mib:.1f} MiB, after {self.rss_after / mib:.1f} MiB "
            f"(growth {(self.rss_peak - self.rss_before) / mib:+.1f} MiB at peak)",
        ]
        r = self.responder
        lines.append(
            f"responder: half-open peak {r.get('half_open_peak', 0)}, cookies sent "
            f"{r.get('cookies_sent', 0)}, cookies accepted {r.get('cookies_accepted', 0)}, "
            f"IKE SAs created {r.get('responder_sas_created', 0)}, dropped at limits "
            f"{r.get('dropped_half_open_limit', 0) + r.get('dropped_peer_limit', 0)}"
        )
        if self.mode == "fragments":
            lines.append(
                f"reassembly budget {self.budget / mib:.0f} MiB: evicted "
                f"{r.get('reassembly_evicted_total', 0)} (oldest first), "
                f"{r.get('reassembly_evicted_expired', 0)} expired, "
                f"{r.get('reassembly_dropped_half_open_allowance', 0)} over the half-open "
                f"allowance, {r.get('reassembly_dropped_over_budget', 0)} over budget"
            )
        share = 100.0 * self.completed_share
        text = (
            f"legitimate handshakes: {self.legit_completed} of {self.legit_started} "
            f"completed ({share:.1f} %)"
        )
        if lat:
            p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
            text += (
                f", latency median {statistics.median(lat) * 1e3:.1f} ms, "
                f"p95 {p95 * 1e3:.1f} ms, max {lat[-1] * 1e3:.1f} ms"
            )
        lines.append(text)
        return "\n".join(lines)


# ------------------------------------------------------------------ the responder


def _rss(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in bytes."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    return rss, hwm


class _Responder:
    """``pqike respond`` as a child process on 127.0.0.1 (any free ports)."""

    def __init__(self, workdir: Path, proposals: str, extra: dict[str, int | float]) -> None:
        config = workdir / "responder.toml"
        lines = [
            "[peer]",
            'local = "127.0.0.1"',
            "port = 0",
            "nat_t_port = 0",
            f'local_id = "{RESPONDER_ID}"',
            f'psk = "{PSK}"',
            "[ike]",
            f'proposals = "{proposals}"',
        ]
        if extra:
            lines.append("[responder]")
            lines += [f"{k} = {v}" for k, v in extra.items()]
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pqike.cli", "respond", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        first = self.proc.stdout.readline() if self.proc.stdout else ""
        match = re.match(r"listening on 127\.0\.0\.1:(\d+)", first)
        if match is None:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self.proc.kill()
            raise RuntimeError(f"pqike respond did not start: {first}{err}".strip())
        self.port = int(match.group(1))
        self.pid = self.proc.pid

    def stop(self) -> dict[str, int]:
        """SIGTERM, then the counters of its ``stopped:`` line."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        stats: dict[str, int] = {}
        for line in out.splitlines():
            if line.startswith("stopped: "):
                for item in line[len("stopped: ") :].split(", "):
                    name, _, value = item.partition("=")
                    if value.isdigit():
                        stats[name] = int(value)
        return stats


# ------------------------------------------------------------------ attackers


def _source(index: int, block: int) -> str:
    """The ``index``-th attacker address in 127.<block>.0.0/16 (never 127.0.0.1)."""
    return str(ipaddress.IPv4Address(f"127.{block}.0.0") + 1 + index % 65000)


def _sa_init_template() -> bytes:
    from .handshake import make_config
    from .ike.sa import IkeSa

    config = make_config(LEGIT_PROPOSAL, local_id="attacker.flood.pqike.example", psk=b"x")
    sa = IkeSa(config, is_initiator=True)
    sa.initiate(now=0.0)
    ((data, _),) = sa.datagrams_to_send(now=0.0)
    return data


def _init_flood(port: int, rate: float, duration: float, sources: int, out) -> None:
    """Spoofed IKE_SA_INIT requests at ``rate`` per second for ``duration`` seconds."""
    # Neither port is 500: the non-ESP marker goes first (RFC 3948 2.2), SPIi after it.
    template = bytearray(NON_ESP_MARKER + _sa_init_template())
    spi = slice(len(NON_ESP_MARKER), len(NON_ESP_MARKER) + 8)
    socks = []
    for i in range(sources):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((_source(i, 100), 0))
        s.setblocking(False)
        socks.append(s)
    draws = random.Random(0)
    target = ("127.0.0.1", port)
    sent = 0
    start = time.monotonic()
    tick = 0.005
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= duration:
            break
        due = int(min(elapsed + tick, duration) * rate)
        while sent < due:
            template[spi] = draws.randbytes(8)  # a new SPIi: a new IKE SA each time
            try:
                socks[sent % len(socks)].sendto(template, target)
            except BlockingIOError:
                pass  # the local socket buffer is full: the datagram is lost, as on a wire
            sent += 1
        time.sleep(max(0.0, start + (sent / rate) - time.monotonic()))
    elapsed = time.monotonic() - start
    for s in socks:
        s.close()
    out.send((sent, 0, 0, elapsed))


def _attack_registry():
    """The default registry, except that Classic McEliece 348864 'key pairs' are one
    fixed random encapsulation key: the attacker never finishes the exchange, and real
    key generation (80 ms each) would make the flood slow, not stronger."""
    from .crypto.kex import DEFAULT_REGISTRY, KeyExchange, KeyExchangeRegistry

    method = DEFAULT_REGISTRY.method_by_name("mceliece348864")
    info = DEFAULT_REGISTRY.info(method)
    junk = os.urandom(info.initiator_size)

    class _Fake(KeyExchange):
        __slots__ = ()

        def public_data(self) -> bytes:
            return junk

        def respond(self, peer_data: bytes) -> tuple[bytes, bytes]:
            raise NotImplementedError

        def complete(self, peer_data: bytes) -> bytes:
            raise NotImplementedError

    _Fake.method = method

    class _Backend:
        name = "flood-bench"

        def available(self) -> bool:
            return True

        def supports(self, m: int) -> bool:
            return True

        def create(self, m: int):
            return _Fake() if m == method else DEFAULT_REGISTRY.create(m)

    registry = KeyExchangeRegistry()
    registry.register(_Backend(), infos=DEFAULT_REGISTRY.methods())
    return registry


def _fragment_flood(port: int, sas: int, rate: float, duration: float, out) -> None:
    """``sas`` half-open IKE SAs, each sending all IKE_INTERMEDIATE fragments but one."""
    from .handshake import make_config
    from .ike.sa import IkeSa
    from .wire.codec import decode_header

    registry = _attack_registry()
    config = make_config(
        FRAGMENT_PROPOSAL, local_id="attacker.flood.pqike.example", psk=PSK.encode()
    )
    target = ("127.0.0.1", port)
    parked: list[tuple[socket.socket, list[bytes]]] = []
    batch = 50
    for first in range(0, sas, batch):
        group: list[tuple[socket.socket, IkeSa, list[bytes]]] = []
        for i in range(first, min(sas, first + batch)):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((_source(i, 101), 0))
            s.setblocking(False)
            sa = IkeSa(
                config,
                is_initiator=True,
                local=s.getsockname(),
                remote=target,
                registry=registry,
            )
            sa.initiate(now=time.monotonic())
            group.append((s, sa, []))
        deadline = time.monotonic() + 10.0
        waiting = {s.fileno(): (s, sa, frags) for s, sa, frags in group}
        for s, sa, _frags in group:
            for data, _ in sa.datagrams_to_send(now=time.monotonic()):
                s.sendto(data, target)
        while waiting and time.monotonic() < deadline:
            ready, _, _ = select.select(list(waiting), [], [], 0.2)
            for fd in ready:
                s, sa, frags = waiting[fd]
                try:
                    data = s.recv(65535)
                except BlockingIOError:
                    continue
                now = time.monotonic()
                sa.receive_datagram(data, target, now=now)
                for out_data, _ in sa.datagrams_to_send(now=now):
                    hdr = decode_header(out_data.removeprefix(NON_ESP_MARKER))
                    if hdr.exchange_type == ExchangeType.IKE_INTERMEDIATE:
                        frags.append(out_data)
                    else:
                        s.sendto(out_data, target)
                if frags:
                    del waiting[fd]
        for s, _sa, frags in group:
            if frags:
                parked.append((s, frags[:-1]))  # the last fragment never comes
            else:
                s.close()
    # Now park the fragments, interleaved across SAs, at ``rate`` datagrams per second.
    total = sum(len(f) for _, f in parked)
    sent = 0
    start = time.monotonic()
    order = [(s, f) for s, frags in parked for f in frags]
    random.Random(1).shuffle(order)  # every SA's partial message grows at once
    for s, data in order:
        if time.monotonic() - start >= duration:
            break
        try:
            s.sendto(data, target)
        except BlockingIOError:
            pass
        sent += 1
        ahead = start + sent / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    elapsed = time.monotonic() - start
    for s, _ in parked:
        s.close()
    out.send((sent, len(parked), total, elapsed))


# ------------------------------------------------------------------ the run


async def _legit(port: int, rate: float, duration: float, timeout: float):
    """Start handshakes at ``rate`` per second for ``duration`` s; (started, latencies)."""
    from .handshake import make_config
    from .ike.endpoint import IkeEndpoint
    from .io.udp import UdpEndpoint

    config = make_config(
        LEGIT_PROPOSAL,
        local_id="legit.flood.pqike.example",
        remote_id=RESPONDER_ID,
        psk=PSK.encode(),
    )
    udp = await UdpEndpoint.open(IkeEndpoint(), ["127.0.0.1"], port=0, nat_t_port=0)
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    tasks = []

    async def one() -> None:
        t0 = loop.time()
        sa = udp.initiate(config, ("127.0.0.1", port))
        watch = udp.watch(sa)
        if await watch.wait(timeout) and watch.established is not None:
            latencies.append(loop.time() - t0)
        udp.unwatch(sa)

    start = loop.time()
    n = 0
    try:
        while loop.time() - start < duration:
            tasks.append(asyncio.ensure_future(one()))
            n += 1
            await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
        await asyncio.gather(*tasks)
    finally:
        await udp.close()
    return n, latencies


def bench_flood(
    mode: str = "init",
    *,
    rate: float = 5000.0,
    duration: float = 20.0,
    sources: int = 512,
    sas: int = 1000,
    legit_rate: float = 10.0,
    legit_timeout: float = 10.0,
    responder_limits: dict[str, int | float] | None = None,
) -> FloodReport:
    """Flood a fresh ``pqike respond`` on 127.0.0.1 and measure what it holds and whom
    it still serves. ``mode`` is ``"init"`` or ``"fragments"`` (see the module text);
    ``responder_limits`` adds ``[responder]`` keys to its TOML (defaults otherwise)."""
    if mode not in ("init", "fragments"):
        raise ConfigurationError(f"mode must be 'init' or 'fragments', not {mode!r}", field="mode")
    if not (0 < rate <= 200_000 and 0 < duration <= 600):
        raise ConfigurationError(
            "rate must be 1 to 200000 per second and duration 1 to 600 s", field="rate"
        )
    if not 1 <= sources <= 65000 or not 1 <= sas <= 65000:
        raise ConfigurationError("sources and sas must be 1 to 65000", field="sources")
    extra = dict(responder_limits or {})
    proposals = LEGIT_PROPOSAL
    if mode == "fragments":
        proposals = f"{LEGIT_PROPOSAL}, {FRAGMENT_PROPOSAL}"
        extra.setdefault("max_half_open", sas + 50)
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="pqike-flood-") as tmp:
        responder = _Responder(Path(tmp), proposals, extra)
        try:
            # Warm up (imports, allocator arenas, key exchange backends), then measure.
            asyncio.run(_legit(responder.port, 5.0, 1.0, legit_timeout))
            time.sleep(0.5)
            rss_before, _ = _rss(responder.pid)
            receiver, sender = ctx.Pipe(duplex=False)
            if mode == "init":
                attacker = ctx.Process(
                    target=_init_flood, args=(responder.port, rate, duration, sources, sender)
                )
            else:
                attacker = ctx.Process(
                    target=_fragment_flood, args=(responder.port, sas, rate, duration, sender)
                )
            attacker.start()
            peak = [rss_before]

            async def run_legit():
                sampler_stop = asyncio.Event()

                async def sample() -> None:
                    while not sampler_stop.is_set():
                        peak[0] = max(peak[0], _rss(responder.pid)[0])
                        await asyncio.sleep(0.2)

                sampler = asyncio.ensure_future(sample())
                try:
                    # Fragment mode: the attacker first sets up its half-open SAs.
                    return await _legit(responder.port, legit_rate, duration, legit_timeout)
                finally:
                    while attacker.is_alive():
                        await asyncio.sleep(0.2)
                    sampler_stop.set()
                    await sampler

            started, latencies = asyncio.run(run_legit())
            attacker.join(60)
            result = receiver.recv() if receiver.poll(5) else (0, 0, 0, duration)
            rss_after, _ = _rss(responder.pid)
            peak[0] = max(peak[0], rss_after)
        finally:
            stats = responder.stop()
    sent, got_sas, _, elapsed = result
    return FloodReport(
        mode=mode,
        rate=rate,
        duration=max(elapsed, 1e-3),
        sent=sent,
        sas=got_sas,
        rss_before=rss_before,
        rss_peak=peak[0],
        rss_after=rss_after,
        legit_started=started,
        legit_completed=len(latencies),
        latencies=latencies,
        responder=stats,
        budget=int(extra.get("reassembly_budget", 48 << 20)),
    )


__all__ = ["FloodReport", "bench_flood"]
