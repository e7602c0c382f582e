"""Connectivity probes (``ssh_check`` in docs/tools.md): connect and authenticate, then hang up.

Each probe dials a fresh connection through the pool's dialer (same host key policy,
keys, jump chain and ``MaxStartups`` retry as every other connection) but does not pool
it: the latency is an honest connect + authenticate time, and a stale pooled connection
cannot make a dead host look alive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from relay_shell.errors import RemoteUnreachable
from relay_shell.ssh.pool import ConnectionPool
from relay_shell.ssh.targets import HostSpec


@dataclass(frozen=True)
class CheckResult:
    host: str
    ok: bool
    reason: str | None  # RemoteUnreachable.reason when not ok
    detail: str | None
    latency_ms: int | None  # connect + authenticate, when ok


async def check_hosts(
    pool: ConnectionPool, specs: Sequence[HostSpec], *, timeout_s: float, concurrency: int
) -> list[CheckResult]:
    """Probe every host, at most ``concurrency`` at once, each within ``timeout_s``.

    Returns one result per spec, in input order. Never raises for an unreachable host.
    """
    gate = asyncio.Semaphore(max(1, concurrency))

    async def probe(spec: HostSpec) -> CheckResult:
        async with gate:
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                dialed = await pool.dialer.dial(spec, deadline=started + timeout_s)
            except RemoteUnreachable as exc:
                return CheckResult(spec.alias, False, exc.reason, exc.detail, None)
            latency_ms = round((loop.time() - started) * 1000)
            await dialed.aclose()
            return CheckResult(spec.alias, True, None, None, latency_ms)

    async with asyncio.TaskGroup() as tasks:
        running = [tasks.create_task(probe(spec)) for spec in specs]
    return [task.result() for task in running]
