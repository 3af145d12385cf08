"""The fork server that the experiment runner's worker processes are forked from.

A fork server is a fresh Python process that imports the runner and the report once
(``PRELOAD``: pandas, matplotlib, the protocol, about a second of imports) and then forks
a worker per request, so no worker pays for those imports again and none inherits the
threads of the process that asked (a progress bar's). ``start_fork_server()`` starts it
without waiting for those imports: the command line calls it first thing, so the server
imports on another core while the command imports the same modules and reads the spec;
``pqike.lab.pool.worker_pool`` later finds it running.

This module imports nothing heavy on purpose: it is what runs before the lab is
imported (``pqike.lab`` imports pandas on its own import).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.forkserver
import signal
import threading
from collections.abc import Iterator

PRELOAD = ["pqike.lab.runner", "pqike.lab.report"]
"""What the fork server imports before it forks the first worker."""


def start_fork_server() -> None:
    """Start the fork server (with ``PRELOAD``) if it is not running; return at once.

    SIGINT is blocked while it is spawned: the server inherits the blocked signal, so a
    Ctrl-C cannot kill it halfway through its imports (and print a traceback), and
    neither can it kill the workers it forks, which inherit the mask in turn.
    """
    multiprocessing.get_context("forkserver").set_forkserver_preload(PRELOAD)
    with sigint_deferred():
        multiprocessing.forkserver.ensure_running()


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold SIGINT back until the block ends, then deliver it.

    Blocking it in this thread is what the fork server and the workers inherit, so they
    cannot die of it while they start. It is not enough here: a signal sent to the
    process reaches any thread that does not block it (numpy's BLAS threads, started at
    import), and Python then runs the handler in the main thread anyway. So the handler
    is swapped too, for one that only notes the signal; a noted or still pending SIGINT
    goes to the real handler when the block ends.
    """
    noted: list[int] = []
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, lambda sig, _: noted.append(sig)) if main else None
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        if main:
            # None: a handler installed from C, which Python cannot put back.
            signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
            if noted:
                signal.raise_signal(signal.SIGINT)


__all__ = ["PRELOAD", "sigint_deferred", "start_fork_server"]
