"""Fixtures for the HTTP auth pieces: a hand-driven clock."""

from __future__ import annotations

import time

import pytest


class FakeClock:
    """A clock that starts at the real time and only moves when told to.

    It starts at ``time.time()`` (not at zero) because the SDK's handlers compare some
    expiry times with the real clock; a fake clock that only moves forward keeps both views
    consistent.
    """

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
