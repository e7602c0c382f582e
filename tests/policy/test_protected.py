"""The relay's own files: named literally, collapsed, through links, /proc, globs, cwd, admin verbs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from relay_shell.policy.analyze import Analyzer
from relay_shell.policy.model import CallText
from tests.policy.conftest import Classify


@pytest.mark.parametrize(
    "template",
    [
        "cat {audit}",
        "cat {root}//audit/./audit.jsonl",
        "cat {root}/audit/../audit/audit.jsonl",
        "cat /proc/self/root{audit}",
        "cat /proc/1/root{audit}",
        "echo forged >> {audit}",
        "truncate -s 0 {audit}",
        "rm -rf {root}/audit",
        "mv {root}/audit /tmp/x",
        "chattr -a {audit}",
        "cat {root}/audit/aud*",
        "cat {root}/au?it/*.jsonl",
        "ls {root}/*/audit.jsonl",
        "cd {root}/audit && cat audit.jsonl",
        "cd {root} && rm -r audit",
        "cat {root}/oauth/state.json",
        "cat {root}/relay.env",
        "cat {root}/inventory.json",
        "cp x {root}/ssh_config",
        "cat {root}/known_hosts",
        "rm {root}/recordings/s.cast",
        "ln -s {audit} /tmp/a",
        "cp /dev/null {audit}.1",
        "dd if=/dev/zero of={audit}",
        'python3 -c \'open("{audit}", "w")\'',
        "relay-shell --approve-login abc",
        "relay-shell --set-operator-passphrase",
        "relay-shell --revoke-grant x",
        "relay-shell --list-grants",
        "relay-shell --approve x",
        "/opt/venv/bin/relay-shell --revoke x",
        "python3 -m relay_shell --list-grants",
        "python -m relay_shell.cli",
        "cat /proc/{pid}/environ",
        "cat /proc/{pid}/fd/3",
        # globs under the audit directory that miss the live file but match what is beside it
        "cat {audit}?",
        "mv {audit}?1 /tmp/x",
        "cd {root}/audit && mv audit.jsonl?1.gz /tmp/x",
        "cat {root}/audit/other-file",
    ],
)
def test_protected_files_are_named_in_every_spelling(
    classify: Classify, relay_root: Path, template: str
) -> None:
    text = template.format(root=relay_root, audit=relay_root / "audit" / "audit.jsonl", pid=os.getpid())
    analysis = classify(text)
    assert analysis.protected, [(c.text, c.rule) for c in analysis.commands]
    assert analysis.tier == 3


def test_a_symlink_and_a_hard_link_to_a_protected_file(
    classify: Classify, relay_root: Path, tmp_path: Path
) -> None:
    audit = relay_root / "audit" / "audit.jsonl"
    (tmp_path / "soft").symlink_to(audit)
    os.link(audit, tmp_path / "hard")
    assert classify(f"echo x >> {tmp_path / 'soft'}").protected
    assert classify(f"cat {tmp_path / 'hard'}").protected


def test_the_working_directory_of_the_call(analyzer: Analyzer, relay_root: Path) -> None:
    analysis = analyzer.analyze(CallText(shell="cat audit.jsonl", cwd=str(relay_root / "audit")))
    assert analysis.protected
    assert analyzer.analyze(CallText(shell="rm *", cwd=str(relay_root / "audit"))).protected
    assert analyzer.analyze(CallText(paths=(str(relay_root / "audit" / "audit.jsonl"),))).protected


@pytest.mark.parametrize(
    "template",
    [
        "ls {root}",
        "cat {root}/other.txt",
        "echo the audit log lives elsewhere",
        "ls /tmp/*",
        "cat audit",
        "ls -a",
        "grep -r x {root}/elsewhere",
    ],
)
def test_look_alikes_are_not_protected(classify: Classify, relay_root: Path, template: str) -> None:
    assert not classify(template.format(root=relay_root)).protected


def test_a_link_made_after_an_earlier_call_is_seen(
    classify: Classify, relay_root: Path, tmp_path: Path
) -> None:
    """What the file system said is not kept from one call to the next: a link to a protected
    file made by an allowed call (``ln -s``) is seen when the next call reads through it."""
    link = tmp_path / "later"
    assert classify(f"cat {link}").tier == 0
    link.symlink_to(relay_root / "audit" / "audit.jsonl")
    assert classify(f"cat {link}").rule.startswith("protected.")
    tree_link = tmp_path / "tree"
    assert classify(f"cat {tree_link}/state.json").tier <= 1
    tree_link.symlink_to(relay_root / "oauth")
    assert classify(f"cat {tree_link}/state.json").rule.startswith("protected.")


def test_the_admin_verbs_of_the_command_line_are_the_protected_ones() -> None:
    """The verbs the classifier protects are exactly the OAuth administration verbs the real
    ``relay-shell`` command line has (``http/admin_cli.py``), and its other modes only read."""
    import argparse

    from relay_shell.cli import _parser
    from relay_shell.policy.relay_verbs import ADMIN_VERBS, READ_MODES

    parser = _parser()
    flags = {
        option
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction)
        for option in action.option_strings
        if option.startswith("--")
    }
    assert set(ADMIN_VERBS) == {
        "--approve-login",
        "--set-operator-passphrase",
        "--revoke-grant",
        "--list-grants",
    }
    assert set(ADMIN_VERBS) <= flags
    assert set(READ_MODES) - {"--help"} <= flags


@pytest.mark.parametrize(
    "text",
    [
        "relay-shell --approve-login req-1",
        "relay-shell --approve-login=req-1",
        "relay-shell --approve-l req-1",
        "{venv}/bin/relay-shell --revoke-grant g-1",
        "/path/to/.venv/bin/relay-shell --revoke-grant g-1",
        "relay-shell --list-grants --json",
        "relay-shell --set-operator-passphrase < /tmp/pass",
        "env relay-shell --approve-login X",
        "env -i PATH=/usr/bin relay-shell --approve-login X",
        "sudo -u relay relay-shell --revoke-grant g-1",
        "nohup relay-shell --list-grants &",
        "timeout 5 relay-shell --list-grants",
        "bash -c 'relay-shell --approve-login X'",
        "ssh localhost relay-shell --approve-login X",
        "'relay-shell' --revoke-grant g-1",
        "re\\lay-shell --revoke-grant g-1",
        "relay-shell $VERB g-1",
        "python -m relay_shell --approve-login X",
        "python3 -m relay_shell.cli --revoke-grant g-1",
        "python3.12 -m relay_shell",
        "{venv}/bin/python -m relay_shell --list-grants",
        # serving: a second relay that runs what its stdin asks under its own environment's policy
        "relay-shell",
        "printf '%s\\n' '{{}}' | relay-shell",
        "RELAY_SHELL_POLICY_MODE=open relay-shell",
        "RELAY_SHELL_TRANSPORT=http relay-shell --json",
        "relay-shell --mode open",
    ],
)
def test_the_relay_acting_as_itself_is_protected(classify: Classify, text: str) -> None:
    import sys

    analysis = classify(text.format(venv=sys.prefix))
    assert analysis.protected, [(c.text, c.rule) for c in analysis.commands]
    assert analysis.tier == 3
    assert "protected.admin_verb" in analysis.rules


@pytest.mark.parametrize(
    "text",
    [
        "relay-shell --version",
        "relay-shell --help",
        "relay-shell -h",
        "relay-shell --check-config --json",
        "relay-shell --verify-audit /tmp/copy.jsonl",
        "relay-shell --verify-deploy --json",
        "relay-shell --explain 'ls -la'",
        "relay-shell --explain 'ls' --mode readonly --json",
        "echo relay-shell --approve-login is an admin verb",
        "grep -rn approve-login docs/",
    ],
)
def test_the_relays_read_only_modes_are_not_admin_verbs(classify: Classify, text: str) -> None:
    assert "protected.admin_verb" not in classify(text).rules


def test_the_relays_own_state_settings_are_protected(classify: Classify, relay_root: Path) -> None:
    """RELAY_SHELL_AUTH_STATE_DIR, RELAY_SHELL_SESSION_RECORD_DIR and RELAY_SHELL_ENV_FILE."""
    for text in (
        f"cat {relay_root}/oauth/state.json",
        f"rm -rf {relay_root}//oauth/",
        f"ls {relay_root}/oauth",
        f"cp {relay_root}/oauth/state.json /tmp/x",
        f"cat {relay_root}/recordings/2026-sh-1.cast",
        f"truncate -s0 {relay_root}/./recordings/x.cast",
        f"echo RELAY_SHELL_POLICY_MODE=open >> {relay_root}/relay.env",
        f"sed -i s/guarded/open/ {relay_root}/relay.en?",
        f"cat /proc/self/root{relay_root}/relay.env",
    ):
        assert classify(text).protected, text
