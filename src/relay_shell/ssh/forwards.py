"""Port forwards through pooled SSH connections (docs/tools.md): local, remote and SOCKS5.

Specs (parsed and validated by :func:`parse_forward_spec`, :mod:`relay_shell.ssh.forward_spec`,
before any connection)::

    L:lport:dhost:dport   listen here on bind:lport; each connection is carried to dhost:dport
                          as seen from the remote host (an SSH ``direct-tcpip`` channel)
    R:rport:dhost:dport   the remote host listens on bind:rport; each connection comes back
                          through SSH and is carried to dhost:dport as seen from here
    D:lport               a SOCKS5 proxy here on bind:lport (CONNECT, no authentication,
                          :mod:`relay_shell.ssh.socks`); each destination is reached from
                          the remote host

Port 0 picks a free port (the actual one is reported). Local listeners bind ``127.0.0.1``
unless ``bind`` names another address; ``bind`` must be an IP literal (``localhost`` is
read as ``127.0.0.1``) so one listener is exactly one socket.

Every forward pins its pooled connection until it is closed. The listeners and the byte
pumps are ours (asyncio streams on one side, asyncssh streams on the other) rather than
asyncssh's ``forward_local_port``/``forward_socks``, so that every byte is counted and a
SOCKS destination can be checked against the policy before a channel is opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import asyncssh

from relay_shell.errors import ExecFailed, InvalidInput, LimitReached, RemoteFailed
from relay_shell.ssh.forward_spec import (
    ForwardInfo,
    ForwardKind,
    ForwardSpec,
    parse_forward_spec,
    validate_bind,
)
from relay_shell.ssh.pool import ConnectionPool, Lease
from relay_shell.ssh.socks import (
    SOCKS_REFUSED,
    SOCKS_SUCCEEDED,
    DestinationCheck,
    socks5_reply,
    socks5_request,
)
from relay_shell.ssh.targets import HostSpec, format_host_port

__all__ = [
    "DestinationCheck",
    "ForwardInfo",
    "ForwardKind",
    "ForwardManager",
    "ForwardSpec",
    "parse_forward_spec",
    "validate_bind",
]

log = logging.getLogger("relay_shell.ssh.forwards")

COPY_CHUNK = 65536
CHANNEL_OPEN_TIMEOUT_S = 30.0
CLOSE_GRACE_S = 2.0


class _Reader(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


class _Writer(Protocol):
    def write(self, data: bytes) -> None: ...
    def write_eof(self) -> None: ...
    async def drain(self) -> None: ...
    def close(self) -> None: ...


@dataclass(eq=False)
class _Forward:
    forward_id: str
    spec: ForwardSpec
    bind: str
    listen_port: int
    host: str
    lease: Lease
    created: float
    destination_check: DestinationCheck | None
    server: asyncio.Server | None = None
    listener: asyncssh.SSHListener | None = None
    bytes_sent: int = 0  # from the listening side to the destination
    bytes_received: int = 0  # from the destination back
    connections: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    last_error: str | None = None
    closed: bool = False
    owner: str | None = None

    @property
    def connection(self) -> asyncssh.SSHClientConnection:
        return self.lease.connection


class ForwardManager:
    """Live forwards, capped at ``max_forwards``; each pins its pooled connection."""

    def __init__(
        self, pool: ConnectionPool, *, max_forwards: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._pool = pool
        self._max_forwards = max_forwards
        self._clock = clock
        self._forwards: dict[str, _Forward] = {}
        self._opening = 0
        self._shut_down = False

    def __len__(self) -> int:
        return len(self._forwards)

    def ensure_capacity(self) -> None:
        """Raises LimitReached (``RELAY_SHELL_MAX_FORWARDS``) when no forward can be added."""
        if len(self._forwards) + self._opening >= self._max_forwards:
            raise LimitReached("RELAY_SHELL_MAX_FORWARDS", self._max_forwards, "live forwards")

    async def open(
        self,
        spec: HostSpec,
        forward: ForwardSpec,
        *,
        bind: str = "127.0.0.1",
        deadline: float,
        destination_check: DestinationCheck | None = None,
        owner: str | None = None,
    ) -> ForwardInfo:
        """Connect to ``spec`` (by ``deadline``, ``loop.time()`` based) and start ``forward``.

        ``bind`` is the listening address: here for L and D, on the remote host for R.
        ``destination_check`` vets each SOCKS destination before its channel is opened.
        ``owner`` is the principal opening it (shown in its info; the tools let only it or
        an admin close it).

        Raises:
            LimitReached: ``RELAY_SHELL_MAX_FORWARDS`` forwards are open (checked before connecting).
            InvalidInput: ``bind`` is not an IP address.
            RemoteUnreachable: the connection failed.
            RemoteFailed: the remote host refused to listen (R).
            ExecFailed: the local port cannot be bound (in use, not permitted).
        """
        address = validate_bind(bind)
        if self._shut_down:
            raise ExecFailed("the server is shutting down: no new forwards")
        self.ensure_capacity()
        self._opening += 1
        try:
            lease = await self._pool.pin(spec, deadline=deadline)
            entry = _Forward(
                forward_id="fwd-" + secrets.token_hex(6),
                spec=forward,
                bind=address,
                listen_port=forward.listen_port,
                host=spec.display(),
                lease=lease,
                created=self._clock(),
                destination_check=destination_check,
                owner=owner,
            )
            try:
                async with asyncio.timeout_at(deadline):
                    await self._listen(entry)
            except BaseException:
                await self._stop(entry)
                raise
        finally:
            self._opening -= 1
        self._forwards[entry.forward_id] = entry
        return self._info(entry)

    def list(self) -> list[ForwardInfo]:
        """Every open forward, oldest first."""
        return [self._info(entry) for entry in self._forwards.values()]

    def info(self, forward_id: str) -> ForwardInfo:
        """Raises InvalidInput (``forward_id``) for an unknown id."""
        return self._info(self._get(forward_id))

    async def close(self, forward_id: str) -> ForwardInfo:
        """Stop listening, end the forward's connections, unpin its SSH connection.

        Raises:
            InvalidInput: (argument ``forward_id``) unknown id.
        """
        entry = self._get(forward_id)
        self._forwards.pop(forward_id, None)
        await self._stop(entry)
        return self._info(entry)

    async def aclose(self) -> None:
        """Close every forward (server shutdown). Idempotent."""
        self._shut_down = True
        entries = list(self._forwards.values())
        self._forwards.clear()
        await asyncio.gather(*(self._stop(entry) for entry in entries))

    # -- internals -------------------------------------------------------------------------

    def _get(self, forward_id: str) -> _Forward:
        entry = self._forwards.get(forward_id) if isinstance(forward_id, str) else None
        if entry is None:
            raise InvalidInput("forward_id", f"no forward {forward_id!r} (see ssh_forward_list)")
        return entry

    def _info(self, entry: _Forward) -> ForwardInfo:
        state: Literal["open", "broken", "closed"] = "open"
        if entry.closed:
            state = "closed"
        elif entry.connection.is_closed():
            state = "broken"
        return ForwardInfo(
            forward_id=entry.forward_id,
            kind=entry.spec.kind,
            spec=entry.spec.text(entry.listen_port),
            bind=entry.bind,
            listen_port=entry.listen_port,
            host=entry.host,
            target=entry.spec.destination(),
            bytes_sent=entry.bytes_sent,
            bytes_received=entry.bytes_received,
            connections=entry.connections,
            active_connections=len(entry.tasks),
            age_s=round(max(0.0, self._clock() - entry.created), 3),
            state=state,
            last_error=entry.last_error,
            owner=entry.owner,
        )

    async def _listen(self, entry: _Forward) -> None:
        if entry.spec.kind == "R":
            try:
                entry.listener = await entry.connection.start_server(
                    lambda orig_host, orig_port: (
                        lambda reader, writer: self._serve_remote(entry, reader, writer)
                    ),
                    entry.bind,
                    entry.spec.listen_port,
                    encoding=None,
                )
            except asyncssh.ChannelListenError as exc:
                raise RemoteFailed(
                    f"{entry.host}: the server refused to listen on "
                    f"{format_host_port(entry.bind, entry.spec.listen_port)}: {exc}"
                ) from exc
            except (asyncssh.Error, OSError) as exc:
                raise RemoteFailed(f"{entry.host}: the remote forward failed: {exc}") from exc
            entry.listen_port = entry.listener.get_port()
            return
        try:
            entry.server = await asyncio.start_server(
                lambda reader, writer: self._serve_local(entry, reader, writer),
                host=entry.bind,
                port=entry.spec.listen_port,
                reuse_address=True,
            )
        except OSError as exc:
            where = format_host_port(entry.bind, entry.spec.listen_port)
            raise ExecFailed(f"cannot listen on {where} here: {exc.strerror or exc}") from exc
        entry.listen_port = int(entry.server.sockets[0].getsockname()[1])

    async def _serve_local(
        self, entry: _Forward, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """One connection to an L or D listener: carried through an SSH direct-tcpip channel."""
        self._track(entry)
        try:
            if entry.spec.kind == "D":
                requested = await socks5_request(reader, writer, entry.destination_check)
                if isinstance(requested, str):
                    log.warning("forward %s: %s", entry.forward_id, requested)
                    entry.last_error = requested
                    return
                destination = requested
            else:
                destination = entry.spec.endpoint()
            peer = writer.get_extra_info("peername") or ("", 0)
            try:
                async with asyncio.timeout(CHANNEL_OPEN_TIMEOUT_S):
                    remote_reader, remote_writer = await entry.connection.open_connection(
                        destination[0], destination[1], str(peer[0]), int(peer[1])
                    )
            except (asyncssh.Error, OSError, TimeoutError) as exc:
                entry.last_error = f"{format_host_port(*destination)}: {_reason(exc)}"
                if entry.spec.kind == "D":
                    await socks5_reply(writer, SOCKS_REFUSED)
                return
            if entry.spec.kind == "D":
                await socks5_reply(writer, SOCKS_SUCCEEDED)
            await self._splice(entry, (reader, writer), (remote_reader, remote_writer))
        except (OSError, asyncssh.Error, EOFError, TimeoutError) as exc:
            entry.last_error = _reason(exc)
        finally:
            writer.close()

    async def _serve_remote(
        self, entry: _Forward, reader: asyncssh.SSHReader[bytes], writer: asyncssh.SSHWriter[bytes]
    ) -> None:
        """One connection to an R listener: carried to the destination as seen from here."""
        self._track(entry)
        dest_host, dest_port = entry.spec.endpoint()
        try:
            try:
                async with asyncio.timeout(CHANNEL_OPEN_TIMEOUT_S):
                    local_reader, local_writer = await asyncio.open_connection(dest_host, dest_port)
            except (OSError, TimeoutError) as exc:
                entry.last_error = f"{entry.spec.destination()}: {_reason(exc)}"
                return
            await self._splice(entry, (reader, writer), (local_reader, local_writer))
        except (OSError, asyncssh.Error) as exc:
            entry.last_error = _reason(exc)
        finally:
            writer.close()

    def _track(self, entry: _Forward) -> None:
        """Count the connection and register its task so closing the forward ends it."""
        task = asyncio.current_task()
        entry.connections += 1
        if task is not None:
            entry.tasks.add(task)
            task.add_done_callback(entry.tasks.discard)

    async def _splice(
        self, entry: _Forward, listening: tuple[_Reader, _Writer], destination: tuple[_Reader, _Writer]
    ) -> None:
        """Copy both ways until both directions reached EOF (half-close kept) or one failed."""

        def sent(count: int) -> None:
            entry.bytes_sent += count

        def received(count: int) -> None:
            entry.bytes_received += count

        pumps = {
            asyncio.ensure_future(_pump(listening[0], destination[1], sent)),
            asyncio.ensure_future(_pump(destination[0], listening[1], received)),
        }
        try:
            pending = pumps
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if any(not task.cancelled() and task.exception() is not None for task in done):
                    break
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            destination[1].close()

    async def _stop(self, entry: _Forward) -> None:
        """Close the listener and every connection, then unpin. Idempotent; never raises."""
        if entry.closed:
            return
        entry.closed = True
        try:
            if entry.server is not None:
                entry.server.close()
            if entry.listener is not None:
                entry.listener.close()
            for task in list(entry.tasks):
                task.cancel()
            waits: list[Awaitable[object]] = list(entry.tasks)
            if entry.server is not None:
                waits.append(entry.server.wait_closed())
            if entry.listener is not None:
                waits.append(entry.listener.wait_closed())
            if waits:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CLOSE_GRACE_S):
                        await asyncio.gather(*waits, return_exceptions=True)
        except Exception:
            log.exception("closing forward %s failed", entry.forward_id)
        finally:
            self._pool.unpin(entry.lease)


async def _pump(source: _Reader, sink: _Writer, count: Callable[[int], None]) -> None:
    """Copy until EOF, then pass the EOF on (half-close)."""
    while data := await source.read(COPY_CHUNK):
        sink.write(data)
        count(len(data))
        await sink.drain()
    with contextlib.suppress(OSError, asyncssh.Error):
        sink.write_eof()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.ChannelOpenError):
        return f"the remote host could not connect: {exc.reason or exc}"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return str(exc) or type(exc).__name__
