"""Responder key pairs made ahead of the IKE_SA_INIT requests that will use them.

A responder's answer to IKE_SA_INIT carries its KE data: for a Diffie-Hellman method a
fresh public value, whose key pair costs as much as the DH result itself. Nothing about
that key pair depends on the request, so an ``IkeEndpoint`` makes it in advance, after
the previous answer has left (``refill``), and the next request of the same method takes
it (``take``) instead of waiting for a key generation between request and response.

Each prepared object is handed out once and never again (RFC 7296 2.12 and
draft-ietf-ipsecme-ikev2-mlkem 2.2 leave the reuse of key pairs as a risk; pqike takes
none): ``take`` removes it, and with none ready it makes a new one on the spot. KEMs
have nothing to prepare (``KeyExchange.prepare`` does nothing): the encapsulation needs
the initiator's key.
"""

from __future__ import annotations

from ..crypto.kex import KeyExchange, KeyExchangeRegistry

_Key = tuple[int, str | None]
"""(method, backend name or ``None`` for the registry's first available backend)."""


class PreparedKeys:
    """One prepared ``KeyExchange`` for each (method, backend) a responder has used.

    Bounded: the methods a responder answers with are those of its own configuration
    (``select_proposal`` keeps the peer's KE method only when we offered it too), so the
    store holds at most one object per configured method and backend.
    """

    __slots__ = ("_ready", "_registry", "_used")

    def __init__(self, registry: KeyExchangeRegistry) -> None:
        self._registry = registry
        self._ready: dict[_Key, KeyExchange] = {}
        self._used: dict[_Key, None] = {}
        """The (method, backend) pairs taken so far, in order: what ``refill`` makes."""

    def take(self, method: int, backend: str | None) -> KeyExchange:
        """A fresh key exchange object for ``method``: the prepared one if there is one
        (it is then gone), else a new one."""
        key = (method, backend)
        self._used[key] = None
        kex = self._ready.pop(key, None)
        return kex if kex is not None else self._registry.create(method, backend)

    def refill(self) -> None:
        """Prepare one object for each (method, backend) taken before that has none
        ready; called off the path between a request and its response."""
        for key in self._used:
            if key not in self._ready:
                kex = self._registry.create(*key)
                kex.prepare()
                self._ready[key] = kex

    def __len__(self) -> int:
        """How many prepared objects wait to be taken."""
        return len(self._ready)


__all__ = ["PreparedKeys"]
