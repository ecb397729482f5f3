"""Closing a client: a closed client's errors, clients derived from one session, close() racing calls."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
import requests

import chatdsl
from chatdsl import (
    ChatDSLError,
    Client,
    ClientClosedError,
)
from chatdsl.testing import LocalServer, Reply
from tests._echo import ANSWER, KEY, REQUEST

pytestmark = pytest.mark.usefixtures("no_keys_in_the_environment")


@pytest.fixture
def client(quick_client: Client) -> Client:
    return quick_client


def test_a_closed_client_raises_client_closed_error(server: LocalServer) -> None:
    client = Client(KEY, base_url=server.url)
    client.close()
    for call in (client.chat_completion, client.chat_completion_stream):
        with pytest.raises(ClientClosedError, match="closed") as info:
            call(REQUEST)
        assert isinstance(info.value, ChatDSLError)
        assert isinstance(info.value, RuntimeError)
    assert server.requests == []
    assert chatdsl.ClientClosedError is ClientClosedError
    assert "ClientClosedError" in chatdsl.__all__


def test_a_wrong_argument_type_is_still_a_type_error(client: Client) -> None:
    with pytest.raises(TypeError, match="expected a ChatCompletionRequest, got dict"):
        client.chat_completion({"model": "m"})  # type: ignore[arg-type]


def test_closing_the_session_owner_closes_every_derived_client(server: LocalServer) -> None:
    owner = Client(KEY, base_url=server.url)
    child = owner.with_options(max_retries=0)
    grandchild = child.with_options(headers={"X-A": "1"})
    sibling = owner.with_options(timeout=5)
    child.close()  # closes only itself: the session is the owner's
    assert child.closed
    assert not owner.closed
    assert not grandchild.closed
    assert not sibling.closed
    assert grandchild.chat_completion(REQUEST).text() == "echo: one two three four five six"
    with pytest.raises(ClientClosedError, match="this Client is closed"):
        child.chat_completion(REQUEST)
    owner.close()
    for client in (owner, child, grandchild, sibling):
        assert client.closed
        with pytest.raises(ClientClosedError):
            client.chat_completion(REQUEST)
    with pytest.raises(ClientClosedError, match="owns its session"):
        sibling.chat_completion_stream(REQUEST)
    assert len(server.requests) == 1
    assert server.wait_idle(2.0)


def test_clients_on_a_session_you_pass_are_closed_one_by_one(server: LocalServer) -> None:
    with requests.Session() as session:
        first = Client(KEY, base_url=server.url, session=session)
        derived = first.with_options(max_retries=0)
        first.close()  # it does not own the session: the session and the derived client stay open
        assert not derived.closed
        assert derived.chat_completion(REQUEST).text() == ANSWER


def test_close_racing_calls_leaves_no_connection_open() -> None:
    """Calls in flight as close() runs may make a new pool (requests would); it is closed as they end."""
    left: list[str] = []
    with LocalServer(api_key=KEY) as server:
        for trial in range(30):
            client = Client(KEY, base_url=server.url, max_retries=0)
            server.enqueue(*[Reply.delayed(0.005 * (i % 3)) for i in range(4)])
            threads = [threading.Thread(target=_call, args=(client,)) for _ in range(4)]
            for thread in threads:
                thread.start()
            time.sleep(0.001 * (trial % 10))
            client.close()
            for thread in threads:
                thread.join(5)
            if not server.wait_idle(1.0):
                left.append(f"trial {trial}: {server.open_connections} open")
    assert left == []


def _call(client: Client) -> None:
    with contextlib.suppress(ChatDSLError):
        client.chat_completion(REQUEST)
