"""One command on many hosts (``ssh_fanout`` in docs/tools.md).

Bounded concurrency (a semaphore), a deadline per host (connecting included, counted from
when the host's turn starts), results in input order, and one output budget shared by
all hosts: each gets ``budget // n`` bytes for its rendered output (never less than
:data:`MIN_HOST_BUDGET`), so the outputs together stay within the budget whenever
``n <= budget // MIN_HOST_BUDGET``. stdout and stderr are merged per host.

Hosts run under a :class:`~relay_shell.ssh.fleet.Rollout` (batches, failure budget,
canaries; see :mod:`relay_shell.ssh.fleet`): a host that never started is ``skipped``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from relay_shell.capture import capture_fields
from relay_shell.errors import ExecTimeout, LimitReached, RemoteFailed, RemoteUnreachable
from relay_shell.ssh.fleet import Rollout, TargetsReport, run_targets
from relay_shell.ssh.pool import ConnectionPool
from relay_shell.ssh.remote_exec import run_remote
from relay_shell.ssh.targets import HostSpec

MIN_HOST_BUDGET = 256
MARKER_RESERVE = 48  # room for the "[... N bytes omitted ...]" line a truncated render adds
PROGRESS_INTERVAL_S = 1.0
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

FanoutStatus = Literal["ok", "failed", "timeout", "unreachable", "denied", "skipped"]
FanoutProgress = Callable[[int, int], Awaitable[None]]


@dataclass(frozen=True)
class FanoutHostResult:
    host: str
    status: FanoutStatus
    exit_code: int | None
    output: str
    truncated: bool
    output_bytes: int
    stream_sha256: str
    duration_ms: int
    reason: str | None
    batch: int | None = None  # the batch it belonged to (0 = canaries); None when denied

    def fields(self) -> dict[str, object]:
        """The JSON-ready row of a result."""
        return {
            "host": self.host, "status": self.status, "exit_code": self.exit_code, "output": self.output,
            "truncated": self.truncated, "output_bytes": self.output_bytes,
            "stream_sha256": self.stream_sha256, "duration_ms": self.duration_ms, "reason": self.reason,
            "batch": self.batch,
        }  # fmt: skip


FanoutReport = TargetsReport[FanoutHostResult]
"""Every host's result in input order, the host names of each batch, and why it stopped (if)."""


def host_budget(budget: int, hosts: int) -> int:
    """Capture budget of one host so its rendered output fits in its share of ``budget``."""
    share = budget // max(1, hosts)
    return max(MIN_HOST_BUDGET, share - MARKER_RESERVE)


async def fanout(
    pool: ConnectionPool,
    targets: Sequence[tuple[str, HostSpec | None, str | None]],
    command: str,
    *,
    timeout_s: float,
    concurrency: int,
    budget: int,
    on_progress: FanoutProgress | None = None,
) -> list[FanoutHostResult]:
    """:func:`run_fanout` with no batches, budget or canaries: every target runs."""
    report = await run_fanout(
        pool, targets, command, timeout_s=timeout_s, concurrency=concurrency, budget=budget,
        on_progress=on_progress,
    )  # fmt: skip
    return report.results


async def run_fanout(
    pool: ConnectionPool,
    targets: Sequence[tuple[str, HostSpec | None, str | None]],
    command: str,
    *,
    timeout_s: float,
    concurrency: int,
    budget: int,
    rollout: Rollout | None = None,
    on_progress: FanoutProgress | None = None,
) -> FanoutReport:
    """Run ``command`` on every target; ``(name, None, reason)`` targets are reported ``denied``.

    The other targets run under ``rollout`` (default: all in one batch, no stop), each
    batch at most ``concurrency`` wide. ``on_progress(done, total)`` is awaited at most about
    once a second, and once at the end. Returns one result per target, in input order; a
    host's failure never fails the call.
    """
    per_host = host_budget(budget, len(targets))
    progress = _Progress(len(targets), on_progress)

    async def run_host(name: str, spec: HostSpec, batch: int) -> FanoutHostResult:
        result = await _run_host(pool, name, spec, command, timeout_s, per_host)
        return replace(result, batch=batch)

    def denied(name: str, reason: str) -> FanoutHostResult:
        return FanoutHostResult(name, "denied", None, "", False, 0, EMPTY_SHA256, 0, reason)

    def skipped(name: str, reason: str, batch: int) -> FanoutHostResult:
        return FanoutHostResult(name, "skipped", None, "", False, 0, EMPTY_SHA256, 0, reason, batch)

    return await run_targets(
        targets, rollout or Rollout(), concurrency=concurrency, run_host=run_host, denied=denied,
        skipped=skipped, on_done=progress.host_done,
    )  # fmt: skip


class _Progress:
    def __init__(self, total: int, callback: FanoutProgress | None) -> None:
        self.total = total
        self.callback = callback
        self.done = 0
        self.last_report = float("-inf")

    async def host_done(self) -> None:
        self.done += 1
        now = time.monotonic()
        if self.callback is not None and (
            self.done == self.total or now - self.last_report >= PROGRESS_INTERVAL_S
        ):
            self.last_report = now
            await self.callback(self.done, self.total)


async def _run_host(
    pool: ConnectionPool, name: str, spec: HostSpec, command: str, timeout_s: float, budget: int
) -> FanoutHostResult:
    started = time.monotonic()

    def elapsed_ms() -> int:
        return round((time.monotonic() - started) * 1000)

    try:
        result = await run_remote(pool, spec, command, timeout_s=timeout_s, budget=budget, merge_stderr=True)
    except ExecTimeout as exc:
        fields = exc.partial.fields
        return FanoutHostResult(
            name, "timeout", None, exc.partial.text, bool(fields.get("truncated", False)),
            _int_field(fields, "output_bytes"), str(fields.get("stream_sha256", EMPTY_SHA256)),
            elapsed_ms(), exc.message,
        )  # fmt: skip
    except RemoteUnreachable as exc:
        return FanoutHostResult(
            name, "unreachable", None, "", False, 0, EMPTY_SHA256, elapsed_ms(), f"{exc.reason}: {exc.detail}"
        )
    except (RemoteFailed, LimitReached) as exc:
        return FanoutHostResult(name, "failed", None, "", False, 0, EMPTY_SHA256, elapsed_ms(), exc.message)
    fields = capture_fields(result.capture)
    ok = result.exit_code == 0
    reason = None if ok or result.signal is None else f"killed by signal {result.signal}"
    return FanoutHostResult(
        name, "ok" if ok else "failed", result.exit_code, str(fields["output"]), bool(fields["truncated"]),
        _int_field(fields, "output_bytes"), str(fields["stream_sha256"]), result.duration_ms, reason,
    )  # fmt: skip


def _int_field(fields: dict[str, object], name: str) -> int:
    value = fields.get(name, 0)
    return value if isinstance(value, int) else 0


def group_identical(results: Sequence[FanoutHostResult]) -> list[tuple[list[str], str]]:
    """Hosts with the same status, exit code, reason and output, in order of first appearance.

    Each group's text is a status line (``ok (exit 0)``, ``unreachable: refused: ...``)
    followed by the shared output, so 200 identical answers render as one block.
    """
    groups: dict[str, list[str]] = {}
    for result in results:
        groups.setdefault(group_text(result), []).append(result.host)
    return [(hosts, text) for text, hosts in groups.items()]


def group_text(result: FanoutHostResult) -> str:
    """A host's status line (``ok (exit 0)``, ``skipped: not started: ...``) and its output."""
    header: str = result.status
    if result.exit_code is not None:
        header += f" (exit {result.exit_code})"
    if result.reason:
        header += f": {result.reason}"
    return header + ("\n" + result.output.rstrip("\n") if result.output else "")
