"""Shared test configuration: hypothesis profiles (``ci`` is the default in CI, ``long`` on demand), and
the secret guard (``tests/_secrets.py``: every test fails if the test API key shows in a log or an error)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from chatdsl import Client, Timeout
from chatdsl.testing import LocalServer
from tests._clients import ClientDriver

pytest_plugins = ["tests._secrets", "pytester"]

settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile(
    "long", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture
def server() -> Iterator[LocalServer]:
    """A LocalServer that wants the suite's test key (modules needing another server define their own)."""
    from tests._secrets import TEST_KEY  # imported here: pytest loads tests._secrets itself, as a plugin

    with LocalServer(api_key=TEST_KEY) as running:
        yield running


@pytest.fixture
def sleeps() -> list[float]:
    """The waits a client asked for (pass ``_sleep=sleeps.append``): backoff checked without waiting."""
    return []


@pytest.fixture
def client(server: LocalServer, sleeps: list[float]) -> Iterator[Client]:
    """A client of :func:`server` whose retry waits are recorded in :func:`sleeps`, not slept."""
    from tests._secrets import TEST_KEY

    with Client(TEST_KEY, base_url=server.url, _sleep=sleeps.append) as running:
        yield running


@pytest.fixture
def quick_client(server: LocalServer) -> Iterator[Client]:
    """A client of :func:`server` with 2 s connect and read timeouts, whose retries do not wait."""
    from tests._secrets import TEST_KEY

    with Client(TEST_KEY, base_url=server.url, timeout=Timeout(connect=2, read=2), _sleep=lambda _: None) as running:
        yield running


@pytest.fixture(params=["sync", "async"])
def make_client(request: pytest.FixtureRequest) -> Iterator[ClientDriver]:
    """Makes a client like ``Client(...)``: the sync :class:`~chatdsl.Client`, or an :class:`~chatdsl.AsyncClient`
    behind a sync facade (``tests/_clients.py``), so one test covers both."""
    driver = ClientDriver(request.param)
    try:
        yield driver
    finally:
        driver.close()


@pytest.fixture
def no_keys_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``OPENAI_API_KEY`` nor ``MISTRAL_API_KEY`` in the environment (a client would read them)."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)


@pytest.fixture(autouse=True)
def no_base_url_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``MISTRAL_BASE_URL`` nor ``OPENAI_BASE_URL``: a client given no ``base_url`` reads them, and a
    developer's own must not send the suite's requests elsewhere (tests that want one set it)."""
    monkeypatch.delenv("MISTRAL_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
