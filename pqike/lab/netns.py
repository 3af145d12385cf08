"""Run the calling thread inside a named network namespace (``ip netns``), as root.

A network namespace is a property of a thread, not of a process, and a socket stays in
the namespace it was created in. So a thread that enters a namespace and opens its
sockets there talks from that namespace for the rest of its life, while the other
threads of the process stay where they were. The strongSwan peer pairs use this to run
a pqike peer in one of the lab's namespaces inside the runner's process, where its
events and CPU time are at hand.

    with in_namespace("pqxp-1a2b3c-left"):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # lives in the namespace
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator
from pathlib import Path

CLONE_NEWNET = 0x40000000
"""The ``setns(2)`` flag for a network namespace."""

NETNS_DIR = Path("/run/netns")
"""Where ``ip netns add`` keeps a handle of each named namespace."""


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def enter_namespace(name: str) -> None:
    """Move the calling thread into the network namespace ``name`` for good.

    Raises ``OSError`` when the namespace does not exist or we are not allowed (root
    is needed).
    """
    fd = os.open(NETNS_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def in_namespace(name: str) -> Iterator[None]:
    """Run the body in the network namespace ``name``, then return the thread to its own.

    Sockets and TUN devices created inside the body stay in ``name``.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        enter_namespace(name)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


__all__ = ["CLONE_NEWNET", "NETNS_DIR", "enter_namespace", "in_namespace"]
