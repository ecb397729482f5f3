"""The ``chatdsl`` command: render, validate, list and send request templates; serve a local test server.

::

    chatdsl render TEMPLATE [--var NAME=VALUE ...] [--compact] [--dialect D [--drop-unsupported]]
    chatdsl validate PATH... [--complete] [--var NAME=VALUE ...] [--dialect D]
    chatdsl list DIRECTORY
    chatdsl send TEMPLATE [--var NAME=VALUE ...] [--stream] [--base-url URL] [--json] [--timeout SECONDS]
                 [--dialect D [--drop-unsupported]] [--api-key-env NAME]
    chatdsl tokens TEMPLATE [--var NAME=VALUE ...] [--model M] [--tokenizer FILE]
    chatdsl run TEMPLATE --input FILE --output FILE [--var NAME=VALUE ...] [--concurrency N] [--resume]
                [--max-errors N] [--base-url URL] [--dialect D] [--dry-run]   (see chatdsl.cli.run)
    chatdsl serve [--port N] [--host HOST] [--api-key-env NAME] [--dialect D] [--delay SECONDS]
    chatdsl batch submit|status|wait|results|cancel ...   (Mistral's Batch API: see chatdsl.cli.batch)

``--dialect`` is ``mistral`` (default) or ``openai`` (an OpenAI-compatible server: vLLM, llama.cpp,
Ollama, LM Studio, OpenAI); a field the dialect has no equivalent for is an error naming it, unless
``--drop-unsupported`` leaves it out. ``send`` without ``--base-url`` sends where a ``Client`` would:
to ``$MISTRAL_BASE_URL`` (``$OPENAI_BASE_URL`` with ``--dialect openai``) when set, else to the API.

Exit status: 0 success, 1 a problem (bad template, missing value, API or connection error),
2 a command-line mistake, 130 interrupted. A user mistake is one line on stderr, never a traceback.
Text that comes from a server (answers, tool calls, error messages) is printed with its control
characters escaped (``\x1b`` as the four characters ``\x1b``), so an answer cannot drive the terminal.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from chatdsl._errors import ChatDSLError, TemplateError, ValidationError
from chatdsl.cli.common import (
    PROG,
    Failure,
    add_dialect,
    add_max_size,
    add_vars,
    client_options,
    env_name,
    key_from_env,
    positive_int,
    positive_seconds,
    ranged_number,
    safe,
)
from chatdsl.model.messages import raw_arguments
from chatdsl.model.templating import did_you_mean
from chatdsl.templates.files import template_files
from chatdsl.templates.library import (
    RequestTemplate,
    TemplateLibrary,
    missing_names,
    unknown_names,
    variable_names,
)

if TYPE_CHECKING:
    from chatdsl.model.request import ChatCompletionRequest
    from chatdsl.model.response import ChatCompletionResponse, UsageInfo

__all__ = ["main"]


def _one_line(text: str) -> str:
    return " ".join(text.split("\n")).strip()


# JSON output: C0 is escaped by every JSON writer already; DEL and C1 are legal raw in strings, so escape them.
_JSON_CONTROL: Final = {c: f"\\u{c:04x}" for c in range(0x7F, 0xA0)}


def _safe_json(text: str) -> str:
    """Return the JSON *text* with DEL and C1 control characters written as ``\\uNNNN`` escapes (same value)."""
    return text.translate(_JSON_CONTROL)


_DROP_ADVICE: Final = "pass drop_unsupported=True"
_HTTP_ADVICE: Final = "use https, or pass allow_insecure_http=True if you mean it"


def _as_options(line: str, command: str) -> str:
    """Return *line* with advice meant for library callers (keyword arguments) in the command line's words."""
    line = line.replace(_HTTP_ADVICE, "use https (the command sends a key over plain http only to this machine)")
    if command == "validate":  # validate has no such option: the commands that send do
        return line.replace(_DROP_ADVICE, "render or send it with --drop-unsupported")
    return line.replace(_DROP_ADVICE, "pass --drop-unsupported")


def _error_lines(exc: BaseException) -> list[str]:
    if isinstance(exc, TemplateError):
        return exc.lines()
    if isinstance(exc, ValidationError):
        return [_one_line(f"{path}: {message}" if path else message) for path, message in exc.errors]
    return [_one_line(str(exc)) or type(exc).__name__]


# ------------------------------------------------------------------------------------ arguments


_delay: Final = ranged_number(float, "number of seconds", low=0)
_port: Final = ranged_number(int, "port number", low=0, high=65535)


def _parser() -> argparse.ArgumentParser:
    from chatdsl._version import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Render, check and send chat-completion request templates (.json or .toml files).",
        epilog="Exit status: 0 success, 1 a problem with a template, a value or the API, 2 a usage mistake, "
        "130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    render = commands.add_parser("render", help="print the wire JSON of a rendered template")
    render.add_argument("template", metavar="TEMPLATE", help="a .json or .toml template file")
    add_vars(render)
    render.add_argument("--compact", action="store_true", help="print the JSON on one line")
    add_dialect(render)
    add_max_size(render)

    validate = commands.add_parser("validate", help="check template files (one line per problem; exit status 1 if any)")
    validate.add_argument("paths", metavar="PATH", nargs="+", help="template files, or folders of them")
    validate.add_argument(
        "--complete",
        action="store_true",
        help="also render each template with its defaults (and --var values) and check it can be sent "
        "(templates whose header says abstract = true are meant to be extended and are skipped)",
    )
    add_vars(validate)
    add_dialect(
        validate,
        drop=False,
        help="also check every field maps to this wire format (openai: an OpenAI-compatible server)",
    )
    add_max_size(validate)
    _add_token_budget(validate)

    listing = commands.add_parser("list", help="list the templates of a folder with their variables")
    listing.add_argument("directory", metavar="DIRECTORY")
    add_max_size(listing)

    send = commands.add_parser(
        "send", help="send a rendered template and print the answer (key: MISTRAL_API_KEY, or see --api-key-env)"
    )
    send.add_argument("template", metavar="TEMPLATE", help="a .json or .toml template file")
    add_vars(send)
    send.add_argument("--stream", action="store_true", help="stream the answer, printing text as it arrives")
    send.add_argument(
        "--base-url",
        metavar="URL",
        help="the API's base URL (default: $MISTRAL_BASE_URL, $OPENAI_BASE_URL with --dialect openai, else the API's)",
    )
    send.add_argument("--json", action="store_true", help="print the response (or each chunk) as JSON")
    send.add_argument("--timeout", metavar="SECONDS", type=positive_seconds, help="connect and read timeout")
    add_dialect(send)
    send.add_argument(
        "--api-key-env",
        metavar="NAME",
        type=env_name,
        help="read the key from this environment variable (default: MISTRAL_API_KEY; with --dialect openai, "
        "OPENAI_API_KEY for api.openai.com and no key for other servers)",
    )
    add_max_size(send)

    _add_tokens_command(commands)
    _add_batch_command(commands)

    from chatdsl.cli.run import add_run_command

    add_run_command(commands)

    serve = commands.add_parser("serve", help="run chatdsl.testing.LocalServer until Ctrl-C or SIGTERM")
    serve.add_argument("--port", type=_port, default=0, help="the port (default 0: any free port)")
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    serve.add_argument(
        "--api-key-env",
        metavar="NAME",
        type=env_name,
        help="answer 401 unless requests carry the key held by this environment variable (default: any key)",
    )
    serve.add_argument(
        "--api-key",
        metavar="KEY",
        help="deprecated: a key on the command line is visible to every user of the machine (ps); use --api-key-env",
    )
    serve.add_argument(
        "--delay",
        metavar="SECONDS",
        type=_delay,
        default=0.0,
        help="wait this long before each streamed chunk, so streaming can be watched offline (default 0)",
    )
    add_dialect(serve, drop=False)
    return parser


# ------------------------------------------------------------------------------------- commands


def _values(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    return dict(pairs)


def _rendered(args: argparse.Namespace) -> ChatCompletionRequest:
    template = RequestTemplate.load(args.template, max_size=args.max_size)
    values = _values(args.vars)
    # The template's own checks, reported together and worded for the command line.
    names = variable_names(template)
    known = ", ".join(names) or "none"
    problems = [
        (args.template, name, f"is not a variable of the template{did_you_mean(name, names)} (variables: {known})")
        for name in unknown_names(template, values)
    ]
    problems += [
        (args.template, name, f"has no value and no default; give one with --var {name}=VALUE")
        for name in missing_names(template, values)
    ]
    if problems:
        raise TemplateError(problems)
    return template.render(values)


def _render(args: argparse.Namespace, out: TextIO) -> int:
    request = _rendered(args)
    text = request.to_json(
        indent=None if args.compact else 2, dialect=args.dialect, drop_unsupported=args.drop_unsupported
    )
    out.write(text + "\n")
    return 0


def _files_named(paths: Sequence[str]) -> Iterator[tuple[str, Path | None]]:
    """Yield each file named, and every template file of each folder named (``None``: nothing to check)."""
    for name in paths:
        path = Path(name)
        try:
            found = template_files(path) if path.is_dir() else None
        except OSError:  # a name too long, a folder that cannot be listed: reading it names the problem
            found = None
        if found is not None:
            if not found:
                yield name, None
            for file in found:
                yield str(file), file
        else:
            yield name, path


def _validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    problems: dict[str, None] = {}  # each line once, in order
    checked = 0
    abstract = 0  # templates meant only to be extended: --complete and the token budget skip them
    values = _values(args.vars)
    for name, path in _files_named(args.paths):
        if path is None:
            problems[f"{name}: holds no .json or .toml file"] = None
            continue
        checked += 1
        found: list[str] = []
        try:
            template = RequestTemplate.load(path, max_size=args.max_size)
            if args.dialect != "mistral":
                try:
                    template.request.to_dict(dialect=args.dialect)
                except ValidationError as exc:
                    found += [f"{name}: {_as_options(line, 'validate')}" for line in _error_lines(exc)]
            if template.abstract and (args.complete or args.max_prompt_tokens is not None):
                abstract += 1
            elif args.complete:
                try:
                    template.render(values, allow_extra=True).validate()
                except ValidationError as exc:
                    found += [f"{name}: {line}" for line in _error_lines(exc)]
        except TemplateError as exc:
            found += exc.lines()
        if args.max_prompt_tokens is not None and not found and not template.abstract:
            found += _over_budget(name, path, values, args)
        problems.update(dict.fromkeys(found))
    for line in problems:
        out.write(safe(line) + "\n")
    count = len(problems)
    skipped = f" ({abstract} abstract, not rendered: meant to be extended)" if abstract else ""
    if count:
        err.write(f"{PROG}: {count} problem{'s' if count != 1 else ''} in {checked} template file(s){skipped}\n")
        return 1
    err.write(f"{PROG}: {checked} template file(s) OK{skipped}\n")
    return 0


def _list(args: argparse.Namespace, out: TextIO) -> int:
    library = TemplateLibrary(args.directory, max_size=args.max_size)
    for info in library.describe():
        description = " ".join(filter(None, ("[abstract]" if info.abstract else "", safe(info.description))))
        out.write(f"{info.name}\t{description}\n" if description else f"{info.name}\n")
        for var in info.variables:
            default = "required" if var.required else f"default {var.default!r}"
            description = f"  {safe(var.description)}" if var.description else ""
            out.write(f"    ${var.name} ({default}){description}\n")
    return 0


def _usage_line(usage: UsageInfo | None) -> str:
    if usage is None:
        return "usage: not reported"
    return f"usage: {usage.prompt_tokens} prompt + {usage.completion_tokens} completion = {usage.total_tokens} tokens"


def _print_tool_calls(response: ChatCompletionResponse, out: TextIO) -> None:
    message = response.assistant_message()
    for call in (message.tool_calls if message is not None else None) or ():
        out.write(safe(f"[tool call {call.function.name}({raw_arguments(call)})]") + "\n")


def _send(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from chatdsl.client.sync import Client

    request = _rendered(args)
    with Client(**client_options(args)) as client:
        started = time.perf_counter()
        if args.stream:
            return _send_stream(client, request, args, out, err, started)
        response = client.chat_completion(request)
    elapsed = time.perf_counter() - started
    if args.json:
        out.write(_safe_json(response.to_json(indent=2)) + "\n")
    else:
        for index, choice in enumerate(response.choices):
            if len(response.choices) > 1:
                out.write(f"[choice {index}]\n")
            text = choice.message.text()
            if text or not choice.message.tool_calls:  # no empty line above a tool call
                out.write(safe(text) + "\n")
        _print_tool_calls(response, out)
    latency = response.latency.total_seconds() if response.latency is not None else elapsed
    err.write(f"{_usage_line(response.usage)}; latency {latency:.3f} s\n")
    return 0


def _send_stream(
    client: Any, request: ChatCompletionRequest, args: argparse.Namespace, out: TextIO, err: TextIO, started: float
) -> int:
    usage = None
    first: float | None = None
    ended_line = True
    with client.chat_completion_stream(request) as stream:
        for chunk in stream:
            if chunk.error is not None:
                if not ended_line:
                    out.write("\n")
                raise chunk.error
            if chunk.usage is not None:
                usage = chunk.usage
            if args.json:
                out.write(_safe_json(chunk.to_json()) + "\n")
            else:
                text = chunk.text()
                if text:
                    if first is None:
                        first = time.perf_counter() - started
                    out.write(safe(text))
                    ended_line = text.endswith("\n")
            out.flush()
        final = stream.final_response()
    if not args.json:
        if not ended_line:
            out.write("\n")
        _print_tool_calls(final, out)
    total = time.perf_counter() - started
    first_text = f"first text after {first:.3f} s, " if first is not None else ""
    err.write(f"{_usage_line(usage)}; latency {first_text}{total:.3f} s in all\n")
    return 0


def _is_loopback(host: str) -> bool:
    """Whether *host* is a loopback address or ``localhost`` (only this machine can connect)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _serve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from chatdsl.testing import LocalServer

    api_key: str | None = None
    if args.api_key is not None and args.api_key_env is not None:
        raise Failure("give the key once: --api-key-env NAME (--api-key is deprecated)")
    if args.api_key_env is not None:
        api_key = key_from_env(args.api_key_env)
    elif args.api_key is not None:
        err.write(
            f"{PROG}: warning: --api-key is deprecated: other users of this machine can read a key given on the "
            "command line (ps); put it in an environment variable and pass --api-key-env NAME\n"
        )
        api_key = args.api_key
    if api_key is None and not _is_loopback(args.host):
        err.write(
            f"{PROG}: warning: serving on {args.host} without a key: anyone who can reach this machine can use "
            "the server; give one with --api-key-env NAME, or serve on 127.0.0.1\n"
        )
    # Nothing reads the recorded requests of `chatdsl serve`: keep none, so a long run holds no bodies.
    server = LocalServer(
        host=args.host,
        port=args.port,
        api_key=api_key,
        dialect=args.dialect,
        max_recorded=0,
        chunk_delay=args.delay,
    )
    try:
        server.start()
    except OSError as exc:
        raise Failure(f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc})") from None
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    # Ctrl-C and SIGTERM both stop the server cleanly (SIGINT too when a shell started us ignoring it).
    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        out.write(server.url + "\n")
        out.flush()
        err.write(f"{PROG}: serving chat completions on {server.url}/v1/chat/completions (Ctrl-C to stop)\n")
        err.flush()
        while not stop.wait(0.2):
            pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        server.stop()
    err.write(f"{PROG}: stopped\n")
    return 0


# ----------------------------------------------------------------------------------------- main


# --------------------------------------------------------------------------------------- tokens


def _add_token_budget(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-prompt-tokens",
        metavar="N",
        type=positive_int,
        help="fail a template whose rendered request (defaults and --var values; a required variable without "
        "a value counts as its placeholder text) has more than N prompt tokens (needs chatdsl[tokens])",
    )


def _add_tokens_command(commands: Any) -> None:
    tokens = commands.add_parser(
        "tokens", help="print the prompt tokens of a rendered template (needs chatdsl[tokens])"
    )
    tokens.add_argument("template", metavar="TEMPLATE", help="a .json or .toml template file")
    add_vars(tokens)
    tokens.add_argument("--model", metavar="M", help="count for this model instead of the template's")
    tokens.add_argument("--tokenizer", metavar="FILE", help="a mistral-common tokenizer file (an exact count)")
    add_max_size(tokens)


def _count(request: ChatCompletionRequest, tokenizer: str | None = None) -> Any:
    from chatdsl.tokens import count_tokens

    try:
        return count_tokens(request, tokenizer=tokenizer)
    except ImportError as exc:
        raise Failure(str(exc)) from None
    except ValueError as exc:
        raise Failure(_one_line(str(exc))) from None


def _tokens(args: argparse.Namespace, out: TextIO) -> int:
    request = _rendered(args)
    if args.model:
        request = request.with_model(args.model)
    result = _count(request, args.tokenizer)
    out.write(f"{result.tokens}\n")
    if result.note:
        sys.stderr.write(f"{PROG}: {safe(result.note)}\n")
    return 0


def _over_budget(name: str, path: Path, values: dict[str, str], args: argparse.Namespace) -> list[str]:
    template = RequestTemplate.load(path, max_size=args.max_size)
    filled = {missing: f"${{{missing}}}" for missing in missing_names(template, values)}
    result = _count(template.render({**values, **filled}, allow_extra=True))
    if result.tokens <= args.max_prompt_tokens:
        return []
    approximate = " (approximate)" if not result.exact else ""
    return [f"{name}: {result.tokens} prompt tokens{approximate}, over the budget of {args.max_prompt_tokens}"]


# ---------------------------------------------------------------------------------------- batch


def _add_batch_command(commands: Any) -> None:
    from chatdsl.cli.batch import add_batch_command

    add_batch_command(commands)


def _batch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from chatdsl.cli.batch import run_batch

    return run_batch(args, out, err)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``chatdsl`` command with *argv* (default ``sys.argv[1:]``) and return its exit status."""
    out, err = sys.stdout, sys.stderr
    args = _parser().parse_args(argv)
    try:
        if args.command == "render":
            return _render(args, out)
        if args.command == "validate":
            return _validate(args, out, err)
        if args.command == "tokens":
            return _tokens(args, out)
        if args.command == "list":
            return _list(args, out)
        if args.command == "send":
            return _send(args, out, err)
        if args.command == "batch":
            return _batch(args, out, err)
        if args.command == "run":
            from chatdsl.cli.run import run_command

            return run_command(args, out, err)
        return _serve(args, out, err)
    except (ChatDSLError, Failure) as exc:
        lines = exc.lines if isinstance(exc, Failure) else [_as_options(x, args.command) for x in _error_lines(exc)]
        if isinstance(exc, ChatDSLError) and not isinstance(exc, ValidationError):
            lines = [f"{type(exc).__name__}: {line}" for line in lines]
        for line in lines:
            err.write(f"{PROG}: error: {safe(line)}\n")
        return 1
    except KeyboardInterrupt:
        err.write(f"\n{PROG}: interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader went away (``chatdsl render t.toml | head``): stop quietly, as the Python docs advise.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
