"""``IkeEndpoint``: many IKE SAs behind one set of UDP ports, still sans-IO.

An endpoint owns every IKE SA of one process and routes each datagram to the right
one by the SPIs in its IKE header (RFC 7296 2.6: each side picks its own SPI, so "our"
SPI alone names the SA). It creates a responder ``IkeSa`` for each new IKE_SA_INIT
request, keeps half-open SAs in check, and forgets closed ones after a while. Like
``IkeSa`` it never touches a socket or a clock: ``pqike.io.udp`` drives it.

    endpoint = IkeEndpoint(responder_config)
    endpoint.receive_datagram(data, peer, local=("192.0.2.2", 500), now=t)
    for data, local, remote in endpoint.datagrams_to_send(now=t):
        ...                                    # send from the socket bound to ``local``
    while (item := endpoint.next_event()) is not None:
        sa, event = item

Routing, for a datagram from ``remote`` to ``local``:

- The non-ESP marker is expected exactly when ``IkeSa`` expects it (neither port is
  500); a datagram without it is ESP and dropped, a lone 0xFF is a NAT keepalive
  (RFC 3948 2.2, 2.3).
- A message whose Initiator flag is set comes from the original initiator, so we are
  the responder and our SPI is SPIr; otherwise our SPI is SPIi (RFC 7296 3.1).
- An IKE_SA_INIT request with SPIr = 0 goes to the SA that answered the same SPIi from
  the same peer (a retransmission, RFC 7296 2.1), or creates a new responder SA.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from ..constants import ExchangeType
from ..crypto.kex import DEFAULT_REGISTRY
from ..errors import LocalProtocolError, ProtocolError
from ..wire.codec import decode_header
from ..wire.datagram import PayloadKind, classify, marker_length
from .config import IkeConfiguration
from .events import Event
from .sa import IkeSa
from .states import IkeSaState

Address = tuple[str, int]
ConfigFor = Callable[[Address, Address], IkeConfiguration | None]
"""``config_for(local, remote)``: the configuration for a new responder SA, or ``None``
to ignore the peer."""

_ZERO_SPI = b"\x00" * 8


@dataclass(frozen=True)
class EndpointLimits:
    """Bounds on what unauthenticated peers can make an endpoint hold."""

    max_half_open: int = 1000
    """Responder IKE SAs past IKE_SA_INIT and not yet established (or failed). A new
    IKE_SA_INIT request beyond this is dropped without an answer."""

    max_half_open_per_peer: int | None = None
    """Half-open IKE SAs one peer IP address may hold (strongSwan's ``block_threshold``);
    ``None`` for no per-peer bound."""

    cookie_threshold: int | None = None
    """From this many half-open IKE SAs on, new IKE_SA_INIT requests must carry a COOKIE
    (RFC 7296 2.6) before any state is kept; ``None`` never asks (unless the
    configuration itself sets ``require_cookie``)."""

    closed_linger: float = 30.0
    """Seconds a failed or deleted IKE SA stays routable after it closed, so a
    retransmitted request still gets the cached answer (RFC 7296 2.1); then it is
    forgotten."""

    def __post_init__(self) -> None:
        if self.max_half_open < 0 or (
            self.max_half_open_per_peer is not None and self.max_half_open_per_peer < 0
        ):
            raise ValueError("half-open limits must not be negative")
        if self.closed_linger < 0:
            raise ValueError("closed_linger must not be negative")


class IkeEndpoint:
    """Every IKE SA of one process: routing by SPI, responder SA creation, timers.

    ``responder`` is the configuration new responder SAs get: one ``IkeConfiguration``
    for every peer, a ``config_for(local, remote)`` callable, or ``None`` for an
    endpoint that only initiates (IKE_SA_INIT requests are then dropped).
    """

    def __init__(
        self,
        responder: IkeConfiguration | ConfigFor | None = None,
        *,
        limits: EndpointLimits | None = None,
        registry=DEFAULT_REGISTRY,
    ) -> None:
        if responder is None or isinstance(responder, IkeConfiguration):
            fixed = responder
            self._config_for: ConfigFor = lambda local, remote: fixed
            self._accepts = fixed is not None
        else:
            self._config_for = responder
            self._accepts = True
        self.limits = limits or EndpointLimits()
        self._registry = registry
        self._by_spi: dict[bytes, IkeSa] = {}
        # (SPIi, peer) of the IKE_SA_INIT request each responder SA answered, until it
        # is established: after IKE_AUTH the initiator no longer sends IKE_SA_INIT.
        self._by_init: dict[tuple[bytes, Address], IkeSa] = {}
        self._init_key: dict[IkeSa, tuple[bytes, Address]] = {}
        self._half_open: set[IkeSa] = set()
        self._half_open_per_ip: dict[str, int] = {}
        self._armed: dict[IkeSa, float] = {}
        self._timers: list[tuple[float, int, IkeSa]] = []
        self._closing: dict[IkeSa, float] = {}
        self._expiry: list[tuple[float, int, IkeSa]] = []
        self._seq = itertools.count()
        self._out: list[tuple[bytes, Address, Address]] = []
        self._events: deque[tuple[IkeSa, Event]] = deque()
        self._cookie_configs: dict[int, tuple[IkeConfiguration, IkeConfiguration]] = {}
        self._stats: dict[str, int] = {}
        self._spis: dict[IkeSa, list[bytes]] = {}
        """Every SPI of each SA (one more per IKE SA rekey), to forget them all."""

    # ------------------------------------------------------------------ inspection

    @property
    def stats(self) -> dict[str, int]:
        """Counters of what the endpoint itself did or dropped (per-SA ones are in
        ``sa.stats``): ``datagrams_received``, ``dropped_junk``, ``dropped_unknown_spi``,
        ``dropped_esp``, ``nat_keepalives``, ``dropped_no_config``,
        ``dropped_half_open_limit``, ``dropped_peer_limit``, ``responder_sas_created``,
        ``stateless_replies``, ``sas_forgotten``, ``cookie_mode``."""
        return dict(self._stats)

    @property
    def half_open(self) -> int:
        """Responder IKE SAs that answered IKE_SA_INIT but are not established yet."""
        return len(self._half_open)

    def __len__(self) -> int:
        return len(self._spis)

    def __iter__(self) -> Iterator[IkeSa]:
        """Every IKE SA the endpoint routes to (closed ones until they are forgotten)."""
        return iter(list(self._spis))

    def find(self, spi: bytes) -> IkeSa | None:
        """The IKE SA whose own SPI (SPIi for ours as initiator, SPIr as responder) is ``spi``."""
        return self._by_spi.get(spi)

    # ------------------------------------------------------------------ commands

    def initiate(
        self, config: IkeConfiguration, remote: Address, *, local: Address, now: float
    ) -> IkeSa:
        """Create an initiator IKE SA from ``local`` to ``remote`` and queue its IKE_SA_INIT."""
        sa = self._new_sa(config, is_initiator=True, local=local, remote=remote)
        self._route(sa, sa.spi_i)
        sa.initiate(now=now)
        self._settle(sa, now)
        return sa

    def delete(self, sa: IkeSa, *, now: float) -> None:
        """Delete an established IKE SA with an INFORMATIONAL exchange (RFC 7296 1.4.1)."""
        self.command(sa, lambda sa: sa.delete(now=now), now=now)

    def command(self, sa: IkeSa, action: Callable[[IkeSa], None], *, now: float) -> None:
        """Run one of ``sa``'s commands and collect what it produced, e.g.
        ``endpoint.command(sa, lambda sa: sa.rekey_child(now=t), now=t)``."""
        if sa not in self._spis:
            raise LocalProtocolError("this IKE SA does not belong to the endpoint")
        action(sa)
        self._settle(sa, now)

    # ------------------------------------------------------------------ input

    def receive_datagram(self, data: bytes, remote: Address, *, local: Address, now: float) -> None:
        """Route one UDP payload that ``local`` received from ``remote``.

        Never raises for anything the peer sent: undecodable datagrams and unknown SPIs
        are dropped and counted in ``stats``.
        """
        self._bump("datagrams_received")
        # RFC 3948 2.2/2.3: ports without 500 carry ESP and NAT keepalives too.
        kind = classify(data, local[1], remote[1])
        if kind is PayloadKind.NAT_KEEPALIVE:
            self._bump("nat_keepalives")
            return
        if kind is PayloadKind.ESP:
            self._bump("dropped_esp")
            return
        offset = marker_length(local[1], remote[1])
        try:
            header = decode_header(data[offset:] if offset else data)
        except ProtocolError:
            self._bump("dropped_junk")
            return
        if header.is_initiator and not header.is_response:
            if header.exchange_type == ExchangeType.IKE_SA_INIT and header.spi_r == _ZERO_SPI:
                self._sa_init_request(header.spi_i, data, remote, local, now)
                return
        sa = self._by_spi.get(header.spi_r if header.is_initiator else header.spi_i)
        if sa is None:
            # RFC 7296 2.21.4 allows an INVALID_IKE_SPI notify here; we stay silent, as
            # answering unauthenticated junk only helps reflection attacks.
            self._bump("dropped_unknown_spi")
            return
        sa.receive_datagram(data, remote, now=now, local=local)
        self._settle(sa, now)

    def _sa_init_request(
        self, spi_i: bytes, data: bytes, remote: Address, local: Address, now: float
    ) -> None:
        key = (spi_i, remote)
        sa = self._by_init.get(key)
        if sa is not None:  # a retransmission: the SA answers with its cached response
            sa.receive_datagram(data, remote, now=now, local=local)
            self._settle(sa, now)
            return
        if not self._accepts:
            self._bump("dropped_no_config")
            return
        limits = self.limits
        if len(self._half_open) >= limits.max_half_open:
            self._bump("dropped_half_open_limit")
            return
        if (
            limits.max_half_open_per_peer is not None
            and self._half_open_per_ip.get(remote[0], 0) >= limits.max_half_open_per_peer
        ):
            self._bump("dropped_peer_limit")
            return
        config = self._config_for(local, remote)
        if config is None:
            self._bump("dropped_no_config")
            return
        if limits.cookie_threshold is not None and len(self._half_open) >= limits.cookie_threshold:
            config = self._cookie_config(config)
            self._bump("cookie_mode")
        sa = self._new_sa(config, is_initiator=False, local=local, remote=remote)
        self._bump("responder_sas_created")
        sa.receive_datagram(data, remote, now=now, local=local)
        if sa.state == IkeSaState.RESPONDER_EXPECT_SA_INIT_REQUEST or sa.is_closed:
            # A COOKIE, INVALID_KE_PAYLOAD or NO_PROPOSAL_CHOSEN answer (or a drop):
            # RFC 7296 2.6 keeps no state for these, so neither do we.
            self._bump("stateless_replies")
            self._drain(sa, now)
            return
        self._route(sa, sa.spi_r)
        self._by_init[key] = sa
        self._init_key[sa] = key
        self._half_open.add(sa)
        self._half_open_per_ip[remote[0]] = self._half_open_per_ip.get(remote[0], 0) + 1
        self._settle(sa, now)

    def _cookie_config(self, config: IkeConfiguration) -> IkeConfiguration:
        if config.require_cookie:
            return config
        cached = self._cookie_configs.get(id(config))
        if cached is None or cached[0] is not config:
            cached = (config, replace(config, require_cookie=True))
            self._cookie_configs[id(config)] = cached
        return cached[1]

    def _new_sa(
        self, config: IkeConfiguration, *, is_initiator: bool, local: Address, remote: Address
    ) -> IkeSa:
        for _ in range(8):
            sa = IkeSa(
                config,
                is_initiator=is_initiator,
                local=local,
                remote=remote,
                registry=self._registry,
            )
            # Our SPIs are 64 random bits; a clash with a live SA is next to impossible,
            # but it would misroute, so draw again.
            if self._own_spi(sa) not in self._by_spi:
                return sa
        raise LocalProtocolError("could not draw an unused IKE SPI")

    def _route(self, sa: IkeSa, spi: bytes) -> None:
        self._by_spi[spi] = sa
        self._spis.setdefault(sa, []).append(spi)

    @staticmethod
    def _own_spi(sa: IkeSa) -> bytes:
        return sa.spi_i if sa.is_initiator else sa.spi_r

    # ------------------------------------------------------------------ output and timers

    def datagrams_to_send(self, *, now: float) -> list[tuple[bytes, Address, Address]]:
        """``(data, local, remote)`` for every datagram queued by any SA.

        ``local`` is the SA's local address at the time: send from the socket bound to
        its port (the NAT-T port once the SA floated, RFC 7296 2.23).
        """
        out, self._out = self._out, []
        return out

    def next_event(self) -> tuple[IkeSa, Event] | None:
        """The oldest ``(sa, event)`` not yet read, across every SA, or ``None``."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """The earliest time ``handle_timer`` must be called, or ``None``."""
        timers = self._timers
        while timers and self._armed.get(timers[0][2]) != timers[0][0]:
            heapq.heappop(timers)  # superseded by a later deadline of the same SA
        candidates = []
        if timers:
            candidates.append(timers[0][0])
        if self._expiry:
            candidates.append(self._expiry[0][0])
        return min(candidates) if candidates else None

    def handle_timer(self, *, now: float) -> None:
        """Run every SA timer that is due and forget closed SAs whose time is up."""
        due: list[IkeSa] = []
        timers = self._timers
        while timers and timers[0][0] <= now:
            deadline, _, sa = heapq.heappop(timers)
            if self._armed.get(sa) == deadline:
                del self._armed[sa]
                due.append(sa)
        # Each SA once per call: a deadline that is due again right away waits for the
        # next call instead of spinning here.
        for sa in due:
            sa.handle_timer(now=now)
            self._settle(sa, now)
        while self._expiry and self._expiry[0][0] <= now:
            _, _, sa = heapq.heappop(self._expiry)
            self._forget(sa)

    # ------------------------------------------------------------------ bookkeeping

    def _bump(self, name: str) -> None:
        self._stats[name] = self._stats.get(name, 0) + 1

    def _drain(self, sa: IkeSa, now: float) -> None:
        local = sa.local
        for data, remote in sa.datagrams_to_send(now=now):
            self._out.append((data, local, remote))
        while (event := sa.next_event()) is not None:
            self._events.append((sa, event))

    def _settle(self, sa: IkeSa, now: float) -> None:
        """Collect what a call into ``sa`` produced and update the indexes it affects."""
        self._drain(sa, now)
        spi = self._own_spi(sa)
        if sa.is_established and self._by_spi.get(spi) is not sa:
            # RFC 7296 2.18: an IKE SA rekey gave the SA new SPIs; the old ones stay
            # routable until the SA is forgotten, for the old SA's Delete.
            self._route(sa, spi)
        if sa in self._half_open and (sa.is_established or sa.is_closed):
            self._leave_half_open(sa)
        if sa.is_established:
            key = self._init_key.pop(sa, None)
            if key is not None and self._by_init.get(key) is sa:
                del self._by_init[key]
        deadline = sa.get_timer()
        if deadline != self._armed.get(sa):
            if deadline is None:
                del self._armed[sa]
            else:
                self._armed[sa] = deadline
                heapq.heappush(self._timers, (deadline, next(self._seq), sa))
                if len(self._timers) > 4 * len(self._armed) + 256:
                    self._compact_timers()
        if sa.is_closed and sa not in self._closing:
            when = now + self.limits.closed_linger
            self._closing[sa] = when
            heapq.heappush(self._expiry, (when, next(self._seq), sa))

    def _leave_half_open(self, sa: IkeSa) -> None:
        self._half_open.discard(sa)
        key = self._init_key.get(sa)
        if key is not None:
            ip = key[1][0]
            left = self._half_open_per_ip.get(ip, 0) - 1
            if left > 0:
                self._half_open_per_ip[ip] = left
            else:
                self._half_open_per_ip.pop(ip, None)

    def _compact_timers(self) -> None:
        self._timers = [e for e in self._timers if self._armed.get(e[2]) == e[0]]
        heapq.heapify(self._timers)

    def _forget(self, sa: IkeSa) -> None:
        self._closing.pop(sa, None)
        if sa in self._half_open:
            self._leave_half_open(sa)
        for spi in self._spis.pop(sa, ()):
            if self._by_spi.get(spi) is sa:
                del self._by_spi[spi]
        key = self._init_key.pop(sa, None)
        if key is not None and self._by_init.get(key) is sa:
            del self._by_init[key]
        self._armed.pop(sa, None)
        self._bump("sas_forgotten")


__all__ = ["Address", "ConfigFor", "EndpointLimits", "IkeEndpoint"]
