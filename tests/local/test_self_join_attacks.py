"""Attacks on the self-join, each against a real process in a real cgroup.

The attacker controls TEXT, the call's environment, its stdin and its timing, not the
server. Classes tried: TEXT that would be parsed or run before the join (quoting, comments,
here-documents, backslash-newline, CR, aliases, options, long texts); environments that
would run code in the joining shell (start-up files, tracing, the dynamic loader); cgroup
paths that would bend the join's quoting; a TEXT exit that would pass for a failed join and
the reverse; what a call leaves behind when it ends early; and cgroup paths reused by a
later containment.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay_shell.capture import render_capture
from relay_shell.config import ContainmentMode
from relay_shell.errors import ExecTimeout, SpawnFailed
from relay_shell.local import cgroups
from relay_shell.local.contained import (
    JOIN_LINE,
    MAX_ARG_STRLEN,
    CgroupContained,
    is_dash,
    join_argv,
    loader_variable,
)
from relay_shell.local.containment import ContainmentService
from relay_shell.local.runner import ProcessSpec, run_process
from tests.conftest import pids_with_marker
from tests.local.test_exec_timing_attacks import children, descriptors, nothing_left, until
from tests.local.test_folded_hold import alone, child_env
from tests.local.test_self_join import run_in, run_in_fresh, unified_line

SH = "/bin/sh"
pytestmark = pytest.mark.skipif(not is_dash(SH), reason="the self-join applies only where /bin/sh is dash")


@contextlib.contextmanager
def refusing(contained: CgroupContained) -> Iterator[None]:
    """Point ``contained`` at a ``domain invalid`` cgroup (below a threaded one): the kernel
    refuses any process there, so every join fails."""
    real = contained.directory
    threaded = real.path / "threaded"
    threaded.mkdir()
    (threaded / "cgroup.type").write_text("threaded")
    (threaded / "invalid").mkdir()
    contained.directory = cgroups.CgroupDir(threaded / "invalid", f"{real.hierarchy_path}/threaded/invalid")
    try:
        yield
    finally:
        contained.directory = real


def recorded(witness: Path) -> list[str]:
    """The cgroup v2 lines the writers of ``witness`` recorded (none when nothing ran)."""
    return unified_line(witness.read_text()) if witness.exists() else []


# TEXTs that would run something (recording where) if any of it ran before, or instead of, the join.
def hostile_texts(witness: Path) -> dict[str, str]:
    record = f"cat /proc/self/cgroup >>{witness}"
    return {
        "syntax error": f"{record}\n)",
        "closes a single quote": f"'\n{record}\n'",
        "closes a double quote": f'"\n{record}\n"',
        "backslash-newline first": f"\\\n{record}",
        "comment first": f"# {record}\n{record}",
        "carriage returns": f"\r{record}\r\n{record}",
        "here-document first": f"cat <<EOF\n$({record})\nEOF\n{record}",
        "keyword closing nothing": f"fi; {record}",
        "brace closing nothing": f"}}\n{record}",
        "alias": f"alias x='{record}'\nx",
        "set -ex": f"set -ex; {record}",
        "leading blank then option": f" -x; {record}",
        "long text": ":\n" * 20000 + record,
        "trap on exit": f"trap '{record}' EXIT",
        "exit 125 after running": f"{record}; exit 125",
    }


TEXTS = list(hostile_texts(Path("w")))


@pytest.mark.parametrize("name", TEXTS)
async def test_nothing_of_text_runs_when_the_join_fails(
    service: ContainmentService, tmp_path: Path, name: str
) -> None:
    # In a cgroup that refuses the process, the join runs (and fails) before any of TEXT is
    # parsed: a syntax error included, the call fails as not contained and nothing ran.
    witness = tmp_path / "ran"
    text = hostile_texts(witness)[name]
    async with service.contain("exec") as contained:
        assert isinstance(contained, CgroupContained)
        assert join_argv([SH, "-c", text], contained.directory.path / "cgroup.procs") is not None
        with refusing(contained), pytest.raises(SpawnFailed, match="failed to join it"):
            await run_in(contained, text, child_env())
    assert not witness.exists()


@pytest.mark.parametrize("name", TEXTS)
async def test_text_runs_as_it_does_alone_and_only_inside(
    service: ContainmentService, tmp_path: Path, name: str
) -> None:
    witness = tmp_path / "ran"
    text = hostile_texts(witness)[name]
    expected, _ = alone(text, child_env())
    alone_lines = len(recorded(witness))
    witness.unlink(missing_ok=True)
    async with service.contain("exec") as contained:
        assert isinstance(contained, CgroupContained)
        report = await run_in(contained, text, child_env())
        assert report.exit_code == expected, render_capture(report.capture)
        assert recorded(witness) == [f"0::{contained.directory.hierarchy_path}"] * alone_lines


def start_up_envs(tmp_path: Path, witness: Path) -> dict[str, dict[str, str]]:
    """Environments that would run a script (recording where) in a shell that honoured them."""
    script = tmp_path / "startup"
    record = f"$(cat /proc/self/cgroup >>{witness})"
    return {
        "ENV": child_env(ENV=str(script)),
        "ENV with a substitution": child_env(ENV=record),
        "BASH_ENV": child_env(BASH_ENV=str(script)),
        "PS4 with SHELLOPTS=xtrace": child_env(PS4=record, SHELLOPTS="xtrace", BASHOPTS="xtrace"),
        "POSIXLY_CORRECT": child_env(POSIXLY_CORRECT="1", ENV=str(script)),
        "built-in names as variables": child_env(echo=record, exit=record, unset=record, PATH_=record),
        "the hold's variable": child_env(RELAY_SHELL_HOLD=record),
        "CDPATH, HOME, PPID, PS1": child_env(CDPATH=str(tmp_path), HOME=str(tmp_path), PPID="1", PS1=record),
        "an OPTIND dash refuses at start-up": child_env(OPTIND="x", ENV=str(script)),
    }


ENVS = list(start_up_envs(Path("t"), Path("w")))


@pytest.mark.parametrize("name", ENVS)
async def test_an_environment_runs_nothing_before_or_instead_of_the_join(
    service: ContainmentService, tmp_path: Path, name: str
) -> None:
    witness = tmp_path / "ran"
    env = start_up_envs(tmp_path, witness)[name]
    (tmp_path / "startup").write_text(f"cat /proc/self/cgroup >>{witness}\n")
    async with service.contain("exec") as contained:
        assert isinstance(contained, CgroupContained)
        report = await run_in(contained, "cat /proc/self/cgroup", env)
        expected, _ = alone("cat /proc/self/cgroup", env)
        assert report.exit_code == expected, render_capture(report.capture)
        if expected == 0:
            assert unified_line(render_capture(report.capture)) == [
                f"0::{contained.directory.hierarchy_path}"
            ]
    assert not witness.exists()


PRELOAD_SOURCE = r"""
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
__attribute__((constructor)) static void at_load(void) {
    const char *out = getenv("PRELOAD_WITNESS");
    char buffer[4096];
    int in = open("/proc/self/cgroup", O_RDONLY);
    ssize_t size = in >= 0 ? read(in, buffer, sizeof buffer) : 0;
    int fd = out ? open(out, O_WRONLY | O_CREAT | O_APPEND, 0644) : -1;
    if (fd >= 0 && size > 0) write(fd, buffer, size);
    if (getenv("PRELOAD_MARKER") && fork() == 0) {
        unsetenv("LD_PRELOAD");
        setsid();
        execl("/bin/sleep", "sleep", getenv("PRELOAD_MARKER"), (char *)0);
        _exit(0);
    }
}
"""


@pytest.fixture(scope="module")
def preload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A library whose constructor records its cgroup and starts a detached ``sleep``."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the preloaded library")
    directory = tmp_path_factory.mktemp("preload")
    (directory / "preload.c").write_text(PRELOAD_SOURCE)
    library = directory / "preload.so"
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-o", str(library), str(directory / "preload.c")],
        check=True,
        timeout=60,
    )
    return library


LOADER_CASES = {
    "sh -c (the self-join)": ([SH, "-c", "cat /proc/self/cgroup"], {}),
    "sh -c with a name dash drops (the bash hold)": ([SH, "-c", "cat /proc/self/cgroup"], {"A.B": "1"}),
    "a program (the dash hold)": (["cat", "/proc/self/cgroup"], {}),
}


@pytest.mark.parametrize("case", list(LOADER_CASES))
async def test_code_the_loader_runs_at_exec_is_inside_the_cgroup(
    service: ContainmentService, tmp_path: Path, preload: Path, case: str
) -> None:
    # A preloaded constructor runs in the first program executed, before its main: in the
    # joining shell or the hold, that was before the join. It must run in the call's cgroup,
    # and what it starts must not outlive the call.
    argv, extra = LOADER_CASES[case]
    witness = tmp_path / "loaded"
    marker = f"300.{time.monotonic_ns()}"
    env = child_env(LD_PRELOAD=str(preload), PRELOAD_WITNESS=str(witness), PRELOAD_MARKER=marker, **extra)
    assert loader_variable(env) is not None
    try:
        async with service.contain("exec") as contained:
            assert isinstance(contained, CgroupContained)
            report = await run_process(
                ProcessSpec(argv=argv, env=env),
                timeout_s=20,
                budget=1 << 16,
                contained=contained,
                kill_grace_s=0.5,
            )
            inside = f"0::{contained.directory.hierarchy_path}"
            assert report.exit_code == 0, render_capture(report.capture)
            assert unified_line(render_capture(report.capture)) == [inside]
            lines = recorded(witness)
            assert lines and set(lines) == {inside}
        assert pids_with_marker(marker) == []
    finally:
        for pid in pids_with_marker(marker):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize(
    ("name", "loader"),
    [
        ("LD_PRELOAD", True),
        ("LD_AUDIT", True),
        ("LD_LIBRARY_PATH", True),
        ("LD_BIND_NOW", True),
        ("GLIBC_TUNABLES", True),
        ("GCONV_PATH", True),
        ("LOCPATH", True),
        ("OLD_PRELOAD", False),
        ("ld_preload", False),
        ("LANG", False),
    ],
)
def test_loader_variables_are_named(name: str, loader: bool) -> None:
    assert (loader_variable({"PATH": "/bin", name: "x"}) == name) is loader


async def test_a_loader_variable_with_a_name_dash_drops_keeps_its_environment(
    service: ContainmentService, preload: Path
) -> None:
    env = child_env(LD_PRELOAD=str(preload), **{"A.B": "kept"})
    async with service.contain("exec") as contained:
        report = await run_process(
            ProcessSpec(argv=["env"], env=env), timeout_s=20, budget=1 << 16, contained=contained
        )
    assert "A.B=kept" in render_capture(report.capture).splitlines()


async def test_a_loader_variable_in_a_cgroup_that_refuses_runs_nothing_and_leaves_nothing(
    service: ContainmentService, tmp_path: Path, preload: Path
) -> None:
    witness = tmp_path / "loaded"
    await run_in_fresh(service)
    before, others = descriptors(), children()
    async with service.contain("exec") as contained:
        assert isinstance(contained, CgroupContained)
        with refusing(contained), pytest.raises(SpawnFailed, match="cannot move the process into its cgroup"):
            await run_in(contained, "true", child_env(LD_PRELOAD=str(preload), PRELOAD_WITNESS=str(witness)))
    assert not witness.exists()
    await until(lambda: not children(others), "the child that failed to join is reaped")
    await until(lambda: descriptors() == before, "no cgroup.procs descriptor, pidfd or pipe left open")


NAMES = {
    "quotes, blanks and expansions": 'a\'b "c" $(touch W) `touch W` \\ %; & | > <',
    "a lone single quote": "'",
    "bytes that are not UTF-8": os.fsdecode(b"x\xff\xfe"),
    "a leading dash": "-x",
}


@pytest.mark.parametrize("name", list(NAMES))
async def test_a_cgroup_path_of_any_name_is_joined_exactly(
    service: ContainmentService, tmp_path: Path, name: str
) -> None:
    out = tmp_path / "where"
    async with service.contain("exec") as contained:
        assert isinstance(contained, CgroupContained)
        real = contained.directory
        odd = cgroups.CgroupDir(real.path / NAMES[name], f"{real.hierarchy_path}/{NAMES[name]}")
        odd.path.mkdir()
        contained.directory = odd
        try:
            report = await run_in(contained, f"cat /proc/self/cgroup >{out}", child_env())
        finally:
            contained.directory = real
        assert report.exit_code == 0, render_capture(report.capture)
        lines = [line for line in out.read_bytes().splitlines() if line.startswith(b"0::")]
        assert lines == [b"0::" + os.fsencode(odd.hierarchy_path)]
    assert not (tmp_path / "W").exists() and not Path("W").exists()


async def test_text_that_enters_a_cgroup_of_its_own_and_exits_125_is_a_result(
    service: ContainmentService,
) -> None:
    # Below the call's cgroup is still inside it: a child that exits there was contained.
    if os.geteuid() != 0:
        pytest.skip("only root (or the owner of the subtree) can move itself between cgroups")
    async with service.contain("exec") as contained:
        assert isinstance(contained, CgroupContained)
        sub = contained.directory.path / "mine"
        text = f"mkdir {sub} && echo 0 >{sub}/cgroup.procs && exit 125"
        report = await run_in(contained, text, child_env())
    assert (report.exit_code, report.signal) == (125, None)


async def test_an_exec_that_exits_125_is_a_result(service: ContainmentService) -> None:
    async with service.contain("exec") as contained:
        assert isinstance(contained, CgroupContained)
        report = await run_in(contained, "exec sh -c 'exit 125'", child_env(), b"in")
    assert report.exit_code == 125


async def test_a_failed_join_with_more_input_than_a_pipe_holds_leaves_nothing(
    service: ContainmentService, tmp_path: Path
) -> None:
    witness = tmp_path / "ran"
    await run_in_fresh(service)
    before, others = descriptors(), children()
    async with service.contain("exec") as contained:
        assert isinstance(contained, CgroupContained)
        with refusing(contained), pytest.raises(SpawnFailed, match="failed to join it"):
            await run_in(contained, f"touch {witness}; cat", child_env(), b"x" * (1 << 18))
        directory = contained.directory.path
    assert not witness.exists()
    await nothing_left(directory, others, before)


@pytest.mark.parametrize("how", ["timed out", "cancelled"])
async def test_a_call_flooding_output_ended_early_leaves_nothing(
    service: ContainmentService, how: str
) -> None:
    marker = f"300.{time.monotonic_ns()}"
    await run_in_fresh(service)
    before, others = descriptors(), children()
    async with service.contain("exec") as contained:
        assert isinstance(contained, CgroupContained)
        text = f"setsid sleep {marker} & yes flood"
        call = asyncio.ensure_future(
            run_in(contained, text, child_env(), None, 0.5 if how == "timed out" else 30)
        )
        await until(lambda: pids_with_marker(marker) != [], "TEXT runs")
        if how == "cancelled":
            call.cancel()
        with pytest.raises(asyncio.CancelledError if how == "cancelled" else ExecTimeout):
            await asyncio.wait_for(call, 10)
        directory = contained.directory.path
    assert pids_with_marker(marker) == []
    await nothing_left(directory, others, before)


async def test_no_two_containments_of_one_process_share_a_cgroup_path() -> None:
    # A child still on its way into a removed cgroup must never find a later call's cgroup at
    # that path: the numbers are the process's, not a service's.
    first, second = ContainmentService(ContainmentMode.CGROUP), ContainmentService(ContainmentMode.CGROUP)
    seen: set[Path] = set()
    try:
        for _ in range(2):
            for service in (first, second):
                async with service.contain("exec") as contained:
                    assert isinstance(contained, CgroupContained)
                    assert contained.directory.path not in seen
                    seen.add(contained.directory.path)
        a, b = first.open("exec"), second.open("exec")  # at the same time: no EEXIST either
        assert isinstance(a, CgroupContained) and isinstance(b, CgroupContained)
        assert a.directory.path != b.directory.path
        await a.close(0.5)
        await b.close(0.5)
    finally:
        await first.aclose()
        await second.aclose()


def test_a_long_text_joins_up_to_the_kernels_bound_and_is_held_beyond() -> None:
    procs = Path("/sys/fs/cgroup/x/cgroup.procs")
    head = len(JOIN_LINE.format(procs=str(procs))) + 1
    fits = "#" * (MAX_ARG_STRLEN - 1 - head)
    assert join_argv([SH, "-c", fits], procs) is not None
    assert join_argv([SH, "-c", fits + "#"], procs) is None
    assert join_argv([SH, "-c", "\ud800" * (MAX_ARG_STRLEN // 4)], procs) is None


@pytest.mark.parametrize("text", ["\ud800" * (MAX_ARG_STRLEN // 4), "echo a\x00b"], ids=["surrogates", "NUL"])
async def test_a_text_that_cannot_be_passed_fails_the_spawn(service: ContainmentService, text: str) -> None:
    async with service.contain("exec") as contained:
        assert isinstance(contained, CgroupContained)
        with pytest.raises(SpawnFailed, match="cannot start"):
            await run_in(contained, text, child_env())


async def test_a_long_text_beyond_the_join_runs_held_and_inside(service: ContainmentService) -> None:
    async with service.contain("exec") as contained:
        assert isinstance(contained, CgroupContained)
        text = "#" * (MAX_ARG_STRLEN - 64) + "\ncat /proc/self/cgroup"
        assert join_argv([SH, "-c", text], contained.directory.path / "cgroup.procs") is None
        report = await run_in(contained, text, child_env())
        assert unified_line(render_capture(report.capture)) == [f"0::{contained.directory.hierarchy_path}"]
