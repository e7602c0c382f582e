"""The real ``relay-shell`` command over stdio with the official MCP client."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from tests.conftest import connected, initialize_line, pids_with_marker, read_audit, read_trail, sc

RELAY = str(Path(sys.executable).parent / "relay-shell")


def server_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "RELAY_SHELL_AUDIT_PATH": str(tmp_path / "audit.jsonl"),
        "RELAY_SHELL_AUDIT_ANCHOR": "off",
        "RELAY_SHELL_SSH_CONFIG": str(tmp_path / "ssh_config"),
        "RELAY_SHELL_SSH_KNOWN_HOSTS_FILE": str(tmp_path / "known_hosts"),
    }
    env.update(extra)
    return env


@pytest.fixture
async def stdio_client(tmp_path: Path) -> AsyncIterator[Client]:
    params = StdioServerParameters(command=RELAY, args=[], env=server_env(tmp_path), cwd=str(tmp_path))
    async with connected(params, read_timeout_seconds=60) as client:
        yield client


async def test_tools_listed_with_descriptions_and_annotations(stdio_client: Client) -> None:
    tools = (await stdio_client.list_tools()).tools
    names = {tool.name for tool in tools}
    assert {"shell_exec", "shell_script", "server_info", "audit_tail"} <= names
    for tool in tools:
        assert tool.description
        assert tool.annotations is not None
        assert tool.output_schema is not None


async def test_exec_paths_and_audit(stdio_client: Client, tmp_path: Path) -> None:
    ok = await stdio_client.call_tool("shell_exec", {"command": "echo hi"})
    assert (ok.is_error, sc(ok)["exit_code"], sc(ok)["output"]) == (False, 0, "hi\n")
    failed = await stdio_client.call_tool("shell_exec", {"command": "exit 7"})
    assert (failed.is_error, sc(failed)["exit_code"]) == (False, 7)
    marker = f"relay-e2e-timeout-{time.monotonic_ns()}"
    timed_out = await stdio_client.call_tool(
        "shell_exec", {"command": f"echo partial; sleep 300 # {marker}", "timeout": 1}
    )
    assert timed_out.is_error is True
    assert sc(timed_out)["error"]["kind"] == "timeout"
    assert "partial" in sc(timed_out)["output"]
    assert pids_with_marker(marker) == []
    big = await stdio_client.call_tool("shell_exec", {"command": "head -c 5000000 /dev/zero | tr '\\0' a"})
    assert sc(big)["truncated"] is True
    assert sc(big)["output_bytes"] == 5_000_000
    binary = await stdio_client.call_tool("shell_exec", {"command": "head -c 2000 /dev/zero"})
    assert sc(binary)["binary"] is True
    script = await stdio_client.call_tool("shell_script", {"script": "set -x\nfalse\necho never"})
    assert sc(script)["exit_code"] == 1
    assert "never" not in sc(script)["output"]
    python = await stdio_client.call_tool("shell_script", {"script": "print(6*7)", "interpreter": "python"})
    assert sc(python)["output"] == "42\n"
    invalid = await stdio_client.call_tool("shell_exec", {"command": "true", "env": ["not", "an", "object"]})
    assert sc(invalid)["error"]["kind"] == "invalid"
    assert "env" in invalid.content[0].text
    trail = read_trail(tmp_path / "audit.jsonl")
    assert trail[0]["kind"] == "header"
    starts = [r for r in trail if r.get("phase") == "start"]
    records = [r for r in trail if "kind" not in r and r.get("phase") != "start"]  # one outcome per call
    assert [r["tool"] for r in records] == ["shell_exec"] * 5 + ["shell_script"] * 2 + ["shell_exec"]
    above_0 = [r for r in records[:7] if r["tier"] > 0]  # echo, head and tr are plain reads: tier 0
    assert [r["tier"] for r in records[:7]] == [0, 0, 1, 0, 0, 1, 2]  # exit 7 a builtin, python opaque
    assert [r["call_id"] for r in starts] == [r["call_id"] for r in above_0]  # the invalid call never started
    assert not any("call_id" in r for r in records[:7] if r["tier"] == 0)
    assert [r["outcome"] for r in records][:3] == ["ok", "ok", "timeout"]
    raw = (tmp_path / "audit.jsonl").read_text()
    assert "aaaaaaaaaa" not in raw  # no output body


async def test_cancellation_over_stdio(tmp_path: Path) -> None:
    marker = f"relay-e2e-cancel-{time.monotonic_ns()}"
    params = StdioServerParameters(command=RELAY, args=[], env=server_env(tmp_path), cwd=str(tmp_path))
    async with Client(params, read_timeout_seconds=60) as client:
        task = asyncio.create_task(client.call_tool("shell_exec", {"command": f"sleep 300 # {marker}"}))
        deadline = time.monotonic() + 15
        while not pids_with_marker(marker):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        deadline = time.monotonic() + 15

        def ends() -> list[dict[str, Any]]:
            return [r for r in read_trail(tmp_path / "audit.jsonl") if r.get("phase") == "end"]

        while pids_with_marker(marker) or not ends():
            assert time.monotonic() < deadline, "child survived cancellation or no end record"
            await asyncio.sleep(0.05)
        assert ends()[-1]["outcome"] == "cancelled"


async def test_readonly_denial(tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=RELAY,
        args=[],
        env=server_env(tmp_path, RELAY_SHELL_POLICY_MODE="readonly"),
        cwd=str(tmp_path),
    )
    async with Client(params, read_timeout_seconds=60) as client:
        read = await client.call_tool("shell_exec", {"command": "id"})  # a known-safe read: tier 0
        result = await client.call_tool("shell_exec", {"command": f"touch {tmp_path / 'proof'}"})
    assert not read.is_error
    assert sc(result)["error"]["kind"] == "denied"
    assert not (tmp_path / "proof").exists()
    assert read_audit(tmp_path / "audit.jsonl")[-1]["decision"] == "denied"


def test_verify_audit_detects_a_changed_byte(tmp_path: Path) -> None:
    async def produce() -> None:
        params = StdioServerParameters(command=RELAY, args=[], env=server_env(tmp_path), cwd=str(tmp_path))
        async with Client(params, read_timeout_seconds=60) as client:
            for index in range(4):
                await client.call_tool("shell_exec", {"command": f"echo {index}"})

    asyncio.run(produce())
    env = server_env(tmp_path)
    clean = subprocess.run([RELAY, "--verify-audit"], env=env, capture_output=True, text=True, timeout=60)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    path = tmp_path / "audit.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    index = next(number for number, line in enumerate(lines) if '"echo 2"' in line)
    lines[index] = lines[index].replace('"echo 2"', '"echo 3"', 1)
    path.write_text("".join(lines))
    broken = subprocess.run(
        [RELAY, "--verify-audit", str(path)], env=env, capture_output=True, text=True, timeout=60
    )
    assert broken.returncode == 2
    assert f"line {index + 1} of {path}" in broken.stdout


def test_check_config_with_unwritable_audit(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    env = server_env(tmp_path, RELAY_SHELL_AUDIT_PATH=str(blocker / "audit.jsonl"))
    proc = subprocess.run([RELAY, "--check-config"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "RELAY_SHELL_AUDIT_PATH" in proc.stderr
    good = subprocess.run(
        [RELAY, "--check-config"], env=server_env(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert good.returncode == 0, good.stderr


def test_version_and_logs_on_stderr_only(tmp_path: Path) -> None:
    proc = subprocess.run([RELAY, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.startswith("relay-shell ")


@pytest.mark.parametrize("how", ["eof", "sigterm", "sigint"])
def test_orderly_exit(tmp_path: Path, how: str) -> None:
    proc = subprocess.Popen(
        [RELAY],
        env=server_env(tmp_path),
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(initialize_line())
    proc.stdin.flush()
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert b'"result"' in first
    if how == "eof":
        proc.stdin.close()
    else:
        proc.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGINT)
    try:
        code = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0
    rest = proc.stdout.read()
    assert rest == b""  # nothing but JSON-RPC ever goes to stdout


def test_an_oversized_line_is_refused_unparsed_and_serving_goes_on(tmp_path: Path) -> None:
    """A request line over the cap gets a JSON-RPC error for its id; the next request is served."""
    proc = subprocess.Popen(
        [RELAY],
        env=server_env(tmp_path, RELAY_SHELL_MAX_INPUT_BYTES="1024"),  # line limit 4 KiB + 64 KiB
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        proc.stdin.write(initialize_line() + b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        huge = "x" * (8 * 1024 * 1024)
        proc.stdin.write(
            b'{"jsonrpc":"2.0","id":"big","method":"tools/call","params":{"name":"shell_exec",'
            + f'"arguments":{{"command":"echo {huge}"}}}}}}\n'.encode()
        )
        proc.stdin.write(
            b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"shell_exec",'
            b'"arguments":{"command":"echo after"}}}\n'
        )
        proc.stdin.flush()
        answers: dict[object, dict[str, Any]] = {}
        while 3 not in answers:
            line = proc.stdout.readline()
            assert line, "the server closed stdout before answering"
            message = json.loads(line)
            answers[message.get("id")] = message
        proc.stdin.close()
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    refused = answers["big"]["error"]
    assert refused["code"] == -32600
    assert "RELAY_SHELL_MAX_INPUT_BYTES" in refused["message"]
    assert answers[3]["result"]["structuredContent"]["output"] == "after\n"
    assert [record["args"]["command"] for record in read_audit(tmp_path / "audit.jsonl")] == ["echo after"]
    assert proc.stderr is not None
    assert b"refused" in proc.stderr.read()
