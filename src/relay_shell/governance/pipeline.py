"""The one place the stages of a call are sequenced (docs/adr/0006-pipeline-single-sequencing-point.md).

::

    plan (validate) -> classify -> admit (per target, then the call) -> confirm -> execute
                    -> shape -> audit

A tool body hands :meth:`Pipeline.run` a planner (which validates the arguments into a
typed request and returns a :class:`~relay_shell.governance.call.Plan` naming a
module-level executor). Everything that can go wrong, including exceptions that were
never anticipated, becomes a :class:`~relay_shell.governance.call.Reply` carrying the
:class:`~relay_shell.errors.RelayError`, and exactly one audit record. Nothing propagates
except ``CancelledError``, which is re-raised after its record is written. The pipeline
knows no MCP type: ``relay_shell.tools.adapter`` maps its replies to the wire.

Side channels (a SOCKS destination of a D forward) go through
:meth:`Pipeline.admit_side_channel`, which applies the same decision and audits it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from relay_shell.background import JobHost
from relay_shell.config import Settings
from relay_shell.errors import (
    AuditUnavailable,
    Decision,
    ExecTimeout,
    PolicyDenied,
    RelayError,
    ShuttingDown,
)
from relay_shell.governance.audit.writer import AuditSink
from relay_shell.governance.call import (
    AwaitingInput,
    Call,
    CallArguments,
    CallResult,
    Detach,
    Identity,
    Outcome,
    Plan,
    Planner,
    ProgressFn,
    Reply,
    TargetGroup,
)
from relay_shell.governance.confirm import Confirmer, ConfirmTokens
from relay_shell.governance.confirm_call import confirm_call
from relay_shell.governance.detach import Detacher, run_bounded
from relay_shell.governance.patterns import PATTERNS_VERSION, classify_text
from relay_shell.governance.policy import PolicyConfig, build_probe, decide
from relay_shell.governance.record import (
    CallState,
    audit_arguments,
    bounded,
    compose_record,
    scrubbed,
    start_record,
    text_size,
)
from relay_shell.governance.shaping import shape_failure, shape_success
from relay_shell.metrics import Metrics
from relay_shell.policy.environment import PolicyEnvironment
from relay_shell.vocabulary import (
    AuditDecision,
    AuditOutcome,
    ErrorKind,
    Tier,
    decision_of,
    outcome_of,
)

if TYPE_CHECKING:
    from relay_shell.policy.analyze import Analyzer

log = logging.getLogger("relay_shell.pipeline")

CALL_ID_BYTES = 12
"""96 random bits per call id."""
OFF_LOOP_SCAN_BYTES = 64 * 1024
"""Text longer than this is classified and deny-listed in a worker thread, off the event loop."""


class Pipeline:
    """Sequences the stages for every tool call, resource read and prompt fetch."""

    def __init__(
        self,
        settings: Settings,
        audit: AuditSink,
        metrics: Metrics,
        *,
        confirm_tokens: ConfirmTokens | None = None,
        jobs: JobHost[Reply] | None = None,
    ) -> None:
        self.settings = settings
        self.audit = audit
        self.metrics = metrics
        self.policy = PolicyConfig.from_settings(settings)
        self.confirm_tokens = confirm_tokens or ConfirmTokens()
        self._environment = PolicyEnvironment.from_settings(settings)
        self._analyzer: Analyzer | None = None
        self.detacher = None if jobs is None else Detacher(jobs, self._finish, self._fail)
        """Hands calls that pass their ``yield_after`` to the job store (none: they never yield)."""
        self._in_flight: set[asyncio.Task[object]] = set()
        self._closing = False

    @property
    def analyzer(self) -> Analyzer:
        """The grammar-aware classifier of every plan that carries a ``call``, built (and the
        classifier loaded) at the first such call, not when the server starts."""
        if self._analyzer is None:
            from relay_shell.policy.analyze import Analyzer

            self._analyzer = Analyzer(self._environment)
        return self._analyzer

    @property
    def in_flight(self) -> int:
        """How many calls are between their start and their audit record now."""
        return len(self._in_flight)

    async def cancel_in_flight(self, timeout_s: float) -> int:
        """Shutdown: refuse new calls, cancel every call in flight, wait for their records.

        Each cancelled call kills what it started and writes its record (``outcome:
        cancelled``) on its way out; this returns once every one has, or after ``timeout_s``.
        Returns how many calls were cancelled.
        """
        self._closing = True
        current = asyncio.current_task()
        running = [task for task in self._in_flight if task is not current]
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=timeout_s)
        return len(running)

    async def run[R](
        self,
        tool: str,
        arguments: CallArguments,
        identity: Identity,
        planner: Planner[R],
        *,
        progress: ProgressFn | None = None,
        confirmer: Confirmer | None = None,
        detach: Detach | None = None,
    ) -> CallResult:
        """Run one call through every stage; never raises, except ``CancelledError``.

        Returns :class:`AwaitingInput` only when a tier-3 confirmation is being asked through
        the multi-round flow (protocol >= 2026-07-28); the client retries with the answer.
        A reply with ``job`` set says the call's work goes on as a job (``detach`` asks for a
        task id, or to detach as soon as the call executes).
        """
        started = time.monotonic()
        state = CallState(
            tool=tool, args=arguments.raw, binding=arguments.effective, identity=identity, started=started
        )
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        try:
            if self._closing:
                raise ShuttingDown("the server is shutting down; no new calls are accepted")
            plan = planner()
            state.targets = list(plan.targets)
            state.hidden_arguments = plan.hidden_arguments
            await self._classify(state, plan)
            if self._tier(state) > Tier.READ_ONLY:
                state.call_id = secrets.token_hex(CALL_ID_BYTES)
            await self._admit_targets(state, plan)
            await self._admit(state, plan)
            if await self._confirm(state, plan, confirmer):
                self._finish(state, started, None)
                return AwaitingInput()
            await self._begin(state)
            outcome = await self._execute(state, plan, progress, detach or Detach())
            reply = self._shape(state, plan, outcome)
        except asyncio.CancelledError:
            state.outcome_kind = AuditOutcome.CANCELLED
            state.error_kind = ErrorKind.CANCELLED
            self._finish(state, started, None)  # synchronous: no checkpoint for the cancel to hit
            self._leave(task)
            raise
        except RelayError as exc:
            reply = self._fail(state, exc)
        except Exception as exc:  # the single broad boundary: log it, answer with a bounded error
            log.exception("tool %s failed unexpectedly", tool)
            reply = self._fail(state, RelayError(f"internal error in {tool}: {type(exc).__name__}"))
        try:
            await self._redact_arguments(state)
        finally:  # a cancellation while redacting still leaves the record (redacted inline)
            self._finish(state, started, reply)
            self._leave(task)
        return reply

    def _leave(self, task: asyncio.Task[object] | None) -> None:
        if task is not None:
            self._in_flight.discard(task)

    def reject(self, tool: str, arguments: CallArguments, identity: Identity, error: RelayError) -> Reply:
        """Audit and answer a call refused before any planning (bad arguments, unknown tool)."""
        state = CallState(tool=tool, args=arguments.raw, binding=arguments.effective, identity=identity)
        reply = self._fail(state, error)
        self._finish(state, time.monotonic(), reply)
        return reply

    def admit_side_channel(
        self, tool: str, channel: str, tier: Tier, text: str, targets: Sequence[str], identity: Identity
    ) -> Decision:
        """Decide a connection a running call opens on its own (a SOCKS destination); audited.

        The deny list, the mode and the scope ceiling apply as for a call of ``tool`` at
        ``tier`` whose text is ``text``. The decision is written as its own audit record
        (``tool`` with ``side_channel: channel``) and counted in the metrics as
        ``<tool>/<channel>``, apart from the tool's own calls.
        """
        started = time.monotonic()
        state = CallState(
            tool=tool, args={"text": text}, binding={}, identity=identity, tier=tier, targets=list(targets)
        )
        state.extra["side_channel"] = channel
        decision = self._decide(state, tier, build_probe(tool, text, targets))
        if decision.allowed:
            state.outcome_kind = AuditOutcome.OK
        else:
            self._note_denial(state, decision)
            state.outcome_kind = AuditOutcome.DENIED
            state.error_kind = ErrorKind.DENIED
            state.error_message = decision.reason
        self._finish(state, started, None)
        return decision

    def record_event(self, event: str, fields: Mapping[str, object], *, target: str | None = None) -> None:
        """Audit something that happened outside any call (a session that ended by itself, was
        reaped, or was closed at shutdown): one record, ``tool`` and ``kind`` = ``event``, tier
        0, outcome ok, plus ``fields`` redacted and bounded. Never raises: a failed write marks
        the sink degraded and the record goes to the log."""
        record: dict[str, object] = {
            "tool": event,
            "kind": event,
            "tier": 0,
            "decision": "allowed",
            "outcome": "ok",
            "target": target,
            "policy_mode": self.settings.policy_mode.value,
            "patterns_version": PATTERNS_VERSION,
        }
        extra = scrubbed(dict(fields))
        if isinstance(extra, dict):
            record.update((key, value) for key, value in extra.items() if key not in record)
        try:
            self.audit.write(record)
        except AuditUnavailable as exc:
            log.error("audit write failed (%s); record: %s", exc, record)

    # -- stages -------------------------------------------------------------------------

    async def _classify[R](self, state: CallState, plan: Plan[R]) -> None:
        """A fixed tier; or the parse of the plan's ``call`` (its highest tier, opaque commands
        flagged); or, for a plan without one, the pattern table over its text; raised to its floor.
        """
        if plan.tier is not None:
            state.tier = Tier(plan.tier)
            return
        if plan.call is not None:
            if plan.call.size() > OFF_LOOP_SCAN_BYTES:
                analysis = await asyncio.to_thread(self.analyzer.analyze, plan.call)
            else:
                analysis = self.analyzer.analyze(plan.call)
            state.analysis = analysis
            state.commands, state.opaque, state.rules = (
                tuple(analysis.names),
                analysis.opaque,
                tuple(analysis.rules),
            )
            if analysis.tier >= plan.min_tier:
                state.pattern = analysis.rule  # the rule that set the tier, named in reasons and audit
            state.tier = Tier(max(plan.min_tier, analysis.tier))
            return
        if len(plan.text) > OFF_LOOP_SCAN_BYTES:
            classification = await asyncio.to_thread(classify_text, plan.text)
        else:
            classification = classify_text(plan.text)
        if classification.tier >= plan.min_tier:
            state.pattern = classification.rule  # the rule that set the tier, named in reasons and audit
            state.rules = (classification.rule,) if classification.rule else ()
        state.tier = Tier(max(plan.min_tier, classification.tier))

    async def _admit_targets[R](self, state: CallState, plan: Plan[R]) -> None:
        """The policy over each of ``plan.per_target`` on its own; refused ones are set aside.

        Each group's probe (the text and that group's targets) meets the deny list, the mode
        and the allow list at the call's tier, with the call's parse (the deny list also reads
        its normalised commands; in guarded mode the allow list must match each tier-2+ or
        opaque command in full, and reads the probe only when the tier comes from the tool).
        Admitted groups' targets join the call's targets for
        :meth:`_admit`; a refused group is recorded (audit ``denied_targets``, a denial metric)
        and handed to the executor. A long text is judged in a worker thread.
        """
        tier = self._tier(state)

        def judge_one(group: TargetGroup) -> Decision:
            probe = build_probe(state.tool, plan.text, group.targets)
            return decide(
                self.policy, state.tool, tier, probe, classified_by=state.pattern, analysis=state.analysis
            )

        def judge() -> list[tuple[TargetGroup, Decision]]:
            return [(group, judge_one(group)) for group in plan.per_target]

        large = len(plan.text) > OFF_LOOP_SCAN_BYTES and len(plan.per_target) > 0
        for group, decision in await asyncio.to_thread(judge) if large else judge():
            if decision.allowed:
                state.targets.extend(target for target in group.targets if target not in state.targets)
            else:
                state.denied_targets[group.key] = decision.reason
                self.metrics.record_denial(tool=state.tool, reason=decision.rule or "policy")

    async def _admit[R](self, state: CallState, plan: Plan[R]) -> None:
        """Deny list, mode and allow list, then the token's scope ceiling, then audit health."""
        tier = self._tier(state)
        probe = build_probe(state.tool, plan.text, state.targets)
        if len(probe) > OFF_LOOP_SCAN_BYTES:
            decision = await asyncio.to_thread(self._decide, state, tier, probe)
        else:
            decision = self._decide(state, tier, probe)
        if not decision.allowed:
            self._note_denial(state, decision)
            raise PolicyDenied(decision)
        # Checked before every call above tier 0 (a stat and a flock), not only once a write has
        # failed: a sink that broke since the last call must refuse this call, not just the next.
        if tier > Tier.READ_ONLY and self.settings.audit_required and not self.audit.check():
            raise AuditUnavailable(
                f"the audit sink {self.audit.path} cannot be written ({self.audit.last_error}); calls above tier 0 "
                "are refused until it recovers (RELAY_SHELL_AUDIT_REQUIRED). Tell the operator."
            )

    def _decide(self, state: CallState, tier: Tier, probe: str) -> Decision:
        """The policy decision for ``probe`` (and the call's parse) at ``tier``, narrowed by the
        caller's scope ceiling: a scope below tier 3 also refuses opaque calls."""
        analysis = state.analysis
        decision = decide(
            self.policy, state.tool, tier, probe, classified_by=state.pattern, analysis=analysis
        )
        if decision.classifier_rule is None and state.pattern is not None:
            decision = replace(decision, classifier_rule=state.pattern)
        state.rule = decision.rule
        ceiling = state.identity.max_tier
        opaque = analysis is not None and analysis.opaque
        if (
            decision.allowed
            and ceiling is not None
            and (tier > ceiling or (opaque and ceiling < Tier.IRREVERSIBLE))
        ):
            return replace(
                decision,
                allowed=False,
                reason=(
                    f"refused: this token's scopes allow up to tier {ceiling}, the call is {tier.label()}"
                    f"{' and opaque' if opaque else ''}; ask the operator for a token with a wider scope "
                    "instead of retrying"
                ),
                rule="scope",
            )
        return decision

    def _note_denial(self, state: CallState, decision: Decision) -> None:
        state.decision = AuditDecision.DENIED
        state.rule = decision.rule
        self.metrics.record_denial(tool=state.tool, reason=decision.rule or "policy")

    async def _confirm[R](self, state: CallState, plan: Plan[R], confirmer: Confirmer | None) -> bool:
        """Tier 3 and opaque calls under ``CONFIRM_TIER3`` (:func:`confirm_call`)."""
        summary = plan.confirm_summary or f"{state.tool}: {plan.text[:200]}"
        mode = self.settings.confirm_tier3
        return await confirm_call(state, self._tier(state), summary, mode, self.confirm_tokens, confirmer)

    async def _begin(self, state: CallState) -> None:
        """Record the intent of a call above tier 0 before it runs (``phase: start``).

        Tier-2+ and opaque starts are anchored outside the file synchronously. When the record
        cannot be written, anchored or shipped and the audit is required, the call is refused
        (its end record then says so).
        """
        tier = self._tier(state)
        if tier == Tier.READ_ONLY or state.call_id is None:
            return
        await self._redact_arguments(state)
        record = start_record(state, self.settings.policy_mode.value)
        try:
            self.audit.begin(record, anchor=tier >= Tier.STATEFUL or state.opaque)
            state.start_written = True
        except AuditUnavailable as exc:
            if self.settings.audit_required:
                raise AuditUnavailable(
                    f"{exc.message}; calls above tier 0 are refused until it recovers "
                    "(RELAY_SHELL_AUDIT_REQUIRED). Tell the operator."
                ) from exc
            log.error("audit start record failed (%s); the call runs anyway (AUDIT_REQUIRED=false)", exc)

    async def _execute[R](
        self, state: CallState, plan: Plan[R], progress: ProgressFn | None, detach: Detach
    ) -> Outcome:
        """Run the plan's executor under its deadline; a plan with ``background`` may become a job.

        This is where the call is admitted and executing: a job (and with it an MCP task) is
        only ever made from here, after admission and confirmation.
        """
        call = Call(
            tool=state.tool,
            tier=self._tier(state),
            timeout_s=plan.timeout_s,
            identity=state.identity,
            progress=progress or _no_progress,
            denied_targets=dict(state.denied_targets),
            call_id=state.call_id,
            analysis=state.analysis,
        )
        background = plan.background
        if background is None or self.detacher is None:
            outcome = await run_bounded(plan, call)
        else:
            after_s = 0.0 if detach.at_once else background.after_s
            outcome = await self.detacher.execute(
                state, plan, call, background, after_s=after_s, task=detach.task, always=detach.at_once
            )
        state.outcome = outcome
        return outcome

    def _shape[R](self, state: CallState, plan: Plan[R], outcome: Outcome) -> Reply:
        state.outcome_kind = AuditOutcome.RUNNING if outcome.job is not None else AuditOutcome.OK
        return shape_success(outcome, self._tier(state), plan.notes)

    def _fail(self, state: CallState, exc: RelayError) -> Reply:
        if isinstance(exc, PolicyDenied) and state.decision is not AuditDecision.DENIED:
            self._note_denial(state, exc.decision)  # refused past admission (another principal's job)
        state.error_kind = exc.kind
        state.error_message = exc.message
        implied = decision_of(exc.kind)
        if state.decision is AuditDecision.ALLOWED and implied is not None:
            state.decision = implied
        state.outcome_kind = outcome_of(exc.kind)
        if isinstance(exc, ExecTimeout):
            stream_sha256 = exc.partial.fields.get("stream_sha256")
            stream_len = exc.partial.fields.get("output_bytes")
            state.stream_sha256 = stream_sha256 if isinstance(stream_sha256, str) else None
            state.stream_len = stream_len if isinstance(stream_len, int) else None
        return shape_failure(exc, state.tier)

    # -- audit --------------------------------------------------------------------------

    async def _redact_arguments(self, state: CallState) -> None:
        """Bound and redact large arguments in a worker thread, so one call never stalls others.

        Small ones (and every record written on cancellation) are redacted inline by
        :func:`compose_record`; the bound comes first either way.
        """
        if state.audited_args is None and text_size(bounded(state.args)) > OFF_LOOP_SCAN_BYTES:
            await asyncio.to_thread(audit_arguments, state)

    def _finish(self, state: CallState, started: float, reply: Reply | None) -> None:
        """Write the call's outcome record (its ``phase: end``, or its only record) and update the
        metrics (synchronous on purpose)."""
        duration_s = time.monotonic() - started
        record = compose_record(state, reply, duration_s, self.settings.policy_mode.value)
        try:
            if state.start_written:
                self.audit.end(record)
            else:
                self.audit.write(record)
        except AuditUnavailable as exc:
            # The call already happened: keep the record on stderr so it is not lost, and let the
            # degraded flag refuse the next calls above tier 0.
            log.error("audit write failed (%s); record: %s", exc, record)
        channel = state.extra.get("side_channel")
        self.metrics.record_call(
            tool=state.tool if channel is None else f"{state.tool}/{channel}",
            tier=None if state.tier is None else int(state.tier),
            mode=self.settings.policy_mode.value,
            outcome=state.outcome_kind.value,
            duration_s=duration_s,
            truncated=bool(state.outcome and state.outcome.truncated),
        )

    @staticmethod
    def _tier(state: CallState) -> Tier:
        assert state.tier is not None, "classified before it is read"
        return state.tier


async def _no_progress(progress: float, total: float | None, message: str | None) -> None:
    return None
