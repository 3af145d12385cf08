"""``IkeSa``: one IKE SA in either role, sans-IO.

Driven by ``initiate(now=)``, ``receive_datagram(data, addr, now=)`` and
``handle_timer(now=)``; read through ``datagrams_to_send(now=)``, ``get_timer()`` and
``next_event()``. It never touches a socket or a clock.

The exchanges (RFC 7296 1.2, RFC 9242 3, RFC 9370 2.2)::

    IKE_SA_INIT       HDR, SAi1, KEi, Ni, N(NATD)*, N(FRAG_SUP), N(INT_SUP)  -->
                  <-- HDR, SAr1, KEr, Nr, N(NATD)*, N(FRAG_SUP), N(INT_SUP)
    IKE_INTERMEDIATE  HDR, SK{KEi(n)}  -->        (one per negotiated ADDKE round)
                  <-- HDR, SK{KEr(n)}
    IKE_AUTH          HDR, SK{IDi, [IDr], AUTH, [N(TRANSPORT)], SAi2, TSi, TSr}  -->
                  <-- HDR, SK{IDr, AUTH, [N(TRANSPORT)], SAr2, TSi, TSr}
"""

from __future__ import annotations

import functools
import ipaddress
import os
from collections import deque
from dataclasses import dataclass, field, replace

from ..constants import (
    ADDKE_TYPES,
    IKE_HEADER_LENGTH,
    IKE_PORT,
    NON_ESP_MARKER,
    AuthMethod,
    ExchangeType,
    HeaderFlag,
    NotifyType,
    PayloadType,
    ProtocolId,
    TransformType,
    name_of,
)
from ..crypto import auth as ike_auth
from ..crypto.kex import DEFAULT_REGISTRY, KeyExchange
from ..crypto.keys import (
    IkeKeys,
    derive_child_keys,
    derive_ike_keys,
    skeyseed,
    skeyseed_additional,
)
from ..crypto.prf import Prf, get_prf
from ..crypto.protect import Cipher, encr_key_size, get_cipher, integ_key_size
from ..errors import (
    IntegrityCheckFailed,
    InvalidSyntax,
    LocalProtocolError,
    NoProposalChosen,
    ProtocolError,
    TsUnacceptable,
)
from ..proposal import NegotiatedSuite, check_selected, select_proposal, without_key_exchanges
from ..wire.codec import decode_message, decode_payloads, encode_message
from ..wire.payloads import (
    AuthPayload,
    DeletePayload,
    IdiPayload,
    IdrPayload,
    IkeHeader,
    KePayload,
    Message,
    NoncePayload,
    NotifyPayload,
    Payload,
    Proposal,
    SaPayload,
    SkfPayload,
    TsiPayload,
    TsrPayload,
)
from .config import Identity, IkeConfiguration
from .events import (
    ChildSaEstablished,
    DatagramDropped,
    Event,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
    KeyExchangeCompleted,
    MessageReceived,
    MessageSent,
)
from .protection import (
    Reassembler,
    ReassemblyLimits,
    UnprotectedMessage,
    protect,
    unprotect,
)
from .states import EXPECTED, TERMINAL, IkeSaState
from .ts import narrow

Address = tuple[str, int]
S = IkeSaState


@dataclass
class _Outgoing:
    """A request we sent and may have to retransmit (RFC 7296 2.1)."""

    message_id: int
    exchange_type: int
    datagrams: list[bytes]
    event: MessageSent
    sent_at: float
    tries: int = 0
    deadline: float = 0.0


@dataclass
class _CachedResponse:
    """Our last response, resent verbatim when the request is retransmitted (RFC 7296 2.1)."""

    message_id: int
    exchange_type: int
    datagrams: list[bytes]
    event: MessageSent
    request_raw: bytes = b""


@dataclass
class _Crypto:
    """The negotiated suite and the SA's current keys (replaced after each ADDKE round)."""

    suite: NegotiatedSuite
    prf: Prf
    cipher: Cipher
    keys: IkeKeys
    int_auth_i: bytes = b""
    int_auth_r: bytes = b""
    exchanges: int = 0


@dataclass
class _Counters:
    values: dict[str, int] = field(default_factory=dict)

    def bump(self, name: str) -> None:
        self.values[name] = self.values.get(name, 0) + 1


def _has_notify(payloads: tuple[Payload, ...] | list[Payload], kind: int) -> NotifyPayload | None:
    for p in payloads:
        if isinstance(p, NotifyPayload) and p.notify_type == kind:
            return p
    return None


_INITIATOR = int(HeaderFlag.INITIATOR)
_RESPONSE = int(HeaderFlag.RESPONSE)

MAX_KE_DATA = 0xFFFF - 8
"""Most KE data one payload holds: a 16-bit Payload Length less 8 header bytes (RFC 7296 3.4)."""


def _ke_payloads(method: int, data: bytes) -> list[Payload]:
    """One KE payload, or several in a row when ``data`` does not fit in one.

    pqike's convention for keys over 64 KB (Classic McEliece), which IKEv2 itself cannot
    carry: consecutive KE payloads of the same method, each but the last full. Only used in
    IKE_INTERMEDIATE, whose messages RFC 7383 can fragment. See docs/protocol-notes.md.
    """
    if len(data) <= MAX_KE_DATA:
        return [KePayload(method, data)]
    return [KePayload(method, data[i : i + MAX_KE_DATA]) for i in range(0, len(data), MAX_KE_DATA)]


def _joined_ke(payloads) -> KePayload | None:
    """The KE payload of a message, rejoined when it was split by ``_ke_payloads``."""
    kes = [p for p in payloads if isinstance(p, KePayload)]
    if len(kes) <= 1:
        return kes[0] if kes else None
    if any(k.method != kes[0].method for k in kes) or any(
        len(k.data) != MAX_KE_DATA for k in kes[:-1]
    ):
        raise InvalidSyntax("several KE payloads that are not one split key exchange value")
    return KePayload(kes[0].method, b"".join(k.data for k in kes))


@functools.lru_cache(maxsize=4096)
def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Parsing an address string costs more than the NAT detection hash over it, and a
    responder sees the same few addresses again and again."""
    return ipaddress.ip_address(text)


def _first(payloads, cls):
    for p in payloads:
        if isinstance(p, cls):
            return p
    return None


class IkeSa:
    """One IKE SA and its first Child SA, as initiator or responder.

    ``local`` and ``remote`` are the (address, port) pairs of the UDP path; they feed
    NAT detection (RFC 7296 2.23) and decide whether the non-ESP marker is used (it is
    when neither port is 500, as strongSwan does: RFC 3948 2.2).
    """

    def __init__(
        self,
        config: IkeConfiguration,
        *,
        is_initiator: bool,
        local: Address = ("192.0.2.1", IKE_PORT),
        remote: Address = ("192.0.2.2", IKE_PORT),
        registry=DEFAULT_REGISTRY,
    ) -> None:
        self.config = config
        self.is_initiator = is_initiator
        self.local = local
        self.remote = remote
        self._registry = registry
        self._ipv6 = ipaddress.ip_address(local[0]).version == 6
        self.state = S.INITIAL if is_initiator else S.RESPONDER_EXPECT_SA_INIT_REQUEST
        self.spi_i = os.urandom(8) if is_initiator else b""
        self.spi_r = b"\x00" * 8 if is_initiator else os.urandom(8)
        self._events: deque[Event] = deque()
        self._out: list[tuple[bytes, Address]] = []
        self._counters = _Counters()
        self._request: _Outgoing | None = None
        self._response: _CachedResponse | None = None
        self._my_mid = 0  # RFC 7296 2.2: ID of the next request we send
        self._peer_mid = 0  # ID of the next request we expect from the peer
        self._crypto: _Crypto | None = None
        self._nonce_i = b""
        self._nonce_r = b""
        self._kex: KeyExchange | None = None
        self._ke_method: int | None = None
        self._cookie = b""
        self._sa_init_request = b""
        self._sa_init_response = b""
        self._peer_fragmentation = False
        self._peer_intermediate = False
        self._rounds: tuple[tuple[int, int], ...] = ()
        self._round_index = 0
        self._nat_local = False
        self._nat_remote = False
        self._child_spi = os.urandom(4)
        self._peer_id: Identity | None = None
        self._reassembler = Reassembler(
            ReassemblyLimits(
                config.max_fragments, config.max_message_size, config.reassembly_timeout
            )
        )
        self._half_open_deadline: float | None = None
        self._rx_path: tuple[Address, Address] = (remote, local)

    # ------------------------------------------------------------------ public API

    @property
    def stats(self) -> dict[str, int]:
        """Counters: dropped datagrams by reason, retransmissions, fragment handling."""
        out = dict(self._counters.values)
        out.update(self._reassembler.stats)
        return out

    @property
    def is_established(self) -> bool:
        return self.state == S.ESTABLISHED

    @property
    def is_closed(self) -> bool:
        return self.state in TERMINAL

    def initiate(self, *, now: float) -> None:
        """Start the IKE SA (initiator only): queue the IKE_SA_INIT request."""
        if not self.is_initiator or self.state != S.INITIAL:
            raise LocalProtocolError("initiate() is only for a new initiator")
        self._nonce_i = os.urandom(self.config.nonce_size)
        first = self.config.ike_proposals[0]
        ke = next((t.id for t in first.transforms if t.type == TransformType.KE), None)
        if ke is None:
            raise LocalProtocolError("the first IKE proposal has no key exchange method")
        self._start_kex(ke)
        self._send_sa_init_request(now)

    def delete(self, *, now: float) -> None:
        """Delete the established IKE SA with an INFORMATIONAL exchange (RFC 7296 1.4.1)."""
        if self.state != S.ESTABLISHED:
            raise LocalProtocolError("delete() needs an established IKE SA")
        self.state = S.DELETING
        self._send_request(ExchangeType.INFORMATIONAL, [DeletePayload(ProtocolId.IKE, 0)], now=now)

    def datagrams_to_send(self, *, now: float) -> list[tuple[bytes, Address]]:
        """UDP payloads to send now, each with its destination."""
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        """When ``handle_timer`` must be called next, or ``None``."""
        deadlines = []
        if self._request is not None and self.state not in TERMINAL:
            deadlines.append(self._request.deadline)
        d = self._reassembler.deadline()
        if d is not None:
            deadlines.append(d)
        if self._half_open_deadline is not None and self.state not in TERMINAL:
            deadlines.append(self._half_open_deadline)
        return min(deadlines) if deadlines else None

    def handle_timer(self, *, now: float) -> None:
        """Retransmit an unanswered request, give up after the limit, expire reassembly."""
        self._reassembler.expire(now)
        if (
            self._half_open_deadline is not None
            and now >= self._half_open_deadline
            and self.state not in TERMINAL
        ):
            self._half_open_deadline = None
            done = self._round_index
            self._fail(
                None,
                f"no IKE_AUTH within {self.config.half_open_timeout:g} s after "
                f"{done} of {len(self._rounds)} additional key exchanges",
                now=now,
                round=done if self._rounds else None,
            )
            return
        req = self._request
        if req is None or now < req.deadline or self.state in TERMINAL:
            return
        if req.tries >= self.config.retransmit_tries:
            self._request = None
            self._fail(
                None,
                f"no response to {name_of(ExchangeType, req.exchange_type)} "
                f"after {req.tries} retransmissions",
                now=now,
            )
            return
        req.tries += 1
        self._counters.bump("retransmissions")
        self._emit_datagrams(req.datagrams)
        self._events.append(_retransmitted(req.event, now))
        req.deadline = now + self.config.retransmit_timeout * self.config.retransmit_base**req.tries

    def next_event(self) -> Event | None:
        """The oldest event not yet read, or ``None``."""
        return self._events.popleft() if self._events else None

    def receive_datagram(
        self, data: bytes, addr: Address, *, now: float, local: Address | None = None
    ) -> None:
        """Process one UDP payload from ``addr`` to ``local`` (default: ``self.local``).

        Never raises for anything the peer sent. Once a protected message from a new
        address pair verifies, replies go there (RFC 7296 2.23: the peer moved to the
        NAT-T port or its NAT mapping changed).
        """
        self._reassembler.expire(now)
        local = local or self.local
        self._rx_path = (addr, local)
        if self._uses_marker(addr, local):
            if data[:4] != NON_ESP_MARKER:
                self._drop(now, "ESP packet or missing non-ESP marker", len(data))
                return
            data = data[4:]
        if self.state in (S.DELETED,):
            self._drop(now, "IKE SA is deleted", len(data))
            return
        try:
            message = decode_message(data)
        except ProtocolError as exc:
            self._bad_unparsed(data, exc, addr, now)
            return
        try:
            marker = len(NON_ESP_MARKER) if self._uses_marker(addr, local) else 0
            self._dispatch(message, addr, now, len(data) + marker)
        except ProtocolError as exc:  # any fault found while handling stays inside the SA
            self._handle_fault(message, exc, now)

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, message: Message, addr: Address, now: float, udp_len: int) -> None:
        hdr = message.header
        if hdr.is_initiator == self.is_initiator:
            self._drop(now, "message sent by our own role", udp_len)
            return
        if hdr.spi_i != self.spi_i and not (
            not self.is_initiator and self.state == S.RESPONDER_EXPECT_SA_INIT_REQUEST
        ):
            self._drop(now, "unknown IKE SPI", udp_len)
            return
        key = (hdr.exchange_type, hdr.is_response)
        if hdr.is_response:
            self._on_response(message, key, addr, now, udp_len)
        else:
            self._on_request(message, key, addr, now, udp_len)

    def _on_response(self, message, key, addr, now, udp_len) -> None:
        hdr = message.header
        req = self._request
        if (
            req is None
            or hdr.message_id != req.message_id
            or hdr.exchange_type != req.exchange_type
        ):
            self._drop(now, "response to no outstanding request", udp_len)
            return
        if key not in EXPECTED[self.state]:
            self._drop(now, f"unexpected response in state {self.state.name}", udp_len)
            return
        if hdr.exchange_type == ExchangeType.IKE_SA_INIT:
            if not self.is_initiator:
                self._drop(now, "IKE_SA_INIT response to a responder", udp_len)
                return
            self._on_sa_init_response(message, addr, now, udp_len)
            return
        plain = self._open(message, now, udp_len)
        if plain is None:
            return
        inner = self._decode_inner(plain, response=True, now=now)
        if inner is None:
            return
        self._request = None
        self._received_event(plain, inner, now, addr, udp_len)
        handler = {
            ExchangeType.IKE_INTERMEDIATE: self._on_intermediate_response,
            ExchangeType.IKE_AUTH: self._on_auth_response,
            ExchangeType.INFORMATIONAL: self._on_informational_response,
        }[ExchangeType(hdr.exchange_type)]
        handler(plain, inner, now)

    def _on_request(self, message, key, addr, now, udp_len) -> None:
        hdr = message.header
        cached = self._response
        # RFC 7296 2.1: a retransmitted request gets the cached response again.
        if (
            cached is not None
            and hdr.message_id == cached.message_id
            and (hdr.exchange_type == cached.exchange_type)
        ):
            skf = message.payloads[-1] if message.payloads else None
            if hdr.exchange_type == ExchangeType.IKE_SA_INIT and message.raw != cached.request_raw:
                self._drop(now, "different IKE_SA_INIT with the same SPI", udp_len)
                return
            # RFC 7383 2.6.1: answer a fragmented retransmission on its first fragment only.
            if isinstance(skf, SkfPayload) and skf.fragment_number != 1:
                self._counters.bump("retransmitted_fragments_ignored")
                return
            self._counters.bump("retransmitted_requests")
            self._emit_datagrams(cached.datagrams)
            self._events.append(_retransmitted(cached.event, now))
            return
        if hdr.message_id != self._peer_mid:
            self._drop(
                now, f"request message ID {hdr.message_id}, expected {self._peer_mid}", udp_len
            )
            return
        if key not in EXPECTED[self.state]:
            if self.state in (S.FAILED, S.DELETED):
                self._drop(now, f"request in state {self.state.name}", udp_len)
                return
            if hdr.exchange_type == ExchangeType.IKE_SA_INIT:
                self._drop(now, "IKE_SA_INIT request on an IKE SA past IKE_SA_INIT", udp_len)
                return
            # An authenticated peer asked for something out of order.
            plain = self._open(message, now, udp_len)
            if plain is not None:
                self._send_response(
                    hdr.exchange_type,
                    [NotifyPayload(NotifyType.INVALID_SYNTAX)],
                    message_id=hdr.message_id,
                    now=now,
                )
            return
        if hdr.exchange_type == ExchangeType.IKE_SA_INIT:
            self._on_sa_init_request(message, addr, now, udp_len)
            return
        plain = self._open(message, now, udp_len)
        if plain is None:
            return
        inner = self._decode_inner(plain, response=False, now=now)
        if inner is None:
            return
        self._received_event(plain, inner, now, addr, udp_len)
        handler = {
            ExchangeType.IKE_INTERMEDIATE: self._on_intermediate_request,
            ExchangeType.IKE_AUTH: self._on_auth_request,
            ExchangeType.INFORMATIONAL: self._on_informational_request,
        }[ExchangeType(hdr.exchange_type)]
        handler(plain, inner, now)

    # ------------------------------------------------------------------ IKE_SA_INIT

    def _send_sa_init_request(self, now: float) -> None:
        assert self._kex is not None and self._ke_method is not None
        payloads: list[Payload] = []
        if self._cookie:
            # RFC 7296 2.6: the COOKIE notify comes first.
            payloads.append(NotifyPayload(NotifyType.COOKIE, self._cookie))
        payloads += [
            SaPayload(self.config.ike_proposals),
            KePayload(self._ke_method, self._kex.public_data()),
            NoncePayload(self._nonce_i),
        ]
        payloads += self._nat_notifies(b"\x00" * 8)
        if self.config.fragmentation:
            payloads.append(NotifyPayload(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED))
        if any(t.type in ADDKE_TYPES for p in self.config.ike_proposals for t in p.transforms):
            # RFC 9370 2.2.1 / RFC 9242 3.1: additional key exchanges need IKE_INTERMEDIATE.
            payloads.append(NotifyPayload(NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED))
        self.state = S.INITIATOR_EXPECT_SA_INIT_RESPONSE
        self._my_mid = 0  # a retried IKE_SA_INIT is still message 0
        raw = self._send_request(ExchangeType.IKE_SA_INIT, payloads, now=now, protected=False)
        self._sa_init_request = raw

    def _natd(self, spi_r: bytes, addr: Address) -> bytes:
        return ike_auth.nat_detection_hash(self.spi_i, spi_r, _parse_ip(addr[0]), addr[1])

    def _nat_notifies(self, spi_r: bytes) -> list[Payload]:
        src = self._natd(spi_r, self.local)
        dst = self._natd(spi_r, self.remote)
        return [
            NotifyPayload(NotifyType.NAT_DETECTION_SOURCE_IP, src),
            NotifyPayload(NotifyType.NAT_DETECTION_DESTINATION_IP, dst),
        ]

    def _check_nat(self, payloads, spi_r: bytes, source: Address) -> None:
        """RFC 7296 2.23: compare the peer's hashes with the addresses we see."""
        srcs = [
            p.data
            for p in payloads
            if isinstance(p, NotifyPayload) and p.notify_type == NotifyType.NAT_DETECTION_SOURCE_IP
        ]
        dst = _has_notify(payloads, NotifyType.NAT_DETECTION_DESTINATION_IP)
        if srcs:
            seen = self._natd(spi_r, source)
            self._nat_remote = seen not in srcs
        if dst is not None:
            mine = self._natd(spi_r, self.local)
            self._nat_local = dst.data != mine

    def _start_kex(self, method: int) -> None:
        self._ke_method = method
        self._kex = self._registry.create(method, self.config.backend_for(method))

    def _on_sa_init_request(
        self, message: Message, addr: Address, now: float, udp_len: int
    ) -> None:
        payloads = message.payloads
        hdr = message.header
        self._received_event_plain(message, now, addr, udp_len)
        # Error answers to IKE_SA_INIT are unprotected and keep no state (RFC 7296 2.6, 1.2).
        if hdr.spi_r != b"\x00" * 8:
            self._drop(now, "IKE_SA_INIT request with a responder SPI", udp_len)
            return
        self.remote = addr
        self.spi_i = hdr.spi_i  # so even a refusal below is reported under the peer's SPI
        if self.config.require_cookie:
            expected = ike_auth.cookie(
                self.config.cookie_secret, self._nonce_of(payloads), addr[0], hdr.spi_i
            )
            got = payloads[0] if payloads else None
            if not (
                isinstance(got, NotifyPayload)
                and got.notify_type == NotifyType.COOKIE
                and got.data == expected
            ):
                self._stateless_reply(hdr, [NotifyPayload(NotifyType.COOKIE, expected)], now)
                return
        sa = _first(payloads, SaPayload)
        ke = _first(payloads, KePayload)
        nonce = _first(payloads, NoncePayload)
        if sa is None or ke is None or nonce is None:
            self._stateless_reply(hdr, [NotifyPayload(NotifyType.INVALID_SYNTAX)], now)
            self._counters.bump("bad_requests")
            return
        try:
            selected = select_proposal(sa.proposals, self.config.ike_proposals, prefer_ke=ke.method)
            suite = NegotiatedSuite.from_proposal(selected)
        except NoProposalChosen as exc:
            self._stateless_reply(hdr, [NotifyPayload(NotifyType.NO_PROPOSAL_CHOSEN)], now)
            self._fail(NotifyType.NO_PROPOSAL_CHOSEN, str(exc), now=now, sent=True)
            return
        if suite.ke != ke.method:
            # RFC 7296 1.2: tell the initiator which method we selected.
            assert suite.ke is not None
            self._stateless_reply(
                hdr,
                [NotifyPayload(NotifyType.INVALID_KE_PAYLOAD, suite.ke.to_bytes(2, "big"))],
                now,
            )
            self._counters.bump("invalid_ke_sent")
            return
        if (
            suite.rounds
            and _has_notify(payloads, NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED) is None
        ):
            # RFC 9370 2.2.1: ADDKE without IKE_INTERMEDIATE support cannot work.
            self._stateless_reply(hdr, [NotifyPayload(NotifyType.NO_PROPOSAL_CHOSEN)], now)
            self._fail(
                NotifyType.NO_PROPOSAL_CHOSEN,
                "additional key exchanges offered without INTERMEDIATE_EXCHANGE_SUPPORTED",
                now=now,
                sent=True,
            )
            return
        self.spi_i = hdr.spi_i
        self._nonce_i = nonce.data
        self._nonce_r = os.urandom(self.config.nonce_size)
        self._peer_fragmentation = (
            _has_notify(payloads, NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) is not None
        )
        self._peer_intermediate = (
            _has_notify(payloads, NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED) is not None
        )
        self._check_nat(payloads, b"\x00" * 8, addr)
        self._start_kex(ke.method)
        assert self._kex is not None
        try:
            ke_data, secret = self._kex.respond(ke.data)
        except ProtocolError as exc:
            self._stateless_reply(hdr, [NotifyPayload(NotifyType.INVALID_SYNTAX)], now)
            self._fail(NotifyType.INVALID_SYNTAX, f"bad KEi: {exc}", now=now, sent=True, round=0)
            return
        self._events.append(KeyExchangeCompleted(ke.method, 0, secret))
        out: list[Payload] = [
            SaPayload((selected,)),
            KePayload(ke.method, ke_data),
            NoncePayload(self._nonce_r),
        ]
        self.remote = addr
        out += self._nat_notifies(self.spi_r)
        if self.config.fragmentation and self._peer_fragmentation:
            out.append(NotifyPayload(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED))
        if self._peer_intermediate and suite.rounds:
            out.append(NotifyPayload(NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED))
        self._install_keys(suite, secret)
        self._rounds = suite.rounds
        self._round_index = 0
        self._sa_init_request = message.raw
        raw = self._send_response(
            ExchangeType.IKE_SA_INIT,
            out,
            message_id=0,
            now=now,
            protected=False,
            request_raw=message.raw,
        )
        self._sa_init_response = raw
        self._half_open_deadline = now + self.config.half_open_timeout
        self.state = (
            S.RESPONDER_EXPECT_INTERMEDIATE_REQUEST
            if self._rounds
            else S.RESPONDER_EXPECT_AUTH_REQUEST
        )

    @staticmethod
    def _nonce_of(payloads) -> bytes:
        n = _first(payloads, NoncePayload)
        return n.data if n is not None else b""

    def _stateless_reply(self, hdr: IkeHeader, payloads: list[Payload], now: float) -> None:
        """Answer an IKE_SA_INIT request with an unprotected notify and keep no state."""
        header = IkeHeader(
            hdr.spi_i, b"\x00" * 8, 0, ExchangeType.IKE_SA_INIT, HeaderFlag.RESPONSE, hdr.message_id
        )
        raw = encode_message(header, payloads)
        # Back to where the request came from, marked like it (RFC 3948 2.2): this SA may
        # not even have a peer address yet.
        addr, local = self._rx_path
        marker = NON_ESP_MARKER if self._uses_marker(addr, local) else b""
        self._out.append((marker + raw, addr))
        types = tuple(int(p.payload_type) for p in payloads)
        event = self._sent_event(header, (raw,), types, now, len(raw))
        self._events.append(
            replace(event, datagram_sizes=(len(marker) + len(raw),), destination=addr)
        )

    def _on_sa_init_response(
        self, message: Message, addr: Address, now: float, udp_len: int
    ) -> None:
        payloads = message.payloads
        hdr = message.header
        cookie = _has_notify(payloads, NotifyType.COOKIE)
        if cookie is not None:
            self._received_event_plain(message, now, addr, udp_len)
            self._request = None
            self._cookie = cookie.data
            self._counters.bump("cookies_received")
            self._send_sa_init_request(now)
            return
        invalid_ke = _has_notify(payloads, NotifyType.INVALID_KE_PAYLOAD)
        if invalid_ke is not None:
            wanted = int.from_bytes(invalid_ke.data[:2], "big") if len(invalid_ke.data) >= 2 else -1
            offered = {
                t.id
                for p in self.config.ike_proposals
                for t in p.transforms
                if t.type == TransformType.KE
            }
            self._received_event_plain(message, now, addr, udp_len)
            if wanted not in offered or wanted == self._ke_method:
                self._request = None
                self._fail(
                    NotifyType.INVALID_KE_PAYLOAD,
                    f"responder asked for key exchange method {wanted}, which we did not offer",
                    now=now,
                )
                return
            # RFC 7296 1.2: retry with the method the responder asked for.
            self._request = None
            self._counters.bump("invalid_ke_received")
            self._start_kex(wanted)
            self._send_sa_init_request(now)
            return
        errors = [n for n in message.notifies() if n.notify_type < 16384]
        if errors:
            self._received_event_plain(message, now, addr, udp_len)
            self._request = None
            kind = errors[0].notify_type
            self._fail(kind, f"responder answered {name_of(NotifyType, kind)}", now=now)
            return
        sa = _first(payloads, SaPayload)
        ke = _first(payloads, KePayload)
        nonce = _first(payloads, NoncePayload)
        if (
            sa is None
            or ke is None
            or nonce is None
            or len(sa.proposals) != 1
            or (hdr.spi_r == b"\x00" * 8)
        ):
            self._drop(now, "IKE_SA_INIT response without SA, KE and Nonce", udp_len)
            return
        try:
            suite = check_selected(self.config.ike_proposals, sa.proposals[0])
        except NoProposalChosen as exc:
            self._received_event_plain(message, now, addr, udp_len)
            self._request = None
            self._fail(NotifyType.NO_PROPOSAL_CHOSEN, f"responder chose badly: {exc}", now=now)
            return
        if ke.method != self._ke_method or suite.ke != self._ke_method:
            self._drop(now, "KEr method differs from KEi's", udp_len)
            return
        self._received_event_plain(message, now, addr, udp_len)
        self._request = None
        self.spi_r = hdr.spi_r
        assert self._kex is not None
        try:
            secret = self._kex.complete(ke.data)
        except ProtocolError as exc:
            self._fail(
                NotifyType.INVALID_SYNTAX, f"bad KEr in IKE_SA_INIT: {exc}", now=now, round=0
            )
            return
        self._events.append(KeyExchangeCompleted(ke.method, 0, secret))
        self._nonce_r = nonce.data
        self._sa_init_response = message.raw
        self._peer_fragmentation = (
            _has_notify(payloads, NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) is not None
        )
        self._peer_intermediate = (
            _has_notify(payloads, NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED) is not None
        )
        if suite.rounds and not self._peer_intermediate:
            self._fail(
                NotifyType.NO_PROPOSAL_CHOSEN,
                "responder chose additional key exchanges without IKE_INTERMEDIATE support",
                now=now,
            )
            return
        self._check_nat(payloads, self.spi_r, addr)
        self._float_to_nat_t()
        self._install_keys(suite, secret)
        self._rounds = suite.rounds
        self._round_index = 0
        self._next_initiator_step(now)

    def _install_keys(self, suite: NegotiatedSuite, secret: bytes) -> None:
        if suite.prf is None:
            raise NoProposalChosen("the selected IKE proposal has no PRF")
        prf = get_prf(suite.prf)
        cipher = get_cipher(suite.encr, suite.key_bits, suite.integ)
        seed = skeyseed(prf, self._nonce_i, self._nonce_r, secret)
        keys = derive_ike_keys(
            prf,
            seed,
            self._nonce_i,
            self._nonce_r,
            self.spi_i,
            self.spi_r,
            encr_key_size=cipher.key_size,
            integ_key_size=cipher.integ_key_size,
        )
        self._crypto = _Crypto(suite, prf, cipher, keys)

    def _update_keys(self, secret: bytes) -> None:
        """RFC 9370 2.2.2: SKEYSEED(n) = prf(SK_d(n-1), SK(n) | Ni | Nr), then prf+ again."""
        c = self._crypto
        assert c is not None
        seed = skeyseed_additional(c.prf, c.keys.sk_d, secret, self._nonce_i, self._nonce_r)
        c.keys = derive_ike_keys(
            c.prf,
            seed,
            self._nonce_i,
            self._nonce_r,
            self.spi_i,
            self.spi_r,
            encr_key_size=c.cipher.key_size,
            integ_key_size=c.cipher.integ_key_size,
        )

    # ------------------------------------------------------------------ IKE_INTERMEDIATE

    def _next_initiator_step(self, now: float) -> None:
        if self._round_index < len(self._rounds):
            _, method = self._rounds[self._round_index]
            self._kex = self._registry.create(method, self.config.backend_for(method))
            self._ke_method = method
            self.state = S.INITIATOR_EXPECT_INTERMEDIATE_RESPONSE
            self._send_request(
                ExchangeType.IKE_INTERMEDIATE,
                _ke_payloads(method, self._kex.public_data()),
                now=now,
            )
        else:
            self._send_auth_request(now)

    def _on_intermediate_request(self, plain: UnprotectedMessage, inner, now: float) -> None:
        c = self._crypto
        assert c is not None
        # RFC 9242 3.3.2: IntAuth over this request, with the keys that protected it.
        self._chain_int_auth(plain, initiator=True)
        rnd, method = self._rounds[self._round_index]
        mid = plain.header.message_id
        try:
            ke = _joined_ke(inner)
        except InvalidSyntax as exc:
            self._reject_round(mid, NotifyType.INVALID_SYNTAX, rnd, str(exc), now)
            return
        if ke is None:
            self._reject_round(mid, NotifyType.INVALID_SYNTAX, rnd, "KEi payload missing", now)
            return
        if ke.method != method:
            self._reject_round(
                mid,
                NotifyType.INVALID_SYNTAX,
                rnd,
                f"KEi method {ke.method}, negotiated {method}",
                now,
            )
            return
        kex = self._registry.create(method, self.config.backend_for(method))
        try:
            data, secret = kex.respond(ke.data)
        except ProtocolError as exc:
            # draft-ietf-ipsecme-ikev2-mlkem 2.2: a bad encapsulation key -> INVALID_SYNTAX.
            self._reject_round(mid, NotifyType.INVALID_SYNTAX, rnd, f"bad KEi: {exc}", now)
            return
        sent = self._send_response(
            ExchangeType.IKE_INTERMEDIATE, _ke_payloads(method, data), message_id=mid, now=now
        )
        del sent
        self._events.append(KeyExchangeCompleted(method, rnd, secret))
        # The response went out under the old keys; the next request uses the new ones.
        self._update_keys(secret)
        c.exchanges += 1
        self._round_index += 1
        if self._round_index >= len(self._rounds):
            self.state = S.RESPONDER_EXPECT_AUTH_REQUEST

    def _reject_round(self, mid: int, notify: int, rnd: int, reason: str, now: float) -> None:
        self._send_response(
            ExchangeType.IKE_INTERMEDIATE, [NotifyPayload(notify)], message_id=mid, now=now
        )
        self._fail(notify, f"round {rnd}: {reason}", now=now, sent=True, round=rnd)

    def _on_intermediate_response(self, plain: UnprotectedMessage, inner, now: float) -> None:
        c = self._crypto
        assert c is not None and self._kex is not None
        rnd, method = self._rounds[self._round_index]
        err = next(
            (p for p in inner if isinstance(p, NotifyPayload) and p.notify_type < 16384), None
        )
        if err is not None:
            self._fail(
                err.notify_type,
                f"round {rnd}: responder answered {name_of(NotifyType, err.notify_type)}",
                now=now,
                round=rnd,
            )
            return
        self._chain_int_auth(plain, initiator=False)
        try:
            ke = _joined_ke(inner)
        except InvalidSyntax:
            ke = None
        if ke is None or ke.method != method:
            self._fail(
                NotifyType.INVALID_SYNTAX,
                f"round {rnd}: KEr missing or of the wrong method",
                now=now,
                round=rnd,
            )
            return
        try:
            secret = self._kex.complete(ke.data)
        except ProtocolError as exc:
            # draft-ietf-ipsecme-ikev2-mlkem 2.2: end the exchange, no IKE_AUTH.
            self._fail(
                NotifyType.INVALID_SYNTAX, f"round {rnd}: bad KEr: {exc}", now=now, round=rnd
            )
            return
        self._events.append(KeyExchangeCompleted(method, rnd, secret))
        self._update_keys(secret)
        c.exchanges += 1
        self._round_index += 1
        self._next_initiator_step(now)

    def _chain_int_auth(self, plain_or_sent, *, initiator: bool) -> None:
        """RFC 9242 3.3.2: IntAuth_N = prf(SK_p, IntAuth_(N-1) | A | P) per direction."""
        c = self._crypto
        assert c is not None
        octets = ike_auth.int_auth_octets(
            plain_or_sent.header_bytes
            if isinstance(plain_or_sent, UnprotectedMessage)
            else plain_or_sent.header,
            plain_or_sent.unprotected if isinstance(plain_or_sent, UnprotectedMessage) else b"",
            plain_or_sent.first_inner,
            plain_or_sent.plaintext,
        )
        if initiator:
            c.int_auth_i = ike_auth.int_auth(c.prf, c.keys.sk_pi, c.int_auth_i, octets)
        else:
            c.int_auth_r = ike_auth.int_auth(c.prf, c.keys.sk_pr, c.int_auth_r, octets)

    # ------------------------------------------------------------------ IKE_AUTH

    def _int_auth_tail(self, auth_mid: int) -> bytes:
        c = self._crypto
        assert c is not None
        if c.exchanges == 0:
            return b""
        # RFC 9242 3.3.2: IntAuth = IntAuth_iN | IntAuth_rN | IKE_AUTH message ID.
        return c.int_auth_i + c.int_auth_r + auth_mid.to_bytes(4, "big")

    def _auth_value(self, *, ours: bool, id_body: bytes, auth_mid: int) -> bytes:
        c = self._crypto
        assert c is not None
        i_side = self.is_initiator == ours
        real = self._sa_init_request if i_side else self._sa_init_response
        nonce = self._nonce_r if i_side else self._nonce_i
        sk_p = c.keys.sk_pi if i_side else c.keys.sk_pr
        octets = ike_auth.signed_octets(
            real, nonce, c.prf, sk_p, id_body, self._int_auth_tail(auth_mid)
        )
        return ike_auth.psk_auth(c.prf, self.config.psk, octets)

    def _esp_proposals(self) -> tuple[Proposal, ...]:
        return tuple(
            Proposal(p.number, ProtocolId.ESP, p.transforms, self._child_spi)
            for p in map(without_key_exchanges, self.config.esp_proposals)
        )

    def _send_auth_request(self, now: float) -> None:
        mid = self._my_mid
        idi = IdiPayload(self.config.local_id.id_type, self.config.local_id.data)
        payloads: list[Payload] = [idi]
        if self.config.remote_id is not None:
            payloads.append(IdrPayload(self.config.remote_id.id_type, self.config.remote_id.data))
        payloads.append(
            AuthPayload(
                AuthMethod.SHARED_KEY_MESSAGE_INTEGRITY_CODE,
                self._auth_value(ours=True, id_body=idi.body, auth_mid=mid),
            )
        )
        if self.config.transport_mode:
            payloads.append(NotifyPayload(NotifyType.USE_TRANSPORT_MODE))
        payloads += [
            SaPayload(self._esp_proposals()),
            TsiPayload(self.config.local_ts),
            TsrPayload(self.config.remote_ts),
        ]
        self.state = S.INITIATOR_EXPECT_AUTH_RESPONSE
        self._send_request(ExchangeType.IKE_AUTH, payloads, now=now)

    def _on_auth_request(self, plain: UnprotectedMessage, inner, now: float) -> None:
        mid = plain.header.message_id
        if self._round_index < len(self._rounds):
            self._auth_reject(
                mid, NotifyType.INVALID_SYNTAX, "IKE_AUTH before every additional key exchange", now
            )
            return
        idi = _first(inner, IdiPayload)
        auth = _first(inner, AuthPayload)
        if idi is None or auth is None:
            self._auth_reject(mid, NotifyType.INVALID_SYNTAX, "IKE_AUTH without IDi or AUTH", now)
            return
        peer = Identity(idi.id_type, idi.data)
        if self.config.remote_id is not None and peer != self.config.remote_id:
            self._auth_reject(
                mid,
                NotifyType.AUTHENTICATION_FAILED,
                f"peer identity {peer} is not the configured {self.config.remote_id}",
                now,
            )
            return
        expected = self._auth_value(ours=False, id_body=idi.body, auth_mid=mid)
        if auth.method != AuthMethod.SHARED_KEY_MESSAGE_INTEGRITY_CODE or auth.data != expected:
            self._auth_reject(
                mid,
                NotifyType.AUTHENTICATION_FAILED,
                "the initiator's AUTH payload does not verify",
                now,
            )
            return
        self._peer_id = peer
        idr = IdrPayload(self.config.local_id.id_type, self.config.local_id.data)
        out: list[Payload] = [
            idr,
            AuthPayload(
                AuthMethod.SHARED_KEY_MESSAGE_INTEGRITY_CODE,
                self._auth_value(ours=True, id_body=idr.body, auth_mid=mid),
            ),
        ]
        child_event = None
        child_error = None
        try:
            child_payloads, child_event = self._respond_child(inner)
            out += child_payloads
        except (NoProposalChosen, TsUnacceptable, InvalidSyntax) as exc:
            assert exc.notify_type is not None
            out.append(NotifyPayload(exc.notify_type))
            child_error = exc
        self._send_response(ExchangeType.IKE_AUTH, out, message_id=mid, now=now)
        self._established(now)
        if child_event is not None:
            self._events.append(child_event)
        elif child_error is not None:
            self._counters.bump("child_sa_failed")

    def _respond_child(self, inner) -> tuple[list[Payload], ChildSaEstablished]:
        sa = _first(inner, SaPayload)
        tsi = _first(inner, TsiPayload)
        tsr = _first(inner, TsrPayload)
        if sa is None or tsi is None or tsr is None:
            raise InvalidSyntax("IKE_AUTH request without SA, TSi and TSr")
        # RFC 7296 1.2: the Child SA created in IKE_AUTH has no key exchange of its own.
        offered = tuple(map(without_key_exchanges, sa.proposals))
        configured = tuple(map(without_key_exchanges, self.config.esp_proposals))
        selected = select_proposal(offered, configured)
        peer_spi = selected.spi
        if len(peer_spi) != 4:
            raise InvalidSyntax("ESP proposal without a 4-byte SPI")
        ts_i = narrow(tsi.selectors, self.config.remote_ts)
        ts_r = narrow(tsr.selectors, self.config.local_ts)
        if not ts_i or not ts_r:
            raise TsUnacceptable("no traffic selectors in common")
        transport = (
            _has_notify(inner, NotifyType.USE_TRANSPORT_MODE) is not None
            and self.config.transport_mode
        )
        mine = Proposal(selected.number, ProtocolId.ESP, selected.transforms, self._child_spi)
        payloads: list[Payload] = []
        if transport:
            payloads.append(NotifyPayload(NotifyType.USE_TRANSPORT_MODE))
        payloads += [SaPayload((mine,)), TsiPayload(ts_i), TsrPayload(ts_r)]
        event = self._child_event(selected, peer_spi, self._child_spi, ts_i, ts_r, transport)
        return payloads, event

    def _child_event(
        self, proposal: Proposal, spi_i: bytes, spi_r: bytes, ts_i, ts_r, transport: bool
    ) -> ChildSaEstablished:
        c = self._crypto
        assert c is not None
        suite = NegotiatedSuite.from_proposal(proposal)
        keys = derive_child_keys(
            c.prf,
            c.keys.sk_d,
            self._nonce_i,
            self._nonce_r,
            encr_key_size=encr_key_size(suite.encr, suite.key_bits),
            integ_key_size=integ_key_size(suite.integ),
        )
        return ChildSaEstablished(spi_i, spi_r, suite, keys, tuple(ts_i), tuple(ts_r), transport)

    def _auth_reject(self, mid: int, notify: int, reason: str, now: float) -> None:
        self._send_response(ExchangeType.IKE_AUTH, [NotifyPayload(notify)], message_id=mid, now=now)
        self._fail(notify, reason, now=now, sent=True)

    def _on_auth_response(self, plain: UnprotectedMessage, inner, now: float) -> None:
        mid = plain.header.message_id
        idr = _first(inner, IdrPayload)
        auth = _first(inner, AuthPayload)
        if idr is None or auth is None:
            err = next(
                (p for p in inner if isinstance(p, NotifyPayload) and p.notify_type < 16384), None
            )
            kind = err.notify_type if err is not None else NotifyType.INVALID_SYNTAX
            self._fail(kind, f"responder answered {name_of(NotifyType, kind)}", now=now)
            return
        peer = Identity(idr.id_type, idr.data)
        expected = self._auth_value(ours=False, id_body=idr.body, auth_mid=mid)
        bad_id = self.config.remote_id is not None and peer != self.config.remote_id
        if (
            bad_id
            or auth.method != AuthMethod.SHARED_KEY_MESSAGE_INTEGRITY_CODE
            or (auth.data != expected)
        ):
            # RFC 7296 2.21.2: tell the responder in a new INFORMATIONAL exchange.
            reason = (
                f"responder identity {peer} is not {self.config.remote_id}"
                if bad_id
                else "the responder's AUTH payload does not verify"
            )
            self._send_request(
                ExchangeType.INFORMATIONAL,
                [NotifyPayload(NotifyType.AUTHENTICATION_FAILED)],
                now=now,
            )
            self._request = None  # we do not wait for the answer
            self._fail(NotifyType.AUTHENTICATION_FAILED, reason, now=now, sent=True)
            return
        self._peer_id = peer
        self._established(now)
        sa = _first(inner, SaPayload)
        tsi = _first(inner, TsiPayload)
        tsr = _first(inner, TsrPayload)
        if sa is None or tsi is None or tsr is None or len(sa.proposals) != 1:
            self._counters.bump("child_sa_failed")
            return
        try:
            check_selected(self._esp_proposals(), sa.proposals[0])
        except NoProposalChosen:
            self._counters.bump("child_sa_failed")
            return
        transport = _has_notify(inner, NotifyType.USE_TRANSPORT_MODE) is not None
        self._events.append(
            self._child_event(
                sa.proposals[0],
                self._child_spi,
                sa.proposals[0].spi,
                tsi.selectors,
                tsr.selectors,
                transport,
            )
        )

    def _established(self, now: float) -> None:
        c = self._crypto
        assert c is not None and self._peer_id is not None
        self.state = S.ESTABLISHED
        self._half_open_deadline = None
        self._events.append(
            IkeSaEstablished(
                now,
                self.spi_i,
                self.spi_r,
                c.suite,
                c.keys,
                self.config.local_id,
                self._peer_id,
                self._nonce_i,
                self._nonce_r,
                c.exchanges,
                self._nat_local,
                self._nat_remote,
            )
        )
        self._release_handshake_state()

    def _release_handshake_state(self) -> None:
        """Free what only the handshake needed, so an established SA stays small.

        The IKE_SA_INIT messages and IntAuth values were only needed for AUTH, the key
        exchange object only for its round.
        Kept: keys, nonces (first Child SA KEYMAT, RFC 7296 2.17) and the cached last
        response (answering a retransmitted request, RFC 7296 2.1).
        """
        self._sa_init_request = self._sa_init_response = b""
        self._kex = None
        self._cookie = b""
        if self._crypto is not None:
            self._crypto.int_auth_i = self._crypto.int_auth_r = b""

    # ------------------------------------------------------------------ INFORMATIONAL

    def _on_informational_request(self, plain: UnprotectedMessage, inner, now: float) -> None:
        mid = plain.header.message_id
        deleted = any(
            isinstance(p, DeletePayload) and p.protocol_id == ProtocolId.IKE for p in inner
        )
        failed = _has_notify(inner, NotifyType.AUTHENTICATION_FAILED)
        self._send_response(ExchangeType.INFORMATIONAL, [], message_id=mid, now=now)
        if failed is not None and self.state != S.FAILED:
            self._fail(
                NotifyType.AUTHENTICATION_FAILED, "peer reported AUTHENTICATION_FAILED", now=now
            )
        elif deleted and self.state not in TERMINAL:
            self.state = S.DELETED
            self._events.append(IkeSaDeleted(now, by_peer=True))

    def _on_informational_response(self, plain: UnprotectedMessage, inner, now: float) -> None:
        if self.state == S.DELETING:
            self.state = S.DELETED
            self._events.append(IkeSaDeleted(now, by_peer=False))

    # ------------------------------------------------------------------ sending

    def _uses_marker(self, addr: Address, local: Address | None = None) -> bool:
        # strongSwan (and RFC 3948 2.2): the marker goes on every IKE message when
        # neither port is 500.
        return (local or self.local)[1] != IKE_PORT and addr[1] != IKE_PORT

    def _adopt_path(self) -> None:
        """Reply on the path an authenticated message came in on."""
        addr, local = self._rx_path
        if (addr, local) != (self.remote, self.local):
            self.remote, self.local = addr, local
            self._counters.bump("path_changes")

    def _float_to_nat_t(self) -> None:
        """RFC 7296 2.23: after IKE_SA_INIT, move from port 500 to the NAT-T port when a
        NAT was detected (or always, with ``force_nat_t``, as strongSwan does with MOBIKE)."""
        cfg = self.config
        if not (self._nat_local or self._nat_remote or cfg.force_nat_t):
            return
        if self.local[1] == IKE_PORT and self.remote[1] == IKE_PORT:
            self.local = (self.local[0], cfg.nat_t_port)
            self.remote = (self.remote[0], cfg.nat_t_port)

    def _emit_datagrams(self, datagrams: list[bytes]) -> None:
        for d in datagrams:
            self._out.append((d, self.remote))

    def _build(
        self, exchange: int, payloads: list[Payload], *, response: bool, mid: int, protected: bool
    ):
        flags = (_INITIATOR if self.is_initiator else 0) | (_RESPONSE if response else 0)
        header = IkeHeader(self.spi_i, self.spi_r, 0, exchange, int(flags), mid)
        if not protected:
            raw = encode_message(header, payloads)
            return header, (raw,), raw, tuple(int(p.payload_type) for p in payloads), None
        c = self._crypto
        assert c is not None
        keys = c.keys
        sk_e, sk_a = (keys.sk_ei, keys.sk_ai) if self.is_initiator else (keys.sk_er, keys.sk_ar)
        frag = (
            self.config.fragment_size
            if (self.config.fragmentation and self._peer_fragmentation)
            else None
        )
        pm = protect(header, payloads, c.cipher, sk_e, sk_a, fragment_size=frag, ipv6=self._ipv6)
        types = (int(PayloadType.SKF if len(pm.messages) > 1 else PayloadType.SK), *pm.inner_types)
        return header, pm.messages, b"", types, pm

    def _sent_event(
        self, header: IkeHeader, messages: tuple[bytes, ...], types, now: float, ike_bytes: int
    ) -> MessageSent:
        marker = len(NON_ESP_MARKER) if self._uses_marker(self.remote) else 0
        fragmented = len(messages) > 1
        return MessageSent(
            now,
            header.exchange_type,
            header.message_id,
            header.is_response,
            tuple(types),
            ike_bytes,
            tuple(len(m) for m in messages) if fragmented else (ike_bytes,),
            tuple(len(m) + marker for m in messages),
            destination=self.remote,
        )

    def _send(
        self,
        exchange: int,
        payloads: list[Payload],
        *,
        response: bool,
        mid: int,
        now: float,
        protected: bool,
    ) -> tuple[bytes, list[bytes], MessageSent]:
        """Build, queue and report one message; return its bytes, datagrams and event."""
        header, messages, raw, types, pm = self._build(
            exchange, payloads, response=response, mid=mid, protected=protected
        )
        if pm is not None and exchange == ExchangeType.IKE_INTERMEDIATE:
            # RFC 9242 3.3.2: the sender chains IntAuth over what it protected.
            self._chain_int_auth(pm, initiator=self.is_initiator)
        marker = NON_ESP_MARKER if self._uses_marker(self.remote) else b""
        datagrams = [marker + m for m in messages]
        event = self._sent_event(header, messages, types, now, pm.ike_bytes if pm else len(raw))
        self._emit_datagrams(datagrams)
        self._events.append(event)
        return raw, datagrams, event

    def _send_request(
        self, exchange: int, payloads: list[Payload], *, now: float, protected: bool = True
    ) -> bytes:
        mid = self._my_mid
        self._my_mid += 1
        raw, datagrams, event = self._send(
            exchange, payloads, response=False, mid=mid, now=now, protected=protected
        )
        self._request = _Outgoing(
            mid, exchange, datagrams, event, now, deadline=now + self.config.retransmit_timeout
        )
        return raw

    def _send_response(
        self,
        exchange: int,
        payloads: list[Payload],
        *,
        message_id: int,
        now: float,
        protected: bool = True,
        request_raw: bytes = b"",
    ) -> bytes:
        raw, datagrams, event = self._send(
            exchange, payloads, response=True, mid=message_id, now=now, protected=protected
        )
        self._response = _CachedResponse(message_id, exchange, datagrams, event, request_raw)
        self._peer_mid = message_id + 1
        return raw

    # ------------------------------------------------------------------ receiving helpers

    def _open(self, message: Message, now: float, udp_len: int) -> UnprotectedMessage | None:
        """Verify and decrypt (and reassemble) a protected message; None when not complete."""
        c = self._crypto
        if c is None:
            self._drop(now, "protected message before keys exist", udp_len)
            return None
        keys = c.keys
        sk_e, sk_a = (keys.sk_er, keys.sk_ar) if self.is_initiator else (keys.sk_ei, keys.sk_ai)
        last = message.payloads[-1] if message.payloads else None
        try:
            if isinstance(last, SkfPayload):
                plain = self._reassembler.add(message, c.cipher, sk_e, sk_a, now=now)
            else:
                plain = unprotect(message, c.cipher, sk_e, sk_a)
            self._adopt_path()
            return plain
        except IntegrityCheckFailed:
            # RFC 7296 2.21.2: an integrity failure is dropped without a reply.
            self._drop(now, "integrity check failed", udp_len)
        except ProtocolError as exc:
            self._drop(now, f"unusable protected message: {exc}", udp_len)
        return None

    def _decode_inner(self, plain: UnprotectedMessage, *, response: bool, now: float):
        try:
            return decode_payloads(plain.first_inner, plain.plaintext)
        except ProtocolError as exc:
            if response:
                self._drop(now, f"bad payloads in protected response: {exc}", plain.ike_bytes)
                return None
            # RFC 7296 2.21.2/3.10.1: answer a bad protected request with its error.
            assert exc.notify_type is not None
            self._send_response(
                plain.header.exchange_type,
                [NotifyPayload(exc.notify_type, exc.notify_data)],
                message_id=plain.header.message_id,
                now=now,
            )
            self._counters.bump("bad_requests")
            if self.state in (
                S.RESPONDER_EXPECT_INTERMEDIATE_REQUEST,
                S.RESPONDER_EXPECT_AUTH_REQUEST,
            ):
                self._fail(exc.notify_type, f"bad request: {exc}", now=now, sent=True)
            return None

    def _received_event(self, plain: UnprotectedMessage, inner, now, addr, udp_len) -> None:
        marker = 4 if self._uses_marker(addr) else 0
        first_type = PayloadType.SKF if plain.fragments else PayloadType.SK
        sizes = plain.fragments or (plain.ike_bytes,)
        self._events.append(
            MessageReceived(
                now,
                plain.header.exchange_type,
                plain.header.message_id,
                plain.header.is_response,
                (int(first_type), *(int(p.payload_type) for p in inner)),
                plain.ike_bytes,
                tuple(sizes),
                tuple(s + marker for s in sizes),
                source=addr,
            )
        )

    def _received_event_plain(self, message: Message, now, addr, udp_len) -> None:
        self._events.append(
            MessageReceived(
                now,
                message.header.exchange_type,
                message.header.message_id,
                message.header.is_response,
                tuple(int(p.payload_type) for p in message.payloads),
                len(message.raw),
                (len(message.raw),),
                (udp_len,),
                source=addr,
            )
        )

    def _bad_unparsed(self, data: bytes, exc: ProtocolError, addr: Address, now: float) -> None:
        """A datagram that does not even decode: answer only an unprotected IKE_SA_INIT request."""
        self._drop(now, f"undecodable message: {exc}", len(data))
        if (
            not self.is_initiator
            and self.state == S.RESPONDER_EXPECT_SA_INIT_REQUEST
            and len(data) >= IKE_HEADER_LENGTH
            and data[18] == ExchangeType.IKE_SA_INIT
            and not data[19] & HeaderFlag.RESPONSE
            and exc.notify_type is not None
        ):
            hdr = IkeHeader(data[:8], b"\x00" * 8, 0, ExchangeType.IKE_SA_INIT, 0, 0)
            self._stateless_reply(hdr, [NotifyPayload(exc.notify_type, exc.notify_data)], now)

    def _handle_fault(self, message: Message, exc: ProtocolError, now: float) -> None:
        """A ProtocolError escaped a handler: fail the SA with the fault, never raise."""
        self._counters.bump("faults")
        if self.state not in TERMINAL:
            self._fail(exc.notify_type, f"{type(exc).__name__}: {exc}", now=now)

    def _drop(self, now: float, reason: str, size: int) -> None:
        self._counters.bump("dropped")
        self._events.append(DatagramDropped(now, reason, size))

    def _fail(
        self,
        notify: int | None,
        reason: str,
        *,
        now: float,
        sent: bool = False,
        round: int | None = None,
    ) -> None:
        if self.state in TERMINAL:
            return
        self.state = S.FAILED
        if not sent:
            self._request = None
        self._events.append(IkeSaFailed(now, notify, reason, round))


def _retransmitted(event: MessageSent, now: float) -> MessageSent:
    return MessageSent(
        now,
        event.exchange_type,
        event.message_id,
        event.is_response,
        event.payload_types,
        event.ike_bytes,
        event.fragment_ike_bytes,
        event.datagram_sizes,
        True,
        event.destination,
    )
