"""What a new user meets when starting ``relay-shell``: the start-up line, the exposure warning,
and ``--check-config`` in text and JSON."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import relay_shell
from relay_shell.local.containment import cgroup_unavailable
from tests.conftest import initialize_line
from tests.e2e.test_stdio import RELAY, server_env
from tests.http.test_http_e2e import running_relay

INITIALIZE = initialize_line("2025-06-18")
LINE_DEADLINE_S = 20.0


def check_config(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RELAY, "--check-config", *args],
        env=server_env(tmp_path, **env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_config_json_ok(tmp_path: Path) -> None:
    proc = check_config(tmp_path, "--json", RELAY_SHELL_EDGE_DOMAIN="relay.example.com")
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    assert document["ok"] is True
    statuses = {finding["name"]: finding["status"] for finding in document["findings"]}
    assert statuses == {
        "settings": "OK",
        "RELAY_SHELL_AUDIT_PATH": "OK",
        "RELAY_SHELL_SSH_CONFIG": "OK",
        "RELAY_SHELL_CONTAINMENT": "OK",
    }
    assert all(set(finding) == {"name", "status", "detail"} for finding in document["findings"])
    assert proc.stderr == ""


def test_check_config_json_unknown_variable(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("RELAY_SHELL_MAX_SESION=3\n")
    proc = check_config(tmp_path, "--json", RELAY_SHELL_POLICY_MOD="guarded")
    assert proc.returncode == 2
    assert json.loads(proc.stdout) == {
        "ok": False,
        "findings": [
            {
                "name": "RELAY_SHELL_POLICY_MOD",
                "status": "FAIL",
                "detail": "from the environment: unknown variable; did you mean RELAY_SHELL_POLICY_MODE?",
            },
            {
                "name": "RELAY_SHELL_MAX_SESION",
                "status": "FAIL",
                "detail": "from .env: unknown variable; did you mean RELAY_SHELL_MAX_SESSIONS?",
            },
        ],
    }


def test_check_config_json_unwritable_audit_and_exposure_warning(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = check_config(
        tmp_path,
        "--json",
        RELAY_SHELL_AUDIT_PATH=str(blocker / "audit.jsonl"),
        RELAY_SHELL_TRANSPORT="http",
        RELAY_SHELL_HTTP_HOST="0.0.0.0",
    )
    assert proc.returncode == 2
    document = json.loads(proc.stdout)
    assert document["ok"] is False
    statuses = {finding["name"]: finding["status"] for finding in document["findings"]}
    assert statuses["RELAY_SHELL_AUDIT_PATH"] == "FAIL"
    assert statuses["RELAY_SHELL_HTTP_HOST"] == "WARN"


def test_check_config_text_is_a_summary_then_findings(tmp_path: Path) -> None:
    proc = check_config(tmp_path, RELAY_SHELL_TRANSPORT="http", RELAY_SHELL_HTTP_HOST="0.0.0.0")
    assert proc.returncode == 0, proc.stderr  # a warning does not fail the check
    summary, *findings = proc.stdout.splitlines()
    assert summary == "relay-shell: configuration OK (5 checks, 1 warning(s))"
    assert [line.split(" ", 2)[:2] for line in findings] == [
        ["OK", "settings:"],
        ["OK", "RELAY_SHELL_AUDIT_PATH:"],
        ["OK", "RELAY_SHELL_SSH_CONFIG:"],
        ["OK", "RELAY_SHELL_CONTAINMENT:"],
        ["WARN", "RELAY_SHELL_HTTP_HOST:"],
    ]


def test_stdio_start_line_on_stderr_and_nothing_else_on_stdout(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    proc = subprocess.Popen(
        [RELAY],
        env=server_env(tmp_path, RELAY_SHELL_POLICY_MODE="readonly"),
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.write(INITIALIZE)
        proc.stdin.flush()
        answer = json.loads(proc.stdout.readline())
        assert (answer["id"], answer["result"]["serverInfo"]["name"]) == (1, "relay-shell")
        proc.stdin.close()
        assert proc.wait(timeout=20) == 0
        assert proc.stdout.read() == b""
        stderr = proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    starts = [line for line in stderr.splitlines() if " serving " in line]
    mechanism = "cgroup" if cgroup_unavailable() is None else "subreaper"
    assert starts == [
        f"relay-shell {relay_shell.__version__} serving stdio policy=readonly audit={audit} containment={mechanism}"
    ]
    assert "WARNING" not in stderr


def wait_for_line(log: Path, pattern: str) -> str:
    """The first line of ``log`` matching ``pattern``, polled with a bounded deadline."""
    deadline = time.monotonic() + LINE_DEADLINE_S
    while True:
        for line in log.read_text(errors="replace").splitlines():
            if re.fullmatch(pattern, line):
                return line
        assert time.monotonic() < deadline, f"no line matching {pattern!r} in\n{log.read_text()}"
        time.sleep(0.05)


def test_http_start_line_with_url_and_no_warning_on_loopback(tmp_path: Path) -> None:
    with running_relay(tmp_path / "state", RELAY_SHELL_POLICY_MODE="guarded") as relay:
        line = wait_for_line(relay.log_path, r"relay-shell \S+ serving \S+ policy=\S+ audit=\S+.*")
        assert line.startswith(
            f"relay-shell {relay_shell.__version__} serving {relay.mcp_url} policy=guarded "
            f"audit={relay.audit_path}"
        )
        assert "WARNING" not in relay.log_path.read_text()


def test_http_on_all_interfaces_without_oauth_warns(tmp_path: Path) -> None:
    with running_relay(tmp_path / "state", RELAY_SHELL_HTTP_HOST="0.0.0.0") as relay:
        wait_for_line(relay.log_path, rf"relay-shell \S+ serving http://0\.0\.0\.0:{relay.port}/mcp .*")
        warning = wait_for_line(relay.log_path, r"relay-shell: WARNING HTTP on .*")
        assert f"0.0.0.0:{relay.port} without OAuth" in warning
