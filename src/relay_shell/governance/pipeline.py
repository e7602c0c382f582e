"""The one place the stages of a call are sequenced (SPEC §1).

::

    identify -> plan (validate) -> classify -> admit -> confirm -> execute -> shape -> audit

A tool body only describes its call (a :class:`Plan` built by a planner function) and
hands it to :meth:`Pipeline.run`. Everything that can go wrong, including exceptions
that were never anticipated and cancellation, becomes a bounded ``isError`` result and
exactly one audit record. Nothing propagates into the transport except
``CancelledError``, which is re-raised after its record is written.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from mcp_types import CallToolResult, InputRequiredResult, TextContent

from relay_shell.config import ConfirmMode, Settings
from relay_shell.errors import (
    AuditUnavailable,
    ConfirmationRequired,
    Decision,
    ExecTimeout,
    InvalidInput,
    PolicyDenied,
    RelayError,
)
from relay_shell.governance.audit.writer import AuditSink, new_call_id
from relay_shell.governance.confirm import Confirmer, ConfirmTokens, call_binding
from relay_shell.governance.patterns import PATTERNS_VERSION, classify_text
from relay_shell.governance.policy import PolicyConfig, build_probe, decide
from relay_shell.governance.redaction import redact, removed_values, scrub_removed
from relay_shell.metrics import Metrics

log = logging.getLogger("relay_shell.pipeline")

MAX_AUDIT_STRING = 2048
TIER_NAMES = ("READ_ONLY", "REVERSIBLE", "STATEFUL", "IRREVERSIBLE")
TIMEOUT_SAFETY_MARGIN_S = 10.0


@dataclass(frozen=True)
class Identity:
    """Who is calling: the MCP request, the client, and the authenticated principal (HTTP+OAuth)."""

    request_id: str | None = None
    client_id: str | None = None
    subject: str | None = None
    max_tier: int | None = None  # scope ceiling; None when no OAuth

    def who(self) -> str:
        return f"{self.subject or '-'}|{self.client_id or '-'}"


ProgressFn = Callable[[float, float | None, str | None], Awaitable[None]]


@dataclass
class Call:
    """What the execute stage hands to the work coroutine."""

    tool: str
    tier: int
    timeout_s: float | None
    identity: Identity
    progress: ProgressFn

    async def report(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        """Send a progress notification when the client asked for them; never raises."""
        try:
            await self.progress(progress, total, message)
        except Exception:  # a broken progress channel must not fail the call
            log.debug("progress notification failed", exc_info=True)


@dataclass
class Outcome:
    """What the work produced: readable text, structured fields, and audit extras."""

    text: str
    data: dict[str, object] = field(default_factory=dict)
    exit_code: int | None = None
    stream_sha256: str | None = None
    stream_len: int | None = None
    truncated: bool = False
    audit_extra: dict[str, object] = field(default_factory=dict)


Work = Callable[[Call], Awaitable[Outcome]]


@dataclass(frozen=True)
class Plan:
    """A validated description of one call.

    ``text`` is everything the executor will see (command, stdin, env, script, keys...): it is
    what gets classified and what the deny list reads. ``tier`` fixes the tier for tools that
    do not run text (read-only tools are 0); ``min_tier`` is a floor for those that do.
    """

    work: Work
    text: str = ""
    targets: Sequence[str] = ()
    tier: int | None = None
    min_tier: int = 1
    timeout_s: float | None = None
    notes: Sequence[str] = ()
    confirm_summary: str = ""


Planner = Callable[[], Plan]


class Pipeline:
    """Sequences the stages for every tool call, resource read and prompt fetch."""

    def __init__(
        self,
        settings: Settings,
        audit: AuditSink,
        metrics: Metrics,
        *,
        confirm_tokens: ConfirmTokens | None = None,
    ) -> None:
        self.settings = settings
        self.audit = audit
        self.metrics = metrics
        self.policy = PolicyConfig.from_settings(settings)
        self.confirm_tokens = confirm_tokens or ConfirmTokens()

    async def run(
        self,
        tool: str,
        args: Mapping[str, object],
        identity: Identity,
        planner: Planner,
        *,
        progress: ProgressFn | None = None,
        confirmer: Confirmer | None = None,
    ) -> CallToolResult | InputRequiredResult:
        """Run one call through every stage and return its MCP result (never raises, except cancel).

        An ``InputRequiredResult`` is returned only when a tier-3 confirmation is being asked
        through the 2026-07-28 multi-round flow; the client retries the call with the answer.
        """
        started = time.monotonic()
        state = _CallState(tool=tool, args=args, identity=identity)
        try:
            plan = planner()
            state.targets = list(plan.targets)
            tier = state.tier = self._classify(plan, state)
            self._admit(state, plan, tier)
            await self._confirm(state, plan, confirmer, tier)
            if state.confirmation == "elicit:pending" and confirmer is not None:
                pending = confirmer.pending_result()
                assert isinstance(pending, InputRequiredResult)
                state.decision = "confirm_required"
                state.result_outcome = "denied"
                self._finish(state, started, None)
                return pending
            call = Call(tool, tier, plan.timeout_s, identity, progress or _no_progress)
            self._begin(state)
            outcome = await self._execute(plan, call)
            state.outcome = outcome
            result = _shape_ok(outcome, tier, plan.notes)
            state.result_outcome = "ok"
        except asyncio.CancelledError:
            state.result_outcome = "cancelled"
            state.error_kind = "cancelled"
            self._finish(state, started, None)  # synchronous: no checkpoint for the cancel to hit
            raise
        except RelayError as exc:
            result = self._shape_error(state, exc)
        except Exception as exc:  # the single broad boundary: log it, answer with a bounded error
            log.exception("tool %s failed unexpectedly", tool)
            result = self._shape_error(state, RelayError(f"internal error in {tool}: {type(exc).__name__}"))
        self._finish(state, started, result)
        return result

    def reject_invalid(
        self, tool: str, args: Mapping[str, object], identity: Identity, argument: str, problem: str
    ) -> CallToolResult:
        """Audit and answer a call whose arguments failed schema validation before the body ran."""
        state = _CallState(tool=tool, args=args, identity=identity)
        result = self._shape_error(state, InvalidInput(argument, problem))
        self._finish(state, time.monotonic(), result)
        return result

    # -- stages -------------------------------------------------------------------------

    def _classify(self, plan: Plan, state: _CallState) -> int:
        if plan.tier is not None:
            return plan.tier
        classification = classify_text(plan.text)
        if classification.tier >= plan.min_tier:
            state.pattern = classification.rule  # the rule that set the tier, named in reasons and audit
            state.rules = (classification.rule,) if classification.rule else ()
        return max(plan.min_tier, classification.tier)

    def _admit(self, state: _CallState, plan: Plan, tier: int) -> None:
        probe = build_probe(state.tool, plan.text, plan.targets)
        decision = decide(self.policy, state.tool, tier, probe, classified_by=state.pattern)
        state.rule = decision.rule
        if decision.allowed and state.identity.max_tier is not None and tier > state.identity.max_tier:
            decision = Decision(
                allowed=False,
                tier=tier,
                reason=(
                    f"refused: this token's scopes allow up to tier {state.identity.max_tier}, "
                    f"the call is tier {tier} ({TIER_NAMES[tier]}); ask the operator for a token "
                    "with a wider scope instead of retrying"
                ),
                rule="scope",
                mode=self.settings.policy_mode.value,
            )
        if not decision.allowed:
            state.decision = "denied"
            self.metrics.record_denial(tool=state.tool, reason=decision.rule or "policy")
            raise PolicyDenied(decision)
        # Checked before every call above tier 0 (a stat and a flock), not only once a write has
        # failed: a sink that broke since the last call must refuse this call, not just the next.
        if tier > 0 and self.settings.audit_required and not self.audit.check():
            raise AuditUnavailable(
                f"the audit sink {self.audit.path} cannot be written ({self.audit.last_error}); calls above tier 0 "
                "are refused until it recovers (RELAY_SHELL_AUDIT_REQUIRED). Tell the operator."
            )

    async def _confirm(self, state: _CallState, plan: Plan, confirmer: Confirmer | None, tier: int) -> None:
        mode = self.settings.confirm_tier3
        if tier < 3 or mode is ConfirmMode.OFF:
            return
        summary = plan.confirm_summary or f"{state.tool}: {plan.text[:200]}"
        if mode is ConfirmMode.TOKEN:
            binding = call_binding(state.tool, state.args, state.identity.who())
            offered = state.args.get("confirm_token")
            if isinstance(offered, str) and offered:
                if self.confirm_tokens.consume(offered, binding):
                    state.confirmation = "token:accepted"
                    return
                state.decision = "confirm_required"
                raise ConfirmationRequired(
                    "the confirm_token is unknown, expired, spent or for a different call"
                )
            token = self.confirm_tokens.issue(binding)
            state.decision = "confirm_required"
            state.confirmation = "token:issued"
            raise ConfirmationRequired(
                f"tier 3 (IRREVERSIBLE) needs confirmation: show the operator exactly this call ({summary}) and, "
                "only if they approve, re-issue the identical call with confirm_token set to the token "
                "(single use, expires in 5 minutes)",
                token=token,
            )
        answer = (
            await confirmer.ask(f"Run this tier-3 (irreversible) call? {summary}")
            if confirmer
            else "unsupported"
        )
        state.confirmation = f"elicit:{answer}"
        if answer in ("accept", "pending"):
            return
        state.decision = "confirm_required"
        if answer == "unsupported":
            raise ConfirmationRequired(
                "tier 3 (IRREVERSIBLE) needs a human confirmation but this client does not support elicitation; "
                "ask the operator to run it or to connect with a client that can confirm"
            )
        raise ConfirmationRequired(
            f"the operator did not approve this tier-3 call ({answer}); do not retry it"
        )

    def _begin(self, state: _CallState) -> None:
        """Record the intent of a call above tier 0 before it runs (``phase: start``).

        Tier-2+ and opaque starts are anchored outside the file synchronously. When the
        record cannot be written or anchored and the audit is required, the call is refused.
        """
        if not state.tier:
            return
        state.call_id = new_call_id()
        try:
            self.audit.begin(self._record(state), anchor=state.tier >= 2 or state.opaque)
        except AuditUnavailable as exc:
            if self.settings.audit_required:
                raise AuditUnavailable(
                    f"{exc.message}; calls above tier 0 are refused until it recovers "
                    "(RELAY_SHELL_AUDIT_REQUIRED). Tell the operator."
                ) from exc
            log.error("audit start record failed (%s); the call runs anyway (AUDIT_REQUIRED=false)", exc)

    async def _execute(self, plan: Plan, call: Call) -> Outcome:
        if plan.timeout_s is None:
            return await plan.work(call)
        # The work enforces its own deadline (and kills what it started); this outer bound only
        # guarantees that no call can hang forever if an executor forgets to.
        try:
            async with asyncio.timeout(plan.timeout_s + TIMEOUT_SAFETY_MARGIN_S):
                return await plan.work(call)
        except TimeoutError as exc:
            raise ExecTimeout(f"no answer within {plan.timeout_s:g} s") from exc

    # -- shaping and audit --------------------------------------------------------------

    def _shape_error(self, state: _CallState, exc: RelayError) -> CallToolResult:
        state.error_kind = exc.kind
        state.error_message = exc.message
        if state.decision == "allowed" and exc.kind in ("denied", "confirm_required"):
            state.decision = "denied" if exc.kind == "denied" else "confirm_required"
        state.result_outcome = {"timeout": "timeout", "denied": "denied", "confirm_required": "denied"}.get(
            exc.kind, "error"
        )
        error: dict[str, object] = {"kind": exc.kind, "message": exc.message}
        if state.tier is not None:
            error["tier"] = state.tier
        data: dict[str, object] = {}
        partial_text = ""
        if isinstance(exc, PolicyDenied):
            error["reason"] = exc.decision.rule or "policy"
        if isinstance(exc, ConfirmationRequired) and exc.token:
            error["confirm_token"] = exc.token
        if isinstance(exc, InvalidInput):
            error["argument"] = exc.argument
        if isinstance(exc, ExecTimeout):
            data.update(exc.partial.fields)
            partial_text = exc.partial.text
            state.stream_sha256 = _str_or_none(exc.partial.fields.get("stream_sha256"))
            state.stream_len = _int_or_none(exc.partial.fields.get("output_bytes"))
        data["error"] = error
        if state.tier is not None:
            data["tier"] = state.tier
        header = f"{exc.kind}"
        if state.tier is not None:
            header += f" · tier {state.tier}"
        text = f"{header}: {exc.message}"
        if isinstance(exc, ConfirmationRequired) and exc.token:
            text += f"\nconfirm_token: {exc.token}"
        if partial_text:
            text += "\n--- partial output ---\n" + partial_text
        return CallToolResult(
            content=[TextContent(type="text", text=text)], structured_content=data, is_error=True
        )

    def _record(self, state: _CallState) -> dict[str, object]:
        """The fields a call's records share: who, what (bounded, then redacted), how it was judged."""
        if state.redacted_args is None:
            bounded = _bounded(dict(state.args))
            state.redacted_args = redact(bounded)
            state.removed = removed_values(bounded, state.redacted_args)
        record: dict[str, object] = {
            "tool": state.tool,
            "tier": state.tier,
            "decision": state.decision,
            "args": state.redacted_args,
            "target": self._echo_safe(state, _target_field(state.targets)),
            "opaque": state.opaque,
            "commands": list(state.commands),
            "rules": list(state.rules),
            "request_id": state.identity.request_id,
            "client_id": state.identity.client_id,
            "principal": state.identity.subject,
            "policy_mode": self.settings.policy_mode.value,
            "rule": state.rule,
            "pattern": state.pattern,
            "patterns_version": PATTERNS_VERSION,
        }
        if state.call_id is not None:
            record["call_id"] = state.call_id
        return record

    @staticmethod
    def _echo_safe(state: _CallState, value: object) -> object:
        """A value that may echo the arguments (an error message, targets, extras): bounded,
        redacted, and rid of every secret redaction took out of the arguments."""
        return scrub_removed(redact(_bounded(value)), state.removed)

    def _finish(self, state: _CallState, started: float, result: CallToolResult | None) -> None:
        """Write the call's outcome: its ``phase: end`` record, or its only record (tier 0, or
        refused before it could start)."""
        duration_s = time.monotonic() - started
        text = ""
        if result is not None and result.content and isinstance(result.content[0], TextContent):
            text = result.content[0].text
        outcome = state.outcome
        record = self._record(state)
        record.update(
            {
                "outcome": state.result_outcome,
                "exit_code": outcome.exit_code if outcome else None,
                "duration_ms": round(duration_s * 1000),
                "output_sha256": _sha256_text(text) if result is not None else None,
                "output_len": len(text.encode()) if result is not None else 0,
                "stream_sha256": outcome.stream_sha256 if outcome else state.stream_sha256,
                "stream_len": outcome.stream_len if outcome else state.stream_len,
            }
        )
        if state.error_kind:
            record["error_kind"] = state.error_kind
            record["error"] = self._echo_safe(state, state.error_message or "")
        if state.confirmation:
            record["confirmation"] = state.confirmation
        if outcome and outcome.audit_extra:
            extra = self._echo_safe(state, outcome.audit_extra)
            if isinstance(extra, dict):
                record.update(extra)
        try:
            if state.call_id is not None:
                self.audit.end(record)
            else:
                self.audit.write(record)
        except AuditUnavailable as exc:
            # The call already happened: keep the record on stderr so it is not lost, and let the
            # degraded flag refuse the next calls above tier 0.
            log.error("audit write failed (%s); record: %s", exc, record)
        self.metrics.record_call(
            tool=state.tool,
            tier=state.tier,
            mode=self.settings.policy_mode.value,
            outcome=state.result_outcome,
            duration_s=duration_s,
            truncated=bool(outcome and outcome.truncated),
        )


@dataclass
class _CallState:
    tool: str
    args: Mapping[str, object]
    identity: Identity
    tier: int | None = None
    targets: list[str] = field(default_factory=list)
    decision: str = "allowed"
    rule: str | None = None
    pattern: str | None = None
    result_outcome: str = "error"
    error_kind: str | None = None
    error_message: str | None = None
    confirmation: str | None = None
    outcome: Outcome | None = None
    stream_sha256: str | None = None
    stream_len: int | None = None
    call_id: str | None = None  # set when the call's start record is (to be) written
    redacted_args: object = None  # the args as audited, computed once for start and end
    removed: set[str] = field(default_factory=set)  # what redaction took out of the args
    # What the classification saw: the normalised command names of the parse, whether the
    # text is opaque to it (an interpreter, eval, an encoded payload), and the rules that
    # set the tier. The parse fills commands and opaque; until then they stay empty/false.
    commands: tuple[str, ...] = ()
    opaque: bool = False
    rules: tuple[str, ...] = ()


async def _no_progress(progress: float, total: float | None, message: str | None) -> None:
    return None


def _shape_ok(outcome: Outcome, tier: int, notes: Sequence[str]) -> CallToolResult:
    data = dict(outcome.data)
    data["tier"] = tier
    if notes:
        data["notes"] = list(notes)
    text = outcome.text
    if notes:
        text = text + "\n" + "\n".join(f"note: {note}" for note in notes)
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=data, is_error=False
    )


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _target_field(targets: Sequence[str]) -> object:
    if not targets:
        return None
    if len(targets) == 1:
        return targets[0]
    return list(targets[:1000])


def _bounded(value: object) -> object:
    """Bound every string in an audited structure (audit records never carry bulk data)."""
    if isinstance(value, str):
        if len(value) > MAX_AUDIT_STRING:
            return value[:MAX_AUDIT_STRING] + f"...[{len(value) - MAX_AUDIT_STRING} more chars]"
        return value
    if isinstance(value, Mapping):
        return {str(key): _bounded(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        items = [_bounded(item) for item in value[:200]]
        if len(value) > 200:
            items.append(f"...[{len(value) - 200} more items]")
        return items
    return value


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
