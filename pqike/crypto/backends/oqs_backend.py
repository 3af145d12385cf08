"""The ``"liboqs"`` backend: KEMs from liboqs through ``liboqs-python`` (``import oqs``).

``liboqs-python`` is a thin ctypes wrapper: it needs the liboqs C library, and when
``import oqs`` does not find it, it clones and builds liboqs from GitHub (liboqs-python
0.16: ``oqs/oqs.py``, ``_load_liboqs`` -> ``_install_liboqs``; it has no switch to turn
that off). That must never happen behind a user's back, so ``oqs`` is imported only after
:func:`find_liboqs` has found and loaded the shared library in one of the places
liboqs-python itself searches: ``ctypes.util.find_library("oqs")`` (or ``"liboqs"``),
then ``$OQS_INSTALL_PATH/lib`` and ``lib64`` (default ``~/_oqs``). If the library is not
there, the backend is unavailable and says so; nothing is imported or downloaded.

Methods: ML-KEM-512/768/1024, HQC (liboqs >= 0.16 names the 2025 version ``HQC-1/3/5``),
sntrup761, Classic McEliece, FrodoKEM (salted, liboqs >= 0.16) and BIKE. On the first
probe each mechanism's sizes are compared with pqike's table and a mechanism this liboqs
builds differently (an older HQC or FrodoKEM) is not offered.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib
import importlib.metadata
import importlib.util
import io
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ...errors import ConfigurationError
from ..kex import KeyExchange
from .ids import PRIVATE_USE_KEMS
from .kem import KemExchange, LazyKemBackend, check_mlkem_key

__all__ = ["OQS_MECHANISMS", "OqsBackend", "find_liboqs", "liboqs_candidates"]

OQS_MECHANISMS: Mapping[str, str] = MappingProxyType(
    {
        "mlkem512": "ML-KEM-512",
        "mlkem768": "ML-KEM-768",
        "mlkem1024": "ML-KEM-1024",
        "hqc128": "HQC-1",
        "hqc192": "HQC-3",
        "hqc256": "HQC-5",
        "sntrup761": "sntrup761",
        "mceliece348864": "Classic-McEliece-348864",
        "mceliece460896": "Classic-McEliece-460896",
        "mceliece6688128": "Classic-McEliece-6688128",
        "mceliece6960119": "Classic-McEliece-6960119",
        "mceliece8192128": "Classic-McEliece-8192128",
        "frodoa1": "FrodoKEM-640-AES",
        "frodoa3": "FrodoKEM-976-AES",
        "frodoa5": "FrodoKEM-1344-AES",
        "frodos1": "FrodoKEM-640-SHAKE",
        "frodos3": "FrodoKEM-976-SHAKE",
        "frodos5": "FrodoKEM-1344-SHAKE",
        "bike1": "BIKE-L1",
        "bike3": "BIKE-L3",
        "bike5": "BIKE-L5",
    }
)
"""pqike keyword -> liboqs mechanism name (``OQS_KEM_alg_*`` in liboqs's ``kem.h``)."""

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

_MISSING_LIBRARY = (
    "liboqs is not installed: liboqs-python needs the liboqs shared library "
    "(found by the linker as 'oqs', or in $OQS_INSTALL_PATH/lib, default ~/_oqs/lib); "
    "pqike does not let liboqs-python download and build it"
)


def _library_file_names() -> tuple[str, ...]:
    if sys.platform == "darwin":
        return ("liboqs.dylib",)
    if sys.platform == "win32":
        return ("oqs.dll", "liboqs.dll")
    return ("liboqs.so",)


def liboqs_candidates() -> list[str]:
    """Where liboqs-python looks for liboqs, in its order, as paths or linker names."""
    found: list[str] = []
    for name in ("oqs", "liboqs"):
        with contextlib.suppress(Exception):  # find_library may run external tools
            path = ctypes.util.find_library(name)
            if path:
                found.append(path)
    install = Path(os.environ.get("OQS_INSTALL_PATH") or Path.home() / "_oqs")
    subdirs = ("bin",) if sys.platform == "win32" else ("lib", "lib64")
    for subdir in subdirs:
        for file_name in _library_file_names():
            found.append(str(install / subdir / file_name))
    return found


def find_liboqs() -> str | None:
    """Return the first liboqs candidate that loads here, or ``None``.

    Loading it (``ctypes.CDLL``) is the test liboqs-python applies, so when this returns
    a path, ``import oqs`` finds a library too and never starts its download.
    """
    for candidate in liboqs_candidates():
        try:
            ctypes.CDLL(candidate)
        except OSError:
            continue
        return candidate
    return None


@dataclass(frozen=True, slots=True)
class _Loaded:
    oqs: Any
    impls: Mapping[str, str]  # keyword -> liboqs mechanism name, sizes checked
    reason: str | None
    version: str | None = None


class OqsBackend(LazyKemBackend[_Loaded]):
    """Key exchanges on liboqs via liboqs-python, probed and imported on first use.

    ``id_overrides`` changes private-use transform IDs as
    :func:`~pqike.crypto.backends.ids.private_use_ids` does.
    """

    name = "liboqs"

    __slots__ = ()

    def __init__(self, id_overrides: Mapping[str, int] | None = None) -> None:
        super().__init__(OQS_MECHANISMS, id_overrides)

    def _probe(self) -> _Loaded:
        return _load_oqs()

    @property
    def liboqs_version(self) -> str | None:
        """The loaded liboqs's version string, or ``None`` when unavailable."""
        return self._load().version

    def create(self, method: int, *, keypair_seed: bytes | None = None) -> KeyExchange:
        """Return a fresh exchange for ``method``; ``ConfigurationError`` if it cannot.

        ``keypair_seed`` (ML-KEM only: the 64 bytes d || z of FIPS 203) makes the
        initiator's key pair deterministic, for known-answer tests.
        """
        keyword, mechanism, loaded = self._implementation(method)
        if mechanism is None:
            raise ConfigurationError(
                f"this liboqs has no {OQS_MECHANISMS[keyword]} with the sizes pqike expects",
                field="key_exchange",
            )
        oqs = loaded.oqs
        if keypair_seed is not None and not keyword.startswith("mlkem"):
            raise ConfigurationError(
                f"seeded key generation is only offered for ML-KEM, not {mechanism}",
                field="key_exchange",
            )
        label, ek_size, ct_size, secret_size = _SIZES[keyword]

        def keygen() -> tuple[bytes, bytes]:
            with oqs.KeyEncapsulation(mechanism) as kem:
                if keypair_seed is None:
                    public = kem.generate_keypair()
                else:
                    public = kem.generate_keypair_seed(keypair_seed)
                return bytes(public), bytes(kem.export_secret_key())

        def encaps(public: bytes) -> tuple[bytes, bytes]:
            with oqs.KeyEncapsulation(mechanism) as kem:
                ciphertext, secret = kem.encap_secret(public)
                return bytes(ciphertext), bytes(secret)

        def decaps(secret_key: bytes, ciphertext: bytes) -> bytes:
            with oqs.KeyEncapsulation(mechanism, secret_key) as kem:
                return bytes(kem.decap_secret(ciphertext))

        return KemExchange(
            method,
            label,
            self.name,
            ek_size=ek_size,
            ct_size=ct_size,
            secret_size=secret_size,
            keygen=keygen,
            encaps=encaps,
            decaps=decaps,
            check_key=check_mlkem_key if keyword.startswith("mlkem") else None,
        )


def _load_oqs() -> _Loaded:
    empty: Mapping[str, str] = MappingProxyType({})
    if find_liboqs() is None:
        return _Loaded(None, empty, _MISSING_LIBRARY)
    try:
        importlib.metadata.version("liboqs-python")
    except importlib.metadata.PackageNotFoundError:
        # Checked by distribution: an unrelated PyPI package is also called "oqs".
        return _Loaded(None, empty, "liboqs-python is not installed: pip install 'pqike[oqs]'")
    if importlib.util.find_spec("oqs") is None:
        return _Loaded(None, empty, "liboqs-python is installed but its module 'oqs' is missing")
    logs = io.StringIO()
    try:
        # liboqs-python logs to the stdout of import time (a handler it adds itself), which
        # would end up in `pqike algorithms --json`; keep that handler on a buffer.
        with contextlib.redirect_stdout(logs):
            oqs = importlib.import_module("oqs")
    except (ImportError, OSError, RuntimeError, SystemExit) as exc:
        # SystemExit: liboqs-python's own way of failing when it cannot load liboqs.
        return _Loaded(None, empty, f"liboqs-python did not load liboqs: {exc}")
    _drop_handlers_on(logs)
    try:
        enabled = set(oqs.get_enabled_kem_mechanisms())
        version = str(oqs.oqs_version())
        mechanisms: dict[str, str] = {}
        for keyword, mechanism in OQS_MECHANISMS.items():
            if mechanism not in enabled:
                continue
            with oqs.KeyEncapsulation(mechanism) as kem:
                details = kem.details
            _, ek_size, ct_size, secret_size = _SIZES[keyword]
            sizes = (
                details.get("length_public_key"),
                details.get("length_ciphertext"),
                details.get("length_shared_secret"),
            )
            if sizes == (ek_size, ct_size, secret_size):
                mechanisms[keyword] = mechanism
    except (AttributeError, RuntimeError, OSError) as exc:
        return _Loaded(None, empty, f"liboqs-python does not answer as expected: {exc}")
    return _Loaded(oqs, MappingProxyType(mechanisms), None, version)


def _drop_handlers_on(stream: io.StringIO) -> None:
    for name in ("oqs.oqs", "oqs"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if getattr(handler, "stream", None) is stream:
                logger.removeHandler(handler)
