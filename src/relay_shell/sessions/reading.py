"""How ``recv`` reads a session: the output as a stream of text, or the screen it draws.

:func:`read_session` is ``SessionRegistry.recv`` once the session is found. It holds the
session's read lock (one read at a time) and chooses, by ``screen``:

- ``never``: a stream read (:meth:`OutputBuffer.collect`).
- ``always``: a screen read, whatever the program does.
- ``auto``: a screen read while a program owns the whole screen (the alternate screen:
  vim, less, htop; or a repaint in place: top; see :attr:`ScreenTracker.fullscreen`), a
  stream read otherwise. The choice follows the program: a stream read that sees such a
  program start is put back and becomes a screen read; a screen read whose program ended
  while it waited becomes a stream read. A stream read skips what full-screen programs drew
  (it was superseded: screen reads showed it, and the shell's screen came back), so after
  ``:q!`` the next read starts at the prompt.

A screen read waits for output when nothing is unread, then until the output pauses
(``quiet_s``, by default :data:`SCREEN_SETTLE_S`, so a half-drawn screen is not returned),
renders the emulator off the loop and consumes the stream output it supersedes. ``until``
is matched against the rendered text; without a match it waits for more output and renders
again until the deadline. A session larger than the render cap always streams (with a note
when a screen was asked for).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from relay_shell.linear_regex import LinearRegex
from relay_shell.sessions.output import Abandoned, Collected, OutputBuffer, RecvResult
from relay_shell.sessions.screen import MAX_RENDER_COLS, MAX_RENDER_ROWS, ScreenSnapshot, ScreenTracker

ScreenMode = Literal["auto", "always", "never"]
SCREEN_MODES: tuple[ScreenMode, ...] = ("auto", "always", "never")
SCREEN_SETTLE_S = 0.05


@dataclass(frozen=True)
class ReadRequest:
    """The arguments of one ``recv`` (validated by the registry)."""

    timeout_s: float
    max_bytes: int
    until: LinearRegex | None = None
    strip_ansi: bool = True
    screen: ScreenMode = "auto"
    quiet_s: float | None = None


async def read_session(
    output: OutputBuffer,
    tracker: ScreenTracker,
    request: ReadRequest,
    exit_status: Callable[[], int | None],
) -> RecvResult:
    """Read as the module docstring describes. A cancelled stream read consumes nothing."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + request.timeout_s
    try:
        async with asyncio.timeout_at(deadline):
            await output.lock.acquire()
    except TimeoutError:
        return _stream_result(output, Collected(timed_out=True), request, exit_status, 0, ())
    try:
        reader = _Reader(output, tracker, request, exit_status, started, deadline)
        return await reader.read()
    finally:
        output.lock.release()


class _Reader:
    def __init__(
        self,
        output: OutputBuffer,
        tracker: ScreenTracker,
        request: ReadRequest,
        exit_status: Callable[[], int | None],
        started: float,
        deadline: float,
    ) -> None:
        self.output, self.tracker, self.request = output, tracker, request
        self.exit_status = exit_status
        self.started, self.deadline = started, deadline
        self.notes: list[str] = []
        self.skipped = 0  # full-screen output a stream read skipped

    async def read(self) -> RecvResult:
        mode = self.request.screen
        if mode != "never" and not self.tracker.renderable:
            if mode == "always":
                self.notes.append(
                    f"screens are rendered up to {MAX_RENDER_COLS}x{MAX_RENDER_ROWS}: "
                    "this session is larger, so this read streams"
                )
            mode = "never"
        if mode == "always" or (mode == "auto" and self.tracker.fullscreen):
            return await self.screen_read(may_switch=mode == "auto")
        try:
            return await self.stream_read(auto=mode == "auto")
        except Abandoned:
            return await self.screen_read(may_switch=False)

    async def stream_read(self, *, auto: bool, may_abandon: bool = True) -> RecvResult:
        if auto:
            for start, end in self.tracker.fullscreen_regions:
                self.skipped += self.output.remove_range(start, end)
        collected = await self.output.collect(
            self.deadline,
            self.request.max_bytes,
            self.request.until,
            self.request.strip_ansi,
            quiet_s=self.request.quiet_s,
            abandon=(lambda: self.tracker.fullscreen) if auto and may_abandon else None,
        )
        return _stream_result(
            self.output, collected, self.request, self.exit_status, self.skipped, tuple(self.notes)
        )

    async def screen_read(self, *, may_switch: bool) -> RecvResult:
        output, until = self.output, self.request.until
        timed_out = not await self._settle()
        while True:
            if may_switch and not self.tracker.fullscreen:  # the program ended meanwhile
                return await self.stream_read(auto=True, may_abandon=False)
            offset = output.produced
            snapshot = await self.tracker.render()
            if snapshot is None:  # resized beyond the cap meanwhile
                return await self.stream_read(auto=False)
            matched = await until.search(snapshot.text) if until is not None else None
            if matched is not False or timed_out or output.finished:
                break
            if not await output.wait_output(offset, self.deadline):
                timed_out = True
                break
            await output.wait_quiet(self._quiet_s(), 0.0, self.deadline)
        consumed = output.discard_to(offset)
        return self._screen_result(snapshot, consumed, matched, timed_out and not matched)

    def _quiet_s(self) -> float:
        return self.request.quiet_s if self.request.quiet_s is not None else SCREEN_SETTLE_S

    async def _settle(self) -> bool:
        """Wait for output to show (when none is unread), then for a pause; False at the deadline."""
        output = self.output
        if self.request.quiet_s is not None:
            return await output.wait_quiet(self.request.quiet_s, self.started, self.deadline)
        if output.consumed_offset >= output.produced and not await output.wait_output(
            output.produced, self.deadline
        ):
            return False
        return await output.wait_quiet(SCREEN_SETTLE_S, 0.0, self.deadline)

    def _screen_result(
        self, snapshot: ScreenSnapshot, consumed: int, matched: bool | None, timed_out: bool
    ) -> RecvResult:
        rows = list(snapshot.rows)
        text = "\n".join(rows)
        if len(text.encode()) > self.request.max_bytes:
            while rows and len("\n".join(rows).encode()) > self.request.max_bytes:
                rows.pop()
            self.notes.append(
                f"screen rows {len(rows) + 1}-{len(snapshot.rows)} left out to fit max_bytes="
                f"{self.request.max_bytes}"
            )
            snapshot = ScreenSnapshot(
                tuple(rows), snapshot.cursor_row, snapshot.cursor_col, snapshot.title,
                snapshot.cols, snapshot.lines, snapshot.alternate,
            )  # fmt: skip
            text = "\n".join(rows)
        ended = self.output.drained
        return RecvResult(
            output=text,
            bytes=consumed + self.skipped,
            matched=matched,
            timed_out=timed_out,
            ended=ended,
            exit_code=self.exit_status() if ended else None,
            dropped_bytes=self.output.take_dropped(),
            screen=snapshot,
            notes=tuple(self.notes),
        )


def _stream_result(
    output: OutputBuffer,
    collected: Collected,
    request: ReadRequest,
    exit_status: Callable[[], int | None],
    skipped: int,
    notes: tuple[str, ...],
) -> RecvResult:
    ended = output.drained
    return RecvResult(
        output=collected.text,
        bytes=collected.raw_length + skipped,
        matched=collected.matched if request.until is not None else None,
        timed_out=collected.timed_out,
        ended=ended,
        exit_code=exit_status() if ended else None,
        dropped_bytes=output.take_dropped(),
        notes=notes,
    )
