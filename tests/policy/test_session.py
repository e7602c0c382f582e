"""The session line model: the line Enter submits, keys it follows, and what makes it opaque."""

from __future__ import annotations

import pytest

from relay_shell.policy.analyze import analyze_text
from relay_shell.policy.model import CallText
from relay_shell.policy.session import LineState, after_send, feed, incomplete, initial_state
from relay_shell.sessions.terminal import KEYS

READLINE = LineState()
BASIC = LineState(editor="basic")
LEFT, RIGHT, HOME, END = "\x1b[D", "\x1b[C", "\x1b[H", "\x1b[F"


def submitted(state: LineState, *sends: str) -> list[str]:
    lines: list[str] = []
    for data in sends:
        result = feed(state, data)
        lines.extend(unit.text for unit in result.units if unit.submitted)
        state = result.state
    return lines


@pytest.mark.parametrize(
    ("sends", "line"),
    [
        (("rm -rf /x\r",), "rm -rf /x"),
        (("r", "m -rf /x", "\r"), "rm -rf /x"),
        (("xx -rf /x", "\x01" + RIGHT + RIGHT + "\x7f\x7f", "rm\r"), "rm -rf /x"),
        (("ls; echo -rf /x", "\x17\x17\x17", "rm -rf /x\r"), "ls; rm -rf /x"),  # C-w word by word
        (("echo hi; rm -rf /x", "\x01\x0b", "rm -rf /x\r"), "rm -rf /x"),  # C-a C-k kills the line
        (("safe", "\x15rm -rf /x\r"), "rm -rf /x"),  # C-u
        (("rm -rf /x extra", "\x17\x7f\r"), "rm -rf /x"),  # C-w then Backspace
        (("m -rf /x", HOME, "r", END, "\r"), "rm -rf /x"),
        (("rm -rf /xy", LEFT, "\x7f\r"), "rm -rf /y"),
        (("rm \\\r", "-rf /x\r"), "rm \\\n-rf /x"),
        (("echo 'a\r", "'; rm -rf /x\r"), "echo 'a\n'; rm -rf /x"),
    ],
)
def test_the_line_enter_submits(sends: tuple[str, ...], line: str) -> None:
    assert submitted(READLINE, *sends)[-1] == line
    assert analyze_text(line).tier == 3


@pytest.mark.parametrize(
    "key",
    [
        "\t",
        "\x1b[A",
        "\x12",
        "\x19",
        "\x02",
        "\x06",
        "\x1b[200~x\x1b[201~",
        "\x1bOP",
        "\x1b[3~",
        "\x1bd",
        "\x03",
        "\x00",
    ],
)
def test_keys_the_model_does_not_follow_are_opaque(key: str) -> None:
    result = feed(READLINE, "ls" + key)
    assert any(unit.opaque for unit in result.units)


@pytest.mark.parametrize("key", ["\x01", "\x05", HOME, END, LEFT, RIGHT, "\x15", "\x0b", "\x17"])
def test_an_ssh_session_only_follows_backspace_and_enter(key: str) -> None:
    assert any(unit.opaque for unit in feed(BASIC, "ls" + key).units)
    assert not any(unit.opaque for unit in feed(READLINE, "ls" + key).units)


FOLLOWED_BY_READLINE = frozenset(
    {
        "Enter",
        "Backspace",
        "Left",
        "Right",
        "Home",
        "End",
        "C-a",
        "C-e",
        "C-h",
        "C-j",
        "C-k",
        "C-m",
        "C-u",
        "C-w",
    }
)
FOLLOWED_BY_BASIC = frozenset({"Enter", "Backspace", "C-h", "C-j", "C-m"})


@pytest.mark.parametrize("name", sorted(KEYS))
def test_every_named_key_is_followed_or_opaque(name: str) -> None:
    """The whole key table of session_send: a key the line model does not emulate makes the
    send uncertain (opaque, and the session tainted once delivered), whatever its bytes."""
    typed = "ls" + KEYS[name].decode()
    assert feed(READLINE, typed).uncertain is (name not in FOLLOWED_BY_READLINE)
    assert feed(BASIC, typed).uncertain is (name not in FOLLOWED_BY_BASIC)


@pytest.mark.parametrize("line", ["!!", "sudo !!", "echo !$", "!rm", "^a^b", "ls; !-2"])
def test_history_expansion_is_opaque(line: str) -> None:
    units = feed(READLINE, line + "\r").units
    assert units[0].opaque


@pytest.mark.parametrize("line", ["echo hi!", "echo 'a!b'", "[ ! -f x ]", "x != y", "echo ! "])
def test_an_exclamation_mark_that_expands_nothing_is_fine(line: str) -> None:
    assert feed(READLINE, line + "\r").units[0].opaque is None


def test_pending_text_is_classified_with_the_send() -> None:
    result = feed(READLINE, "rm -rf /x")
    assert [(unit.text, unit.submitted) for unit in result.units] == [("rm -rf /x", False)]
    assert result.state.buffer == "rm -rf /x"


def test_a_tainted_session_and_a_busy_terminal_make_every_send_opaque() -> None:
    tainted = READLINE.taint("alias")
    assert feed(tainted, "ls\r").units[0].opaque
    assert feed(READLINE, "ls\r", foreground_is_shell=False).units[0].opaque
    assert not feed(READLINE, "ls\r", foreground_is_shell=None).units[0].opaque


@pytest.mark.parametrize(
    ("line", "taints"),
    [
        ("alias ll='ls -l'", True),
        ("f() { ls; }", True),
        ("bind '\"\\C-x\": kill-line'", True),
        ("set -o vi", True),
        ("shopt -s expand_aliases", True),
        ("export PATH=/tmp:$PATH", True),
        ("PATH=/tmp", True),
        ("trap 'ls' EXIT", True),
        ("hash -r", True),
        ("complete -C id x", True),
        ("PROMPT_COMMAND=id", True),
        ("stty erase x", True),  # readline reads the erase key from the terminal
        ("stty -icanon", True),
        ("typeset -x LD_PRELOAD=/tmp/x.so", True),
        ("export PYTHONPATH=/tmp", True),
        ("export LD_PRELOAD", True),
        ("declare -x BASH_ENV=/tmp/x", True),
        ("source ./env.sh", True),
        (". ./env.sh", True),
        ('eval "$x"', True),
        ("$x ll=rm", True),  # the expansion could name alias
        ("'al''ias' ls=rm", True),
        ("builtin alias ls=rm", True),
        ("command eval x", True),
        ("exec bash", True),
        ("ls -l", False),
        ("cd /tmp", False),
        ("export LANG=C", False),
        ("stty -a", False),
        ("stty size", False),
        ("python3 -c 'print(1)'", False),  # a child process cannot change the shell
        ("cat $(ls)", False),
        ("bash -c 'alias x=y'", False),
    ],
)
def test_lines_that_change_later_input_taint(line: str, taints: bool) -> None:
    sent = feed(READLINE, line + "\r")
    analysis = analyze_text(None, typed=sent.units)
    state = after_send(sent, analysis, ssh=False)
    assert (state.tainted is not None) is taints


@pytest.mark.parametrize(
    "line",
    [
        "vim f",
        "python3",
        "less f",
        "ssh host",
        "su",
        "sudo -i",
        "man ls",
        "top",
        "eval x",
        "systemctl status",
    ],
)
def test_on_ssh_an_interactive_program_taints(line: str) -> None:
    sent = feed(BASIC, line + "\r")
    analysis = analyze_text(None, typed=sent.units, remote=True)
    assert after_send(sent, analysis, ssh=True).tainted is not None


def test_incomplete_commands_wait_for_more_lines() -> None:
    for text in ("echo 'a", 'echo "a', "ls \\", "cat <<EOF", "if true; then", "ls |", "ls &&", "f() {"):
        assert incomplete(text), text
    for text in ("ls", "echo 'a'", "cat <<EOF\nx\nEOF", "ls # 'quote in a comment"):
        assert not incomplete(text), text


def test_initial_states() -> None:
    assert initial_state("", ssh=False).editor == "readline"
    assert initial_state("", ssh=True).editor == "basic"
    assert initial_state("bash", ssh=False).tainted is None
    assert initial_state("python3", ssh=False).tainted is not None
    assert initial_state("vim /etc/x", ssh=True).tainted is not None


def test_typed_units_are_a_channel() -> None:
    from relay_shell.policy.analyze import Analyzer, PolicyEnvironment

    sent = feed(READLINE, "r")
    sent = feed(sent.state, "m -rf /x")
    analysis = Analyzer(PolicyEnvironment.bare()).analyze(CallText(typed=sent.units))
    assert analysis.tier == 3
    assert analysis.driver is not None and analysis.driver.origin == "session pending line"


@pytest.mark.parametrize("data", ["echo é\r", "xe\u0301\x1b[D\x7f\r", "ls \u00e9\x17\r"])
def test_text_outside_ascii_is_opaque(data: str) -> None:
    """In the C locale readline reads bytes above 127 as meta keys (M-C capitalises a word);
    in UTF-8 it moves over combining characters as one: either way the model cannot follow."""
    units = feed(READLINE, data).units
    assert units and all(unit.opaque for unit in units)


@pytest.mark.parametrize("remote", [False, True])
@pytest.mark.parametrize(
    "line", ["git status", "git log -n 3", "cd /srv/app && git diff", "ls; git show HEAD"]
)
def test_a_git_read_typed_into_a_session_is_not_tier_0(line: str, remote: bool) -> None:
    """A one-shot git read is tier 0 because its process gets GIT_SAFE_ENV (fsmonitor, hooks,
    pagers off); a shell that is already running cannot be given it, so typed it is tier 1."""
    from relay_shell.policy.analyze import Analyzer, PolicyEnvironment
    from relay_shell.policy.model import TypedUnit

    analyzer = Analyzer(PolicyEnvironment.bare())
    one_shot = analyzer.analyze(CallText(shell=line, remote=remote))
    assert (one_shot.tier, bool(one_shot.exec_env)) == (0, True)
    typed = analyzer.analyze(CallText(typed=(TypedUnit(line, True),), remote=remote))
    assert (typed.tier, typed.opaque, dict(typed.exec_env)) == (1, False, {})
    assert "session.git_config" in typed.rules
    assert analyzer.analyze(CallText(typed=(TypedUnit("ls -la", True),), remote=remote)).tier == 0
