"""The crypto layer: key exchanges, PRFs, key derivation, SK protection and AUTH inputs.

It knows no sockets and no IKE state; every function takes the keys, nonces and bytes it
works on. See ``kex`` (KE methods and backends), ``prf`` (prf, prf+), ``keys`` (SKEYSEED,
RFC 9370 updates, SK_* and KEYMAT), ``protect`` (SK/SKF encryption) and ``auth``.
"""

from .auth import (
    KEY_PAD,
    cookie,
    int_auth,
    int_auth_octets,
    nat_detection_hash,
    psk_auth,
    signed_octets,
)
from .backends import register_optional_backends
from .kex import (
    DEFAULT_REGISTRY,
    STANDARD_METHODS,
    KeyExchange,
    KeyExchangeBackend,
    KeyExchangeInfo,
    KeyExchangeRegistry,
    create_key_exchange,
)
from .keys import (
    ChildKeys,
    IkeKeys,
    derive_child_keys,
    derive_ike_keys,
    ike_key_schedule,
    initial_ike_keys,
    skeyseed,
    skeyseed_additional,
    updated_ike_keys,
)
from .prf import Prf, get_prf
from .protect import Cipher, encr_key_size, get_cipher, integ_key_size

# The optional key exchange backends depend on .kex, not the other way round: they join
# its default registry here, where the package is put together (see DEFAULT_REGISTRY).
register_optional_backends(DEFAULT_REGISTRY)

__all__ = [
    "DEFAULT_REGISTRY",
    "KEY_PAD",
    "STANDARD_METHODS",
    "ChildKeys",
    "Cipher",
    "IkeKeys",
    "KeyExchange",
    "KeyExchangeBackend",
    "KeyExchangeInfo",
    "KeyExchangeRegistry",
    "Prf",
    "cookie",
    "create_key_exchange",
    "derive_child_keys",
    "derive_ike_keys",
    "encr_key_size",
    "get_cipher",
    "get_prf",
    "ike_key_schedule",
    "initial_ike_keys",
    "int_auth",
    "int_auth_octets",
    "integ_key_size",
    "nat_detection_hash",
    "psk_auth",
    "signed_octets",
    "skeyseed",
    "skeyseed_additional",
    "updated_ike_keys",
]
