"""Template files: safe paths, size limits, strict JSON/TOML reading, the ``extends`` chain, writing.

Files (``.json`` or ``.toml``, UTF-8, at most :data:`DEFAULT_MAX_SIZE` bytes by default)
    The top level is the wire body of the request (``to_dict()``) with two reserved keys:
    ``template`` (the optional header: ``description``, ``extends``, ``variables``, ``abstract``) and ``extra``
    (body fields sent as they are, as with ``with_extra()``). Reading is strict: an unknown key is
    a :class:`~chatdsl.TemplateError` naming the file and the key path. ``extends`` names another
    template file, relative to this one; this file's body is merged over the parent's, its
    variables over the parent's field by field; a description belongs to its own file, and so does
    ``abstract = true`` (a template meant only to be extended, not rendered on its own). Cycles are
    refused, listing the chain. Files are data only: nothing in them is ever executed.

This module does not import the request module nor the wire converter (which does): callers pass
a :data:`Reader`, the pair (structure a wire body into a request, make an empty request), so
:meth:`ChatCompletionRequest.load <chatdsl.ChatCompletionRequest.load>` can use it without an
import circle.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from chatdsl._checks import type_name
from chatdsl._errors import TemplateError, ValidationError, nest
from chatdsl._types import UNSET, UnsetType
from chatdsl.model.templating import merge, value_text, variables
from chatdsl.templates.toml import dumps_toml

__all__ = [
    "DEFAULT_MAX_SIZE",
    "MAX_PROBLEMS",
    "Loader",
    "Reader",
    "Variable",
    "check_description",
    "check_variables",
    "load_file",
    "template_files",
    "to_variables",
    "write",
]

Reader = tuple[Callable[[Any], Any], Callable[[], Any]]
"""How bodies become requests: (structure a wire body strictly, make an empty request)."""

DEFAULT_MAX_SIZE: Final = 1 << 20
"""The largest template file read by default, in bytes (1 MiB)."""

_IDENTIFIER: Final = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*\Z")
_SUFFIXES: Final = (".json", ".toml")
_HEADER_KEYS: Final = ("description", "extends", "variables", "abstract")
_VARIABLE_KEYS: Final = ("description", "default")

# ------------------------------------------------------------------------------------- templates


def _check_identifier(_: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ValidationError(
            attribute.name, f"{value!r} is not a variable name (a letter or _, then letters, digits or _)"
        )


def check_description(_: Any, attribute: Any, value: Any) -> None:
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
    description: str = attrs.field(default="", validator=check_description)
    default: str | int | float | UnsetType = attrs.field(default=UNSET, validator=_check_default)

    @property
    def required(self) -> bool:
        """Whether rendering needs a value for it (it has no default)."""
        return self.default is UNSET


def merge_variables(base: Sequence[Variable], overlay: Sequence[Variable]) -> tuple[Variable, ...]:
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


def to_variables(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    return value


def check_variables(_: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, tuple):
        raise ValidationError(attribute.name, f"{value!r} is not a sequence of Variable")
    seen: set[str] = set()
    for index, var in enumerate(value):
        if not isinstance(var, Variable):
            raise ValidationError(f"variables[{index}]", f"{var!r} is not a Variable")
        if var.name in seen:
            raise ValidationError(f"variables[{index}].name", f"{var.name!r} is declared twice")
        seen.add(var.name)


# ----------------------------------------------------------------------------------------- files


def template_files(directory: Path) -> list[Path]:
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


def write(path: Path, request: Any, header: Mapping[str, Any]) -> None:
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
            dumps_toml(data)
            if suffix == ".toml"
            # the standard library, not _json: orjson would write NaN as null instead of refusing it
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
            # the standard library, not _json: only it reports duplicate keys and NaN literals through hooks
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


def _read_header(header: Any, problems: list[tuple[str, str]]) -> tuple[str, str | None, tuple[Variable, ...], bool]:
    if not isinstance(header, dict):
        problems.append(("template", f"is {type_name(header)}, not a table"))
        return "", None, (), False
    for key in header:
        if key not in _HEADER_KEYS:
            problems.append((f"template.{key}", f"is not a known field (known: {', '.join(_HEADER_KEYS)})"))
    description = header.get("description", "")
    if not isinstance(description, str):
        problems.append(("template.description", f"{description!r} is not a string"))
        description = ""
    abstract = header.get("abstract", False)
    if not isinstance(abstract, bool):
        problems.append(("template.abstract", f"{abstract!r} is {type_name(abstract)}, not true or false"))
        abstract = False
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
            problems += [(nest(where, "" if p == "name" else p), m) for p, m in exc.errors]
    return description, extends, tuple(declared), abstract


def _read_body(data: dict[str, Any], problems: list[tuple[str, str]], *, placeholders: bool, reader: Reader) -> Any:
    structure_request, empty = reader
    extra = data.pop("extra", None)
    try:
        request = structure_request(data)
    except ValidationError as exc:
        problems += _every_problem(data, exc, placeholders=placeholders, structure_request=structure_request)
        return empty()
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


def _every_problem(
    data: dict[str, Any], first: ValidationError, *, placeholders: bool, structure_request: Callable[[Any], Any]
) -> list[tuple[str, str]]:
    """Return every problem of a template body that does not make a request, not only the *first*.

    Reading stops at the first failing rule; here each top-level key, and each message and tool on
    its own, is read again, so a file's author sees all of them in one run.
    """
    found: dict[tuple[str, str], None] = {}  # ordered, and each problem once (a list's `in` made this quadratic)

    def check(body: dict[str, Any], key: str = "", index: int = 0) -> Any:
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


_Loaded = tuple[Any, str, tuple[Variable, ...], bool]
"""A loaded file: its merged request, its own description, the merged variables, whether it says ``abstract``."""

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


class Loader:
    """Reads template files for one load (a file, or every file of a library), following ``extends``.

    Each file is read and parsed once, and each file's merged chain is computed once: a library of 2,000
    files each extending the previous one reads 2,000 files, not two million. With *root* (a library's
    folder), every file read, ``extends`` parents included, must lie under it once links are resolved.
    """

    __slots__ = ("_done", "_max_size", "_placeholders", "_reader", "_root")

    def __init__(self, max_size: int, *, placeholders: bool, reader: Reader, root: Path | None = None) -> None:
        self._reader = reader
        self._max_size = max_size
        self._placeholders = placeholders
        self._root = root
        # resolved path -> (merged request, the file's own description, merged variables, own abstract), or the error
        self._done: dict[Path, _Loaded | TemplateError] = {}

    def load(self, path: Path) -> _Loaded:
        """Return the request, description, declared variables and ``abstract`` of the file at *path*.

        ``extends`` is followed; the description and ``abstract`` are the file's own.

        With *placeholders*, message text must hold only valid placeholders (it is template text).
        The chain is followed in a loop (any length), then merged from its root down to *path*.
        """
        resolved = self._resolve(path)
        if self._root is not None and not resolved.is_relative_to(self._root):
            raise TemplateError([(str(path), "", f"leads outside the library's folder {self._root} (to {resolved})")])
        links: list[tuple[Path, Any, str, tuple[Variable, ...], bool]] = []
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
                request, description, declared, abstract, parent = self._read_one(current)
                links.append((resolved, request, description, declared, abstract))
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
            resolved, request, description, declared, abstract = links.pop()
            if loaded is not None:
                request = merge(loaded[0], request)
                declared = merge_variables(loaded[2], declared)
            loaded = (request, description, declared, abstract)
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

    def _read_one(self, path: Path) -> tuple[Any, str, tuple[Variable, ...], bool, Path | None]:
        """Return the file's own request, description, declared variables and ``abstract``, and its parent."""
        data = _read(path, self._max_size)
        problems: list[tuple[str, str]] = []
        description, extends, declared, abstract = _read_header(data.pop("template", {}), problems)
        request = _read_body(data, problems, placeholders=self._placeholders, reader=self._reader)
        parent = self._parent(path, extends, problems) if extends is not None else None
        if problems:
            raise TemplateError(_capped(str(path), problems))
        return request, description, declared, abstract, parent

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


def load_file(path: Path, max_size: int, *, placeholders: bool, reader: Reader) -> _Loaded:
    """Return the request, description, declared variables and ``abstract`` of the file at *path* (see Loader)."""
    return Loader(max_size, placeholders=placeholders, reader=reader).load(path)
