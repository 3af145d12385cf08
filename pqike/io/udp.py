"""asyncio UDP for an ``IkeEndpoint``: sockets, the clock and one timer.

``UdpEndpoint.open`` binds one socket per (address, port) for the IKE port and the NAT-T
port (500 and 4500 by default; any pair, IPv4 and IPv6). Every datagram a socket
receives goes to ``IkeEndpoint.receive_datagram`` with that socket's address as
``local``; every datagram the endpoint queues leaves from the socket bound to the
sending SA's ``local`` port, so an SA that moved to the NAT-T port (RFC 7296 2.23)
sends from it. Time is the loop's clock (``loop.time()``) and one ``call_at`` timer,
re-armed after every input, runs ``handle_timer``.

    endpoint = IkeEndpoint(responder_config)
    udp = await UdpEndpoint.open(endpoint, ["192.0.2.2"], port=500, nat_t_port=4500)
    ...
    await udp.close()

``on_event(sa, event)`` sees every event of every SA; ``on_datagram(direction, data,
src, dst)`` sees every datagram sent ("sent") or received ("received"), e.g. for a pcap.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from ..ike.config import IkeConfiguration
from ..ike.endpoint import Address, IkeEndpoint
from ..ike.events import (
    ChildSaEstablished,
    Event,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
)
from ..ike.sa import IkeSa

log = logging.getLogger("pqike.io")

EventHook = Callable[[IkeSa, Event], None]
DatagramHook = Callable[[str, bytes, Address, Address], None]
"""``on_datagram(direction, data, src, dst)`` with direction ``"sent"`` or ``"received"``."""


@dataclass
class SaWatch:
    """The events of one IKE SA, collected until it settles (up, failed or deleted)."""

    sa: IkeSa
    events: list[Event] = field(default_factory=list)
    settled: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def established(self) -> IkeSaEstablished | None:
        return next((e for e in self.events if isinstance(e, IkeSaEstablished)), None)

    @property
    def child(self) -> ChildSaEstablished | None:
        return next((e for e in self.events if isinstance(e, ChildSaEstablished)), None)

    @property
    def failure(self) -> IkeSaFailed | None:
        return next((e for e in self.events if isinstance(e, IkeSaFailed)), None)

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until the SA settles; ``False`` if ``timeout`` seconds passed first."""
        try:
            await asyncio.wait_for(self.settled.wait(), timeout)
        except TimeoutError:
            return False
        return True


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, owner: UdpEndpoint, local: Address) -> None:
        self.owner = owner
        self.local = local
        self.transport: asyncio.DatagramTransport | None = None
        self.wildcard = _is_wildcard(local[0])
        self.closed = owner._loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A datagram endpoint's protocol is always handed a DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.owner._received(self, data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        # ICMP errors on UDP (port unreachable...) come here; IKE retransmits anyway.
        self.owner._bump("socket_errors")
        log.debug("socket %s: %s", self.local, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


def format_address(addr: Address) -> str:
    """``192.0.2.1:500`` or ``[2001:db8::1]:500``."""
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@functools.lru_cache(maxsize=4096)
def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address parsed once: a busy endpoint meets the same few again and again."""
    return ipaddress.ip_address(text)


def _is_wildcard(host: str) -> bool:
    return _ip(host).is_unspecified


def source_address_for(remote: str) -> str:
    """The local address the kernel would use to reach ``remote`` (no packet is sent)."""
    family = socket.AF_INET6 if ipaddress.ip_address(remote).version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((remote, 9))  # UDP connect only picks a route and source address
        return probe.getsockname()[0]


class UdpEndpoint:
    """Runs one ``IkeEndpoint`` on asyncio UDP sockets; build it with ``open``."""

    def __init__(
        self,
        endpoint: IkeEndpoint,
        *,
        on_event: EventHook | None = None,
        on_datagram: DatagramHook | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.on_event = on_event
        self.on_datagram = on_datagram
        self._loop = asyncio.get_running_loop()
        self._sockets: dict[Address, _Socket] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when: float | None = None
        self._watches: dict[IkeSa, SaWatch] = {}
        self._stats: dict[str, int] = {}
        self._sources: dict[str, str] = {}
        self._closing = False
        self.port = 0
        self.nat_t_port = 0

    @classmethod
    async def open(
        cls,
        endpoint: IkeEndpoint,
        addresses: Iterable[str],
        *,
        port: int = 500,
        nat_t_port: int | None = 4500,
        on_event: EventHook | None = None,
        on_datagram: DatagramHook | None = None,
    ) -> UdpEndpoint:
        """Bind ``port`` and ``nat_t_port`` on each address (0 picks a free port, the same
        one for every address) and start serving. ``nat_t_port=None`` binds no NAT-T socket."""
        self = cls(endpoint, on_event=on_event, on_datagram=on_datagram)
        try:
            for kind, wanted in (("port", port), ("nat_t_port", nat_t_port)):
                if wanted is None:
                    continue
                actual = wanted
                for host in addresses:
                    actual = await self._bind(host, actual)
                setattr(self, kind, actual)
        except BaseException:
            await self.close()
            raise
        return self

    async def _bind(self, host: str, port: int) -> int:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if family == socket.AF_INET6:
                # One socket per family: v4 peers must not show up as ::ffff:a.b.c.d here.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host, port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        local = (host, sock.getsockname()[1])
        proto = _Socket(self, local)
        await self._loop.create_datagram_endpoint(lambda: proto, sock=sock)
        self._sockets[local] = proto
        return local[1]

    # ------------------------------------------------------------------ inspection

    @property
    def local_addresses(self) -> list[Address]:
        """Every bound (address, port)."""
        return list(self._sockets)

    @property
    def stats(self) -> dict[str, int]:
        """``datagrams_sent``, ``datagrams_received``, ``no_socket`` (a datagram whose
        local port has no socket), ``socket_errors``, ``hook_errors``."""
        return dict(self._stats)

    # ------------------------------------------------------------------ commands

    def initiate(
        self, config: IkeConfiguration, remote: Address, *, local: Address | None = None
    ) -> IkeSa:
        """Start an IKE SA to ``remote`` from ``local`` (default: our IKE port on a bound
        address of the remote's family). Its events are collected: see ``watch``."""
        if local is None:
            local = self._default_local(remote)
        sa = self.endpoint.initiate(config, remote, local=local, now=self._loop.time())
        # The endpoint holds the SA's first events until the pump: the watch sees them all.
        self._watches[sa] = SaWatch(sa)
        self._pump()
        return sa

    def watch(self, sa: IkeSa) -> SaWatch:
        """The event collector of ``sa`` (created on first use for responder SAs; events
        before that are not in it)."""
        w = self._watches.get(sa)
        if w is None:
            w = self._watches[sa] = SaWatch(sa)
        return w

    def unwatch(self, sa: IkeSa) -> None:
        self._watches.pop(sa, None)

    def command(self, sa: IkeSa, action: Callable[[IkeSa], None]) -> None:
        """Run one of ``sa``'s commands now and send what it queued, e.g.
        ``udp.command(sa, lambda sa: sa.rekey_child(now=loop.time()))``."""
        self.endpoint.command(sa, action, now=self._loop.time())
        self._pump()

    def delete(self, sa: IkeSa) -> None:
        """Delete an established IKE SA (INFORMATIONAL with a Delete payload)."""
        self.endpoint.delete(sa, now=self._loop.time())
        self._pump()

    async def close(self, *, delete: bool = False, grace: float = 1.0) -> None:
        """Stop serving. With ``delete``, first delete every established IKE SA and wait
        up to ``grace`` seconds for the peers' answers."""
        if delete and not self._closing:
            pending = [sa for sa in self.endpoint if sa.is_established]
            for sa in pending:
                self.endpoint.delete(sa, now=self._loop.time())
            self._pump()
            deadline = self._loop.time() + grace
            while any(not sa.is_closed for sa in pending) and self._loop.time() < deadline:
                await asyncio.sleep(0.01)
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        closing = []
        for proto in self._sockets.values():
            if proto.transport is not None:
                proto.transport.close()
                closing.append(proto.closed)
        if closing:
            await asyncio.wait(closing, timeout=1.0)
        self._sockets.clear()

    # ------------------------------------------------------------------ plumbing

    def _default_local(self, remote: Address) -> Address:
        version = _ip(remote[0]).version
        for host, port in self._sockets:
            if port == self.port and _ip(host).version == version:
                if _is_wildcard(host):
                    host = self._source_for(remote[0])
                return (host, port)
        raise OSError(f"no socket of IPv{version} bound on port {self.port} to reach {remote[0]}")

    def _bump(self, name: str) -> None:
        self._stats[name] = self._stats.get(name, 0) + 1

    def _received(self, proto: _Socket, data: bytes, remote: Address) -> None:
        if self._closing:
            return
        self._bump("datagrams_received")
        local = proto.local
        if proto.wildcard:
            # Without IP_PKTINFO asyncio does not say which address the datagram was sent
            # to; the address we would answer from is the best guess (exact on a host
            # with one address per family), and NAT detection needs a real address.
            local = (self._source_for(remote[0]), local[1])
        if self.on_datagram is not None:
            self._hook(self.on_datagram, "received", data, remote, local)
        self.endpoint.receive_datagram(data, remote, local=local, now=self._loop.time())
        self._pump()

    def _source_for(self, remote_host: str) -> str:
        cache = self._sources
        host = cache.get(remote_host)
        if host is None:
            if len(cache) >= 4096:  # bounded: many peers must not grow it without end
                cache.clear()
            try:
                host = source_address_for(remote_host)
            except OSError:  # no route back: keep the bound (wildcard) address
                host = "::" if ":" in remote_host else "0.0.0.0"
            cache[remote_host] = host
        return host

    def _socket_for(self, local: Address) -> _Socket | None:
        proto = self._sockets.get(local)
        if proto is not None:
            return proto
        version = ipaddress.ip_address(local[0]).version
        for (host, port), candidate in self._sockets.items():
            if (
                port == local[1]
                and _is_wildcard(host)
                and ipaddress.ip_address(host).version == version
            ):
                return candidate
        return None

    def _pump(self) -> None:
        """Send what the endpoint queued, hand out its events, re-arm the timer."""
        now = self._loop.time()
        for data, local, remote in self.endpoint.datagrams_to_send(now=now):
            proto = self._socket_for(local)
            if proto is None or proto.transport is None or proto.transport.is_closing():
                self._bump("no_socket")
                continue
            if self.on_datagram is not None:
                self._hook(self.on_datagram, "sent", data, local, remote)
            proto.transport.sendto(data, remote)
            self._bump("datagrams_sent")
        touched: set[IkeSa] = set()
        while (item := self.endpoint.next_event()) is not None:
            sa, event = item
            w = self._watches.get(sa)
            if w is not None:
                w.events.append(event)
                touched.add(sa)
            if self.on_event is not None:
                self._hook(self.on_event, sa, event)
        for sa in touched:
            # Settled once every event of the call is in: the Child SA event follows
            # IkeSaEstablished within the same input.
            w = self._watches[sa]
            if (
                sa.is_established
                or sa.is_closed
                or any(isinstance(e, IkeSaDeleted | IkeSaFailed) for e in w.events)
            ):
                w.settled.set()
        self._arm()

    def _hook(self, hook: Callable, *args) -> None:
        # A bug in the caller's hook must not stop the endpoint (timers, other SAs).
        try:
            hook(*args)
        except Exception:
            self._bump("hook_errors")
            log.exception("pqike.io hook %r failed", hook)

    def _arm(self) -> None:
        if self._closing:
            return
        when = self.endpoint.get_timer()
        if when == self._timer_when and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_when = when
        self._timer = None if when is None else self._loop.call_at(when, self._on_timer, when)

    def _on_timer(self, when: float) -> None:
        self._timer = None
        self._timer_when = None
        # call_at may fire a hair early; never hand the core a time before its deadline.
        self.endpoint.handle_timer(now=max(self._loop.time(), when))
        self._pump()


__all__ = [
    "DatagramHook",
    "EventHook",
    "SaWatch",
    "UdpEndpoint",
    "format_address",
    "source_address_for",
]
