"""Admission over a parsed call: deny on normalised spellings, opaque with a deny list, allow per command."""

from __future__ import annotations

import re

import pytest

from relay_shell.config import PolicyMode
from relay_shell.policy.analyze import analyze_text
from relay_shell.policy.decide import Lists, decide


def decision(
    text: str, mode: PolicyMode = PolicyMode.OPEN, deny: str | None = None, allow: str | None = None
):  # type: ignore[no-untyped-def]
    analysis = analyze_text(text)
    lists = Lists(mode, re.compile(deny) if deny else None, re.compile(allow) if allow else None)
    return decide(lists, "shell_exec", analysis.tier, f"shell_exec {text}", analysis)


@pytest.mark.parametrize(
    "text",
    [
        "touch f",
        "to''uch f",
        "t\\ouch f",
        '"touch" f',
        "$'\\x74ouch' f",
        "{t,}ouch f",
        "env -i touch f",
        "sudo touch f",
        "nohup touch f &",
        "/usr/bin/touch f",
        "/usr//bin/./touch f",
        "x=$(touch f)",
        "bash -c 'touch f'",
        "echo 'touch f' | sh",
        "find . -exec touch {} \\;",
    ],
)
def test_a_deny_matches_every_normalised_spelling(text: str) -> None:
    result = decision(text, deny=r"(^|\s|/)touch\b")
    assert (result.allowed, result.rule) == (False, "deny")


@pytest.mark.parametrize("text", ["/usr/bin/t[o]uch f", "$T f", 'eval "$X"', "python3 -c 'x'", "make", "./x"])
def test_with_a_deny_list_every_opaque_call_is_refused(text: str) -> None:
    result = decision(text, deny=r"^never$")
    assert (result.allowed, result.rule, result.opaque) == (False, "deny:opaque", True)
    assert decision(text).allowed  # open mode without a deny list admits it


@pytest.mark.parametrize(
    ("text", "deny"),
    [
        ("cat /etc/sha*", r"/etc/shadow"),
        ("cat /etc//shadow", r"/etc/shadow\b"),
        ("cat /etc/./shadow", r"/etc/shadow\b"),
        ("kill -s KILL 1", r"kill -9\b"),
        ("kill -SIGKILL 1", r"kill -9\b"),
        ("kill -9 1", r"kill -KILL\b"),
        ("echo x > /dev/tcp/0x7f000001/80", r"127\.0\.0\.1"),
        ("curl http://2130706433/", r"127\.0\.0\.1"),
        ("ping 127.1", r"127\.0\.0\.1"),
        ("ssh root@[::ffff:7f00:1] id", r"127\.0\.0\.1"),
    ],
)
def test_deny_sees_collapsed_paths_globs_signals_and_addresses(text: str, deny: str) -> None:
    assert decision(text, deny=deny).allowed is False


def test_allow_must_match_each_stateful_or_opaque_command_in_full() -> None:
    allow = r"systemctl restart nginx"
    assert decision("systemctl restart nginx", PolicyMode.GUARDED, allow=allow).allowed
    smuggled = decision("systemctl restart nginx; rm -rf /srv", PolicyMode.GUARDED, allow=allow)
    assert (smuggled.allowed, smuggled.subcommand, smuggled.classifier_rule) == (
        False,
        "rm -rf /srv",
        "deletion.rm_recursive",
    )
    assert not decision("systemctl restart nginx-evil", PolicyMode.GUARDED, allow=allow).allowed
    assert not decision("sudo systemctl restart nginx", PolicyMode.GUARDED, allow=allow).allowed
    assert not decision("systemctl restart nginx > /etc/motd", PolicyMode.GUARDED, allow=allow).allowed
    assert not decision("echo systemctl restart nginx | sh", PolicyMode.GUARDED, allow=allow).allowed
    assert decision("systemctl restart nginx && ls -l", PolicyMode.GUARDED, allow=allow).allowed


def test_guarded_admits_reversible_and_refuses_opaque() -> None:
    assert decision("touch x", PolicyMode.GUARDED).allowed
    refused = decision("python3 -c 1", PolicyMode.GUARDED)
    assert (refused.allowed, refused.rule, refused.opaque) == (False, "mode:guarded", True)


def test_readonly_names_the_first_command_that_is_not_a_read() -> None:
    result = decision("ls; touch x; rm -rf y", PolicyMode.READONLY)
    assert (result.allowed, result.subcommand, result.classifier_rule) == (False, "touch x", "files.touch")
    assert "ask the operator" in result.reason
    assert "do not retry" in result.reason
    assert decision("ls -la /etc; uname -a", PolicyMode.READONLY).allowed


def test_tools_without_parsed_commands_still_use_the_probe() -> None:
    lists = Lists(PolicyMode.GUARDED, None, re.compile("upload /srv/ok"))
    analysis = analyze_text(None, paths=("/srv/ok",))
    assert decide(lists, "ssh_upload", 2, "ssh_upload upload /srv/ok to web1:/x", analysis).allowed
    assert not decide(lists, "ssh_upload", 2, "ssh_upload upload /srv/no to web1:/x", analysis).allowed


def test_opaque_code_is_read_with_the_regex_table_and_the_allow_list_reads_its_commands() -> None:
    text = "awk 'BEGIN{system(\"rm -rf /srv/x\")}'"
    analysis = analyze_text(text)
    assert (analysis.tier, analysis.opaque, analysis.rule) == (3, True, "deletion.rm_recursive")
    assert [command.kind for command in analysis.needing_allow()] == ["command"]  # not the floor record
    assert not decision(text, PolicyMode.GUARDED).allowed
    assert decision(text, PolicyMode.GUARDED, allow=r"awk .*").allowed
    # code the parse can follow is not floored: a quoted argument is data
    assert analyze_text("grep -rn 'rm -rf /' notes/").tier == 0
