"""Local worker processes for the runner's cells and the report's plots.

``worker_pool(n)`` is a ``ProcessPoolExecutor`` of ``n`` processes forked from a fork
server that has imported the runner and the report once (not from this process, which
may hold threads, such as a progress bar's). The pool is entered only once every worker
has started: a worker killed by a Ctrl-C while multiprocessing starts it prints a
traceback, so SIGINT waits until then. On the way out (done, an error or Ctrl-C) the
workers are terminated: whatever they were doing is lost, what the caller already took
from them is not.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

_PRELOAD = ["pqike.lab.runner", "pqike.lab.report"]
"""What the fork server imports before it forks the first worker."""

_START_TIMEOUT_S = 120.0
"""How long a pool may take to start all its workers (a busy machine, a cold import)."""


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """``workers`` started local processes; terminated when the block ends."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    executor: ProcessPoolExecutor | None = None
    try:
        with _sigint_deferred():
            started = ctx.Barrier(workers + 1)
            executor = ProcessPoolExecutor(
                workers, mp_context=ctx, initializer=_quiet_worker, initargs=(started,)
            )
            # A forkserver pool starts a process per submission while none is idle:
            # one waiting task per worker starts them all.
            waiting = [executor.submit(_nothing) for _ in range(workers)]
            started.wait(timeout=_START_TIMEOUT_S)
            for future in waiting:
                future.result()
        yield executor
    finally:
        if executor is not None:
            # The executor has no public way to stop a running task.
            for process in list(getattr(executor, "_processes", {}).values()):
                process.terminate()
            executor.shutdown(wait=True, cancel_futures=True)


def _nothing() -> None:
    return None


def _quiet_worker(started: Any) -> None:
    # Ctrl-C is the parent's to handle: it terminates the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    started.wait()


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
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


__all__ = ["worker_pool"]
