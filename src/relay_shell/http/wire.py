"""The HTTP/1.1 protocol relay-shell serves with: uvicorn's h11 protocol, one socket write per turn.

uvicorn writes every piece of a response to the socket as soon as the application hands it
over: the status line and headers, then the body, then (for a chunked answer) its end, each
a ``send`` system call and, on loopback, a wake-up of the client for a response it cannot
use yet. :class:`CoalescingH11Protocol` is uvicorn's :class:`H11Protocol` with its
transport wrapped in a :class:`CoalescingTransport`: the bytes written during one turn of
the event loop are joined and written once, at the start of the next turn (``call_soon``),
or at once when the response is complete. A JSON answer (headers and body handed over in
the same step) leaves in one segment, as soon as its last byte is handed over.

Nothing else changes. The bytes and their order are exactly uvicorn's; a streamed answer
(server-sent events, progress notifications, the keepalive ping) still leaves as soon as
each part is handed over, one loop turn later at most; ``close`` and ``write_eof`` write
what is pending first, ``abort`` drops it (as the socket transport's own ``abort`` drops its
buffer). Flow control sees the pending bytes (:meth:`CoalescingTransport.get_write_buffer_size`)
and still pauses and resumes reading through the socket transport's own high-water marks.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


class CoalescingTransport(asyncio.Transport):
    """A transport that joins the writes of one event-loop turn into one write of ``inner``."""

    def __init__(self, inner: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._inner = inner
        self._loop = loop
        self._pending: list[bytes] = []
        self._flush_handle: asyncio.Handle | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data``; the turn's queued bytes are written together when the loop turns."""
        if not data:
            return
        self._pending.append(bytes(data))
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what is queued now (one write of the socket transport)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        self._inner.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def write_eof(self) -> None:
        self.flush()
        self._inner.write_eof()

    def can_write_eof(self) -> bool:
        return self._inner.can_write_eof()

    def close(self) -> None:
        """Write what is queued, then close (the socket transport sends its buffer before closing)."""
        self.flush()
        self._inner.close()

    def abort(self) -> None:
        """Drop what is queued and abort the connection at once."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._pending = []
        self._inner.abort()

    def is_closing(self) -> bool:
        return self._inner.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._inner.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._inner.pause_reading()

    def resume_reading(self) -> None:
        self._inner.resume_reading()

    def is_reading(self) -> bool:
        return self._inner.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.flush()
        self._inner.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._inner.get_protocol()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._inner.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._inner.get_write_buffer_size() + sum(len(data) for data in self._pending)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._inner.get_write_buffer_limits()


class CoalescingH11Protocol(H11Protocol):
    """uvicorn's h11 protocol writing through a :class:`CoalescingTransport`.

    A response that is complete is written at once, in the same step (it never waits for the
    loop to turn behind other tasks): only the parts of an answer still being streamed wait
    for the end of the turn.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._coalescing = CoalescingTransport(transport, self.loop)
        super().connection_made(self._coalescing)

    def on_response_complete(self) -> None:
        self._coalescing.flush()
        super().on_response_complete()
