"""Jobs on the real ``relay-shell`` over stdio with the official Python MCP client.

A long command yields a job that is read to its end; a client restart (stdin EOF) or SIGTERM
while a job runs ends it: its processes are gone and its ``job_end`` record says ``cancelled``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from tests.conftest import connected, initialize_message, pids_with_marker, read_audit, sc
from tests.e2e.test_stdio import RELAY, server_env

GONE_DEADLINE_S = 15.0


def marker_duration() -> str:
    return f"300.{time.monotonic_ns() % 1_000_000_000:09d}"


def wait_gone(marker: str) -> None:
    deadline = time.monotonic() + GONE_DEADLINE_S
    while pids_with_marker(marker):
        assert time.monotonic() < deadline, f"processes survived: {pids_with_marker(marker)}"
        time.sleep(0.05)


async def test_a_counting_loop_yields_and_is_read_to_its_end(tmp_path: Path) -> None:
    """The acceptance scenario (ten lines, one a second, yielding after two seconds; the
    by-hand run uses 90), here at a line every 0.3 s: the same shape in three seconds."""
    params = StdioServerParameters(command=RELAY, args=[], env=server_env(tmp_path), cwd=str(tmp_path))
    command = "for i in $(seq 1 10); do echo $i; sleep 0.3; done"
    async with connected(params, read_timeout_seconds=60) as client:
        first = sc(
            await client.call_tool("shell_exec", {"command": command, "yield_after": 0.6, "timeout": 200})
        )
        assert (first["status"], first["timeout_s"]) == ("running", 200)
        assert 600 <= first["elapsed_ms"] < 3_000
        job = first["job_id"]
        seen = sc(await client.call_tool("session_recv", {"session_id": job, "until": "^5$", "timeout": 30}))
        assert seen["matched"] is True and seen["output"].endswith("5\n")
        rest = []
        deadline = time.monotonic() + 60
        while True:
            got = sc(await client.call_tool("session_recv", {"session_id": job, "timeout": 10}))
            rest.append(got["output"])
            if got["ended"]:
                break
            assert time.monotonic() < deadline
        listed = sc(await client.call_tool("session_list", {}))
    whole = first["output"] + seen["output"] + "".join(rest)
    expected = "".join(f"{i}\n" for i in range(1, 11))
    assert whole == expected
    assert (got["exit_code"], got["outcome"]) == (0, "ok")
    assert got["stream_sha256"] == hashlib.sha256(expected.encode()).hexdigest()
    assert [row["state"] for row in listed["sessions"] if row["session_id"] == job] == ["ended"]
    records = read_audit(tmp_path / "audit.jsonl")
    call = next(r for r in records if r["tool"] == "shell_exec")
    end = next(r for r in records if r["tool"] == "job_end")
    assert (call["outcome"], call["job_id"]) == ("running", job)
    assert (end["call_id"], end["outcome"], end["exit_code"]) == (call["call_id"], "ok", 0)
    assert pids_with_marker("seq 1 10") == []


async def test_a_client_restart_ends_running_jobs(tmp_path: Path) -> None:
    """Over stdio the server ends with its client: jobs are killed and recorded as cancelled."""
    duration = marker_duration()
    params = StdioServerParameters(command=RELAY, args=[], env=server_env(tmp_path), cwd=str(tmp_path))
    async with connected(params, read_timeout_seconds=60) as client:
        first = sc(await client.call_tool("shell_exec", {"command": f"sleep {duration}", "yield_after": 0.3}))
        assert first["status"] == "running"
        assert pids_with_marker(duration)
    wait_gone(duration)
    deadline = time.monotonic() + GONE_DEADLINE_S
    while not [r for r in read_audit(tmp_path / "audit.jsonl") if r["tool"] == "job_end"]:
        assert time.monotonic() < deadline, "no job_end record"
        await asyncio.sleep(0.05)
    end = next(r for r in read_audit(tmp_path / "audit.jsonl") if r["tool"] == "job_end")
    assert (end["outcome"], end["call_id"], end["job_id"]) == ("cancelled", first["call_id"], first["job_id"])


@pytest.mark.parametrize("how", ["sigterm", "eof"])
def test_a_server_stop_ends_running_jobs(tmp_path: Path, how: str) -> None:
    duration = marker_duration()
    proc = subprocess.Popen(
        [RELAY], env=server_env(tmp_path), cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    messages = [
        initialize_message("2025-11-25"),
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "shell_exec", "arguments": {"command": f"sleep {duration}", "yield_after": 0.3}}},
    ]  # fmt: skip
    try:
        for message in messages:
            proc.stdin.write((json.dumps(message) + "\n").encode())
            proc.stdin.flush()
        answers = [json.loads(proc.stdout.readline()) for _ in range(2)]
        called = next(answer for answer in answers if answer.get("id") == 2)["result"]["structuredContent"]
        assert called["status"] == "running"
        assert pids_with_marker(duration)
        if how == "eof":
            proc.stdin.close()
        else:
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wait_gone(duration)
    end = next(r for r in read_audit(tmp_path / "audit.jsonl") if r["tool"] == "job_end")
    assert (end["outcome"], end["call_id"]) == ("cancelled", called["call_id"])


async def test_an_unknown_or_invalid_job_read_over_stdio(tmp_path: Path) -> None:
    params = StdioServerParameters(command=RELAY, args=[], env=server_env(tmp_path), cwd=str(tmp_path))
    async with Client(params, read_timeout_seconds=60) as client:
        unknown = await client.call_tool("session_recv", {"session_id": "job-000000000000"})
        bad = await client.call_tool("shell_exec", {"command": "true", "yield_after": -3})
    assert (sc(unknown)["error"]["kind"], sc(unknown)["error"]["argument"]) == ("invalid", "session_id")
    assert (sc(bad)["error"]["kind"], sc(bad)["error"]["argument"]) == ("invalid", "yield_after")
