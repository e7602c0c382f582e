"""Jobs: command-running calls whose work went on after the call returned.

The pipeline hands a job over with :meth:`JobStore.adopt` once a call has run for its
``yield_after``; from then on the store owns it. Its output streams into a
:class:`JobOutput` (the same bounded :class:`~relay_shell.sessions.output.OutputBuffer` a
PTY session reads from, one per stream when stdout and stderr are kept apart), which
``session_recv`` drains. A watcher task awaits the work's end (the pipeline's finisher,
which writes the ``job_end`` audit record) and keeps the end and the final reply.

Bounds: at most ``max_jobs`` jobs that are running or ended and not yet read; an ended job
is kept ``retention_s`` after its end, measured with an injectable clock, then swept. Ended
jobs already read are kept too, but never more than :data:`KEPT_FACTOR` times ``max_jobs``
jobs in all: past that the oldest read ones go first.
Killing a job cancels its work (the executor kills the process group, or signals and closes
the remote channels) and waits, bounded, for its end. Shutdown kills every running job.
Jobs with a task id (MCP Tasks) are found by either id.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import math
import secrets
import time
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from relay_shell.background import JOB_PREFIX, JobEnd, JobFinisher, JobMeta, JobTicket, LiveOutput
from relay_shell.capture import OutputCapture, SplitCapture
from relay_shell.errors import InvalidInput, LimitReached, SessionNotFound, SpawnFailed
from relay_shell.linear_regex import LinearRegex
from relay_shell.periodic import Periodic
from relay_shell.sessions.output import OutputBuffer, RecvResult

log = logging.getLogger("relay_shell.jobs")

KILL_WAIT_S = 30.0
"""Longest a kill (or shutdown) waits for a job's work to stop and its record to be written."""
TASK_ID_BYTES = 16
"""128 random bits per task id."""
KEPT_FACTOR = 2
"""The store holds at most this many times ``max_jobs`` jobs, read ones included."""

JobState = Literal["running", "ended"]


class JobOutput:
    """The live stream of one job: ring buffers ``session_recv`` drains.

    Merged output goes to :attr:`out`; with ``split`` stderr goes to :attr:`err`. Memory is
    at most ``capacity`` bytes per stream (the oldest bytes are dropped and counted). The
    stream's count and hash are those of the executor's capture (:meth:`attach`), which sees
    the same bytes: nothing is hashed twice.
    """

    def __init__(self, capacity: int, split: bool) -> None:
        self.split = split
        self.out = OutputBuffer(capacity)
        self.err = OutputBuffer(capacity) if split else None
        self.changed = asyncio.Event()
        self._capture: OutputCapture | SplitCapture | None = None
        self._seen = 0

    def attach(self, capture: OutputCapture | SplitCapture) -> None:
        self._capture = capture

    def stdout(self, data: bytes) -> None:
        self._seen += len(data)
        self.out.append(data)
        self.changed.set()

    def stderr(self, data: bytes) -> None:
        self._seen += len(data)
        (self.err or self.out).append(data)
        self.changed.set()

    @property
    def total(self) -> int:
        return self._seen if self._capture is None else self._capture.total

    @property
    def sha256(self) -> str | None:
        return None if self._capture is None else self._capture.sha256

    @property
    def buffered(self) -> int:
        return self.out.buffered + (self.err.buffered if self.err else 0)

    @property
    def dropped(self) -> int:
        return self.out.dropped + (self.err.dropped if self.err else 0)

    @property
    def drained(self) -> bool:
        return self.out.drained and (self.err is None or self.err.drained)

    def finish(self) -> None:
        self.out.finish()
        if self.err is not None:
            self.err.finish()
        self.changed.set()


@dataclass(frozen=True)
class JobInfo:
    """One row of ``session_list`` for a job."""

    job_id: str
    task_id: str | None
    tool: str
    command: str
    host: str | None
    owner: str | None
    state: JobState
    age_s: float
    bytes_produced: int
    bytes_buffered: int
    bytes_dropped: int
    end: JobEnd | None


@dataclass(frozen=True)
class JobRead:
    """What one ``session_recv`` of a job consumed, and the job's end once it is fully read.

    ``output`` is the merged stream, or stdout when the streams are kept apart (then
    ``stderr`` holds stderr). ``matched``, ``timed_out`` and ``dropped_bytes`` as for a
    session; ``ended`` once the job has ended and everything it printed was returned.
    """

    job_id: str
    output: str
    stderr: str | None
    bytes: int
    matched: bool | None
    timed_out: bool
    ended: bool
    dropped_bytes: int
    end: JobEnd | None


@dataclass(eq=False)
class Job[R]:
    """One job: its description, live output, how to stop it, and (once over) how it ended."""

    job_id: str
    meta: JobMeta
    output: JobOutput
    stop: Callable[[], object]
    created: float
    created_at: datetime
    task_id: str | None = None
    watcher: asyncio.Task[None] | None = None
    ended_at: float | None = None
    ended_at_wall: datetime | None = None
    end: JobEnd | None = None
    final: R | None = None
    read: bool = False
    stopping: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def running(self) -> bool:
        return self.end is None


class JobStore[R]:
    """The jobs of one server. ``R`` is the final reply a job keeps (the pipeline's ``Reply``)."""

    def __init__(
        self,
        *,
        max_jobs: int,
        retention_s: float,
        buffer_bytes: int,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sweep_interval_s: float = 30.0,
        kill_wait_s: float = KILL_WAIT_S,
    ) -> None:
        self._max_jobs = max_jobs
        self._retention_s = retention_s
        self._buffer_bytes = buffer_bytes
        self._clock = clock
        self._wall_clock = wall_clock
        self._sweeper = Periodic("job sweep", sweep_interval_s, self.sweep, log)
        self._kill_wait_s = kill_wait_s
        self._jobs: dict[str, Job[R]] = {}
        self._tasks: dict[str, str] = {}
        self._shut_down = False

    # -- the pipeline's side (relay_shell.background.JobHost) ------------------------------------

    @property
    def limit(self) -> int:
        return self._max_jobs

    @property
    def retention_s(self) -> float:
        return self._retention_s

    def new_output(self, split: bool) -> LiveOutput:
        return JobOutput(self._buffer_bytes, split)

    def counted(self) -> int:
        """Jobs that hold a place: running, or ended and not read yet."""
        self._expire()
        return sum(1 for job in self._jobs.values() if job.running or not job.read)

    def full(self) -> bool:
        return self._shut_down or self.counted() >= self._max_jobs

    async def adopt(
        self, meta: JobMeta, output: LiveOutput, stop: Callable[[], object], finish: JobFinisher[R]
    ) -> JobTicket:
        """Register running work as a job (see :class:`relay_shell.background.JobHost`)."""
        if not isinstance(output, JobOutput):
            raise TypeError("a job's output must come from this store's new_output()")
        if self._shut_down:
            raise SpawnFailed("the server is shutting down: no new jobs")
        if self.counted() >= self._max_jobs:
            raise LimitReached("RELAY_SHELL_MAX_JOBS", self._max_jobs, "running or unread jobs")
        job_id = self._new_id(JOB_PREFIX, 6, self._jobs)
        job: Job[R] = Job(job_id, meta, output, stop, self._clock(), self._wall_clock())
        if meta.task:
            job.task_id = self._new_id("", TASK_ID_BYTES, self._tasks)
            self._tasks[job.task_id] = job_id
        self._jobs[job_id] = job
        self._evict_read()
        job.watcher = asyncio.create_task(self._watch(job, finish), name=f"relay-shell {job_id}")
        first = await self._take(job, timeout_s=0.0, max_bytes=max(1, meta.budget), until=None, strip=False)
        if first.stderr is None:
            return JobTicket(job_id, job.task_id, job.created_at, first.output, None, None, first.bytes)
        return JobTicket(job_id, job.task_id, job.created_at, "", first.output, first.stderr, first.bytes)

    # -- lookups ----------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job[R]:
        """Raises SessionNotFound for an unknown (or expired) job id."""
        self._expire()
        job = self._jobs.get(job_id) if isinstance(job_id, str) else None
        if job is None:
            raise SessionNotFound(job_id)
        return job

    def find_task(self, task_id: str) -> Job[R] | None:
        """The job behind an MCP task id, or None (unknown or expired)."""
        self._expire()
        job_id = self._tasks.get(task_id) if isinstance(task_id, str) else None
        return None if job_id is None else self._jobs.get(job_id)

    def jobs(self) -> builtins.list[Job[R]]:
        """Every job, oldest first."""
        self._expire()
        return list(self._jobs.values())

    def info(self, job: Job[R]) -> JobInfo:
        return JobInfo(
            job.job_id, job.task_id, job.meta.tool, job.meta.label, job.meta.host, job.meta.owner,
            "running" if job.running else "ended", round(max(0.0, self._clock() - job.created), 3),
            job.output.total, job.output.buffered, job.output.dropped, job.end,
        )  # fmt: skip

    def expires_in(self, job: Job[R]) -> float:
        """Seconds from the job's creation until it may be swept (its upper bound while running)."""
        if job.ended_at is not None:
            return job.ended_at - job.created + self._retention_s
        return (job.meta.timeout_s or 0.0) + self._retention_s

    # -- reads and kills ----------------------------------------------------------------------------

    async def recv(
        self, job_id: str, *, timeout_s: float, max_bytes: int, until: LinearRegex | None, strip: bool
    ) -> JobRead:
        """Consume the job's output since the last read, as ``SessionRegistry.recv`` does.

        Without ``until``: what is buffered at once, else the first output within
        ``timeout_s``. With ``until``: read until it matches (searched in stdout when the
        streams are kept apart), the timeout, the end of the job or ``max_bytes``. A read
        that returns ``ended`` marks the job read (it no longer counts against MAX_JOBS).

        Raises:
            SessionNotFound: unknown job.
            InvalidInput: ``timeout`` negative or not finite, ``max_bytes`` below 1.
        """
        if not isinstance(timeout_s, int | float) or not math.isfinite(timeout_s) or timeout_s < 0:
            raise InvalidInput("timeout", f"must be a finite number of seconds >= 0, not {timeout_s!r}")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise InvalidInput("max_bytes", f"must be a positive integer, not {max_bytes!r}")
        job = self.get(job_id)
        got = await self._take(job, timeout_s=timeout_s, max_bytes=max_bytes, until=until, strip=strip)
        if got.ended:
            job.read = True
        return got

    def mark_read(self, job: Job[R]) -> None:
        """The job's end was delivered another way (a task's result): it no longer holds a place."""
        if not job.running:
            job.read = True

    async def wait_end(self, job: Job[R], timeout_s: float) -> bool:
        """Wait (bounded) until the job has ended; True if it has."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await job.done.wait()
        return job.done.is_set()

    async def kill(self, job_id: str) -> Job[R]:
        """End a running job (its work is cancelled and waited for), or remove an ended one.

        A killed job stays readable (``ended``, outcome ``cancelled``) until it is read or
        expires; killing an ended job removes it.

        Raises:
            SessionNotFound: unknown job.
        """
        job = self.get(job_id)
        if job.running:
            await self._stop(job)
        else:
            self._remove(job)
        return job

    async def stop(self, job: Job[R]) -> None:
        """End a running job (a task's cancel); nothing happens to an ended one."""
        if job.running:
            await self._stop(job)

    # -- life ----------------------------------------------------------------------------------------

    async def sweep(self) -> builtins.list[str]:
        """Remove ended jobs kept longer than the retention; returns their ids."""
        return self._expire()

    async def start(self) -> None:
        """Start the background sweep. Idempotent."""
        self._sweeper.start()

    async def aclose(self) -> None:
        """Shutdown: refuse new jobs, kill every running one and wait (bounded) for their records."""
        self._shut_down = True
        await self._sweeper.stop()
        running = [job for job in self._jobs.values() if job.running]
        await asyncio.gather(*(self._stop(job) for job in running), return_exceptions=True)

    # -- internals -------------------------------------------------------------------------------------

    async def _take(
        self, job: Job[R], *, timeout_s: float, max_bytes: int, until: LinearRegex | None, strip: bool
    ) -> JobRead:
        output = job.output
        if output.err is None:
            got = await output.out.take(timeout_s, max_bytes, until, strip, _no_status)
            return self._read(job, got, None)
        if until is not None:
            got = await output.out.take(timeout_s, max_bytes, until, strip, _no_status)
            room = max(1, max_bytes - got.bytes)
            return self._read(job, got, await output.err.take(0.0, room, None, strip, _no_status))
        return await self._take_split(job, output.err, timeout_s, max_bytes, strip)

    async def _take_split(
        self, job: Job[R], err: OutputBuffer, timeout_s: float, max_bytes: int, strip: bool
    ) -> JobRead:
        """Both streams without ``until``: what is there now, else wait for output on either."""
        output = job.output
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            output.changed.clear()
            got = await output.out.take(0.0, max_bytes, None, strip, _no_status)
            got_err = await err.take(0.0, max(1, max_bytes - got.bytes), None, strip, _no_status)
            read = self._read(job, got, got_err)
            remaining = deadline - loop.time()
            if read.bytes or read.ended or remaining <= 0:
                return read if read.bytes or read.ended else _timed_out(read)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await output.changed.wait()

    def _read(self, job: Job[R], got: RecvResult, got_err: RecvResult | None) -> JobRead:
        ended = job.end is not None and job.output.drained
        dropped = got.dropped_bytes + (got_err.dropped_bytes if got_err else 0)
        return JobRead(
            job.job_id, got.output, None if got_err is None else got_err.output,
            got.bytes + (got_err.bytes if got_err else 0), got.matched, got.timed_out and not ended, ended,
            dropped, job.end if ended else None,
        )  # fmt: skip

    async def _watch(self, job: Job[R], finish: JobFinisher[R]) -> None:
        """Await the work's end through the pipeline's finisher; keep the end, then wake readers."""
        try:
            job.end, job.final = await finish(job.job_id)
        except Exception:  # the finisher writes the record and never raises; this is a backstop
            log.exception("job %s ended without a report", job.job_id)
            job.end = JobEnd("error", None, None, job.output.total, job.output.sha256, 0, message="no report")
        finally:
            if job.end is None:  # the watcher itself was cancelled
                job.end = JobEnd("cancelled", None, None, job.output.total, job.output.sha256, 0)
            job.ended_at = self._clock()
            job.ended_at_wall = self._wall_clock()
            job.output.finish()
            job.done.set()

    async def _stop(self, job: Job[R]) -> None:
        job.stopping = True
        job.stop()
        watcher = job.watcher
        if watcher is None:
            return
        # Shielded: the work's own cleanup (TERM, grace, KILL) must finish even if the
        # caller of kill is cancelled meanwhile; bounded so a wedged executor cannot hang it.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._kill_wait_s):
                await asyncio.shield(job.done.wait())
        if not job.done.is_set():
            log.error("job %s did not stop within %.0f s", job.job_id, self._kill_wait_s)

    def _expire(self) -> builtins.list[str]:
        now = self._clock()
        expired = [
            job
            for job in self._jobs.values()
            if job.ended_at is not None and now - job.ended_at > self._retention_s
        ]
        for job in expired:
            self._remove(job)
        return [job.job_id for job in expired]

    def _evict_read(self) -> None:
        """Past ``KEPT_FACTOR * max_jobs`` jobs, forget the oldest that ended and were read."""
        excess = len(self._jobs) - KEPT_FACTOR * self._max_jobs
        if excess <= 0:
            return
        read = sorted((job for job in self._jobs.values() if job.read), key=lambda job: job.ended_at or 0.0)
        for job in read[:excess]:
            self._remove(job)

    def _remove(self, job: Job[R]) -> None:
        self._jobs.pop(job.job_id, None)
        if job.task_id is not None:
            self._tasks.pop(job.task_id, None)

    @staticmethod
    def _new_id(prefix: str, nbytes: int, taken: Container[str]) -> str:
        while True:
            candidate = prefix + secrets.token_hex(nbytes)
            if candidate not in taken:
                return candidate


def _no_status() -> int | None:
    return None


def _timed_out(read: JobRead) -> JobRead:
    return JobRead(
        read.job_id, read.output, read.stderr, read.bytes, read.matched, True, read.ended, read.dropped_bytes,
        read.end,
    )  # fmt: skip
