"""Errors survive pickling and copying, with their attributes."""

from __future__ import annotations

import pickle

import pytest

from chatdsl import (
    APIConnectionError,
    APITimeoutError,
)

pytestmark = pytest.mark.usefixtures("no_keys_in_the_environment")


def test_response_started_survives_pickling() -> None:

    error = APIConnectionError("cut", response_started=True)
    assert pickle.loads(pickle.dumps(error)).response_started
    assert APITimeoutError("slow").response_started is False
