"""Work that outlives its call: what the pipeline and the job store say to each other.

A command-running call that passes its ``yield_after`` hands its work to a **job**: the
executor's task keeps running, its output streams into a live buffer, and the call returns
``status: "running"`` with the job id (docs/adr/0017-jobs-and-tasks.md). The pipeline
(``governance``) decides when that happens and writes the audit records; the job store
(``sessions/jobs.py``) keeps the job, its output and its end. Neither layer imports the
other: they meet here, in plain data and one protocol (:class:`JobHost`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from relay_shell.capture import OutputTap

TASK_GENERATIONS = ("2026-07-28", "2025-11-25")
"""The MCP Tasks protocol generations served: the extension, and the experimental core tasks."""

JOB_PREFIX = "job-"
"""Every job id starts with this (then 12 hex digits); session tools route on it."""

JobOutcome = Literal["ok", "failed", "timeout", "cancelled", "error"]
"""How a job ended: exit 0, a non-zero exit (or a failed run), its timeout, killed, or an error."""


@dataclass(frozen=True)
class JobMeta:
    """What a job is: the call it came from, who owns it, what it runs and where.

    ``owner`` is the caller's principal (``None`` when there is no OAuth: the one local
    principal). ``split`` keeps stdout and stderr apart in the live stream. ``task``
    gives the job an MCP task id as well.
    """

    tool: str
    call_id: str
    owner: str | None
    label: str
    host: str | None
    split: bool
    task: bool
    timeout_s: float | None
    budget: int
    """The most bytes the yielded result carries of the output printed so far."""


@dataclass(frozen=True)
class JobTicket:
    """A job just created: the ids and the output read so far (consumed from its stream)."""

    job_id: str
    task_id: str | None
    created_at: datetime
    output: str
    stdout: str | None
    stderr: str | None
    bytes_read: int


@dataclass(frozen=True)
class JobEnd:
    """How a job ended, as ``session_recv`` and the ``job_end`` record report it.

    ``output_bytes`` and ``stream_sha256`` cover the whole raw stream (both streams in
    arrival order when they were kept apart). ``results`` are the per-host rows of a fan-out.
    """

    outcome: JobOutcome
    exit_code: int | None
    signal: str | None
    output_bytes: int
    stream_sha256: str | None
    duration_ms: int
    results: Sequence[Mapping[str, object]] = ()
    message: str | None = None


class LiveOutput(OutputTap, Protocol):
    """The live stream of a call that may become a job, with the count and hash of its capture."""

    @property
    def total(self) -> int:
        """Raw bytes of the stream so far (both streams)."""

    @property
    def sha256(self) -> str | None:
        """SHA-256 of the stream so far, in arrival order; ``None`` when no capture feeds it
        (a fan-out's stream is its progress lines; each host has its own hash)."""


type JobFinisher[R] = Callable[[str], Awaitable[tuple[JobEnd, R]]]
"""Given the job id: awaits the end of the job's work, writes its ``job_end`` record, and
returns its end and final reply. Never raises."""


class JobHost[R](Protocol):
    """What the pipeline needs of the job store (``sessions/jobs.py:JobStore`` implements it).

    ``R`` is the final reply a job keeps for later readers (the pipeline's ``Reply``).
    """

    @property
    def limit(self) -> int:
        """``RELAY_SHELL_MAX_JOBS``: running jobs plus ended jobs nobody has read yet."""

    def new_output(self, split: bool) -> LiveOutput:
        """A fresh live stream for a call that may become a job (not registered yet)."""

    def full(self) -> bool:
        """Whether no job can be added now (the call then runs to its end instead)."""

    async def adopt(
        self, meta: JobMeta, output: LiveOutput, stop: Callable[[], object], finish: JobFinisher[R]
    ) -> JobTicket:
        """Register running work as a job and read what it has printed so far.

        ``stop()`` cancels the work (its executor kills what it started); ``finish()`` is run
        by the store to learn how the job ended.

        Raises:
            LimitReached: the store is full (``RELAY_SHELL_MAX_JOBS``).
            SpawnFailed: the store is shutting down.
        """
