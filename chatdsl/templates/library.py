"""Request templates: variables, rendering, composition, template files and a template library.

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

import json
import math
import os
import re
import stat
import string
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import attrs

from chatdsl._checks import type_name
from chatdsl._errors import TemplateError, ValidationError, _nest
from chatdsl._types import UNSET, UnsetType
from chatdsl.model.request import ChatCompletionRequest, chat
from chatdsl.model.templating import merge, render, value_text, variables

__all__ = [
    "DEFAULT_MAX_SIZE",
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

DEFAULT_MAX_SIZE: Final = 1 << 20
"""The largest template file read by default, in bytes (1 MiB)."""

_PATTERN: Final = string.Template.pattern
_IDENTIFIER: Final = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*\Z")
_SNIPPET: Final = re.compile(r"\$\S{0,10}")
_SUFFIXES: Final = (".json", ".toml")
_HEADER_KEYS: Final = ("description", "extends", "variables")
_VARIABLE_KEYS: Final = ("description", "default")

# ------------------------------------------------------------------------------------- templates


def _check_identifier(_: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ValidationError(
            attribute.name, f"{value!r} is not a variable name (a letter or _, then letters, digits or _)"
        )


def _check_description(_: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, str):
        raise ValidationError(attribute.name, f"{value!r} is {type_name(value)}, not a string")


def _check_default(_: Any, attribute: Any, value: Any) -> None:
    if value is UNSET:
        return
    value_text(attribute.name, value)


@attrs.frozen(kw_only=True)
class Variable:
    """A template variable: its name, what it is for, and the value used when none is given."""

    name: str = attrs.field(validator=_check_identifier)
    description: str = attrs.field(default="", validator=_check_description)
    default: str | int | float | UnsetType = attrs.field(default=UNSET, validator=_check_default)

    @property
    def required(self) -> bool:
        """Whether rendering needs a value for it (it has no default)."""
        return self.default is UNSET


def _merge_variables(base: Sequence[Variable], overlay: Sequence[Variable]) -> tuple[Variable, ...]:
    merged = {v.name: v for v in base}
    for var in overlay:
        old = merged.get(var.name)
        if old is not None:
            var = Variable(
                name=var.name,
                description=var.description or old.description,
                default=old.default if var.default is UNSET else var.default,
            )
        merged[var.name] = var
    return tuple(merged.values())


def _to_variables(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    return value


def _check_variables(_: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, tuple):
        raise ValidationError(attribute.name, f"{value!r} is not a sequence of Variable")
    seen: set[str] = set()
    for index, var in enumerate(value):
        if not isinstance(var, Variable):
            raise ValidationError(f"variables[{index}]", f"{var!r} is not a Variable")
        if var.name in seen:
            raise ValidationError(f"variables[{index}].name", f"{var.name!r} is declared twice")
        seen.add(var.name)


@attrs.frozen(kw_only=True)
class TemplateInfo:
    """What a template is for and which variables it takes: a line of :meth:`TemplateLibrary.describe`."""

    name: str
    description: str
    variables: tuple[Variable, ...]
    path: Path | None = None


@attrs.frozen(kw_only=True)
class RequestTemplate:
    """A request with placeholders plus its header: a description and declared variables.

    ``variables`` are the declared ones (with descriptions and defaults); the names the messages
    use are ``request.variables``. A template's message text must hold only valid placeholders.
    Load one with :meth:`load`; fill it in with :meth:`render`.
    """

    request: ChatCompletionRequest = attrs.field(
        factory=chat, validator=attrs.validators.instance_of(ChatCompletionRequest)
    )
    description: str = attrs.field(default="", validator=_check_description)
    variables: tuple[Variable, ...] = attrs.field(default=(), converter=_to_variables, validator=_check_variables)
    path: Path | None = attrs.field(default=None, eq=False)

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
            variables=tuple(declared.get(n) or Variable(name=n) for n in self._names()),
            path=self.path,
        )

    def _names(self) -> list[str]:
        """Return the names of the variables the messages use or the header declares, sorted."""
        return sorted({*self.request.variables, *(v.name for v in self.variables)})

    def _unknown(self, given: Mapping[str, object]) -> list[str]:
        """Return the names in *given* that are neither used nor declared, in *given*'s order."""
        known = set(self._names())
        return [name for name in given if name not in known]

    def _missing(self, given: Mapping[str, object]) -> list[str]:
        """Return the used variables with neither a value in *given* nor a default, sorted."""
        defaults = self.defaults
        return [name for name in self.request.variables if name not in given and name not in defaults]

    def render(
        self, values: Mapping[str, object] | None = None, /, *, allow_extra: bool = False, **kwargs: object
    ) -> ChatCompletionRequest:
        """Return the request with its variables filled: *values* and *kwargs* first, defaults for the rest.

        A variable with neither a value nor a default, or an unknown name (neither used nor declared,
        unless *allow_extra*), is a :class:`~chatdsl.ValidationError` naming it.
        """
        given = {**(values or {}), **kwargs}
        used = set(self.request.variables)
        if not allow_extra:
            unknown = self._unknown(given)
            if unknown:
                known = ", ".join(self._names()) or "none"
                raise ValidationError(
                    "",
                    "",
                    errors=[
                        (name, f"is not a variable of the template (variables: {known}); pass allow_extra=True")
                        for name in unknown
                    ],
                )
        filled = {name: value for name, value in {**self.defaults, **given}.items() if name in used}
        return render(self.request, filled)

    @classmethod
    def load(cls, path: str | Path, *, max_size: int = DEFAULT_MAX_SIZE) -> RequestTemplate:
        """Read a template file (``.json`` or ``.toml``), following ``extends``; see the module docs.

        Every problem is a :class:`~chatdsl.TemplateError` naming the file and the key path.
        """
        request, description, declared = _load(Path(path), max_size, placeholders=True)
        return cls(request=request, description=description, variables=declared, path=Path(path))

    def save(self, path: str | Path) -> None:
        """Write this template (header and body; ``extends`` is already resolved) as ``.json`` or ``.toml``."""
        header: dict[str, Any] = {}
        if self.description:
            header["description"] = self.description
        if self.variables:
            header["variables"] = {v.name: _variable_dict(v) for v in self.variables}
        _write(Path(path), self.request, header)


def _variable_dict(var: Variable) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if var.description:
        out["description"] = var.description
    if var.default is not UNSET:
        out["default"] = var.default
    return out


# ----------------------------------------------------------------------------------------- files


def save(request: ChatCompletionRequest, path: str | Path) -> None:
    """Write *request* as a template file (``.json`` or ``.toml``, chosen by the suffix), without header."""
    _write(Path(path), request, {})


def load(path: str | Path, *, max_size: int = DEFAULT_MAX_SIZE) -> ChatCompletionRequest:
    """Read the request a template file holds (``extends`` followed; the header's defaults are not applied).

    Message text is taken as it is: placeholders are checked when the request is rendered (or by
    :meth:`RequestTemplate.load`), so a saved request holding a lone ``$`` loads back unchanged.
    """
    return _load(Path(path), max_size, placeholders=False)[0]


def _template_files(directory: Path) -> list[Path]:
    """Return the template files (``.json`` or ``.toml``, any case) directly in *directory*, sorted.

    Only regular files (or links to them) count: a FIFO or a device named ``x.json`` is skipped.
    """
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in _SUFFIXES and _is_file(p))


def _is_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise TemplateError([(str(path), "", f"has the suffix {path.suffix!r}; a template file is .json or .toml")])
    return suffix


def _write(path: Path, request: ChatCompletionRequest, header: Mapping[str, Any]) -> None:
    suffix = _suffix(path)
    body = attrs.evolve(request, extra={}).to_dict() if request.extra else request.to_dict()
    data: dict[str, Any] = {}
    if header:
        data["template"] = dict(header)
    data.update(body)
    if request.extra:
        data["extra"] = request.extra
    try:
        text = (
            _dumps_toml(data)
            if suffix == ".toml"
            else json.dumps(data, ensure_ascii=False, indent=2, allow_nan=False) + "\n"
        )
        encoded = text.encode("utf-8")
    except ValidationError as exc:
        raise TemplateError([(str(path), p, m) for p, m in exc.errors]) from None
    except UnicodeEncodeError as exc:
        raise TemplateError([(str(path), "", f"holds text that is not valid Unicode ({exc.reason})")]) from None
    except ValueError as exc:  # a NaN or infinity inside a JSON object such as metadata
        raise TemplateError([(str(path), "", f"cannot be written as JSON ({exc})")]) from None
    path.write_bytes(encoded)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice in one object")
        out[key] = value
    return out


_MAX_KEY_PARTS: Final = 256
# A dotted TOML key (``a.b.c = 1``, ``[a.b.c]``, ``{a.b = 1}``) with more parts than any request can
# use (JSON values nest at most 200 levels). tomllib's time grows with the square of a key's parts:
# a 1 MiB file holding one long key would keep it busy for an hour, so such keys are refused first.
_KEY_PART: Final = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*"|'[^'\n]*')"""
_DEEP_TOML_KEY: Final = re.compile(
    rf"(?:^|[{{,])[ \t]*\[{{0,2}}[ \t]*(?:{_KEY_PART}[ \t]*\.[ \t]*){{{_MAX_KEY_PARTS},}}{_KEY_PART}[ \t]*[=\]]",
    re.MULTILINE,
)


def _read_bytes(path: Path, max_size: int) -> bytes:
    """Return up to *max_size* + 1 bytes of the regular file at *path*; any other kind of file, or an OS error, is
    a :class:`~chatdsl.TemplateError` naming it.

    The file is opened without blocking (a FIFO or a device named ``x.json`` would otherwise wait forever) and
    checked to be a regular file before anything is read.
    """
    file = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise TemplateError([(file, "", "does not exist")]) from None
    except IsADirectoryError:
        raise TemplateError([(file, "", "is a folder, not a template file")]) from None
    except OSError as exc:
        raise TemplateError([(file, "", f"cannot be read ({exc.strerror or exc})")]) from None
    except ValueError:  # a NUL character in the name
        raise TemplateError([(file, "", "cannot be read (the name holds a NUL character)")]) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise TemplateError([(file, "", "is a folder, not a template file")])
        if not stat.S_ISREG(mode):
            raise TemplateError([(file, "", "is not a regular file (only regular files are read as templates)")])
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read(max_size + 1)
    except OSError as exc:
        raise TemplateError([(file, "", f"cannot be read ({exc.strerror or exc})")]) from None
    finally:
        os.close(fd)


def _read(path: Path, max_size: int) -> dict[str, Any]:
    """Return the top-level table of the file at *path* (size-limited, UTF-8, strict JSON or TOML)."""
    file = str(path)

    def fail(message: str) -> TemplateError:
        return TemplateError([(file, "", message)])

    raw = _read_bytes(path, max_size)
    suffix = _suffix(path)
    if len(raw) > max_size:
        raise fail(f"is larger than the limit of {max_size} bytes for template files (see max_size)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    kind = "TOML" if suffix == ".toml" else "JSON"
    if suffix == ".toml" and (deep := _DEEP_TOML_KEY.search(text)):
        line = text.count("\n", 0, deep.start()) + 1
        raise fail(f"is not valid TOML (line {line}: a dotted key of more than {_MAX_KEY_PARTS} parts)")
    try:
        if suffix == ".toml":
            data: Any = tomllib.loads(text)
        else:
            data = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_reject_constant)
    except tomllib.TOMLDecodeError as exc:
        raise fail(f"is not valid TOML ({exc})") from None
    except RecursionError:
        raise fail(f"is not valid {kind} (nested too deeply)") from None
    except ValueError as exc:
        raise fail(f"is not valid {kind} ({exc})") from None
    if not isinstance(data, dict):
        raise fail(f"holds a JSON {type(data).__name__}, not an object")
    return data


def _read_header(header: Any, problems: list[tuple[str, str]]) -> tuple[str, str | None, tuple[Variable, ...]]:
    if not isinstance(header, dict):
        problems.append(("template", f"is {type_name(header)}, not a table"))
        return "", None, ()
    for key in header:
        if key not in _HEADER_KEYS:
            problems.append((f"template.{key}", f"is not a known field (known: {', '.join(_HEADER_KEYS)})"))
    description = header.get("description", "")
    if not isinstance(description, str):
        problems.append(("template.description", f"{description!r} is not a string"))
        description = ""
    extends = header.get("extends")
    if extends is not None and (not isinstance(extends, str) or not extends):
        problems.append(("template.extends", f"{extends!r} is not a non-empty string (a path to a template file)"))
        extends = None
    declared: list[Variable] = []
    table = header.get("variables", {})
    if not isinstance(table, dict):
        problems.append(("template.variables", f"is {type_name(table)}, not a table of variables"))
        table = {}
    for name, spec in table.items():
        where = f"template.variables.{name}"
        if not isinstance(spec, dict):
            problems.append((where, f"is {type_name(spec)}, not a table (with description and default)"))
            continue
        for key in spec:
            if key not in _VARIABLE_KEYS:
                problems.append((f"{where}.{key}", f"is not a known field (known: {', '.join(_VARIABLE_KEYS)})"))
        try:
            declared.append(
                Variable(name=name, description=spec.get("description", ""), default=spec.get("default", UNSET))
            )
        except ValidationError as exc:
            problems += [(_nest(where, "" if p == "name" else p), m) for p, m in exc.errors]
    return description, extends, tuple(declared)


def _read_body(data: dict[str, Any], problems: list[tuple[str, str]], *, placeholders: bool) -> ChatCompletionRequest:
    from chatdsl.wire.converter import structure_request

    extra = data.pop("extra", None)
    try:
        request = structure_request(data)
    except ValidationError as exc:
        problems += _every_problem(data, exc, placeholders=placeholders)
        return chat()
    if extra is not None:
        if not isinstance(extra, dict):
            problems.append(("extra", f"is {type_name(extra)}, not a table of extra body fields"))
        else:
            try:
                request = attrs.evolve(request, extra=extra)
            except ValidationError as exc:
                problems += exc.errors
    if placeholders:
        try:
            variables(request)
        except ValidationError as exc:
            problems += exc.errors
    return request


def _every_problem(data: dict[str, Any], first: ValidationError, *, placeholders: bool) -> list[tuple[str, str]]:
    """Return every problem of a template body that does not make a request, not only the *first*.

    Reading stops at the first failing rule; here each top-level key, and each message and tool on
    its own, is read again, so a file's author sees all of them in one run.
    """
    from chatdsl.wire.converter import structure_request

    found: dict[tuple[str, str], None] = {}  # ordered, and each problem once (a list's `in` made this quadratic)

    def check(body: dict[str, Any], key: str = "", index: int = 0) -> ChatCompletionRequest | None:
        try:
            return structure_request(body)
        except ValidationError as exc:
            for path, message in exc.errors:
                if key and path.startswith(f"{key}[0]"):
                    path = f"{key}[{index}]{path[len(key) + 3 :]}"
                found[path, message] = None
            return None

    for key, value in data.items():
        if key in ("messages", "tools") and isinstance(value, list) and value:
            one_by_one = [check({key: [item]}, key, index) for index, item in enumerate(value)]
            if all(one is not None for one in one_by_one):
                check({key: value})  # what only the whole list can break (tool names used twice)
            if key == "messages" and placeholders:
                for index, one in enumerate(one_by_one):
                    if one is not None:
                        try:
                            variables(one)
                        except ValidationError as exc:
                            for p, m in exc.errors:
                                found[f"messages[{index}]{p[len('messages[0]') :]}", m] = None
        else:
            check({key: value})
    return list(found) or list(first.errors)


_Loaded = tuple[ChatCompletionRequest, str, tuple[Variable, ...]]

MAX_PROBLEMS: Final = 10
"""The most problems reported for one template file; the rest are counted in a last line ("… and 49,990 more")."""


def _capped(file: str, problems: Sequence[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """Return the first :data:`MAX_PROBLEMS` of *problems* as ``(file, path, message)``, then one counting the rest."""
    shown = [(file, p, m) for p, m in problems[:MAX_PROBLEMS]]
    if len(problems) > MAX_PROBLEMS:
        shown.append((file, "", f"… and {len(problems) - MAX_PROBLEMS:,} more problems"))
    return shown


def _os_problem(exc: OSError) -> str:
    return f"cannot be read ({exc.strerror or exc})"


class _Loader:
    """Reads template files for one load (a file, or every file of a library), following ``extends``.

    Each file is read and parsed once, and each file's merged chain is computed once: a library of 2,000
    files each extending the previous one reads 2,000 files, not two million. With *root* (a library's
    folder), every file read, ``extends`` parents included, must lie under it once links are resolved.
    """

    __slots__ = ("_done", "_max_size", "_placeholders", "_root")

    def __init__(self, max_size: int, *, placeholders: bool, root: Path | None = None) -> None:
        self._max_size = max_size
        self._placeholders = placeholders
        self._root = root
        # resolved path -> (merged request, the file's own description, merged variables), or the error
        self._done: dict[Path, _Loaded | TemplateError] = {}

    def load(self, path: Path) -> _Loaded:
        """Return the request, description and declared variables of the file at *path*, ``extends`` followed.

        With *placeholders*, message text must hold only valid placeholders (it is template text).
        The chain is followed in a loop (any length), then merged from its root down to *path*.
        """
        resolved = self._resolve(path)
        if self._root is not None and not resolved.is_relative_to(self._root):
            raise TemplateError([(str(path), "", f"leads outside the library's folder {self._root} (to {resolved})")])
        links: list[tuple[Path, ChatCompletionRequest, str, tuple[Variable, ...]]] = []
        followed: list[Path] = []
        walked: set[Path] = set()
        current: Path | None = path
        base: _Loaded | None = None
        try:
            while current is not None:
                if resolved in self._done:
                    done = self._done[resolved]
                    if isinstance(done, TemplateError):
                        raise done
                    base = done
                    break
                if resolved in walked:
                    cycle = " -> ".join(str(p) for p in (*followed, current))
                    raise TemplateError([(str(followed[-1]), "template.extends", f"forms a cycle: {cycle}")])
                followed.append(current)
                walked.add(resolved)
                request, description, declared, parent = self._read_one(current)
                links.append((resolved, request, description, declared))
                current = parent
                if current is not None:
                    resolved = self._resolve(current)
        except TemplateError as exc:
            self._done[resolved] = exc
            for link in links:
                self._done[link[0]] = exc  # a child of a broken file is broken the same way
            raise
        loaded = base
        while links:
            resolved, request, description, declared = links.pop()
            if loaded is not None:
                request = merge(loaded[0], request)
                declared = _merge_variables(loaded[2], declared)
            loaded = (request, description, declared)
            self._done[resolved] = loaded
        assert loaded is not None
        return loaded

    @staticmethod
    def _resolve(path: Path) -> Path:
        try:
            return path.resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # RuntimeError: a symlink loop on Python < 3.13
            if isinstance(exc, ValueError):
                message = "cannot be read (the name holds a NUL character)"
            else:
                message = _os_problem(exc) if isinstance(exc, OSError) else "cannot be resolved (a symlink loop)"
            raise TemplateError([(str(path), "", message)]) from None

    def _read_one(self, path: Path) -> tuple[ChatCompletionRequest, str, tuple[Variable, ...], Path | None]:
        """Return the file's own request, description and declared variables, and its ``extends`` parent."""
        data = _read(path, self._max_size)
        problems: list[tuple[str, str]] = []
        description, extends, declared = _read_header(data.pop("template", {}), problems)
        request = _read_body(data, problems, placeholders=self._placeholders)
        parent = self._parent(path, extends, problems) if extends is not None else None
        if problems:
            raise TemplateError(_capped(str(path), problems))
        return request, description, declared, parent

    def _parent(self, path: Path, extends: str, problems: list[tuple[str, str]]) -> Path | None:
        where = "template.extends"
        if "\0" in extends:
            problems.append((where, f"{extends!r} holds a NUL character, which no file name can"))
            return None
        if Path(extends).is_absolute() or Path(extends).drive:
            problems.append((where, f"{extends!r} is an absolute path; extends names a file relative to this one"))
            return None
        parent = path.parent / extends
        try:
            mode = parent.stat().st_mode
        except FileNotFoundError:
            mode = None
        except OSError as exc:
            problems.append((where, f"{extends!r} {_os_problem(exc)} (looked for {parent})"))
            return None
        if mode is None or not stat.S_ISREG(mode):
            problems.append((where, f"{extends!r} names no file (looked for {parent})"))
            return None
        if self._root is not None:
            try:
                resolved = parent.resolve()
            except (OSError, RuntimeError):
                resolved = parent
            if not resolved.is_relative_to(self._root):
                rule = "a library reads only its own files"
                problems.append((where, f"{extends!r} leads outside the library's folder {self._root}; {rule}"))
                return None
        return parent


def _load(path: Path, max_size: int, *, placeholders: bool) -> _Loaded:
    """Return the request, description and declared variables of the one file at *path*, ``extends`` followed."""
    return _Loader(max_size, placeholders=placeholders).load(path)


# ----------------------------------------------------------------------------------- TOML writer

_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+\Z")
_ESCAPES: Final = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_string(key)


def _escape(text: str, *, multiline: bool = False) -> str:
    out = []
    last = len(text) - 1
    for index, char in enumerate(text):
        if multiline and char == "\n":
            out.append(char)
        elif multiline and char == '"':
            # Never two unescaped quotes in a row (no accidental '"""'), and none before the closing quotes.
            out.append('\\"' if index == last or text[index + 1] == '"' else '"')
        elif char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char < " " or char == "\x7f":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return "".join(out)


def _toml_string(text: str, *, multiline: bool = False) -> str:
    if multiline and "\n" in text:
        # A newline right after the opening quotes is dropped by TOML readers.
        return '"""\n' + _escape(text, multiline=True) + '"""'
    return '"' + _escape(text) + '"'


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, dict) for item in value)


def _toml_value(value: Any, path: str, *, multiline: bool = False) -> str:
    if isinstance(value, str):
        return _toml_string(value, multiline=multiline)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(path, f"{value!r} is not a finite number")
        return repr(value)
    if isinstance(value, dict):
        items = [f"{_toml_key(k)} = {_toml_value(v, _nest(path, k))}" for k, v in value.items()]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v, f"{path}[{i}]") for i, v in enumerate(value)) + "]"
    if value is None:
        raise ValidationError(path, "is null, which TOML cannot hold; save this template as .json")
    raise ValidationError(path, f"{value!r} is {type_name(value)}, which a template file cannot hold")


def _toml_table(lines: list[str], keys: tuple[str, ...], path: str, table: Mapping[str, Any], header: str) -> None:
    """Append *table*: its header line (*header*, if any), its plain values, then its tables in key order.

    A table holding only tables gets no header of its own: TOML defines it through its children's.
    """
    plain = [(k, v) for k, v in table.items() if not isinstance(v, dict) and not _is_table_array(v)]
    nested = [(k, v) for k, v in table.items() if isinstance(v, dict) or _is_table_array(v)]
    if header and (plain or not nested or header.startswith("[[")):
        lines += ["", header]
    for key, value in plain:
        lines.append(f"{_toml_key(key)} = {_toml_value(value, _nest(path, key), multiline=True)}")
    for key, value in nested:
        names = (*keys, key)
        dotted = ".".join(_toml_key(k) for k in names)
        if isinstance(value, dict):
            _toml_table(lines, names, _nest(path, key), value, f"[{dotted}]")
        else:
            for index, item in enumerate(value):
                _toml_table(lines, names, f"{_nest(path, key)}[{index}]", item, f"[[{dotted}]]")


def _dumps_toml(data: Mapping[str, Any]) -> str:
    """Return *data* (JSON-like: no nulls) as TOML text that ``tomllib`` reads back equal."""
    lines: list[str] = []
    _toml_table(lines, (), "", data, "")
    return "\n".join(lines).lstrip("\n") + "\n"


# --------------------------------------------------------------------------------------- library


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
            files = _template_files(self._directory)
            root = self._directory.resolve()
        except (NotADirectoryError, FileNotFoundError):
            raise TemplateError([(str(self._directory), "", "is not a directory")]) from None
        except OSError as exc:
            raise TemplateError([(str(self._directory), "", f"cannot be listed ({exc.strerror or exc})")]) from None
        loader = _Loader(max_size, placeholders=True, root=root)
        templates: dict[str, RequestTemplate] = {}
        problems: dict[tuple[str, str, str], None] = {}  # each problem once, in order (a child shares its parent's)
        for file in files:
            if file.stem in templates:
                problems[str(file), "", f"has the same name as {templates[file.stem].path}"] = None
                continue
            try:
                request, description, declared = loader.load(file)
                templates[file.stem] = RequestTemplate(
                    request=request, description=description, variables=declared, path=file
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
