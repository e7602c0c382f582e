"""The SSH connection pool (docs/adr/0012-ssh-connections.md).

- Keyed by :meth:`HostSpec.pool_key` (user, host, port, keys, known-hosts mode, jump chain),
  so a ``strict`` call never reuses an ``ignore`` connection. One key may map to several
  connections: when a server refuses a session channel while others are open or opening
  on that connection (sshd ``MaxSessions``, default 10), the lease moves to another
  connection of the same key (dialling one if needed) and the pool learns that
  connection's channel capacity.
- Single-flight: concurrent callers needing a new connection for one key share one dial
  (and its failure). The dial is cancelled when its last waiter gives up.
- Cap ``MAX_CONNS``: a new dial evicts the least recently used idle connection; when
  every connection is in use, :class:`LimitReached` names ``RELAY_SHELL_MAX_CONNS``.
  Connections in use (leased or pinned) are never evicted.
- A lease taken with ``record_host_keys=False`` (a read-only probe) never dials a
  connection that writes known_hosts; such dials are single-flight among themselves only,
  and the connection they make is pooled like any other (its host key was already known).
- Idle connections older than ``SSH_IDLE_TIMEOUT`` (per the injectable ``clock``) are
  closed by :meth:`ConnectionPool.sweep`, which a background task runs periodically.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import asyncssh

from relay_shell.config import Settings
from relay_shell.errors import LimitReached, RemoteFailed, RemoteUnreachable
from relay_shell.ssh.connect import Dialed, Dialer
from relay_shell.ssh.targets import HostSpec, PoolKey

SWEEP_INTERVAL_MAX_S = 60.0
SWEEP_INTERVAL_MIN_S = 1.0
FLIGHT_GRACE_S = 0.05


@dataclass(frozen=True)
class PoolStats:
    connections: int
    in_use: int
    idle: int
    dialing: int = 0
    dials: int = 0  # connections dialled since the pool was created (one per single-flight dial)


class _Pooled:
    """One pooled connection and its bookkeeping."""

    def __init__(self, key: PoolKey, dialed: Dialed, now: float) -> None:
        self.key = key
        self.dialed = dialed
        self.leases = 0
        self.channels = 0  # channels opened through leases and not yet released
        self.opening = 0  # channel opens in progress
        self.channel_limit: int | None = None  # learned from a refusal
        self.last_used = now
        self.discarded = False
        self.uses = 0  # leases ever taken on it: more than one means a reused connection

    @property
    def connection(self) -> asyncssh.SSHClientConnection:
        return self.dialed.connection

    @property
    def usable(self) -> bool:
        return not self.discarded and not self.connection.is_closed()

    def has_room(self) -> bool:
        return self.channel_limit is None or self.leases < self.channel_limit


class _Flight:
    """A dial in progress that several callers may be waiting for, bounded by its starter's deadline."""

    def __init__(self, task: asyncio.Task[_Pooled], deadline: float, cap: float) -> None:
        self.task = task
        self.deadline = deadline  # when the dial gives up: min(starter's deadline, cap)
        self.cap = cap  # start + SSH_CONNECT_TIMEOUT: no waiter's dial could last longer
        self.waiters = 0

    def cut_short_for(self, deadline: float) -> bool:
        """Did the starter's earlier deadline end this dial before ``deadline``'s own dial would have?"""
        return self.deadline + FLIGHT_GRACE_S < min(deadline, self.cap)


class Lease:
    """The right to use one pooled connection until released.

    :attr:`connection` may change while no channel is open yet (see :meth:`open_channel`).
    """

    def __init__(
        self, pool: ConnectionPool, spec: HostSpec, entry: _Pooled, deadline: float, *, record: bool = True
    ) -> None:
        self._pool = pool
        self.spec = spec
        self._entry = entry
        self._deadline = deadline
        self._refused_by: list[_Pooled] = []
        self.record = record
        self.reused = entry.uses > 1  # the connection served an earlier lease (it was not dialled for us)
        self.channels = 0
        self.released = False

    @property
    def connection(self) -> asyncssh.SSHClientConnection:
        return self._entry.connection

    def discard(self) -> None:
        """Do not reuse this connection: close it once its last lease is released."""
        self._entry.discarded = True

    async def open_channel[T](
        self,
        opener: Callable[[asyncssh.SSHClientConnection], Awaitable[T]],
        *,
        deadline: float | None = None,
    ) -> T:
        """Run ``opener(connection)`` (which opens one channel) and count the channel.

        If the server refuses the channel while other channels are open or opening on that
        connection, the lease moves to another connection of the same key and retries; a
        pooled connection found dead is replaced the same way.

        Raises:
            RemoteFailed: the server refused the channel on an otherwise unused connection.
            RemoteUnreachable, LimitReached: no replacement connection could be had.
        """
        deadline = self._deadline if deadline is None else deadline
        while True:
            entry = self._entry
            entry.opening += 1
            try:
                result = await opener(entry.connection)
            except (asyncssh.ChannelOpenError, asyncssh.DisconnectError, OSError) as exc:
                dead = entry.connection.is_closed()
                if not dead and not isinstance(exc, asyncssh.ChannelOpenError):
                    raise  # the opener's own failure on a live connection: not ours to translate
                if not self._may_move(dead, others=entry.opening - 1 + entry.channels):
                    raise _channel_failure(self.spec, exc) from exc
                if not dead:
                    entry.channel_limit = max(1, entry.channels)  # raised again as more channels succeed
                self._refused_by.append(entry)
                await self._pool._move(self, avoid=self._refused_by, deadline=deadline)
                continue
            finally:
                entry.opening -= 1
            entry.channels += 1
            self.channels += 1
            if entry.channel_limit is not None and entry.channels > entry.channel_limit:
                entry.channel_limit = entry.channels  # the learned capacity was too low
            return result

    def _may_move(self, dead: bool, *, others: int) -> bool:
        """Move on a dead connection, or on a refusal while other channels use the connection."""
        if self.channels > 0 or len(self._refused_by) >= self._pool.max_moves:
            return False  # a lease's channels all live on one connection
        return dead or others > 0

    def _rebind(self, entry: _Pooled) -> None:
        self._entry = entry


def _channel_failure(spec: HostSpec, exc: BaseException) -> RemoteFailed | RemoteUnreachable:
    if isinstance(exc, asyncssh.ChannelOpenError):
        return RemoteFailed(
            f"{spec.display()}: the server refused the channel: {exc.reason} (code {exc.code})"
        )
    return RemoteUnreachable(spec.alias, "closed", f"the connection was lost: {exc}")


class ConnectionPool:
    """Pooled asyncssh connections. See the module docstring for the rules."""

    max_moves = 16  # channel refusals one lease may route around

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        dialer: Dialer | None = None,
    ) -> None:
        self.settings = settings
        self.dialer = dialer or Dialer(settings)
        self._clock = clock
        self._entries: dict[PoolKey, list[_Pooled]] = {}
        self._flights: dict[tuple[PoolKey, bool], _Flight] = {}
        self._dials = 0
        self._closed = False
        self._sweeper: asyncio.Task[None] | None = None

    def lease(
        self, spec: HostSpec, *, deadline: float, record_host_keys: bool = True
    ) -> AbstractAsyncContextManager[Lease]:
        """``async with pool.lease(spec, deadline=loop.time() + t) as lease:`` use, then release.

        Connecting counts against ``deadline`` (``loop.time()`` based). With
        ``record_host_keys=False`` a dial never writes known_hosts.
        """
        return self._lease(spec, deadline, record_host_keys)

    @contextlib.asynccontextmanager
    async def _lease(self, spec: HostSpec, deadline: float, record: bool) -> AsyncIterator[Lease]:
        lease = await self.pin(spec, deadline=deadline, record_host_keys=record)
        try:
            yield lease
        finally:
            self.unpin(lease)

    async def pin(self, spec: HostSpec, *, deadline: float, record_host_keys: bool = True) -> Lease:
        """A long-lived lease (sessions, forwards): the connection stays in use until :meth:`unpin`.

        Raises:
            RemoteUnreachable: the dial failed or did not finish by ``deadline``.
            LimitReached: ``MAX_CONNS`` connections exist and all are in use.
        """
        entry = await self._acquire(spec, deadline, avoid=(), record=record_host_keys)
        return Lease(self, spec, entry, deadline, record=record_host_keys)

    def unpin(self, lease: Lease) -> None:
        """Release a lease (idempotent). Never blocks: closing happens in the background."""
        if lease.released:
            return
        lease.released = True
        self._release(lease._entry, lease.channels)
        lease.channels = 0

    def stats(self) -> PoolStats:
        self._prune()
        entries = [entry for group in self._entries.values() for entry in group]
        in_use = sum(1 for entry in entries if entry.leases > 0)
        return PoolStats(
            connections=len(entries),
            in_use=in_use,
            idle=len(entries) - in_use,
            dialing=len(self._flights),
            dials=self._dials,
        )

    async def sweep(self) -> int:
        """Close idle connections unused for ``SSH_IDLE_TIMEOUT`` (and dead ones). Returns how many."""
        now = self._clock()
        expired = [
            entry
            for group in self._entries.values()
            for entry in group
            if entry.leases == 0
            and (now - entry.last_used >= self.settings.ssh_idle_timeout or not entry.usable)
        ]
        for entry in expired:
            self._forget(entry)
        await asyncio.gather(*(entry.dialed.aclose() for entry in expired))
        return len(expired)

    async def aclose(self) -> None:
        """Close every connection (in use or not) and stop dialling. Idempotent."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        flights = [flight.task for flight in self._flights.values()]
        for task in flights:
            task.cancel()
        await asyncio.gather(*flights, return_exceptions=True)
        entries = [entry for group in self._entries.values() for entry in group]
        self._entries.clear()
        await asyncio.gather(*(entry.dialed.aclose() for entry in entries))

    # -- internals -------------------------------------------------------------------------

    async def _acquire(
        self, spec: HostSpec, deadline: float, *, avoid: Sequence[_Pooled], record: bool = True
    ) -> _Pooled:
        key = spec.pool_key()
        while True:
            if self._closed:
                raise RemoteUnreachable(spec.alias, "closed", "the connection pool is shut down")
            self._ensure_sweeper()
            entry = self._pick(key, avoid)
            if entry is not None:
                entry.leases += 1
                entry.uses += 1
                entry.last_used = self._clock()
                return entry
            flight = self._flights.get((key, record))
            if flight is None or flight.task.done():
                self._make_room()
                flight = self._start_flight(spec, key, deadline, record)
            await self._wait(flight, spec, deadline)

    def _pick(self, key: PoolKey, avoid: Sequence[_Pooled]) -> _Pooled | None:
        candidates = [
            entry
            for entry in self._entries.get(key, [])
            if entry.usable and entry.has_room() and not any(entry is other for other in avoid)
        ]
        # Pack leases onto the busiest connection that has room, so spare ones go idle and expire.
        return max(candidates, key=lambda entry: entry.leases, default=None)

    def _start_flight(self, spec: HostSpec, key: PoolKey, deadline: float, record: bool) -> _Flight:
        self._dials += 1
        cap = asyncio.get_running_loop().time() + self.settings.ssh_connect_timeout
        deadline = min(deadline, cap)
        task = asyncio.create_task(self._dial(spec, key, deadline, record), name=f"ssh-dial {spec.display()}")
        flight = _Flight(task, deadline, cap)
        self._flights[(key, record)] = flight
        task.add_done_callback(lambda done: self._flight_done((key, record), flight, done))
        return flight

    def _flight_done(
        self, flight_key: tuple[PoolKey, bool], flight: _Flight, task: asyncio.Task[_Pooled]
    ) -> None:
        if self._flights.get(flight_key) is flight:
            del self._flights[flight_key]
        if not task.cancelled():
            task.exception()  # retrieved here so an abandoned failure is never reported as lost

    async def _dial(self, spec: HostSpec, key: PoolKey, deadline: float, record: bool) -> _Pooled:
        dialed = await self.dialer.dial(spec, deadline=deadline, record_host_keys=record)
        if self._closed:
            await dialed.aclose()
            raise RemoteUnreachable(spec.alias, "closed", "the connection pool is shut down")
        entry = _Pooled(key, dialed, self._clock())
        self._entries.setdefault(key, []).append(entry)
        return entry

    async def _wait(self, flight: _Flight, spec: HostSpec, deadline: float) -> None:
        """Wait for a shared dial. Returns normally when the caller should look again (success,
        or a dial cut short by an earlier deadline than this caller's); raises otherwise."""
        loop = asyncio.get_running_loop()
        flight.waiters += 1
        try:
            # A dial ends by its own deadline; the grace lets its precise error win the race.
            async with asyncio.timeout_at(min(deadline, flight.deadline + FLIGHT_GRACE_S)):
                await asyncio.shield(flight.task)
        except TimeoutError as exc:
            raise RemoteUnreachable(
                spec.alias, "timeout", "no SSH connection before the call's deadline"
            ) from exc
        except RemoteUnreachable as exc:  # shared by every waiter: give each its own instance
            if (
                exc.reason in ("timeout", "closed")
                and flight.cut_short_for(deadline)
                and loop.time() < deadline
            ):
                return
            raise RemoteUnreachable(exc.host, exc.reason, exc.detail) from exc
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                flight.task.cancel()

    def _make_room(self) -> None:
        self._prune()
        total = sum(len(group) for group in self._entries.values()) + len(self._flights)
        while total >= self.settings.max_conns:
            idle = [entry for group in self._entries.values() for entry in group if entry.leases == 0]
            if not idle:
                raise LimitReached(
                    "RELAY_SHELL_MAX_CONNS", self.settings.max_conns, "SSH connections, all of them in use"
                )
            victim = min(idle, key=lambda entry: entry.last_used)
            self._forget(victim)
            victim.dialed.close()
            total -= 1

    async def _move(self, lease: Lease, *, avoid: Sequence[_Pooled], deadline: float) -> None:
        """Re-home a lease that has no channel open onto another connection of its key."""
        self._release(lease._entry, 0)
        try:
            entry = await self._acquire(lease.spec, deadline, avoid=avoid, record=lease.record)
        except BaseException:
            lease.released = True  # it no longer holds any connection
            raise
        lease._rebind(entry)

    def _release(self, entry: _Pooled, channels: int) -> None:
        entry.leases -= 1
        entry.channels -= channels
        entry.last_used = self._clock()
        if entry.leases == 0 and not entry.usable:
            self._forget(entry)
            entry.dialed.close()

    def _forget(self, entry: _Pooled) -> None:
        group = self._entries.get(entry.key, [])
        if entry in group:
            group.remove(entry)
        if not group:
            self._entries.pop(entry.key, None)

    def _prune(self) -> None:
        """Drop idle connections the server or keepalive already closed."""
        for entry in [entry for group in self._entries.values() for entry in group]:
            if entry.leases == 0 and not entry.usable:
                self._forget(entry)
                entry.dialed.close()

    def _ensure_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="ssh-pool-sweeper")

    async def _sweep_forever(self) -> None:
        interval = min(SWEEP_INTERVAL_MAX_S, max(SWEEP_INTERVAL_MIN_S, self.settings.ssh_idle_timeout / 4))
        while True:
            await asyncio.sleep(interval)
            await self.sweep()
