"""The wall clock, read by the application layer only (``pqike.io``, ``pqike.handshake``).

The sans-IO core (``pqike.ike``, ``pqike.crypto``) reads no clock: it is given a
monotonic ``now`` with every call, and the wall-clock time certificates are checked
against through ``IkeConfiguration.validation_clock``, which the application sets.
"""

from __future__ import annotations

import datetime as dt


def utc_now() -> dt.datetime:
    """The current time, timezone-aware (UTC): what peer certificates are checked against."""
    return dt.datetime.now(dt.UTC)
