"""``relay-shell --explain`` and the server's PR_SET_DUMPABLE, through the real command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from relay_shell import cli

RELAY_SHELL = str(Path(sys.executable).parent / "relay-shell")


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "RELAY_SHELL_AUDIT_PATH": str(cwd / "audit" / "audit.jsonl")}
    return subprocess.run([RELAY_SHELL, *args], capture_output=True, text=True, cwd=cwd, env=env, check=False)


def test_explain_prints_each_command_and_every_mode(tmp_path: Path) -> None:
    result = run("--explain", "ls /etc; rm -rf /srv/x | sh", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "rm -rf /srv/x" in result.stdout
    assert "deletion.rm_recursive" in result.stdout
    assert "opaque.pipe_to_shell" in result.stdout
    for mode in ("open", "guarded", "readonly"):
        assert f"\n  {mode}" in result.stdout


def test_explain_json_and_one_mode(tmp_path: Path) -> None:
    result = run("--explain", "uname -a", "--mode", "readonly", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["tier"], report["opaque"]) == (0, False)
    assert report["commands"][0]["text"] == "uname -a"
    assert report["commands"][0]["known_safe"] is True
    assert report["decisions"] == {
        "readonly": {
            "allowed": True,
            "rule": None,
            "subcommand": "uname -a",
            "reason": report["decisions"]["readonly"]["reason"],
        }
    }


def test_explain_reads_the_configured_lists(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("RELAY_SHELL_POLICY_DENY=touch\n")
    result = run("--explain", "to''uch x", "--json", cwd=tmp_path)
    report = json.loads(result.stdout)
    assert report["decisions"]["open"]["allowed"] is False
    assert report["decisions"]["open"]["rule"] == "deny"


def test_not_dumpable_really_clears_the_flag() -> None:
    code = (
        "import ctypes; from relay_shell.cli import _not_dumpable; _not_dumpable(); "
        "print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "0"


def test_serving_clears_the_dumpable_flag_first(monkeypatch: pytest.MonkeyPatch) -> None:
    import anyio

    from relay_shell.config import load_settings

    calls: list[str] = []
    monkeypatch.setattr(cli, "_not_dumpable", lambda: calls.append("prctl"))
    monkeypatch.setattr(anyio, "run", lambda *args, **kwargs: calls.append("serve"))
    assert cli._serve(load_settings()) == 0
    assert calls == ["prctl", "serve"]
