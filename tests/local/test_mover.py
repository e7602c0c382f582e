"""The mover thread: the move first, then the release, never after an abandon, the pipe closed always."""

from __future__ import annotations

import asyncio
import os
import threading

from relay_shell.local.mover import MOVER, RELEASE_LINE


def read_all(fd: int) -> bytes:
    """Everything until end of file (the mover closed its end)."""
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


async def test_the_release_follows_the_move_in_the_mover_thread() -> None:
    read_end, write_end = os.pipe()
    seen: list[tuple[str, int, bool]] = []

    def add(pid: int) -> None:  # the release must not be there yet
        readable = os.get_blocking(read_end)
        os.set_blocking(read_end, False)
        try:
            early = os.read(read_end, 1)
        except BlockingIOError:
            early = b""
        os.set_blocking(read_end, readable)
        seen.append((threading.current_thread().name, pid, early == b""))

    ticket = MOVER.submit(4242, add, release_fd=write_end)
    assert await ticket.outcome() is None
    assert ticket.released
    assert seen == [("relay-shell-cgroup-mover", 4242, True)]
    assert read_all(read_end) == RELEASE_LINE


async def test_a_failed_move_closes_the_pipe_without_a_release() -> None:
    read_end, write_end = os.pipe()

    def add(pid: int) -> None:
        raise PermissionError(13, "Permission denied")

    ticket = MOVER.submit(4242, add, release_fd=write_end)
    error = await ticket.outcome()
    assert isinstance(error, PermissionError)
    assert not ticket.released
    assert read_all(read_end) == b""  # end of file: the held child exits 125 having run nothing


async def test_an_abandoned_move_never_releases() -> None:
    read_end, write_end = os.pipe()
    moving, go_on = threading.Event(), threading.Event()

    def slow_add(pid: int) -> None:
        moving.set()
        go_on.wait(10)

    ticket = MOVER.submit(4242, slow_add, release_fd=write_end)
    assert await asyncio.to_thread(moving.wait, 10)
    assert ticket.abandon()  # torn down while the move is in flight: no release was written
    go_on.set()
    assert await ticket.outcome() is None
    assert not ticket.released
    assert read_all(read_end) == b""


async def test_moves_run_one_at_a_time_in_the_order_submitted() -> None:
    moved: list[int] = []
    tickets = [MOVER.submit(pid, moved.append) for pid in (1, 2, 3)]
    assert [await ticket.outcome() for ticket in tickets] == [None, None, None]
    assert moved == [1, 2, 3]  # one thread, in the order submitted
