"""What a finished command left behind, the same for a local process and a remote exec channel.

Both executors (``local/runner.py``, ``ssh/remote_exec.py``) return an :class:`ExecReport`;
the tool layer turns it into the ``ExecResult`` output with one function
(``relay_shell.tools.shape.exec_outcome``), so the two can never drift apart.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

from relay_shell.capture import OutputCapture, SplitCapture

SIGNAL_EXIT_BASE = 128
"""A process killed by signal N exits ``128 + N``, as a shell reports it."""

PIPE_HELD_NOTE = "background processes kept the output pipe open; stopped reading when the command exited"


@dataclass(frozen=True)
class ExecReport:
    """A command that ran to its end (any exit status: non-zero is not an error).

    ``exit_code`` is ``128 + N`` when the command died of signal N (``signal`` names it:
    ``"KILL"``, ``"TERM"``...); it is ``None`` only when a remote server reported a signal
    this host does not know. ``host`` is the remote ``user@host:port``, ``None`` locally.
    """

    exit_code: int | None
    signal: str | None
    capture: OutputCapture | SplitCapture
    duration_ms: int
    pipe_held: bool = False
    host: str | None = None
    pid: int | None = None
    left_running: int = 0
    """Processes the command left running when it exited, killed then (local containment)."""

    def notes(self) -> list[str]:
        """Remarks about how the run ended, for the result's text."""
        notes = [left_running_note(self.left_running)] if self.left_running else []
        return [*notes, PIPE_HELD_NOTE] if self.pipe_held else notes


def left_running_note(count: int) -> str:
    """``the command left 2 processes running; they were killed when the command exited``."""
    left = "1 process running; it was" if count == 1 else f"{count} processes running; they were"
    return f"the command left {left} killed when the command exited"


def signal_exit_code(name: str) -> int | None:
    """``128 + N`` for a signal name with or without ``SIG`` (``"KILL"`` -> 137); None if unknown."""
    bare = name.upper().removeprefix("SIG")
    try:
        number = signal.Signals[f"SIG{bare}"].value
    except KeyError:
        return None
    return SIGNAL_EXIT_BASE + number


def signal_name(number: int) -> str | None:
    """The bare name of signal ``number`` (9 -> ``"KILL"``); None if this host has no such signal."""
    try:
        return signal.Signals(number).name.removeprefix("SIG")
    except ValueError:
        return None
