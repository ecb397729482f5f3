"""chatdsl.runs.core: the rate gate's decisions (pause, pacing, client-side limits) on a clock the test moves."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatdsl import (
    APIConnectionError,
    BadRequestError,
    InternalServerError,
    MalformedResponseError,
    RateLimitError,
    RetryPolicy,
    ValidationError,
    chat,
)
from chatdsl.runs.core import ItemRun, RateGate, next_delay, reset_seconds


def _starts(gate: RateGate, attempts: int, *, step: float = 0.001, until: float = 100.0) -> list[float]:
    """Return when each of *attempts* attempts may start, asking every *step* seconds from 0 (none observed)."""
    now, starts = 0.0, []
    while len(starts) < attempts and now < until:
        wait = gate.delay(now)
        if wait == 0:
            starts.append(round(now, 3))
        else:
            now += max(step, wait)
    return starts


def test_an_unlimited_gate_never_waits() -> None:
    gate = RateGate()
    assert [gate.delay(0.0) for _ in range(100)] == [0.0] * 100
    assert gate.in_flight == 100


def test_requests_per_second_spaces_the_starts() -> None:
    starts = _starts(RateGate(requests_per_second=10), 5)
    assert starts == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4], abs=0.002)


def test_a_pause_holds_every_attempt_back() -> None:
    gate = RateGate()
    gate.pause(2.0, now=10.0)
    assert gate.delay(10.5) == pytest.approx(1.5)
    assert gate.delay(11.9) == pytest.approx(0.1)
    assert gate.delay(12.0) == 0
    gate.pause(1.0, now=10.0)  # a shorter pause does not shorten the current one
    assert gate.pauses == 1


def test_mistral_headers_spread_the_remaining_requests_until_the_reset() -> None:
    gate = RateGate()
    assert gate.delay(0.0) == 0
    headers = {"x-ratelimit-remaining-req-minute": "11", "x-ratelimit-reset-req-minute": "10"}
    gate.observe(headers, None, 0.0)
    # 11 left in 10 s: one attempt a second (1 s apart), not 11 at once
    starts = _starts(gate, 3, step=0.01)
    assert starts[1] - starts[0] == pytest.approx(10 / 11, abs=0.02)
    assert starts[2] - starts[1] == pytest.approx(10 / 11, abs=0.02)


def test_requests_in_flight_count_as_spent() -> None:
    gate = RateGate()
    for _ in range(4):
        gate.delay(0.0)  # 4 in flight
    gate.observe({"x-ratelimit-remaining-req-minute": "3", "x-ratelimit-reset-req-minute": "5"}, None, 1.0)
    # 3 left, 3 still in flight: nothing left until the window resets
    assert gate.delay(1.0) == pytest.approx(5.0)
    assert gate.pauses == 1


def test_openai_headers_and_durations() -> None:
    gate = RateGate()
    gate.delay(0.0)
    gate.observe({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "0m45.5s"}, None, 0.0)
    assert gate.delay(0.0) == pytest.approx(45.5)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("12", 12.0), ("0.5", 0.5), ("1s", 1.0), ("250ms", 0.25), ("6m0s", 360.0), ("1h2m3s", 3723.0), ("2m", 120.0)],
)
def test_reset_seconds_reads_numbers_and_durations(text: str, seconds: float) -> None:
    assert reset_seconds(text) == seconds


@pytest.mark.parametrize("text", [None, "", "soon", "-1", "inf", "nan", "1x"])
def test_reset_seconds_refuses_the_rest(text: str | None) -> None:
    assert reset_seconds(text) is None


def test_a_window_without_reset_pauses_only_when_exhausted() -> None:
    gate = RateGate()
    gate.delay(0.0)
    gate.observe({"x-ratelimit-remaining-req-minute": "119"}, None, 0.0)  # LocalServer's default headers
    assert gate.delay(0.0) == 0
    gate.observe({"x-ratelimit-remaining-req-minute": "0"}, None, 0.0)
    assert gate.delay(0.0) == pytest.approx(1.0)


def test_token_windows_are_paced_by_the_tokens_a_request_uses() -> None:
    gate = RateGate()
    gate.delay(0.0)
    headers = {"x-ratelimit-remaining-tokens-minute": "1000", "x-ratelimit-reset-tokens-minute": "20"}
    gate.observe(headers, 100, 0.0)  # 100 tokens a request: 10 requests left in 20 s
    starts = _starts(gate, 2, step=0.01)
    assert starts[1] - starts[0] == pytest.approx(2.0, abs=0.02)


def test_tokens_per_minute_moves_the_next_start_by_the_tokens_spent() -> None:
    gate = RateGate(tokens_per_minute=600)  # 10 tokens a second
    assert gate.delay(0.0) == 0
    gate.observe(None, 50, 0.0)
    assert gate.delay(0.0) == pytest.approx(5.0)


def test_headers_are_ignored_when_asked() -> None:
    gate = RateGate(follow_headers=False)
    gate.delay(0.0)
    gate.observe({"x-ratelimit-remaining-req-minute": "0", "x-ratelimit-reset-req-minute": "30"}, None, 0.0)
    assert gate.delay(0.0) == 0


@pytest.mark.parametrize("value", [0, -1, True, "5", float("nan")])
def test_limits_must_be_positive_numbers(value: object) -> None:
    with pytest.raises(ValueError, match="requests_per_second"):
        RateGate(requests_per_second=value)  # type: ignore[arg-type]


def test_next_delay_follows_the_policy_and_pauses_the_run_on_429() -> None:
    policy = RetryPolicy(max_retries=2, initial_delay=0.5, jitter=0)
    gate = RateGate()
    limited = RateLimitError("slow", status_code=429, retry_after=3.0)
    assert next_delay(policy, gate, limited, 0, 10.0) == 3.0
    assert gate.delay(10.0) == pytest.approx(3.0)  # the whole run waits
    assert next_delay(policy, gate, limited, 2, 10.0) is None  # no retry left
    assert next_delay(policy, gate, InternalServerError("x", status_code=503), 1, 0.0) == 1.0
    assert next_delay(policy, gate, APIConnectionError("refused"), 0, 0.0) == 0.5
    assert next_delay(policy, gate, APIConnectionError("cut", response_started=True), 0, 0.0) is None
    assert next_delay(policy, gate, BadRequestError("no", status_code=400), 0, 0.0) is None
    assert next_delay(policy, gate, MalformedResponseError("bad", status_code=200), 0, 0.0) is None
    assert next_delay(policy, gate, ValueError("bug"), 0, 0.0) is None
    too_long = RateLimitError("slow", status_code=429, retry_after=3600.0)
    fresh = RateGate()
    assert next_delay(policy, fresh, too_long, 0, 0.0) is None  # past max_retry_after: given up, no pause
    assert fresh.delay(0.0) == 0


def test_an_item_run_counts_attempts_retries_and_latency() -> None:
    """What both pools do with an item, on a clock the test moves: a 429 (the run pauses), a 503, no retry left."""
    policy = RetryPolicy(max_retries=1, initial_delay=0.5, jitter=0)
    gate = RateGate()
    request = chat("m").user("x")
    item = ItemRun(3, "k3", request, policy, gate)
    assert item.wait(10.0) == 0
    item.sending(10.0)
    assert item.failed(RateLimitError("slow", status_code=429, retry_after=2.0), 10.5) == 2.0
    assert item.wait(11.0) == pytest.approx(1.5)  # the run is paused, this item included
    assert item.wait(12.5) == 0
    item.sending(12.5)
    assert item.failed(InternalServerError("x", status_code=503), 13.0) is None  # no retry left
    result = item.result()
    assert (result.key, result.index, result.request, result.attempts) == ("k3", 3, request, 2)
    assert isinstance(result.error, InternalServerError)
    assert result.response is None
    assert result.latency == pytest.approx(3.0)  # first send to the last failure, the pause included
    assert gate.in_flight == 0

    refused = ItemRun(0, 0, chat("m"), policy, RateGate())
    refused.sending(0.0)
    assert refused.failed(ValidationError("messages", "empty"), 0.0) is None
    assert refused.result().attempts == 0  # never sent
    assert "stopped" in str(ItemRun(1, 1, request, policy, gate).stopped(5.0).error)


def test_an_absolute_reset_time_is_read_as_seconds_from_now() -> None:
    assert reset_seconds("1700000030", now=1_700_000_000.0) == 30.0
    assert reset_seconds("1700000000", now=1_700_000_100.0) == 0.0  # already passed


def test_headers_alone_hold_the_run_back_a_minute_at_most() -> None:
    gate = RateGate()
    gate.delay(0.0)
    gate.observe({"x-ratelimit-remaining-tokens-minute": "0", "x-ratelimit-reset-tokens-minute": "3600"}, 10, 0.0)
    assert gate.delay(0.0) == pytest.approx(60.0)


@given(
    rate=st.floats(0.5, 200),
    asks=st.lists(st.floats(0, 0.5), min_size=2, max_size=30),
    pause=st.one_of(st.none(), st.tuples(st.floats(0, 5), st.floats(0, 2))),
)
def test_starts_never_come_closer_than_the_rate_allows_nor_inside_a_pause(
    rate: float, asks: list[float], pause: tuple[float, float] | None
) -> None:
    """Workers asking at any moments: consecutive starts are at least 1/rate apart, none falls in a pause."""
    gate = RateGate(requests_per_second=rate)
    now, starts = 0.0, []
    if pause is not None:
        gate.pause(pause[1], now=pause[0])
    for gap in asks:
        now += gap
        while (wait := gate.delay(now)) > 0:
            now += wait
        starts.append(now)
    assert all(b - a >= 1 / rate - 1e-9 for a, b in itertools.pairwise(starts))
    if pause is not None:
        assert not any(pause[0] <= t < pause[0] + pause[1] for t in starts)
