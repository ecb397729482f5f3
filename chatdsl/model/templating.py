"""Variables, rendering and composition of requests: pure model operations.

Variables
    Message text (a string ``content``, or the text of ``TextChunk`` parts, in messages of every
    role) may hold ``string.Template`` placeholders: ``$name``, ``${name}``, and ``$$`` for a
    literal dollar. No other field is a template. Rendering substitutes once and never re-reads
    what it put in, so a value holding ``$x`` or ``{...}`` stays literal.

Composition
    ``merge(base, overlay)``: the overlay's set fields win, messages are appended, tools are merged
    by name (the overlay's replace the base's of the same name, in the base's order; new ones are
    appended) and ``extra`` is merged key by key. Associative, with ``chat()`` as identity.

Unrendered templates
    A request that came from a template carries a private mark (a slot, not a field: never sent,
    not compared): :func:`marked` sets it, every builder step and :func:`merge` (with a marked side)
    keep it, :func:`render` clears it, and ``validate()`` refuses a marked request. Plain builder
    text is never marked, so ``$x`` in a request built with ``chat()`` is sent as it is; text added
    after rendering is never read as a template.

This module does not import :mod:`chatdsl.model.request` (whose methods call it), so no import
circle forms; requests are typed structurally here.
"""

from __future__ import annotations

import difflib
import math
import re
import string
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final, TypeVar

import attrs

from chatdsl._checks import type_name
from chatdsl._errors import ValidationError
from chatdsl._types import UNSET
from chatdsl.model.messages import TextChunk
from chatdsl.model.tools import IMPLIED_AUTO

__all__ = ["compile_render", "is_unrendered", "mark_if_variables", "marked", "merge", "render", "variables"]

_R = TypeVar("_R")
"""A :class:`~chatdsl.ChatCompletionRequest` (or subclass), typed loosely: importing the request module here
would close an import circle (its methods call these functions)."""
_PATTERN: Final = string.Template.pattern
_SNIPPET: Final = re.compile(r"\$\S{0,10}")

# ------------------------------------------------------------------------------------------ mark

_MARK: Final = "_unrendered"


def is_unrendered(request: Any) -> bool:
    """Return whether *request* is a template still to render (see the module docs)."""
    return getattr(request, _MARK, False)


def _with_mark(request: _R, flag: bool) -> _R:
    if is_unrendered(request) is flag:
        return request
    new: Any = request._replace()  # type: ignore[attr-defined]
    object.__setattr__(new, _MARK, flag)
    return new  # type: ignore[no-any-return]


def marked(request: _R) -> _R:
    """Return *request* marked as an unrendered template (``validate()`` refuses it until ``render()``)."""
    return _with_mark(request, True)


def mark_if_variables(request: _R) -> _R:
    """Return *request* marked as a template if its text holds variables (text with an invalid ``$`` is literal)."""
    try:
        names = variables(request)
    except ValidationError:
        return request
    return marked(request) if names else request


# ------------------------------------------------------------------------------------- variables


def _texts(request: Any) -> Iterator[tuple[str, str]]:
    """Yield ``(path, text)`` for every text that may hold placeholders."""
    for index, message in enumerate(request.messages):
        content = message.content
        if isinstance(content, str):
            yield f"messages[{index}].content", content
        elif isinstance(content, tuple):
            for part_index, part in enumerate(content):
                if isinstance(part, TextChunk):
                    yield f"messages[{index}].content[{part_index}].text", part.text


def _scan(path: str, text: str, names: set[str], problems: list[tuple[str, str]]) -> None:
    if "$" not in text:
        return
    for match in _PATTERN.finditer(text):
        name = match.group("named") or match.group("braced")
        if name is not None:
            names.add(name)
        elif match.group("invalid") is not None:
            start = match.start("invalid") - 1
            found = _SNIPPET.match(text, start)
            snippet = found.group() if found else "$"
            problems.append(
                (
                    path,
                    f"has an invalid placeholder {snippet!r} at character {start}; "
                    "write $name or ${name} for a variable and $$ for a literal dollar",
                )
            )


def variables(request: Any) -> tuple[str, ...]:
    """Return the sorted names of the variables in *request*'s message text.

    Raises :class:`~chatdsl.ValidationError` naming every message path with an invalid placeholder
    (a ``$`` followed by neither a name, ``{name}`` nor another ``$``).
    """
    names: set[str] = set()
    problems: list[tuple[str, str]] = []
    for path, text in _texts(request):
        _scan(path, text, names, problems)
    if problems:
        raise ValidationError("", "", errors=problems)
    return tuple(sorted(names))


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the name in *known* closest to *name*, or ``""`` if none is close."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def value_text(name: str, value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValidationError(name, f"{value!r} is not a finite number")
        try:
            return str(value)
        except ValueError:  # Python's limit on the digits of an int turned into text
            bits = int(value).bit_length()
            raise ValidationError(name, f"is an integer too long to write as text ({bits} bits)") from None
    raise ValidationError(name, f"{value!r} is {type_name(value)}; a value is a string or a number")


def _substitute(text: str, values: Mapping[str, str]) -> str:
    if "$" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        name = match.group("named") or match.group("braced")
        if name is not None:
            return values[name]
        return "$"  # the escape "$$" (invalid placeholders were refused before)

    return _PATTERN.sub(replace, text)


def render(
    request: _R, values: Mapping[str, object] | None = None, /, *, allow_extra: bool = False, **kwargs: object
) -> _R:
    """Return a copy of *request* with every variable in its message text replaced by its value.

    *values* and *kwargs* give the values (strings or numbers; *kwargs* win). A variable without a
    value, or a value for a name that is not a variable (unless *allow_extra*), is a
    :class:`~chatdsl.ValidationError` naming it; every problem is reported at once. ``$$`` becomes
    ``$``. Substituted text is never read again: a value holding ``$x`` stays ``$x``.
    """
    given = {**(values or {}), **kwargs}
    names = variables(request)
    problems: list[tuple[str, str]] = []
    texts: dict[str, str] = {}
    for name, value in given.items():
        try:
            texts[name] = value_text(name, value)
        except ValidationError as exc:
            problems += exc.errors
    known = ", ".join(names) or "none"
    problems += [
        (name, f"is a variable of the request but has no value (variables: {known})")
        for name in names
        if name not in given
    ]
    if not allow_extra:
        problems += [
            (
                name,
                f"is not a variable of the request{did_you_mean(name, names)} (variables: {known}); "
                "pass allow_extra=True to allow it",
            )
            for name in given
            if name not in names
        ]
    if problems:
        raise ValidationError("", "", errors=problems)
    if not any("$" in text for _, text in _texts(request)):
        return _with_mark(request, False)
    messages = []
    original: Any = request
    for message in original.messages:
        content = message.content
        if isinstance(content, str):
            new: Any = _substitute(content, texts)
        elif isinstance(content, tuple):
            new = tuple(
                TextChunk(text=_substitute(part.text, texts)) if isinstance(part, TextChunk) else part
                for part in content
            )
        else:
            new = content
        messages.append(message if new == content else attrs.evolve(message, content=new))
    return _with_mark(attrs.evolve(original, messages=tuple(messages)), False)  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------------- composition


def _merge_tools(base: Any, overlay: Any) -> Any:
    if overlay is UNSET:
        return base
    if base is UNSET:
        return overlay
    by_name = {tool.name: tool for tool in overlay}
    merged = [by_name.pop(tool.name, tool) for tool in base]
    return (*merged, *by_name.values())


_SPECIAL: Final = ("messages", "tools", "extra")


_PLAIN_FIELDS: dict[type, tuple[str, ...]] = {}


def _plain_fields(cls: type) -> tuple[str, ...]:
    """The fields ``merge`` takes from the overlay when set: those of the request class (a subclass's own are not)."""
    names = _PLAIN_FIELDS.get(cls)
    if names is None:
        root = next(k for k in reversed(cls.__mro__) if attrs.has(k))  # ChatCompletionRequest itself
        names = _PLAIN_FIELDS[cls] = tuple(a.name for a in attrs.fields(root) if a.name not in _SPECIAL)
    return names


def merge(base: _R, overlay: Any) -> _R:
    """Return *base* with *overlay* laid over it.

    The overlay's set fields win; messages are appended; tools are merged by name (an overlay
    tool replaces the base's tool of the same name in its place, new tools are appended); ``extra``
    is merged key by key, the overlay winning. The ``auto`` tool choice the overlay's ``with_tools``
    implied does not replace a choice the base has (as ``base.with_tools(...)`` would keep it).
    """
    base_: Any = base
    changes: dict[str, Any] = {
        name: getattr(overlay, name) for name in _plain_fields(type(overlay)) if getattr(overlay, name) is not UNSET
    }
    if overlay.tool_choice is IMPLIED_AUTO and base_.tool_choice is not UNSET:
        del changes["tool_choice"]  # the overlay's with_tools() chose nothing: the base's choice stays
    if overlay.messages:
        changes["messages"] = base_.messages + overlay.messages
    if overlay.tools is not UNSET:
        changes["tools"] = _merge_tools(base_.tools, overlay.tools)
    if overlay.extra:
        changes["extra"] = {**base_.extra, **overlay.extra}
    merged = attrs.evolve(base_, **changes) if changes else base
    return marked(merged) if is_unrendered(base) or is_unrendered(overlay) else merged


# ----------------------------------------------------------------------------------- many renders


def _format_string(text: str) -> str:
    """Return *text* as a ``str.format_map`` string: ``$name`` and ``${name}`` become ``{name}``, ``$$`` a ``$``."""
    out: list[str] = []
    end = 0
    for match in _PATTERN.finditer(text):
        out.append(text[end : match.start()].replace("{", "{{").replace("}", "}}"))
        name = match.group("named") or match.group("braced")
        out.append("$" if name is None else "{" + name + "}")  # "$$" (invalid ones were refused before)
        end = match.end()
    out.append(text[end:].replace("{", "{{").replace("}", "}}"))
    return "".join(out)


def compile_render(request: _R) -> Callable[[Mapping[str, str]], _R]:
    """Return a function that renders *request* from the text of every one of its variables, fast.

    The placeholders are found once, here; each call only fills the texts in (``str.format_map``)
    and rebuilds the messages that hold variables: the other fields, already validated, are
    shared, not checked again. The function expects a text for every variable (a ``KeyError``
    otherwise): check the values first (as :func:`render` does), or use :func:`render`.
    """
    variables(request)  # refuses invalid placeholders now
    original: Any = request
    slots: list[tuple[int, Any, Any]] = []  # (message index, message, str format | tuple of part formats)
    for index, message in enumerate(original.messages):
        content = message.content
        if isinstance(content, str) and "$" in content:
            slots.append((index, message, _format_string(content)))
        elif isinstance(content, tuple) and any(isinstance(p, TextChunk) and "$" in p.text for p in content):
            parts = tuple(_format_string(p.text) if isinstance(p, TextChunk) and "$" in p.text else p for p in content)
            slots.append((index, message, parts))
    messages = original.messages

    def fill(texts: Mapping[str, str]) -> _R:
        new_messages = list(messages)
        for index, message, template in slots:
            if isinstance(template, str):
                content: Any = template.format_map(texts)
            else:
                content = tuple(
                    TextChunk(text=part.format_map(texts)) if isinstance(part, str) else part for part in template
                )
            new_messages[index] = attrs.evolve(message, content=content)
        new = original._replace(messages=tuple(new_messages))
        object.__setattr__(new, _MARK, False)  # a fresh copy: rendered
        return new  # type: ignore[no-any-return]

    return fill
