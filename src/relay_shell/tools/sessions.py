"""shell_spawn and the session_* tools (SPEC §5.1, §5.3, §8): local and SSH PTYs alike."""

from __future__ import annotations

import re
from typing import Annotated, cast

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult
from pydantic import Field

from relay_shell.app import Services
from relay_shell.errors import InvalidInput
from relay_shell.governance.bounds import clamp_timeout
from relay_shell.governance.pipeline import Call, Outcome, Plan
from relay_shell.guidance import tool_description
from relay_shell.local.environment import validate_cwd, validate_env_overlay
from relay_shell.policy.model import CallText
from relay_shell.policy.session import after_send, feed, initial_state
from relay_shell.sessions import SessionInfo, SessionRegistry
from relay_shell.sessions.terminal import keys_to_bytes, parse_signal
from relay_shell.tools.base import (
    ADJUSTS,
    READ_ONLY,
    RUNS_COMMANDS,
    ConfirmToken,
    listing_plan,
    run_tool,
    services,
)
from relay_shell.tools.models import SessionListResult, SessionRecvResult, SessionResult

EXTRA_KEY = "sessions"
MAX_RECV_BYTES = 1_048_576
MAX_UNTIL = 1000

SessionId = Annotated[
    str, Field(description="Id from shell_spawn / ssh_spawn (sh-... or ssh-...)", max_length=64)
]
Cols = Annotated[int, Field(ge=10, le=1000, description="Terminal columns")]
Rows = Annotated[int, Field(ge=2, le=1000, description="Terminal rows")]


def registry_of(svc: Services) -> SessionRegistry:
    return cast(SessionRegistry, svc.extras[EXTRA_KEY])


def info_fields(info: SessionInfo) -> dict[str, object]:
    return {
        "session_id": info.session_id,
        "kind": info.kind,
        "host": info.host,
        "command": info.command,
        "cols": info.cols,
        "rows": info.rows,
        "age_s": round(info.age_s, 3),
        "idle_s": round(info.idle_s, 3),
        "bytes_buffered": info.bytes_buffered,
        "bytes_produced": info.bytes_produced,
        "bytes_dropped": info.bytes_dropped,
        "state": info.state,
        "exit_code": info.exit_code,
    }


def session_outcome(info: SessionInfo, verb: str) -> Outcome:
    where = f" on {info.host}" if info.host else ""
    text = f"{verb} {info.session_id} ({info.kind}{where}, {info.cols}x{info.rows}): {info.command} · {info.state}"
    if info.exit_code is not None:
        text += f" · exit {info.exit_code}"
    return Outcome(
        text=text,
        data=info_fields(info),
        exit_code=info.exit_code,
        audit_extra={"session_id": info.session_id},
    )


def session_targets(info: SessionInfo) -> list[str]:
    return [info.host] if info.host else []


def session_of(svc: Services, session_id: str) -> tuple[SessionRegistry, SessionInfo]:
    """The registry and the current info of ``session_id``. Raises SessionNotFound."""
    registry = registry_of(svc)
    return registry, registry.info(session_id)


def session_line(info: SessionInfo) -> str:
    """One session in the text of ``session_list``."""
    return (
        f"{info.session_id} {info.kind}{'@' + info.host if info.host else ''} {info.state} "
        f"{info.cols}x{info.rows} age {info.age_s:.0f}s idle {info.idle_s:.0f}s "
        f"buffered {info.bytes_buffered}B: {info.command}"
    )


async def shell_spawn(
    ctx: Context,
    command: Annotated[
        str, Field(description="Program to run in the PTY; empty = /bin/bash", max_length=100_000)
    ] = "",
    cols: Cols = 120,
    rows: Rows = 40,
    cwd: Annotated[str, Field(description="Working directory; empty = the server's", max_length=4096)] = "",
    env: Annotated[dict[str, str | None] | None, Field(description="Variables overlaid; null unsets")] = None,
    confirm_token: ConfirmToken = "",
) -> Annotated[CallToolResult, SessionResult]:
    args = {
        "command": command,
        "cols": cols,
        "rows": rows,
        "cwd": cwd,
        "env": env,
        "confirm_token": confirm_token,
    }
    svc = services(ctx)

    def planner() -> Plan:
        overlay = validate_env_overlay(env)
        workdir = validate_cwd(cwd)
        registry = registry_of(svc)

        async def work(call: Call) -> Outcome:
            from relay_shell.local.pty import shell_argv, spawn_local_pty

            registry.ensure_capacity()
            transport = await spawn_local_pty(command, cols=cols, rows=rows, cwd=workdir, env=overlay)
            info = await registry.add(
                transport, kind="local", host=None, command=command or "/bin/bash", cols=cols, rows=rows
            )
            bash = "bash" in (shell_argv(command)[0] or "")
            registry.set_line_state(info.session_id, initial_state(command, ssh=False, bash=bash))
            return session_outcome(info, "started")

        probe = "\n".join(
            p for p in (command or "/bin/bash", " ".join(f"{k}={v or ''}" for k, v in overlay.items())) if p
        )
        spawned = CallText(
            shell=command or None, spawn=True, env=overlay, cwd=str(workdir) if workdir else None
        )
        return Plan(
            work=work,
            text=probe,
            call=spawned,
            confirm_summary=f"start `{command or '/bin/bash'}` in a PTY on this host",
        )

    return await run_tool(ctx, "shell_spawn", args, planner)


async def session_send(
    ctx: Context,
    session_id: SessionId,
    data: Annotated[str, Field(description="Text to type", max_length=1_000_000)] = "",
    enter: Annotated[bool, Field(description="Press Enter (carriage return) after data")] = True,
    keys: Annotated[
        list[str] | None, Field(description="Named keys sent after data: Enter, Tab, C-c ...")
    ] = None,
    confirm_token: ConfirmToken = "",
) -> Annotated[CallToolResult, SessionResult]:
    args = {
        "session_id": session_id,
        "data": data,
        "enter": enter,
        "keys": keys,
        "confirm_token": confirm_token,
    }
    svc = services(ctx)

    def planner() -> Plan:
        registry, info = session_of(svc, session_id)
        key_bytes = keys_to_bytes(keys or [])
        payload = data.encode() + (b"\r" if enter else b"") + key_bytes
        # The line the shell will run, assembled across sends (the classifier reads it).
        typed = feed(
            registry.line_state(session_id),
            payload.decode("utf-8", errors="replace"),
            foreground_is_shell=registry.foreground_is_shell(session_id),
        )

        async def work(call: Call) -> Outcome:
            await registry.send(session_id, payload)
            registry.set_line_state(session_id, after_send(typed, call.analysis, ssh=info.kind == "ssh"))
            outcome = session_outcome(registry.info(session_id), "sent to")
            outcome.data["bytes_sent"] = len(payload)
            return outcome

        probe = "\n".join(p for p in (data, " ".join(keys or [])) if p)
        return Plan(
            work=work,
            text=probe,
            call=CallText(typed=typed.units, remote=info.kind == "ssh"),
            min_tier=0,
            targets=session_targets(info),
            timeout_s=svc.settings.default_timeout,  # a child that never reads cannot block the call
            confirm_summary=f"type `{data[:300]}` into session {session_id} ({info.command})",
        )

    return await run_tool(ctx, "session_send", args, planner)


async def session_recv(
    ctx: Context,
    session_id: SessionId,
    timeout: Annotated[float | None, Field(description="Seconds to wait for output (default 2)")] = None,
    max_bytes: Annotated[int, Field(ge=1, le=MAX_RECV_BYTES, description="Most bytes to return")] = 65536,
    until: Annotated[
        str, Field(description="Regex: keep reading until it matches", max_length=MAX_UNTIL)
    ] = "",
    strip_ansi: Annotated[bool, Field(description="Remove terminal escape sequences")] = True,
) -> Annotated[CallToolResult, SessionRecvResult]:
    args = {
        "session_id": session_id,
        "timeout": timeout,
        "max_bytes": max_bytes,
        "until": until,
        "strip_ansi": strip_ansi,
    }
    svc = services(ctx)

    def planner() -> Plan:
        registry, info = session_of(svc, session_id)
        wait = clamp_timeout(2.0 if timeout is None else timeout, svc.settings)
        try:
            pattern = re.compile(until, re.MULTILINE) if until else None
        except re.error as exc:
            raise InvalidInput("until", f"not a valid regular expression: {exc}") from exc

        async def work(call: Call) -> Outcome:
            got = await registry.recv(
                session_id, timeout_s=wait.value, max_bytes=max_bytes, until=pattern, strip_ansi=strip_ansi
            )
            state = "ended" if got.ended else "running"
            header = f"{got.bytes} bytes · {state}"
            if got.matched is not None:
                header += " · matched" if got.matched else " · until not matched (timed out)"
            elif got.timed_out:
                header += " · no output within the timeout"
            if got.ended:
                header += f" · exit {got.exit_code}"
            if got.dropped_bytes:
                header += f" · {got.dropped_bytes} older bytes dropped (buffer full)"
            data: dict[str, object] = {
                "session_id": session_id,
                "output": got.output,
                "bytes": got.bytes,
                "matched": got.matched,
                "timed_out": got.timed_out,
                "ended": got.ended,
                "exit_code": got.exit_code,
                "dropped_bytes": got.dropped_bytes,
            }
            return Outcome(text=f"{header}\n{got.output}", data=data, exit_code=got.exit_code)

        return Plan(work=work, tier=0, targets=session_targets(info), timeout_s=wait.value)

    return await run_tool(ctx, "session_recv", args, planner)


async def session_resize(
    ctx: Context, session_id: SessionId, cols: Cols, rows: Rows
) -> Annotated[CallToolResult, SessionResult]:
    args = {"session_id": session_id, "cols": cols, "rows": rows}
    svc = services(ctx)

    def planner() -> Plan:
        registry, info = session_of(svc, session_id)

        async def work(call: Call) -> Outcome:
            await registry.resize(session_id, cols, rows)
            return session_outcome(registry.info(session_id), "resized")

        return Plan(work=work, tier=1, targets=session_targets(info))

    return await run_tool(ctx, "session_resize", args, planner)


async def session_kill(
    ctx: Context,
    session_id: SessionId,
    signal: Annotated[
        str, Field(description="TERM, INT, HUP, KILL, QUIT, USR1, USR2...", max_length=16)
    ] = "TERM",
    close: Annotated[bool, Field(description="Also close the session and free it")] = True,
) -> Annotated[CallToolResult, SessionResult]:
    args = {"session_id": session_id, "signal": signal, "close": close}
    svc = services(ctx)

    def planner() -> Plan:
        registry, info = session_of(svc, session_id)
        name = parse_signal(signal)

        async def work(call: Call) -> Outcome:
            final = await registry.kill(session_id, name, close)
            return session_outcome(final, "closed" if close else f"sent SIG{name} to")

        return Plan(work=work, tier=1, targets=session_targets(info))

    return await run_tool(ctx, "session_kill", args, planner)


async def session_list(ctx: Context) -> Annotated[CallToolResult, SessionListResult]:
    svc = services(ctx)

    def planner() -> Plan:
        return listing_plan("session", "sessions", registry_of(svc).list, session_line, info_fields)

    return await run_tool(ctx, "session_list", args={}, planner=planner)


def register(server: MCPServer, svc: Services) -> None:
    settings = svc.settings
    registry = SessionRegistry(
        max_sessions=settings.max_sessions,
        buffer_bytes=settings.session_buffer_bytes,
        idle_timeout_s=settings.session_idle_timeout,
        max_lifetime_s=settings.session_max_lifetime,
    )
    svc.extras[EXTRA_KEY] = registry
    svc.add_counter("sessions", lambda: len(registry))
    svc.add_starter(registry.start)
    svc.add_closer(registry.aclose)
    server.add_tool(shell_spawn, description=tool_description("shell_spawn"), annotations=RUNS_COMMANDS)
    server.add_tool(session_send, description=tool_description("session_send"), annotations=RUNS_COMMANDS)
    server.add_tool(session_recv, description=tool_description("session_recv"), annotations=READ_ONLY)
    server.add_tool(session_resize, description=tool_description("session_resize"), annotations=ADJUSTS)
    server.add_tool(session_kill, description=tool_description("session_kill"), annotations=RUNS_COMMANDS)
    server.add_tool(session_list, description=tool_description("session_list"), annotations=READ_ONLY)
