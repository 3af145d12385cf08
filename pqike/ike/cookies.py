"""Stateless COOKIE values for IKE_SA_INIT (RFC 7296 2.6), with a rotating secret.

A responder under load answers an IKE_SA_INIT request without a valid COOKIE with
``N(COOKIE)`` and keeps no state; only an initiator that really owns its source address
gets the cookie and can send it back. RFC 7296 2.6 suggests the value

    Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>)

with a secret that changes periodically, the previous one still accepted for a short
while. ``CookieJar`` does exactly that: the secret of each period comes from
``os.urandom`` (one per process and period; nothing to configure, nothing to leak), a
4-byte version names the period, and a cookie of the previous period is accepted
``grace`` seconds into the next one. Like the rest of ``pqike.ike`` it never reads a
clock: every call takes ``now``.

    jar = CookieJar()
    cookie = jar.make(nonce_i=ni, ip="192.0.2.1", spi_i=spi_i, now=t)
    jar.verify(cookie, nonce_i=ni, ip="192.0.2.1", spi_i=spi_i, now=t + 1.0)   # True

``scan_sa_init`` finds the COOKIE and the Nonce of an IKE_SA_INIT request without
decoding it, so an endpoint can check a cookie for next to nothing before it creates
any state.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

from ..constants import IKE_HEADER_LENGTH, NotifyType, PayloadType
from ..crypto import auth as ike_auth
from ..errors import IkeError

COOKIE_VERSION_BYTES = 4
COOKIE_LENGTH = COOKIE_VERSION_BYTES + hashlib.sha256().digest_size
"""Bytes of a cookie made by ``CookieJar``: a 4-byte version and a SHA-256 digest (RFC
7296 3.10.1 allows 1 to 64 bytes of COOKIE data)."""

_SECRET_BYTES = 32
_VERSIONS = 1 << 32


class CookieJar:
    """Makes and checks COOKIE values of one responder; keeps two secrets at most.

    ``secret=None`` (the default and the only sensible choice outside tests) draws a
    fresh random secret for every period. A fixed ``secret`` is a test key: each
    period's secret is then derived from it, so cookies are reproducible across
    processes; never deploy one.

    ``lifetime`` is how long one secret makes cookies (strongSwan switches its cookie
    secret after 120 s: ``COOKIE_SECRET_SWITCH``); ``grace`` is how long a cookie of the
    previous secret is still accepted after the switch (strongSwan accepts a cookie for
    10 s: ``COOKIE_LIFETIME``). A cookie is therefore valid between ``grace`` and
    ``lifetime + grace`` seconds after it was made.
    """

    def __init__(
        self, secret: bytes | None = None, *, lifetime: float = 120.0, grace: float = 10.0
    ) -> None:
        if secret is not None and len(secret) < 16:
            raise ValueError("cookie_secret: a fixed test key must have at least 16 bytes")
        if not lifetime > 0 or grace < 0 or grace > lifetime:
            raise ValueError("cookie lifetime must be positive and grace from 0 to lifetime")
        self.lifetime = float(lifetime)
        self.grace = float(grace)
        self._key = secret
        # period -> secret; only the current and the previous period are kept.
        self._secrets: dict[int, bytes] = {}
        self.stats: dict[str, int] = {"made": 0, "verified": 0, "rejected": 0, "secrets": 0}

    def _period(self, now: float) -> int:
        return int(now // self.lifetime)

    def _secret(self, period: int, *, create: bool) -> bytes | None:
        secret = self._secrets.get(period)
        if secret is None and create:
            if self._key is not None:
                label = b"pqike cookie secret" + struct.pack(">q", period)
                secret = hmac.digest(self._key, label, "sha256")
            else:
                secret = os.urandom(_SECRET_BYTES)
            self._secrets[period] = secret
            for old in [p for p in self._secrets if p < period - 1]:
                del self._secrets[old]  # older secrets are never accepted again
            self.stats["secrets"] += 1
        return secret

    def make(self, *, nonce_i: bytes, ip: str, spi_i: bytes, now: float) -> bytes:
        """The COOKIE data for this initiator now: ``version | SHA-256(Ni | IPi | SPIi |
        secret)`` (RFC 7296 2.6)."""
        period = self._period(now)
        secret = self._secret(period, create=True)
        assert secret is not None
        self.stats["made"] += 1
        return ike_auth.cookie(secret, nonce_i, ip, spi_i, period % _VERSIONS)

    def verify(self, cookie: bytes, *, nonce_i: bytes, ip: str, spi_i: bytes, now: float) -> bool:
        """Whether ``cookie`` is one this jar made for the same Ni, IPi and SPIi, with the
        current secret or with the previous one less than ``grace`` seconds ago."""
        ok = self._check(cookie, nonce_i, ip, spi_i, now)
        self.stats["verified" if ok else "rejected"] += 1
        return ok

    def _check(self, cookie: bytes, nonce_i: bytes, ip: str, spi_i: bytes, now: float) -> bool:
        if len(cookie) != COOKIE_LENGTH:
            return False
        period = self._period(now)
        version = int.from_bytes(cookie[:COOKIE_VERSION_BYTES], "big")
        if version == period % _VERSIONS:
            used = period
        elif version == (period - 1) % _VERSIONS and now < period * self.lifetime + self.grace:
            used = period - 1
        else:
            return False
        secret = self._secret(used, create=False)
        if secret is None:  # no cookie was made in that period: it cannot be ours
            return False
        try:
            expected = ike_auth.cookie(secret, nonce_i, ip, spi_i, version)
        except IkeError:  # not an IP address: nothing we made
            return False
        return hmac.compare_digest(expected, cookie)


def scan_sa_init(message: bytes) -> tuple[bytes | None, bytes | None] | None:
    """``(cookie, nonce)`` of an IKE_SA_INIT request (no non-ESP marker), or ``None``
    when its payload chain is malformed.

    Only the generic payload headers are walked; nothing is decoded. ``cookie`` is the
    data of a COOKIE notify only when it is the first payload, as RFC 7296 2.6 requires
    ("the first payload"); ``nonce`` is the Nonce payload's data (``None`` when absent).
    """
    size = len(message)
    if size < IKE_HEADER_LENGTH:
        return None
    length = int.from_bytes(message[24:28], "big")
    if length > size or length < IKE_HEADER_LENGTH:
        return None
    nxt = message[16]
    offset = IKE_HEADER_LENGTH
    cookie = nonce = None
    first = True
    for _ in range(64):
        if nxt == 0:
            return cookie, nonce
        if offset + 4 > length:
            return None
        plen = int.from_bytes(message[offset + 2 : offset + 4], "big")
        if plen < 4 or offset + plen > length:
            return None
        body = message[offset + 4 : offset + plen]
        if nxt == PayloadType.NONCE and nonce is None:
            nonce = body
        elif first and nxt == PayloadType.NOTIFY and len(body) >= 4:
            # Protocol ID, SPI size, Notify type; the SPI size must be 0 for COOKIE.
            if body[1] == 0 and int.from_bytes(body[2:4], "big") == NotifyType.COOKIE:
                cookie = body[4:]
        first = False
        nxt = message[offset]
        offset += plen
    return None


__all__ = ["COOKIE_LENGTH", "CookieJar", "scan_sa_init"]
