"""Transform IDs of the KEMs that IANA has not assigned: one table, overridable.

IANA assigns ML-KEM-512/768/1024 the Transform Type 4 IDs 35, 36 and 37
(draft-ietf-ipsecme-ikev2-mlkem). Every other post-quantum KEM pqike offers lives in the
private-use range 1024-65535 (RFC 7296 3.3.2), where two implementations only agree if
their operators configure the same numbers. The defaults below follow one rule:

- where strongSwan's last published numbers (6.0.0beta4 to beta6, and its ``frodokem``
  branch) name the same algorithm with the same wire format as today, pqike reuses them:
  FrodoKEM 1083-1088 and BIKE 1089-1091, with strongSwan's keywords ``frodoa1`` ..
  ``bike5``;
- everything else gets a fresh number above strongSwan's block: HQC (its 2025
  specification changed the key and ciphertext sizes and the secret length, so
  strongSwan's 1092-1094 for round-4 HQC would make the peers agree on a proposal and then
  fail on the KE payload), Streamlined NTRU Prime and Classic McEliece.

``docs/kem-ids.md`` records what other implementations used and why. A deployment that
needs other numbers passes ``{"keyword": id}`` overrides to :func:`private_use_ids` (and
to ``pqike.crypto.backends.build_registry``), e.g. from a TOML configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ...constants import KeyExchangeMethod
from ...errors import ConfigurationError
from ..kex import KeyExchangeInfo

__all__ = [
    "DEFAULT_PRIVATE_USE_IDS",
    "IANA_KEM_IDS",
    "PRIVATE_USE_FIRST",
    "PRIVATE_USE_KEMS",
    "PrivateUseKem",
    "kem_ids",
    "private_use_ids",
    "private_use_methods",
]

PRIVATE_USE_FIRST = 1024
"""RFC 7296 3.3.2 and IANA: Transform Type 4 IDs 1024-65535 are reserved for private use."""

_LAST_ID = 65535  # the Transform ID field is 16 bits (RFC 7296 3.3.2)


@dataclass(frozen=True, slots=True)
class PrivateUseKem:
    """A KEM without an IANA Transform ID: its keyword, default ID and wire sizes.

    ``name`` is the proposal keyword (``ke1_hqc128``); ``label`` the algorithm's own
    name in messages; sizes are KE payload data lengths as in :class:`KeyExchangeInfo`.
    """

    name: str
    default_id: int
    label: str
    initiator_size: int
    responder_size: int
    secret_size: int
    aliases: tuple[str, ...] = ()

    def info(self, method: int | None = None) -> KeyExchangeInfo:
        """The registry description of this KEM under ``method`` (default: its default ID)."""
        return KeyExchangeInfo(
            self.default_id if method is None else method,
            self.name,
            "kem",
            self.initiator_size,
            self.responder_size,
            self.secret_size,
            self.aliases,
        )


PRIVATE_USE_KEMS: tuple[PrivateUseKem, ...] = (
    # FrodoKEM with the salted ciphertext of the ISO draft (liboqs >= 0.16 "FrodoKEM-*",
    # strongSwan's frodokem branch); strongSwan 6.0.0beta4-6 used these numbers too.
    PrivateUseKem("frodoa1", 1083, "FrodoKEM-640-AES", 9616, 9752, 16),
    PrivateUseKem("frodoa3", 1084, "FrodoKEM-976-AES", 15632, 15792, 24),
    PrivateUseKem("frodoa5", 1085, "FrodoKEM-1344-AES", 21520, 21696, 32),
    PrivateUseKem("frodos1", 1086, "FrodoKEM-640-SHAKE", 9616, 9752, 16),
    PrivateUseKem("frodos3", 1087, "FrodoKEM-976-SHAKE", 15632, 15792, 24),
    PrivateUseKem("frodos5", 1088, "FrodoKEM-1344-SHAKE", 21520, 21696, 32),
    # BIKE round 4 (liboqs since 0.8), as strongSwan 6.0.0beta4-6 numbered it.
    PrivateUseKem("bike1", 1089, "BIKE-L1", 1541, 1573, 32),
    PrivateUseKem("bike3", 1090, "BIKE-L3", 3083, 3115, 32),
    PrivateUseKem("bike5", 1091, "BIKE-L5", 5122, 5154, 32),
    # HQC as specified on 2025-08-22 (32-byte secret); pqike's own numbers.
    PrivateUseKem("hqc128", 1101, "HQC-128", 2241, 4433, 32),
    PrivateUseKem("hqc192", 1102, "HQC-192", 4514, 8978, 32),
    PrivateUseKem("hqc256", 1103, "HQC-256", 7237, 14421, 32),
    # Streamlined NTRU Prime (sntrup761 is the one OpenSSH uses); pqike's own numbers.
    PrivateUseKem("sntrup653", 1110, "sntrup653", 994, 897, 32),
    PrivateUseKem("sntrup761", 1111, "sntrup761", 1158, 1039, 32),
    PrivateUseKem("sntrup857", 1112, "sntrup857", 1322, 1184, 32),
    PrivateUseKem("sntrup953", 1113, "sntrup953", 1505, 1349, 32),
    PrivateUseKem("sntrup1013", 1114, "sntrup1013", 1623, 1455, 32),
    PrivateUseKem("sntrup1277", 1115, "sntrup1277", 2067, 1847, 32),
    # Classic McEliece (round 4). The public keys exceed one KE payload (65535 bytes).
    PrivateUseKem("mceliece348864", 1120, "Classic-McEliece-348864", 261120, 96, 32),
    PrivateUseKem("mceliece460896", 1121, "Classic-McEliece-460896", 524160, 156, 32),
    PrivateUseKem("mceliece6688128", 1122, "Classic-McEliece-6688128", 1044992, 208, 32),
    PrivateUseKem("mceliece6960119", 1123, "Classic-McEliece-6960119", 1047319, 194, 32),
    PrivateUseKem("mceliece8192128", 1124, "Classic-McEliece-8192128", 1357824, 208, 32),
)
"""Every KEM without an IANA number that some pqike backend can provide, by default ID."""

IANA_KEM_IDS: Mapping[str, int] = MappingProxyType(
    {
        "mlkem512": KeyExchangeMethod.ML_KEM_512,
        "mlkem768": KeyExchangeMethod.ML_KEM_768,
        "mlkem1024": KeyExchangeMethod.ML_KEM_1024,
    }
)
"""The post-quantum KEMs IANA has numbered; these IDs are fixed, never overridden."""

_BY_NAME: Mapping[str, PrivateUseKem] = MappingProxyType(
    {name: kem for kem in PRIVATE_USE_KEMS for name in (kem.name, *kem.aliases)}
)
_IANA_ASSIGNED = frozenset(int(m) for m in KeyExchangeMethod)


def private_use_ids(overrides: Mapping[str, int] | None = None) -> Mapping[str, int]:
    """Return ``{keyword: transform ID}`` for every private-use KEM, with ``overrides``.

    ``overrides`` maps a keyword (or alias, any case) to the ID to use instead of the
    default. An ID must fit the 16-bit field, must not be one IANA has assigned
    (``KeyExchangeMethod``) and must not be used by two KEMs; any other value is allowed
    so a lab can mirror another implementation's numbering, even outside 1024-65535.
    Mistakes raise ``ConfigurationError(field="kem_ids")``.
    """
    ids = {kem.name: kem.default_id for kem in PRIVATE_USE_KEMS}
    for key, value in (overrides or {}).items():
        lowered = str(key).lower()
        kem = _BY_NAME.get(lowered)
        if kem is None:
            if lowered in IANA_KEM_IDS:
                message = (
                    f"KEM {key!r} has IANA transform ID {IANA_KEM_IDS[lowered]}, "
                    f"which cannot be overridden"
                )
            else:
                message = f"unknown KEM {key!r} in the transform ID overrides"
            raise ConfigurationError(message, field="kem_ids")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _LAST_ID:
            raise ConfigurationError(
                f"transform ID {value!r} for KEM {kem.name!r} is not an integer from 1 to 65535",
                field="kem_ids",
            )
        if value in _IANA_ASSIGNED:
            raise ConfigurationError(
                f"transform ID {value} for KEM {kem.name!r} is assigned by IANA to "
                f"{KeyExchangeMethod(value).name}",
                field="kem_ids",
            )
        ids[kem.name] = value
    owners: dict[int, str] = {}
    for name, value in ids.items():
        if value in owners:
            raise ConfigurationError(
                f"KEMs {owners[value]!r} and {name!r} would share transform ID {value}",
                field="kem_ids",
            )
        owners[value] = name
    return MappingProxyType(ids)


def private_use_methods(overrides: Mapping[str, int] | None = None) -> tuple[KeyExchangeInfo, ...]:
    """Registry descriptions of every private-use KEM under :func:`private_use_ids`."""
    ids = private_use_ids(overrides)
    return tuple(kem.info(ids[kem.name]) for kem in PRIVATE_USE_KEMS)


def kem_ids(overrides: Mapping[str, int] | None = None) -> Mapping[str, int]:
    """``{keyword: transform ID}`` for every post-quantum KEM: IANA's and private-use ones."""
    return MappingProxyType({**IANA_KEM_IDS, **private_use_ids(overrides)})


DEFAULT_PRIVATE_USE_IDS: Mapping[str, int] = private_use_ids()
"""The default ``{keyword: transform ID}`` of the private-use KEMs (see the module doc)."""
