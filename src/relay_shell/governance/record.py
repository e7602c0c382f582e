"""The audit stage's record of one call, composed from the call's state (never its output body).

Arguments are audited as the client sent them, **bounded before they are redacted**: every
string is cut to :data:`MAX_AUDIT_STRING` characters and every list and mapping to
:data:`MAX_AUDIT_ITEMS` entries first, so redaction never scans a huge argument whole (an
unterminated private-key block left by the cut is redacted to its end).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from relay_shell.governance.call import Identity, Outcome, Reply
from relay_shell.governance.patterns import PATTERNS_VERSION
from relay_shell.governance.redaction import redact
from relay_shell.policy.model import Analysis
from relay_shell.vocabulary import AuditDecision, AuditOutcome, Confirmation, ErrorKind, Tier

MAX_AUDIT_STRING = 2048
MAX_AUDIT_ITEMS = 200
MAX_AUDIT_DEPTH = 8
MAX_TARGETS = 1000


@dataclass
class CallState:
    """What the stages learned about one call, read by the audit record and the metrics."""

    tool: str
    args: Mapping[str, object]
    """The arguments as sent (audited)."""
    binding: Mapping[str, object]
    """The arguments with defaults resolved (what a confirmation token is bound to)."""
    identity: Identity
    tier: Tier | None = None
    targets: list[str] = field(default_factory=list)
    decision: AuditDecision = AuditDecision.ALLOWED
    rule: str | None = None
    pattern: str | None = None
    outcome_kind: AuditOutcome = AuditOutcome.ERROR
    error_kind: ErrorKind | None = None
    error_message: str | None = None
    confirmation: Confirmation | None = None
    outcome: Outcome | None = None
    stream_sha256: str | None = None
    stream_len: int | None = None
    denied_targets: dict[str, str] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)
    audited_args: object = None
    """The arguments already bounded and redacted (done off the loop for large ones), or None."""
    call_id: str | None = None
    """Server-made id of a call above tier 0: on its record, its job's ``job_end`` and a yielded result."""
    started: float = 0.0
    """``time.monotonic()`` when the call began (a job's end record measures from here)."""
    analysis: Analysis | None = None
    """The parse of the call's text (its commands, rules and opaque flag are audited)."""


def compose_record(
    state: CallState, reply: Reply | None, duration_s: float, policy_mode: str
) -> dict[str, object]:
    """The audit record of a finished call (the sink adds ``ts``, ``seq`` and the chain)."""
    text = reply.text if reply is not None else ""
    outcome = state.outcome
    record: dict[str, object] = {
        "tool": state.tool,
        "tier": None if state.tier is None else int(state.tier),
        "decision": state.decision.value,
        "outcome": state.outcome_kind.value,
        "args": scrubbed(state.args) if state.audited_args is None else state.audited_args,
        "target": _target_field(state.targets),
        "exit_code": outcome.exit_code if outcome else None,
        "duration_ms": round(duration_s * 1000),
        "output_sha256": hashlib.sha256(text.encode()).hexdigest() if reply is not None else None,
        "output_len": len(text.encode()) if reply is not None else 0,
        "stream_sha256": outcome.stream_sha256 if outcome else state.stream_sha256,
        "stream_len": outcome.stream_len if outcome else state.stream_len,
        "request_id": state.identity.request_id,
        "client_id": state.identity.client_id,
        "principal": state.identity.subject,
        "policy_mode": policy_mode,
        "rule": state.rule,
        "pattern": state.pattern,
        "patterns_version": PATTERNS_VERSION,
    }
    if state.call_id is not None:
        record["call_id"] = state.call_id
    if state.error_kind:
        record["error_kind"] = state.error_kind.value
        record["error"] = scrubbed(state.error_message or "")
    if state.confirmation:
        record["confirmation"] = state.confirmation.value
    if state.denied_targets:
        record["denied_targets"] = bounded(sorted(state.denied_targets))
    if state.analysis is not None:
        record["opaque"] = state.analysis.opaque
        record["commands"] = bounded(list(state.analysis.names))  # command names, not their arguments
        record["rules"] = bounded(list(state.analysis.rules))
    extras = dict(state.extra)
    if outcome and outcome.audit_extra:
        extras.update(outcome.audit_extra)
    if extras:
        extra = scrubbed(extras)
        if isinstance(extra, dict):
            record.update(extra)
    return record


def scrubbed(value: object) -> object:
    """``value`` bounded, then redacted: what an audit record may carry of a caller's data."""
    return redact(bounded(value))


def text_size(value: object, depth: int = 0) -> int:
    """Characters of text in ``value`` (strings, keys, nested), to decide where to redact it."""
    if isinstance(value, str):
        return len(value)
    if depth >= MAX_AUDIT_DEPTH:
        return 0
    if isinstance(value, Mapping):
        return sum(len(str(key)) + text_size(item, depth + 1) for key, item in value.items())
    if isinstance(value, list | tuple):
        return sum(text_size(item, depth + 1) for item in value)
    return 0


def bounded(value: object, limit: int = MAX_AUDIT_STRING, depth: int = 0) -> object:
    """``value`` with every string cut to ``limit`` characters and every list and mapping to
    :data:`MAX_AUDIT_ITEMS` entries (audit records never carry bulk data)."""
    if isinstance(value, str):
        if len(value) > limit:
            return value[:limit] + f"...[{len(value) - limit} more chars]"
        return value
    if depth >= MAX_AUDIT_DEPTH and isinstance(value, Mapping | list | tuple):
        return "[nested too deep]"
    if isinstance(value, Mapping):
        items = list(value.items())
        kept = {str(key)[:limit]: bounded(item, limit, depth + 1) for key, item in items[:MAX_AUDIT_ITEMS]}
        if len(items) > MAX_AUDIT_ITEMS:
            kept["..."] = f"[{len(items) - MAX_AUDIT_ITEMS} more keys]"
        return kept
    if isinstance(value, list | tuple):
        kept_items = [bounded(item, limit, depth + 1) for item in value[:MAX_AUDIT_ITEMS]]
        if len(value) > MAX_AUDIT_ITEMS:
            kept_items.append(f"...[{len(value) - MAX_AUDIT_ITEMS} more items]")
        return kept_items
    return value


def _target_field(targets: Sequence[str]) -> object:
    if not targets:
        return None
    if len(targets) == 1:
        return targets[0]
    return list(targets[:MAX_TARGETS])
