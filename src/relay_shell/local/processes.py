"""The process table and pidfds: what containment needs to find, signal, wait for and reap.

Everything here names a process through a **pidfd** as soon as it has been found, so a
signal, a wait or a reap can never reach another process that happens to get the same pid
later. Waiting is event-driven (a pidfd becomes readable when its process exits); reaping
uses ``waitid(P_PIDFD, ...)`` on that one process only, never ``waitpid(-1)``, so the event
loop's own children are never stolen.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import select
import signal
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessEntry:
    """One line of ``/proc/<pid>/stat``: the fields containment reads."""

    pid: int
    state: str
    ppid: int
    group: int
    session: int
    start_ticks: int
    """Start time in clock ticks since boot (field 22)."""

    @property
    def alive(self) -> bool:
        """False for a zombie (exited, not yet reaped) or a dead entry."""
        return self.state not in ("Z", "X")


def read_entry(pid: int) -> ProcessEntry | None:
    """The stat line of ``pid``, or None when there is no such process."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        raw = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    return parse_stat(pid, raw)


def parse_stat(pid: int, raw: bytes) -> ProcessEntry | None:
    """Parse a ``/proc/<pid>/stat`` line (the command name may hold spaces and parentheses)."""
    fields = raw[raw.rfind(b")") + 2 :].split()
    if len(fields) < 20:
        return None
    try:
        return ProcessEntry(
            pid=pid,
            state=fields[0].decode("ascii", "replace"),
            ppid=int(fields[1]),
            group=int(fields[2]),
            session=int(fields[3]),
            start_ticks=int(fields[19]),
        )
    except ValueError:
        return None


LAST_PID = "/proc/sys/kernel/ns_last_pid"
PID_MAX = "/proc/sys/kernel/pid_max"
CATCH_UP_ROUNDS = 20
CATCH_UP_LIMIT = 4096
"""More pids than this allocated during one scan: scan again rather than read them one by one."""


def process_table() -> dict[int, ProcessEntry]:
    """Every process in ``/proc``, as a consistent view.

    A directory scan is not atomic: a process can fork and exit while it runs, and the
    child, created after the listing, would be missed. Pids are allocated in increasing
    order (wrapping at ``pid_max``), so every process created during the scan has a pid
    between the last pid allocated before it and the last one after it: those are read
    too, until no pid was allocated during a round. A process of ours that exited stays
    visible meanwhile as a zombie of the server (the subreaper), so no link is lost.
    """
    before = _last_pid()
    table = _scan()
    for _ in range(CATCH_UP_ROUNDS):
        after = _last_pid()
        if before is None or after is None or after == before:
            break
        created = _allocated_between(before, after)
        if created is None:
            table = _scan()
        else:
            for pid in created:
                if (found := read_entry(pid)) is not None:
                    table[pid] = found
        before = after
    return table


def _scan() -> dict[int, ProcessEntry]:
    table: dict[int, ProcessEntry] = {}
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit() and (found := read_entry(int(entry.name))) is not None:
                table[found.pid] = found
    return table


def _read_int(path: str) -> int | None:
    try:
        with open(path, "rb") as file:
            return int(file.read())
    except (OSError, ValueError):
        return None


def _last_pid() -> int | None:
    return _read_int(LAST_PID)


def _allocated_between(before: int, after: int) -> range | list[int] | None:
    """The pids allocated after ``before`` up to ``after`` (wrapping); None when too many."""
    if after > before:
        return range(before + 1, after + 1) if after - before <= CATCH_UP_LIMIT else None
    pid_max = _read_int(PID_MAX) or 4194304
    count = (pid_max - before - 1) + after
    if count > CATCH_UP_LIMIT:
        return None
    return [*range(before + 1, pid_max), *range(1, after + 1)]


def descendants(table: Mapping[int, ProcessEntry], roots: Iterable[int], *, skip: set[int]) -> set[int]:
    """``roots`` and every process below them by parent links, not entering ``skip``."""
    children: dict[int, list[int]] = {}
    for entry in table.values():
        children.setdefault(entry.ppid, []).append(entry.pid)
    found: set[int] = set()
    stack = [pid for pid in roots if pid not in skip]
    while stack:
        pid = stack.pop()
        if pid in found:
            continue
        found.add(pid)
        stack.extend(child for child in children.get(pid, ()) if child not in skip)
    return found


def boot_ticks_now() -> int:
    """Now, in the unit and origin of :attr:`ProcessEntry.start_ticks` (ticks since boot)."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME) * CLOCK_TICKS // 1_000_000_000


class PidHandles:
    """Pidfds for a set of processes: signal them, wait for them, reap the ones we adopted.

    Not thread-safe; close it (or use it as a context manager) to release the fds.
    """

    def __init__(self) -> None:
        self._fds: dict[int, int] = {}

    def __enter__(self) -> PidHandles:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._fds)

    @property
    def pids(self) -> set[int]:
        return set(self._fds)

    def track(self, pid: int, *, start_ticks: int | None = None) -> bool:
        """Open a pidfd for ``pid``; with ``start_ticks``, only if it is still that process."""
        if pid in self._fds:
            return True
        try:
            fd = os.pidfd_open(pid)
        except OSError:  # already gone (and reaped)
            return False
        if start_ticks is not None:
            entry = read_entry(pid)
            if entry is None or entry.start_ticks != start_ticks:  # the pid was reused meanwhile
                os.close(fd)
                return False
        self._fds[pid] = fd
        return True

    def signal(self, number: int) -> None:
        """Send ``number`` to every tracked process that still exists."""
        for fd in self._fds.values():
            with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
                signal.pidfd_send_signal(fd, number)

    def running(self) -> list[int]:
        """The tracked pids whose process has not exited yet (a non-blocking poll)."""
        if not self._fds:
            return []
        poller = select.poll()
        for fd in self._fds.values():
            poller.register(fd, select.POLLIN)
        exited = {fd for fd, _ in poller.poll(0)}
        return [pid for pid, fd in self._fds.items() if fd not in exited]

    async def wait_exited(self, timeout_s: float) -> bool:
        """Wait until every tracked process has exited, at most ``timeout_s``; True if they all did."""
        pending = [self._fds[pid] for pid in self.running()]
        if not pending:
            return True
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[None]] = []
        try:
            for fd in pending:
                future: asyncio.Future[None] = loop.create_future()
                futures.append(future)
                loop.add_reader(fd, _resolve, future)
            _, not_done = await asyncio.wait(futures, timeout=timeout_s)
            return not not_done
        finally:
            for fd in pending:
                loop.remove_reader(fd)

    def wait_exited_blocking(self, timeout_s: float) -> bool:
        """:meth:`wait_exited` for start-up code that runs before any event loop."""
        deadline = time.monotonic() + timeout_s
        while pending := self.running():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            poller = select.poll()
            for pid in pending:
                poller.register(self._fds[pid], select.POLLIN)
            poller.poll(max(1, int(remaining * 1000)))
        return True

    def reap(self, *, skip: Iterable[int] = ()) -> int:
        """Reap the tracked processes that exited as children of this process. Returns how many.

        A process that is not our child (its parent is still alive, or it re-parented to
        init) is left alone; ``skip`` names children someone else waits for (the event
        loop's own).
        """
        skipped = set(skip)
        reaped = 0
        for pid, fd in self._fds.items():
            if pid in skipped:
                continue
            try:
                if os.waitid(os.P_PIDFD, fd, os.WEXITED | os.WNOHANG) is not None:
                    reaped += 1
            except ChildProcessError:
                continue
            except OSError as exc:
                if exc.errno not in (errno.ECHILD, errno.EINVAL):
                    raise
        return reaped

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
