"""The stdio transport's input side, bounded: no line larger than the cap is ever parsed.

The SDK's stdio transport reads a whole line, however long, and parses it. relay-shell
hands it its own line reader instead: a line longer than :func:`line_limit` (the input
cap ``RELAY_SHELL_MAX_INPUT_BYTES`` times four, for JSON escaping and several text
arguments, plus 64 KiB of envelope) is read past in bounded chunks and never parsed. In its
place the reader yields a small notification naming the request id (when the line's first
bytes show it at the top level) and the size; :class:`RefusingReadStream` turns that into a
JSON-RPC error for that id (``-32600``, invalid request), so the client is answered and
the server never held the line.

While serving, fd 0 points at ``/dev/null`` (children and stray reads see EOF) and the wire
is read from a private duplicate, as the SDK does for its own reader.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import BinaryIO, Self

import anyio
from mcp.shared._stream_protocols import ReadStream, WriteStream
from mcp.shared.message import SessionMessage
from mcp_types import INVALID_REQUEST, ErrorData, JSONRPCError, JSONRPCNotification

log = logging.getLogger("relay_shell.stdio")

ENVELOPE_BYTES = 64 * 1024
ESCAPING_FACTOR = 4
OVERSIZED_METHOD = "notifications/relay-shell/oversized-line"
SKIP_CHUNK = 1024 * 1024
ID_WINDOW = 4096

# The request id, when it is a key of the top-level object before any nested value starts.
_TOP_LEVEL_ID = re.compile(rb'^\s*\{[^{}\[\]]*?"id"\s*:\s*(-?\d{1,18}|"(?:[^"\\]|\\.){0,256}")')


def line_limit(max_input_bytes: int) -> int:
    """The longest stdio line (bytes, not counting its newline) the server will parse."""
    return max_input_bytes * ESCAPING_FACTOR + ENVELOPE_BYTES


class BoundedLineReader:
    """Text lines from a binary stream, each at most ``limit`` bytes plus its newline; longer
    ones are replaced.

    A longer line is consumed in chunks of :data:`SKIP_CHUNK` bytes up to its newline and
    reported by a :data:`OVERSIZED_METHOD` notification line instead. It offers what
    ``anyio.wrap_file`` uses of a text file (``readline``, ``close``).
    """

    def __init__(self, raw: BinaryIO, limit: int) -> None:
        self._raw = raw
        self._limit = limit

    def close(self) -> None:
        """Nothing to release: the descriptor is not ours to close (a thread may block on it)."""

    def readline(self) -> str:
        """The next line ("" at end of input), or the notice standing for an oversized one."""
        line = self._raw.readline(self._limit + 1)
        if len(line) <= self._limit or line.endswith(b"\n"):
            return line.decode("utf-8", errors="replace")
        head = line[:ID_WINDOW]
        total = len(line)
        while True:
            chunk = self._raw.readline(SKIP_CHUNK)
            total += len(chunk)
            if not chunk or chunk.endswith(b"\n"):
                break
        return oversized_notice(head, total, self._limit)


def oversized_notice(head: bytes, size: int, limit: int) -> str:
    """The notification line that stands for a refused line of ``size`` bytes."""
    found = _TOP_LEVEL_ID.match(head)
    request_id: object = None
    if found is not None:
        try:
            request_id = json.loads(found.group(1))
        except ValueError:
            request_id = None
    params = {"id": request_id, "bytes": size, "limit": limit}
    return json.dumps({"jsonrpc": "2.0", "method": OVERSIZED_METHOD, "params": params}) + "\n"


@contextmanager
def claimed_stdin(limit: int) -> Iterator[anyio.AsyncFile[str]]:
    """fd 0 read through a :class:`BoundedLineReader`; fd 0 itself points at /dev/null meanwhile."""
    private = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(devnull, 0)
    finally:
        os.close(devnull)
    # closefd=False: a worker thread may still block on this descriptor after serving ends.
    raw = os.fdopen(private, "rb", closefd=False)
    try:
        yield anyio.wrap_file(BoundedLineReader(raw, limit))  # type: ignore[arg-type]
    finally:
        os.dup2(private, 0)


class RefusingReadStream:
    """The SDK's read stream with oversized-line notices answered here and not passed on."""

    def __init__(
        self, inner: ReadStream[SessionMessage | Exception], write: WriteStream[SessionMessage]
    ) -> None:
        self._inner = inner
        self._write = write

    @property
    def last_context(self) -> object:
        """The sender's context of the last item, as the dispatcher reads it from the inner stream."""
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        while True:
            item = await self._inner.receive()
            if not (
                isinstance(item, SessionMessage)
                and isinstance(item.message, JSONRPCNotification)
                and item.message.method == OVERSIZED_METHOD
            ):
                return item
            await self._refuse(item.message.params or {})

    async def _refuse(self, params: dict[str, object]) -> None:
        request_id = params.get("id")
        size, limit = params.get("bytes"), params.get("limit")
        message = (
            f"request of {size} bytes refused: over the stdio line limit of {limit} bytes "
            "(four times RELAY_SHELL_MAX_INPUT_BYTES plus 64 KiB); send smaller arguments"
        )
        log.warning("%s (request id %r)", message, request_id)
        if isinstance(request_id, int | str):
            error = JSONRPCError(
                jsonrpc="2.0", id=request_id, error=ErrorData(code=INVALID_REQUEST, message=message)
            )
            await self._write.send(SessionMessage(error))

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        await self.aclose()
        return None
