"""The contained exec path under hostile timing: a stuck move, cancellations and timeouts in flight, load.

A call whose child the server moves (not folded: here ``sh -c TEXT $0``) waits on a write
to ``cgroup.procs`` that can wait in the kernel; here the mover's write is held on a gate
the test opens. A call torn down meanwhile must return at once, never release or move its
child afterwards, and never reap that child while a write naming its pid may still be in
flight (the number could be reused); after many calls nothing is left (descriptors, pidfds,
cgroup directories, children of the server), whether the children joined their cgroups
themselves or were moved.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

from relay_shell.capture import render_capture
from relay_shell.errors import ExecTimeout
from relay_shell.local import cgroups
from relay_shell.local.contained import CgroupContained, is_dash
from relay_shell.local.containment import ContainmentService
from relay_shell.local.processes import read_entry
from relay_shell.local.runner import ProcessSpec, run_process
from tests.local.test_folded_hold import child_env

SH = "/bin/sh"
SETTLE_S = 10.0
"""Bound on waiting for something the test has just unblocked (never reached when it works)."""
pytestmark = pytest.mark.skipif(not is_dash(SH), reason="the fold applies only where /bin/sh is dash")


class StuckMover:
    """``CgroupDir.add`` held on a gate: the pids it was asked to move, in order."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.asked: list[int] = []
        self.entered = threading.Event()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real = cgroups.CgroupDir.add

        def add(directory: cgroups.CgroupDir, pid: int) -> None:
            self.asked.append(pid)
            self.entered.set()
            self.gate.wait(SETTLE_S)
            real(directory, pid)

        monkeypatch.setattr(cgroups.CgroupDir, "add", add)


@pytest.fixture
def stuck(monkeypatch: pytest.MonkeyPatch) -> Iterator[StuckMover]:
    mover = StuckMover()
    mover.install(monkeypatch)
    yield mover
    mover.gate.set()  # never leave the mover thread waiting for a failed test


def descriptors() -> list[str]:
    """What this process's descriptors name (pipes, pidfds, files), the listing's own left out."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.append(os.readlink(f"/proc/self/fd/{fd}"))
        except FileNotFoundError:  # the descriptor of the listing itself, closed since
            continue
    return sorted(found)


def children(before: Collection[int] = ()) -> dict[int, bool]:
    """This process's children now but those in ``before`` (a session fixture's servers):
    pid -> alive (False: a zombie not reaped yet)."""
    me = os.getpid()
    found: dict[int, bool] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (entry := read_entry(int(name))) is not None and entry.ppid == me:
            found[entry.pid] = entry.alive
    return {pid: alive for pid, alive in found.items() if pid not in before}


async def until(condition: object, what: str) -> None:
    """Poll ``condition()`` on the loop, bounded by :data:`SETTLE_S`."""
    assert callable(condition)
    deadline = asyncio.get_running_loop().time() + SETTLE_S
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.01)


async def nothing_left(directory: Path, others: Collection[int], before: list[str]) -> None:
    """A call's end left nothing: its cgroup ``directory`` removed, its child reaped (beside
    ``others``, the children before it) and no descriptor open but ``before``."""
    assert not directory.exists()
    await until(lambda: not children(others), "the child is reaped")
    await until(lambda: descriptors() == before, "no pidfd or pipe left open")


def spec(text: str, stdin: bytes | None = None, *, joins: bool = False) -> ProcessSpec:
    """``sh -c text``: joining its cgroup itself (folded), or held and moved by the server (a
    ``$0`` argument of its own keeps it from being folded; it is the same ``/bin/sh``)."""
    argv = [SH, "-c", text] if joins else [SH, "-c", text, SH]
    return ProcessSpec(argv=argv, env=child_env(), stdin=stdin)


async def test_a_call_with_input_times_out_while_its_move_is_stuck(
    service: ContainmentService, stuck: StuckMover, tmp_path: Path
) -> None:
    witness = tmp_path / "ran"
    before, others = descriptors(), children()
    async with service.contain("exec") as contained:
        call = run_process(
            spec(f"touch {witness}; cat", stdin=b"input"), timeout_s=0.2, budget=4096, contained=contained
        )
        with pytest.raises(ExecTimeout):
            await asyncio.wait_for(call, SETTLE_S / 2)
        assert not stuck.gate.is_set()  # it returned while the move was still in the kernel
        stuck.gate.set()
    await until(lambda: not children(others), "the held child is reaped once its move is over")
    assert not witness.exists()
    await until(lambda: descriptors() == before, "every descriptor of the call is closed")


async def test_calls_torn_down_behind_a_stuck_move_are_never_moved_or_reaped_early(
    service: ContainmentService, stuck: StuckMover, tmp_path: Path
) -> None:
    witness = tmp_path / "ran"
    before, others = descriptors(), children()
    async with service.contain("exec") as first, service.contain("exec") as second:
        assert isinstance(first, CgroupContained) and isinstance(second, CgroupContained)
        stuck_call = asyncio.ensure_future(
            run_process(spec(f"touch {witness}"), timeout_s=30, budget=4096, contained=first)
        )
        assert await asyncio.to_thread(stuck.entered.wait, SETTLE_S)
        queued_call = asyncio.ensure_future(
            run_process(spec(f"touch {witness}", stdin=b"x"), timeout_s=30, budget=4096, contained=second)
        )
        await until(lambda: first.root is not None and second.root is not None, "both children started")
        stuck_pid, queued_pid = first.root, second.root
        for call in (queued_call, stuck_call):
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(call, SETTLE_S / 2)
        assert not stuck.gate.is_set()
        # The write naming the first child's pid is still in flight: it stays our zombie, so
        # the number cannot be given to another process before that write is over.
        await until(lambda: children(others) == {stuck_pid: False}, "killed, still not reaped")
        assert not stuck.gate.is_set()
        stuck.gate.set()
        await until(lambda: not children(others), "the zombie is reaped once the move is over")
    assert stuck.asked == [stuck_pid]  # the queued move of a torn-down call never ran
    assert not first.directory.path.exists() and not second.directory.path.exists()
    assert queued_pid not in stuck.asked
    assert not witness.exists()
    await until(lambda: descriptors() == before, "every descriptor of the calls is closed")


async def test_two_hundred_calls_leave_nothing_behind(service: ContainmentService, tmp_path: Path) -> None:
    # Normal calls (with and without input, leaving a background job), timeouts and
    # cancellations at several points, twenty at a time.
    async def one(number: int) -> tuple[int, str | None]:
        kind = number % 5
        text = ["echo $0-%d", "sleep 30 & echo %d", "cat; echo %d", "sleep 30; echo %d", "cat; sleep 30 %d"][
            kind
        ]
        stdin = f"in-{number}\n".encode() if kind in (2, 4) else None
        async with service.contain("exec") as contained:
            assert isinstance(contained, CgroupContained)
            call = asyncio.ensure_future(
                run_process(
                    spec(text % number, stdin, joins=number % 10 < 5),
                    timeout_s=0.05 if kind == 3 else 30,
                    budget=4096,
                    contained=contained,
                    kill_grace_s=0.5,
                )
            )
            if kind == 4:
                for _ in range(number % 4):
                    await asyncio.sleep(0)  # cancelled at different points of the spawn and move
                call.cancel()
            try:
                output: str | None = render_capture((await call).capture)
            except (ExecTimeout, asyncio.CancelledError):
                output = None
            directories.add(contained.directory.path)
            return number, output

    directories: set[Path] = set()
    await one(0)
    before, others = descriptors(), children()
    results: list[tuple[int, str | None]] = []
    for batch in range(10):
        results += await asyncio.gather(*(one(batch * 20 + index) for index in range(20)))
    expected = {0: f"{SH}-%d\n", 1: "%d\n", 2: "in-%d\n%d\n"}
    for number, output in results:
        if number % 5 in expected:
            assert output == expected[number % 5].replace("%d", str(number))
    # A child killed on a timeout is reaped (and its pidfd closed) when it is gone, which a
    # loaded machine can delay past the call's return: wait for it, bounded.
    await until(lambda: not children(others), "every child is reaped")
    await until(lambda: descriptors() == before, "no pidfd, pipe or cgroup file left open")
    assert [path for path in directories if path.exists()] == []
    server_directory = next(iter(directories)).parent
    assert [entry for entry in server_directory.iterdir() if entry.is_dir()] == []
