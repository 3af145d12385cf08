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
  the same peer (a retransmission, RFC 7296 2.1); the very same request bytes seen
  again from the same peer after that SA settled (a replay) get the cached response
  again; anything else may create a new responder SA.

Before a new responder SA exists the endpoint decides, statelessly, whether to keep any
state at all (RFC 7296 2.6): with too many half-open IKE SAs in total or from one peer
address it answers N(COOKIE) from its ``CookieJar`` (``pqike.ike.cookies``) unless the
request carries a valid cookie, and beyond the hard limits it drops the request. The
defaults follow strongSwan's charon (see ``EndpointLimits``). Every partial fragmented
message of every SA draws on one ``ReassemblyBudget``.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from ..constants import ExchangeType, HeaderFlag, NotifyType
from ..crypto.kex import DEFAULT_REGISTRY
from ..errors import LocalProtocolError, ProtocolError
from ..wire.codec import decode_header, encode_message
from ..wire.datagram import PayloadKind, classify, marker_length
from ..wire.payloads import IkeHeader, NotifyPayload
from .config import IkeConfiguration
from .cookies import CookieJar, scan_sa_init
from .events import Event
from .prepared import PreparedKeys
from .protection import ReassemblyBudget
from .sa import IkeSa
from .states import IkeSaState

Address = tuple[str, int]
ConfigFor = Callable[[Address, Address], IkeConfiguration | None]
"""``config_for(local, remote)``: the configuration for a new responder SA, or ``None``
to ignore the peer."""

_ZERO_SPI = b"\x00" * 8
_PEER_BUCKETS = 32  # per-peer cookie calm-down, by address hash (bounded memory)


@dataclass(frozen=True)
class EndpointLimits:
    """Bounds on what unauthenticated peers can make an endpoint hold.

    The defaults protect: they are strongSwan's charon defaults (``strongswan.conf``)
    where it has one, and every bound is on unless set to ``None``.
    """

    max_half_open: int = 1000
    """Responder IKE SAs past IKE_SA_INIT and not yet established (or failed). A new
    IKE_SA_INIT request beyond this is dropped without an answer, even with a valid
    cookie (strongSwan's ``init_limit_half_open``; its default 0 means unbounded)."""

    max_half_open_per_peer: int | None = 5
    """Half-open IKE SAs one peer IP address may hold; more are dropped, even with a
    valid cookie (strongSwan's ``block_threshold``: 5). ``None`` for no bound."""

    cookie_threshold: int | None = 30
    """From this many half-open IKE SAs on, new IKE_SA_INIT requests must carry a valid
    COOKIE (RFC 7296 2.6) before any state is kept (strongSwan's ``cookie_threshold``:
    30); 0 always asks, ``None`` never does (unless the configuration sets
    ``require_cookie``)."""

    cookie_threshold_per_peer: int | None = 3
    """The same for the half-open IKE SAs of one peer IP address (strongSwan's
    ``cookie_threshold_ip``: 3); keep it below ``max_half_open_per_peer`` so a peer
    behind a busy NAT is asked for cookies before it is blocked."""

    cookie_calmdown: float = 10.0
    """Seconds cookies are still required after the half-open count fell below the
    threshold, so retransmissions of one request are not answered both with and
    without a cookie (strongSwan's ``COOKIE_CALMDOWN_DELAY``: 10 s)."""

    cookie_lifetime: float = 120.0
    """Seconds one cookie secret is used before a new random one is drawn (strongSwan's
    ``COOKIE_SECRET_SWITCH``: 120 s); see ``CookieJar``."""

    cookie_grace: float = 10.0
    """Seconds a cookie of the previous secret is still accepted (strongSwan's
    ``COOKIE_LIFETIME``: 10 s)."""

    closed_linger: float = 30.0
    """Seconds a failed or deleted IKE SA stays routable after it closed, so a
    retransmitted request still gets the cached answer (RFC 7296 2.1); then it is
    forgotten."""

    replay_window: float = 120.0
    """Seconds an IKE_SA_INIT response is kept to answer the same request bytes from the
    same peer again (a replay, or a retransmission after the IKE SA settled) instead of
    creating a new half-open IKE SA (RFC 7296 2.1 says the responder "MUST" answer a
    retransmission with the same response). strongSwan has no such cache."""

    replay_cache_size: int = 2048
    """Most IKE_SA_INIT responses kept for ``replay_window``; the oldest go first."""

    reassembly_total: int = 48 << 20
    """Bytes all partial fragmented messages of all IKE SAs may hold together (RFC 7383
    2.6); beyond it the oldest partial messages are evicted. 48 MiB leaves room for the
    ``max_half_open`` SAs themselves (about 8 KiB each) within 64 MiB of growth.
    strongSwan bounds each reassembled message by ``max_packet`` (10000 bytes) and has
    no global bound."""

    reassembly_per_peer: int | None = 16 << 20
    """Bytes the partial messages of one peer IP address may hold; ``None``: no bound."""

    reassembly_half_open: int | None = 1536 << 10
    """Largest message a responder IKE SA reassembles before it is established; it must
    still fit the biggest KEi negotiated (Classic McEliece 8192128: 1,357,824 bytes, in
    IKE_INTERMEDIATE). ``pqike.io.config`` derives it from the configured proposals.
    Established IKE SAs may use ``IkeConfiguration.max_message_size``."""

    def __post_init__(self) -> None:
        for name in (
            "max_half_open",
            "max_half_open_per_peer",
            "cookie_threshold",
            "cookie_threshold_per_peer",
            "replay_cache_size",
            "reassembly_total",
            "reassembly_per_peer",
            "reassembly_half_open",
        ):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("closed_linger", "cookie_calmdown", "cookie_grace", "replay_window"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if not self.cookie_lifetime > 0 or self.cookie_grace > self.cookie_lifetime:
            raise ValueError("cookie_lifetime must be positive and at least cookie_grace")


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
        cookie_jar: CookieJar | None = None,
    ) -> None:
        if responder is None or isinstance(responder, IkeConfiguration):
            fixed = responder
            self._config_for: ConfigFor = lambda local, remote: fixed
            self._accepts = fixed is not None
        else:
            self._config_for = responder
            self._accepts = True
        self.limits = limits = limits or EndpointLimits()
        self._registry = registry
        if cookie_jar is None:
            # A fixed configuration's cookie_secret is a test key; otherwise random.
            key = responder.cookie_secret if isinstance(responder, IkeConfiguration) else None
            cookie_jar = CookieJar(key, lifetime=limits.cookie_lifetime, grace=limits.cookie_grace)
        self.cookie_jar = cookie_jar
        """Makes and checks the COOKIE values of this endpoint (RFC 7296 2.6)."""
        self.reassembly_budget = ReassemblyBudget(
            limits.reassembly_total,
            per_peer_bytes=limits.reassembly_per_peer,
            half_open_bytes=limits.reassembly_half_open,
        )
        """Memory for the partial fragmented messages of every SA (RFC 7383 2.6)."""
        self.prepared_keys = PreparedKeys(registry)
        """Responder key pairs made after one IKE_SA_INIT answer left, for the next."""
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
        self._unread: list[tuple[IkeSa, float]] = []
        """SAs whose events wait for ``next_event``: reading them runs the work each put
        off until what it queued had left (``IkeSa.defer``: a responder's IKE_SA_INIT
        keys, IKE_INTERMEDIATE IntAuth and key update, IKE_AUTH Child SA; an initiator's
        next key pair)."""
        self._no_cookie_configs: dict[int, tuple[IkeConfiguration, IkeConfiguration]] = {}
        self._stats: dict[str, int] = {}
        self._cookies_until = float("-inf")
        self._peer_cookies_until = [float("-inf")] * _PEER_BUCKETS
        # (SHA-256 of the request datagram, peer) -> (expiry, the datagrams answering it)
        self._replies: OrderedDict[
            tuple[bytes, Address], tuple[float, list[tuple[bytes, Address, Address]]]
        ] = OrderedDict()
        self._spis: dict[IkeSa, list[bytes]] = {}
        """Every SPI of each SA (one more per IKE SA rekey), to forget them all."""

    # ------------------------------------------------------------------ inspection

    @property
    def stats(self) -> dict[str, int]:
        """Counters of what the endpoint itself did or dropped (per-SA ones are in
        ``sa.stats``): ``datagrams_received``, ``dropped_junk``, ``dropped_unknown_spi``,
        ``dropped_esp``, ``nat_keepalives``, ``dropped_no_config``,
        ``dropped_half_open_limit``, ``dropped_peer_limit``, ``responder_sas_created``,
        ``stateless_replies``, ``sas_forgotten``, ``cookies_sent`` (N(COOKIE) answers),
        ``cookies_accepted``, ``cookies_rejected`` (a COOKIE that did not verify),
        ``replays_answered`` (a repeated IKE_SA_INIT answered from the cache),
        ``half_open_peak`` (the most half-open IKE SAs held at once), and the
        reassembly budget's ``reassembly_evicted_total``, ``reassembly_evicted_peer``,
        ``reassembly_evicted_expired``, ``reassembly_dropped_over_budget``,
        ``reassembly_dropped_half_open_allowance``."""
        out = dict(self._stats)
        for name, value in self.reassembly_budget.stats.items():
            if value:
                out["reassembly_" + name] = value
        return out

    @property
    def half_open(self) -> int:
        """Responder IKE SAs that answered IKE_SA_INIT but are not established yet."""
        return len(self._half_open)

    @property
    def replies_cached(self) -> int:
        """IKE_SA_INIT responses kept to answer replays (``EndpointLimits.replay_window``)."""
        return len(self._replies)

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
        if self._unread:
            self._read_unread()
        sa = self._new_sa(config, is_initiator=True, local=local, remote=remote)
        self._route(sa, sa.spi_i)
        sa.initiate(now=now)
        self._settle_or_defer(sa, now)
        return sa

    def delete(self, sa: IkeSa, *, now: float) -> None:
        """Delete an established IKE SA with an INFORMATIONAL exchange (RFC 7296 1.4.1)."""
        self.command(sa, lambda sa: sa.delete(now=now), now=now)

    def command(self, sa: IkeSa, action: Callable[[IkeSa], None], *, now: float) -> None:
        """Run one of ``sa``'s commands and collect what it produced, e.g.
        ``endpoint.command(sa, lambda sa: sa.rekey_child(now=t), now=t)``."""
        if sa not in self._spis:
            raise LocalProtocolError("this IKE SA does not belong to the endpoint")
        if self._unread:
            self._read_unread()
        action(sa)
        self._settle(sa, now)

    # ------------------------------------------------------------------ input

    def receive_datagram(self, data: bytes, remote: Address, *, local: Address, now: float) -> None:
        """Route one UDP payload that ``local`` received from ``remote``.

        Never raises for anything the peer sent: undecodable datagrams and unknown SPIs
        are dropped and counted in ``stats``.
        """
        self._bump("datagrams_received")
        if self._unread:
            self._read_unread()
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
        self._settle_or_defer(sa, now)

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
        replay_key = (hashlib.sha256(data).digest(), remote)
        cached = self._replies.get(replay_key)
        if cached is not None:
            if now < cached[0]:
                # The same request again after its SA settled: the same answer, no new SA.
                self._out.extend(cached[1])
                self._bump("replays_answered")
                return
            del self._replies[replay_key]
        config = self._config_for(local, remote)
        if config is None:
            self._bump("dropped_no_config")
            return
        if self._cookie_required(config, remote[0], now) and not self._cookie_ok(
            data, spi_i, remote, local, now
        ):
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
        # The endpoint checked the cookie itself; the SA must not ask again.
        sa = self._new_sa(
            self._without_cookie(config), is_initiator=False, local=local, remote=remote
        )
        self._bump("responder_sas_created")
        sa.receive_datagram(data, remote, now=now, local=local)
        if sa.state == IkeSaState.RESPONDER_EXPECT_SA_INIT_REQUEST or sa.is_closed:
            # An INVALID_KE_PAYLOAD or NO_PROPOSAL_CHOSEN answer (or a drop): RFC 7296
            # 2.6 keeps no state for these, so neither do we.
            self._bump("stateless_replies")
            self._drain(sa, now)
            return
        self._route(sa, sa.spi_r)
        self._by_init[key] = sa
        self._init_key[sa] = key
        self._half_open.add(sa)
        self._half_open_per_ip[remote[0]] = self._half_open_per_ip.get(remote[0], 0) + 1
        if len(self._half_open) > self._stats.get("half_open_peak", 0):
            self._stats["half_open_peak"] = len(self._half_open)
        sent = len(self._out)
        # The events later (next_event), so that the keys are derived after the response
        # has been handed to the driver.
        self._settle(sa, now, events=False)
        self._unread.append((sa, now))
        self._remember_reply(replay_key, self._out[sent:], now)

    def _cookie_required(self, config: IkeConfiguration, ip: str, now: float) -> bool:
        """Whether a new IKE_SA_INIT request from ``ip`` must carry a COOKIE now."""
        if config.require_cookie:
            return True
        limits = self.limits
        if limits.cookie_threshold is not None and len(self._half_open) >= limits.cookie_threshold:
            self._cookies_until = now + limits.cookie_calmdown
            return True
        if now < self._cookies_until:
            return True
        per_peer = limits.cookie_threshold_per_peer
        if per_peer is None:
            return False
        bucket = hash(ip) % _PEER_BUCKETS
        if self._half_open_per_ip.get(ip, 0) >= per_peer:
            self._peer_cookies_until[bucket] = now + limits.cookie_calmdown
            return True
        return now < self._peer_cookies_until[bucket]

    def _cookie_ok(
        self, data: bytes, spi_i: bytes, remote: Address, local: Address, now: float
    ) -> bool:
        """Check the request's COOKIE; answer N(COOKIE) statelessly when it has no valid
        one (RFC 7296 2.6) and return ``False``."""
        marker = data[: marker_length(local[1], remote[1])]
        scanned = scan_sa_init(data[len(marker) :])
        if scanned is None:
            self._bump("dropped_junk")
            return False
        cookie, nonce = scanned
        jar = self.cookie_jar
        if cookie is not None:
            if jar.verify(cookie, nonce_i=nonce or b"", ip=remote[0], spi_i=spi_i, now=now):
                self._bump("cookies_accepted")
                return True
            self._bump("cookies_rejected")
        fresh = jar.make(nonce_i=nonce or b"", ip=remote[0], spi_i=spi_i, now=now)
        header = IkeHeader(spi_i, _ZERO_SPI, 0, ExchangeType.IKE_SA_INIT, HeaderFlag.RESPONSE, 0)
        raw = encode_message(header, [NotifyPayload(NotifyType.COOKIE, fresh)])
        self._out.append((marker + raw, local, remote))
        self._bump("cookies_sent")
        self._bump("stateless_replies")
        return False

    def _remember_reply(
        self,
        key: tuple[bytes, Address],
        datagrams: list[tuple[bytes, Address, Address]],
        now: float,
    ) -> None:
        limits = self.limits
        replies = self._replies
        if not datagrams or limits.replay_cache_size == 0 or limits.replay_window <= 0:
            return
        while replies:  # the oldest first: drop expired ones and keep the size bounded
            oldest = next(iter(replies.values()))
            if now < oldest[0] and len(replies) < limits.replay_cache_size:
                break
            replies.popitem(last=False)
        replies[key] = (now + limits.replay_window, list(datagrams))

    def _without_cookie(self, config: IkeConfiguration) -> IkeConfiguration:
        if not config.require_cookie:
            return config
        cached = self._no_cookie_configs.get(id(config))
        if cached is None or cached[0] is not config:
            cached = (config, replace(config, require_cookie=False))
            self._no_cookie_configs[id(config)] = cached
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
                reassembly_budget=self.reassembly_budget,
                cookie_jar=self.cookie_jar,
                prepared_keys=None if is_initiator else self.prepared_keys,
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
        if self._unread:
            self._read_unread()
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
        """Run every SA timer that is due, forget closed SAs whose time is up and the
        IKE_SA_INIT answers kept for replays whose window closed."""
        if self._unread:
            self._read_unread()
        replies = self._replies
        while replies and next(iter(replies.values()))[0] <= now:
            replies.popitem(last=False)  # kept in the order they were sent: oldest first
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

    def _drain(self, sa: IkeSa, now: float, *, events: bool = True) -> None:
        local = sa.local
        for data, remote in sa.datagrams_to_send(now=now):
            self._out.append((data, local, remote))
        if events:
            while (event := sa.next_event()) is not None:
                self._events.append((sa, event))

    def _settle_or_defer(self, sa: IkeSa, now: float) -> None:
        """``_settle``, but an SA with work put off until what it queued has left
        (``IkeSa.defer``: an IKE_INTERMEDIATE answer's IntAuth and key update, an
        initiator's next key pair) has its events read in ``next_event``, after the
        driver has taken the datagrams, like a new responder SA's keys."""
        if sa.has_deferred:
            self._settle(sa, now, events=False)
            self._unread.append((sa, now))
        else:
            self._settle(sa, now)

    def _read_unread(self) -> None:
        """Collect the events of the SAs left unread (their deferred work runs now), and
        make the key pairs of the next IKE_SA_INIT answers."""
        unread, self._unread = self._unread, []
        for sa, now in unread:
            self._settle(sa, now)  # an SA whose secret failed after all is closed here
        self.prepared_keys.refill()

    def _settle(self, sa: IkeSa, now: float, *, events: bool = True) -> None:
        """Collect what a call into ``sa`` produced and update the indexes it affects."""
        self._drain(sa, now, events=events)
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
