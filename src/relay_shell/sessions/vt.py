"""The VT emulator behind a session's screen: pyte's parser and screen, hardened and extended.

:class:`VirtualTerminal` is ``pyte.Screen`` with:

- **the alternate screen.** pyte keeps one buffer; the main screen is set aside on
  ``CSI ? 1049 h`` (and 47, 1047), the program gets a blank one, and the main screen and
  its cursor come back on ``CSI ? 1049 l``, so the shell reappears after ``:q!``;
- **a fixed size.** DECCOLM (``CSI ? 3 h``, 132 columns) is ignored: the size is the PTY's;
- **text only.** Attributes are not rendered, so the operations that only change them
  everywhere are dropped (DECSCNM reverse video, DECALN's test pattern) and erasing removes
  cells instead of painting them;
- **cost bounded by the output.** pyte's erase, insert and delete operations loop over every
  column or row whatever the screen holds, and a cell re-normalizes all its combining marks
  for each new one, so a few bytes repeated (``CSI K``, ``ESC # 8``, a stack of accents) cost
  a whole screen each. Here they touch only the cells that exist, insert mode (IRM, a full
  line shift per character) is ignored, the cursor-save stack is capped, and a cell keeps a
  bounded number of combining marks;
- **resilience.** Output is fed in small pieces with a short sleep between them (the GIL is
  given up, so the event loop keeps running); a piece the parser chokes on is skipped and the
  parser restarts.
"""

from __future__ import annotations

import copy
import functools
import re
import time
import unicodedata
from collections import defaultdict
from dataclasses import dataclass

import pyte
from pyte import modes as pyte_modes
from pyte.screens import Margins

from relay_shell.sessions.snapshot import ALTERNATE_MODES, ScreenSnapshot

FEED_PIECE_BYTES = 512
# After each piece the feeding thread sleeps this long: it gives up the GIL for real (a zero
# sleep hands it back at once on a busy machine), so the event loop is not kept waiting.
FEED_PAUSE_S = 0.0005
MAX_TITLE_CHARS = 256
MAX_COMBINING_MARKS = 8
MAX_SAVED_CURSORS = 8
# Private modes dropped: DECCOLM (3, resizes to 132 columns) and DECSCNM (5, reverse video:
# rewrites every cell). Public mode dropped: IRM (4, insert mode: shifts a line per character).
_IGNORED_PRIVATE_MODES = frozenset({3, 5})
_IGNORED_MODES = frozenset({pyte_modes.IRM})
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _kept_modes(modes: tuple[int, ...], private: bool) -> tuple[int, ...]:
    ignored = _IGNORED_PRIVATE_MODES | ALTERNATE_MODES if private else _IGNORED_MODES
    return tuple(mode for mode in modes if mode not in ignored)


@functools.cache
def _combining_runs() -> re.Pattern[str]:
    """Runs of more than MAX_COMBINING_MARKS combining characters (built on first use: ~30 ms)."""
    marks = [code for code in range(0x300, 0x20000) if unicodedata.combining(chr(code))]
    ranges: list[tuple[int, int]] = []
    for code in marks:
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1] = (ranges[-1][0], code)
        else:
            ranges.append((code, code))
    members = "".join(f"{re.escape(chr(low))}-{re.escape(chr(high))}" for low, high in ranges)
    return re.compile(f"([{members}]{{{MAX_COMBINING_MARKS}}})[{members}]+")


@dataclass
class _SavedScreen:
    buffer: dict[int, pyte.screens.StaticDefaultDict[int, pyte.screens.Char]]
    cursor: pyte.screens.Cursor
    cols: int
    lines: int


class VirtualTerminal(pyte.Screen):
    """pyte's screen with the changes the module docstring lists.

    Not thread-safe: one thread at a time (the tracker's render lock).
    """

    def __init__(self, cols: int, lines: int) -> None:
        self.alternate = False
        self.skipped_pieces = 0
        self._saved_main: _SavedScreen | None = None
        super().__init__(cols, lines)
        self.stream = pyte.ByteStream(self)

    def reset(self) -> None:
        """RIS: also leaves the alternate screen and forgets the saved main screen."""
        self.alternate = False
        self._saved_main = None
        super().reset()

    def set_mode(self, *modes: int, **kwargs: bool) -> None:
        private = bool(kwargs.get("private"))
        if private:
            for mode in ALTERNATE_MODES.intersection(modes):
                self._enter_alternate(mode)
        super().set_mode(*_kept_modes(modes, private), **kwargs)

    def reset_mode(self, *modes: int, **kwargs: bool) -> None:
        private = bool(kwargs.get("private"))
        if private:
            for mode in ALTERNATE_MODES.intersection(modes):
                self._leave_alternate(mode)
        super().reset_mode(*_kept_modes(modes, private), **kwargs)

    # -- operations whose cost pyte does not bound (see the module docstring) --------------

    def alignment_display(self) -> None:
        """DECALN (``ESC # 8``) fills the screen with ``E`` for alignment tests: ignored."""

    def save_cursor(self) -> None:
        """DECSC, keeping only the last few saves (a terminal has one slot; pyte a stack)."""
        super().save_cursor()
        del self.savepoints[:-MAX_SAVED_CURSORS]

    def erase_in_display(self, how: int = 0, *args: object, **kwargs: object) -> None:
        if how in (2, 3):
            self.buffer.clear()
            return
        if how in (0, 1):
            row = self.cursor.y
            for doomed in [y for y in self.buffer if (y > row if how == 0 else y < row)]:
                del self.buffer[doomed]
            self.erase_in_line(how)

    def erase_in_line(self, how: int = 0, private: bool = False) -> None:
        line = self.buffer.get(self.cursor.y)
        if line is None:
            return
        if how == 2:
            del self.buffer[self.cursor.y]
            return
        column = self.cursor.x
        for doomed in (
            [x for x in line if (x >= column if how == 0 else x <= column)] if how in (0, 1) else []
        ):
            del line[doomed]

    def erase_characters(self, count: int | None = None) -> None:
        line = self.buffer.get(self.cursor.y)
        if line is not None:
            start, end = self.cursor.x, self.cursor.x + (count or 1)
            for doomed in [x for x in line if start <= x < end]:
                del line[doomed]

    def insert_characters(self, count: int | None = None) -> None:
        self._shift_line(count or 1)

    def delete_characters(self, count: int | None = None) -> None:
        self._shift_line(-(count or 1))

    def _shift_line(self, by: int) -> None:
        """Move the cells at and right of the cursor ``by`` columns (dropping what leaves)."""
        line = self.buffer.get(self.cursor.y)
        if line is None:
            return
        start = self.cursor.x
        moved = {x + by: cell for x, cell in line.items() if x >= start and start <= x + by < self.columns}
        for doomed in [x for x in line if x >= start]:
            del line[doomed]
        line.update(moved)

    def insert_lines(self, count: int | None = None) -> None:
        self._shift_rows(self.cursor.y, count or 1)
        self.carriage_return()

    def delete_lines(self, count: int | None = None) -> None:
        self._shift_rows(self.cursor.y, -(count or 1))
        self.carriage_return()

    def index(self) -> None:
        top, bottom = self.margins or Margins(0, self.lines - 1)
        if self.cursor.y == bottom:
            self._shift_rows(top, -1)
        else:
            self.cursor_down()

    def reverse_index(self) -> None:
        top, _ = self.margins or Margins(0, self.lines - 1)
        if self.cursor.y == top:
            self._shift_rows(top, 1)
        else:
            self.cursor_up()

    def _shift_rows(self, first: int, by: int) -> None:
        """Move the rows from ``first`` to the bottom margin ``by`` rows (within the margins;
        rows pushed out are lost, rows opened are blank). Nothing when ``first`` is outside."""
        top, bottom = self.margins or Margins(0, self.lines - 1)
        if not top <= first <= bottom:
            return
        rows = sorted((y for y in self.buffer if first <= y <= bottom), reverse=by > 0)
        for row in rows:
            line = self.buffer.pop(row)
            if first <= row + by <= bottom:
                self.buffer[row + by] = line

    def switch_alternate(self, alternate: bool) -> None:
        """Enter or leave the alternate screen as ``CSI ? 1049 h/l`` would (used after a cut)."""
        if alternate:
            self._enter_alternate(1049)
        else:
            self._leave_alternate(1049)

    def _enter_alternate(self, mode: int) -> None:
        if self.alternate:
            if mode != 47:
                self.erase_in_display(2)
            return
        self._saved_main = _SavedScreen(self.buffer, copy.copy(self.cursor), self.columns, self.lines)
        self.buffer = defaultdict(lambda: pyte.screens.StaticDefaultDict(self.default_char))
        self.alternate = True
        self.dirty.update(range(self.lines))

    def _leave_alternate(self, mode: int) -> None:
        saved = self._saved_main
        if not self.alternate or saved is None:
            return
        self.alternate = False
        self._saved_main = None
        self.buffer = saved.buffer
        drop = max(0, saved.lines - self.lines)  # a shorter screen loses rows at the top
        if drop:
            for row in range(self.lines):
                self.buffer[row] = self.buffer[row + drop]
            for row in range(self.lines, saved.lines):
                self.buffer.pop(row, None)
        if saved.cols > self.columns:
            for line in self.buffer.values():
                for column in [c for c in line if c >= self.columns]:
                    del line[column]
        if mode == 1049:
            self.cursor = saved.cursor
            self.cursor.y = max(0, self.cursor.y - drop)
            self.ensure_hbounds()
            self.ensure_vbounds()
        self.dirty.update(range(self.lines))

    def draw(self, data: str) -> None:
        """pyte's draw, with a bounded number of combining marks per cell.

        pyte re-normalizes a cell's whole text for every mark added to it: a run of marks
        would cost quadratic time. Runs longer than :data:`MAX_COMBINING_MARKS` are shortened
        before drawing and the cell left of the cursor is trimmed to that many after, so a
        cell never holds more than twice as many, however the marks are split across calls."""
        if data.isascii():
            super().draw(data)
            return
        super().draw(_combining_runs().sub(r"\1", data))
        row, column = (
            (self.cursor.y, self.cursor.x - 1) if self.cursor.x else (self.cursor.y - 1, self.columns - 1)
        )
        if row >= 0:
            cell = self.buffer[row][column]
            if len(cell.data) > MAX_COMBINING_MARKS + 1:
                self.buffer[row][column] = cell._replace(data=cell.data[: MAX_COMBINING_MARKS + 1])

    def feed(self, data: bytes) -> None:
        """Feed output in pieces; a piece the parser chokes on (a 5,000-digit parameter makes
        ``int()`` raise) is skipped, the parser resets, and the rest still renders. Between
        pieces the thread sleeps :data:`FEED_PAUSE_S` so the event loop gets the GIL."""
        for start in range(0, len(data), FEED_PIECE_BYTES):
            try:
                self.stream.feed(data[start : start + FEED_PIECE_BYTES])
            except Exception:  # pyte raises ValueError and friends on hostile input
                self.skipped_pieces += 1
            time.sleep(FEED_PAUSE_S)

    def snapshot(self) -> ScreenSnapshot:
        """The current screen (see :class:`ScreenSnapshot`)."""
        rows = [row.rstrip() for row in self.display]
        while rows and not rows[-1]:
            rows.pop()
        title = _CONTROL_CHARACTERS.sub("", self.title)[:MAX_TITLE_CHARS]
        return ScreenSnapshot(
            rows=tuple(rows),
            cursor_row=min(max(self.cursor.y, 0), self.lines - 1),
            cursor_col=min(max(self.cursor.x, 0), self.columns - 1),
            title=title,
            cols=self.columns,
            lines=self.lines,
            alternate=self.alternate,
        )
