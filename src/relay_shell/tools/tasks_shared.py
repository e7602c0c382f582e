"""What both MCP Tasks generations share: one store (the jobs), one way to read it (docs/adr/0017-jobs-and-tasks.md).

A task is a job with a task id. The Tasks layers (``tools/tasks.py`` for 2026-07-28,
``tools/tasks_legacy.py`` for 2025-11-25) mark a ``tools/call`` with a :class:`TaskIntent`;
``run_tool`` passes it to the pipeline as a ``Detach`` and hands the reply back, so the layer
learns whether the call became a job (only ever after admission and confirmation).

Every task request (get, result, list, update, cancel) is a call through the pipeline, with
an executor that reads the store (:func:`query_task`, :func:`list_tasks`): ownership is decided
there, and each request is audited like ``session_recv`` / ``session_kill``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from mcp.server.context import ServerRequestContext

from relay_shell.background import TASK_GENERATIONS, JobEnd
from relay_shell.errors import InvalidInput
from relay_shell.governance.call import Call, CallArguments, Identity, Outcome, Plan, Reply
from relay_shell.governance.ownership import require_owner
from relay_shell.services import Services
from relay_shell.sessions.jobs import Job, JobStore
from relay_shell.tools.adapter import raise_for_protocol
from relay_shell.tools.base import TASK_INTENT, TaskIntent, identity_of_request
from relay_shell.vocabulary import Tier

TASK_TOOLS = frozenset({"shell_exec", "shell_script", "ssh_exec", "ssh_fanout"})
"""The tools whose calls may become tasks (the command-running ones)."""

__all__ = [
    "TASK_GENERATIONS",
    "TASK_INTENT",
    "TASK_TOOLS",
    "TaskIntent",
    "TaskView",
    "list_tasks",
    "query_task",
    "view_of",
]
POLL_INTERVAL_MS = 2000
"""The polling interval the server suggests (no task notifications are sent)."""
MAX_TASK_ID = 128
RESULT_WAIT_MARGIN_S = 60.0
"""A blocking ``tasks/result`` waits for the job's end: its own timeout plus this margin at most."""

TaskStatus = Literal["working", "completed", "failed", "cancelled"]


@dataclass(frozen=True)
class TaskView:
    """One task as both generations report it."""

    task_id: str
    status: TaskStatus
    status_message: str
    created_at: datetime
    last_updated_at: datetime
    ttl_ms: int
    final: Reply | None
    end: JobEnd | None


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, as task timestamps are written."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def view_of(jobs: JobStore[Reply], job: Job[Reply]) -> TaskView:
    """The task behind ``job`` as it stands now."""
    assert job.task_id is not None
    ttl_ms = round(jobs.expires_in(job) * 1000)
    updated = job.ended_at_wall or job.created_at
    end = job.end
    if end is None:
        status: TaskStatus = "working"
        message = f"running {job.meta.label[:120]}"
    elif end.outcome == "cancelled":
        status, message = "cancelled", "the task was cancelled; its processes were killed"
    elif job.final is None:
        status, message = "failed", end.message or "the task ended without a result"
    else:
        status = "completed"
        message = f"ended: {end.outcome}" + (f", exit {end.exit_code}" if end.exit_code is not None else "")
    return TaskView(job.task_id, status, message, job.created_at, updated, ttl_ms, job.final, end)


# --- the task requests, as calls through the pipeline ------------------------------------------------

TaskAction = Literal["get", "result", "update", "cancel"]


@dataclass
class TaskQuery:
    """One request about one task; the executor leaves what it found in ``found``."""

    jobs: JobStore[Reply]
    task_id: str
    action: TaskAction
    found: TaskView | None = None


async def execute_task_query(query: TaskQuery, call: Call) -> Outcome:
    """Find the caller's task; ``cancel`` stops its job, ``result`` waits (bounded) for its end.

    Raises:
        InvalidInput: no such task (unknown or expired): ``-32602`` on the wire.
        PolicyDenied: the task belongs to another principal.
    """
    job = query.jobs.find_task(query.task_id)
    if job is None:
        raise InvalidInput("taskId", f"no task {query.task_id[:MAX_TASK_ID]!r} (unknown or expired)")
    require_owner(job.meta.owner, call.identity, f"task {query.task_id}", call.tier)
    if query.action == "cancel":
        await query.jobs.stop(job)
    elif query.action == "result":
        await query.jobs.wait_end(job, (job.meta.timeout_s or 0.0) + RESULT_WAIT_MARGIN_S)
    view = view_of(query.jobs, job)
    if view.final is not None and query.action in ("get", "result"):
        query.jobs.mark_read(job)  # its end has been delivered: it no longer holds a place
    query.found = view
    return Outcome(
        text=f"task {view.task_id} ({job.job_id}): {view.status}",
        data={"task_id": view.task_id, "job_id": job.job_id, "status": view.status},
        audit_extra={"job_id": job.job_id, "task_status": view.status},
    )


_TIERS: dict[TaskAction, Tier] = {
    "get": Tier.READ_ONLY,
    "result": Tier.READ_ONLY,
    "update": Tier.READ_ONLY,
    "cancel": Tier.REVERSIBLE,
}


async def query_task(
    ctx: ServerRequestContext[Any, Any], services: Services, action: TaskAction, task_id: str
) -> TaskView:
    """Run one task request through the pipeline (audited as ``task_<action>``).

    Raises:
        MCPError: ``-32602`` for an unknown task, ``-32603`` when refused (another principal's).
    """
    query = TaskQuery(services.jobs, task_id, action)

    def plan() -> Plan[TaskQuery]:
        if not isinstance(task_id, str) or not task_id or len(task_id) > MAX_TASK_ID:
            raise InvalidInput("taskId", f"must be a task id of 1 to {MAX_TASK_ID} characters")
        return Plan(execute_task_query, query, tier=_TIERS[action])

    result = await services.pipeline.run(
        f"task_{action}", CallArguments.same({"taskId": task_id}), identity_of_request(ctx), plan
    )
    raise_for_protocol(result, taskId=task_id)
    assert query.found is not None, "a task request that succeeded found its task"
    return query.found


@dataclass
class TaskListing:
    """The caller's own tasks, newest last; the executor fills ``found``."""

    jobs: JobStore[Reply]
    found: list[TaskView] = field(default_factory=list)


async def execute_task_list(listing: TaskListing, call: Call) -> Outcome:
    """Only the caller's own tasks (an admin too lists only its own: ids are bearer-like)."""
    mine = [job for job in listing.jobs.jobs() if job.task_id is not None and _owns(job, call.identity)]
    listing.found = [view_of(listing.jobs, job) for job in mine]
    return Outcome(text=f"{len(mine)} task(s)", data={"count": len(mine)})


def _owns(job: Job[Reply], identity: Identity) -> bool:
    return job.meta.owner == identity.subject


async def list_tasks(ctx: ServerRequestContext[Any, Any], services: Services) -> Sequence[TaskView]:
    """The caller's own tasks, through the pipeline (audited as ``task_list``)."""
    listing = TaskListing(services.jobs)
    result = await services.pipeline.run(
        "task_list",
        CallArguments.same({}),
        identity_of_request(ctx),
        lambda: Plan(execute_task_list, listing, tier=Tier.READ_ONLY),
    )
    raise_for_protocol(result)
    return listing.found
