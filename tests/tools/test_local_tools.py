"""shell_exec / shell_script through an in-process MCP client: results, bounds, audit."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from relay_shell.app import build_server
from relay_shell.config import Settings
from relay_shell.tools.base import hint
from tests.conftest import live_group_members, pids_with_marker, read_audit, sc


def text_of(result: Any) -> str:
    return str(result.content[0].text)


async def test_success_result_shape(client: Client, settings: Settings) -> None:
    result = await client.call_tool("shell_exec", {"command": "echo hello; echo oops >&2"})
    assert result.is_error is False
    data = sc(result)
    assert data["exit_code"] == 0
    assert data["output"] == "hello\noops\n"
    assert data["truncated"] is False
    assert data["output_bytes"] == len("hello\noops\n")
    assert data["stream_sha256"] == hashlib.sha256(b"hello\noops\n").hexdigest()
    assert data["tier"] == 0  # echo is a known-safe read
    assert text_of(result).startswith("exit 0 · ")
    assert data["timeout_s"] == settings.default_timeout  # the default is actually used


async def test_nonzero_exit_is_not_an_error(client: Client) -> None:
    result = await client.call_tool("shell_exec", {"command": "echo bad >&2; exit 3"})
    assert result.is_error is False
    assert sc(result)["exit_code"] == 3
    assert "bad" in sc(result)["output"]


async def test_separate_streams(client: Client) -> None:
    result = await client.call_tool(
        "shell_exec", {"command": "echo out; echo err >&2", "merge_stderr": False}
    )
    data = sc(result)
    assert data["stdout"] == "out\n"
    assert data["stderr"] == "err\n"


async def test_stdin_env_cwd(client: Client, tmp_path: Path) -> None:
    result = await client.call_tool(
        "shell_exec",
        {
            "command": 'cat; echo "$FOO"; pwd; echo "${HOME:-unset}"; echo "$DEBIAN_FRONTEND"',
            "stdin": '{"json": "passes through unchanged"}\n',
            "env": {"FOO": "bar", "HOME": None},
            "cwd": str(tmp_path),
        },
    )
    lines = sc(result)["output"].splitlines()
    assert lines == ['{"json": "passes through unchanged"}', "bar", str(tmp_path), "unset", "noninteractive"]


async def test_use_shell_false_execs_words(client: Client) -> None:
    result = await client.call_tool(
        "shell_exec", {"command": "printf '%s|' 'a b' '$HOME'", "use_shell": False}
    )
    assert sc(result)["output"] == "a b|$HOME|"


async def test_timeout_kills_process_group_and_keeps_partial(client: Client, settings: Settings) -> None:
    marker = f"relay-timeout-{os.getpid()}-{time.monotonic_ns()}"
    result = await client.call_tool(
        "shell_exec",
        {"command": f"echo started; sh -c 'sleep 300; echo {marker}' & sleep 300 # {marker}", "timeout": 1},
    )
    assert result.is_error is True
    data = sc(result)
    assert data["error"]["kind"] == "timeout"
    assert "started" in data["output"]  # partial output
    assert "started" in text_of(result)
    assert pids_with_marker(marker) == []
    record = read_audit(settings.audit_path)[-1]
    assert record["outcome"] == "timeout"
    assert record["stream_len"] == len("started\n")


async def test_child_ignoring_term_is_killed(client: Client) -> None:
    marker = f"relay-ignore-term-{time.monotonic_ns()}"
    result = await client.call_tool(
        "shell_exec", {"command": f"trap '' TERM; echo ready; sleep 300 # {marker}", "timeout": 0.5}
    )
    assert sc(result)["error"]["kind"] == "timeout"
    assert pids_with_marker(marker) == []


async def test_cancellation_kills_group_and_is_audited(server: Any, settings: Settings) -> None:
    marker = f"relay-cancel-{time.monotonic_ns()}"
    async with Client(server) as client:
        task = asyncio.create_task(client.call_tool("shell_exec", {"command": f"sleep 300 # {marker}"}))
        deadline = time.monotonic() + 10
        while not pids_with_marker(marker):
            assert time.monotonic() < deadline, "child never started"
            await asyncio.sleep(0.02)
        pgid = os.getpgid(pids_with_marker(marker)[0])
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        deadline = time.monotonic() + 10
        while live_group_members(pgid) or not read_audit(settings.audit_path):
            assert time.monotonic() < deadline, "process group survived or no audit record"
            await asyncio.sleep(0.02)
    records = read_audit(settings.audit_path)
    assert records[-1]["tool"] == "shell_exec"
    assert records[-1]["outcome"] == "cancelled"


async def test_large_output_truncated_head_and_tail(client: Client) -> None:
    # 5 MB of numbered lines: head and tail kept, total reported, memory bounded.
    result = await client.call_tool(
        "shell_exec", {"command": "seq 1 800000; echo LAST-LINE", "max_output": 30000}
    )
    data = sc(result)
    assert data["truncated"] is True
    assert data["output_bytes"] > 5_000_000
    output = data["output"]
    assert output.startswith("1\n2\n3\n")
    assert output.rstrip().endswith("LAST-LINE")
    assert "bytes omitted" in output
    assert len(output.encode()) < 30000 + 200
    assert "truncated" in text_of(result).splitlines()[0]


async def test_binary_output_not_dumped(client: Client) -> None:
    result = await client.call_tool("shell_exec", {"command": "head -c 4096 /dev/urandom; printf '\\0'"})
    data = sc(result)
    assert data["binary"] is True
    assert data["output"].startswith("[binary output, 4097 bytes, sha256 ")


async def test_utf8_never_split_at_cut(client: Client) -> None:
    # 3-byte characters with a budget that does not divide evenly
    result = await client.call_tool(
        "shell_exec", {"command": "python3 -c \"print('€' * 5000)\"", "max_output": 1024}
    )
    assert "\ufffd" not in sc(result)["output"]


async def test_script_bash_strict_stops_at_failure(client: Client) -> None:
    result = await client.call_tool("shell_script", {"script": "echo one\nfalse\necho two\n"})
    data = sc(result)
    assert data["exit_code"] == 1
    assert data["output"] == "one\n"
    relaxed = await client.call_tool(
        "shell_script", {"script": "echo one\nfalse\necho two\n", "strict": False}
    )
    assert sc(relaxed)["output"] == "one\ntwo\n"


async def test_script_python(client: Client) -> None:
    result = await client.call_tool(
        "shell_script",
        {"script": "import sys\nprint(sum(range(10)), sys.version_info[0])", "interpreter": "python"},
    )
    assert sc(result)["output"] == "45 3\n"


@pytest.mark.parametrize(
    ("tool", "args", "argument"),
    [
        ("shell_exec", {"command": "true", "timeout": -1}, "timeout"),
        ("shell_exec", {"command": "true", "timeout": 0}, "timeout"),
        ("shell_exec", {"command": "true", "timeout": "soon"}, "timeout"),
        ("shell_exec", {"command": "true", "env": "A=1"}, "env"),
        ("shell_exec", {"command": "true", "env": {"A": 1}}, "env.A"),
        ("shell_exec", {"command": "true", "max_output": -5}, "max_output"),
        ("shell_exec", {"command": "true", "cwd": "/nonexistent/dir"}, "cwd"),
        ("shell_exec", {"command": ""}, "command"),
        ("shell_exec", {"command": "echo 'unterminated", "use_shell": False}, "command"),
        ("shell_script", {"script": "true", "interpreter": "perl"}, "interpreter"),
        ("audit_tail", {"lines": 0}, "lines"),
    ],
)
async def test_invalid_arguments_are_named_and_audited(
    client: Client, settings: Settings, tool: str, args: dict[str, Any], argument: str
) -> None:
    result = await client.call_tool(tool, args)
    assert result.is_error is True
    data = sc(result)
    assert data["error"]["kind"] == "invalid"
    assert data["error"]["argument"].startswith(argument.split(".", maxsplit=1)[0])
    assert argument.split(".", maxsplit=1)[0] in text_of(result)
    assert "Traceback" not in text_of(result)
    record = read_audit(settings.audit_path)[-1]
    assert record["tool"] == tool
    assert record["error_kind"] == "invalid"


async def test_timeout_above_ceiling_is_clamped(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(max_timeout=5, default_timeout=2)
    server = build_server(settings)
    async with Client(server) as client:
        result = await client.call_tool("shell_exec", {"command": "true", "timeout": 100})
    data = sc(result)
    assert data["timeout_s"] == 5
    assert any("clamped" in note for note in data["notes"])


async def test_audit_record_fields_no_output_no_secret(client: Client, settings: Settings) -> None:
    secret = "hunter2-very-secret"
    await client.call_tool(
        "shell_exec",
        {
            "command": f"echo OUTPUT-BODY-123; mysql -p{secret} -e 'select 1' 2>/dev/null; true",
            "env": {"DB_PASSWORD": secret},
        },
    )
    raw = settings.audit_path.read_text()
    assert "OUTPUT-BODY-123\n" not in raw  # the command text holds it, the output body is never written
    assert secret not in raw
    record = read_audit(settings.audit_path)[-1]
    for name in (
        "ts",
        "seq",
        "tool",
        "tier",
        "decision",
        "outcome",
        "args",
        "exit_code",
        "duration_ms",
        "output_sha256",
        "output_len",
        "stream_sha256",
        "stream_len",
        "request_id",
        "client_id",
        "principal",
        "patterns_version",
        "prev",
        "chain",
    ):
        assert name in record, name
    assert record["decision"] == "allowed"
    assert record["outcome"] == "ok"
    assert record["args"]["env"]["DB_PASSWORD"] == "[REDACTED]"


async def test_tools_have_descriptions_annotations_and_schemas(client: Client) -> None:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert {"shell_exec", "shell_script", "server_info", "audit_tail"} <= set(tools)
    for tool in tools.values():
        assert tool.description and len(tool.description) > 40, tool.name
        assert tool.annotations is not None, tool.name
        assert tool.output_schema is not None, tool.name
    assert hint(tools["server_info"].annotations, "read_only_hint") is True
    assert hint(tools["shell_exec"].annotations, "destructive_hint") is True  # the default, left out
    assert tools["server_info"].annotations.read_only_hint is True
    assert tools["shell_exec"].annotations.destructive_hint is None


async def test_progress_notifications_for_long_exec(client: Client) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    result = await client.call_tool(
        "shell_exec",
        {"command": "for i in 1 2 3; do echo $i; sleep 0.8; done"},
        progress_callback=on_progress,
    )
    assert sc(result)["exit_code"] == 0
    assert len(seen) >= 1
    assert "bytes of output" in (seen[-1][2] or "")


async def test_background_child_holding_the_pipe_is_killed_when_the_command_exits(
    client: Client, settings: Settings
) -> None:
    marker = f"30.{time.monotonic_ns()}"  # the background sleep's own argument: one process
    result = await client.call_tool(
        "shell_exec", {"command": f"sleep {marker} & echo started", "timeout": 20}
    )
    data = sc(result)
    assert result.is_error is False
    assert data["exit_code"] == 0
    assert data["output"] == "started\n"
    assert data["duration_ms"] < 15000  # returned when the command exited, not at the timeout
    assert "left 1 process running; it was killed when the command exited" in text_of(result)
    assert pids_with_marker(marker) == []  # gone by the time the call returned: no waiting
    assert read_audit(settings.audit_path)[-1]["left_running"] == 1
