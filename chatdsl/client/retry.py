"""Transport-free retry decisions: the time left for an attempt, and the wait before the next one.

Plain functions over a :class:`~chatdsl.RetryPolicy` and a :class:`~chatdsl.Timeout`, with the
clock passed in (``time.perf_counter`` seconds), so a sync and an asyncio client decide alike.
:class:`Attempts` strings them into the retry loop of one call. Nothing here imports ``requests``,
``urllib3`` or ``aiohttp``.
"""

from __future__ import annotations

import copy as copy_module
import logging
import time
from typing import Final, TypeVar

from chatdsl._errors import APIConnectionError, APIError, APITimeoutError, ClientClosedError, MalformedResponseError
from chatdsl.client.config import RetryPolicy, Timeout

__all__ = [
    "NOT_ACTED",
    "Attempts",
    "attempt_timeouts",
    "copy_error",
    "retry_delay",
    "retryable_error",
    "retryable_status",
]

logger: Final = logging.getLogger("chatdsl")

_E = TypeVar("_E", bound=APIError | APIConnectionError)

NOT_ACTED: Final = frozenset({408, 429, 503})
"""The error statuses after which a call that is not idempotent is sent again (if the policy retries them):
the server turned the request away (its own timeout waiting for it, a rate limit, unavailable) without
acting on it. A 500 may have acted first, and a gateway's 502 or 504 says nothing of what its upstream did."""


def copy_error(error: APIError, message: str) -> APIError:
    """Return an error of *error*'s class and fields with another *message*."""
    copy = copy_module.copy(error)
    copy.message = message
    rid = f" (request id {error.request_id})" if error.request_id else ""
    copy.args = (f"HTTP {error.status_code}: {message}{rid}",)
    return copy


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

    A call that is not *idempotent* (a POST that creates something: an upload, a batch job) is sent
    again only when it surely did not reach the server (:meth:`failed` with ``unsent=True``: the
    connection was refused or timed out) or the server said it did not act on it (a retryable 408,
    429 or 503). Any other failure is raised with *unsure* added to its message (what may have been
    created, and how to check): a read timeout or a cut connection after the request was sent, a
    500, 502 or 504 (a gateway's upstream may have acted), or a success status whose body broke off.
    """

    __slots__ = (
        "client",
        "deadline",
        "idempotent",
        "limits",
        "method",
        "policy",
        "previous",
        "retries",
        "stream",
        "unsure",
        "url",
    )

    def __init__(
        self,
        policy: RetryPolicy,
        limits: Timeout,
        url: str,
        *,
        stream: bool,
        client: str,
        method: str = "POST",
        idempotent: bool = True,
        unsure: str = "",
    ) -> None:
        self.idempotent = idempotent
        self.unsure = unsure or "it may have been acted on"
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
        passed = f"the total deadline of {self.limits.total} s passed while the headers arrived"
        late = APITimeoutError(f"{self.method} {self.url}: {passed}")
        return self.maybe_acted(late)

    def maybe_acted(self, error: _E) -> _E:
        """Return *error*, or for a call that is not idempotent a copy whose message adds that the server may
        have acted on it (``unsure``), chained to it. For a failure after the request was sent."""
        if self.idempotent:
            return error
        note = f"; {self.unsure} (the request was not sent again)"
        copy: APIError | APIConnectionError
        if isinstance(error, APIError):
            copy = copy_error(error, error.message + note)
        else:
            copy = type(error)(f"{error}{note}", response_started=error.response_started)
        copy.__cause__ = error
        return copy  # type: ignore[return-value]  # the same class as *error*

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
            raise self.maybe_acted(error) if error.status_code >= 500 else error
        if not self.idempotent and error.status_code not in NOT_ACTED:
            raise self.maybe_acted(error)

    def failed(
        self, error: APIError | APIConnectionError, retry_after: float | None = None, *, unsent: bool = False
    ) -> float:
        """Return the seconds to wait before sending again after *error*, or raise *error* to give up.

        *unsent*: the request surely did not reach the server (refused, or a connect timeout). A call that
        is not idempotent gives up on a connection failure without it (see the class docs).
        """
        if not self.idempotent and isinstance(error, APIConnectionError) and not unsent:
            raise self.maybe_acted(error)
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
