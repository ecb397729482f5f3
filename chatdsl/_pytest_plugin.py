"""The pytest plugin of chatdsl (registered through the ``pytest11`` entry point).

It provides the fixture ``chatdsl_server``: a started :class:`chatdsl.testing.LocalServer` for one
test, stopped afterwards. ``@pytest.mark.chatdsl_server(api_key="k", strict=False)`` passes keyword
arguments to the server. Nothing is imported from chatdsl until a test asks for the fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from chatdsl.testing import LocalServer

__all__ = ["chatdsl_server"]


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``chatdsl_server`` marker (keyword arguments for the fixture's server)."""
    config.addinivalue_line(
        "markers", "chatdsl_server(**kwargs): keyword arguments for the LocalServer of the chatdsl_server fixture"
    )


@pytest.fixture
def chatdsl_server(request: pytest.FixtureRequest) -> Iterator[LocalServer]:
    """A started ``chatdsl.testing.LocalServer`` on 127.0.0.1 for this test; give a client ``chatdsl_server.url``."""
    from chatdsl.testing import LocalServer

    marker = request.node.get_closest_marker("chatdsl_server")
    kwargs = dict(marker.kwargs) if marker is not None else {}
    if marker is not None and marker.args:
        raise TypeError("@pytest.mark.chatdsl_server takes keyword arguments only, such as api_key='test-key'")
    with LocalServer(**kwargs) as server:
        yield server
