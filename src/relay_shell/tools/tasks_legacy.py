"""MCP Tasks, protocol 2025-11-25 (experimental core tasks), from the same job store (docs/adr/0017-jobs-and-tasks.md).

A ``ServerMiddleware`` (``MCPServer(middleware=...)``), because the SDK validates a
2025-11-25 ``tools/call`` result as a ``CallToolResult`` after any interceptor, so only a
layer above that validation can answer ``{task: ...}``. On 2025-11-25 connections it:

- adds ``capabilities.tasks`` (list, cancel, tool calls) to the ``initialize`` result;
- marks the command-running tools ``execution.taskSupport: "optional"`` in ``tools/list``;
- answers a ``tools/call`` carrying ``task`` with a ``CreateTaskResult``: the call detaches
  as soon as it executes (after admission and confirmation, which may ask the human through
  ``elicitation/create`` first). A call refused before it executed answers a JSON-RPC
  error carrying the refusal (its ``kind``, ``tier``, ``rule``... in ``data``); a call that
  could not detach (``RELAY_SHELL_MAX_JOBS``) ran to its end and answers its plain result;
- serves ``tasks/get``, ``tasks/result`` (waits for the end, bounded by the job's timeout),
  ``tasks/list`` (the caller's own) and ``tasks/cancel``.

``tasks/get`` and ``tasks/cancel`` are also 2026-07-28 names (``tools/tasks.py``): the
middleware answers them only on 2025-11-25 connections and lets the rest through.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS
from mcp_types.methods import serialize_server_result

from relay_shell.services import Services
from relay_shell.tools.adapter import protocol_error, tool_result
from relay_shell.tools.tasks_shared import (
    POLL_INTERVAL_MS,
    TASK_INTENT,
    TASK_TOOLS,
    TaskIntent,
    TaskView,
    iso,
    list_tasks,
    query_task,
)
from relay_shell.vocabulary import Tier

LEGACY = "2025-11-25"
RELATED_TASK = "io.modelcontextprotocol/related-task"
TASKS_CAPABILITY: dict[str, Any] = {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}

type Handler = Callable[[ServerRequestContext[Any, Any]], Awaitable[HandlerResult]]


class LegacyTasks:
    """The 2025-11-25 core tasks as a middleware over the job store."""

    def __init__(self, services: Services, tools: frozenset[str] = TASK_TOOLS) -> None:
        self._services = services
        self._tools = tools
        self._methods: dict[str, Handler] = {
            "tasks/get": self._get,
            "tasks/result": self._result,
            "tasks/list": self._list,
            "tasks/cancel": self._cancel,
        }

    def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> Awaitable[HandlerResult]:
        """What answers the message: the rest of the chain's own awaitable for a message that is
        not a task request (no await layer here), else this middleware's coroutine for it."""
        method = ctx.method
        if method == "initialize":
            return self._initialize(ctx, call_next)
        if ctx.protocol_version != LEGACY or ctx.request_id is None or ctx.session.client_params is None:
            return call_next(ctx)  # other versions, notifications, before the handshake
        if method == "tools/list":
            return self._tools_list(ctx, call_next)
        if method == "tools/call":
            params = ctx.params or {}
            name = params.get("name")
            if isinstance(params.get("task"), Mapping) and isinstance(name, str) and name in self._tools:
                return self._call(ctx, call_next)
            return call_next(ctx)  # a plain call, or a tool without task support: processed normally
        handler = self._methods.get(method)
        return handler(ctx) if handler is not None else call_next(ctx)

    @staticmethod
    async def _initialize(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        return with_tasks_capability(await call_next(ctx))

    async def _tools_list(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        return with_task_support(await call_next(ctx), self._tools)

    async def _call(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """A task-augmented call of a tool that may become a task."""
        intent = TaskIntent(at_once=True)
        reset = TASK_INTENT.set(intent)
        try:
            result = await call_next(ctx)
        finally:
            TASK_INTENT.reset(reset)
        reply = intent.reply
        ticket = None if reply is None else reply.job
        if ticket is not None and ticket.task_id is not None:
            stamp = iso(ticket.created_at)
            timeout = reply.data.get("timeout_s") if reply is not None else None
            ttl_s = (
                float(timeout) if isinstance(timeout, int | float) else 0.0
            ) + self._services.jobs.retention_s
            task = {
                "taskId": ticket.task_id, "status": "working", "statusMessage": f"running as {ticket.job_id}",
                "createdAt": stamp, "lastUpdatedAt": stamp, "ttl": round(ttl_s * 1000),
                "pollInterval": POLL_INTERVAL_MS,
            }  # fmt: skip
            return {"task": task}
        if reply is not None and reply.error is not None:
            tier = reply.data.get("tier")
            raise protocol_error(reply.error, Tier(tier) if isinstance(tier, int) else None)
        return result  # ran inline: the job store was full (the result says so)

    async def _get(self, ctx: ServerRequestContext[Any, Any]) -> HandlerResult:
        return task_of(await query_task(ctx, self._services, "get", _task_id(ctx)))

    async def _result(self, ctx: ServerRequestContext[Any, Any]) -> HandlerResult:
        task_id = _task_id(ctx)
        view = await query_task(ctx, self._services, "result", task_id)
        if view.final is None:
            raise MCPError(code=INTERNAL_ERROR, message=f"task {task_id} has no result yet ({view.status})")
        result = tool_result(view.final, None).model_dump(by_alias=True, mode="json", exclude_none=True)
        wire = serialize_server_result("tools/call", LEGACY, result)
        wire["_meta"] = {**wire.get("_meta", {}), RELATED_TASK: {"taskId": task_id}}
        return wire

    async def _list(self, ctx: ServerRequestContext[Any, Any]) -> HandlerResult:
        if (ctx.params or {}).get("cursor") is not None:
            raise MCPError(code=INVALID_PARAMS, message="invalid cursor: tasks/list answers in one page")
        return {"tasks": [task_of(view) for view in await list_tasks(ctx, self._services)]}

    async def _cancel(self, ctx: ServerRequestContext[Any, Any]) -> HandlerResult:
        task_id = _task_id(ctx)
        view = await query_task(ctx, self._services, "cancel", task_id)
        if view.status != "cancelled":
            raise MCPError(
                code=INVALID_PARAMS, message=f"Cannot cancel task: already in terminal status '{view.status}'"
            )
        return task_of(view)


def _task_id(ctx: ServerRequestContext[Any, Any]) -> str:
    task_id = (ctx.params or {}).get("taskId")
    if not isinstance(task_id, str):
        raise MCPError(code=INVALID_PARAMS, message="taskId: a task id (string) is required")
    return task_id


def task_of(view: TaskView) -> dict[str, Any]:
    """A 2025-11-25 ``Task``."""
    return {
        "taskId": view.task_id, "status": view.status, "statusMessage": view.status_message,
        "createdAt": iso(view.created_at), "lastUpdatedAt": iso(view.last_updated_at), "ttl": view.ttl_ms,
        "pollInterval": POLL_INTERVAL_MS,
    }  # fmt: skip


def with_tasks_capability(result: HandlerResult) -> HandlerResult:
    """The ``initialize`` result of a 2025-11-25 session, with ``capabilities.tasks``."""
    if isinstance(result, dict) and result.get("protocolVersion") == LEGACY:
        capabilities = result.get("capabilities")
        if isinstance(capabilities, dict):
            result["capabilities"] = {**capabilities, "tasks": TASKS_CAPABILITY}
    return result


def with_task_support(result: HandlerResult, tools: frozenset[str]) -> HandlerResult:
    """``tools/list`` with ``execution.taskSupport: "optional"`` on the tools that may become tasks."""
    if isinstance(result, dict) and isinstance(result.get("tools"), list):
        for tool in result["tools"]:
            if isinstance(tool, dict) and tool.get("name") in tools:
                tool["execution"] = {**tool.get("execution", {}), "taskSupport": "optional"}
    return result
