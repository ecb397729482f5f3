"""The transport-free core of a run: its results, the rate gate every worker passes, the retry decision.

A run sends one request per item, several at a time, and retries each attempt itself (the client
underneath sends once: ``max_retries=0``), so every attempt goes through the :class:`RateGate`
shared by the whole run:

- a 429 pauses the whole run (every worker) for the server's ``Retry-After`` — or the policy's
  backoff when it gave none — not just the worker that got it;
- the ``x-ratelimit-*`` headers pace it: with ``remaining`` requests (or tokens) left until the
  window resets in ``reset`` seconds, attempts are spread so the remaining ones last until the
  reset (the requests still in flight counted as spent), so the run settles just under the limit
  instead of running into it and bouncing off 429s. Mistral sends ``x-ratelimit-remaining-req-minute``
  with ``x-ratelimit-reset-req-minute`` (seconds) and the same for ``tokens-minute``; OpenAI
  ``x-ratelimit-remaining-requests`` with ``x-ratelimit-reset-requests`` (``1s``, ``6m0s``). Without
  a reset header only an exhausted window (``remaining`` 0) pauses the run, for a second. The
  headers alone never hold the run back longer than a minute (a monthly quota is left to the
  429s and the retry policy);
- optional client-side limits: at most ``requests_per_second`` attempts a second, and
  ``tokens_per_minute`` (each answer's ``usage.total_tokens`` moves the next start later by
  its share of the minute).

The gate decides with the clock passed in (``time.monotonic`` seconds) and never blocks (its lock
guards a few assignments), so threads and asyncio tasks ask it alike. :func:`start_run` checks a
run's arguments, :class:`ItemRun` keeps one item's attempts (when to send, whether to retry, its
result): the thread pool (:mod:`chatdsl.runs.pool`) and the asyncio one (:mod:`chatdsl.runs.apool`)
only sleep and send around them.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from chatdsl._errors import APIError, ChatDSLError, RateLimitError, ValidationError
from chatdsl.client.config import RetryPolicy
from chatdsl.client.retry import retry_delay, retryable_error
from chatdsl.model.request import ChatCompletionRequest
from chatdsl.model.response import ChatCompletionResponse

if TYPE_CHECKING:
    from chatdsl.client.base import BaseClient

__all__ = ["AHEAD", "ItemRun", "RateGate", "RunItem", "RunResult", "next_delay", "reset_seconds", "start_run", "unpack"]

logger: Final = logging.getLogger("chatdsl")

RunItem = ChatCompletionRequest | tuple[Any, ChatCompletionRequest]
"""An item of a run: a request, or a ``(key, request)`` pair."""

AHEAD: Final = 2
"""A run takes at most ``AHEAD * concurrency`` items not handed back yet: workers stay busy, memory bounded."""


@attrs.frozen(kw_only=True)
class RunResult:
    """The outcome of one item of :meth:`Client.run_many <chatdsl.Client.run_many>`.

    ``key`` is the key given with the request (or the item's 0-based position when it came
    alone), ``index`` that position, ``request`` what was sent. Exactly one of ``response`` and
    ``error`` is set: the answer, or the exception of the last attempt (an
    :class:`~chatdsl.APIError`, :class:`~chatdsl.APIConnectionError`, ...). ``attempts`` counts
    the requests sent for it (retries included); ``latency`` is the seconds from its first send
    to its outcome (backoff waits included, queueing before the first send not).
    """

    key: Any
    index: int
    request: ChatCompletionRequest
    response: ChatCompletionResponse | None = None
    error: Exception | None = None
    attempts: int = 0
    latency: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the item got a response."""
        return self.response is not None

    def record(self) -> dict[str, Any]:
        """Return the output record of this result (see :mod:`chatdsl.runs.rows`): ``id``, ``response`` or
        ``error``, ``latency_ms``, ``attempts``; ``id`` is the key as text."""
        from chatdsl.runs.rows import error_record, response_record

        key = str(self.key)
        latency_ms = self.latency * 1000
        if self.response is not None:
            return response_record(key, self.response, latency_ms=latency_ms, attempts=self.attempts)
        error: BaseException = self.error if self.error is not None else RuntimeError("no outcome")
        return error_record(key, error, latency_ms=latency_ms, attempts=self.attempts)


# ------------------------------------------------------------------------------------ headers

_NUMBER: Final = r"(\d+(?:\.\d+)?)"
_DURATION: Final = re.compile(f"(?:{_NUMBER}h)?(?:{_NUMBER}m(?!s))?(?:{_NUMBER}s)?(?:{_NUMBER}ms)?")
_WINDOWS: Final = (
    # (remaining, reset, unit): Mistral's names first, then OpenAI's
    ("x-ratelimit-remaining-req-minute", "x-ratelimit-reset-req-minute", "requests"),
    ("x-ratelimit-remaining-requests", "x-ratelimit-reset-requests", "requests"),
    ("x-ratelimit-remaining-tokens-minute", "x-ratelimit-reset-tokens-minute", "tokens"),
    ("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens", "tokens"),
)
_EXHAUSTED_PAUSE: Final = 1.0  # seconds the run pauses on remaining 0 when no reset time was sent
_MAX_HEADER_WAIT: Final = 60.0  # the longest pause or spacing the headers alone can impose (429s decide beyond)
_EPOCH: Final = 1e9  # a reset above this many seconds is an absolute Unix time (some servers send one)


def reset_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Return a rate-limit reset header as seconds from now: ``12``, ``0.5``, a duration such as
    ``1s``, ``250ms``, ``6m0s``, ``1h2m3s``, or an absolute Unix time (a number above 10⁹; *now* is
    the current Unix time, default ``time.time()``); ``None`` when absent or unreadable."""
    if value is None:
        return None
    text = value.strip().lower()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        match = _DURATION.fullmatch(text)
        if match is None or not any(match.groups()):
            return None
        hours, minutes, secs, millis = (float(g) if g else 0.0 for g in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs + millis / 1000
    if not (math.isfinite(seconds) and seconds >= 0):
        return None
    if seconds > _EPOCH:
        seconds = max(0.0, seconds - (time.time() if now is None else now))
    return seconds


def _count(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


# --------------------------------------------------------------------------------------- gate


class RateGate:
    """When the next attempt of a run may start: shared by every worker, safe across threads.

    Before each attempt a worker calls :meth:`delay` until it returns 0 (sleeping what it returns
    in between); after it, :meth:`observe` with the answer's headers and tokens (or :meth:`pause`
    for a 429). *requests_per_second* and *tokens_per_minute* are optional client-side limits;
    *follow_headers* (default ``True``) paces by the server's ``x-ratelimit-*`` headers.
    See the module docs.
    """

    def __init__(
        self,
        *,
        requests_per_second: float | None = None,
        tokens_per_minute: float | None = None,
        follow_headers: bool = True,
    ) -> None:
        for name, value in (("requests_per_second", requests_per_second), ("tokens_per_minute", tokens_per_minute)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
                raise ValueError(f"{name}: {value!r} is not None or a number above 0")
        self.requests_per_second: Final = requests_per_second
        self.tokens_per_minute: Final = tokens_per_minute
        self.follow_headers: Final = follow_headers
        self._lock = threading.Lock()
        self._min_interval = 0.0 if requests_per_second is None else 1.0 / requests_per_second
        self._paced_interval = 0.0  # from the headers
        self._next_start = -math.inf  # the earliest start of the next attempt (interval pacing)
        self._paused_until = -math.inf  # a 429 or an exhausted window
        self._tokens_free_at = -math.inf  # tokens_per_minute: when the tokens spent so far are paid back
        self._in_flight = 0
        self._tokens_per_request = 0.0  # a running mean of usage.total_tokens, for token-window pacing
        self._answers = 0
        self.pauses = 0
        """How many times the run was paused (a 429, or an exhausted window)."""

    @property
    def in_flight(self) -> int:
        """How many attempts have started and not been observed yet."""
        return self._in_flight

    def delay(self, now: float) -> float:
        """Return the seconds to wait before the next attempt may start; 0 means start now (it is counted).

        A worker that got a positive delay sleeps it and asks again (a pause may have come meanwhile).
        """
        with self._lock:
            start = max(self._next_start, self._paused_until, self._tokens_free_at)
            if start > now:
                return start - now
            self._next_start = now + self._interval()  # strictly spaced: never two starts closer than that
            self._in_flight += 1
            return 0.0

    def _interval(self) -> float:
        return max(self._min_interval, self._paced_interval)

    def pause(self, seconds: float, now: float) -> None:
        """Hold every attempt back for *seconds* from *now* (a 429's ``Retry-After``): the whole run waits."""
        with self._lock:
            until = now + max(0.0, seconds)
            if until > self._paused_until:
                self._paused_until = until
                self.pauses += 1

    def observe(self, headers: Mapping[str, str] | None, tokens: int | None, now: float) -> None:
        """Take in an attempt's outcome: its response (or error) *headers* (lower-case names) and the
        *tokens* it used (``usage.total_tokens``; ``None`` when unknown)."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            if tokens is not None and tokens > 0:
                self._answers += 1
                self._tokens_per_request += (tokens - self._tokens_per_request) / min(self._answers, 50)
                if self.tokens_per_minute is not None:
                    self._tokens_free_at = max(self._tokens_free_at, now) + tokens * 60.0 / self.tokens_per_minute
            if headers and self.follow_headers:
                self._pace(headers, now)

    def _pace(self, headers: Mapping[str, str], now: float) -> None:
        interval = 0.0
        for remaining_name, reset_name, unit in _WINDOWS:
            remaining = _count(headers.get(remaining_name))
            if remaining is None:
                continue
            reset = reset_seconds(headers.get(reset_name))
            if reset is not None:
                reset = min(reset, _MAX_HEADER_WAIT)
            if unit == "tokens":
                if self._tokens_per_request <= 0:
                    continue  # no idea yet of what a request costs
                remaining = remaining / self._tokens_per_request
            left = remaining - self._in_flight  # the attempts in flight will spend their share too
            if reset is None:
                if remaining < 1:
                    self._pause_locked(now + _EXHAUSTED_PAUSE)
                continue
            if left < 1:
                self._pause_locked(now + reset)
            else:
                interval = max(interval, reset / left)
        self._paced_interval = interval

    def _pause_locked(self, until: float) -> None:
        if until > self._paused_until:
            self._paused_until = until
            self.pauses += 1


def next_delay(policy: RetryPolicy, gate: RateGate, error: BaseException, retries: int, now: float) -> float | None:
    """Return the seconds before the item that failed with *error* after *retries* retries is sent
    again, or ``None`` when it is done (not retryable, or no attempt left — see
    :func:`~chatdsl.client.retry.retry_delay`). A 429 pauses the whole run (*gate*) for that wait."""
    if not retryable_error(policy, error):
        return None
    retry_after = error.retry_after if isinstance(error, RateLimitError) else None
    delay = retry_delay(policy, retries, retry_after, None, now)
    if delay is not None and isinstance(error, RateLimitError):
        gate.pause(delay, now)
    return delay


# ---------------------------------------------------------------------------------- the run


def start_run(
    client: BaseClient[Any],
    *,
    concurrency: int,
    max_retries: int | None,
    requests_per_second: float | None,
    tokens_per_minute: float | None,
    follow_rate_limits: bool,
    beyond_the_pool: str,
) -> tuple[RetryPolicy, RateGate]:
    """Check a run's arguments (a :class:`~chatdsl.ValidationError` naming the bad one); return its
    retry policy (the *client*'s, with *max_retries* when given) and its gate. A *concurrency* above the
    client's ``pool_maxsize`` is logged as a warning saying what then happens (*beyond_the_pool*)."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValidationError("concurrency", f"{concurrency!r} is not a whole number of 1 or more")
    policy = client.retry if max_retries is None else attrs.evolve(client.retry, max_retries=max_retries)
    try:
        gate = RateGate(
            requests_per_second=requests_per_second,
            tokens_per_minute=tokens_per_minute,
            follow_headers=follow_rate_limits,
        )
    except ValueError as exc:
        name, _, rule = str(exc).partition(": ")
        raise ValidationError(name, rule) from None
    pool = client.limits.pool_maxsize
    if concurrency > pool:
        logger.warning(
            "run_many(concurrency=%d) is above the client's pool_maxsize=%d: %s; "
            "make the client with limits=Limits(pool_maxsize=%d)",
            concurrency,
            pool,
            beyond_the_pool,
            concurrency,
        )
    return policy, gate


def unpack(index: int, item: object) -> tuple[int, Any, ChatCompletionRequest]:
    """Return ``(index, key, request)`` of the item at *index* (a request is keyed by its index);
    anything else is a ``TypeError`` naming the item."""
    if isinstance(item, ChatCompletionRequest):
        return index, index, item
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], ChatCompletionRequest):
        return index, item[0], item[1]
    raise TypeError(
        f"item {index} of run_many is {type(item).__name__}, not a ChatCompletionRequest or a (key, request) pair"
    )


class ItemRun:
    """One item's attempts, without I/O: a worker asks it when to send, tells it what came back, gets the result.

    ::

        item = ItemRun(index, key, request, policy, gate)
        while True:
            while (wait := item.wait(clock())) > 0:
                sleep(wait)                              # or stop: item.stopped(clock())
            item.sending(clock())
            try:
                response = send(request)                 # one attempt (a client with max_retries=0)
            except Exception as exc:
                delay = item.failed(exc, clock())
                if delay is None:
                    return item.result()
                sleep(delay)
                continue
            return item.succeeded(response, clock())
    """

    __slots__ = ("_ended", "_error", "_first", "attempts", "gate", "index", "key", "policy", "request", "retries")

    def __init__(
        self, index: int, key: Any, request: ChatCompletionRequest, policy: RetryPolicy, gate: RateGate
    ) -> None:
        self.index = index
        self.key = key
        self.request = request
        self.policy = policy
        self.gate = gate
        self.attempts = 0
        self.retries = 0
        self._first: float | None = None
        self._ended = 0.0
        self._error: Exception | None = None

    def wait(self, now: float) -> float:
        """Return the seconds to wait before the next attempt (the run's gate); 0: send it now (it is counted)."""
        return self.gate.delay(now)

    def sending(self, now: float) -> None:
        """An attempt is being sent (the gate said 0)."""
        if self._first is None:
            self._first = now
        self.attempts += 1

    def failed(self, error: Exception, now: float, *, stopping: bool = False) -> float | None:
        """The attempt failed with *error*: return the seconds to wait before the next one, or ``None``
        when the item is done (not retryable, no attempt left, or the run is *stopping*): then
        :meth:`result` is its result. A 429 pauses the whole run (:func:`next_delay`)."""
        self.gate.observe(error.headers if isinstance(error, APIError) else None, None, now)
        if isinstance(error, ValidationError):
            self.attempts -= 1  # refused before sending
        self._error, self._ended = error, now
        delay = None if stopping else next_delay(self.policy, self.gate, error, self.retries, now)
        if delay is not None:
            self.retries += 1
        return delay

    def succeeded(self, response: ChatCompletionResponse, now: float) -> RunResult:
        """The attempt got *response*: the gate takes in its headers and tokens; return the item's result."""
        usage = response.usage
        headers = response.rate_limit.headers if response.rate_limit is not None else None
        self.gate.observe(headers, usage.total_tokens if usage is not None else None, now)
        return RunResult(
            key=self.key,
            index=self.index,
            request=self.request,
            response=response,
            attempts=self.attempts,
            latency=now - self._start(now),
        )

    def result(self) -> RunResult:
        """The item's result after its last failure (see :meth:`failed`)."""
        error: Exception = self._error if self._error is not None else ChatDSLError("no attempt was made")
        return RunResult(
            key=self.key,
            index=self.index,
            request=self.request,
            error=error,
            attempts=self.attempts,
            latency=self._ended - self._start(self._ended),
        )

    def stopped(self, now: float) -> RunResult:
        """The run stopped before this item's next attempt: its result says so."""
        error = ChatDSLError("the run was stopped before this request was sent")
        latency = 0.0 if self._first is None else now - self._first
        return RunResult(
            key=self.key, index=self.index, request=self.request, error=error, attempts=self.attempts, latency=latency
        )

    def _start(self, now: float) -> float:
        return now if self._first is None else self._first
