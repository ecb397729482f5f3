"""What the ``chatdsl`` subcommands share: the failure type, argument types and options, safe output.

The subcommand modules (:mod:`chatdsl.cli.main`, :mod:`chatdsl.cli.run`, :mod:`chatdsl.cli.batch`) import
these; this module imports none of them, so the command's imports run one way.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from typing import Any, Final, TypeVar

from chatdsl.templates.library import DEFAULT_MAX_SIZE

__all__: list[str] = []

PROG = "chatdsl"


class Failure(Exception):
    """A user-facing failure: its lines go to stderr and the command exits with status 1."""

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


# Control characters (C0 but newline and tab, DEL, C1) drive a terminal: ESC [ starts a colour, a cursor move or
# worse, and C1's 0x9b is a one-character ESC [. Text from a server is printed with them written out as escapes.
_CONTROL: Final = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0)) if chr(c) not in "\n\t"}


def safe(text: str) -> str:
    """Return *text* with its control characters (but newline and tab) shown as ``\\xNN`` escapes."""
    return text.translate(_CONTROL)


def variable_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


_N = TypeVar("_N", int, float)


def ranged_number(
    kind: type[_N], what: str, *, low: _N, above: bool = False, high: _N | None = None
) -> Callable[[str], _N]:
    """Return an ``argparse`` type that reads a *kind* (``int`` or a finite ``float``) in a range.

    *what* names the value ("whole number", "number of seconds"); the range is *low* or more (above
    *low* if *above*), and at most *high* if given. Its errors name the text, *what* and the range.
    """
    if above and kind is int:
        low, above = low + 1, False
    bounds = f"above {low}" if above else f"{low} or more" if high is None else f"{low} to {high}"
    finite = "finite " if kind is float else ""

    def parse(text: str) -> _N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {what}") from None
        in_range = (value > low if above else value >= low) and (value <= high if high is not None else True)
        if not in_range or (isinstance(value, float) and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{text!r} is not a {finite}{what} ({bounds})")
        return value

    parse.__name__ = what.replace(" ", "_")  # argparse names a type by it
    return parse


positive_int: Final = ranged_number(int, "whole number", low=1)
positive_seconds: Final = ranged_number(float, "number of seconds", low=0, above=True)


def key_from_env(name: str) -> str:
    key = os.environ.get(name)
    if key is None:
        raise Failure(f"{name} (named by --api-key-env) is not set")
    if not key:
        raise Failure(f"{name} (named by --api-key-env) is empty")
    return key


def env_name(text: str) -> str:
    if not text or "=" in text or "\0" in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not an environment variable name")
    return text


def add_vars(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--var",
        "-v",
        dest="vars",
        metavar="NAME=VALUE",
        type=variable_pair,
        action="append",
        default=[],
        help="a value for a template variable (repeat for several; the last one for a name wins)",
    )


def add_dialect(
    parser: argparse.ArgumentParser,
    *,
    drop: bool = True,
    help: str = "the server's wire format: mistral (default) or openai (an OpenAI-compatible server)",
) -> None:
    parser.add_argument("--dialect", choices=("mistral", "openai"), default="mistral", help=help)
    if drop:
        parser.add_argument(
            "--drop-unsupported",
            action="store_true",
            help="leave out fields the dialect has no equivalent for (default: they are an error)",
        )


def add_max_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-size",
        metavar="BYTES",
        type=positive_int,
        default=DEFAULT_MAX_SIZE,
        help=f"refuse template files larger than this (default {DEFAULT_MAX_SIZE})",
    )


def client_options(args: argparse.Namespace) -> dict[str, Any]:
    """Return the ``Client`` arguments of a command that sends: key, dialect, base URL, timeout."""
    from chatdsl.client.config import API_KEY_ENV, base_url_or_env, env_key_allowed
    from chatdsl.wire.dialects import Dialect

    options: dict[str, Any] = {"dialect": args.dialect, "drop_unsupported": args.drop_unsupported}
    if args.api_key_env is not None:
        options["api_key"] = key_from_env(args.api_key_env)
    elif args.dialect == "mistral" and not os.environ.get(API_KEY_ENV):
        raise Failure(f"{API_KEY_ENV} is not set; set it to your API key (any key works with `{PROG} serve`)")
    elif args.dialect == "openai":
        openai = Dialect.OPENAI
        target, _ = base_url_or_env(openai, args.base_url or None)  # the client falls back to OPENAI_BASE_URL too
        if env_key_allowed(openai, target) and not os.environ.get(openai.api_key_env):
            raise Failure(
                f"{openai.api_key_env} is not set; OpenAI's API needs a key "
                "(for an OpenAI-compatible server, give its --base-url)"
            )
    if args.base_url:
        options["base_url"] = args.base_url
    if args.timeout:
        options["timeout"] = args.timeout
    return options
