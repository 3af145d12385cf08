"""The ``"pqcrypto"`` backend: KEMs from the ``pqcrypto`` wheel (``pip install pqike[pqcrypto]``).

``pqcrypto`` 1.x ships compiled code for ML-KEM-512/768/1024 (FIPS 203), HQC (the
2025-08-22 specification), Streamlined NTRU Prime and Classic McEliece (round 4), one
module per algorithm under ``pqcrypto.kem`` with ``keygen() -> (pk, sk)``,
``encaps(pk) -> (ct, ss)`` and ``decaps(sk, ct) -> ss``. It has no seeded key
generation, so these methods have no keygen known-answer tests.

The library is imported only when the backend is first asked whether it is available
(or to create an exchange), so ``import pqike`` works without it. On that first probe
each module's sizes are compared with pqike's table; a method whose sizes differ (another
version of the algorithm) is not offered.

The responder runs FIPS 203 7.2's modulus check on ML-KEM keys itself: pqcrypto 1.0 does
too, but the check should not depend on which version of the library is installed.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ...errors import ConfigurationError
from ..kex import KeyExchange
from .ids import PRIVATE_USE_KEMS
from .kem import KemExchange, LazyKemBackend, check_mlkem_key

__all__ = ["PQCRYPTO_MODULES", "PqcryptoBackend"]

PQCRYPTO_MODULES: Mapping[str, str] = MappingProxyType(
    {
        "mlkem512": "ml_kem_512",
        "mlkem768": "ml_kem_768",
        "mlkem1024": "ml_kem_1024",
        "hqc128": "hqc_128",
        "hqc192": "hqc_192",
        "hqc256": "hqc_256",
        "sntrup653": "sntrup_653",
        "sntrup761": "sntrup_761",
        "sntrup857": "sntrup_857",
        "sntrup953": "sntrup_953",
        "sntrup1013": "sntrup_1013",
        "sntrup1277": "sntrup_1277",
        "mceliece348864": "mceliece_348864",
        "mceliece460896": "mceliece_460896",
        "mceliece6688128": "mceliece_6688128",
        "mceliece6960119": "mceliece_6960119",
        "mceliece8192128": "mceliece_8192128",
    }
)
"""pqike keyword -> module under ``pqcrypto.kem`` (names as pqcrypto 1.0 registers them).

The ``f`` variants of Classic McEliece (faster key generation, same wire format) and
pqcrypto's signature schemes are not used.
"""

# Sizes and labels of the ML-KEM methods; the other KEMs' come from ids.PRIVATE_USE_KEMS.
_SIZES: Mapping[str, tuple[str, int, int, int]] = MappingProxyType(
    {
        "mlkem512": ("ML-KEM-512", 800, 768, 32),
        "mlkem768": ("ML-KEM-768", 1184, 1088, 32),
        "mlkem1024": ("ML-KEM-1024", 1568, 1568, 32),
        **{
            kem.name: (kem.label, kem.initiator_size, kem.responder_size, kem.secret_size)
            for kem in PRIVATE_USE_KEMS
        },
    }
)


@dataclass(frozen=True, slots=True)
class _Loaded:
    """The outcome of the one import attempt: modules by keyword, or why there are none."""

    impls: Mapping[str, Any]  # keyword -> pqcrypto module, sizes checked
    reason: str | None


class PqcryptoBackend(LazyKemBackend[_Loaded]):
    """Key exchanges on the ``pqcrypto`` wheel, imported on first use.

    ``id_overrides`` changes private-use transform IDs as
    :func:`~pqike.crypto.backends.ids.private_use_ids` does; the registry this backend is
    registered with must describe the methods under the same IDs.
    """

    name = "pqcrypto"

    __slots__ = ()

    def __init__(self, id_overrides: Mapping[str, int] | None = None) -> None:
        super().__init__(PQCRYPTO_MODULES, id_overrides)

    def _probe(self) -> _Loaded:
        return _import_modules()

    def create(self, method: int) -> KeyExchange:
        """Return a fresh exchange for ``method``; ``ConfigurationError`` if it cannot."""
        keyword, module, _ = self._implementation(method)
        if module is None:
            raise ConfigurationError(
                f"pqcrypto's {keyword} does not have the sizes pqike expects",
                field="key_exchange",
            )
        label, ek_size, ct_size, secret_size = _SIZES[keyword]
        return KemExchange(
            method,
            label,
            self.name,
            ek_size=ek_size,
            ct_size=ct_size,
            secret_size=secret_size,
            keygen=module.keygen,
            encaps=module.encaps,
            decaps=module.decaps,
            check_key=check_mlkem_key if keyword.startswith("mlkem") else None,
        )


def _import_modules() -> _Loaded:
    try:
        importlib.import_module("pqcrypto.kem")
    except (ImportError, OSError) as exc:  # absent, or its compiled part does not load
        return _Loaded(
            MappingProxyType({}),
            f"pqcrypto is not installed: pip install 'pqike[pqcrypto]' ({exc})",
        )
    modules: dict[str, Any] = {}
    for keyword, module_name in PQCRYPTO_MODULES.items():
        try:
            module = importlib.import_module(f"pqcrypto.kem.{module_name}")
        except ImportError:
            continue  # an older or newer pqcrypto without this algorithm
        _, ek_size, ct_size, secret_size = _SIZES[keyword]
        sizes = (
            getattr(module, "PUBLIC_KEY_SIZE", None),
            getattr(module, "CIPHERTEXT_SIZE", None),
            getattr(module, "SHARED_SECRET_SIZE", None),
        )
        if sizes == (ek_size, ct_size, secret_size):
            modules[keyword] = module
    return _Loaded(MappingProxyType(modules), None)
