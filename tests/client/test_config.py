"""A client's configuration: the environment's keys, credentials in URLs, header names and values,
proxies and loopback, cookies, and a client that refuses pickling and copying."""

from __future__ import annotations

import copy
import logging
import pickle
import socket
from typing import Any

import pytest
import requests

from chatdsl import (
    Client,
    Timeout,
    ValidationError,
)
from chatdsl.testing import LocalServer, Reply
from tests._echo import ANSWER, KEY, REQUEST
from tests._secrets import leaked

pytestmark = pytest.mark.usefixtures("no_keys_in_the_environment")


@pytest.fixture
def client(quick_client: Client) -> Client:
    return quick_client


def test_openai_api_key_is_read_for_openais_host_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with LocalServer(dialect="openai") as server:  # takes any key, or none
        _openai_key_cases(server)


def _openai_key_cases(server: LocalServer) -> None:
    official = Client(dialect="openai")
    assert "api_key='***'" in repr(official)
    for base_url in (server.url, "https://openai.example.com", "https://api.openai.com.example.org"):
        assert "api_key=None" in repr(Client(base_url=base_url, dialect="openai")), base_url
    with Client(base_url=server.url, dialect="openai") as local:
        local.chat_completion(REQUEST)
    assert server.last_request is not None
    assert server.last_request.authorization is None
    # a derived client keeps an environment key only where it could have read it itself
    assert "api_key=None" in repr(official.with_options(base_url=server.url))
    assert "api_key='***'" in repr(official.with_options(max_retries=0))
    explicit = Client(KEY, dialect="openai")
    with explicit.with_options(base_url=server.url) as derived:  # a key you pass goes where you send it
        derived.chat_completion(REQUEST)
    assert server.last_request.authorization == f"Bearer {KEY}"


def test_mistral_api_key_is_read_for_any_host(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISTRAL_API_KEY", KEY)
    with Client(base_url=server.url) as client:  # a proxy in front of Mistral's API takes the same key
        client.chat_completion(REQUEST)
    assert server.last_request is not None
    assert server.last_request.authorization == f"Bearer {KEY}"


def test_the_base_url_comes_from_the_environment_when_none_is_given(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MISTRAL_BASE_URL", server.url + "/")
    monkeypatch.setenv("OPENAI_BASE_URL", "https://openai.example.com")  # another dialect's: not read
    with Client(KEY) as client:
        assert client.base_url == server.url
        assert client.chat_completion(REQUEST).text() == ANSWER
    assert Client(KEY, base_url="https://proxy.example").base_url == "https://proxy.example"  # the argument wins
    monkeypatch.setenv("MISTRAL_BASE_URL", "  ")  # blank: not set
    assert Client(KEY).base_url == "https://api.mistral.ai"


def test_the_openai_dialect_reads_openai_base_url_and_keeps_its_key_at_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("MISTRAL_BASE_URL", "https://mistral-proxy.example")  # the Mistral dialect's: not read
    with LocalServer(dialect="openai") as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        with Client(dialect="openai") as local:
            assert local.base_url == server.url
            assert "api_key=None" in repr(local)  # OpenAI's key never goes to another host
            local.chat_completion(REQUEST)
        assert server.last_request is not None
        assert server.last_request.authorization is None
    monkeypatch.setenv("OPENAI_BASE_URL", "https://api.openai.com")
    assert "api_key='***'" in repr(Client(dialect="openai"))


@pytest.mark.parametrize(("dialect", "env"), [("openai", "OPENAI_BASE_URL"), ("mistral", "MISTRAL_BASE_URL")])
def test_a_base_url_variable_may_end_with_v1_as_the_openai_sdk_reads_it(
    dialect: str, env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LocalServer(dialect=dialect) as server:  # type: ignore[arg-type]
        monkeypatch.setenv(env, server.url + "/v1/")
        with Client(KEY, dialect=dialect) as client:  # type: ignore[arg-type]
            assert client.base_url == server.url  # one /v1 dropped: chatdsl adds /v1/chat/completions
            assert client.chat_completion(REQUEST).text()
        assert server.last_request is not None
    monkeypatch.setenv(env, "https://proxy.example/openai/v1")
    assert Client(KEY, dialect=dialect).base_url == "https://proxy.example/openai"  # type: ignore[arg-type]
    monkeypatch.setenv(env, "https://proxy.example/v1/v1")  # only one is dropped: the rest is refused
    with pytest.raises(ValidationError, match=f"ends with /v1.*read from the {env} environment variable"):
        Client(KEY, dialect=dialect)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="ends with /v1, and chatdsl adds /v1/chat/completions itself") as caught:
        Client(KEY, base_url="https://api.openai.com/v1", dialect=dialect)  # type: ignore[arg-type]
    assert "environment variable" not in str(caught.value)  # an argument keeps the refusal
    assert "'https://api.openai.com'" in str(caught.value)


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("http://api.example.com", "is plain http to a remote host"),
        ("api.example.com", "is not an http:// or https:// URL with a host"),
        ("https://alice:s3cret-pw@proxy.example", "holds user:password@ credentials"),
    ],
)
def test_a_base_url_from_the_environment_gets_the_same_checks_and_names_the_variable(
    value: str, rule: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MISTRAL_BASE_URL", value)
    with pytest.raises(ValidationError) as caught:
        Client(KEY)
    message = str(caught.value)
    assert message.startswith("base_url: ")
    assert rule in message
    assert message.endswith("(read from the MISTRAL_BASE_URL environment variable)")
    assert "s3cret-pw" not in message
    with pytest.raises(ValidationError) as explicit:
        Client(KEY, base_url=value)
    assert "environment variable" not in str(explicit.value)


@pytest.mark.parametrize(
    "url",
    ["https://alice:s3cret-pw@proxy.example/mistral", "http://alice:s3cret-pw@127.0.0.1:8080", "https://tok@x.example"],
)
def test_credentials_in_the_base_url_are_refused(url: str) -> None:
    with pytest.raises(ValidationError) as info:
        Client(KEY, base_url=url)
    assert info.value.path == "base_url"
    assert "headers=" in info.value.rule
    assert "session=" in info.value.rule
    assert "s3cret" not in str(info.value)
    assert "tok@" not in str(info.value)
    with Client(KEY, base_url="https://proxy.example") as client, pytest.raises(ValidationError) as derived:
        client.with_options(base_url=url)
    assert derived.value.path == "base_url"


def test_the_clients_own_session_keeps_no_cookies(client: Client, server: LocalServer) -> None:
    server.enqueue(Reply.json(headers={"Set-Cookie": "affinity=node-7; Path=/"}))
    client.chat_completion(REQUEST)
    client.chat_completion(REQUEST)
    assert server.last_request is not None
    assert "cookie" not in server.last_request.headers
    assert len(client.session.cookies) == 0


def test_a_session_you_pass_keeps_its_cookies(server: LocalServer) -> None:
    with requests.Session() as session, Client(KEY, base_url=server.url, session=session) as client:
        server.enqueue(Reply.json(headers={"Set-Cookie": "affinity=node-7; Path=/"}))
        client.chat_completion(REQUEST)
        client.chat_completion(REQUEST)
    assert server.last_request is not None
    assert server.last_request.headers.get("cookie") == "affinity=node-7"


@pytest.mark.parametrize(
    "headers",
    [{"X-Token": "tok-123456\n"}, {"X-Token": "tok-123456\r\nX-Evil: 1"}, {"X-Token": " tok-123456"}],
    ids=["trailing newline", "injected header", "leading space"],
)
def test_a_bad_header_value_is_refused_when_the_client_is_made_and_never_shown(headers: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match=r"headers\['X-Token'\]: is not one line") as info:
        Client(KEY, base_url="http://127.0.0.1:1", headers=headers)
    assert "tok-123456" not in str(info.value)


@pytest.mark.parametrize("name", ["X Token", "X-Token\n", "", "Ünicode"])
def test_a_bad_header_name_is_refused(name: str) -> None:
    with pytest.raises(ValidationError, match=r"is not a header name"):
        Client(KEY, base_url="http://127.0.0.1:1", headers={name: "1"})


def test_a_bad_per_call_header_is_refused_and_never_retried(
    client: Client, server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "chatdsl")
    with pytest.raises(ValidationError) as info:
        client.chat_completion(REQUEST, headers={"X-Token": "tok-123456\n"})
    assert "tok-123456" not in str(info.value)
    with pytest.raises(ValidationError):
        client.with_options(headers={"X-Token": "tok-123456\n"})
    assert server.requests == []
    assert "tok-123456" not in caplog.text
    assert "retry" not in caplog.text
    # a fine header still goes through, unchanged
    client.chat_completion(REQUEST, headers={"X-Token": "tok-1 2\t3"})
    assert server.last_request.headers["x-token"] == "tok-1 2\t3"


def test_a_loopback_base_url_never_goes_through_a_proxy(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = socket.create_server(("127.0.0.1", 0))
    proxy.setblocking(False)
    address = f"http://127.0.0.1:{proxy.getsockname()[1]}"
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, address)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    try:
        with Client(KEY, base_url=server.url, timeout=Timeout(connect=1, read=1), max_retries=0) as client:
            assert client.chat_completion(REQUEST).choices[0].message.content == ANSWER
            with pytest.raises(BlockingIOError):
                proxy.accept()  # nobody came
        assert len(server.requests) == 1
    finally:
        proxy.close()


def test_a_dot_localhost_name_is_loopback_only_if_it_resolves_there(monkeypatch: pytest.MonkeyPatch) -> None:
    from chatdsl.client import config as _client

    answers = {"api.localhost": "127.0.0.1", "evil.localhost": "203.0.113.7"}

    def resolve(host: str, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], 0))]

    monkeypatch.setattr(_client.socket, "getaddrinfo", resolve)
    assert Client(KEY, base_url="http://api.localhost:8000").base_url == "http://api.localhost:8000"
    assert Client(KEY, base_url="http://localhost:8000").base_url == "http://localhost:8000"
    for host in ("evil.localhost", "unknown.localhost"):
        with pytest.raises(ValidationError, match="plain http to a remote host"):
            Client(KEY, base_url=f"http://{host}:8000")


def test_a_client_refuses_to_be_pickled_or_copied(client: Client) -> None:
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError, match="cannot be pickled") as info:
            pickle.dumps(client, protocol)
        assert not leaked(str(info.value))
    with pytest.raises(TypeError, match="cannot be pickled"):
        copy.copy(client)
