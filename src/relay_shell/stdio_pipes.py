"""The stdio wire read and written by the event loop itself, with no worker thread per message.

The SDK's stdio transport hands every line to and from a worker thread (a blocking
``readline`` and ``write``/``flush``); that hand-off is a large part of what a no-op call
costs. When fd 0 and fd 1 are pipes or sockets (what an MCP client starts the server
with), :func:`pipe_streams` serves them from the event loop instead: private close-on-exec
descriptors, made non-blocking, read through ``loop.connect_read_pipe`` and written through
``loop.connect_write_pipe`` (a stream socket as a connection). A pipe is opened anew
through ``/proc/self/fd``, so its non-blocking flag is the server's own and the open file
the parent and its other children share stays blocking, however the server ends; a socket
is duplicated (its flag is shared, and restored on an orderly exit). Everything else of the
stdio contract holds:

- no line longer than the limit is ever held whole (:class:`LineSplitter` keeps at most
  ``limit`` bytes of a line, then only counts it) and an oversized line becomes the same
  notice :class:`relay_shell.stdio.BoundedLineReader` yields;
- lines waiting for the server are bounded (:data:`PENDING_HIGH` bytes, :data:`PENDING_LINES`
  lines; reading pauses above either),
  and so are answers waiting for the client (:data:`ANSWERS_HIGH`; the writer waits for
  the transport to drain). While answers wait, no request is handed to the server, so a
  client that does not read cannot make it start handlers without bound;
- while serving, fd 0 points at ``/dev/null`` and fd 1 at stderr, so children and stray
  output never touch the wire; both are restored (and blocking again) on exit;
- answers go out in order; at the end the writer waits (at most :data:`FLUSH_S`) until the
  last one is written;
- a client that closes its end of stdout ends serving like end of input (over a socket, at
  the next answer, which fails): answers that can no longer be delivered are dropped,
  nothing raises, the server exits normally.

:func:`pipes_usable` says when this applies; otherwise ``relay_shell.stdio`` keeps the
threaded transport (a tty, a regular file, ``/dev/null``, or a pipe shared with stderr).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
import stat
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress

import anyio
import anyio.lowlevel
import mcp_types
from mcp.server.stdio import stdio_server
from mcp.shared._context_streams import ContextReceiveStream, ContextSendStream, create_context_streams
from mcp.shared.message import SessionMessage

from relay_shell.stdio import ID_WINDOW, claimed_stdin, oversized_notice

PENDING_HIGH = 256 * 1024
"""Bytes of complete lines the server has not taken yet above which reading pauses."""
PENDING_LINES = 1024
"""Complete lines the server has not taken yet above which reading pauses (however short)."""
ANSWERS_HIGH = 1024 * 1024
"""Bytes of answers the client has not read yet (beyond the pipe's own buffer) above which the
writer waits and no request is handed to the server: room for a client that sends a batch
of thousands of small requests before reading any answer."""
FLUSH_S = 5.0
"""How long the end of serving waits for the last answers to reach a client that reads slowly."""

Streams = tuple[ContextReceiveStream[SessionMessage | Exception], ContextSendStream[SessionMessage]]


class LineSplitter:
    """Bytes in, complete lines out; no line's content over ``limit`` bytes is kept.

    A line whose content (newline not counted) is at most ``limit`` bytes comes out as
    read, newline included; a longer one is counted, not kept (only its first
    :data:`~relay_shell.stdio.ID_WINDOW` bytes, for the request id), and comes out as the
    oversized-line notice, sized with its newline, as the threaded reader reports it.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._partial = bytearray()
        self._head: bytes | None = None  # set while reading past an oversized line
        self._skipped = 0

    def feed(self, data: bytes) -> list[bytes]:
        """The lines ``data`` completes, in order (empty while a line is still open)."""
        lines: list[bytes] = []
        start = 0
        while (newline := data.find(b"\n", start)) >= 0:
            lines.append(self._complete(data[start : newline + 1]))
            start = newline + 1
        if start < len(data):
            self._hold(data[start:])
        return lines

    def finish(self) -> list[bytes]:
        """At end of input: the last line, which had no newline, if there is one."""
        if self._head is not None:
            notice = self._notice(self._head, self._skipped)
            self._head, self._skipped = None, 0
            return [notice]
        if not self._partial:
            return []
        last = bytes(self._partial)
        self._partial.clear()
        return [last]

    def _hold(self, part: bytes) -> None:
        if self._head is not None:
            self._skipped += len(part)
        elif len(self._partial) + len(part) > self._limit:
            self._head = bytes(self._partial[:ID_WINDOW]) + part[: max(0, ID_WINDOW - len(self._partial))]
            self._skipped = len(self._partial) + len(part)
            self._partial.clear()
        else:
            self._partial += part

    def _complete(self, end: bytes) -> bytes:
        if self._head is not None:
            notice = self._notice(self._head, self._skipped + len(end))
            self._head, self._skipped = None, 0
            return notice
        size = len(self._partial) + len(end)
        if size - 1 > self._limit:  # never joined: only its head is kept
            head = bytes(self._partial[:ID_WINDOW]) + end[: max(0, ID_WINDOW - len(self._partial))]
            self._partial.clear()
            return self._notice(head, size)
        if not self._partial:
            return end
        self._partial += end
        line = bytes(self._partial)
        self._partial.clear()
        return line

    def _notice(self, head: bytes, size: int) -> bytes:
        return oversized_notice(head, size, self._limit).encode()


class PipeLines(asyncio.Protocol):
    """The read side: lines split as they arrive, handed to :meth:`readline` in order."""

    def __init__(self, limit: int) -> None:
        self._splitter = LineSplitter(limit)
        self._lines: deque[bytes] = deque()
        self._pending = 0
        self._ended = False
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._transport: asyncio.ReadTransport | None = None
        self.on_end: Callable[[], None] = lambda: None
        """Called when input ends (or reading stops), for whoever waits on something else."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.ReadTransport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        lines = self._splitter.feed(data)
        if not lines:
            return
        self._lines.extend(lines)
        self._pending += sum(map(len, lines))
        crowded = self._pending > PENDING_HIGH or len(self._lines) > PENDING_LINES
        if crowded and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        self._lines.extend(self._splitter.finish())
        self._end()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()

    @property
    def ended(self) -> bool:
        """End of input was seen (or reading was stopped): no line will be added any more."""
        return self._ended

    def stop(self) -> None:
        """No more lines: what is still waiting is dropped and reading ends."""
        self._lines.clear()
        if self._transport is not None:
            self._transport.close()
        self._end()

    async def readline(self) -> str | None:
        """The next line, decoded (invalid UTF-8 replaced), or None at the end of input."""
        while not self._lines:
            if self._ended:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        line = self._lines.popleft()
        self._pending -= len(line)
        if self._paused and not self._lines and self._transport is not None and not self._ended:
            self._paused = False
            self._transport.resume_reading()
        return line.decode("utf-8", errors="replace")

    def _end(self) -> None:
        self._ended = True
        self._wake()
        self.on_end()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class PipeOut(asyncio.Protocol):
    """The write side: each answer handed to the transport at once (one ``write`` syscall
    when nothing is queued), the writer held while the transport is above its limits."""

    def __init__(self, on_lost: Callable[[], None]) -> None:
        self._on_lost = on_lost
        self._transport: asyncio.WriteTransport | None = None
        self._paused = False
        self._waiters: set[asyncio.Future[None]] = set()
        self._closing = False
        self._aborted = False
        self.lost = False
        self.flush_by: float | None = None
        """When set (``anyio.current_time()`` scale), :meth:`close` waits no later than this."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        self._transport = transport
        transport.set_write_buffer_limits(high=ANSWERS_HIGH)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._wake()
        self._on_lost()

    def data_received(self, data: bytes) -> None:
        """Bytes a client wrote into its stdout socket: not part of the protocol, discarded."""

    def eof_received(self) -> bool:
        """The client shut down its sending side of the stdout socket: answers still go out."""
        return True

    async def write(self, data: bytes) -> None:
        """Send ``data``; dropped once the client has closed its end (nothing can reach it)."""
        if self.lost or self._transport is None:
            return
        self._transport.write(data)
        await self.writable()

    async def writable(self, until: Callable[[], bool] = lambda: False) -> None:
        """Return once the transport is below its limits again, the client is gone, or
        ``until()`` holds (checked again on :meth:`nudge`). The reader waits here too: a client
        that does not read its answers is not read either, so it cannot make the server hold
        more than the answers already waiting for it."""
        while self._paused and not self.lost and not until():
            await self._change()

    def nudge(self) -> None:
        """Wake the waiters of :meth:`writable` to check their condition again."""
        self._wake()

    async def close(self) -> None:
        """Flush what is queued (at most :data:`FLUSH_S`, or until :attr:`flush_by`), then close."""
        if self._transport is None or self._closing:
            return
        self._closing = True
        if not self.lost:
            self._transport.close()  # writes what is queued first, then reports connection_lost
            flush_by = anyio.current_time() + FLUSH_S if self.flush_by is None else self.flush_by
            with anyio.CancelScope(deadline=flush_by):
                while not self.lost:
                    await self._change()
        self.abort()

    def abort(self) -> None:
        """Close now, dropping what is queued (the descriptor is no longer polled on return)."""
        if self._transport is not None and not self.lost and not self._aborted:
            self._aborted = True
            self._transport.abort()

    async def _change(self) -> None:
        """Until the transport resumes or is lost (any number of tasks may wait)."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await waiter
        finally:
            self._waiters.discard(waiter)

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)


def pipes_usable() -> bool:
    """fds 0 and 1 can be served from the event loop: the process's own stdin and stdout,
    each a pipe or a socket, neither the other one nor the same file as stderr (making a
    shared pipe non-blocking would surprise its other writer), on an asyncio loop."""
    try:
        asyncio.get_running_loop()
        if sys.stdin is None or sys.stdout is None or sys.stdin.fileno() != 0 or sys.stdout.fileno() != 1:
            return False
        read_side, write_side = os.fstat(0), os.fstat(1)
    except (RuntimeError, OSError, ValueError, AttributeError):
        return False
    if not (_is_pipe(read_side) and _is_pipe(write_side)) or _same(read_side, write_side):
        return False
    try:
        error_side = os.fstat(2)
    except OSError:
        return True
    return not (_same(error_side, write_side) or _same(error_side, read_side))


@asynccontextmanager
async def stdio_streams(limit: int) -> AsyncIterator[Streams]:
    """The server's streams over stdio: from the event loop when fds 0 and 1 are pipes or
    sockets (:func:`pipe_streams`), else the SDK's threaded transport reading through
    :func:`relay_shell.stdio.claimed_stdin`. Either way no line over ``limit`` is parsed."""
    claimed = claim_pipes()
    if claimed is not None:
        async with pipe_streams(limit, claimed) as streams:
            yield streams
        return
    with claimed_stdin(limit) as stdin:
        async with stdio_server(stdin=stdin) as (read_stream, write_stream):
            yield read_stream, write_stream


def claim_pipes() -> tuple[int, int] | None:
    """Private duplicates of fds 0 and 1 when :func:`pipes_usable`; fd 0 then reads
    ``/dev/null`` and fd 1 writes to stderr. None (nothing changed) otherwise."""
    if not pipes_usable():
        return None
    try:
        private_in = _claim(0, os.open(os.devnull, os.O_RDONLY))
    except OSError:
        return None
    try:
        private_out = _claim(1, _stderr_or_null())
    except OSError:
        _release(0, private_in)
        return None
    return private_in, private_out


@asynccontextmanager
async def pipe_streams(limit: int, claimed: tuple[int, int]) -> AsyncIterator[Streams]:
    """The server's read and write streams over the ``claimed`` duplicates of fds 0 and 1
    (:func:`claim_pipes`), served by the event loop; both fds are restored on exit."""
    private_in, private_out = claimed
    loop = asyncio.get_running_loop()
    lines = PipeLines(limit)
    out = PipeOut(lines.stop)
    lines.on_end = out.nudge
    try:
        await loop.connect_read_pipe(lambda: lines, _Descriptor(private_in))
        await _connect_out(loop, out, private_out)
        async with _serving(lines, out) as streams:
            yield streams
        await out.close()
    finally:
        lines.stop()
        out.abort()
        _release(1, private_out)
        _release(0, private_in)


async def _connect_out(loop: asyncio.AbstractEventLoop, out: PipeOut, private_out: int) -> None:
    """The write transport over ``private_out``. A pipe's transport takes readability as the
    reader having gone, which for a stream socket only means the client wrote into it or
    shut down its own sending side; a stream socket is therefore served as a connection
    (what it receives is discarded, its end of input ignored, a failed write ends it)."""
    if stat.S_ISSOCK(os.fstat(private_out).st_mode):
        duplicate = os.dup(private_out)
        try:
            connection = socket.socket(fileno=duplicate)
        except OSError:
            os.close(duplicate)
            raise
        if connection.type == socket.SOCK_STREAM:
            await loop.connect_accepted_socket(lambda: out, connection)
            return
        connection.detach()
        os.close(duplicate)
    await loop.connect_write_pipe(lambda: out, _Descriptor(private_out))


@asynccontextmanager
async def _serving(lines: PipeLines, out: PipeOut) -> AsyncIterator[Streams]:
    """Lines parsed into messages for the server; its messages written as lines, in order."""
    read_writer, read_stream = create_context_streams[SessionMessage | Exception](0)
    write_stream, write_reader = create_context_streams[SessionMessage](0)

    async def read() -> None:
        try:
            async with read_writer:
                while (line := await lines.readline()) is not None:
                    # A client that does not read its answers is not read either, until its input ends.
                    await out.writable(until=lambda: lines.ended)
                    try:
                        message = mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                    except Exception as exc:  # the server answers a malformed line; serving goes on
                        await read_writer.send(exc)
                        continue
                    await read_writer.send(SessionMessage(message))
        except anyio.ClosedResourceError:
            await anyio.lowlevel.checkpoint()

    async def write() -> None:
        try:
            async with write_reader:
                async for item in write_reader:
                    text = item.message.model_dump_json(by_alias=True, exclude_unset=True)
                    await out.write(text.encode() + b"\n")
        except anyio.ClosedResourceError:
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(read)
        tasks.start_soon(write)
        try:
            yield read_stream, write_stream
        finally:
            lines.stop()  # the server is done: no more input
            # The writer still sends what it has, until FLUSH_S from now in all: a client that
            # does not read must not hold the exit (what is left then is dropped).
            out.flush_by = anyio.current_time() + FLUSH_S
            tasks.cancel_scope.deadline = out.flush_by


class _Descriptor:
    """A descriptor as the pipe transports take it; closing it is left to :func:`_release`."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        """The transport is done with it; the descriptor is restored and closed later."""


def _is_pipe(status: os.stat_result) -> bool:
    return stat.S_ISFIFO(status.st_mode) or stat.S_ISSOCK(status.st_mode)


def _same(first: os.stat_result, second: os.stat_result) -> bool:
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def _stderr_or_null() -> int:
    try:
        return os.dup(2)
    except OSError:
        return os.open(os.devnull, os.O_WRONLY)


def _claim(fd: int, diversion: int) -> int:
    """A private close-on-exec descriptor of the wire on ``fd`` (above 2); ``fd`` then points at
    ``diversion``, which is closed either way."""
    try:
        private = _private_wire(fd)
        try:
            os.dup2(diversion, fd)
        except OSError:
            os.close(private)
            raise
    finally:
        os.close(diversion)
    return private


def _private_wire(fd: int) -> int:
    """The pipe on ``fd`` opened anew (``/proc/self/fd``), so that making it non-blocking
    changes only this process's own open file, never the one the parent and its other
    children share; a socket cannot be reopened and is duplicated (its flag is restored on
    exit, :func:`_release`)."""
    access = os.O_RDONLY if fd == 0 else os.O_WRONLY
    try:
        opened = os.open(f"/proc/self/fd/{fd}", access | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # a socket (ENXIO), a pipe whose reader is gone, no /proc
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    try:
        reopened = _same(os.fstat(opened), os.fstat(fd))
        private = fcntl.fcntl(opened, fcntl.F_DUPFD_CLOEXEC, 3) if reopened and opened <= 2 else opened
    except OSError:
        reopened, private = False, opened
    if private != opened:  # moved above the standard range (fd 2 was closed)
        os.close(opened)
    if reopened:
        return private
    os.close(private)
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)


def _release(fd: int, private: int) -> None:
    """``fd`` back on the wire, blocking again (the duplicate shares its file status flags)."""
    with suppress(OSError):
        os.set_blocking(private, True)
    with suppress(OSError):
        os.dup2(private, fd)
    with suppress(OSError):
        os.close(private)
