"""Reading an OpenAI chat-completions body back into a request: what ``LocalServer`` does in the openai dialect.

The mapping the other way (a request spelled for OpenAI) is :func:`chatdsl.wire.dialects.to_wire`;
this reader refuses what an OpenAI server refuses, so tests see the errors a real server would give.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from chatdsl._errors import ValidationError
from chatdsl._types import short_repr
from chatdsl.model.request import ChatCompletionRequest
from chatdsl.wire.dialects import OPENAI_REQUEST_FIELDS, SAMPLING_EXTENSIONS, SERVICE_TIERS_FROM_OPENAI

__all__ = ["request_from_openai"]

_MISTRAL_ONLY: Final = {
    "random_seed": " (OpenAI spells it seed)",
    "safe_prompt": "",
    "prompt_mode": " (OpenAI has reasoning_effort)",
    "prompt_logprobs": "",
    "top_prompt_logprobs": "",
    "guardrails": "",
}
_MESSAGE_KEYS: Final = {
    "system": frozenset({"role", "content", "name"}),
    "developer": frozenset({"role", "content", "name"}),
    "user": frozenset({"role", "content", "name"}),
    "assistant": frozenset({"role", "content", "name", "refusal", "tool_calls"}),
    "tool": frozenset({"role", "content", "tool_call_id"}),
}
_PART_TYPES: Final = {
    "system": frozenset({"text"}),
    "developer": frozenset({"text"}),
    "user": frozenset({"text", "image_url", "input_audio", "file"}),
    "assistant": frozenset({"text"}),
    "tool": frozenset({"text"}),
}


def request_from_openai(body: Any) -> ChatCompletionRequest:
    """Return the request an OpenAI chat-completions body describes (strict).

    A Mistral-only field (``random_seed``, ``safe_prompt``, ``prompt_mode``, an assistant ``prefix``,
    a ``document_url`` part, an image URL given as a bare string, ...) or a key OpenAI's API does not
    know is a :class:`~chatdsl.ValidationError` naming its path; the sampling fields self-hosted
    servers add (:data:`SAMPLING_EXTENSIONS`) are read. ``service_tier`` ``"default"`` becomes
    ``"standard_only"``. ``seed`` becomes ``random_seed``,
    ``developer`` messages become system messages, OpenAI's ``file`` and ``input_audio`` parts become
    :class:`~chatdsl.FileChunk` and :class:`~chatdsl.AudioChunk`; a participant ``name`` and an
    assistant ``refusal`` are not kept. OpenAI fields the model does not hold (``user``,
    ``stream_options``, ``max_completion_tokens``, ...) are kept as ``extra``.
    """
    if not isinstance(body, Mapping):
        raise ValidationError("", f"is {type(body).__name__}, not a JSON object")
    problems: list[tuple[str, str]] = []
    data: dict[str, Any] = {}
    for key, value in body.items():
        if key in _MISTRAL_ONLY:
            problems.append((key, f"is not a field of OpenAI's chat-completions API{_MISTRAL_ONLY[key]}"))
        elif key not in OPENAI_REQUEST_FIELDS and key not in SAMPLING_EXTENSIONS:
            problems.append((key, "is not a field of OpenAI's chat-completions API"))
        elif key == "seed":
            data["random_seed"] = value
        elif key == "service_tier":
            data[key] = SERVICE_TIERS_FROM_OPENAI.get(value, value) if isinstance(value, str) else value
        elif key == "messages" and isinstance(value, list):
            data[key] = [_read_message(message, f"messages[{i}]", problems) for i, message in enumerate(value)]
        else:
            data[key] = value
    if problems:
        raise ValidationError("", "", errors=problems)
    try:
        return ChatCompletionRequest.from_dict(data, allow_extra=True)
    except ValidationError as exc:
        raise ValidationError("", "", errors=[(_seed_path(p), m) for p, m in exc.errors]) from None


def _seed_path(path: str) -> str:
    return "seed" + path[len("random_seed") :] if path.startswith("random_seed") else path


def _read_message(message: Any, path: str, problems: list[tuple[str, str]]) -> Any:
    if not isinstance(message, Mapping) or message.get("role") not in _MESSAGE_KEYS:
        return message  # the request model reports it
    role = message["role"]
    for key in message:
        if key not in _MESSAGE_KEYS[role]:
            problems.append((f"{path}.{key}", f"is not a field of OpenAI's {role} messages"))
    out = {key: value for key, value in message.items() if key not in ("name", "refusal") or role == "tool"}
    if role == "developer":
        out["role"] = "system"
    content = message.get("content")
    if isinstance(content, list):
        out["content"] = [_read_part(part, role, f"{path}.content[{j}]", problems) for j, part in enumerate(content)]
    calls = message.get("tool_calls")
    if role == "assistant" and isinstance(calls, list):
        for i, call in enumerate(calls):
            if not isinstance(call, Mapping):
                continue
            for key in call:
                if key not in ("id", "type", "function"):
                    problems.append((f"{path}.tool_calls[{i}].{key}", "is not a field of an OpenAI tool call"))
            function = call.get("function")
            if isinstance(function, Mapping) and not isinstance(function.get("arguments"), str):
                problems.append((f"{path}.tool_calls[{i}].function.arguments", "is not a JSON string"))
    return out


def _read_part(part: Any, role: str, path: str, problems: list[tuple[str, str]]) -> Any:
    if not isinstance(part, Mapping):
        return part
    kind = part.get("type")
    if kind not in _PART_TYPES[role]:
        problems.append((f"{path}.type", f"{short_repr(kind, 60)} is not a content part of OpenAI's {role} messages"))
        return part
    if kind == "image_url" and not isinstance(part.get("image_url"), Mapping):
        problems.append((f"{path}.image_url", "is not an object {'url': ..., 'detail': ...}"))
    elif kind == "file":
        file = part.get("file")
        if not isinstance(file, Mapping) or not isinstance(file.get("file_id"), str):
            problems.append((f"{path}.file", "is not an object with a file_id (LocalServer reads uploaded files only)"))
            return part
        return {"type": "file", "file_id": file["file_id"]}
    elif kind == "input_audio":
        audio = part.get("input_audio")
        if not isinstance(audio, Mapping) or not isinstance(audio.get("data"), str):
            problems.append((f"{path}.input_audio", "is not an object {'data': ..., 'format': ...}"))
            return part
        return {"type": "input_audio", "input_audio": audio["data"]}
    return part
