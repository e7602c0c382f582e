"""Settings: defaults, bounds, fail-fast messages naming the variable, .env.example in step."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from relay_shell.config import ENV_PREFIX, PolicyMode, Settings, load_settings
from relay_shell.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / ".env.example"


def example_entries() -> dict[str, str]:
    entries = {}
    for line in EXAMPLE.read_text().splitlines():
        match = re.match(r"^(RELAY_SHELL_[A-Z0-9_]+)=(.*)$", line)
        if match:
            entries[match.group(1)] = match.group(2)
    return entries


def test_env_example_lists_every_field_once() -> None:
    fields = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    entries = example_entries()
    assert set(entries) == fields
    lines = [line for line in EXAMPLE.read_text().splitlines() if line.startswith("RELAY_SHELL_")]
    assert len(lines) == len(entries), "a variable is listed twice"


def test_env_example_values_are_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    from_example = Settings(_env_file=str(EXAMPLE))  # type: ignore[call-arg]
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    for name in Settings.model_fields:
        assert getattr(from_example, name) == getattr(defaults, name), name


def test_every_field_is_documented_with_a_comment() -> None:
    lines = EXAMPLE.read_text().splitlines()
    for index, line in enumerate(lines):
        if line.startswith("RELAY_SHELL_"):
            # the variable, or the group it belongs to, has a comment line above it
            above = lines[max(0, index - 4) : index]
            assert any(a.startswith("#") for a in above), line


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("RELAY_SHELL_MAX_OUTPUT", "10737418240", "RELAY_SHELL_MAX_OUTPUT"),
        ("RELAY_SHELL_MAX_TIMEOUT", "-1", "RELAY_SHELL_MAX_TIMEOUT"),
        ("RELAY_SHELL_POLICY_MODE", "yolo", "RELAY_SHELL_POLICY_MODE"),
        ("RELAY_SHELL_POLICY_DENY", "([unclosed", "RELAY_SHELL_POLICY_DENY"),
        ("RELAY_SHELL_HTTP_PORT", "70000", "RELAY_SHELL_HTTP_PORT"),
        ("RELAY_SHELL_MAX_SESSIONS", "many", "RELAY_SHELL_MAX_SESSIONS"),
        ("RELAY_SHELL_AUTH_JWT_ALGORITHMS", "none,HS256", "RELAY_SHELL_AUTH_JWT_ALGORITHMS"),
    ],
)
def test_invalid_values_fail_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, value: str, fragment: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=fragment):
        load_settings()


def test_case_insensitive_and_frozen(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("relay_shell_policy_mode", "guarded")
    settings = load_settings()
    assert settings.policy_mode is PolicyMode.GUARDED
    with pytest.raises(Exception, match="frozen"):
        settings.max_output = 1  # type: ignore[misc]


def test_unset_is_none_not_empty(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RELAY_SHELL_POLICY_DENY", "")
    monkeypatch.setenv("RELAY_SHELL_INVENTORY", "")
    settings = load_settings()
    assert settings.policy_deny is None
    assert settings.inventory is None


def test_cross_field_consistency(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RELAY_SHELL_MAX_OUTPUT", "2000000")
    with pytest.raises(ConfigError, match="MAX_OUTPUT_HARD"):
        load_settings()


def test_cli_exits_2_naming_the_variable(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "RELAY_SHELL_MAX_TIMEOUT": "abc", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "relay_shell", "--check-config"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "RELAY_SHELL_MAX_TIMEOUT" in proc.stderr
    assert proc.stdout == ""
