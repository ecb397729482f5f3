"""Merging a stream's chunks into one response: a plain accumulator, no transport.

Linear in the number of deltas: text is gathered in lists and joined once at the end (a part is
never rebuilt per delta). Everything a chunk carries is kept: unknown keys (``extra``, merged, the
latest value winning), tool-call ids, names, indexes and arguments, log probabilities (their lists
concatenated), refusals, finish reasons and the usage (``None`` when the stream reported none).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from chatdsl._types import UNSET, FrozenDict, UnsetType
from chatdsl.model.messages import AssistantMessage, ContentChunk, FunctionCall, TextChunk, ThinkChunk, ToolCall
from chatdsl.model.response import ChatCompletionChoice, ChatCompletionResponse, CompletionChunk, UsageInfo

__all__ = ["Merger", "join_content"]


def _merge_extra(into: dict[str, Any] | None, extra: FrozenDict) -> dict[str, Any]:
    if into is None:
        return dict(extra)
    into.update(extra)
    return into


class _Call:
    __slots__ = ("arguments", "extra", "function_extra", "id", "index", "name")

    def __init__(self) -> None:
        self.id: str | UnsetType = UNSET
        self.name = ""
        self.arguments: list[str | FrozenDict] = []
        self.index: int | UnsetType = UNSET
        self.extra: dict[str, Any] | None = None
        self.function_extra: dict[str, Any] | None = None

    def add(self, call: ToolCall, call_id: str | None) -> None:
        if isinstance(self.id, UnsetType) and call_id is not None:
            self.id = call_id
        if not self.name and call.function.name:
            self.name = call.function.name
        if isinstance(self.index, UnsetType) and not isinstance(call.index, UnsetType):
            self.index = call.index
        self.arguments.append(call.function.arguments)
        if call.extra:
            self.extra = _merge_extra(self.extra, call.extra)
        if call.function.extra:
            self.function_extra = _merge_extra(self.function_extra, call.function.extra)

    def tool_call(self) -> ToolCall:
        function = FunctionCall(
            name=self.name, arguments=_join_arguments(self.arguments), extra=self.function_extra or FrozenDict()
        )
        return ToolCall(id=self.id, function=function, index=self.index, extra=self.extra or FrozenDict())


class _Choice:
    __slots__ = ("calls", "content", "extra", "finish_reason", "logprobs", "message_extra", "order", "refusal")

    def __init__(self) -> None:
        self.content: list[str | tuple[ContentChunk, ...]] = []
        self.calls: dict[object, _Call] = {}  # key -> the latest call under it
        self.order: list[_Call] = []  # every call, in order of appearance
        self.finish_reason: Any = None
        self.refusal: list[str] = []  # pieces of a refusal (OpenAI dialect)
        self.message_extra: dict[str, Any] | None = None
        self.extra: dict[str, Any] | None = None
        self.logprobs: dict[str, dict[str, Any]] = {}  # "logprobs" / "prompt_logprobs" -> merged object

    def add(self, delta: AssistantMessage) -> None:
        if not isinstance(delta.content, UnsetType):
            self.content.append(delta.content)
        if delta.extra:
            self.message_extra = _merge_extra(self.message_extra, delta.extra)
        if isinstance(delta.tool_calls, UnsetType):
            return
        for call in delta.tool_calls:
            call_id = call.id if not isinstance(call.id, UnsetType) and call.id else None
            key: object
            if not isinstance(call.index, UnsetType):
                key = ("index", call.index)
            elif call_id is not None:
                key = ("id", call_id)
            else:
                key = None  # a continuation of the latest call
            state = self.order[-1] if key is None and self.order else self.calls.get(key)
            if state is None or (call_id is not None and not isinstance(state.id, UnsetType) and state.id != call_id):
                # a new call — also under an index already used, when the id differs (Ollama and some
                # proxies number every parallel call 0)
                state = _Call()
                self.calls[key] = state
                self.order.append(state)
            state.add(call, call_id)

    def add_logprobs(self, key: str, value: FrozenDict) -> None:
        merged = self.logprobs.setdefault(key, {})
        for name, item in value.items():
            previous = merged.get(name)
            if isinstance(item, list) and isinstance(previous, list):
                previous.extend(item)
            else:
                merged[name] = list(item) if isinstance(item, list) else item

    def message(self) -> AssistantMessage:
        calls: tuple[ToolCall, ...] | UnsetType = UNSET
        if self.order:
            calls = tuple(state.tool_call() for state in self.order)
        return AssistantMessage(
            content=join_content(self.content), tool_calls=calls, extra=self.message_extra or FrozenDict()
        )


def _join_arguments(pieces: list[str | FrozenDict]) -> str | FrozenDict:
    objects = [piece for piece in pieces if not isinstance(piece, str)]
    if objects:
        return objects[-1]
    return "".join(piece for piece in pieces if isinstance(piece, str))


class _TextRun:
    """Consecutive text parts, joined once at the end."""

    __slots__ = ("extra", "texts")

    def __init__(self, part: TextChunk) -> None:
        self.texts = [part.text]
        self.extra: dict[str, Any] | None = dict(part.extra) if part.extra else None

    def add(self, part: TextChunk) -> None:
        self.texts.append(part.text)
        if part.extra:
            self.extra = _merge_extra(self.extra, part.extra)

    def build(self) -> TextChunk:
        return TextChunk(text="".join(self.texts), extra=self.extra or FrozenDict())


class _ThinkRun:
    """Consecutive thinking parts, their text items joined once at the end."""

    __slots__ = ("closed", "extra", "items", "signature")

    def __init__(self, part: ThinkChunk) -> None:
        self.items: list[_TextRun | Any] = []
        self.closed: bool | UnsetType = UNSET
        self.signature: list[str] = []
        self.extra: dict[str, Any] | None = None
        self.add(part)

    def add(self, part: ThinkChunk) -> None:
        items = self.items
        for item in part.thinking:
            if item.__class__ is TextChunk:
                last = items[-1] if items else None
                if last.__class__ is _TextRun:
                    last.add(item)
                else:
                    items.append(_TextRun(item))
            else:
                items.append(item)
        if not isinstance(part.closed, UnsetType):
            self.closed = part.closed
        if not isinstance(part.signature, UnsetType):
            self.signature.append(part.signature)  # sent whole at the end, or in pieces: joined either way
        if part.extra:
            self.extra = _merge_extra(self.extra, part.extra)

    def build(self) -> ThinkChunk:
        return ThinkChunk(
            thinking=tuple(item.build() if item.__class__ is _TextRun else item for item in self.items),
            closed=self.closed,
            signature="".join(self.signature) if self.signature else UNSET,
            extra=self.extra or FrozenDict(),
        )


def join_content(pieces: list[str | tuple[ContentChunk, ...]]) -> str | tuple[ContentChunk, ...] | UnsetType:
    """Return the content of a message from its streamed pieces, in time linear in their number.

    All strings: their concatenation. Otherwise parts, adjacent text parts (and adjacent thinking
    parts, and text items inside them) merged into one; an empty text part on its own is dropped.
    """
    if not pieces:
        return UNSET
    if all(piece.__class__ is str for piece in pieces):
        return "".join(pieces)  # type: ignore[arg-type]
    out: list[Any] = []
    run: _TextRun | _ThinkRun | None = None
    for piece in pieces:
        for part in (TextChunk(text=piece),) if isinstance(piece, str) else piece:
            if isinstance(part, TextChunk):
                if isinstance(run, _TextRun):
                    run.add(part)
                elif part.text or part.extra:
                    run = _TextRun(part)
                    out.append(run)
            elif isinstance(part, ThinkChunk):
                if isinstance(run, _ThinkRun):
                    run.add(part)
                else:
                    run = _ThinkRun(part)
                    out.append(run)
            else:
                run = None
                out.append(part)
    return tuple(item.build() if item.__class__ in (_TextRun, _ThinkRun) else item for item in out)


class Merger:
    """Accumulates a stream's chunks into one response (``final_response``)."""

    __slots__ = ("choices", "count", "created", "extra", "finished", "id", "latency", "model", "usage")

    def __init__(self) -> None:
        self.id = ""
        self.model = ""
        self.created: datetime | None = None
        self.usage: UsageInfo | None = None
        self.choices: dict[int, _Choice] = {}
        self.finished: set[int] = set()
        self.count = 0
        self.latency: timedelta | None = None
        self.extra: dict[str, Any] | None = None

    def add(self, chunk: CompletionChunk) -> int:
        """Merge *chunk*; return how many choices have a finish reason so far."""
        self.count += 1
        if not self.id and chunk.id:
            self.id = chunk.id
        if not self.model and chunk.model:
            self.model = chunk.model
        if self.created is None and chunk.created is not None:
            self.created = chunk.created
        if chunk.usage is not None:
            self.usage = chunk.usage
        if chunk.extra:
            self.extra = _merge_extra(self.extra, chunk.extra)
        for choice in chunk.choices:
            state = self.choices.get(choice.index)
            if state is None:
                state = self.choices[choice.index] = _Choice()
            state.add(choice.delta)
            if choice.finish_reason is not None:
                state.finish_reason = choice.finish_reason
                self.finished.add(choice.index)
            if choice.refusal is not None:
                state.refusal.append(choice.refusal)
            if choice.logprobs is not None:
                state.add_logprobs("logprobs", choice.logprobs)
            if choice.prompt_logprobs is not None:
                state.add_logprobs("prompt_logprobs", choice.prompt_logprobs)
            if choice.extra:
                state.extra = _merge_extra(state.extra, choice.extra)
        return len(self.finished)

    def marker(self) -> CompletionChunk:
        """Return an empty chunk of this stream (for the end marker and error chunks)."""
        return CompletionChunk(id=self.id, model=self.model, created=self.created)

    def response(self, **facts: Any) -> ChatCompletionResponse:
        """Return the response the chunks so far add up to (*facts*: the HTTP facts to set on it)."""
        choices = tuple(
            ChatCompletionChoice(
                index=index,
                message=state.message(),
                finish_reason=state.finish_reason,
                refusal="".join(state.refusal) if state.refusal else None,
                logprobs=state.logprobs.get("logprobs"),
                prompt_logprobs=state.logprobs.get("prompt_logprobs"),
                extra=state.extra or FrozenDict(),
            )
            for index, state in sorted(self.choices.items())
        )
        return ChatCompletionResponse(
            id=self.id,
            model=self.model,
            created=self.created,
            usage=self.usage,
            choices=choices,
            extra=self.extra or FrozenDict(),
            latency=self.latency,
            **facts,
        )
