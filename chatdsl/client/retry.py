"""Transport-free retry decisions: the time left for an attempt, and the wait before the next one.

Plain functions over a :class:`~chatdsl.RetryPolicy` and a :class:`~chatdsl.Timeout`, with the
clock passed in (``time.perf_counter`` seconds), so a sync and an asyncio client decide alike.
Nothing here imports ``requests`` or ``urllib3``.
"""

from __future__ import annotations

from chatdsl._errors import APIConnectionError, APIError, MalformedResponseError
from chatdsl.client.config import RetryPolicy, Timeout

__all__ = ["attempt_timeouts", "retry_delay", "retryable_error", "retryable_status"]


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
