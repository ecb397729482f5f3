"""Error mapping, retries, backoff, Retry-After and timeouts, against a real loopback server.

Every test with a client runs for both clients (``make_client``, and the ``client`` fixture here)."""

from __future__ import annotations

import logging
import socket
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

import chatdsl
from chatdsl import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RetryPolicy,
    StreamError,
    Timeout,
    UnprocessableEntityError,
    ValidationError,
)
from chatdsl.client.retry import Attempts, attempt_timeouts, retry_delay, retryable_status
from chatdsl.client.status import _retry_after, api_error
from chatdsl.testing import Reply
from tests._secrets import TEST_KEY

KEY = TEST_KEY  # the secret guard (tests/_secrets.py) fails a test that leaks it
REQUEST = chatdsl.chat("mistral-small-latest").user("Hello there")


@pytest.fixture
def client(make_client, server, sleeps):
    """Either client (``make_client``) of the server, its retry waits recorded in ``sleeps``: tests run for both."""
    with make_client(KEY, base_url=server.url, _sleep=sleeps.append) as running:
        yield running


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------ status -> class


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (422, UnprocessableEntityError),
        (429, RateLimitError),
        (500, InternalServerError),
        (502, InternalServerError),
        (503, InternalServerError),
        (504, InternalServerError),
        (418, APIError),
        (409, APIError),
        (302, APIError),
    ],
)
@pytest.mark.parametrize("streamed", [False, True])
def test_each_status_raises_its_class_with_status_message_body_and_request_id(client, server, status, cls, streamed):
    server.enqueue(
        Reply.error(status, f"problem {status}", type="some_type", code="1234", headers={"x-request-id": "r"})
    )
    call = client.chat_completion_stream if streamed else client.chat_completion
    with pytest.raises(cls) as info:
        call(REQUEST, max_retries=0)
    error = info.value
    assert type(error) is cls
    assert error.status_code == status
    assert error.message == f"problem {status}"
    assert error.body["type"] == "some_type"
    assert error.body["code"] == "1234"
    assert error.request_id == server_request_id(error)
    assert str(error) == f"HTTP {status}: problem {status} (request id {error.request_id})"


def server_request_id(error: APIError) -> str:
    return error.headers["mistral-correlation-id"]


def test_a_wrong_key_is_an_authentication_error_from_the_server(make_client, server):
    with make_client("sk-wrong", base_url=server.url) as client, pytest.raises(AuthenticationError) as info:
        client.chat_completion(REQUEST)
    assert info.value.message == "Unauthorized"
    assert server.refused == 1, "401 is never retried"
    assert server.requests == []  # a refused request is not recorded


@pytest.mark.parametrize(
    "wrap",
    [
        lambda detail: {"detail": detail},
        lambda detail: {  # Mistral's error object holding the validation details
            "object": "error",
            "message": {"detail": detail},
            "type": "invalid_request_message_error",
            "param": None,
            "code": None,
        },
        lambda detail: {  # the API's newer shape: the findings as the message itself (and as detail)
            "object": "Error",
            "detail": detail,
            "message": detail,
            "code": 3001,
        },
        lambda detail: {"object": "Error", "message": detail, "code": 3001},
    ],
    ids=["detail", "error-object", "message-list", "message-list-only"],
)
def test_a_validation_error_carries_the_details(client, server, wrap):
    detail = [{"loc": ["body", "messages", 0, "content"], "msg": "Field required", "type": "missing"}]
    server.enqueue(Reply.error(422, body=wrap(detail)))
    with pytest.raises(UnprocessableEntityError) as info:
        client.chat_completion(REQUEST)
    assert info.value.details == detail
    assert info.value.message == "body.messages.0.content: Field required"
    assert info.value.body == wrap(detail)
    assert len(server.requests) == 1


def test_an_error_message_made_of_several_findings_is_one_readable_line(client, server):
    findings = [
        {"type": "missing", "loc": ["body", "model"], "msg": "Field required", "input": {"messages": []}},
        {"type": "too_short", "loc": ["body", "messages"], "msg": "List should have at least 1 item", "input": []},
    ]
    body = {"object": "Error", "detail": findings, "message": findings, "code": 3001}
    server.enqueue(Reply.error(400, body=body))
    with pytest.raises(BadRequestError) as info:
        client.chat_completion(REQUEST)
    assert info.value.message == "body.model: Field required; body.messages: List should have at least 1 item"
    assert info.value.body == body


def test_the_servers_own_validation_reaches_the_caller(client, server):
    # a body our model accepts but this server's rules reject: the 422 shape of the real API
    server.strict = True
    server.enqueue(Reply.error(422, body={"detail": [{"loc": ["body", "model"], "msg": "Invalid model", "type": "x"}]}))
    with pytest.raises(UnprocessableEntityError, match=r"body\.model: Invalid model"):
        client.chat_completion(REQUEST)


def test_an_html_error_page_gives_its_text(client, server):
    server.enqueue(Reply.html(502), Reply.html(502), Reply.html(502))
    with pytest.raises(InternalServerError) as info:
        client.chat_completion(REQUEST)
    error = info.value
    assert error.status_code == 502
    assert isinstance(error.body, str)
    assert error.body.startswith("<html>")
    assert "502 Bad Gateway" in error.message
    assert len(error.message) <= 200


def test_a_long_text_body_is_cut_to_200_characters(client, server):
    server.enqueue(Reply.raw("x" * 5000, status=400))
    with pytest.raises(BadRequestError) as info:
        client.chat_completion(REQUEST)
    assert len(info.value.message) == 200
    assert len(info.value.body) == 5000


def test_an_empty_error_body_uses_the_reason_phrase(client, server):
    server.enqueue(Reply.raw(b"", status=403))
    with pytest.raises(PermissionDeniedError, match="HTTP 403: Forbidden"):
        client.chat_completion(REQUEST)


# ------------------------------------------------------------------------------ retries


def test_5xx_is_retried_with_exponential_backoff_and_jitter(client, server, sleeps):
    server.enqueue(Reply.error(503), Reply.error(500))
    response = client.chat_completion(REQUEST)
    assert response.retries_taken == 2
    assert len(server.requests) == 3
    assert len(sleeps) == 2
    assert 0.375 <= sleeps[0] <= 0.5
    assert 0.75 <= sleeps[1] <= 1.0


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 599])
def test_these_statuses_are_retried(client, server, status):
    server.enqueue(Reply.error(status))
    assert client.chat_completion(REQUEST).retries_taken == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 413, 418, 422])
def test_other_4xx_are_never_retried(client, server, sleeps, status):
    server.enqueue(Reply.error(status))
    with pytest.raises(APIError):
        client.chat_completion(REQUEST)
    assert len(server.requests) == 1
    assert sleeps == []


def test_exhausted_retries_raise_the_last_error(client, server, sleeps):
    server.enqueue(Reply.error(500, "one"), Reply.error(502, "two"), Reply.error(503, "three"))
    with pytest.raises(InternalServerError, match="three") as info:
        client.chat_completion(REQUEST)
    assert info.value.status_code == 503
    assert len(server.requests) == 3
    assert len(sleeps) == 2


def test_max_retries_per_client_and_per_call(make_client, server, sleeps):
    with make_client(KEY, base_url=server.url, max_retries=5, _sleep=sleeps.append) as client:
        server.enqueue(*[Reply.error(503)] * 5)
        assert client.chat_completion(REQUEST).retries_taken == 5
        assert [round(s / d, 2) <= 1 for s, d in zip(sleeps, [0.5, 1, 2, 4, 8], strict=True)] == [True] * 5
        server.enqueue(Reply.error(503))
        with pytest.raises(InternalServerError):
            client.chat_completion(REQUEST, max_retries=0)
    assert len(server.requests) == 7


def test_retry_after_seconds_is_honoured_exactly(client, server, sleeps):
    server.enqueue(Reply.error(429, "slow down", retry_after=2), Reply.error(503, retry_after=0))
    assert client.chat_completion(REQUEST).retries_taken == 2
    assert sleeps == [2.0, 0.0]


def test_retry_after_as_an_http_date(client, server, sleeps):
    when = datetime.now(UTC) + timedelta(seconds=30)
    server.enqueue(Reply.error(429, retry_after=when))
    client.chat_completion(REQUEST)
    assert 25 <= sleeps[0] <= 30


def test_retry_after_longer_than_the_cap_is_not_waited_for(client, server, sleeps):
    server.enqueue(Reply.error(429, "come back tomorrow", retry_after=86400))
    with pytest.raises(RateLimitError) as info:
        client.chat_completion(REQUEST)
    assert info.value.retry_after == 86400
    assert sleeps == []
    assert len(server.requests) == 1


def test_the_cap_is_configurable(make_client, server, sleeps):
    policy = RetryPolicy(max_retry_after=100_000)
    with make_client(KEY, base_url=server.url, retry=policy, _sleep=sleeps.append) as client:
        server.enqueue(Reply.error(429, retry_after=86400))
        client.chat_completion(REQUEST)
    assert sleeps == [86400.0]


@pytest.mark.slow
def test_retry_after_1_really_waits_about_a_second(make_client, server):
    server.enqueue(Reply.error(429, "wait a second", retry_after=1))
    with make_client(KEY, base_url=server.url) as client:
        start = time.perf_counter()
        response = client.chat_completion(REQUEST)
        elapsed = time.perf_counter() - start
    assert response.retries_taken == 1
    assert 0.9 <= elapsed < 5


def test_rate_limit_error_reads_retry_after(client, server):
    server.enqueue(Reply.error(429, "slow", retry_after=7))
    with pytest.raises(RateLimitError) as info:
        client.chat_completion(REQUEST, max_retries=0)
    assert info.value.retry_after == 7.0
    server.enqueue(Reply.error(429, "slow"))
    with pytest.raises(RateLimitError) as info:
        client.chat_completion(REQUEST, max_retries=0)
    assert info.value.retry_after is None


def test_parsing_retry_after():
    assert _retry_after({"retry-after": "3"}) == 3.0
    assert _retry_after({"retry-after": " 1.5 "}) == 1.5
    assert _retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert _retry_after({"retry-after": "soon"}) is None
    assert _retry_after({"retry-after": "-1"}) is None
    assert _retry_after({"retry-after": "nan"}) is None
    for odd in ("1_0", "inf", "1e3", "+5", "0x10", "٣"):  # float() would take these; HTTP says digits
        assert _retry_after({"retry-after": odd}) is None, odd
        assert _retry_after({"retry-after-ms": odd}) is None, odd
    assert _retry_after({"retry-after-ms": "1_0", "retry-after": "2"}) == 2.0
    assert _retry_after({}) is None
    past = format_datetime(datetime(2000, 1, 1, tzinfo=UTC), usegmt=True)
    assert _retry_after({"retry-after": past}) == 0.0


def test_backoff_values():
    policy = RetryPolicy()
    assert [policy.backoff(n, rand=0.0) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert [policy.backoff(n, rand=1.0) for n in range(3)] == [0.375, 0.75, 1.5]
    assert policy.backoff(0, retry_after=3.0) == 3.0
    assert policy.backoff(0, retry_after=61.0) is None
    assert RetryPolicy(jitter=0).backoff(1) == 1.0
    for _ in range(50):
        assert 0.375 <= policy.backoff(0) <= 0.5
    assert policy.should_retry_status(429)
    assert not policy.should_retry_status(400)


def test_retry_delay_gives_up_without_attempts_past_the_cap_or_at_the_deadline():
    policy = RetryPolicy(jitter=0)
    assert retry_delay(policy, 0, None, None, now=100.0) == 0.5
    assert retry_delay(policy, 1, None, 102.0, now=100.0) == 1.0
    assert retry_delay(policy, 1, None, 101.0, now=100.0) is None  # the wait would reach the deadline
    assert retry_delay(policy, 2, None, None, now=0.0) is None  # max_retries=2 used up
    assert retry_delay(policy, 0, 3.0, None, now=0.0) == 3.0  # Retry-After exactly
    assert retry_delay(policy, 0, 61.0, None, now=0.0) is None  # beyond max_retry_after
    assert retry_delay(RetryPolicy(max_retries=0), 0, None, None, now=0.0) is None


def test_attempt_timeouts_are_capped_at_the_time_left():
    limits = Timeout(connect=5.0, read=120.0, total=10.0)
    assert attempt_timeouts(limits, None, now=0.0) == (5.0, 120.0)
    assert attempt_timeouts(limits, 10.0, now=7.0) == (3.0, 3.0)
    assert attempt_timeouts(Timeout(connect=None, read=None), 10.0, now=4.0) == (6.0, 6.0)
    assert attempt_timeouts(limits, 10.0, now=10.0) is None
    assert retryable_status(RetryPolicy(), 503)
    assert not retryable_status(RetryPolicy(), 404)


def test_api_error_is_built_from_status_headers_and_body_bytes():
    headers = {"retry-after": "2", "x-request-id": "req-9", "Content-Type": "application/json"}
    error = api_error(429, "Too Many Requests", headers, b'{"message": "slow down"}')
    assert type(error) is RateLimitError
    assert (error.status_code, error.retry_after, error.request_id) == (429, 2.0, "req-9")
    assert error.body == {"message": "slow down"}
    assert error.headers["content-type"] == "application/json"
    assert "slow down" in str(error)
    assert type(api_error(503, "Service Unavailable", {}, b"")) is InternalServerError
    assert type(api_error(404, None, {}, b"")) is NotFoundError
    teapot = api_error(418, None, {}, b"<html>\xff")
    assert type(teapot) is APIError
    assert teapot.body == "<html>\ufffd"
    assert "HTTP 418" in str(api_error(418, None, {}, b""))


@pytest.mark.parametrize(
    ("field", "value"), [("max_retries", -1), ("max_retries", 1.5), ("initial_delay", -0.1), ("jitter", 2)]
)
def test_a_bad_policy_is_refused(field, value):
    with pytest.raises(ValidationError, match=field):
        RetryPolicy(**{field: value})


# ------------------------------------------------------------------------------ transport failures


def test_a_refused_connection_is_an_api_connection_error_after_the_retries(make_client, sleeps):
    url = f"http://127.0.0.1:{_closed_port()}"
    with make_client(KEY, base_url=url, _sleep=sleeps.append) as client, pytest.raises(APIConnectionError) as info:
        client.chat_completion(REQUEST)
    error = info.value
    assert not isinstance(error, APITimeoutError)
    assert isinstance(error.__cause__, make_client.transport_error)
    assert "Connection refused" in str(error)
    assert f"POST {url}/v1/chat/completions" in str(error)
    assert KEY not in str(error)
    assert len(sleeps) == 2


def test_the_retry_loop_names_the_method_it_was_given(caplog):
    attempts = Attempts(RetryPolicy(), Timeout(total=0.05), "http://h/v1/files", stream=False, client="C", method="GET")
    with caplog.at_level(logging.DEBUG, logger="chatdsl"):
        attempts.begin(closed=False)
        time.sleep(0.06)
        with pytest.raises(APITimeoutError, match=r"^GET http://h/v1/files: the total deadline"):
            attempts.begin(closed=False)
    assert caplog.records[0].getMessage() == "GET http://h/v1/files (attempt 1, stream=False)"
    assert attempts.late_headers().args[0].startswith("GET http://h/v1/files: ")


def test_a_refused_stream_raises_at_once(make_client, sleeps):
    url = f"http://127.0.0.1:{_closed_port()}"
    with (
        make_client(KEY, base_url=url, max_retries=1, _sleep=sleeps.append) as client,
        pytest.raises(APIConnectionError, match="refused"),
    ):
        client.chat_completion_stream(REQUEST)
    assert len(sleeps) == 1


@pytest.mark.parametrize("reset", [False, True])
def test_a_dropped_connection_is_retried(client, server, reset):
    server.enqueue(Reply.drop(reset=reset))
    response = client.chat_completion(REQUEST)
    assert response.retries_taken == 1
    assert len(server.requests) == 2


def test_a_dropped_connection_becomes_an_api_connection_error(client, server, make_client):
    server.enqueue(*[Reply.drop()] * 3)
    with pytest.raises(APIConnectionError) as info:
        client.chat_completion(REQUEST)
    assert isinstance(info.value.__cause__, make_client.transport_error)


def test_a_body_cut_mid_json_is_an_api_connection_error_not_retried(client, server):
    server.enqueue(Reply.truncated(), Reply.default())
    with pytest.raises(APIConnectionError, match="closed before the body ended") as info:
        client.chat_completion(REQUEST)
    assert not isinstance(info.value, chatdsl.MalformedResponseError)
    assert info.value.response_started  # the server answered 200: it generated (and billed) the answer
    assert "not sent again" in str(info.value)
    assert len(server.requests) == 1


def test_a_read_timeout_before_the_headers(make_client, server, sleeps):
    server.enqueue(Reply.delayed(1.0, Reply.json(status=200)))
    with make_client(KEY, base_url=server.url, timeout=Timeout(read=0.2), max_retries=0) as client:
        start = time.perf_counter()
        with pytest.raises(APITimeoutError, match=r"no data for 0\.2 s") as info:
            client.chat_completion(REQUEST)
        assert time.perf_counter() - start < 0.9
    assert isinstance(info.value, APIConnectionError)
    assert info.value.__cause__ is not None
    assert not info.value.response_started


def test_a_per_call_timeout(client, server):
    server.enqueue(Reply.stall(0.6))
    with pytest.raises(APITimeoutError):
        client.chat_completion(REQUEST, timeout=Timeout(read=0.2), max_retries=0)


def test_the_total_deadline_covers_retries_and_backoff(make_client, server, sleeps):
    server.enqueue(Reply.error(503, retry_after=5), Reply.default())
    with (
        make_client(KEY, base_url=server.url, timeout=Timeout(total=2), _sleep=sleeps.append) as client,
        pytest.raises(InternalServerError),
    ):
        client.chat_completion(REQUEST)  # waiting 5 s would pass the deadline: no retry
    assert sleeps == []


def test_the_total_deadline_ends_a_stream_with_an_error_chunk(make_client, server):
    chunks = server.default_chunks(REQUEST.with_streaming())
    server.enqueue(Reply.stream(chunks, delay=0.3))
    with make_client(KEY, base_url=server.url, timeout=Timeout(total=0.5), max_retries=0) as client:
        start = time.perf_counter()
        with client.chat_completion_stream(REQUEST) as stream:
            received = list(stream)
        assert time.perf_counter() - start < 2.0
    last = received[-1]
    assert isinstance(last.error, StreamError)
    assert "total deadline" in str(last.error)
    assert isinstance(last.error.__cause__, APITimeoutError)
    assert 1 <= len(received) < len(chunks) + 1


# ------------------------------------------------------------------------------ logging


def test_retries_are_logged_at_info(make_client, server, caplog):
    caplog.set_level(logging.INFO, logger="chatdsl")
    server.enqueue(Reply.error(502))
    with make_client(KEY, base_url=server.url, _sleep=lambda _: None) as client:
        client.chat_completion(REQUEST)
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO and r.name == "chatdsl"]
    assert len(infos) == 1
    assert f"POST {server.url}/v1/chat/completions failed (HTTP 502); retry 1 of 2 in " in infos[0]


def test_no_exception_text_or_log_line_contains_the_key(make_client, server, caplog):
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    with make_client(KEY, base_url=server.url, timeout=Timeout(read=0.2), _sleep=lambda _: None) as client:
        server.enqueue(
            Reply.error(400, f"bad request from {KEY[:4]}"),
            Reply.drop(),
            Reply.drop(),
            Reply.drop(),
            Reply.stall(1),  # after a success status: not retried
            Reply.truncated(),  # likewise
            Reply.raw("not json"),
            Reply.stream_cut(after=1),
            Reply.stream_error("boom"),
        )
        for _ in range(5):
            try:
                client.chat_completion(REQUEST)
            except chatdsl.ChatDSLError as exc:
                chain: BaseException | None = exc
                while chain is not None:
                    texts += [str(chain), repr(chain)]
                    chain = chain.__cause__ or chain.__context__
        for _ in range(2):
            with client.chat_completion_stream(REQUEST) as stream:
                errors = [chunk.error for chunk in stream if chunk.error]
            texts += [str(errors[0]), repr(errors[0]), str(errors[0].__cause__)]
    assert len(texts) > 10
    for text in texts:
        assert KEY not in text
    assert KEY not in caplog.text
