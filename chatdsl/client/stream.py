"""Transport-free parts of a streamed completion: chunk latencies, the usage fold, end-of-body errors.

Nothing here imports ``requests`` or ``urllib3``, so an asyncio client can share it.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import timedelta
from typing import Final

from chatdsl._errors import StreamError
from chatdsl.model.response import CompletionChunk
from chatdsl.wire.sse import SSEDecoder

__all__ = ["cut_body_error"]

_set = object.__setattr__
_set_is_last_chunk = CompletionChunk.__dict__["is_last_chunk"].__set__
_set_chunk_latency = CompletionChunk.__dict__["_chunk_latency"].__set__
_set_total_latency = CompletionChunk.__dict__["_total_latency"].__set__


_MICROSECOND: Final = timedelta(microseconds=1)


def _elapsed(start: float, end: float) -> timedelta:
    # timedelta * int is several times cheaper than timedelta(seconds=float): it is paid twice per chunk
    seconds = end - start
    return _MICROSECOND * round(seconds * 1_000_000) if seconds > 0 else _ZERO


_ZERO: Final = timedelta(0)


_CLOSED_BY_CALLER: Final = "the stream was closed by the caller before it ended"


def _fold_usage(chunks: Generator[CompletionChunk]) -> Generator[CompletionChunk]:
    """Fold a trailing usage-only chunk into the chunk marked last before it (see :class:`ChatCompletionStream`)."""
    held: CompletionChunk | None = None
    try:
        for chunk in chunks:
            if held is not None:
                if chunk.usage is not None and not chunk.choices and chunk.error is None:
                    # both were stamped by this stream (so timed) and are not shared: fold in place
                    _set(held, "usage", chunk.usage)
                    _set_chunk_latency(held, held.chunk_latency + chunk.chunk_latency)
                    _set_total_latency(held, chunk.total_latency)
                    chunk, held = held, None
                else:
                    yield held
                    held = None
            elif chunk.is_last_chunk and chunk.choices and chunk.usage is None and chunk.error is None:
                held = chunk
                continue
            yield chunk
        if held is not None:
            yield held
    finally:
        chunks.close()


def cut_body_error(decoder: SSEDecoder) -> StreamError:
    """The error of a stream body that ended (cleanly, at the transport level) before ``[DONE]``."""
    if decoder.has_partial_event:
        return StreamError("the stream was cut in the middle of an event (the body ended)")
    return StreamError("the stream ended without [DONE] (the body ended)")
