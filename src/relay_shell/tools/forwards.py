"""ssh_forward, ssh_forward_list and ssh_forward_close: L, R and SOCKS5 D forwards (docs/tools.md).

Each SOCKS destination of a D forward is decided by the pipeline
(:meth:`~relay_shell.governance.pipeline.Pipeline.admit_side_channel`) as a tier-2 call of
``ssh_forward``, for the principal that opened the forward, before its channel opens; every
decision is audited. A forward belongs to that principal: only it or an admin may close it,
and ``ssh_forward_list`` shows a caller only its own (``tools/owned.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult
from pydantic import Field

from relay_shell.governance.bounds import clamp_timeout
from relay_shell.governance.call import Call, Identity, Outcome, Plan
from relay_shell.governance.pipeline import Pipeline
from relay_shell.guidance import tool_description
from relay_shell.services import LazyForwards, Services
from relay_shell.ssh.targets import HostSpec
from relay_shell.tools.base import (
    ADJUSTS,
    READ_ONLY,
    ConfirmToken,
    Listing,
    NoArguments,
    execute_listing,
    hints,
    identity_of,
    run_tool,
)
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
from relay_shell.tools.models import ForwardClosed, ForwardListOutput, ForwardOpened, own_fields
from relay_shell.tools.owned import owned_forward, visible_forwards
from relay_shell.tools.session_rows import owner_note
from relay_shell.vocabulary import Tier

if TYPE_CHECKING:
    from relay_shell.ssh.forwards import ForwardInfo, ForwardSpec

# The SSH layer (asyncssh) is imported inside planners and executors, on first use.

OPENS_FORWARD = hints(read_only=False, destructive=False, idempotent=False, open_world=True)


OPENED_FIELDS = own_fields(ForwardOpened)
"""What ssh_forward reports of the new forward's row (where it listens, where it leads)."""
CLOSED_FIELDS = own_fields(ForwardClosed)
"""What ssh_forward_close reports of the closed forward's row (its final state and traffic)."""


def forward_fields(info: ForwardInfo) -> dict[str, object]:
    return {
        "forward_id": info.forward_id, "kind": info.kind, "spec": info.spec, "bind": info.bind,
        "listen_port": info.listen_port, "host": info.host, "target": info.target,
        "bytes_sent": info.bytes_sent, "bytes_received": info.bytes_received,
        "connections": info.connections, "active_connections": info.active_connections,
        "age_s": info.age_s, "state": info.state, "last_error": info.last_error, "owner": info.owner,
    }  # fmt: skip


def forward_part(info: ForwardInfo, names: Sequence[str]) -> dict[str, object]:
    """The fields ``names`` of a forward's row: what an open or a close reports."""
    row = forward_fields(info)
    return {name: row[name] for name in names}


def forward_line(info: ForwardInfo) -> str:
    listening = f"{info.bind}:{info.listen_port}" + (" on the remote host" if info.kind == "R" else "")
    route = info.target or "SOCKS5 destinations"
    text = (
        f"{info.forward_id} {info.spec} · listening {listening} -> {route} via {info.host} · {info.state} · "
        f"{info.connections} connections, {info.bytes_sent} bytes sent, {info.bytes_received} received"
    )
    return text + (f" · last error: {info.last_error}" if info.last_error else "") + owner_note(info.owner)


@dataclass(frozen=True)
class SocksGate:
    """The pipeline's decision on each SOCKS destination of one D forward (audited)."""

    pipeline: Pipeline
    identity: Identity
    via: str
    targets: Sequence[str]

    def __call__(self, destination_host: str, destination_port: int) -> str | None:
        """None to allow the connection, else the reason it is refused."""
        decision = self.pipeline.admit_side_channel(
            "ssh_forward",
            "socks",
            Tier.STATEFUL,
            f"socks {destination_host}:{destination_port} via {self.via}",
            [*self.targets, destination_host],
            self.identity,
        )
        return None if decision.allowed else decision.reason


@dataclass(frozen=True)
class ForwardArguments:
    """ssh_forward's arguments."""

    target: HostArguments
    spec: str
    bind: str


@dataclass(frozen=True)
class Opening:
    """A validated forward to open on a host."""

    forwards: LazyForwards
    pipeline: Pipeline
    host_spec: HostSpec
    forward: ForwardSpec
    bind: str
    targets: Sequence[str]
    timeout_s: float


async def execute_ssh_forward(opening: Opening, call: Call) -> Outcome:
    gate = None
    if opening.forward.kind == "D":
        gate = SocksGate(opening.pipeline, call.identity, opening.host_spec.display(), opening.targets)
    info = await opening.forwards.get().open(
        opening.host_spec,
        opening.forward,
        bind=opening.bind,
        deadline=asyncio.get_running_loop().time() + opening.timeout_s,
        destination_check=gate,
        owner=call.identity.subject,
    )
    return Outcome(
        text=f"opened {forward_line(info)}",
        data=forward_part(info, OPENED_FIELDS),
        audit_extra={"forward_id": info.forward_id, "listen_port": info.listen_port},
    )


def plan_ssh_forward(request: ForwardArguments, svc: Services) -> Plan[Opening]:
    from relay_shell.ssh.forwards import parse_forward_spec, validate_bind

    forward = parse_forward_spec(request.spec)  # before anything touches the network
    address = validate_bind(request.bind)
    svc.forwards.get().ensure_capacity()
    host_spec = resolve_host(svc, request.target)
    wait = clamp_timeout(None, svc.settings)
    host_only = host_targets(request.target.host, host_spec)
    targets = list(host_only)
    if forward.dest_host is not None:
        targets = [*targets, forward.dest_host, f"{forward.destination()}"]
    opening = Opening(svc.forwards, svc.pipeline, host_spec, forward, address, host_only, wait.value)
    return Plan(
        execute_ssh_forward,
        opening,
        text=f"forward {forward.text()} bind {address} via {host_spec.display()}",
        targets=targets,
        min_tier=Tier.STATEFUL,
        timeout_s=wait.value,
        confirm_summary=f"open forward {forward.text()} via {host_spec.display()}",
    )


async def ssh_forward(
    ctx: Context,
    host: Host,
    spec: Annotated[
        str,
        Field(max_length=600),
    ],
    bind: Annotated[str, Field(max_length=64)] = "127.0.0.1",
    user: User = "",
    port: Port = None,
    key_path: KeyPath = "",
    known_hosts: KnownHosts = "",
    jump: Jump = "",
    confirm_token: ConfirmToken = "",
) -> Annotated[CallToolResult, ForwardOpened]:
    target = HostArguments(host, user, port, key_path, known_hosts, jump)
    return await run_tool(ctx, "ssh_forward", plan_ssh_forward, ForwardArguments(target, spec, bind))


async def execute_ssh_forward_list(forwards: LazyForwards, call: Call) -> Outcome:
    """The forwards the caller may see: its own, or every one for an admin."""
    listing = Listing(
        "forward",
        "forwards",
        partial(visible_forwards, forwards.get(), call.identity),
        forward_line,
        forward_fields,
    )
    return await execute_listing(listing, call)


def plan_ssh_forward_list(request: NoArguments, svc: Services) -> Plan[LazyForwards]:
    return Plan(execute_ssh_forward_list, svc.forwards, tier=Tier.READ_ONLY)


async def ssh_forward_list(ctx: Context) -> Annotated[CallToolResult, ForwardListOutput]:
    return await run_tool(ctx, "ssh_forward_list", plan_ssh_forward_list, NoArguments())


@dataclass(frozen=True)
class ForwardClose:
    """ssh_forward_close's arguments, and who closes."""

    forward_id: str
    caller: Identity


@dataclass(frozen=True)
class Closing:
    forwards: LazyForwards
    forward_id: str


async def execute_ssh_forward_close(closing: Closing, call: Call) -> Outcome:
    closed = await closing.forwards.get().close(closing.forward_id)
    return Outcome(
        text=f"closed {forward_line(closed)}",
        data=forward_part(closed, CLOSED_FIELDS),
        audit_extra={"forward_id": closing.forward_id},
    )


def plan_ssh_forward_close(request: ForwardClose, svc: Services) -> Plan[Closing]:
    info = owned_forward(svc.forwards.get(), request.forward_id, request.caller, Tier.REVERSIBLE)
    closing = Closing(svc.forwards, request.forward_id)
    return Plan(execute_ssh_forward_close, closing, tier=Tier.REVERSIBLE, targets=[info.host])


async def ssh_forward_close(
    ctx: Context,
    forward_id: Annotated[str, Field(max_length=64)],
) -> Annotated[CallToolResult, ForwardClosed]:
    request = ForwardClose(forward_id, identity_of(ctx))
    return await run_tool(ctx, "ssh_forward_close", plan_ssh_forward_close, request)


def register(server: MCPServer) -> None:
    server.add_tool(ssh_forward, description=tool_description("ssh_forward"), annotations=OPENS_FORWARD)
    server.add_tool(ssh_forward_list, description=tool_description("ssh_forward_list"), annotations=READ_ONLY)
    server.add_tool(ssh_forward_close, description=tool_description("ssh_forward_close"), annotations=ADJUSTS)
