"""The output of one terminal session: a bounded buffer that one reader fills and ``recv`` drains.

:class:`OutputBuffer` keeps at most ``capacity`` raw bytes: on overflow the oldest are
dropped and counted, never leaving the tail of a cut UTF-8 character at the head. A take
decodes what it consumes (optionally stripping escape sequences) and holds back an
incomplete character or escape sequence for the next one. Takes wait on an event the
reader sets, never by polling, and a cancelled take consumes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from relay_shell.linear_regex import LinearRegex, StreamSearch
from relay_shell.sessions.terminal import decode_chunk, leading_continuation_bytes


@dataclass(frozen=True)
class RecvResult:
    """What one ``recv`` consumed.

    ``bytes`` counts raw bytes taken from the buffer. ``matched`` is ``None`` without
    ``until``. ``timed_out`` means the wait ended by the timeout (nothing arrived, or
    ``until`` never matched); with neither ``matched`` nor ``timed_out`` nor ``ended``, the
    ``max_bytes`` cap was reached. ``ended`` (with ``exit_code``) once the child has exited
    and everything was read. ``dropped_bytes``: lost to ring-buffer overflow since the last recv.
    """

    output: str
    bytes: int
    matched: bool | None
    timed_out: bool
    ended: bool
    exit_code: int | None
    dropped_bytes: int


@dataclass
class _Collected:
    raw: list[bytes] = field(default_factory=list)
    raw_length: int = 0
    parts: list[str] = field(default_factory=list)
    matched: bool = False


class OutputBuffer:
    """A session's unread output. ``produced`` and ``dropped`` count raw bytes since the start."""

    def __init__(self, capacity: int) -> None:
        self.produced = 0
        self.dropped = 0
        self.finished = False  # the reader saw the end of the output
        self._capacity = capacity
        self._buffer = bytearray()
        self._carry = b""  # consumed but not yet returned: an incomplete character or escape
        self._gap = False  # bytes were dropped since the last take: the carry is stale
        self._after_newline = False  # stripped output so far ends with "\n" (a "\r" next is a no-op)
        self._dropped_since_take = 0
        self._changed = asyncio.Event()
        self._lock = asyncio.Lock()

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned, a held-back incomplete sequence included."""
        return len(self._buffer) + len(self._carry)

    @property
    def drained(self) -> bool:
        """The output is over and every byte of it has been returned."""
        return self.finished and not self._buffer and not self._carry

    def append(self, chunk: bytes) -> None:
        """Add a chunk from the reader, dropping the oldest bytes beyond ``capacity``."""
        self.produced += len(chunk)
        self._buffer += chunk
        excess = len(self._buffer) - self._capacity
        if excess > 0:
            del self._buffer[:excess]  # O(1): bytearray advances its start
            # Do not leave the tail of a cut character at the head of the buffer.
            partial = leading_continuation_bytes(self._buffer)
            del self._buffer[:partial]
            self.dropped += excess + partial
            self._dropped_since_take += excess + partial
            self._gap = True
        self._changed.set()

    def finish(self) -> None:
        """Mark the output as over and wake a waiting take. Idempotent."""
        self.finished = True
        self._changed.set()

    async def take(
        self,
        timeout_s: float,
        max_bytes: int,
        until: LinearRegex | None,
        strip: bool,
        exit_status: Callable[[], int | None],
    ) -> RecvResult:
        """Consume output as ``SessionRegistry.recv`` describes; takes run one at a time.

        ``exit_status`` is read once the output is drained, for the result's ``exit_code``.
        """
        collected = _Collected()
        carry_before: bytes | None = None  # set once this call holds the lock
        timed_out = False
        try:
            async with asyncio.timeout(timeout_s), self._lock:
                carry_before = self._carry
                await self._fill(collected, max_bytes, until, strip)
        except TimeoutError:
            timed_out = True
        except BaseException:
            if carry_before is not None:  # cancelled mid-take: put everything back
                self._buffer[:0] = b"".join(collected.raw)
                self._carry = carry_before
            raise
        ended = self.drained
        dropped, self._dropped_since_take = self._dropped_since_take, 0
        return RecvResult(
            output="".join(collected.parts),
            bytes=collected.raw_length,
            matched=collected.matched if until is not None else None,
            timed_out=timed_out and not collected.matched,
            ended=ended,
            exit_code=exit_status() if ended else None,
            dropped_bytes=dropped,
        )

    async def _fill(
        self, collected: _Collected, max_bytes: int, until: LinearRegex | None, strip: bool
    ) -> None:
        """Take output until done; waits on the reader's event between takes.

        ``until`` is searched over each new piece of text plus a bounded overlap before it
        (:class:`StreamSearch`), never over everything collected again.
        """
        search = StreamSearch(until) if until is not None else None
        while True:
            text = self._take_available(collected, max_bytes, strip)
            if search is not None and await search.feed(text):
                collected.matched = True
                return
            if self.drained or collected.raw_length >= max_bytes:
                return
            if until is None and any(collected.parts):
                return
            self._changed.clear()
            await self._changed.wait()

    def _take_available(self, collected: _Collected, max_bytes: int, strip: bool) -> str:
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
