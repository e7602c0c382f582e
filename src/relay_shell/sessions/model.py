"""What the session registry is made of and what it reports.

- :class:`Transport`: one running terminal (a local PTY or an SSH channel with a PTY), and
  :class:`ForegroundProbe`, what a local PTY adds;
- :class:`SessionInfo`: one session as the tools show it, with the principal that opened it;
- :class:`SessionEnd`: how a session ended (the audit's ``session_end`` record).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from relay_shell.sessions.recording import RecordingSummary

KILL_GRACE_S = 2.0

SessionKind = Literal["local", "ssh"]
SessionState = Literal["running", "ended"]
EndReason = Literal["exited", "killed", "reaped", "shutdown"]


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


@runtime_checkable
class ForegroundProbe(Protocol):
    """A transport that can tell whether its shell is the terminal's foreground (local PTYs)."""

    def foreground_is_child(self) -> bool | None:
        """True when the foreground process group is the child's own; None when unknown."""


@dataclass(frozen=True)
class SessionInfo:
    """One row of ``session_list``. ``idle_s`` counts from the last send/recv/resize/kill.

    ``owner`` is the principal that opened the session (``None`` when there is no OAuth: the
    one local principal); only it or an admin may use the session (``governance/ownership.py``).
    """

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
    owner: str | None = None


@dataclass(frozen=True)
class SessionEnd:
    """A session is over: its output ended (``exited``) or it was closed (``killed`` by
    session_kill, ``reaped`` by the sweep, ``shutdown``), whichever came first. Reported once,
    after its recording (if any) was closed. ``owner``: the principal that opened it."""

    session_id: str
    kind: SessionKind
    host: str | None
    command: str
    reason: EndReason
    exit_code: int | None
    duration_s: float
    bytes_produced: int
    recording: RecordingSummary | None
    owner: str | None = None
