"""ssh_exec, ssh_check, ssh_fanout, ssh_keyscan, ssh_hosts and the inventory resources (SPEC §5.2, §9)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult
from pydantic import Field

from relay_shell.app import Services
from relay_shell.capture import capture_fields, render_capture
from relay_shell.config import KnownHostsMode
from relay_shell.errors import InvalidInput, LimitReached
from relay_shell.governance.bounds import clamp_count, clamp_output, clamp_timeout
from relay_shell.governance.pipeline import Call, Outcome, Plan
from relay_shell.governance.policy import build_probe, decide
from relay_shell.guidance import tool_description
from relay_shell.policy.model import CallText
from relay_shell.ssh.inventory import ConnectOverrides, HostSpec, Inventory, split_hosts
from relay_shell.ssh.targets import parse_target
from relay_shell.tools.base import (
    READ_ONLY,
    READ_ONLY_REMOTE,
    RUNS_REMOTE,
    ConfirmToken,
    listing_plan,
    run_tool,
    services,
)
from relay_shell.tools.local import bound_notes
from relay_shell.tools.models import ExecResult, FanoutResult, HostCheckResult, HostsResult, KeyscanResult

if TYPE_CHECKING:
    from relay_shell.config import Settings
    from relay_shell.ssh.pool import ConnectionPool

# The SSH layer (asyncssh) is imported inside tool bodies and by LazyPool, on first use: answering
# initialize or tools/list never pays for it.

INVENTORY_KEY = "ssh_inventory"
POOL_KEY = "ssh_pool"
DEFAULT_KEY_TYPES = "ssh-ed25519,ecdsa-sha2-nistp256,rsa-sha2-512"
MAX_KEYSCAN_HOSTS = 256

Host = Annotated[
    str, Field(description="Inventory/ssh_config alias, host, user@host or user@host:port", max_length=512)
]
User = Annotated[str, Field(description="Override the login user", max_length=256)]
Port = Annotated[int | None, Field(ge=1, le=65535, description="Override the port")]
KeyPath = Annotated[str, Field(description="Override: private key file", max_length=4096)]
KnownHosts = Annotated[str, Field(description="Override: strict, accept-new or ignore", max_length=16)]
Jump = Annotated[
    str, Field(description="Override: jump host(s) user@host[:port], comma-separated chain", max_length=2048)
]
Hosts = Annotated[
    str | list[str],
    Field(description="Comma/space separated hosts or a list; empty = the whole inventory"),
]


def inventory_of(svc: Services) -> Inventory:
    return cast(Inventory, svc.extras[INVENTORY_KEY])


def pool_of(svc: Services) -> ConnectionPool:
    return cast(LazyPool, svc.extras[POOL_KEY]).get()


class LazyPool:
    """The shared :class:`ConnectionPool`, created (and asyncssh imported) on first :meth:`get`."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pool: ConnectionPool | None = None

    def get(self) -> ConnectionPool:
        if self._pool is None:
            from relay_shell.ssh.pool import ConnectionPool

            self._pool = ConnectionPool(self._settings)
        return self._pool

    def connections(self) -> int:
        """Open connections; 0 while the pool was never needed."""
        return 0 if self._pool is None else self._pool.stats().connections

    async def aclose(self) -> None:
        """Close the pool if it was ever created."""
        if self._pool is not None:
            await self._pool.aclose()


def overrides(user: str, port: int | None, key_path: str, known_hosts: str, jump: str) -> ConnectOverrides:
    """Validated connection overrides; an empty string means "not overridden"."""
    mode: KnownHostsMode | None = None
    if known_hosts:
        try:
            mode = KnownHostsMode(known_hosts)
        except ValueError:
            raise InvalidInput("known_hosts", "must be strict, accept-new or ignore") from None
    key = Path(key_path).expanduser() if key_path else None
    if key is not None and not key.is_file():
        raise InvalidInput("key_path", f"{key_path!r} is not a readable file")
    if jump:
        for hop in jump.split(","):
            parse_target(hop.strip())
    return ConnectOverrides(user=user or None, port=port, key_path=key, known_hosts=mode, jump=jump or None)


def resolve_host(
    svc: Services, host: str, user: str, port: int | None, key_path: str, known_hosts: str, jump: str
) -> HostSpec:
    """``host`` resolved through the inventory with the call's connection overrides (validated).

    Raises:
        InvalidInput: a bad override value, or a host that is neither an alias nor [user@]host[:port].
    """
    return inventory_of(svc).resolve(host, overrides(user, port, key_path, known_hosts, jump))


def host_targets(host: str, spec: HostSpec) -> list[str]:
    """What the deny list sees for one host: the name as given, the resolved name, the jump chain."""
    targets = [host, spec.hostname, spec.display()]
    targets.extend(hop.hostname for hop in spec.jump)
    return list(dict.fromkeys(targets))


def remote_outcome(
    display: str, fields: dict[str, object], text_body: str, exit_code: int | None, duration_ms: int
) -> Outcome:
    header = f"{display}: exit {exit_code} · {duration_ms / 1000:.2f} s"
    if fields.get("truncated"):
        header += f" · truncated ({fields['output_bytes']} bytes total)"
    data = {**fields, "exit_code": exit_code, "duration_ms": duration_ms, "host": display}
    return Outcome(
        text=f"{header}\n{text_body}",
        data=data,
        exit_code=exit_code,
        stream_sha256=cast(str, fields["stream_sha256"]),
        stream_len=cast(int, fields["output_bytes"]),
        truncated=bool(fields.get("truncated")),
    )


async def ssh_exec(
    ctx: Context,
    host: Host,
    command: Annotated[
        str, Field(description="The command line, run by the remote user's shell", max_length=1_000_000)
    ],
    timeout: Annotated[float | None, Field(description="Seconds, connect time included")] = None,
    max_output: Annotated[
        int | None, Field(description="Output budget in bytes, shared by stdout and stderr")
    ] = None,
    stdin: Annotated[str, Field(description="Text fed to the remote command's stdin")] = "",
    user: User = "",
    port: Port = None,
    key_path: KeyPath = "",
    known_hosts: KnownHosts = "",
    jump: Jump = "",
    confirm_token: ConfirmToken = "",
) -> Annotated[CallToolResult, ExecResult]:
    args = {
        "host": host, "command": command, "timeout": timeout, "max_output": max_output, "stdin": stdin,
        "user": user, "port": port, "key_path": key_path, "known_hosts": known_hosts, "jump": jump,
        "confirm_token": confirm_token,
    }  # fmt: skip
    svc = services(ctx)

    def planner() -> Plan:
        if not command.strip():
            raise InvalidInput("command", "must not be empty")
        wait, budget = clamp_timeout(timeout, svc.settings), clamp_output(max_output, svc.settings)
        spec = resolve_host(svc, host, user, port, key_path, known_hosts, jump)

        async def work(call: Call) -> Outcome:
            async def progress(elapsed: float, produced: int) -> None:
                await call.report(elapsed, None, f"{elapsed:.0f} s elapsed, {produced} bytes of output")

            from relay_shell.ssh.remote_exec import run_remote

            result = await run_remote(
                pool_of(svc), spec, command, timeout_s=wait.value, budget=budget.value,
                stdin=stdin.encode() if stdin else None, on_progress=progress,
            )  # fmt: skip
            fields = capture_fields(result.capture)
            outcome = remote_outcome(
                spec.display(), fields, render_capture(result.capture), result.exit_code, result.duration_ms
            )
            outcome.data["timeout_s"] = wait.value
            outcome.audit_extra["known_hosts"] = spec.known_hosts.value
            return outcome

        return Plan(
            work=work,
            text="\n".join(p for p in (command, stdin) if p),
            call=CallText(shell=command, stdin=stdin, remote=True),
            min_tier=0,
            targets=host_targets(host, spec),
            timeout_s=wait.value,
            notes=bound_notes(wait, budget),
            confirm_summary=f"run `{command[:300]}` on {spec.display()}",
        )

    return await run_tool(ctx, "ssh_exec", args, planner)


def resolve_many(svc: Services, hosts: str | list[str], limit: int, argument: str = "hosts") -> list[str]:
    names = split_hosts(hosts) if hosts else inventory_of(svc).aliases()
    if not names:
        raise InvalidInput(argument, "no hosts given and the inventory is empty")
    if len(names) > limit:
        raise LimitReached("RELAY_SHELL_FANOUT_MAX_HOSTS", limit, f"{len(names)} hosts requested")
    return names


async def ssh_check(
    ctx: Context,
    hosts: Hosts = "",
    timeout: Annotated[float | None, Field(description="Seconds per host (default 5)")] = None,
) -> Annotated[CallToolResult, HostCheckResult]:
    args = {"hosts": hosts, "timeout": timeout}
    svc = services(ctx)

    def planner() -> Plan:
        wait = clamp_timeout(5.0 if timeout is None else timeout, svc.settings)
        names = resolve_many(svc, hosts, svc.settings.fanout_max_hosts)
        inventory = inventory_of(svc)
        specs = [inventory.resolve(name) for name in names]

        async def work(call: Call) -> Outcome:
            from relay_shell.ssh.check import check_hosts

            results = await check_hosts(
                pool_of(svc), specs, timeout_s=wait.value, concurrency=svc.settings.fanout_max_concurrency
            )
            rows = []
            lines = []
            for name, result in zip(names, results, strict=True):
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
                    f"ok {result.latency_ms} ms"
                    if result.ok
                    else f"unreachable ({result.reason}): {result.detail}"
                )
                lines.append(f"{name}: {status}")
            ok_count = sum(1 for r in results if r.ok)
            text = f"{ok_count}/{len(results)} reachable\n" + "\n".join(lines)
            return Outcome(text=text, data={"hosts": rows, "ok": ok_count, "total": len(results)})

        targets = [t for name, spec in zip(names, specs, strict=True) for t in host_targets(name, spec)]
        return Plan(work=work, tier=0, targets=targets, timeout_s=wait.value * max(1, len(names)))

    return await run_tool(ctx, "ssh_check", args, planner)


async def ssh_fanout(
    ctx: Context,
    command: Annotated[str, Field(description="The command line, run on every host", max_length=1_000_000)],
    hosts: Hosts = "",
    timeout: Annotated[float | None, Field(description="Seconds per host, connect included")] = None,
    concurrency: Annotated[int, Field(ge=1, description="Hosts in flight at once")] = 16,
    max_output: Annotated[int | None, Field(description="Output budget in bytes shared by all hosts")] = None,
    confirm_token: ConfirmToken = "",
) -> Annotated[CallToolResult, FanoutResult]:
    args = {
        "command": command,
        "hosts": hosts,
        "timeout": timeout,
        "concurrency": concurrency,
        "max_output": max_output,
        "confirm_token": confirm_token,
    }
    svc = services(ctx)

    def planner() -> Plan:
        if not command.strip():
            raise InvalidInput("command", "must not be empty")
        settings = svc.settings
        wait, budget = clamp_timeout(timeout, settings), clamp_output(max_output, settings)
        width = clamp_count(concurrency, 16, settings.fanout_max_concurrency, argument="concurrency")
        names = resolve_many(svc, hosts, settings.fanout_max_hosts)
        inventory = inventory_of(svc)
        targets: list[tuple[str, HostSpec | None, str | None]] = []
        allowed_targets: list[str] = []
        for name in names:
            spec = inventory.resolve(name)
            probe = build_probe("ssh_fanout", command, host_targets(name, spec))
            decision = decide(svc.pipeline.policy, "ssh_fanout", 0, probe)  # deny list per host
            if decision.allowed:
                targets.append((name, spec, None))
                allowed_targets.extend(host_targets(name, spec))
            else:
                targets.append((name, None, decision.reason))

        async def work(call: Call) -> Outcome:
            async def progress(done: int, total: int) -> None:
                await call.report(done, total, f"{done}/{total} hosts done")

            from relay_shell.ssh.fanout import fanout

            results = await fanout(
                pool_of(svc), targets, command, timeout_s=wait.value, concurrency=width.value,
                budget=budget.value, on_progress=progress,
            )  # fmt: skip
            return fanout_outcome(results, budget.value)

        notes = bound_notes(wait, budget) + (
            [f"concurrency clamped to {width.value}"] if width.clamped else []
        )
        rounds = -(-len(names) // width.value)
        return Plan(
            work=work,
            text=command,
            call=CallText(shell=command, remote=True),
            min_tier=0,
            targets=allowed_targets,
            timeout_s=wait.value * rounds,
            notes=notes,
            confirm_summary=f"run `{command[:300]}` on {len(names)} hosts",
        )

    return await run_tool(ctx, "ssh_fanout", args, planner)


def fanout_outcome(results: Sequence[object], budget: int) -> Outcome:
    """Recap, grouped text (identical outputs once), per-host rows in input order."""
    from relay_shell.ssh.fanout import FanoutHostResult, group_identical

    rows = cast(Sequence[FanoutHostResult], results)
    recap: dict[str, int] = {}
    for row in rows:
        recap[row.status] = recap.get(row.status, 0) + 1
    lines = [
        f"{len(rows)} hosts: " + ", ".join(f"{count} {status}" for status, count in sorted(recap.items()))
    ]
    for names, text in group_identical(rows):
        lines.append(f"{','.join(names)}: {text}")
    body = "\n".join(lines)
    if len(body.encode()) > budget:
        body = (
            body.encode()[: budget - 64].decode("utf-8", errors="ignore")
            + "\n[... text cut to the output budget ...]"
        )
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


async def ssh_keyscan(
    ctx: Context,
    hosts: Annotated[
        str | list[str], Field(description="Host names or addresses to scan: comma/space separated or a list")
    ],
    port: Annotated[int, Field(ge=1, le=65535, description="SSH port to scan")] = 22,
    key_types: Annotated[
        str, Field(description="Comma-separated key algorithms", max_length=512)
    ] = DEFAULT_KEY_TYPES,
    timeout: Annotated[float | None, Field(description="Seconds per host (default 10)")] = None,
) -> Annotated[CallToolResult, KeyscanResult]:
    args = {"hosts": hosts, "port": port, "key_types": key_types, "timeout": timeout}
    svc = services(ctx)

    def planner() -> Plan:
        wait = clamp_timeout(10.0 if timeout is None else timeout, svc.settings)
        names = split_hosts(hosts)
        if not names:
            raise InvalidInput("hosts", "at least one host is required")
        if len(names) > MAX_KEYSCAN_HOSTS:
            raise LimitReached("ssh_keyscan hosts", MAX_KEYSCAN_HOSTS, f"{len(names)} hosts requested")
        for name in names:
            parse_target(name)
        types = [t.strip() for t in key_types.split(",") if t.strip()]
        if not types:
            raise InvalidInput("key_types", "at least one key type is required")

        async def work(call: Call) -> Outcome:
            from relay_shell.ssh.keyscan import keyscan

            scanned = await keyscan(names, port=port, key_types=types, timeout_s=wait.value)
            rows = []
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

        return Plan(work=work, tier=1, targets=names, timeout_s=wait.value * 2)

    return await run_tool(ctx, "ssh_keyscan", args, planner)


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


async def ssh_hosts(ctx: Context) -> Annotated[CallToolResult, HostsResult]:
    svc = services(ctx)

    def planner() -> Plan:
        return listing_plan("host", "hosts", lambda: inventory_of(svc).hosts(), host_line, spec_fields)

    return await run_tool(ctx, "ssh_hosts", {}, planner)


def register(server: MCPServer, svc: Services) -> None:
    inventory = Inventory.load(svc.settings)
    pool = LazyPool(svc.settings)
    svc.extras[INVENTORY_KEY] = inventory
    svc.extras[POOL_KEY] = pool
    svc.add_counter("inventory_hosts", lambda: len(inventory.hosts()))
    svc.add_counter("ssh_connections", pool.connections)
    svc.add_closer(pool.aclose)
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
