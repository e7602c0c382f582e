"""The execute stage that yields (governance/detach.py), driven through Pipeline.run directly.

The executor here is a stand-in that reports progress and ends when told to; the job store
and the audit sink are the real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from relay_shell.config import Settings
from relay_shell.errors import SpawnFailed
from relay_shell.governance.audit.writer import AuditSink
from relay_shell.governance.call import (
    Background,
    Call,
    CallArguments,
    Detach,
    Identity,
    Outcome,
    Plan,
    Reply,
)
from relay_shell.governance.pipeline import Pipeline
from relay_shell.metrics import Metrics
from relay_shell.sessions.jobs import JobStore
from tests.conftest import read_audit


@dataclass
class Work:
    """A stand-in executor: reports progress every tick until released, then ends."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    tick: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: bool = False
    fail_at_once: bool = False

    async def ticks(self, count: int) -> None:
        """Wait (event-driven) until the work has reported ``count`` more times."""
        for _ in range(count):
            self.tick.clear()
            await asyncio.wait_for(self.tick.wait(), 5)

    async def run(self, call: Call) -> Outcome:
        if self.fail_at_once:
            raise SpawnFailed("cannot start 'nothing'")
        self.started.set()
        if call.tap is not None:
            call.tap.stdout(b"working\n")
        try:
            while not self.release.is_set():
                await call.report(1.0)
                self.tick.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.release.wait(), 0.05)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return Outcome(text="done", data={"output": "working\n"}, exit_code=0)


async def execute_work(work: Work, call: Call) -> Outcome:
    return await work.run(call)


def planner(work: Work, after_s: float | None) -> Callable[[], Plan[Work]]:
    def plan() -> Plan[Work]:
        background = Background(after_s, "work", None, False, 4096)
        return Plan(execute_work, work, text="true", timeout_s=30.0, background=background)

    return plan


@dataclass
class Setup:
    pipeline: Pipeline
    jobs: JobStore[Reply]
    settings: Settings


@pytest.fixture
async def setup(settings: Settings) -> AsyncIterator[Setup]:
    audit = AuditSink(settings.audit_path)
    jobs: JobStore[Reply] = JobStore(max_jobs=4, retention_s=600, buffer_bytes=4096)
    yield Setup(Pipeline(settings, audit, Metrics(), jobs=jobs), jobs, settings)
    await jobs.aclose()
    audit.close()


async def run(
    setup: Setup, work: Work, after_s: float | None, detach: Detach | None = None, **kw: object
) -> Reply:
    sent: list[float] = kw.get("sent", [])  # type: ignore[assignment]

    async def progress(value: float, total: float | None, message: str | None) -> None:
        sent.append(value)

    result = await setup.pipeline.run(
        "shell_exec", CallArguments.same({"command": "true"}), Identity(), planner(work, after_s),
        progress=progress, detach=detach,
    )  # fmt: skip
    assert isinstance(result, Reply)
    return result


async def test_progress_stops_once_the_call_has_yielded(setup: Setup) -> None:
    work = Work()
    sent: list[float] = []
    reply = await run(setup, work, 0.2, sent=sent)
    assert reply.job is not None and reply.data["status"] == "running"
    assert sent, "progress flowed while the request was open"
    at_return = len(sent)
    await work.ticks(3)  # the work keeps reporting; nothing reaches the closed request
    assert len(sent) == at_return
    job = setup.jobs.get(reply.job.job_id)
    work.release.set()
    assert await setup.jobs.wait_end(job, 5)
    assert job.end is not None and job.end.outcome == "ok"


async def test_a_cancelled_call_cancels_its_work_before_it_yields(setup: Setup) -> None:
    work = Work()
    call = asyncio.create_task(run(setup, work, 30.0))
    await asyncio.wait_for(work.started.wait(), 5)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert work.cancelled is True
    assert setup.jobs.jobs() == []
    record = read_audit(setup.settings.audit_path)[-1]
    assert (record["tool"], record["outcome"]) == ("shell_exec", "cancelled")


async def test_a_task_asked_up_front_detaches_even_a_failure(setup: Setup) -> None:
    reply = await run(setup, Work(fail_at_once=True), None, Detach(task=True, at_once=True))
    assert reply.job is not None and reply.job.task_id is not None
    job = setup.jobs.get(reply.job.job_id)
    assert await setup.jobs.wait_end(job, 5)
    assert job.end is not None and job.end.outcome == "failed"
    assert job.final is not None and job.final.error is not None
    assert job.final.error.kind == "failed"


async def test_a_closed_store_keeps_the_call_inline(setup: Setup) -> None:
    await setup.jobs.aclose()
    work = Work()
    call = asyncio.create_task(run(setup, work, 0.1))
    await asyncio.wait_for(work.started.wait(), 5)
    await work.ticks(6)  # six ticks of 0.05 s: well past yield_after, and the call is still open
    assert not call.done()
    work.release.set()
    reply = await call
    assert reply.data["status"] == "done"
    assert any("RELAY_SHELL_MAX_JOBS" in note for note in reply.data["notes"])  # type: ignore[union-attr]
