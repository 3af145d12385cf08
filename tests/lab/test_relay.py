"""The real-time impairment relay on loopback, with plain UDP sockets (no IKE needed).

A client sends through the relay to an echo server; what comes back, and when, shows
the delay, loss, MTU drop and rate the relay applied.
"""

from __future__ import annotations

import asyncio

from pqike.lab.link import LinkProfile
from pqike.lab.relay import ImpairmentRelay

UNLIMITED = LinkProfile()


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.transport.sendto(data, addr)


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[tuple[float, bytes]] = []

    def datagram_received(self, data: bytes, addr) -> None:
        self.received.append((asyncio.get_running_loop().time(), data))


SETTLE_S = 5.0
"""The most a test waits, after its own ``wait``, for the relay to settle."""


def _settled(relay: ImpairmentRelay, sent: int, client: _Client) -> bool:
    f, b = relay.stats.forward, relay.stats.backward
    return (
        f.received == sent
        and f.forwarded + f.lost + f.mtu_dropped == f.received
        and b.received == f.forwarded
        and b.forwarded + b.lost + b.mtu_dropped == b.received
        and len(client.received) == b.forwarded
    )


async def _through_relay(payloads, forward, backward=UNLIMITED, *, seed=0, wait=0.3):
    """Send ``payloads`` through a relay to an echo server; return (send time, replies, relay)."""
    loop = asyncio.get_running_loop()
    echo, _ = await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0))
    server = echo.get_extra_info("sockname")[:2]
    relay = ImpairmentRelay(("127.0.0.1", 0), server, forward=forward, backward=backward, seed=seed)
    await relay.start()
    client, proto = await loop.create_datagram_endpoint(_Client, remote_addr=relay.address)
    try:
        start = loop.time()
        for p in payloads:
            client.sendto(p)
        await asyncio.sleep(wait)
        # A busy machine can take longer than ``wait``: go on until every datagram has
        # been through the relay both ways (or a deadline), so the counts are final.
        deadline = loop.time() + SETTLE_S
        while loop.time() < deadline and not _settled(relay, len(payloads), proto):
            await asyncio.sleep(0.01)
    finally:
        client.close()
        relay.close()
        echo.close()
    return start, proto.received, relay


def test_without_impairment_everything_comes_back():
    payloads = [bytes([i]) * 100 for i in range(5)]
    _, received, relay = asyncio.run(_through_relay(payloads, UNLIMITED, wait=0.2))
    assert sorted(d for _, d in received) == payloads
    assert relay.stats.forward.forwarded == relay.stats.backward.forwarded == 5


def test_delay_applies_each_way():
    start, received, _ = asyncio.run(
        _through_relay([b"ping"], LinkProfile(delay=0.05), LinkProfile(delay=0.05), wait=0.3)
    )
    assert len(received) == 1
    assert received[0][0] - start >= 0.1


def test_loss_drops_datagrams_and_counts_them():
    payloads = [bytes([i]) * 10 for i in range(40)]
    _, received, relay = asyncio.run(
        _through_relay(payloads, LinkProfile(loss=0.5), seed=3, wait=0.2)
    )
    lost = relay.stats.forward.lost
    assert 0 < lost < 40
    assert len(received) == 40 - lost == relay.stats.forward.forwarded


def test_the_same_seed_loses_the_same_datagrams():
    payloads = [bytes([i]) * 10 for i in range(30)]

    def survivors(seed):
        _, received, _ = asyncio.run(
            _through_relay(payloads, LinkProfile(loss=0.3), seed=seed, wait=0.15)
        )
        return sorted(d for _, d in received)

    assert survivors(11) == survivors(11)
    assert survivors(11) != survivors(12)


def test_datagrams_above_the_mtu_are_dropped():
    # 1253 bytes of UDP payload is a 1281-byte IPv4 datagram; 1252 fits in 1280.
    payloads = [b"a" * 1252, b"b" * 1253]
    _, received, relay = asyncio.run(_through_relay(payloads, LinkProfile(mtu=1280), wait=0.2))
    assert [d for _, d in received] == [b"a" * 1252]
    assert relay.stats.forward.mtu_dropped == 1


def test_the_rate_limit_serialises_datagrams():
    # 972 + 28 = 1000 IP bytes at 80 kbit/s: 100 ms each on the link, queued in turn.
    payloads = [bytes([i]) * 972 for i in range(4)]
    start, received, _ = asyncio.run(
        _through_relay(payloads, LinkProfile(bandwidth=80_000.0), wait=0.6)
    )
    times = sorted(t - start for t, _ in received)
    assert len(times) == 4
    assert times[-1] >= 0.4 - 0.01
    assert times[0] >= 0.1 - 0.01


def test_the_relay_runs_as_a_command():
    import socket
    import subprocess
    import sys

    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(5)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pqike.lab.relay",
            "--listen",
            f"127.0.0.1:{free_port}",
            "--target",
            f"127.0.0.1:{server.getsockname()[1]}",
            "--delay-ms",
            "20",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().startswith(f"relaying 127.0.0.1:{free_port}")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(b"through the relay", ("127.0.0.1", free_port))
            data, _ = server.recvfrom(100)
        assert data == b"through the relay"
        proc.terminate()  # SIGTERM: the relay stops and prints its counters
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()
        server.close()
    assert "forward: 1 received, 1 forwarded, 0 lost, 0 over the MTU" in out
