"""The 2025-11-25 core tasks on the wire: raw JSON-RPC to the real ``relay-shell`` over stdio.

The TypeScript 1.x client (``tests/e2e/test_tasks_clients.py``) walks the happy paths; these
are the edges it never sends: the capability only at 2025-11-25, ``taskSupport`` only on the
command-running tools, refusals as JSON-RPC errors, unknown ids, a cursor, cancelling a task
that has ended, a blocking ``tasks/result``, and ``tasks/*`` names on an older protocol.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import read_audit
from tests.e2e.test_stdio import RELAY, server_env

COMMANDS = {"shell_exec", "shell_script", "ssh_exec", "ssh_fanout"}


class Wire:
    """One stdio server, spoken to one JSON-RPC line at a time."""

    def __init__(self, tmp_path: Path, version: str) -> None:
        self.process = subprocess.Popen(
            [RELAY], env=server_env(tmp_path), cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.next_id = 0
        self.initialized = self.request(
            "initialize",
            {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "wire", "version": "1"}},
        )
        self.notify("notifications/initialized")

    def notify(self, method: str) -> None:
        self._write({"jsonrpc": "2.0", "method": method})

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The response to one request (its ``result`` or ``error`` object, with a key saying which)."""
        self.next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            message["params"] = params
        self._write(message)
        assert self.process.stdout is not None
        while True:
            line = self.process.stdout.readline()
            assert line, "the server closed stdout"
            answer: dict[str, Any] = json.loads(line)
            if answer.get("id") == self.next_id:
                return answer

    def _write(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(message) + "\n").encode())
        self.process.stdin.flush()

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def wire(tmp_path: Path) -> Iterator[Wire]:
    connection = Wire(tmp_path, "2025-11-25")
    yield connection
    connection.close()


def task_call(wire: Wire, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return wire.request("tools/call", {"name": name, "arguments": arguments, "task": {"ttl": 60000}})


def test_capability_and_task_support_only_where_they_belong(wire: Wire, tmp_path: Path) -> None:
    capabilities = wire.initialized["result"]["capabilities"]
    assert capabilities["tasks"] == {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
    tools = wire.request("tools/list")["result"]["tools"]
    marked = {tool["name"] for tool in tools if tool.get("execution", {}).get("taskSupport") == "optional"}
    assert marked == COMMANDS
    (tmp_path / "older").mkdir()
    older = Wire(tmp_path / "older", "2025-06-18")
    try:
        assert "tasks" not in older.initialized["result"]["capabilities"]
        listed = older.request("tools/list")["result"]["tools"]
        assert all("execution" not in tool for tool in listed)
        unknown = older.request("tasks/get", {"taskId": "0" * 32})
        assert unknown["error"]["code"] == -32601  # tasks/* do not exist before 2025-11-25
    finally:
        older.close()


def test_a_task_runs_to_its_result_and_is_listed(wire: Wire) -> None:
    created = task_call(wire, "shell_exec", {"command": "sleep 0.5; echo done-here"})["result"]["task"]
    assert created["status"] == "working" and created["pollInterval"] == 2000
    result = wire.request("tasks/result", {"taskId": created["taskId"]})["result"]  # blocks until the end
    assert result["structuredContent"]["output"] == "done-here\n"
    assert result["_meta"]["io.modelcontextprotocol/related-task"] == {"taskId": created["taskId"]}
    got = wire.request("tasks/get", {"taskId": created["taskId"]})["result"]
    assert (got["status"], got["statusMessage"]) == ("completed", "ended: ok, exit 0")
    listed = wire.request("tasks/list")["result"]["tasks"]
    assert [task["taskId"] for task in listed] == [created["taskId"]]
    again = wire.request("tasks/cancel", {"taskId": created["taskId"]})
    assert again["error"]["code"] == -32602  # it has ended: nothing to cancel
    assert "terminal" in again["error"]["message"]
    paged = wire.request("tasks/list", {"cursor": "abc"})
    assert paged["error"]["code"] == -32602


def test_refusals_are_json_rpc_errors_naming_why(wire: Wire, tmp_path: Path) -> None:
    invalid = task_call(wire, "shell_exec", {"command": "true", "yield_after": -1})
    assert invalid["error"]["code"] == -32602
    assert invalid["error"]["data"]["argument"] == "yield_after"
    unknown = wire.request("tasks/get", {"taskId": "f" * 32})
    assert unknown["error"]["code"] == -32602
    missing = wire.request("tasks/get", {})
    assert missing["error"]["code"] == -32602
    not_a_task_tool = task_call(wire, "server_info", {})["result"]  # processed normally
    assert not_a_task_tool["structuredContent"]["tasks"] == ["2026-07-28", "2025-11-25"]
    records = read_audit(tmp_path / "audit.jsonl")
    assert any(r["tool"] == "shell_exec" and r["error_kind"] == "invalid" for r in records)
    assert any(r["tool"] == "task_get" and r.get("error_kind") == "invalid" for r in records)


def test_a_task_that_fails_completes_with_is_error(wire: Wire) -> None:
    created = task_call(wire, "shell_exec", {"command": "/nonexistent/program", "use_shell": False})
    task = created["result"]["task"]
    result = wire.request("tasks/result", {"taskId": task["taskId"]})["result"]
    assert result["isError"] is True
    assert result["structuredContent"]["error"]["kind"] == "failed"
    assert wire.request("tasks/get", {"taskId": task["taskId"]})["result"]["status"] == "completed"
