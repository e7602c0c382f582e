"""Interactive terminal sessions: one registry for local and SSH PTYs.

- :mod:`.registry`: the :class:`SessionRegistry` and the :class:`Transport` protocol that local
  and SSH terminals implement;
- :mod:`.output`: a session's output ring buffer (event-driven take, UTF-8 and ANSI carry);
- :mod:`.terminal`: the terminal vocabulary (named keys, signal names, sizes, ANSI stripping).
"""

from relay_shell.sessions.output import RecvResult
from relay_shell.sessions.registry import (
    KILL_GRACE_S,
    SessionInfo,
    SessionKind,
    SessionRegistry,
    SessionState,
    Transport,
)
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
    "MAX_TERMINAL_COLS",
    "MAX_TERMINAL_ROWS",
    "SIGNALS",
    "RecvResult",
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
