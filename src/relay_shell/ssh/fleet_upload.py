"""One local file or tree pushed to many hosts (``ssh_upload`` with ``hosts``).

Each host gets the same transfer as a single-host upload (:func:`relay_shell.ssh.sftp.upload`:
``cp -r`` destination rules, attributes kept, its own deadline counted from its turn), under
a :class:`~relay_shell.ssh.fleet.Rollout` (batches, failure budget, canaries). A host's
failure is its row, never the call's: ``failed`` (permission denied, a destination of the
wrong kind, an SFTP error), ``timeout`` or ``unreachable``; hosts the policy refused are
``denied`` and hosts a stop kept from starting are ``skipped``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from relay_shell.errors import ExecFailed, ExecTimeout, InvalidInput, LimitReached, RemoteUnreachable
from relay_shell.ssh.fleet import HostStatus, Rollout, TargetsReport, run_targets
from relay_shell.ssh.pool import ConnectionPool
from relay_shell.ssh.sftp import check_local_source, upload
from relay_shell.ssh.targets import HostSpec

UploadProgress = Callable[[int, int], Awaitable[None]]
"""``(hosts_done, hosts_total)``, awaited after every host."""


@dataclass(frozen=True)
class UploadHostResult:
    """One host of a multi-host upload: where the source landed, files and bytes, the SHA-256."""

    host: str
    status: HostStatus
    destination: str = ""
    file_count: int = 0
    bytes: int = 0
    sha256: str | None = None  # of a single-file source, read on this side
    duration_ms: int = 0
    reason: str | None = None
    batch: int | None = None

    def fields(self) -> dict[str, object]:
        """The JSON-ready row of a result."""
        return {
            "host": self.host, "status": self.status, "destination": self.destination,
            "file_count": self.file_count, "bytes": self.bytes, "sha256": self.sha256,
            "duration_ms": self.duration_ms, "reason": self.reason, "batch": self.batch,
        }  # fmt: skip


UploadReport = TargetsReport[UploadHostResult]


def upload_detail(result: UploadHostResult) -> str:
    """A row's group text: hosts that got the same thing in the same place share one line."""
    if result.status == "ok":
        files = f"{result.file_count} file{'s' if result.file_count != 1 else ''}"
        digest = f", sha256 {result.sha256}" if result.sha256 else ""
        return f"ok: {files}, {result.bytes} bytes -> {result.destination}{digest}"
    return f"{result.status}: {result.reason}" if result.reason else result.status


async def upload_many(
    pool: ConnectionPool,
    targets: Sequence[tuple[str, HostSpec | None, str | None]],
    local_path: Path,
    remote_path: str,
    *,
    recursive: bool,
    timeout_s: float,
    concurrency: int,
    rollout: Rollout,
    on_progress: UploadProgress | None = None,
) -> UploadReport:
    """Upload ``local_path`` to ``remote_path`` on every target that is not denied.

    Returns one result per target, in input order.

    Raises:
        InvalidInput: the local source is missing, special, or a directory without
            ``recursive`` (checked once, before any connection).
    """
    check_local_source(local_path, recursive)
    done = 0

    async def host_done() -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            await on_progress(done, len(targets))

    async def run_host(name: str, spec: HostSpec, batch: int) -> UploadHostResult:
        return await _upload_one(pool, name, spec, local_path, remote_path, recursive, timeout_s, batch)

    return await run_targets(
        targets, rollout, concurrency=concurrency, run_host=run_host,
        denied=lambda name, reason: UploadHostResult(name, "denied", reason=reason),
        skipped=lambda name, reason, batch: UploadHostResult(name, "skipped", reason=reason, batch=batch),
        on_done=host_done,
    )  # fmt: skip


async def _upload_one(
    pool: ConnectionPool,
    name: str,
    spec: HostSpec,
    local_path: Path,
    remote_path: str,
    recursive: bool,
    timeout_s: float,
    batch: int,
) -> UploadHostResult:
    status: HostStatus
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        result = await upload(pool, spec, local_path, remote_path, recursive=recursive, timeout_s=timeout_s)
    except ExecTimeout as exc:
        status, reason = "timeout", exc.message
    except RemoteUnreachable as exc:
        status, reason = "unreachable", f"{exc.reason}: {exc.detail}"
    except (ExecFailed, LimitReached, InvalidInput) as exc:  # permission denied, wrong kind of destination
        status, reason = "failed", exc.message
    else:
        return UploadHostResult(
            name, "ok", result.destination, result.file_count, result.bytes, result.sha256,
            result.duration_ms, None, batch,
        )  # fmt: skip
    elapsed_ms = round((loop.time() - started) * 1000)
    return UploadHostResult(name, status, duration_ms=elapsed_ms, reason=reason, batch=batch)
