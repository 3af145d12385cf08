"""``fast_init``: a cheaper constructor that keeps frozen dataclasses what they were."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

from pqike._fastinit import fast_init
from pqike.ike.events import MessageSent
from pqike.wire.payloads import IdiPayload, IkeHeader, NotifyPayload, Transform


def test_a_fast_payload_is_still_frozen_equal_and_hashable():
    a = NotifyPayload(16388, b"\x01" * 20)
    b = NotifyPayload(16388, b"\x01" * 20)
    assert (a.notify_type, a.data, a.protocol_id, a.spi, a.critical) == (
        16388,
        a.data,
        0,
        b"",
        False,
    )
    assert a == b and hash(a) == hash(b)
    assert a != NotifyPayload(16389, b"\x01" * 20)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.data = b""  # type: ignore[misc]


def test_keywords_defaults_and_inherited_slots_reach_their_fields():
    h = IkeHeader(b"i" * 8, b"r" * 8, 33, 34, 8, 0, length=200)
    assert (h.length, h.major_version, h.minor_version, h.is_initiator) == (200, 2, 0, True)
    idi = IdiPayload(2, b"initiator")  # fields declared on the shared base class
    assert idi.body == b"\x02\x00\x00\x00initiator"
    assert Transform(1, 20) == Transform(type=1, id=20, attributes=())
    with pytest.raises(TypeError):
        Transform(1)  # type: ignore[call-arg]


def test_events_take_keywords_only():
    with pytest.raises(TypeError):
        MessageSent(1.5, 34, 0, False, (33, 34), 200, (200,), (200,))  # type: ignore[misc]


def test_an_event_without_slots_is_built_and_stays_frozen():
    e = MessageSent(
        time=1.5,
        exchange_type=34,
        message_id=0,
        is_response=False,
        payload_types=(33, 34),
        ike_bytes=200,
        fragment_ike_bytes=(200,),
        datagram_sizes=(200,),
        destination=("a", 1),
    )
    assert e.destination == ("a", 1) and e.retransmission is False
    assert dataclasses.replace(e, retransmission=True).retransmission is True
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.time = 2.0  # type: ignore[misc]


def test_what_it_cannot_copy_is_refused_at_class_creation():
    with pytest.raises(TypeError, match="not a frozen dataclass"):

        @fast_init
        @dataclass
        class Loose:
            a: int

    with pytest.raises(TypeError, match="cannot take a fast __init__"):

        @fast_init
        @dataclass(frozen=True)
        class Factory:
            a: list = field(default_factory=list)

    with pytest.raises(TypeError, match="__post_init__"):

        @fast_init
        @dataclass(frozen=True)
        class Checked:
            a: int

            def __post_init__(self) -> None:
                pass
