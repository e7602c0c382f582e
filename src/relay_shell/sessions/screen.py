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
- **Bounded.** The pending queue holds 16 bytes a cell, at least 64 KiB, at most 256 KiB; past
  that the head is dropped, cutting at the last full clear or alternate-screen entry when one
  is recent enough, else at a line or escape boundary that keeps the last half of the bound.
  The emulator keeps what it showed before the cut, so a screen after such a burst is exact
  for programs that redraw (top, less, vim) and approximate for ones that only repaint
  changed cells.
- **The emulator** (:class:`relay_shell.sessions.vt.VirtualTerminal`) keeps the main and
  alternate screens apart and costs time in proportion to the output, whatever it holds.
  It (and pyte with it) is imported at the first render, so a server that renders no
  screen never loads it.
- **Size cap.** Rendering is limited to :data:`MAX_RENDER_COLS` x :data:`MAX_RENDER_ROWS`;
  a larger session streams only (it keeps no pending output), and its emulator starts afresh
  if it is resized back within the cap.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import threading
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from relay_shell.sessions.snapshot import ALTERNATE_MODES, ScreenSnapshot

if TYPE_CHECKING:
    from relay_shell.sessions.vt import VirtualTerminal

__all__ = [
    "MAX_RENDER_COLS",
    "MAX_RENDER_ROWS",
    "ScreenSnapshot",
    "ScreenTracker",
    "renderable",
]

MAX_RENDER_COLS = 500
MAX_RENDER_ROWS = 200
MIN_PENDING_BYTES = 64 * 1024
MAX_PENDING_BYTES = 256 * 1024
MAX_FULLSCREEN_REGIONS = 16
_CURSOR_VISIBLE_MODE = 25
# Private-mode switches (DECSET/DECRST), full clears and RIS, in the raw byte stream. Every
# repeated class is bounded, so the scan is linear.
_EVENTS = re.compile(rb"\x1b(?:\[(?:\?([0-9;]{1,64})([hl])|2J)|c)")
_LONGEST_EVENT = 70
# Rendering runs in its own threads: a long render must not hold up asyncio's default
# executor (DNS lookups for SSH go there).
_RENDER_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="relay-shell-screen")


def _new_terminal(cols: int, rows: int) -> VirtualTerminal:
    """A fresh emulator; pyte is imported at the first one (a render, in a worker thread)."""
    from relay_shell.sessions.vt import VirtualTerminal

    return VirtualTerminal(cols, rows)


def renderable(cols: int, rows: int) -> bool:
    """Whether a terminal of this size is rendered (else it streams only)."""
    return cols <= MAX_RENDER_COLS and rows <= MAX_RENDER_ROWS


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
        return min(MAX_PENDING_BYTES, max(MIN_PENDING_BYTES, 16 * self._cols * self._rows))

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
                        terminal = self._terminal = _new_terminal(item.cols, item.rows)
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
            if modes & ALTERNATE_MODES:
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
        if {int(part) for part in match.group(1).split(b";") if part} & ALTERNATE_MODES:
            active = match.group(2) == b"h"
    return active
