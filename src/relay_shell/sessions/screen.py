"""A session's terminal screen: a VT emulator (pyte) fed lazily and off the event loop.

Full-screen programs (vim, less, top, htop) draw with cursor motion; stripping their escape
sequences leaves a long line of padding and stray glyphs. A :class:`ScreenTracker` per
session turns the output into the screen a person would see:

- **Cheap on the loop.** :meth:`ScreenTracker.observe` runs for every chunk the reader gets:
  one scan (compiled, linear) for alternate-screen switches and full clears, and an append to
  a pending queue. pyte (pure Python, about 0.1-1.3 MB/s) is not run there.
- **Lazy, off the loop.** :meth:`ScreenTracker.render` feeds what is pending to the emulator
  in a worker thread (in pieces, releasing the GIL between them) and returns a
  :class:`ScreenSnapshot`. Sessions nobody renders cost no emulation at all.
- **Bounded.** The pending queue holds at most ``max(128 KiB, 4 x cols x rows)`` bytes; past
  that the head is dropped, cutting at the last full clear or alternate-screen entry when one
  is recent enough, else at a line or escape boundary that keeps the last half of the bound.
  The emulator keeps what it showed before the cut, so a screen after such a burst is exact
  for programs that redraw (top, less, vim) and approximate for ones that only repaint
  changed cells.
- **Alternate screen.** pyte keeps one buffer; :class:`VirtualTerminal` keeps the main screen
  aside on ``CSI ? 1049 h`` (and 47, 1047), gives the program a blank one, and brings the
  main screen and its cursor back on ``CSI ? 1049 l``, so the shell reappears after ``:q!``.
- **Size cap.** Rendering is limited to :data:`MAX_RENDER_COLS` x :data:`MAX_RENDER_ROWS`;
  a larger session streams only (it keeps no pending output), and its emulator starts afresh
  if it is resized back within the cap.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import re
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass

import pyte
from pyte import modes as pyte_modes

MAX_RENDER_COLS = 500
MAX_RENDER_ROWS = 200
MIN_PENDING_BYTES = 128 * 1024
FEED_PIECE_BYTES = 512
MAX_TITLE_CHARS = 256
MAX_FULLSCREEN_REGIONS = 16
_ALTERNATE_MODES = frozenset({47, 1047, 1049})
_CURSOR_VISIBLE_MODE = 25
# Private-mode switches (DECSET/DECRST), full clears and RIS, in the raw byte stream. Every
# repeated class is bounded, so the scan is linear.
_EVENTS = re.compile(rb"\x1b(?:\[(?:\?([0-9;]{1,64})([hl])|2J)|c)")
_LONGEST_EVENT = 70
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Rendering runs in its own threads: a long render must not hold up asyncio's default
# executor (DNS lookups for SSH go there).
_RENDER_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="relay-shell-screen")


def renderable(cols: int, rows: int) -> bool:
    """Whether a terminal of this size is rendered (else it streams only)."""
    return cols <= MAX_RENDER_COLS and rows <= MAX_RENDER_ROWS


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


@dataclass
class _SavedScreen:
    buffer: dict[int, pyte.screens.StaticDefaultDict[int, pyte.screens.Char]]
    cursor: pyte.screens.Cursor
    cols: int
    lines: int


class VirtualTerminal(pyte.Screen):
    """pyte's screen plus the alternate screen buffer, and without DECCOLM.

    DECCOLM (``CSI ? 3 h``, 132 columns) is ignored: the size is the PTY's, set by resizes.
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
        if kwargs.get("private"):
            for mode in _ALTERNATE_MODES.intersection(modes):
                self._enter_alternate(mode)
            modes = tuple(m for m in modes if m not in _ALTERNATE_MODES and m != pyte_modes.DECCOLM >> 5)
        super().set_mode(*modes, **kwargs)

    def reset_mode(self, *modes: int, **kwargs: bool) -> None:
        if kwargs.get("private"):
            for mode in _ALTERNATE_MODES.intersection(modes):
                self._leave_alternate(mode)
            modes = tuple(m for m in modes if m not in _ALTERNATE_MODES and m != pyte_modes.DECCOLM >> 5)
        super().reset_mode(*modes, **kwargs)

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

    def feed(self, data: bytes) -> None:
        """Feed output in pieces; a piece the parser chokes on (a 5,000-digit parameter makes
        ``int()`` raise) is skipped, the parser resets, and the rest still renders. Between
        pieces the GIL is released so the event loop runs."""
        for start in range(0, len(data), FEED_PIECE_BYTES):
            try:
                self.stream.feed(data[start : start + FEED_PIECE_BYTES])
            except Exception:  # pyte raises ValueError and friends on hostile input
                self.skipped_pieces += 1
            time.sleep(0)

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


@dataclass(frozen=True)
class _Resize:
    cols: int
    rows: int


@dataclass(frozen=True)
class _Alternate:
    """The alternate-screen state at a cut (the dropped output may have switched it)."""

    active: bool


_Item = bytes | _Resize | _Alternate


class ScreenTracker:
    """The screen of one session (see the module docstring).

    ``observe`` and ``resize`` run on the event loop, in stream order; ``render`` may be
    awaited concurrently (renders are applied in order).

    ``fullscreen`` says whether, at the end of the output so far, a program owns the whole
    screen: it holds the alternate screen (vim, less, htop, man, watch), or it hid the cursor
    and then cleared the screen (``CSI ? 25 l`` then ``CSI 2 J``: top, which repaints in place
    without the alternate screen) and has not shown the cursor again. ``fullscreen_regions``
    keeps the last few completed stretches of such output as stream offsets (from the
    sequence that began it to just after the one that ended it).
    """

    def __init__(self, cols: int, rows: int) -> None:
        self._cols, self._rows = cols, rows
        self.fullscreen = False
        self.fullscreen_regions: deque[tuple[int, int]] = deque(maxlen=MAX_FULLSCREEN_REGIONS)
        self._fullscreen_since = 0
        self.alternate = False  # the scanner's view of the emulator's alternate screen
        self._cursor_hidden = False
        self._repainting = False
        self._scan_carry = b""
        self._last_reset: int | None = None  # offset of the last full clear / RIS / alternate entry
        self._pending: deque[_Item] = deque()
        self._pending_bytes = 0
        self._pending_start = 0  # stream offset of the first pending byte
        self._alternate_at_start = False  # scanner state at _pending_start
        self._size_at_start = (cols, rows)
        self._handed: deque[_Item] = deque()  # handed to the renderer, fed in order under its lock
        self._render_lock = threading.Lock()
        self._terminal: VirtualTerminal | None = None
        self._fresh = False
        self.cut_bytes = 0

    @property
    def renderable(self) -> bool:
        return renderable(self._cols, self._rows)

    @property
    def pending_bytes(self) -> int:
        """Output observed and not yet handed to the emulator."""
        return self._pending_bytes

    def _limit(self) -> int:
        return max(MIN_PENDING_BYTES, 4 * self._cols * self._rows)

    def observe(self, chunk: bytes, offset: int) -> None:
        """Account for ``chunk``, which starts at stream offset ``offset``."""
        self._scan(chunk, offset)
        if not self.renderable:
            self._pending_start = offset + len(chunk)
            self._alternate_at_start = self.alternate
            return
        if chunk:
            self._pending.append(chunk)
            self._pending_bytes += len(chunk)
            if self._pending_bytes > self._limit():
                self._trim()

    def resize(self, cols: int, rows: int) -> None:
        """The terminal is now ``cols`` x ``rows`` (after the output observed so far)."""
        was_renderable = self.renderable
        self._cols, self._rows = cols, rows
        if not self.renderable:
            self._pending.clear()
            self._pending_bytes = 0
            self._handed.clear()
        elif not was_renderable:
            self._fresh = True  # nothing was kept while too large: start a blank emulator
            self._size_at_start = (cols, rows)
            self._alternate_at_start = self.alternate
        else:
            self._pending.append(_Resize(cols, rows))

    async def render(self) -> ScreenSnapshot | None:
        """Feed the pending output to the emulator (off the loop) and return the screen;
        ``None`` when the session is too large to render."""
        if not self.renderable:
            return None
        if self._fresh or self._terminal is None:
            self._handed.append(_Resize(*self._size_at_start))
            self._handed.append(_Alternate(self._alternate_at_start))
            fresh = True
        else:
            fresh = False
        self._fresh = False
        self._handed.extend(self._pending)
        self._pending.clear()
        self._pending_start += self._pending_bytes
        self._pending_bytes = 0
        self._alternate_at_start = self.alternate
        self._size_at_start = (self._cols, self._rows)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_RENDER_POOL, self._feed_and_snapshot, fresh)

    # -- worker thread -------------------------------------------------------------------

    def _feed_and_snapshot(self, fresh: bool) -> ScreenSnapshot:
        with self._render_lock:
            terminal = self._terminal
            while self._handed:
                item = self._handed.popleft()
                if isinstance(item, bytes):
                    if terminal is not None:
                        terminal.feed(item)
                elif isinstance(item, _Resize):
                    if terminal is None or fresh:
                        terminal = self._terminal = VirtualTerminal(item.cols, item.rows)
                        fresh = False
                    else:
                        terminal.resize(lines=item.rows, columns=item.cols)
                elif terminal is not None and terminal.alternate != item.active:
                    terminal.switch_alternate(item.active)
            assert terminal is not None  # render() always hands a size to a new emulator
            return terminal.snapshot()

    # -- scanning and trimming (event loop) ----------------------------------------------

    def _scan(self, chunk: bytes, offset: int) -> None:
        data = self._scan_carry + chunk
        base = offset - len(self._scan_carry)
        last_end = 0
        for match in _EVENTS.finditer(data):
            last_end = match.end()
            self._apply_event(match, base)
        last_escape = data.rfind(b"\x1b", max(0, len(data) - _LONGEST_EVENT))
        self._scan_carry = data[last_escape:] if last_escape >= last_end and last_escape >= 0 else b""

    def _apply_event(self, match: re.Match[bytes], base: int) -> None:
        start, end = base + match.start(), base + match.end()
        if match.group(2) is None:  # ESC [ 2 J or ESC c
            self._last_reset = start
            if match.group(0) == b"\x1bc":
                self.alternate = self._cursor_hidden = self._repainting = False
            elif self._cursor_hidden and not self.alternate:
                self._repainting = True
        else:
            modes = {int(part) for part in match.group(1).split(b";") if part}
            switched_on = match.group(2) == b"h"
            if modes & _ALTERNATE_MODES:
                self.alternate = switched_on
                self._repainting = False
                if switched_on and modes & {1047, 1049}:
                    self._last_reset = start
            if _CURSOR_VISIBLE_MODE in modes:
                self._cursor_hidden = not switched_on
                self._repainting = self._repainting and not switched_on
        now = self.alternate or self._repainting
        if now and not self.fullscreen:
            self.fullscreen, self._fullscreen_since = True, start
        elif self.fullscreen and not now:
            self.fullscreen = False
            self.fullscreen_regions.append((self._fullscreen_since, end))

    def _trim(self) -> None:
        """Drop the head of the pending output (see the module docstring).

        The kept output starts with the size and alternate-screen state in force at the cut;
        resizes after the cut stay where they were.
        """
        output = b"".join(item for item in self._pending if isinstance(item, bytes))
        cut = len(output) - self._limit() // 2
        if self._last_reset is not None and self._last_reset - self._pending_start >= cut:
            cut = self._last_reset - self._pending_start
        else:
            cut = _boundary_after(output, cut)
        size = _Resize(*self._size_at_start)
        kept: deque[_Item] = deque()
        position = 0
        for item in self._pending:
            if isinstance(item, bytes):
                if position + len(item) > cut:
                    kept.append(item[max(0, cut - position) :])
                position += len(item)
            elif kept:
                kept.append(item)
            elif isinstance(item, _Resize):
                size = item  # in force at the cut
        alternate = _alternate_after(output[:cut], self._alternate_at_start)
        kept.extendleft([_Alternate(alternate), size])
        self._pending = kept
        self._pending_bytes = len(output) - cut
        self._pending_start += cut
        self._alternate_at_start = alternate
        self._size_at_start = (size.cols, size.rows)
        self.cut_bytes += cut


def _boundary_after(data: bytes, position: int) -> int:
    """The first escape or line start at or after ``position`` (within 4 KiB), else ``position``."""
    window = data[position : position + 4096]
    escape, newline = window.find(b"\x1b"), window.find(b"\n")
    candidates = [index for index in (escape, newline + 1 if newline >= 0 else -1) if index >= 0]
    return position + min(candidates) if candidates else position


def _alternate_after(data: bytes, active: bool) -> bool:
    """The alternate-screen state after ``data``, starting from ``active``."""
    for match in _EVENTS.finditer(data):
        if match.group(2) is None:
            if match.group(0) == b"\x1bc":
                active = False
            continue
        if {int(part) for part in match.group(1).split(b";") if part} & _ALTERNATE_MODES:
            active = match.group(2) == b"h"
    return active
