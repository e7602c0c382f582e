"""server_info, audit_tail and the operating_guide prompt (docs/tools.md)."""

from __future__ import annotations

import getpass
import os
import shutil
from dataclasses import dataclass
from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult
from pydantic import Field

import relay_shell
from relay_shell.governance.audit.tail import tail_records
from relay_shell.governance.audit.wiring import anchor_spec, kind_of
from relay_shell.governance.bounds import clamp_count
from relay_shell.governance.call import Call, Outcome, Plan
from relay_shell.governance.patterns import PATTERNS_VERSION
from relay_shell.guidance import operating_guide as guide_text
from relay_shell.guidance import tool_description
from relay_shell.services import Services
from relay_shell.tools.base import READ_ONLY, NoArguments, identity_of, run_tool
from relay_shell.tools.models import AuditTailResult, ServerInfoResult
from relay_shell.tools.tasks_shared import TASK_GENERATIONS
from relay_shell.vocabulary import Tier

AUDIT_TAIL_MAX = 1000
ADMIN_TIER = 3


async def execute_server_info(svc: Services, call: Call) -> Outcome:
    settings = svc.settings
    audit = svc.audit
    audit.check()
    data: dict[str, object] = {
        "version": relay_shell.__version__,
        "transport": settings.transport.value,
        "policy_mode": settings.policy_mode.value,
        "confirm_tier3": settings.confirm_tier3.value,
        "patterns_version": PATTERNS_VERSION,
        "containment": svc.containment.mechanism,
        "limits": {
            "default_timeout": settings.default_timeout,
            "max_timeout": settings.max_timeout,
            "max_output": settings.max_output,
            "max_output_hard": settings.max_output_hard,
            "max_sessions": settings.max_sessions,
            "session_idle_timeout": settings.session_idle_timeout,
            "session_max_lifetime": settings.session_max_lifetime,
            "session_buffer_bytes": settings.session_buffer_bytes,
            "max_conns": settings.max_conns,
            "max_forwards": settings.max_forwards,
            "fanout_max_hosts": settings.fanout_max_hosts,
            "fanout_max_concurrency": settings.fanout_max_concurrency,
            "yield_after": settings.yield_after,
            "max_jobs": settings.max_jobs,
            "job_retention": settings.job_retention,
        },
        "audit": _audit_info(svc),
        "ssh": {
            "known_hosts": settings.ssh_known_hosts.value,
            "known_hosts_file": str(settings.ssh_known_hosts_file),
            "ssh_config": str(settings.ssh_config),
            "inventory": str(settings.inventory) if settings.inventory else None,
            "inventory_hosts": svc.inventory_size(),
            "connect_timeout": settings.ssh_connect_timeout,
        },
        "identity": {
            "uid": os.geteuid(),
            "user": getpass.getuser(),
            "root": os.geteuid() == 0,
            "sudo_available": shutil.which("sudo") is not None,
        },
        "counts": svc.counts(),
        "jobs": {"count": svc.jobs.counted(), "max": svc.jobs.limit},
        "tasks": list(TASK_GENERATIONS),
    }
    lines = [
        f"relay-shell {data['version']} · {settings.transport.value} · policy {settings.policy_mode.value}",
        f"audit: {audit.path} ({'ok' if not audit.degraded else 'DEGRADED: ' + str(audit.last_error)})",
        f"limits: timeout {settings.default_timeout:g}/{settings.max_timeout:g} s, "
        f"output {settings.max_output}/{settings.max_output_hard} B, sessions {settings.max_sessions}",
        f"running as uid {os.geteuid()} ({getpass.getuser()}); counts: {data['counts']}",
        f"containment: {svc.containment.mechanism} (whatever a call leaves running is killed)",
    ]
    return Outcome(text="\n".join(lines), data=data)


def plan_server_info(request: NoArguments, svc: Services) -> Plan[Services]:
    return Plan(execute_server_info, svc, tier=Tier.READ_ONLY)


async def server_info(ctx: Context) -> Annotated[CallToolResult, ServerInfoResult]:
    return await run_tool(ctx, "server_info", plan_server_info, NoArguments())


@dataclass(frozen=True)
class AuditTail:
    """audit_tail's arguments."""

    lines: int | None
    tool: str
    outcome: str
    min_tier: int | None
    principal: str | None = None
    """Set for a caller that is not an admin: only that principal's records are read."""


@dataclass(frozen=True)
class TailRead:
    """A validated read of the audit file's last records."""

    svc: Services
    count: int
    tool: str | None
    outcome: str | None
    min_tier: int | None
    principal: str | None


async def execute_audit_tail(read: TailRead, call: Call) -> Outcome:
    path = read.svc.audit.path
    records = tail_records(
        path,
        read.count,
        tool=read.tool,
        outcome=read.outcome,
        min_tier=read.min_tier,
        principal=read.principal,
    )
    text_lines = [
        f"{r.get('ts')} #{r.get('seq')} {r.get('tool')} tier {r.get('tier')} "
        f"{r.get('decision')}/{r.get('outcome')}"
        + (f" exit {r['exit_code']}" if r.get("exit_code") is not None else "")
        for r in records
    ]
    text = f"{len(records)} record(s) from {path}\n" + "\n".join(text_lines)
    return Outcome(text=text, data={"records": records, "count": len(records), "path": str(path)})


def plan_audit_tail(request: AuditTail, svc: Services) -> Plan[TailRead]:
    count = clamp_count(request.lines, 50, AUDIT_TAIL_MAX, argument="lines")
    read = TailRead(
        svc, count.value, request.tool or None, request.outcome or None, request.min_tier, request.principal
    )
    notes = [f"lines clamped to {AUDIT_TAIL_MAX}"] if count.clamped else []
    return Plan(execute_audit_tail, read, tier=Tier.READ_ONLY, notes=notes)


async def audit_tail(
    ctx: Context,
    lines: Annotated[
        int | None, Field(description=f"How many records (1..{AUDIT_TAIL_MAX}), default 50")
    ] = None,
    tool: Annotated[str, Field(description="Only records of this tool", max_length=100)] = "",
    outcome: Annotated[
        str, Field(description="Only this outcome: ok, error, timeout, cancelled, denied, running, failed")
    ] = "",
    min_tier: Annotated[
        int | None, Field(description="Only records at or above this tier (0-3)", ge=0, le=3)
    ] = None,
) -> Annotated[CallToolResult, AuditTailResult]:
    caller = identity_of(ctx)
    # An admin (no OAuth, or a token allowing tier 3) reads every record; any other principal
    # only its own calls' records.
    admin = caller.max_tier is None or caller.max_tier >= ADMIN_TIER
    request = AuditTail(lines, tool, outcome, min_tier, None if admin else (caller.subject or ""))
    return await run_tool(ctx, "audit_tail", plan_audit_tail, request)


def _audit_info(svc: Services) -> dict[str, object]:
    """The sink's state for server_info: health, chain head, anchor and ship channels."""
    settings, audit = svc.settings, svc.audit
    anchor, warning = anchor_spec(settings)
    status = audit.status()
    return {
        "path": str(audit.path),
        "format": settings.audit_format.value,
        "healthy": not audit.degraded,
        "state": status["state"],
        "last_error": audit.last_error,
        "chain": settings.audit_chain,
        "chain_head": audit.chain_head,
        "seq": audit.seq,
        "instance_id": status["instance_id"],
        "required": settings.audit_required,
        "anchor": kind_of(anchor),
        "anchor_status": status.get("anchor"),
        "ship": kind_of(settings.audit_ship),
        "ship_status": status.get("ship"),
        "warning": warning,
    }


def operating_guide() -> str:
    """The long-form tool-selection guide (RelayServer.get_prompt audits the fetch)."""
    return guide_text()


def register(server: MCPServer) -> None:
    server.add_tool(server_info, description=tool_description("server_info"), annotations=READ_ONLY)
    server.add_tool(audit_tail, description=tool_description("audit_tail"), annotations=READ_ONLY)
    server.prompt(
        name="operating_guide",
        description="How to pick relay-shell tools and read their results (the long form of the instructions).",
    )(operating_guide)
