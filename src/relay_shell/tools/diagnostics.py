"""server_info, audit_tail and the operating_guide prompt (SPEC §5.4, §11)."""

from __future__ import annotations

import getpass
import os
import shutil
from typing import TYPE_CHECKING, Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult
from pydantic import Field

import relay_shell
from relay_shell.governance.audit.tail import tail_records
from relay_shell.governance.audit.wiring import anchor_spec, kind_of
from relay_shell.governance.bounds import clamp_count
from relay_shell.governance.patterns import PATTERNS_VERSION
from relay_shell.governance.pipeline import Call, Outcome, Plan
from relay_shell.guidance import operating_guide as guide_text
from relay_shell.guidance import tool_description
from relay_shell.tools.base import READ_ONLY, identity_of, run_tool, services
from relay_shell.tools.models import AuditTailResult, ServerInfoResult

if TYPE_CHECKING:
    from relay_shell.app import Services

AUDIT_TAIL_MAX = 1000
ADMIN_TIER = 3


async def server_info(ctx: Context) -> Annotated[CallToolResult, ServerInfoResult]:
    svc = services(ctx)

    def planner() -> Plan:
        async def work(call: Call) -> Outcome:
            settings = svc.settings
            audit = svc.audit
            audit.check()
            data: dict[str, object] = {
                "version": relay_shell.__version__,
                "transport": settings.transport.value,
                "policy_mode": settings.policy_mode.value,
                "confirm_tier3": settings.confirm_tier3.value,
                "patterns_version": PATTERNS_VERSION,
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
            }
            lines = [
                f"relay-shell {data['version']} · {settings.transport.value} · policy {settings.policy_mode.value}",
                f"audit: {audit.path} ({'ok' if not audit.degraded else 'DEGRADED: ' + str(audit.last_error)})",
                f"limits: timeout {settings.default_timeout:g}/{settings.max_timeout:g} s, "
                f"output {settings.max_output}/{settings.max_output_hard} B, sessions {settings.max_sessions}",
                f"running as uid {os.geteuid()} ({getpass.getuser()}); counts: {data['counts']}",
            ]
            return Outcome(text="\n".join(lines), data=data)

        return Plan(work=work, tier=0)

    return await run_tool(ctx, "server_info", {}, planner)


async def audit_tail(
    ctx: Context,
    lines: Annotated[
        int | None, Field(description=f"How many records (1..{AUDIT_TAIL_MAX}), default 50")
    ] = None,
    tool: Annotated[str, Field(description="Only records of this tool", max_length=100)] = "",
    outcome: Annotated[
        str, Field(description="Only this outcome: ok, error, timeout, cancelled, denied")
    ] = "",
    min_tier: Annotated[
        int | None, Field(description="Only records at or above this tier (0-3)", ge=0, le=3)
    ] = None,
) -> Annotated[CallToolResult, AuditTailResult]:
    args = {"lines": lines, "tool": tool, "outcome": outcome, "min_tier": min_tier}
    svc = services(ctx)
    caller = identity_of(ctx)
    # An admin (no OAuth, or a token allowing tier 3) reads every record; any other principal
    # only its own calls' records.
    admin = caller.max_tier is None or caller.max_tier >= ADMIN_TIER
    own = None if admin else (caller.subject or "")

    def planner() -> Plan:
        count = clamp_count(lines, 50, AUDIT_TAIL_MAX, argument="lines")

        async def work(call: Call) -> Outcome:
            records = tail_records(
                svc.audit.path,
                count.value,
                tool=tool or None,
                outcome=outcome or None,
                min_tier=min_tier,
                principal=own,
            )
            text_lines = [
                f"{r.get('ts')} #{r.get('seq')} {r.get('tool')} tier {r.get('tier')} "
                f"{r.get('decision')}/{r.get('outcome')}"
                + (f" exit {r['exit_code']}" if r.get("exit_code") is not None else "")
                for r in records
            ]
            text = f"{len(records)} record(s) from {svc.audit.path}\n" + "\n".join(text_lines)
            return Outcome(
                text=text, data={"records": records, "count": len(records), "path": str(svc.audit.path)}
            )

        notes = [f"lines clamped to {AUDIT_TAIL_MAX}"] if count.clamped else []
        return Plan(work=work, tier=0, notes=notes)

    return await run_tool(ctx, "audit_tail", args, planner)


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
