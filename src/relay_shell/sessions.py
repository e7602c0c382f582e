"""Interactive terminal sessions: one registry for local and SSH PTYs (SPEC §5.3, §8).

A :class:`Transport` is one running terminal (a local PTY or an SSH channel with a PTY).
The :class:`SessionRegistry` owns every transport handed to it: a reader task per session
copies output into a bounded ring buffer, ``recv`` wakes on new output (event-driven, no
polling), and a sweep reaps sessions that are idle too long or too old. Closing a session,
by ``kill``, a sweep or ``aclose``, closes its transport: the processes are signalled
(TERM, then KILL) and every file descriptor is released.

Also here, because the session tools and both transports share them: signal names
(:data:`SIGNALS`, :func:`parse_signal`), named keys (:data:`KEYS`, :func:`keys_to_bytes`) and
:func:`strip_ansi`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import math
import re
import secrets
import signal as signal_module
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, Protocol, runtime_checkable

from relay_shell.errors import InvalidInput, LimitReached, SessionEnded, SessionNotFound, SpawnFailed
from relay_shell.governance.bounds import decode_utf8_prefix

log = logging.getLogger("relay_shell.sessions")

KILL_GRACE_S = 2.0
MAX_TERMINAL_COLS = 1000
MAX_TERMINAL_ROWS = 1000

SessionKind = Literal["local", "ssh"]
SessionState = Literal["running", "ended"]
_ID_PREFIXES: Mapping[str, str] = {"local": "sh-", "ssh": "ssh-"}


@runtime_checkable
class Transport(Protocol):
    """One running terminal. Implemented by the local PTY and the SSH channel.

    ``read`` is called by one task at a time (the registry's reader); the other methods may
    run concurrently with it.
    """

    async def write(self, data: bytes) -> None:
        """Send bytes to the terminal's input. Raises SessionEnded once it is closed."""

    async def resize(self, cols: int, rows: int) -> None:
        """Change the window size (the foreground job gets SIGWINCH)."""

    async def signal(self, name: str) -> None:
        """Deliver the canonical signal ``name`` (a key of :data:`SIGNALS`)."""

    async def read(self) -> bytes:
        """The next chunk of output, waiting (without polling) until there is one.

        ``b""`` once the output is over and the process has exited (``exit_status`` is then
        final, ``None`` only when it cannot be known), and always ``b""`` after ``close()``,
        which must wake a pending read. Any other failure raises; the registry then treats
        the session as ended.
        """

    async def close(self, grace_s: float = KILL_GRACE_S) -> None:
        """TERM the processes, KILL them after ``grace_s``, release every fd. Idempotent."""

    @property
    def exit_status(self) -> int | None:
        """``None`` while running; the exit code, or 128+n when killed by signal n."""

    @property
    def pid(self) -> int | None:
        """Local: the child's pid (== its process group and session id). SSH: ``None``."""


# ---------------------------------------------------------------------------------------
# Signals and keys

_SIGNAL_NAMES = (
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
    "PIPE", "ALRM", "TERM", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG", "XCPU",
    "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
)  # fmt: skip
SIGNALS: Mapping[str, int] = MappingProxyType(
    {
        name: int(getattr(signal_module, f"SIG{name}"))
        for name in _SIGNAL_NAMES
        if hasattr(signal_module, f"SIG{name}")
    }
)
_SIGNALS_BY_NUMBER = {number: name for name, number in SIGNALS.items()}


def parse_signal(name: str) -> str:
    """The canonical name ("INT") for ``"INT"``, ``"SIGINT"``, ``"int"`` or ``"2"``.

    Raises:
        InvalidInput: (argument ``signal``) not a signal name or number this server knows.
    """
    text = name.strip().upper() if isinstance(name, str) else ""
    if text.isdigit() and int(text) in _SIGNALS_BY_NUMBER:
        return _SIGNALS_BY_NUMBER[int(text)]
    text = text.removeprefix("SIG")
    if text in SIGNALS:
        return text
    raise InvalidInput("signal", f"unknown signal {name!r} (known: {', '.join(SIGNALS)})")


KEYS: Mapping[str, bytes] = MappingProxyType(
    {
        "Enter": b"\r",
        "Tab": b"\t",
        "Escape": b"\x1b",
        "Backspace": b"\x7f",
        "Up": b"\x1b[A",
        "Down": b"\x1b[B",
        "Right": b"\x1b[C",
        "Left": b"\x1b[D",
        "Home": b"\x1b[H",
        "End": b"\x1b[F",
        "PageUp": b"\x1b[5~",
        "PageDown": b"\x1b[6~",
        **{f"C-{chr(code)}": bytes([code - 0x60]) for code in range(ord("a"), ord("z") + 1)},
    }
)
_KEYS_FOLDED = {name.lower(): value for name, value in KEYS.items()}
_KNOWN_KEYS_TEXT = ", ".join(name for name in KEYS if not name.startswith("C-")) + ", C-a .. C-z"


def keys_to_bytes(keys: Sequence[str]) -> bytes:
    """The bytes a terminal sends for the named keys, in order (names are case-insensitive).

    Raises:
        InvalidInput: (argument ``keys``) not a list of strings, or an unknown key name.
    """
    if isinstance(keys, str | bytes):
        raise InvalidInput("keys", 'must be a list of key names, for example ["C-c"]')
    sent = bytearray()
    for key in keys:
        value = _KEYS_FOLDED.get(key.lower()) if isinstance(key, str) else None
        if value is None:
            raise InvalidInput("keys", f"unknown key {key!r} (known: {_KNOWN_KEYS_TEXT})")
        sent += value
    return bytes(sent)


# ---------------------------------------------------------------------------------------
# ANSI stripping

# Every alternative starts at ESC (or is one control character) and its repeated classes
# exclude ESC, so a failed attempt stops at the next ESC: the scan is linear in the input.
_ESCAPE = re.compile(
    r"""
      \x1b\[ [0-?]* [ -/]* [@-~]            # CSI: colours, cursor motion, modes
    | \x1b\] [^\x07\x1b]* (?:\x07|\x1b\\)   # OSC: window title, hyperlinks (BEL or ST)
    | \x1b[PX^_] [^\x07\x1b]* \x1b\\        # DCS, SOS, PM, APC strings
    | \x1b [ -/]* [0-~]                     # charset designation (ESC ( B) and other escapes
    | \x1b                                  # a stray ESC
    | [\x00\x07\x0e\x0f]                    # NUL, BEL, shift out / shift in
    """,
    re.VERBOSE,
)
# Carriage returns next to a newline (a PTY turns "\n" into "\r\n"; shells add "\r" after
# it): no-ops on screen. The look-behinds make starts inside a run of "\r" fail at once.
_REDUNDANT_CR = re.compile(r"(?<!\r)\r+(?=\n)|(?<=\n)\r+")
# An escape sequence cut off at the end of a chunk (held back until the rest arrives).
_INCOMPLETE_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|[\]PX^_][^\x07\x1b]*\x1b?|[ -/]*)\Z")
_MAX_HELD_ESCAPE = 512
_MAX_HELD_CR = 64


def strip_ansi(text: str) -> str:
    """Terminal output as plain text, in linear time.

    Removes CSI, OSC, DCS/SOS/PM/APC and charset escape sequences, stray ESC, NUL, BEL and
    shift characters, and carriage returns right before or after a newline (so ``\\r\\n``
    becomes ``\\n``).
    Idempotent; text without escapes or carriage returns is returned unchanged.
    """
    return _REDUNDANT_CR.sub("", _ESCAPE.sub("", text))


def _held_tail_length(text: str) -> int:
    """How many trailing characters to hold back so stripping never cuts a sequence in two."""
    incomplete = _INCOMPLETE_ESCAPE.search(text, max(0, len(text) - _MAX_HELD_ESCAPE))
    if incomplete is not None:
        return len(text) - incomplete.start()
    return min(_MAX_HELD_CR, len(text) - len(text.rstrip("\r")))


def _decode(carry: bytes, chunk: bytes, *, strip: bool, final: bool) -> tuple[str, bytes]:
    """Decode ``carry + chunk``; return the text and the bytes to carry to the next call.

    Never splits a UTF-8 character; when stripping, also holds back an escape sequence or a
    ``\\r`` run cut at the end. ``final`` flushes everything (the output is over).
    """
    data = carry + chunk
    if final:
        text, rest = data.decode("utf-8", errors="replace"), b""
    else:
        text, rest = decode_utf8_prefix(data)
        held = _held_tail_length(text) if strip else 0
        if held:
            text, rest = text[:-held], text[-held:].encode() + rest
    return (strip_ansi(text) if strip else text), rest


def _leading_continuation_bytes(data: bytearray) -> int:
    count = 0
    while count < min(3, len(data)) and 0x80 <= data[count] < 0xC0:
        count += 1
    return count


def validate_terminal_size(cols: int, rows: int) -> None:
    """Raises InvalidInput (``cols``/``rows``) outside 1..MAX_TERMINAL_COLS/ROWS."""
    for argument, value, ceiling in (("cols", cols, MAX_TERMINAL_COLS), ("rows", rows, MAX_TERMINAL_ROWS)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= ceiling:
            raise InvalidInput(argument, f"must be an integer from 1 to {ceiling}, not {value!r}")


# ---------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class SessionInfo:
    """One row of ``session_list``. ``idle_s`` counts from the last send/recv/resize/kill."""

    session_id: str
    kind: SessionKind
    host: str | None
    command: str
    cols: int
    rows: int
    age_s: float
    idle_s: float
    bytes_buffered: int
    bytes_produced: int
    bytes_dropped: int
    state: SessionState
    exit_code: int | None


@dataclass(frozen=True)
class RecvResult:
    """What one ``recv`` consumed.

    ``bytes`` counts raw bytes taken from the buffer. ``matched`` is ``None`` without
    ``until``. ``timed_out`` means the wait ended by the timeout (nothing arrived, or
    ``until`` never matched); with neither ``matched`` nor ``timed_out`` nor ``ended``, the
    ``max_bytes`` cap was reached. ``ended`` (with ``exit_code``) once the child has exited
    and everything was read. ``dropped_bytes``: lost to ring-buffer overflow since the last recv.
    """

    output: str
    bytes: int
    matched: bool | None
    timed_out: bool
    ended: bool
    exit_code: int | None
    dropped_bytes: int


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
    buffer: bytearray = field(default_factory=bytearray)
    carry: bytes = b""  # consumed but not yet returned: an incomplete character or escape
    gap: bool = False  # bytes were dropped since the last take: the carry is stale
    after_newline: bool = False  # stripped output so far ends with "\n" (a "\r" next is a no-op)
    bytes_produced: int = 0
    bytes_dropped: int = 0
    dropped_since_recv: int = 0
    finished: bool = False  # the reader saw the end of the output
    waiters: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    recv_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    reader: asyncio.Task[None] | None = None
    teardown: asyncio.Future[None] | None = None

    @property
    def ended(self) -> bool:
        return self.finished or self.transport.exit_status is not None


@dataclass
class _Collected:
    raw: list[bytes] = field(default_factory=list)
    raw_length: int = 0
    parts: list[str] = field(default_factory=list)
    matched: bool = False


class SessionRegistry:
    """Live sessions, local and SSH together, capped at ``max_sessions``.

    Sessions are reaped when idle longer than ``idle_timeout_s`` or older than
    ``max_lifetime_s``, both measured with ``clock``; :meth:`start` runs :meth:`sweep` every
    ``sweep_interval_s``. A session with a ``recv`` in progress is never reaped.
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
    ) -> None:
        self._max_sessions = max_sessions
        self._buffer_bytes = buffer_bytes
        self._idle_timeout_s = idle_timeout_s
        self._max_lifetime_s = max_lifetime_s
        self._clock = clock
        self._sweep_interval_s = sweep_interval_s
        self._kill_grace_s = kill_grace_s
        self._sessions: dict[str, _Session] = {}
        self._sweeper: asyncio.Task[None] | None = None
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
    ) -> SessionInfo:
        """Register a running transport and start its reader; returns the new session's info.

        The registry owns ``transport`` from this call on: if it cannot be added (full, or
        shutting down) it is closed and ``on_close`` runs before the error is raised.

        Raises:
            LimitReached: ``RELAY_SHELL_MAX_SESSIONS`` live sessions already.
            SpawnFailed: the registry is shutting down.
        """
        if kind not in _ID_PREFIXES:
            raise ValueError(f"session kind must be 'local' or 'ssh', not {kind!r}")
        try:
            if self._shut_down:
                raise SpawnFailed("the server is shutting down: no new sessions")
            self.ensure_capacity()
        except BaseException:
            await _close_quietly(transport, on_close, self._kill_grace_s)
            raise
        session_id = _ID_PREFIXES[kind] + secrets.token_hex(6)
        while session_id in self._sessions:
            session_id = _ID_PREFIXES[kind] + secrets.token_hex(6)
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
        await session.transport.write(data)

    async def resize(self, session_id: str, cols: int, rows: int) -> None:
        """Set the window size. Raises SessionNotFound, SessionEnded, InvalidInput."""
        validate_terminal_size(cols, rows)
        session = self._get(session_id)
        session.last_activity = self._clock()
        self._require_running(session)
        await session.transport.resize(cols, rows)
        session.cols, session.rows = cols, rows

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
            await self._close_session(session)
        return self._info(session)

    async def recv(
        self,
        session_id: str,
        *,
        timeout_s: float,
        max_bytes: int,
        until: re.Pattern[str] | None = None,
        strip_ansi: bool = True,
    ) -> RecvResult:
        """Consume and return output (see :class:`RecvResult` for the fields).

        Without ``until``: buffered output at once, else the first output within
        ``timeout_s``. With ``until``: accumulate until the pattern matches the accumulated
        text (after ANSI stripping when ``strip_ansi``), the timeout, the end of the
        session or ``max_bytes``. A cancelled recv consumes nothing.

        Raises:
            SessionNotFound: unknown id.
            InvalidInput: ``timeout`` negative or not finite, ``max_bytes`` below 1.
        """
        if not isinstance(timeout_s, int | float) or not math.isfinite(timeout_s) or timeout_s < 0:
            raise InvalidInput("timeout", f"must be a finite number of seconds >= 0, not {timeout_s!r}")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise InvalidInput("max_bytes", f"must be a positive integer, not {max_bytes!r}")
        session = self._get(session_id)
        session.waiters += 1
        session.last_activity = self._clock()
        try:
            return await self._collect(session, timeout_s, max_bytes, until, strip_ansi)
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
        await asyncio.gather(*(self._close_session(session) for session in expired))
        return [session.session_id for session in expired]

    async def start(self) -> None:
        """Start the background sweep (every ``sweep_interval_s``). Idempotent."""
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="relay-shell session sweeper")

    async def aclose(self) -> None:
        """Stop the sweeper and close every session (processes gone, fds released)."""
        self._shut_down = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        await asyncio.gather(*(self._close_session(session) for session in list(self._sessions.values())))

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
            bytes_buffered=len(session.buffer) + len(session.carry),
            bytes_produced=session.bytes_produced,
            bytes_dropped=session.bytes_dropped,
            state="ended" if ended else "running",
            exit_code=session.transport.exit_status if ended else None,
        )

    async def _pump(self, session: _Session) -> None:
        """Reader task: copy output into the ring buffer; at the end, release the transport."""
        try:
            while chunk := await session.transport.read():
                self._append(session, chunk)
        except Exception:
            log.exception("reading session %s failed; treating it as ended", session.session_id)
        finally:
            session.finished = True
            session.changed.set()
        # The child is gone: kill stragglers and release the fds now, not at removal.
        try:
            await session.transport.close(self._kill_grace_s)
        except Exception:
            log.exception("closing the transport of session %s failed", session.session_id)

    def _append(self, session: _Session, chunk: bytes) -> None:
        session.bytes_produced += len(chunk)
        session.buffer += chunk
        excess = len(session.buffer) - self._buffer_bytes
        if excess > 0:
            del session.buffer[:excess]  # O(1): bytearray advances its start
            # Do not leave the tail of a cut character at the head of the buffer.
            partial = _leading_continuation_bytes(session.buffer)
            del session.buffer[:partial]
            session.bytes_dropped += excess + partial
            session.dropped_since_recv += excess + partial
            session.gap = True
        session.changed.set()

    async def _collect(
        self, session: _Session, timeout_s: float, max_bytes: int, until: re.Pattern[str] | None, strip: bool
    ) -> RecvResult:
        collected = _Collected()
        carry_before: bytes | None = None  # set once this call holds the lock
        timed_out = False
        try:
            async with asyncio.timeout(timeout_s), session.recv_lock:
                carry_before = session.carry
                await self._fill(session, collected, max_bytes, until, strip)
        except TimeoutError:
            timed_out = True
        except BaseException:
            if carry_before is not None:  # cancelled mid-take: put everything back
                session.buffer[:0] = b"".join(collected.raw)
                session.carry = carry_before
            raise
        ended = session.finished and not session.buffer and not session.carry
        dropped, session.dropped_since_recv = session.dropped_since_recv, 0
        return RecvResult(
            output="".join(collected.parts),
            bytes=collected.raw_length,
            matched=collected.matched if until is not None else None,
            timed_out=timed_out and not collected.matched,
            ended=ended,
            exit_code=session.transport.exit_status if ended else None,
            dropped_bytes=dropped,
        )

    async def _fill(
        self,
        session: _Session,
        collected: _Collected,
        max_bytes: int,
        until: re.Pattern[str] | None,
        strip: bool,
    ) -> None:
        """Take output until done; waits on the reader's event between takes."""
        while True:
            self._take(session, collected, max_bytes, strip)
            if until is not None and until.search("".join(collected.parts)):
                collected.matched = True
                return
            drained = session.finished and not session.buffer and not session.carry
            if drained or collected.raw_length >= max_bytes:
                return
            if until is None and any(collected.parts):
                return
            session.changed.clear()
            await session.changed.wait()

    @staticmethod
    def _take(session: _Session, collected: _Collected, max_bytes: int, strip: bool) -> None:
        if session.gap:
            session.carry, session.gap = b"", False
        room = max_bytes - collected.raw_length
        chunk = b""
        if room > 0 and session.buffer:
            chunk = bytes(session.buffer[:room])
            del session.buffer[:room]
            collected.raw.append(chunk)
            collected.raw_length += len(chunk)
        final = session.finished and not session.buffer
        if chunk or (final and session.carry):
            text, session.carry = _decode(session.carry, chunk, strip=strip, final=final)
            if strip:
                if session.after_newline:
                    text = text.lstrip("\r")
                if text:
                    session.after_newline = text.endswith("\n")
            collected.parts.append(text)

    async def _close_session(self, session: _Session) -> None:
        """Close the transport, stop the reader, remove the session, run on_close. Once."""
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
            session.finished = True
            session.changed.set()
            self._sessions.pop(session.session_id, None)
            if session.on_close is not None:
                try:
                    await session.on_close()
                except Exception:
                    log.exception("on_close of session %s failed", session.session_id)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval_s)
            try:
                await self.sweep()
            except Exception:
                log.exception("session sweep failed")


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
