"""The held exec path under attack: TEXT, the environment, stdin and timing chosen by the caller.

Where ``/bin/sh`` is dash a ``/bin/sh -c TEXT`` child is held by its own shell (the folded
hold); other environments take the two-exec hold. Each class here is run as it would run
alone and through the runner in a cgroup containment, and must behave the same; nothing of
TEXT may run before the move; a torn-down call never releases, moves or reaps anything it
should not; nothing leaks (descriptors, pidfds, cgroup directories, children).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay_shell.capture import SplitCapture, render_capture
from relay_shell.errors import InvalidInput, SpawnFailed
from relay_shell.local.commands import prepare_exec
from relay_shell.local.contained import hold_argv, hold_program, is_dash, join_argv
from relay_shell.local.containment import ContainmentService
from relay_shell.local.runner import ProcessSpec, run_process
from tests.local.test_folded_hold import alone, child_env, contained_run, one_line_further

SH = "/bin/sh"
MAX_ARG_STRLEN = os.sysconf("SC_PAGE_SIZE") * 32
pytestmark = pytest.mark.skipif(not is_dash(SH), reason="the fold applies only where /bin/sh is dash")


def status_of(exit_code: int, signal: str | None) -> int:
    """The report's status as ``subprocess`` gives it (``-N`` for a signal)."""
    return exit_code if signal is None else -(exit_code - 128)


# -- TEXT ---------------------------------------------------------------------------------

ODD_TEXTS = {
    "empty": "",
    "only a comment": "# nothing here",
    "only whitespace": "   \n\t \n",
    "ends with a backslash": "echo a\\",
    "ends with a backslash-newline": "echo a \\\n",
    "starts with #!": "#!/bin/bash\necho shebang $0",
    "here document named as the hold's variable": "cat <<RELAY_SHELL_HOLD\nx\nRELAY_SHELL_HOLD",
    "here document named 125": "cat <<125\nexit 125\n125\necho after",
    "here document left open": "cat <<EOF\nno end",
    "stdin closed": "exec 0<&-; cat; echo $?",
    "stdout closed": "exec 1>&-; echo x; echo y >&2",
    "every low fd closed": "exec 0<&- 1>&- 2>&-; exit 3",
    "TERM ignored": "trap '' TERM; kill -TERM $$; echo survived",
    "reads stdin to the end": 'cat; read -r x; echo "[$?]"',
    "a quote left open over the hold": "'\necho x",
    "unset and exit redefined as functions": "unset() { echo u; }; exit() { echo e; }; unset x; exit 4",
    "killed by a signal": "kill -KILL $$",
    "carriage return line ends": "echo a\r\necho b\r",
}


@pytest.mark.parametrize("text", list(ODD_TEXTS.values()), ids=list(ODD_TEXTS))
async def test_odd_texts_behave_as_alone(service: ContainmentService, text: str) -> None:
    env = child_env()
    expected = alone(text, env)
    report, _ = await contained_run(service, text, env)
    status = status_of(report.exit_code, report.signal)
    assert (status, one_line_further(render_capture(report.capture))) == expected


STDIN_TEXTS = {
    "reads it all": "cat",
    "one line, then the rest": 'read -r first; echo "[$first]"; cat',
    "closes it first": "exec 0<&-; cat; echo $?",
    "reads none of it": "echo ignored",
    "counts it": "wc -c",
}


@pytest.mark.parametrize("data", [b"", b"one\n\nlast", b"y" * 200_000], ids=len)
@pytest.mark.parametrize("text", list(STDIN_TEXTS.values()), ids=list(STDIN_TEXTS))
async def test_input_is_delivered_as_alone(service: ContainmentService, text: str, data: bytes) -> None:
    env = child_env()
    expected = alone(text, env, data)
    report, _ = await contained_run(service, text, env, stdin=data)
    assert (report.exit_code, render_capture(report.capture)) == expected


def test_a_nul_in_text_is_invalid_naming_the_argument() -> None:
    with pytest.raises(InvalidInput, match="command"):
        prepare_exec("echo a\x00b", stdin="", env=None, cwd="", use_shell=True, merge_stderr=True)


async def test_a_nul_below_the_tool_layer_runs_nothing(service: ContainmentService, tmp_path: Path) -> None:
    witness = tmp_path / "ran"
    async with service.contain("exec") as contained:
        with pytest.raises(SpawnFailed, match="null"):
            await run_process(
                ProcessSpec(argv=[SH, "-c", f"touch {witness}\x00"], env=child_env()),
                timeout_s=10,
                budget=4096,
                contained=contained,
            )
    assert not witness.exists()


@pytest.mark.parametrize("extra", [0, 1, 64, 200])
async def test_a_text_at_the_kernels_argument_limit_runs_as_alone(
    service: ContainmentService, extra: int
) -> None:
    # The kernel bounds one argument string (MAX_ARG_STRLEN, NUL included): the fold adds its
    # line to the text, so a text close to the bound must not be folded into an E2BIG.
    text = "echo ok #"
    text += "x" * (MAX_ARG_STRLEN - 1 - extra - len(text))
    assert alone(text, child_env()) == (0, "ok\n")
    report, _ = await contained_run(service, text, child_env())
    assert (report.exit_code, render_capture(report.capture)) == (0, "ok\n")


async def test_a_text_over_the_kernels_argument_limit_fails_as_alone(service: ContainmentService) -> None:
    text = "echo ok #" + "x" * MAX_ARG_STRLEN
    with pytest.raises(OSError, match="Argument list too long"):
        alone(text, child_env())
    with pytest.raises(SpawnFailed, match="Argument list too long"):
        await contained_run(service, text, child_env())


def test_the_fold_keeps_within_the_argument_limit() -> None:
    fits = "x" * (MAX_ARG_STRLEN - 1)  # alone it fits exactly; folded it would not
    procs = Path("/sys/fs/cgroup/relay-shell-1-2/exec-3/cgroup.procs")
    assert join_argv([SH, "-c", fits], procs) is None
    assert join_argv([SH, "-c", "é" * (MAX_ARG_STRLEN // 2 - 1)], procs) is None
    folded = join_argv([SH, "-c", "x" * 1000], procs)
    assert folded is not None and len(folded[2].encode()) < MAX_ARG_STRLEN


# -- the environment ----------------------------------------------------------------------


def hostile_env(tmp_path: Path, witness: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """Environments that change how a shell parses, reads or finds commands; each would touch
    ``witness`` if it ran code of its own."""
    startup = tmp_path / "startup"
    startup.write_text(f"touch {witness}\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("read", "unset", "exit", "exec", "IFS=", "cat", "echo", "printf"):
        (bin_dir / name).write_text(f"#!/bin/sh\ntouch {witness}\n")
        (bin_dir / name).chmod(0o755)
    path = child_env()["PATH"]
    yield "IFS", child_env(IFS="\n R_ELAY=")
    yield "PS4 with a command substitution", child_env(PS4=f"$(touch {witness})+ ")
    yield "ENV and BASH_ENV", child_env(ENV=str(startup), BASH_ENV=str(startup))
    yield "PATH with %builtin", child_env(PATH=f"{bin_dir}:%builtin:{path}")
    yield "PATH with only our programs", child_env(PATH=str(bin_dir))
    yield "locale", child_env(LC_ALL="xx_YY.bogus", LANG="", LC_CTYPE="C", POSIXLY_CORRECT="1")
    yield "HOME and CDPATH", child_env(HOME="/nonexistent", CDPATH="/", OLDPWD="/", PWD="/nonexistent")
    yield "options variables", child_env(SHELLOPTS="xtrace", POSIXLY_CORRECT="y", OPTIND="9", MAIL="/x")
    yield "the hold's variable", child_env(RELAY_SHELL_HOLD="$(touch x)")


@pytest.mark.parametrize(
    "name",
    [
        "IFS",
        "PS4 with a command substitution",
        "ENV and BASH_ENV",
        "PATH with %builtin",
        "PATH with only our programs",
        "locale",
        "HOME and CDPATH",
        "options variables",
        "the hold's variable",
    ],
)
async def test_a_hostile_environment_runs_nothing_and_changes_nothing(
    service: ContainmentService, tmp_path: Path, name: str
) -> None:
    witness = tmp_path / "ran"
    env = dict(hostile_env(tmp_path, witness))[name]
    text = 'set -x; read -r line; echo "[$line] [$IFS]"; unset line; exit 5'
    expected = alone(text, env, b"in put\n")
    ran_alone = witness.exists()  # TEXT's own doing (set -x expands PS4, PATH finds our echo)
    witness.unlink(missing_ok=True)
    report, _ = await contained_run(service, text, env, stdin=b"in put\n")
    output = render_capture(report.capture)
    # dash numbers a syntax error in PS4 by the prompt's own text, which the fold does not move
    assert report.exit_code == expected[0]
    assert expected[1] in (one_line_further(output), output)
    assert witness.exists() == ran_alone
    witness.unlink(missing_ok=True)
    procs = tmp_path / "no-such-cgroup" / "cgroup.procs"
    joining = join_argv([SH, "-c", text], procs)
    assert joining is not None
    completed = subprocess.run(joining, input=b"", capture_output=True, env=env, timeout=30)
    assert (completed.returncode, completed.stdout) == (125, b"")
    assert completed.stderr == f"{SH}: 1: cannot create {procs}: Directory nonexistent\n".encode()
    assert not witness.exists()  # a failed join: neither the join's line nor TEXT ran anything


async def test_a_function_in_the_environment_is_never_imported_by_the_hold(
    service: ContainmentService, tmp_path: Path
) -> None:
    # A name that is not an identifier forces the two-exec hold (bash -p): an exported
    # function named like the hold's built-ins must not replace them, and still reaches TEXT.
    witness = tmp_path / "ran"
    body = f"() {{ touch {witness}; }}"
    env = child_env(**{f"BASH_FUNC_{name}%%": body for name in ("read", "unset", "exec", "exit")})
    async with service.contain("exec") as contained:
        report = await run_process(
            ProcessSpec(argv=["/bin/grep", "-c", "^BASH_FUNC_", "/proc/self/environ"], env=env),
            timeout_s=20,
            budget=4096,
            contained=contained,
        )
    assert (report.exit_code, render_capture(report.capture)) == (0, "4\n")  # grep splits at NUL too
    assert not witness.exists()


# -- exit statuses: folded, two-exec and direct the same --------------------------------


@pytest.mark.parametrize(
    "text", ["exit 0", "exit 3", "exit 125", "exit 255", "kill -TERM $$", "kill -KILL $$"]
)
async def test_exit_status_is_the_same_behind_every_hold(service: ContainmentService, text: str) -> None:
    statuses = set()
    for env, argv in (
        (child_env(), [SH, "-c", text]),  # folded
        (child_env(**{"A.B": "1"}), [SH, "-c", text]),  # two-exec, bash -p
        (child_env(), ["/usr/bin/env", SH, "-c", text]),  # two-exec, dash: as use_shell=false runs it
    ):
        async with service.contain("exec") as contained:
            report = await run_process(
                ProcessSpec(argv=argv, env=env), timeout_s=20, budget=4096, contained=contained
            )
        statuses.add((report.exit_code, report.signal, render_capture(report.capture)))
    assert len(statuses) == 1, statuses


@pytest.mark.parametrize("text", ["-x", "+x", "--", "-", "-o", "-e\necho hi", "-c", "+"])
async def test_a_text_that_reads_as_options_behaves_as_alone(service: ContainmentService, text: str) -> None:
    # dash reads a -c argument that starts with - or + as more options, and never runs it.
    env = child_env()
    expected = alone(text, env)
    assert expected[0] == 2
    report, _ = await contained_run(service, text, env)
    assert (report.exit_code, render_capture(report.capture)) == expected


async def test_a_shell_reached_through_a_link_is_not_folded(
    service: ContainmentService, tmp_path: Path
) -> None:
    # A link to dash when the call is prepared may name bash by the time it is executed (a
    # concurrent call can swap it), and bash runs BASH_ENV before the hold's first line.
    witness = tmp_path / "ran"
    startup = tmp_path / "startup"
    startup.write_text(f"touch {witness}\n")
    link = tmp_path / "shell"  # not "sh": bash started as sh reads no BASH_ENV
    link.symlink_to(os.path.realpath(SH))
    env = child_env(BASH_ENV=str(startup))
    async with service.contain("exec") as contained:
        launch = contained.launch([str(link), "-c", "true"], env=env, cwd=None, input_follows=False)
    link.unlink()
    link.symlink_to("/bin/bash")
    completed = subprocess.run(launch.argv, input=b"", capture_output=True, env=env, timeout=30)
    assert completed.returncode == 125  # never released: nothing ran
    assert not witness.exists()


def test_the_two_exec_hold_in_bash_reads_nothing_of_the_environment_first(tmp_path: Path) -> None:
    # bash -p: no BASH_ENV or ENV file, no SHELLOPTS (xtrace would expand PS4), no function.
    witness = tmp_path / "ran"
    startup = tmp_path / "startup"
    startup.write_text(f"touch {witness}\n")
    env = child_env(
        BASH_ENV=str(startup),
        ENV=str(startup),
        SHELLOPTS="xtrace:errexit",
        BASHOPTS="extdebug",
        PS4=f"$(touch {witness})+ ",
        **{f"BASH_FUNC_{name}%%": f"() {{ touch {witness}; }}" for name in ("read", "unset", "exit", "exec")},
    )
    argv = hold_argv(["/usr/bin/env"], input_follows=False, program=hold_program(env))
    assert argv[0] == "/bin/bash"
    completed = subprocess.run(argv, input=b"", capture_output=True, env=env, timeout=30)
    assert (completed.returncode, completed.stdout, completed.stderr) == (125, b"", b"")
    assert not witness.exists()
    completed = subprocess.run(argv, input=b"\n", capture_output=True, env=env, timeout=30)
    assert completed.returncode == 0 and b"BASH_FUNC_read%%=" in completed.stdout
    assert not witness.exists()


@pytest.mark.parametrize(
    "text", ["echo out; echo err >&2; exit 3", "relay-shell-no-such-command", "echo a; if"]
)
async def test_split_streams_are_as_alone(service: ContainmentService, text: str) -> None:
    env = child_env()
    completed = subprocess.run(
        [SH, "-c", text], stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=30
    )
    async with service.contain("exec") as contained:
        report = await run_process(
            ProcessSpec(argv=[SH, "-c", text], env=env, merge_stderr=False),
            timeout_s=20,
            budget=4096,
            contained=contained,
        )
    capture = report.capture
    assert isinstance(capture, SplitCapture)
    assert report.exit_code == completed.returncode
    assert capture.stdout.render() == completed.stdout.decode()
    assert one_line_further(capture.stderr.render()) == completed.stderr.decode()


@pytest.mark.parametrize("path", ["bin", "bin:/usr/bin", ":/nonexistent", "./bin"])
async def test_a_relative_path_entry_is_searched_from_the_calls_directory(
    service: ContainmentService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    # As execvp in the child does: relative PATH entries (an empty one is ".") name
    # directories under the child's working directory, not the server's.
    workdir, elsewhere = tmp_path / "work", tmp_path / "server"
    for directory in (workdir, elsewhere):
        (directory / "bin").mkdir(parents=True)
    program = "relay-shell-probe"
    target = workdir / ("bin" if path != ":/nonexistent" else "") / program
    target.write_text("#!/bin/sh\necho found\n")
    target.chmod(0o755)
    decoy = elsewhere / "bin" / program
    decoy.write_text("#!/bin/sh\necho decoy\n")
    decoy.chmod(0o755)
    monkeypatch.chdir(elsewhere)
    env = child_env(PATH=path)
    direct = subprocess.run([program], cwd=workdir, env=env, capture_output=True, timeout=30)
    assert (direct.returncode, direct.stdout) == (0, b"found\n")
    async with service.contain("exec") as contained:
        report = await run_process(
            ProcessSpec(argv=[program], env=env, cwd=workdir), timeout_s=20, budget=4096, contained=contained
        )
    assert (report.exit_code, render_capture(report.capture)) == (0, "found\n")
    target.unlink()  # now only the server's directory has it: the child cannot find it
    with pytest.raises(FileNotFoundError):
        subprocess.run([program], cwd=workdir, env=env, capture_output=True, timeout=30)
    async with service.contain("exec") as contained:
        with pytest.raises(SpawnFailed, match="No such file"):
            await run_process(
                ProcessSpec(argv=[program], env=env, cwd=workdir),
                timeout_s=20,
                budget=4096,
                contained=contained,
            )


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"echo ran-as-a-script\n", "Exec format error"),  # the shell's exec would run it with sh
        (b"#!/nonexistent/interpreter\necho ran\n", "No such file"),
        (b"#!relative-interpreter\necho ran\n", "No such file"),
        (b"", "Exec format error"),
    ],
)
async def test_a_program_the_kernel_cannot_execute_fails_to_start_as_alone(
    service: ContainmentService, tmp_path: Path, content: bytes, error: str
) -> None:
    program = tmp_path / "program"
    program.write_bytes(content)
    program.chmod(0o755)
    env = child_env(PATH=f"{tmp_path}:{child_env()['PATH']}")
    for argv0 in (str(program), "program"):
        with pytest.raises(OSError, match=error):
            subprocess.run([argv0], env=env, cwd=tmp_path, capture_output=True, timeout=30)
        async with service.contain("exec") as contained:
            with pytest.raises(SpawnFailed, match=error):
                await run_process(
                    ProcessSpec(argv=[argv0], env=env, cwd=tmp_path),
                    timeout_s=20,
                    budget=4096,
                    contained=contained,
                )


async def test_programs_the_kernel_can_execute_still_run(service: ContainmentService, tmp_path: Path) -> None:
    scripts = {
        "absolute": b"#!/bin/sh\necho absolute\n",
        "with-env": b"#! /usr/bin/env sh\necho with-env\n",
        "relative": b"#!sh-copy\necho relative\n",  # the interpreter is found from the cwd, as the kernel does
    }
    (tmp_path / "sh-copy").symlink_to(os.path.realpath(SH))
    for name, content in scripts.items():
        (tmp_path / name).write_bytes(content)
        (tmp_path / name).chmod(0o755)
        async with service.contain("exec") as contained:
            report = await run_process(
                ProcessSpec(argv=[f"./{name}"], env=child_env(), cwd=tmp_path),
                timeout_s=20,
                budget=4096,
                contained=contained,
            )
        assert (report.exit_code, render_capture(report.capture)) == (0, f"{name}\n")
