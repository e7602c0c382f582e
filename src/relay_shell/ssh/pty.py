"""Remote PTY sessions: an SSH session channel with a terminal, as a session Transport (docs/tools.md).

:func:`spawn_ssh_pty` pins a pooled connection, opens a session channel with a ``pty-req``
(``term_type``, ``cols`` x ``rows``) and either a ``shell`` request (``command`` empty: the
user's login shell) or an ``exec`` request, and returns a :class:`SshPtyTransport`, which
implements :class:`relay_shell.sessions.Transport`. The connection stays pinned until the
channel is closed (``close``) or :meth:`SshPtyTransport.release` runs, whichever is first.

Signals: an SSH ``signal`` request reaches the session's process group (OpenSSH >= 7.9
delivers it with ``killpg`` to the shell), but not a foreground job that an interactive
shell put in a process group of its own, and many servers ignore it altogether. So for
the signals a terminal generates from a key (INT ^C, QUIT ^\\, TSTP ^Z) the key is typed
as well, which reaches the foreground job through the remote terminal as it would at a
keyboard. A program with its own ^C handling (a REPL in raw mode) may therefore see both.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

import asyncssh

from relay_shell.errors import ExecTimeout, RemoteFailed, SessionEnded
from relay_shell.sessions import KILL_GRACE_S
from relay_shell.sessions.terminal import SIGNALS, parse_signal, validate_terminal_size
from relay_shell.ssh.pool import ConnectionPool, Lease
from relay_shell.ssh.remote_exec import wait_set
from relay_shell.ssh.targets import HostSpec

DEFAULT_TERM = "xterm-256color"
# Above this many unread bytes the channel stops reading (SSH flow control holds the sender).
READ_HIGH_WATER = 1 << 20
OPEN_GRACE_S = 2.0
SIGNAL_KEYS = {"INT": b"\x03", "QUIT": b"\x1c", "TSTP": b"\x1a"}


class _ChannelSession(asyncssh.SSHClientSession[bytes]):
    """asyncssh callbacks forwarded to the transport that owns the channel."""

    def __init__(self, transport: SshPtyTransport) -> None:
        self._transport = transport

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self._transport._on_data(data)

    def exit_status_received(self, status: int) -> None:
        self._transport._exit_status = status

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self._transport._exit_signal = signal

    def pause_writing(self) -> None:
        self._transport._writable.clear()

    def resume_writing(self) -> None:
        self._transport._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport._on_lost()


class SshPtyTransport:
    """A remote terminal over one SSH channel; implements :class:`relay_shell.sessions.Transport`."""

    def __init__(self, pool: ConnectionPool, lease: Lease, display: str) -> None:
        self._pool = pool
        self._lease = lease
        self.display = display
        self._channel: asyncssh.SSHClientChannel[bytes] | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._reading_paused = False
        self._data_ready = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._lost = asyncio.Event()
        self._exit_status: int | None = None
        self._exit_signal: str | None = None
        self._closing: asyncio.Future[None] | None = None

    # -- channel callbacks ---------------------------------------------------------------

    def _on_data(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > READ_HIGH_WATER and self._channel is not None and not self._reading_paused:
            self._reading_paused = True
            self._channel.pause_reading()
        self._data_ready.set()

    def _on_lost(self) -> None:
        self._lost.set()
        self._data_ready.set()
        self._writable.set()

    # -- Transport -----------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return None

    @property
    def exit_status(self) -> int | None:
        """The remote exit status, 128+n when killed by signal n, ``None`` while running.

        A channel that closed without reporting either (lost connection) reads as 255, as
        OpenSSH's client reports it.
        """
        if self._exit_signal is not None:
            number = SIGNALS.get(self._exit_signal.upper().removeprefix("SIG"))
            return 128 + number if number is not None else 255
        if self._exit_status is not None:
            return self._exit_status
        return 255 if self._lost.is_set() else None

    async def read(self) -> bytes:
        """Everything received since the last read; ``b""`` once the channel is closed and drained."""
        while not self._chunks:
            if self._lost.is_set():
                return b""
            self._data_ready.clear()
            await self._data_ready.wait()
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        if self._reading_paused and self._channel is not None and not self._lost.is_set():
            self._reading_paused = False
            self._channel.resume_reading()
        return data

    async def write(self, data: bytes) -> None:
        """Send ``data`` to the remote terminal (waits while the channel's window is full).

        Raises:
            SessionEnded: the channel is closed.
        """
        await self._writable.wait()
        channel = self._open_channel()
        try:
            channel.write(data)
        except (OSError, asyncssh.Error) as exc:
            raise SessionEnded(f"the session's channel to {self.display} is closed: {exc}") from exc

    async def resize(self, cols: int, rows: int) -> None:
        """Send a ``window-change`` request (the remote foreground job gets SIGWINCH)."""
        validate_terminal_size(cols, rows)
        channel = self._open_channel()
        try:
            channel.change_terminal_size(cols, rows)
        except (OSError, asyncssh.Error) as exc:
            raise SessionEnded(f"the session's channel to {self.display} is closed: {exc}") from exc

    async def signal(self, name: str) -> None:
        """Send an SSH ``signal`` request; for INT, QUIT and TSTP also type the terminal's key.

        Raises:
            InvalidInput: unknown signal name.
            SessionEnded: the channel is closed.
        """
        canonical = parse_signal(name)
        channel = self._open_channel()
        try:
            if canonical in SIGNAL_KEYS:
                channel.write(SIGNAL_KEYS[canonical])
            channel.send_signal(canonical)
        except (OSError, asyncssh.Error) as exc:
            raise SessionEnded(f"the session's channel to {self.display} is closed: {exc}") from exc

    async def close(self, grace_s: float = KILL_GRACE_S) -> None:
        """End the remote processes and the channel, then unpin the connection. Idempotent.

        HUP and TERM (what a closing terminal sends), then KILL after ``grace_s``, then the
        channel is closed (sshd hangs up the terminal). A channel that still does not close
        gets its connection discarded from the pool.
        """
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._shut_down(grace_s))
        await asyncio.shield(self._closing)

    async def release(self) -> None:
        """Unpin the pooled connection (idempotent); the session's ``on_close``."""
        self._pool.unpin(self._lease)

    # -- internals -----------------------------------------------------------------------

    def _open_channel(self) -> asyncssh.SSHClientChannel[bytes]:
        if self._channel is None or self._lost.is_set() or self._channel.is_closing():
            raise SessionEnded(f"the session's channel to {self.display} is closed")
        return self._channel

    async def _shut_down(self, grace_s: float) -> None:
        try:
            channel = self._channel
            if channel is not None and not self._lost.is_set():
                for names in (("HUP", "TERM"), ("KILL",)):
                    with contextlib.suppress(OSError, asyncssh.Error):
                        for name in names:
                            channel.send_signal(name)
                    if await wait_set(self._lost, grace_s):
                        break
                channel.close()
                if not await wait_set(self._lost, grace_s):
                    self._lease.discard()  # a wedged channel must not block later calls
        finally:
            self._on_lost()
            await self.release()

    async def _open(
        self, connection: asyncssh.SSHClientConnection, command: str, term_type: str, cols: int, rows: int
    ) -> None:
        channel, _ = await connection.create_session(
            lambda: _ChannelSession(self),
            command or None,
            request_pty=True,
            term_type=term_type,
            term_size=(cols, rows),
            encoding=None,
        )
        self._channel = channel


async def spawn_ssh_pty(
    pool: ConnectionPool,
    spec: HostSpec,
    command: str,
    *,
    cols: int,
    rows: int,
    term_type: str = DEFAULT_TERM,
    deadline: float,
) -> SshPtyTransport:
    """Start ``command`` (``""``: the login shell) on a remote terminal of ``cols`` x ``rows``.

    Connecting and opening the channel count against ``deadline`` (``loop.time()`` based).
    The returned transport holds a pinned connection: close it (or hand it to the session
    registry, which does) so the connection is released.

    Raises:
        InvalidInput: ``cols``/``rows`` out of range.
        RemoteUnreachable: could not connect or authenticate.
        RemoteFailed: the server refused the channel, the terminal or the shell/command.
        ExecTimeout: the channel was not open by ``deadline``.
        LimitReached: ``MAX_CONNS`` connections exist and all are in use.
    """
    validate_terminal_size(cols, rows)
    lease = await pool.pin(spec, deadline=deadline)
    transport = SshPtyTransport(pool, lease, spec.display())
    # Shielded: a cancellation mid-open must not lose a channel whose shell already started.
    opening = asyncio.ensure_future(
        lease.open_channel(
            lambda connection: transport._open(connection, command, term_type, cols, rows), deadline=deadline
        )
    )
    try:
        async with asyncio.timeout_at(deadline):
            await asyncio.shield(opening)
    except TimeoutError:
        await _abandon(opening, transport)
        raise ExecTimeout(f"{spec.display()}: no terminal channel before the deadline") from None
    except asyncssh.Error as exc:
        await _abandon(opening, transport)
        raise RemoteFailed(f"{spec.display()}: could not start a terminal: {exc}") from exc
    except BaseException:
        await _abandon(opening, transport)
        raise
    return transport


async def _abandon(opening: asyncio.Future[None], transport: SshPtyTransport) -> None:
    """After a failed or interrupted open: wait (bounded) for it, close what opened, unpin."""
    try:
        if not opening.done():
            await asyncio.wait({opening}, timeout=OPEN_GRACE_S)
        if not opening.done():
            opening.cancel()
        elif not opening.cancelled():
            opening.exception()  # retrieved: the caller raises its own error
    finally:
        await transport.close(grace_s=OPEN_GRACE_S)
