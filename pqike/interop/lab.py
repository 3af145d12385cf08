"""The strongSwan 6 interop lab: two network namespaces, one charon in each.

The lab joins two network namespaces with a veth pair (``lab0`` on both ends) and
gives them documentation addresses::

    left   192.0.2.1/24  2001:db8::1/64   ---- veth ----   right  192.0.2.2/24  2001:db8::2/64

In each namespace it can start a strongSwan ``charon`` with its own generated
``strongswan.conf`` and ``swanctl.conf``, drive it with ``swanctl`` over its own vici
socket, capture the UDP datagrams with ``tcpdump``, and tear everything down again,
also when something failed on the way.

Typical use::

    with Lab(ipv6=False) as lab:
        left = lab.start_strongswan("left", ike_proposal="aes256gcm16-prfsha384-x25519")
        right = lab.start_strongswan("right", ike_proposal="aes256gcm16-prfsha384-x25519")
        result = left.initiate("conn", child="child", timeout=10)
        print(result.ike_sa.algorithms.key_exchanges)   # ('CURVE_25519',)

A pqike peer runs in a namespace through :meth:`Lab.ns_prefix`, :meth:`Lab.exec_in` or
:meth:`Lab.popen_in`.

Two daemons from one build: charon's PID file directory is fixed at build time
(``--with-piddir``, ``<cache>/install/run``). Each charon is started under
``unshare --mount`` and bind-mounts its own run directory over that path, so every
daemon has a private PID file (and load-tester socket) while everything else it
sees is the host's file system.

The build comes from ``interop/install-strongswan.sh`` in the source checkout (see
:func:`install_script`). The CLI is ``python -m pqike.interop up|down|run`` (see
``--help`` and :mod:`pqike.interop.__main__`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..constants import IKE_HEADER_LENGTH, ExchangeType, HeaderFlag, PayloadType
from ..wire import datagram as udp

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_PSK",
    "IPV4_ADDRESSES",
    "IPV6_ADDRESSES",
    "KERNEL_BACKENDS",
    "SIDES",
    "Algorithms",
    "Capture",
    "ChildSaStatus",
    "Datagram",
    "IkeSaStatus",
    "InitiateResult",
    "Lab",
    "LabError",
    "StrongSwan",
    "StrongSwanConfig",
    "StrongSwanInstall",
    "cleanup",
    "datagram_sequence",
    "ensure_strongswan",
    "install_script",
    "log_dumps",
    "parse_list_sas",
    "parse_vici_raw",
    "read_pcap",
    "render_strongswan_conf",
    "render_swanctl_conf",
    "repository_root",
    "strongswan_version",
]

INSTALL_SCRIPT_ENV = "PQIKE_STRONGSWAN_INSTALLER"
"""Environment variable naming ``install-strongswan.sh`` when pqike is not run from a
source checkout (the script is not part of the installed package)."""
CACHE_ENV = "PQIKE_STRONGSWAN_CACHE"
"""Environment variable naming the strongSwan build's cache directory (the script reads
it too); default ``<checkout>/interop/.cache/strongswan``."""
VERSION_ENV = "PQIKE_STRONGSWAN_VERSION"
"""Environment variable choosing the lab's strongSwan version (the script reads it too):
one of ``STRONGSWAN_VERSIONS``, default ``DEFAULT_STRONGSWAN_VERSION``."""
DEFAULT_STRONGSWAN_VERSION = "6.0.1"
#: The versions ``install-strongswan.sh`` builds: 6.0.1 in the cache directory itself,
#: the others beside it in a subdirectory named after the version.
STRONGSWAN_VERSIONS = ("6.0.1", "6.1.0")

#: Name prefix of everything the lab creates (namespaces, run directories).
DEFAULT_PREFIX = "pqike"
#: The two ends of the lab, in the order of their addresses (.1 and .2).
SIDES = ("left", "right")
#: Pre-shared key used unless told otherwise. Lab use only.
DEFAULT_PSK = "pqike-interop-lab-psk"

#: Each side's lab address per family (documentation prefixes, RFC 5737 and RFC 3849).
IPV4_ADDRESSES = {"left": "192.0.2.1", "right": "192.0.2.2"}
IPV6_ADDRESSES = {"left": "2001:db8::1", "right": "2001:db8::2"}
_IFACE = "lab0"
# Inner (tunnelled) addresses for kernel-libipsec: other documentation prefixes.
_TS4 = {"left": "203.0.113.1/32", "right": "203.0.113.2/32"}
_TS6 = {"left": "2001:db8:1::1/128", "right": "2001:db8:1::2/128"}

# charon's default plugin order for our build (s_plugins then c_plugins in
# src/charon/Makefile), minus the kernel-ipsec backend not chosen: only the first
# registered kernel-ipsec implementation is used, so exactly one must be loaded.
_CRYPTO_PLUGINS = (
    "aes sha2 random nonce x509 revocation constraints pubkey pkcs1 pem openssl pkcs8 "
    "curve25519 chapoly hmac kdf gcm ml"
)
_KERNEL_PLUGINS = {
    "load-tester": "load-tester kernel-netlink",
    "libipsec": "kernel-libipsec kernel-netlink",
}
_OTHER_PLUGINS = "socket-default vici updown eap-identity eap-md5 counters"
#: The values of ``StrongSwanConfig.kernel``.
KERNEL_BACKENDS = tuple(sorted(_KERNEL_PLUGINS))


AGGRESSIVE_PSK_OPTION = "i_dont_care_about_security_and_use_aggressive_mode_psk"
"""The strongswan.conf option without which charon refuses IKEv1 aggressive mode with a
PSK (its hash goes unencrypted and can be attacked offline)."""


class LabError(RuntimeError):
    """Something in the lab (not in the protocol under test) went wrong."""


# ---------------------------------------------------------------------------
# strongSwan installation


@dataclass(frozen=True)
class StrongSwanInstall:
    """Where the lab's strongSwan build lives."""

    prefix: Path

    @property
    def charon(self) -> Path:
        """The charon daemon binary."""
        return self.prefix / "libexec" / "ipsec" / "charon"

    @property
    def swanctl(self) -> Path:
        """The swanctl control tool."""
        return self.prefix / "sbin" / "swanctl"

    @property
    def piddir(self) -> Path:
        """The PID file directory compiled into charon (``--with-piddir``)."""
        return self.prefix / "run"

    def is_installed(self) -> bool:
        """True when charon and swanctl exist."""
        return self.charon.is_file() and self.swanctl.is_file()

    def version(self) -> str:
        """charon's version line, e.g. ``strongSwan 6.0.1``."""
        out = subprocess.run(
            [str(self.charon), "--version"], capture_output=True, text=True, check=False
        )
        return (out.stdout or out.stderr).strip()


def repository_root() -> Path:
    """The source checkout this ``pqike`` package lives in (an editable install or a
    checkout on the path); a site-packages install has no ``interop/`` folder beside it."""
    return Path(__file__).resolve().parents[2]


def install_script() -> Path:
    """``install-strongswan.sh``: ``$PQIKE_STRONGSWAN_INSTALLER`` if set, else
    ``interop/install-strongswan.sh`` in :func:`repository_root`."""
    override = os.environ.get(INSTALL_SCRIPT_ENV)
    if override:
        return Path(override)
    return repository_root() / "interop" / "install-strongswan.sh"


def strongswan_version() -> str:
    """The strongSwan version the lab runs: ``$PQIKE_STRONGSWAN_VERSION`` or 6.0.1."""
    version = os.environ.get(VERSION_ENV) or DEFAULT_STRONGSWAN_VERSION
    if version not in STRONGSWAN_VERSIONS:
        raise LabError(
            f"{VERSION_ENV}={version!r} is not a version the lab builds "
            f"({', '.join(STRONGSWAN_VERSIONS)})"
        )
    return version


def _default_install() -> StrongSwanInstall:
    cache = os.environ.get(CACHE_ENV)
    base = Path(cache) if cache else repository_root() / "interop" / ".cache" / "strongswan"
    version = strongswan_version()
    if version != DEFAULT_STRONGSWAN_VERSION:
        base = base / version
    return StrongSwanInstall(base / "install")


def ensure_strongswan(install: bool = True) -> StrongSwanInstall:
    """Return the lab's strongSwan build, running ``install-strongswan.sh`` if it is missing.

    With ``install=False`` a missing build raises :class:`LabError` instead, as does a
    missing script (pqike not run from a source checkout and ``$PQIKE_STRONGSWAN_INSTALLER``
    unset).
    """
    sw = _default_install()
    if sw.is_installed():
        return sw
    script = install_script()
    if not install:
        raise LabError(f"strongSwan is not installed in {sw.prefix}; run {script}")
    if not script.is_file():
        raise LabError(
            f"strongSwan is not installed in {sw.prefix} and {script} does not exist: run "
            f"pqike from a source checkout or set {INSTALL_SCRIPT_ENV} (and {CACHE_ENV})"
        )
    proc = subprocess.run(
        ["bash", str(script), "--version", strongswan_version()], capture_output=True, text=True
    )
    if proc.returncode != 0 or not sw.is_installed():
        raise LabError(
            f"{script.name} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}"
        )
    return sw


# ---------------------------------------------------------------------------
# configuration templates


@dataclass(frozen=True)
class StrongSwanConfig:
    """What one charon is configured with.

    ``local_addr``/``remote_addr`` and the IDs are filled in by :meth:`Lab.start_strongswan`
    from the side it runs on; everything else is the experiment's choice.
    """

    #: IKE proposal in strongSwan syntax, e.g. ``aes256gcm16-prfsha384-x25519-ke1_mlkem768``.
    ike_proposal: str = "aes256gcm16-prfsha384-x25519"
    #: ESP proposal; KE methods in it apply only to CREATE_CHILD_SA and rekeys.
    esp_proposal: str = "aes256gcm16"
    psk: str = DEFAULT_PSK
    #: ``psk`` or ``pubkey`` (certificates: ``cert``, ``key``, ``cacert`` and any
    #: ``intermediates``, all absolute PEM file names). The key is copied into the
    #: daemon's ``swanctl/private/``: swanctl loads private keys only from there (a
    #: ``secrets.private*`` section merely holds passphrases). ``pubkey`` needs
    #: ``kernel="libipsec"``: the load-tester plugin registers a credential set of its
    #: own (an RSA key and, for any identity, a certificate it makes on demand), which
    #: charon may pick to sign with instead of the configured certificate.
    auth: str = "psk"
    cert: str = ""
    key: str = ""
    cacert: str = ""
    intermediates: tuple[str, ...] = ()
    #: swanctl ``send_cert``: ifasked (a CERTREQ came), always or never.
    send_cert: str = "ifasked"
    #: The peer's certificate, when the peer is to be authenticated without sending it
    #: (swanctl ``remote.certs``); empty: the peer must send its chain.
    peer_cert: str = ""
    #: RFC 8784 PPK as hex digits with its ID (empty: none), and whether it is required.
    ppk_hex: str = ""
    ppk_id: str = ""
    ppk_required: bool = False
    #: Our IKE identity (an FQDN ID); default ``<side>.pqike.test``.
    local_id: str = ""
    #: The peer's IKE identity; default ``<other side>.pqike.test``.
    remote_id: str = ""
    local_addr: str = ""
    remote_addr: str = ""
    #: CHILD SA traffic selectors; empty = ``dynamic`` (our address), except with
    #: ``libipsec`` where the lab picks 203.0.113.x / 2001:db8:1::x (see below).
    local_ts: str = ""
    remote_ts: str = ""
    #: Connection and child names in swanctl.conf.
    conn: str = "conn"
    child: str = "child"
    #: charon's IKE ports. With neither port 500 strongSwan prepends the non-ESP marker
    #: to every IKE message, IKE_SA_INIT included.
    port: int = 500
    port_nat_t: int = 4500
    #: The peer's port; defaults to ``port`` (the peer is configured alike).
    remote_port: int = 0
    #: Largest IP datagram for IKE fragments (RFC 7383); 0 = 576 for IPv4, 1280 for IPv6.
    fragment_size: int = 1280
    #: swanctl ``fragmentation``: yes, accept, no or force.
    fragmentation: str = "yes"
    send_certreq: bool = True
    mobike: bool = True
    #: How CHILD SAs are "installed": ``load-tester`` (fake_kernel, a no-op; it also
    #: adds a test-only ``load-test`` config with fixed credentials) or ``libipsec``
    #: (ESP in user space over TUN).
    kernel: str = "load-tester"
    #: filelog levels per subsystem; ike/chd 4 log the derived keys.
    log_levels: Mapping[str, int] = field(
        default_factory=lambda: {"default": 1, "ike": 4, "chd": 4, "enc": 1, "net": 1, "cfg": 2}
    )
    #: Retransmission: strongSwan's defaults give up after ~165 s; the lab fails faster.
    #: The first retransmission waits strongSwan's default 4 s: on a loaded 2-core
    #: machine a peer can take 2 s to answer, and a retransmission is an error in
    #: ``charon_errors`` (the matrix demands none).
    retransmit_tries: int = 3
    retransmit_timeout: float = 4.0
    #: Extra lines placed inside ``charon { }`` of strongswan.conf.
    extra_charon: str = ""
    #: IKE SA lifetimes in swanctl syntax (``"4h"``, ``"30s"``, ``"0"``); empty keeps
    #: strongSwan's default (rekey_time 4 h, over_time 10 % of it, rand_time over_time).
    rekey_time: str = ""
    over_time: str = ""
    rand_time: str = ""
    #: Liveness checks (RFC 7296 1.4) after this long without traffic; empty = off.
    dpd_delay: str = ""
    #: Child SA lifetimes of every child (strongSwan: rekey_time 1 h, life_time 110 %,
    #: rand_time life_time - rekey_time).
    child_rekey_time: str = ""
    child_life_time: str = ""
    child_rand_time: str = ""
    #: Further children with the same settings as ``child`` (``swanctl --initiate
    #: --child NAME`` makes them with CREATE_CHILD_SA on the established IKE SA). charon
    #: refuses a Child SA with the selectors of one it has, so theirs are the two
    #: addresses' networks (/24, /64) rather than ``dynamic``.
    extra_children: tuple[str, ...] = ()
    #: IKE version of the connection (swanctl ``version``): 2, or 1 for IKEv1 (RFC 2409),
    #: main mode + quick mode unless ``aggressive``.
    version: int = 2
    #: IKEv1 only: aggressive mode instead of main mode (swanctl ``aggressive``). With a
    #: PSK charon refuses it unless ``i_dont_care_about_security_and_use_aggressive_mode_psk``
    #: is set, which the lab then does (aggressive mode sends the PSK-keyed hash in the
    #: clear, open to offline guessing: lab use only).
    aggressive: bool = False


def _conf_str(value: str) -> str:
    """Quote a value for strongswan.conf / swanctl.conf."""
    if "\n" in value:
        raise LabError("configuration values cannot contain newlines")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_strongswan_conf(config: StrongSwanConfig, *, vici_socket: Path, log_path: Path) -> str:
    """The ``strongswan.conf`` for one lab charon (and its swanctl)."""
    if config.kernel not in _KERNEL_PLUGINS:
        raise LabError(f"unknown kernel backend {config.kernel!r}; use load-tester or libipsec")
    load = " ".join((_CRYPTO_PLUGINS, _KERNEL_PLUGINS[config.kernel], _OTHER_PLUGINS))
    levels = "\n".join(f"      {k} = {v}" for k, v in config.log_levels.items())
    extra = f"{config.extra_charon.rstrip()}\n" if config.extra_charon.strip() else ""
    if config.aggressive and config.auth == "psk":
        extra = f"  {AGGRESSIVE_PSK_OPTION} = yes\n{extra}"
    if config.kernel == "load-tester":
        kernel = (
            "    load-tester {\n"
            "      # Makes CHILD SA installation a no-op: this kernel cannot hold IPsec SAs.\n"
            "      enable = yes\n"
            "      fake_kernel = yes\n"
            "    }\n"
        )
    else:
        kernel = ""
    return f"""\
# Generated by pqike.interop.lab for one lab daemon. Lab use only.
charon {{
  load = {load}
  port = {config.port}
  port_nat_t = {config.port_nat_t}
  fragment_size = {config.fragment_size}
  install_routes = no
  install_virtual_ip = no
  retransmit_tries = {config.retransmit_tries}
  retransmit_timeout = {config.retransmit_timeout}
  filelog {{
    lab {{
      path = {log_path}
      time_format = %Y-%m-%d %H:%M:%S
      time_precision = us
      ike_name = yes
      append = no
      flush_line = yes
{levels}
    }}
  }}
  syslog {{
    daemon {{
      default = -1
    }}
  }}
  plugins {{
    vici {{
      socket = unix://{vici_socket}
    }}
{kernel}  }}
{extra}}}
swanctl {{
  socket = unix://{vici_socket}
}}
"""


def _settings(indent: str, **values: str) -> str:
    """``key = value`` lines for the values that are set (empty: strongSwan's default)."""
    return "".join(f"{indent}{key} = {value}\n" for key, value in values.items() if value)


def render_swanctl_conf(config: StrongSwanConfig) -> str:
    """The ``swanctl.conf`` (connection + PSK or certificates, and any PPK) for one lab
    charon."""
    remote_port = config.remote_port or config.port
    yes_no = {True: "yes", False: "no"}
    lifetimes = _settings(
        "    ",
        rekey_time=config.rekey_time,
        over_time=config.over_time,
        rand_time=config.rand_time,
        dpd_delay=config.dpd_delay,
    )
    child_lifetimes = _settings(
        "        ",
        rekey_time=config.child_rekey_time,
        life_time=config.child_life_time,
        rand_time=config.child_rand_time,
    )

    def network(addr: str) -> str:
        prefix = 24 if ipaddress.ip_address(addr).version == 4 else 64
        return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))

    selectors = [(config.child, config.local_ts or "dynamic", config.remote_ts or "dynamic")]
    selectors += [
        (name, network(config.local_addr), network(config.remote_addr))
        for name in config.extra_children
    ]
    children = "".join(
        f"""\
      {name} {{
        esp_proposals = {config.esp_proposal}
        local_ts = {local_ts}
        remote_ts = {remote_ts}
        mode = tunnel
        start_action = none
{child_lifetimes}      }}
"""
        for name, local_ts, remote_ts in selectors
    )
    if config.auth == "pubkey":
        if config.kernel != "libipsec":
            raise LabError(
                "auth = pubkey needs kernel = libipsec: the load-tester plugin's own RSA "
                "key and on-demand certificates would be used instead of the configured ones"
            )
        local_auth = f"auth = pubkey\n      certs = {config.cert}"
        remote_auth = f"auth = pubkey\n      cacerts = {config.cacert}"
        if config.peer_cert:
            remote_auth += f"\n      certs = {config.peer_cert}"
        authorities = "".join(
            f"  inter{n} {{\n    cacert = {path}\n  }}\n"
            for n, path in enumerate((*config.intermediates, config.cacert))
        )
        secrets = ""  # the private key is copied into swanctl/private/ (see start)
    else:
        local_auth = remote_auth = "auth = psk"
        authorities = ""
        secrets = f"""  ike-lab {{
    id-local = {_conf_str(config.local_id)}
    id-remote = {_conf_str(config.remote_id)}
    secret = {_conf_str(config.psk)}
  }}
"""
    aggressive = "\n    aggressive = yes" if config.aggressive else ""
    ppk = ""
    if config.ppk_hex:
        ppk = (
            f"\n    ppk_id = {_conf_str(config.ppk_id)}\n    ppk_required = "
            + yes_no[config.ppk_required]
        )
        secrets += f"""  ppk-lab {{
    id = {_conf_str(config.ppk_id)}
    secret = 0x{config.ppk_hex}
  }}
"""
    return f"""\
# Generated by pqike.interop.lab. Lab use only.
connections {{
  {config.conn} {{
    version = {config.version}{aggressive}
    local_addrs = {config.local_addr}
    remote_addrs = {config.remote_addr}
    local_port = {config.port}
    remote_port = {remote_port}
    proposals = {config.ike_proposal}
    fragmentation = {config.fragmentation}
    send_certreq = {yes_no[config.send_certreq]}
    send_cert = {config.send_cert}
    mobike = {yes_no[config.mobike]}{ppk}
{lifetimes}    local {{
      {local_auth}
      id = {_conf_str(config.local_id)}
    }}
    remote {{
      {remote_auth}
      id = {_conf_str(config.remote_id)}
    }}
    children {{
{children}    }}
  }}
}}
authorities {{
{authorities}}}
secrets {{
{secrets}}}
"""


# ---------------------------------------------------------------------------
# swanctl --raw output


_ITEM_START = re.compile(r"([^\s={}\[\]]+)( \{|=\[|=)")
_KEY_BOUNDARY = re.compile(r" (?=\}|[a-z0-9][a-z0-9_-]*=|[^\s={}\[\]]+ \{)")


def parse_vici_raw(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Parse ``swanctl --raw`` output: one ``label {...}`` message per line.

    Sections become dicts, lists become lists of strings, values strings. A value
    ends where the next ``key=`` (lower-case key), ``name {`` or ``}`` begins, which is
    unambiguous for everything the lab configures (IDs without spaces).
    """
    messages = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        m = re.match(r"([^{]*?) \{", line)
        if not m:
            raise LabError(f"not a vici raw message: {line[:80]!r}")
        body, end = _parse_section(line, m.end())
        if line[end:].strip():
            raise LabError(f"trailing text after vici message: {line[end:][:80]!r}")
        messages.append((m.group(1), body))
    return messages


def _parse_section(s: str, i: int) -> tuple[dict[str, Any], int]:
    """Parse section items from ``s[i:]`` up to and including the closing brace."""
    out: dict[str, Any] = {}
    while True:
        if i < len(s) and s[i] == " ":
            i += 1
        if i >= len(s):
            raise LabError("unterminated section in vici message")
        if s[i] == "}":
            return out, i + 1
        m = _ITEM_START.match(s, i)
        if not m:
            raise LabError(f"unexpected text in vici message: {s[i : i + 40]!r}")
        name, kind = m.group(1), m.group(2)
        i = m.end()
        if kind == " {":
            out[name], i = _parse_section(s, i)
        elif kind == "=[":
            close = s.index("]", i)
            items = s[i:close]
            out[name] = items.split(" ") if items else []
            i = close + 1
        else:
            b = _KEY_BOUNDARY.search(s, i)
            close = s.find("}", i)
            end = min(b.start() if b else len(s), close if close >= 0 else len(s))
            out[name] = s[i:end]
            i = end


@dataclass(frozen=True)
class Algorithms:
    """Negotiated transforms, named as strongSwan names them (``AES_GCM_16``, ``ML_KEM_768``)."""

    encr: str | None = None
    encr_keysize: int | None = None
    integ: str | None = None
    prf: str | None = None
    #: The KE transform (``dh-group``), e.g. ``CURVE_25519``.
    ke: str | None = None
    #: Additional key exchanges (RFC 9370) as (n, method) for ADDKE n.
    additional_ke: tuple[tuple[int, str], ...] = ()

    @property
    def key_exchanges(self) -> tuple[str, ...]:
        """KE then ADDKE1..7 in order, e.g. ``('CURVE_25519', 'ML_KEM_768')``."""
        first = (self.ke,) if self.ke else ()
        return first + tuple(method for _, method in sorted(self.additional_ke))

    @classmethod
    def from_vici(cls, sa: Mapping[str, Any]) -> Algorithms:
        """Read the algorithm keys of an IKE or CHILD SA section of ``list-sas``."""
        keysize = sa.get("encr-keysize")
        return cls(
            encr=sa.get("encr-alg"),
            encr_keysize=int(keysize) if keysize else None,
            integ=sa.get("integ-alg"),
            prf=sa.get("prf-alg"),
            ke=sa.get("dh-group"),
            additional_ke=tuple((n, sa[f"ake{n}"]) for n in range(1, 8) if f"ake{n}" in sa),
        )


@dataclass(frozen=True)
class ChildSaStatus:
    """One CHILD SA from ``swanctl --list-sas --raw``."""

    name: str
    state: str
    protocol: str | None
    mode: str | None
    algorithms: Algorithms
    raw: Mapping[str, Any]


@dataclass(frozen=True)
class IkeSaStatus:
    """One IKE SA from ``swanctl --list-sas --raw``."""

    name: str
    state: str
    initiator: bool
    local_host: str | None
    local_port: int | None
    remote_host: str | None
    remote_port: int | None
    local_id: str | None
    remote_id: str | None
    spi_i: str | None
    spi_r: str | None
    algorithms: Algorithms
    children: tuple[ChildSaStatus, ...]
    raw: Mapping[str, Any]

    @property
    def established(self) -> bool:
        """IKE SA established and at least one CHILD SA installed."""
        return self.state == "ESTABLISHED" and any(c.state == "INSTALLED" for c in self.children)


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value not in (None, "") else None


def parse_list_sas(text: str) -> list[IkeSaStatus]:
    """Parse ``swanctl --list-sas --raw`` output into :class:`IkeSaStatus` objects."""
    sas = []
    for label, body in parse_vici_raw(text):
        if label != "list-sa event":
            continue
        for name, sa in body.items():
            children = tuple(
                ChildSaStatus(
                    name=child.get("name", key),
                    state=child.get("state", ""),
                    protocol=child.get("protocol"),
                    mode=child.get("mode"),
                    algorithms=Algorithms.from_vici(child),
                    raw=child,
                )
                for key, child in sa.get("child-sas", {}).items()
            )
            sas.append(
                IkeSaStatus(
                    name=name,
                    state=sa.get("state", ""),
                    initiator=sa.get("initiator") == "yes",
                    local_host=sa.get("local-host"),
                    local_port=_int_or_none(sa.get("local-port")),
                    remote_host=sa.get("remote-host"),
                    remote_port=_int_or_none(sa.get("remote-port")),
                    local_id=sa.get("local-id"),
                    remote_id=sa.get("remote-id"),
                    spi_i=sa.get("initiator-spi"),
                    spi_r=sa.get("responder-spi"),
                    algorithms=Algorithms.from_vici(sa),
                    children=children,
                    raw=sa,
                )
            )
    return sas


# ---------------------------------------------------------------------------
# charon logs

_DUMP_HEAD = re.compile(r"> (?P<label>.+?) => (?P<n>\d+) bytes @ ")
_DUMP_LINE = re.compile(r">\s+\d+: (?P<hex>(?:[0-9A-F]{2} )*[0-9A-F]{2})")


def log_dumps(log: str, label: str) -> list[bytes]:
    """Every hex dump charon logged as ``<label> => N bytes @ ...``, in log order.

    At level 4 charon dumps key material this way, e.g. ``log_dumps(log, "Sk_ei secret")``
    gives SK_ei after IKE_SA_INIT and again after each key update (RFC 9370).
    """
    lines = log.splitlines()
    out = []
    for i, line in enumerate(lines):
        head = _DUMP_HEAD.search(line)
        if not head or head.group("label") != label:
            continue
        size, data = int(head.group("n")), b""
        for follow in lines[i + 1 :]:
            if len(data) >= size:
                break
            m = _DUMP_LINE.search(follow)
            if not m:
                break
            data += bytes.fromhex(m.group("hex").replace(" ", ""))
        if len(data) != size:
            raise LabError(f"incomplete hex dump of {label!r} in the charon log")
        out.append(data)
    return out


# ---------------------------------------------------------------------------
# captures


@dataclass(frozen=True)
class Datagram:
    """One captured UDP datagram."""

    time: float
    src: str
    sport: int
    dst: str
    dport: int
    #: The UDP payload exactly as sent, including any non-ESP marker.
    payload: bytes

    @property
    def has_non_esp_marker(self) -> bool:
        """True when the payload carries the 4-byte non-ESP marker (RFC 3948 / 7296 2.23).

        strongSwan adds it to every IKE message when neither port is 500.
        """
        return (
            udp.uses_marker(self.sport, self.dport)
            and udp.classify(self.payload, self.sport, self.dport) is udp.PayloadKind.IKE
        )

    @property
    def ike_message(self) -> bytes | None:
        """The IKE message without marker, or None for ESP and keepalives."""
        return udp.ike_message(self.payload, (self.sport, self.dport))

    @property
    def exchange(self) -> str | None:
        """Exchange type name from the IKE header (``IKE_SA_INIT``, ...)."""
        msg = self.ike_message
        if msg is None:
            return None
        try:
            return ExchangeType(msg[_EXCHANGE_TYPE]).name
        except ValueError:
            return f"EXCHANGE_{msg[_EXCHANGE_TYPE]}"

    @property
    def from_original_initiator(self) -> bool:
        """The IKE header's I flag (RFC 7296 3.1): sent by the original initiator."""
        msg = self.ike_message
        return bool(msg is not None and msg[_FLAGS] & HeaderFlag.INITIATOR)

    @property
    def is_response(self) -> bool:
        """The IKE header's R flag."""
        msg = self.ike_message
        return bool(msg is not None and msg[_FLAGS] & HeaderFlag.RESPONSE)

    @property
    def message_id(self) -> int | None:
        """The IKE header's Message ID."""
        msg = self.ike_message
        return None if msg is None else struct.unpack_from("!I", msg, _MESSAGE_ID)[0]

    @property
    def fragment(self) -> tuple[int, int] | None:
        """(Fragment Number, Total Fragments) when the message is an SKF fragment (RFC 7383)."""
        msg = self.ike_message
        if msg is None or msg[_NEXT_PAYLOAD] != PayloadType.SKF or len(msg) < _SKF_END:
            return None
        number, total = struct.unpack_from("!HH", msg, _SKF_NUMBERS)
        return number, total


# Offsets in the IKE header (RFC 7296 3.1) and of the SKF payload's numbers right after
# it (RFC 7383 2.5: generic header, then Fragment Number and Total Fragments).
_NEXT_PAYLOAD, _EXCHANGE_TYPE, _FLAGS, _MESSAGE_ID = 16, 18, 19, 20
_SKF_NUMBERS = IKE_HEADER_LENGTH + 4
_SKF_END = _SKF_NUMBERS + 4


def read_pcap(path: str | os.PathLike[str]) -> list[Datagram]:
    """Read the UDP datagrams (IPv4 and IPv6) from a classic pcap file.

    Handles Ethernet, raw IP and Linux cooked (v1 and v2) link types. The lab's IKE
    fragmentation keeps datagrams below the MTU, so IP fragments are not reassembled:
    later IPv4 fragments and IPv6 packets with extension headers are skipped.
    """
    data = Path(path).read_bytes()
    if len(data) < 24:
        raise LabError(f"{path}: not a pcap file")
    magic = data[:4]
    formats = {
        b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
        b"\xa1\xb2\xc3\xd4": (">", 1e-6),
        b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
        b"\xa1\xb2\x3c\x4d": (">", 1e-9),
    }
    if magic not in formats:
        raise LabError(f"{path}: not a classic pcap file (pcapng is not supported)")
    endian, frac = formats[magic]
    linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0x0FFFFFFF
    pos = 24
    out = []
    while pos + 16 <= len(data):
        sec, sub, caplen, _ = struct.unpack_from(endian + "IIII", data, pos)
        pos += 16
        frame = data[pos : pos + caplen]
        pos += caplen
        dgram = _decode_frame(frame, linktype, sec + sub * frac)
        if dgram is not None:
            out.append(dgram)
    return out


def _decode_frame(frame: bytes, linktype: int, when: float) -> Datagram | None:
    if linktype == 1:  # Ethernet
        off, ethertype = 14, struct.unpack_from("!H", frame, 12)[0]
        while ethertype == 0x8100:  # VLAN tag
            ethertype = struct.unpack_from("!H", frame, off + 2)[0]
            off += 4
    elif linktype == 113:  # Linux cooked v1
        off, ethertype = 16, struct.unpack_from("!H", frame, 14)[0]
    elif linktype == 276:  # Linux cooked v2
        off, ethertype = 20, struct.unpack_from("!H", frame, 0)[0]
    elif linktype in (12, 101):  # raw IP
        off = 0
        ethertype = 0x86DD if frame and frame[0] >> 4 == 6 else 0x0800
    else:
        raise LabError(f"unsupported pcap link type {linktype}")
    ip = frame[off:]
    if ethertype not in (_ETHERTYPE_IPV4, _ETHERTYPE_IPV6):
        return None
    packet = udp.parse_ip_udp(ip)
    if packet is None:
        return None
    return Datagram(when, packet.src, packet.sport, packet.dst, packet.dport, packet.payload)


_ETHERTYPE_IPV4, _ETHERTYPE_IPV6 = 0x0800, 0x86DD


def datagram_sequence(datagrams: Sequence[Datagram], initiator: str) -> str:
    """UDP payload sizes as ``s232 r265 ...`` (s = sent by ``initiator``, r = received)."""
    return " ".join(f"{'s' if d.src == initiator else 'r'}{len(d.payload)}" for d in datagrams)


class Capture:
    """tcpdump on the lab link inside one namespace, writing a pcap file."""

    def __init__(self, lab: Lab, side: str, path: Path) -> None:
        self.lab = lab
        self.side = side
        self.path = path
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start tcpdump and wait until it is listening."""
        if shutil.which("tcpdump") is None:
            raise LabError("tcpdump is not installed (interop/install-strongswan.sh installs it)")
        # --immediate-mode: without it packets sit in the kernel's TPACKET_V3 block
        # and are lost at SIGINT (seen here: "1 packet received by filter", 0 captured).
        # -Z root: Debian's tcpdump otherwise drops to user tcpdump and may not be
        # allowed to write the file; -U: write each packet at once.
        argv = [
            "tcpdump",
            "--immediate-mode",
            "-Z",
            "root",
            "-i",
            _IFACE,
            "-n",
            "-U",
            "-s",
            "0",
            "-w",
            str(self.path),
            "udp",
        ]
        self._proc = self.lab.popen_in(
            self.side, argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        stderr = self._proc.stderr
        assert stderr is not None
        deadline = time.monotonic() + timeout
        seen = b""
        while b"listening on" not in seen:
            left = deadline - time.monotonic()
            if left <= 0 or self._proc.poll() is not None:
                self.stop()
                raise LabError(f"tcpdump did not start: {seen.decode(errors='replace').strip()}")
            ready, _, _ = select.select([stderr], [], [], left)
            if ready:
                chunk = os.read(stderr.fileno(), 4096)
                if not chunk and self._proc.poll() is not None:
                    continue
                seen += chunk

    def stop(self) -> None:
        """Stop tcpdump (SIGINT, so it flushes the file)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr:
            proc.stderr.close()

    def datagrams(self) -> list[Datagram]:
        """The UDP datagrams captured so far (call after :meth:`stop` for all of them)."""
        return read_pcap(self.path) if self.path.exists() else []


# ---------------------------------------------------------------------------
# daemons


@dataclass(frozen=True)
class InitiateResult:
    """What ``swanctl --initiate`` produced."""

    #: The IKE SA and the requested CHILD SA are up.
    established: bool
    #: swanctl's output (its control log).
    output: str
    #: Seconds from starting swanctl until the SA was seen established (or gave up).
    elapsed: float
    #: All IKE SAs of the initiating daemon afterwards.
    sas: tuple[IkeSaStatus, ...]
    #: The initiator's charon log so far.
    log: str

    @property
    def ike_sa(self) -> IkeSaStatus:
        """The established IKE SA (raises :class:`LabError` if there is none)."""
        for sa in self.sas:
            if sa.established:
                return sa
        raise LabError("no established IKE SA")


class StrongSwan:
    """One charon daemon running in a lab namespace."""

    def __init__(
        self,
        lab: Lab,
        side: str,
        config: StrongSwanConfig,
        install: StrongSwanInstall,
        rundir: Path,
    ) -> None:
        self.lab = lab
        self.side = side
        self.config = config
        self.install = install
        self.rundir = rundir
        self.strongswan_conf = rundir / "strongswan.conf"
        self.swanctl_conf = rundir / "swanctl" / "swanctl.conf"
        self.vici_socket = rundir / "charon.vici"
        self.log_path = rundir / "charon.log"
        self.output_path = rundir / "charon.out"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def vici_uri(self) -> str:
        """The vici socket URI for ``swanctl --uri``."""
        return f"unix://{self.vici_socket}"

    @property
    def env(self) -> dict[str, str]:
        """Environment for charon and swanctl: points them at this daemon's strongswan.conf."""
        return {**os.environ, "STRONGSWAN_CONF": str(self.strongswan_conf)}

    def start(self, timeout: float = 10.0) -> None:
        """Write the configuration, start charon and wait for its vici socket."""
        (self.rundir / "swanctl").mkdir(parents=True, exist_ok=True)
        self.strongswan_conf.write_text(
            render_strongswan_conf(
                self.config, vici_socket=self.vici_socket, log_path=self.log_path
            )
        )
        self.swanctl_conf.write_text(render_swanctl_conf(self.config))
        if self.config.key:
            # swanctl loads private keys only from its private/ directory (next to the
            # swanctl.conf given with --file), not from a secrets section.
            private = self.rundir / "swanctl" / "private"
            private.mkdir(mode=0o700, exist_ok=True)
            target = private / "lab.key"
            target.unlink(missing_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(Path(self.config.key).read_bytes())
        self.install.piddir.mkdir(parents=True, exist_ok=True)
        # A private mount namespace with our run directory over the compiled-in piddir:
        # the PID file (and load-tester socket) of each daemon stays its own.
        # unshare and sh exec, so the Popen pid is charon's pid.
        argv = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            'mount --bind "$1" "$2" && exec "$3"',
            "sh",
            str(self.rundir),
            str(self.install.piddir),
            str(self.install.charon),
        ]
        with open(self.output_path, "wb") as out:
            self.process = self.lab.popen_in(
                self.side,
                argv,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while not self._vici_listening():
            if self.process.poll() is not None:
                raise LabError(
                    f"charon ({self.side}) exited with {self.process.returncode}: "
                    f"{self._tail(self.output_path)}"
                )
            if time.monotonic() > deadline:
                raise LabError(f"charon ({self.side}) did not open its vici socket in {timeout} s")
            time.sleep(0.05)

    def _vici_listening(self) -> bool:
        # The socket file exists from bind(); swanctl needs it to accept too.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.vici_socket))
            except OSError:
                return False
        return True

    def swanctl(
        self, *args: str, timeout: float = 30.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``swanctl ARGS --uri <this daemon>``; raise :class:`LabError` on failure if check."""
        argv = [str(self.install.swanctl), *args, "--uri", self.vici_uri]
        try:
            proc = subprocess.run(
                argv, env=self.env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"swanctl {' '.join(args)} ({self.side}) timed out") from exc
        if check and proc.returncode != 0:
            raise LabError(
                f"swanctl {' '.join(args)} ({self.side}) failed with {proc.returncode}: "
                f"{(proc.stdout + proc.stderr).strip()[-1500:]}"
            )
        return proc

    def load_all(self) -> str:
        """``swanctl --load-all`` with this daemon's swanctl.conf; returns swanctl's output."""
        return self.swanctl("--load-all", "--noprompt", "--file", str(self.swanctl_conf)).stdout

    def initiate(
        self,
        conn: str | None = None,
        *,
        child: str | None = None,
        timeout: float = 10.0,
        check: bool = True,
    ) -> InitiateResult:
        """Initiate ``conn``/``child``, wait until established, return SAs and our log.

        With ``check`` (the default) a failure raises :class:`LabError` carrying
        swanctl's output and the end of the charon log.
        """
        conn = conn or self.config.conn
        child = child or self.config.child
        start = time.monotonic()
        proc = self.swanctl(
            "--initiate",
            "--ike",
            conn,
            "--child",
            child,
            "--timeout",
            str(max(1, int(timeout))),
            timeout=timeout + 10,
            check=False,
        )
        sas: list[IkeSaStatus] = []
        established = False
        deadline = start + timeout
        while proc.returncode == 0:
            sas = self.list_sas()
            established = any(sa.name == conn and sa.established for sa in sas)
            if established or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        elapsed = time.monotonic() - start
        result = InitiateResult(
            established=established,
            output=proc.stdout + proc.stderr,
            elapsed=elapsed,
            sas=tuple(sas),
            log=self.log(),
        )
        if check and not established:
            raise LabError(
                f"{conn}/{child} from {self.side} did not establish "
                f"(swanctl exit {proc.returncode}):\n{result.output.strip()[-1500:]}\n"
                f"--- charon log ({self.side}) ---\n{result.log[-3000:]}"
            )
        return result

    def rekey_child(self, child: str | None = None, *, timeout: float = 20.0) -> str:
        """``swanctl --rekey --child NAME``: rekey that Child SA (CREATE_CHILD_SA with
        REKEY_SA, RFC 7296 1.3.3) and wait for the outcome; swanctl's output."""
        return self._control("--rekey", "--child", child or self.config.child, timeout=timeout)

    def rekey_ike(self, conn: str | None = None, *, timeout: float = 20.0) -> str:
        """``swanctl --rekey --ike NAME``: rekey the IKE SA (RFC 7296 1.3.2)."""
        return self._control("--rekey", "--ike", conn or self.config.conn, timeout=timeout)

    def initiate_child(self, child: str, *, timeout: float = 20.0) -> str:
        """``swanctl --initiate --child NAME`` on the established IKE SA: another Child SA
        by CREATE_CHILD_SA (RFC 7296 1.3.1)."""
        return self._control(
            "--initiate", "--child", child, "--timeout", str(int(timeout)), timeout=timeout
        )

    def terminate_child(self, child: str | None = None, *, timeout: float = 20.0) -> str:
        """``swanctl --terminate --child NAME``: delete that Child SA (RFC 7296 1.4.1)."""
        return self._control(
            "--terminate",
            "--child",
            child or self.config.child,
            "--timeout",
            str(int(timeout)),
            timeout=timeout,
        )

    def terminate_ike(self, conn: str | None = None, *, timeout: float = 20.0) -> str:
        """``swanctl --terminate --ike NAME``: delete the IKE SA and its Child SAs."""
        return self._control(
            "--terminate",
            "--ike",
            conn or self.config.conn,
            "--timeout",
            str(int(timeout)),
            timeout=timeout,
        )

    def _control(self, *args: str, timeout: float) -> str:
        """A swanctl command that waits for charon's outcome; :class:`LabError` with the end
        of the charon log when it failed."""
        proc = self.swanctl(*args, timeout=timeout + 10, check=False)
        output = (proc.stdout + proc.stderr).strip()
        if proc.returncode != 0:
            raise LabError(
                f"swanctl {' '.join(args)} ({self.side}) failed with {proc.returncode}:\n"
                f"{output[-1500:]}\n--- charon log ({self.side}) ---\n{self.log()[-3000:]}"
            )
        return output

    def list_sas(self) -> list[IkeSaStatus]:
        """``swanctl --list-sas --raw``, parsed."""
        return parse_list_sas(self.swanctl("--list-sas", "--raw").stdout)

    def log(self) -> str:
        """The charon filelog so far (level 4 for ike and chd: it includes the keys)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        """Stop charon (SIGTERM, then SIGKILL)."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    @staticmethod
    def _tail(path: Path, n: int = 1500) -> str:
        try:
            return path.read_text(errors="replace")[-n:].strip()
        except FileNotFoundError:
            return ""


# ---------------------------------------------------------------------------
# the lab


def _run(argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc


def _run_base() -> Path:
    return Path(tempfile.gettempdir()) / "pqike-lab"


class Lab:
    """Two network namespaces joined by a veth pair; a context manager.

    ``Lab(ipv6=True)`` makes the daemons talk over IPv6 (both address families are
    configured either way). Every name starts with ``<prefix>-<token>``, so parallel
    labs do not collide and :func:`cleanup` finds leftovers.
    """

    def __init__(
        self,
        *,
        ipv6: bool = False,
        prefix: str = DEFAULT_PREFIX,
        keep_workdir: bool = False,
        workdir: str | os.PathLike[str] | None = None,
    ) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9]{0,15}", prefix):
            raise LabError("prefix must be 1-16 lower-case letters and digits")
        self.ipv6 = ipv6
        self.prefix = prefix
        self.id = f"{prefix}-{secrets.token_hex(3)}"
        self.keep_workdir = keep_workdir
        self.workdir = Path(workdir) if workdir else _run_base() / self.id
        self.namespaces = {side: f"{self.id}-{side}" for side in SIDES}
        self.daemons: dict[str, StrongSwan] = {}
        self._captures: list[Capture] = []
        self._processes: list[subprocess.Popen[Any]] = []
        self._up = False

    # -- lifecycle -----------------------------------------------------------

    def __enter__(self) -> Lab:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self) -> None:
        """Create the namespaces, the veth link and the addresses."""
        if os.geteuid() != 0:
            raise LabError("the lab needs root (network namespaces)")
        if shutil.which("ip") is None:
            raise LabError("the ip command (iproute2) is missing")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._up = True
        left, right = self.namespaces["left"], self.namespaces["right"]
        _run(["ip", "netns", "add", left])
        _run(["ip", "netns", "add", right])
        # Created directly inside the namespaces: the root namespace never sees them.
        _run(
            [
                "ip",
                "link",
                "add",
                _IFACE,
                "netns",
                left,
                "type",
                "veth",
                "peer",
                "name",
                _IFACE,
                "netns",
                right,
            ]
        )
        for side, ns in self.namespaces.items():
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            v4, v6 = IPV4_ADDRESSES[side], IPV6_ADDRESSES[side]
            _run(["ip", "-n", ns, "addr", "add", f"{v4}/24", "dev", _IFACE])
            # nodad: the address is usable at once instead of after duplicate detection.
            _run(["ip", "-n", ns, "-6", "addr", "add", f"{v6}/64", "dev", _IFACE, "nodad"])
            # No duplicate address detection for the link-local address either.
            _run(
                [
                    *self.ns_prefix(side),
                    "sh",
                    "-c",
                    f"echo 0 > /proc/sys/net/ipv6/conf/{_IFACE}/accept_dad",
                ]
            )
            _run(["ip", "-n", ns, "link", "set", _IFACE, "up"])
        self._wait_for_link()

    def _wait_for_link(self, timeout: float = 5.0) -> None:
        """Wait until both ends have carrier and their IPv6 link-local address.

        The kernel reports carrier (and so adds the link-local address) up to a
        second after ``link set up``. A charon started before that sees an address
        change after its SA is up and sends a MOBIKE address update (INFORMATIONAL)
        in the middle of a measurement.
        """
        deadline = time.monotonic() + timeout
        pending = set(self.namespaces.values())
        while pending:
            for ns in sorted(pending):
                out = _run(
                    ["ip", "-n", ns, "-6", "addr", "show", "dev", _IFACE, "scope", "link"],
                    check=False,
                ).stdout
                if "inet6 fe80:" in out and "tentative" not in out:
                    pending.discard(ns)
            if pending and time.monotonic() > deadline:
                raise LabError(f"no carrier on {_IFACE} in {', '.join(sorted(pending))}")
            if pending:
                time.sleep(0.05)

    def down(self) -> None:
        """Stop captures and daemons, delete the namespaces; safe to call twice."""
        for cap in self._captures:
            with contextlib.suppress(Exception):
                cap.stop()
        self._captures.clear()
        for daemon in self.daemons.values():
            with contextlib.suppress(Exception):
                daemon.stop()
        for proc in self._processes:
            with contextlib.suppress(Exception):
                if proc.poll() is None:
                    proc.kill()
                proc.wait(timeout=5)
        self._processes.clear()
        for ns in self.namespaces.values():
            _delete_namespace(ns)
        if not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self._up = False

    # -- namespaces ------------------------------------------------------------

    def address(self, side: str) -> str:
        """The side's lab address in the family the lab uses."""
        self._check_side(side)
        return (IPV6_ADDRESSES if self.ipv6 else IPV4_ADDRESSES)[side]

    def peer_of(self, side: str) -> str:
        """The other side."""
        self._check_side(side)
        return SIDES[1 - SIDES.index(side)]

    def ns_prefix(self, side: str) -> list[str]:
        """The ``ip netns exec NAME`` prefix that runs a command in the side's namespace."""
        self._check_side(side)
        return ["ip", "netns", "exec", self.namespaces[side]]

    def exec_in(
        self, side: str, argv: Sequence[str], **kwargs: Any
    ) -> subprocess.CompletedProcess[Any]:
        """Run ``argv`` in the side's namespace to completion (``subprocess.run`` keywords)."""
        return subprocess.run([*self.ns_prefix(side), *argv], **kwargs)

    def popen_in(self, side: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` in the side's namespace; the lab kills it on teardown."""
        proc = subprocess.Popen([*self.ns_prefix(side), *argv], **kwargs)
        self._processes.append(proc)
        return proc

    def _check_side(self, side: str) -> None:
        if side not in SIDES:
            raise LabError(f"unknown side {side!r}; use one of {', '.join(SIDES)}")

    # -- strongSwan ------------------------------------------------------------

    def start_strongswan(
        self,
        side: str,
        config: StrongSwanConfig | None = None,
        *,
        load: bool = True,
        install: bool = True,
        **overrides: Any,
    ) -> StrongSwan:
        """Start charon in the side's namespace and (by default) ``swanctl --load-all``.

        ``config`` fields can be overridden by keyword (``ike_proposal=...``);
        addresses and IDs default to this side and its peer. A missing strongSwan
        build is installed with ``install-strongswan.sh`` unless ``install=False``.
        """
        self._check_side(side)
        if not self._up:
            raise LabError("the lab is not up")
        if side in self.daemons:
            raise LabError(f"a charon already runs on {side}")
        peer = self.peer_of(side)
        config = replace(config or StrongSwanConfig(), **overrides)
        config = replace(
            config,
            local_addr=config.local_addr or self.address(side),
            remote_addr=config.remote_addr or self.address(peer),
            local_id=config.local_id or f"{side}.pqike.test",
            remote_id=config.remote_id or f"{peer}.pqike.test",
        )
        if config.kernel == "libipsec" and not (config.local_ts or config.remote_ts):
            # kernel-libipsec routes the CHILD SA's traffic into its TUN device and
            # refuses selectors that cover the IKE peers themselves ("can't install
            # route ... conflicts with IKE traffic"), so tunnel between other addresses.
            ts = _TS6 if self.ipv6 else _TS4
            config = replace(config, local_ts=ts[side], remote_ts=ts[peer])
        sw = ensure_strongswan(install=install)
        daemon = StrongSwan(self, side, config, sw, self.workdir / side)
        self.daemons[side] = daemon
        daemon.start()
        if load:
            daemon.load_all()
        return daemon

    def capture(self, side: str = "left", name: str | None = None) -> Capture:
        """Start tcpdump on the side's lab link; stopped on teardown or by ``stop()``."""
        self._check_side(side)
        cap = Capture(self, side, self.workdir / (name or f"capture-{side}.pcap"))
        self._captures.append(cap)
        cap.start()
        return cap


def _delete_namespace(ns: str) -> None:
    """Kill what still runs in ``ns`` and delete it (no error if it is gone)."""
    if not Path("/run/netns", ns).exists():
        return
    pids = _run(["ip", "netns", "pids", ns], check=False).stdout.split()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), sig)
                alive.append(pid)
        if not alive:
            break
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(Path("/proc", p).exists() for p in alive):
            time.sleep(0.05)
        pids = [p for p in alive if Path("/proc", p).exists()]
    _run(["ip", "netns", "delete", ns], check=False)


def cleanup(prefix: str = DEFAULT_PREFIX, keep_workdirs: bool = False) -> list[str]:
    """Remove every lab left over with ``prefix``: processes, namespaces, run directories.

    Returns the namespaces it deleted. It also removes labs of a parallel run with the
    same prefix, so use it for leftovers, not during a run.
    """
    if os.geteuid() != 0:
        raise LabError("cleanup needs root")
    pattern = re.compile(rf"{re.escape(prefix)}-[0-9a-f]{{6}}-({'|'.join(SIDES)})")
    listing = _run(["ip", "netns", "list"], check=False).stdout
    removed = []
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        if pattern.fullmatch(name):
            _delete_namespace(name)
            removed.append(name)
    base = _run_base()
    if not keep_workdirs and base.is_dir():
        for d in base.glob(f"{prefix}-*"):
            shutil.rmtree(d, ignore_errors=True)
    return removed
