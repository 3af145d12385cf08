"""A real-time UDP impairment relay (asyncio) to put between two real IKE peers.

There is no ``tc netem`` in this kernel, so real peers (pqike over UDP, strongSwan) get
their network profile from this relay instead: the initiator talks to the relay's
``listen`` address, the relay talks to ``target`` from a socket of its own, and each
direction goes through a ``pqike.lab.link.Channel`` on the event loop's clock — the
same delay, jitter, loss, MTU and rate model as the simulated link, with the same
seeded draws.

One relay carries one client-server path (one port pair). IKE moves from port 500 to
4500 when it sees a NAT (and the relay is one, to the peers) or with MOBIKE: run one
relay per port, or use ports other than 500 so that no peer floats.

    async with ImpairmentRelay(("127.0.0.1", 0), ("127.0.0.1", 5000),
                               forward=LinkProfile(delay=0.05, loss=0.01), seed=1) as relay:
        ...  # the client sends to relay.address

From a shell (for instance inside a network namespace, next to a strongSwan peer)::

    python -m pqike.lab.relay --listen 192.0.2.1:4500 --target 192.0.2.2:4500 \\
        --delay-ms 50 --loss 1 --mtu 1280 --seed 7
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from ..wire.datagram import ip_overhead
from .link import DELIVERED, LOST, MTU_DROPPED, Channel, LinkProfile, channel_rng

Address = tuple[str, int]


@dataclass
class DirectionStats:
    """Counters of one direction of the relay."""

    received: int = 0
    forwarded: int = 0
    lost: int = 0
    mtu_dropped: int = 0
    bytes_received: int = 0
    bytes_forwarded: int = 0


@dataclass
class RelayStats:
    """``forward`` is client to target, ``backward`` target to client."""

    forward: DirectionStats = field(default_factory=DirectionStats)
    backward: DirectionStats = field(default_factory=DirectionStats)


@dataclass(frozen=True)
class RelayedDatagram:
    """What the relay did with one datagram: ``fate`` as in ``pqike.lab.link``, loop times."""

    direction: str
    size: int
    fate: str
    received: float
    delivered: float | None


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, on_datagram) -> None:
        self._on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr) -> None:
        self._on_datagram(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable while a peer restarts) must not stop the relay.
        pass


class ImpairmentRelay:
    """Relay UDP between a client and ``target`` with a ``LinkProfile`` each way.

    ``forward`` shapes client-to-target datagrams, ``backward`` (default: the same)
    target-to-client ones. The client is whoever last sent to ``listen``.
    """

    def __init__(
        self,
        listen: Address,
        target: Address,
        *,
        forward: LinkProfile,
        backward: LinkProfile | None = None,
        seed: int = 0,
    ) -> None:
        self.listen = listen
        self.target = target
        self.stats = RelayStats()
        self._profiles = {"forward": forward, "backward": backward or forward}
        self._seed = seed
        self._ipv6 = _is_ipv6(target[0])
        self._client: Address | None = None
        self._front: asyncio.DatagramTransport | None = None
        self._back: asyncio.DatagramTransport | None = None
        self._channels: dict[str, Channel] = {}
        self._pending: set[asyncio.TimerHandle] = set()
        self.log: list[RelayedDatagram] = []
        """Every datagram in the order it reached the relay (per direction, the order its
        sender sent it on loopback), for matching fates to a sender's records."""

    @property
    def address(self) -> Address:
        """The address clients send to (with the real port when ``listen`` had port 0)."""
        if self._front is None:
            raise RuntimeError("the relay is not started")
        host, port = self._front.get_extra_info("sockname")[:2]
        return (host, port)

    async def start(self) -> Address:
        """Open both sockets; return the listening address."""
        loop = asyncio.get_running_loop()
        self._channels = {
            name: Channel(profile, channel_rng(self._seed, name))
            for name, profile in self._profiles.items()
        }
        self._front, _ = await loop.create_datagram_endpoint(
            lambda: _Endpoint(self._from_client), local_addr=self.listen
        )
        self._back, _ = await loop.create_datagram_endpoint(
            lambda: _Endpoint(self._from_target), remote_addr=self.target
        )
        return self.address

    def close(self) -> None:
        """Stop relaying; datagrams still in flight are dropped."""
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()
        for transport in (self._front, self._back):
            if transport is not None:
                transport.close()
        self._front = self._back = None

    async def __aenter__(self) -> ImpairmentRelay:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def _from_client(self, data: bytes, addr: Address) -> None:
        self._client = addr
        self._relay("forward", data, self._to_target)

    def _from_target(self, data: bytes, addr: Address) -> None:
        client = self._client
        if client is None:
            return

        def to_client(d: bytes) -> None:
            if self._front is not None:
                self._front.sendto(d, client)

        self._relay("backward", data, to_client)

    def _to_target(self, data: bytes) -> None:
        if self._back is not None:
            self._back.sendto(data)

    def _relay(self, direction: str, data: bytes, send: Callable[[bytes], None]) -> None:
        stats: DirectionStats = getattr(self.stats, direction)
        stats.received += 1
        stats.bytes_received += len(data)
        channel = self._channels[direction]
        loop = asyncio.get_running_loop()
        ip_bytes = len(data) + ip_overhead(self._ipv6)
        draw = channel.draw(ip_bytes)
        now = loop.time()
        arrival = channel.transmit(0, now, ip_bytes, draw)
        self.log.append(RelayedDatagram(direction, len(data), draw.fate, now, arrival))
        if draw.fate == MTU_DROPPED:
            stats.mtu_dropped += 1
            return
        if draw.fate == LOST or arrival is None:
            stats.lost += 1
            return
        assert draw.fate == DELIVERED
        handle: asyncio.TimerHandle  # set below, before deliver can run

        def deliver() -> None:
            self._pending.discard(handle)
            send(data)
            stats.forwarded += 1
            stats.bytes_forwarded += len(data)

        handle = loop.call_at(arrival, deliver)
        self._pending.add(handle)


def _address(text: str) -> Address:
    """``host:port`` or ``[v6]:port``."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return (host.strip("[]"), int(port))


async def _serve(relay: ImpairmentRelay, duration: float | None) -> None:
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with relay:
        print(
            f"relaying {relay.address[0]}:{relay.address[1]} -> {relay.target[0]}:"
            f"{relay.target[1]}",
            flush=True,
        )
        try:
            await asyncio.wait_for(stop.wait(), duration)
        except TimeoutError:
            pass
    for name in ("forward", "backward"):
        d = getattr(relay.stats, name)
        print(
            f"{name}: {d.received} received, {d.forwarded} forwarded, {d.lost} lost, "
            f"{d.mtu_dropped} over the MTU",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    """``python -m pqike.lab.relay --listen H:P --target H:P [impairments]``: relay until
    SIGINT/SIGTERM (or ``--duration``), e.g. inside a network namespace between two real
    IKE peers; prints the counters at the end."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m pqike.lab.relay", description=main.__doc__)
    ap.add_argument("--listen", type=_address, required=True, help="HOST:PORT clients send to")
    ap.add_argument("--target", type=_address, required=True, help="HOST:PORT of the server")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay, each way")
    ap.add_argument("--jitter-ms", type=float, default=0.0)
    ap.add_argument("--loss", type=float, default=0.0, help="percent, each way")
    ap.add_argument("--mtu", type=int, default=None, help="drop larger IP datagrams")
    ap.add_argument("--rate-kbps", type=float, default=None, help="link rate, each way")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--duration", type=float, default=None, help="stop after this many s")
    args = ap.parse_args(argv)
    try:
        profile = LinkProfile(
            delay=args.delay_ms / 1000,
            jitter=args.jitter_ms / 1000,
            loss=args.loss / 100,
            mtu=args.mtu,
            bandwidth=args.rate_kbps * 1000 if args.rate_kbps else None,
        )
    except ValueError as exc:
        ap.error(str(exc))
    relay = ImpairmentRelay(args.listen, args.target, forward=profile, seed=args.seed)
    asyncio.run(_serve(relay, args.duration))
    return 0


def _is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).version == 6
    except ValueError:  # a host name: count IPv4 headers
        return False


__all__ = ["DirectionStats", "ImpairmentRelay", "RelayStats", "RelayedDatagram"]


if __name__ == "__main__":
    raise SystemExit(main())
