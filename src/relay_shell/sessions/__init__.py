"""Interactive terminal sessions: one registry for local and SSH PTYs.

- :mod:`.registry`: the :class:`SessionRegistry`;
- :mod:`.model`: the :class:`Transport` protocol that local and SSH terminals implement, and
  what the registry reports (:class:`SessionInfo`, :class:`SessionEnd`);
- :mod:`.output`: a session's output ring buffer (event-driven take, UTF-8 and ANSI carry);
- :mod:`.screen`: a session's screen (the emulator fed lazily, off the event loop, bounded);
- :mod:`.vt`: the VT emulator (pyte, with the alternate screen and costs bounded by the output);
- :mod:`.recording`: asciicast v2 recordings of sessions;
- :mod:`.reading`: how ``recv`` chooses between a stream read and a screen read;
- :mod:`.terminal`: the terminal vocabulary (named keys, signal names, sizes, ANSI stripping).
"""

from relay_shell.sessions.model import (
    KILL_GRACE_S,
    SessionEnd,
    SessionInfo,
    SessionKind,
    SessionState,
    Transport,
)
from relay_shell.sessions.output import RecvResult
from relay_shell.sessions.reading import SCREEN_MODES, ScreenMode
from relay_shell.sessions.registry import SessionRegistry
from relay_shell.sessions.screen import MAX_RENDER_COLS, MAX_RENDER_ROWS, ScreenSnapshot
from relay_shell.sessions.terminal import (
    KEYS,
    MAX_TERMINAL_COLS,
    MAX_TERMINAL_ROWS,
    SIGNALS,
    keys_to_bytes,
    parse_signal,
    strip_ansi,
    validate_terminal_size,
)

__all__ = [
    "KEYS",
    "KILL_GRACE_S",
    "MAX_RENDER_COLS",
    "MAX_RENDER_ROWS",
    "MAX_TERMINAL_COLS",
    "MAX_TERMINAL_ROWS",
    "SCREEN_MODES",
    "SIGNALS",
    "RecvResult",
    "ScreenMode",
    "ScreenSnapshot",
    "SessionEnd",
    "SessionInfo",
    "SessionKind",
    "SessionRegistry",
    "SessionState",
    "Transport",
    "keys_to_bytes",
    "parse_signal",
    "strip_ansi",
    "validate_terminal_size",
]
