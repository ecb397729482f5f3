"""Transport-free retry decisions: the time left for an attempt, and the wait before the next one.

Plain functions over a :class:`~chatdsl.RetryPolicy` and a :class:`~chatdsl.Timeout`, with the
clock passed in (``time.perf_counter`` seconds), so a sync and an asyncio client decide alike.
:class:`Attempts` strings them into the retry loop of one call. Nothing here imports ``requests``,
``urllib3`` or ``aiohttp``.
"""

from __future__ import annotations

import logging
import time
from typing import Final

from chatdsl._errors import APIConnectionError, APIError, APITimeoutError, ClientClosedError, MalformedResponseError
from chatdsl.client.config import RetryPolicy, Timeout

__all__ = ["Attempts", "attempt_timeouts", "retry_delay", "retryable_error", "retryable_status"]

logger: Final = logging.getLogger("chatdsl")


def retryable_status(policy: RetryPolicy, status: int) -> bool:
    """Return whether an answer with HTTP *status* is worth sending again under *policy*."""
    return policy.should_retry_status(status)


def attempt_timeouts(limits: Timeout, deadline: float | None, now: float) -> tuple[float | None, float | None] | None:
    """Return the ``(connect, read)`` timeouts of an attempt starting at *now*, or ``None`` if the
    total *deadline* has passed (a backoff sleep overran it): both are capped at the time left."""
    connect, read = limits.connect, limits.read
    if deadline is not None:
        remaining = deadline - now
        if remaining <= 0:
            return None
        connect = remaining if connect is None else min(connect, remaining)
        read = remaining if read is None else min(read, remaining)
    return connect, read


def retry_delay(
    policy: RetryPolicy, retries: int, retry_after: float | None, deadline: float | None, now: float
) -> float | None:
    """Return the seconds to wait before sending again after *retries* retries, or ``None`` to give up.

    Gives up when no attempt is left, when the server's *retry_after* exceeds the policy's cap, or
    when the wait (jittered backoff, or exactly *retry_after*) would reach the total *deadline*.
    """
    delay = policy.backoff(retries, retry_after) if retries < policy.max_retries else None
    if delay is None or (deadline is not None and now + delay >= deadline):
        return None
    return delay


def _short(error: BaseException) -> str:
    if isinstance(error, APIError):
        return f"HTTP {error.status_code}"
    return f"{type(error).__name__}: {error}"


class Attempts:
    """The retry loop of one call, without its I/O: a client asks it before each attempt and after each failure.

    ::

        attempts = Attempts(policy, timeout, url, stream=False, client="Client", method="POST")
        while True:
            connect, read = attempts.begin(closed=...)      # raises when the deadline or the client is gone
            ... send; on success return ...; on failure:
            sleep(attempts.failed(error, retry_after))      # raises *error* when it is not worth another try

    It holds the total deadline (``time.perf_counter`` seconds, ``None``: none), the retries taken, and
    logs each attempt and retry on the ``chatdsl`` logger; its messages name the HTTP *method* and
    the (redacted) *url*.
    """

    __slots__ = ("client", "deadline", "limits", "method", "policy", "previous", "retries", "stream", "url")

    def __init__(
        self, policy: RetryPolicy, limits: Timeout, url: str, *, stream: bool, client: str, method: str = "POST"
    ) -> None:
        self.policy = policy
        self.method = method
        self.limits = limits
        self.url = url
        self.stream = stream
        self.client = client
        self.deadline = None if limits.total is None else time.perf_counter() + limits.total
        self.retries = 0
        self.previous: APIError | APIConnectionError | None = None  # the failure the last backoff followed

    def begin(self, *, closed: bool) -> tuple[float | None, float | None]:
        """Return the ``(connect, read)`` timeouts of the next attempt (capped at the time left), and log it.

        Raises :class:`~chatdsl.APITimeoutError` if a backoff overran the total deadline, and
        :class:`~chatdsl.ClientClosedError` if the client was *closed* while the call waited to retry.
        """
        timeouts = attempt_timeouts(self.limits, self.deadline, time.perf_counter())
        if timeouts is None:  # a backoff sleep overran the deadline (checked before sleeping)
            passed = f"the total deadline of {self.limits.total} s passed before attempt {self.retries + 1}"
            raise APITimeoutError(f"{self.method} {self.url}: {passed}") from self.previous
        if self.retries and closed:
            raise ClientClosedError(f"this {self.client} was closed while the call waited to retry") from self.previous
        logger.debug("%s %s (attempt %d, stream=%s)", self.method, self.url, self.retries + 1, self.stream)
        return timeouts

    def late_headers(self) -> APITimeoutError:
        """The error of a response whose headers came as the total deadline passed."""
        return APITimeoutError(
            f"{self.method} {self.url}: the total deadline of {self.limits.total} s passed while the headers arrived"
        )

    def rejected(self, error: APIError, sent_at: float) -> None:
        """An error status arrived: log it, and raise *error* if the policy does not send again on it."""
        logger.debug(
            "%s %s -> %d in %.3f s (request id %s)",
            self.method,
            self.url,
            error.status_code,
            time.perf_counter() - sent_at,
            error.request_id,
        )
        if not retryable_status(self.policy, error.status_code):
            raise error

    def failed(self, error: APIError | APIConnectionError, retry_after: float | None = None) -> float:
        """Return the seconds to wait before sending again after *error*, or raise *error* to give up."""
        delay = retry_delay(self.policy, self.retries, retry_after, self.deadline, time.perf_counter())
        if delay is None:
            raise error
        self.retries += 1
        self.previous = error
        logger.info(
            "%s %s failed (%s); retry %d of %d in %.2f s",
            self.method,
            self.url,
            _short(error),
            self.retries,
            self.policy.max_retries,
            delay,
        )
        return delay


def retryable_error(policy: RetryPolicy, error: BaseException) -> bool:
    """Return whether a call that failed with *error* is worth sending again under *policy*.

    A retryable status (:func:`retryable_status`), or no answer at all; never a malformed success
    body nor a body cut after its success status (``response_started``): the server accepted that
    request and may have billed it. For callers that send attempts one by one (``max_retries=0``).
    """
    if isinstance(error, MalformedResponseError):
        return False
    if isinstance(error, APIError):
        return retryable_status(policy, error.status_code)
    return isinstance(error, APIConnectionError) and not error.response_started
