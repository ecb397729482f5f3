"""Many requests through one sync :class:`~chatdsl.Client`, on a pool of threads: :meth:`Client.run_many`.

The items are taken lazily, at most ``2 * concurrency`` ahead of what was handed back, so memory
is bounded by the concurrency, not by the input. Each worker sends one attempt at a time through
a client with ``max_retries=0``, and decides retries itself with the run's policy
(:class:`chatdsl.runs.core.ItemRun`), so every attempt passes the run's shared
:class:`~chatdsl.runs.core.RateGate`. An item that fails (after its retries) becomes a result
with ``error`` set; the run goes on. Closing the iterator early (``break``, an exception, garbage
collection) stops the run: nothing new is sent, waits end at once, and the requests already in
flight finish in the background (their results are dropped). The worker threads are daemons, so
a program that ends (Ctrl-C included) never waits for them.
"""

from __future__ import annotations

import collections
import concurrent.futures
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from chatdsl.model.request import ChatCompletionRequest
from chatdsl.model.response import ChatCompletionResponse
from chatdsl.runs.core import AHEAD, ItemRun, RateGate, RunItem, RunResult, start_run, unpack

if TYPE_CHECKING:
    from chatdsl.client.config import RetryPolicy
    from chatdsl.client.sync import Client

__all__ = ["RunItem", "run_many"]

_T = TypeVar("_T")


def run_many(
    client: Client,
    items: Iterable[RunItem],
    *,
    concurrency: int = 8,
    ordered: bool = True,
    max_retries: int | None = None,
    requests_per_second: float | None = None,
    tokens_per_minute: float | None = None,
    follow_rate_limits: bool = True,
) -> Iterator[RunResult]:
    """Send every item's request through *client*, *concurrency* at a time; yield a :class:`RunResult` each.

    See :meth:`Client.run_many <chatdsl.Client.run_many>`. Arguments are checked here, before any
    item is taken; the items are read as the results are consumed.
    """
    policy, gate = start_run(
        client,
        concurrency=concurrency,
        max_retries=max_retries,
        requests_per_second=requests_per_second,
        tokens_per_minute=tokens_per_minute,
        follow_rate_limits=follow_rate_limits,
        beyond_the_pool="the connections beyond it are opened again for every request",
    )
    once = client.with_options(max_retries=0)
    run = _Run(once.chat_completion, policy, gate, concurrency)
    return run.results(items, ordered=bool(ordered))


class _Run:
    """One run's workers, gate and stop flag."""

    def __init__(
        self,
        send: Callable[[ChatCompletionRequest], ChatCompletionResponse],
        policy: RetryPolicy,
        gate: RateGate,
        concurrency: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.send = send
        self.policy = policy
        self.gate = gate
        self.concurrency = concurrency
        self.clock = clock
        self.stop = threading.Event()

    def results(self, items: Iterable[RunItem], *, ordered: bool) -> Iterator[RunResult]:
        workers = _Workers(self.concurrency)
        source = enumerate(items)
        ahead = AHEAD * self.concurrency
        try:
            if ordered:
                window: collections.deque[concurrent.futures.Future[RunResult]] = collections.deque()
                while True:
                    while len(window) < ahead and (item := next(source, None)) is not None:
                        window.append(workers.submit(self.one, *unpack(*item)))
                    if not window:
                        return
                    yield window.popleft().result()
            else:
                pending: set[concurrent.futures.Future[RunResult]] = set()
                while True:
                    while len(pending) < ahead and (item := next(source, None)) is not None:
                        pending.add(workers.submit(self.one, *unpack(*item)))
                    if not pending:
                        return
                    done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                    for future in sorted(done, key=lambda f: f.result().index):
                        yield future.result()
        finally:
            self.stop.set()
            workers.shutdown()

    def one(self, index: int, key: Any, request: ChatCompletionRequest) -> RunResult:
        """Send one item, retrying as the policy says; never raises (an error becomes the result's)."""
        clock, stop = self.clock, self.stop
        item = ItemRun(index, key, request, self.policy, self.gate)
        while True:
            while (wait := item.wait(clock())) > 0:
                if stop.wait(wait):
                    return item.stopped(clock())
            item.sending(clock())
            try:
                response = self.send(request)
            except Exception as exc:
                delay = item.failed(exc, clock(), stopping=stop.is_set())
                if delay is None or stop.wait(delay):
                    return item.result()
                continue
            return item.succeeded(response, clock())


class _Workers:
    """At most *size* daemon threads running submitted calls (one started with each of the first *size* calls).

    Not a ``ThreadPoolExecutor``: its threads are joined when the interpreter exits, so a run
    stopped by Ctrl-C would wait for every request in flight; these threads are daemons, and a
    request in flight when the program ends is simply dropped (nothing of it was written).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.tasks: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[..., Any], tuple[Any, ...]] | None]
        self.tasks = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []

    def submit(self, fn: Callable[..., _T], *args: Any) -> concurrent.futures.Future[_T]:
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()
        self.tasks.put((future, fn, args))
        if len(self.threads) < self.size:  # submit is called from one thread: no lock needed
            thread = threading.Thread(target=self._work, name=f"chatdsl-run-{len(self.threads)}", daemon=True)
            self.threads.append(thread)
            thread.start()
        return future

    def _work(self) -> None:
        while (task := self.tasks.get()) is not None:
            future, fn, args = task
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:
                    future.set_exception(exc)

    def shutdown(self) -> None:
        """Cancel what has not started and let every thread end once its current call returns."""
        while True:
            try:
                task = self.tasks.get_nowait()
            except queue.Empty:
                break
            if task is not None:
                task[0].cancel()
        for _ in self.threads:
            self.tasks.put(None)
