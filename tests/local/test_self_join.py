"""A folded ``/bin/sh -c TEXT`` joins its cgroup itself: nothing of TEXT ever runs outside it.

The join is the first command of the ``-c`` text (``PATH=/dev/null echo 0 >cgroup.procs ||
exit 125``); the server writes nothing to ``cgroup.procs`` for such a call. Each case here
runs real processes in real cgroups: a hostile ``PATH`` or ``IFS`` cannot replace or bend
the join, a cgroup that refuses the process (gone, or ``domain invalid``) runs nothing and
fails the call as a containment failure, TEXT's own ``exit 125`` stays a result, and a
cancellation or a timeout before or after the join leaves no process, descriptor or cgroup.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay_shell.capture import render_capture
from relay_shell.errors import ExecTimeout, SpawnFailed
from relay_shell.local import cgroups
from relay_shell.local.contained import CgroupContained, is_dash
from relay_shell.local.containment import ContainmentService
from relay_shell.local.runner import ProcessSpec, run_process
from relay_shell.report import ExecReport
from tests.conftest import pids_with_marker
from tests.local.test_exec_timing_attacks import children, descriptors, nothing_left, until
from tests.local.test_folded_hold import child_env

SH = "/bin/sh"
pytestmark = pytest.mark.skipif(not is_dash(SH), reason="the self-join applies only where /bin/sh is dash")


def unified_line(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("0::")]


async def run_in(
    contained: CgroupContained,
    text: str,
    env: dict[str, str],
    stdin: bytes | None = None,
    timeout_s: float = 20,
) -> ExecReport:
    return await run_process(
        ProcessSpec(argv=[SH, "-c", text], env=env, stdin=stdin),
        timeout_s=timeout_s,
        budget=1 << 16,
        contained=contained,
        kill_grace_s=0.5,
    )


def hostile_envs(tmp_path: Path, witness: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """Environments that would run a program of theirs (touching ``witness``) in place of a
    built-in, or bend how a line splits."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("echo", "printf", "exit", "unset", "PATH=", "0", "command"):
        (bin_dir / name).write_text(f"#!/bin/sh\ntouch {witness}\n")
        (bin_dir / name).chmod(0o755)
    path = child_env()["PATH"]
    yield "%builtin after our directory", child_env(PATH=f"{bin_dir}:%builtin:{path}")
    yield "%builtin first", child_env(PATH=f"%builtin:{bin_dir}:{path}")
    yield "only our directory", child_env(PATH=str(bin_dir))
    yield "no PATH", {"LANG": "C.UTF-8"}
    yield "IFS of digits and slashes", child_env(IFS="0/ \n", PATH=f"{bin_dir}:%builtin:{path}")
    yield "empty IFS", child_env(IFS="")


HOSTILE = [
    "%builtin after our directory",
    "%builtin first",
    "only our directory",
    "no PATH",
    "IFS of digits and slashes",
    "empty IFS",
]


@pytest.mark.parametrize("name", HOSTILE)
async def test_a_hostile_environment_cannot_replace_or_bend_the_join(
    service: ContainmentService, tmp_path: Path, name: str
) -> None:
    witness = tmp_path / "ran"
    env = dict(hostile_envs(tmp_path, witness))[name]
    for stdin in (None, b"input\n"):
        async with service.contain("exec") as contained:
            assert isinstance(contained, CgroupContained)
            report = await run_in(contained, "exec /bin/cat /proc/self/cgroup", env, stdin)
            assert report.exit_code == 0, render_capture(report.capture)
            assert unified_line(render_capture(report.capture)) == [
                f"0::{contained.directory.hierarchy_path}"
            ]
    assert not witness.exists()


async def test_the_server_writes_nothing_to_cgroup_procs_for_a_folded_call(
    service: ContainmentService, monkeypatch: pytest.MonkeyPatch
) -> None:
    moved: list[int] = []
    real_add = cgroups.CgroupDir.add

    def add(directory: cgroups.CgroupDir, pid: int) -> None:
        moved.append(pid)
        real_add(directory, pid)

    monkeypatch.setattr(cgroups.CgroupDir, "add", add)
    async with service.contain("exec") as contained:
        assert isinstance(contained, CgroupContained)
        report = await run_in(contained, "cat /proc/$$/cgroup", child_env())
        assert unified_line(render_capture(report.capture)) == [f"0::{contained.directory.hierarchy_path}"]
    assert moved == []


@pytest.mark.parametrize("stdin", [None, b"data"], ids=["no input", "input"])
async def test_a_cgroup_that_refuses_the_process_runs_nothing(
    service: ContainmentService, tmp_path: Path, stdin: bytes | None
) -> None:
    # A cgroup below a threaded one is "domain invalid": the kernel refuses any process in it
    # (the write fails with EOPNOTSUPP), so the join fails and TEXT never starts.
    witness = tmp_path / "ran"
    others = children()
    async with service.contain("exec") as contained:
        assert isinstance(contained, CgroupContained)
        real = contained.directory
        threaded = real.path / "threaded"
        threaded.mkdir()
        (threaded / "cgroup.type").write_text("threaded")
        invalid = threaded / "invalid"
        invalid.mkdir()
        assert (invalid / "cgroup.type").read_text().strip() == "domain invalid"
        contained.directory = cgroups.CgroupDir(invalid, f"{real.hierarchy_path}/threaded/invalid")
        try:
            where = cgroups.unified_cgroup(Path("/proc/self/cgroup").read_text())  # the server's, unchanged
            with pytest.raises(SpawnFailed, match=re.escape(f"it failed to join it (it exited in {where})")):
                await run_in(contained, f"touch {witness}; cat", child_env(), stdin)
        finally:
            contained.directory = real
    assert not witness.exists()
    assert not real.path.exists()  # removed with what was made below it
    await until(lambda: not children(others), "the child that failed to join is reaped")


async def test_a_removed_cgroup_runs_nothing(service: ContainmentService, tmp_path: Path) -> None:
    witness = tmp_path / "ran"
    async with service.contain("exec") as contained:
        assert isinstance(contained, CgroupContained)
        contained.directory.path.rmdir()
        with pytest.raises(SpawnFailed, match="cannot move the process into its cgroup"):
            await run_in(contained, f"touch {witness}", child_env())
    assert not witness.exists()


@pytest.mark.parametrize("text", ["exit 125", "(exit 125)", "sh -c 'exit 125'", "false || exit 125"])
@pytest.mark.parametrize("stdin", [None, b"data"], ids=["no input", "input"])
async def test_texts_own_exit_125_is_a_result(
    service: ContainmentService, text: str, stdin: bytes | None
) -> None:
    async with service.contain("exec") as contained:
        assert isinstance(contained, CgroupContained)
        report = await run_in(contained, text, child_env(), stdin)
    assert (report.exit_code, report.signal) == (125, None)


def gated(contained: CgroupContained, tmp_path: Path) -> cgroups.CgroupDir:
    """Point ``contained`` at a directory whose ``cgroup.procs`` is a FIFO nobody reads: a join
    waits there, in ``open``, for as long as the test wants. Returns the real directory."""
    real = contained.directory
    gate = tmp_path / "gate"
    gate.mkdir()
    os.mkfifo(gate / "cgroup.procs")
    contained.directory = cgroups.CgroupDir(gate, real.hierarchy_path)
    return real


def waits_at_the_join(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        return Path(f"/proc/{pid}/wchan").read_text() == "wait_for_partner"  # a FIFO's open
    except OSError:
        return False


@pytest.mark.parametrize("how", ["cancelled", "timed out"])
@pytest.mark.parametrize("stdin", [None, b"data"], ids=["no input", "input"])
async def test_a_call_ended_before_the_join_runs_nothing_and_leaves_nothing(
    service: ContainmentService, tmp_path: Path, how: str, stdin: bytes | None
) -> None:
    witness = tmp_path / "ran"
    await run_in_fresh(service)  # the mover thread, loop readers and caches exist before the count
    before, others = descriptors(), children()
    async with service.contain("exec") as contained:
        assert isinstance(contained, CgroupContained)
        real = gated(contained, tmp_path)
        try:
            call = asyncio.ensure_future(
                run_in(contained, f"touch {witness}", child_env(), stdin, 1.0 if how == "timed out" else 30)
            )
            await until(lambda: waits_at_the_join(contained.root), "the child waits at its join")
            if how == "cancelled":
                call.cancel()
            with pytest.raises(asyncio.CancelledError if how == "cancelled" else ExecTimeout):
                await asyncio.wait_for(call, 10)
        finally:
            contained.directory = real
    assert not witness.exists()
    assert not real.path.exists()
    await until(lambda: not children(others), "the child is killed and reaped")
    await until(lambda: descriptors() == before, "no pidfd or pipe left open")


async def run_in_fresh(service: ContainmentService) -> None:
    async with service.contain("exec") as contained:
        assert isinstance(contained, CgroupContained)
        await run_in(contained, "true", child_env())


async def test_a_call_cancelled_after_the_join_leaves_nothing(
    service: ContainmentService, tmp_path: Path
) -> None:
    witness = tmp_path / "ran"
    marker = f"300.{time.monotonic_ns()}"
    await run_in_fresh(service)
    before, others = descriptors(), children()
    async with service.contain("exec") as contained:
        assert isinstance(contained, CgroupContained)
        call = asyncio.ensure_future(
            run_in(contained, f"sleep {marker} & touch {witness}; sleep {marker}", child_env())
        )
        await until(witness.exists, "TEXT runs")
        assert contained.root is not None
        cgroup = Path(f"/proc/{contained.root}/cgroup").read_text()
        assert f"0::{contained.directory.hierarchy_path}" in cgroup.splitlines()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(call, 10)
        directory = contained.directory.path
    assert pids_with_marker(marker) == []
    await nothing_left(directory, others, before)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root (or the owner of the subtree) can leave its cgroup")
async def test_text_that_leaves_its_cgroup_is_the_documented_escape(service: ContainmentService) -> None:
    # A command running as root can write itself into another cgroup (ADR 0016, SECURITY.md):
    # it then runs outside the call's cgroup, still inside the server's own. Leaving and then
    # exiting 125 looks like a failed join, and is reported as one: never as a clean result.
    async with service.contain("exec") as contained:
        assert isinstance(contained, CgroupContained)
        own = contained.directory.path.parent.parent
        leave = f"echo 0 >{own}/cgroup.procs; "
        report = await run_in(contained, leave + "cat /proc/$$/cgroup", child_env())
        assert report.exit_code == 0
        assert unified_line(render_capture(report.capture)) != [f"0::{contained.directory.hierarchy_path}"]
    async with service.contain("exec") as contained:
        assert isinstance(contained, CgroupContained)
        own = contained.directory.path.parent.parent
        with pytest.raises(SpawnFailed, match="cannot move the process into its cgroup"):
            await run_in(contained, f"echo 0 >{own}/cgroup.procs; exit 125", child_env())
