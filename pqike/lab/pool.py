"""Local worker processes for the runner's cells and tables and the report's plots.

``worker_pool(n)`` is a ``ProcessPoolExecutor`` of ``n`` processes forked from a fork
server that has imported the runner and the report once (``pqike.forkserver``; not from
this process, which may hold threads, such as a progress bar's). The pool is entered
only once every worker has started: a worker killed by a Ctrl-C while multiprocessing
starts it prints a traceback, so SIGINT waits until then. On the way out (done, an error
or Ctrl-C) the workers are terminated: whatever they were doing is lost, what the caller
already took from them is not.

``SharedPool(n)`` starts such a pool the first time it is asked for one and keeps it
until it is closed, so that one run's cells, tables and plots use the same workers
instead of starting a pool per phase.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from ..forkserver import sigint_deferred, start_fork_server

_START_TIMEOUT_S = 120.0
"""How long a pool may take to start all its workers (a busy machine, a cold import)."""


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """``workers`` started local processes; terminated when the block ends."""
    # Usually running already: the command line starts it before its own imports.
    start_fork_server()
    ctx = multiprocessing.get_context("forkserver")
    executor: ProcessPoolExecutor | None = None
    try:
        with sigint_deferred():
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


class SharedPool:
    """A ``worker_pool`` of at most ``workers`` processes, started by the first ``get()``
    and terminated by ``close()`` (or the end of a ``with`` block).

    ``at_least`` is how many tasks a later phase will give it at once (the report's
    plots), so that the first phase, which may have fewer, starts enough processes.
    """

    def __init__(self, workers: int, *, at_least: int = 0) -> None:
        self.workers = workers
        self._at_least = at_least
        self._stack = contextlib.ExitStack()
        self._executor: ProcessPoolExecutor | None = None

    def get(self, tasks: int = 0) -> ProcessPoolExecutor:
        """The pool's executor, started now if this is the first call: one process per
        task (``tasks`` now or ``at_least`` later), at most ``workers``."""
        if self._executor is None:
            size = max(1, min(self.workers, max(tasks, self._at_least)))
            self._executor = self._stack.enter_context(worker_pool(size))
        return self._executor

    def close(self) -> None:
        """Terminate the workers, if they were started."""
        self._executor = None
        self._stack.close()

    def __enter__(self) -> SharedPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _nothing() -> None:
    return None


def _quiet_worker(started: Any) -> None:
    # Ctrl-C is the parent's to handle: it terminates the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    started.wait()


__all__ = ["SharedPool", "worker_pool"]
