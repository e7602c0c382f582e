"""Everything a call can need, one typed field per service, started and stopped with the server.

:class:`Services` is built once per server (:func:`build_services`) and handed to tools as
the SDK's lifespan state. The SSH connection pool and the forward manager are created on
first use (:class:`LazyPool`, :class:`LazyForwards`), so answering ``initialize`` or
``tools/list`` never imports asyncssh. When SSH hosts are configured, the SSH layer is loaded
in a worker thread once the handshake is over (:meth:`Services.warm_ssh`), so the first
remote call does not pay for the imports.

Shutdown order (:meth:`Services.aclose`): the calls in flight are cancelled first (each kills
what it started and writes its record), then forwards, then jobs (each killed job writes its
``job_end`` record; SSH jobs still have their pooled connection to signal the remote command),
then sessions (SSH terminals likewise), then the SSH pool, then every containment still open
(whatever is left is killed), the audit sink last.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from relay_shell.background import TASK_GENERATIONS
from relay_shell.config import Settings
from relay_shell.governance.audit.wiring import anchor_spec, build_sink, kind_of
from relay_shell.governance.audit.writer import AuditSink
from relay_shell.governance.call import Reply
from relay_shell.governance.pipeline import Pipeline
from relay_shell.local.containment import ContainmentService
from relay_shell.metrics import Metrics
from relay_shell.periodic import Periodic
from relay_shell.sessions import SessionRegistry
from relay_shell.sessions.jobs import JobStore
from relay_shell.sessions.model import SessionEnd
from relay_shell.sessions.recording import RecordingSettings
from relay_shell.ssh.fleet import FanoutHistory
from relay_shell.ssh.inventory import Inventory

if TYPE_CHECKING:
    from relay_shell.ssh.forwards import ForwardManager
    from relay_shell.ssh.pool import ConnectionPool

log = logging.getLogger("relay_shell")

CANCEL_IN_FLIGHT_S = 10.0
"""How long shutdown waits for cancelled calls to kill what they started and write their records."""
SSH_LAYER = (
    "relay_shell.ssh.pool",
    "relay_shell.ssh.remote_exec",
    "relay_shell.ssh.fanout",
    "relay_shell.ssh.fleet_report",
)
"""The modules a first remote call imports (asyncssh with them), loaded ahead by :meth:`LazyPool.preload`."""
CALL_PATH = ("relay_shell.policy.analyze", "relay_shell.governance.redaction", "prometheus_client")
"""What start-up leaves to the first call (the classifier, the redaction rules, the metrics
library), loaded ahead by :meth:`Services.warm_calls`."""


def import_call_path(then: tuple[Callable[[], None], ...] = ()) -> None:
    """Import :data:`CALL_PATH`, then run ``then`` (blocking; run in a worker thread)."""
    for name in CALL_PATH:
        importlib.import_module(name)
    for warmer in then:
        warmer()


def import_ssh_layer() -> None:
    """Import :data:`SSH_LAYER` (blocking; run in a worker thread)."""
    for name in SSH_LAYER:
        importlib.import_module(name)


class LazyPool:
    """The shared :class:`ConnectionPool`, created (and asyncssh imported) on first :meth:`get`."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pool: ConnectionPool | None = None
        self._preload: asyncio.Task[None] | None = None

    def preload(self) -> asyncio.Task[None] | None:
        """Start importing the SSH layer in a worker thread (once); the task, or None if already started.

        The event loop keeps serving meanwhile; a remote call that arrives first imports
        what it needs itself (Python's import lock makes the two wait for one another).
        """
        if self._preload is not None or self._pool is not None:
            return None
        self._preload = asyncio.get_running_loop().create_task(self._load(), name="relay-shell ssh preload")
        return self._preload

    @property
    def preloading(self) -> asyncio.Task[None] | None:
        """The preload started by :meth:`preload`, if any (done once the imports are)."""
        return self._preload

    async def _load(self) -> None:
        try:
            await asyncio.to_thread(import_ssh_layer)
        except Exception:  # a broken install shows on the first remote call, with its own error
            log.exception("loading the SSH layer ahead of use failed")

    def get(self) -> ConnectionPool:
        if self._pool is None:
            from relay_shell.ssh.pool import ConnectionPool

            self._pool = ConnectionPool(self._settings)
        return self._pool

    def connections(self) -> int:
        """Open connections; 0 while the pool was never needed."""
        return 0 if self._pool is None else self._pool.stats().connections

    async def aclose(self) -> None:
        """Close the pool if it was ever created; stop waiting for a preload still running."""
        if self._preload is not None and not self._preload.done():
            self._preload.cancel()  # the worker thread finishes its imports on its own
            with contextlib.suppress(asyncio.CancelledError):
                await self._preload
        if self._pool is not None:
            await self._pool.aclose()


class LazyForwards:
    """The :class:`ForwardManager` on the shared pool, created on first :meth:`get`."""

    def __init__(self, pool: LazyPool, max_forwards: int) -> None:
        self._pool = pool
        self._max_forwards = max_forwards
        self._manager: ForwardManager | None = None

    def get(self) -> ForwardManager:
        if self._manager is None:
            from relay_shell.ssh.forwards import ForwardManager

            self._manager = ForwardManager(self._pool.get(), max_forwards=self._max_forwards)
        return self._manager

    def __len__(self) -> int:
        return 0 if self._manager is None else len(self._manager)

    async def aclose(self) -> None:
        """Close every forward if the manager was ever created."""
        if self._manager is not None:
            await self._manager.aclose()


@dataclass
class Services:
    """What the tools of one server use. Built by :func:`build_services`."""

    settings: Settings
    audit: AuditSink
    metrics: Metrics
    pipeline: Pipeline
    sessions: SessionRegistry
    inventory: Inventory
    pool: LazyPool
    forwards: LazyForwards
    fanout_history: FanoutHistory
    containment: ContainmentService
    jobs: JobStore[Reply]
    on_started: Callable[[], None] | None = field(default=None, repr=False)
    watchers: list[Periodic] = field(default_factory=list, repr=False)
    warmers: list[Callable[[], None]] = field(default_factory=list, repr=False)
    """Run by :meth:`warm_calls` in its worker thread after the imports (the server's deferred
    argument models); each must be safe to run while calls are served."""
    """Background rounds run from start to :meth:`aclose` (the HTTP server's grant watch)."""
    _holders: int = field(default=0, repr=False)
    _started: bool = field(default=False, repr=False)
    _closed: bool = field(default=False, repr=False)
    _warming: asyncio.Task[None] | None = field(default=None, repr=False)

    def counts(self) -> dict[str, int]:
        """Live sessions, jobs, forwards and SSH connections (read by server_info and the metrics)."""
        return {
            "sessions": len(self.sessions),
            "jobs": self.jobs.counted(),  # running, and ended but unread (what RELAY_SHELL_MAX_JOBS counts)
            "forwards": len(self.forwards),
            "ssh_connections": self.pool.connections(),
        }

    def facts(self) -> dict[str, str]:
        """The mechanisms in effect, for the start-up line and server_info (``containment``,
        ``anchor`` when one is in effect, ``tasks``: the MCP Tasks generations served, comma-separated)."""
        facts = {"containment": self.containment.mechanism, "tasks": ",".join(TASK_GENERATIONS)}
        anchor, _warning = anchor_spec(self.settings)
        if anchor != "off":
            facts["anchor"] = kind_of(anchor)
        return facts

    def inventory_size(self) -> int:
        return len(self.inventory.hosts())

    def warm_ssh(self) -> bool:
        """Load the SSH layer in the background when SSH hosts are configured (called once the
        client's handshake is answered). True when this call started the preload."""
        if self._closed or not self.inventory_size():
            return False
        return self.pool.preload() is not None

    def warm_calls(self) -> bool:
        """Load what the first call needs (:data:`CALL_PATH`) in a worker thread, then run the
        :attr:`warmers` there, once (called when the server is quiet after the handshake). True
        when this call started the load.

        A call that arrives first imports what it needs itself (the import lock makes the two
        wait for one another).
        """
        if self._closed or self._warming is not None:
            return False
        self._warming = asyncio.get_running_loop().create_task(
            _warm(tuple(self.warmers)), name="relay-shell call path preload"
        )
        return True

    @property
    def warming(self) -> asyncio.Task[None] | None:
        """The load started by :meth:`warm_calls`, if any (done once the imports are)."""
        return self._warming

    async def start(self) -> None:
        """Start the background work (the session sweeper) and hold the services open.

        The holder taken here is released only by :meth:`aclose`; lifespans in between do
        not stop the services.
        """
        self._holders += 1
        await self._start_once()

    async def _start_once(self) -> None:
        if not self._started and not self._closed:
            self._started = True
            await self.sessions.start()
            self.audit.start_heartbeat(self.settings.audit_anchor_interval)
            await self.jobs.start()
            for watcher in self.watchers:
                watcher.start()
            if self.on_started is not None:
                self.on_started()

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[Services]:
        """The SDK lifespan: start on the first holder, tear down when the last one leaves.

        stdio and HTTP serving each enter it once; an in-memory client enters it per
        connection, which is why holders are counted.
        """
        self._holders += 1
        await self._start_once()
        try:
            yield self
        finally:
            self._holders -= 1
            if self._holders == 0:
                await self.aclose()

    async def aclose(self) -> None:
        """Cancel the calls in flight and wait (bounded) for their audit records, then tear down
        forwards, jobs, sessions, the SSH pool and every containment still open; close the audit
        sink last.

        Idempotent; a step that fails is logged and the next one still runs.
        """
        if self._closed:
            return
        self._closed = True
        for watcher in self.watchers:
            await watcher.stop()
        if self._warming is not None and not self._warming.done():
            self._warming.cancel()  # the worker thread finishes its imports on its own
            with contextlib.suppress(asyncio.CancelledError):
                await self._warming
        cancelled = await self.pipeline.cancel_in_flight(CANCEL_IN_FLIGHT_S)
        if cancelled:
            log.warning("shutdown: cancelled %d call(s) in flight", cancelled)
        steps: list[Callable[[], Awaitable[None]]] = [
            self.forwards.aclose,
            self.jobs.aclose,
            self.sessions.aclose,
            self.pool.aclose,
            self.containment.aclose,
        ]
        for step in steps:
            try:
                await step()
            except Exception:
                log.exception("teardown step failed")
        self.audit.close()


async def _warm(warmers: tuple[Callable[[], None], ...]) -> None:
    try:
        await asyncio.to_thread(import_call_path, warmers)
    except Exception:  # a broken install shows on the first call, with its own error
        log.exception("loading the call path ahead of use failed")


def build_services(settings: Settings) -> Services:
    """The services of one server: audit sink, metrics, pipeline, registry, inventory, lazy SSH,
    containment.

    Raises:
        ConfigError: the inventory or ssh_config cannot be resolved,
            ``RELAY_SHELL_CONTAINMENT=cgroup`` cannot work here, or the audit file is another
            server's (one writer per file) or not a safe regular file.
    """
    audit = build_sink(settings)
    metrics = Metrics()
    pool = LazyPool(settings)
    jobs: JobStore[Reply] = JobStore(
        max_jobs=settings.max_jobs,
        retention_s=settings.job_retention,
        buffer_bytes=settings.session_buffer_bytes,
    )
    pipeline = Pipeline(settings, audit, metrics, jobs=jobs)
    recording = None
    if settings.session_record_dir is not None:
        recording = RecordingSettings(
            directory=settings.expand(settings.session_record_dir),
            record_input=settings.session_record_input,
            max_bytes=settings.session_record_max_bytes,
        )
    services = Services(
        settings=settings,
        audit=audit,
        metrics=metrics,
        pipeline=pipeline,
        sessions=SessionRegistry(
            max_sessions=settings.max_sessions,
            buffer_bytes=settings.session_buffer_bytes,
            idle_timeout_s=settings.session_idle_timeout,
            max_lifetime_s=settings.session_max_lifetime,
            recording=recording,
            on_end=lambda end: pipeline.record_event("session_end", session_end_fields(end), target=end.host),
        ),
        inventory=Inventory.load(settings),
        pool=pool,
        forwards=LazyForwards(pool, settings.max_forwards),
        fanout_history=FanoutHistory(settings.fanout_history),
        containment=ContainmentService(settings.containment),
        jobs=jobs,
    )
    metrics.bind_gauges(
        sessions=lambda: len(services.sessions),
        forwards=lambda: len(services.forwards),
        connections=services.pool.connections,
        audit_degraded=lambda: 1.0 if services.audit.degraded else 0.0,
    )
    return services


def session_end_fields(end: SessionEnd) -> dict[str, object]:
    """The audit fields of a session's end (written as a ``session_end`` record): ``principal``
    is the session's owner, so a principal's audit_tail shows the ends of its own sessions."""
    fields: dict[str, object] = {
        "session_id": end.session_id,
        "session_kind": end.kind,
        "command": end.command,
        "reason": end.reason,
        "exit_code": end.exit_code,
        "duration_ms": round(end.duration_s * 1000),
        "stream_len": end.bytes_produced,
        "principal": end.owner,
    }
    if end.recording is not None:
        fields["recording"] = {
            "path": end.recording.path,
            "bytes": end.recording.bytes,
            "sha256": end.recording.sha256,
            "truncated": end.recording.truncated,
            "input": end.recording.input_recorded,
            "error": end.recording.error,
        }
    return fields
