"""Configuration of one IKE SA: who we are, what we offer, how we behave on the wire."""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from ..constants import IdType, ProtocolId, TransformType
from ..crypto.certs import Credential, TrustStore
from ..crypto.prf import PRF_KEY_SIZES
from ..errors import ConfigurationError
from ..wire.payloads import Proposal, TrafficSelector


@dataclass(frozen=True, slots=True)
class Identity:
    """An IKE identity (RFC 7296 3.5): the ID type and its data as sent on the wire."""

    id_type: int
    data: bytes

    @classmethod
    def parse(cls, text: str) -> Identity:
        """Read an identity the way strongSwan does (each text parsed once per process).

        An IPv4 or IPv6 address gives ID_IPV4_ADDR / ID_IPV6_ADDR, ``user@host`` gives
        ID_RFC822_ADDR, ``keyid:<hex>`` gives ID_KEY_ID, ``fqdn:name`` or any other
        name gives ID_FQDN.
        """
        found = _parse_identity(text)
        return found if cls is Identity else cls(found.id_type, found.data)

    def __str__(self) -> str:
        if self.id_type in (IdType.ID_IPV4_ADDR, IdType.ID_IPV6_ADDR):
            try:
                return str(ipaddress.ip_address(self.data))
            except ValueError:
                return self.data.hex()
        if self.id_type == IdType.ID_KEY_ID:
            return "keyid:" + self.data.hex()
        return self.data.decode("utf-8", "replace")


@functools.lru_cache(maxsize=1024)
def _parse_identity(text: str) -> Identity:
    # A frozen value: the runner and the daemon ask for the same few names all the time
    # (a bad one raises every time: exceptions are not cached).
    if text.startswith("keyid:"):
        try:
            return Identity(IdType.ID_KEY_ID, bytes.fromhex(text[6:]))
        except ValueError:
            raise ConfigurationError(
                f"identity {text!r}: keyid: must be followed by hex digits", field="id"
            ) from None
    if text.startswith("fqdn:"):
        return Identity(IdType.ID_FQDN, text[5:].encode())
    if text.startswith("email:"):
        return Identity(IdType.ID_RFC822_ADDR, text[6:].encode())
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        addr = None
    if addr is not None:
        kind = IdType.ID_IPV4_ADDR if addr.version == 4 else IdType.ID_IPV6_ADDR
        return Identity(kind, addr.packed)
    if not text:
        raise ConfigurationError("an identity must not be empty", field="id")
    if "@" in text:
        return Identity(IdType.ID_RFC822_ADDR, text.encode())
    return Identity(IdType.ID_FQDN, text.encode())


_EVERYTHING = (TrafficSelector.from_network("0.0.0.0/0"), TrafficSelector.from_network("::/0"))
"""Parsed once: frozen values, and ``ipaddress`` took most of a configuration's making."""

SEND_CERT = ("ifasked", "always", "never")
PPK_MODES = ("rfc8784", "rfc9867")
"""How the PPK is agreed: at IKE_AUTH (RFC 8784) or in IKE_INTERMEDIATE (RFC 9867)."""


PRESETS = ("pqike", "strongswan", "minimal")
"""Peer-behaviour presets (``IkeConfiguration.preset``): which optional payloads we send.

``pqike``: what pqike always sent (NAT detection, fragmentation support, traffic
selectors for all IPv4 and IPv6 traffic). ``strongswan``: the notifies, selectors and
port float of strongSwan 6's defaults, so that the messages are as long as strongSwan's.
``minimal``: nothing optional, the analytic minimum of each message."""


def _default_ts() -> tuple[TrafficSelector, ...]:
    return _EVERYTHING


@dataclass(frozen=True)
class IkeConfiguration:
    """Everything one side needs to run an IKE SA. Build it once; ``IkeSa`` never changes it."""

    ike_proposals: tuple[Proposal, ...]
    """IKE proposals we offer (initiator) or accept (responder), in preference order.
    Use ``pqike.proposal.parse_proposals('aes256gcm16-prfsha384-x25519')``."""

    esp_proposals: tuple[Proposal, ...]
    """ESP proposals for the first Child SA, created in IKE_AUTH."""

    local_id: Identity
    """Our identity, sent in IDi or IDr."""

    psk: bytes = b""
    """Pre-shared key for AUTH method 2 (RFC 7296 2.15): what we authenticate with when
    ``credential`` is not set, and what a peer that sends a PSK AUTH must know."""

    remote_id: Identity | None = None
    """The peer identity we require; ``None`` accepts any identity that authenticates."""

    local_ts: tuple[TrafficSelector, ...] = ()
    """Our side of the first Child SA's traffic selectors (TSi for the initiator).
    Empty: the preset's default, 0.0.0.0/0 and ::/0 for ``pqike``; for ``strongswan``
    and ``minimal`` our own address alone (/32 or /128), as strongSwan's ``dynamic``."""

    remote_ts: tuple[TrafficSelector, ...] = ()
    """The peer's side (TSr for the initiator); empty: as ``local_ts``, with the peer's
    address for ``dynamic``."""

    preset: str = "pqike"
    """Which optional payloads we send, one of ``PRESETS``. ``strongswan`` adds what
    strongSwan 6 sends with its defaults: SIGNATURE_HASH_ALGORITHMS (RFC 7427 4) even
    for a PSK, REDIRECT_SUPPORTED (RFC 5685), CHILDLESS_IKEV2_SUPPORTED (RFC 6023),
    MULTIPLE_AUTH_SUPPORTED (RFC 4739), INITIAL_CONTACT (RFC 7296 2.4),
    ESP_TFC_PADDING_NOT_SUPPORTED (RFC 7296 1.3.1), MOBIKE_SUPPORTED and
    ADDITIONAL_IP*_ADDRESS (RFC 4555 3), EAP_ONLY_AUTHENTICATION (RFC 5998) and
    IKEV2_MESSAGE_ID_SYNC_SUPPORTED (RFC 6311), ``dynamic`` traffic selectors and the
    float to port 4500 (``force_nat_t``). These are announcements only: pqike does not
    implement MOBIKE, redirection, multiple authentication or message ID sync.
    ``minimal`` leaves out everything optional: NAT detection, IKEV2_FRAGMENTATION_SUPPORTED
    (``fragmentation`` is off unless set), IDr in the IKE_AUTH request, and sends one
    traffic selector per side."""

    additional_addresses: tuple[str, ...] = ()
    """Our other addresses, sent as ADDITIONAL_IP4/6_ADDRESS with MOBIKE_SUPPORTED in
    IKE_AUTH by the ``strongswan`` preset (RFC 4555 3.4; strongSwan lists every address
    of its interfaces but the one in use). Ignored by the other presets."""

    transport_mode: bool = False
    """Ask for transport mode (USE_TRANSPORT_MODE, RFC 7296 1.3.1) instead of tunnel mode."""

    fragmentation: bool | None = None
    """Announce IKEV2_FRAGMENTATION_SUPPORTED and fragment large protected messages
    (RFC 7383). ``None``: yes, except with the ``minimal`` preset."""

    fragment_size: int = 1280
    """Largest IP datagram we send for a fragmented message (strongSwan's default: 1280)."""

    nonce_size: int = 32
    """Bytes of nonce we send (RFC 7296 2.10: at least half the PRF key size; strongSwan: 32)."""

    retransmit_timeout: float = 4.0
    """Seconds before the first retransmission of a request (strongSwan: 4 s)."""

    retransmit_base: float = 1.8
    """Back-off factor between retransmissions (strongSwan: 1.8)."""

    retransmit_tries: int = 5
    """Retransmissions before giving up (strongSwan: 5)."""

    require_cookie: bool = False
    """Responder: always ask for a COOKIE before creating state (RFC 7296 2.6). An
    ``IkeEndpoint`` also asks on its own once too many IKE SAs are half-open
    (``EndpointLimits.cookie_threshold``, strongSwan's ``cookie_threshold``: 30)."""

    cookie_secret: bytes | None = None
    """A fixed COOKIE key for tests only (at least 16 bytes); ``None``, the default, uses
    a random secret per process, rotated as RFC 7296 2.6 describes (strongSwan draws its
    cookie secret at random too and has no setting for it). A known secret lets anyone
    forge cookies: never set it in a deployment."""

    nat_t_port: int = 4500
    """The NAT-T port we move to from port 500 (RFC 7296 2.23, RFC 3948)."""

    force_nat_t: bool | None = None
    """Move to the NAT-T port after IKE_SA_INIT even without a NAT, as strongSwan does
    when MOBIKE is enabled; otherwise only when NAT detection finds a NAT. ``None``:
    yes with the ``strongswan`` preset, no otherwise."""

    half_open_timeout: float = 30.0
    """Responder: seconds from the IKE_SA_INIT response to a finished IKE_AUTH before the
    half-open IKE SA is given up (strongSwan's ``half_open_timeout``: 30 s)."""

    rekey_time: float = 14400.0
    """Seconds after establishment (or the last rekey) before we rekey the IKE SA with
    CREATE_CHILD_SA (RFC 7296 2.18); 0 never rekeys. strongSwan's ``rekey_time``: 4 h."""

    over_time: float | None = None
    """Seconds past ``rekey_time`` before an IKE SA whose rekey did not succeed is given
    up (its hard lifetime). ``None``: 10 % of ``rekey_time``, strongSwan's default."""

    rand_time: float | None = None
    """Up to this many seconds are taken at random from ``rekey_time``, so that two
    peers rarely rekey at once (RFC 7296 2.8.2). ``None``: ``over_time``, as strongSwan."""

    child_rekey_time: float = 3600.0
    """Seconds before a Child SA is rekeyed (RFC 7296 2.8); 0 never rekeys.
    strongSwan's ``children.<child>.rekey_time``: 1 h."""

    child_life_time: float | None = None
    """Hard lifetime of a Child SA: deleted when it was not rekeyed by then. ``None``:
    110 % of ``child_rekey_time``, strongSwan's default."""

    child_rand_time: float | None = None
    """Random jitter taken from ``child_rekey_time``. ``None``: ``child_life_time -
    child_rekey_time``, as strongSwan."""

    dpd_delay: float = 0.0
    """Seconds without any message from the peer before we check its liveness with an
    empty INFORMATIONAL request (RFC 7296 1.4); the peer is declared dead when the
    retransmission schedule runs out. 0 disables it, strongSwan's default."""

    max_fragments: int = 2048
    """Most fragments accepted for one message; more and the message is dropped (RFC 7383 2.6).
    2048 fragments of a 1280-byte datagram carry the largest Classic McEliece key."""

    max_message_size: int = 2 << 20
    """Largest reassembled message accepted, in bytes (2 MiB)."""

    reassembly_timeout: float = 30.0
    """Seconds an incomplete fragmented message may wait for its missing fragments."""

    credential: Credential | None = None
    """Our private key and certificate chain: we then authenticate with a digital
    signature (RFC 7427; method 14, or RFC 7296's 1 and 9-11 for a peer that announced
    no hash algorithms) and send CERT payloads (RFC 7296 3.6). ``None``: PSK."""

    trust: TrustStore | None = None
    """The CAs a peer's certificate must chain up to; with it we accept signature AUTH,
    send CERTREQ naming them (RFC 7296 3.7) and SIGNATURE_HASH_ALGORITHMS (RFC 7427 4).
    ``None``: only a PSK AUTH is accepted."""

    validation_clock: Callable[[], dt.datetime] | None = None
    """The wall-clock time (timezone-aware) the peer's certificates are checked against,
    given by the application (``pqike.clock.utc_now``; tests pass a fixed time).
    Required with ``trust``: the core reads no clock of its own, and keeps the
    monotonic ``now`` it is handed for everything else."""

    send_cert: str = "ifasked"
    """When to send our certificates: ``ifasked`` (a CERTREQ came), ``always`` or
    ``never`` (strongSwan's ``send_cert``, default ``ifasked``)."""

    rsa_pss: bool = False
    """Sign with RSASSA-PSS rather than PKCS#1 v1.5 when our key is RSA (strongSwan's
    ``charon.rsa_pss``, default no). Both are always accepted."""

    ppk: bytes = b""
    """A post-quantum preshared key (RFC 8784): mixed into SK_d, SK_pi and SK_pr; empty
    for none."""

    ppk_id: bytes = b""
    """The PPK's identity, sent in PPK_IDENTITY (type PPK_ID_FIXED, as strongSwan)."""

    ppk_required: bool = False
    """Refuse an IKE SA without the PPK (RFC 8784 3: mandatory); otherwise the
    initiator adds NO_PPK_AUTH so that a responder without the PPK can go on without it
    (strongSwan's ``ppk_required``, default no)."""

    ppk_mode: str = "rfc8784"
    """``rfc8784``: the PPK is mixed in at IKE_AUTH (USE_PPK, then PPK_IDENTITY and
    NO_PPK_AUTH there; only SK_d, SK_pi and SK_pr change). ``rfc9867``: USE_PPK_INT in
    IKE_SA_INIT and the PPK agreed in an IKE_INTERMEDIATE exchange with PPK_IDENTITY_KEY
    (RFC 9867 3), after which every IKE SA key is PPK-derived, SK_e and SK_a included, so
    IKE_AUTH and the identities in it are protected too. An ``rfc9867`` initiator also
    sends USE_PPK, and an ``rfc9867`` responder answers a USE_PPK-only initiator with
    USE_PPK: a peer that knows only RFC 8784 (strongSwan) still gets the PPK, the RFC 8784
    way (RFC 9867 3 lets a peer offer both; a responder answers one)."""

    ppks: tuple[tuple[bytes, bytes], ...] = ()
    """More PPKs as ``((ppk_id, ppk), ...)``, after ``ppk_id``/``ppk``. With ``rfc9867``
    an initiator offers them all, one PPK_IDENTITY_KEY each, in this order, and a
    responder accepts any of them (RFC 9867 3: several may be offered, the responder
    picks one). RFC 8784 offers one PPK only, so there only ``ppk`` is used."""

    kex_backends: tuple[tuple[int, str], ...] = ()
    """Backend per key exchange method as ``((method, backend_name), ...)``; others: default."""

    impairments: frozenset[str] = frozenset()
    """Deliberate protocol violations to probe a peer with (``pqike.ike.impair``); empty
    for normal behaviour."""

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigurationError(
                f"preset must be one of {', '.join(PRESETS)}, not {self.preset!r}", field="preset"
            )
        # Fill in what the preset decides, so that the rest of the core reads plain values.
        if self.fragmentation is None:
            object.__setattr__(self, "fragmentation", self.preset != "minimal")
        if self.force_nat_t is None:
            object.__setattr__(self, "force_nat_t", self.preset == "strongswan")
        if self.preset == "pqike":
            if not self.local_ts:
                object.__setattr__(self, "local_ts", _default_ts())
            if not self.remote_ts:
                object.__setattr__(self, "remote_ts", _default_ts())
        for address in self.additional_addresses:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ConfigurationError(
                    f"additional_addresses: {address!r} is not an IP address",
                    field="additional_addresses",
                ) from None
        if not self.ike_proposals:
            raise ConfigurationError("ike_proposals must not be empty", field="ike_proposals")
        if any(p.protocol_id != ProtocolId.IKE for p in self.ike_proposals):
            raise ConfigurationError("ike_proposals must be IKE proposals", field="ike_proposals")
        if not self.esp_proposals:
            raise ConfigurationError("esp_proposals must not be empty", field="esp_proposals")
        if any(p.protocol_id != ProtocolId.ESP for p in self.esp_proposals):
            raise ConfigurationError("esp_proposals must be ESP proposals", field="esp_proposals")
        if not 16 <= self.nonce_size <= 256:
            raise ConfigurationError("nonce_size must be 16 to 256 bytes", field="nonce_size")
        largest = max(
            (
                PRF_KEY_SIZES.get(t.id, 0)
                for p in self.ike_proposals
                for t in p.transforms
                if t.type == TransformType.PRF
            ),
            default=0,
        )
        if 2 * self.nonce_size < largest:
            raise ConfigurationError(
                f"nonce_size {self.nonce_size} is less than half the key size of an offered "
                f"PRF ({largest} bytes); RFC 7296 2.10 asks for at least {(largest + 1) // 2}",
                field="nonce_size",
            )
        if not 576 <= self.fragment_size <= 65535:
            raise ConfigurationError(
                "fragment_size must be an IP datagram size from 576 to 65535", field="fragment_size"
            )
        if self.retransmit_tries < 0 or self.retransmit_timeout <= 0:
            raise ConfigurationError(
                "retransmit_timeout must be positive and retransmit_tries not negative",
                field="retransmit_timeout",
            )
        if self.cookie_secret is not None and len(self.cookie_secret) < 16:
            raise ConfigurationError(
                "cookie_secret must be None (random) or a test key of at least 16 bytes",
                field="cookie_secret",
            )
        for name in ("rekey_time", "child_rekey_time", "dpd_delay"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{name} must not be negative", field=name)
        for name in ("over_time", "rand_time", "child_life_time", "child_rand_time"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigurationError(f"{name} must not be negative", field=name)
        if (
            self.child_life_time is not None
            and self.child_rekey_time
            and self.child_life_time < self.child_rekey_time
        ):
            raise ConfigurationError(
                "child_life_time must not be shorter than child_rekey_time",
                field="child_life_time",
            )
        if not self.psk and (self.credential is None or self.trust is None):
            raise ConfigurationError(
                "psk must not be empty unless both credential and trust are given", field="psk"
            )
        if self.trust is not None and self.validation_clock is None:
            raise ConfigurationError(
                "trust needs a validation_clock (the application's wall clock, e.g. "
                "pqike.clock.utc_now): the core reads no clock",
                field="validation_clock",
            )
        if self.send_cert not in SEND_CERT:
            raise ConfigurationError(
                f"send_cert must be one of {', '.join(SEND_CERT)}", field="send_cert"
            )
        if self.ppk_mode not in PPK_MODES:
            raise ConfigurationError(
                f"ppk_mode must be one of {', '.join(PPK_MODES)}", field="ppk_mode"
            )
        if self.ppk and not self.ppk_id:
            raise ConfigurationError("a ppk needs a ppk_id", field="ppk_id")
        if self.ppk_required and not self.ppk:
            raise ConfigurationError("ppk_required needs a ppk", field="ppk")
        try:
            ppks = tuple((bytes(i), bytes(k)) for i, k in self.ppks)
        except (TypeError, ValueError):
            ppks = ((b"", b""),)
        if any(not (i and k) for i, k in ppks):
            raise ConfigurationError(
                "ppks must be non-empty (ppk_id, ppk) byte pairs", field="ppks"
            )
        object.__setattr__(self, "ppks", ppks)
        if ppks and not self.ppk:
            raise ConfigurationError("ppks come after a first ppk and ppk_id", field="ppks")
        if self.impairments:
            from .impair import check_impairments

            object.__setattr__(self, "impairments", check_impairments(self.impairments))

    @property
    def ike_lifetimes(self) -> tuple[float, float, float]:
        """``(rekey, hard, jitter)`` seconds for the IKE SA, strongSwan's defaults filled in."""
        over = self.rekey_time * 0.1 if self.over_time is None else self.over_time
        jitter = over if self.rand_time is None else self.rand_time
        return self.rekey_time, self.rekey_time + over, min(jitter, self.rekey_time)

    @property
    def child_lifetimes(self) -> tuple[float, float, float]:
        """``(rekey, hard, jitter)`` seconds for Child SAs, strongSwan's defaults filled in."""
        rekey = self.child_rekey_time
        life = rekey * 1.1 if self.child_life_time is None else self.child_life_time
        jitter = life - rekey if self.child_rand_time is None else self.child_rand_time
        return rekey, life, min(jitter, rekey)

    @property
    def all_ppks(self) -> tuple[tuple[bytes, bytes], ...]:
        """Every PPK as ``(ppk_id, ppk)``: ``ppk_id``/``ppk`` first, then ``ppks``."""
        return ((self.ppk_id, self.ppk), *self.ppks) if self.ppk else ()

    def backend_for(self, method: int) -> str | None:
        """The configured backend for ``method``, or ``None`` for the registry's choice."""
        for m, name in self.kex_backends:
            if m == method:
                return name
        return None
