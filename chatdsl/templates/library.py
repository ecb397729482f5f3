"""Request templates (a request plus its header) and the template library (a folder of template files).

File reading and writing live in :mod:`chatdsl.templates.files`; variables, rendering and merging in
:mod:`chatdsl.model.templating`. Both are re-exported here.

Variables
    Message text (a string ``content``, or the text of ``TextChunk`` parts, in messages of every
    role) may hold ``string.Template`` placeholders: ``$name``, ``${name}``, and ``$$`` for a
    literal dollar. No other field is a template: model names, tool descriptions, schemas and
    URLs are sent as written. Rendering substitutes once and never re-reads what it put in, so a
    value holding ``$x`` or ``{...}`` stays literal.

Composition
    ``merge(base, overlay)``: the overlay's set fields win, messages are appended, tools are merged
    by name (the overlay's replace the base's of the same name, in the base's order; new ones are
    appended) and ``extra`` is merged key by key. Associative, with ``chat()`` as identity.

Files (``.json`` or ``.toml``, UTF-8, at most :data:`DEFAULT_MAX_SIZE` bytes by default)
    The top level is the wire body of the request (``to_dict()``) with two reserved keys:
    ``template`` (the optional header: ``description``, ``extends``, ``variables``) and ``extra``
    (body fields sent as they are, as with ``with_extra()``). Reading is strict: an unknown key is
    a :class:`~chatdsl.TemplateError` naming the file and the key path. ``extends`` names another
    template file, relative to this one; this file's body is merged over the parent's, its
    variables over the parent's field by field; a description belongs to its own file. Cycles are
    refused, listing the chain. Files are data only: nothing in them is ever executed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar, overload

import attrs

from chatdsl._checks import type_name
from chatdsl._errors import TemplateError, ValidationError
from chatdsl._types import UNSET
from chatdsl.model.request import ChatCompletionRequest, chat
from chatdsl.model.templating import (
    compile_render,
    did_you_mean,
    mark_if_variables,
    marked,
    merge,
    render,
    value_text,
    variables,
)
from chatdsl.templates.files import (
    DEFAULT_MAX_SIZE,
    MAX_PROBLEMS,
    Loader,
    Reader,
    Variable,
    check_description,
    check_variables,
    load_file,
    template_files,
    to_variables,
    write,
)

__all__ = [
    "DEFAULT_MAX_SIZE",
    "MAX_PROBLEMS",
    "RequestTemplate",
    "TemplateInfo",
    "TemplateLibrary",
    "Variable",
    "load",
    "merge",
    "render",
    "save",
    "variables",
]

_R = TypeVar("_R", bound=ChatCompletionRequest)


def _reader() -> Reader:
    from chatdsl.wire.converter import structure_request

    return structure_request, chat


def save(request: ChatCompletionRequest, path: str | Path) -> None:
    """Write *request* as a template file (``.json`` or ``.toml``, chosen by the suffix), without header."""
    write(Path(path), request, {})


def load(path: str | Path, *, max_size: int = DEFAULT_MAX_SIZE) -> ChatCompletionRequest:
    """Read the request a template file holds (``extends`` followed; the header's defaults are not applied).

    Message text is taken as it is: placeholders are checked when the request is rendered (or by
    :meth:`RequestTemplate.load`), so a saved request holding a lone ``$`` loads back unchanged.
    A file whose messages hold variables gives a template: render it before sending.
    """
    return mark_if_variables(load_file(Path(path), max_size, placeholders=False, reader=_reader())[0])  # type: ignore[no-any-return]


def _as_template(request: Any) -> Any:
    """Mark a template's request as unrendered: it is sent only through :meth:`RequestTemplate.render`."""
    return marked(request) if isinstance(request, ChatCompletionRequest) else request


@attrs.frozen(kw_only=True)
class TemplateInfo:
    """What a template is for and which variables it takes: a line of :meth:`TemplateLibrary.describe`."""

    name: str
    description: str
    variables: tuple[Variable, ...]
    path: Path | None = None
    abstract: bool = False
    """Whether the template is meant only to be extended (its header says ``abstract = true``)."""


@attrs.frozen(kw_only=True)
class RequestTemplate:
    """A request with placeholders plus its header: a description and declared variables.

    ``variables`` are the declared ones (with descriptions and defaults); the names the messages
    use are ``request.variables``. ``request`` is marked unrendered (``validate()`` refuses it, and
    so does every client): send ``template.render(...)``, never ``template.request``.
    A template's message text must hold only valid placeholders.
    Load one with :meth:`load`; fill it in with :meth:`render`.
    """

    request: ChatCompletionRequest = attrs.field(
        factory=chat, converter=_as_template, validator=attrs.validators.instance_of(ChatCompletionRequest)
    )
    description: str = attrs.field(default="", validator=check_description)
    variables: tuple[Variable, ...] = attrs.field(default=(), converter=to_variables, validator=check_variables)
    path: Path | None = attrs.field(default=None, eq=False)
    abstract: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    """Whether the template is meant only to be extended (``abstract = true`` in its header; not inherited)."""

    def __attrs_post_init__(self) -> None:
        variables(self.request)  # refuse invalid placeholders once, on construction

    @property
    def defaults(self) -> dict[str, str | int | float]:
        """The declared variables' defaults, by name."""
        return {v.name: v.default for v in self.variables if v.default is not UNSET}

    def describe(self, name: str = "") -> TemplateInfo:
        """Return what this template is for and every variable it uses or declares, sorted by name."""
        declared = {v.name: v for v in self.variables}
        return TemplateInfo(
            name=name or (self.path.stem if self.path is not None else ""),
            description=self.description,
            variables=tuple(declared.get(n) or Variable(name=n) for n in variable_names(self)),
            path=self.path,
            abstract=self.abstract,
        )

    def render(
        self, values: Mapping[str, object] | None = None, /, *, allow_extra: bool = False, **kwargs: object
    ) -> ChatCompletionRequest:
        """Return the request with its variables filled: *values* and *kwargs* first, defaults for the rest.

        A variable with neither a value nor a default, or an unknown name (neither used nor declared,
        unless *allow_extra*), is a :class:`~chatdsl.ValidationError` naming it.
        """
        given = {**(values or {}), **kwargs}
        used = set(self.request.variables)
        known = variable_names(self)
        listed = ", ".join(known) or "none"
        problems = [
            (name, f"is a variable of the request but has no value and no default (variables: {listed})")
            for name in missing_names(self, given)
        ]
        if not allow_extra:
            problems += [
                (
                    name,
                    f"is not a variable of the template{did_you_mean(name, known)} (variables: {listed}); "
                    "pass allow_extra=True",
                )
                for name in unknown_names(self, given)
            ]
        if problems:
            raise ValidationError("", "", errors=problems)
        filled = {name: value for name, value in {**self.defaults, **given}.items() if name in used}
        return render(self.request, filled)

    def renderer(self, *, allow_extra: bool = False) -> Callable[[Mapping[str, object]], ChatCompletionRequest]:
        """Return a function rendering this template from one row of values: ``render(row)``, but fast.

        The template is compiled once (placeholders found, defaults turned into text); each call
        checks the row's names, fills the texts in and rebuilds only the messages that hold
        variables. A row :meth:`render` would refuse raises the same :class:`~chatdsl.ValidationError`.
        """
        fill = compile_render(self.request)
        used = frozenset(self.request.variables)
        known = frozenset(variable_names(self))
        defaults = {name: value_text(name, value) for name, value in self.defaults.items() if name in used}
        need = len(used)

        def render_row(values: Mapping[str, object]) -> ChatCompletionRequest:
            if type(values) is not dict and not isinstance(values, Mapping):
                raise ValidationError("", f"{values!r} is {type_name(values)}, not a mapping of variable values")
            texts = dict(defaults)
            try:
                for name, value in values.items():
                    if name in used:
                        texts[name] = value if type(value) is str else value_text(name, value)
                    elif not allow_extra and name not in known:
                        raise ValidationError(name, "is unknown")
            except ValidationError:
                texts = {}  # the slow path below words every problem as render() does
            if len(texts) < need:
                return self.render(values, allow_extra=allow_extra)
            return fill(texts)

        return render_row

    @overload
    def render_many(
        self, rows: Iterable[Mapping[str, object]], /, *, allow_extra: bool = False
    ) -> Iterator[ChatCompletionRequest]: ...
    @overload
    def render_many(
        self, rows: Iterable[tuple[str, Mapping[str, object]]], /, *, allow_extra: bool = False
    ) -> Iterator[tuple[str, ChatCompletionRequest]]: ...
    def render_many(
        self,
        rows: Iterable[Mapping[str, object]] | Iterable[tuple[str, Mapping[str, object]]],
        /,
        *,
        allow_extra: bool = False,
    ) -> Iterator[ChatCompletionRequest] | Iterator[tuple[str, ChatCompletionRequest]]:
        """Yield the request of each row, lazily: a row is a mapping of values, or a ``(key, mapping)`` pair.

        A mapping row gives its request; a ``(key, mapping)`` pair gives ``(key, request)``, ready for
        :meth:`Client.run_many <chatdsl.Client.run_many>`. The template is compiled once
        (:meth:`renderer`), so rendering many rows costs little more than the substitutions. A row
        that cannot be rendered raises :class:`~chatdsl.ValidationError` with its paths under
        ``rows[i]`` (for a mapping) or ``rows['key']`` (for a pair), when it is reached.
        """
        return self._render_many(rows, self.renderer(allow_extra=allow_extra))

    @staticmethod
    def _render_many(rows: Iterable[Any], render_row: Callable[[Mapping[str, object]], Any]) -> Iterator[Any]:
        for index, row in enumerate(rows):
            keyed = isinstance(row, tuple)
            try:
                if keyed:
                    key, values = row
                    yield key, render_row(values)
                else:
                    yield render_row(row)
            except ValidationError as exc:
                raise exc.with_prefix(f"rows[{key!r}]" if keyed else f"rows[{index}]") from None

    @classmethod
    def load(cls, path: str | Path, *, max_size: int = DEFAULT_MAX_SIZE) -> RequestTemplate:
        """Read a template file (``.json`` or ``.toml``), following ``extends``; see the module docs.

        Every problem is a :class:`~chatdsl.TemplateError` naming the file and the key path.
        """
        request, description, declared, abstract = load_file(Path(path), max_size, placeholders=True, reader=_reader())
        return cls(request=request, description=description, variables=declared, path=Path(path), abstract=abstract)

    def save(self, path: str | Path) -> None:
        """Write this template (header and body; ``extends`` is already resolved) as ``.json`` or ``.toml``."""
        header: dict[str, Any] = {}
        if self.description:
            header["description"] = self.description
        if self.variables:
            header["variables"] = {v.name: _variable_dict(v) for v in self.variables}
        if self.abstract:
            header["abstract"] = True
        write(Path(path), self.request, header)


def _variable_dict(var: Variable) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if var.description:
        out["description"] = var.description
    if var.default is not UNSET:
        out["default"] = var.default
    return out


# --------------------------------------------------------------------------------------- library


def variable_names(template: RequestTemplate) -> list[str]:
    """Return the names of the variables *template*'s messages use or its header declares, sorted."""
    return sorted({*template.request.variables, *(v.name for v in template.variables)})


def unknown_names(template: RequestTemplate, given: Mapping[str, object]) -> list[str]:
    """Return the names in *given* that *template* neither uses nor declares, in *given*'s order."""
    known = set(variable_names(template))
    return [name for name in given if name not in known]


def missing_names(template: RequestTemplate, given: Mapping[str, object]) -> list[str]:
    """Return *template*'s used variables with neither a value in *given* nor a default, sorted."""
    defaults = template.defaults
    return [name for name in template.request.variables if name not in given and name not in defaults]


class TemplateLibrary(Mapping[str, RequestTemplate]):
    """Every template file (``*.json``, ``*.toml``) of a folder, by file name without suffix.

    All files are read and checked when the library is made; the problems of every bad file are
    reported together in one :class:`~chatdsl.TemplateError`. ``library["extract"]`` is a
    :class:`RequestTemplate`; ``names()`` and :meth:`describe` list what the folder holds.
    """

    __slots__ = ("_directory", "_templates")

    def __init__(self, directory: str | Path, *, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self._directory = Path(directory)
        try:
            files = template_files(self._directory)
            root = self._directory.resolve()
        except (NotADirectoryError, FileNotFoundError):
            raise TemplateError([(str(self._directory), "", "is not a directory")]) from None
        except OSError as exc:
            raise TemplateError([(str(self._directory), "", f"cannot be listed ({exc.strerror or exc})")]) from None
        loader = Loader(max_size, placeholders=True, reader=_reader(), root=root)
        templates: dict[str, RequestTemplate] = {}
        problems: dict[tuple[str, str, str], None] = {}  # each problem once, in order (a child shares its parent's)
        for file in files:
            if file.stem in templates:
                problems[str(file), "", f"has the same name as {templates[file.stem].path}"] = None
                continue
            try:
                request, description, declared, abstract = loader.load(file)
                templates[file.stem] = RequestTemplate(
                    request=request, description=description, variables=declared, path=file, abstract=abstract
                )
            except TemplateError as exc:
                problems.update(dict.fromkeys(exc.problems))
        if problems:
            raise TemplateError(list(problems))
        self._templates = templates

    @property
    def directory(self) -> Path:
        """The folder the templates were read from."""
        return self._directory

    def __getitem__(self, name: str) -> RequestTemplate:
        try:
            return self._templates[name]
        except KeyError:
            known = ", ".join(self._templates) or "none"
            raise KeyError(f"no template {name!r} in {self._directory} (templates: {known})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._templates)

    def __len__(self) -> int:
        return len(self._templates)

    def __contains__(self, name: object) -> bool:
        return name in self._templates

    def names(self) -> tuple[str, ...]:
        """Return the template names, sorted."""
        return tuple(self._templates)

    def describe(self) -> tuple[TemplateInfo, ...]:
        """Return each template's name, description and variables (with descriptions and defaults)."""
        return tuple(template.describe(name) for name, template in self._templates.items())

    def __repr__(self) -> str:
        return f"TemplateLibrary({str(self._directory)!r}, names={self.names()!r})"
