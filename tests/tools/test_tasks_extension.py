"""The Tasks extension (2026-07-28) through the Python SDK client, in process.

The Python client has no Tasks API; a test-only client extension claims ``resultType: "task"``
so ``call_tool`` hands back the ``CreateTaskResult``, and the task methods are sent as raw
requests. The official TypeScript clients are driven in ``tests/e2e/test_tasks_clients.py``.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import pytest
from mcp import Client
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim, advertise
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CallToolResult,
    CancelTaskRequest,
    CancelTaskRequestParams,
    GetTaskRequest,
    GetTaskRequestParams,
    Request,
    RequestParams,
    Result,
)
from pydantic import TypeAdapter

from relay_shell.app import RelayServer, build_server
from relay_shell.config import Settings
from tests.conftest import connected, pids_with_marker, principal, read_audit
from tests.tools.test_jobs import marker_duration, wait_gone

RAW: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])
ISO = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")


class Created(Result):
    """What a call that became a task answers."""

    result_type: Literal["task"] = "task"
    task_id: str
    status: str
    created_at: str
    last_updated_at: str
    ttl_ms: int | None
    poll_interval_ms: int | None = None
    status_message: str | None = None


class Handed(Exception):
    """Carries the CreateTaskResult out of call_tool so the test drives the task itself."""

    def __init__(self, created: Created) -> None:
        super().__init__(created.task_id)
        self.created = created


async def hand_over(created: Created, ctx: ClaimContext) -> CallToolResult:
    raise Handed(created)


class Tasks(ClientExtension):
    identifier = "io.modelcontextprotocol/tasks"

    def claims(self) -> list[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=Created, resolve=hand_over)]


class UpdateTaskParams(RequestParams):
    task_id: str
    input_responses: dict[str, Any]


class UpdateTaskRequest(Request[UpdateTaskParams, Literal["tasks/update"]]):
    method: Literal["tasks/update"] = "tasks/update"
    params: UpdateTaskParams


async def start_task(client: Client, arguments: dict[str, Any]) -> Created:
    with pytest.raises(Handed) as handed:
        await client.call_tool("shell_exec", arguments)
    return handed.value.created


async def get_task(client: Client, task_id: str) -> dict[str, Any]:
    request = GetTaskRequest(params=GetTaskRequestParams(task_id=task_id))
    return await client.session.send_request(request, RAW)


async def settle(client: Client, created: Created) -> dict[str, Any]:
    """Poll tasks/get until the task leaves ``working``; between polls, wait on its job's end
    (a session_recv that returns at the end or after 2 s) instead of sleeping."""
    job = str(created.status_message).split()[-1]
    assert job.startswith("job-")
    deadline = time.monotonic() + 30
    while (task := await get_task(client, created.task_id))["status"] == "working":
        assert time.monotonic() < deadline, "the task never left working"
        await client.call_tool("session_recv", {"session_id": job, "timeout": 2, "until": "(?!)"})
    return task


@pytest.fixture
async def server(make_settings: Callable[..., Settings]) -> AsyncIterator[RelayServer]:
    built = build_server(make_settings())
    yield built
    await built.services.aclose()


@pytest.fixture
async def client(server: RelayServer) -> AsyncIterator[Client]:
    async with connected(server, extensions=[Tasks()]) as connected_client:
        yield connected_client


async def test_a_long_call_becomes_a_task_that_completes_with_the_direct_result(
    client: Client, server: RelayServer
) -> None:
    assert client.server_capabilities.extensions == {"io.modelcontextprotocol/tasks": {}}
    created = await start_task(client, {"command": "echo one; sleep 1; echo two", "yield_after": 0.2})
    assert re.fullmatch("[0-9a-f]{32}", created.task_id)
    assert created.status == "working"
    assert ISO.match(created.created_at) and created.created_at == created.last_updated_at
    assert created.ttl_ms == (60 + 600) * 1000  # the job's timeout plus the retention
    assert created.poll_interval_ms == 2000
    done = await settle(client, created)
    assert (done["status"], done["resultType"]) == ("completed", "complete")
    result = done["result"]
    assert (result["resultType"], result["isError"]) == ("complete", False)
    assert result["structuredContent"]["output"] == "one\ntwo\n"
    assert result["structuredContent"]["status"] == "done"
    assert done["ttlMs"] < created.ttl_ms  # once ended: its end plus the retention
    records = read_audit(server.services.settings.audit_path)
    assert [r["tool"] for r in records if r["tool"] in ("shell_exec", "job_end")] == ["shell_exec", "job_end"]


async def test_a_call_that_ends_in_time_answers_inline(client: Client) -> None:
    result = await client.call_tool("shell_exec", {"command": "echo fast", "yield_after": 5})
    assert result.structured_content is not None
    assert (result.structured_content["status"], result.structured_content["output"]) == ("done", "fast\n")
    info = await client.call_tool("server_info", {})  # not a command: never a task
    assert info.structured_content is not None
    assert info.structured_content["tasks"] == ["2026-07-28", "2025-11-25"]


async def test_a_tool_error_completes_with_is_error(client: Client) -> None:
    created = await start_task(client, {"command": "echo before; sleep 30", "yield_after": 0.2, "timeout": 1})
    done = await settle(client, created)
    assert done["status"] == "completed"  # failed is for protocol errors only
    assert done["result"]["isError"] is True
    assert done["result"]["structuredContent"]["error"]["kind"] == "timeout"


async def test_cancel_kills_the_task_and_get_reports_it(client: Client, server: RelayServer) -> None:
    duration = marker_duration()
    created = await start_task(client, {"command": f"sleep {duration}", "yield_after": 0.2})
    assert pids_with_marker(duration)
    update = UpdateTaskRequest(params=UpdateTaskParams(task_id=created.task_id, input_responses={"x": {}}))
    assert (await client.session.send_request(update, RAW))["resultType"] == "complete"
    cancel = CancelTaskRequest(params=CancelTaskRequestParams(task_id=created.task_id))
    assert (await client.session.send_request(cancel, RAW))["resultType"] == "complete"
    await wait_gone(duration)
    assert (await get_task(client, created.task_id))["status"] == "cancelled"
    end = next(r for r in read_audit(server.services.settings.audit_path) if r["tool"] == "job_end")
    assert end["outcome"] == "cancelled"


async def test_a_tier_0_command_becomes_a_task_too(client: Client, server: RelayServer) -> None:
    marker = marker_duration()
    created = await start_task(client, {"command": f"tail -s {marker} -f /dev/null", "yield_after": 0.2})
    assert (await get_task(client, created.task_id))["status"] == "working"
    assert pids_with_marker(marker)
    cancel = CancelTaskRequest(params=CancelTaskRequestParams(task_id=created.task_id))
    assert (await client.session.send_request(cancel, RAW))["resultType"] == "complete"
    await wait_gone(marker)
    records = read_audit(server.services.settings.audit_path)
    call = next(r for r in records if r["tool"] == "shell_exec")
    end = next(r for r in records if r["tool"] == "job_end")
    assert (call["tier"], call["outcome"]) == (0, "running")
    assert (end["call_id"], end["outcome"]) == (call["call_id"], "cancelled")


async def test_unknown_task_ids_are_invalid_params(client: Client, server: RelayServer) -> None:
    for task_id in ("0" * 32, "", "x" * 500):
        with pytest.raises(MCPError) as refused:
            await get_task(client, task_id)
        assert refused.value.error.code == -32602
    record = read_audit(server.services.settings.audit_path)[-1]
    assert (record["tool"], record["error_kind"]) == ("task_get", "invalid")


async def test_a_client_that_did_not_declare_the_extension_gets_no_task(server: RelayServer) -> None:
    async with connected(server) as plain:
        result = await plain.call_tool("shell_exec", {"command": "sleep 1", "yield_after": 0.2})
        assert result.structured_content is not None
        assert result.structured_content["status"] == "running"  # a job, as for any client
        with pytest.raises(MCPError) as refused:
            await get_task(plain, "0" * 32)
        assert refused.value.error.code == -32021


async def test_tasks_belong_to_their_principal(server: RelayServer) -> None:
    with principal("alice", "relay-shell:operate"):
        async with connected(server, extensions=[Tasks()]) as alice:
            created = await start_task(alice, {"command": "sleep 3", "yield_after": 0.2})
            with principal("bob", "relay-shell:operate"):
                async with connected(
                    server, extensions=[advertise("io.modelcontextprotocol/tasks", {})]
                ) as bob:
                    for send in (get_task, _cancel):
                        with pytest.raises(MCPError) as refused:
                            await send(bob, created.task_id)
                        assert refused.value.error.code == -32603
                        assert refused.value.error.data["kind"] == "denied"
            assert (await get_task(alice, created.task_id))["status"] == "working"
            await _cancel(alice, created.task_id)
    denied = [r for r in read_audit(server.services.settings.audit_path) if r["decision"] == "denied"]
    assert {(r["tool"], r["principal"], r["rule"]) for r in denied} == {
        ("task_get", "bob", "owner"),
        ("task_cancel", "bob", "owner"),
    }


async def _cancel(client: Client, task_id: str) -> dict[str, Any]:
    request = CancelTaskRequest(params=CancelTaskRequestParams(task_id=task_id))
    return await client.session.send_request(request, RAW)


async def test_a_full_store_answers_inline(make_settings: Callable[..., Settings]) -> None:
    server = build_server(make_settings(max_jobs=1))
    async with connected(server, extensions=[Tasks()]) as client:
        first = await start_task(client, {"command": "sleep 20", "yield_after": 0.2})
        inline = await client.call_tool("shell_exec", {"command": "sleep 0.5; echo here", "yield_after": 0.2})
        assert inline.structured_content is not None
        assert inline.structured_content["output"] == "here\n"
        assert any("RELAY_SHELL_MAX_JOBS" in note for note in inline.structured_content["notes"])
        await _cancel(client, first.task_id)
    await server.services.aclose()
