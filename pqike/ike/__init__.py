"""The sans-IO IKE core: ``IkeSa``, its configuration, states and events."""

from .config import Identity, IkeConfiguration
from .events import (
    ChildSaEstablished,
    DatagramDropped,
    Event,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
    KeyExchangeCompleted,
    MessageReceived,
    MessageSent,
)
from .sa import IkeSa
from .states import IkeSaState

__all__ = [
    "ChildSaEstablished",
    "DatagramDropped",
    "Event",
    "Identity",
    "IkeConfiguration",
    "IkeSa",
    "IkeSaDeleted",
    "IkeSaEstablished",
    "IkeSaFailed",
    "IkeSaState",
    "KeyExchangeCompleted",
    "MessageReceived",
    "MessageSent",
]
