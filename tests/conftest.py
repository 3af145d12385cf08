"""Shared in-memory IKE peers: configurations and initiator/responder ``IkeSa`` pairs.

Built on the public API only (``pqike.handshake.make_config``,
``IkeSa(config, is_initiator=..., local=..., remote=...)`` and its ``initiate``,
``receive_datagram``, ``datagrams_to_send``, ``next_event`` with ``now=``), so the tests
that use them do not depend on how the core is built inside.

Each fixture is a factory (session-scoped: they hold no state, and hypothesis tests can
use them)::

    def test_something(sa_pair, first_request, answer_to):
        ini, res = sa_pair("aes256gcm16-prfsha384-x25519", fragment_size=9000)
        reply = answer_to(res, first_request(ini))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from pqike.handshake import make_config
from pqike.ike.config import IkeConfiguration
from pqike.ike.events import Event
from pqike.ike.sa import IkeSa

# CI runs on a busy 2-core machine: a property test must fail on its property, never on
# the wall-clock time one example took.
settings.register_profile(
    "pqike", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("pqike")

Address = tuple[str, int]

CLASSICAL = "aes256gcm16-prfsha384-x25519"
"""The default IKE proposal of the helpers."""
HYBRID = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
INITIATOR_ADDR: Address = ("192.0.2.1", 500)
RESPONDER_ADDR: Address = ("192.0.2.2", 500)
INITIATOR_ID = "initiator.pqike.example"
RESPONDER_ID = "responder.pqike.example"
PSK = b"k"


def make_initiator_config(
    proposal: str = CLASSICAL,
    *,
    local_id: str = INITIATOR_ID,
    remote_id: str | None = RESPONDER_ID,
    psk: bytes = PSK,
    **options: Any,
) -> IkeConfiguration:
    """The initiator's configuration (``make_config`` keywords pass through)."""
    return make_config(proposal, local_id=local_id, remote_id=remote_id, psk=psk, **options)


def make_responder_config(
    proposal: str = CLASSICAL,
    *,
    local_id: str = RESPONDER_ID,
    remote_id: str | None = None,
    psk: bytes = PSK,
    **options: Any,
) -> IkeConfiguration:
    """The responder's configuration: it accepts any initiator ID unless ``remote_id``."""
    return make_config(proposal, local_id=local_id, remote_id=remote_id, psk=psk, **options)


def make_sa_pair(
    proposal: str = CLASSICAL,
    *,
    responder_proposal: str | None = None,
    initiator_id: str = INITIATOR_ID,
    responder_id: str = RESPONDER_ID,
    expect_responder_id: bool = True,
    psk: bytes = PSK,
    initiator_addr: Address = INITIATOR_ADDR,
    responder_addr: Address = RESPONDER_ADDR,
    **options: Any,
) -> tuple[IkeSa, IkeSa]:
    """An initiator and a responder ``IkeSa`` that will talk to each other.

    ``options`` are ``make_config`` keywords for both sides (``fragment_size=...``). The
    initiator names the responder's ID as ``remote_id`` unless ``expect_responder_id``
    is false.
    """
    initiator = IkeSa(
        make_initiator_config(
            proposal,
            local_id=initiator_id,
            remote_id=responder_id if expect_responder_id else None,
            psk=psk,
            **options,
        ),
        is_initiator=True,
        local=initiator_addr,
        remote=responder_addr,
    )
    responder = IkeSa(
        make_responder_config(
            responder_proposal or proposal, local_id=responder_id, psk=psk, **options
        ),
        is_initiator=False,
        local=responder_addr,
        remote=initiator_addr,
    )
    return initiator, responder


def send_first_request(initiator: IkeSa, *, now: float = 0.0) -> bytes:
    """Start the initiator and return its first datagram (the IKE_SA_INIT request)."""
    initiator.initiate(now=now)
    return initiator.datagrams_to_send(now=now)[0][0]


def answers_of(
    responder: IkeSa, data: bytes, *, now: float = 0.0, source: Address | None = None
) -> list[bytes]:
    """Hand ``data`` to ``responder`` (from its peer's address) and return what it sends."""
    responder.receive_datagram(data, source or responder.remote, now=now)
    return [d for d, _ in responder.datagrams_to_send(now=now)]


def drain_events(sa: IkeSa) -> list[Event]:
    """Every event the SA has queued, oldest first."""
    out = []
    while (event := sa.next_event()) is not None:
        out.append(event)
    return out


@pytest.fixture(scope="session")
def initiator_config() -> Callable[..., IkeConfiguration]:
    """:func:`make_initiator_config`."""
    return make_initiator_config


@pytest.fixture(scope="session")
def responder_config() -> Callable[..., IkeConfiguration]:
    """:func:`make_responder_config`."""
    return make_responder_config


@pytest.fixture(scope="session")
def sa_pair() -> Callable[..., tuple[IkeSa, IkeSa]]:
    """:func:`make_sa_pair`."""
    return make_sa_pair


@pytest.fixture(scope="session")
def first_request() -> Callable[..., bytes]:
    """:func:`send_first_request`."""
    return send_first_request


@pytest.fixture(scope="session")
def answer_to() -> Callable[..., list[bytes]]:
    """:func:`answers_of`."""
    return answers_of


@pytest.fixture(scope="session")
def events_of() -> Callable[[IkeSa], list[Event]]:
    """:func:`drain_events`."""
    return drain_events
