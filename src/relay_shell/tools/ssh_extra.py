"""ssh_spawn, ssh_upload, ssh_download, ssh_forward, ssh_forward_list, ssh_forward_close (SPEC §5.2).

:func:`register` needs the inventory and pool that :func:`relay_shell.tools.ssh.register`
creates and the session registry of :func:`relay_shell.tools.sessions.register`: call it
after both.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import Field

from relay_shell.app import Services
from relay_shell.errors import InvalidInput
from relay_shell.governance.bounds import Clamped, clamp_timeout
from relay_shell.governance.pipeline import Call, Outcome, Plan
from relay_shell.governance.policy import build_probe, decide
from relay_shell.guidance import tool_description
from relay_shell.policy.model import CallText
from relay_shell.policy.session import initial_state
from relay_shell.ssh.targets import HostSpec
from relay_shell.tools.base import (
    ADJUSTS,
    READ_ONLY,
    RUNS_REMOTE,
    ConfirmToken,
    listing_plan,
    run_tool,
    services,
)
from relay_shell.tools.local import timeout_notes
from relay_shell.tools.models import ForwardListOutput, ForwardOutput, SessionResult, TransferOutput
from relay_shell.tools.sessions import Cols, Rows, registry_of, session_outcome
from relay_shell.tools.ssh import (
    Host,
    Jump,
    KeyPath,
    KnownHosts,
    Port,
    User,
    host_targets,
    pool_of,
    resolve_host,
)

if TYPE_CHECKING:
    from relay_shell.ssh.forwards import DestinationCheck, ForwardInfo, ForwardManager
    from relay_shell.ssh.sftp import ProgressCallback, TransferResult

# The SSH layer (asyncssh) is imported inside tool bodies and by LazyForwards, on first use:
# answering initialize or tools/list never pays for it.

FORWARDS_KEY = "ssh_forwards"
DEFAULT_TERM = "xterm-256color"
"""TERM of an ssh_spawn terminal when none is given (the value of relay_shell.ssh.pty.DEFAULT_TERM)."""
MAX_PATH = 4096
MAX_LISTED_IN_TEXT = 20
_TERM_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")

OPENS_FORWARD = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True
)

Timeout = Annotated[float | None, Field(description="Seconds for the whole transfer, connect included")]
LocalPath = Annotated[str, Field(description="Path on this host", max_length=MAX_PATH)]
RemotePath = Annotated[
    str, Field(description="Path on the remote host (relative = its home)", max_length=MAX_PATH)
]
Recursive = Annotated[bool, Field(description="Copy a directory tree")]


def forwards_of(svc: Services) -> ForwardManager:
    return cast(LazyForwards, svc.extras[FORWARDS_KEY]).get(svc)


class LazyForwards:
    """The :class:`ForwardManager` on the shared pool, created on first :meth:`get`."""

    def __init__(self) -> None:
        self._manager: ForwardManager | None = None

    def get(self, svc: Services) -> ForwardManager:
        if self._manager is None:
            from relay_shell.ssh.forwards import ForwardManager

            self._manager = ForwardManager(pool_of(svc), max_forwards=svc.settings.max_forwards)
        return self._manager

    def __len__(self) -> int:
        return 0 if self._manager is None else len(self._manager)

    async def aclose(self) -> None:
        """Close every forward if the manager was ever created."""
        if self._manager is not None:
            await self._manager.aclose()


def _connect_deadline(wait: Clamped[float]) -> float:
    return asyncio.get_running_loop().time() + wait.value


# --- ssh_spawn --------------------------------------------------------------------------------


async def ssh_spawn(
    ctx: Context,
    host: Host,
    command: Annotated[
        str,
        Field(
            description="Command to run on the remote terminal; empty = the login shell", max_length=100_000
        ),
    ] = "",
    cols: Cols = 120,
    rows: Rows = 40,
    term: Annotated[str, Field(description="TERM of the remote terminal", max_length=64)] = DEFAULT_TERM,
    user: User = "",
    port: Port = None,
    key_path: KeyPath = "",
    known_hosts: KnownHosts = "",
    jump: Jump = "",
    confirm_token: ConfirmToken = "",
) -> Annotated[CallToolResult, SessionResult]:
    args = {
        "host": host, "command": command, "cols": cols, "rows": rows, "term": term, "user": user,
        "port": port, "key_path": key_path, "known_hosts": known_hosts, "jump": jump,
        "confirm_token": confirm_token,
    }  # fmt: skip
    svc = services(ctx)

    def planner() -> Plan:
        if not _TERM_TYPE.fullmatch(term):
            raise InvalidInput("term", f"not a terminal type name: {term!r}")
        spec = resolve_host(svc, host, user, port, key_path, known_hosts, jump)
        registry = registry_of(svc)
        wait = clamp_timeout(None, svc.settings)
        shown = command or "login shell"

        async def work(call: Call) -> Outcome:
            registry.ensure_capacity()
            from relay_shell.ssh.pty import spawn_ssh_pty

            transport = await spawn_ssh_pty(
                pool_of(svc),
                spec,
                command,
                cols=cols,
                rows=rows,
                term_type=term,
                deadline=_connect_deadline(wait),
            )
            info = await registry.add(
                transport, kind="ssh", host=spec.display(), command=shown, cols=cols, rows=rows,
                on_close=transport.release,
            )  # fmt: skip
            registry.set_line_state(info.session_id, initial_state(command, ssh=True))
            outcome = session_outcome(info, "started")
            outcome.audit_extra["known_hosts"] = spec.known_hosts.value
            return outcome

        return Plan(
            work=work,
            text=shown,
            call=CallText(shell=command or None, spawn=True, remote=True),
            targets=host_targets(host, spec),
            timeout_s=wait.value,
            confirm_summary=f"start `{shown[:300]}` in a terminal on {spec.display()}",
        )

    return await run_tool(ctx, "ssh_spawn", args, planner)


# --- ssh_upload / ssh_download ----------------------------------------------------------------


def transfer_outcome(result: TransferResult, timeout_s: float) -> Outcome:
    """Header (counts, bytes, time), the route, the SHA-256 of a single file, the first files."""
    verb = "uploaded" if result.direction == "upload" else "downloaded"
    what = f"{result.file_count} file{'s' if result.file_count != 1 else ''}"
    if result.directory_count:
        what += f", {result.directory_count} director{'ies' if result.directory_count != 1 else 'y'}"
    if result.link_count:
        what += f", {result.link_count} link{'s' if result.link_count != 1 else ''}"
    lines = [
        f"{verb} {what}, {result.bytes} bytes · {result.duration_ms / 1000:.2f} s",
        f"{result.source} -> {result.destination}",
    ]
    if result.sha256:
        lines.append(f"sha256 {result.sha256}")
    lines.extend(f"  {row.path} ({row.size} bytes)" for row in result.files[:MAX_LISTED_IN_TEXT] if row.path)
    if result.file_count > MAX_LISTED_IN_TEXT:
        lines.append(f"  ... {result.file_count - MAX_LISTED_IN_TEXT} more files")
    data: dict[str, object] = {
        "direction": result.direction, "source": result.source, "destination": result.destination,
        "files": [{"path": row.path, "size": row.size} for row in result.files],
        "file_count": result.file_count, "directory_count": result.directory_count,
        "link_count": result.link_count, "bytes": result.bytes, "bytes_total": result.bytes_total,
        "sha256": result.sha256, "duration_ms": result.duration_ms, "timeout_s": timeout_s,
    }  # fmt: skip
    audit = {"destination": result.destination, "file_count": result.file_count, "bytes": result.bytes}
    if result.sha256:
        audit["sha256"] = result.sha256
    return Outcome(text="\n".join(lines), data=data, exit_code=0, audit_extra=audit)


def _require_path(argument: str, value: str) -> str:
    if not value.strip():
        raise InvalidInput(argument, "must not be empty")
    if "\x00" in value:
        raise InvalidInput(argument, "must not contain NUL characters")
    return value


async def ssh_upload(
    ctx: Context,
    host: Host,
    local_path: LocalPath,
    remote_path: RemotePath,
    recursive: Recursive = False,
    timeout: Timeout = None,
    user: User = "",
    port: Port = None,
    key_path: KeyPath = "",
    known_hosts: KnownHosts = "",
    jump: Jump = "",
    confirm_token: ConfirmToken = "",
) -> Annotated[CallToolResult, TransferOutput]:
    args = {
        "host": host, "local_path": local_path, "remote_path": remote_path, "recursive": recursive,
        "timeout": timeout, "user": user, "port": port, "key_path": key_path, "known_hosts": known_hosts,
        "jump": jump, "confirm_token": confirm_token,
    }  # fmt: skip
    svc = services(ctx)

    def planner() -> Plan:
        from relay_shell.ssh.sftp import check_local_source, upload

        source = Path(_require_path("local_path", local_path)).expanduser()
        destination = _require_path("remote_path", remote_path)
        check_local_source(source, recursive)
        wait = clamp_timeout(timeout, svc.settings)
        spec = resolve_host(svc, host, user, port, key_path, known_hosts, jump)

        async def transfer(progress: ProgressCallback) -> TransferResult:
            return await upload(
                pool_of(svc), spec, source, destination, recursive=recursive, timeout_s=wait.value,
                on_progress=progress,
            )  # fmt: skip

        text = f"upload {source} to {spec.display()}:{destination}"
        return _transfer_plan(transfer, "uploaded", text, host, spec, wait, source)

    return await run_tool(ctx, "ssh_upload", args, planner)


async def ssh_download(
    ctx: Context,
    host: Host,
    remote_path: RemotePath,
    local_path: LocalPath,
    recursive: Recursive = False,
    timeout: Timeout = None,
    user: User = "",
    port: Port = None,
    key_path: KeyPath = "",
    known_hosts: KnownHosts = "",
    jump: Jump = "",
    confirm_token: ConfirmToken = "",
) -> Annotated[CallToolResult, TransferOutput]:
    args = {
        "host": host, "remote_path": remote_path, "local_path": local_path, "recursive": recursive,
        "timeout": timeout, "user": user, "port": port, "key_path": key_path, "known_hosts": known_hosts,
        "jump": jump, "confirm_token": confirm_token,
    }  # fmt: skip
    svc = services(ctx)

    def planner() -> Plan:
        from relay_shell.ssh.sftp import check_local_destination, download

        source = _require_path("remote_path", remote_path)
        destination = Path(_require_path("local_path", local_path)).expanduser()
        check_local_destination(destination)
        wait = clamp_timeout(timeout, svc.settings)
        spec = resolve_host(svc, host, user, port, key_path, known_hosts, jump)

        async def transfer(progress: ProgressCallback) -> TransferResult:
            return await download(
                pool_of(svc), spec, source, destination, recursive=recursive, timeout_s=wait.value,
                on_progress=progress,
            )  # fmt: skip

        text = f"download {spec.display()}:{source} to {destination}"
        return _transfer_plan(transfer, "downloaded", text, host, spec, wait, destination)

    return await run_tool(ctx, "ssh_download", args, planner)


type Transfer = Callable[[ProgressCallback], Awaitable[TransferResult]]
"""One SFTP copy of a planned call, started with the call's progress reporter."""


def _progress_reporter(call: Call, verb: str) -> ProgressCallback:
    async def report(done: int, total: int) -> None:
        await call.report(done, total, f"{verb} {done} of {total} bytes")

    return report


def _transfer_plan(
    transfer: Transfer, verb: str, text: str, host: str, spec: HostSpec, wait: Clamped[float], local: Path
) -> Plan:
    """An upload's or download's plan: at least tier 2, ``text`` probed and shown for confirmation.

    The work runs ``transfer`` with progress reported as "<verb> done of total bytes" and
    shapes its result with :func:`transfer_outcome`, adding the host.
    """

    async def work(call: Call) -> Outcome:
        result = await transfer(_progress_reporter(call, verb))
        outcome = transfer_outcome(result, wait.value)
        outcome.data["host"] = spec.display()
        return outcome

    return Plan(
        work=work,
        text=text,
        call=CallText(paths=(str(local),)),  # a local path naming the relay's own files is refused
        targets=host_targets(host, spec),
        min_tier=2,
        timeout_s=wait.value,
        notes=timeout_notes(wait),
        confirm_summary=text,
    )


# --- forwards ---------------------------------------------------------------------------------


def forward_fields(info: ForwardInfo) -> dict[str, object]:
    return {
        "forward_id": info.forward_id, "kind": info.kind, "spec": info.spec, "bind": info.bind,
        "listen_port": info.listen_port, "host": info.host, "target": info.target,
        "bytes_sent": info.bytes_sent, "bytes_received": info.bytes_received,
        "connections": info.connections, "active_connections": info.active_connections,
        "age_s": info.age_s, "state": info.state, "last_error": info.last_error,
    }  # fmt: skip


def forward_line(info: ForwardInfo) -> str:
    listening = f"{info.bind}:{info.listen_port}" + (" on the remote host" if info.kind == "R" else "")
    route = info.target or "SOCKS5 destinations"
    text = (
        f"{info.forward_id} {info.spec} · listening {listening} -> {route} via {info.host} · {info.state} · "
        f"{info.connections} connections, {info.bytes_sent} bytes sent, {info.bytes_received} received"
    )
    return text + (f" · last error: {info.last_error}" if info.last_error else "")


def _socks_check(svc: Services, host: str, spec: HostSpec) -> DestinationCheck:
    """Each SOCKS destination passes the same policy decision as the forward itself."""

    def check(destination_host: str, destination_port: int) -> str | None:
        probe = build_probe(
            "ssh_forward",
            f"socks {destination_host}:{destination_port} via {spec.display()}",
            [*host_targets(host, spec), destination_host],
        )
        decision = decide(svc.pipeline.policy, "ssh_forward", 2, probe)
        return None if decision.allowed else decision.reason

    return check


async def ssh_forward(
    ctx: Context,
    host: Host,
    spec: Annotated[
        str,
        Field(
            description="L:lport:dhost:dport, R:rport:dhost:dport or D:lport (0 = any free port)",
            max_length=600,
        ),
    ],
    bind: Annotated[
        str, Field(description="Listening address (here for L/D, on the remote host for R)", max_length=64)
    ] = "127.0.0.1",
    user: User = "",
    port: Port = None,
    key_path: KeyPath = "",
    known_hosts: KnownHosts = "",
    jump: Jump = "",
    confirm_token: ConfirmToken = "",
) -> Annotated[CallToolResult, ForwardOutput]:
    args = {
        "host": host, "spec": spec, "bind": bind, "user": user, "port": port, "key_path": key_path,
        "known_hosts": known_hosts, "jump": jump, "confirm_token": confirm_token,
    }  # fmt: skip
    svc = services(ctx)

    def planner() -> Plan:
        from relay_shell.ssh.forwards import parse_forward_spec, validate_bind

        forward = parse_forward_spec(spec)  # before anything touches the network
        address = validate_bind(bind)
        manager = forwards_of(svc)
        manager.ensure_capacity()
        host_spec = resolve_host(svc, host, user, port, key_path, known_hosts, jump)
        wait = clamp_timeout(None, svc.settings)
        check = _socks_check(svc, host, host_spec) if forward.kind == "D" else None

        async def work(call: Call) -> Outcome:
            info = await manager.open(
                host_spec, forward, bind=address, deadline=_connect_deadline(wait), destination_check=check
            )
            return Outcome(
                text=f"opened {forward_line(info)}",
                data=forward_fields(info),
                audit_extra={"forward_id": info.forward_id, "listen_port": info.listen_port},
            )

        targets = host_targets(host, host_spec)
        if forward.dest_host is not None:
            targets = [*targets, forward.dest_host, f"{forward.destination()}"]
        return Plan(
            work=work,
            text=f"forward {forward.text()} bind {address} via {host_spec.display()}",
            targets=targets,
            min_tier=2,
            timeout_s=wait.value,
            confirm_summary=f"open forward {forward.text()} via {host_spec.display()}",
        )

    return await run_tool(ctx, "ssh_forward", args, planner)


async def ssh_forward_list(ctx: Context) -> Annotated[CallToolResult, ForwardListOutput]:
    svc = services(ctx)

    def planner() -> Plan:
        return listing_plan("forward", "forwards", forwards_of(svc).list, forward_line, forward_fields)

    return await run_tool(ctx, "ssh_forward_list", {}, planner)


async def ssh_forward_close(
    ctx: Context,
    forward_id: Annotated[str, Field(description="Id from ssh_forward (fwd-...)", max_length=64)],
) -> Annotated[CallToolResult, ForwardOutput]:
    args = {"forward_id": forward_id}
    svc = services(ctx)

    def planner() -> Plan:
        manager = forwards_of(svc)
        info = manager.info(forward_id)

        async def work(call: Call) -> Outcome:
            closed = await manager.close(forward_id)
            return Outcome(
                text=f"closed {forward_line(closed)}",
                data=forward_fields(closed),
                audit_extra={"forward_id": forward_id},
            )

        return Plan(work=work, tier=1, targets=[info.host])

    return await run_tool(ctx, "ssh_forward_close", args, planner)


def register(server: MCPServer, svc: Services) -> None:
    """Register the six tools; the forward manager shares the SSH pool and closes at shutdown."""
    manager = LazyForwards()
    svc.extras[FORWARDS_KEY] = manager
    svc.add_counter("forwards", lambda: len(manager))
    svc.add_closer(manager.aclose)
    server.add_tool(ssh_spawn, description=tool_description("ssh_spawn"), annotations=RUNS_REMOTE)
    server.add_tool(ssh_upload, description=tool_description("ssh_upload"), annotations=RUNS_REMOTE)
    server.add_tool(ssh_download, description=tool_description("ssh_download"), annotations=RUNS_REMOTE)
    server.add_tool(ssh_forward, description=tool_description("ssh_forward"), annotations=OPENS_FORWARD)
    server.add_tool(ssh_forward_list, description=tool_description("ssh_forward_list"), annotations=READ_ONLY)
    server.add_tool(ssh_forward_close, description=tool_description("ssh_forward_close"), annotations=ADJUSTS)
