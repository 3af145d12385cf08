"""``IkeSa``: one IKE SA in either role, over its whole life, sans-IO.

Driven by ``initiate(now=)``, the commands (``create_child_sa``, ``rekey_child``,
``rekey``, ``delete_child``, ``check_liveness``, ``delete``), ``receive_datagram(data,
addr, now=)`` and ``handle_timer(now=)``; read through ``datagrams_to_send(now=)``,
``get_timer()`` and ``next_event()``. It never touches a socket or a clock.

This module is the plumbing every exchange shares: message IDs and the two windows
(RFC 7296 2.3), retransmission (2.1), protection and fragmentation (RFC 7383), NAT
detection (2.23), timers and lifetimes, and the one place where a ``ProtocolError``
from a handler becomes an error Notify and the failure of the SA or of one exchange.
What each message means is in ``pqike.ike.exchanges``; which handler runs in which state
and where it leads is the table in ``pqike.ike.machine``.
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum, auto

from ..constants import (
    IKE_HEADER_LENGTH,
    IKE_PORT,
    ExchangeType,
    HeaderFlag,
    NotifyType,
    PayloadType,
    TransformType,
    name_of,
)
from ..crypto import auth as crypto_auth
from ..crypto.kex import DEFAULT_REGISTRY, KeyExchange
from ..crypto.keys import (
    IkeKeys,
    derive_child_keys,
    initial_ike_keys,
    ppk_intermediate_keys,
    updated_ike_keys,
)
from ..crypto.prf import get_prf
from ..crypto.protect import encr_key_size, get_cipher, integ_key_size
from ..errors import IntegrityCheckFailed, LocalProtocolError, NoProposalChosen, ProtocolError
from ..proposal import NegotiatedSuite
from ..wire.codec import decode_message, decode_payloads, encode_message, encode_message_typed
from ..wire.datagram import add_marker, marker_length, strip_marker
from ..wire.payloads import (
    IkeHeader,
    Message,
    NotifyPayload,
    Payload,
    SkfPayload,
    VendorIdPayload,
)
from .child import ChildSa, ChildState
from .config import Identity, IkeConfiguration
from .context import ChildExchange, HandshakeContext, Inbound, NewChild
from .cookies import CookieJar
from .events import (
    ChildKeysDerived,
    ChildSaDeleted,
    ChildSaEstablished,
    CreateChildSaFailed,
    DatagramDropped,
    Event,
    IkeKeysDerived,
    IkeSaEstablished,
    IkeSaFailed,
    IkeSaRekeyed,
    KeyExchangeCompleted,
    MessageReceived,
    MessageSent,
    Purpose,
)
from .exchanges import create_child_sa, ike_sa_init, informational, intermediate
from .exchanges.informational import InformationalRequest
from .generation import CachedResponse, Crypto, Fate, Generation, Outgoing
from .machine import COMMANDS, TRANSITIONS, Transition
from .prepared import PreparedKeys
from .protection import (
    Reassembler,
    ReassemblyBudget,
    ReassemblyLimits,
    UnprotectedMessage,
    protect,
    unprotect,
)
from .states import TERMINAL, Command, Failure, Ignore, IkeSaState, Outcome

Address = tuple[str, int]
S = IkeSaState

_ZERO_SPI = b"\x00" * 8
_NATD_S = int(NotifyType.NAT_DETECTION_SOURCE_IP)
_NATD_D = int(NotifyType.NAT_DETECTION_DESTINATION_IP)
_JITTER = random.SystemRandom()
"""Lifetime jitter from the OS generator; it keeps no state of its own, so one is shared."""
_INITIATOR = int(HeaderFlag.INITIATOR)
_RESPONSE = int(HeaderFlag.RESPONSE)
_SK, _SKF = int(PayloadType.SK), int(PayloadType.SKF)


@functools.lru_cache(maxsize=64)
def _limits_of(max_fragments: int, max_message_size: int, timeout: float) -> ReassemblyLimits:
    return ReassemblyLimits(max_fragments, max_message_size, timeout)


def _limits(cfg: IkeConfiguration) -> ReassemblyLimits:
    """The reassembly bounds of ``cfg``, one shared object per distinct triple (never
    written after it is made)."""
    return _limits_of(cfg.max_fragments, cfg.max_message_size, cfg.reassembly_timeout)


@functools.lru_cache(maxsize=64)
def _esp_key_sizes(encr: int, key_bits: int | None, integ: int) -> tuple[int, int]:
    """KEYMAT sizes of a Child SA suite (RFC 7296 2.17), worked out once per suite: the
    same few suites come back in every handshake (an unsupported one raises each time)."""
    return encr_key_size(encr, key_bits), integ_key_size(integ)


_NO_FRAGMENTS = Reassembler(ReassemblyLimits()).stats
"""The counters of a reassembler that never saw a fragment (all zero)."""


class Job(Enum):
    """What a queued task starts when our request window is free."""

    NEW_CHILD = auto()
    REKEY_CHILD = auto()
    REKEY_IKE = auto()
    DELETE_CHILD = auto()
    DELETE_IKE = auto()
    LIVENESS = auto()


@dataclass
class _Task:
    """Something we asked for that waits for our request window (RFC 7296 2.3)."""

    kind: Job
    spi: bytes = b""
    not_before: float = 0.0
    reason: str = ""


class IkeSa:
    """One IKE SA and its Child SAs, as initiator or responder, from IKE_SA_INIT to Delete.

    ``local`` and ``remote`` are the (address, port) pairs of the UDP path; they feed
    NAT detection (RFC 7296 2.23) and decide whether the non-ESP marker is used (it is
    when neither port is 500, as strongSwan does: RFC 3948 2.2). An IKE SA rekey keeps
    this object: its SPIs, keys and message IDs move to the new generation.
    """

    # Slots: a responder holds one of these per SA, and past 30 attributes an instance
    # dict stops sharing its keys and costs 1.5 kB. A new attribute goes in this list.
    __slots__ = (
        "_cookie_jar",
        "_counters",
        "_deferred",
        "_events",
        "_first_nonces",
        "_generations",
        "_hs",
        "_ike_expire_at",
        "_ike_rekey_at",
        "_ipv6",
        "_last_heard",
        "_liveness_queued",
        "_nat_local",
        "_nat_remote",
        "_out",
        "_pending_ike",
        "_prepared_keys",
        "_reassembly_budget",
        "_rx_path",
        "_state",
        "_tasks",
        "child_in",
        "child_in_current",
        "child_out",
        "children",
        "config",
        "first_child_spi",
        "gen",
        "info_out",
        "local",
        "peer_fragmentation",
        "peer_id",
        "registry",
        "remote",
        "reserved_spi",
    )

    def __init__(
        self,
        config: IkeConfiguration,
        *,
        is_initiator: bool,
        local: Address = ("192.0.2.1", IKE_PORT),
        remote: Address = ("192.0.2.2", IKE_PORT),
        registry=DEFAULT_REGISTRY,
        reassembly_budget: ReassemblyBudget | None = None,
        cookie_jar: CookieJar | None = None,
        prepared_keys: PreparedKeys | None = None,
    ) -> None:
        self.config = config
        self._prepared_keys = prepared_keys
        """The endpoint's key pairs made ahead for IKE_SA_INIT responses (``None``: made
        when the request comes)."""
        self._reassembly_budget = reassembly_budget
        """The endpoint's budget for partial messages of all its SAs (RFC 7383 2.6)."""
        self._cookie_jar = cookie_jar
        self.local = local
        self.remote = remote
        self.registry = registry
        self._ipv6 = ":" in local[0]  # an IPv6 address has colons, an IPv4 one never
        self._state = S.INITIAL if is_initiator else S.RESPONDER_EXPECT_SA_INIT_REQUEST
        self.reserved_spi = os.urandom(8)
        """Our SPI for the first generation (SPIr goes on the wire with our response)."""
        self.gen = Generation(
            spi_i=self.reserved_spi if is_initiator else b"",
            spi_r=_ZERO_SPI,
            initiator=is_initiator,
            limits=_limits(config),
            budget=reassembly_budget,
            peer=remote[0],
        )
        self._generations: list[Generation] = [self.gen]
        self._hs: HandshakeContext | None = HandshakeContext()
        self.children: dict[bytes, ChildSa] = {}
        """Child SAs by our inbound SPI."""
        self.first_child_spi = os.urandom(4)
        self.child_out: ChildExchange | None = None
        """Our CREATE_CHILD_SA exchange in flight (with its IKE_FOLLOWUP_KE rounds)."""
        self.child_in: dict[bytes, ChildExchange] = {}
        """The peer's exchanges that wait for an IKE_FOLLOWUP_KE, by link data."""
        self.child_in_current: ChildExchange | None = None
        self.info_out: InformationalRequest | None = None
        self._pending_ike: tuple[ChildExchange, Generation, IkeSaRekeyed] | None = None
        # Lists, not deques: an empty deque holds a 64-slot block (760 bytes an SA), and
        # both stay a few entries long.
        self._tasks: list[_Task] = []
        self._events: list[Event] = []
        self._out: list[tuple[bytes, Address]] = []
        self._counters: dict[str, int] = {}
        self.peer_fragmentation = False
        self._nat_local = False
        self._nat_remote = False
        self.peer_id: Identity | None = None
        self._rx_path: tuple[Address, Address] = (remote, local)
        self._last_heard = 0.0
        self._ike_rekey_at: float | None = None
        self._ike_expire_at: float | None = None
        self._liveness_queued = False
        self._first_nonces: tuple[bytes, bytes] = (b"", b"")
        """The IKE_SA_INIT nonces, kept from AUTH until the first Child SA's KEYMAT."""
        self._deferred: list[Callable[[], None]] | None = None
        """Work put off until a message has left, oldest first (``defer``); ``None``
        rather than an empty list, which an established SA would carry for nothing."""

    # ------------------------------------------------------------------ public API

    @property
    def state(self) -> IkeSaState:
        """Where the SA is in its life; written only through ``pqike.ike.machine``."""
        return self._state

    @property
    def is_initiator(self) -> bool:
        """We are the original initiator of the current generation (RFC 7296 2.18: the
        peer that started an IKE SA rekey is that of the new SA)."""
        return self.gen.initiator

    @property
    def spi_i(self) -> bytes:
        return self.gen.spi_i

    @property
    def spi_r(self) -> bytes:
        """SPIr of the current generation; all zero until it went on the wire."""
        return self.gen.spi_r

    @property
    def stats(self) -> dict[str, int]:
        """Counters: dropped datagrams by reason, retransmissions, fragment handling."""
        out = dict(self._counters)
        for gen in self._generations:
            stats = gen.reassembly.stats if gen.reassembly is not None else _NO_FRAGMENTS
            for name, value in stats.items():
                out[name] = out.get(name, 0) + value
        return out

    @property
    def is_established(self) -> bool:
        return self._state == S.ESTABLISHED

    @property
    def is_closed(self) -> bool:
        return self._state in TERMINAL

    @property
    def is_idle(self) -> bool:
        """Established with no exchange in flight or waiting: a driver may stop here."""
        return (
            self._state == S.ESTABLISHED
            and self.child_out is None
            and not self.child_in
            and self._pending_ike is None
            and all(g.request is None for g in self._generations)
            and not self._tasks
        )

    def initiate(self, *, now: float) -> None:
        """Start the IKE SA (initiator only): queue the IKE_SA_INIT request."""
        if self._state != S.INITIAL:
            raise LocalProtocolError("initiate() is only for a new initiator")
        first = self.config.ike_proposals[0]
        if not any(t.type == TransformType.KE for t in first.transforms):
            raise LocalProtocolError("the first IKE proposal has no key exchange method")
        ike_sa_init.start(self, now)
        self._command(Command.INITIATE)

    def create_child_sa(self, *, now: float) -> None:
        """Create another Child SA with CREATE_CHILD_SA (RFC 7296 1.3.1), with the
        configured ESP proposals (their KE and ADDKE transforms included)."""
        self.run_deferred()  # a command is an entry point too (defer)
        self._queue(_Task(Job.NEW_CHILD), now)

    def rekey_child(self, *, now: float, spi: bytes | None = None) -> None:
        """Rekey a Child SA (RFC 7296 1.3.3), named by our inbound SPI; the oldest
        installed one by default. The old Child SA is deleted once the new one is up."""
        self.run_deferred()  # a command is an entry point too (defer)
        if spi is None:
            installed = [c for c in self.children.values() if c.state is ChildState.INSTALLED]
            if not installed:
                raise LocalProtocolError("there is no installed Child SA to rekey")
            spi = min(installed, key=lambda c: c.created).spi_in
        elif spi not in self.children:
            raise LocalProtocolError(f"no Child SA with inbound SPI {spi.hex()}")
        self._queue(_Task(Job.REKEY_CHILD, spi), now)

    def rekey(self, *, now: float) -> None:
        """Rekey the IKE SA with CREATE_CHILD_SA (RFC 7296 1.3.2, 2.18; RFC 9370 2.2.4)."""
        self.run_deferred()  # a command is an entry point too (defer)
        self._queue(_Task(Job.REKEY_IKE), now)

    def delete_child(self, spi: bytes, *, now: float) -> None:
        """Delete a Child SA, named by our inbound SPI (RFC 7296 1.4.1)."""
        self.run_deferred()  # a command is an entry point too (defer)
        if spi not in self.children:
            raise LocalProtocolError(f"no Child SA with inbound SPI {spi.hex()}")
        self._queue(_Task(Job.DELETE_CHILD, spi, reason="deleted on request"), now)

    def check_liveness(self, *, now: float) -> None:
        """Send an empty INFORMATIONAL request (RFC 7296 1.4); no answer after the
        retransmission schedule declares the peer dead and fails the SA."""
        self.run_deferred()  # a command is an entry point too (defer)
        self._queue(_Task(Job.LIVENESS), now)

    def delete(self, *, now: float) -> None:
        """Delete the established IKE SA with an INFORMATIONAL exchange (RFC 7296 1.4.1)."""
        self.run_deferred()  # a command is an entry point too (defer)
        if self._state != S.ESTABLISHED:
            raise LocalProtocolError("delete() needs an established IKE SA")
        if any(t.kind is Job.DELETE_IKE for t in self._tasks):
            return
        self._tasks.insert(0, _Task(Job.DELETE_IKE))
        self._kick(now)

    def datagrams_to_send(self, *, now: float) -> list[tuple[bytes, Address]]:
        """UDP payloads to send now, each with its destination."""
        out, self._out = self._out, []
        return out

    def next_event(self) -> Event | None:
        """The oldest event not yet read, or ``None``."""
        if self._deferred:  # tested here too: this runs once per event
            self.run_deferred()
        return self._events.pop(0) if self._events else None

    def get_timer(self) -> float | None:
        """When ``handle_timer`` must be called next, or ``None``."""
        deadlines: list[float] = []
        for gen in self._generations:
            if gen.reassembly is not None:
                d = gen.reassembly.deadline()
                if d is not None:
                    deadlines.append(d)
        if self._state in TERMINAL:
            return min(deadlines) if deadlines else None
        for gen in self._generations:
            if gen.request is not None:
                deadlines.append(gen.request.deadline)
            if gen.expires is not None:
                deadlines.append(gen.expires)
        if self._hs is not None and self._hs.half_open_deadline is not None:
            deadlines.append(self._hs.half_open_deadline)
        if self._state == S.ESTABLISHED:
            deadlines += [t for t in (self._ike_rekey_at, self._ike_expire_at) if t is not None]
            for child in self.children.values():
                deadlines += [t for t in (child.rekey_at, child.expire_at) if t is not None]
            for ctx in self.child_in.values():
                deadlines.append(ctx.started + self._replaced_linger())
            dpd = self._dpd_due()
            if dpd is not None:
                deadlines.append(dpd)
            if self._tasks and self.gen.request is None and self.child_out is None:
                deadlines.append(min(t.not_before for t in self._tasks))
        return min(deadlines) if deadlines else None

    def handle_timer(self, *, now: float) -> None:
        """Retransmit, give up, expire reassembly, and start rekeys, liveness checks and
        deletes whose time has come."""
        if self._deferred:
            self.run_deferred()
        for gen in self._generations:
            if gen.reassembly is not None:
                gen.reassembly.expire(now)
        if self._state in TERMINAL:
            return
        hs = self._hs
        if hs is not None and hs.half_open_deadline is not None and now >= hs.half_open_deadline:
            hs.half_open_deadline = None
            rounds = hs.rounds
            self._fail(
                None,
                f"no IKE_AUTH within {self.config.half_open_timeout:g} s after "
                f"{rounds.done} of {len(rounds.pending)} additional key exchanges",
                now=now,
                round=rounds.done if rounds.pending else None,
            )
            return
        for gen in list(self._generations):
            if gen.expires is not None and now >= gen.expires:
                self.forget_generation(gen)
                continue
            req = gen.request
            if req is None or now < req.deadline:
                continue
            if req.tries >= self.config.retransmit_tries:
                gen.request = None
                if gen is not self.gen:
                    self.forget_generation(gen)
                    continue
                what = name_of(ExchangeType, req.exchange_type)
                dead = "the peer is dead: " if self._state == S.ESTABLISHED else ""
                self._fail(
                    None, f"{dead}no response to {what} after {req.tries} retransmissions", now=now
                )
                return
            req.tries += 1
            self.bump("retransmissions")
            self._emit_datagrams(req.datagrams)
            self._events.append(replace(req.event, time=now, retransmission=True))
            req.deadline = (
                now + self.config.retransmit_timeout * self.config.retransmit_base**req.tries
            )
        if self._state == S.ESTABLISHED:
            self._lifetimes(now)
        self._kick(now)

    def receive_datagram(
        self, data: bytes, addr: Address, *, now: float, local: Address | None = None
    ) -> None:
        """Process one UDP payload from ``addr`` to ``local`` (default: ``self.local``).

        Never raises for anything the peer sent. Once a protected message from a new
        address pair verifies, replies go there (RFC 7296 2.23: the peer moved to the
        NAT-T port or its NAT mapping changed).
        """
        if self._deferred:
            self.run_deferred()
        for gen in self._generations:
            if gen.reassembly is not None:
                gen.reassembly.expire(now)
        local = local or self.local
        self._rx_path = (addr, local)
        marker = marker_length(local[1], addr[1])
        if marker:
            stripped = strip_marker(data, local[1], addr[1])
            if stripped is None:
                self.drop(now, "ESP packet or missing non-ESP marker", len(data))
                return
            data = stripped
        try:
            message = decode_message(data)
        except ProtocolError as exc:
            self._bad_unparsed(data, exc, now)
            return
        udp_len = len(data) + marker
        try:
            self._dispatch(message, addr, now, udp_len)
        except ProtocolError as exc:  # a safety net: handlers' faults stay inside the SA
            self.bump("faults")
            self._fail(exc.notify_type, f"{type(exc).__name__}: {exc}", now=now)

    # ------------------------------------------------------------------ dispatch

    def _generation_for(self, hdr: IkeHeader) -> Generation | None:
        """The generation a message belongs to, by the SPIs in its header (RFC 7296 2.6)."""
        from_initiator = hdr.is_initiator
        own = hdr.spi_r if from_initiator else hdr.spi_i
        peer = hdr.spi_i if from_initiator else hdr.spi_r
        for gen in self._generations:
            if gen.initiator == from_initiator:
                continue
            if (
                hdr.exchange_type == ExchangeType.IKE_SA_INIT
                and not gen.initiator
                and hdr.spi_r == _ZERO_SPI
                and gen.spi_i in (hdr.spi_i, b"")
            ):
                return gen  # an IKE_SA_INIT request, perhaps retransmitted
            if gen.own_spi != own:
                continue
            known = gen.spi_r if gen.initiator else gen.spi_i
            if known not in (_ZERO_SPI, b"") and peer != known:
                continue
            return gen
        return None

    def _dispatch(self, message: Message, addr: Address, now: float, udp_len: int) -> None:
        hdr = message.header
        gen = self._generation_for(hdr)
        if gen is None:
            own_role = any(g.initiator == hdr.is_initiator for g in self._generations)
            reason = "message sent by our own role" if own_role else "unknown IKE SPI"
            self.drop(now, reason, udp_len)
            return
        if hdr.is_response:
            self._on_response(gen, message, addr, now, udp_len)
        else:
            self._on_request(gen, message, addr, now, udp_len)

    def _on_response(
        self, gen: Generation, message: Message, addr: Address, now: float, udp_len: int
    ) -> None:
        hdr = message.header
        req = gen.request
        if (
            req is None
            or hdr.message_id != req.message_id
            or hdr.exchange_type != req.exchange_type
        ):
            self.drop(now, "response to no outstanding request", udp_len)
            return
        transition = None
        if gen is self.gen:
            transition = TRANSITIONS.get((self._state, hdr.exchange_type, True))
            if transition is None:
                self.drop(now, f"unexpected response in state {self._state.name}", udp_len)
                return
        inbound = self._inbound(gen, message, addr, now, udp_len, response=True)
        if inbound is None:
            return
        gen.request = None
        self._last_heard = now
        if transition is None:
            informational.on_replaced_generation(self, gen, inbound, now)
            self._kick(now)
            return
        self._run(transition, inbound, now, req)

    def _on_request(
        self, gen: Generation, message: Message, addr: Address, now: float, udp_len: int
    ) -> None:
        hdr = message.header
        cached = gen.response
        # RFC 7296 2.1: a retransmitted request gets the cached response again.
        if (
            cached is not None
            and hdr.message_id == cached.message_id
            and hdr.exchange_type == cached.exchange_type
        ):
            if hdr.exchange_type == ExchangeType.IKE_SA_INIT and message.raw != cached.request_raw:
                self.drop(now, "different IKE_SA_INIT with the same SPI", udp_len)
                return
            last = message.payloads[-1] if message.payloads else None
            # RFC 7383 2.6.1: answer a fragmented retransmission on its first fragment only.
            if isinstance(last, SkfPayload) and last.fragment_number != 1:
                self.bump("retransmitted_fragments_ignored")
                return
            self.bump("retransmitted_requests")
            self._emit_datagrams(cached.datagrams)
            self._events.append(replace(cached.event, time=now, retransmission=True))
            return
        if hdr.message_id != gen.peer_mid:
            self.drop(now, f"request message ID {hdr.message_id}, expected {gen.peer_mid}", udp_len)
            return
        transition = None
        if gen is self.gen:
            transition = TRANSITIONS.get((self._state, hdr.exchange_type, False))
            if transition is None:
                self._refuse_out_of_order(message, addr, now, udp_len)
                return
        inbound = self._inbound(gen, message, addr, now, udp_len, response=False)
        if inbound is None:
            return
        self._last_heard = now
        if transition is None:
            informational.on_replaced_generation(self, gen, inbound, now)
            return
        self._run(transition, inbound, now, None)

    def _refuse_out_of_order(
        self, message: Message, addr: Address, now: float, udp_len: int
    ) -> None:
        hdr = message.header
        if self._state in TERMINAL:
            self.drop(now, f"request in state {self._state.name}", udp_len)
            return
        if hdr.exchange_type == ExchangeType.IKE_SA_INIT:
            self.drop(now, "IKE_SA_INIT request on an IKE SA past IKE_SA_INIT", udp_len)
            return
        # An authenticated peer asked for something out of order: a CREATE_CHILD_SA on a
        # half-open SA is refused and creates nothing (strongSwan 6.1.0's CVE fix).
        if self._open(self.gen, message, now, udp_len) is not None:
            self.bump("refused_requests")
            self.send_response(
                hdr.exchange_type,
                [NotifyPayload(NotifyType.INVALID_SYNTAX)],
                message_id=hdr.message_id,
                now=now,
            )

    def _inbound(
        self,
        gen: Generation,
        message: Message,
        addr: Address,
        now: float,
        udp_len: int,
        *,
        response: bool,
    ) -> Inbound | None:
        """Decrypt, reassemble and decode a protected message (IKE_SA_INIT as it is)."""
        if message.header.exchange_type == ExchangeType.IKE_SA_INIT:
            return Inbound(message.header, message.payloads, message, None, addr, udp_len)
        plain = self._open(gen, message, now, udp_len)
        if plain is None:
            return None
        try:
            inner = decode_payloads(plain.first_inner, plain.plaintext)
        except ProtocolError as exc:
            self._bad_inner(gen, plain, exc, now, response=response)
            return None
        self._received_protected(plain, inner, now, addr)
        return Inbound(message.header, tuple(inner), message, plain, addr, udp_len)

    def _run(
        self, transition: Transition, inbound: Inbound, now: float, request: Outgoing | None
    ) -> None:
        """Run one handler of the table and apply its outcome: the one writer of the
        state, and the one place a handler's ``ProtocolError`` is turned into what the
        RFC asks (aioquic's error-to-close path)."""
        try:
            outcome = transition.handler(self, inbound, now)
        except Ignore as why:
            if request is not None and self.gen.request is None:
                self.gen.request = request  # still waiting for the real response
            self.drop(now, str(why), inbound.udp_len)
            return
        except ProtocolError as exc:
            self._handler_failed(transition, inbound, exc, now)
        else:
            self._enter(transition.next[outcome])
        self._kick(now)

    def _handler_failed(
        self, transition: Transition, inbound: Inbound, exc: ProtocolError, now: float
    ) -> None:
        hdr = inbound.header
        kind = exc.notify_type
        if not hdr.is_response and kind is not None:
            answered = self.gen.response is not None and (
                self.gen.response.message_id == hdr.message_id
                and self.gen.response.exchange_type == hdr.exchange_type
            )
            if hdr.exchange_type == ExchangeType.IKE_SA_INIT:
                self.stateless_reply(hdr, [NotifyPayload(kind, exc.notify_data)], now)
            elif not answered:
                self.send_response(
                    hdr.exchange_type,
                    [NotifyPayload(kind, exc.notify_data)],
                    message_id=hdr.message_id,
                    now=now,
                )
        if transition.failure is Failure.IKE_SA:
            self._fail(kind, str(exc), now=now, round=exc.round)
        elif transition.failure is Failure.EXCHANGE:
            ctx = self.child_out if hdr.is_response else self.child_in_current
            self.child_in_current = None
            if ctx is not None:
                self.exchange_failed(ctx, kind, str(exc), exc.round, now)
            else:
                self.bump("bad_requests")
        else:
            self.bump("bad_requests")

    def _command(self, command: Command) -> None:
        self._enter(COMMANDS[(self._state, command)])

    def _enter(self, state: IkeSaState) -> None:
        """Set the state (only ``_run`` and ``_command`` call this, from the table); an SA
        that is over gives its partial messages back to the budget at once."""
        self._state = state
        if state in TERMINAL:
            for gen in self._generations:
                gen.release()

    # ------------------------------------------------------------------ the request window

    def _queue(self, task: _Task, now: float) -> None:
        if self._state != S.ESTABLISHED:
            raise LocalProtocolError(f"the IKE SA is not established (state {self._state.name})")
        self._tasks.append(task)
        self._kick(now)

    def _kick(self, now: float) -> None:
        """Start the next queued task when our window is free (RFC 7296 2.3: one request
        outstanding; a CREATE_CHILD_SA holds it through its IKE_FOLLOWUP_KE rounds)."""
        while (
            self._state == S.ESTABLISHED
            and self.gen.request is None
            and self.child_out is None
            and self._tasks
        ):
            task = next((t for t in self._tasks if t.not_before <= now), None)
            if task is None:
                return
            self._tasks.remove(task)
            self._start(task, now)

    def _start(self, task: _Task, now: float) -> None:
        if task.kind is Job.DELETE_IKE:
            self._command(Command.DELETE)
            informational.send_delete_ike(self, now)
        elif task.kind is Job.REKEY_IKE:
            create_child_sa.start(self, Purpose.REKEY_IKE, now)
        elif task.kind is Job.NEW_CHILD:
            create_child_sa.start(self, Purpose.NEW_CHILD, now)
        elif task.kind is Job.REKEY_CHILD:
            child = self.children.get(task.spi)
            if child is not None and child.state is ChildState.INSTALLED:
                create_child_sa.start(self, Purpose.REKEY_CHILD, now, rekeyed=child)
        elif task.kind is Job.DELETE_CHILD:
            child = self.children.get(task.spi)
            if child is not None and child.state is not ChildState.DELETING:
                informational.send_delete_children(self, [child], task.reason, now)
        elif task.kind is Job.LIVENESS:
            self._liveness_queued = False
            informational.send_liveness_check(self, now)

    def retry_later(self, ctx: ChildExchange, when: float) -> None:
        """Queue a refused CREATE_CHILD_SA again (after TEMPORARY_FAILURE)."""
        kind = {
            Purpose.REKEY_IKE: Job.REKEY_IKE,
            Purpose.REKEY_CHILD: Job.REKEY_CHILD,
            Purpose.NEW_CHILD: Job.NEW_CHILD,
        }[ctx.purpose]
        self._tasks.append(_Task(kind, ctx.rekeyed_spi or b"", not_before=when))

    def delete_child_later(self, spi: bytes, reason: str, now: float) -> None:
        """Delete a Child SA as soon as our window is free (first in the queue)."""
        self._tasks.insert(0, _Task(Job.DELETE_CHILD, spi, reason=reason))

    def _dpd_due(self) -> float | None:
        delay = self.config.dpd_delay
        if not delay or self._liveness_queued or self.info_out is not None:
            return None
        return self._last_heard + delay

    def _lifetimes(self, now: float) -> None:
        """Queue the rekeys, deletes and liveness checks whose time has come."""
        if self._ike_expire_at is not None and now >= self._ike_expire_at:
            self._ike_expire_at = None
            self.delete(now=now)
            return
        if self._ike_rekey_at is not None and now >= self._ike_rekey_at:
            self._ike_rekey_at = None
            self._tasks.append(_Task(Job.REKEY_IKE))
        for child in list(self.children.values()):
            if child.expire_at is not None and now >= child.expire_at:
                child.expire_at = child.rekey_at = None
                self._tasks.append(_Task(Job.DELETE_CHILD, child.spi_in, reason="hard lifetime"))
            elif child.rekey_at is not None and now >= child.rekey_at:
                child.rekey_at = None
                self._tasks.append(_Task(Job.REKEY_CHILD, child.spi_in))
        for link, ctx in list(self.child_in.items()):
            # The initiator retransmits its requests for the whole retransmission
            # schedule: the exchange waits as long for its IKE_FOLLOWUP_KE.
            if now >= ctx.started + self._replaced_linger():
                del self.child_in[link]
                self.exchange_failed(ctx, None, "no IKE_FOLLOWUP_KE came", ctx.rounds.done, now)
        dpd = self._dpd_due()
        if dpd is not None and now >= dpd:
            self._liveness_queued = True
            self._tasks.append(_Task(Job.LIVENESS))

    def _arm_ike_lifetime(self, now: float) -> None:
        rekey, hard, jitter = self.config.ike_lifetimes
        if rekey:
            self._ike_rekey_at = now + rekey - jitter * _JITTER.random()
            self._ike_expire_at = now + hard
        else:
            self._ike_rekey_at = self._ike_expire_at = None

    # ------------------------------------------------- toolkit for the exchange modules

    @property
    def hs(self) -> HandshakeContext:
        """The context of the first handshake (until the SA is established)."""
        assert self._hs is not None, "the handshake is over"
        return self._hs

    def new_kex(self, method: int) -> KeyExchange:
        """A fresh key exchange object: never reused (draft-ietf-ipsecme-ikev2-mlkem 2.2)."""
        return self.registry.create(method, self.config.backend_for(method))

    def first_responder_kex(self, method: int) -> KeyExchange:
        """The key exchange of a responder's IKE_SA_INIT answer: a fresh one the endpoint
        prepared ahead (``pqike.ike.prepared``) when it has one, so that no key pair is
        generated between request and response."""
        if self._prepared_keys is None:
            return self.new_kex(method)
        return self._prepared_keys.take(method, self.config.backend_for(method))

    def new_ike_spi(self) -> bytes:
        spi = os.urandom(8)
        while spi in (g.own_spi for g in self._generations):
            spi = os.urandom(8)
        return spi

    def emit(self, event: Event) -> None:
        self._events.append(event)

    def bump(self, name: str) -> None:
        self._counters[name] = self._counters.get(name, 0) + 1

    def drop(self, now: float, reason: str, size: int) -> None:
        self.bump("dropped")
        self._events.append(DatagramDropped(time=now, reason=reason, size=size))

    def received(self, msg: Inbound, now: float) -> None:
        """Report an unprotected message (IKE_SA_INIT) as received."""
        message = msg.message
        self._events.append(
            MessageReceived(
                time=now,
                exchange_type=message.header.exchange_type,
                message_id=message.header.message_id,
                is_response=message.header.is_response,
                payload_types=tuple([int(p.payload_type) for p in message.payloads]),
                ike_bytes=len(message.raw),
                fragment_ike_bytes=(len(message.raw),),
                datagram_sizes=(msg.udp_len,),
                source=msg.source,
            )
        )

    def install_first_keys(self, suite: NegotiatedSuite, secret: bytes) -> None:
        """RFC 7296 2.14: SKEYSEED and SK_* from the IKE_SA_INIT key exchange."""
        if suite.prf is None:
            raise NoProposalChosen("the selected IKE proposal has no PRF")
        hs = self.hs
        prf = get_prf(suite.prf)
        cipher = get_cipher(suite.encr, suite.key_bits, suite.integ)
        keys = initial_ike_keys(
            prf,
            secret,
            hs.nonce_i,
            hs.nonce_r,
            self.gen.spi_i,
            self.gen.spi_r,
            encr_key_size=cipher.key_size,
            integ_key_size=cipher.integ_key_size,
        )
        self.gen.crypto = Crypto(suite, prf, cipher, keys)
        assert hs.ke_method is not None
        self._events.append(
            IkeKeysDerived(
                spi_i=self.gen.spi_i,
                spi_r=self.gen.spi_r,
                exchange=ExchangeType.IKE_SA_INIT,
                epoch=0,
                nonce_i=hs.nonce_i,
                nonce_r=hs.nonce_r,
                key_exchanges=((hs.ke_method, secret),),
                keys=keys,
                prf=suite.prf,
            )
        )

    @property
    def has_deferred(self) -> bool:
        """Work put off until the response has left is still waiting (``defer``)."""
        return bool(self._deferred)

    def defer(self, step: Callable[[], None]) -> None:
        """Run ``step`` once the message being made has left: after every step deferred
        before it, and before anything that could need its result.

        ``run_deferred`` runs them, and every entry point (``receive_datagram``,
        ``handle_timer``, ``next_event``, the commands) calls it first, whatever the
        driver does. A driver that reads the events after sending
        what it queued (``pqike.io.udp``) runs them off the path between a request and
        its response (a responder's answer is what its peer waits for), or while a
        response is on its way (an initiator's next key pair)."""
        if self._deferred is None:
            self._deferred = [step]
        else:
            self._deferred.append(step)

    def defer_first_keys(
        self, suite: NegotiatedSuite, finish: Callable[[], bytes], now: float
    ) -> None:
        """A responder's ``install_first_keys``, done later (``defer``): its IKE_SA_INIT
        response needs no key (RFC 7296 2.14 keys protect only what follows), so the
        shared secret (``finish``, from ``KeyExchange.respond_later``, which checked the
        peer's KE data already), SKEYSEED and prf+ wait until the response has left."""
        self.defer(functools.partial(self._derive_first_keys, suite, finish, now))

    def run_deferred(self) -> None:
        """Run the work ``defer`` put off, oldest first (nothing when there is none)."""
        while self._deferred:
            # Taken off before it runs: a step runs once even if it fails the SA.
            steps, self._deferred = self._deferred, None
            for step in steps:
                step()

    def _derive_first_keys(
        self, suite: NegotiatedSuite, finish: Callable[[], bytes], now: float
    ) -> None:
        hs = self.hs
        assert hs.ke_method is not None
        try:
            secret = finish()
        except ProtocolError as exc:
            # respond_later checked the KE data, so this should never happen; if it
            # does, the answer has left and the SA fails without a Notify.
            self._fail(exc.notify_type, f"bad KEi: {exc}", now=now, round=0)
            return
        self._events.append(
            KeyExchangeCompleted(method=hs.ke_method, round=0, shared_secret=secret)
        )
        self.install_first_keys(suite, secret)

    def update_first_keys(self, secret: bytes, method: int | None = None) -> None:
        """RFC 9370 2.2.2: SKEYSEED(n) = prf(SK_d(n-1), SK(n) | Ni | Nr), then prf+ again,
        always with the IKE_SA_INIT nonces. ``method`` is the round's key exchange
        (default: the current round's)."""
        c = self.gen.crypto
        hs = self.hs
        assert c is not None
        keys = updated_ike_keys(
            c.prf,
            c.keys,
            secret,
            hs.nonce_i,
            hs.nonce_r,
            self.gen.spi_i,
            self.gen.spi_r,
            encr_key_size=c.cipher.key_size,
            integ_key_size=c.cipher.integ_key_size,
        )
        hs.intermediate_exchanges += 1
        if method is None:
            _, method = hs.rounds.current
        self._next_key_epoch(keys, key_exchanges=((method, secret),))

    def mix_ppk(self, ppk_id: bytes, ppk: bytes) -> None:
        """RFC 9867 3: re-derive every IKE SA key from ``SKEYSEED' = prf+(PPK, SK_d)``
        once the PPK_IDENTITY_KEY exchange is over (after any ADDKE update of the same
        exchange): a new key epoch, which protects IKE_AUTH and everything after."""
        c = self.gen.crypto
        hs = self.hs
        assert c is not None
        keys = ppk_intermediate_keys(
            c.prf,
            c.keys,
            ppk,
            hs.nonce_i,
            hs.nonce_r,
            self.gen.spi_i,
            self.gen.spi_r,
            encr_key_size=c.cipher.key_size,
            integ_key_size=c.cipher.integ_key_size,
        )
        hs.ppk_int_used = ppk_id
        self._next_key_epoch(keys, key_exchanges=(), ppk_id=ppk_id)

    def _next_key_epoch(
        self,
        keys: IkeKeys,
        *,
        key_exchanges: tuple[tuple[int, bytes], ...],
        ppk_id: bytes = b"",
    ) -> None:
        """Make ``keys`` the IKE SA's keys from the next IKE_INTERMEDIATE message on (a
        new key epoch of the first exchanges) and report them."""
        c = self.gen.crypto
        hs = self.hs
        assert c is not None and c.suite.prf is not None
        previous, c.keys = c.keys, keys
        hs.epoch += 1
        self._events.append(
            IkeKeysDerived(
                spi_i=self.gen.spi_i,
                spi_r=self.gen.spi_r,
                exchange=ExchangeType.IKE_INTERMEDIATE,
                epoch=hs.epoch,
                nonce_i=hs.nonce_i,
                nonce_r=hs.nonce_r,
                key_exchanges=key_exchanges,
                keys=keys,
                prf=c.suite.prf,
                previous_sk_d=previous.sk_d,
                ppk_id=ppk_id,
            )
        )

    def established(self, now: float, peer: Identity) -> None:
        """Both peers authenticated: report it, arm the lifetimes, drop the handshake."""
        c = self.gen.crypto
        hs = self.hs
        assert c is not None
        self.peer_id = peer
        self._last_heard = now
        self._events.append(
            IkeSaEstablished(
                time=now,
                spi_i=self.gen.spi_i,
                spi_r=self.gen.spi_r,
                suite=c.suite,
                keys=c.keys,
                local_id=self.config.local_id,
                remote_id=peer,
                nonce_i=hs.nonce_i,
                nonce_r=hs.nonce_r,
                intermediate_exchanges=hs.intermediate_exchanges,
                nat_local=self._nat_local,
                nat_remote=self._nat_remote,
            )
        )
        self._arm_ike_lifetime(now)
        self.gen.authenticate()
        self._first_nonces = (hs.nonce_i, hs.nonce_r)
        # The IKE_SA_INIT messages, IntAuth chains and key exchange objects were only for
        # AUTH and the rounds: an established SA stays small.
        self._hs = None

    def install_first_child(self, new: NewChild, now: float) -> None:
        """The Child SA of IKE_AUTH: KEYMAT from the IKE_SA_INIT nonces and the final SK_d
        (RFC 7296 2.17), no key exchange of its own."""
        ni, nr = self._first_nonces
        self.install_child(
            new,
            initiated=self.is_initiator,
            purpose=Purpose.IKE_AUTH,
            nonce_i=ni,
            nonce_r=nr,
            shared_secret=b"",
            additional_secrets=(),
            rekeyed_spi=None,
            now=now,
        )
        self._first_nonces = (b"", b"")

    def install_child(
        self,
        new: NewChild,
        *,
        initiated: bool,
        purpose: Purpose,
        nonce_i: bytes,
        nonce_r: bytes,
        shared_secret: bytes,
        additional_secrets: tuple[bytes, ...],
        rekeyed_spi: bytes | None,
        now: float,
    ) -> ChildSa:
        """Derive a Child SA's keys, keep it, arm its lifetime and report it."""
        c = self.gen.crypto
        assert c is not None
        suite = NegotiatedSuite.from_proposal(new.proposal)
        encr_size, integ_size = _esp_key_sizes(suite.encr, suite.key_bits, suite.integ)
        keys = derive_child_keys(
            c.prf,
            c.keys.sk_d,
            nonce_i,
            nonce_r,
            encr_key_size=encr_size,
            integ_key_size=integ_size,
            shared_secret=shared_secret,
            additional_secrets=additional_secrets,
        )
        spi_in, spi_out = (new.spi_i, new.spi_r) if initiated else (new.spi_r, new.spi_i)
        ts_local, ts_remote = (new.ts_i, new.ts_r) if initiated else (new.ts_r, new.ts_i)
        rekey, life, jitter = self.config.child_lifetimes
        child = ChildSa(
            spi_in,
            spi_out,
            suite,
            keys,
            ts_local,
            ts_remote,
            new.transport,
            initiated,
            now,
            rekey_at=now + rekey - jitter * _JITTER.random() if rekey else None,
            expire_at=now + life if life else None,
        )
        self.children[spi_in] = child
        exchanges = len(additional_secrets) + (1 if shared_secret else 0)
        key_exchanges: tuple[tuple[int, bytes], ...] = ()
        if exchanges:  # the Child SA of IKE_AUTH has none (RFC 7296 1.2)
            # The methods in the order RFC 9370 2.2.4 feeds their secrets to KEYMAT.
            methods = ([suite.ke] if shared_secret and suite.ke is not None else []) + [
                m for _, m in suite.rounds
            ]
            secrets = ((shared_secret,) if shared_secret else ()) + tuple(additional_secrets)
            key_exchanges = tuple(zip(methods, secrets, strict=False))
        self._events.append(
            ChildKeysDerived(
                spi_i=self.gen.spi_i,
                spi_r=self.gen.spi_r,
                child_spi_i=new.spi_i,
                child_spi_r=new.spi_r,
                purpose=purpose,
                nonce_i=nonce_i,
                nonce_r=nonce_r,
                key_exchanges=key_exchanges,
                sk_d=c.keys.sk_d,
                keys=keys,
            )
        )
        self._events.append(
            ChildSaEstablished(
                spi_i=new.spi_i,
                spi_r=new.spi_r,
                suite=suite,
                keys=keys,
                ts_i=new.ts_i,
                ts_r=new.ts_r,
                transport_mode=new.transport,
                time=now,
                purpose=purpose,
                initiated=initiated,
                rekeyed_spi=rekeyed_spi,
                key_exchanges=exchanges,
                nonce_i=nonce_i,
                nonce_r=nonce_r,
            )
        )
        return child

    def child_by_outbound_spi(self, spi: bytes) -> ChildSa | None:
        """The Child SA the peer names by its inbound SPI (Delete, REKEY_SA: RFC 7296 3.11)."""
        return next((c for c in self.children.values() if c.spi_out == spi), None)

    def remove_child(self, child: ChildSa, *, by_peer: bool, reason: str, now: float) -> None:
        if self.children.pop(child.spi_in, None) is not None:
            self._events.append(
                ChildSaDeleted(
                    time=now,
                    spi_in=child.spi_in,
                    spi_out=child.spi_out,
                    by_peer=by_peer,
                    reason=reason,
                )
            )

    def remove_all_children(self, *, by_peer: bool, reason: str, now: float) -> None:
        """RFC 7296 1.4.1: deleting the IKE SA deletes every Child SA with it."""
        for child in list(self.children.values()):
            self.remove_child(child, by_peer=by_peer, reason=reason, now=now)

    def abandon(self, ctx: ChildExchange) -> None:
        """Forget an exchange of ours without a word (it is being restarted)."""
        if self.child_out is ctx:
            self.child_out = None
        if ctx.rekeyed_spi is not None:
            child = self.children.get(ctx.rekeyed_spi)
            if child is not None and child.state is ChildState.REKEYING:
                child.state = ChildState.INSTALLED
                child.collision_nonce = None

    def exchange_failed(
        self, ctx: ChildExchange, notify_type: int | None, reason: str, rnd: int | None, now: float
    ) -> None:
        """A CREATE_CHILD_SA / IKE_FOLLOWUP_KE exchange failed; the IKE SA stays."""
        self.abandon(ctx)
        for link, waiting in list(self.child_in.items()):
            if waiting is ctx:
                del self.child_in[link]
        if self._pending_ike is not None and self._pending_ike[0] is ctx:
            self._pending_ike = None
        self.bump("child_sa_failed")
        self._events.append(
            CreateChildSaFailed(
                time=now, purpose=ctx.purpose, notify=notify_type, reason=reason, round=rnd
            )
        )
        if not ctx.initiated or self._pending_ike is None:
            return
        # Our colliding IKE rekey failed: the peer's, which we answered, stands.
        pending_ctx, gen, event = self._pending_ike
        self._pending_ike = None
        self._switch_generation(pending_ctx, gen, event, now)

    def settle_multi_ke_collision(self, ctx: ChildExchange, now: float) -> bool:
        """Our CREATE_CHILD_SA response named IKE_FOLLOWUP_KE rounds while the peer rekeys
        the same SA: the nonces are known now, so settle the collision before any round
        (RFC 9370 2.2.4 with RFC 7296 2.8.1, 2.8.2, as strongSwan does). The lowest nonce
        loses: if it is ours we stop here and the peer's exchange goes on; if it is the
        peer's, it stops and we forget the exchange we were waiting on. True when we lost."""
        passive = next(
            (
                (link, other)
                for link, other in self.child_in.items()
                # The same SA: the IKE SA, or the Child SA both name (by our inbound SPI).
                if other.purpose is ctx.purpose and other.rekeyed_spi == ctx.rekeyed_spi
            ),
            None,
        )
        done = self._pending_ike if ctx.purpose is Purpose.REKEY_IKE else None
        rival = passive[1] if passive is not None else (done[0] if done is not None else None)
        if rival is None:
            return False
        self.bump("multi_ke_rekey_collisions")
        if ctx.lowest_nonce < rival.lowest_nonce:
            self.abandon(ctx)
            if done is not None:
                self._pending_ike = None
                self._switch_generation(done[0], done[1], done[2], now)
            return True
        if passive is not None:
            del self.child_in[passive[0]]
        return False

    def install_generation(
        self,
        ctx: ChildExchange,
        spi_i: bytes,
        spi_r: bytes,
        crypto: Crypto,
        event: IkeSaRekeyed,
        now: float,
    ) -> None:
        """An IKE SA rekey is done: make the new generation current, or settle a
        collision (RFC 7296 2.8.2: the SA made with the lowest nonce is deleted by the
        peer that made it; the other one survives and the old SA is deleted)."""
        gen = Generation(
            spi_i=spi_i,
            spi_r=spi_r,
            initiator=ctx.initiated,
            limits=_limits(self.config),
            crypto=crypto,
            budget=self._reassembly_budget,
            peer=self.remote[0],
            authenticated=True,  # a rekeyed generation: its peer authenticated
        )
        if not ctx.initiated and self.child_out is not None:
            # Our own IKE rekey is in flight: wait for it before choosing.
            self._pending_ike = (ctx, gen, event)
            self.bump("ike_rekey_collisions")
            return
        pending = self._pending_ike
        self._pending_ike = None
        if ctx.initiated and pending is not None:
            peer_ctx, peer_gen, peer_event = pending
            if ctx.lowest_nonce < peer_ctx.lowest_nonce:
                # We lost: the peer's new SA is the one; ours we delete ourselves.
                gen.fate = Fate.REDUNDANT
                self._generations.append(gen)
                informational.send_delete_ike(self, now, gen=gen)
                self._switch_generation(peer_ctx, peer_gen, peer_event, now, delete_old=False)
                return
            # We won: the peer deletes the SA its rekey made.
            peer_gen.fate = Fate.REKEYED
            peer_gen.expires = now + self._replaced_linger()
            self._generations.append(peer_gen)
        self._switch_generation(ctx, gen, event, now, delete_old=ctx.initiated)

    def _switch_generation(
        self,
        ctx: ChildExchange,
        gen: Generation,
        event: IkeSaRekeyed,
        now: float,
        *,
        delete_old: bool = False,
    ) -> None:
        old = self.gen
        old.fate = Fate.REKEYED
        old.expires = now + self._replaced_linger()
        self.gen = gen
        self._generations.append(gen)
        self._events.append(event)
        self._arm_ike_lifetime(now)
        if delete_old:
            # RFC 7296 2.18: the initiator of the rekey deletes the old IKE SA.
            informational.send_delete_ike(self, now, gen=old)

    def _replaced_linger(self) -> float:
        """The whole retransmission schedule (RFC 7296 2.1): how long a replaced
        generation waits for its Delete and a peer's CREATE_CHILD_SA for its
        IKE_FOLLOWUP_KE, since the peer may retry that long."""
        cfg = self.config
        return sum(
            cfg.retransmit_timeout * cfg.retransmit_base**n for n in range(cfg.retransmit_tries + 1)
        )

    def forget_generation(self, gen: Generation) -> None:
        if gen is self.gen:
            return
        if gen in self._generations:
            self._generations.remove(gen)
            gen.release()

    def note_failure(self, notify_type: int | None, reason: str, now: float) -> None:
        """Report the SA's failure; the table moves the state (an INFORMATIONAL told us)."""
        for gen in self._generations:
            gen.request = None
        self._events.append(
            IkeSaFailed(
                time=now,
                notify=notify_type,
                reason=reason,
                round=None,
                spi_i=self.gen.spi_i,
                spi_r=self.gen.spi_r,
            )
        )

    # ------------------------------------------------- NAT detection (RFC 7296 2.23)

    def _natd(self, spi_r: bytes, addr: Address) -> bytes:
        return crypto_auth.nat_detection_hash(self.gen.spi_i, spi_r, addr[0], addr[1])

    def nat_notifies(self, spi_r: bytes) -> list[Payload]:
        return [
            NotifyPayload(NotifyType.NAT_DETECTION_SOURCE_IP, self._natd(spi_r, self.local)),
            NotifyPayload(NotifyType.NAT_DETECTION_DESTINATION_IP, self._natd(spi_r, self.remote)),
        ]

    def check_nat(self, payloads: tuple[Payload, ...], spi_r: bytes, source: Address) -> None:
        """Compare the peer's hashes with the addresses we see."""
        srcs: list[bytes] = []
        dst: bytes | None = None
        for p in payloads:  # one pass: IKE_SA_INIT carries several Notify payloads
            if type(p) is NotifyPayload:
                if p.notify_type == _NATD_S:
                    srcs.append(p.data)
                elif p.notify_type == _NATD_D and dst is None:
                    dst = p.data
        if srcs:
            self._nat_remote = self._natd(spi_r, source) not in srcs
        if dst is not None:
            self._nat_local = dst != self._natd(spi_r, self.local)

    def float_to_nat_t(self) -> None:
        """After IKE_SA_INIT, move from port 500 to the NAT-T port when a NAT was detected
        (or always, with ``force_nat_t``, as strongSwan does with MOBIKE)."""
        cfg = self.config
        if not (self._nat_local or self._nat_remote or cfg.force_nat_t):
            return
        if self.local[1] == IKE_PORT and self.remote[1] == IKE_PORT:
            self.local = (self.local[0], cfg.nat_t_port)
            self.remote = (self.remote[0], cfg.nat_t_port)

    def _adopt_path(self) -> None:
        """Reply on the path an authenticated message came in on."""
        addr, local = self._rx_path
        if (addr, local) != (self.remote, self.local):
            self.remote, self.local = addr, local
            self.bump("path_changes")

    # ------------------------------------------------------------------ sending

    @property
    def cookie_jar(self) -> CookieJar:
        """The responder's COOKIE maker (RFC 7296 2.6): the endpoint's, or one of its own
        for a standalone SA with ``require_cookie``."""
        if self._cookie_jar is None:
            self._cookie_jar = CookieJar(self.config.cookie_secret)
        return self._cookie_jar

    def _emit_datagrams(self, datagrams: list[bytes]) -> None:
        for d in datagrams:
            self._out.append((d, self.remote))

    def _send(
        self,
        gen: Generation,
        exchange: int,
        payloads: list[Payload],
        *,
        response: bool,
        mid: int,
        now: float,
        protected: bool,
    ) -> tuple[bytes, list[bytes], MessageSent]:
        """Build, queue and report one message; return its bytes, datagrams and event."""
        flags = (_INITIATOR if gen.initiator else 0) | (_RESPONSE if response else 0)
        header = IkeHeader(gen.spi_i, gen.spi_r, 0, exchange, flags, mid)
        local_port, remote_port = self.local[1], self.remote[1]
        if protected:
            c = gen.crypto
            assert c is not None
            keys = c.keys
            sk_e, sk_a = (keys.sk_ei, keys.sk_ai) if gen.initiator else (keys.sk_er, keys.sk_ar)
            frag = (
                self.config.fragment_size
                if (self.config.fragmentation and self.peer_fragmentation)
                else None
            )
            impairments = self.config.impairments
            clear: tuple[Payload, ...] = ()
            if (
                impairments
                and "unencrypted-payload" in impairments
                and exchange == ExchangeType.IKE_INTERMEDIATE
            ):
                clear = (VendorIdPayload(b"pqike impairment: a payload in clear"),)
            pm = protect(
                header,
                payloads,
                c.cipher,
                sk_e,
                sk_a,
                fragment_size=frag,
                ipv6=self._ipv6,
                unprotected=clear,
                impairments=impairments,
            )
            if exchange == ExchangeType.IKE_INTERMEDIATE and self._hs is not None:
                # RFC 9242 3.3.2: the sender chains IntAuth over what it protected. Only
                # IKE_AUTH reads it (RFC 9242 3.3), so it is done after the message left,
                # still with these keys: a key update comes after it (a responder's is
                # deferred after it, an initiator's waits for the response).
                self.defer(
                    functools.partial(
                        intermediate.chain_int_auth, self, pm, initiator=gen.initiator
                    )
                )
            messages = pm.messages
            outer = _SKF if len(messages) > 1 else _SK
            types: tuple[int, ...] = (outer, *pm.inner_types)
            raw, ike_bytes = b"", pm.ike_bytes
        else:
            raw, types = encode_message_typed(header, payloads)
            messages, ike_bytes = (raw,), len(raw)
        remote = self.remote
        if len(messages) == 1:  # the usual case: one datagram, sizes without a loop
            datagram = add_marker(messages[0], local_port, remote_port)
            datagrams = [datagram]
            fragment_sizes: tuple[int, ...] = (ike_bytes,)
            datagram_sizes: tuple[int, ...] = (len(datagram),)
            self._out.append((datagram, remote))
        else:
            datagrams = [add_marker(m, local_port, remote_port) for m in messages]
            fragment_sizes = tuple([len(m) for m in messages])
            datagram_sizes = tuple([len(d) for d in datagrams])
            self._emit_datagrams(datagrams)
        event = MessageSent(
            time=now,
            exchange_type=exchange,
            message_id=mid,
            is_response=response,
            payload_types=types,
            ike_bytes=ike_bytes,
            fragment_ike_bytes=fragment_sizes,
            datagram_sizes=datagram_sizes,
            destination=remote,
        )
        self._events.append(event)
        return raw, datagrams, event

    def send_request(
        self,
        exchange: int,
        payloads: list[Payload],
        *,
        now: float,
        protected: bool = True,
        gen: Generation | None = None,
    ) -> bytes:
        """Send a request in our window of ``gen`` (the current generation by default)."""
        gen = gen or self.gen
        mid = gen.my_mid
        gen.my_mid += 1
        raw, datagrams, event = self._send(
            gen, exchange, payloads, response=False, mid=mid, now=now, protected=protected
        )
        gen.request = Outgoing(
            mid, exchange, datagrams, event, now, deadline=now + self.config.retransmit_timeout
        )
        return raw

    def send_response(
        self,
        exchange: int,
        payloads: list[Payload],
        *,
        message_id: int,
        now: float,
        protected: bool = True,
        request_raw: bytes = b"",
        gen: Generation | None = None,
    ) -> bytes:
        """Answer the peer's request ``message_id`` and cache the answer (RFC 7296 2.1)."""
        gen = gen or self.gen
        raw, datagrams, event = self._send(
            gen, exchange, payloads, response=True, mid=message_id, now=now, protected=protected
        )
        gen.response = CachedResponse(message_id, exchange, datagrams, event, request_raw)
        gen.peer_mid = message_id + 1
        return raw

    def emit_raw(self, message: bytes) -> None:
        """Queue an IKE message as given, unrecorded (an impairment's extra datagram)."""
        self._emit_datagrams([add_marker(message, self.local[1], self.remote[1])])

    def stateless_reply(self, hdr: IkeHeader, payloads: list[Payload], now: float) -> None:
        """Answer an IKE_SA_INIT request with an unprotected notify and keep no state."""
        header = IkeHeader(
            hdr.spi_i, _ZERO_SPI, 0, ExchangeType.IKE_SA_INIT, HeaderFlag.RESPONSE, hdr.message_id
        )
        raw = encode_message(header, payloads)
        # Back to where the request came from, marked like it (RFC 3948 2.2): this SA may
        # not even have a peer address yet.
        addr, local = self._rx_path
        datagram = add_marker(raw, local[1], addr[1])
        self._out.append((datagram, addr))
        self._events.append(
            MessageSent(
                time=now,
                exchange_type=ExchangeType.IKE_SA_INIT,
                message_id=hdr.message_id,
                is_response=True,
                payload_types=tuple(int(p.payload_type) for p in payloads),
                ike_bytes=len(raw),
                fragment_ike_bytes=(len(raw),),
                datagram_sizes=(len(datagram),),
                destination=addr,
            )
        )

    # ------------------------------------------------------------------ receiving helpers

    def _open(
        self, gen: Generation, message: Message, now: float, udp_len: int
    ) -> UnprotectedMessage | None:
        """Verify and decrypt (and reassemble) a protected message; None when not complete."""
        c = gen.crypto
        if c is None:
            self.drop(now, "protected message before keys exist", udp_len)
            return None
        keys = c.keys
        sk_e, sk_a = (keys.sk_er, keys.sk_ar) if gen.initiator else (keys.sk_ei, keys.sk_ai)
        last = message.payloads[-1] if message.payloads else None
        try:
            if isinstance(last, SkfPayload):
                plain = gen.reassembler.add(message, c.cipher, sk_e, sk_a, now=now)
            else:
                plain = unprotect(message, c.cipher, sk_e, sk_a)
            self._adopt_path()
            return plain
        except IntegrityCheckFailed:
            # RFC 7296 2.21.2: an integrity failure is dropped without a reply.
            self.drop(now, "integrity check failed", udp_len)
        except ProtocolError as exc:
            self.drop(now, f"unusable protected message: {exc}", udp_len)
        return None

    def _bad_inner(
        self,
        gen: Generation,
        plain: UnprotectedMessage,
        exc: ProtocolError,
        now: float,
        *,
        response: bool,
    ) -> None:
        if response:
            self.drop(now, f"bad payloads in protected response: {exc}", plain.ike_bytes)
            return
        # RFC 7296 2.21.2/3.10.1: answer a bad protected request with its error.
        assert exc.notify_type is not None
        self.send_response(
            plain.header.exchange_type,
            [NotifyPayload(exc.notify_type, exc.notify_data)],
            message_id=plain.header.message_id,
            now=now,
            gen=gen,
        )
        self.bump("bad_requests")
        if gen is self.gen and self._state in (
            S.RESPONDER_EXPECT_INTERMEDIATE_REQUEST,
            S.RESPONDER_EXPECT_AUTH_REQUEST,
        ):
            self._fail(exc.notify_type, f"bad request: {exc}", now=now)

    def _received_protected(
        self, plain: UnprotectedMessage, inner: Sequence[Payload], now: float, addr: Address
    ) -> None:
        marker = marker_length(self.local[1], addr[1])
        first_type = PayloadType.SKF if plain.fragments else PayloadType.SK
        sizes = plain.fragments or (plain.ike_bytes,)
        self._events.append(
            MessageReceived(
                time=now,
                exchange_type=plain.header.exchange_type,
                message_id=plain.header.message_id,
                is_response=plain.header.is_response,
                payload_types=(int(first_type), *[int(p.payload_type) for p in inner]),
                ike_bytes=plain.ike_bytes,
                fragment_ike_bytes=tuple(sizes),
                datagram_sizes=tuple(s + marker for s in sizes),
                source=addr,
            )
        )

    def _bad_unparsed(self, data: bytes, exc: ProtocolError, now: float) -> None:
        """A datagram that does not even decode: answer only an unprotected IKE_SA_INIT request."""
        self.drop(now, f"undecodable message: {exc}", len(data))
        if (
            self._state == S.RESPONDER_EXPECT_SA_INIT_REQUEST
            and len(data) >= IKE_HEADER_LENGTH
            and data[18] == ExchangeType.IKE_SA_INIT
            and not data[19] & HeaderFlag.RESPONSE
            and exc.notify_type is not None
        ):
            hdr = IkeHeader(data[:8], _ZERO_SPI, 0, ExchangeType.IKE_SA_INIT, 0, 0)
            self.stateless_reply(hdr, [NotifyPayload(exc.notify_type, exc.notify_data)], now)

    def _fail(
        self, notify_type: int | None, reason: str, *, now: float, round: int | None = None
    ) -> None:
        if self._state in TERMINAL:
            return
        self._command(Command.FAIL)
        for gen in self._generations:
            gen.request = None
        self._events.append(
            IkeSaFailed(
                time=now,
                notify=notify_type,
                reason=reason,
                round=round,
                spi_i=self.gen.spi_i,
                spi_r=self.gen.spi_r,
            )
        )


__all__ = ["Address", "IkeSa", "IkeSaState", "Outcome"]
