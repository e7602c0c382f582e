"""The move of held children into their cgroups, off the event loop, by one long-lived thread.

A write to ``cgroup.procs`` takes the kernel's cgroup lock, which can wait for an RCU grace
period (milliseconds, more under load): it must not hold the event loop. A thread of the
default executor per move (``asyncio.to_thread``) costs a work item, a context copy and two
hand-offs; the moves are serialised by that kernel lock anyway, so one thread fed by a
queue loses no parallelism. It also writes the release line itself right after a move when
the caller hands it the hold's pipe, so the child runs without waiting for a hand-back to
the loop; the loop learns the outcome later (:meth:`MoveTicket.outcome`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

RELEASE_LINE = b"\n"
"""What a held child waits for on its stdin before it runs the command."""


@dataclass(eq=False)
class MoveTicket:
    """One move: ``pid`` into a cgroup by ``add``, then (optionally) the release on ``release_fd``.

    ``release_fd`` (or -1) belongs to the mover once submitted: it writes the release line
    there after a successful move, unless :meth:`abandon` came first, and closes it in any
    case (a held child that reads end of file exits 125 having run nothing). A ticket
    abandoned before its turn is never moved (its pid may be reaped and reused by then).
    :meth:`outcome` gives ``None`` once the move is done, or the error it raised.
    """

    pid: int
    add: Callable[[int], None]
    release_fd: int
    loop: asyncio.AbstractEventLoop
    done: asyncio.Future[Exception | None]
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _abandoned: bool = False
    _begun: bool = False
    released: bool = False

    def abandon(self) -> bool:
        """No move if not begun, no release after this (the call is being torn down).

        True if no release was written.
        """
        with self._lock:
            self._abandoned = True
            return not self.released

    def in_flight(self) -> asyncio.Future[Exception | None] | None:
        """After :meth:`abandon`: while a write naming ``pid`` may still be in the kernel, the
        future that settles after it (the child must not be reaped before: its pid could be
        given to another process and moved instead); None when no write can come any more."""
        with self._lock:
            begun = self._begun
        return self.done if begun and not self.done.done() else None

    async def outcome(self) -> Exception | None:
        """Wait for the move; None when the child is in its cgroup, else why not."""
        if self.done.done():
            return self.done.result()
        return await asyncio.shield(self.done)

    def run(self) -> None:
        """In the mover thread: the move, the release, the close, the report to the loop."""
        error: Exception | None = None
        with self._lock:
            self._begun = not self._abandoned
        if not self._begun:
            error = ProcessLookupError(errno.ESRCH, "the move was abandoned before it began")
        else:
            try:
                self.add(self.pid)
            except Exception as exc:  # reported to the call, never lost with the thread
                error = exc
        if self.release_fd >= 0:
            with self._lock:
                if error is None and not self._abandoned:
                    try:
                        os.write(self.release_fd, RELEASE_LINE)
                        self.released = True
                    except OSError as exc:  # the child is gone (killed meanwhile): nothing ran
                        error = exc
            with contextlib.suppress(OSError):
                os.close(self.release_fd)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self.loop.call_soon_threadsafe(_settle, self.done, error)


def _settle(future: asyncio.Future[Exception | None], error: Exception | None) -> None:
    if not future.done():
        future.set_result(error)


class Mover:
    """The process's mover thread (started on first use; a daemon, so it never holds exit)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[MoveTicket] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._pid = os.getpid()

    def submit(self, pid: int, add: Callable[[int], None], *, release_fd: int = -1) -> MoveTicket:
        """Queue the move of ``pid`` (and the release on ``release_fd``, which it now owns)."""
        loop = asyncio.get_running_loop()
        ticket = MoveTicket(pid, add, release_fd, loop, loop.create_future())
        self._ensure_thread()
        self._queue.put(ticket)
        return ticket

    def _ensure_thread(self) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        with self._start_lock:
            if self._pid != os.getpid():  # a forked child: the parent's queue and thread are not its own
                self._queue, self._thread, self._pid = queue.SimpleQueue(), None, os.getpid()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._serve, name="relay-shell-cgroup-mover", daemon=True
                )
                self._thread.start()

    def _serve(self) -> None:
        while True:
            self._queue.get().run()


MOVER = Mover()
"""The one mover of this process."""
