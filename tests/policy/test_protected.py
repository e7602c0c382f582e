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
