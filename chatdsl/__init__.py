"""chatdsl: compose Mistral chat-completion requests with an immutable fluent builder, and send them.

>>> import chatdsl
>>> base = chatdsl.chat("mistral-small-latest").system("Answer in one word.")
>>> base.user("Capital of France?").with_temperature(0).to_dict()["temperature"]
0
"""

import importlib
from typing import TYPE_CHECKING, Any

from chatdsl._errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BatchTimeoutError,
    ChatDSLError,
    ClientClosedError,
    InternalServerError,
    MalformedResponseError,
    NotFoundError,
    OutputError,
    PermissionDeniedError,
    RateLimitError,
    RowError,
    StreamError,
    TemplateError,
    ToolLoopError,
    UnprocessableEntityError,
    ValidationError,
)
from chatdsl._types import UNSET, FrozenDict, FrozenList, JSONValue, UnsetType
from chatdsl.model.batch import (
    BatchError,
    BatchJob,
    BatchJobList,
    BatchJobRequest,
    BatchJobStatus,
    FileDeleted,
    FileInfo,
    FileList,
)
from chatdsl.model.guardrails import GuardrailConfig, ModerationAction, ModerationConfig
from chatdsl.model.messages import (
    AssistantMessage,
    AudioChunk,
    Content,
    ContentChunk,
    DocumentURLChunk,
    FileChunk,
    FunctionCall,
    ImageDetail,
    ImageURLChunk,
    Message,
    ReferenceChunk,
    Role,
    SystemMessage,
    TextChunk,
    ThinkChunk,
    ToolCall,
    ToolMessage,
    ToolReferenceChunk,
    UnknownChunk,
    UserMessage,
)
from chatdsl.model.options import (
    new_chat_completion_request,
    new_chat_completion_stream_request,
    with_extra,
    with_frequency_penalty,
    with_guardrails,
    with_logprobs,
    with_max_tokens,
    with_metadata,
    with_min_tokens,
    with_model,
    with_n,
    with_parallel_tool_calls,
    with_prediction,
    with_presence_penalty,
    with_prompt_cache_key,
    with_prompt_logprobs,
    with_prompt_mode,
    with_random_seed,
    with_reasoning_effort,
    with_repetition_penalty,
    with_response_json_object_format,
    with_response_json_schema,
    with_response_text_format,
    with_safe_prompt,
    with_service_tier,
    with_stop,
    with_streaming,
    with_temperature,
    with_tool_choice,
    with_tools,
    with_top_k,
    with_top_logprobs,
    with_top_p,
    with_top_prompt_logprobs,
)
from chatdsl.model.request import ChatCompletionRequest, Option, chat
from chatdsl.model.response import (
    ChatCompletionChoice,
    ChatCompletionResponse,
    CompletionChunk,
    CompletionResponseStreamChoice,
    FinishReason,
    PromptTokensDetails,
    RateLimitInfo,
    UsageInfo,
)
from chatdsl.model.tools import (
    Function,
    JsonSchema,
    Prediction,
    PromptMode,
    PropertyDefinition,
    ReasoningEffort,
    ResponseFormat,
    ResponseFormatType,
    ServiceTier,
    Tool,
    ToolChoice,
    ToolChoiceMode,
)
from chatdsl.wire.dialects import Dialect

if TYPE_CHECKING:  # imported on first use (see __getattr__): `import chatdsl` stays cheap
    from chatdsl.client.aio import AsyncChatCompletionStream, AsyncClient
    from chatdsl.client.batch import BatchResult
    from chatdsl.client.config import Limits, RetryPolicy, Timeout
    from chatdsl.client.loop import ToolRunResult
    from chatdsl.client.sync import ChatCompletionStream, Client
    from chatdsl.output.functions import FunctionTool, tool
    from chatdsl.output.schema import json_schema
    from chatdsl.runs.core import RunResult
    from chatdsl.templates.files import Variable
    from chatdsl.templates.library import RequestTemplate, TemplateInfo, TemplateLibrary
    from chatdsl.tokens import TokenCount, TokenizerMissingError, count_tokens

_LAZY: dict[str, str] = {
    "AsyncChatCompletionStream": "chatdsl.client.aio",
    "AsyncClient": "chatdsl.client.aio",
    "BatchResult": "chatdsl.client.batch",
    "ChatCompletionStream": "chatdsl.client.sync",
    "Client": "chatdsl.client.sync",
    "Limits": "chatdsl.client.config",
    "RetryPolicy": "chatdsl.client.config",
    "Timeout": "chatdsl.client.config",
    "FunctionTool": "chatdsl.output.functions",
    "tool": "chatdsl.output.functions",
    "ToolRunResult": "chatdsl.client.loop",
    "json_schema": "chatdsl.output.schema",
    "RequestTemplate": "chatdsl.templates.library",
    "TemplateInfo": "chatdsl.templates.library",
    "TemplateLibrary": "chatdsl.templates.library",
    "Variable": "chatdsl.templates.files",
    "TokenCount": "chatdsl.tokens",
    "TokenizerMissingError": "chatdsl.tokens",
    "count_tokens": "chatdsl.tokens",
    "RunResult": "chatdsl.runs.core",
}


def __getattr__(name: str) -> Any:
    """Import the client, templates, schemas and tool helpers on first use (PEP 562)."""
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'chatdsl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public API only (``__all__``), for ``dir(chatdsl)`` and autocompletion."""
    return sorted(__all__)


__version__ = "0.1.0"

__all__ = [
    "UNSET",
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AssistantMessage",
    "AsyncChatCompletionStream",
    "AsyncClient",
    "AudioChunk",
    "AuthenticationError",
    "BadRequestError",
    "BatchError",
    "BatchJob",
    "BatchJobList",
    "BatchJobRequest",
    "BatchJobStatus",
    "BatchResult",
    "BatchTimeoutError",
    "ChatCompletionChoice",
    "ChatCompletionRequest",
    "ChatCompletionResponse",
    "ChatCompletionStream",
    "ChatDSLError",
    "Client",
    "ClientClosedError",
    "CompletionChunk",
    "CompletionResponseStreamChoice",
    "Content",
    "ContentChunk",
    "Dialect",
    "DocumentURLChunk",
    "FileChunk",
    "FileDeleted",
    "FileInfo",
    "FileList",
    "FinishReason",
    "FrozenDict",
    "FrozenList",
    "Function",
    "FunctionCall",
    "FunctionTool",
    "GuardrailConfig",
    "ImageDetail",
    "ImageURLChunk",
    "InternalServerError",
    "JSONValue",
    "JsonSchema",
    "Limits",
    "MalformedResponseError",
    "Message",
    "ModerationAction",
    "ModerationConfig",
    "NotFoundError",
    "Option",
    "OutputError",
    "PermissionDeniedError",
    "Prediction",
    "PromptMode",
    "PromptTokensDetails",
    "PropertyDefinition",
    "RateLimitError",
    "RateLimitInfo",
    "ReasoningEffort",
    "ReferenceChunk",
    "RequestTemplate",
    "ResponseFormat",
    "ResponseFormatType",
    "RetryPolicy",
    "Role",
    "RowError",
    "RunResult",
    "ServiceTier",
    "StreamError",
    "SystemMessage",
    "TemplateError",
    "TemplateInfo",
    "TemplateLibrary",
    "TextChunk",
    "ThinkChunk",
    "Timeout",
    "TokenCount",
    "TokenizerMissingError",
    "Tool",
    "ToolCall",
    "ToolChoice",
    "ToolChoiceMode",
    "ToolLoopError",
    "ToolMessage",
    "ToolReferenceChunk",
    "ToolRunResult",
    "UnknownChunk",
    "UnprocessableEntityError",
    "UnsetType",
    "UsageInfo",
    "UserMessage",
    "ValidationError",
    "Variable",
    "__version__",
    "chat",
    "count_tokens",
    "json_schema",
    "new_chat_completion_request",
    "new_chat_completion_stream_request",
    "tool",
    "with_extra",
    "with_frequency_penalty",
    "with_guardrails",
    "with_logprobs",
    "with_max_tokens",
    "with_metadata",
    "with_min_tokens",
    "with_model",
    "with_n",
    "with_parallel_tool_calls",
    "with_prediction",
    "with_presence_penalty",
    "with_prompt_cache_key",
    "with_prompt_logprobs",
    "with_prompt_mode",
    "with_random_seed",
    "with_reasoning_effort",
    "with_repetition_penalty",
    "with_response_json_object_format",
    "with_response_json_schema",
    "with_response_text_format",
    "with_safe_prompt",
    "with_service_tier",
    "with_stop",
    "with_streaming",
    "with_temperature",
    "with_tool_choice",
    "with_tools",
    "with_top_k",
    "with_top_logprobs",
    "with_top_p",
    "with_top_prompt_logprobs",
]
