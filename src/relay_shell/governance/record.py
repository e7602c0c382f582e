"""The audit stage's records of one call, composed from the call's state (never its output body).

A call above tier 0 gets a ``phase: start`` record before it runs (:func:`start_record`)
and a ``phase: end`` record after it, with the same ``call_id``; a tier-0 call, or one
refused before it could start, gets its only record (:func:`compose_record`). Every record
carries the parse's normalised command names, rules and opaque flag: redaction hides
values, never what ran.

Arguments are audited as the client sent them, **bounded before they are redacted**: every
string is cut to :data:`MAX_AUDIT_STRING` characters and every list and mapping to
:data:`MAX_AUDIT_ITEMS` entries first, so redaction never scans a huge argument whole (an
unterminated private-key block left by the cut is redacted to its end). Every value
redaction took out of the arguments is also taken out of what may echo them: the error
message, the targets and the tool's extras. The redaction rules
(``governance.redaction``) are loaded at the first record, not when the server starts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from relay_shell.governance.call import Identity, Outcome, Reply
from relay_shell.governance.patterns import PATTERNS_VERSION
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
    hidden_arguments: tuple[str, ...] = ()
    """Argument names whose values are secrets as a whole (:attr:`Plan.hidden_arguments`)."""
    removed: set[str] = field(default_factory=set)
    """What redaction took out of the arguments (hunted down where the record echoes them)."""
    call_id: str | None = None
    """Server-made id of a call above tier 0: on its records, its job's ``job_end`` and a yielded result."""
    start_written: bool = False
    """The call's ``phase: start`` record was written: its outcome is then its ``phase: end``."""
    started: float = 0.0
    """``time.monotonic()`` when the call began (a job's end record measures from here)."""
    analysis: Analysis | None = None
    """The parse of the call's text (its commands, rules and opaque flag below are audited)."""
    # What the classification saw: the parse's normalised command names, whether the text is
    # opaque to it (an interpreter, eval, an encoded payload), and the rules that set the tier.
    # Without a parse (a tool that runs no shell text) they stay empty and false.
    commands: tuple[str, ...] = ()
    opaque: bool = False
    rules: tuple[str, ...] = ()


def audit_arguments(state: CallState) -> None:
    """Bound and redact the arguments once (start and end records share them)."""
    if state.audited_args is not None:
        return
    from relay_shell.governance import redaction  # loaded at the first record

    kept = bounded(state.args)
    audited = redact(kept)
    if state.hidden_arguments and isinstance(audited, dict):
        audited = {
            key: redaction.REDACTED if key in state.hidden_arguments and value else value
            for key, value in audited.items()
        }
    state.audited_args = audited
    state.removed = redaction.removed_values(kept, state.audited_args)


def start_record(state: CallState, policy_mode: str) -> dict[str, object]:
    """The fields every record of the call carries: the start record (the sink adds ``phase``)."""
    audit_arguments(state)
    record: dict[str, object] = {
        "tool": state.tool,
        "tier": None if state.tier is None else int(state.tier),
        "decision": state.decision.value,
        "args": state.audited_args,
        "target": _echo_safe(state, _target_field(state.targets)),
        "opaque": state.opaque,
        "commands": _names_shown(state),
        "rules": bounded(list(state.rules)) if state.rules else [],
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
    return record


def compose_record(
    state: CallState, reply: Reply | None, duration_s: float, policy_mode: str
) -> dict[str, object]:
    """The record of a finished call: its ``phase: end`` record when its start was written (the
    sink adds ``phase``), else its only record (the sink adds ``ts``, ``seq`` and the chain)."""
    returned = reply.text.encode() if reply is not None else b""
    outcome = state.outcome
    record = start_record(state, policy_mode)
    record.update(
        {
            "outcome": state.outcome_kind.value,
            "exit_code": outcome.exit_code if outcome else None,
            "duration_ms": round(duration_s * 1000),
            "output_sha256": hashlib.sha256(returned).hexdigest() if reply is not None else None,
            "output_len": len(returned),
            "stream_sha256": outcome.stream_sha256 if outcome else state.stream_sha256,
            "stream_len": outcome.stream_len if outcome else state.stream_len,
        }
    )
    if state.error_kind:
        record["error_kind"] = state.error_kind.value
        record["error"] = _echo_safe(state, state.error_message or "")
    if state.confirmation:
        record["confirmation"] = state.confirmation.value
    if state.denied_targets:
        record["denied_targets"] = _echo_safe(state, sorted(state.denied_targets))
    extras = {**state.extra, **outcome.audit_extra} if outcome and outcome.audit_extra else state.extra
    if extras:
        extra = _echo_safe(state, extras)
        if isinstance(extra, dict):
            record.update(extra)
    return record


def _echo_safe(state: CallState, value: object) -> object:
    """A value that may echo the arguments: bounded, redacted, rid of what redaction removed."""
    if value is None:
        return None
    from relay_shell.governance import redaction  # loaded at the first record

    return redaction.scrub_removed(scrubbed(value), state.removed)


def _names_shown(state: CallState) -> list[str]:
    """The parse's command names, each only where the redacted arguments show it.

    A name is a word of the caller's text: when the text is not shell (a key file, a SQL
    statement), a secret can parse as a command name. A name the recorded arguments do not
    contain (redacted, or past the 2048-character bound) is recorded as ``[REDACTED]``.
    """
    if not state.commands:
        return []
    from relay_shell.governance import redaction  # loaded at the first record

    shown = "\n".join(_strings(state.audited_args))
    return [name if name in shown else redaction.REDACTED for name in state.commands]


def _strings(value: object, depth: int = 0) -> list[str]:
    if isinstance(value, str):
        return [value]
    if depth > 8:
        return []
    if isinstance(value, Mapping):
        return [text for item in value.values() for text in _strings(item, depth + 1)]
    if isinstance(value, list | tuple):
        return [text for item in value for text in _strings(item, depth + 1)]
    return []


def redact(value: object) -> object:
    """A redacted copy of ``value`` (:func:`relay_shell.governance.redaction.redact`)."""
    from relay_shell.governance import redaction  # loaded at the first record

    return redaction.redact(value)


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
