"""What a session's screen shows, as the emulator (``sessions/vt.py``) reports it.

Kept apart from the emulator so that the session layer can name a screen without loading
pyte: the emulator is imported at a session's first render.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ALTERNATE_MODES", "ScreenSnapshot"]

ALTERNATE_MODES = frozenset({47, 1047, 1049})
"""The private modes (DECSET/DECRST) that switch to and from the alternate screen."""


@dataclass(frozen=True)
class ScreenSnapshot:
    """What the screen shows: ``rows`` with trailing blanks trimmed and trailing empty rows
    dropped, the 0-based cursor, the window title, the size and whether the alternate
    screen is active."""

    rows: tuple[str, ...]
    cursor_row: int
    cursor_col: int
    title: str
    cols: int
    lines: int
    alternate: bool

    @property
    def text(self) -> str:
        """The rows joined by newlines (what ``until`` is matched against in screen mode)."""
        return "\n".join(self.rows)
