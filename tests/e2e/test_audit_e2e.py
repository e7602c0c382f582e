"""An agent tries to rewrite the record: the real ``relay-shell`` over stdio, driven by the MCP client.

Open mode, the agent's own tool calls change the audit file (the protected-path escape
hatch is on, as it would be for an agent that found an opaque way to name the file). Each
change is seen: the sink is degraded and records it, the next call above tier 0 is refused
``unavailable`` while tier 0 still answers, and ``--verify-audit --anchors`` against a real
journald (its own namespace) exits 2 naming the line. A ``kill -9`` mid-call leaves exactly
one unfinished call.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from relay_shell.governance.audit.channels import DEFAULT_JOURNAL_SOCKET, journal_listening
from tests.audit_peers import Journald, journald, wait_until
from tests.conftest import connected, initialize_message, pids_with_marker, read_trail, sc

RELAY = str(Path(sys.executable).parent / "relay-shell")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="starting journald needs root")

FORGE = r"""
import hashlib, json, sys
path = sys.argv[1]
last = json.loads(open(path, "rb").read().splitlines()[-1])
record = {key: value for key, value in last.items() if key != "chain"}
record.update(seq=last["seq"] + 1, prev=last["chain"], tool="shell_exec", outcome="ok", args={"command": "true"})
body = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
chain = hashlib.sha256((last["chain"] + body).encode()).hexdigest()
open(path, "a").write(body[:-1] + ",\"chain\":\"" + chain + "\"}\n")
"""


@pytest.fixture(scope="module")
def journal() -> Iterator[Journald]:
    with journald() as started:
        yield started


def server_env(tmp_path: Path, journal: Journald, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "RELAY_SHELL_AUDIT_PATH": str(tmp_path / "audit" / "audit.jsonl"),
        "RELAY_SHELL_AUDIT_ANCHOR": journal.spec,
        "RELAY_SHELL_POLICY_MODE": "open",
        "RELAY_SHELL_POLICY_ALLOW_PROTECTED": "true",
        "RELAY_SHELL_SSH_CONFIG": str(tmp_path / "ssh_config"),
        "RELAY_SHELL_SSH_KNOWN_HOSTS_FILE": str(tmp_path / "known_hosts"),
    }
    env.update(extra)
    return env


@pytest.fixture
async def agent(tmp_path: Path, journal: Journald) -> AsyncIterator[Client]:
    params = StdioServerParameters(
        command=RELAY, args=[], env=server_env(tmp_path, journal), cwd=str(tmp_path)
    )
    async with connected(params, read_timeout_seconds=60) as client:
        yield client


def verify(tmp_path: Path, journal: Journald, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RELAY, "--verify-audit", "--json", "--anchors", journal.spec, *extra],
        env=server_env(tmp_path, journal),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


TAMPERING = {
    "delete the first records": "sed -i 1,2d {audit}",
    "append a forged chained record": "python3 {forge} {audit}",
    "symlink to /dev/null": "ln -sf /dev/null {audit}",
    "truncate": "truncate -s 0 {audit}",
}


@pytest.mark.parametrize("how", list(TAMPERING))
async def test_tampering_is_detected_and_refuses_the_next_call(
    agent: Client, tmp_path: Path, journal: Journald, how: str
) -> None:
    audit = tmp_path / "audit" / "audit.jsonl"
    for number in range(3):
        assert (await agent.call_tool("shell_exec", {"command": f"echo {number}"})).is_error is False
    forge = tmp_path / "forge.py"
    forge.write_text(FORGE)
    command = TAMPERING[how].replace("{audit}", str(audit)).replace("{forge}", str(forge))
    changed = await agent.call_tool("shell_exec", {"command": command})
    assert (changed.is_error, sc(changed)["exit_code"]) == (False, 0), changed.content

    refused = await agent.call_tool("shell_exec", {"command": f"touch {tmp_path / 'must-not-exist'}"})
    assert sc(refused)["error"]["kind"] == "unavailable"
    assert not (tmp_path / "must-not-exist").exists()
    info = sc(await agent.call_tool("server_info", {}))  # tier 0 still answers
    assert info["audit"]["healthy"] is False
    assert info["audit"]["state"] == "tampered"
    assert "restart" in info["audit"]["last_error"]
    [header] = [
        e for e in journal.entries() if e.get("RELAY_AUDIT_INSTANCE") == info["audit"]["instance_id"]
    ][:1]
    journal.wait_for(1, RELAY_AUDIT_INSTANCE=info["audit"]["instance_id"], RELAY_AUDIT_KIND="tamper")
    assert header["RELAY_AUDIT_KIND"] == "header"


async def test_verify_with_anchors_names_the_line_of_each_change(tmp_path: Path, journal: Journald) -> None:
    """After the server stopped: an in-place edit it could not see, and records cut from the end."""
    params = StdioServerParameters(
        command=RELAY, args=[], env=server_env(tmp_path, journal), cwd=str(tmp_path)
    )
    async with Client(params, read_timeout_seconds=60) as client:
        for number in range(4):
            await client.call_tool("shell_exec", {"command": f"echo {number}"})
        scratch = tmp_path / "scratch"
        scratch.touch()
        await client.call_tool("shell_exec", {"command": f"chmod 600 {scratch}"})  # tier 2: anchored start
    audit = tmp_path / "audit" / "audit.jsonl"
    instance = read_trail(audit)[0]["instance_id"]
    journal.wait_for(1, RELAY_AUDIT_INSTANCE=instance, RELAY_AUDIT_KIND="shutdown")
    clean = verify(tmp_path, journal)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    lines = audit.read_bytes().splitlines(keepends=True)
    target = next(index for index, line in enumerate(lines) if b'"echo 1"' in line)
    lines[target] = lines[target].replace(b'"echo 1"', b'"echo 7"')  # same size, in place
    audit.write_bytes(b"".join(lines))
    edited = verify(tmp_path, journal)
    assert edited.returncode == 2
    report = json.loads(edited.stdout)
    assert report["findings"][0]["line"] == target + 1
    assert report["findings"][0]["kind"] == "edited"

    audit.write_bytes(b"".join(lines[: target - 1]))  # cut the end off: the chain left is intact
    cut = json.loads(verify(tmp_path, journal).stdout)
    assert cut["ok"] is False
    assert "missing-head" in {finding["kind"] for finding in cut["findings"]}
    missing = {finding["anchor"]["kind"] for finding in cut["findings"] if finding["kind"] == "missing-head"}
    assert missing == {"start", "shutdown"}  # the tier-2 call's anchored start, and the head at shutdown


def _send(process: subprocess.Popen[bytes], message: dict[str, Any]) -> None:
    assert process.stdin is not None
    process.stdin.write((json.dumps(message) + "\n").encode())
    process.stdin.flush()


def test_kill_9_mid_call_leaves_one_unfinished_call(tmp_path: Path, journal: Journald) -> None:
    marker = f"relay-audit-kill-{time.monotonic_ns()}"
    audit = tmp_path / "audit" / "audit.jsonl"
    process = subprocess.Popen(
        [RELAY],
        env=server_env(tmp_path, journal),
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        _send(process, initialize_message("2025-06-18"))
        assert process.stdout is not None
        assert b'"result"' in process.stdout.readline()
        _send(process, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        _send(
            process,
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "shell_exec", "arguments": {"command": f"sleep 60 # {marker}"}},
            },
        )
        wait_until(lambda: pids_with_marker(marker), "the call's process")
        starts = wait_until(
            lambda: [r for r in read_trail(audit) if r.get("phase") == "start"], "the start record"
        )
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
        for pid in pids_with_marker(marker):
            os.kill(pid, signal.SIGKILL)

    done = subprocess.run(
        [RELAY, "--verify-audit", "--json", str(audit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    report = json.loads(done.stdout)
    [unfinished] = report["unfinished"]
    assert [finding["kind"] for finding in report["findings"]] == ["unfinished"]
    assert starts[0]["call_id"] in unfinished["message"]
    assert unfinished["line"] == 2  # the header, then the start record


def test_a_second_server_on_the_same_audit_file_refuses_to_start(tmp_path: Path, journal: Journald) -> None:
    env = server_env(tmp_path, journal)
    log = (tmp_path / "first.log").open("wb")
    first = subprocess.Popen(
        [RELAY], env=env, cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log
    )
    try:
        wait_until(
            lambda: [r for r in read_trail(tmp_path / "audit" / "audit.jsonl") if r.get("kind") == "header"],
            "the first server's header",
        )
        second = subprocess.run(
            [RELAY],
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        first.kill()
        first.wait(timeout=20)
    assert second.returncode == 2
    assert "RELAY_SHELL_AUDIT_PATH" in second.stderr
    assert f"locked by process {first.pid}" in second.stderr
    checked = subprocess.run(
        [RELAY, "--check-config"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert checked.returncode == 0, checked.stderr  # a reader or a check never takes the writer's lock


def check_config(tmp_path: Path, journal: Journald, **extra: str) -> tuple[int, dict[str, str]]:
    """``--check-config --json``: the exit code and each finding's ``STATUS: detail`` by name."""
    done = subprocess.run(
        [RELAY, "--check-config", "--json"],
        env=server_env(tmp_path, journal, **extra),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = json.loads(done.stdout)["findings"]
    return done.returncode, {item["name"]: f"{item['status']}: {item['detail']}" for item in findings}


def test_check_config_warns_when_anchoring_is_off_and_fails_on_a_dead_collector(
    tmp_path: Path, journal: Journald
) -> None:
    code, findings = check_config(tmp_path, journal, RELAY_SHELL_AUDIT_ANCHOR="auto")
    assert code == 0
    try:
        journal_listening(DEFAULT_JOURNAL_SOCKET)
    except OSError:  # no journald on the default socket: auto falls back to off, and says so
        assert findings["RELAY_SHELL_AUDIT_ANCHOR"].startswith("WARN: audit anchoring is off")
    else:
        assert "RELAY_SHELL_AUDIT_ANCHOR" not in findings
    code, findings = check_config(tmp_path, journal, RELAY_SHELL_AUDIT_ANCHOR="off")
    assert (code, "RELAY_SHELL_AUDIT_ANCHOR" in findings) == (0, False)  # the operator's choice
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"syslog+tcp://127.0.0.1:{probe.getsockname()[1]}"
    code, findings = check_config(tmp_path, journal, RELAY_SHELL_AUDIT_SHIP=dead)
    assert code == 2
    assert (
        findings["RELAY_SHELL_AUDIT_SHIP"].startswith("FAIL: ")
        and "not reachable" in findings["RELAY_SHELL_AUDIT_SHIP"]
    )
    code, findings = check_config(tmp_path, journal)
    assert code == 0
    assert "RELAY_SHELL_AUDIT_ANCHOR" not in findings  # journald answers: nothing to say
    assert findings["RELAY_SHELL_AUDIT_PATH"].startswith("OK: ")
