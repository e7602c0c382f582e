"""The hold folded into dash's own ``-c`` text: TEXT behaves as it does alone, and runs only contained.

Each case runs TEXT twice with the same environment: alone (``/bin/sh -c TEXT``, nothing of
ours) and through the runner in a cgroup containment (where ``/bin/sh`` is dash, folded).
Exit status and output must be the same, except the line numbers in dash's own messages,
which are one more (the join is the text's first line; this dash has no ``$LINENO``), and
a ``RELAY_SHELL_HOLD`` variable of the caller's, which the folded line unsets as the
two-exec hold always did.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from relay_shell.capture import render_capture
from relay_shell.errors import SpawnFailed
from relay_shell.local import contained as contained_module
from relay_shell.local.contained import CgroupContained, hold_argv, is_dash, join_argv
from relay_shell.local.containment import ContainmentService
from relay_shell.local.runner import ProcessSpec, run_process
from relay_shell.report import ExecReport
from tests.conftest import pids_with_marker

SH = "/bin/sh"
pytestmark = pytest.mark.skipif(not is_dash(SH), reason="the fold applies only where /bin/sh is dash")


def child_env(**extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **extra}


def alone(text: str, env: dict[str, str], stdin: bytes | None = None) -> tuple[int, str]:
    completed = subprocess.run(
        [SH, "-c", text],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        timeout=30,
    )
    return completed.returncode, completed.stdout.decode()


async def contained_run(
    service: ContainmentService, text: str, env: dict[str, str], stdin: bytes | None = None
) -> tuple[ExecReport, str]:
    async with service.contain("exec") as contained:
        assert isinstance(contained, CgroupContained)
        report = await run_process(
            ProcessSpec(argv=[SH, "-c", text], env=env, stdin=stdin),
            timeout_s=20,
            budget=1 << 20,
            contained=contained,
            kill_grace_s=0.5,
        )
        return report, contained.directory.path.name


def one_line_further(output: str) -> str:
    """dash's messages (``sh: N: ...``) with the line number one less, as TEXT alone prints them."""
    return re.sub(
        r"^(/bin/sh|sh): (\d+): ", lambda m: f"{m.group(1)}: {int(m.group(2)) - 1}: ", output, flags=re.M
    )


SAME_AS_ALONE = {
    "arguments": 'echo "[$0] [$#] [$*]"',
    "status at the start": 'echo "$?"',
    "options": 'echo "$-"',
    "exported environment": "export -p",
    "stdin is /dev/null": "cat; readlink /proc/self/fd/0",
    "set -e": "set -e; false; echo not-reached",
    "set -e on a later line": "set -e\necho one\nfalse\necho not-reached",
    "trap on exit": "trap 'echo bye' EXIT; echo hi",
    "exit status": "exit 7",
    "exit 125 of its own": "exit 125",
    "exec": "exec echo replaced; echo not-reached",
    "exec of a missing program": "exec /nonexistent/program",
    "command not found": "relay-shell-no-such-command; echo $?",
    "syntax error on the first line": "echo a; if",
    "syntax error later": "echo a\necho b\nfi\necho not-reached",
    "unterminated quote": "echo 'a",
    "here document": "cat <<EOF\nline $((1 + 1))\nEOF",
    "a comment first": "# nothing\necho after",
    "leading blank lines": "\n\necho after",
    "backslash continuation": "echo a \\\nb",
    "IFS as it was": 'printf "[%s]" "$IFS"',
    "LINENO": 'echo "[$LINENO]"\necho "[$LINENO]"',
    "a signal to itself": "kill -TERM $$",
}


@pytest.mark.parametrize("text", list(SAME_AS_ALONE.values()), ids=list(SAME_AS_ALONE))
async def test_text_behaves_as_alone(service: ContainmentService, text: str) -> None:
    env = child_env()
    expected_status, expected_output = alone(text, env)
    report, _ = await contained_run(service, text, env)
    status = report.exit_code if report.signal is None else -int(report.exit_code - 128)
    assert (status, one_line_further(render_capture(report.capture))) == (expected_status, expected_output)


async def test_messages_name_one_line_more(service: ContainmentService) -> None:
    env = child_env()
    text = "relay-shell-no-such-command"
    assert alone(text, env) == (127, f"{SH}: 1: {text}: not found\n")
    report, _ = await contained_run(service, text, env)
    assert (report.exit_code, render_capture(report.capture)) == (127, f"{SH}: 2: {text}: not found\n")


async def test_the_holds_variable_is_consumed_as_before(service: ContainmentService) -> None:
    env = child_env(RELAY_SHELL_HOLD="set-by-the-caller")
    report, _ = await contained_run(service, 'echo "[${RELAY_SHELL_HOLD-unset}]"', env)
    assert render_capture(report.capture) == "[unset]\n"
    async with service.contain("exec") as contained:
        two_exec = await run_process(
            ProcessSpec(argv=["/usr/bin/env"], env=env), timeout_s=20, budget=65536, contained=contained
        )
    assert "RELAY_SHELL_HOLD" not in render_capture(two_exec.capture)


async def test_input_reaches_text_after_the_hold(service: ContainmentService) -> None:
    env = child_env()
    text = 'read -r first; echo "first=$first"; cat'
    assert alone(text, env, b"one\ntwo\nthree") == (0, "first=one\ntwo\nthree")
    report, _ = await contained_run(service, text, env, stdin=b"one\ntwo\nthree")
    assert (report.exit_code, render_capture(report.capture)) == (0, "first=one\ntwo\nthree")


async def test_text_runs_in_the_calls_cgroup_and_its_background_job_is_killed(
    service: ContainmentService,
) -> None:
    marker = f"300.{time.monotonic_ns()}"
    text = f"sleep {marker} & cat /proc/$!/cgroup; cat /proc/$$/cgroup"
    report, name = await contained_run(service, text, child_env())
    lines = render_capture(report.capture).splitlines()
    unified = [line for line in lines if line.startswith("0::")]
    assert len(unified) == 2 and all(line.endswith(f"/{name}") for line in unified)
    assert report.left_running == 1
    assert pids_with_marker(marker) == []


def test_the_folded_text_runs_nothing_when_its_join_fails(tmp_path: Path) -> None:
    # Started exactly as the runner starts it, its cgroup gone: the join's redirection fails
    # and the shell exits 125; TEXT is not even parsed (no syntax error either).
    witness = tmp_path / "ran"
    procs = tmp_path / "gone" / "cgroup.procs"
    for text in (f"touch {witness}", f"touch {witness}\nif", "if"):
        for stdin in (b"", b"input\n"):
            argv = join_argv([SH, "-c", text], procs)
            assert argv is not None
            completed = subprocess.run(argv, input=stdin, capture_output=True, env=child_env(), timeout=30)
            assert (completed.returncode, completed.stdout) == (125, b"")
            assert completed.stderr == f"{SH}: 1: cannot create {procs}: Directory nonexistent\n".encode()
    assert not witness.exists()


async def test_the_environment_cannot_run_code_before_the_join(
    service: ContainmentService, tmp_path: Path
) -> None:
    witness = tmp_path / "ran"
    (tmp_path / "startup").write_text(f"touch {witness}\n")
    env = child_env(ENV=str(tmp_path / "startup"), BASH_ENV=str(tmp_path / "startup"))
    env["PATH"] = f"{tmp_path}:%builtin:{env['PATH']}"  # dash finds some builtins after such an entry
    for name in ("echo", "printf", "unset", "exit", "exec", "PATH=", "0"):
        (tmp_path / name).write_text(f"#!/bin/sh\ntouch {witness}\n")
        (tmp_path / name).chmod(0o755)
    async with service.contain("exec") as contained:
        assert isinstance(contained, CgroupContained)
        argv = join_argv(
            [SH, "-c", "read -r line; cat /proc/self/cgroup"], contained.directory.path / "cgroup.procs"
        )
        assert argv is not None
        completed = subprocess.run(argv, input=b"\n", capture_output=True, env=env, timeout=30)
        assert (completed.returncode, completed.stderr) == (0, b"")
        cgroup = [line for line in completed.stdout.decode().splitlines() if line.startswith("0::")]
        assert cgroup == [f"0::{contained.directory.hierarchy_path}"]
    assert not witness.exists()
    argv = join_argv([SH, "-c", "true"], tmp_path / "gone" / "cgroup.procs")
    assert argv is not None
    completed = subprocess.run(argv, input=b"", capture_output=True, env=env, timeout=30)
    assert completed.returncode == 125
    assert not witness.exists()


def test_only_dash_with_a_plain_minus_c_is_folded(monkeypatch: pytest.MonkeyPatch) -> None:
    procs = Path("/sys/fs/cgroup/relay-shell-1-2/exec-3/cgroup.procs")
    assert join_argv([SH, "-c", "true"], procs) is not None
    assert join_argv(["/bin/bash", "-c", "true"], procs) is None
    assert join_argv(["sh", "-c", "true"], procs) is None  # not a path: PATH decides
    assert join_argv([SH, "-c", "true", "name"], procs) is None  # $0 of its own
    assert join_argv([SH, "-e", "-c", "true"], procs) is None
    assert join_argv([SH, "-s"], procs) is None
    assert join_argv([SH, "-c", "-x"], procs) is None and join_argv([SH, "-c", "+x"], procs) is None
    monkeypatch.setattr(contained_module, "_SHELL_IS_DASH", {})
    monkeypatch.setattr(contained_module.os.path, "realpath", lambda path: "/usr/bin/bash")
    assert join_argv([SH, "-c", "true"], procs) is None  # /bin/sh is bash: never


async def test_odd_names_keep_the_two_exec_hold(service: ContainmentService) -> None:
    async with service.contain("exec") as contained:
        plain = contained.launch([SH, "-c", "true"], env=child_env(), cwd=None, input_follows=False)
        odd = contained.launch(
            [SH, "-c", "true"], env=child_env(**{"A.B": "x"}), cwd=None, input_follows=False
        )
        direct = contained.launch(["true"], env=child_env(), cwd=None, input_follows=False)
    assert plain.argv[:2] == [SH, "-c"] and plain.argv[2].endswith("\ntrue") and plain.joins
    assert not plain.held and odd.held and not odd.joins and direct.held and not direct.joins
    assert odd.argv == hold_argv([SH, "-c", "true"], input_follows=False, program="/bin/bash")
    assert direct.argv == hold_argv(["true"], input_follows=False)


async def test_a_child_with_input_that_cannot_be_contained_never_runs(
    service: ContainmentService, tmp_path: Path
) -> None:
    witness = tmp_path / "ran"
    async with service.contain("exec") as contained:
        assert isinstance(contained, CgroupContained)
        contained.directory.path.rmdir()  # the move into it must fail
        with pytest.raises(SpawnFailed, match="cannot move the process into its cgroup"):
            await run_process(
                ProcessSpec(argv=[SH, "-c", f"cat >{witness}"], env=child_env(), stdin=b"data"),
                timeout_s=10,
                budget=4096,
                contained=contained,
            )
    assert not witness.exists()
