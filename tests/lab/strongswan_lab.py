"""What the tests of the strongSwan peer pairs share: they run real charons in network
namespaces with TUN devices, so they are interop tests and need root and ``ip netns``."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def unavailable() -> str | None:
    """Why the strongSwan pairs cannot run here, or ``None``."""
    if os.geteuid() != 0:
        return "the strongSwan pairs need root (network namespaces, TUN devices)"
    if shutil.which("ip") is None or subprocess.run(["ip", "netns", "list"]).returncode != 0:
        return "ip netns is unavailable"
    return None


_WHY = unavailable()
MARKS = [pytest.mark.interop, *([pytest.mark.skip(reason=_WHY)] if _WHY else [])]
"""A test module's ``pytestmark``."""
