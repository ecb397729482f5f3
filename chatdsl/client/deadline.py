"""The total deadline of a call: :class:`Watchdog`, fired by one shared scheduler thread.

A watchdog calls whatever it is pointed at (a callable) when the deadline passes; what that
interrupts — a socket, a response — is the transport's business. Nothing here imports
``requests`` or ``urllib3``.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from typing import Final

__all__: list[str] = []

logger: Final = logging.getLogger("chatdsl")


class _Scheduler:
    """One daemon thread that fires every pending :class:`Watchdog` at its deadline (a heap of
    deadlines, not a thread per call). Started on first use; a cancelled watchdog stays in the heap
    until its time comes, unless cancelled ones pile up (then the heap is rebuilt without them)."""

    __slots__ = ("_cancelled", "_condition", "_heap", "_order", "_thread")

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Watchdog]] = []
        self._order = 0
        self._cancelled = 0
        self._thread: threading.Thread | None = None

    def add(self, watchdog: Watchdog, deadline: float) -> None:
        with self._condition:
            self._order += 1
            heapq.heappush(self._heap, (deadline, self._order, watchdog))
            if self._thread is None or not self._thread.is_alive():  # none yet, or a fork left it behind
                self._thread = threading.Thread(target=self._run, name="chatdsl-deadlines", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is watchdog:
                self._condition.notify()

    def discard(self) -> None:
        """Note that a pending watchdog was cancelled (its entry is dropped lazily)."""
        with self._condition:
            self._cancelled += 1
            if self._cancelled > 256 and self._cancelled * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if not entry[2].settled]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def _run(self) -> None:
        heap = self._heap
        while True:
            with self._condition:
                heap = self._heap
                while not heap:
                    self._condition.wait()
                    heap = self._heap
                deadline, _, watchdog = heap[0]
                wait = deadline - time.perf_counter()
                if wait > 0:
                    self._condition.wait(wait)
                    continue
                heapq.heappop(heap)
                if watchdog.settled and self._cancelled:
                    self._cancelled -= 1
            watchdog.fire()


_SCHEDULER: Final = _Scheduler()


class Watchdog:
    """Enforces a call's total deadline: at the deadline it interrupts what the call is waiting on
    — the connection sending the request or receiving the headers (its socket is shut down), then
    the response being read (``HTTPResponse.shutdown``) — so a blocked read or write returns at once.

    :meth:`watch` (point it at something else, or at nothing) and :meth:`fire` take one lock, so
    once ``watch(None)`` or :meth:`cancel` returns, the former target is never touched again (it
    may be a connection back in the pool, serving another call). A response whose watchdog fired
    is closed with its connection, never pooled (see :func:`_close`). Without a deadline it does
    nothing and costs nothing.
    """

    __slots__ = ("_lock", "_target", "fired", "settled")

    def __init__(self, deadline: float | None) -> None:
        self.fired = False
        self.settled = deadline is None
        self._target: Callable[[], object] | None = None
        if deadline is None:
            return
        self._lock = threading.Lock()
        _SCHEDULER.add(self, deadline)

    def watch(self, target: Callable[[], object] | None) -> None:
        """Interrupt *target* (a callable) at the deadline, instead of the former one; at once if it passed."""
        if self.settled and not self.fired:
            return
        with self._lock:
            if self.fired:
                _interrupt(target)
            elif not self.settled:
                self._target = target

    def fire(self) -> None:
        """The deadline passed: interrupt the current target (unless cancelled)."""
        with self._lock:
            if self.settled:
                return
            self.settled = self.fired = True
            _interrupt(self._target)
            self._target = None

    def cancel(self) -> bool:
        """Stop watching for good and return whether the deadline had fired."""
        if self.settled:
            return self.fired
        with self._lock:
            self.settled = True
            self._target = None
            fired = self.fired  # it may have fired meanwhile
        if not fired:
            _SCHEDULER.discard()
        return fired


def _interrupt(target: Callable[[], object] | None) -> None:
    if target is None:
        return
    try:
        target()
    except Exception:  # released or closed meanwhile: nothing left to interrupt
        logger.debug("total deadline: nothing left to interrupt")
