"""Transport errors are scrubbed: no request, key or frame holding the key is reachable from them,
and what an adapter refuses before sending is raised at once, never retried nor shown."""

from __future__ import annotations

import logging
import traceback
import types
from typing import Any

import pytest
import requests

import chatdsl
from chatdsl import (
    APIConnectionError,
    Client,
    Timeout,
)
from chatdsl.testing import LocalServer, Reply
from tests._secrets import TEST_KEY, leaked

KEY = TEST_KEY  # the secret guard (tests/_secrets.py) fails a test that leaks it
REQUEST = chatdsl.chat("mistral-small-latest").user("one two three four five six")

pytestmark = pytest.mark.usefixtures("no_keys_in_the_environment")


_SKIPPED = (types.TracebackType, types.FrameType, types.ModuleType, type, types.FunctionType, types.MethodType)


def _reachable(root: BaseException) -> list[str]:
    """Paths from *root*, through causes, contexts, arguments and attributes (not frames), to a
    ``requests`` request or response or to the key."""
    found: list[str] = []
    seen: set[int] = set()
    stack: list[tuple[object, str]] = [(root, "error")]
    while stack:
        value, path = stack.pop()
        if id(value) in seen or isinstance(value, _SKIPPED):
            continue
        seen.add(id(value))
        if isinstance(value, (requests.PreparedRequest, requests.Response)):
            found.append(path)
        if isinstance(value, (str, bytes)):
            if (KEY if isinstance(value, str) else KEY.encode()) in value:
                found.append(path)
            continue
        if isinstance(value, BaseException):
            stack += [
                (v, f"{path}.{n}") for n, v in (("__cause__", value.__cause__), ("__context__", value.__context__))
            ]
            stack += [(arg, f"{path}.args[{i}]") for i, arg in enumerate(value.args)]
        if isinstance(value, dict):
            stack += [(item, f"{path}[{key!r}]") for key, item in value.items()]
            stack += [(key, f"{path}.keys()") for key in value]
            continue
        if isinstance(value, (list, tuple, set, frozenset)):
            stack += [(item, f"{path}[{i}]") for i, item in enumerate(value)]
            continue
        stack += [(item, f"{path}.{name}") for name, item in getattr(value, "__dict__", {}).items()]
        for cls in type(value).__mro__:
            slots = getattr(cls, "__slots__", ())
            for name in (slots,) if isinstance(slots, str) else slots:
                if hasattr(value, name):
                    stack.append((getattr(value, name), f"{path}.{name}"))
    return found


def test_no_request_or_key_is_reachable_from_a_transport_error(server: LocalServer) -> None:
    errors: list[BaseException] = []
    faults = [Reply.drop(reset=True), Reply.drop(), Reply.delayed(1.0), Reply.stall(1.0), Reply.truncated()]
    with Client(KEY, base_url=server.url, timeout=Timeout(connect=1, read=0.2), max_retries=0) as client:
        for fault in faults:
            server.enqueue(fault)
            with pytest.raises(APIConnectionError) as info:
                client.chat_completion(REQUEST)
            errors.append(info.value)
        for fault in (Reply.delayed(1.0), Reply.drop(reset=True)):
            server.enqueue(fault)
            with pytest.raises(APIConnectionError) as info:
                client.chat_completion_stream(REQUEST)
            errors.append(info.value)
        for fault in (Reply.stream_cut(1, reset=True), Reply.stream_stall(1.0)):
            server.enqueue(fault)
            with client.chat_completion_stream(REQUEST) as stream:
                error = list(stream)[-1].error
            assert error is not None
            errors.append(error)
    url = server.url
    server.stop()
    with Client(KEY, base_url=url, max_retries=0) as client, pytest.raises(APIConnectionError) as refused:
        client.chat_completion(REQUEST)
    errors.append(refused.value)
    for error in errors:
        assert error.__cause__ is not None
        assert _reachable(error) == [], repr(error)


def test_the_reachability_check_finds_an_unscrubbed_request(server: LocalServer) -> None:
    """The check above can fail: a raw ``requests`` error does hold the request and its key."""
    with pytest.raises(requests.ConnectionError) as info:
        requests.post("http://127.0.0.1:1/v1/chat/completions", headers={"Authorization": KEY}, timeout=2)
    assert "error.request" in _reachable(info.value)


def test_no_frame_of_a_transport_error_holds_the_key(server: LocalServer) -> None:
    """The frames of requests, urllib3 and http.client hold the headers; their locals are cleared."""
    url = server.url
    errors: list[BaseException] = []
    server.enqueue(Reply.drop(reset=True), Reply.stall(1.0))
    with Client(KEY, base_url=url, timeout=Timeout(connect=1, read=0.2), max_retries=0) as client:
        for _ in range(2):
            with pytest.raises(APIConnectionError) as info:
                client.chat_completion(REQUEST)
            errors.append(info.value)
        server.enqueue(Reply.stream_cut(1, reset=True))
        with client.chat_completion_stream(REQUEST) as stream:
            errors.append(list(stream)[-1].error)  # type: ignore[arg-type]
    server.stop()
    with Client(KEY, base_url=url, max_retries=0) as client, pytest.raises(APIConnectionError) as refused:
        client.chat_completion(REQUEST)
    errors.append(refused.value)
    for error in errors:
        shown = "".join(traceback.TracebackException.from_exception(error, capture_locals=True).format())
        assert "urllib3" in shown  # the foreign frames are still there, with their lines
        assert not leaked(shown), repr(error)


def test_an_error_raised_before_sending_is_never_retried_nor_shown(caplog: pytest.LogCaptureFixture) -> None:
    """What an adapter refuses before sending (a malformed URL or header) is raised at once, its text left out."""
    attempts: list[str] = []

    class Refusing(requests.adapters.BaseAdapter):
        def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
            attempts.append(str(request.url))
            raise requests.exceptions.InvalidHeader("Invalid header value: 'tok-123456\\n'")

        def close(self) -> None:
            pass

    session = requests.Session()
    session.mount("https://", Refusing())
    caplog.set_level(logging.DEBUG, "chatdsl")
    with Client(KEY, session=session, _sleep=lambda _: None) as client, pytest.raises(APIConnectionError) as info:
        client.chat_completion(REQUEST)
    assert len(attempts) == 1
    assert "nothing was sent" in str(info.value)
    assert "tok-123456" not in str(info.value)
    assert "tok-123456" not in caplog.text
    assert info.value.__cause__ is None
