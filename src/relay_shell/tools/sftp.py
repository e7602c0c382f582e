"""ssh_upload and ssh_download: SFTP copies with ``cp -r`` destination rules (docs/tools.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult
from pydantic import Field

from relay_shell.errors import InvalidInput
from relay_shell.governance.bounds import Clamped, clamp_timeout
from relay_shell.governance.call import Call, Identity, Outcome, Plan
from relay_shell.guidance import tool_description
from relay_shell.policy.model import CallText
from relay_shell.services import LazyPool, Services
from relay_shell.ssh.targets import HostSpec
from relay_shell.tools.base import RUNS_REMOTE, ConfirmToken, identity_of, run_tool
from relay_shell.tools.fleet import Batch, Canary, Concurrency, MaxFail
from relay_shell.tools.fleet_upload import (
    NO_ROLLOUT,
    FleetUpload,
    RolloutArguments,
    check_host_choice,
    plan_fleet_upload,
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
    overrides,
    resolve_host,
)
from relay_shell.tools.models import TransferOutput, UploadOutput
from relay_shell.tools.shape import timeout_notes
from relay_shell.vocabulary import Tier

if TYPE_CHECKING:
    from relay_shell.ssh.sftp import TransferResult

# The SSH layer (asyncssh) is imported inside planners and executors, on first use.

MAX_PATH = 4096
MAX_LISTED_IN_TEXT = 20

Timeout = Annotated[float | None, Field(description="Seconds, connect included")]
LocalPath = Annotated[str, Field(max_length=MAX_PATH)]
RemotePath = Annotated[str, Field(description="Relative = the remote home", max_length=MAX_PATH)]
Recursive = bool


@dataclass(frozen=True)
class Copy:
    """ssh_upload's or ssh_download's arguments (``direction`` says which).

    An upload names either one host (``target.host``) or a host pattern (``hosts``, with the
    rollout arguments and ``concurrency``); a download always names one host.
    """

    direction: Literal["upload", "download"]
    target: HostArguments
    local_path: str
    remote_path: str
    recursive: bool
    timeout: float | None
    caller: Identity
    hosts: str | list[str] = ""
    concurrency: int = 16
    rollout: RolloutArguments = NO_ROLLOUT


@dataclass(frozen=True)
class Transfer:
    """A validated copy: the host, both ends, the deadline."""

    pool: LazyPool
    direction: Literal["upload", "download"]
    spec: HostSpec
    local_path: Path
    remote_path: str
    recursive: bool
    timeout: Clamped[float]


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


async def execute_transfer(transfer: Transfer, call: Call) -> Outcome:
    """Copy, reporting "<verb> done of total bytes" as progress; shape the result with the host."""
    from relay_shell.ssh.sftp import download, upload

    verb = "uploaded" if transfer.direction == "upload" else "downloaded"

    async def progress(done: int, total: int) -> None:
        await call.report(done, total, f"{verb} {done} of {total} bytes")

    pool, spec, timeout_s = transfer.pool.get(), transfer.spec, transfer.timeout.value
    if transfer.direction == "upload":
        result = await upload(
            pool, spec, transfer.local_path, transfer.remote_path, recursive=transfer.recursive,
            timeout_s=timeout_s, on_progress=progress,
        )  # fmt: skip
    else:
        result = await download(
            pool, spec, transfer.remote_path, transfer.local_path, recursive=transfer.recursive,
            timeout_s=timeout_s, on_progress=progress,
        )  # fmt: skip
    outcome = transfer_outcome(result, timeout_s)
    outcome.data["host"] = spec.display()
    return outcome


def _ends(request: Copy, svc: Services) -> tuple[Path, str, Clamped[float]]:
    """The local and remote paths (checked before any connection) and the clamped deadline."""
    from relay_shell.ssh.sftp import check_local_destination, check_local_source

    local = Path(_require_path("local_path", request.local_path)).expanduser()
    remote = _require_path("remote_path", request.remote_path)
    if request.direction == "upload":
        check_local_source(local, request.recursive)
    else:
        check_local_destination(local)
    return local, remote, clamp_timeout(request.timeout, svc.settings)


def plan_transfer(request: Copy, svc: Services) -> Plan[Transfer]:
    """At least tier 2; the route is probed and shown for confirmation."""
    if request.direction == "upload":
        check_host_choice(request.target.host, request.hosts, request.rollout != NO_ROLLOUT)
    local, remote, wait = _ends(request, svc)
    spec = resolve_host(svc, request.target)
    if request.direction == "upload":
        text = f"upload {local} to {spec.display()}:{remote}"
    else:
        text = f"download {spec.display()}:{remote} to {local}"
    transfer = Transfer(svc.pool, request.direction, spec, local, remote, request.recursive, wait)
    return Plan(
        execute_transfer,
        transfer,
        text=text,
        call=CallText(paths=(str(local),)),  # a local path naming the relay's own files is refused
        targets=host_targets(request.target.host, spec),
        min_tier=Tier.STATEFUL,
        timeout_s=wait.value,
        notes=timeout_notes(wait),
        confirm_summary=text,
    )


def plan_upload_many(request: Copy, svc: Services) -> Plan[FleetUpload]:
    """An upload to ``hosts`` (see :mod:`relay_shell.tools.fleet_upload`)."""
    check_host_choice(request.target.host, request.hosts, request.rollout != NO_ROLLOUT)
    local, remote, wait = _ends(request, svc)
    target = request.target
    connect = overrides(target.user, target.port, target.key_path, target.known_hosts, target.jump)
    return plan_fleet_upload(
        svc, source=local, destination=remote, recursive=request.recursive, hosts=request.hosts,
        caller=request.caller, rollout=request.rollout, concurrency=request.concurrency, wait=wait, overrides=connect,
    )  # fmt: skip


async def ssh_upload(
    ctx: Context,
    local_path: LocalPath,
    remote_path: RemotePath,
    host: Annotated[str, Field(max_length=512)] = "",
    hosts: str | list[str] = "",
    recursive: Recursive = False,
    timeout: Timeout = None,
    concurrency: Concurrency = 16,
    batch: Batch = None,
    max_fail: MaxFail = None,
    canary: Canary = 0,
    user: User = "",
    port: Port = None,
    key_path: KeyPath = "",
    known_hosts: KnownHosts = "",
    jump: Jump = "",
    confirm_token: ConfirmToken = "",
) -> Annotated[CallToolResult, UploadOutput]:
    target = HostArguments(host, user, port, key_path, known_hosts, jump)
    request = Copy(
        "upload", target, local_path, remote_path, recursive, timeout, identity_of(ctx), hosts, concurrency,
        (batch, max_fail, canary),
    )  # fmt: skip
    if hosts:  # which planner; both check that exactly one of host and hosts is given
        return await run_tool(ctx, "ssh_upload", plan_upload_many, request)
    return await run_tool(ctx, "ssh_upload", plan_transfer, request)


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
    target = HostArguments(host, user, port, key_path, known_hosts, jump)
    request = Copy("download", target, local_path, remote_path, recursive, timeout, identity_of(ctx))
    return await run_tool(ctx, "ssh_download", plan_transfer, request)


def register(server: MCPServer) -> None:
    server.add_tool(ssh_upload, description=tool_description("ssh_upload"), annotations=RUNS_REMOTE)
    server.add_tool(ssh_download, description=tool_description("ssh_download"), annotations=RUNS_REMOTE)
