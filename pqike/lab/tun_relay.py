"""A transparent impairment relay between two network namespaces, over TUN devices.

``pqike.lab.relay`` is a UDP proxy: to the peers it is a NAT (they see the relay's
address and port), which changes what a real IKE daemon does (NAT detection, port
floating, MOBIKE). Between the two network namespaces of the strongSwan lab this
module puts the same link model on the IP path instead, where the peers cannot see it::

    netns A: route to B via TUN --> relay reads it --> Channel(forward)  --> into B's TUN
    netns B: route to A via TUN --> relay reads it --> Channel(backward) --> into A's TUN

Each namespace routes the other side's addresses (one /32 and one /128) through a TUN
device. The relay reads each IP packet a peer sends there, lets ``pqike.lab.link.Channel``
decide its fate with the profile's seeded draws (delay, jitter, loss, MTU drop, rate),
and writes it unchanged into the other namespace's TUN device, where the kernel
receives it as it would from a wire. Addresses and ports are untouched, so there is no
NAT to detect and an IKE peer moving from port 500 to 4500 simply keeps going through.

The relay logs every packet it reads: direction, when it was read, its fate, when it
was (or will be) delivered, and its bytes. That is a capture at both peers' IP stacks:
a packet of A is logged when A sends it, a packet of B arrives at A at ``delivered``.

It runs as its own process, so that its timing does not share an interpreter lock with
the peers under test. :class:`TunRelay` starts and drives it (root needed)::

    relay = TunRelay(["lab-left", "lab-right"])
    relay.start()
    relay.route("lab-left", "192.0.2.2", source="192.0.2.1")
    relay.route("lab-right", "192.0.2.1", source="192.0.2.2")
    relay.reset(LinkProfile(delay=0.02), seed=7)
    ...                                   # the peers talk
    packets = relay.records()
    relay.close()                         # the TUN devices (and their routes) disappear

``python -m pqike.lab.tun_relay --netns A --netns B`` is the process itself; it speaks
JSON lines on stdin/stdout.
"""

from __future__ import annotations

import asyncio
import fcntl
import ipaddress
import json
import os
import select
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..wire.datagram import UdpPacket, parse_ip_udp
from .link import DELIVERED, LOST, MTU_DROPPED, Channel, LinkProfile, channel_rng
from .netns import in_namespace

DEFAULT_DEVICE = "pqxt0"
"""The TUN device's name in each namespace."""

TUN_MTU = 65535
"""The TUN devices take any datagram, so the profile's MTU alone decides what is too big
(as on the simulated link: larger IP datagrams are dropped, not fragmented)."""

_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
_DIRECTIONS = ("forward", "backward")


class TunRelayError(RuntimeError):
    """The relay process failed or did not answer."""


@dataclass(frozen=True)
class TunRecord:
    """One IP packet the relay read, with what the link did to it.

    ``direction`` is ``forward`` for packets of the first namespace, ``backward`` for the
    second's. Times are ``time.monotonic()`` seconds (the same clock in every process).
    """

    direction: str
    time: float
    fate: str
    delivered: float | None
    packet: bytes

    @property
    def ipv6(self) -> bool:
        """True for an IPv6 packet."""
        return bool(self.packet) and self.packet[0] >> 4 == 6

    def _udp(self) -> UdpPacket | None:
        return parse_ip_udp(self.packet)

    @property
    def is_udp(self) -> bool:
        """True for an unfragmented UDP packet (everything IKE sends here)."""
        return self._udp() is not None

    @property
    def addresses(self) -> tuple[str, int, str, int]:
        """(source, source port, destination, destination port) of a UDP packet."""
        udp = self._udp()
        if udp is None:
            raise ValueError("not a UDP packet")
        return udp.src, udp.sport, udp.dst, udp.dport

    @property
    def udp_payload(self) -> bytes:
        """The UDP payload (a non-ESP marker included, if any)."""
        udp = self._udp()
        if udp is None:
            raise ValueError("not a UDP packet")
        return udp.payload


# --- the client ------------------------------------------------------------------------


def _profile_dict(profile: LinkProfile) -> dict[str, Any]:
    return asdict(profile)


def _run(argv: Sequence[str]) -> None:
    proc = subprocess.run(list(argv), capture_output=True, text=True)
    if proc.returncode != 0:
        raise TunRelayError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")


class TunRelay:
    """Start, drive and stop the relay process between two named network namespaces."""

    def __init__(
        self,
        namespaces: Sequence[str],
        *,
        device: str = DEFAULT_DEVICE,
        python: str = sys.executable,
    ) -> None:
        if len(namespaces) != 2:
            raise ValueError("the relay joins exactly two namespaces")
        self.namespaces = tuple(namespaces)
        self.device = device
        self._python = python
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""

    def start(self, timeout: float = 10.0) -> None:
        """Start the process, wait for its TUN devices and bring them up (no address).

        ``addrgenmode none`` keeps the kernel from giving the devices an IPv6 link-local
        address: a daemon would see a new address and might announce it (MOBIKE).
        """
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
        argv = [self._python, "-m", "pqike.lab.tun_relay", "--device", self.device]
        for ns in self.namespaces:
            argv += ["--netns", ns]
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        self._receive(timeout)
        for ns in self.namespaces:
            _run(["ip", "-n", ns, "link", "set", "dev", self.device, "addrgenmode", "none"])
            _run(["ip", "-n", ns, "link", "set", "dev", self.device, "mtu", str(TUN_MTU), "up"])

    def route(self, namespace: str, destination: str, *, source: str) -> None:
        """Route ``destination`` (one address) from ``namespace`` through the relay."""
        if namespace not in self.namespaces:
            raise ValueError(f"{namespace!r} is not one of the relay's namespaces")
        addr = ipaddress.ip_address(destination)
        family = "-6" if addr.version == 6 else "-4"
        prefix = 128 if addr.version == 6 else 32
        _run(
            [
                "ip",
                family,
                "-n",
                namespace,
                "route",
                "replace",
                f"{addr}/{prefix}",
                "dev",
                self.device,
                "src",
                source,
            ]
        )

    def reset(
        self, forward: LinkProfile, backward: LinkProfile | None = None, *, seed: int = 0
    ) -> None:
        """New impairments with fresh seeded draws (as ``ImpairmentRelay``); clear the log."""
        self._request(
            {
                "op": "reset",
                "seed": seed,
                "forward": _profile_dict(forward),
                "backward": _profile_dict(backward or forward),
            }
        )

    def records(self) -> list[TunRecord]:
        """Every packet read since the last ``reset``, in the order they were read."""
        reply = self._request({"op": "log"})
        return [
            TunRecord(d, t, fate, delivered, bytes.fromhex(data))
            for d, t, fate, delivered, data in reply["records"]
        ]

    def close(self, timeout: float = 5.0) -> None:
        """Stop the process; its TUN devices and their routes go with it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                assert proc.stdin is not None
                proc.stdin.write(b'{"op": "quit"}\n')
                proc.stdin.flush()
            except OSError:
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> TunRelay:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def _request(self, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise TunRelayError("the relay process is not running" + self._stderr())
        assert proc.stdin is not None
        try:
            proc.stdin.write(json.dumps(message).encode() + b"\n")
            proc.stdin.flush()
        except OSError as exc:
            raise TunRelayError(f"the relay process went away: {exc}{self._stderr()}") from None
        return self._receive(timeout)

    def _receive(self, timeout: float) -> dict[str, Any]:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TunRelayError(f"the relay process did not answer in {timeout:g} s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    proc.wait(timeout=5)
                    raise TunRelayError(
                        f"the relay process exited with {proc.returncode}{self._stderr()}"
                    )
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise TunRelayError(f"the relay refused: {reply.get('error', reply)}")
        return reply

    def _stderr(self) -> str:
        proc = self._proc
        if proc is None or proc.stderr is None or proc.poll() is None:
            return ""
        text = proc.stderr.read().decode(errors="replace").strip()
        return f": {text[-1000:]}" if text else ""


# --- the process -----------------------------------------------------------------------


def open_tun(name: str) -> int:
    """Create TUN device ``name`` in the calling thread's namespace; return its fd.

    The device lives as long as the file descriptor is open.
    """
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


class _Server:
    """The relay loop: two TUN devices, one channel per direction, a packet log."""

    def __init__(self, fds: Sequence[int]) -> None:
        self.fds = list(fds)
        self.channels: dict[str, Channel] = {}
        self.log: list[list[Any]] = []
        self.loop = asyncio.get_running_loop()
        self.stopped = asyncio.Event()
        self.reset(0, LinkProfile(), LinkProfile())
        for i, fd in enumerate(self.fds):
            self.loop.add_reader(fd, self._readable, i)

    def reset(self, seed: int, forward: LinkProfile, backward: LinkProfile) -> None:
        self.channels = {
            "forward": Channel(forward, channel_rng(seed, "forward")),
            "backward": Channel(backward, channel_rng(seed, "backward")),
        }
        self.log = []

    def _readable(self, index: int) -> None:
        fd = self.fds[index]
        out = self.fds[1 - index]
        direction = _DIRECTIONS[index]
        while True:
            try:
                packet = os.read(fd, TUN_MTU + 4)
            except BlockingIOError:
                return
            if not packet:
                return
            self._relay(direction, packet, out)

    def _relay(self, direction: str, packet: bytes, out: int) -> None:
        channel = self.channels[direction]
        now = self.loop.time()
        draw = channel.draw(len(packet))
        arrival = channel.transmit(0, now, len(packet), draw)
        entry: list[Any] = [direction, now, draw.fate, None, packet.hex()]
        self.log.append(entry)
        if draw.fate in (LOST, MTU_DROPPED) or arrival is None:
            return
        assert draw.fate == DELIVERED
        entry[3] = arrival

        def deliver() -> None:
            try:
                os.write(out, packet)
            except OSError:
                pass  # the other device is gone (shutting down)

        self.loop.call_at(arrival, deliver)

    def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        op = message.get("op")
        if op == "reset":
            self.reset(
                int(message.get("seed", 0)),
                LinkProfile(**message["forward"]),
                LinkProfile(**message["backward"]),
            )
            return {"ok": True}
        if op == "log":
            return {"ok": True, "records": self.log}
        if op == "quit":
            self.stopped.set()
            return {"ok": True}
        return {"ok": False, "error": f"unknown op {op!r}"}


async def _serve(device: str, namespaces: Sequence[str]) -> None:
    fds = []
    for ns in namespaces:
        with in_namespace(ns):
            fds.append(open_tun(device))
    server = _Server(fds)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout.buffer

    def reply(message: dict[str, Any]) -> None:
        # Timing matters more than throughput: every answer goes out at once.
        out.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        out.flush()

    reply({"ok": True, "ready": True, "device": device, "namespaces": list(namespaces)})
    while not server.stopped.is_set():
        line = await reader.readline()
        if not line:
            break  # the parent went away
        try:
            reply(server.handle(json.loads(line)))
        except (ValueError, TypeError, KeyError) as exc:
            reply({"ok": False, "error": str(exc)})
    for fd in fds:
        loop.remove_reader(fd)
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    """``python -m pqike.lab.tun_relay --netns A --netns B [--device NAME]``."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m pqike.lab.tun_relay", description=__doc__)
    ap.add_argument("--netns", action="append", required=True, help="a namespace (twice)")
    ap.add_argument("--device", default=DEFAULT_DEVICE)
    args = ap.parse_args(argv)
    if len(args.netns) != 2:
        ap.error("give --netns exactly twice")
    asyncio.run(_serve(args.device, args.netns))
    return 0


__all__ = ["DEFAULT_DEVICE", "TUN_MTU", "TunRecord", "TunRelay", "TunRelayError", "open_tun"]


if __name__ == "__main__":
    raise SystemExit(main())
