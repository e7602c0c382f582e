"""shell_exec and shell_script: one-shot local commands (SPEC §5.1)."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult
from pydantic import Field

from relay_shell.capture import capture_fields, render_capture
from relay_shell.governance.bounds import Clamped, clamp_output, clamp_timeout
from relay_shell.governance.pipeline import Call, Outcome, Plan
from relay_shell.guidance import tool_description
from relay_shell.local.commands import PreparedCommand, prepare_exec, prepare_script
from relay_shell.local.runner import ProcessResult, run_process
from relay_shell.tools.base import RUNS_COMMANDS, ConfirmToken, run_tool, services
from relay_shell.tools.models import ExecResult

Timeout = Annotated[
    float | None,
    Field(description="Seconds before the process group is killed; default and ceiling from config"),
]
MaxOutput = Annotated[
    int | None,
    Field(description="Output budget in bytes (head + tail kept when exceeded); clamped to config"),
]
Cwd = Annotated[str, Field(description="Working directory; empty = the server's", max_length=4096)]
Env = Annotated[
    dict[str, str | None] | None,
    Field(description="Variables overlaid on the server environment; null unsets one"),
]


def timeout_notes(timeout: Clamped[float]) -> list[str]:
    """The note a clamped timeout adds to the result; none when it was not clamped."""
    if not timeout.clamped:
        return []
    return [f"timeout {timeout.requested:g} s clamped to {timeout.value:g} s (RELAY_SHELL_MAX_TIMEOUT)"]


def bound_notes(timeout: Clamped[float], budget: Clamped[int]) -> list[str]:
    """The notes of a clamped timeout and a clamped output budget, in that order."""
    notes = timeout_notes(timeout)
    if budget.clamped:
        notes.append(f"max_output {budget.requested} clamped to {budget.value} bytes")
    return notes


def exec_outcome(result: ProcessResult, timeout_s: float) -> Outcome:
    """Shape a finished local process into text + structured fields."""
    fields = capture_fields(result.capture)
    header = f"exit {result.exit_code} · {result.duration_ms / 1000:.2f} s"
    if result.signal_name:
        header += f" · killed by {result.signal_name}"
    if fields["truncated"]:
        header += f" · truncated ({fields['output_bytes']} bytes total)"
    notes = ""
    if result.pipe_held:
        notes = (
            "\nnote: background processes kept the output pipe open; stopped reading when the command exited"
        )
    data = {
        **fields,
        "exit_code": result.exit_code,
        "signal": result.signal_name,
        "duration_ms": result.duration_ms,
        "timeout_s": timeout_s,
    }
    return Outcome(
        text=f"{header}\n{render_capture(result.capture)}{notes}",
        data=data,
        exit_code=result.exit_code,
        stream_sha256=result.capture.sha256,
        stream_len=result.capture.total,
        truncated=result.capture.truncated,
    )


def _plan(prepared: PreparedCommand, timeout: Clamped[float], budget: Clamped[int], summary: str) -> Plan:
    async def work(call: Call) -> Outcome:
        async def progress(elapsed: float, produced: int) -> None:
            await call.report(elapsed, None, f"{elapsed:.0f} s elapsed, {produced} bytes of output")

        overlay = call.analysis.exec_env if call.analysis is not None else {}
        result = await run_process(
            prepared.with_overlay(overlay), timeout_s=timeout.value, budget=budget.value, on_progress=progress
        )
        return exec_outcome(result, timeout.value)

    return Plan(
        work=work,
        text=prepared.probe,
        call=prepared.call,
        min_tier=0,
        timeout_s=timeout.value,
        notes=bound_notes(timeout, budget),
        confirm_summary=summary,
    )


async def shell_exec(
    ctx: Context,
    command: Annotated[str, Field(description="The command line", max_length=1_000_000)],
    timeout: Timeout = None,
    max_output: MaxOutput = None,
    cwd: Cwd = "",
    stdin: Annotated[str, Field(description="Text fed to the command's stdin (default /dev/null)")] = "",
    env: Env = None,
    merge_stderr: Annotated[bool, Field(description="false: separate stdout and stderr")] = True,
    use_shell: Annotated[
        bool, Field(description="false: split into words and exec directly, no shell")
    ] = True,
    confirm_token: ConfirmToken = "",
) -> Annotated[CallToolResult, ExecResult]:
    args = {
        "command": command,
        "timeout": timeout,
        "max_output": max_output,
        "cwd": cwd,
        "stdin": stdin,
        "env": env,
        "merge_stderr": merge_stderr,
        "use_shell": use_shell,
        "confirm_token": confirm_token,
    }

    def planner() -> Plan:
        settings = services(ctx).settings
        bounds = clamp_timeout(timeout, settings), clamp_output(max_output, settings)
        prepared = prepare_exec(
            command, stdin=stdin, env=env, cwd=cwd, use_shell=use_shell, merge_stderr=merge_stderr
        )
        return _plan(prepared, *bounds, summary=f"run `{command[:300]}` on this host")

    return await run_tool(ctx, "shell_exec", args, planner)


async def shell_script(
    ctx: Context,
    script: Annotated[str, Field(description="The script text, fed on stdin", max_length=1_000_000)],
    interpreter: Annotated[
        Literal["bash", "sh", "python"], Field(description="python = the server's own")
    ] = "bash",
    strict: Annotated[bool, Field(description="bash/sh: prepend set -euo pipefail (sh: set -eu)")] = True,
    timeout: Timeout = None,
    max_output: MaxOutput = None,
    cwd: Cwd = "",
    env: Env = None,
    merge_stderr: Annotated[bool, Field(description="false: separate stdout and stderr")] = True,
    confirm_token: ConfirmToken = "",
) -> Annotated[CallToolResult, ExecResult]:
    args = {
        "script": script,
        "interpreter": interpreter,
        "strict": strict,
        "timeout": timeout,
        "max_output": max_output,
        "cwd": cwd,
        "env": env,
        "merge_stderr": merge_stderr,
        "confirm_token": confirm_token,
    }

    def planner() -> Plan:
        settings = services(ctx).settings
        bounds = clamp_timeout(timeout, settings), clamp_output(max_output, settings)
        prepared = prepare_script(
            script, interpreter=interpreter, strict=strict, env=env, cwd=cwd, merge_stderr=merge_stderr
        )
        return _plan(prepared, *bounds, summary=f"run a {interpreter} script on this host: {script[:300]}")

    return await run_tool(ctx, "shell_script", args, planner)


def register(server: MCPServer) -> None:
    server.add_tool(shell_exec, description=tool_description("shell_exec"), annotations=RUNS_COMMANDS)
    server.add_tool(shell_script, description=tool_description("shell_script"), annotations=RUNS_COMMANDS)
