"""Containment below the MCP layer: finding cgroup v2, attribution, the hold, signal dispositions."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relay_shell.capture import render_capture
from relay_shell.config import ContainmentMode
from relay_shell.errors import ConfigError, SpawnFailed
from relay_shell.local import cgroups
from relay_shell.local.contained import RELEASE_LINE, CgroupContained, attribute, hold_argv
from relay_shell.local.containment import ContainmentService, cgroup_unavailable
from relay_shell.local.processes import ProcessEntry, parse_stat
from relay_shell.local.runner import ProcessSpec, run_process
from tests.components import containment_mechanisms
from tests.conftest import pids_with_marker

REPO = Path(__file__).resolve().parents[2]

# A mountinfo like this machine's: a tmpfs of v1 controllers, cgroup2 beside them.
MOUNTINFO_HYBRID = """\
24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 24 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
MOUNTINFO_UNIFIED = "30 24 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
# A container that sees only its own part of the hierarchy, mounted at an escaped path.
MOUNTINFO_NAMESPACED = "50 40 0:26 /system.slice /run/my\\040cgroup rw - cgroup2 cgroup2 rw\n"
PROC_CGROUP_V1_AND_V2 = "9:name=systemd:/\n4:memory:/process_api/42\n0::/system.slice/relay-shell.service\n"


@pytest.fixture(params=containment_mechanisms())
async def service(request: pytest.FixtureRequest) -> AsyncIterator[ContainmentService]:
    containment = ContainmentService(ContainmentMode(request.param))
    assert containment.mechanism == request.param
    yield containment
    await containment.aclose()


def unique_sleep() -> str:
    """A ``sleep`` argument no other process has: the marker is the sleeping process's own argv."""
    return f"300.{time.monotonic_ns()}"


# -- finding the hierarchy ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mountinfo", "proc_cgroup", "expected"),
    [
        (MOUNTINFO_HYBRID, "0::/\n", Path("/sys/fs/cgroup/unified")),
        (
            MOUNTINFO_HYBRID,
            PROC_CGROUP_V1_AND_V2,
            Path("/sys/fs/cgroup/unified/system.slice/relay-shell.service"),
        ),
        (MOUNTINFO_UNIFIED, "0::/user.slice/a b\n", Path("/sys/fs/cgroup/user.slice/a b")),
        (MOUNTINFO_NAMESPACED, "0::/system.slice/x.service\n", Path("/run/my cgroup/x.service")),
        (MOUNTINFO_NAMESPACED, "0::/system.slice\n", Path("/run/my cgroup")),
        (MOUNTINFO_NAMESPACED, "0::/user.slice/x\n", None),  # not below the mounted root
        (MOUNTINFO_HYBRID, "4:memory:/x\n", None),  # no v2 line
        (MOUNTINFO_HYBRID, "0::/gone (deleted)\n", None),
        ("31 24 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n", "0::/\n", None),  # no cgroup2 mount
    ],
)
def test_own_cgroup_is_found_through_mountinfo(
    mountinfo: str, proc_cgroup: str, expected: Path | None
) -> None:
    assert cgroups.locate_own_cgroup(mountinfo, proc_cgroup) == expected


def test_stat_lines_with_hostile_command_names_parse() -> None:
    raw = b"4242 (evil) 1 2 3 (x) R 17 4242 4242 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 987654 0 0"
    entry = parse_stat(4242, raw)
    assert entry == ProcessEntry(pid=4242, state="R", ppid=17, group=4242, session=4242, start_ticks=987654)
    assert parse_stat(1, b"1 (truncated) S 0") is None


# -- subreaper attribution ------------------------------------------------------------------

SERVER, SERVER_SESSION, OPENED = 100, 90, 5000


def entry(pid: int, ppid: int, session: int, start: int = OPENED + 10, state: str = "S") -> ProcessEntry:
    return ProcessEntry(pid=pid, state=state, ppid=ppid, group=session, session=session, start_ticks=start)


def owned(*entries: ProcessEntry, root: int = 200, other_roots: frozenset[int] = frozenset()) -> set[int]:
    table = {item.pid: item for item in entries}
    return attribute(
        table,
        root=root,
        opened_ticks=OPENED,
        server_pid=SERVER,
        server_session=SERVER_SESSION,
        other_roots=set(other_roots),
    )


def test_attribution_takes_session_descendants_and_fresh_orphans() -> None:
    table = (
        entry(SERVER, 1, SERVER_SESSION, start=1),
        entry(200, SERVER, 200),  # the root
        entry(201, 200, 200),  # `sleep &`
        entry(202, SERVER, 200),  # `(sleep &)`: orphaned, still in the session
        entry(203, 200, 203),  # `setsid sleep &` while the root runs
        entry(204, 203, 203),  # its child
        entry(205, SERVER, 205),  # setsid then orphaned (a daemon): adopted by the server
        entry(206, 205, 206),  # a daemon's own setsid child
        entry(207, SERVER, 200, state="Z"),  # a zombie of ours: owned, to be reaped
    )
    assert owned(*table) == {200, 201, 202, 203, 204, 205, 206, 207}


def test_attribution_leaves_what_is_not_the_calls() -> None:
    table = (
        entry(SERVER, 1, SERVER_SESSION, start=1),
        entry(200, SERVER, 200),
        entry(300, SERVER, 300),  # another live containment's root
        entry(301, 300, 300),  # ... its job
        entry(302, SERVER, 300),  # ... its orphan, still in its session
        entry(303, 301, 303),  # ... a setsid child of its job
        entry(310, SERVER, SERVER_SESSION),  # a child of the server in the server's session (not a call's)
        entry(311, SERVER, 311, start=OPENED - 1),  # an orphan older than this containment
        entry(312, 1, 312),  # an unrelated daemon of init
    )
    assert owned(*table, other_roots=frozenset({300})) == {200}


def test_attribution_after_the_root_was_reaped() -> None:
    # The root exited and was reaped: its session lives on in what it left behind.
    table = (entry(SERVER, 1, SERVER_SESSION, start=1), entry(201, SERVER, 200), entry(202, 201, 200))
    assert owned(*table) == {201, 202}


# -- the hold (cgroup) and the spawn paths ------------------------------------------------


async def test_a_command_runs_only_once_it_is_contained(service: ContainmentService) -> None:
    # The command's first act reads its own cgroup: under the cgroup mechanism it is already
    # the call's (the hold released it only after the move).
    async with service.contain("exec") as contained:
        result = await run_process(
            ProcessSpec(argv=["cat", "/proc/self/cgroup"], env=dict(os.environ)),
            timeout_s=10,
            budget=65536,
            contained=contained,
        )
        unified = cgroups.unified_cgroup(render_capture(result.capture))
        own = cgroups.unified_cgroup(Path("/proc/self/cgroup").read_text())
    assert result.exit_code == 0
    assert unified is not None and own is not None
    if service.mechanism == "cgroup":
        assert isinstance(contained, CgroupContained)
        assert unified.endswith(f"/{contained.directory.path.parent.name}/{contained.directory.path.name}")
    else:
        assert unified == own


async def test_stdin_reaches_the_command_through_the_hold(service: ContainmentService) -> None:
    async with service.contain("exec") as contained:
        result = await run_process(
            ProcessSpec(
                argv=["/bin/sh", "-c", "cat; echo; ls /proc/self/fd"],
                env=dict(os.environ),
                stdin=b"line1\nline2",
            ),
            timeout_s=10,
            budget=65536,
            contained=contained,
        )
    lines = render_capture(result.capture).splitlines()
    assert lines[:2] == ["line1", "line2"]
    assert sorted(lines[2:]) == ["0", "1", "2", "3"]  # ls's own directory fd; nothing of ours leaks


async def test_a_missing_program_is_a_spawn_failure(service: ContainmentService) -> None:
    async with service.contain("exec") as contained:
        with pytest.raises(SpawnFailed, match="cannot start 'relay-shell-no-such-program'"):
            await run_process(
                ProcessSpec(argv=["relay-shell-no-such-program"], env=dict(os.environ)),
                timeout_s=10,
                budget=4096,
                contained=contained,
            )


async def test_a_child_that_cannot_be_contained_never_runs(tmp_path: Path) -> None:
    if cgroup_unavailable() is not None:
        pytest.skip("no usable cgroup v2 here; the hold exists only for the cgroup mechanism")
    service = ContainmentService(ContainmentMode.CGROUP)
    try:
        contained = service.open("exec")
        assert isinstance(contained, CgroupContained)
        contained.directory.path.rmdir()  # the move into it must fail
        witness = tmp_path / "ran"
        marker = unique_sleep()
        with pytest.raises(SpawnFailed, match="cannot move the process into its cgroup"):
            await run_process(
                ProcessSpec(argv=["/bin/sh", "-c", f"touch {witness}; sleep {marker}"], env=dict(os.environ)),
                timeout_s=10,
                budget=4096,
                contained=contained,
            )
        assert not witness.exists()
        assert pids_with_marker(marker) == []
        await contained.close(1.0)
    finally:
        await service.aclose()


async def test_forced_cgroup_without_a_hierarchy_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from relay_shell.local import containment

    monkeypatch.setattr(containment._PROCESS, "cgroup_host", lambda: "no cgroup v2 hierarchy (test)")
    with pytest.raises(ConfigError, match="RELAY_SHELL_CONTAINMENT=cgroup, but no cgroup v2 hierarchy"):
        ContainmentService(ContainmentMode.CGROUP)
    fallback = ContainmentService(ContainmentMode.AUTO)
    assert fallback.mechanism == "subreaper"
    assert fallback.fallback_reason == "no cgroup v2 hierarchy (test)"
    await fallback.aclose()


SUBREAPER_PROBE = textwrap.dedent(
    """
    import asyncio, ctypes
    from relay_shell.config import ContainmentMode
    from relay_shell.local.containment import ContainmentService

    def child_subreaper() -> bool:
        value = ctypes.c_int(0)
        assert ctypes.CDLL(None).prctl(37, ctypes.byref(value), 0, 0, 0) == 0  # PR_GET_CHILD_SUBREAPER
        return value.value != 0

    async def main() -> None:
        seen = [child_subreaper()]
        first = ContainmentService(ContainmentMode.SUBREAPER)
        second = ContainmentService(ContainmentMode.SUBREAPER)
        seen.append(child_subreaper())
        await first.aclose()
        await first.aclose()  # idempotent: its hold is released once
        seen.append(child_subreaper())
        await second.aclose()
        seen.append(child_subreaper())
        print(seen)

    asyncio.run(main())
    """
)


def test_the_subreaper_flag_lasts_as_long_as_a_subreaper_service() -> None:
    # In a fresh process: the flag is process-wide, and a test runner must not keep it.
    completed = subprocess.run(
        [sys.executable, "-c", SUBREAPER_PROBE], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[False, True, True, False]"


# -- signal dispositions ------------------------------------------------------------------

SIGIGN_PROBE = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from relay_shell.capture import render_capture
    from relay_shell.config import ContainmentMode
    from relay_shell.local.containment import ContainmentService
    from relay_shell.local.pty import spawn_local_pty
    from relay_shell.local.runner import ProcessSpec, run_process

    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN, "the scenario: SIGINT ignored by our parent"
    assert signal.getsignal(signal.SIGQUIT) == signal.SIG_IGN

    async def main() -> None:
        service = ContainmentService(ContainmentMode(sys.argv[1]))
        probe = "grep SigIgn /proc/self/status"
        async with service.contain("exec") as contained:
            result = await run_process(
                ProcessSpec(argv=["/bin/sh", "-c", probe], env=dict(os.environ)),
                timeout_s=10, budget=4096, contained=contained,
            )
        print("exec", render_capture(result.capture).split()[1])
        pty = await spawn_local_pty(probe, cols=80, rows=24, cwd=None, env={}, contained=service.open("pty"))
        output = b""
        while chunk := await pty.read():
            output += chunk
        await pty.close()
        print("pty", output.split()[1].decode())
        await service.aclose()

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("mode", ["auto", "subreaper"])
def test_children_do_not_inherit_an_ignored_sigint_or_sigquit(mode: str) -> None:
    completed = subprocess.run(
        ["/bin/sh", "-c", 'trap \'\' INT QUIT; exec "$0" -c "$1" "$2"', sys.executable, SIGIGN_PROBE, mode],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert completed.returncode == 0, completed.stderr
    masks = dict(line.split() for line in completed.stdout.splitlines())
    for where in ("exec", "pty"):
        ignored = int(masks[where], 16)
        assert ignored & (1 << 1) == 0, f"{where}: SIGINT ignored ({masks[where]})"
        assert ignored & (1 << 2) == 0, f"{where}: SIGQUIT ignored ({masks[where]})"


def test_session_interrupts_work_when_the_test_process_ignores_sigint() -> None:
    """The PTY tests that need ^C, run in a pytest whose parent ignores SIGINT and SIGQUIT."""
    selection = [
        "tests/local/test_pty.py::test_ctrl_c_interrupts_the_foreground_job_and_the_shell_survives",
        "tests/local/test_pty.py::test_kill_without_close_sends_the_signal",
        "tests/tools/test_session_tools.py::test_ctrl_c_interrupts_but_shell_survives",
    ]
    completed = subprocess.run(
        [
            "/bin/sh",
            "-c",
            'trap "" INT QUIT; exec "$@"',
            "sh",
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *selection,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-2000:]
    assert "3 passed" in completed.stdout


async def test_a_leftover_that_ignores_term_is_killed_after_the_grace(service: ContainmentService) -> None:
    marker = unique_sleep()
    async with service.contain("exec") as contained:
        result = await run_process(
            ProcessSpec(
                argv=[
                    "/bin/sh",
                    "-c",
                    f"sh -c 'trap \"\" TERM; exec sleep {marker}' >/dev/null & echo started",
                ],
                env=dict(os.environ),
            ),
            timeout_s=20,
            budget=4096,
            contained=contained,
            kill_grace_s=0.3,
        )
        assert result.left_running == 1
        assert pids_with_marker(marker) == []
    assert render_capture(result.capture) == "started\n"


@pytest.mark.parametrize("shell", ["/bin/sh", "/bin/bash"])
def test_the_environment_cannot_run_code_in_the_hold(shell: str, tmp_path: Path) -> None:
    # Where /bin/sh is bash, an exported function named like a builtin the hold uses would run
    # before the release (outside the cgroup); so would a start-up file. Neither may.
    witness = tmp_path / "ran-in-the-hold"
    (tmp_path / "startup").write_text(f"touch {witness}\n")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "BASH_FUNC_read%%": f"() {{ touch {witness}; }}",
        "ENV": str(tmp_path / "startup"),
        "BASH_ENV": str(tmp_path / "startup"),
    }
    completed = subprocess.run(
        hold_argv(["/usr/bin/env"], input_follows=False, program=shell),
        input=RELEASE_LINE,
        env=env,
        capture_output=True,
        timeout=30,
    )
    assert completed.returncode == 0, completed.stderr
    assert not witness.exists()


async def test_the_command_gets_the_environment_it_would_get_without_the_hold(
    service: ContainmentService, tmp_path: Path
) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PWD": str(tmp_path),
        "A.B": "dotted",  # not an identifier: dash would drop it
        "BASH_FUNC_f%%": "() { echo exported; }",
        "RELAY_HOLD_NEIGHBOUR": "kept",
        "EMPTY": "",
    }
    async with service.contain("exec") as contained:
        result = await run_process(
            ProcessSpec(argv=["/usr/bin/env"], env=env, cwd=tmp_path),
            timeout_s=10,
            budget=65536,
            contained=contained,
        )
    seen = dict(line.split("=", 1) for line in render_capture(result.capture).splitlines())
    extra = set(seen) - set(env)
    assert {name: seen.get(name) for name in env} == env
    assert extra <= {"SHLVL", "_", "OLDPWD"}  # what bash (the hold for odd names) exports


def test_an_odd_name_without_bash_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from relay_shell.local import contained

    monkeypatch.setattr(contained, "HOLD_PROGRAM_ANY_NAME", "/nonexistent/bash")
    assert contained.hold_program({"PATH": "/bin", "A_1": "x"}) == contained.HOLD_PROGRAM
    with pytest.raises(SpawnFailed, match=r"'A\.B' is not a shell identifier"):
        contained.hold_program({"PATH": "/bin", "A.B": "x"})


async def test_a_call_after_the_server_directory_was_released_makes_it_again() -> None:
    # Each call makes only its own cgroup; the server's directory is made again when it is gone
    # (a shutdown released it while this process goes on serving, as tests and restarts do).
    if cgroup_unavailable() is not None:
        pytest.skip("no usable cgroup v2 here; only the cgroup mechanism has the directory")
    service = ContainmentService(ContainmentMode.CGROUP)
    try:
        first = service.open("exec")
        assert isinstance(first, CgroupContained)
        server_directory = first.directory.path.parent
        await first.close(1.0)
        assert not first.directory.path.exists()
        assert cgroups.CgroupDir(server_directory).remove()  # as a shutdown's release does
        assert not server_directory.exists()
        async with service.contain("exec") as second:
            assert isinstance(second, CgroupContained)
            assert second.directory.path.parent == server_directory
            report = await run_process(
                ProcessSpec(argv=["cat", "/proc/self/cgroup"], env=dict(os.environ)),
                timeout_s=10,
                budget=4096,
                contained=second,
            )
        assert report.exit_code == 0
        assert render_capture(report.capture).strip().endswith(second.directory.path.name)
        assert not second.directory.path.exists()
    finally:
        await service.aclose()


def _cgroup_service() -> ContainmentService:
    if cgroup_unavailable() is not None:
        pytest.skip("no usable cgroup v2 here; only the cgroup mechanism moves a process")
    return ContainmentService(ContainmentMode.CGROUP)


async def test_the_move_into_the_cgroup_leaves_the_event_loop_free(monkeypatch: pytest.MonkeyPatch) -> None:
    # The write to cgroup.procs can wait for the kernel (an RCU grace period): it runs in a
    # worker thread, so the loop serves other calls meanwhile.
    service = _cgroup_service()
    loop_thread = threading.get_ident()
    movers: list[int] = []
    real_add = cgroups.CgroupDir.add

    def add(directory: cgroups.CgroupDir, pid: int) -> None:
        movers.append(threading.get_ident())
        real_add(directory, pid)

    monkeypatch.setattr(cgroups.CgroupDir, "add", add)
    try:
        async with service.contain("exec") as contained:
            report = await run_process(
                ProcessSpec(argv=["cat", "/proc/self/cgroup"], env=dict(os.environ)),
                timeout_s=10,
                budget=4096,
                contained=contained,
            )
            name = contained.directory.path.name if isinstance(contained, CgroupContained) else "?"
        assert render_capture(report.capture).strip().endswith(name)
        assert len(movers) == 1
        assert movers[0] != loop_thread
    finally:
        await service.aclose()


async def test_a_call_cancelled_while_its_child_is_moved_runs_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    service = _cgroup_service()
    moving, release = threading.Event(), threading.Event()
    real_add = cgroups.CgroupDir.add

    def slow_add(directory: cgroups.CgroupDir, pid: int) -> None:
        moving.set()
        release.wait(10)
        real_add(directory, pid)

    monkeypatch.setattr(cgroups.CgroupDir, "add", slow_add)
    witness = tmp_path / "ran"
    marker = unique_sleep()
    try:
        async with service.contain("exec") as contained:
            call = asyncio.create_task(
                run_process(
                    ProcessSpec(  # a $0 of its own: not folded, so it is held and moved by the server
                        argv=["/bin/sh", "-c", f"touch {witness}; sleep {marker}", "sh"], env=dict(os.environ)
                    ),
                    timeout_s=30,
                    budget=4096,
                    contained=contained,
                )
            )
            assert await asyncio.to_thread(moving.wait, 10)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            release.set()
        assert not witness.exists()
        assert pids_with_marker(marker) == []
    finally:
        release.set()
        await service.aclose()
