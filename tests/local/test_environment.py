"""The environment a local child starts from: the server's, as it is when the child starts."""

from __future__ import annotations

import os

import pytest

from relay_shell.local.environment import NONINTERACTIVE_DEFAULTS, build_child_env


def test_a_child_sees_the_server_environment_as_it_is_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_TEST_LATE", "first")
    assert build_child_env({})["RELAY_TEST_LATE"] == "first"
    monkeypatch.setenv("RELAY_TEST_LATE", "second")  # changed between two children
    assert build_child_env({})["RELAY_TEST_LATE"] == "second"
    monkeypatch.delenv("RELAY_TEST_LATE")
    assert "RELAY_TEST_LATE" not in build_child_env({})
    assert build_child_env({}) == {**NONINTERACTIVE_DEFAULTS, **os.environ}


def test_each_child_gets_its_own_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_TEST_SHARED", "kept")
    first = build_child_env({"RELAY_TEST_SHARED": None, "ONLY_FIRST": "1"})
    first["MUTATED"] = "x"
    second = build_child_env({})
    assert "RELAY_TEST_SHARED" not in first
    assert second["RELAY_TEST_SHARED"] == "kept"
    assert "ONLY_FIRST" not in second
    assert "MUTATED" not in second
    assert "MUTATED" not in os.environ
