"""Output pipes of a one-shot child, read straight from the fd on the event loop.

The runner creates the pipe itself (:func:`open_output_pipe`), hands the write end to the
child and reads the read end with :func:`drain_pipe`: one ``os.read`` of up to
:data:`READ_CHUNK` bytes per turn of the loop, each chunk handed once to the sink (the
capture, which hashes it and keeps its bounded head and tail). There is no StreamReader in
between, so the bytes are copied once, from the kernel, and never buffered twice. A pipe
that comes back full (the child writes faster than it is read) is grown to
:data:`GROWN_PIPE_BYTES`, so a bulk producer is read in large chunks while quiet commands
keep the kernel's default pipe (and the user's pipe quota is spent only on those that need
it).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Callable

READ_CHUNK = 1024 * 1024
"""Largest single read from a child's output pipe."""
GROWN_PIPE_BYTES = 1024 * 1024
"""Capacity a pipe is grown to once a read finds it full (bounded by /proc/sys/fs/pipe-max-size)."""
F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


class OutputPipe:
    """One output pipe of a child: the read end is ours, the write end the child's.

    Both ends are close-on-exec in this process (the spawn duplicates the write end onto the
    child's stdout or stderr); the read end is non-blocking. Each end is closed at most once
    (:meth:`close_write` once the child has its copy, :meth:`close` when reading is over),
    so a number the kernel has since given to another file is never closed by mistake.
    """

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self.read_fd, False)

    def close_write(self) -> None:
        """Close our copy of the write end (end of file comes when the child's copies close)."""
        self.write_fd = _close_once(self.write_fd)

    def close(self) -> None:
        """Close both ends; idempotent."""
        self.read_fd = _close_once(self.read_fd)
        self.close_write()


class InputPipe:
    """The stdin pipe of a child: the read end is the child's, the write end ours (non-blocking).

    Both ends are close-on-exec here. :meth:`close_read` once the child has its copy;
    :meth:`take_write` hands the write end to someone else (who then closes it);
    :meth:`close` closes what is still ours.
    """

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self.write_fd, False)

    def close_read(self) -> None:
        self.read_fd = _close_once(self.read_fd)

    def take_write(self) -> int:
        """The write end, no longer ours to close."""
        fd, self.write_fd = self.write_fd, -1
        return fd

    def close(self) -> None:
        """Close both ends; idempotent."""
        self.close_read()
        self.write_fd = _close_once(self.write_fd)


async def feed_pipe(pipe: InputPipe, data: bytes) -> None:
    """Write ``data`` into ``pipe`` as the child reads it, then close our end.

    A child that stops reading (it exited, or closed its stdin) ends the feed quietly.
    """
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    fd = pipe.write_fd
    try:
        while view and fd >= 0:
            try:
                view = view[os.write(fd, view) :]
                continue
            except BlockingIOError:
                pass
            except OSError:  # EPIPE: nobody reads any more
                return
            writable: asyncio.Future[None] = loop.create_future()
            loop.add_writer(fd, _resolve, writable)
            try:
                await writable
            finally:
                loop.remove_writer(fd)
    finally:
        pipe.close()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _close_once(fd: int) -> int:
    if fd >= 0:
        with contextlib.suppress(OSError):
            os.close(fd)
    return -1


async def drain_pipe(pipe: OutputPipe, sink: Callable[[bytes], None]) -> int:
    """Read ``pipe`` to end of file, handing each chunk to ``sink``; return the bytes read.

    The pipe is closed when this returns or raises. Cancelled, it stays open with what was
    not read yet (after a kill, :func:`relay_shell.local.runner` reads the rest with a second
    drain, and closes it in any case). An error of ``sink`` or of the read ends the drain and
    is raised here.
    """
    fd = pipe.read_fd
    if fd < 0:
        raise ValueError("the pipe is closed")
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()
    state = _DrainState(fd)

    def on_readable() -> None:
        if finished.done():
            return
        try:
            chunk = os.read(fd, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            finished.set_exception(exc)
            return
        if not chunk:
            finished.set_result(None)
            return
        state.count(len(chunk))
        try:
            sink(chunk)
        except Exception as exc:  # the sink's failure is the drain's: raised to the awaiting task
            finished.set_exception(exc)

    loop.add_reader(fd, on_readable)
    cancelled = False
    try:
        await finished
    except asyncio.CancelledError:
        cancelled = True
        raise
    finally:
        loop.remove_reader(fd)
        if not cancelled:
            pipe.close()
    return state.total


class _DrainState:
    """Bytes read so far, and whether the pipe was grown once it came back full."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.total = 0
        self._capacity: int | None = None

    def count(self, size: int) -> None:
        self.total += size
        if self._capacity is None:
            try:
                self._capacity = fcntl.fcntl(self.fd, F_GETPIPE_SZ)
            except OSError:
                self._capacity = GROWN_PIPE_BYTES
        if size >= self._capacity and self._capacity < GROWN_PIPE_BYTES:
            try:
                self._capacity = fcntl.fcntl(self.fd, F_SETPIPE_SZ, GROWN_PIPE_BYTES)
            except OSError:  # over pipe-max-size or the user's pipe quota: keep the pipe as it is
                self._capacity = GROWN_PIPE_BYTES
