"""Responses, choices, usage and streamed chunks (read leniently from the wire)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final, NoReturn, Self

import attrs

from chatdsl import _checks as c
from chatdsl._errors import OutputError, StreamError
from chatdsl._types import FrozenDict
from chatdsl.model.messages import AssistantMessage

_NO_EXTRA: FrozenDict = FrozenDict()
"""The default ``extra``: the keys the server sent that chatdsl does not model, written back by ``to_dict()``."""


_FACT: Final = {"wire": False}
"""Field metadata of the facts of the exchange (latencies, request id, ...): never read from nor written to a body."""

__all__ = [
    "ChatCompletionChoice",
    "ChatCompletionResponse",
    "CompletionChunk",
    "CompletionResponseStreamChoice",
    "FinishReason",
    "PromptTokensDetails",
    "RateLimitInfo",
    "UsageInfo",
]


class FinishReason(enum.StrEnum):
    """Why the model stopped; an unknown reason from the server is kept as a plain string."""

    STOP = "stop"
    LENGTH = "length"
    MODEL_LENGTH = "model_length"
    ERROR = "error"
    TOOL_CALLS = "tool_calls"


@attrs.frozen(kw_only=True, weakref_slot=False)
class PromptTokensDetails:
    """Details of the prompt's tokens (``cached_tokens``)."""

    cached_tokens: int = 0
    extra: FrozenDict = attrs.field(
        default=_NO_EXTRA, converter=c.to_frozen, validator=c.json_object(), repr=c.plain_repr
    )


@attrs.frozen(kw_only=True, weakref_slot=False)
class UsageInfo:
    """Token usage of a completion (``service_tier``: the tier that served it, when the server says)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_audio_seconds: int | None = None
    num_cached_tokens: int | None = None
    prompt_tokens_details: PromptTokensDetails | None = None
    service_tier: str | None = None
    extra: FrozenDict = attrs.field(
        default=_NO_EXTRA, converter=c.to_frozen, validator=c.json_object(), repr=c.plain_repr
    )


@attrs.frozen(kw_only=True, weakref_slot=False)
class RateLimitInfo:
    """The server's ``x-ratelimit-*`` headers: ``headers`` holds them all (names lower-cased).

    The properties read the common ones as integers (``None`` when absent or not a number).
    """

    headers: Mapping[str, str] = attrs.field(factory=FrozenDict, converter=FrozenDict)

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateLimitInfo | None:
        """Return the rate-limit facts among *headers*, or ``None`` when there are none."""
        found = {k.lower(): v for k, v in headers.items() if k.lower().startswith("x-ratelimit-")}
        return cls(headers=found) if found else None

    def _int(self, *names: str) -> int | None:
        for name in names:
            value = self.headers.get(name)
            if value is not None:
                try:
                    return int(float(value))
                except (ValueError, OverflowError):  # not a number, or "inf"
                    return None
        return None

    @property
    def limit_requests(self) -> int | None:
        """Requests allowed in the current window."""
        return self._int("x-ratelimit-limit-requests", "x-ratelimit-limit-req-minute")

    @property
    def remaining_requests(self) -> int | None:
        """Requests left in the current window."""
        return self._int("x-ratelimit-remaining-requests", "x-ratelimit-remaining-req-minute")

    @property
    def limit_tokens(self) -> int | None:
        """Tokens allowed in the current window."""
        return self._int("x-ratelimit-limit-tokens", "x-ratelimit-limit-tokens-minute")

    @property
    def remaining_tokens(self) -> int | None:
        """Tokens left in the current window."""
        return self._int("x-ratelimit-remaining-tokens", "x-ratelimit-remaining-tokens-minute")


@attrs.frozen(kw_only=True, weakref_slot=False)
class ChatCompletionChoice:
    """One completion: its ``index``, the assistant ``message`` and the ``finish_reason``.

    ``refusal`` holds the model's refusal message when it declined to answer (OpenAI-compatible
    servers send it beside the message, whose content is then empty); ``None`` otherwise. It is a
    fact of the answer, not part of the message, so sending the message back never carries it.
    ``logprobs`` and ``prompt_logprobs`` hold the server's log probabilities as sent (a frozen JSON
    object), ``None`` when it sent none.
    """

    index: int = 0
    message: AssistantMessage = attrs.field(factory=AssistantMessage)
    finish_reason: FinishReason | str | None = None
    refusal: str | None = None
    logprobs: FrozenDict | None = attrs.field(
        default=None, converter=c.to_frozen, validator=c.json_object(nullable=True)
    )
    prompt_logprobs: FrozenDict | None = attrs.field(
        default=None, converter=c.to_frozen, validator=c.json_object(nullable=True)
    )
    extra: FrozenDict = attrs.field(
        default=_NO_EXTRA, converter=c.to_frozen, validator=c.json_object(), repr=c.plain_repr
    )


class _WireBody:
    """What a response and a stream chunk share: reading and writing their wire body, their first text.

    Each class names its first choice's message (``assistant_message`` / ``delta_message``) as
    ``_first_message``.
    """

    __slots__ = ()

    def _first_message(self) -> AssistantMessage | None:
        raise NotImplementedError

    def text(self) -> str:
        """Return the first choice's text (a chunk's: its delta's; ``""`` when there is no choice)."""
        message = self._first_message()
        return message.text() if message is not None else ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Return the response (or chunk) a wire body describes (unknown keys are kept in ``extra``)."""
        from chatdsl.wire.responses import structure_response

        return structure_response(data, cls)

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        """Return the response (or chunk) a JSON wire body describes."""
        from chatdsl.wire.responses import loads_response

        return loads_response(text, cls)

    def to_dict(self) -> dict[str, Any]:
        """Return the wire body as a dict."""
        from chatdsl.wire.responses import unstructure_response

        return unstructure_response(self)

    def to_json(self, *, indent: int | None = None) -> str:
        """Return the wire body as JSON text."""
        from chatdsl._json import dumps

        return dumps(self.to_dict(), indent=indent)


@attrs.frozen(kw_only=True, weakref_slot=False)
class ChatCompletionResponse(_WireBody):
    """A chat completion with the HTTP facts around it.

    ``usage`` is ``None`` when the server reported none (not zero). ``extra`` holds the keys the
    server sent that chatdsl does not model (every nested object has its own ``extra`` too), so
    ``to_dict()`` writes back everything that was read.

    ``latency`` runs from the request being sent to the body being parsed; ``request_id``,
    ``rate_limit`` and ``retries_taken`` come from the exchange. They are not part of the wire body.
    """

    id: str = ""
    object: str = "chat.completion"
    model: str = ""
    created: datetime | None = None
    usage: UsageInfo | None = None
    choices: tuple[ChatCompletionChoice, ...] = ()
    extra: FrozenDict = attrs.field(
        default=_NO_EXTRA, converter=c.to_frozen, validator=c.json_object(), repr=c.plain_repr
    )
    latency: timedelta | None = attrs.field(default=None, eq=False, metadata=_FACT)
    request_id: str | None = attrs.field(default=None, eq=False, metadata=_FACT)
    rate_limit: RateLimitInfo | None = attrs.field(default=None, eq=False, metadata=_FACT)
    retries_taken: int = attrs.field(default=0, eq=False, metadata=_FACT)

    def assistant_message(self) -> AssistantMessage | None:
        """Return the first choice's assistant message, or ``None`` when there is no choice."""
        return self.choices[0].message if self.choices else None

    @property
    def message(self) -> AssistantMessage:
        """The first choice's assistant message (never ``None``: ``response.message.output(City)`` type-checks).

        Raises :class:`~chatdsl.OutputError` naming the response (id, model) when it has no choice:
        like content that does not parse, there is no answer to read (one ``except`` covers both).
        """
        if not self.choices:
            raise OutputError(
                f"response {self.id!r} (model {self.model!r}) has no choice, so no assistant message",
                content="",
                path="choices",
            )
        return self.choices[0].message

    _first_message = assistant_message


@attrs.frozen(kw_only=True, weakref_slot=False)
class CompletionResponseStreamChoice:
    """One choice of a streamed chunk: the ``delta`` to append and, at its end, the ``finish_reason``.

    ``refusal`` is a piece of the model's refusal message (see :class:`ChatCompletionChoice`), or ``None``;
    ``logprobs`` and ``prompt_logprobs`` are as in :class:`ChatCompletionChoice`.
    """

    index: int = 0
    delta: AssistantMessage = attrs.field(factory=AssistantMessage)
    finish_reason: FinishReason | str | None = None
    refusal: str | None = None
    logprobs: FrozenDict | None = attrs.field(
        default=None, converter=c.to_frozen, validator=c.json_object(nullable=True)
    )
    prompt_logprobs: FrozenDict | None = attrs.field(
        default=None, converter=c.to_frozen, validator=c.json_object(nullable=True)
    )
    extra: FrozenDict = attrs.field(
        default=_NO_EXTRA, converter=c.to_frozen, validator=c.json_object(), repr=c.plain_repr
    )


@attrs.frozen(kw_only=True, weakref_slot=False)
class CompletionChunk(_WireBody):
    """A chunk of a streamed completion.

    ``chunk_latency`` is the time since the previous chunk (the first: since the request was sent),
    ``total_latency`` the time since the request was sent: a client's stream sets both on every
    chunk, so they are typed ``timedelta`` (not ``Optional``); a chunk made otherwise (built, or read
    with :meth:`from_dict`) has none and reading them raises ``AttributeError`` saying so
    (``getattr(chunk, "total_latency", None)`` reads either kind). The final chunk of a stream has
    ``is_last_chunk`` set; if the stream failed, it also carries ``error``, a
    :class:`~chatdsl.StreamError` whose ``__cause__`` says what happened, instead of being silently cut.
    """

    id: str = ""
    object: str = "chat.completion.chunk"
    model: str = ""
    created: datetime | None = None
    usage: UsageInfo | None = None
    choices: tuple[CompletionResponseStreamChoice, ...] = ()
    extra: FrozenDict = attrs.field(
        default=_NO_EXTRA, converter=c.to_frozen, validator=c.json_object(), repr=c.plain_repr
    )
    is_last_chunk: bool = attrs.field(default=False, eq=False, metadata=_FACT)
    # Stored under private names (given as ``chunk_latency=``/``total_latency=``), read through the properties.
    _chunk_latency: timedelta | None = attrs.field(default=None, eq=False, metadata=_FACT)
    _total_latency: timedelta | None = attrs.field(default=None, eq=False, metadata=_FACT)
    error: StreamError | None = attrs.field(default=None, eq=False, metadata=_FACT)

    @property
    def chunk_latency(self) -> timedelta:
        """The time since the previous chunk arrived (the first: since the request was sent).

        Raises ``AttributeError`` for a chunk no client stream received (see the class docstring).
        """
        latency = self._chunk_latency
        return latency if latency is not None else self._no_latency("chunk_latency")

    @property
    def total_latency(self) -> timedelta:
        """The time since the request was sent, when this chunk arrived.

        Raises ``AttributeError`` for a chunk no client stream received (see the class docstring).
        """
        latency = self._total_latency
        return latency if latency is not None else self._no_latency("total_latency")

    def _no_latency(self, name: str) -> NoReturn:
        raise AttributeError(
            f"CompletionChunk {self.id!r} has no {name}: only the chunks a client's stream hands over are"
            f" timed (this one was built or read with from_dict); getattr(chunk, {name!r}, None) reads either kind",
            name=name,
            obj=self,
        )

    def delta_message(self) -> AssistantMessage | None:
        """Return the first choice's delta, or ``None`` when the chunk has no choice."""
        return self.choices[0].delta if self.choices else None

    _first_message = delta_message
