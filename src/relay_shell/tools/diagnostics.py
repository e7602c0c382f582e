"""server_info, audit_tail and the operating_guide prompt (docs/tools.md)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult
from pydantic import Field

from relay_shell.governance.audit.tail import tail_records
from relay_shell.governance.bounds import clamp_count
from relay_shell.governance.call import Call, Outcome, Plan
from relay_shell.guidance import operating_guide as guide_text
from relay_shell.guidance import tool_description
from relay_shell.services import Services
from relay_shell.tools.base import READ_ONLY, NoArguments, identity_of, run_tool
from relay_shell.tools.models import AuditTailResult, ServerInfoResult
from relay_shell.tools.server_info import describe, is_admin
from relay_shell.vocabulary import Tier

AUDIT_TAIL_MAX = 1000
LINE_DETAIL_CHARS = 240
"""What one audit_tail line shows of a record's arguments and target, at most."""
MAIN_ARGUMENTS = ("command", "script", "data", "keys", "spec", "uri", "name")
"""Arguments shown first and bare when a record has them: what the call ran or read."""
ERROR_CHARS = 120
"""What one audit_tail line shows of a failed call's (redacted) error message, at most."""
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
SINK_KINDS = frozenset({"header", "tamper", "recovery"})
"""Records the audit sink writes about itself."""


async def execute_server_info(svc: Services, call: Call) -> Outcome:
    """The server's policy, limits and state; the deny/allow regexes only to an admin principal."""
    return describe(svc, call.identity)


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
    text = f"{len(records)} record(s) from {path}\n" + "\n".join(record_line(r) for r in records)
    return Outcome(text=text, data={"records": records, "count": len(records), "path": str(path)})


def record_line(record: dict[str, object]) -> str:
    """One record as a line: when, which tool, tier, decision/outcome, then what it ran or read.

    The arguments (and a failure's error message) are the record's own, redacted when it
    was written; each line shows at most :data:`LINE_DETAIL_CHARS` of them and
    :data:`ERROR_CHARS` of the error, on one line (newlines shown as ``\\n``).
    """
    kind = record.get("kind")
    if kind in SINK_KINDS:  # the audit sink's own records: a file's header, a tamper, a recovery
        facts = {
            key: record.get(key) for key in ("reason", "instance_id", "pid", "lost_records") if key in record
        }
        return f"{record.get('ts')} #{record.get('seq')} audit {kind}: " + _bounded(
            _one_line(json.dumps(facts)), LINE_DETAIL_CHARS
        )
    tier = record.get("tier")
    phase = f" {record['phase']}" if isinstance(record.get("phase"), str) else ""
    head = (
        f"{record.get('ts')} #{record.get('seq')} {record.get('tool')}{phase} tier {'-' if tier is None else tier} "
        f"{record.get('decision')}/{record.get('outcome')}"
    )
    if record.get("exit_code") is not None:
        head += f" exit {record['exit_code']}"
    if record.get("rule"):
        head += f" rule {record['rule']}"
    detail = _bounded(_arguments_text(record.get("args"), record.get("target")), LINE_DETAIL_CHARS)
    line = f"{head}: {detail}" if detail else head
    error = record.get("error")
    if isinstance(error, str) and error:
        line += f" [{_bounded(_one_line(error), ERROR_CHARS)}]"
    return line


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _arguments_text(args: object, target: object) -> str:
    """The main argument bare (the command), the others as ``name=value``, then the target."""
    if isinstance(args, str):  # CEF and LEEF records carry args as JSON text
        text = args
        try:
            args = json.loads(text)
        except ValueError:
            return _one_line(text)
    if not isinstance(args, dict):
        args = {}
    main = [
        _one_line(_value_text(args[name])) for name in MAIN_ARGUMENTS if args.get(name) not in (None, "", [])
    ]
    rest = [
        f"{name}={_one_line(_value_text(value))}"
        for name, value in args.items()
        if name not in MAIN_ARGUMENTS and value not in (None, "", [], {})
    ]
    parts = [" ".join(main)] if main else []
    if rest:
        parts.append(f"({', '.join(rest)})")
    shown = " ".join(parts)
    targets = target if isinstance(target, list) else [target] if target else []
    missing = [str(item) for item in targets if str(item) not in shown]
    if missing:
        shown += f" -> {', '.join(missing)}"
    return shown.strip()


def _value_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _one_line(text: str) -> str:
    """``text`` on one line: newlines as ``\\n``, other control characters as ``\\xNN`` (tabs kept)."""
    return _CONTROL.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\r": "\\r"}.get(char, f"\\x{ord(char):02x}")


def plan_audit_tail(request: AuditTail, svc: Services) -> Plan[TailRead]:
    count = clamp_count(request.lines, 50, AUDIT_TAIL_MAX, argument="lines")
    read = TailRead(
        svc, count.value, request.tool or None, request.outcome or None, request.min_tier, request.principal
    )
    notes = [f"lines clamped to {AUDIT_TAIL_MAX}"] if count.clamped else []
    return Plan(execute_audit_tail, read, tier=Tier.READ_ONLY, notes=notes)


async def audit_tail(
    ctx: Context,
    lines: Annotated[int | None, Field(description=f"1..{AUDIT_TAIL_MAX} (default 50)")] = None,
    tool: Annotated[str, Field(max_length=100)] = "",
    outcome: Annotated[
        str, Field(description="ok, error, timeout, cancelled, denied, running or failed")
    ] = "",
    min_tier: Annotated[int | None, Field(ge=0, le=3)] = None,
) -> Annotated[CallToolResult, AuditTailResult]:
    caller = identity_of(ctx)
    # An admin (no OAuth, or a token allowing tier 3) reads every record; any other principal
    # only its own calls' records.
    request = AuditTail(lines, tool, outcome, min_tier, None if is_admin(caller) else (caller.subject or ""))
    return await run_tool(ctx, "audit_tail", plan_audit_tail, request)


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
