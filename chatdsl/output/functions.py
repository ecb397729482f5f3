"""Tools from Python functions and types: :func:`tool`, :class:`FunctionTool`, tool-call arguments.

A :class:`FunctionTool` pairs a function with the :class:`~chatdsl.Tool` that describes it: name
from the function, description from the docstring's first paragraph, parameter descriptions from a
Google (``Args:``) or NumPy (``Parameters``) section, the parameters schema from the annotations
and defaults (through :mod:`chatdsl.output.schema`). :meth:`FunctionTool.invoke` calls the function with
JSON arguments, each structured to its annotated type by the output converter.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Final, Generic, ParamSpec, TypeVar, overload

import attrs

from chatdsl._errors import OutputError, ValidationError
from chatdsl._types import UNSET, UnsetType, none_if_unset, thaw, unset_if_none
from chatdsl.model.messages import ToolCall, call_arguments, raw_arguments
from chatdsl.model.tools import Function, Tool
from chatdsl.output.convert import structure_output
from chatdsl.output.pydantic_models import is_pydantic_model
from chatdsl.output.schema import (
    NO_DEFAULT,
    Builder,
    class_summary,
    is_record,
    json_default,
    json_schema,
    parse_docstring,
)

__all__ = ["FunctionTool", "call_arguments", "function_tool", "raw_arguments", "tool", "type_tool"]

_P = ParamSpec("_P")
_R = TypeVar("_R")

_TOOL_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


@attrs.frozen
class _Parameter:
    name: str
    annotation: Any
    positional_only: bool
    default: Any  # inspect.Parameter.empty when there is none


class FunctionTool(Generic[_P, _R]):
    """A function together with the :class:`~chatdsl.Tool` that describes it to the model.

    Calling it calls the function unchanged. ``tool`` is the definition to send (``name`` is its
    name); :meth:`invoke` calls the function with the JSON arguments of a tool call. Made by
    :func:`chatdsl.tool` (a decorator) or :meth:`FunctionTool.from_function`.
    """

    function: Callable[_P, _R]
    tool: Tool

    def __init__(self, function: Callable[_P, _R], tool: Tool, parameters: tuple[_Parameter, ...]) -> None:
        functools.update_wrapper(self, function)  # first: it copies the function's __dict__ over ours
        self.function = function
        self.tool = tool
        self._parameters = parameters

    @classmethod
    def from_function(
        cls,
        function: Callable[_P, _R],
        *,
        name: str | UnsetType | None = None,
        description: str | UnsetType | None = None,
        strict: bool | UnsetType | None = UNSET,
    ) -> FunctionTool[_P, _R]:
        """Return *function* with its tool definition (see :func:`chatdsl.tool`)."""
        return function_tool(function, name=name, description=description, strict=strict)

    @property
    def name(self) -> str:
        """The tool's name."""
        return self.tool.name

    def __call__(self, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        return self.function(*args, **kwargs)

    def invoke(self, arguments: Mapping[str, Any] | ToolCall) -> _R:
        """Call the function with JSON *arguments* (a mapping, or a tool call's arguments).

        Each argument is structured to its parameter's annotated type (attrs classes, enums,
        datetimes, ...). A missing required argument, an unknown one or one of the wrong shape
        raises :class:`~chatdsl.OutputError` naming the parameter; the function is not called then.
        """
        args, kwargs = self._bind(arguments)
        return self.function(*args, **kwargs)

    def _bind(self, arguments: Mapping[str, Any] | ToolCall) -> tuple[list[Any], dict[str, Any]]:
        """Return the positional and keyword arguments to call the function with (see :meth:`invoke`)."""
        if isinstance(arguments, Mapping):
            data = dict(arguments)
            raw = json.dumps(thaw(data), ensure_ascii=False, default=repr)  # text for errors: any value shows
        else:
            data = call_arguments(arguments)
            raw = raw_arguments(arguments)
        known = {p.name for p in self._parameters}
        for key in data:
            if key not in known:
                listed = ", ".join(p.name for p in self._parameters) or "none"
                raise OutputError(f"is not a parameter of {self.name} (parameters: {listed})", content=raw, path=key)
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for parameter in self._parameters:
            if parameter.name in data:
                value = structure_output(data[parameter.name], parameter.annotation, content=raw, path=parameter.name)
            elif parameter.default is not inspect.Parameter.empty:
                if not parameter.positional_only:
                    continue
                value = parameter.default
            else:
                raise OutputError(f"is required by {self.name}", content=raw, path=parameter.name)
            if parameter.positional_only:
                args.append(value)
            else:
                kwargs[parameter.name] = value
        return args, kwargs

    def __repr__(self) -> str:
        return f"FunctionTool({self.name!r}, {self.function!r})"


@overload
def tool(function: Callable[_P, _R], /) -> FunctionTool[_P, _R]: ...
@overload
def tool(
    *,
    name: str | UnsetType | None = None,
    description: str | UnsetType | None = None,
    strict: bool | UnsetType | None = UNSET,
) -> Callable[[Callable[_P, _R]], FunctionTool[_P, _R]]: ...
def tool(
    function: Callable[_P, _R] | None = None,
    /,
    *,
    name: str | UnsetType | None = None,
    description: str | UnsetType | None = None,
    strict: bool | UnsetType | None = UNSET,
) -> FunctionTool[_P, _R] | Callable[[Callable[_P, _R]], FunctionTool[_P, _R]]:
    """Decorate a function as a tool: ``@chatdsl.tool`` or ``@chatdsl.tool(name=..., strict=True)``.

    Returns a :class:`FunctionTool`: still callable as before, with ``.tool`` (the definition to
    send) and ``.invoke(arguments)``. ``name`` defaults to the function's name, ``description`` to
    the first paragraph of its docstring; parameter descriptions come from an ``Args:`` or
    ``Parameters`` section (or ``Annotated[T, "..."]``). Parameters without defaults are required;
    with ``strict=True`` all are, and the function definition is marked ``strict``. For ``name``,
    ``description`` and ``strict``, ``None`` and ``UNSET`` both mean "not given".
    """

    def decorate(fn: Callable[_P, _R]) -> FunctionTool[_P, _R]:
        return function_tool(fn, name=name, description=description, strict=strict)

    if function is not None:
        return decorate(function)
    return decorate


def function_tool(
    function: Callable[_P, _R],
    *,
    name: str | UnsetType | None = None,
    description: str | UnsetType | None = None,
    strict: bool | UnsetType | None = UNSET,
) -> FunctionTool[_P, _R]:
    """Return *function* paired with the tool that describes it (see :func:`tool`)."""
    name, description, strict = none_if_unset(name), none_if_unset(description), unset_if_none(strict)
    if isinstance(function, FunctionTool):
        function = function.function
    if not callable(function):
        raise ValidationError("function", f"{function!r} is not callable")
    name = _tool_name(function, name)
    try:
        signature = inspect.signature(function, eval_str=True)
    except (NameError, SyntaxError, TypeError) as exc:
        raise ValidationError(name, f"the signature cannot be read ({exc})") from None
    except ValueError as exc:  # builtins without a signature
        raise ValidationError(name, f"has no signature to describe ({exc})") from None
    summary, documented = parse_docstring(inspect.getdoc(function))
    builder = Builder(strict=strict is True)
    properties: dict[str, Any] = {}
    required: list[str] = []
    parameters: list[_Parameter] = []
    for parameter in signature.parameters.values():
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue  # a model passes named arguments only
        path = f"{name}.{parameter.name}"
        if parameter.annotation is inspect.Parameter.empty:
            raise ValidationError(path, "has no type annotation; annotate it (typing.Any accepts any JSON value)")
        schema = builder.schema(parameter.annotation, path)
        if "description" not in schema and parameter.name in documented:
            schema = {**schema, "description": documented[parameter.name]}
        has_default = parameter.default is not inspect.Parameter.empty
        if has_default and strict is not True:
            default = json_default(parameter.default)
            if default is not NO_DEFAULT:
                schema = {**schema, "default": default}
        else:
            required.append(parameter.name)
        properties[parameter.name] = schema
        parameters.append(
            _Parameter(
                name=parameter.name,
                annotation=parameter.annotation,
                positional_only=parameter.kind is inspect.Parameter.POSITIONAL_ONLY,
                default=parameter.default,
            )
        )
    schema_: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema_["required"] = required
    schema_["additionalProperties"] = False
    definition = Tool(
        function=Function(
            name=name,
            parameters=builder.finish(schema_),
            description=_description(description, summary),
            strict=strict,
        )
    )
    return FunctionTool(function, definition, tuple(parameters))


def type_tool(
    tp: type[Any],
    *,
    name: str | UnsetType | None = None,
    description: str | UnsetType | None = None,
    strict: bool | UnsetType | None = UNSET,
) -> Tool:
    """Return the tool whose arguments are an instance of the attrs class or dataclass *tp*."""
    name, description, strict = none_if_unset(name), none_if_unset(description), unset_if_none(strict)
    if not is_record(tp) and not is_pydantic_model(tp):
        raise ValidationError(
            "tp", f"{tp!r} is not an attrs class, a dataclass or a pydantic model; Tool.from_type needs one"
        )
    return Tool(
        function=Function(
            name=_tool_name(tp, name),
            parameters=json_schema(tp, strict=strict is True),
            description=_description(description, class_summary(tp)),
            strict=strict,
        )
    )


def _tool_name(obj: Any, name: str | None) -> str:
    if name is None:
        name = getattr(obj, "__name__", None)
        if not isinstance(name, str):
            raise ValidationError("name", f"{obj!r} has no __name__; give the tool a name=")
    if not _TOOL_NAME.fullmatch(name):
        raise ValidationError(
            "name", f"{name!r} is not a valid tool name (1 to 64 letters, digits, '_' or '-'); give a name="
        )
    return name


def _description(given: str | None, summary: str) -> str | UnsetType:
    if given is not None:
        return given
    return summary or UNSET
