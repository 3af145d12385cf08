"""A pqike peer's TOML configuration (``pqike respond`` / ``pqike initiate --config``).

See ``interop/pqike-peer.example.toml`` for every key with its default. Sections:

``[peer]``
    ``local`` (address or list of addresses to bind, required), ``port`` (500),
    ``nat_t_port`` (4500), ``remote`` (the peer's address: required to initiate; a
    responder with one answers only that address), ``remote_port`` (500),
    ``local_id`` (required), ``remote_id`` (optional: any authenticated identity),
    ``psk`` (text) or ``psk_hex``, ``allow_insecure_permissions`` (false: a file holding
    a PSK must not be readable by group or others, as ssh insists for its keys).
``[ike]``
    ``proposals`` (strongSwan syntax), ``fragmentation``, ``fragment_size``,
    ``force_nat_t``, ``preset`` (``pqike``, ``strongswan`` or ``minimal``: which
    optional payloads we send; it decides ``fragmentation``, ``force_nat_t`` and the
    traffic selectors when they are not given), ``additional_addresses`` (our other
    addresses, announced with MOBIKE by the ``strongswan`` preset); the IKE SA's
    lifetimes with strongSwan's names and meaning:
    ``rekey_time`` (4 h, 0 never rekeys), ``over_time`` (10 % of ``rekey_time``),
    ``rand_time`` (``over_time``) and ``dpd_delay`` (0, off).
``[esp]``
    ``proposals`` (KE and ADDKE keywords apply to CREATE_CHILD_SA), ``mode``
    (``tunnel``/``transport``), ``local_ts`` and ``remote_ts`` (CIDR lists); the Child
    SAs' ``rekey_time`` (1 h, 0 never), ``life_time`` (110 % of ``rekey_time``) and
    ``rand_time`` (``life_time - rekey_time``).

Durations take strongSwan's syntax: a number of seconds, or a string with a unit,
``"90"``, ``"30s"``, ``"5m"``, ``"4h"``, ``"1d"``.
``[retransmit]``
    ``timeout``, ``base``, ``tries``.
``[responder]``
    ``max_half_open``, ``max_half_open_per_peer``, ``cookie_threshold``,
    ``cookie_threshold_per_peer``, ``require_cookie``, ``half_open_timeout``,
    ``closed_linger``, ``replay_window``, ``reassembly_budget``,
    ``reassembly_per_peer``, ``reassembly_half_open`` (see ``EndpointLimits``; ``false``
    turns an optional bound off).
``[auth]``
    Certificates: ``key`` (our private key file), ``certificate`` (our certificate; a
    PEM file may hold the intermediates after it), ``chain`` (more intermediate files),
    ``cacerts`` (CA files a peer's chain must lead to), ``send_cert``
    (``ifasked``/``always``/``never``), ``rsa_pss``. Without ``key`` and
    ``certificate`` we authenticate with ``[peer] psk``; without ``cacerts`` we accept
    only a PSK from the peer. PPK: ``ppk`` (text) or ``ppk_hex``, ``ppk_id``,
    ``ppk_required``, ``ppk_mode`` (``rfc8784``: at IKE_AUTH, the default; ``rfc9867``:
    in IKE_INTERMEDIATE, every IKE SA key PPK-derived), ``ppks_hex`` (more PPKs for
    ``rfc9867``, a table ``{ "ppk-id" = "hex", ... }`` offered in that order). Relative
    file names are taken from the configuration's directory.

Every mistake raises one ``ConfigurationError`` whose single sentence names the file,
the section and the key, e.g. ``peer.toml: [ike] proposals: unknown algorithm 'aes999'
in proposal 'aes999-prfsha256-x25519'``; its ``field`` is ``"ike.proposals"``.
Unknown sections and keys are mistakes too.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import os
import re
import stat
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from ..clock import utc_now
from ..constants import ADDKE_TYPES, ProtocolId, TransformType
from ..crypto.certs import Credential, TrustStore
from ..crypto.kex import DEFAULT_REGISTRY
from ..errors import ConfigurationError
from ..ike.config import PPK_MODES, PRESETS, SEND_CERT, Identity, IkeConfiguration
from ..ike.endpoint import Address, EndpointLimits
from ..proposal import parse_proposals
from ..wire.payloads import Proposal, TrafficSelector

# strongSwan's time syntax (settings.c / swanctl): a number and an optional unit.
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

_SCHEMA: dict[str, tuple[str, ...]] = {
    "peer": (
        "local",
        "port",
        "nat_t_port",
        "remote",
        "remote_port",
        "local_id",
        "remote_id",
        "psk",
        "psk_hex",
        "allow_insecure_permissions",
    ),
    "ike": (
        "proposals",
        "fragmentation",
        "fragment_size",
        "force_nat_t",
        "preset",
        "additional_addresses",
        "backends",
        "rekey_time",
        "over_time",
        "rand_time",
        "dpd_delay",
    ),
    "esp": ("proposals", "mode", "local_ts", "remote_ts", "rekey_time", "life_time", "rand_time"),
    "retransmit": ("timeout", "base", "tries"),
    "auth": (
        "key",
        "certificate",
        "chain",
        "cacerts",
        "send_cert",
        "rsa_pss",
        "ppk",
        "ppk_hex",
        "ppk_id",
        "ppk_required",
        "ppk_mode",
        "ppks_hex",
    ),
    "responder": (
        "max_half_open",
        "max_half_open_per_peer",
        "cookie_threshold",
        "cookie_threshold_per_peer",
        "require_cookie",
        "half_open_timeout",
        "closed_linger",
        "replay_window",
        "reassembly_budget",
        "reassembly_per_peer",
        "reassembly_half_open",
    ),
}

_HALF_OPEN_SLACK = 64 << 10
"""Room beside the largest key exchange payload in a half-open IKE SA's messages."""


@dataclass(frozen=True)
class PeerConfig:
    """A loaded peer configuration: where to listen, whom to talk to, and the IKE SA setup."""

    source: str
    """The file name (or label) errors are reported against."""
    local_addresses: tuple[str, ...]
    """Addresses to bind; one socket per address and port."""
    port: int
    """Our IKE port (0: any free port)."""
    nat_t_port: int
    """Our NAT-T port (0: any free port)."""
    remote_address: str | None
    remote_port: int
    ike: IkeConfiguration
    limits: EndpointLimits
    allow_insecure_permissions: bool = False
    """``[peer] allow_insecure_permissions``: accept a PSK or key file others may read."""
    private_key_file: Path | None = None
    """``[auth] key``: our private key's file, whose permissions are checked too."""

    @property
    def remote(self) -> Address:
        """The peer to initiate to; ``ConfigurationError`` when ``[peer] remote`` is missing."""
        if self.remote_address is None:
            raise ConfigurationError(
                f"{self.source}: [peer] remote: required to initiate", field="peer.remote"
            )
        return (self.remote_address, self.remote_port)

    def local_for(self, remote_address: str) -> str:
        """Our bound address of the same family as ``remote_address``."""
        version = ipaddress.ip_address(remote_address).version
        for addr in self.local_addresses:
            if ipaddress.ip_address(addr).version == version:
                return addr
        raise ConfigurationError(
            f"{self.source}: [peer] local: no IPv{version} address to reach {remote_address}",
            field="peer.local",
        )

    def responder_config(self) -> Callable[[Address, Address], IkeConfiguration | None]:
        """A ``config_for(local, remote)`` for ``IkeEndpoint``: our IKE configuration for
        every peer, or only for ``[peer] remote`` when it is set."""
        only = (
            ipaddress.ip_address(self.remote_address) if self.remote_address is not None else None
        )
        ike = self.ike

        def config_for(local: Address, remote: Address) -> IkeConfiguration | None:
            # Asked for every new SA: parse each peer's address text once.
            if only is not None and _ip(remote[0]) != only:
                return None
            return ike

        return config_for


@functools.lru_cache(maxsize=4096)
def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def load_peer_config(
    path: str | Path, *, registry=DEFAULT_REGISTRY, allow_insecure_permissions: bool = False
) -> PeerConfig:
    """Read and check a peer configuration file; every key exchange method it names must
    have an available backend in ``registry``.

    A file holding a pre-shared key that group or others may read is refused (as ssh
    refuses such key files) unless ``allow_insecure_permissions`` or the file's own
    ``[peer] allow_insecure_permissions = true`` says otherwise.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            text = f.read().decode("utf-8")
    except OSError as exc:
        raise ConfigurationError(
            f"{path}: cannot be read ({exc.strerror or exc})", field="file"
        ) from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{path}: is not UTF-8 text", field="file") from None
    peer = parse_peer_config(text, source=str(path), registry=registry, base=path.parent)
    if allow_insecure_permissions or peer.allow_insecure_permissions:
        return peer
    if (peer.ike.psk or peer.ike.ppk) and mode & 0o077:
        _refuse_readable(path, mode, "holds a pre-shared key")
    key = peer.private_key_file
    if key is not None:
        try:
            key_mode = key.stat().st_mode
        except OSError as exc:  # loaded a moment ago: only a race gets here
            raise ConfigurationError(
                f"{key}: cannot be read ({exc.strerror or exc})", field="auth.key"
            ) from None
        if key_mode & 0o077:
            _refuse_readable(key, key_mode, "is a private key")
    return peer


def _refuse_readable(path: Path, mode: int, what: str) -> NoReturn:
    """As ssh does for its keys: a secret others can read is refused."""
    raise ConfigurationError(
        f"{path}: {what} but is readable by group or others (mode {stat.S_IMODE(mode):04o}); "
        f"run 'chmod 600 {path}' or pass --allow-insecure-permissions",
        field="file",
    )


def parse_peer_config(
    text: str,
    *,
    source: str = "peer.toml",
    registry=DEFAULT_REGISTRY,
    base: Path | None = None,
) -> PeerConfig:
    """Check a peer configuration given as TOML text; ``source`` names it in errors,
    ``base`` is the directory relative ``[auth]`` file names start from."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{source}: invalid TOML: {exc}", field="file") from None
    reader = _Reader(source, data, registry)
    reader.base = base or Path.cwd()
    return reader.peer_config()


class _Reader:
    """Reads one checked value at a time; every error names ``[section] key``."""

    def __init__(self, source: str, data: dict[str, Any], registry) -> None:
        self.base = Path.cwd()
        self.source = source
        self.data = data
        self.registry = registry
        self.key_file: Path | None = None
        for section, value in data.items():
            if section not in _SCHEMA:
                raise ConfigurationError(
                    f"{source}: [{section}]: unknown section; expected one of "
                    + ", ".join(f"[{s}]" for s in _SCHEMA),
                    field=section,
                )
            if not isinstance(value, dict):
                raise ConfigurationError(
                    f"{source}: {section}: must be a [{section}] section", field=section
                )
            for key in value:
                if key not in _SCHEMA[section]:
                    raise ConfigurationError(
                        f"{source}: [{section}] {key}: unknown key; expected one of "
                        + ", ".join(_SCHEMA[section]),
                        field=f"{section}.{key}",
                    )

    def error(self, section: str, key: str, problem: str) -> ConfigurationError:
        return ConfigurationError(
            f"{self.source}: [{section}] {key}: {problem}", field=f"{section}.{key}"
        )

    def raw(self, section: str, key: str) -> Any:
        return self.data.get(section, {}).get(key)

    def has(self, section: str, key: str) -> bool:
        return key in self.data.get(section, {})

    def string(self, section: str, key: str, default: str | None = None) -> str | None:
        value = self.raw(section, key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.error(section, key, f"must be a string, not {_kind(value)}")
        return value

    def required(self, section: str, key: str) -> str:
        value = self.string(section, key)
        if value is None or not value.strip():
            raise self.error(section, key, "is required")
        return value.strip()

    def boolean(self, section: str, key: str, default: bool) -> bool:
        value = self.raw(section, key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(section, key, f"must be true or false, not {_kind(value)}")
        return value

    def optional_boolean(self, section: str, key: str) -> bool | None:
        """The key's boolean, or ``None`` when absent (the preset decides)."""
        if self.raw(section, key) is None:
            return None
        return self.boolean(section, key, False)

    def choice(self, section: str, key: str, allowed: tuple[str, ...], default: str) -> str:
        value = self.string(section, key, default)
        assert value is not None
        if value not in allowed:
            raise self.error(section, key, f"must be one of {', '.join(allowed)}, not '{value}'")
        return value

    def integer(
        self, section: str, key: str, default: int | None, lo: int, hi: int | None = None
    ) -> int | None:
        value = self.raw(section, key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(section, key, f"must be an integer, not {_kind(value)}")
        if value < lo or (hi is not None and value > hi):
            span = f"from {lo} to {hi}" if hi is not None else f"at least {lo}"
            raise self.error(section, key, f"must be {span}, not {value}")
        return value

    def optional_integer(self, section: str, key: str, default: int | None, lo: int) -> int | None:
        """An integer bound that ``false`` turns off (``None``)."""
        if self.raw(section, key) is False:
            return None
        if self.raw(section, key) is True:
            raise self.error(section, key, "must be an integer or false (no bound), not true")
        return self.integer(section, key, default, lo)

    def number(
        self, section: str, key: str, default: float, *, lo: float = 0.0, strict: bool = True
    ) -> float:
        value = self.raw(section, key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(section, key, f"must be a number, not {_kind(value)}")
        if not math.isfinite(value) or value < lo or (strict and value == lo):
            bound = f"greater than {lo:g}" if strict else f"at least {lo:g}"
            raise self.error(section, key, f"must be {bound}, not {value}")
        return float(value)

    def duration(self, section: str, key: str, default: float | None) -> float | None:
        """A time span in strongSwan's syntax: seconds as a number, or a string with an
        optional unit (``"30s"``, ``"5m"``, ``"4h"``, ``"1d"``)."""
        value = self.raw(section, key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise self.error(
                section, key, f"must be a duration such as 30s, 5m or 4h, not {_kind(value)}"
            )
        seconds: float | None
        if isinstance(value, str):
            m = _DURATION.fullmatch(value.strip())
            seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"] if m else None
        else:
            seconds = float(value)
        if seconds is None or not math.isfinite(seconds) or seconds < 0:
            raise self.error(
                section,
                key,
                f"must be a duration of zero or more, such as 30s, 5m or 4h, not {value!r}",
            )
        return seconds

    def address(self, section: str, key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise self.error(section, key, f"must be an IP address string, not {_kind(value)}")
        try:
            return str(ipaddress.ip_address(value.strip()))
        except ValueError:
            raise self.error(section, key, f"'{value}' is not an IPv4 or IPv6 address") from None

    def addresses(self, section: str, key: str) -> tuple[str, ...]:
        value = self.raw(section, key)
        if value is None:
            raise self.error(section, key, "is required")
        items = value if isinstance(value, list) else [value]
        if not items:
            raise self.error(section, key, "must name at least one address")
        out = tuple(self.address(section, key, v) for v in items)
        if len(set(out)) != len(out):
            raise self.error(section, key, "names an address twice")
        return out

    def identity(self, section: str, key: str, text: str) -> Identity:
        try:
            return Identity.parse(text)
        except ConfigurationError as exc:
            raise self.error(section, key, str(exc)) from None

    def proposals(self, section: str, default: str, protocol: int) -> tuple[Proposal, ...]:
        text = self.string(section, "proposals", default)
        assert text is not None
        try:
            proposals = parse_proposals(text, protocol=protocol)
        except ConfigurationError as exc:
            raise self.error(section, "proposals", str(exc)) from None
        names = {info.method: info.name for info in DEFAULT_REGISTRY.methods()}
        for proposal in proposals:
            for t in proposal.transforms:
                if t.type in (TransformType.KE, *ADDKE_TYPES) and t.id != 0:
                    if not self.registry.is_available(t.id):
                        name = names.get(t.id, str(t.id))
                        raise self.error(
                            section,
                            "proposals",
                            f"key exchange method '{name}' has no crypto backend here "
                            "(see 'pqike algorithms')",
                        )
        return proposals

    def backends(self, section: str, key: str) -> tuple[tuple[int, str], ...]:
        """``backends = { mlkem768 = "pqcrypto" }``: a crypto backend per method."""
        value = self.raw(section, key)
        if value is None:
            return ()
        if not isinstance(value, dict):
            raise self.error(
                section, key, f"must be a table of method = backend, not {_kind(value)}"
            )
        out = []
        for name, backend in value.items():
            if not isinstance(backend, str):
                raise self.error(section, key, f"{name}: the backend must be a string")
            try:
                out.append(self.registry.backend_choice(name, backend))
            except ConfigurationError as exc:
                raise self.error(section, key, str(exc)) from None
        return tuple(out)

    def selectors(self, section: str, key: str) -> tuple[TrafficSelector, ...]:
        value = self.raw(section, key)
        if value is None:
            return ()  # IkeConfiguration fills in the preset's default
        items = value if isinstance(value, list) else [value]
        if not items:
            raise self.error(section, key, "must name at least one network")
        out = []
        for item in items:
            if not isinstance(item, str):
                raise self.error(section, key, f"must list CIDR strings, not {_kind(item)}")
            try:
                out.append(TrafficSelector.from_network(item.strip()))
            except ValueError:
                raise self.error(section, key, f"'{item}' is not a network in CIDR form") from None
        return tuple(out)

    def lifetimes(self) -> dict[str, float | None]:
        """The ``IkeConfiguration`` lifetime fields from ``[ike]`` and ``[esp]``, checked
        here so an error names the TOML key rather than the field."""
        ike_rekey = self.duration("ike", "rekey_time", 14400.0)
        child_rekey = self.duration("esp", "rekey_time", 3600.0)
        child_life = self.duration("esp", "life_time", None)
        assert ike_rekey is not None and child_rekey is not None
        if child_life is not None and child_rekey and child_life < child_rekey:
            raise self.error(
                "esp",
                "life_time",
                f"must not be shorter than [esp] rekey_time ({child_rekey:g} s), "
                f"not {child_life:g} s",
            )
        return {
            "rekey_time": ike_rekey,
            "over_time": self.duration("ike", "over_time", None),
            "rand_time": self.duration("ike", "rand_time", None),
            "dpd_delay": self.duration("ike", "dpd_delay", 0.0),
            "child_rekey_time": child_rekey,
            "child_life_time": child_life,
            "child_rand_time": self.duration("esp", "rand_time", None),
        }

    def path(self, section: str, key: str, value: Any) -> Path:
        if not isinstance(value, str) or not value:
            raise self.error(section, key, f"must be a file name, not {_kind(value)}")
        p = Path(value)
        return p if p.is_absolute() else self.base / p

    def paths(self, section: str, key: str) -> list[Path]:
        value = self.raw(section, key)
        if value is None:
            return []
        values = value if isinstance(value, list) else [value]
        return [self.path(section, key, v) for v in values]

    def auth(self, need_psk: list[bool]) -> dict[str, Any]:
        """The ``[auth]`` section as IkeConfiguration keywords; ``need_psk`` is set to
        whether ``[peer] psk`` is still needed."""
        out: dict[str, Any] = {}
        key, cert = self.raw("auth", "key"), self.raw("auth", "certificate")
        try:
            if (key is None) != (cert is None):
                missing = "key" if key is None else "certificate"
                raise self.error("auth", missing, "is required with the other of key/certificate")
            if key is not None:
                self.key_file = self.path("auth", "key", key)
                out["credential"] = Credential.load(
                    self.key_file,
                    self.path("auth", "certificate", cert),
                    *self.paths("auth", "chain"),
                )
            cas = self.paths("auth", "cacerts")
            if cas:
                out["trust"] = TrustStore.load(*cas)
        except ConfigurationError as exc:
            if exc.field and exc.field.startswith("auth."):
                raise
            raise ConfigurationError(f"{self.source}: [auth]: {exc}", field="auth") from None
        send_cert = self.string("auth", "send_cert", "ifasked")
        if send_cert not in SEND_CERT:
            raise self.error("auth", "send_cert", f"must be one of {', '.join(SEND_CERT)}")
        out["send_cert"] = send_cert
        out["rsa_pss"] = self.boolean("auth", "rsa_pss", False)
        ppk = self.secret("auth", "ppk", required=False)
        if ppk:
            ppk_id = self.string("auth", "ppk_id")
            if not ppk_id:
                raise self.error("auth", "ppk_id", "is required with a ppk")
            out.update(ppk=ppk, ppk_id=ppk_id.encode())
        out["ppk_required"] = self.boolean("auth", "ppk_required", False)
        if out["ppk_required"] and not ppk:
            raise self.error("auth", "ppk_required", "needs a ppk (or ppk_hex)")
        mode = self.string("auth", "ppk_mode", "rfc8784")
        if mode not in PPK_MODES:
            raise self.error("auth", "ppk_mode", f"must be one of {', '.join(PPK_MODES)}")
        out["ppk_mode"] = mode
        more = self.raw("auth", "ppks_hex")
        if more is not None:
            out["ppks"] = self.more_ppks(more, have_ppk=bool(ppk))
        need_psk.append("credential" not in out or "trust" not in out)
        return out

    def more_ppks(self, table: Any, *, have_ppk: bool) -> tuple[tuple[bytes, bytes], ...]:
        """``[auth] ppks_hex``: ``{ "ppk-id" = "hex digits", ... }`` in its order."""
        if not isinstance(table, dict):
            raise self.error(
                "auth", "ppks_hex", f"must be a table of PPK_ID = hex, not {_kind(table)}"
            )
        if not have_ppk:
            raise self.error("auth", "ppks_hex", "needs a first ppk (or ppk_hex) and ppk_id")
        out = []
        for ppk_id, hexed in table.items():
            try:
                key = bytes.fromhex(str(hexed).strip().removeprefix("0x").replace(":", ""))
            except ValueError:
                key = b""
            if not isinstance(hexed, str) or not key or not ppk_id:
                raise self.error(
                    "auth", "ppks_hex", f"{ppk_id!r} must map to non-empty hexadecimal digits"
                )
            out.append((ppk_id.encode(), key))
        return tuple(out)

    def psk(self) -> bytes:
        return self.secret("peer", "psk", required=True)

    def secret(self, section: str, name: str, *, required: bool) -> bytes:
        text, hexed = self.raw(section, name), self.raw(section, f"{name}_hex")
        psk_hex = f"{name}_hex"
        if text is not None and hexed is not None:
            raise self.error(section, name, f"give either {name} or {psk_hex}, not both")
        if hexed is not None:
            if not isinstance(hexed, str):
                raise self.error(section, psk_hex, f"must be a string, not {_kind(hexed)}")
            digits = hexed.strip().removeprefix("0x").replace(":", "").replace(" ", "")
            try:
                key = bytes.fromhex(digits)
            except ValueError:
                raise self.error(section, psk_hex, "must be hexadecimal digits") from None
            if not key:
                raise self.error(section, psk_hex, "must not be empty")
            return key
        if text is None:
            if not required:
                return b""
            raise self.error(section, name, f"is required (or give {psk_hex})")
        if not isinstance(text, str):
            raise self.error(section, name, f"must be a string, not {_kind(text)}")
        if not text:
            raise self.error(section, name, "must not be empty")
        return text.encode("utf-8")

    def peer_config(self) -> PeerConfig:
        local = self.addresses("peer", "local")
        port = self.integer("peer", "port", 500, 0, 65535)
        nat_t_port = self.integer("peer", "nat_t_port", 4500, 0, 65535)
        assert port is not None and nat_t_port is not None
        if port == nat_t_port and port != 0:
            raise self.error("peer", "nat_t_port", f"must differ from port ({port})")
        remote = None
        if self.raw("peer", "remote") is not None:
            remote = self.address("peer", "remote", self.raw("peer", "remote"))
            version = ipaddress.ip_address(remote).version
            if all(ipaddress.ip_address(a).version != version for a in local):
                raise self.error(
                    "peer", "remote", f"no [peer] local address is IPv{version} like {remote}"
                )
        remote_port = self.integer("peer", "remote_port", 500, 1, 65535)
        assert remote_port is not None
        local_id = self.identity("peer", "local_id", self.required("peer", "local_id"))
        remote_text = self.string("peer", "remote_id")
        remote_id = (
            self.identity("peer", "remote_id", remote_text.strip())
            if remote_text is not None
            else None
        )
        need_psk: list[bool] = []
        auth = self.auth(need_psk)
        psk = (
            self.psk()
            if need_psk[0] or self.has("peer", "psk") or self.has("peer", "psk_hex")
            else b""
        )

        ike_proposals = self.proposals("ike", "aes256gcm16-prfsha384-x25519", ProtocolId.IKE)
        fragment_size = self.integer("ike", "fragment_size", 1280, 576, 65535)
        assert fragment_size is not None

        esp_proposals = self.proposals("esp", "aes256gcm16", ProtocolId.ESP)
        mode = self.string("esp", "mode", "tunnel")
        if mode not in ("tunnel", "transport"):
            raise self.error("esp", "mode", f"must be 'tunnel' or 'transport', not '{mode}'")

        tries = self.integer("retransmit", "tries", 5, 0, 100)
        assert tries is not None
        base = self.number("retransmit", "base", 1.8, lo=1.0, strict=False)

        lifetimes: dict[str, Any] = dict(self.lifetimes())

        defaults = EndpointLimits()
        max_half_open = self.integer("responder", "max_half_open", defaults.max_half_open, 0)
        assert max_half_open is not None
        budget = self.integer("responder", "reassembly_budget", defaults.reassembly_total, 0)
        assert budget is not None
        per_peer = self.optional_integer(
            "responder", "max_half_open_per_peer", defaults.max_half_open_per_peer, 0
        )
        cookie_ip = self.optional_integer(
            "responder", "cookie_threshold_per_peer", defaults.cookie_threshold_per_peer, 0
        )
        if per_peer is not None and cookie_ip is not None and cookie_ip > per_peer:
            raise self.error(
                "responder",
                "cookie_threshold_per_peer",
                f"must not be above max_half_open_per_peer ({per_peer}), or a peer is "
                "blocked before it is asked for a cookie",
            )
        limits = EndpointLimits(
            max_half_open=max_half_open,
            max_half_open_per_peer=per_peer,
            cookie_threshold=self.optional_integer(
                "responder", "cookie_threshold", defaults.cookie_threshold, 0
            ),
            cookie_threshold_per_peer=cookie_ip,
            closed_linger=self.number("responder", "closed_linger", 30.0, strict=False),
            replay_window=self.number(
                "responder", "replay_window", defaults.replay_window, strict=False
            ),
            reassembly_total=budget,
            reassembly_per_peer=self.optional_integer(
                "responder", "reassembly_per_peer", defaults.reassembly_per_peer, 0
            ),
            reassembly_half_open=self.optional_integer(
                "responder", "reassembly_half_open", self.half_open_default(ike_proposals), 0
            ),
        )
        # Every value is read (and its own error raised) before IkeConfiguration runs its
        # cross-field checks, so only those are re-labelled with the file name below.
        local_ts = self.selectors("esp", "local_ts")
        remote_ts = self.selectors("esp", "remote_ts")
        fragmentation = self.optional_boolean("ike", "fragmentation")
        retransmit_timeout = self.number("retransmit", "timeout", 4.0)
        require_cookie = self.boolean("responder", "require_cookie", False)
        force_nat_t = self.optional_boolean("ike", "force_nat_t")
        kex_backends = self.backends("ike", "backends")
        half_open_timeout = self.number("responder", "half_open_timeout", 30.0)
        preset = self.choice("ike", "preset", PRESETS, "pqike")
        additional = (
            self.addresses("ike", "additional_addresses")
            if self.raw("ike", "additional_addresses")
            else ()
        )
        try:
            ike = IkeConfiguration(
                ike_proposals=ike_proposals,
                esp_proposals=esp_proposals,
                local_id=local_id,
                psk=psk,
                remote_id=remote_id,
                local_ts=local_ts,
                remote_ts=remote_ts,
                transport_mode=mode == "transport",
                fragmentation=fragmentation,
                fragment_size=fragment_size,
                retransmit_timeout=retransmit_timeout,
                retransmit_base=base,
                retransmit_tries=tries,
                require_cookie=require_cookie,
                nat_t_port=nat_t_port or 4500,
                force_nat_t=force_nat_t,
                preset=preset,
                additional_addresses=additional,
                kex_backends=kex_backends,
                half_open_timeout=half_open_timeout,
                validation_clock=utc_now,
                **lifetimes,
                **auth,
            )
        except ConfigurationError as exc:  # a cross-field rule of IkeConfiguration itself
            raise ConfigurationError(f"{self.source}: {exc}", field=exc.field) from None
        return PeerConfig(
            source=self.source,
            local_addresses=local,
            port=port,
            nat_t_port=nat_t_port,
            remote_address=remote,
            remote_port=remote_port,
            ike=ike,
            limits=limits,
            allow_insecure_permissions=self.boolean("peer", "allow_insecure_permissions", False),
            private_key_file=self.key_file,
        )

    def half_open_default(self, proposals: tuple[Proposal, ...]) -> int:
        """The largest key exchange payload these proposals may bring, plus slack: what a
        half-open IKE SA must be able to reassemble (``EndpointLimits.reassembly_half_open``)."""
        largest = 0
        for proposal in proposals:
            for t in proposal.transforms:
                if t.type in (TransformType.KE, *ADDKE_TYPES) and t.id != 0:
                    try:
                        info = self.registry.info(t.id)
                    except ConfigurationError:  # unknown here: the generic default
                        return EndpointLimits().reassembly_half_open or 0
                    largest = max(largest, info.initiator_size, info.responder_size)
        return largest + _HALF_OPEN_SLACK


def _kind(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


__all__ = ["PeerConfig", "load_peer_config", "parse_peer_config"]
