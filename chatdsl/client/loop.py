"""The tool-calling loop: send, run every tool call, answer with tool messages, send again.

:func:`run_tools` needs only a ``send`` callable (a request in, a response out), so it runs
against :meth:`chatdsl.Client.chat_completion` as well as against anything else that answers.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, TypeAlias, TypeVar, overload

import attrs

from chatdsl._errors import ChatDSLError, OutputError, ToolLoopError, ValidationError
from chatdsl._types import UNSET
from chatdsl.model.messages import AssistantMessage, ToolCall, ToolMessage, call_arguments
from chatdsl.model.request import ChatCompletionRequest
from chatdsl.model.response import ChatCompletionResponse
from chatdsl.model.tools import Tool, ToolChoice
from chatdsl.output.functions import FunctionTool, function_tool

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import TracebackType

    from chatdsl.model.response import CompletionChunk


class ChunkStream(Protocol):
    """What :func:`streaming_send` needs of a stream: a context manager over chunks with a final response."""

    def __enter__(self) -> ChunkStream: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> object: ...

    def __iter__(self) -> Iterator[CompletionChunk]: ...

    def final_response(self) -> ChatCompletionResponse: ...


__all__ = ["OnToolError", "ToolLoop", "ToolRunResult", "Tools", "run_tools", "streaming_send"]

OnToolError: TypeAlias = Literal["report", "raise"]
"""What a tool loop does when a tool fails: tell the model (``"report"``) or raise (``"raise"``)."""

Tools: TypeAlias = "Mapping[str, Callable[..., Any]] | Iterable[FunctionTool[..., Any] | Callable[..., Any]]"
"""The tools of a loop: names mapped to callables, or decorated functions (or plain, annotated ones)."""

DEFAULT_MAX_ROUNDS: Final = 10

_T = TypeVar("_T")


@attrs.frozen(kw_only=True)
class ToolRunResult:
    """What a tool loop ended with: the final ``response`` and the ``request`` that got it.

    ``request`` is the whole transcript (every assistant tool call and tool result in order);
    ``rounds`` counts the requests sent. :attr:`conversation` appends the final answer, ready for
    the next ``.user(...)``.
    """

    response: ChatCompletionResponse
    request: ChatCompletionRequest
    rounds: int

    @property
    def message(self) -> AssistantMessage:
        """The final assistant message."""
        message = self.response.assistant_message()
        return message if message is not None else AssistantMessage()

    @property
    def conversation(self) -> ChatCompletionRequest:
        """The transcript with the final assistant message appended (add a user message to go on)."""
        return self.request.add(self.message)

    def text(self) -> str:
        """Return the final answer's text."""
        return self.message.text()

    @overload
    def output(self) -> dict[str, Any]: ...
    @overload
    def output(self, tp: type[_T]) -> _T: ...
    @overload
    def output(self, tp: Any) -> Any: ...
    def output(self, tp: Any = dict) -> Any:
        """Return the final answer parsed into *tp* (see :meth:`chatdsl.AssistantMessage.output`)."""
        return self.message.output(tp)


@attrs.frozen
class _Entry:
    """One callable tool: how to turn a call into arguments, the function, and its definition."""

    name: str
    bind: Callable[[ToolCall], tuple[list[Any], dict[str, Any]]]
    function: Callable[..., Any]
    definition: Tool | None


class ToolLoop:
    """The steps of a tool loop, without I/O: what to send, what an answer means, what a tool call returns.

    A driver sends :attr:`request`, hands the response to :meth:`answer` (a :class:`ToolRunResult`
    when the model answered without tools, else the tool calls to run), runs each call — :meth:`prepare`
    gives the function and its arguments (or the tool message's content at once), :meth:`result` and
    :meth:`failed` turn what it returned or raised into that content — and hands the contents to
    :meth:`advance`. :func:`run_tools` drives it in one thread; the async client runs the calls of an
    answer concurrently.
    """

    __slots__ = ("on_error", "request", "response", "round", "rounds", "tools")

    def __init__(
        self,
        request: ChatCompletionRequest,
        tools: Tools,
        *,
        max_rounds: int = DEFAULT_MAX_ROUNDS,
        on_error: OnToolError = "report",
        awaits: bool = False,
    ) -> None:
        if isinstance(max_rounds, bool) or not isinstance(max_rounds, int) or max_rounds < 1:
            raise ValidationError("max_rounds", f"{max_rounds!r} is not an integer of 1 or more")
        if on_error not in ("report", "raise"):
            raise ValidationError("on_error", f"{on_error!r} is not 'report' or 'raise'")
        self.tools = _registry(tools)
        if not awaits:  # a sync driver: an async def tool would hand back an unawaited coroutine
            for name, entry in self.tools.items():
                if inspect.iscoroutinefunction(entry.function):
                    raise ValidationError(
                        f"tools[{name!r}]",
                        "is an async function; Client.run_tools calls tools synchronously — use "
                        "AsyncClient.run_tools, or wrap it (e.g. with asyncio.run)",
                    )
        self.request = _with_definitions(request, self.tools)
        """The transcript to send next."""
        self.rounds = max_rounds
        self.on_error = on_error
        self.round = 0
        self.response: ChatCompletionResponse | None = None

    def answer(self, response: ChatCompletionResponse) -> ToolRunResult | tuple[ToolCall, ...]:
        """Take the response to :attr:`request`: the result if it calls no tool, else its tool calls (in order).

        Raises :class:`~chatdsl.ToolLoopError` for a response without choices, or one that still calls
        tools in the last round.
        """
        self.round += 1
        self.response = response
        transcript = self.request
        message = response.assistant_message()
        if message is None:
            raise ToolLoopError("the response has no choices", request=transcript, response=response)
        calls = message.tool_calls if message.tool_calls is not UNSET else ()
        if not calls:
            return ToolRunResult(response=response, request=transcript, rounds=self.round)
        if self.round == self.rounds:
            names = ", ".join(call.name for call in calls)
            raise ToolLoopError(
                f"the model still calls tools ({names}) after {self.rounds} rounds; raise max_rounds "
                "or continue from error.request",
                request=transcript,
                response=response,
            )
        return calls

    def prepare(self, call: ToolCall) -> tuple[Callable[..., Any], list[Any], dict[str, Any]] | str:
        """Return the function of *call* and its arguments, or the tool message's content if it cannot run
        (an unknown tool, arguments that do not fit; raised instead with ``on_error="raise"``)."""
        entry = self.tools.get(call.name)
        if entry is None:
            problem = f"there is no tool named {call.name!r} (tools: {', '.join(self.tools) or 'none'})"
            if self.on_error == "raise":
                raise ToolLoopError(problem, request=self.request, response=self.response)
            return _encode_error(problem)
        try:
            args, kwargs = entry.bind(call)
        except OutputError as exc:
            if self.on_error == "raise":
                raise
            return _encode_error(f"invalid arguments for {call.name}: {_first_line(exc)}")
        return entry.function, args, kwargs

    def result(self, call: ToolCall, value: Any) -> str:
        """Return the tool message's content for what *call* returned (a string as it is, else JSON)."""
        try:
            return _encode_result(value)
        except Exception as exc:
            return self.failed(call, exc)

    def failed(self, call: ToolCall, exc: Exception) -> str:
        """Return the tool message's content for the exception *call* raised (or raise it, ``on_error="raise"``)."""
        if self.on_error == "raise":
            exc.add_note(f"raised by the tool {call.name!r} (tool call id {call.id!r})")
            raise exc
        return _encode_error(f"{type(exc).__name__}: {exc}")

    def advance(self, calls: Iterable[ToolCall], contents: Iterable[str]) -> None:
        """Append the assistant message and one tool message per call (*contents* in the calls' order)."""
        response = self.response
        message = response.assistant_message() if response is not None else None
        if message is None:
            raise ValidationError("advance", "comes after answer() returned tool calls")
        results = [
            ToolMessage(content=content, tool_call_id=call.id, name=call.name)
            for call, content in zip(calls, contents, strict=True)
        ]
        transcript = self.request
        if isinstance(transcript.tool_choice, ToolChoice) and transcript.tool_choice.forces_call:
            transcript = transcript.with_tool_choice(ToolChoice.AUTO)  # forcing again would never end the loop
        self.request = transcript.add(message, *results)

    def run(self, call: ToolCall) -> str:
        """Run *call* in this thread and return the tool message's content."""
        step = self.prepare(call)
        if isinstance(step, str):
            return step
        function, args, kwargs = step
        try:
            value = function(*args, **kwargs)
        except Exception as exc:
            return self.failed(call, exc)
        return self.result(call, value)


def run_tools(
    send: Callable[[ChatCompletionRequest], ChatCompletionResponse],
    request: ChatCompletionRequest,
    tools: Tools,
    *,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    on_error: OnToolError = "report",
) -> ToolRunResult:
    """Send *request*, run the tools the model calls, send their results, until a plain answer.

    See :meth:`chatdsl.Client.run_tools` for the rules.
    """
    loop = ToolLoop(request, tools, max_rounds=max_rounds, on_error=on_error)
    while True:
        answer = loop.answer(send(loop.request))
        if isinstance(answer, ToolRunResult):
            return answer
        loop.advance(answer, [loop.run(call) for call in answer])


def streaming_send(
    open_stream: Callable[[ChatCompletionRequest], ChunkStream], on_text: Callable[[str], object]
) -> Callable[[ChatCompletionRequest], ChatCompletionResponse]:
    """Return a ``send`` that streams each request, hands every text delta to *on_text*, and merges the chunks.

    A stream that breaks raises its :class:`~chatdsl.StreamError`.
    """

    def send(request: ChatCompletionRequest) -> ChatCompletionResponse:
        with open_stream(request) as stream:
            for chunk in stream:
                if chunk.error is not None:
                    raise chunk.error
                text = chunk.text()
                if text:
                    on_text(text)
            return stream.final_response()

    return send


def _registry(tools: Tools) -> dict[str, _Entry]:
    out: dict[str, _Entry] = {}
    given: object = tools
    if isinstance(given, Mapping):
        items: list[tuple[str | None, Any]] = list(given.items())
    elif isinstance(given, Iterable) and not isinstance(given, (str, bytes)):
        items = [(None, item) for item in given]
    else:
        raise ValidationError("tools", f"{tools!r} is not a mapping of names to callables or a list of functions")
    for key, item in items:
        entry = _entry(key, item)
        if entry.name in out:
            raise ValidationError("tools", f"names the tool {entry.name!r} twice; tool names must be unique")
        out[entry.name] = entry
    return out


def _entry(key: str | None, item: Any) -> _Entry:
    where = f"tools[{key!r}]" if key is not None else "tools"
    if isinstance(item, Tool):
        raise ValidationError(
            where, f"the Tool {item.name!r} carries no function to call; pass the function (or @chatdsl.tool) instead"
        )
    if not callable(item):
        raise ValidationError(where, f"{item!r} is not callable")
    if isinstance(item, FunctionTool):
        ft: FunctionTool[..., Any] = item
        definition = ft.tool
        if key is not None and key != ft.name:
            definition = Tool(function=attrs.evolve(definition.function, name=key))
        return _Entry(key or ft.name, ft._bind, ft.function, definition)
    if key is None:
        ft = function_tool(item)
        return _Entry(ft.name, ft._bind, ft.function, ft.tool)
    try:
        ft = function_tool(item, name=key)
    except ValidationError:  # not describable (say, a lambda without annotations): called with the raw arguments
        return _Entry(key, _raw_bind, item, None)
    return _Entry(key, ft._bind, ft.function, ft.tool)


def _raw_bind(call: ToolCall) -> tuple[list[Any], dict[str, Any]]:
    return [], call_arguments(call)


def _with_definitions(request: ChatCompletionRequest, registry: Mapping[str, _Entry]) -> ChatCompletionRequest:
    """Offer the registry's tools when the request offers none yet."""
    if request.tools is not UNSET and request.tools:
        return request
    missing = [name for name, entry in registry.items() if entry.definition is None]
    if missing:
        raise ValidationError(
            "tools",
            f"no definition for {', '.join(map(repr, missing))}: annotate the function(s), or offer the tools "
            "with request.with_tools(...) first",
        )
    return request.with_tools([entry.definition for entry in registry.values() if entry.definition is not None])


def _encode_result(result: Any) -> str:
    """A tool's result as message content: a string as it is, anything else as JSON."""
    if isinstance(result, str):
        return result
    from chatdsl.output.convert import output_converter

    try:  # the standard library, not _json: orjson would send NaN as null instead of refusing it
        return json.dumps(output_converter.unstructure(result), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"the result {result!r:.80} cannot be encoded as JSON ({exc})") from None


def _encode_error(message: str) -> str:
    return json.dumps({"error": message}, ensure_ascii=False)


def _first_line(exc: ChatDSLError) -> str:
    return str(exc).split("\ncontent: ", 1)[0]
