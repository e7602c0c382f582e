"""ssh_exec, ssh_check, ssh_fanout, ssh_keyscan, ssh_hosts and the inventory resources (docs/tools.md)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult
from pydantic import Field

from relay_shell.errors import InvalidInput, LimitReached
from relay_shell.governance.bounds import Clamped, clamp_count, clamp_output, clamp_timeout
from relay_shell.governance.call import Call, Outcome, Plan, TargetGroup
from relay_shell.guidance import tool_description
from relay_shell.services import LazyPool, Services
from relay_shell.ssh.inventory import HostSpec, split_hosts
from relay_shell.ssh.targets import parse_target
from relay_shell.tools.base import (
    READ_ONLY,
    READ_ONLY_REMOTE,
    RUNS_REMOTE,
    ConfirmToken,
    Listing,
    NoArguments,
    listing_plan,
    run_tool,
)
from relay_shell.tools.hosts import (
    Host,
    HostArguments,
    Hosts,
    Jump,
    KeyPath,
    KnownHosts,
    Port,
    User,
    host_targets,
    resolve_host,
    resolve_many,
)
from relay_shell.tools.models import ExecResult, FanoutResult, HostCheckResult, HostsResult, KeyscanResult
from relay_shell.tools.shape import MORE_OUTPUT, bound_notes, exec_outcome
from relay_shell.vocabulary import Tier

if TYPE_CHECKING:
    from relay_shell.ssh.fanout import FanoutHostResult

# The SSH layer (asyncssh) is imported inside executors and by LazyPool, on first use: answering
# initialize or tools/list never pays for it.

DEFAULT_KEY_TYPES = "ssh-ed25519,ecdsa-sha2-nistp256,rsa-sha2-512"
MAX_KEYSCAN_HOSTS = 256


# --- ssh_exec -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SshExec:
    """ssh_exec's arguments."""

    target: HostArguments
    command: str
    timeout: float | None
    max_output: int | None
    stdin: str


@dataclass(frozen=True)
class RemoteRun:
    """A validated remote command: where, what, its deadline and its output budget."""

    pool: LazyPool
    spec: HostSpec
    command: str
    stdin: str
    timeout: Clamped[float]
    budget: Clamped[int]


async def execute_ssh_exec(run: RemoteRun, call: Call) -> Outcome:
    """Run the command on its host to its end (or its deadline) and shape its report."""
    from relay_shell.ssh.remote_exec import run_remote

    async def progress(elapsed: float, produced: int) -> None:
        await call.report(elapsed, None, f"{elapsed:.0f} s elapsed, {produced} bytes of output")

    report = await run_remote(
        run.pool.get(), run.spec, run.command, timeout_s=run.timeout.value, budget=run.budget.value,
        stdin=run.stdin.encode() if run.stdin else None, on_progress=progress,
    )  # fmt: skip
    outcome = exec_outcome(report, run.timeout.value)
    outcome.audit_extra["known_hosts"] = run.spec.known_hosts.value
    return outcome


def plan_ssh_exec(request: SshExec, svc: Services) -> Plan[RemoteRun]:
    if not request.command.strip():
        raise InvalidInput("command", "must not be empty")
    wait, budget = (
        clamp_timeout(request.timeout, svc.settings),
        clamp_output(request.max_output, svc.settings),
    )
    spec = resolve_host(svc, request.target)
    return Plan(
        execute_ssh_exec,
        RemoteRun(svc.pool, spec, request.command, request.stdin, wait, budget),
        text="\n".join(p for p in (request.command, request.stdin) if p),
        targets=host_targets(request.target.host, spec),
        timeout_s=wait.value,
        notes=bound_notes(wait, budget),
        confirm_summary=f"run `{request.command[:300]}` on {spec.display()}",
    )


async def ssh_exec(
    ctx: Context,
    host: Host,
    command: Annotated[str, Field(description="Run by the remote user's shell", max_length=1_000_000)],
    timeout: Annotated[float | None, Field(description="Seconds, connect time included")] = None,
    max_output: Annotated[int | None, Field(description="Output budget in bytes")] = None,
    stdin: str = "",
    user: User = "",
    port: Port = None,
    key_path: KeyPath = "",
    known_hosts: KnownHosts = "",
    jump: Jump = "",
    confirm_token: ConfirmToken = "",
) -> Annotated[CallToolResult, ExecResult]:
    target = HostArguments(host, user, port, key_path, known_hosts, jump)
    request = SshExec(target, command, timeout, max_output, stdin)
    return await run_tool(ctx, "ssh_exec", plan_ssh_exec, request)


# --- ssh_check ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SshCheck:
    """ssh_check's arguments."""

    hosts: str | list[str]
    timeout: float | None


@dataclass(frozen=True)
class Probe:
    """Validated hosts to probe, with the per-host deadline and the concurrency."""

    pool: LazyPool
    names: list[str]
    specs: list[HostSpec]
    timeout_s: float
    concurrency: int


async def execute_ssh_check(probe: Probe, call: Call) -> Outcome:
    from relay_shell.ssh.check import check_hosts

    results = await check_hosts(
        probe.pool.get(), probe.specs, timeout_s=probe.timeout_s, concurrency=probe.concurrency
    )
    rows: list[dict[str, object]] = []
    lines = []
    for name, result in zip(probe.names, results, strict=True):
        rows.append(
            {
                "host": name,
                "ok": result.ok,
                "reason": result.reason,
                "detail": result.detail,
                "latency_ms": result.latency_ms,
            }
        )
        status = (
            f"ok {result.latency_ms} ms" if result.ok else f"unreachable ({result.reason}): {result.detail}"
        )
        lines.append(f"{name}: {status}")
    ok_count = sum(1 for r in results if r.ok)
    text = f"{ok_count}/{len(results)} reachable\n" + "\n".join(lines)
    return Outcome(text=text, data={"hosts": rows, "ok": ok_count, "total": len(results)})


def plan_ssh_check(request: SshCheck, svc: Services) -> Plan[Probe]:
    wait = clamp_timeout(5.0 if request.timeout is None else request.timeout, svc.settings)
    names = resolve_many(svc, request.hosts, svc.settings.fanout_max_hosts)
    specs = [svc.inventory.resolve(name) for name in names]
    targets = [t for name, spec in zip(names, specs, strict=True) for t in host_targets(name, spec)]
    probe = Probe(svc.pool, names, specs, wait.value, svc.settings.fanout_max_concurrency)
    return Plan(
        execute_ssh_check,
        probe,
        tier=Tier.READ_ONLY,
        targets=targets,
        timeout_s=wait.value * max(1, len(names)),
    )


async def ssh_check(
    ctx: Context,
    hosts: Hosts = "",
    timeout: Annotated[float | None, Field(description="Seconds per host (default 5)")] = None,
) -> Annotated[CallToolResult, HostCheckResult]:
    return await run_tool(ctx, "ssh_check", plan_ssh_check, SshCheck(hosts, timeout))


# --- ssh_fanout -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SshFanout:
    """ssh_fanout's arguments."""

    command: str
    hosts: str | list[str]
    timeout: float | None
    concurrency: int
    max_output: int | None


@dataclass(frozen=True)
class Fleet:
    """A validated fan-out: the hosts in input order, the command, its bounds."""

    pool: LazyPool
    hosts: list[tuple[str, HostSpec]]
    command: str
    timeout_s: float
    concurrency: int
    budget: int


async def execute_ssh_fanout(fleet: Fleet, call: Call) -> Outcome:
    """Run on every admitted host; hosts the pipeline refused are reported ``denied``."""
    from relay_shell.ssh.fanout import fanout

    async def progress(done: int, total: int) -> None:
        await call.report(done, total, f"{done}/{total} hosts done")

    targets = [
        (name, None, call.denied_targets[name]) if name in call.denied_targets else (name, spec, None)
        for name, spec in fleet.hosts
    ]
    results = await fanout(
        fleet.pool.get(), targets, fleet.command, timeout_s=fleet.timeout_s, concurrency=fleet.concurrency,
        budget=fleet.budget, on_progress=progress,
    )  # fmt: skip
    return fanout_outcome(results, fleet.budget)


def plan_ssh_fanout(request: SshFanout, svc: Services) -> Plan[Fleet]:
    if not request.command.strip():
        raise InvalidInput("command", "must not be empty")
    settings = svc.settings
    wait, budget = clamp_timeout(request.timeout, settings), clamp_output(request.max_output, settings)
    width = clamp_count(request.concurrency, 16, settings.fanout_max_concurrency, argument="concurrency")
    names = resolve_many(svc, request.hosts, settings.fanout_max_hosts)
    hosts = [(name, svc.inventory.resolve(name)) for name in names]
    notes = bound_notes(wait, budget) + ([f"concurrency clamped to {width.value}"] if width.clamped else [])
    rounds = -(-len(names) // width.value)
    fleet = Fleet(svc.pool, hosts, request.command, wait.value, width.value, budget.value)
    return Plan(
        execute_ssh_fanout,
        fleet,
        text=request.command,
        per_target=[TargetGroup(name, host_targets(name, spec)) for name, spec in hosts],
        timeout_s=wait.value * rounds,
        notes=notes,
        confirm_summary=f"run `{request.command[:300]}` on {len(names)} hosts",
    )


async def ssh_fanout(
    ctx: Context,
    command: Annotated[str, Field(description="Run on every host", max_length=1_000_000)],
    hosts: Hosts = "",
    timeout: Annotated[float | None, Field(description="Seconds per host, connect included")] = None,
    concurrency: Annotated[int, Field(ge=1, description="Hosts in flight at once")] = 16,
    max_output: Annotated[int | None, Field(description="Output budget in bytes")] = None,
    confirm_token: ConfirmToken = "",
) -> Annotated[CallToolResult, FanoutResult]:
    request = SshFanout(command, hosts, timeout, concurrency, max_output)
    return await run_tool(ctx, "ssh_fanout", plan_ssh_fanout, request)


def fanout_outcome(rows: Sequence[FanoutHostResult], budget: int) -> Outcome:
    """Recap, grouped text (identical outputs once), per-host rows in input order."""
    from relay_shell.ssh.fanout import group_identical

    recap: dict[str, int] = {}
    for row in rows:
        recap[row.status] = recap.get(row.status, 0) + 1
    lines = [
        f"{len(rows)} hosts: " + ", ".join(f"{count} {status}" for status, count in sorted(recap.items()))
    ]
    for names, text in group_identical(rows):
        lines.append(f"{','.join(names)}: {text}")
    body = "\n".join(lines)
    cut = len(body.encode()) > budget
    if cut:
        body = (
            body.encode()[: budget - 64].decode("utf-8", errors="ignore")
            + "\n[... text cut to the output budget ...]"
        )
    if cut or any(r.truncated for r in rows):
        body += f"\nnote: output truncated (max_output is shared by all hosts); for the rest, {MORE_OUTPUT}"
    data: dict[str, object] = {
        "results": [
            {
                "host": r.host, "status": r.status, "exit_code": r.exit_code, "output": r.output,
                "truncated": r.truncated, "output_bytes": r.output_bytes, "stream_sha256": r.stream_sha256,
                "duration_ms": r.duration_ms, "reason": r.reason,
            }
            for r in rows
        ],
        "recap": recap,
    }  # fmt: skip
    failed = [r for r in rows if r.status != "ok"]
    return Outcome(
        text=body,
        data=data,
        exit_code=0 if not failed else 1,
        stream_len=sum(r.output_bytes for r in rows),
        truncated=any(r.truncated for r in rows),
        audit_extra={"recap": recap, "hosts": [r.host for r in rows]},
    )


# --- ssh_keyscan ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SshKeyscan:
    """ssh_keyscan's arguments."""

    hosts: str | list[str]
    port: int
    key_types: str
    timeout: float | None


@dataclass(frozen=True)
class Scan:
    """Validated hosts and key types to scan."""

    names: list[str]
    port: int
    key_types: list[str]
    timeout_s: float


async def execute_ssh_keyscan(scan: Scan, call: Call) -> Outcome:
    from relay_shell.ssh.keyscan import keyscan

    scanned = await keyscan(scan.names, port=scan.port, key_types=scan.key_types, timeout_s=scan.timeout_s)
    rows: list[dict[str, object]] = []
    lines = []
    for host, keys, error in scanned:
        rows.append({"host": host, "error": error, "keys": [
            {"key_type": k.key_type, "known_hosts_line": k.known_hosts_line, "fingerprint_sha256": k.fingerprint_sha256}
            for k in keys
        ]})  # fmt: skip
        if error:
            lines.append(f"# {host}: {error}")
        for key in keys:
            lines.append(f"{key.known_hosts_line}\n# {key.fingerprint_sha256}")
    return Outcome(text="\n".join(lines), data={"hosts": rows})


def plan_ssh_keyscan(request: SshKeyscan, svc: Services) -> Plan[Scan]:
    wait = clamp_timeout(10.0 if request.timeout is None else request.timeout, svc.settings)
    names = split_hosts(request.hosts)
    if not names:
        raise InvalidInput("hosts", "at least one host is required")
    if len(names) > MAX_KEYSCAN_HOSTS:
        raise LimitReached("ssh_keyscan hosts", MAX_KEYSCAN_HOSTS, f"{len(names)} hosts requested")
    for name in names:
        parse_target(name)
    types = [t.strip() for t in request.key_types.split(",") if t.strip()]
    if not types:
        raise InvalidInput("key_types", "at least one key type is required")
    scan = Scan(names, request.port, types, wait.value)
    return Plan(execute_ssh_keyscan, scan, tier=Tier.REVERSIBLE, targets=names, timeout_s=wait.value * 2)


async def ssh_keyscan(
    ctx: Context,
    hosts: Annotated[str | list[str], Field(description="Comma/space separated or a list")],
    port: Annotated[int, Field(ge=1, le=65535)] = 22,
    key_types: Annotated[
        str, Field(description="Comma-separated key algorithms", max_length=512)
    ] = DEFAULT_KEY_TYPES,
    timeout: Annotated[float | None, Field(description="Seconds per host (default 10)")] = None,
) -> Annotated[CallToolResult, KeyscanResult]:
    return await run_tool(ctx, "ssh_keyscan", plan_ssh_keyscan, SshKeyscan(hosts, port, key_types, timeout))


# --- ssh_hosts and the inventory resources --------------------------------------------------------


def spec_fields(spec: HostSpec) -> dict[str, object]:
    return {
        "alias": spec.alias, "hostname": spec.hostname, "user": spec.user, "port": spec.port,
        "identity_files": [str(p) for p in spec.identity_files], "known_hosts": spec.known_hosts.value,
        "jump": [hop.display() for hop in spec.jump], "tags": list(spec.tags), "source": spec.source,
    }  # fmt: skip


def host_line(spec: HostSpec) -> str:
    """One host in the text of ``ssh_hosts``: alias, user@host:port and the jump chain."""
    via = f" via {','.join(hop.display() for hop in spec.jump)}" if spec.jump else ""
    return f"{spec.alias}: {spec.display()}{via}"


def plan_ssh_hosts(request: NoArguments, svc: Services) -> Plan[Listing[HostSpec]]:
    return listing_plan(Listing("host", "hosts", svc.inventory.hosts, host_line, spec_fields))


async def ssh_hosts(ctx: Context) -> Annotated[CallToolResult, HostsResult]:
    return await run_tool(ctx, "ssh_hosts", plan_ssh_hosts, NoArguments())


def register(server: MCPServer, svc: Services) -> None:
    """Register the five tools and the inventory resources (which read ``svc.inventory``)."""
    inventory = svc.inventory
    server.add_tool(ssh_exec, description=tool_description("ssh_exec"), annotations=RUNS_REMOTE)
    server.add_tool(ssh_check, description=tool_description("ssh_check"), annotations=READ_ONLY_REMOTE)
    server.add_tool(ssh_fanout, description=tool_description("ssh_fanout"), annotations=RUNS_REMOTE)
    server.add_tool(ssh_keyscan, description=tool_description("ssh_keyscan"), annotations=READ_ONLY_REMOTE)
    server.add_tool(ssh_hosts, description=tool_description("ssh_hosts"), annotations=READ_ONLY)

    @server.resource("relay-shell://inventory", name="inventory", mime_type="application/json",
                     description="All hosts of the resolved inventory (ssh_config + JSON inventory).")  # fmt: skip
    def inventory_resource() -> str:
        return json.dumps([spec_fields(s) for s in inventory.hosts()], indent=2)

    @server.resource("relay-shell://inventory/{host}", name="inventory-host", mime_type="application/json",
                     description="One host's resolved connection spec.")  # fmt: skip
    def inventory_host_resource(host: str) -> str:
        return json.dumps(spec_fields(inventory.resolve(host)), indent=2)

    @server.resource("relay-shell://ssh-config", name="ssh-config", mime_type="application/json",
                     description="The ssh_config path in use and its Host aliases.")  # fmt: skip
    def ssh_config_resource() -> str:
        inventory_path = str(inventory.inventory_path) if inventory.inventory_path else None
        return json.dumps(
            {
                "path": str(inventory.ssh_config_path),
                "inventory": inventory_path,
                "aliases": inventory.aliases(),
            },
            indent=2,
        )
