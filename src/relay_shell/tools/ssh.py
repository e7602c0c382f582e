"""ssh_exec, ssh_check, ssh_fanout and ssh_keyscan (docs/tools.md); registers ssh_hosts and the
inventory resources of ``tools/inventory.py`` with them.

Every tool that takes several hosts reads them as a host pattern (``relay_shell.ssh.hostpatterns``);
ssh_fanout rolls out under batches, a failure budget and canaries (``relay_shell.ssh.fleet``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult
from pydantic import Field

from relay_shell.errors import InvalidInput, LimitReached
from relay_shell.governance.bounds import (
    Clamped,
    clamp_count,
    clamp_output,
    clamp_timeout,
    yield_after_seconds,
)
from relay_shell.governance.call import Background, Call, Identity, Outcome, Plan, TargetGroup
from relay_shell.guidance import tool_description
from relay_shell.policy.model import CallText
from relay_shell.services import LazyPool, Services
from relay_shell.ssh.fleet import FanoutHistory, Rollout, plan_rollout
from relay_shell.ssh.fleet_report import CUT_MARKER
from relay_shell.ssh.hostpatterns import split_terms
from relay_shell.ssh.inventory import HostSpec
from relay_shell.ssh.selection import all_configured, keyscan_addresses, resolve_selected
from relay_shell.tools.base import (
    READ_ONLY,
    READ_ONLY_REMOTE,
    RUNS_REMOTE,
    ConfirmToken,
    YieldAfter,
    identity_of,
    run_tool,
)
from relay_shell.tools.fleet import (
    Batch,
    Canary,
    Concurrency,
    MaxFail,
    notes_room,
    record_history,
    rollout_outcome,
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
from relay_shell.tools.inventory import register_inventory_resources, ssh_hosts
from relay_shell.tools.models import ExecResult, FanoutResult, HostCheckResult, KeyscanResult
from relay_shell.tools.shape import MORE_OUTPUT, bound_notes, exec_outcome
from relay_shell.vocabulary import Tier

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
    yield_after: float | None = None


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
    """Run the command on its host to its end (or its deadline) and shape its report.

    The classifier's ``exec_env`` (a tier-0 ``git``: code-running configuration off) is
    exported by the remote shell before the command.
    """
    from relay_shell.ssh.remote_exec import run_remote

    async def progress(elapsed: float, produced: int) -> None:
        await call.report(elapsed, None, f"{elapsed:.0f} s elapsed, {produced} bytes of output")

    report = await run_remote(
        run.pool.get(), run.spec, remote_text(run.command, call), timeout_s=run.timeout.value,
        budget=run.budget.value, stdin=run.stdin.encode() if run.stdin else None, on_progress=progress,
        tap=call.tap,
    )  # fmt: skip
    outcome = exec_outcome(report, run.timeout.value)
    outcome.audit_extra["known_hosts"] = run.spec.known_hosts.value
    return outcome


def remote_text(command: str, call: Call) -> str:
    """``command`` with the environment the classifier requires for it (see ``with_environment``)."""
    from relay_shell.ssh.remote_exec import with_environment

    env = call.analysis.exec_env if call.analysis is not None else {}
    return with_environment(command, env) if env else command


def plan_ssh_exec(request: SshExec, svc: Services) -> Plan[RemoteRun]:
    if not request.command.strip():
        raise InvalidInput("command", "must not be empty")
    wait, budget = (
        clamp_timeout(request.timeout, svc.settings),
        clamp_output(request.max_output, svc.settings),
    )
    after_s = yield_after_seconds(request.yield_after, svc.settings)
    spec = resolve_host(svc, request.target)
    return Plan(
        execute_ssh_exec,
        RemoteRun(svc.pool, spec, request.command, request.stdin, wait, budget),
        text="\n".join(p for p in (request.command, request.stdin) if p),
        call=CallText(shell=request.command, stdin=request.stdin, remote=True),
        min_tier=Tier.READ_ONLY,
        targets=host_targets(request.target.host, spec),
        timeout_s=wait.value,
        notes=bound_notes(wait, budget),
        confirm_summary=f"run `{request.command[:300]}` on {spec.display()}",
        background=Background(after_s, request.command[:200], spec.display(), True, budget.value),
    )


async def ssh_exec(
    ctx: Context,
    host: Host,
    command: Annotated[str, Field(max_length=1_000_000)],
    timeout: Annotated[float | None, Field(description="Seconds, connect included")] = None,
    max_output: Annotated[int | None, Field(description="Output budget in bytes")] = None,
    stdin: str = "",
    user: User = "",
    port: Port = None,
    key_path: KeyPath = "",
    known_hosts: KnownHosts = "",
    jump: Jump = "",
    yield_after: YieldAfter = None,
    confirm_token: ConfirmToken = "",
) -> Annotated[CallToolResult, ExecResult]:
    target = HostArguments(host, user, port, key_path, known_hosts, jump)
    request = SshExec(target, command, timeout, max_output, stdin, yield_after)
    return await run_tool(ctx, "ssh_exec", plan_ssh_exec, request)


# --- ssh_check ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SshCheck:
    """ssh_check's arguments."""

    hosts: str | list[str]
    timeout: float | None
    fresh: bool
    caller: Identity


@dataclass(frozen=True)
class Probe:
    """Validated hosts to probe, with the per-host deadline, the concurrency and the dial mode."""

    pool: LazyPool
    names: list[str]
    specs: list[HostSpec]
    timeout_s: float
    concurrency: int
    fresh: bool


async def execute_ssh_check(probe: Probe, call: Call) -> Outcome:
    from relay_shell.ssh.check import check_hosts

    results = await check_hosts(
        probe.pool.get(), probe.specs, timeout_s=probe.timeout_s, concurrency=probe.concurrency,
        fresh=probe.fresh,
    )  # fmt: skip
    rows: list[dict[str, object]] = []
    lines = []
    for name, result in zip(probe.names, results, strict=True):
        rows.append(
            {
                "host": name, "ok": result.ok, "reason": result.reason, "detail": result.detail,
                "latency_ms": result.latency_ms, "reused": result.reused if result.ok else None,
            }
        )  # fmt: skip
        if result.ok:
            status = f"ok {result.latency_ms} ms" + (" (pooled connection)" if result.reused else "")
        else:
            status = f"unreachable ({result.reason}): {result.detail}"
        lines.append(f"{name}: {status}")
    ok_count = sum(1 for r in results if r.ok)
    text = f"{ok_count}/{len(results)} reachable\n" + "\n".join(lines)
    return Outcome(text=text, data={"hosts": rows, "ok": ok_count, "total": len(results)})


def plan_ssh_check(request: SshCheck, svc: Services) -> Plan[Probe]:
    """Tier 0 when every host is an inventory or ssh_config host on its configured port and
    route; any other host or port is a probe of the caller's own (tier 1)."""
    wait = clamp_timeout(5.0 if request.timeout is None else request.timeout, svc.settings)
    names = resolve_many(svc, request.hosts, request.caller)
    specs = [resolve_selected(svc.inventory, name) for name in names]
    targets = [t for name, spec in zip(names, specs, strict=True) for t in host_targets(name, spec)]
    width = svc.settings.fanout_max_concurrency
    probe = Probe(svc.pool, names, specs, wait.value, width, request.fresh)
    return Plan(
        execute_ssh_check,
        probe,
        tier=Tier.READ_ONLY if all_configured(svc.inventory, specs) else Tier.REVERSIBLE,
        targets=targets,
        timeout_s=wait.value * -(-len(names) // width),
    )


async def ssh_check(
    ctx: Context,
    hosts: Hosts = "",
    timeout: Annotated[float | None, Field(description="Seconds per host (default 5)")] = None,
    fresh: bool = False,
) -> Annotated[CallToolResult, HostCheckResult]:
    return await run_tool(ctx, "ssh_check", plan_ssh_check, SshCheck(hosts, timeout, fresh, identity_of(ctx)))


# --- ssh_fanout -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SshFanout:
    """ssh_fanout's arguments."""

    command: str
    hosts: str | list[str]
    timeout: float | None
    concurrency: int
    max_output: int | None
    batch: int | str | None
    max_fail: int | str | None
    canary: int
    caller: Identity
    yield_after: float | None = None


@dataclass(frozen=True)
class Fleet:
    """A validated fan-out: the hosts in input order, the command, its bounds, its rollout."""

    pool: LazyPool
    hosts: list[tuple[str, HostSpec]]
    command: str
    timeout_s: float
    concurrency: int
    budget: int
    rollout: tuple[int | str | None, int | str | None, int]  # batch, max_fail, canary as given
    history: FanoutHistory
    fanout_id: str
    text_budget: int  # the budget less what the notes will add to the text


async def execute_ssh_fanout(fleet: Fleet, call: Call) -> Outcome:
    """Roll out over the admitted hosts; hosts the pipeline refused are reported ``denied``.

    Each host's shell exports the classifier's ``exec_env`` before the command, as ssh_exec's.
    """
    from relay_shell.ssh.fanout import FanoutHostResult, group_text, run_fanout

    async def progress(done: int, total: int) -> None:
        if call.tap is not None:  # a job's live stream shows how far the fan-out is
            call.tap.stdout(f"{done}/{total} hosts done\n".encode())
        await call.report(done, total, f"{done}/{total} hosts done")

    targets = [
        (name, None, call.denied_targets[name]) if name in call.denied_targets else (name, spec, None)
        for name, spec in fleet.hosts
    ]
    # Percentages are of the hosts that will run: only now is it known which ones the policy refused.
    rollout = plan_rollout(*fleet.rollout, sum(1 for _, spec, _ in targets if spec is not None))
    report = await run_fanout(
        fleet.pool.get(), targets, remote_text(fleet.command, call), timeout_s=fleet.timeout_s,
        concurrency=fleet.concurrency, budget=fleet.budget, rollout=rollout, on_progress=progress,
    )  # fmt: skip
    record_history(fleet.history, fleet.fanout_id, report.results, call.identity.subject)
    outcome = rollout_outcome(
        fanout_id=fleet.fanout_id, rows=report.results, batches=report.batches, rollout=rollout,
        abort_reason=report.reason, detail=group_text, fields=FanoutHostResult.fields, budget=fleet.text_budget,
    )  # fmt: skip
    outcome.stream_len = sum(row.output_bytes for row in report.results)
    outcome.truncated = any(row.truncated for row in report.results)
    if outcome.truncated or outcome.text.endswith(CUT_MARKER):
        outcome.text += (
            f"\nnote: output truncated (max_output is shared by all hosts); for the rest, {MORE_OUTPUT}"
        )
    return outcome


def plan_ssh_fanout(request: SshFanout, svc: Services) -> Plan[Fleet]:
    if not request.command.strip():
        raise InvalidInput("command", "must not be empty")
    settings = svc.settings
    wait, budget = clamp_timeout(request.timeout, settings), clamp_output(request.max_output, settings)
    width = clamp_count(request.concurrency, 16, settings.fanout_max_concurrency, argument="concurrency")
    names = resolve_many(svc, request.hosts, request.caller)
    hosts = [(name, resolve_selected(svc.inventory, name)) for name in names]
    arguments = (request.batch, request.max_fail, request.canary)
    rollout: Rollout = plan_rollout(*arguments, len(hosts))  # validated now; percentages again at run time
    notes = bound_notes(wait, budget) + ([f"concurrency clamped to {width.value}"] if width.clamped else [])
    fleet = Fleet(
        svc.pool, hosts, request.command, wait.value, width.value, budget.value, arguments, svc.fanout_history,
        svc.fanout_history.new_id(), budget.value - notes_room(notes),
    )  # fmt: skip
    after_s = yield_after_seconds(request.yield_after, settings)
    return Plan(
        execute_ssh_fanout,
        fleet,
        text=request.command,
        call=CallText(shell=request.command, remote=True),
        min_tier=Tier.READ_ONLY,
        per_target=[TargetGroup(name, host_targets(name, spec)) for name, spec in hosts],
        timeout_s=wait.value * rollout.rounds(len(hosts), width.value),
        notes=notes,
        confirm_summary=f"run `{request.command[:300]}` on {len(names)} hosts",
        background=Background(after_s, request.command[:200], f"{len(names)} hosts", False, budget.value),
    )


async def ssh_fanout(
    ctx: Context,
    command: Annotated[str, Field(max_length=1_000_000)],
    hosts: Hosts = "",
    timeout: Annotated[float | None, Field(description="Seconds per host, connect included")] = None,
    concurrency: Concurrency = 16,
    max_output: Annotated[int | None, Field(description="Output budget in bytes")] = None,
    batch: Batch = None,
    max_fail: MaxFail = None,
    canary: Canary = 0,
    yield_after: YieldAfter = None,
    confirm_token: ConfirmToken = "",
) -> Annotated[CallToolResult, FanoutResult]:
    request = SshFanout(
        command,
        hosts,
        timeout,
        concurrency,
        max_output,
        batch,
        max_fail,
        canary,
        identity_of(ctx),
        yield_after,
    )
    return await run_tool(ctx, "ssh_fanout", plan_ssh_fanout, request)


# --- ssh_keyscan ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SshKeyscan:
    """ssh_keyscan's arguments."""

    hosts: str | list[str]
    port: int | None
    key_types: str
    timeout: float | None
    caller: Identity


@dataclass(frozen=True)
class Scan:
    """Validated hosts and key types to scan: ``names`` as given, ``addresses`` as dialled."""

    names: list[str]
    addresses: list[str]
    port: int
    key_types: list[str]
    timeout_s: float


async def execute_ssh_keyscan(scan: Scan, call: Call) -> Outcome:
    from relay_shell.ssh.keyscan import keyscan

    scanned = await keyscan(
        scan.addresses, port=scan.port, key_types=scan.key_types, timeout_s=scan.timeout_s
    )
    rows: list[dict[str, object]] = []
    lines = []
    for name, (_, keys, error) in zip(scan.names, scanned, strict=True):
        rows.append({"host": name, "error": error, "keys": [
            {"key_type": k.key_type, "known_hosts_line": k.known_hosts_line, "fingerprint_sha256": k.fingerprint_sha256}
            for k in keys
        ]})  # fmt: skip
        if error:
            lines.append(f"# {name}: {error}")
        for key in keys:
            lines.append(f"{key.known_hosts_line}\n# {key.fingerprint_sha256}")
    return Outcome(text="\n".join(lines), data={"hosts": rows})


def plan_ssh_keyscan(request: SshKeyscan, svc: Services) -> Plan[Scan]:
    """Aliases are scanned at their host and configured port (unless ``port`` is given)."""
    wait = clamp_timeout(10.0 if request.timeout is None else request.timeout, svc.settings)
    if not split_terms(request.hosts):
        raise InvalidInput("hosts", "at least one host is required")
    names = resolve_many(svc, request.hosts, request.caller)
    if len(names) > MAX_KEYSCAN_HOSTS:
        raise LimitReached("ssh_keyscan hosts", MAX_KEYSCAN_HOSTS, f"{len(names)} hosts requested")
    addresses, targets = keyscan_addresses(svc.inventory, names, request.port)
    types = [t.strip() for t in request.key_types.split(",") if t.strip()]
    if not types:
        raise InvalidInput("key_types", "at least one key type is required")
    scan = Scan(names, addresses, request.port or 22, types, wait.value)
    return Plan(execute_ssh_keyscan, scan, tier=Tier.REVERSIBLE, targets=targets, timeout_s=wait.value * 2)


async def ssh_keyscan(
    ctx: Context,
    hosts: str | list[str],
    port: Annotated[
        int | None, Field(ge=1, le=65535, description="Default: the alias's port, else 22")
    ] = None,
    key_types: Annotated[str, Field(max_length=512)] = DEFAULT_KEY_TYPES,
    timeout: Annotated[float | None, Field(description="Seconds per host (default 10)")] = None,
) -> Annotated[CallToolResult, KeyscanResult]:
    return await run_tool(
        ctx, "ssh_keyscan", plan_ssh_keyscan, SshKeyscan(hosts, port, key_types, timeout, identity_of(ctx))
    )


def register(server: MCPServer, svc: Services) -> None:
    """Register the five tools and the inventory resources (which read ``svc.inventory``)."""
    server.add_tool(ssh_exec, description=tool_description("ssh_exec"), annotations=RUNS_REMOTE)
    server.add_tool(ssh_check, description=tool_description("ssh_check"), annotations=READ_ONLY_REMOTE)
    server.add_tool(ssh_fanout, description=tool_description("ssh_fanout"), annotations=RUNS_REMOTE)
    server.add_tool(ssh_keyscan, description=tool_description("ssh_keyscan"), annotations=READ_ONLY_REMOTE)
    server.add_tool(ssh_hosts, description=tool_description("ssh_hosts"), annotations=READ_ONLY)

    register_inventory_resources(server, svc)
