"""Key exchange methods behind one interface, and a registry of pluggable backends.

A :class:`KeyExchange` is one side of one exchange, classical or KEM:

- initiator: ``public_data()`` (KEi data), later ``complete(KEr data) -> secret``;
- responder: ``respond(KEi data) -> (KEr data, secret)``.

For Diffie-Hellman the responder's data is its public value; for a KEM it is the
ciphertext of Encaps against the initiator's encapsulation key
(draft-ietf-ipsecme-ikev2-mlkem 2). Peer data is validated before use and any fault
raises ``InvalidSyntax`` with one sentence; a broken value never escapes as another
exception type.

The built-in ``"openssl"`` backend uses ``cryptography``: MODP 2048/3072/4096 (RFC 3526),
ECP 256/384/521 (RFC 5903), Curve25519/Curve448 (RFC 8031) and ML-KEM-768/1024 (FIPS 203).
Other backends plug in through :class:`KeyExchangeBackend`; ``pqcrypto`` and ``liboqs``
(:mod:`pqike.crypto.backends`) are registered in :data:`DEFAULT_REGISTRY` and probed lazily.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.backends import default_backend
from cryptography.hazmat.primitives.asymmetric import ec, x448, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.utils import CryptographyDeprecationWarning

from ..constants import KeyExchangeMethod
from ..errors import ConfigurationError, InvalidSyntax, LocalProtocolError

try:
    from cryptography.hazmat.primitives.asymmetric import mlkem as _mlkem
except ImportError:  # cryptography < 47 has no ML-KEM: the methods show as unavailable
    _mlkem = None  # type: ignore[assignment]

# cryptography 50 deprecates finite-field DH and warns when these names are looked up on
# its module. RFC 7296 still needs the MODP groups, so look them up once, quietly; the
# methods on the objects they make do not warn. A release without them leaves MODP
# unavailable instead of breaking the import.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    try:
        from cryptography.hazmat.primitives.asymmetric import dh as _dh

        _DHParameterNumbers: Any = _dh.DHParameterNumbers
        _DHPublicNumbers: Any = _dh.DHPublicNumbers
    except (ImportError, AttributeError):
        _DHParameterNumbers = _DHPublicNumbers = None

__all__ = [
    "DEFAULT_REGISTRY",
    "STANDARD_METHODS",
    "EcdhExchange",
    "KeyExchange",
    "KeyExchangeBackend",
    "KeyExchangeInfo",
    "KeyExchangeRegistry",
    "MlKemExchange",
    "ModpExchange",
    "OpenSslBackend",
    "XdhExchange",
    "create_key_exchange",
]


# --- the interface --------------------------------------------------------------------


class KeyExchange(ABC):
    """One side of one key exchange (classical DH/ECDH or a KEM).

    Use a fresh object per exchange: key pairs are never reused (draft-ietf-ipsecme-
    ikev2-mlkem 2.2 and RFC 7296 2.12 leave reuse as a risk nobody here needs to take).
    """

    __slots__ = ()

    method: int
    """The Key Exchange Method transform ID (IANA Transform Type 4)."""

    @abstractmethod
    def public_data(self) -> bytes:
        """Initiator side: return this side's KE data (DH public value or KEM encapsulation key).

        The key pair is generated on the first call and the same bytes are returned after.
        """

    @abstractmethod
    def respond(self, peer_data: bytes) -> tuple[bytes, bytes]:
        """Responder side: validate the initiator's KE data, return ``(own data, secret)``.

        DH/ECDH: a fresh public value and the DH result; KEM: the Encaps ciphertext and the
        shared secret. Bad peer data raises ``InvalidSyntax``.
        """

    @abstractmethod
    def complete(self, peer_data: bytes) -> bytes:
        """Initiator side: validate the responder's KE data and return the shared secret.

        DH/ECDH: the DH result; KEM: Decaps of the ciphertext. Bad peer data raises
        ``InvalidSyntax``.
        """

    def respond_later(self, peer_data: bytes) -> tuple[bytes, Callable[[], bytes]]:
        """Responder side in two steps: check the initiator's KE data and return
        ``(own data, finish)`` now; ``finish()`` returns the shared secret.

        Every check of the peer's data happens here, so that a bad value is refused
        (``InvalidSyntax``) before anything is answered; what ``finish`` leaves for later
        is only work. By default the whole ``respond`` runs here; an exchange whose
        secret can wait (X25519, X448) overrides it.
        """
        data, secret = self.respond(peer_data)
        return data, lambda: secret

    def prepare(self) -> None:
        """Do now the work that needs no peer data, so that a later ``respond`` (or
        ``public_data``) is quicker: a DH key pair is generated here. Either role may
        follow; the object is still used for one exchange only. A KEM responder's work
        all depends on the peer's key, so by default this does nothing."""
        return None


@dataclass(frozen=True, slots=True)
class KeyExchangeInfo:
    """Static facts about one Key Exchange Method.

    ``name`` is the strongSwan proposal keyword and ``aliases`` its other spellings.
    ``kind`` is ``"modp"``, ``"ecp"``, ``"ecx"`` (RFC 8031 curves) or ``"kem"``.
    Sizes are the KE payload data lengths in bytes: ``initiator_size`` for KEi (the
    encapsulation key of a KEM), ``responder_size`` for KEr (the ciphertext) and
    ``secret_size`` for the shared secret.
    """

    method: int
    name: str
    kind: str
    initiator_size: int
    responder_size: int
    secret_size: int
    aliases: tuple[str, ...] = ()


@runtime_checkable
class KeyExchangeBackend(Protocol):
    """A provider of :class:`KeyExchange` objects (OpenSSL via cryptography, liboqs, ...)."""

    name: str

    def available(self) -> bool:
        """Whether the backend can be used at all here (its library imports and loads)."""
        ...

    def supports(self, method: int) -> bool:
        """Whether the backend implements ``method``."""
        ...

    def create(self, method: int) -> KeyExchange:
        """Return a fresh :class:`KeyExchange` for ``method``."""
        ...


class KeyExchangeRegistry:
    """Known methods (:class:`KeyExchangeInfo`) and the backends that implement them.

    Backends are consulted in registration order: ``create(method)`` without a backend
    name uses the first available backend that supports the method.
    """

    __slots__ = ("_backends", "_infos", "_names")

    def __init__(self) -> None:
        self._infos: dict[int, KeyExchangeInfo] = {}
        self._names: dict[str, int] = {}
        self._backends: dict[str, KeyExchangeBackend] = {}

    def register(
        self, backend: KeyExchangeBackend, *, infos: Iterable[KeyExchangeInfo] = ()
    ) -> None:
        """Add ``backend`` and the method descriptions it brings.

        A method already known must be described identically; a backend name may be
        registered once. Both mistakes raise ``ConfigurationError``.
        """
        if backend.name in self._backends:
            raise ConfigurationError(
                f"a key exchange backend named {backend.name!r} is already registered",
                field="backend",
            )
        infos = tuple(infos)
        for info in infos:
            known = self._infos.get(info.method)
            if known is not None and known != info:
                raise ConfigurationError(
                    f"key exchange method {info.method} is already registered as {known.name}",
                    field="key_exchange",
                )
            for name in (info.name, *info.aliases):
                owner = self._names.get(name.lower())
                if owner is not None and owner != info.method:
                    raise ConfigurationError(
                        f"key exchange name {name!r} is already used by method {owner}",
                        field="key_exchange",
                    )
        for info in infos:
            self._infos[info.method] = info
            for name in (info.name, *info.aliases):
                self._names[name.lower()] = info.method
        self._backends[backend.name] = backend

    def info(self, method: int) -> KeyExchangeInfo:
        """Return the description of ``method``; ``ConfigurationError`` if it is unknown."""
        info = self._infos.get(method)
        if info is None:
            raise ConfigurationError(f"unknown key exchange method {method}", field="key_exchange")
        return info

    def method_by_name(self, name: str) -> int:
        """Return the method ID for a strongSwan keyword (``x25519``, ``curve25519``, ...).

        Case-insensitive like strongSwan's proposal parser; ``ConfigurationError`` if unknown.
        """
        method = self._names.get(name.lower())
        if method is None:
            raise ConfigurationError(
                f"unknown key exchange method name {name!r}", field="key_exchange"
            )
        return method

    def backend_choice(self, name: str, backend: str) -> tuple[int, str]:
        """Check a user's choice of ``backend`` for the method called ``name``.

        Returns ``(method, backend)`` for ``IkeConfiguration.kex_backends``; raises
        ``ConfigurationError`` naming the method or backend when it cannot be honoured here.
        """
        method = self.method_by_name(name)
        if backend not in self._backends:
            raise ConfigurationError(
                f"unknown key exchange backend {backend!r} for {name} "
                f"(known: {', '.join(self._backends)})",
                field="backend",
            )
        if not self.is_available(method, backend):
            raise ConfigurationError(
                f"backend {backend!r} cannot run {name} here "
                f"(it can: {', '.join(self.backends_for(method)) or 'none'})",
                field="backend",
            )
        return method, backend

    def supporting_backends(self, method: int) -> list[str]:
        """Return the names of every backend that implements ``method``, available or not."""
        return [name for name, backend in self._backends.items() if backend.supports(method)]

    def backends_for(self, method: int) -> list[str]:
        """Return the names of the available backends that support ``method``, in order."""
        return [
            name
            for name, backend in self._backends.items()
            if backend.supports(method) and backend.available()
        ]

    def is_available(self, method: int, backend: str | None = None) -> bool:
        """Whether ``method`` is known and can be created (by ``backend`` if one is named)."""
        if method not in self._infos:
            return False
        if backend is None:
            return bool(self.backends_for(method))
        chosen = self._backends.get(backend)
        return chosen is not None and chosen.supports(method) and chosen.available()

    def create(self, method: int, backend: str | None = None) -> KeyExchange:
        """Return a fresh :class:`KeyExchange` for ``method``.

        Raises ``ConfigurationError`` when the method is unknown or no (named) backend
        available here supports it.
        """
        info = self.info(method)
        if backend is not None:
            chosen = self._backends.get(backend)
            if chosen is None:
                raise ConfigurationError(
                    f"unknown key exchange backend {backend!r}", field="backend"
                )
            if not (chosen.supports(method) and chosen.available()):
                raise ConfigurationError(
                    f"key exchange method {info.name} is not available from backend {backend!r}",
                    field="key_exchange",
                )
            return chosen.create(method)
        for candidate in self._backends.values():
            if candidate.supports(method) and candidate.available():
                return candidate.create(method)
        raise ConfigurationError(
            f"no available backend implements key exchange method {info.name}",
            field="key_exchange",
        )

    def methods(self) -> list[KeyExchangeInfo]:
        """Return every known method description, ordered by method ID."""
        return [self._infos[method] for method in sorted(self._infos)]


# --- method descriptions --------------------------------------------------------------

STANDARD_METHODS: tuple[KeyExchangeInfo, ...] = (
    KeyExchangeInfo(KeyExchangeMethod.MODP2048, "modp2048", "modp", 256, 256, 256),
    KeyExchangeInfo(KeyExchangeMethod.MODP3072, "modp3072", "modp", 384, 384, 384),
    KeyExchangeInfo(KeyExchangeMethod.MODP4096, "modp4096", "modp", 512, 512, 512),
    KeyExchangeInfo(KeyExchangeMethod.ECP256, "ecp256", "ecp", 64, 64, 32),
    KeyExchangeInfo(KeyExchangeMethod.ECP384, "ecp384", "ecp", 96, 96, 48),
    KeyExchangeInfo(KeyExchangeMethod.ECP521, "ecp521", "ecp", 132, 132, 66),
    KeyExchangeInfo(KeyExchangeMethod.CURVE25519, "x25519", "ecx", 32, 32, 32, ("curve25519",)),
    KeyExchangeInfo(KeyExchangeMethod.CURVE448, "x448", "ecx", 56, 56, 56, ("curve448",)),
    KeyExchangeInfo(KeyExchangeMethod.ML_KEM_512, "mlkem512", "kem", 800, 768, 32),
    KeyExchangeInfo(KeyExchangeMethod.ML_KEM_768, "mlkem768", "kem", 1184, 1088, 32),
    KeyExchangeInfo(KeyExchangeMethod.ML_KEM_1024, "mlkem1024", "kem", 1568, 1568, 32),
)
"""Every method pqike knows: the IKE keyword set of strongSwan 6 (ML-KEM-512 included)."""


# --- the OpenSSL implementations --------------------------------------------------------

_FRESH, _INITIATOR, _RESPONDER = 0, 1, 2


class _OpenSslExchange(KeyExchange):
    """Role bookkeeping shared by the built-in exchanges; subclasses do the maths."""

    __slots__ = ("_key", "_public", "_role", "label", "method")

    def __init__(self, method: int, private_key: Any) -> None:
        self.method = method
        self.label = ""  # the method's name in error messages, set by the subclass
        self._key = private_key
        self._public: bytes | None = None
        self._role = _FRESH

    def public_data(self) -> bytes:
        if self._role == _RESPONDER:
            raise LocalProtocolError("public_data() is for the initiator; respond() was used")
        self._role = _INITIATOR
        if self._public is None:
            self._public = self._initiator_data()
        return self._public

    def respond(self, peer_data: bytes) -> tuple[bytes, bytes]:
        self._become_responder()
        return self._respond(peer_data)

    def _become_responder(self) -> None:
        """Take the responder's role (``respond``, ``respond_later``): once, and only
        on a fresh object."""
        if self._role != _FRESH:
            raise LocalProtocolError("respond() needs a fresh key exchange object")
        self._role = _RESPONDER

    def complete(self, peer_data: bytes) -> bytes:
        if self._role != _INITIATOR:
            raise LocalProtocolError("complete() needs public_data() to have been sent first")
        return self._complete(peer_data)

    def _check_length(self, peer_data: bytes, expected: int, what: str) -> None:
        if len(peer_data) != expected:
            raise InvalidSyntax(
                f"{self.label} {what} must be {expected} bytes, not {len(peer_data)}"
            )

    @abstractmethod
    def _initiator_data(self) -> bytes: ...

    @abstractmethod
    def _respond(self, peer_data: bytes) -> tuple[bytes, bytes]: ...

    @abstractmethod
    def _complete(self, peer_data: bytes) -> bytes: ...


class _DiffieHellman(_OpenSslExchange):
    """DH-shaped exchanges: both sides send a public value and agree on a secret."""

    __slots__ = ()

    @abstractmethod
    def _generate(self) -> Any: ...

    @abstractmethod
    def _encode_public(self, key: Any) -> bytes: ...

    @abstractmethod
    def _load_peer(self, peer_data: bytes) -> Any: ...

    @abstractmethod
    def _agree(self, key: Any, peer: Any) -> bytes: ...

    def _own_key(self) -> Any:
        if self._key is None:
            self._key = self._generate()
        return self._key

    def _own_public(self) -> bytes:
        """This side's public value, encoded once (``prepare`` may have done it)."""
        if self._public is None:
            self._public = self._encode_public(self._own_key())
        return self._public

    def prepare(self) -> None:
        self._own_public()

    def _initiator_data(self) -> bytes:
        return self._encode_public(self._own_key())

    def _respond(self, peer_data: bytes) -> tuple[bytes, bytes]:
        # Validate before generating a key pair: a bad value then costs nothing.
        peer = self._load_peer(peer_data)
        return self._own_public(), self._agree(self._own_key(), peer)

    def _complete(self, peer_data: bytes) -> bytes:
        return self._agree(self._own_key(), self._load_peer(peer_data))


@dataclass(frozen=True, slots=True)
class _ModpGroup:
    p: int
    size: int
    bits: int
    parameters: Any  # cryptography DHParameters
    parameter_numbers: Any


# RFC 3526: p = 2^n - 2^(n-64) - 1 + 2^64 * (floor(2^(n-130) * pi) + k), generator 2.
_RFC3526_PRIMES = {
    KeyExchangeMethod.MODP2048: (
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22"
        "514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6"
        "F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D"
        "C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
        "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3BE39E772C180E8603"
        "9B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
        "15728E5A8AACAA68FFFFFFFFFFFFFFFF"
    ),
    KeyExchangeMethod.MODP3072: (
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22"
        "514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6"
        "F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D"
        "C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
        "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3BE39E772C180E8603"
        "9B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
        "15728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7D"
        "B3970F85A6E1E4C7ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
        "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E208E24FA074E5AB31"
        "43DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF"
    ),
    KeyExchangeMethod.MODP4096: (
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22"
        "514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6"
        "F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D"
        "C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
        "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3BE39E772C180E8603"
        "9B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
        "15728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7D"
        "B3970F85A6E1E4C7ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
        "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E208E24FA074E5AB31"
        "43DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D788719A10BDBA5B2699C327186AF4E23C"
        "1A946834B6150BDA2583E9CA2AD44CE8DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D"
        "99B2964FA090C3A2233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9"
        "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199FFFFFFFFFFFFFFFF"
    ),
}
RFC3526_GENERATOR = 2


def _modp_groups() -> MappingProxyType[int, _ModpGroup]:
    groups: dict[int, _ModpGroup] = {}
    if _DHParameterNumbers is None:
        return MappingProxyType(groups)
    for method, hex_prime in _RFC3526_PRIMES.items():
        p = int(hex_prime, 16)
        # Passing q = (p-1)/2 (a safe prime) lets OpenSSL recognise the RFC 3526 group
        # and draw short private exponents instead of checking the parameters each time.
        numbers = _DHParameterNumbers(p, RFC3526_GENERATOR, (p - 1) // 2)
        try:
            parameters = numbers.parameters()
        except (UnsupportedAlgorithm, ValueError):
            continue
        groups[method] = _ModpGroup(p, p.bit_length() // 8, p.bit_length(), parameters, numbers)
    return MappingProxyType(groups)


_MODP_GROUPS = _modp_groups()


class ModpExchange(_DiffieHellman):
    """MODP Diffie-Hellman over an RFC 3526 group (methods 14, 15, 16).

    Public values and the shared secret are big-endian, zero-padded to the prime's length
    (RFC 7296 3.4, and 2.14 for g^ir). ``private_key`` (a cryptography ``DHPrivateKey`` of
    the same group) fixes the key pair for known-answer tests.
    """

    __slots__ = ("_group",)

    def __init__(self, method: int, *, private_key: Any = None) -> None:
        group = _MODP_GROUPS.get(method)
        if group is None:
            raise ConfigurationError(f"MODP group {method} is not available", field="key_exchange")
        super().__init__(method, private_key)
        self._group = group
        self.label = f"MODP-{group.bits}"

    def _generate(self) -> Any:
        return self._group.parameters.generate_private_key()

    def _encode_public(self, key: Any) -> bytes:
        return key.public_key().public_numbers().y.to_bytes(self._group.size, "big")

    def _load_peer(self, peer_data: bytes) -> Any:
        group = self._group
        self._check_length(peer_data, group.size, "public value")
        y = int.from_bytes(peer_data, "big")
        # RFC 6989 2.1: 1 < y < p-1. The RFC 3526 primes are safe primes, so this excludes
        # the only small subgroup, {1, p-1}, and no exponentiation check is needed.
        if not 1 < y < group.p - 1:
            raise InvalidSyntax(f"{self.label} public value is outside 2..p-2")
        try:
            return _DHPublicNumbers(y, group.parameter_numbers).public_key()
        except ValueError:
            raise InvalidSyntax(f"{self.label} public value is not valid") from None

    def _agree(self, key: Any, peer: Any) -> bytes:
        try:
            secret: bytes = key.exchange(peer)
        except ValueError:
            raise InvalidSyntax(f"{self.label} public value gives no shared secret") from None
        # RFC 7296 2.14: g^ir is as long as the prime; pad in case a backend strips zeros.
        return secret.rjust(self._group.size, b"\x00")


_ECP_CURVES: MappingProxyType[int, tuple[ec.EllipticCurve, int, str]] = MappingProxyType(
    {
        KeyExchangeMethod.ECP256: (ec.SECP256R1(), 32, "ECP-256"),
        KeyExchangeMethod.ECP384: (ec.SECP384R1(), 48, "ECP-384"),
        KeyExchangeMethod.ECP521: (ec.SECP521R1(), 66, "ECP-521"),
    }
)
_ECDH = ec.ECDH()


class EcdhExchange(_DiffieHellman):
    """ECDH over the NIST prime curves (methods 19, 20, 21; RFC 5903).

    KE data is ``x | y``, each coordinate zero-padded to the field size, without the SEC1
    0x04 prefix (RFC 5903 7); the shared secret is the x coordinate of the shared point
    (RFC 5903 9). ``private_key`` fixes the key pair for known-answer tests.
    """

    __slots__ = ("_curve", "_size")

    def __init__(self, method: int, *, private_key: Any = None) -> None:
        entry = _ECP_CURVES.get(method)
        if entry is None:
            raise ConfigurationError(f"ECP group {method} is not available", field="key_exchange")
        super().__init__(method, private_key)
        self._curve, self._size, self.label = entry

    def _generate(self) -> Any:
        return ec.generate_private_key(self._curve)

    def _encode_public(self, key: Any) -> bytes:
        return key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)[1:]

    def _load_peer(self, peer_data: bytes) -> Any:
        self._check_length(peer_data, 2 * self._size, "public value")
        try:
            # OpenSSL checks the point is on the curve (RFC 6989 2.3); the NIST curves have
            # cofactor 1, so that is the whole validation (SP 800-56A 5.6.2.3.4).
            return ec.EllipticCurvePublicKey.from_encoded_point(
                self._curve, b"\x04" + bytes(peer_data)
            )
        except ValueError:
            raise InvalidSyntax(f"{self.label} public value is not a point on the curve") from None

    def _agree(self, key: Any, peer: Any) -> bytes:
        try:
            secret: bytes = key.exchange(_ECDH, peer)
        except ValueError:
            raise InvalidSyntax(f"{self.label} public value gives no shared secret") from None
        return secret.rjust(self._size, b"\x00")


_XDH: MappingProxyType[int, tuple[Any, Any, int, str]] = MappingProxyType(
    {
        KeyExchangeMethod.CURVE25519: (
            x25519.X25519PrivateKey,
            x25519.X25519PublicKey,
            32,
            "Curve25519",
        ),
        KeyExchangeMethod.CURVE448: (x448.X448PrivateKey, x448.X448PublicKey, 56, "Curve448"),
    }
)


_X25519_P = 2**255 - 19
_X448_P = 2**448 - 2**224 - 1
# The u-coordinates of the points of small order on Curve25519 and its twist (the group
# orders are 8 and 4 times a prime): 0 (order 2), 1 and p-1 (order 4), the two of order
# 8, and p and p+1, the 255-bit encodings of 0 and 1 that are not reduced (RFC 7748 5
# lets them in). With a clamped scalar (a multiple of 8 below the prime order) X25519
# gives the all-zero secret exactly for these, and only for these.
_X25519_SMALL_ORDER = (
    0,
    1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
    _X25519_P - 1,
    _X25519_P,
    _X25519_P + 1,
)
# Curve448 and its twist: 4 times a prime each; 0 (order 2), 1 and p-1 (order 4), and
# the unreduced p and p+1.
_X448_SMALL_ORDER = (0, 1, _X448_P - 1, _X448_P, _X448_P + 1)
_SMALL_ORDER: MappingProxyType[int, frozenset[bytes]] = MappingProxyType(
    {
        KeyExchangeMethod.CURVE25519: frozenset(
            u.to_bytes(32, "little") for u in _X25519_SMALL_ORDER
        ),
        KeyExchangeMethod.CURVE448: frozenset(u.to_bytes(56, "little") for u in _X448_SMALL_ORDER),
    }
)
"""Small-order public values of each XDH method, as 32/56 little-endian bytes (with
the top bit of an X25519 value cleared, as RFC 7748 5 has the receiver do)."""
_X25519_TOP_BIT_MASK = 0x7F


class XdhExchange(_DiffieHellman):
    """X25519 / X448 (methods 31, 32; RFC 8031, RFC 7748).

    Public values and the secret are the raw little-endian strings of RFC 7748 (32 or 56
    bytes). An all-zero secret means the peer sent a small-order point and is refused
    (RFC 7748 6.1, RFC 8031 2.3). ``private_key`` fixes the key pair for known answers.
    """

    __slots__ = ("_private_cls", "_public_cls", "_size")

    def __init__(self, method: int, *, private_key: Any = None) -> None:
        entry = _XDH.get(method)
        if entry is None:
            raise ConfigurationError(
                f"key exchange method {method} is not X25519 or X448", field="key_exchange"
            )
        super().__init__(method, private_key)
        self._private_cls, self._public_cls, self._size, self.label = entry

    def _generate(self) -> Any:
        return self._private_cls.generate()

    def _encode_public(self, key: Any) -> bytes:
        return key.public_key().public_bytes_raw()

    def _load_peer(self, peer_data: bytes) -> Any:
        self._check_length(peer_data, self._size, "public value")
        try:
            return self._public_cls.from_public_bytes(peer_data)
        except ValueError:
            raise InvalidSyntax(f"{self.label} public value is not valid") from None

    def respond_later(self, peer_data: bytes) -> tuple[bytes, Callable[[], bytes]]:
        """Check the peer's value now (its length, and RFC 7748 6.1 / RFC 8031 2.3
        decided from the value itself: a small-order point would give the all-zero
        secret) and leave the DH computation for ``finish``, which still refuses an
        all-zero result."""
        self._become_responder()
        self._check_length(peer_data, self._size, "public value")
        u = peer_data
        if self.method == KeyExchangeMethod.CURVE25519:
            u = peer_data[:-1] + bytes([peer_data[-1] & _X25519_TOP_BIT_MASK])
        if u in _SMALL_ORDER[self.method]:
            raise self._small_order()
        key = self._own_key()
        return self._own_public(), lambda: self._agree(key, self._load_peer(peer_data))

    def _agree(self, key: Any, peer: Any) -> bytes:
        try:
            secret: bytes = key.exchange(peer)
        except ValueError:
            # OpenSSL refuses the all-zero result itself (RFC 7748 6.1).
            secret = b""
        if not any(secret):
            raise self._small_order()
        return secret

    def _small_order(self) -> InvalidSyntax:
        return InvalidSyntax(
            f"{self.label} public value is a small-order point (all-zero shared secret)"
        )


def _mlkem_variants() -> MappingProxyType[int, tuple[Any, Any, int, int, str]]:
    if _mlkem is None:
        return MappingProxyType({})
    return MappingProxyType(
        {
            KeyExchangeMethod.ML_KEM_768: (
                _mlkem.MLKEM768PrivateKey,
                _mlkem.MLKEM768PublicKey,
                1184,
                1088,
                "ML-KEM-768",
            ),
            KeyExchangeMethod.ML_KEM_1024: (
                _mlkem.MLKEM1024PrivateKey,
                _mlkem.MLKEM1024PublicKey,
                1568,
                1568,
                "ML-KEM-1024",
            ),
        }
    )


_MLKEM = _mlkem_variants()


class MlKemExchange(_OpenSslExchange):
    """ML-KEM-768 / ML-KEM-1024 (methods 36, 37; FIPS 203, draft-ietf-ipsecme-ikev2-mlkem).

    KEi is the encapsulation key, KEr the ciphertext, the secret 32 bytes. The responder
    runs the FIPS 203 7.2 input checks on the key: the length here, the modulus check
    (every 12-bit coefficient below q = 3329) by OpenSSL when the key is loaded. The
    initiator runs the 7.3 ciphertext length check before Decaps. ``private_key`` (a
    cryptography ML-KEM private key, e.g. from a seed) fixes the key pair for tests.
    """

    __slots__ = ("_ct_size", "_ek_size", "_private_cls", "_public_cls")

    def __init__(self, method: int, *, private_key: Any = None) -> None:
        entry = _MLKEM.get(method)
        if entry is None:
            raise ConfigurationError(
                f"ML-KEM method {method} is not available", field="key_exchange"
            )
        super().__init__(method, private_key)
        self._private_cls, self._public_cls, self._ek_size, self._ct_size, self.label = entry

    def _initiator_data(self) -> bytes:
        if self._key is None:
            self._key = self._private_cls.generate()
        return self._key.public_key().public_bytes_raw()

    def _respond(self, peer_data: bytes) -> tuple[bytes, bytes]:
        self._check_length(peer_data, self._ek_size, "encapsulation key")
        try:
            encapsulation_key = self._public_cls.from_public_bytes(peer_data)
        except ValueError:
            # The length is right, so OpenSSL refused a coefficient >= q (FIPS 203 7.2).
            raise InvalidSyntax(f"{self.label} encapsulation key fails the modulus check") from None
        secret, ciphertext = encapsulation_key.encapsulate()
        return ciphertext, secret

    def _complete(self, peer_data: bytes) -> bytes:
        self._check_length(peer_data, self._ct_size, "ciphertext")
        try:
            return self._key.decapsulate(peer_data)
        except ValueError:
            raise InvalidSyntax(f"{self.label} ciphertext is not valid") from None


# --- the backend ------------------------------------------------------------------------


def _probe(feature: str) -> bool:
    check = getattr(default_backend(), feature, None)
    try:
        return bool(check()) if check is not None else False
    except Exception:  # a probe that cannot run means the feature is absent
        return False


class OpenSslBackend:
    """The built-in backend: the OpenSSL that ``cryptography`` ships or links.

    What it supports is decided once, when it is made: MODP needs finite-field DH,
    Curve25519/448 and ML-KEM need their OpenSSL support. ML-KEM-512 is never supported
    (cryptography does not expose it).
    """

    name = "openssl"

    __slots__ = ("_factories",)

    def __init__(self) -> None:
        factories: dict[int, Callable[[int], KeyExchange]] = {}
        for method in _MODP_GROUPS:
            factories[method] = ModpExchange
        for method, (curve, _, _) in _ECP_CURVES.items():
            if _probe_curve(curve):
                factories[method] = EcdhExchange
        if _probe("x25519_supported"):
            factories[KeyExchangeMethod.CURVE25519] = XdhExchange
        if _probe("x448_supported"):
            factories[KeyExchangeMethod.CURVE448] = XdhExchange
        if _probe("mlkem_supported"):
            for method in _MLKEM:
                factories[method] = MlKemExchange
        self._factories = MappingProxyType(factories)

    def available(self) -> bool:
        """Always true: ``cryptography`` is a hard dependency of pqike."""
        return True

    def supports(self, method: int) -> bool:
        """Whether this OpenSSL implements ``method``."""
        return method in self._factories

    def create(self, method: int) -> KeyExchange:
        """Return a fresh exchange for ``method``; ``ConfigurationError`` if unsupported."""
        factory = self._factories.get(method)
        if factory is None:
            raise ConfigurationError(
                f"backend 'openssl' does not implement key exchange method {method}",
                field="key_exchange",
            )
        return factory(method)


def _probe_curve(curve: ec.EllipticCurve) -> bool:
    try:
        return bool(default_backend().elliptic_curve_exchange_algorithm_supported(_ECDH, curve))
    except Exception:  # see _probe
        return False


def _openssl_registry() -> KeyExchangeRegistry:
    registry = KeyExchangeRegistry()
    registry.register(OpenSslBackend(), infos=STANDARD_METHODS)
    return registry


DEFAULT_REGISTRY: KeyExchangeRegistry = _openssl_registry()
"""The registry :func:`create_key_exchange` uses: the standard methods and the private-use
KEMs of :mod:`pqike.crypto.backends.ids`; backends ``openssl``, ``pqcrypto``, ``liboqs``
in that order (the first available one that supports a method is its default).

This module makes it with ``openssl`` only: the optional backends build on this
module's interface, so it cannot import them. ``pqike.crypto`` (the package, which
Python runs before any of its modules) registers them right after importing this one,
so every importer sees all three.
"""


def create_key_exchange(method: int, backend: str | None = None) -> KeyExchange:
    """Return a fresh :class:`KeyExchange` for ``method`` from :data:`DEFAULT_REGISTRY`.

    Raises ``ConfigurationError`` if the method is unknown or unavailable.
    """
    return DEFAULT_REGISTRY.create(method, backend)
