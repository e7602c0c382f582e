"""ssh_spawn: a terminal on a remote host, in the same session registry as local PTYs (docs/tools.md)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult
from pydantic import Field

from relay_shell.errors import InvalidInput
from relay_shell.governance.bounds import clamp_timeout
from relay_shell.governance.call import Call, Outcome, Plan
from relay_shell.guidance import tool_description
from relay_shell.policy.model import CallText
from relay_shell.policy.session import initial_state
from relay_shell.services import LazyPool, Services
from relay_shell.sessions import SessionRegistry
from relay_shell.ssh.targets import HostSpec
from relay_shell.tools.base import RUNS_REMOTE, ConfirmToken, run_tool
from relay_shell.tools.hosts import (
    Host,
    HostArguments,
    Jump,
    KeyPath,
    KnownHosts,
    Port,
    User,
    host_targets,
    resolve_host,
)
from relay_shell.tools.models import SessionStarted
from relay_shell.tools.session_rows import session_outcome, started_fields
from relay_shell.tools.sessions import Cols, Rows

DEFAULT_TERM = "xterm-256color"
"""TERM of an ssh_spawn terminal when none is given (the value of relay_shell.ssh.pty.DEFAULT_TERM)."""
_TERM_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")


@dataclass(frozen=True)
class SshSpawn:
    """ssh_spawn's arguments."""

    target: HostArguments
    command: str
    cols: int
    rows: int
    term: str


@dataclass(frozen=True)
class RemoteSpawn:
    """A validated remote terminal to open, and the registry it joins."""

    pool: LazyPool
    registry: SessionRegistry
    spec: HostSpec
    command: str
    cols: int
    rows: int
    term: str
    timeout_s: float


async def execute_ssh_spawn(spawn: RemoteSpawn, call: Call) -> Outcome:
    from relay_shell.ssh.pty import spawn_ssh_pty

    spawn.registry.ensure_capacity()
    transport = await spawn_ssh_pty(
        spawn.pool.get(),
        spawn.spec,
        spawn.command,
        cols=spawn.cols,
        rows=spawn.rows,
        term_type=spawn.term,
        deadline=asyncio.get_running_loop().time() + spawn.timeout_s,
    )
    info = await spawn.registry.add(
        transport, kind="ssh", host=spawn.spec.display(), command=spawn.command or "login shell",
        cols=spawn.cols, rows=spawn.rows, on_close=transport.release, term=spawn.term,
        owner=call.identity.subject,
    )  # fmt: skip
    spawn.registry.set_line_state(info.session_id, initial_state(spawn.command, ssh=True))
    outcome = session_outcome(info, "started", started_fields(info))
    outcome.audit_extra["known_hosts"] = spawn.spec.known_hosts.value
    return outcome


def plan_ssh_spawn(request: SshSpawn, svc: Services) -> Plan[RemoteSpawn]:
    if not _TERM_TYPE.fullmatch(request.term):
        raise InvalidInput("term", f"not a terminal type name: {request.term!r}")
    spec = resolve_host(svc, request.target)
    wait = clamp_timeout(None, svc.settings)
    shown = request.command or "login shell"
    spawn = RemoteSpawn(
        svc.pool, svc.sessions, spec, request.command, request.cols, request.rows, request.term, wait.value
    )
    return Plan(
        execute_ssh_spawn,
        spawn,
        text=shown,
        call=CallText(shell=request.command or None, spawn=True, remote=True),
        targets=host_targets(request.target.host, spec),
        timeout_s=wait.value,
        confirm_summary=f"start `{shown[:300]}` in a terminal on {spec.display()}",
    )


async def ssh_spawn(
    ctx: Context,
    host: Host,
    command: Annotated[
        str,
        Field(max_length=100_000),
    ] = "",
    cols: Cols = 120,
    rows: Rows = 40,
    term: Annotated[str, Field(max_length=64)] = DEFAULT_TERM,
    user: User = "",
    port: Port = None,
    key_path: KeyPath = "",
    known_hosts: KnownHosts = "",
    jump: Jump = "",
    confirm_token: ConfirmToken = "",
) -> Annotated[CallToolResult, SessionStarted]:
    target = HostArguments(host, user, port, key_path, known_hosts, jump)
    return await run_tool(ctx, "ssh_spawn", plan_ssh_spawn, SshSpawn(target, command, cols, rows, term))


def register(server: MCPServer) -> None:
    server.add_tool(ssh_spawn, description=tool_description("ssh_spawn"), annotations=RUNS_REMOTE)
