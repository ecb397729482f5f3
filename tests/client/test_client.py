"""``chatdsl.Client`` against a real loopback server: construction, what is sent, what comes back, the session."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import attrs
import pytest
import requests

import chatdsl
from chatdsl import (
    ChatCompletionResponse,
    Client,
    FinishReason,
    MalformedResponseError,
    RateLimitInfo,
    RetryPolicy,
    Timeout,
    ValidationError,
)
from chatdsl.testing import Reply
from tests._secrets import TEST_KEY

KEY = TEST_KEY  # the secret guard (tests/_secrets.py) fails a test that leaks it
REQUEST = chatdsl.chat("mistral-small-latest").system("Be brief.").user("What is the capital of France?")


# ------------------------------------------------------------------------------ construction


def test_the_key_comes_from_the_environment(monkeypatch, server):
    monkeypatch.setenv("MISTRAL_API_KEY", KEY)
    with Client(base_url=server.url) as client:
        assert client.chat_completion(REQUEST).text()
    assert server.last_request.headers["authorization"] == f"Bearer {KEY}"


def test_a_missing_key_is_an_error_before_any_io(monkeypatch):
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    with pytest.raises(ValidationError, match="MISTRAL_API_KEY") as info:
        Client(base_url="http://127.0.0.1:9")  # nothing listens there: no I/O is tried
    assert info.value.path == "api_key"
    assert isinstance(info.value, chatdsl.ChatDSLError)


@pytest.mark.parametrize("bad", ["", "sk key", "sk\nkey", "sk\x00", "clé"])
def test_a_malformed_key_is_refused_without_showing_it(bad):
    with pytest.raises(ValidationError) as info:
        Client(bad, base_url="http://127.0.0.1:9")
    assert info.value.path == "api_key"
    if bad:
        assert bad not in str(info.value)


def test_repr_never_shows_the_key(client):
    assert KEY not in repr(client)
    assert "***" in repr(client)
    assert KEY not in repr(client.with_options(max_retries=0))


@pytest.mark.parametrize(
    "url", ["http://api.example.com", "http://10.0.0.1:8000", "http://api.example.com:8080/proxy/"]
)
def test_plain_http_to_a_remote_host_is_refused(url):
    with pytest.raises(ValidationError, match="allow_insecure_http") as info:
        Client(KEY, base_url=url)
    assert "secret" not in str(info.value)
    assert Client(KEY, base_url=url, allow_insecure_http=True).base_url.startswith("http://")


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:80", "https://x.example"])
def test_https_and_loopback_http_are_accepted(url):
    assert Client(KEY, base_url=url).base_url == url


@pytest.mark.parametrize("url", ["ftp://x.example", "api.mistral.ai", "https://", "https://x.example/?a=1", 3])
def test_a_bad_base_url_is_refused(url):
    with pytest.raises(ValidationError, match="base_url"):
        Client(KEY, base_url=url)


def test_a_base_url_with_a_path_prefix_and_a_trailing_slash(server):
    # the server answers 404 for unknown paths: the prefix is kept and the slash is not doubled
    with Client(KEY, base_url=server.url + "/", max_retries=0) as client:
        assert client.base_url == server.url
        client.chat_completion(REQUEST)
    with Client(KEY, base_url=server.url + "/proxy/", max_retries=0) as client, pytest.raises(chatdsl.NotFoundError):
        client.chat_completion(REQUEST)
    assert [r.path for r in server.requests] == ["/v1/chat/completions", "/proxy/v1/chat/completions"]


def test_timeout_accepts_a_number_or_a_timeout():
    assert Timeout.coerce(3) == Timeout(connect=3, read=3)
    assert Client(KEY, base_url="http://127.0.0.1:1", timeout=2.5).timeout == Timeout(connect=2.5, read=2.5, total=None)
    assert Timeout().total is None
    with pytest.raises(ValidationError, match=r"timeout\.read: -1"):
        Timeout(read=-1)
    with pytest.raises(ValidationError, match="timeout"):
        Timeout.coerce("5")  # type: ignore[arg-type]


def test_max_retries_overrides_the_policy():
    client = Client(
        KEY, base_url="http://127.0.0.1:1", retry=RetryPolicy(max_retries=5, initial_delay=1), max_retries=1
    )
    assert client.retry == RetryPolicy(max_retries=1, initial_delay=1)
    assert client.max_retries == 1
    with pytest.raises(ValidationError, match="max_retries"):
        Client(KEY, base_url="http://127.0.0.1:1", max_retries=-1)


# ------------------------------------------------------------------------------ what is sent


def test_the_request_on_the_wire(client, server):
    request = REQUEST.with_temperature(0).with_max_tokens(50)
    client.chat_completion(request)
    recorded = server.last_request
    assert recorded.method == "POST"
    assert recorded.path == "/v1/chat/completions"
    assert recorded.json == request.to_dict()
    assert recorded.headers["authorization"] == f"Bearer {KEY}"
    assert recorded.headers["user-agent"] == f"chatdsl/{chatdsl.__version__}"
    assert recorded.headers["content-type"] == "application/json"
    assert recorded.headers["accept"] == "application/json"
    assert KEY not in recorded.body.decode()


def test_a_streaming_request_is_sent_as_a_plain_one(client, server):
    response = client.chat_completion(REQUEST.with_streaming())
    assert server.last_request.json["stream"] is False
    assert response.text() == server.default_response(REQUEST).text()


def test_an_incomplete_request_is_never_sent(client, server):
    with pytest.raises(ValidationError, match="model"):
        client.chat_completion(chatdsl.chat().user("hi"))
    with pytest.raises(ValidationError, match="messages"):
        client.chat_completion_stream(chatdsl.chat("m"))
    with pytest.raises(TypeError, match="ChatCompletionRequest"):
        client.chat_completion({"model": "m"})  # type: ignore[arg-type]
    assert server.requests == []


def test_client_and_call_headers_are_sent(server):
    with Client(KEY, base_url=server.url, headers={"X-Team": "a", "X-Trace": "1"}) as client:
        client.chat_completion(REQUEST, headers={"X-Trace": "2"})
        assert server.last_request.headers["x-team"] == "a"
        assert server.last_request.headers["x-trace"] == "2"
        other = client.with_options(headers={"x-team": None, "X-New": "n"})
        other.chat_completion(REQUEST)
        assert "x-team" not in server.last_request.headers
        assert server.last_request.headers["x-new"] == "n"
        assert other.headers == {"X-Trace": "1", "X-New": "n"}


def test_a_netrc_entry_cannot_replace_the_key(server, tmp_path, monkeypatch):
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login someone password other\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with Client(KEY, base_url=server.url) as client:
        client.chat_completion(REQUEST)
    assert server.last_request.headers["authorization"] == f"Bearer {KEY}"


# ------------------------------------------------------------------------------ what comes back


def test_the_response_and_its_http_facts(client, server):
    response = client.chat_completion(REQUEST)
    assert response == server.default_response(REQUEST)
    assert response.choices[0].finish_reason is FinishReason.STOP
    assert response.assistant_message().text() == "echo: What is the capital of France?"
    assert response.created.tzinfo is not None
    assert isinstance(response.latency, timedelta)
    assert timedelta(0) < response.latency < timedelta(seconds=5)
    assert response.request_id
    assert len(response.request_id) == 32
    assert response.rate_limit == RateLimitInfo.from_headers(server.rate_limit_headers)
    assert response.rate_limit.remaining_requests == 119
    assert response.retries_taken == 0


def test_latency_covers_a_slow_server(client, server):
    server.enqueue(Reply.stall(0.3))
    response = client.chat_completion(REQUEST)
    assert timedelta(seconds=0.25) < response.latency < timedelta(seconds=5)


def test_the_request_id_falls_back_to_x_request_id(client, server):
    server.enqueue(
        Reply.json(headers={"mistral-correlation-id": None, "x-request-id": "rid-7"}),
        Reply.json(headers={"mistral-correlation-id": None, "x-request-id": None}),
    )
    assert client.chat_completion(REQUEST).request_id == "rid-7"
    response = client.chat_completion(REQUEST)
    assert response.request_id is None


def test_no_rate_limit_headers_give_none(client, server):
    server.rate_limit_headers = {}
    assert client.chat_completion(REQUEST).rate_limit is None


def test_a_json_schema_answer_parses_with_output(client):
    @attrs.frozen
    class City:
        name: str
        country: str

    request = REQUEST.with_json_schema(
        {
            "type": "object",
            "properties": {"name": {"type": "string"}, "country": {"type": "string"}},
            "required": ["name", "country"],
            "additionalProperties": False,
        },
        name="city",
    )
    message = client.chat_completion(request).assistant_message()
    assert set(message.output()) == {"name", "country"}
    assert isinstance(message.output(City), City)


def test_a_tool_call_answer(client, server):
    weather = chatdsl.Tool.of(
        "get_weather", {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    )
    response = client.chat_completion(REQUEST.with_tools([weather]).with_tool_choice("any"))
    call = response.assistant_message().tool_calls[0]
    assert call.name == "get_weather"
    assert "city" in json.loads(call.function.arguments)
    assert response.choices[0].finish_reason is FinishReason.TOOL_CALLS


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (Reply.raw("<html>oops</html>", content_type="text/html"), "not JSON: '<html>oops</html>'"),
        (Reply.json({"object": "error", "message": "internal"}), "has no 'choices'"),
        (Reply.json([1, 2]), "has no 'choices'"),
        (Reply.json({"choices": "many"}), "not a chat completion"),
    ],
)
def test_a_malformed_success_body_is_a_clear_error_and_not_retried(client, server, reply, problem):
    server.enqueue(reply)
    with pytest.raises(MalformedResponseError, match=problem) as info:
        client.chat_completion(REQUEST)
    error = info.value
    assert isinstance(error, chatdsl.APIError)
    assert error.status_code == 200
    assert isinstance(error.body, str)
    assert error.body
    assert error.request_id
    assert len(server.requests) == 1


def test_a_malformed_body_error_carries_the_server_request_id(client, server):
    server.enqueue(Reply.raw("nope", headers={"mistral-correlation-id": "corr-1"}))
    with pytest.raises(MalformedResponseError) as info:
        client.chat_completion(REQUEST)
    assert info.value.request_id == "corr-1"
    assert info.value.body == "nope"


def test_a_gzip_encoded_body_is_decoded(client, server):
    import gzip

    body = server.default_response(REQUEST).to_json().encode()
    server.enqueue(
        Reply.raw(gzip.compress(body), content_type="application/json", headers={"Content-Encoding": "gzip"})
    )
    assert client.chat_completion(REQUEST).text() == "echo: What is the capital of France?"


# ------------------------------------------------------------------------------ the session


def test_one_connection_serves_many_calls(client, server):
    for _ in range(3):
        client.chat_completion(REQUEST)
    with client.chat_completion_stream(REQUEST) as stream:
        list(stream)
    client.chat_completion(REQUEST)
    assert server.connections_accepted == 1
    assert len({r.connection_id for r in server.requests}) == 1


def test_with_options_shares_the_session(client, server):
    other = client.with_options(timeout=Timeout(read=9), max_retries=0, headers={"X-A": "1"})
    assert other.session is client.session
    assert other.timeout == Timeout(read=9)
    assert other.max_retries == 0
    assert client.max_retries == 2
    assert client.headers == {}
    client.chat_completion(REQUEST)
    other.chat_completion(REQUEST)
    assert server.connections_accepted == 1
    other.close()  # a derived client does not own the session
    client.chat_completion(REQUEST)
    assert server.connections_accepted == 1


def test_with_options_checks_the_new_settings(client):
    with pytest.raises(ValidationError, match="allow_insecure_http"):
        client.with_options(base_url="http://remote.example")
    assert client.with_options(base_url="http://remote.example", allow_insecure_http=True).base_url
    with pytest.raises(ValidationError, match="api_key"):
        client.with_options(api_key="")


class CountingSession(requests.Session):
    closes = 0

    def close(self) -> None:
        self.closes += 1
        super().close()


def test_a_user_session_is_used_as_is_and_never_closed(server):
    session = CountingSession()
    session.headers["X-From-Session"] = "yes"
    with Client(KEY, base_url=server.url, session=session) as client:
        assert client.session is session
        client.chat_completion(REQUEST)
    assert session.closes == 0
    assert server.last_request.headers["x-from-session"] == "yes"
    session.close()


def test_close_closes_an_own_session_and_stops_the_client(server):
    client = Client(KEY, base_url=server.url)
    session = client.session
    client.chat_completion(REQUEST)
    client.close()
    client.close()  # idempotent
    assert client.closed
    assert server.wait_idle(2.0), "closing the session closes its connections"
    with pytest.raises(chatdsl.ClientClosedError, match="closed"):
        client.chat_completion(REQUEST)
    assert session is client.session


# ------------------------------------------------------------------------------ logging and the key


def test_logs_say_method_url_status_latency_retries_and_never_the_key(server, caplog):
    caplog.set_level(logging.DEBUG)  # the root logger: chatdsl, urllib3 and requests
    server.enqueue(Reply.error(503, "busy"))
    with Client(KEY, base_url=server.url, _sleep=lambda _: None) as client:
        response = client.chat_completion(REQUEST)
        with client.chat_completion_stream(REQUEST) as stream:
            list(stream)
        server.enqueue(Reply.error(401, "bad key"))
        with pytest.raises(chatdsl.AuthenticationError) as info:
            client.chat_completion(REQUEST)
    ours = [r for r in caplog.records if r.name == "chatdsl"]
    text = "\n".join(r.getMessage() for r in ours)
    assert f"POST {server.url}/v1/chat/completions -> 200 in " in text
    assert "retries 1" in text
    assert f"request id {response.request_id}" in text
    assert "failed (HTTP 503); retry 1 of 2" in text
    assert any(r.name.startswith("urllib3") for r in caplog.records)
    assert KEY not in caplog.text
    assert KEY not in str(info.value)
    assert KEY not in repr(info.value)
    assert KEY not in repr(info.value.headers)
    assert KEY not in repr(info.value.body)


def test_the_package_exports_the_client_names():
    for name in ("Client", "ChatCompletionStream", "Timeout", "RetryPolicy", "MalformedResponseError"):
        assert name in chatdsl.__all__
        assert getattr(chatdsl, name).__module__.startswith("chatdsl.")
    assert isinstance(ChatCompletionResponse(), ChatCompletionResponse)
