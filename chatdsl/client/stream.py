"""Transport-free parts of a streamed completion: decoding, chunk latencies, the usage fold, the errors.

:class:`StreamState` turns the body's bytes into chunks; a client only reads the bytes and closes
the connection. Nothing here imports ``requests``, ``urllib3`` or ``aiohttp``, so both clients share it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import Any, Final, Literal, TypeAlias

import attrs

from chatdsl._errors import APIConnectionError, APITimeoutError, StreamError
from chatdsl.client.config import Limits, Timeout
from chatdsl.client.merge import Merger
from chatdsl.client.status import ZERO, elapsed, lower_keys, request_id_of, set_in_place
from chatdsl.model.response import ChatCompletionResponse, CompletionChunk, RateLimitInfo
from chatdsl.wire.sse import DONE, SSEDecoder, decode_chunk

__all__ = ["StreamFacts", "StreamState", "UsageFold", "cut_body_error"]

logger: Final = logging.getLogger("chatdsl")

_set_is_last_chunk = CompletionChunk.__dict__["is_last_chunk"].__set__
_set_chunk_latency = CompletionChunk.__dict__["_chunk_latency"].__set__
_set_total_latency = CompletionChunk.__dict__["_total_latency"].__set__


CLOSED_BY_CALLER: Final = "the stream was closed by the caller before it ended"


class UsageFold:
    """Folds a trailing usage-only chunk into the chunk marked last before it (see :class:`ChatCompletionStream`).

    :meth:`apply` passes chunks through, holding back the one that may get the usage; the held
    chunk waits across calls, and :meth:`flush` hands it over at the end of the stream.
    """

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held: CompletionChunk | None = None

    def apply(self, chunks: Iterable[CompletionChunk]) -> Generator[CompletionChunk]:
        for chunk in chunks:
            held = self.held
            if held is not None:
                self.held = None
                if chunk.usage is not None and not chunk.choices and chunk.error is None:
                    # both were stamped by this stream (so timed) and are not shared: fold in place
                    set_in_place(held, "usage", chunk.usage)
                    _set_chunk_latency(held, held.chunk_latency + chunk.chunk_latency)
                    _set_total_latency(held, chunk.total_latency)
                    chunk = held
                else:
                    yield held
            elif chunk.is_last_chunk and chunk.choices and chunk.usage is None and chunk.error is None:
                self.held = chunk
                continue
            yield chunk

    def flush(self) -> CompletionChunk | None:
        """Return the chunk still held (the stream ended), if any."""
        held, self.held = self.held, None
        return held


def fold_trailing_usage(chunks: Generator[CompletionChunk]) -> Generator[CompletionChunk]:
    """Fold a trailing usage-only chunk of *chunks* into the chunk marked last before it (:class:`UsageFold`)."""
    fold = UsageFold()
    try:
        yield from fold.apply(chunks)
        held = fold.flush()
        if held is not None:
            yield held
    finally:
        chunks.close()


def cut_body_error(decoder: SSEDecoder) -> StreamError:
    """The error of a stream body that ended (cleanly, at the transport level) before ``[DONE]``."""
    if decoder.has_partial_event:
        return StreamError("the stream was cut in the middle of an event (the body ended)")
    return StreamError("the stream ended without [DONE] (the body ended)")


StreamFailure: TypeAlias = Literal["deadline", "stall", "broken"]
"""Why a read of a stream's body failed, as a transport classifies its exception."""


class StreamState:
    """The transport-free side of one streamed answer: bytes in, stamped chunks out.

    A transport reads the body and hands each piece to :meth:`feed` with its arrival time; the
    chunks come out with their latencies and ``is_last_chunk`` set, merged as they pass (for
    ``final_response``). It ends the stream — :attr:`over` — at ``[DONE]`` or at the first failure,
    calling *release* (``release(reuse)``: free the connection; *reuse* when the body is complete)
    before the last chunk is handed over. What a transport meets itself (a failed read, the end of
    the body, a close) becomes an error chunk through :meth:`failure` and the ``*_failure`` builders.
    """

    __slots__ = (
        "decoder",
        "done",
        "error",
        "expected",
        "last_at",
        "left",
        "limits",
        "marked",
        "merger",
        "over",
        "release",
        "reported",
        "request_id",
        "sent_at",
        "since_last",
        "since_sent",
        "timeout",
        "url",
    )

    def __init__(
        self,
        *,
        url: str,
        sent_at: float,
        timeout: Timeout,
        limits: Limits,
        expected: int,
        request_id: str | None,
        release: Callable[[bool], object],
    ) -> None:
        self.url = url
        self.sent_at = sent_at
        self.timeout = timeout
        self.limits = limits
        self.expected = expected
        self.request_id = request_id
        self.release = release
        self.decoder = SSEDecoder(max_event_size=limits.max_event_size)
        self.left = math.inf if limits.max_stream_size is None else limits.max_stream_size
        self.merger = Merger()
        self.marked = False  # whether a chunk was marked last
        self.done = False  # whether [DONE] came
        self.over = False  # whether the stream ended ([DONE] or a failure)
        self.error: StreamError | None = None
        self.reported = False  # whether an error chunk was handed over
        self.last_at = sent_at
        self.since_last = self.since_sent = ZERO  # the latencies of the chunks of the current read

    def complete(self) -> bool:
        """Whether the answer is all there: ``[DONE]`` came, or every expected choice has a finish reason."""
        return self.done or len(self.merger.finished) >= self.expected

    def feed(self, data: bytes, received: float) -> Generator[CompletionChunk]:
        """Yield the chunks of the body piece *data* (arrived at *received*, ``time.perf_counter``)."""
        limits = self.limits
        self.left -= len(data)
        if self.left < 0:
            yield self.failure(
                StreamError(f"the stream is larger than max_stream_size ({limits.max_stream_size} bytes)")
            )
            return
        decoder = self.decoder
        try:
            events = decoder.feed(data)
        except StreamError as exc:
            yield self.failure(exc)
            return
        merger = self.merger
        for position, event in enumerate(events):
            if event.data == DONE:
                yield from self.finish(received)
                return
            if event.event not in ("message", "error"):
                continue  # a "ping" or other type the API does not use for chunks
            try:
                chunk = decode_chunk(event)
            except StreamError as exc:
                yield self.failure(exc)
                return
            finished = merger.add(chunk)
            if not self.marked:
                following = events[position + 1] if position + 1 < len(events) else None
                self.marked = finished >= self.expected or (following is not None and following.data == DONE)
            yield self.stamp(chunk, received, last=self.marked)
        if decoder.complete_lines_data() == DONE:  # its line is complete; no blank line may ever follow
            yield from self.finish(received)

    def finish(self, received: float) -> Generator[CompletionChunk]:
        """End the stream at ``[DONE]``: hand over the end marker if no chunk was marked last, reuse the connection."""
        self.done = self.over = True
        logger.debug(
            "stream from %s complete: %d chunks in %.3f s (request id %s)",
            self.url,
            self.merger.count,
            received - self.sent_at,
            self.request_id,
        )
        if not self.marked:
            yield self.stamp(self.merger.marker(), received, last=True)
        self.release(True)

    def stamp(self, chunk: CompletionChunk, received: float, *, last: bool) -> CompletionChunk:
        """Set *chunk*'s latencies and ``is_last_chunk`` (it was just built by this stream: in place)."""
        if received != self.last_at:  # the first event of a read: later ones arrived with it
            self.since_sent = elapsed(self.sent_at, received)
            self.since_last = elapsed(self.last_at, received)
            self.last_at = received
        else:
            self.since_last = ZERO
        _set_is_last_chunk(chunk, last)
        _set_chunk_latency(chunk, self.since_last)
        _set_total_latency(chunk, self.since_sent)
        self.merger.latency = self.since_sent
        return chunk

    def failure(self, error: StreamError) -> CompletionChunk:
        """Record *error*, release the connection, and return the error chunk to hand over."""
        self.error = error
        self.reported = self.over = True
        self.release(False)
        logger.debug("stream from %s ended with an error: %s", self.url, error)
        return self.stamp(attrs.evolve(self.merger.marker(), error=error), time.perf_counter(), last=True)

    def unreported(self) -> CompletionChunk | None:
        """Once the chunks are exhausted: the error chunk of a stream that ended on an error not handed over yet."""
        if self.error is None or self.reported:
            return None
        return self.failure(self.error)

    def closed_early(self) -> None:
        """The caller closed the stream: unless the answer was complete, that is its error."""
        if self.error is None and not self.complete():
            self.error = StreamError(CLOSED_BY_CALLER)

    def interrupted(self, exc: BaseException) -> None:
        """*exc* (``KeyboardInterrupt``, a cancellation, …) ended the stream during a read."""
        if self.error is None:
            self.error = StreamError(f"the stream was interrupted by {type(exc).__name__} while it was read")
            self.reported = False  # handed over in one error chunk by the next read (unreported)
        self.over = True

    def read_failure(self, kind: StreamFailure, reason: str, exc: BaseException) -> StreamError:
        """The error of a read that failed with *exc*, of *kind* (*reason*: the transport's short
        description), chained to the :class:`~chatdsl.APIConnectionError` it amounts to (chained to *exc*)."""
        limits = self.timeout
        cause: APIConnectionError
        if kind == "deadline":
            cause = APITimeoutError(f"the total deadline of {limits.total} s passed", response_started=True)
            error = StreamError(f"the stream was stopped: the total deadline of {limits.total} s passed")
        elif kind == "stall":
            cause = APITimeoutError(f"no data for {limits.read} s ({reason})", response_started=True)
            error = StreamError(f"the stream stalled: no data for {limits.read} s")
        else:
            cause = APIConnectionError(f"the connection broke ({reason})", response_started=True)
            error = StreamError(f"the stream was cut: the connection broke ({reason})")
        cause.__cause__ = exc
        error.__cause__ = cause
        return error

    def end_failure(self, *, deadline: bool) -> StreamError:
        """The error of a body that ended before ``[DONE]``; *deadline*: the total deadline cut it."""
        if deadline:
            total = self.timeout.total
            error = StreamError(f"the stream was stopped: the total deadline of {total} s passed")
            error.__cause__ = APITimeoutError(f"the total deadline of {total} s passed", response_started=True)
            return error
        return cut_body_error(self.decoder)

    def final(self, *, partial: bool, facts: Mapping[str, Any]) -> ChatCompletionResponse:
        """Return the merged response (see ``final_response``); *facts*: its HTTP facts."""
        if not partial:
            if self.error is not None:
                raise self.error
            if not self.complete():
                raise StreamError(
                    "the stream is not complete: read it to its end first (or pass partial=True for what arrived)"
                )
        return self.merger.response(**facts)


class StreamFacts:
    """What the streams of both clients show of their answer: its HTTP facts and how its reading went.

    A stream calls :meth:`_take_facts` with the response's status and headers, and keeps its
    :class:`StreamState` in ``_state``.
    """

    _state: StreamState

    def _take_facts(self, status: int, headers: Mapping[str, str], retries: int) -> None:
        self.status_code: int = status
        """The HTTP status of the response."""
        self.headers: dict[str, str] = lower_keys(headers)
        """The response headers (names lower-cased)."""
        self.request_id: str | None = request_id_of(headers)
        """The server's request id (``mistral-correlation-id``, else ``x-request-id``)."""
        self.rate_limit: RateLimitInfo | None = RateLimitInfo.from_headers(headers)
        """The server's ``x-ratelimit-*`` headers."""
        self.retries_taken: int = retries
        """How many times the call was sent again before this stream began."""

    @property
    def error(self) -> StreamError | None:
        """The error that ended the stream, if any (also in the last chunk)."""
        return self._state.error

    @property
    def completed(self) -> bool:
        """Whether ``[DONE]`` was received."""
        return self._state.done

    def _final(self, partial: bool) -> ChatCompletionResponse:
        facts = {"request_id": self.request_id, "rate_limit": self.rate_limit, "retries_taken": self.retries_taken}
        return self._state.final(partial=partial, facts=facts)

    def _describe(self, state: str) -> str:
        return f"<{type(self).__name__} {state} request_id={self.request_id!r} chunks={self._state.merger.count}>"
