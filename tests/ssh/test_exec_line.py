"""The exec channel's command line: /bin/sh reads the text, in the login shell itself when that is /bin/sh.

Each login shell is started the way sshd starts it (``argv[0]`` the last part of its path,
``-c`` the line, ``SHELL`` the account's shell), so the local runs below are what a remote
host does with the line; the last test goes through a real sshd.
"""

from __future__ import annotations

import subprocess

import pytest

from relay_shell.capture import render_capture
from relay_shell.config import Settings
from relay_shell.ssh.pool import ConnectionPool
from relay_shell.ssh.remote_exec import (
    EXEC_INLINE_MAX_BYTES,
    exec_command_line,
    portable_quote,
    remote_shell_command,
    run_remote,
)
from tests.ssh.helpers import spec_for
from tests.sshd import ClientKey, SshdInstance

TEXTS = [
    "",
    "echo hi",
    "it's",
    "a\\b",
    "echo \\\\\\;rm -rf /x",
    "'",
    "x\ny",
    "printf '%s\\n' \"a b\" $HOME `echo id` $(echo id) '!!'",
    "set -e; false; echo after",
    "set -u; echo $NOPE; echo after",
    "exit 7",
    "(exit 3)",
    "return 4; echo after",
    "if",
    "fi\necho after-fi",
    "cat <<EOF",
    "echo a \\",
    "nope_no_such_command; echo $?",
    "cat <<'EOF'\nbody $HOME\nEOF\necho done",
    'echo $#; echo "$@"; echo $?',
    "trap 'echo bye' EXIT; echo hi",
    "true && false || echo x",
    'read line; echo "[$line]"',
    "exec echo replaced",
    "kill -TERM $$; echo after",
    "echo $SHELL_LEVEL_MARKER; unset SHELL; echo ${SHELL-unset}",
]

# (argv[0], executable, SHELL): how sshd starts a login shell with a command.
SH = ("sh", "/bin/sh", "/bin/sh")
NOT_SH = [
    ("bash", "/bin/bash", "/bin/bash"),  # another POSIX login shell
    ("bash", "/bin/bash", "/bin/sh"),  # SHELL says /bin/sh, but the shell is not
    ("dash", "/bin/dash", "/bin/sh"),  # /bin/sh's own program, under another name
    ("sh", "/bin/sh", "/bin/bash"),  # a shell named sh that is not the account's shell
]


def login_shell(shell: tuple[str, str, str], line: str) -> tuple[int, bytes]:
    argv0, executable, account_shell = shell
    done = subprocess.run(
        [argv0, "-c", line],
        executable=executable,
        env={"PATH": "/usr/bin:/bin", "SHELL": account_shell, "HOME": "/tmp"},
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=10,
    )
    return done.returncode, done.stdout


@pytest.mark.parametrize("text", TEXTS)
def test_a_sh_login_shell_reads_the_text_as_sh_c_does(text: str) -> None:
    """Same output and exit status as the two-shell form, without the second shell."""
    assert login_shell(SH, exec_command_line(text)) == login_shell(SH, remote_shell_command(text))


@pytest.mark.parametrize("shell", NOT_SH, ids=lambda shell: f"{shell[0]}-as-{shell[2]}")
@pytest.mark.parametrize("text", TEXTS)
def test_any_other_login_shell_hands_the_text_to_bin_sh(shell: tuple[str, str, str], text: str) -> None:
    assert login_shell(shell, exec_command_line(text)) == login_shell(SH, remote_shell_command(text))


def test_which_shell_runs_the_text() -> None:
    """``$0`` tells them apart: ``sh`` is the login shell itself, ``/bin/sh`` the exec'd one."""
    line = exec_command_line('printf %s "$0"')
    assert login_shell(SH, line) == (0, b"sh")
    for shell in NOT_SH:
        assert login_shell(shell, line) == (0, b"/bin/sh"), shell


def test_the_text_is_never_run_twice() -> None:
    """A text that fails, and the guard's own failure, end the line: nothing reaches the second copy."""
    counter = "printf x; exit 5"
    for shell in [SH, *NOT_SH]:
        assert login_shell(shell, exec_command_line(counter)) == (5, b"x"), shell


def test_a_long_text_is_sent_once() -> None:
    text = "echo " + "y" * EXEC_INLINE_MAX_BYTES
    assert exec_command_line(text) == remote_shell_command(text)
    short = "echo " + "y" * 100
    assert exec_command_line(short).count(portable_quote(short)) == 2


async def test_a_remote_sh_account_runs_the_text_in_its_login_shell(
    sshd: SshdInstance, client_key: ClientKey, settings: Settings, pool: ConnectionPool
) -> None:
    """The test account's login shell is /bin/sh: one shell process, and ``sh -c`` behaviour."""
    spec = spec_for(sshd, settings, client_key)
    named = await run_remote(pool, spec, 'printf %s "$0"', timeout_s=10, budget=4096)
    assert (named.exit_code, render_capture(named.capture)) == (0, "sh")
    strict = await run_remote(pool, spec, "set -e; false; echo after", timeout_s=10, budget=4096)
    assert (strict.exit_code, render_capture(strict.capture)) == (1, "")
