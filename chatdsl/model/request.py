"""``ChatCompletionRequest``: the immutable request model and its chained builder methods."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeAlias

import attrs

from chatdsl import _checks as c
from chatdsl._errors import ValidationError
from chatdsl._types import UNSET, FrozenDict, JSONValue, UnsetType, none_if_unset, unset_if_none
from chatdsl.model.guardrails import GuardrailConfig
from chatdsl.model.messages import (
    MESSAGE_TYPES,
    AssistantMessage,
    ContentChunk,
    Message,
    SystemMessage,
    ToolCall,
    ToolMessage,
    UserMessage,
    as_content,
)
from chatdsl.model.tools import (
    IMPLIED_AUTO,
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

if TYPE_CHECKING:
    from chatdsl.wire.dialects import Dialect

__all__ = ["ChatCompletionRequest", "Option", "chat"]

Option: TypeAlias = Callable[["ChatCompletionRequest"], "ChatCompletionRequest"]
"""A Go-style functional option: a callable from a request to a new request."""

SchemaLike: TypeAlias = "Mapping[str, JSONValue] | PropertyDefinition | JsonSchema | type[Any]"


def _check_stop(_: Any, attribute: Any, value: Any) -> None:
    if value is UNSET or isinstance(value, str):
        return
    if isinstance(value, tuple):
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise c.fail(f"stop[{index}]", item, f"is {c.type_name(item)}, not a string")
        return
    raise c.fail(attribute.name, value, "is not a string or a list of strings")


def _check_tools(_: Any, attribute: Any, value: Any) -> None:
    if value is UNSET:
        return
    c.items_of(Tool)(_, attribute, value)
    seen: set[str] = set()
    for index, tool in enumerate(value):
        if tool.name in seen:
            raise c.fail(f"tools[{index}].function.name", tool.name, "names a tool twice; tool names must be unique")
        seen.add(tool.name)


def _check_tool_choice(_: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, str):  # the converter turned every known mode into a ToolChoice
        ToolChoice.coerce(value)  # raises, naming the allowed modes
    _is_tool_choice(_, attribute, value)


_is_tool_choice = c.instance_of(ToolChoice, what="ToolChoice or mode")


def _to_tool_choice(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return ToolChoice.coerce(value)
        except ValidationError:
            return value
    return value


def _to_response_format(value: Any) -> Any:
    if isinstance(value, str):
        fmt = c.to_enum(ResponseFormatType)(value)
        if fmt is ResponseFormatType.TEXT:
            return ResponseFormat.TEXT
        if fmt is ResponseFormatType.JSON_OBJECT:
            return ResponseFormat.JSON_OBJECT
    return value


def _to_stop(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    return value


def _to_prompt_mode(value: Any) -> Any:
    return c.to_enum(PromptMode)(value)


def _to_reasoning_effort(value: Any) -> Any:
    return c.to_enum(ReasoningEffort)(value)


def _to_service_tier(value: Any) -> Any:
    return c.to_enum(ServiceTier)(value)


_EMPTY_EXTRA = FrozenDict()


class _Marked:
    """The slot of a request's "unrendered template" mark: no attrs field, so never on the wire nor compared.

    A request read from a template file with variables, taken from a :class:`~chatdsl.RequestTemplate`, or
    marked with :meth:`ChatCompletionRequest.as_template` carries it; every builder step, ``merge`` (with a
    marked side) and pickling keep it; :meth:`~ChatCompletionRequest.render` clears it. A request carrying it
    fails :meth:`~ChatCompletionRequest.validate`, so an unrendered template is never sent. Read it with
    :func:`chatdsl.model.templating.is_unrendered` (an unset slot means "not marked").
    """

    __slots__ = ("_unrendered",)


@attrs.frozen(kw_only=True, weakref_slot=False)
class ChatCompletionRequest(_Marked):
    """A chat-completion request: immutable, validated on every construction, unset fields not sent.

    Build one with :func:`chat` and the chained ``with_*`` methods; each returns a new request
    and never changes the receiver, so one template can be shared and derived everywhere.

    A request that came from a template (see :meth:`as_template`) must be rendered before it is sent.
    The mark is not a field: two requests that differ only in it compare (and hash) equal, as their
    wire bodies are equal.
    """

    __slots__ = ()

    model: str | UnsetType = attrs.field(default=UNSET, validator=c.string(non_empty=True))
    messages: tuple[Message, ...] = attrs.field(
        default=(), converter=c.to_tuple, validator=c.items_of(*MESSAGE_TYPES, what="message")
    )
    tools: tuple[Tool, ...] | UnsetType = attrs.field(default=UNSET, converter=c.to_tuple, validator=_check_tools)
    max_tokens: int | UnsetType = attrs.field(default=UNSET, validator=c.integer(minimum=0))
    temperature: float | UnsetType = attrs.field(default=UNSET, validator=c.number(0, 1.5))
    top_p: float | UnsetType = attrs.field(default=UNSET, validator=c.number(0, 1))
    response_format: ResponseFormat | UnsetType = attrs.field(
        default=UNSET, converter=_to_response_format, validator=c.instance_of(ResponseFormat)
    )
    tool_choice: ToolChoice | UnsetType = attrs.field(
        default=UNSET, converter=_to_tool_choice, validator=_check_tool_choice
    )
    parallel_tool_calls: bool | UnsetType = attrs.field(default=UNSET, validator=c.boolean())
    frequency_penalty: float | UnsetType = attrs.field(default=UNSET, validator=c.number(-2, 2))
    presence_penalty: float | UnsetType = attrs.field(default=UNSET, validator=c.number(-2, 2))
    n: int | UnsetType = attrs.field(default=UNSET, validator=c.integer(minimum=1))
    prompt_mode: PromptMode | str | UnsetType = attrs.field(
        default=UNSET, converter=_to_prompt_mode, validator=c.open_enum(PromptMode)
    )
    random_seed: int | UnsetType = attrs.field(default=UNSET, validator=c.integer(minimum=0))
    safe_prompt: bool | UnsetType = attrs.field(default=UNSET, validator=c.boolean())
    stop: str | tuple[str, ...] | UnsetType = attrs.field(default=UNSET, converter=_to_stop, validator=_check_stop)
    stream: bool | UnsetType = attrs.field(default=UNSET, validator=c.boolean())
    prediction: Prediction | UnsetType = attrs.field(default=UNSET, validator=c.instance_of(Prediction))
    reasoning_effort: ReasoningEffort | str | UnsetType = attrs.field(
        default=UNSET, converter=_to_reasoning_effort, validator=c.open_enum(ReasoningEffort)
    )
    metadata: FrozenDict | UnsetType = attrs.field(default=UNSET, converter=c.to_frozen, validator=c.json_object())
    prompt_cache_key: str | UnsetType = attrs.field(default=UNSET, validator=c.string())
    top_k: int | UnsetType = attrs.field(default=UNSET, validator=c.integer(minimum=0))
    min_tokens: int | UnsetType = attrs.field(default=UNSET, validator=c.integer(minimum=0))
    repetition_penalty: float | UnsetType = attrs.field(default=UNSET, validator=c.number(0))
    logprobs: bool | UnsetType = attrs.field(default=UNSET, validator=c.boolean())
    top_logprobs: int | UnsetType = attrs.field(default=UNSET, validator=c.integer(minimum=0))
    prompt_logprobs: bool | UnsetType = attrs.field(default=UNSET, validator=c.boolean())
    top_prompt_logprobs: int | UnsetType = attrs.field(default=UNSET, validator=c.integer(minimum=0))
    guardrails: tuple[GuardrailConfig, ...] | UnsetType = attrs.field(
        default=UNSET, converter=c.to_tuple, validator=c.items_of(GuardrailConfig)
    )
    service_tier: ServiceTier | str | UnsetType = attrs.field(
        default=UNSET, converter=_to_service_tier, validator=c.open_enum(ServiceTier)
    )
    extra: FrozenDict = attrs.field(factory=FrozenDict, converter=c.to_frozen, validator=c.json_object())

    @extra.validator
    def _check_extra(self, attribute: Any, value: FrozenDict) -> None:
        for key in value:
            if key in _FIELD_NAMES:
                raise c.fail(
                    f"extra.{key}", value[key], f"shadows the modelled field {key!r}; set it with its own method"
                )

    # ---------------------------------------------------------------- plumbing

    def __attrs_post_init__(self) -> None:
        _set(self, "_unrendered", False)  # see _Marked: a new request is not a template

    def _replace(self, **changes: Any) -> Self:
        """Return a shallow copy with *changes*, converting and validating only the changed fields.

        Equivalent to ``attrs.evolve`` (which re-runs every validator) but a builder step costs
        only what it changes: the other fields were validated when the receiver was built. Like
        attrs, it honours ``attrs.validators.set_disabled()``.
        """
        if type(self) is not ChatCompletionRequest:
            evolved = attrs.evolve(self, **changes)
            if getattr(self, "_unrendered", False):
                _set(evolved, "_unrendered", True)
            return evolved
        new = _copy_request(self)
        for name, value in changes.items():
            field = _FIELD_SPECS.get(name)
            if field is None:
                raise TypeError(f"ChatCompletionRequest has no field {name!r}")
            converter, validator, attribute = field
            if converter is not None:
                value = converter(value)
            if validator is not None and not _validators_disabled():
                validator(new, attribute, value)
            _set(new, name, value)
        return new  # type: ignore[return-value]

    def apply(self, *options: Option) -> Self:
        """Return a copy with each Go-style option applied in order."""
        request: Any = self
        for option in options:
            request = option(request)
        return request  # type: ignore[no-any-return]

    # ---------------------------------------------------------------- messages

    def add(self, *messages: Message | Mapping[str, Any]) -> Self:
        """Return a copy with *messages* appended to the conversation.

        A message may also be a wire dict (``{"role": "user", "content": "Hi"}``), read as strictly
        as :meth:`from_dict` reads one (errors name its path: ``messages[1].content: ...``).
        """
        if any(isinstance(m, Mapping) for m in messages):
            messages = _read_messages(messages, len(self.messages))
        if not _validators_disabled():
            try:
                _check_messages(self, _MESSAGES_ATTRIBUTE, messages)  # only the new ones: the rest were checked
            except ValidationError as exc:
                raise _renumber(exc, len(self.messages)) from None
        new = self._replace()
        _set(new, "messages", self.messages + messages)
        return new

    def with_messages(self, messages: Iterable[Message | Mapping[str, Any]]) -> Self:
        """Return a copy whose conversation is *messages* (replacing any); wire dicts are read as in :meth:`add`."""
        return self._replace(messages=_read_messages(tuple(messages), 0))

    def system(self, content: str | Sequence[ContentChunk]) -> Self:
        """Return a copy with a system message appended."""
        try:
            message = SystemMessage(content=as_content(content))
        except ValidationError as exc:
            raise self._next_message(exc) from None
        return self.add(message)

    def user(self, content: str | Sequence[ContentChunk]) -> Self:
        """Return a copy with a user message appended (text, or content parts such as images)."""
        try:
            message = UserMessage(content=as_content(content))
        except ValidationError as exc:
            raise self._next_message(exc) from None
        return self.add(message)

    def _next_message(self, error: ValidationError) -> ValidationError:
        """Return *error* naming the message being built: ``messages[i].content[0]: ...``."""
        return error.with_prefix(f"messages[{len(self.messages)}]")

    def assistant(
        self,
        content: str | Sequence[ContentChunk] | UnsetType | None = None,
        *,
        tool_calls: Sequence[ToolCall] | UnsetType | None = None,
        prefix: bool | UnsetType | None = UNSET,
    ) -> Self:
        """Return a copy with an assistant message appended (content, tool calls, or a prefix).

        ``None`` and ``UNSET`` both leave a field out.
        """
        try:
            message = AssistantMessage(
                content=UNSET if content is None or content is UNSET else as_content(content),
                tool_calls=UNSET if tool_calls is None or tool_calls is UNSET else tuple(tool_calls),
                prefix=unset_if_none(prefix),
            )
        except ValidationError as exc:
            raise self._next_message(exc) from None
        return self.add(message)

    def tool(
        self,
        content: str | Sequence[ContentChunk],
        *,
        tool_call_id: str,
        name: str | UnsetType | None = UNSET,
    ) -> Self:
        """Return a copy with a tool message appended: the result of the call *tool_call_id*."""
        try:
            message = ToolMessage(content=as_content(content), tool_call_id=tool_call_id, name=unset_if_none(name))
        except ValidationError as exc:
            raise self._next_message(exc) from None
        return self.add(message)

    # ---------------------------------------------------------------- parameters

    def with_model(self, model: str) -> Self:
        """Return a copy with ``model`` set."""
        return self._replace(model=model)

    def with_max_tokens(self, max_tokens: int) -> Self:
        """Return a copy with ``max_tokens`` set (0 or more)."""
        return self._replace(max_tokens=max_tokens)

    def with_temperature(self, temperature: float) -> Self:
        """Return a copy with ``temperature`` set (0 to 1.5; 0 is sent)."""
        return self._replace(temperature=temperature)

    def with_top_p(self, top_p: float) -> Self:
        """Return a copy with ``top_p`` set (0 to 1)."""
        return self._replace(top_p=top_p)

    def with_frequency_penalty(self, penalty: float) -> Self:
        """Return a copy with ``frequency_penalty`` set (-2 to 2)."""
        return self._replace(frequency_penalty=penalty)

    def with_presence_penalty(self, penalty: float) -> Self:
        """Return a copy with ``presence_penalty`` set (-2 to 2)."""
        return self._replace(presence_penalty=penalty)

    def with_n(self, n: int) -> Self:
        """Return a copy with ``n`` (completions per request, 1 or more) set."""
        return self._replace(n=n)

    def with_prompt_mode(self, mode: PromptMode | str) -> Self:
        """Return a copy with ``prompt_mode`` set (``"reasoning"``, or any non-empty string)."""
        return self._replace(prompt_mode=mode)

    def with_random_seed(self, seed: int) -> Self:
        """Return a copy with ``random_seed`` set (0 or more; 0 is sent)."""
        return self._replace(random_seed=seed)

    def with_safe_prompt(self, flag: bool = True) -> Self:
        """Return a copy with ``safe_prompt`` set."""
        return self._replace(safe_prompt=flag)

    def with_stop(self, *sequences: str) -> Self:
        """Return a copy that stops at any of *sequences* (one is sent as a string, several as a list)."""
        if not sequences:
            raise ValidationError("stop", "needs at least one stop sequence")
        return self._replace(stop=sequences[0] if len(sequences) == 1 else sequences)

    def with_parallel_tool_calls(self, flag: bool) -> Self:
        """Return a copy with ``parallel_tool_calls`` set (``False`` is sent)."""
        return self._replace(parallel_tool_calls=flag)

    def with_prediction(self, content: str) -> Self:
        """Return a copy with a predicted output ``content``."""
        return self._replace(prediction=Prediction(content=content))

    def with_reasoning_effort(self, effort: ReasoningEffort | str) -> Self:
        """Return a copy with ``reasoning_effort`` set (a :class:`~chatdsl.ReasoningEffort` or any non-empty string)."""
        return self._replace(reasoning_effort=effort)

    def with_top_k(self, top_k: int) -> Self:
        """Return a copy with ``top_k`` set (sample from the *top_k* likeliest tokens; 0 or more)."""
        return self._replace(top_k=top_k)

    def with_min_tokens(self, min_tokens: int) -> Self:
        """Return a copy with ``min_tokens`` set (generate at least that many tokens; 0 or more)."""
        return self._replace(min_tokens=min_tokens)

    def with_repetition_penalty(self, penalty: float) -> Self:
        """Return a copy with ``repetition_penalty`` set (0 or more; 1 means no penalty)."""
        return self._replace(repetition_penalty=penalty)

    def with_logprobs(self, flag: bool = True, *, top: int | UnsetType | None = UNSET) -> Self:
        """Return a copy with ``logprobs`` set and, if *top* is given, ``top_logprobs`` (0 or more)."""
        if top is None or top is UNSET:
            return self._replace(logprobs=flag)
        return self._replace(logprobs=flag, top_logprobs=top)

    def with_top_logprobs(self, top: int) -> Self:
        """Return a copy with ``top_logprobs`` set (the likeliest tokens returned per position; 0 or more)."""
        return self._replace(top_logprobs=top)

    def with_prompt_logprobs(self, flag: bool = True, *, top: int | UnsetType | None = UNSET) -> Self:
        """Return a copy with ``prompt_logprobs`` set and, if *top* is given, ``top_prompt_logprobs`` (0 or more)."""
        if top is None or top is UNSET:
            return self._replace(prompt_logprobs=flag)
        return self._replace(prompt_logprobs=flag, top_prompt_logprobs=top)

    def with_top_prompt_logprobs(self, top: int) -> Self:
        """Return a copy with ``top_prompt_logprobs`` set (0 or more)."""
        return self._replace(top_prompt_logprobs=top)

    def with_guardrails(self, *guardrails: GuardrailConfig) -> Self:
        """Return a copy with ``guardrails`` set to *guardrails* (replacing any; none sends an empty list)."""
        return self._replace(guardrails=guardrails)

    def with_service_tier(self, tier: ServiceTier | str) -> Self:
        """Return a copy with ``service_tier`` set (a :class:`~chatdsl.ServiceTier` or any non-empty string)."""
        return self._replace(service_tier=tier)

    def with_metadata(self, metadata: Mapping[str, JSONValue]) -> Self:
        """Return a copy with ``metadata`` (a JSON object) set."""
        return self._replace(metadata=metadata)

    def with_prompt_cache_key(self, key: str) -> Self:
        """Return a copy with ``prompt_cache_key`` set."""
        return self._replace(prompt_cache_key=key)

    def with_extra(self, **fields: JSONValue) -> Self:
        """Return a copy that also sends *fields* as they are (for API fields not modelled yet).

        They may not shadow a modelled field; they are merged over earlier extras.
        """
        return self._replace(extra={**self.extra, **fields})

    def without(self, *field_names: str) -> Self:
        """Return a copy with the named fields unset (``messages`` and ``extra`` become empty)."""
        changes: dict[str, Any] = {}
        for name in field_names:
            if name not in _FIELD_NAMES:
                raise ValidationError(name, f"is not a field of ChatCompletionRequest ({', '.join(_FIELD_NAMES)})")
            changes[name] = _EMPTY.get(name, UNSET)
        return self._replace(**changes)

    # ---------------------------------------------------------------- Go option mirrors

    def with_response_text_format(self) -> Self:
        """Return a copy whose answer is plain text (``response_format`` type ``text``)."""
        return self._replace(response_format=ResponseFormat.TEXT)

    def with_response_json_object_format(self) -> Self:
        """Return a copy whose answer is a JSON object (``response_format`` type ``json_object``)."""
        return self._replace(response_format=ResponseFormat.JSON_OBJECT)

    def with_response_json_schema(
        self,
        schema: SchemaLike,
        *,
        name: str | UnsetType | None = None,
        description: str | UnsetType | None = UNSET,
        strict: bool | UnsetType = True,
    ) -> Self:
        """Return a copy whose answer follows *schema* (a JSON-schema dict or a ``PropertyDefinition``).

        ``name`` defaults to the schema's ``title``, else ``"response"``; ``strict`` defaults to ``True``.
        For ``name`` and ``description``, ``None`` and ``UNSET`` both mean "not given".
        """
        return self._replace(
            response_format=ResponseFormat(
                type=ResponseFormatType.JSON_SCHEMA,
                json_schema=_json_schema(
                    schema, name=none_if_unset(name), description=unset_if_none(description), strict=strict
                ),
            )
        )

    def with_tools(self, tools: Iterable[Tool]) -> Self:
        """Return a copy offering *tools* to the model.

        Like Go's ``WithTools`` it sets ``tool_choice`` to ``auto`` — but only when no choice is
        set yet, so a choice made earlier (say ``any``) is never silently undone.
        """
        tool_choice = IMPLIED_AUTO if self.tool_choice is UNSET else self.tool_choice
        return self._replace(tools=tuple(tools), tool_choice=tool_choice)

    def with_tool_choice(self, choice: ToolChoice | ToolChoiceMode | str) -> Self:
        """Return a copy with ``tool_choice`` set: a mode string or a ``ToolChoice``."""
        return self._replace(tool_choice=ToolChoice.coerce(choice))

    def with_streaming(self, flag: bool = True) -> Self:
        """Return a copy with ``stream`` set."""
        return self._replace(stream=flag)

    # short names
    with_json_schema = with_response_json_schema
    with_json_object = with_response_json_object_format

    def streaming(self, flag: bool = True) -> Self:
        """Return a copy with ``stream`` set (short for :meth:`with_streaming`)."""
        return self.with_streaming(flag)

    # ---------------------------------------------------------------- checks

    def validate(self) -> Self:
        """Return this request if it is complete and coherent enough to send, else raise.

        Beyond the per-field rules checked on construction: a model is set, there is at least
        one message, the last message is one the API answers, only the last assistant message
        has ``prefix``, a named tool choice names a tool in ``tools``, a forced tool choice has
        tools, and every tool message answers an earlier tool call id. All problems are reported
        together in one :class:`~chatdsl.ValidationError`.
        """
        errors = list(completeness_errors(self))
        if errors:
            raise ValidationError("", "", errors=errors)
        return self

    @property
    def is_complete(self) -> bool:
        """Whether :meth:`validate` would pass."""
        return not any(True for _ in completeness_errors(self))

    # ---------------------------------------------------------------- wire format

    def to_dict(self, *, dialect: Dialect | str | None = None, drop_unsupported: bool = False) -> dict[str, Any]:
        """Return the wire body as a dict (unset fields left out; nested JSON objects are frozen).

        The body is Mistral's; ``dialect="openai"`` returns it as an OpenAI-compatible server expects
        it (see :class:`~chatdsl.Dialect`): a field without an equivalent there is a
        :class:`~chatdsl.ValidationError` naming it, unless *drop_unsupported* leaves it out.
        """
        from chatdsl.wire.converter import unstructure_request

        if dialect is None:
            return unstructure_request(self)
        from chatdsl.wire.dialects import to_wire

        return to_wire(unstructure_request(self), dialect, drop_unsupported=drop_unsupported)

    def to_json(
        self, *, indent: int | None = None, dialect: Dialect | str | None = None, drop_unsupported: bool = False
    ) -> str:
        """Return the wire body as JSON text (*dialect* and *drop_unsupported* as for :meth:`to_dict`)."""
        from chatdsl._json import dumps

        return dumps(self.to_dict(dialect=dialect, drop_unsupported=drop_unsupported), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, allow_extra: bool = False) -> ChatCompletionRequest:
        """Return the request a wire body describes; an unknown key or a wrong type is an error naming its path.

        With ``allow_extra=True`` unknown top-level keys are kept as :meth:`with_extra` fields instead,
        so ``from_dict(r.to_dict(), allow_extra=True) == r`` holds for requests with extras too.
        """
        from chatdsl.wire.converter import structure_request

        return structure_request(data, allow_extra=allow_extra)

    @classmethod
    def from_json(cls, text: str | bytes, *, allow_extra: bool = False) -> ChatCompletionRequest:
        """Return the request a JSON wire body describes (see :meth:`from_dict`)."""
        from chatdsl.wire.converter import loads_request

        return loads_request(text, allow_extra=allow_extra)

    def save(self, path: str | Path) -> None:
        """Write this request as a template file (``.json`` or ``.toml``, by suffix; no header).

        Text is written as it is (a ``$`` is not escaped); JSON objects holding ``null`` need ``.json``.
        """
        from chatdsl.templates.files import write

        write(Path(path), self, {})

    @classmethod
    def load(cls, path: str | Path) -> ChatCompletionRequest:
        """Read the request a template file holds (``.json`` or ``.toml``; ``extends`` followed).

        The header's variable defaults are not applied: use :class:`~chatdsl.RequestTemplate` for them.
        A file whose messages hold variables gives a template (see :meth:`as_template`): render it before
        sending. Every problem is a :class:`~chatdsl.TemplateError` naming the file and the key path.
        """
        from chatdsl.model.templating import mark_if_variables
        from chatdsl.templates.files import DEFAULT_MAX_SIZE, load_file
        from chatdsl.wire.converter import structure_request

        loaded = load_file(Path(path), DEFAULT_MAX_SIZE, placeholders=False, reader=(structure_request, chat))
        return mark_if_variables(loaded[0])  # type: ignore[no-any-return]

    # ---------------------------------------------------------------- templates

    def as_template(self) -> Self:
        """Return a copy marked as an unrendered template: :meth:`validate` refuses it until :meth:`render`.

        The mark is kept by every builder step and by ``merge`` (a merge with a marked side is marked);
        only :meth:`render` clears it, so text added after rendering is never read as a template.
        """
        from chatdsl.model.templating import marked

        return marked(self)

    @property
    def is_template(self) -> bool:
        """Whether this request is an unrendered template (see :meth:`as_template`)."""
        from chatdsl.model.templating import is_unrendered

        return is_unrendered(self)

    @property
    def variables(self) -> tuple[str, ...]:
        """The sorted names of the ``$name`` / ``${name}`` variables in the messages' text.

        Raises :class:`~chatdsl.ValidationError` naming the message path of an invalid placeholder.
        """
        from chatdsl.model.templating import variables

        return variables(self)

    def render(
        self, values: Mapping[str, object] | None = None, /, *, allow_extra: bool = False, **kwargs: object
    ) -> Self:
        """Return a copy with the messages' variables filled from *values* and *kwargs* (strings or numbers).

        A variable without a value, or a value for an unknown name (unless *allow_extra*), is a
        :class:`~chatdsl.ValidationError` naming it. ``$$`` becomes ``$``; substituted text is
        never read again, so a value holding ``$x`` or ``{...}`` stays literal.
        """
        from chatdsl.model.templating import render

        return render(self, values, allow_extra=allow_extra, **kwargs)

    def merge(self, overlay: ChatCompletionRequest) -> Self:
        """Return a copy with *overlay* laid over it (also ``self | overlay``).

        The overlay's set fields win, its messages are appended, its tools replace this request's
        tools of the same name (in place; new ones are appended) and its ``extra`` is merged over
        this one's. Associative, with ``chat()`` as identity on both sides.
        """
        from chatdsl.model.templating import merge

        return merge(self, overlay)

    def __or__(self, overlay: object) -> Self:
        if not isinstance(overlay, ChatCompletionRequest):
            return NotImplemented
        return self.merge(overlay)


_FIELD_NAMES: tuple[str, ...] = tuple(a.name for a in attrs.fields(ChatCompletionRequest))
_FIELD_SPECS: dict[str, tuple[Any, Any, Any]] = {
    a.name: (a.converter, a.validator, a) for a in attrs.fields(ChatCompletionRequest)
}
_MESSAGES_ATTRIBUTE = attrs.fields(ChatCompletionRequest).messages
_check_messages = c.items_of(*MESSAGE_TYPES, what="message")
_set = object.__setattr__
_validators_disabled = attrs.validators.get_disabled


def _read_messages(messages: Sequence[Message | Mapping[str, Any]], offset: int) -> tuple[Message, ...]:
    """Return *messages* with each wire dict read into its message (``messages[offset + i]`` in errors)."""
    if not any(isinstance(m, Mapping) for m in messages):
        return tuple(messages)  # type: ignore[arg-type]
    from chatdsl.wire.converter import structure_message

    return tuple(
        structure_message(m, f"messages[{offset + i}]") if isinstance(m, Mapping) else m for i, m in enumerate(messages)
    )


def _renumber(error: ValidationError, offset: int) -> ValidationError:
    """Return *error* with ``messages[i]`` paths shifted by *offset* (the messages already there)."""

    def shift(path: str) -> str:
        match = re.match(r"messages\[(\d+)\]", path)
        return f"messages[{int(match.group(1)) + offset}]{path[match.end() :]}" if match else path

    return ValidationError("", "", errors=[(shift(path), message) for path, message in error.errors])


def _make_copier() -> Callable[[ChatCompletionRequest], ChatCompletionRequest]:
    """Return a function copying a request slot by slot (generated: one line per slot, no loop).

    A builder step copies the receiver this way, then sets only the fields it changes (see
    ``_replace``): the other fields were converted and validated when the receiver was built.

    The copy is filled as a ``_Draft``: a plain class with the request's slots in the same order
    (so the same memory layout), whose slots take ordinary attribute stores, which the interpreter
    specialises (a frozen class's slot must be set through its descriptor, a call each: four times
    slower). Once every slot is set the copy becomes a request (``__class__`` assignment, which
    Python allows between classes of one layout) before anyone else sees it.
    """
    draft = type("_Draft", (_Marked,), {"__slots__": ChatCompletionRequest.__slots__, "__module__": __name__})
    namespace: dict[str, Any] = {"_new": object.__new__, "_draft": draft, "_cls": ChatCompletionRequest}
    lines = ["def copy(self):", "    new = _new(_draft)"]
    lines += [f"    new.{name} = self.{name}" for name in _FIELD_NAMES]
    # The mark: every request made by __init__, this copier or unpickling has the slot set, so reading it
    # raises nothing (an exception on every builder step would cost it a sixth of its time).
    lines += [
        "    try:",
        "        new._unrendered = self._unrendered",
        "    except AttributeError:",
        "        pass",
        "    new.__class__ = _cls",
        "    return new",
    ]
    exec("\n".join(lines), namespace)  # generated from the class's own slot names
    copier: Callable[[ChatCompletionRequest], ChatCompletionRequest] = namespace["copy"]
    return copier


def _is_marked(request: ChatCompletionRequest) -> bool:
    return getattr(request, "_unrendered", False)


def _getstate(self: ChatCompletionRequest) -> dict[str, Any]:
    state = {a.name: getattr(self, a.name) for a in attrs.fields(type(self))}  # a subclass's fields too
    if _is_marked(self):
        state["_unrendered"] = True
    return state


def _setstate(self: ChatCompletionRequest, state: Mapping[str, Any]) -> None:
    _set(self, "_unrendered", False)
    for name, value in state.items():
        _set(self, name, value)


# attrs' own pickling of a slotted class lists the class's fields only: a subclass without slots
# (whose new fields live in __dict__) would lose them, so the state is read from type(self).
ChatCompletionRequest.__getstate__ = _getstate  # type: ignore[method-assign,assignment]
ChatCompletionRequest.__setstate__ = _setstate  # type: ignore[attr-defined]
_copy_request = _make_copier()


_EMPTY: dict[str, Any] = {"messages": (), "extra": _EMPTY_EXTRA}


def _json_schema(
    schema: SchemaLike, *, name: str | None, description: str | UnsetType, strict: bool | UnsetType
) -> JsonSchema:
    if isinstance(schema, JsonSchema):
        return schema
    if isinstance(schema, type):
        from chatdsl.output.schema import schema_for_response

        return JsonSchema(**schema_for_response(schema, name=name, description=description, strict=strict))
    if isinstance(schema, PropertyDefinition):
        schema = schema.to_schema()
    if name is None:
        title = schema.get("title") if isinstance(schema, Mapping) else None
        name = title if isinstance(title, str) and title else "response"
    try:
        return JsonSchema(name=name, schema=schema, description=description, strict=strict)
    except ValidationError as exc:
        raise exc.with_prefix("response_format.json_schema") from None


def completeness_errors(request: ChatCompletionRequest, *, any_last: bool = False) -> Iterable[tuple[str, str]]:
    """Yield the problems :meth:`~ChatCompletionRequest.validate` reports.

    *any_last*: any message may end the conversation (OpenAI's API answers after any), so the rule
    on the last message is skipped.
    """
    if _is_marked(request):
        yield _unrendered_error(request)
    if request.model is UNSET:
        yield ("model", "is not set; a request needs a model to be sent")
    messages = request.messages
    if not messages:
        yield ("messages", "is empty; a request needs at least one message")
    elif not any_last:
        last = messages[-1]
        if isinstance(last, SystemMessage) or (isinstance(last, AssistantMessage) and last.prefix is not True):
            yield (
                f"messages[{len(messages) - 1}]",
                f"is {c.article(last.role.value)} message; the last message must be a user or tool message "
                "(or an assistant message with prefix=True)",
            )
    call_ids: set[str] = set()
    for index, message in enumerate(messages):
        if isinstance(message, AssistantMessage):
            if message.prefix is True and index != len(messages) - 1:
                yield (f"messages[{index}].prefix", "True is only allowed on the last message")
            for call in message.tool_calls or ():
                if call.id is not UNSET:
                    call_ids.add(call.id)
        elif isinstance(message, ToolMessage):
            if message.tool_call_id is UNSET:
                yield (f"messages[{index}].tool_call_id", "is not set; a tool message answers a tool call id")
            elif message.tool_call_id not in call_ids:
                yield (
                    f"messages[{index}].tool_call_id",
                    f"{message.tool_call_id!r} answers no tool call of an earlier assistant message",
                )
    names = {tool.name for tool in request.tools or ()}
    choice = request.tool_choice
    if isinstance(choice, ToolChoice):
        if choice.function is not UNSET and choice.function not in names:
            known = ", ".join(sorted(names)) or "none"
            yield ("tool_choice", f"{choice.function!r} names no tool in tools (tools: {known})")
        elif choice.forces_call and not names:
            yield ("tool_choice", f"{str(choice.mode)!r} forces a tool call but no tools are set")


def _unrendered_error(request: ChatCompletionRequest) -> tuple[str, str]:
    try:
        names = request.variables
    except ValidationError as exc:
        return ("messages", f"come from a template that is not rendered and cannot be: {exc}")
    if names:
        return (
            "messages",
            f"come from a template that is not rendered (variables to fill: {', '.join(names)}); "
            "call render() with their values before sending",
        )
    return (
        "messages",
        "come from a template that is not rendered (it has no variables); call render() with no values "
        "to mark it ready to send",
    )


def chat(model: str | UnsetType | None = None) -> ChatCompletionRequest:
    """Return an empty request (a template), with *model* set if given: the builder's entry point.

    ``None`` and ``UNSET`` both leave the model unset.
    """
    if model is None or model is UNSET:
        return _EMPTY_REQUEST
    return _EMPTY_REQUEST._replace(model=model)  # one field to check, not the constructor's thirty


_EMPTY_REQUEST = ChatCompletionRequest()
