"""shell_spawn and the session_* tools (SPEC §5.1, §5.3, §8): local and SSH PTYs alike."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Literal, cast

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult
from pydantic import Field

from relay_shell.app import Services
from relay_shell.governance.bounds import clamp_timeout
from relay_shell.governance.pipeline import Call, Outcome, Plan
from relay_shell.guidance import tool_description
from relay_shell.linear_regex import compile_caller_regex
from relay_shell.local.environment import validate_cwd, validate_env_overlay
from relay_shell.sessions import RecvResult, SessionInfo, SessionRegistry
from relay_shell.sessions.recording import RecordingSettings
from relay_shell.sessions.registry import SessionEnd
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
MAX_QUIET_MS = 600_000

SessionId = Annotated[
    str, Field(description="Id from shell_spawn / ssh_spawn (sh-... or ssh-...)", max_length=64)
]
Cols = Annotated[int, Field(ge=10, le=1000, description="Terminal columns")]
Rows = Annotated[int, Field(ge=2, le=1000, description="Terminal rows")]


def local_term(overlay: Mapping[str, str | None]) -> str:
    """The TERM a local PTY child gets (the overlay, else the server's, else the PTY default)."""
    from relay_shell.local.pty import PTY_DEFAULTS

    term = overlay["TERM"] if "TERM" in overlay else os.environ.get("TERM")
    return term or PTY_DEFAULTS["TERM"]


def end_record(end: SessionEnd) -> dict[str, object]:
    """The audit fields of a session's end (written as a ``session_end`` record)."""
    fields: dict[str, object] = {
        "session_id": end.session_id,
        "session_kind": end.kind,
        "command": end.command,
        "reason": end.reason,
        "exit_code": end.exit_code,
        "duration_ms": round(end.duration_s * 1000),
        "stream_len": end.bytes_produced,
    }
    if end.recording is not None:
        fields["recording"] = {
            "path": end.recording.path,
            "bytes": end.recording.bytes,
            "sha256": end.recording.sha256,
            "truncated": end.recording.truncated,
            "input": end.recording.input_recorded,
            "error": end.recording.error,
        }
    return fields


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
            from relay_shell.local.pty import spawn_local_pty

            registry.ensure_capacity()
            transport = await spawn_local_pty(command, cols=cols, rows=rows, cwd=workdir, env=overlay)
            info = await registry.add(
                transport, kind="local", host=None, command=command or "/bin/bash", cols=cols, rows=rows,
                term=local_term(overlay),
            )  # fmt: skip
            return session_outcome(info, "started")

        probe = "\n".join(
            p for p in (command or "/bin/bash", " ".join(f"{k}={v or ''}" for k, v in overlay.items())) if p
        )
        return Plan(
            work=work, text=probe, confirm_summary=f"start `{command or '/bin/bash'}` in a PTY on this host"
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

        async def work(call: Call) -> Outcome:
            await registry.send(session_id, payload)
            outcome = session_outcome(registry.info(session_id), "sent to")
            outcome.data["bytes_sent"] = len(payload)
            return outcome

        probe = "\n".join(p for p in (data, " ".join(keys or [])) if p)
        return Plan(
            work=work,
            text=probe,
            targets=session_targets(info),
            timeout_s=svc.settings.default_timeout,  # a child that never reads cannot block the call
            confirm_summary=f"type `{data[:300]}` into session {session_id} ({info.command})",
        )

    return await run_tool(ctx, "session_send", args, planner)


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


async def session_recv(
    ctx: Context,
    session_id: SessionId,
    timeout: Annotated[float | None, Field(description="Seconds to wait for output (default 2)")] = None,
    max_bytes: Annotated[int, Field(ge=1, le=MAX_RECV_BYTES, description="Most bytes to return")] = 65536,
    until: Annotated[
        str, Field(description="RE2 regex: keep reading until it matches", max_length=MAX_UNTIL)
    ] = "",
    strip_ansi: Annotated[bool, Field(description="Remove terminal escape sequences")] = True,
    screen: Annotated[
        Literal["auto", "always", "never"],
        Field(description="auto: the rendered screen while a full-screen program runs, else the stream"),
    ] = "auto",
    quiet_ms: Annotated[
        int | None, Field(ge=0, le=MAX_QUIET_MS, description="Wait until no output for this long")
    ] = None,
) -> Annotated[CallToolResult, SessionRecvResult]:
    args = {
        "session_id": session_id,
        "timeout": timeout,
        "max_bytes": max_bytes,
        "until": until,
        "strip_ansi": strip_ansi,
        "screen": screen,
        "quiet_ms": quiet_ms,
    }
    svc = services(ctx)

    def planner() -> Plan:
        registry, info = session_of(svc, session_id)
        wait = clamp_timeout(2.0 if timeout is None else timeout, svc.settings)
        pattern = compile_caller_regex("until", until) if until else None
        quiet_s = None if quiet_ms is None else quiet_ms / 1000

        async def work(call: Call) -> Outcome:
            got = await registry.recv(
                session_id,
                timeout_s=wait.value,
                max_bytes=max_bytes,
                until=pattern,
                strip_ansi=strip_ansi,
                screen=screen,
                quiet_s=quiet_s,
            )
            return recv_outcome(session_id, got)

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
    recording = None
    if settings.session_record_dir is not None:
        recording = RecordingSettings(
            directory=settings.expand(settings.session_record_dir),
            record_input=settings.session_record_input,
            max_bytes=settings.session_record_max_bytes,
        )
    registry = SessionRegistry(
        max_sessions=settings.max_sessions,
        buffer_bytes=settings.session_buffer_bytes,
        idle_timeout_s=settings.session_idle_timeout,
        max_lifetime_s=settings.session_max_lifetime,
        recording=recording,
        on_end=lambda end: svc.pipeline.record_event("session_end", end_record(end), target=end.host),
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
