"""The session registry: local and SSH PTYs behind one :class:`Transport` interface.

A :class:`Transport` is one running terminal (a local PTY or an SSH channel with a PTY); it
and what the registry reports (:class:`SessionInfo`, :class:`SessionEnd`) are defined in
:mod:`relay_shell.sessions.model`. The :class:`SessionRegistry` owns every transport handed to it: a reader task per session
copies output into a bounded ring buffer (:class:`relay_shell.sessions.output.OutputBuffer`),
``recv`` wakes on new output (event-driven, no polling), and a sweep reaps sessions that are idle too long or too old. Closing a session,
by ``kill``, a sweep or ``aclose``, closes its transport: the processes are signalled
(TERM, then KILL) and every file descriptor is released.

Signal names (:data:`SIGNALS`, :func:`parse_signal`), named keys (:data:`KEYS`,
:func:`keys_to_bytes`), :func:`strip_ansi` and the terminal size bounds live in
:mod:`relay_shell.sessions.terminal`, :class:`RecvResult` in :mod:`relay_shell.sessions.output`;
the package re-exports them.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from relay_shell.errors import InvalidInput, LimitReached, SessionEnded, SessionNotFound, SpawnFailed
from relay_shell.linear_regex import LinearRegex
from relay_shell.periodic import Periodic
from relay_shell.policy.session import LineState
from relay_shell.sessions.model import (
    KILL_GRACE_S,
    EndReason,
    ForegroundProbe,
    SessionEnd,
    SessionInfo,
    SessionKind,
    Transport,
)
from relay_shell.sessions.output import OutputBuffer, RecvResult
from relay_shell.sessions.reading import SCREEN_MODES, ReadRequest, ScreenMode, read_session
from relay_shell.sessions.recording import EchoProbe, Recording, RecordingSettings
from relay_shell.sessions.screen import ScreenTracker
from relay_shell.sessions.terminal import (
    parse_signal,
    validate_terminal_size,
)

log = logging.getLogger("relay_shell.sessions")

_ID_PREFIXES: Mapping[str, str] = {"local": "sh-", "ssh": "ssh-"}


@dataclass(eq=False)
class _Session:
    session_id: str
    transport: Transport
    kind: SessionKind
    host: str | None
    command: str
    cols: int
    rows: int
    created: float
    last_activity: float
    on_close: Callable[[], Awaitable[None]] | None
    output: OutputBuffer
    screen: ScreenTracker
    recording: Recording | None = None
    waiters: int = 0
    reader: asyncio.Task[None] | None = None
    teardown: asyncio.Future[None] | None = None
    end_reason: EndReason | None = None
    ending: asyncio.Future[None] | None = None
    line: LineState = field(default_factory=LineState)
    owner: str | None = None

    @property
    def ended(self) -> bool:
        return self.output.finished or self.transport.exit_status is not None


class SessionRegistry:
    """Live sessions, local and SSH together, capped at ``max_sessions``.

    Sessions are reaped when idle longer than ``idle_timeout_s`` or older than
    ``max_lifetime_s``, both measured with ``clock``; :meth:`start` runs :meth:`sweep` every
    ``sweep_interval_s``. A session with a ``recv`` in progress is never reaped.

    With ``recording`` every session is recorded (:mod:`relay_shell.sessions.recording`);
    ``on_end`` is told once when each session is over (:class:`SessionEnd`: the audit's
    session-end record).
    """

    def __init__(
        self,
        *,
        max_sessions: int,
        buffer_bytes: int,
        idle_timeout_s: float,
        max_lifetime_s: float,
        clock: Callable[[], float] = time.monotonic,
        sweep_interval_s: float = 30.0,
        kill_grace_s: float = KILL_GRACE_S,
        recording: RecordingSettings | None = None,
        on_end: Callable[[SessionEnd], None] | None = None,
    ) -> None:
        self._recording = recording
        self._on_end = on_end
        self._max_sessions = max_sessions
        self._buffer_bytes = buffer_bytes
        self._idle_timeout_s = idle_timeout_s
        self._max_lifetime_s = max_lifetime_s
        self._clock = clock
        self._sweeper = Periodic("session sweep", sweep_interval_s, self.sweep, log)
        self._kill_grace_s = kill_grace_s
        self._sessions: dict[str, _Session] = {}
        self._shut_down = False

    def __len__(self) -> int:
        return len(self._sessions)

    def ensure_capacity(self) -> None:
        """Raises LimitReached (``RELAY_SHELL_MAX_SESSIONS``) when no session can be added."""
        if len(self._sessions) >= self._max_sessions:
            raise LimitReached("RELAY_SHELL_MAX_SESSIONS", self._max_sessions, "live sessions")

    async def add(
        self,
        transport: Transport,
        *,
        kind: str,
        host: str | None,
        command: str,
        cols: int,
        rows: int,
        on_close: Callable[[], Awaitable[None]] | None = None,
        term: str = "xterm-256color",
        owner: str | None = None,
    ) -> SessionInfo:
        """Register a running transport and start its reader; returns the new session's info.

        ``owner`` is the principal opening it (shown in its info and its end; the tools let
        only it or an admin use the session).

        The registry owns ``transport`` from this call on: if it cannot be added (full,
        shutting down, or its recording cannot be created) it is closed and ``on_close`` runs
        before the error is raised. ``term`` is the terminal type, for the recording's header.

        Raises:
            LimitReached: ``RELAY_SHELL_MAX_SESSIONS`` live sessions already.
            SpawnFailed: the registry is shutting down, or the recording cannot be created.
        """
        if kind not in _ID_PREFIXES:
            raise ValueError(f"session kind must be 'local' or 'ssh', not {kind!r}")
        session_id = _ID_PREFIXES[kind] + secrets.token_hex(6)
        while session_id in self._sessions:
            session_id = _ID_PREFIXES[kind] + secrets.token_hex(6)
        recording = None
        try:
            if self._shut_down:
                raise SpawnFailed("the server is shutting down: no new sessions")
            self.ensure_capacity()
            if self._recording is not None:
                title = f"relay-shell {session_id}" + (f" on {host}" if host else "")
                recording = Recording.start(
                    self._recording, session_id, cols=cols, rows=rows, command=command, title=title, term=term
                )
        except BaseException:
            await _close_quietly(transport, on_close, self._kill_grace_s)
            raise
        now = self._clock()
        session = _Session(
            session_id,
            transport,
            "local" if kind == "local" else "ssh",
            host,
            command,
            cols,
            rows,
            now,
            now,
            on_close,
            OutputBuffer(self._buffer_bytes),
            ScreenTracker(cols, rows),
            recording,
            owner=owner,
        )
        self._sessions[session_id] = session
        session.reader = asyncio.create_task(self._pump(session), name=f"relay-shell reader {session_id}")
        return self._info(session)

    def info(self, session_id: str) -> SessionInfo:
        """Raises SessionNotFound for an unknown id."""
        return self._info(self._get(session_id))

    def list(self) -> list[SessionInfo]:
        """Every session, oldest first."""
        return [self._info(session) for session in self._sessions.values()]

    async def send(self, session_id: str, data: bytes) -> None:
        """Write ``data`` to the session's terminal.

        Raises:
            SessionNotFound: unknown id.
            SessionEnded: the child has exited.
        """
        session = self._get(session_id)
        session.last_activity = self._clock()
        self._require_running(session)
        echo = self.echo_enabled(session_id)  # read before the input can change it
        await session.transport.write(data)
        if session.recording is not None:
            session.recording.input(data, echo)

    def echo_enabled(self, session_id: str) -> bool | None:
        """Whether the session's terminal echoes input now: False at a password prompt (echo
        off, canonical mode); None when it cannot be told (raw mode: readline and full-screen
        programs echo by themselves; SSH terminals). Raises SessionNotFound."""
        transport = self._get(session_id).transport
        return transport.echo_enabled() if isinstance(transport, EchoProbe) else None

    def line_state(self, session_id: str) -> LineState:
        """The line the session's shell is editing, as the classifier models it.

        Raises:
            SessionNotFound: unknown id.
        """
        return self._get(session_id).line

    def set_line_state(self, session_id: str, state: LineState) -> None:
        """Record the line state after a send was delivered (or a session started)."""
        session = self._sessions.get(session_id)
        if session is not None:
            session.line = state

    def foreground_is_shell(self, session_id: str) -> bool | None:
        """Whether the terminal's foreground process group is the session's own process
        (the shell), from ``tcgetpgrp`` on the PTY master; None when it cannot be known (SSH).
        """
        transport = self._get(session_id).transport
        return transport.foreground_is_child() if isinstance(transport, ForegroundProbe) else None

    async def resize(self, session_id: str, cols: int, rows: int) -> None:
        """Set the window size. Raises SessionNotFound, SessionEnded, InvalidInput."""
        validate_terminal_size(cols, rows)
        session = self._get(session_id)
        session.last_activity = self._clock()
        self._require_running(session)
        await session.transport.resize(cols, rows)
        session.cols, session.rows = cols, rows
        session.screen.resize(cols, rows)
        if session.recording is not None:
            session.recording.resize(cols, rows)

    async def kill(self, session_id: str, signal: str = "TERM", close: bool = True) -> SessionInfo:
        """Signal the session; with ``close`` also close it and remove it from the registry.

        With ``close`` the signal is skipped if the child has already exited (closing an
        ended session just removes it).

        Raises:
            InvalidInput: unknown signal name.
            SessionNotFound: unknown id.
            SessionEnded: ``close=False`` and the child has already exited.
        """
        name = parse_signal(signal)
        session = self._get(session_id)
        session.last_activity = self._clock()
        if session.teardown is None and not session.ended:  # (a closing session gets no signal)
            try:
                await session.transport.signal(name)
            except SessionEnded:
                if not close:
                    raise
        elif not close:
            self._require_running(session)
        if close:
            await self._close_session(session, "killed")
        return self._info(session)

    async def recv(
        self,
        session_id: str,
        *,
        timeout_s: float,
        max_bytes: int,
        until: LinearRegex | None = None,
        strip_ansi: bool = True,
        screen: ScreenMode = "auto",
        quiet_s: float | None = None,
    ) -> RecvResult:
        """Consume and return output (see :class:`RecvResult` for the fields).

        Without ``until``: buffered output at once, else the first output within
        ``timeout_s``. With ``until`` (compiled by :func:`relay_shell.linear_regex.compile_caller_regex`):
        accumulate until the pattern matches the text (after ANSI stripping when ``strip_ansi``;
        searched incrementally, see :class:`relay_shell.linear_regex.StreamSearch`), the timeout,
        the end of the session or ``max_bytes``. ``quiet_s`` waits until the output pauses that
        long. ``screen`` chooses a stream or a screen read (:mod:`relay_shell.sessions.reading`).
        A cancelled stream read consumes nothing.

        Raises:
            SessionNotFound: unknown id.
            InvalidInput: ``timeout`` or ``quiet_ms`` negative or not finite, ``max_bytes``
                below 1, ``screen`` not auto, always or never.
        """
        if not isinstance(timeout_s, int | float) or not math.isfinite(timeout_s) or timeout_s < 0:
            raise InvalidInput("timeout", f"must be a finite number of seconds >= 0, not {timeout_s!r}")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise InvalidInput("max_bytes", f"must be a positive integer, not {max_bytes!r}")
        if screen not in SCREEN_MODES:
            raise InvalidInput("screen", f"must be one of {', '.join(SCREEN_MODES)}, not {screen!r}")
        if quiet_s is not None and (
            not isinstance(quiet_s, int | float) or not math.isfinite(quiet_s) or quiet_s < 0
        ):
            raise InvalidInput("quiet_ms", f"must be a finite number >= 0, not {quiet_s!r}")
        session = self._get(session_id)
        session.waiters += 1
        session.last_activity = self._clock()
        request = ReadRequest(timeout_s, max_bytes, until, strip_ansi, screen, quiet_s)
        try:
            return await read_session(
                session.output, session.screen, request, lambda: session.transport.exit_status
            )
        finally:
            session.waiters -= 1
            session.last_activity = self._clock()

    async def sweep(self) -> builtins.list[str]:
        """Close sessions idle longer than the idle timeout or older than the lifetime.

        Sessions with a recv in progress are skipped. Returns the reaped ids.
        """
        now = self._clock()
        expired = [
            session
            for session in self._sessions.values()
            if session.waiters == 0
            and session.teardown is None
            and (
                now - session.last_activity > self._idle_timeout_s
                or now - session.created > self._max_lifetime_s
            )
        ]
        for session in expired:
            log.info("reaping session %s (idle %.0f s, age %.0f s)", session.session_id,
                     now - session.last_activity, now - session.created)  # fmt: skip
        await asyncio.gather(*(self._close_session(session, "reaped") for session in expired))
        return [session.session_id for session in expired]

    async def start(self) -> None:
        """Start the background sweep (every ``sweep_interval_s``). Idempotent."""
        self._sweeper.start()

    async def aclose(self) -> None:
        """Stop the sweeper and close every session (processes gone, fds released)."""
        self._shut_down = True
        await self._sweeper.stop()
        await asyncio.gather(
            *(self._close_session(session, "shutdown") for session in list(self._sessions.values()))
        )

    # -- internals -----------------------------------------------------------------------

    def _get(self, session_id: str) -> _Session:
        session = self._sessions.get(session_id) if isinstance(session_id, str) else None
        if session is None:
            raise SessionNotFound(session_id)
        return session

    def _require_running(self, session: _Session) -> None:
        if session.ended:
            exit_code = session.transport.exit_status
            raise SessionEnded(
                f"session {session.session_id} has ended (exit {exit_code}); read what is left "
                "with session_recv, remove it with session_kill"
            )

    def _info(self, session: _Session) -> SessionInfo:
        now = self._clock()
        ended = session.ended
        return SessionInfo(
            session_id=session.session_id,
            kind=session.kind,
            host=session.host,
            command=session.command,
            cols=session.cols,
            rows=session.rows,
            age_s=round(max(0.0, now - session.created), 3),
            idle_s=round(max(0.0, now - session.last_activity), 3),
            bytes_buffered=session.output.buffered,
            bytes_produced=session.output.produced,
            bytes_dropped=session.output.dropped,
            state="ended" if ended else "running",
            exit_code=session.transport.exit_status if ended else None,
            owner=session.owner,
        )

    async def _pump(self, session: _Session) -> None:
        """Reader task: copy output into the ring buffer; at the end, release the transport."""
        try:
            while chunk := await session.transport.read():
                session.screen.observe(chunk, session.output.produced)
                session.output.append(chunk)
                if session.recording is not None:
                    session.recording.output(chunk)
        except Exception:
            log.exception("reading session %s failed; treating it as ended", session.session_id)
        finally:
            session.output.finish()
        # The child is gone: kill stragglers and release the fds now, not at removal.
        try:
            await session.transport.close(self._kill_grace_s)
        except Exception:
            log.exception("closing the transport of session %s failed", session.session_id)
        await self._end(session)

    async def _end(self, session: _Session) -> None:
        """Close the recording and report the end of the session (:class:`SessionEnd`). Once."""
        if session.ending is None:
            session.ending = asyncio.ensure_future(self._report_end(session))
        await asyncio.shield(session.ending)

    async def _report_end(self, session: _Session) -> None:
        summary = None
        try:
            if session.recording is not None:
                summary = await session.recording.close()
            if self._on_end is not None:
                self._on_end(
                    SessionEnd(
                        session.session_id, session.kind, session.host, session.command,
                        session.end_reason or "exited", session.transport.exit_status,
                        round(max(0.0, self._clock() - session.created), 3), session.output.produced, summary,
                        session.owner,
                    )
                )  # fmt: skip
        except Exception:
            log.exception("ending session %s failed", session.session_id)

    async def _close_session(self, session: _Session, reason: EndReason) -> None:
        """Close the transport, stop the reader, remove the session, run on_close. Once."""
        if session.end_reason is None and session.ending is None and not session.output.finished:
            session.end_reason = reason
        if session.teardown is None:
            session.teardown = asyncio.ensure_future(self._teardown(session))
        await asyncio.shield(session.teardown)

    async def _teardown(self, session: _Session) -> None:
        try:
            await session.transport.close(self._kill_grace_s)
            if session.reader is not None:
                # close() makes read() return b""; the reader then finishes by itself.
                done, _ = await asyncio.wait({session.reader}, timeout=self._kill_grace_s)
                if not done:
                    session.reader.cancel()
        except Exception:
            log.exception("closing session %s failed", session.session_id)
        finally:
            session.output.finish()
            await self._end(session)
            self._sessions.pop(session.session_id, None)
            if session.on_close is not None:
                try:
                    await session.on_close()
                except Exception:
                    log.exception("on_close of session %s failed", session.session_id)


async def _close_quietly(
    transport: Transport, on_close: Callable[[], Awaitable[None]] | None, grace_s: float
) -> None:
    """Close a transport the registry refused; failures are logged, not raised."""
    try:
        await transport.close(grace_s)
        if on_close is not None:
            await on_close()
    except Exception:
        log.exception("closing a refused session failed")
