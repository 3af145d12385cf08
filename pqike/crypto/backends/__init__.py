"""Key exchange backends beyond the built-in OpenSSL one, and the IDs of their KEMs.

- ``"pqcrypto"`` (:class:`PqcryptoBackend`): the ``pqcrypto`` wheel: ML-KEM-512/768/1024,
  HQC, Streamlined NTRU Prime, Classic McEliece.
- ``"liboqs"`` (:class:`OqsBackend`): liboqs through ``liboqs-python``, when the liboqs
  library is installed: the same plus FrodoKEM and BIKE.

Neither library is imported until a backend is asked whether it is available, so
``import pqike`` and ``pqike algorithms`` work without them. ``DEFAULT_REGISTRY`` holds
``openssl``, ``pqcrypto`` and ``liboqs`` in that order: a method without a configured
backend uses the first available one, so ML-KEM-768/1024 stay on OpenSSL and the others
go to pqcrypto, then liboqs. :func:`build_registry` makes the same registry with other
private-use transform IDs (see :mod:`pqike.crypto.backends.ids`).
"""

from __future__ import annotations

from collections.abc import Mapping

from ..kex import STANDARD_METHODS, KeyExchangeRegistry, OpenSslBackend
from .ids import (
    DEFAULT_PRIVATE_USE_IDS,
    IANA_KEM_IDS,
    PRIVATE_USE_KEMS,
    PrivateUseKem,
    kem_ids,
    private_use_ids,
    private_use_methods,
)
from .kem import KemExchange, check_mlkem_key, mlkem_key_is_valid
from .oqs_backend import OqsBackend, find_liboqs
from .pqcrypto_backend import PqcryptoBackend

__all__ = [
    "DEFAULT_PRIVATE_USE_IDS",
    "IANA_KEM_IDS",
    "PRIVATE_USE_KEMS",
    "KemExchange",
    "OqsBackend",
    "PqcryptoBackend",
    "PrivateUseKem",
    "build_registry",
    "check_mlkem_key",
    "find_liboqs",
    "kem_ids",
    "mlkem_key_is_valid",
    "private_use_ids",
    "private_use_methods",
    "register_optional_backends",
]


def register_optional_backends(
    registry: KeyExchangeRegistry, id_overrides: Mapping[str, int] | None = None
) -> None:
    """Register ``pqcrypto`` then ``liboqs`` and the private-use KEMs they bring.

    Nothing is imported: each backend probes its library the first time it is asked.
    ``id_overrides`` as for :func:`private_use_ids` (``ConfigurationError`` if wrong).
    """
    registry.register(PqcryptoBackend(id_overrides), infos=private_use_methods(id_overrides))
    registry.register(OqsBackend(id_overrides))


def build_registry(id_overrides: Mapping[str, int] | None = None) -> KeyExchangeRegistry:
    """A registry like ``DEFAULT_REGISTRY`` with private-use KEM IDs from ``id_overrides``.

    For configuration files: ``build_registry({"hqc128": 1201})`` makes HQC-128 method
    1201 in the registry an ``IkeSa`` is given. Proposals must use the same IDs.
    """
    registry = KeyExchangeRegistry()
    registry.register(OpenSslBackend(), infos=STANDARD_METHODS)
    register_optional_backends(registry, id_overrides)
    return registry
