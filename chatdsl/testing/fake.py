"""The default answers of :class:`~chatdsl.testing.LocalServer`: deterministic replies derived from the request.

The answer echoes the last user message; ``max_tokens`` (or ``max_completion_tokens``) truncates it
to that many words with finish reason ``length``; a JSON response format gives a JSON answer (for
``json_schema`` an instance generated from the schema within a budget of values: what it cannot meet
is logged and named in the ``x-localserver-unmet-constraints`` header); a forced tool choice gives a
tool call whose id is made as the dialect makes them; after a tool message the answer summarises the
tool's result. :func:`default_chunks` streams the same answer one word per chunk.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import math
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import attrs

from chatdsl._types import UNSET
from chatdsl.model.messages import AssistantMessage, FunctionCall, ToolCall, ToolMessage, UserMessage, content_text
from chatdsl.model.request import ChatCompletionRequest
from chatdsl.model.response import (
    ChatCompletionChoice,
    ChatCompletionResponse,
    CompletionChunk,
    CompletionResponseStreamChoice,
    FinishReason,
    UsageInfo,
)
from chatdsl.model.tools import ResponseFormatType, ToolChoice
from chatdsl.testing.replies import Answer
from chatdsl.testing.wire import MistralWire, json_text

__all__ = ["default_chunks", "default_response", "unmet_header", "unmet_notes"]

logger: Final = logging.getLogger("chatdsl.testing")

_WORD: Final = re.compile(r"\S+")
_PIECE: Final = re.compile(r"\s*\S+")
_MAX_SCHEMA_DEPTH: Final = 8
_MAX_GENERATED: Final = 100  # array items and string length are capped here whatever the schema asks


def _words(text: str) -> int:
    return len(text.split())


def _truncate(text: str, max_words: int) -> tuple[str, bool]:
    matches = list(_WORD.finditer(text))
    if len(matches) <= max_words:
        return text, False
    if max_words == 0:
        return "", True
    return text[: matches[max_words - 1].end()], True


def _pieces(text: str) -> list[str]:
    """Split *text* into one piece per word (with its leading whitespace); joined they give *text*."""
    pieces = _PIECE.findall(text)
    if not pieces:
        return [text]
    rest = text[sum(map(len, pieces)) :]
    pieces[-1] += rest
    return pieces


def _resolve_ref(ref: Any, root: Any) -> Any:
    if not isinstance(ref, str) or not ref.startswith("#"):
        return {}
    node = root
    for part in ref[1:].split("/")[1:] if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return {}
    return node


def _merge_all_of(schema: Mapping[str, Any], root: Any) -> dict[str, Any]:
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    subs = schema.get("allOf")
    for sub in subs if isinstance(subs, list) else ():
        if isinstance(sub, Mapping) and "$ref" in sub:
            sub = _resolve_ref(sub["$ref"], root)
        if not isinstance(sub, Mapping):
            continue
        for key, value in sub.items():
            if key == "properties" and isinstance(value, Mapping):
                merged["properties"] = {**(merged.get("properties") or {}), **value}
            elif key == "required" and isinstance(value, list):
                merged["required"] = list(dict.fromkeys([*(merged.get("required") or []), *value]))
            else:
                merged.setdefault(key, value)
    return merged


def _number(schema: Mapping[str, Any], integer: bool) -> int | float:
    """Return a number that the bounds and ``multipleOf`` of *schema* accept (1 when nothing constrains it)."""

    def get(key: str) -> float | None:
        value = schema.get(key)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    low, high, ex_low, ex_high = get("minimum"), get("maximum"), get("exclusiveMinimum"), get("exclusiveMaximum")
    if schema.get("exclusiveMinimum") is True:  # draft 4 spelling
        ex_low, low = low, None
    if schema.get("exclusiveMaximum") is True:
        ex_high, high = high, None
    lower = max((v for v in (low, ex_low) if v is not None), default=None)
    upper = min((v for v in (high, ex_high) if v is not None), default=None)
    lower_open = ex_low is not None and lower == ex_low and (low is None or ex_low >= low)
    upper_open = ex_high is not None and upper == ex_high and (high is None or ex_high <= high)
    step = get("multipleOf")
    unit = step if step is not None and step > 0 else (1 if integer else None)
    if unit is None:
        if lower is not None and upper is not None:
            return (lower + upper) / 2 if lower_open or upper_open else lower
        if lower is not None:
            return lower + 1 if lower_open else lower
        if upper is not None:
            return upper - 1 if upper_open or upper < 1 else 1
        return 1
    if lower is not None:
        k = math.ceil(lower / unit)
        if lower_open and k * unit <= lower:
            k += 1
    else:
        k = 1 if step is None else 0
        if upper is not None and (k * unit > upper or (upper_open and k * unit >= upper)):
            k = math.floor(upper / unit)
            if upper_open and k * unit >= upper:
                k -= 1
    value = k * unit
    return int(value) if integer else value


_FORMATS: Final = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00Z",
    "duration": "P1D",
    "email": "user@example.com",
    "idn-email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "iri": "https://example.com/",
    "uri-reference": "https://example.com/",
    "iri-reference": "https://example.com/",
    "uri-template": "https://example.com/{id}",
    "hostname": "example.com",
    "idn-hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "json-pointer": "/a",
    "relative-json-pointer": "0",
    "regex": "a",
}
_MAX_VALUES: Final = 2000
"""How many JSON values one generated instance may hold (a recursive schema with a big ``minItems`` grows fast)."""

_sre: Final[Any] = importlib.import_module("re._parser")  # the regular-expression parser of :mod:`re`

_CLASS_CHARS: Final = "aA0x _-.@"


def _class_char(items: Sequence[Any]) -> str | None:
    """Return a character of the regex character class *items* (from :mod:`re`'s parser), or ``None``."""
    negate = bool(items) and items[0][0] is _sre.NEGATE
    chosen: list[str] = []
    for op, av in items[1:] if negate else items:
        if op is _sre.LITERAL:
            chosen.append(chr(av))
        elif op is _sre.RANGE:
            chosen.append(chr(av[0]))
        elif op is _sre.CATEGORY:
            chosen.append({_sre.CATEGORY_DIGIT: "0", _sre.CATEGORY_SPACE: " ", _sre.CATEGORY_WORD: "a"}.get(av, "a"))
    if not negate:
        return chosen[0] if chosen else None
    excluded = re.compile("[" + "".join(re.escape(c) for c in chosen) + "]") if chosen else None
    return next((c for c in _CLASS_CHARS if excluded is None or not excluded.match(c)), None)


_MAX_PATTERN_TEXT: Final = 2000
"""The longest string generated from a ``pattern`` (nested repeats would otherwise multiply)."""


def _from_regex(parsed: Any, extra: int, groups: dict[int, str], room: list[int] | None = None) -> str:
    """Return a string the parsed regex *parsed* matches, repeating each repeat *extra* times more than its minimum.

    At most :data:`_MAX_PATTERN_TEXT` characters are made (*room* counts what is left); past that the
    string is cut short and may not match.
    """
    room = [_MAX_PATTERN_TEXT] if room is None else room
    out: list[str] = []

    def put(text: str) -> None:
        out.append(text[: max(0, room[0])])
        room[0] -= len(text)

    for op, av in parsed:
        if room[0] <= 0:
            break
        if op is _sre.LITERAL:
            put(chr(av))
        elif op is _sre.NOT_LITERAL:
            put("b" if chr(av) == "a" else "a")
        elif op is _sre.ANY:
            put("a")
        elif op is _sre.IN:
            put(_class_char(av) or "a")
        elif op is _sre.CATEGORY:
            put(_class_char([(op, av)]) or "a")
        elif op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, getattr(_sre, "POSSESSIVE_REPEAT", None)):
            low, high, sub = av
            count = min(low + extra, high) if high is not _sre.MAXREPEAT else low + extra
            for _ in range(min(count, _MAX_GENERATED)):
                if room[0] <= 0:
                    break
                out.append(_from_regex(sub, extra, groups, room))
        elif op is _sre.SUBPATTERN:
            group, _, _, sub = av
            text = _from_regex(sub, extra, groups, room)
            if group is not None:
                groups[group] = text
            out.append(text)
        elif op is _sre.BRANCH:
            out.append(_from_regex(av[1][0], extra, groups, room))
        elif op is _sre.GROUPREF:
            put(groups.get(av, ""))
        elif op is getattr(_sre, "ATOMIC_GROUP", None):
            out.append(_from_regex(av, extra, groups, room))
        # AT (anchors), ASSERT and ASSERT_NOT add no characters
    return "".join(out)


class _Instance:
    """Generates a deterministic JSON value a JSON schema accepts, within a budget of values and depth.

    What it could not satisfy (an unsupported pattern, ``minItems`` beyond the budget, contradictory
    bounds) is listed in :attr:`unmet`.
    """

    def __init__(self, root: Any) -> None:
        self.root = root
        self.left = _MAX_VALUES
        self.unmet: list[str] = []

    def miss(self, where: str, what: str) -> None:
        self.unmet.append(f"{where or '/'}: {what}")

    def value(self, schema: Any, where: str = "", name: str = "value", depth: int = 0) -> Any:
        if schema is True or not isinstance(schema, Mapping):
            return None
        if self.left <= 0:
            self.miss(where, f"not generated (the budget of {_MAX_VALUES} values is spent)")
            return None
        self.left -= 1  # every visit counts, so nothing beyond the budget is even tried
        if "$ref" in schema:
            if depth > _MAX_SCHEMA_DEPTH * 4:
                self.miss(where, f"not generated (references nest deeper than {_MAX_SCHEMA_DEPTH * 4})")
                return None
            return self.value(_resolve_ref(schema["$ref"], self.root), where, name, depth + 1)
        if "allOf" in schema:
            return self.value(_merge_all_of(schema, self.root), where, name, depth)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][0]
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
                pick = next(
                    (b for b in branches if not (isinstance(b, Mapping) and b.get("type") == "null")), branches[0]
                )
                ref = isinstance(pick, Mapping) and "$ref" in pick
                branch = _resolve_ref(pick["$ref"], self.root) if ref else pick
                merged = {**rest, **branch} if isinstance(branch, Mapping) else branch
                return self.value(merged, where, name, depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((t for t in kind if t != "null"), "null")
        if kind is None:
            if "properties" in schema or "required" in schema:
                kind = "object"
            elif "items" in schema or "prefixItems" in schema:
                kind = "array"
            else:
                return None
        if kind == "object":
            return self.object(schema, where, depth)
        if kind == "array":
            return self.array(schema, where, name, depth)
        if kind == "string":
            return self.string(schema, where, name)
        if kind in ("integer", "number"):
            number = _number(schema, kind == "integer")
            if not _within(schema, number):
                self.miss(where, f"{number} breaks the numeric bounds")
            return number
        if kind == "boolean":
            return True
        return None

    def object(self, schema: Mapping[str, Any], where: str, depth: int) -> dict[str, Any]:
        found = schema.get("properties")
        props: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        listed = schema.get("required")
        required = [r for r in listed if isinstance(r, str)] if isinstance(listed, list) else []
        names = list(props) if depth < _MAX_SCHEMA_DEPTH else [n for n in props if n in required]
        out = {key: self.value(props[key], f"{where}/{key}", key, depth + 1) for key in names}
        extra = schema.get("additionalProperties")
        for key in required:
            if key not in out:
                out[key] = self.value(extra if isinstance(extra, Mapping) else {}, f"{where}/{key}", key, depth + 1)
        return out

    def array(self, schema: Mapping[str, Any], where: str, name: str, depth: int) -> list[Any]:
        found = schema.get("prefixItems")
        prefix: list[Any] = found if isinstance(found, list) else []
        items = schema.get("items")
        minimum = schema.get("minItems", 0) if isinstance(schema.get("minItems"), int) else 0
        maximum = schema.get("maxItems") if isinstance(schema.get("maxItems"), int) else None
        count = min(max(minimum, len(prefix), 1 if depth < _MAX_SCHEMA_DEPTH else 0), _MAX_GENERATED)
        if items is False:
            count = len(prefix)
        if maximum is not None:
            count = min(count, maximum)
        values: list[Any] = []
        for index in range(count):
            if self.left <= 0:
                self.miss(
                    where, f"{len(values)} items instead of {count} (the budget of {_MAX_VALUES} values is spent)"
                )
                break
            sub = prefix[index] if index < len(prefix) else (items if isinstance(items, Mapping) else {})
            values.append(self.value(sub, f"{where}/{index}", name, depth + 1))
        if len(values) < minimum and self.left > 0:
            self.miss(where, f"{len(values)} items instead of minItems {minimum}")
        if schema.get("uniqueItems") and len(values) > 1 and all(isinstance(v, str) for v in values):
            values = [f"{v}{i}" if i else v for i, v in enumerate(values)]
        return values

    def string(self, schema: Mapping[str, Any], where: str, name: str) -> str:
        found_low, found_high = schema.get("minLength"), schema.get("maxLength")
        low: int = found_low if isinstance(found_low, int) else 0
        high: int | None = found_high if isinstance(found_high, int) else None
        pattern = schema.get("pattern")
        compiled = None
        if isinstance(pattern, str):
            try:
                compiled = re.compile(pattern)
            except re.error:
                self.miss(where, f"pattern {pattern!r} is not a regular expression Python reads")

        def fits(text: str) -> bool:
            sized = low <= len(text) and (high is None or len(text) <= high)
            return sized and (compiled is None or compiled.search(text) is not None)

        base = _FORMATS.get(str(schema.get("format")), name)
        candidates = [base, base + "x" * max(0, min(low, _MAX_GENERATED * 100) - len(base))]
        if high is not None:
            candidates.append(candidates[-1][:high])
        if compiled is not None:
            with contextlib.suppress(re.error, TypeError, ValueError, RecursionError, AttributeError):
                parsed = _sre.parse(pattern)
                longest = max(low, high or 0, 64)
                for extra in range(_MAX_GENERATED):  # longer and longer, until the length fits (or is past it)
                    candidates.append(_from_regex(parsed, extra, {}))
                    if fits(candidates[-1]) or len(candidates[-1]) > longest:
                        break
        text = next((c for c in candidates if fits(c)), None)
        if text is None:
            text = candidates[1] if high is None else candidates[2]
            broken = [f"pattern {pattern!r}"] if compiled is not None and not compiled.search(text) else []
            if not low <= len(text) or (high is not None and len(text) > high):
                broken.append(f"length {low}..{high if high is not None else ''}")
            self.miss(where, f"{text!r} breaks {', '.join(broken) or 'a constraint'}")
        elif schema.get("format") in _FORMATS and text != _FORMATS[schema["format"]]:
            self.miss(where, f"{text!r} is not a {schema['format']} (its length or pattern rules it out)")
        return text


def _within(schema: Mapping[str, Any], number: float) -> bool:
    """Whether *number* meets the bounds of *schema* (booleans and non-numbers constrain nothing)."""

    def bound(key: str) -> float | None:
        value = schema.get(key)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    low, high = bound("minimum"), bound("maximum")
    ex_low, ex_high = bound("exclusiveMinimum"), bound("exclusiveMaximum")
    if schema.get("exclusiveMinimum") is True:  # draft 4 spelling
        ex_low, low = low, None
    if schema.get("exclusiveMaximum") is True:
        ex_high, high = high, None
    return (
        (low is None or number >= low)
        and (high is None or number <= high)
        and (ex_low is None or number > ex_low)
        and (ex_high is None or number < ex_high)
    )


_UNMET_HEADER: Final = "x-localserver-unmet-constraints"
"""The response header that lists what a default JSON-schema answer could not meet."""

_UNMET: Final = threading.local()


@contextlib.contextmanager
def unmet_notes() -> Iterator[list[str]]:
    """Collect, in this thread, what the default answers built inside the block could not meet."""
    notes: list[str] = []
    _UNMET.notes = notes
    try:
        yield notes
    finally:
        _UNMET.notes = None


def unmet_header(notes: Sequence[str]) -> list[tuple[str, str | None]]:
    if not notes:
        return []
    text = " | ".join(notes).encode("ascii", "backslashreplace").decode()
    return [(_UNMET_HEADER, text if len(text) <= 1000 else text[:997] + "...")]


def _schema_instance(schema: Any, what: str = "json_schema") -> Any:
    """Return a JSON value *schema* accepts; an unsatisfiable or exotic schema gives a best effort (never raises).

    The value holds at most a budget of values; what could not be met is logged as a warning (and, in
    a reply, named in the ``x-localserver-unmet-constraints`` header).
    """
    generator = _Instance(schema)
    try:
        value = generator.value(schema)
    except (ArithmeticError, RecursionError, TypeError, ValueError):
        generator.miss("", "the schema could not be followed")
        value = {}
    if generator.unmet:
        shown = "; ".join(generator.unmet[:3]) + (
            f"; and {len(generator.unmet) - 3} more" if len(generator.unmet) > 3 else ""
        )
        logger.warning("LocalServer: the default answer to %s does not meet its schema: %s", what, shown)
        notes = getattr(_UNMET, "notes", None)
        if notes is not None:
            notes.append(f"{what}: {shown}")
    return value


def _max_tokens(request: ChatCompletionRequest) -> int | None:
    """The request's token limit: ``max_tokens``, else OpenAI's ``max_completion_tokens`` (the smaller if both)."""
    limits = [request.max_tokens, getattr(request, "max_completion_tokens", None)]
    limits.append(request.extra.get("max_completion_tokens"))
    found = [v for v in limits if isinstance(v, int) and not isinstance(v, bool) and v >= 0]
    return min(found) if found else None


def default_response(
    request: ChatCompletionRequest,
    *,
    wire: MistralWire,
    model: str | None,
    created: int,
    answer: Answer | None = None,
) -> ChatCompletionResponse:
    """Return the answer to *request* when nothing is scripted (not streamed), as ``LocalServer.default_response``.

    A scripted *answer* (``Reply.text``, ``Reply.tool_calls``) replaces the derived message and finish
    reason (and the usage and model when it names them); it is shaped just like the default one.
    """
    finish: FinishReason | str
    if answer is None:
        message, finish = _answer(request, wire)
    else:
        message, finish = _scripted(request, answer, wire), answer.finish_reason
        model = answer.model or model
    if message.tool_calls:  # numbered, as the API numbers them (the stream's deltas carry the same index)
        calls = tuple(attrs.evolve(call, index=i) for i, call in enumerate(message.tool_calls))
        message = attrs.evolve(message, tool_calls=calls)
    n = request.n if isinstance(request.n, int) else 1
    prompt = sum(_words(content_text(m.content)) for m in request.messages)
    if message.tool_calls:
        completion = sum(_words(str(call.function.arguments)) for call in message.tool_calls)
    else:
        completion = _words(message.text())
    usage = UsageInfo(prompt_tokens=prompt, completion_tokens=completion * n, total_tokens=prompt + completion * n)
    if answer is not None and answer.usage is not None:
        usage = answer.usage
    return ChatCompletionResponse(
        id=_response_id(request, wire),
        model=model or (request.model if isinstance(request.model, str) else "local"),
        created=datetime.fromtimestamp(created, UTC),
        usage=usage,
        choices=tuple(ChatCompletionChoice(index=i, message=message, finish_reason=finish) for i in range(n)),
    )


def default_chunks(
    request: ChatCompletionRequest,
    *,
    wire: MistralWire,
    model: str | None,
    created: int,
    answer: Answer | None = None,
) -> list[CompletionChunk]:
    """Return the chunks the server streams for *request* when nothing is scripted.

    As the APIs stream: first a chunk per choice with the role and empty content, then one chunk
    per word (a tool call comes whole in one chunk); the last chunk of each choice has its finish
    reason, and the very last one the usage. Joined, they give :meth:`default_response`. In the
    ``"openai"`` dialect each tool call is split over several chunks, the finish reason comes in a
    chunk of its own with an empty delta, and the usage comes in a last chunk of its own only
    when the request's ``stream_options`` ask for it. A scripted *answer* streams the same way (its
    text word by word, then its tool calls whole).
    """
    response = default_response(request, wire=wire, model=model, created=created, answer=answer)
    chunks: list[CompletionChunk] = []
    common: dict[str, Any] = {"id": response.id, "model": response.model, "created": response.created}
    for choice in response.choices:  # as the APIs do: the role first, with empty content
        opening = CompletionResponseStreamChoice(index=choice.index, delta=AssistantMessage(content=""))
        chunks.append(CompletionChunk(choices=(opening,), **common))
    for choice in response.choices:
        message = choice.message
        text = message.text()
        deltas = [AssistantMessage(content=piece) for piece in _pieces(text)] if text or not message.tool_calls else []
        if message.tool_calls:  # whole, after the text if any
            calls = tuple(attrs.evolve(call, index=i) for i, call in enumerate(message.tool_calls))
            deltas.append(AssistantMessage(content="", tool_calls=calls))
        for j, delta in enumerate(deltas):
            last = j == len(deltas) - 1
            stream_choice = CompletionResponseStreamChoice(
                index=choice.index, delta=delta, finish_reason=choice.finish_reason if last else None
            )
            chunks.append(CompletionChunk(choices=(stream_choice,), **common))
    chunks[-1] = attrs.evolve(chunks[-1], usage=response.usage)
    return wire.stream_chunks(chunks, request)


def _response_id(request: ChatCompletionRequest, wire: MistralWire) -> str:
    body = {k: v for k, v in request.to_dict().items() if k not in ("stream", "stream_options")}
    # the standard library, not _json: sorted keys, so equal requests hash equal whatever their key order
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
    return wire.response_id(digest)


def _answer(request: ChatCompletionRequest, wire: MistralWire) -> tuple[AssistantMessage, FinishReason]:
    messages = request.messages
    last = messages[-1] if messages else None
    user_text = next((content_text(m.content) for m in reversed(messages) if isinstance(m, UserMessage)), "")
    choice = request.tool_choice
    if isinstance(last, ToolMessage):
        text = f"The tool {_tool_name(request, last)} returned: {content_text(last.content)}"
    elif isinstance(choice, ToolChoice) and choice.forces_call and request.tools:
        return _tool_call(request, choice, wire), FinishReason.TOOL_CALLS
    else:
        fmt = request.response_format
        if fmt is not UNSET and fmt.type is ResponseFormatType.JSON_SCHEMA and fmt.json_schema is not UNSET:
            text = json_text(_schema_instance(fmt.json_schema.schema, f"json_schema {fmt.json_schema.name!r}"))
        elif fmt is not UNSET and fmt.type is ResponseFormatType.JSON_OBJECT:
            text = json_text({"echo": user_text})
        else:
            text = f"echo: {user_text}"
        if isinstance(last, AssistantMessage) and last.prefix is True:
            text = last.text() + text
    finish = FinishReason.STOP
    stops = (request.stop,) if isinstance(request.stop, str) else request.stop or ()
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    if cut >= 0:
        text = text[:cut]
    limit = _max_tokens(request)
    if limit is not None:
        text, truncated = _truncate(text, limit)
        if truncated:
            finish = FinishReason.LENGTH
    return AssistantMessage(content=text), finish


def _scripted(request: ChatCompletionRequest, answer: Answer, wire: MistralWire) -> AssistantMessage:
    """The assistant message of a scripted *answer*, its tool calls without an id given one as *wire* makes them."""
    if not answer.tool_calls:
        return AssistantMessage(content=answer.content)
    earlier = sum(len(m.tool_calls or ()) for m in request.messages if isinstance(m, AssistantMessage))
    response_id = _response_id(request, wire)
    calls = tuple(
        call if isinstance(call.id, str) else attrs.evolve(call, id=wire.tool_call_id(f"{response_id}:{earlier + i}"))
        for i, call in enumerate(answer.tool_calls)
    )
    return AssistantMessage(content=answer.content, tool_calls=calls)


def _tool_name(request: ChatCompletionRequest, message: ToolMessage) -> str:
    if isinstance(message.name, str):
        return message.name
    for earlier in request.messages:
        if isinstance(earlier, AssistantMessage):
            for call in earlier.tool_calls or ():
                if call.id == message.tool_call_id:
                    return call.function.name
    return "tool"


def _tool_call(request: ChatCompletionRequest, choice: ToolChoice, wire: MistralWire) -> AssistantMessage:
    tools = request.tools or ()
    name = choice.function if isinstance(choice.function, str) else tools[0].name
    tool = next((t for t in tools if t.name == name), tools[0])
    parameters = tool.function.parameters
    arguments = _schema_instance(parameters, f"tool {tool.name!r}") if parameters else {}
    if not isinstance(arguments, dict):
        arguments = {}
    earlier = sum(len(m.tool_calls or ()) for m in request.messages if isinstance(m, AssistantMessage))
    call_id = wire.tool_call_id(f"{_response_id(request, wire)}:{earlier}")
    call = ToolCall(id=call_id, function=FunctionCall(name=tool.name, arguments=json_text(arguments)))
    return AssistantMessage(content="", tool_calls=(call,))
