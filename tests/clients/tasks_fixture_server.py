"""A test-only relay-shell with the fixture tools the conformance suite's Tasks scenarios call.

The fixtures are ordinary relay-shell tools (a typed request, a planner, an executor through
``run_tool`` and the pipeline) so the scenarios exercise the real Tasks extension, job store
and audit: ``greet`` (tier 0, never a task), ``slow_compute`` (sleeps ``seconds``, may become a
task), ``failing_job`` (a tool error after a second) and ``protocol_error_job`` (an unexpected
exception in its executor). Used by ``tests/e2e/test_tasks_conformance.py``:

    .venv/bin/python -m tests.clients.tasks_fixture_server --port 8123 --state /tmp/x
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import uvicorn
from mcp.server.mcpserver import Context
from mcp_types import CallToolResult
from pydantic import Field

from relay_shell.app import build_server
from relay_shell.config import load_settings
from relay_shell.errors import ExecFailed
from relay_shell.governance.call import Background, Call, Outcome, Plan
from relay_shell.http.serve import build_http_app
from relay_shell.services import Services
from relay_shell.tools.base import run_tool
from relay_shell.tools.tasks_shared import TASK_TOOLS
from relay_shell.vocabulary import Tier

FIXTURE_TASK_TOOLS = frozenset({"slow_compute", "failing_job", "protocol_error_job"})
YIELD_AFTER_S = 0.3


@dataclass(frozen=True)
class Greeting:
    name: str


async def execute_greet(greeting: Greeting, call: Call) -> Outcome:
    return Outcome(text=f"Hello, {greeting.name}!")


def plan_greet(request: Greeting, svc: Services) -> Plan[Greeting]:
    return Plan(execute_greet, request, tier=Tier.READ_ONLY)


async def greet(ctx: Context, name: Annotated[str, Field(max_length=200)] = "World") -> CallToolResult:
    """Say hello (sync only)."""
    return await run_tool(ctx, "greet", plan_greet, Greeting(name))


@dataclass(frozen=True)
class Job:
    kind: str
    seconds: float
    label: str


async def execute_job(job: Job, call: Call) -> Outcome:
    await asyncio.sleep(job.seconds)
    if job.kind == "failing":
        raise ExecFailed("failing_job failed, as it always does")
    if job.kind == "protocol":
        raise RuntimeError("protocol_error_job broke inside its executor")
    return Outcome(
        text=f"computed {job.label} after {job.seconds:g} s", data={"label": job.label}, exit_code=0
    )


def plan_job(request: Job, svc: Services) -> Plan[Job]:
    background = Background(YIELD_AFTER_S, f"{request.kind} {request.label}", None, False, 4096)
    return Plan(
        execute_job, request, tier=Tier.REVERSIBLE, timeout_s=request.seconds + 30.0, background=background
    )


async def slow_compute(
    ctx: Context,
    seconds: Annotated[float, Field(ge=0, le=300)] = 1.0,
    label: Annotated[str, Field(max_length=200)] = "",
) -> CallToolResult:
    """Sleep ``seconds`` then answer (a task when it outlasts yield_after)."""
    return await run_tool(ctx, "slow_compute", plan_job, Job("slow", seconds, label))


async def failing_job(ctx: Context) -> CallToolResult:
    """A tool error after about a second."""
    return await run_tool(ctx, "failing_job", plan_job, Job("failing", 1.0, "failing"))


async def protocol_error_job(ctx: Context) -> CallToolResult:
    """An unexpected exception in the executor after about a second."""
    return await run_tool(ctx, "protocol_error_job", plan_job, Job("protocol", 1.0, "protocol"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", type=Path, required=True)
    args = parser.parse_args()
    state: Path = args.state
    settings = load_settings(
        transport="http", http_port=args.port, audit_path=state / "audit.jsonl",
        ssh_config=state / "ssh_config", ssh_known_hosts_file=state / "known_hosts",
    )  # fmt: skip
    server = build_server(settings, task_tools=TASK_TOOLS | FIXTURE_TASK_TOOLS)
    for tool in (greet, slow_compute, failing_job, protocol_error_job):
        server.add_tool(tool, description=tool.__doc__)
    for tool in server._tool_manager.list_tools():
        tool.parameters["additionalProperties"] = False
    uvicorn.run(build_http_app(server), host="127.0.0.1", port=args.port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()
