"""MCP Tasks with the official clients against the real ``relay-shell`` over stdio and HTTP.

- ``tests/clients/tasks_v2.mjs``: ``@modelcontextprotocol/ext-tasks`` on ``@modelcontextprotocol/client``
  2.x, protocol 2026-07-28 (the Tasks extension; the script supplies the ``rawDispatch``);
- ``tests/clients/tasks_v1.mjs``: the TypeScript SDK 1.x ``client.experimental.tasks``, protocol
  2025-11-25 (the experimental core tasks).

Each scenario runs on Node 22 from ``node_modules``; the scripts report on stdout (one JSON
object per line) and the test checks what they saw against processes on this host and the
audit file.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.components import NODE, ROOT, require_node
from tests.conftest import pids_with_marker, read_audit
from tests.http.test_http_e2e import RELAY, RelayProcess, running_relay, server_env

SCRIPTS = {
    "v2": ROOT / "tests" / "clients" / "tasks_v2.mjs",
    "v1": ROOT / "tests" / "clients" / "tasks_v1.mjs",
}
EVENT_DEADLINE_S = 60.0
GONE_DEADLINE_S = 10.0


@pytest.fixture(scope="module", autouse=True)
def _node_clients() -> None:
    """Node 22 and both client generations; a run without them fails naming ``npm ci``."""
    require_node(
        "@modelcontextprotocol/ext-tasks", "@modelcontextprotocol/client", "@modelcontextprotocol/sdk"
    )


@dataclass
class Endpoint:
    """Where the clients reach relay-shell, and where its audit goes.

    ``audit_offset`` is how many records the audit held before the test began: the HTTP
    server serves the whole module, and a test reads only the records of its own calls.
    """

    transport: str
    config: dict[str, Any]
    audit_path: Path
    audit_offset: int = 0

    def records(self) -> list[dict[str, Any]]:
        """The audit records written since the test began (see :func:`read_audit`)."""
        return read_audit(self.audit_path)[self.audit_offset :]


@pytest.fixture(scope="module")
def http_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    """One ``relay-shell`` over HTTP for every test of the module (started once, stopped with
    SIGTERM and exit code 0 checked at the end): no test depends on a fresh server's state,
    each reads its own audit records."""
    with running_relay(tmp_path_factory.mktemp("server"), RELAY_SHELL_CONFIRM_TIER3="elicit") as relay:
        yield relay


@pytest.fixture(params=["stdio", "http"])
def endpoint(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Endpoint]:
    if request.param == "stdio":
        state = tmp_path / "server"
        state.mkdir()
        env = server_env(state, RELAY_SHELL_CONFIRM_TIER3="elicit")
        config = {"transport": "stdio", "command": RELAY, "args": [], "env": env}
        yield Endpoint("stdio", config, state / "audit.jsonl")
        return
    relay: RelayProcess = request.getfixturevalue("http_relay")
    offset = len(read_audit(relay.audit_path))
    yield Endpoint("http", {"transport": "http", "url": relay.mcp_url}, relay.audit_path, offset)


class NodeClient:
    """One run of a client script: its JSON events on stdout, lines to its stdin."""

    def __init__(self, generation: str, config: dict[str, Any], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(NODE), str(SCRIPTS[generation]), json.dumps(config)],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(log_path.parent)},
            )

    def event(self) -> dict[str, Any]:
        """The next JSON line on stdout (fails on an error event, an early exit or the deadline)."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + EVENT_DEADLINE_S
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no event within {EVENT_DEADLINE_S} s\n{self.log()}"
            ready, _, _ = select.select([self.process.stdout], [], [], remaining)
            if not ready:
                continue
            line = self.process.stdout.readline()
            assert line, f"the client exited ({self.process.wait()}) without an event\n{self.log()}"
            event: dict[str, Any] = json.loads(line)
            assert event["event"] != "error", f"{event['error']}\n{self.log()}"
            return event

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{line}\n".encode())
        self.process.stdin.flush()

    def finish(self) -> None:
        assert self.process.wait(timeout=EVENT_DEADLINE_S) == 0, self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def node_client(generation: str, config: dict[str, Any], tmp_path: Path) -> Iterator[NodeClient]:
    client = NodeClient(generation, config, tmp_path / f"node-{generation}.log")
    try:
        yield client
    finally:
        client.close()


def wait_gone(marker: str) -> None:
    deadline = time.monotonic() + GONE_DEADLINE_S
    while pids_with_marker(marker):
        assert time.monotonic() < deadline, f"processes survived: {pids_with_marker(marker)}"
        time.sleep(0.05)


def wait_running(marker: str) -> None:
    deadline = time.monotonic() + GONE_DEADLINE_S
    while not pids_with_marker(marker):
        assert time.monotonic() < deadline, "the task's command never started"
        time.sleep(0.05)


def without_timing(result: dict[str, Any]) -> dict[str, Any]:
    """A CallToolResult without what differs between two runs of one command (duration, _meta)."""
    structured = {k: v for k, v in result["structuredContent"].items() if k != "duration_ms"}
    body = result["content"][0]["text"].split("\n", 1)[1]  # the header line carries the duration
    return {"structured": structured, "body": body, "isError": result.get("isError", False)}


def arguments(generation: str, command: str) -> dict[str, Any]:
    """2026-07-28: the server decides (it yields after yield_after); 2025-11-25: the client asks."""
    return {"command": command, "yield_after": 0.3} if generation == "v2" else {"command": command}


@pytest.mark.parametrize("generation", ["v2", "v1"])
def test_a_long_command_becomes_a_task_that_completes(
    generation: str, endpoint: Endpoint, tmp_path: Path
) -> None:
    command = "for i in 1 2 3 4; do echo $i; sleep 0.2; done"
    config = {**endpoint.config, "scenario": "complete", "tool": "shell_exec"}
    config["arguments"] = arguments(generation, command)
    with node_client(generation, config, tmp_path) as client:
        created = client.event()
        done = client.event()
        client.finish()
    assert created["event"] == "task" and len(created["taskId"]) == 32
    assert (done["taskId"], done["status"]) == (created["taskId"], "completed")
    assert done["result"]["structuredContent"]["output"] == "1\n2\n3\n4\n"
    assert without_timing(done["result"]) == without_timing(done["direct"])  # what a direct call gives
    if generation == "v2":
        assert (done["era"], done["kind"], done["extension"]) == ("modern", "task", {})
    else:
        assert done["capabilities"] == {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
        assert done["support"]["shell_exec"] == "optional"
        assert done["support"]["session_list"] is None
        assert {"taskId": created["taskId"], "status": "completed"} in done["listed"]
        assert done["fetched"]["status"] == "completed"
        related = done["result"]["_meta"]["io.modelcontextprotocol/related-task"]
        assert related == {"taskId": created["taskId"]}
    records = endpoint.records()
    call = next(r for r in records if r["tool"] == "shell_exec" and r["outcome"] == "running")
    end = next(r for r in records if r["tool"] == "job_end")
    assert (end["call_id"], end["job_id"], end["outcome"]) == (call["call_id"], call["job_id"], "ok")
    assert end["stream_sha256"] == done["result"]["structuredContent"]["stream_sha256"]
    polls = [r for r in records if r["tool"] == "task_get"]
    assert polls and all(
        r["args"] == {"taskId": created["taskId"]} and r["job_id"] == call["job_id"] for r in polls
    )


@pytest.mark.parametrize("generation", ["v2", "v1"])
def test_cancelling_a_task_kills_its_processes(generation: str, endpoint: Endpoint, tmp_path: Path) -> None:
    marker = f"300.{time.monotonic_ns() % 1_000_000_000:09d}"
    config = {**endpoint.config, "scenario": "cancel", "tool": "shell_exec"}
    config["arguments"] = arguments(generation, f"echo started; sleep {marker} & sleep {marker}")
    with node_client(generation, config, tmp_path) as client:
        created = client.event()
        assert created["event"] == "task"
        wait_running(marker)
        client.send("cancel")
        done = client.event()
        client.finish()
    wait_gone(marker)
    if generation == "v2":
        assert done["status"] == "cancelled"
    else:
        assert "cancel:cancelled" in done["statuses"]
        assert "cancelled" in done["error"]["message"]
        assert done["fetched"]["status"] == "cancelled"
    records = endpoint.records()
    call = next(r for r in records if r["tool"] == "shell_exec")
    end = next(r for r in records if r["tool"] == "job_end")
    assert (end["call_id"], end["outcome"], end["error_kind"]) == (call["call_id"], "cancelled", "cancelled")
    cancel = next(r for r in records if r["tool"] == "task_cancel")
    assert (cancel["outcome"], cancel["tier"], cancel["job_id"]) == ("ok", 1, call["job_id"])


@pytest.mark.parametrize("generation", ["v2", "v1"])
@pytest.mark.parametrize("answer", ["accept", "decline"])
def test_tier3_is_confirmed_before_the_task_exists(
    generation: str, answer: str, endpoint: Endpoint, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    (victim / "inside").mkdir(parents=True)
    config = {**endpoint.config, "scenario": "confirm", "tool": "shell_exec", "answer": answer}
    config["arguments"] = arguments(generation, f"sleep 0.6; rm -rf {victim}")
    with node_client(generation, config, tmp_path) as client:
        first = client.event()
        done = first if first["event"] == "done" else client.event()
        client.finish()
    records = endpoint.records()
    asked = done["inputRequests"] if generation == "v2" else done["elicitations"]
    assert len(asked) == 1  # the human was asked once, before anything ran
    if answer == "accept":
        assert first["event"] == "task"
        assert done["status"] == "completed"
        assert not victim.exists()
        running = next(r for r in records if r["outcome"] == "running")
        assert (running["tier"], running["confirmation"]) == (3, "elicit:accept")
        assert next(r for r in records if r["tool"] == "job_end")["outcome"] == "ok"
        return
    assert done["taskId"] is None  # no task was made
    assert victim.exists()  # and nothing ran
    if generation == "v2":
        error = done["result"]["structuredContent"]["error"]
        assert (done["kind"], done["result"]["isError"], error["kind"]) == (
            "immediate",
            True,
            "confirm_required",
        )
    else:
        assert done["error"]["code"] == -32603
        assert done["error"]["data"]["kind"] == "confirm_required"
    decisions = {r["decision"] for r in records if r["tool"] == "shell_exec"}
    assert decisions == {"confirm_required"}  # 2026-07-28 asks within the result, then refuses the retry
    assert not [r for r in records if r["tool"] == "job_end"]
