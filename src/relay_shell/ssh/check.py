"""Connectivity probes (``ssh_check`` in docs/tools.md): is each host answering over SSH right now?

A probe is read-only: it never records a host key (an unknown key is reported, with its
fingerprint, as ``host_key``) and runs no command. Per host, by default:

1. a usable pooled connection, if the pool has one, or a new one dialled through the pool
   (same host key policy, keys, jump chain and ``MaxStartups`` retry as every other
   connection; it stays pooled for later calls);
2. one round trip on it: an SSH global request (``keepalive@openssh.com``, the request
   OpenSSH clients send as a keepalive; any answer proves the server is there), so a
   stale connection can never make a dead host look alive. A connection that does not
   answer is discarded and, when it was a reused one, the host is dialled once more.

``fresh=True`` skips the pool: a new connection is dialled (an honest connect + authenticate
latency), used for the round trip and closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import asyncssh

from relay_shell.errors import LimitReached, RemoteUnreachable
from relay_shell.ssh.pool import ConnectionPool
from relay_shell.ssh.targets import HostSpec

ROUND_TRIP_REQUEST = b"keepalive@openssh.com"


@dataclass(frozen=True)
class CheckResult:
    host: str
    ok: bool
    reason: str | None  # RemoteUnreachable.reason when not ok
    detail: str | None
    latency_ms: int | None  # when ok: the round trip, plus connect + authenticate when dialled
    reused: bool = False  # the round trip went over an already pooled connection


async def round_trip(connection: asyncssh.SSHClientConnection, deadline: float) -> bool:
    """Send one global request and wait for the answer by ``deadline``: is the connection alive?

    Any answer counts (OpenSSH refuses requests it does not know, which still proves it is
    there); a closed connection, or no answer in time, does not.
    """
    if connection.is_closed():
        return False
    try:
        async with asyncio.timeout_at(deadline):
            # asyncssh's own keepalive request; it has no public name for it.
            await connection._make_global_request(ROUND_TRIP_REQUEST)
    except (TimeoutError, asyncssh.Error, OSError):
        return False
    # On connection loss asyncssh answers pending requests with a failure: look again.
    return not connection.is_closed()


async def check_hosts(
    pool: ConnectionPool,
    specs: Sequence[HostSpec],
    *,
    timeout_s: float,
    concurrency: int,
    fresh: bool = False,
) -> list[CheckResult]:
    """Probe every host, at most ``concurrency`` at once, each within ``timeout_s``.

    Returns one result per spec, in input order. Never raises for an unreachable host.
    """
    gate = asyncio.Semaphore(max(1, concurrency))

    async def probe(spec: HostSpec) -> CheckResult:
        async with gate:
            loop = asyncio.get_running_loop()
            started = loop.time()
            deadline = started + timeout_s
            try:
                if fresh:
                    reused = await _probe_fresh(pool, spec, deadline)
                else:
                    reused = await _probe_pooled(pool, spec, deadline)
            except (RemoteUnreachable, LimitReached) as exc:
                reason, detail = _failure(exc)
                return CheckResult(spec.alias, False, reason, detail, None)
            latency_ms = round((loop.time() - started) * 1000)
            return CheckResult(spec.alias, True, None, None, latency_ms, reused)

    async with asyncio.TaskGroup() as tasks:
        running = [tasks.create_task(probe(spec)) for spec in specs]
    return [task.result() for task in running]


async def _probe_pooled(pool: ConnectionPool, spec: HostSpec, deadline: float) -> bool:
    """Round trip over a pooled connection; returns whether it was a reused one.

    Raises:
        RemoteUnreachable: no connection, or one that does not answer.
        LimitReached: ``MAX_CONNS`` connections exist and all are in use.
    """
    for _ in range(2):  # a dead reused connection earns one new dial
        async with pool.lease(spec, deadline=deadline, record_host_keys=False) as lease:
            if await round_trip(lease.connection, deadline):
                return lease.reused
            lease.discard()
            if not lease.reused or asyncio.get_running_loop().time() >= deadline:
                break
    raise RemoteUnreachable(spec.alias, "timeout", "the SSH connection did not answer a round trip in time")


async def _probe_fresh(pool: ConnectionPool, spec: HostSpec, deadline: float) -> bool:
    dialed = await pool.dialer.dial(spec, deadline=deadline, record_host_keys=False)
    try:
        if not await round_trip(dialed.connection, deadline):
            raise RemoteUnreachable(spec.alias, "closed", "the new connection did not answer a round trip")
    finally:
        await dialed.aclose()
    return False


def _failure(exc: RemoteUnreachable | LimitReached) -> tuple[str, str]:
    if isinstance(exc, RemoteUnreachable):
        return exc.reason, exc.detail
    return "limit", exc.message
