"""shell_exec and shell_script: one-shot local commands (docs/tools.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult
from pydantic import Field

from relay_shell.governance.bounds import Clamped, clamp_output, clamp_timeout, yield_after_seconds
from relay_shell.governance.call import Background, Call, Outcome, Plan
from relay_shell.guidance import tool_description
from relay_shell.local.commands import PreparedCommand, prepare_exec, prepare_script
from relay_shell.local.containment import ContainmentService
from relay_shell.local.runner import run_process
from relay_shell.services import Services
from relay_shell.tools.base import RUNS_COMMANDS, ConfirmToken, YieldAfter, run_tool
from relay_shell.tools.models import ExecResult
from relay_shell.tools.shape import bound_notes, exec_outcome
from relay_shell.vocabulary import Tier

Timeout = Annotated[
    float | None,
    Field(description="Seconds"),
]
MaxOutput = Annotated[
    int | None,
    Field(description="Output budget in bytes"),
]
Cwd = Annotated[str, Field(max_length=4096)]
Env = Annotated[
    dict[str, str | None] | None,
    Field(description="null unsets a variable"),
]


@dataclass(frozen=True)
class ShellExec:
    """shell_exec's arguments."""

    command: str
    timeout: float | None
    max_output: int | None
    cwd: str
    stdin: str
    env: dict[str, str | None] | None
    merge_stderr: bool
    use_shell: bool
    yield_after: float | None = None


@dataclass(frozen=True)
class ShellScript:
    """shell_script's arguments."""

    script: str
    interpreter: Literal["bash", "sh", "python"]
    strict: bool
    timeout: float | None
    max_output: int | None
    cwd: str
    env: dict[str, str | None] | None
    merge_stderr: bool
    yield_after: float | None = None


@dataclass(frozen=True)
class LocalRun:
    """A validated local command: what to run, its deadline, its output budget, where it is
    contained, when it yields."""

    prepared: PreparedCommand
    timeout: Clamped[float]
    budget: Clamped[int]
    containment: ContainmentService
    yield_after: float | None


async def execute_local(run: LocalRun, call: Call) -> Outcome:
    """Run the command to its end (or its deadline) in a containment of its own and shape its report.

    The classifier's ``exec_env`` (for a tier-0 ``git``: configuration that runs code switched
    off) is applied over the command's environment. Whatever the command left running is
    killed when it exits (the report counts it).
    """

    async def progress(elapsed: float, produced: int) -> None:
        await call.report(elapsed, None, f"{elapsed:.0f} s elapsed, {produced} bytes of output")

    async with run.containment.contain(call.tool) as contained:
        overlay = call.analysis.exec_env if call.analysis is not None else {}
        report = await run_process(
            run.prepared.with_overlay(overlay),
            timeout_s=run.timeout.value,
            budget=run.budget.value,
            contained=contained,
            on_progress=progress,
            tap=call.tap,
        )
    return exec_outcome(report, run.timeout.value)


def _local_plan(run: LocalRun, label: str, summary: str) -> Plan[LocalRun]:
    split = not run.prepared.spec.merge_stderr
    return Plan(
        execute_local,
        run,
        text=run.prepared.probe,
        call=run.prepared.call,
        min_tier=Tier.READ_ONLY,
        timeout_s=run.timeout.value,
        notes=bound_notes(run.timeout, run.budget),
        confirm_summary=summary,
        background=Background(run.yield_after, label[:200], None, split, run.budget.value),
    )


def _bounded(
    prepared: PreparedCommand,
    timeout: float | None,
    max_output: int | None,
    yield_after: float | None,
    svc: Services,
) -> LocalRun:
    """``prepared`` with its deadline, output budget and yield point clamped by the settings."""
    return LocalRun(
        prepared,
        clamp_timeout(timeout, svc.settings),
        clamp_output(max_output, svc.settings),
        svc.containment,
        yield_after_seconds(yield_after, svc.settings),
    )


def plan_shell_exec(request: ShellExec, svc: Services) -> Plan[LocalRun]:
    prepared = prepare_exec(
        request.command,
        stdin=request.stdin,
        env=request.env,
        cwd=request.cwd,
        use_shell=request.use_shell,
        merge_stderr=request.merge_stderr,
    )
    run = _bounded(prepared, request.timeout, request.max_output, request.yield_after, svc)
    return _local_plan(run, request.command, f"run `{request.command[:300]}` on this host")


def plan_shell_script(request: ShellScript, svc: Services) -> Plan[LocalRun]:
    prepared = prepare_script(
        request.script,
        interpreter=request.interpreter,
        strict=request.strict,
        env=request.env,
        cwd=request.cwd,
        merge_stderr=request.merge_stderr,
    )
    run = _bounded(prepared, request.timeout, request.max_output, request.yield_after, svc)
    first_line = request.script.strip().splitlines()[0] if request.script.strip() else ""
    return _local_plan(
        run,
        f"{request.interpreter} script: {first_line}",
        f"run a {request.interpreter} script on this host: {request.script[:300]}",
    )


async def shell_exec(
    ctx: Context,
    command: Annotated[str, Field(max_length=1_000_000)],
    timeout: Timeout = None,
    max_output: MaxOutput = None,
    cwd: Cwd = "",
    stdin: str = "",
    env: Env = None,
    merge_stderr: Annotated[bool, Field(description="false: separate stdout and stderr")] = True,
    use_shell: bool = True,
    yield_after: YieldAfter = None,
    confirm_token: ConfirmToken = "",
) -> Annotated[CallToolResult, ExecResult]:
    request = ShellExec(command, timeout, max_output, cwd, stdin, env, merge_stderr, use_shell, yield_after)
    return await run_tool(ctx, "shell_exec", plan_shell_exec, request)


async def shell_script(
    ctx: Context,
    script: Annotated[str, Field(max_length=1_000_000)],
    interpreter: Literal["bash", "sh", "python"] = "bash",
    strict: bool = True,
    timeout: Timeout = None,
    max_output: MaxOutput = None,
    cwd: Cwd = "",
    env: Env = None,
    merge_stderr: Annotated[bool, Field(description="false: separate stdout and stderr")] = True,
    yield_after: YieldAfter = None,
    confirm_token: ConfirmToken = "",
) -> Annotated[CallToolResult, ExecResult]:
    request = ShellScript(
        script, interpreter, strict, timeout, max_output, cwd, env, merge_stderr, yield_after
    )
    return await run_tool(ctx, "shell_script", plan_shell_script, request)


def register(server: MCPServer) -> None:
    server.add_tool(shell_exec, description=tool_description("shell_exec"), annotations=RUNS_COMMANDS)
    server.add_tool(shell_script, description=tool_description("shell_script"), annotations=RUNS_COMMANDS)
