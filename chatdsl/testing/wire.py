"""The two dialects' spelling of bodies: what :class:`~chatdsl.testing.LocalServer` reads and writes.

:class:`MistralWire` spells requests, answers, chunks and errors as Mistral's API does;
:class:`OpenAIWire` as OpenAI's API does (and vLLM, llama.cpp's server, Ollama, LM Studio);
:data:`WIRES` maps a :class:`~chatdsl.Dialect` to its wire. :func:`json_text` is the JSON spelling of
every body the server sends, :func:`encode_event` the framing of one stream event.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, Final

import attrs

from chatdsl._errors import ValidationError
from chatdsl._types import UnsetType
from chatdsl.model.messages import AssistantMessage, FunctionCall, ToolCall, ToolMessage
from chatdsl.model.request import ChatCompletionRequest, completeness_errors
from chatdsl.model.response import (
    ChatCompletionResponse,
    CompletionChunk,
    CompletionResponseStreamChoice,
    UsageInfo,
)
from chatdsl.testing.openai_request import request_from_openai
from chatdsl.testing.replies import ErrorEvent, StreamItem
from chatdsl.wire.dialects import Dialect

__all__ = [
    "CHAT_COMPLETIONS_PATH",
    "EVENT_STREAM",
    "MODELS_PATH",
    "OPENAI_RATE_LIMIT_HEADERS",
    "WIRES",
    "MistralWire",
    "OpenAIWire",
    "encode_event",
    "json_text",
]

CHAT_COMPLETIONS_PATH: Final = "/v1/chat/completions"
MODELS_PATH: Final = "/v1/models"


def json_text(value: Any) -> str:
    """Return *value* as the server spells JSON: ``json.dumps`` with non-ASCII kept (``", "`` and ``": "`` apart)."""
    return json.dumps(value, ensure_ascii=False)


_DEFAULT_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    408: "timeout",
    409: "conflict",
    422: "invalid_request_error",
    429: "rate_limited",
    503: "service_unavailable",
}


def _error_type(status: int) -> str:
    if status in _DEFAULT_ERROR_TYPES:
        return _DEFAULT_ERROR_TYPES[status]
    return "internal_server_error" if status >= 500 else "invalid_request_error"


_OPENAI_ERROR_TYPES: Final = {
    403: ("request_forbidden", None),
    401: ("invalid_request_error", "invalid_api_key"),
    429: ("requests", "rate_limit_exceeded"),
}


def _openai_error_type(status: int) -> tuple[str, str | None]:
    """Return OpenAI's ``(type, code)`` for an error status (5xx: ``server_error``)."""
    if status in _OPENAI_ERROR_TYPES:
        return _OPENAI_ERROR_TYPES[status]
    return ("server_error", None) if status >= 500 else ("invalid_request_error", None)


_PATH_TOKEN: Final = re.compile(r"\[(\d+)\]|\[(['\"])(.*?)\2\]|([^.\[\]]+)")


def _loc(path: str) -> list[str | int]:
    """Return an error path as the API's ``loc``: ``messages[0].content`` → ``["body", "messages", 0, "content"]``."""
    loc: list[str | int] = ["body"]
    for index, _, key, name in _PATH_TOKEN.findall(path):
        loc.append(int(index) if index else (key or name))
    return loc


def _detail_type(message: str) -> str:
    if message == "is required":
        return "missing"
    if message.startswith("is not a known field"):
        return "extra_forbidden"
    return "value_error"


_MISSING: Final[Any] = object()


def _input_at(value: Any, loc: Sequence[str | int]) -> Any:
    """Return the part of the request body at *loc* (after ``"body"``), or ``None`` where there is none."""
    node = value
    for key in loc[1:]:
        found = (isinstance(node, Mapping) and isinstance(key, str) and key in node) or (
            isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node)
        )
        if not found:
            return None
        node = node[key]
    return node


_ALPHANUMERIC: Final = string.ascii_letters + string.digits
_MISTRAL_TOOL_CALL_ID: Final = re.compile(r"[a-zA-Z0-9]{9}")


def _alphanumeric(seed: str, length: int) -> str:
    """Return *length* characters of ``[a-zA-Z0-9]`` derived from *seed* (deterministic)."""
    number = int.from_bytes(hashlib.sha256(seed.encode()).digest(), "big")
    out = []
    for _ in range(length):
        number, rest = divmod(number, len(_ALPHANUMERIC))
        out.append(_ALPHANUMERIC[rest])
    return "".join(out)


def _tool_call_ids(request: ChatCompletionRequest) -> Iterator[str]:
    """Yield every tool-call id *request* sends: assistant tool calls' ``id`` and tool messages' ``tool_call_id``."""
    for message in request.messages:
        if isinstance(message, AssistantMessage):
            for call in message.tool_calls or ():
                if isinstance(call.id, str):
                    yield call.id
        elif isinstance(message, ToolMessage) and isinstance(message.tool_call_id, str):
            yield message.tool_call_id


class MistralWire:
    """How Mistral's API spells bodies and errors (the seam for other dialects)."""

    path: Final = CHAT_COMPLETIONS_PATH
    validation_status: ClassVar[int] = 422
    request_id_headers: ClassVar[tuple[str, ...]] = ("mistral-correlation-id", "x-request-id")

    @staticmethod
    def parse_request(value: Any) -> ChatCompletionRequest:
        return ChatCompletionRequest.from_dict(value)

    @staticmethod
    def check(request: ChatCompletionRequest) -> ChatCompletionRequest:
        return request.validate()

    @staticmethod
    def refusal(request: ChatCompletionRequest) -> tuple[int, dict[str, Any]] | None:
        """Return ``(status, body)`` when the API refuses a request that parses and validates, else ``None``.

        Mistral's API answers 400 to a tool-call id that is not 9 characters of ``[a-zA-Z0-9]``.
        """
        for call_id in _tool_call_ids(request):
            if not _MISTRAL_TOOL_CALL_ID.fullmatch(call_id):
                message = f"Tool call id was {call_id} but must be a-z, A-Z, 0-9, with a length of 9."
                return 400, {
                    "object": "error",
                    "message": message,
                    "type": "invalid_function_call",
                    "param": None,
                    "code": "3280",
                }
        return None

    @staticmethod
    def tool_call_id(seed: str) -> str:
        """Return a tool-call id as the API makes them: 9 characters of ``[a-zA-Z0-9]``."""
        return _alphanumeric(seed, 9)

    @staticmethod
    def response_id(digest: str) -> str:
        """Return a completion id as the API makes them (32 hex digits)."""
        return digest[:32]

    @staticmethod
    def error_names(status: int, type_: str | None, code: str | None) -> tuple[str, str | None]:
        """Return the error ``type`` and ``code`` for an error reply, defaulting to the dialect's names for *status*."""
        return (type_ or _error_type(status), code)

    @staticmethod
    def models_body(models: Sequence[str], created: int) -> dict[str, Any]:
        """Return the body of ``GET /v1/models``: Mistral's model list (base model cards)."""
        capabilities = {"completion_chat": True, "function_calling": True, "completion_fim": False, "vision": True}
        cards: list[dict[str, Any]] = [
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "mistralai",
                "capabilities": capabilities,
                "name": name,
                "description": "A model served by chatdsl's LocalServer",
                "max_context_length": 131072,
                "aliases": [],
                "deprecation": None,
                "default_model_temperature": 0.3,
                "type": "base",
            }
            for name in models
        ]
        return {"object": "list", "data": cards}

    @staticmethod
    def not_found_body(method: str, path: str) -> dict[str, Any]:
        return {"detail": "Not Found"}

    @staticmethod
    def method_not_allowed_body(method: str, path: str) -> dict[str, Any]:
        return {"detail": "Method Not Allowed"}

    @staticmethod
    def stream_chunks(chunks: list[CompletionChunk], request: ChatCompletionRequest) -> list[CompletionChunk]:
        return chunks

    @staticmethod
    def error_body(message: Any, type_: str, code: str | None) -> dict[str, Any]:
        return {"object": "error", "message": message, "type": type_, "param": None, "code": code}

    @staticmethod
    def unauthorized_body(request_id: str) -> dict[str, Any]:
        return {"message": "Unauthorized", "request_id": request_id}

    @staticmethod
    def validation_body(error: ValidationError, value: Any = None) -> dict[str, Any]:
        """Mistral's 422: its error object with the validation details as the message."""
        details = []
        for path, message in error.errors:
            loc = _loc(path)
            details.append({"type": _detail_type(message), "loc": loc, "msg": message, "input": _input_at(value, loc)})
        return MistralWire.error_body({"detail": details}, "invalid_request_error", None)

    @staticmethod
    def json_invalid_body(exc: json.JSONDecodeError) -> dict[str, Any]:
        detail = {"type": "json_invalid", "loc": ["body", exc.pos], "msg": f"JSON decode error: {exc.msg}", "input": {}}
        return MistralWire.error_body({"detail": [detail]}, "invalid_request_error", None)

    @staticmethod
    def response_body(response: ChatCompletionResponse) -> dict[str, Any]:
        return response.to_dict()

    @staticmethod
    def chunk_body(chunk: CompletionChunk, *, first: bool) -> dict[str, Any]:
        data = chunk.to_dict()
        if not first:  # the API names the role in the first delta only
            for choice in data.get("choices") or ():
                if isinstance(choice.get("delta"), dict):
                    choice["delta"].pop("role", None)
        return data


_FINGERPRINT: Final = "fp_chatdsl_local"
EVENT_STREAM: Final = "text/event-stream; charset=utf-8"  # what both APIs send

_OPENAI_SERVER_EXTENSIONS: Final = frozenset(
    {"top_k", "min_tokens", "repetition_penalty", "prompt_logprobs", "top_prompt_logprobs", "guardrails"}
)
"""Fields OpenAI's API lacks that OpenAI-compatible servers (vLLM and others) and Mistral's API accept."""

OPENAI_RATE_LIMIT_HEADERS: Final[Mapping[str, str]] = {
    "x-ratelimit-limit-requests": "120",
    "x-ratelimit-remaining-requests": "119",
    "x-ratelimit-limit-tokens": "500000",
    "x-ratelimit-remaining-tokens": "499000",
}


def _openai_error(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _openai_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    out = {key: usage.get(key, 0) for key in ("prompt_tokens", "completion_tokens", "total_tokens")}
    if usage.get("prompt_tokens_details") is not None:  # only when set: the answer reads back as it was
        out["prompt_tokens_details"] = {"cached_tokens": usage["prompt_tokens_details"].get("cached_tokens", 0)}
    out["completion_tokens_details"] = {"reasoning_tokens": 0}
    return out


def _openai_text(message: dict[str, Any]) -> list[dict[str, Any]]:
    """Respell the text of an assistant message or delta as OpenAI sends it, in place; return its tool calls."""
    message.pop("prefix", None)
    content = message.get("content")
    if isinstance(content, list):  # OpenAI answers with text only
        message["content"] = "".join(part.get("text", "") for part in content if part.get("type") == "text")
    calls: list[dict[str, Any]] = message.get("tool_calls") or []
    if calls and message.get("content") == "":
        message["content"] = None  # OpenAI: no content beside tool calls
    return calls


def _openai_function(call: Mapping[str, Any]) -> dict[str, Any]:
    """A call's function with its arguments as JSON text (OpenAI sends no JSON object there)."""
    function = call.get("function") or {}
    arguments = function.get("arguments", "")
    return {**function, "arguments": arguments if isinstance(arguments, str) else json_text(arguments)}


def _openai_message(message: dict[str, Any]) -> None:
    """Respell an assistant message of chatdsl's wire form as OpenAI sends it, in place."""
    for call in _openai_text(message):
        call["function"] = _openai_function(call)
        call.pop("index", None)
    message.setdefault("refusal", None)


def _openai_delta(delta: dict[str, Any]) -> None:
    """Respell a streamed delta of chatdsl's wire form as OpenAI sends it, in place.

    A delta without text has no content key (OpenAI's finish chunk: ``{}``); a continuation of a
    tool call (no id, no name) carries its index and arguments only.
    """
    calls = _openai_text(delta)
    for position, call in enumerate(calls):
        function = _openai_function(call)
        if not function.get("name") and "id" not in call:
            calls[position] = {"index": call.get("index", position), "function": {"arguments": function["arguments"]}}
        else:
            call["function"] = function
    if not calls and delta.get("content", "") is None:
        del delta["content"]


def _split(text: str, parts: int) -> list[str]:
    size = max(1, -(-len(text) // parts))
    return [text[start : start + size] for start in range(0, len(text), size)]


class OpenAIWire(MistralWire):
    """How OpenAI's API spells bodies and errors (as do vLLM, llama.cpp's server, Ollama, LM Studio).

    Requests are read with :func:`~chatdsl.wire.dialects.request_from_openai` (a Mistral-only field is a
    400); answers carry ``system_fingerprint`` and ``logprobs: null``; a default stream splits each
    tool call over several deltas (id and name first, then the arguments in pieces) and, when the
    request asks ``stream_options: {"include_usage": true}``, ends with a usage-only chunk; errors are
    ``{"error": {"message", "type", "param", "code"}}``; the request id is ``x-request-id``.
    """

    validation_status: ClassVar[int] = 400
    request_id_headers: ClassVar[tuple[str, ...]] = ("x-request-id",)

    @staticmethod
    def check(request: ChatCompletionRequest) -> ChatCompletionRequest:
        """Mistral's completeness rules, but any message may come last (OpenAI answers after any)."""
        errors = list(completeness_errors(request, any_last=True))
        if errors:
            raise ValidationError("", "", errors=errors)
        return request

    @staticmethod
    def parse_request(value: Any) -> ChatCompletionRequest:
        """OpenAI's fields, plus the sampling extensions OpenAI-compatible servers (vLLM and others) accept."""
        if not isinstance(value, Mapping) or not _OPENAI_SERVER_EXTENSIONS.intersection(value):
            return request_from_openai(value)
        extensions = {k: v for k, v in value.items() if k in _OPENAI_SERVER_EXTENSIONS}
        request = request_from_openai({k: v for k, v in value.items() if k not in _OPENAI_SERVER_EXTENSIONS})
        return ChatCompletionRequest.from_dict({**request.to_dict(), **extensions}, allow_extra=True)

    @staticmethod
    def refusal(request: ChatCompletionRequest) -> tuple[int, dict[str, Any]] | None:
        return None

    @staticmethod
    def tool_call_id(seed: str) -> str:
        """Return a tool-call id as OpenAI makes them: ``call_`` and 24 characters of ``[a-zA-Z0-9]``."""
        return "call_" + _alphanumeric(seed, 24)

    @staticmethod
    def response_id(digest: str) -> str:
        """Return a completion id as OpenAI makes them: ``chatcmpl-…``."""
        return "chatcmpl-" + _alphanumeric(digest, 29)

    @staticmethod
    def error_names(status: int, type_: str | None, code: str | None) -> tuple[str, str | None]:
        default_type, default_code = _openai_error_type(status)
        return (type_ or default_type, code if code is not None or type_ is not None else default_code)

    @staticmethod
    def models_body(models: Sequence[str], created: int) -> dict[str, Any]:
        """Return the body of ``GET /v1/models``: OpenAI's model list."""
        data = [{"id": name, "object": "model", "created": created, "owned_by": "chatdsl"} for name in models]
        return {"object": "list", "data": data}

    @staticmethod
    def not_found_body(method: str, path: str) -> dict[str, Any]:
        return _openai_error(f"Invalid URL ({method} {path})", "invalid_request_error")

    @staticmethod
    def method_not_allowed_body(method: str, path: str) -> dict[str, Any]:
        return _openai_error(f"Method Not Allowed ({method} {path})", "invalid_request_error")

    @staticmethod
    def error_body(message: Any, type_: str, code: str | None) -> dict[str, Any]:
        text = message if isinstance(message, str) else json.dumps(message)  # ASCII, as it was always sent
        return _openai_error(text, type_, None, code)

    @staticmethod
    def unauthorized_body(request_id: str) -> dict[str, Any]:
        return _openai_error("Incorrect API key provided.", "invalid_request_error", None, "invalid_api_key")

    @staticmethod
    def validation_body(error: ValidationError, value: Any = None) -> dict[str, Any]:
        return _openai_error(str(error), "invalid_request_error", error.path or None)

    @staticmethod
    def json_invalid_body(exc: json.JSONDecodeError) -> dict[str, Any]:
        return _openai_error(f"We could not parse the JSON body of your request ({exc.msg}).", "invalid_request_error")

    @staticmethod
    def response_body(response: ChatCompletionResponse) -> dict[str, Any]:
        data = response.to_dict()
        for choice in data.get("choices") or ():
            _openai_message(choice["message"])
            choice["logprobs"] = None
            choice.pop("prompt_logprobs", None)  # not in OpenAI's answers
        data["usage"] = _openai_usage(data.get("usage") or {})
        data["system_fingerprint"] = _FINGERPRINT
        return data

    @staticmethod
    def chunk_body(chunk: CompletionChunk, *, first: bool) -> dict[str, Any]:
        data = MistralWire.chunk_body(chunk, first=first)
        for choice in data.get("choices") or ():
            if isinstance(choice.get("delta"), dict):
                _openai_delta(choice["delta"])
            choice["logprobs"] = None
            choice.pop("prompt_logprobs", None)
        if data.get("usage") is not None:
            data["usage"] = _openai_usage(data["usage"])
        else:  # OpenAI sends a usage only when the request asks for it (stream_options.include_usage)
            data.pop("usage", None)
        data["system_fingerprint"] = _FINGERPRINT
        return data

    @staticmethod
    def stream_chunks(chunks: list[CompletionChunk], request: ChatCompletionRequest) -> list[CompletionChunk]:
        options = request.extra.get("stream_options")
        include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
        out: list[CompletionChunk] = []
        usage: UsageInfo | None = None
        for position, chunk in enumerate(chunks):
            if _opens_tool_calls(chunk, chunks[position + 1 : position + 2]):
                continue  # OpenAI names the role in the first tool-call delta, with no content
            if chunk.usage is not None:  # OpenAI sends the usage only on request, in a chunk of its own
                usage = chunk.usage
                chunk = attrs.evolve(chunk, usage=None)
            for part in _split_tool_calls(chunk):
                out.extend(_finish_apart(part))
        if include_usage and usage is not None:
            last = out[-1]
            out.append(CompletionChunk(id=last.id, model=last.model, created=last.created, usage=usage))
        return out


def _opens_tool_calls(chunk: CompletionChunk, following: Sequence[CompletionChunk]) -> bool:
    """Whether *chunk* is an empty opening delta followed by the same choice's tool calls."""
    if len(chunk.choices) != 1 or len(following) != 1 or len(following[0].choices) != 1:
        return False
    delta, after = chunk.choices[0].delta, following[0].choices[0]
    empty = delta.content == "" and not delta.tool_calls and chunk.choices[0].finish_reason is None
    return empty and after.index == chunk.choices[0].index and bool(after.delta.tool_calls)


def _finish_apart(chunk: CompletionChunk) -> list[CompletionChunk]:
    """Return *chunk* as OpenAI streams it: a finish reason comes in a chunk of its own, with an empty delta."""
    if len(chunk.choices) != 1 or chunk.choices[0].finish_reason is None:
        return [chunk]
    choice = chunk.choices[0]
    ending = CompletionResponseStreamChoice(
        index=choice.index, delta=AssistantMessage(), finish_reason=choice.finish_reason
    )
    return [
        attrs.evolve(chunk, choices=(attrs.evolve(choice, finish_reason=None),)),
        attrs.evolve(chunk, choices=(ending,)),
    ]


def _split_tool_calls(chunk: CompletionChunk) -> list[CompletionChunk]:
    """Return *chunk*, its tool calls split as OpenAI streams them: id and name first, then the arguments in pieces."""
    if len(chunk.choices) != 1 or not chunk.choices[0].delta.tool_calls:
        return [chunk]
    choice = chunk.choices[0]
    deltas: list[AssistantMessage] = []
    for position, call in enumerate(choice.delta.tool_calls or ()):
        index = position if isinstance(call.index, UnsetType) else call.index
        arguments = call.function.arguments
        text = arguments if isinstance(arguments, str) else json_text(arguments)
        head = ToolCall(id=call.id, index=index, function=FunctionCall(name=call.function.name, arguments=""))
        deltas.append(AssistantMessage(content=choice.delta.content, tool_calls=(head,)))
        deltas += [
            AssistantMessage(tool_calls=(ToolCall(index=index, function=FunctionCall(name="", arguments=piece)),))
            for piece in _split(text, 3)
        ]
    return [
        attrs.evolve(
            chunk,
            choices=(
                CompletionResponseStreamChoice(
                    index=choice.index,
                    delta=delta,
                    finish_reason=choice.finish_reason if position == len(deltas) - 1 else None,
                ),
            ),
        )
        for position, delta in enumerate(deltas)
    ]


WIRES: Final[dict[Dialect, MistralWire]] = {Dialect.MISTRAL: MistralWire(), Dialect.OPENAI: OpenAIWire()}


def encode_event(wire: MistralWire, item: StreamItem, *, first: bool) -> bytes:
    """Return one stream event's bytes: ``data: <json>\\n\\n`` for a chunk or a dict, ``str``/``bytes`` as given."""
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode()
    if isinstance(item, CompletionChunk):
        data: Any = wire.chunk_body(item, first=first)
    elif isinstance(item, ErrorEvent):
        data = wire.error_body(item["message"], item["type"], item["code"])
    else:
        data = dict(item)  # type: ignore[arg-type]
    return f"data: {json_text(data)}\n\n".encode()
