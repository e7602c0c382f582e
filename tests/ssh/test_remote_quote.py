"""The remote command line: every shell a login shell may be reads the text back unchanged."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay_shell.ssh.remote_exec import portable_quote, remote_shell_command

TEXTS = [
    "",
    "echo hi",
    "it's",
    "a\\b",
    "echo \\\\\\;rm -rf /x",
    "'",
    "\\'",
    "x\ny",
    "$HOME `id` $(id) !! *",
    "printf '%s\\n' \"a b\"",
]


def _fish_reads(word: str) -> str:
    """What fish makes of a word of quoted and unquoted pieces (its rules for ``'...'`` and ``\\x``)."""
    out: list[str] = []
    for single, escaped in re.findall(r"'((?:[^'\\]|\\.)*)'|\\(.)", word, re.DOTALL):
        if escaped:
            out.append(escaped)
        else:
            out.append(re.sub(r"\\([\\'])", r"\1", single))
    return "".join(out)


@pytest.mark.parametrize(
    "shell", [name for name in ("sh", "dash", "bash", "zsh", "ksh") if shutil.which(name)]
)
@pytest.mark.parametrize("text", TEXTS)
def test_posix_shells_read_the_text_back(shell: str, text: str) -> None:
    printed = subprocess.run(
        [shell, "-c", f"printf %s {portable_quote(text)}"], capture_output=True, check=True
    ).stdout.decode()
    assert printed == text


@settings(max_examples=300)
@given(st.text(alphabet=st.sampled_from(list("ab'\\ \n$`\"!;|&"))))
def test_fish_reads_the_text_back(text: str) -> None:
    """shlex.quote('echo \\\\\\;rm') is read by fish as ``echo \\;rm`` (which runs rm); this is not."""
    assert _fish_reads(portable_quote(text)) == text


def test_the_remote_command_execs_sh() -> None:
    assert remote_shell_command("ls -l") == "exec /bin/sh -c 'ls -l'"


def test_the_environment_prelude_reaches_the_remote_shell() -> None:
    """``with_environment``: what a login shell hands /bin/sh exports and unsets the overlay,
    then runs the text as it was classified (a here-document still reads its own lines)."""
    from relay_shell.ssh.remote_exec import with_environment

    env = {"GIT_CONFIG_VALUE_0": "it's $(id) `id` \\", "PAGER": "cat", "GIT_EXTERNAL_DIFF": None}
    text = 'cat <<\'EOF\'\nbody $HOME\nEOF\nprintf \'%s|%s|%s\' "$GIT_CONFIG_VALUE_0" "$PAGER" "${GIT_EXTERNAL_DIFF-unset}"'
    printed = subprocess.run(
        ["sh", "-c", remote_shell_command(with_environment(text, env))],
        capture_output=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "GIT_EXTERNAL_DIFF": "/tmp/evil"},
    ).stdout.decode()
    assert printed == "body $HOME\nit's $(id) `id` \\|cat|unset"


def test_the_environment_prelude_refuses_a_name_that_is_not_a_variable() -> None:
    from relay_shell.ssh.remote_exec import with_environment

    with pytest.raises(ValueError):
        with_environment("true", {"X; rm -rf /": "1"})
