"""The sans-IO IKE core: ``IkeSa``, its configuration, states and events."""

from .config import Identity, IkeConfiguration
from .events import (
    ChildSaDeleted,
    ChildSaEstablished,
    CreateChildSaFailed,
    DatagramDropped,
    Event,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
    IkeSaRekeyed,
    KeyExchangeCompleted,
    LivenessChecked,
    MessageReceived,
    MessageSent,
    Purpose,
)
from .sa import IkeSa
from .states import IkeSaState

__all__ = [
    "ChildSaDeleted",
    "ChildSaEstablished",
    "CreateChildSaFailed",
    "DatagramDropped",
    "Event",
    "Identity",
    "IkeConfiguration",
    "IkeSa",
    "IkeSaDeleted",
    "IkeSaEstablished",
    "IkeSaFailed",
    "IkeSaRekeyed",
    "IkeSaState",
    "KeyExchangeCompleted",
    "LivenessChecked",
    "MessageReceived",
    "MessageSent",
    "Purpose",
]
