"""shell_spawn and the session_* tools: local and SSH PTYs alike, one registry (docs/tools.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult
from pydantic import Field

from relay_shell.errors import InvalidInput
from relay_shell.governance.bounds import Clamped, clamp_timeout
from relay_shell.governance.call import Call, Identity, Outcome, Plan, Reply
from relay_shell.guidance import tool_description
from relay_shell.linear_regex import LinearRegex, compile_caller_regex
from relay_shell.local.containment import ContainmentService
from relay_shell.local.environment import validate_cwd, validate_env_overlay
from relay_shell.policy.model import CallText
from relay_shell.policy.session import initial_state
from relay_shell.services import Services
from relay_shell.sessions import RecvResult, SessionRegistry
from relay_shell.sessions.jobs import JobStore
from relay_shell.sessions.terminal import parse_signal
from relay_shell.tools.base import (
    ADJUSTS,
    READ_ONLY,
    RUNS_COMMANDS,
    ConfirmToken,
    NoArguments,
    identity_of,
    run_tool,
)
from relay_shell.tools.jobs import (
    is_job,
    job_fields,
    job_line,
    kill_job,
    killed_fields,
    recv_job,
    refuse_input,
    visible_jobs,
)
from relay_shell.tools.models import (
    SessionKilled,
    SessionListResult,
    SessionRecvResult,
    SessionResized,
    SessionStarted,
)
from relay_shell.tools.owned import owned_session, visible_sessions
from relay_shell.tools.session_rows import (
    info_fields,
    session_line,
    session_outcome,
    session_targets,
    started_fields,
)
from relay_shell.tools.session_send import SessionId, session_send
from relay_shell.vocabulary import Tier

MAX_RECV_BYTES = 1_048_576
MAX_UNTIL = 1000
MAX_QUIET_MS = 600_000

Cols = Annotated[int, Field(ge=10, le=1000)]
Rows = Annotated[int, Field(ge=2, le=1000)]


def local_term(overlay: Mapping[str, str | None]) -> str:
    """The TERM a local PTY child gets (the overlay, else the server's, else the PTY default)."""
    from relay_shell.local.pty import PTY_DEFAULTS

    term = overlay["TERM"] if "TERM" in overlay else os.environ.get("TERM")
    return term or PTY_DEFAULTS["TERM"]


# --- shell_spawn ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShellSpawn:
    """shell_spawn's arguments."""

    command: str
    cols: int
    rows: int
    cwd: str
    env: dict[str, str | None] | None


@dataclass(frozen=True)
class LocalSpawn:
    """A validated local PTY to start, the registry it joins and where its processes are contained."""

    registry: SessionRegistry
    command: str
    cols: int
    rows: int
    cwd: Path | None
    env: dict[str, str | None]
    containment: ContainmentService


async def execute_shell_spawn(spawn: LocalSpawn, call: Call) -> Outcome:
    """Start the PTY in a containment of its own (closed with the session: whatever it started dies).

    The session's line model starts from the program it runs (the fixed line editor of the
    default bash, or a program that reads the terminal itself).
    """
    from relay_shell.local.pty import shell_argv, spawn_local_pty

    spawn.registry.ensure_capacity()
    contained = spawn.containment.open("session")
    try:
        transport = await spawn_local_pty(
            spawn.command, cols=spawn.cols, rows=spawn.rows, cwd=spawn.cwd, env=spawn.env, contained=contained
        )
    except BaseException:
        with anyio.CancelScope(shield=True):
            await contained.close(spawn.containment.kill_grace_s)
        raise
    info = await spawn.registry.add(
        transport,
        kind="local",
        host=None,
        command=spawn.command or "/bin/bash",
        cols=spawn.cols,
        rows=spawn.rows,
        term=local_term(spawn.env),
        owner=call.identity.subject,
    )
    bash = "bash" in (shell_argv(spawn.command)[0] or "")
    spawn.registry.set_line_state(info.session_id, initial_state(spawn.command, ssh=False, bash=bash))
    return session_outcome(info, "started", started_fields(info))


def plan_shell_spawn(request: ShellSpawn, svc: Services) -> Plan[LocalSpawn]:
    overlay = validate_env_overlay(request.env)
    workdir = validate_cwd(request.cwd)
    shown = request.command or "/bin/bash"
    probe = "\n".join(p for p in (shown, " ".join(f"{k}={v or ''}" for k, v in overlay.items())) if p)
    spawn = LocalSpawn(
        svc.sessions, request.command, request.cols, request.rows, workdir, overlay, svc.containment
    )
    spawned = CallText(
        shell=request.command or None, spawn=True, env=overlay, cwd=str(workdir) if workdir else None
    )
    return Plan(
        execute_shell_spawn,
        spawn,
        text=probe,
        call=spawned,
        confirm_summary=f"start `{shown}` in a PTY on this host",
    )


async def shell_spawn(
    ctx: Context,
    command: Annotated[str, Field(max_length=100_000)] = "",
    cols: Cols = 120,
    rows: Rows = 40,
    cwd: Annotated[str, Field(max_length=4096)] = "",
    env: Annotated[dict[str, str | None] | None, Field(description="null unsets a variable")] = None,
    confirm_token: ConfirmToken = "",
) -> Annotated[CallToolResult, SessionStarted]:
    return await run_tool(ctx, "shell_spawn", plan_shell_spawn, ShellSpawn(command, cols, rows, cwd, env))


# --- session_send / session_recv / session_resize / session_kill / session_list ---------------------


@dataclass(frozen=True)
class SessionRecv:
    """session_recv's arguments, and who reads."""

    session_id: str
    timeout: float | None
    max_bytes: int
    until: str
    strip_ansi: bool
    screen: Literal["auto", "always", "never"]
    quiet_ms: int | None
    caller: Identity


@dataclass(frozen=True)
class Read:
    """A validated read of a session's output."""

    registry: SessionRegistry
    session_id: str
    wait: Clamped[float]
    max_bytes: int
    until: LinearRegex | None
    strip_ansi: bool
    screen: Literal["auto", "always", "never"]
    quiet_s: float | None
    jobs: JobStore[Reply]


async def execute_session_recv(read: Read, call: Call) -> Outcome:
    if is_job(read.session_id):
        return await recv_job(
            read.jobs, read.session_id, call, timeout_s=read.wait.value, max_bytes=read.max_bytes,
            until=read.until, strip=read.strip_ansi,
        )  # fmt: skip
    got = await read.registry.recv(
        read.session_id,
        timeout_s=read.wait.value,
        max_bytes=read.max_bytes,
        until=read.until,
        strip_ansi=read.strip_ansi,
        screen=read.screen,
        quiet_s=read.quiet_s,
    )
    return recv_outcome(read.session_id, got)


def recv_outcome(session_id: str, got: RecvResult) -> Outcome:
    """The result of ``session_recv``: a header line, then the output or the screen's rows."""
    header = f"{got.bytes} bytes · {'ended' if got.ended else 'running'}"
    data: dict[str, object] = {"session_id": session_id, "mode": "stream"}
    if got.screen is not None:
        snapshot = got.screen
        header = (
            f"screen {snapshot.cols}x{snapshot.lines} · cursor {snapshot.cursor_row},{snapshot.cursor_col}"
            + (f" · title {snapshot.title!r}" if snapshot.title else "")
            + f" · {'ended' if got.ended else 'running'}"
        )
        data["mode"] = "screen"
        data["screen"] = {
            "rows": list(snapshot.rows),
            "cursor": {"row": snapshot.cursor_row, "col": snapshot.cursor_col},
            "title": snapshot.title,
            "width": snapshot.cols,
            "height": snapshot.lines,
        }
    if got.matched is not None:
        header += " · matched" if got.matched else " · until not matched (timed out)"
    elif got.timed_out:
        header += (
            " · no output within the timeout" if got.screen is None else " · still changing at the timeout"
        )
    if got.ended:
        header += f" · exit {got.exit_code}"
    if got.dropped_bytes and got.screen is None:  # a screen is whole whatever the buffer dropped
        header += f" · {got.dropped_bytes} older bytes dropped (buffer full)"
    data.update(
        output=got.output,
        bytes=got.bytes,
        matched=got.matched,
        timed_out=got.timed_out,
        ended=got.ended,
        exit_code=got.exit_code,
        dropped_bytes=got.dropped_bytes,
    )
    text = f"{header}\n{got.output}"
    if got.notes:
        data["notes"] = list(got.notes)
        text += "".join(f"\nnote: {note}" for note in got.notes)
    return Outcome(text=text, data=data, exit_code=got.exit_code)


def plan_session_recv(request: SessionRecv, svc: Services) -> Plan[Read]:
    if is_job(request.session_id):
        svc.jobs.get(request.session_id)  # an unknown job is invalid before anything waits
        targets: list[str] = []
    else:
        targets = session_targets(
            owned_session(svc.sessions, request.session_id, request.caller, Tier.READ_ONLY)
        )
    wait = clamp_timeout(2.0 if request.timeout is None else request.timeout, svc.settings)
    pattern = compile_caller_regex("until", request.until) if request.until else None
    quiet_s = None if request.quiet_ms is None else request.quiet_ms / 1000
    read = Read(
        svc.sessions,
        request.session_id,
        wait,
        request.max_bytes,
        pattern,
        request.strip_ansi,
        request.screen,
        quiet_s,
        svc.jobs,
    )
    return Plan(execute_session_recv, read, tier=Tier.READ_ONLY, targets=targets, timeout_s=wait.value)


async def session_recv(
    ctx: Context,
    session_id: SessionId,
    timeout: Annotated[float | None, Field(description="Seconds (default 2)")] = None,
    max_bytes: Annotated[int, Field(ge=1, le=MAX_RECV_BYTES)] = 65536,
    until: Annotated[str, Field(max_length=MAX_UNTIL)] = "",
    strip_ansi: bool = True,
    screen: Literal["auto", "always", "never"] = "auto",
    quiet_ms: Annotated[int | None, Field(ge=0, le=MAX_QUIET_MS)] = None,
) -> Annotated[CallToolResult, SessionRecvResult]:
    request = SessionRecv(
        session_id, timeout, max_bytes, until, strip_ansi, screen, quiet_ms, identity_of(ctx)
    )
    return await run_tool(ctx, "session_recv", plan_session_recv, request)


@dataclass(frozen=True)
class SessionResize:
    """session_resize's arguments (validated by the schema), and who resizes."""

    session_id: str
    cols: int
    rows: int
    caller: Identity


@dataclass(frozen=True)
class Resize:
    registry: SessionRegistry
    request: SessionResize


async def execute_session_resize(resize: Resize, call: Call) -> Outcome:
    request = resize.request
    await resize.registry.resize(request.session_id, request.cols, request.rows)
    info = resize.registry.info(request.session_id)
    return session_outcome(
        info, "resized", {"session_id": info.session_id, "cols": info.cols, "rows": info.rows}
    )


def plan_session_resize(request: SessionResize, svc: Services) -> Plan[Resize]:
    if is_job(request.session_id):
        raise refuse_input(request.session_id, "resized")
    info = owned_session(svc.sessions, request.session_id, request.caller, Tier.REVERSIBLE)
    return Plan(
        execute_session_resize,
        Resize(svc.sessions, request),
        tier=Tier.REVERSIBLE,
        targets=session_targets(info),
    )


async def session_resize(
    ctx: Context, session_id: SessionId, cols: Cols, rows: Rows
) -> Annotated[CallToolResult, SessionResized]:
    request = SessionResize(session_id, cols, rows, identity_of(ctx))
    return await run_tool(ctx, "session_resize", plan_session_resize, request)


@dataclass(frozen=True)
class SessionKill:
    """session_kill's arguments, and who kills."""

    session_id: str
    signal: str
    close: bool
    caller: Identity


@dataclass(frozen=True)
class Kill:
    """A validated signal (bare name) for a live session; ``close`` frees it afterwards."""

    registry: SessionRegistry
    session_id: str
    signal: str
    close: bool
    jobs: JobStore[Reply]


async def execute_session_kill(kill: Kill, call: Call) -> Outcome:
    if is_job(kill.session_id):
        return await kill_job(kill.jobs, kill.session_id, call)
    final = await kill.registry.kill(kill.session_id, kill.signal, kill.close)
    verb = "closed" if kill.close else f"sent SIG{kill.signal} to"
    return session_outcome(final, verb, killed_fields(info_fields(final)))


def plan_session_kill(request: SessionKill, svc: Services) -> Plan[Kill]:
    signal = parse_signal(request.signal)
    if is_job(request.session_id):
        svc.jobs.get(request.session_id)
        if not request.close:
            raise InvalidInput(
                "close", "a job cannot be signalled and kept: session_kill ends it (TERM, then KILL)"
            )
        kill = Kill(svc.sessions, request.session_id, signal, True, svc.jobs)
        return Plan(execute_session_kill, kill, tier=Tier.REVERSIBLE)
    info = owned_session(svc.sessions, request.session_id, request.caller, Tier.REVERSIBLE)
    kill = Kill(svc.sessions, request.session_id, signal, request.close, svc.jobs)
    return Plan(execute_session_kill, kill, tier=Tier.REVERSIBLE, targets=session_targets(info))


async def session_kill(
    ctx: Context,
    session_id: SessionId,
    signal: Annotated[str, Field(max_length=16)] = "TERM",
    close: bool = True,
) -> Annotated[CallToolResult, SessionKilled]:
    request = SessionKill(session_id, signal, close, identity_of(ctx))
    return await run_tool(ctx, "session_kill", plan_session_kill, request)


@dataclass(frozen=True)
class Everything:
    """What session_list reads: the PTY sessions and the jobs."""

    registry: SessionRegistry
    jobs: JobStore[Reply]


async def execute_session_list(source: Everything, call: Call) -> Outcome:
    """The PTY sessions, then the jobs, the caller may see (its own; all of them for an admin)."""
    sessions = visible_sessions(source.registry, call.identity)
    jobs = visible_jobs(source.jobs, call.identity)
    lines = [session_line(info) for info in sessions] + [job_line(info) for info in jobs]
    rows = [info_fields(info) for info in sessions] + [job_fields(info) for info in jobs]
    text = f"{len(rows)} session(s)\n" + "\n".join(lines)
    return Outcome(text=text, data={"sessions": rows, "count": len(rows)})


def plan_session_list(request: NoArguments, svc: Services) -> Plan[Everything]:
    return Plan(execute_session_list, Everything(svc.sessions, svc.jobs), tier=Tier.READ_ONLY)


async def session_list(ctx: Context) -> Annotated[CallToolResult, SessionListResult]:
    return await run_tool(ctx, "session_list", plan_session_list, NoArguments())


def register(server: MCPServer) -> None:
    server.add_tool(shell_spawn, description=tool_description("shell_spawn"), annotations=RUNS_COMMANDS)
    server.add_tool(session_send, description=tool_description("session_send"), annotations=RUNS_COMMANDS)
    server.add_tool(session_recv, description=tool_description("session_recv"), annotations=READ_ONLY)
    server.add_tool(session_resize, description=tool_description("session_resize"), annotations=ADJUSTS)
    server.add_tool(session_kill, description=tool_description("session_kill"), annotations=RUNS_COMMANDS)
    server.add_tool(session_list, description=tool_description("session_list"), annotations=READ_ONLY)
