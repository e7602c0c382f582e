"""The cyclic collector is held off while a large text is classified, and only then."""

from __future__ import annotations

import gc
import threading
from contextlib import AbstractContextManager

import pytest

from relay_shell.policy import collector
from relay_shell.policy.analyze import LARGE_TEXT
from relay_shell.policy.collector import collector_paused
from tests.policy.conftest import Classify


def test_a_pause_ends_with_the_last_holder_across_threads() -> None:
    assert gc.isenabled()
    first_in, release = threading.Event(), threading.Event()
    seen: list[bool] = []

    def other() -> None:
        with collector_paused():
            first_in.set()
            release.wait(timeout=30)
            seen.append(gc.isenabled())

    thread = threading.Thread(target=other)
    thread.start()
    assert first_in.wait(timeout=30)
    with collector_paused():
        with collector_paused():
            assert not gc.isenabled()
    assert not gc.isenabled()  # the other thread still holds it off
    release.set()
    thread.join(timeout=30)
    assert seen == [False]
    assert gc.isenabled()


def test_a_collector_switched_off_before_stays_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_only_a_large_call_pauses_the_collector(classify: Classify, monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[int] = []
    real = collector.collector_paused

    def watched() -> AbstractContextManager[None]:
        pauses.append(1)
        return real()

    monkeypatch.setattr(collector, "collector_paused", watched)
    assert classify("ls /tmp").tier == 0
    assert pauses == []
    analysis = classify("# " + "x" * LARGE_TEXT + "\nrm -rf /srv/x\n")
    assert pauses == [1]
    assert analysis.tier == 3
    assert gc.isenabled()
