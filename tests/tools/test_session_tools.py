"""shell_spawn and session_* through an in-process MCP client (real PTYs)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from relay_shell.app import build_server
from relay_shell.config import Settings
from tests.conftest import connected, live_group_members, pids_with_marker, read_audit, sc

PROMPT = r"\$ $"


async def spawn(client: Client, **args: Any) -> str:
    result = await client.call_tool("shell_spawn", {"env": {"PS1": "$ "}, **args})
    assert result.is_error is False, result.content[0].text
    return str(sc(result)["session_id"])


async def recv_until(client: Client, session_id: str, until: str, timeout: float = 10) -> dict[str, Any]:
    result = await client.call_tool(
        "session_recv", {"session_id": session_id, "until": until, "timeout": timeout}
    )
    data = sc(result)
    assert data["matched"] is True, data
    return data


async def test_bash_state_persists(client: Client) -> None:
    sid = await spawn(client, command="bash --norc --noprofile -i")
    assert sid.startswith("sh-")
    await recv_until(client, sid, PROMPT)
    await client.call_tool("session_send", {"session_id": sid, "data": "cd /tmp"})
    await recv_until(client, sid, PROMPT)
    await client.call_tool("session_send", {"session_id": sid, "data": "pwd"})
    data = await recv_until(client, sid, r"^/tmp\r?$")
    assert "/tmp" in data["output"]


async def test_python_repl(client: Client) -> None:
    sid = await spawn(client, command="python3 -q")
    await recv_until(client, sid, r">>> $")
    await client.call_tool("session_send", {"session_id": sid, "data": "1+1"})
    data = await recv_until(client, sid, r"^2\r?$")
    assert "2" in [line.strip() for line in data["output"].splitlines()]


async def test_prompt_answered_with_until(client: Client, tmp_path: Path) -> None:
    script = tmp_path / "ask.sh"
    script.write_text('printf "Continue? [Y/n] "; read answer; echo "answer=$answer"\n')
    sid = await spawn(client, command=f"sh {script}")
    await recv_until(client, sid, r"Continue\? \[Y/n\]")
    await client.call_tool("session_send", {"session_id": sid, "data": "y"})
    data = await recv_until(client, sid, r"answer=y")
    assert "answer=y" in data["output"]


async def test_ctrl_c_interrupts_but_shell_survives(client: Client) -> None:
    marker = f"relay-sess-sleep-{os.getpid()}"
    sid = await spawn(client, command="bash --norc --noprofile -i")
    await recv_until(client, sid, PROMPT)
    await client.call_tool("session_send", {"session_id": sid, "data": f"sh -c 'sleep 100; : {marker}'"})
    deadline = time.monotonic() + 10
    while not pids_with_marker(marker):
        assert time.monotonic() < deadline, "the sleep never started"
        await asyncio.sleep(0.02)
    result = await client.call_tool("session_send", {"session_id": sid, "enter": False, "keys": ["C-c"]})
    assert result.is_error is False
    await recv_until(client, sid, PROMPT)
    await client.call_tool("session_send", {"session_id": sid, "data": "echo alive-$((40+2))"})
    await recv_until(client, sid, r"alive-42")
    assert pids_with_marker(marker) == []


async def test_resize_seen_by_stty(client: Client) -> None:
    sid = await spawn(client, command="bash --norc --noprofile -i", cols=100, rows=30)
    await recv_until(client, sid, PROMPT)
    resized = await client.call_tool("session_resize", {"session_id": sid, "cols": 91, "rows": 27})
    assert (sc(resized)["cols"], sc(resized)["rows"]) == (91, 27)
    await client.call_tool("session_send", {"session_id": sid, "data": "stty size"})
    await recv_until(client, sid, r"27 91")


async def test_actions_report_what_they_changed(client: Client) -> None:
    """A spawn reports the new session; send, resize and kill what they did, not the whole row."""
    started = await client.call_tool("shell_spawn", {"command": "cat", "cols": 100, "rows": 30})
    row = sc(started)
    sid = row["session_id"]
    assert row == {
        "session_id": sid, "kind": "local", "host": None, "command": "cat", "cols": 100, "rows": 30,
        "state": "running", "owner": None, "tier": row["tier"],
    }  # fmt: skip
    typed = {"session_id": sid, "data": "héllo", "keys": ["Backspace"]}
    sent = sc(await client.call_tool("session_send", typed))
    assert sent == {"session_id": sid, "bytes_sent": len("héllo".encode()) + 2, "state": "running", "tier": 2}
    resized = sc(await client.call_tool("session_resize", {"session_id": sid, "cols": 81, "rows": 25}))
    assert resized == {"session_id": sid, "cols": 81, "rows": 25, "tier": 1}
    listed = sc(await client.call_tool("session_list", {}))["sessions"]
    assert [(r["cols"], r["rows"]) for r in listed if r["session_id"] == sid] == [(81, 25)]
    killed = sc(await client.call_tool("session_kill", {"session_id": sid, "signal": "KILL"}))
    assert killed == {"session_id": sid, "state": "ended", "exit_code": 128 + 9, "tier": 1}
    assert sc(await client.call_tool("session_list", {}))["count"] == 0


async def test_child_exit_reports_ended_and_code(client: Client) -> None:
    sid = await spawn(client, command="sh -c 'echo bye; exit 3'")
    data = await recv_until(client, sid, "bye")
    final = sc(await client.call_tool("session_recv", {"session_id": sid, "timeout": 5}))
    if not final["ended"]:
        final = sc(await client.call_tool("session_recv", {"session_id": sid, "timeout": 5}))
    assert final["ended"] is True
    assert final["exit_code"] == 3
    assert data["output"]


async def test_kill_leaves_no_process_and_no_fd(client: Client) -> None:
    before = len(os.listdir("/proc/self/fd"))
    marker = f"relay-sess-kill-{os.getpid()}-{time.monotonic_ns()}"
    ids = [await spawn(client, command=f"sleep 300; : {marker}") for _ in range(3)]
    listed = sc(await client.call_tool("session_list", {}))
    assert {s["session_id"] for s in listed["sessions"]} >= set(ids)
    deadline = time.monotonic() + 10
    while len(pids_with_marker(marker)) < 3:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    pgids = {os.getpgid(pid) for pid in pids_with_marker(marker)}
    assert len(pgids) == 3  # each session is its own process group
    for sid in ids:
        killed = await client.call_tool("session_kill", {"session_id": sid})
        assert killed.is_error is False
    assert pids_with_marker(marker) == []
    for pgid in pgids:
        assert live_group_members(pgid) == []
    assert len(os.listdir("/proc/self/fd")) == before
    assert sc(await client.call_tool("session_list", {}))["count"] == 0


@pytest.fixture
async def small_client(make_settings: Callable[..., Settings]) -> AsyncIterator[Client]:
    server = build_server(make_settings(max_sessions=2))
    async with connected(server) as small:
        yield small
    await server.services.aclose()


async def test_max_sessions_limit(small_client: Client) -> None:
    await spawn(small_client, command="sleep 30")
    await spawn(small_client, command="sleep 30")
    third = await small_client.call_tool("shell_spawn", {"command": "sleep 30"})
    assert third.is_error is True
    error = sc(third)["error"]
    assert error["kind"] == "failed"
    assert "RELAY_SHELL_MAX_SESSIONS" in error["message"]


async def test_unknown_ids_signals_and_keys_are_invalid(client: Client) -> None:
    for tool, args in [
        ("session_recv", {"session_id": "sh-000000000000"}),
        ("session_send", {"session_id": "sh-000000000000", "data": "x"}),
        ("session_kill", {"session_id": "nope"}),
    ]:
        result = await client.call_tool(tool, args)
        assert sc(result)["error"]["kind"] == "invalid", tool
    sid = await spawn(client, command="sleep 30")
    bad_signal = await client.call_tool("session_kill", {"session_id": sid, "signal": "SIGBOGUS"})
    assert sc(bad_signal)["error"]["kind"] == "invalid"
    assert sc(bad_signal)["error"]["argument"] == "signal"
    bad_key = await client.call_tool("session_send", {"session_id": sid, "keys": ["C-?"]})
    assert sc(bad_key)["error"]["argument"] == "keys"
    bad_regex = await client.call_tool("session_recv", {"session_id": sid, "until": "(["})
    assert sc(bad_regex)["error"]["argument"] == "until"


async def test_typed_text_is_classified_and_audited(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(policy_mode="guarded")
    server = build_server(settings)
    async with Client(server) as client:
        sid = await spawn(client)  # a shell: text typed into another program is opaque
        refused = await client.call_tool(
            "session_send", {"session_id": sid, "data": "rm -rf /", "enter": True}
        )
        assert sc(refused)["error"]["kind"] == "denied"
        assert sc(refused)["error"]["tier"] == 3
        secret = await client.call_tool(
            "session_send", {"session_id": sid, "data": "export DB_PASSWORD=s3cr3t-value"}
        )
        assert secret.is_error is False
    await server.services.aclose()
    raw = settings.audit_path.read_text()
    assert "s3cr3t-value" not in raw
    tools = [r["tool"] for r in read_audit(settings.audit_path)]
    assert tools.count("session_send") == 2
