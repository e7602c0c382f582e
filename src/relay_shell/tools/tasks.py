"""MCP Tasks, protocol 2026-07-28: the ``io.modelcontextprotocol/tasks`` extension (docs/adr/0017-jobs-and-tasks.md).

Built on the SDK's ``Extension`` API: advertised in ``server/discover``, ``tasks/get``,
``tasks/update`` and ``tasks/cancel`` bound at 2026-07-28, and ``intercept_tool_call``.
Task creation is the server's decision: a command-running call from a client that declared
the extension on its request answers inline when it ends within ``yield_after``, else with
a ``CreateTaskResult`` (``resultType: "task"``) for the job it became. The job, and so the
task, is made by the pipeline's execute stage, after admission and tier-3 confirmation
(a confirmation travels as an ``InputRequiredResult`` the client retries: no task exists
until it is settled).

``tasks/get`` reports ``working``, then ``completed`` with the ``CallToolResult`` a direct
call would have given (a tool error too, with ``isError``), or ``cancelled`` after
``tasks/cancel``, which kills the job. Tasks never ask for input (``tasks/update`` is
acknowledged and ignored) and no task notifications are sent: clients poll.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver.server import require_client_extension
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_NAME_HEADER, decode_header_value
from mcp_types import (
    HEADER_MISMATCH,
    CallToolRequestParams,
    CancelTaskRequestParams,
    GetTaskRequestParams,
    RequestParams,
)
from mcp_types.methods import serialize_server_result
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import Field
from starlette.requests import Request

from relay_shell.background import JobTicket
from relay_shell.services import Services
from relay_shell.tools.adapter import tool_result
from relay_shell.tools.tasks_shared import (
    POLL_INTERVAL_MS,
    TASK_INTENT,
    TASK_TOOLS,
    TaskIntent,
    TaskView,
    iso,
    query_task,
)

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
MODERN = frozenset(MODERN_PROTOCOL_VERSIONS)


class UpdateTaskParams(RequestParams):
    """``tasks/update`` params: the task and the answers to its input requests (it never has any)."""

    task_id: str
    input_responses: dict[str, Any] = Field(default_factory=dict)


class TasksExtension(Extension):
    """The Tasks extension over the server's job store."""

    identifier = TASKS_EXTENSION

    def __init__(self, services: Services, tools: frozenset[str] = TASK_TOOLS) -> None:
        self._services = services
        self._tools = tools

    def methods(self) -> Sequence[MethodBinding]:
        return (
            MethodBinding("tasks/get", GetTaskRequestParams, self._get, protocol_versions=MODERN),
            MethodBinding("tasks/update", UpdateTaskParams, self._update, protocol_versions=MODERN),
            MethodBinding("tasks/cancel", CancelTaskRequestParams, self._cancel, protocol_versions=MODERN),
        )

    async def intercept_tool_call(
        self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        """A command-running call of a client that declared the extension may become a task."""
        if params.name not in self._tools or ctx.protocol_version not in MODERN or not declared(ctx):
            return await call_next(ctx)
        intent = TaskIntent(at_once=False)
        reset = TASK_INTENT.set(intent)
        try:
            result = await call_next(ctx)
        finally:
            TASK_INTENT.reset(reset)
        ticket = None if intent.reply is None else intent.reply.job
        if ticket is None or ticket.task_id is None:
            return result  # answered inline (ended in time, refused, asking for confirmation, store full)
        return created(ticket, self._services.jobs.retention_s, timeout_s(intent))

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: GetTaskRequestParams) -> dict[str, Any]:
        admit_task_request(ctx, params.task_id)
        return detailed(await query_task(ctx, self._services, "get", params.task_id))

    async def _update(self, ctx: ServerRequestContext[Any, Any], params: UpdateTaskParams) -> dict[str, Any]:
        admit_task_request(ctx, params.task_id)
        await query_task(ctx, self._services, "update", params.task_id)
        return {}  # no task of ours waits for input: responses to keys never issued are ignored

    async def _cancel(
        self, ctx: ServerRequestContext[Any, Any], params: CancelTaskRequestParams
    ) -> dict[str, Any]:
        admit_task_request(ctx, params.task_id)
        await query_task(ctx, self._services, "cancel", params.task_id)
        return {}


def admit_task_request(ctx: ServerRequestContext[Any, Any], task_id: str) -> None:
    """What a task request must carry before it is looked at: the extension on this request
    (else ``-32021``) and, over HTTP, an ``Mcp-Name`` routing header naming its task when it
    has one (else ``-32020``, HTTP 400; an absent header is tolerated).

    Raises:
        MCPError: the client did not declare the extension, or the header names another task.
    """
    require_client_extension(ctx, TASKS_EXTENSION)
    request = ctx.request
    if isinstance(request, Request):
        header = request.headers.get(MCP_NAME_HEADER)
        if header is not None and decode_header_value(header) != task_id:
            raise MCPError(
                code=HEADER_MISMATCH, message=f"{MCP_NAME_HEADER} header does not match params.taskId"
            )


def declared(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether the client declared the extension on this request (per-request capabilities)."""
    capabilities = ctx.session.client_capabilities
    return bool(capabilities and capabilities.extensions and TASKS_EXTENSION in capabilities.extensions)


def timeout_s(intent: TaskIntent) -> float:
    value = None if intent.reply is None else intent.reply.data.get("timeout_s")
    return float(value) if isinstance(value, int | float) else 0.0


def created(ticket: JobTicket, retention_s: float, timeout: float) -> dict[str, Any]:
    """The ``CreateTaskResult`` of a call that became a task."""
    assert ticket.task_id is not None
    stamp = iso(ticket.created_at)
    return {
        "resultType": "task",
        "taskId": ticket.task_id,
        "status": "working",
        "statusMessage": f"running as {ticket.job_id}",
        "createdAt": stamp,
        "lastUpdatedAt": stamp,
        "ttlMs": round((timeout + retention_s) * 1000),
        "pollIntervalMs": POLL_INTERVAL_MS,
    }


def detailed(view: TaskView) -> dict[str, Any]:
    """A ``DetailedTask`` for ``tasks/get``: the final result inlined once completed."""
    task: dict[str, Any] = {
        "resultType": "complete",
        "taskId": view.task_id,
        "status": view.status,
        "statusMessage": view.status_message,
        "createdAt": iso(view.created_at),
        "lastUpdatedAt": iso(view.last_updated_at),
        "ttlMs": view.ttl_ms,
        "pollIntervalMs": POLL_INTERVAL_MS,
    }
    if view.status == "completed" and view.final is not None:
        result = tool_result(view.final, None).model_dump(by_alias=True, mode="json", exclude_none=True)
        task["result"] = serialize_server_result("tools/call", "2026-07-28", result)
    elif view.status == "failed":
        task["error"] = {"code": -32603, "message": view.status_message}
    return task
