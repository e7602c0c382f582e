"""One remote command over a pooled connection, bounded in time and bytes (docs/architecture.md, "SSH").

How no remote process outlives a timeout or a cancellation: the command runs in a plain
exec channel (no PTY, so stdout and stderr stay separate and bytes are not rewritten);
on the way out the channel gets an SSH ``signal`` request ``TERM``, a short grace, then
``KILL``, then it is closed. OpenSSH (7.9 and later) delivers such a request with
``killpg()`` to the session's process group (sshd makes every exec session its own
session leader), so the shell *and* its children die, which closing the channel alone
does not achieve (sshd keeps a non-PTY command running after the channel closes). The
tests prove it against a real sshd with ``sleep 300; echo MARKER`` and ``pgrep``. Known
limits: a server that ignores signal requests (forced commands, OpenSSH before 7.9), a
command that detaches into its own session (``setsid``, daemons), or a connection that is
already dead. When the channel does not close after all that, the connection is
discarded from the pool so a wedged channel never blocks later calls.

A command that exits while a background child keeps its output open (``server &``) is
read for one more second after its exit status, then its channel is closed and the
result returned with ``pipe_held`` (sshd would otherwise hold the channel until that
child ends).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import shlex
from collections.abc import Awaitable, Callable, Mapping

import asyncssh

from relay_shell.capture import (
    OutputCapture,
    OutputTap,
    SplitCapture,
    capture_fields,
    new_capture,
    render_capture,
)
from relay_shell.errors import ExecTimeout, PartialOutput, RemoteFailed
from relay_shell.report import ExecReport, signal_exit_code
from relay_shell.ssh.pool import ConnectionPool, Lease
from relay_shell.ssh.targets import HostSpec

PROGRESS_INTERVAL_S = 1.0
TERM_GRACE_S = 1.0
KILL_GRACE_S = 1.0
CLOSE_GRACE_S = 1.0
OPEN_GRACE_S = 2.0
DRAIN_AFTER_EXIT_S = 1.0

ProgressCallback = Callable[[float, int], Awaitable[None]]


def remote_shell_command(text: str) -> str:
    """The command line sent to sshd for ``text``: ``exec /bin/sh -c '<text>'``.

    sshd hands it to the remote user's login shell; the quoted text reaches ``/bin/sh``
    unchanged, so a login shell with another syntax (zsh, fish, csh) cannot give it a
    meaning other than the one the classifier read.
    """
    return "exec /bin/sh -c " + portable_quote(text)


EXEC_INLINE_MAX_BYTES = 60 * 1024  # two copies of the quoted text stay under Linux's 128 KiB per argument
_LOGIN_SHELL_IS_SH = 'test "$SHELL" = /bin/sh && eval \'test "$0" = sh\''


def exec_command_line(text: str) -> str:
    """The command line of an exec channel for ``text``: read by ``/bin/sh``, in one process when it can.

    sshd runs ``<login shell> -c <line>``. The line is ``<guard> || exec /bin/sh -c '<text>' ||
    exit 126``, a newline, then ``eval '<text>'``. The guard holds only when the login shell
    is ``/bin/sh`` itself: sshd sets ``SHELL`` to the account's shell and names the shell
    ``sh`` in ``$0`` (its path's last part), so a POSIX login shell that is not ``/bin/sh``
    (bash, zsh, ksh, dash by another path) fails it, and fish and csh fail at ``$SHELL``
    without ever evaluating ``$0``. Every shell that fails the guard execs ``/bin/sh -c``,
    exactly as :func:`remote_shell_command` does; the line only uses ``test``, ``eval``,
    ``exec``, ``exit``, ``&&``, ``||`` and the quoting of :func:`portable_quote`, which
    POSIX shells, fish (3.0 and later) and csh read alike (sh and fish take ``&&`` and ``||``
    left to right, csh binds ``&&`` tighter: either way a failed guard reaches the exec,
    and a failed exec the exit, never the second line). The ``/bin/sh`` login shell
    itself passes the guard and runs ``eval '<text>'`` on its own line (not in an and-or
    list, so ``set -e`` in the text behaves as under ``sh -c``): the same shell, reading
    the same text, without a second exec. What differs from ``sh -c`` there: ``$0`` is
    ``sh`` rather than ``/bin/sh``, and dash names ``eval`` in its error messages.

    Whoever can change ``SHELL`` in the login environment (``PermitUserEnvironment``,
    ``pam_env``) can already run code before any command (``BASH_ENV``, ``ENV``), and the
    ``$0`` check still holds then. A text whose quoted form is longer than
    :data:`EXEC_INLINE_MAX_BYTES` is sent as :func:`remote_shell_command`.
    """
    quoted = portable_quote(text)
    if len(quoted.encode()) > EXEC_INLINE_MAX_BYTES:
        return "exec /bin/sh -c " + quoted
    return f"{_LOGIN_SHELL_IS_SH} || exec /bin/sh -c {quoted} || exit 126\neval {quoted}"


def portable_quote(text: str) -> str:
    r"""``text`` as one word that POSIX shells, fish and csh all read back unchanged.

    ``shlex.quote`` is not enough: fish reads ``\\`` and ``\'`` inside single quotes as
    escapes, so a backslash in the text would reach ``/bin/sh`` changed (``echo \\\;rm``
    would become ``echo \\;rm``, which runs ``rm``). Here single quotes hold no backslash
    and no quote; a backslash or a quote is written unquoted with a backslash before it,
    which every one of these shells reads as the character itself.
    """
    if not text:
        return "''"
    parts: list[str] = []
    for chunk in _QUOTE_SPLIT.split(text):
        if chunk in ("'", "\\"):
            parts.append("\\" + chunk)
        elif chunk:
            parts.append("'" + chunk + "'")
    return "".join(parts)


_QUOTE_SPLIT = re.compile(r"(['\\])")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def with_environment(text: str, env: Mapping[str, str | None]) -> str:
    """``text`` preceded by lines that export ``env`` (``None`` unsets) in the remote ``/bin/sh``.

    The executor's way to give a remote command the environment the classifier requires for
    it (for a tier-0 ``git``: configuration that would run code switched off), without
    depending on the server's ``AcceptEnv``. The prelude is complete lines of its own, so
    the text is read as it was classified.

    Raises:
        ValueError: a name that is not a shell variable name.
    """
    lines = []
    for name, value in env.items():
        if not _VARIABLE.fullmatch(name):
            raise ValueError(f"not a variable name: {name!r}")
        lines.append(f"unset {name}\n" if value is None else f"export {name}={shlex.quote(value)}\n")
    return "".join(lines) + text


class _ExecSession(asyncssh.SSHClientSession[bytes]):
    """Feeds channel data into the capture (bounded) and records how the command ended."""

    def __init__(self, capture: SplitCapture | OutputCapture) -> None:
        self.capture = capture
        self.closed = asyncio.Event()
        self.changed = asyncio.Event()  # set on exit and on close
        self.exited = False
        self.exit_status: int | None = None
        self.exit_signal: str | None = None
        self.error: Exception | None = None

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if isinstance(self.capture, OutputCapture):
            self.capture.feed(data)
        elif datatype == asyncssh.EXTENDED_DATA_STDERR:
            self.capture.feed_stderr(data)
        else:
            self.capture.feed_stdout(data)

    def exit_status_received(self, status: int) -> None:
        self.exit_status = status
        self.exited = True
        self.changed.set()

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self.exit_signal = signal
        self.exited = True
        self.changed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.error = exc
        self.closed.set()
        self.changed.set()


class _RemoteCommand:
    """Owns one exec channel from opening to a guaranteed stop."""

    def __init__(self, lease: Lease, command: str, capture: SplitCapture | OutputCapture) -> None:
        self.lease = lease
        self.command = command
        self.capture = capture
        self.channel: asyncssh.SSHClientChannel[bytes] | None = None
        self.session: _ExecSession | None = None
        self._opening: asyncio.Future[tuple[asyncssh.SSHClientChannel[bytes], _ExecSession]] | None = None
        self.pipe_held = False

    async def _open(
        self, connection: asyncssh.SSHClientConnection
    ) -> tuple[asyncssh.SSHClientChannel[bytes], _ExecSession]:
        session = _ExecSession(self.capture)
        channel, _ = await connection.create_session(
            lambda: session, exec_command_line(self.command), encoding=None
        )
        return channel, session

    async def start(self, deadline: float) -> None:
        # Shielded: a cancellation mid-open must not lose a channel whose command already started.
        self._opening = asyncio.ensure_future(self.lease.open_channel(self._open, deadline=deadline))
        self.channel, self.session = await asyncio.shield(self._opening)

    async def run(self, stdin: bytes | None, started: float, on_progress: ProgressCallback | None) -> None:
        assert self.channel is not None
        assert self.session is not None
        if stdin:
            with contextlib.suppress(BrokenPipeError):  # the command already ended: nothing reads it
                self.channel.write(stdin)
        self.channel.write_eof()
        session, loop = self.session, asyncio.get_running_loop()
        next_progress = started + PROGRESS_INTERVAL_S if on_progress else math.inf
        drain_until = math.inf
        while True:
            session.changed.clear()
            now = loop.time()
            if session.closed.is_set():
                return
            if session.exited and drain_until == math.inf:
                drain_until = now + DRAIN_AFTER_EXIT_S
            if now >= drain_until:
                # Exited, but a background child still holds the output open: stop reading.
                self.pipe_held = True
                await self._close_channel()
                return
            if on_progress is not None and now >= next_progress:
                next_progress = now + PROGRESS_INTERVAL_S
                await on_progress(now - started, self.capture.total)
                continue
            wake_at = min(next_progress, drain_until)
            await wait_set(session.changed, None if wake_at == math.inf else wake_at - now)

    async def stop(self) -> None:
        """Make sure the remote command is gone: TERM, KILL, close; discard the connection if stuck."""
        if self.channel is None and not await self._settle_open():
            self.lease.discard()
            return
        if self.channel is None or self.session is None or self.session.closed.is_set():
            return
        for signal_name, grace in (("TERM", TERM_GRACE_S), ("KILL", KILL_GRACE_S)):
            with contextlib.suppress(OSError, asyncssh.Error):
                self.channel.send_signal(signal_name)
            if await wait_set(self.session.closed, grace):
                return
        await self._close_channel()

    async def _close_channel(self) -> None:
        """Close our side; a channel the server never closes gets its connection discarded."""
        assert self.channel is not None
        assert self.session is not None
        self.channel.close()
        if not await wait_set(self.session.closed, CLOSE_GRACE_S):
            self.lease.discard()

    async def _settle_open(self) -> bool:
        """After an interrupted open: wait (bounded) for its outcome. False if still unknown."""
        if self._opening is None:
            return True
        try:
            async with asyncio.timeout(OPEN_GRACE_S):
                self.channel, self.session = await self._opening
        except TimeoutError:
            self._opening.cancel()
            return False
        except Exception:  # the open failed: no channel, nothing runs remotely
            return True
        return True


async def wait_set(event: asyncio.Event, timeout_s: float | None) -> bool:
    """Wait until ``event`` is set: ``True`` if it was within ``timeout_s`` (``None``: no limit)."""
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def run_remote(
    pool: ConnectionPool,
    spec: HostSpec,
    command: str,
    *,
    timeout_s: float,
    budget: int,
    stdin: bytes | None = None,
    merge_stderr: bool = False,
    on_progress: ProgressCallback | None = None,
    tap: OutputTap | None = None,
) -> ExecReport:
    """Run ``command`` on ``spec`` within ``timeout_s`` (connecting included).

    Output streams into a bounded capture (split stdout/stderr under one budget, or merged).
    ``stdin`` is sent then closed (``None``: closed at once, like ``/dev/null``).
    ``on_progress(elapsed_s, bytes_so_far)`` is awaited about once a second; ``tap`` also
    receives the output as it arrives (the live stream of a job).

    Returns the report for any exit status (non-zero is not an error); a command killed by
    signal N reports ``128 + N`` and the signal's name, as a local process does.

    Raises:
        RemoteUnreachable: could not connect/authenticate (reason says why), also when the
            deadline passed while connecting.
        ExecTimeout: the deadline passed while the command ran; it was stopped (TERM, KILL,
            channel closed); carries the partial output.
        RemoteFailed: the server refused the channel, or the channel ended without an exit
            status (the connection died mid-command); ``reason`` is ``connection_lost``.
        LimitReached: ``MAX_CONNS`` connections exist and all are in use.
        asyncio.CancelledError: re-raised after the remote command was stopped.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + timeout_s
    capture = new_capture(budget, merge=merge_stderr, tap=tap)
    async with pool.lease(spec, deadline=deadline) as lease:
        remote = _RemoteCommand(lease, command, capture)
        try:
            async with asyncio.timeout_at(deadline):
                await remote.start(deadline)
                await remote.run(stdin, started, on_progress)
        except TimeoutError:
            if await _complete(remote.stop()):
                raise asyncio.CancelledError from None
            elapsed = loop.time() - started
            raise ExecTimeout(
                f"{spec.display()}: timed out after {elapsed:.1f} s (limit {timeout_s:g} s); the remote "
                "command was signalled (TERM, then KILL) and its channel closed",
                PartialOutput(render_capture(capture), capture_fields(capture)),
            ) from None
        except BaseException:
            await _complete(remote.stop())
            raise
    return _report(remote, spec, round((loop.time() - started) * 1000))


def _report(remote: _RemoteCommand, spec: HostSpec, duration_ms: int) -> ExecReport:
    """How the command ended; a channel that closed without an exit status is a lost connection.

    Raises:
        RemoteFailed: no exit status or signal arrived (``reason`` ``connection_lost``).
    """
    session = remote.session
    assert session is not None
    if not session.exited:
        cause = f": {session.error}" if session.error is not None else ""
        raise RemoteFailed(
            f"{spec.display()}: the connection was lost while the command ran (no exit status){cause}",
            reason="connection_lost",
        )
    signal = session.exit_signal
    return ExecReport(
        exit_code=session.exit_status if signal is None else signal_exit_code(signal),
        signal=signal,
        capture=remote.capture,
        duration_ms=duration_ms,
        pipe_held=remote.pipe_held,
        host=spec.display(),
    )


async def _complete(cleanup: Awaitable[None]) -> bool:
    """Run a (bounded) cleanup to its end even if this task is cancelled meanwhile.

    Returns whether a cancellation arrived during the cleanup (the caller re-raises it).
    """
    task = asyncio.ensure_future(cleanup)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    task.result()
    return cancelled
