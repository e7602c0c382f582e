"""The execute stage of a call that may outlive its request: yield to a job (docs/adr/0017-jobs-and-tasks.md).

A plan with a :class:`~relay_shell.governance.call.Background` runs its executor in a task
of its own and waits up to ``yield_after``. If the work ends in time the call answers as
any other (``status: "done"``). If not, and the job store has room, the task is handed to
the store as a job and the call answers ``status: "running"`` with the job id, its
``call_id`` and the output so far; progress notifications stop (the request is over). This
is the one path on which a call returns while its work continues: the executor, and with
it everything it holds (the process group, its containment, the SSH channel), lives on in
that task until the work ends, times out or is killed.

When the store is full the call does not yield: it waits for its work and says why, naming
``RELAY_SHELL_MAX_JOBS``. A cancellation while waiting cancels the work and waits for its
cleanup (shielded) before it propagates.

The job's end writes its own audit record (``tool: job_end``, the same ``call_id``, exit
code, stream hash, duration from the call's start, outcome ok / failed / timeout /
cancelled), and keeps the final reply a direct call would have given.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import Callable

import anyio

from relay_shell.background import JobEnd, JobHost, JobMeta, JobOutcome, LiveOutput
from relay_shell.errors import ExecTimeout, JobStopped, RelayError
from relay_shell.governance.call import Background, Call, Outcome, Plan, ProgressFn, Reply
from relay_shell.governance.record import CallState
from relay_shell.governance.shaping import shape_success
from relay_shell.vocabulary import AuditOutcome, ErrorKind, Tier

log = logging.getLogger("relay_shell.pipeline")

TIMEOUT_SAFETY_MARGIN_S = 10.0
JOB_CALL_ID_BYTES = 12
"""The size of the ``call_id`` a tier-0 call gets when it becomes a job (as every call id: 96 bits).

Calls above tier 0 have theirs from the pipeline before they run; a tier-0 call has none
until it yields: its record and its ``job_end`` record must then be tied together."""

type RecordFn = Callable[[CallState, float, Reply | None], None]
type FailFn = Callable[[CallState, RelayError], Reply]


async def run_bounded[R](plan: Plan[R], call: Call) -> Outcome:
    """Run the plan's executor under its deadline plus a safety margin of our own.

    The executor enforces its own deadline (and kills what it started); this outer bound only
    guarantees that no call can hang forever if an executor forgets to.

    Raises:
        ExecTimeout: the outer bound passed.
    """
    if plan.timeout_s is None:
        return await plan.executor(plan.request, call)
    try:
        async with asyncio.timeout(plan.timeout_s + TIMEOUT_SAFETY_MARGIN_S):
            return await plan.executor(plan.request, call)
    except TimeoutError as exc:
        raise ExecTimeout(f"no answer within {plan.timeout_s:g} s") from exc


class Detacher:
    """Runs the execute stage of plans that may become jobs; writes their ``job_end`` records."""

    def __init__(self, jobs: JobHost[Reply], record: RecordFn, fail: FailFn) -> None:
        self.jobs = jobs
        self._record = record
        self._fail = fail

    async def execute[R](
        self,
        state: CallState,
        plan: Plan[R],
        call: Call,
        background: Background,
        *,
        after_s: float | None,
        task: bool,
        always: bool = False,
    ) -> Outcome:
        """Run ``plan``; past ``after_s`` seconds hand it to a job (``None``: never).

        ``task``: the job also gets an MCP task id (the transport answers with a task handle).
        ``always``: hand it over even if it has already ended (a task was asked for up front, so
        even a command that failed at once answers through its task).
        """
        if after_s is None:
            return _done(await run_bounded(plan, call))
        output = self.jobs.new_output(background.split)
        gate = _ProgressGate(call.progress)
        # Started eagerly: the work runs at once up to its first wait (the spawn), instead of
        # after a turn of the event loop; it is still a task of its own, as a job needs.
        work = asyncio.Task(
            run_bounded(plan, dataclasses.replace(call, tap=output, progress=gate.send)),
            loop=asyncio.get_running_loop(),
            name=f"relay-shell {state.tool} {state.call_id}",
            eager_start=True,
        )
        await _wait_for(work, after_s)
        if work.done() and not always:
            return _done(work.result())
        if self.jobs.full():
            await _wait_for(work, None)
            outcome = _done(work.result())
            outcome.notes.append(
                f"did not yield after {after_s:g} s: {self.jobs.limit} jobs are running or unread "
                "(RELAY_SHELL_MAX_JOBS), so the call ran to its end"
            )
            return outcome
        gate.open = False
        return await self._adopt(state, plan, call, background, work, output, task)

    async def _adopt[R](
        self,
        state: CallState,
        plan: Plan[R],
        call: Call,
        background: Background,
        work: asyncio.Task[Outcome],
        output: LiveOutput,
        task: bool,
    ) -> Outcome:
        if state.call_id is None:  # a tier-0 read (find, tail -f) outlived yield_after too
            state.call_id = secrets.token_hex(JOB_CALL_ID_BYTES)
        meta = JobMeta(
            tool=state.tool, call_id=state.call_id, owner=call.identity.subject, label=background.label,
            host=background.host, split=background.split, task=task, timeout_s=plan.timeout_s,
            budget=background.budget,
        )  # fmt: skip

        async def finish(job_id: str) -> tuple[JobEnd, Reply]:
            return await self._finish_job(state, plan, job_id, work, output)

        # Shielded: once the store holds the job a cancellation must not leave it unannounced.
        with anyio.CancelScope(shield=True):
            try:
                ticket = await self.jobs.adopt(meta, output, work.cancel, finish)
            except Exception:  # the store is shutting down (or broke): the work must not run on unowned
                work.cancel()
                await asyncio.wait({work})
                raise
        elapsed_ms = round((time.monotonic() - state.started) * 1000)
        data: dict[str, object] = {
            "status": "running", "job_id": ticket.job_id, "call_id": state.call_id, "elapsed_ms": elapsed_ms,
            "timeout_s": plan.timeout_s, "output": ticket.output, "output_bytes": output.total,
        }  # fmt: skip
        so_far = ticket.output
        if ticket.stdout is not None:
            data.update(stdout=ticket.stdout, stderr=ticket.stderr or "")
            so_far = ticket.stdout + (f"\n--- stderr ---\n{ticket.stderr}" if ticket.stderr else "")
        header = (
            f"running · {ticket.job_id} · {elapsed_ms / 1000:.1f} s so far: read the rest with "
            f'session_recv(session_id="{ticket.job_id}"), stop it with session_kill'
        )
        return Outcome(
            text=f"{header}\n{so_far}", data=data, audit_extra={"job_id": ticket.job_id}, job=ticket
        )

    async def _finish_job[R](
        self, state: CallState, plan: Plan[R], job_id: str, work: asyncio.Task[Outcome], output: LiveOutput
    ) -> tuple[JobEnd, Reply]:
        """Await the work, shape its final reply, write the ``job_end`` record. Never raises."""
        await asyncio.wait({work})
        end_state = CallState(
            tool="job_end", args={"job_id": job_id}, binding={}, identity=state.identity, tier=state.tier,
            targets=list(state.targets), call_id=state.call_id, started=state.started,
        )  # fmt: skip
        end_state.extra["job_id"] = job_id
        end_state.extra["call_tool"] = state.tool
        tier = state.tier if state.tier is not None else Tier.REVERSIBLE
        if work.cancelled():
            reply = self._fail(end_state, JobStopped("the job was killed before it ended"))
            end_state.stream_sha256, end_state.stream_len = output.sha256, output.total
            end = _end("cancelled", None, None, output.total, output.sha256, state)
        elif (exc := work.exception()) is not None:
            error = exc if isinstance(exc, RelayError) else RelayError(f"internal error in {state.tool}")
            if not isinstance(exc, RelayError):
                log.error("job %s failed unexpectedly", job_id, exc_info=exc)
            reply = self._fail(end_state, error)
            outcome_kind: JobOutcome = "timeout" if isinstance(error, ExecTimeout) else "failed"
            if error.kind is not ErrorKind.TIMEOUT:
                end_state.outcome_kind = AuditOutcome.FAILED
            sha = end_state.stream_sha256 or output.sha256
            size = end_state.stream_len if end_state.stream_len is not None else output.total
            end = _end(outcome_kind, None, None, size, sha, state, error.message)
        else:
            outcome = _done(work.result())
            end_state.outcome = outcome
            reply = shape_success(outcome, tier, plan.notes)
            failed = outcome.exit_code not in (0, None)
            end_state.outcome_kind = AuditOutcome.FAILED if failed else AuditOutcome.OK
            signal = outcome.data.get("signal")
            results = outcome.data.get("results")
            end = _end(
                "failed" if failed else "ok", outcome.exit_code, signal if isinstance(signal, str) else None,
                outcome.stream_len if outcome.stream_len is not None else output.total,
                outcome.stream_sha256, state,
                results=list(results) if isinstance(results, list) else [],
            )  # fmt: skip
        self._record(end_state, state.started, reply)
        return end, reply


def _end(
    outcome: JobOutcome,
    exit_code: int | None,
    signal: str | None,
    output_bytes: int,
    stream_sha256: str | None,
    state: CallState,
    message: str | None = None,
    *,
    results: list[object] | None = None,
) -> JobEnd:
    rows = [row for row in results or [] if isinstance(row, dict)]
    duration_ms = round((time.monotonic() - state.started) * 1000)
    return JobEnd(outcome, exit_code, signal, output_bytes, stream_sha256, duration_ms, rows, message)


def _done(outcome: Outcome) -> Outcome:
    """A call that finished while its request was still open says so."""
    outcome.data["status"] = "done"
    return outcome


class _ProgressGate:
    """Forwards progress while the request is open; a detached job's progress has nowhere to go."""

    def __init__(self, send: ProgressFn) -> None:
        self._send = send
        self.open = True

    async def send(self, progress: float, total: float | None, message: str | None) -> None:
        if self.open:
            await self._send(progress, total, message)


async def _wait_for(work: asyncio.Task[Outcome], timeout_s: float | None) -> None:
    """Wait for ``work`` up to ``timeout_s`` (``None``: to its end).

    A cancellation of the waiting call cancels the work and waits for its cleanup (the
    executor kills what it started) before it propagates.
    """
    if work.done():
        return
    try:
        await asyncio.wait({work}, timeout=timeout_s)
    except BaseException:
        work.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.wait({work})
        raise
