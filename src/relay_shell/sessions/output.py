"""The output of one terminal session: a bounded buffer that one reader fills and ``recv`` drains.

:class:`OutputBuffer` keeps at most ``capacity`` raw bytes: on overflow the oldest are
dropped and counted, never leaving the tail of a cut UTF-8 character at the head. A take
decodes what it consumes (optionally stripping escape sequences) and holds back an
incomplete character or escape sequence for the next one. Takes wait on an event the
reader sets, never by polling, and a cancelled take consumes nothing.

Offsets are counted in raw bytes since the session started: the unread output is
``[consumed_offset, produced)``. A screen read consumes (discards) the stream output it
supersedes with :meth:`OutputBuffer.discard_to`; :meth:`OutputBuffer.remove_range` cuts
out a stretch drawn on the alternate screen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from relay_shell.linear_regex import LinearRegex, StreamSearch
from relay_shell.sessions.screen import ScreenSnapshot
from relay_shell.sessions.terminal import decode_chunk, leading_continuation_bytes


@dataclass(frozen=True)
class RecvResult:
    """What one ``recv`` consumed.

    ``bytes`` counts raw bytes taken from the buffer. ``matched`` is ``None`` without
    ``until``. ``timed_out`` means the wait ended by the timeout (nothing arrived, or
    ``until`` never matched); with neither ``matched`` nor ``timed_out`` nor ``ended``, the
    ``max_bytes`` cap was reached (or, with ``quiet``, the output paused). ``ended`` (with
    ``exit_code``) once the child has exited and everything was read. ``dropped_bytes``: lost
    to ring-buffer overflow since the last recv. ``screen`` is set for a screen read (then
    ``output`` is its rows joined), ``None`` for a stream read; ``notes`` explain a choice
    the caller did not make (a screen that could not be rendered, rows left out).
    """

    output: str
    bytes: int
    matched: bool | None
    timed_out: bool
    ended: bool
    exit_code: int | None
    dropped_bytes: int
    screen: ScreenSnapshot | None = None
    notes: tuple[str, ...] = ()


@dataclass
class Collected:
    """Output taken by one stream read (see :meth:`OutputBuffer.collect`)."""

    raw: list[bytes] = field(default_factory=list)
    raw_length: int = 0
    parts: list[str] = field(default_factory=list)
    matched: bool = False
    timed_out: bool = False

    @property
    def text(self) -> str:
        return "".join(self.parts)


class Abandoned(Exception):
    """A stream read gave up (its ``abandon`` predicate turned true); it consumed nothing."""


class OutputBuffer:
    """A session's unread output. ``produced`` and ``dropped`` count raw bytes since the start."""

    def __init__(self, capacity: int) -> None:
        self.produced = 0
        self.dropped = 0
        self.finished = False  # the reader saw the end of the output
        self.last_output_at: float | None = None  # loop time of the last append
        self.lock = asyncio.Lock()  # held by the one read in progress
        self._capacity = capacity
        self._buffer = bytearray()
        self._carry = b""  # consumed but not yet returned: an incomplete character or escape
        self._gap = False  # bytes were dropped since the last take: the carry is stale
        self._after_newline = False  # stripped output so far ends with "\n" (a "\r" next is a no-op)
        self._dropped_since_take = 0
        self._changed = asyncio.Event()

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned, a held-back incomplete sequence included."""
        return len(self._buffer) + len(self._carry)

    @property
    def consumed_offset(self) -> int:
        """Stream offset of the first unread byte (``produced`` when everything was read)."""
        return self.produced - len(self._buffer)

    @property
    def drained(self) -> bool:
        """The output is over and every byte of it has been returned."""
        return self.finished and not self._buffer and not self._carry

    def append(self, chunk: bytes) -> None:
        """Add a chunk from the reader, dropping the oldest bytes beyond ``capacity``."""
        self.produced += len(chunk)
        self.last_output_at = asyncio.get_running_loop().time()
        if len(chunk) >= self._capacity:  # the chunk alone fills the buffer: copy only what is kept
            excess = len(self._buffer) + len(chunk) - self._capacity
            self._buffer[:] = memoryview(chunk)[-self._capacity :]
        else:
            self._buffer += chunk
            excess = len(self._buffer) - self._capacity
            if excess > 0:
                del self._buffer[:excess]  # O(1): bytearray advances its start
        if excess > 0:
            # Do not leave the tail of a cut character at the head of the buffer.
            partial = leading_continuation_bytes(self._buffer)
            del self._buffer[:partial]
            self.dropped += excess + partial
            self._dropped_since_take += excess + partial
            self._gap = True
        self._changed.set()

    def finish(self) -> None:
        """Mark the output as over and wake a waiting read. Idempotent."""
        self.finished = True
        self._changed.set()

    def take_dropped(self) -> int:
        """Bytes lost to overflow since the last call (reported once per recv)."""
        dropped, self._dropped_since_take = self._dropped_since_take, 0
        return dropped

    def discard_to(self, offset: int) -> int:
        """Consume, without returning, the unread bytes before stream offset ``offset``.

        A held-back incomplete sequence is dropped with them. Returns the bytes discarded.
        """
        count = max(0, min(offset - self.consumed_offset, len(self._buffer)))
        if count:
            del self._buffer[:count]
        self._carry, self._after_newline = b"", False
        return count

    def remove_range(self, start: int, end: int) -> int:
        """Cut the unread bytes in stream offsets ``[start, end)`` out of the buffer; returns how many."""
        head = self.consumed_offset
        first, last = max(start, head) - head, min(end, self.produced) - head
        if last <= first:
            return 0
        del self._buffer[first:last]
        return last - first

    async def wait_output(self, since: int, deadline: float) -> bool:
        """Wait (on the reader's event) until more than ``since`` bytes were produced or the
        output ended; False when ``deadline`` (loop time) came first."""
        while self.produced <= since and not self.finished:
            self._changed.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._changed.wait()
            except TimeoutError:
                return False
        return True

    async def wait_quiet(self, quiet_s: float, since: float, deadline: float) -> bool:
        """Wait until no output arrived for ``quiet_s`` (counting from ``since`` at the
        earliest) or the output ended; False when ``deadline`` came first."""
        loop = asyncio.get_running_loop()
        while not self.finished:
            quiet_from = max(since, self.last_output_at or since)
            if loop.time() >= quiet_from + quiet_s:
                return True
            if loop.time() >= deadline:
                return False
            produced = self.produced
            self._changed.clear()
            try:
                async with asyncio.timeout_at(min(deadline, quiet_from + quiet_s)):
                    while self.produced == produced and not self.finished:
                        await self._changed.wait()
                        self._changed.clear()
            except TimeoutError:
                pass
        return True

    async def collect(
        self,
        deadline: float,
        max_bytes: int,
        until: LinearRegex | None,
        strip: bool,
        *,
        quiet_s: float | None = None,
        abandon: Callable[[], bool] | None = None,
    ) -> Collected:
        """Consume output as ``SessionRegistry.recv`` describes (the caller holds :attr:`lock`).

        Without ``until`` and ``quiet_s``: what is buffered, else the first output before
        ``deadline``. ``quiet_s`` keeps collecting until the output pauses that long. ``until``
        is searched over each new piece of text plus a bounded overlap before it
        (:class:`StreamSearch`), never over everything collected again.

        Raises:
            Abandoned: ``abandon()`` turned true after a take; everything was put back.
        """
        collected = Collected()
        carry_before, after_newline_before = self._carry, self._after_newline
        started = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout_at(deadline):
                await self._fill(collected, max_bytes, until, strip, quiet_s, started, abandon)
        except TimeoutError:
            collected.timed_out = not collected.matched
        except BaseException:  # cancelled or abandoned mid-read: put everything back
            self._buffer[:0] = b"".join(collected.raw)
            self._carry, self._after_newline = carry_before, after_newline_before
            raise
        return collected

    async def take(
        self,
        timeout_s: float,
        max_bytes: int,
        until: LinearRegex | None,
        strip: bool,
        exit_status: Callable[[], int | None],
    ) -> RecvResult:
        """A stream read of this buffer alone (a job's stdout or stderr): :meth:`collect` under
        :attr:`lock`; ``exit_status`` is read once the output is drained."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        try:
            async with asyncio.timeout_at(deadline), self.lock:
                collected = await self.collect(deadline, max_bytes, until, strip)
        except TimeoutError:  # the deadline passed while another read held the lock
            collected = Collected(timed_out=True)
        ended = self.drained
        return RecvResult(
            output=collected.text,
            bytes=collected.raw_length,
            matched=collected.matched if until is not None else None,
            timed_out=collected.timed_out,
            ended=ended,
            exit_code=exit_status() if ended else None,
            dropped_bytes=self.take_dropped(),
        )

    async def _fill(
        self,
        collected: Collected,
        max_bytes: int,
        until: LinearRegex | None,
        strip: bool,
        quiet_s: float | None,
        started: float,
        abandon: Callable[[], bool] | None,
    ) -> None:
        """Take output until done; waits on the reader's event between takes."""
        search = StreamSearch(until) if until is not None else None
        while True:
            text = self._take_available(collected, max_bytes, strip)
            if abandon is not None and abandon():
                raise Abandoned
            if search is not None and await search.feed(text):
                collected.matched = True
                return
            if self.drained or collected.raw_length >= max_bytes:
                return
            if quiet_s is not None:
                if await self._quiet_or_more(quiet_s, started):
                    return
                continue
            if until is None and any(collected.parts):
                return
            self._changed.clear()
            await self._changed.wait()

    async def _quiet_or_more(self, quiet_s: float, started: float) -> bool:
        """True once the output has paused ``quiet_s``; False as soon as more arrived."""
        loop = asyncio.get_running_loop()
        produced = self.produced
        quiet_until = max(started, self.last_output_at or started) + quiet_s
        self._changed.clear()
        if self._buffer or self.finished:
            return False
        try:
            async with asyncio.timeout_at(quiet_until):
                while self.produced == produced and not self.finished:
                    await self._changed.wait()
                    self._changed.clear()
        except TimeoutError:
            return loop.time() >= quiet_until
        return False

    def _take_available(self, collected: Collected, max_bytes: int, strip: bool) -> str:
        """Move what the buffer holds (up to ``max_bytes`` in all) into ``collected``; returns the new text."""
        if self._gap:
            self._carry, self._gap = b"", False
        room = max_bytes - collected.raw_length
        chunk = b""
        if room > 0 and self._buffer:
            chunk = bytes(self._buffer[:room])
            del self._buffer[:room]
            collected.raw.append(chunk)
            collected.raw_length += len(chunk)
        final = self.finished and not self._buffer
        if chunk or (final and self._carry):
            text, self._carry = decode_chunk(self._carry, chunk, strip=strip, final=final)
            if strip:
                if self._after_newline:
                    text = text.lstrip("\r")
                if text:
                    self._after_newline = text.endswith("\n")
            collected.parts.append(text)
            return text
        return ""
