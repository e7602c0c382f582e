"""Settings: defaults, bounds, fail-fast messages naming the variable, .env.example in step."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from relay_shell.config import ENV_PREFIX, PolicyMode, Settings, load_settings
from relay_shell.config_env import SettingsInvalid
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


def test_cross_field_problems_say_where_each_named_variable_was_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("RELAY_SHELL_MAX_OUTPUT_HARD=4096\n")
    monkeypatch.setenv("RELAY_SHELL_MAX_OUTPUT", "8192")
    with pytest.raises(SettingsInvalid) as raised:
        load_settings()
    (problem,) = raised.value.problems
    assert problem.variable == "configuration"
    assert problem.message == (
        "RELAY_SHELL_MAX_OUTPUT must not exceed RELAY_SHELL_MAX_OUTPUT_HARD "
        "(RELAY_SHELL_MAX_OUTPUT from the environment, RELAY_SHELL_MAX_OUTPUT_HARD from .env)"
    )


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


def run_check_config(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``relay-shell --check-config ARGS`` in ``tmp_path`` with only ``env`` (plus PATH and HOME)."""
    return subprocess.run(
        [sys.executable, "-m", "relay_shell", "--check-config", *args],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("written", "closest"),
    [
        ("RELAY_SHELL_POLICY_MOD", "RELAY_SHELL_POLICY_MODE"),
        ("relay_shell_max_timeot", "RELAY_SHELL_MAX_TIMEOUT"),
        ("RELAY_SHELL_AUDITPATH", "RELAY_SHELL_AUDIT_PATH"),
        ("Relay_Shell_Confirm_Tier_3", "RELAY_SHELL_CONFIRM_TIER3"),
        ("RELAY_SHELL_SESSION_IDLE", "RELAY_SHELL_SESSION_IDLE_TIMEOUT"),
    ],
)
def test_unknown_variable_in_environment_names_the_closest(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, written: str, closest: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(written, "guarded")
    with pytest.raises(SettingsInvalid) as raised:
        load_settings()
    (problem,) = raised.value.problems
    assert (problem.variable, problem.source) == (written, "environment")
    assert problem.message == f"unknown variable; did you mean {closest}?"


def test_unknown_variable_in_dotenv_is_refused_and_attributed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "RELAY_SHELL_POLICY_MODE=guarded\nexport relay_shell_max_sesions=3\nOTHER=1\n"
    )
    with pytest.raises(SettingsInvalid) as raised:
        load_settings()
    (problem,) = raised.value.problems
    assert (problem.variable, problem.source) == ("relay_shell_max_sesions", ".env")
    assert "RELAY_SHELL_MAX_SESSIONS" in problem.message
    assert str(problem).startswith("relay_shell_max_sesions (from .env): unknown variable")


def test_a_name_far_from_every_setting_still_names_the_closest(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RELAY_SHELL_ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ" + "Q" * 5000, "1")
    with pytest.raises(SettingsInvalid) as raised:
        load_settings()
    (problem,) = raised.value.problems
    assert "closest known name is RELAY_SHELL_" in problem.message
    assert len(problem.variable) < 200  # a huge name is cut in the message


@pytest.mark.parametrize(
    "edge", ["RELAY_SHELL_EDGE_DOMAIN", "relay_shell_edge_allowed_cidrs", "RELAY_SHELL_EDGE_X"]
)
def test_edge_variables_are_not_settings_and_not_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, edge: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(edge, "x")
    (tmp_path / ".env").write_text(f"{edge}=y\n")
    assert load_settings().policy_mode is PolicyMode.OPEN


def test_every_problem_is_reported_with_its_source(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("RELAY_SHELL_MAX_TIMEOUT=abc\nRELAY_SHELL_TRANSPORT=http\n")
    monkeypatch.setenv("RELAY_SHELL_POLICY_MODE", "yolo")
    monkeypatch.setenv("RELAY_SHELL_TRANSPORT", "carrier-pigeon")  # the environment wins over .env
    monkeypatch.setenv("RELAY_SHELL_FANOUT_MAX_HOST", "3")
    with pytest.raises(SettingsInvalid) as raised:
        load_settings()
    found = {(p.variable, p.source) for p in raised.value.problems}
    assert found == {
        ("RELAY_SHELL_FANOUT_MAX_HOST", "environment"),
        ("RELAY_SHELL_MAX_TIMEOUT", ".env"),
        ("RELAY_SHELL_POLICY_MODE", "environment"),
        ("RELAY_SHELL_TRANSPORT", "environment"),
    }


def test_an_unreadable_dotenv_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_bytes(b"RELAY_SHELL_POLICY_MODE=\xff\xfe\n")
    with pytest.raises(SettingsInvalid, match=r"\.env"):
        load_settings()


def test_misspelled_policy_mode_fails_check_config_exit_2(tmp_path: Path) -> None:
    proc = run_check_config(tmp_path, {"RELAY_SHELL_POLICY_MOD": "guarded"})
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[1:] == [
        "FAIL RELAY_SHELL_POLICY_MOD: from the environment: unknown variable; did you mean RELAY_SHELL_POLICY_MODE?"
    ]
    assert proc.stdout == ""
    accepted = run_check_config(
        tmp_path,
        {"RELAY_SHELL_EDGE_DOMAIN": "x", "RELAY_SHELL_AUDIT_PATH": str(tmp_path / "audit.jsonl")},
    )
    assert accepted.returncode == 0, accepted.stderr


def test_misspelled_variable_stops_the_server_before_it_serves(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("RELAY_SHELL_POLICY_MOD=guarded\n")
    proc = subprocess.run(
        [sys.executable, "-m", "relay_shell"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        cwd=tmp_path,
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "RELAY_SHELL_POLICY_MOD (from .env): unknown variable; did you mean RELAY_SHELL_POLICY_MODE?" in (
        proc.stderr
    )
    assert "serving" not in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("issuer", "accepted"),
    [
        ("http://127.0.0.1:8080", True),
        ("http://localhost:8080/", True),
        ("http://[::1]:8080", True),
        ("https://relay.example.com", True),
        ("https://relay.example.com/relay", True),
        ("http://relay.example.com", False),
        ("http://10.0.0.5:8080", False),
        ("https://relay.example.com/?x=1", False),
        ("https://relay.example.com/#top", False),
        ("ftp://relay.example.com", False),
        ("relay.example.com", False),
    ],
)
def test_builtin_oauth_issuer_must_be_https_off_loopback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, issuer: str, accepted: bool
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RELAY_SHELL_AUTH_ENABLED", "true")
    monkeypatch.setenv("RELAY_SHELL_AUTH_ISSUER", issuer)
    if accepted:
        assert load_settings().auth_issuer == issuer
    else:
        with pytest.raises(SettingsInvalid, match="RELAY_SHELL_AUTH_ISSUER"):
            load_settings()
    monkeypatch.setenv("RELAY_SHELL_AUTH_ENABLED", "false")
    assert load_settings().auth_issuer == issuer  # only checked when the builtin server is on
