"""A local git read is tier 0 only when no configuration git loads names a driver program.

Each case builds a real repository under a temp dir and classifies a git read started in it;
the drivers named here are the ones git runs during ``status``/``diff``/``log -p``/``show``
(the end-to-end proof that they run, and that the relay does not let them, is in
tests/tools/test_policy_e2e.py).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from relay_shell.policy.analyze import LOCAL_GIT_SAFE_ENV, Analyzer, PolicyEnvironment
from relay_shell.policy.model import CallText
from relay_shell.policy.rules.git_config import MAX_CONFIG_BYTES

READS = ["git status", "git diff", "git log -p", "git show", "git diff --stat", "git grep -n x"]


def _repo(root: Path) -> Path:
    repo = root / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    return repo


def _analyze(text: str, cwd: Path, home: Path, remote: bool = False) -> tuple[int, bool]:
    environment = PolicyEnvironment(None, "/usr/bin:/bin", str(home), str(cwd))
    analysis = Analyzer(environment).analyze(CallText(shell=text, cwd=str(cwd), remote=remote))
    return analysis.tier, analysis.opaque


@pytest.fixture
def home(tmp_path: Path) -> Path:
    directory = tmp_path / "home"
    directory.mkdir()
    return directory


@pytest.mark.parametrize("text", READS)
def test_a_repository_without_drivers_is_read_at_tier_0_with_the_local_overlay(
    tmp_path: Path, home: Path, text: str
) -> None:
    repo = _repo(tmp_path)
    environment = PolicyEnvironment(None, "/usr/bin:/bin", str(home), str(repo))
    analysis = Analyzer(environment).analyze(CallText(shell=text, cwd=str(repo)))
    assert (analysis.tier, analysis.opaque) == (0, False)
    assert dict(analysis.exec_env) == dict(LOCAL_GIT_SAFE_ENV)
    assert "diff.external" not in LOCAL_GIT_SAFE_ENV.values()


CONFIGS = {
    "textconv": '[diff "pwn"]\n\ttextconv = touch proof\n',
    "diff command": '[diff "pwn"]\n\tcommand = touch proof\n',
    "dot subsection": "[diff.pwn]\n\ttextconv = touch proof\n",
    "clean filter": '[filter "pwn"]\n\tclean = touch proof\n',
    "smudge filter": '[filter "pwn"]\n\tsmudge = touch proof\n',
    "process filter": '[Filter "pwn"]\n\tprocess = touch proof\n',
    "external diff": "[diff]\n\texternal = touch proof\n",
    "external diff, spaced": "[diff]\n  External=touch proof\n",
    "include": "[include]\n\tpath = other.config\n",
    "includeIf": '[includeIf "gitdir:/"]\n\tpath = other.config\n',
}


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
@pytest.mark.parametrize("place", ["repository", "global", "xdg"])
def test_any_configuration_naming_a_program_rounds_the_read_up(
    tmp_path: Path, home: Path, config: str, place: str
) -> None:
    repo = _repo(tmp_path)
    target = {
        "repository": repo / ".git" / "config",
        "global": home / ".gitconfig",
        "xdg": home / ".config" / "git" / "config",
    }[place]
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a") as handle:
        handle.write(config)
    for text in READS:
        assert _analyze(text, repo, home)[0] >= 1, text


def test_the_repository_is_found_from_a_subdirectory_and_through_options(tmp_path: Path, home: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "sub" / "deeper").mkdir(parents=True)
    (repo / ".git" / "config").write_text('[filter "x"]\n\tclean = y\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert _analyze("git status", repo / "sub" / "deeper", home)[0] == 1
    assert _analyze("git -C ../repo status", elsewhere, home)[0] == 1
    assert _analyze(f"git --git-dir={repo / '.git'} log -p", elsewhere, home)[0] == 1
    assert _analyze("git status", elsewhere, home)[0] == 0  # not a repository: nothing to load


def test_linked_worktrees_and_gitdir_files_lead_to_the_main_configuration(tmp_path: Path, home: Path) -> None:
    repo = _repo(tmp_path)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    linked = tmp_path / "linked"
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "-q", str(linked)], check=True)
    assert (linked / ".git").is_file()
    assert _analyze("git status", linked, home)[0] == 0
    (repo / ".git" / "config").write_text('[diff "x"]\n\ttextconv = y\n', encoding="utf-8")
    assert _analyze("git status", linked, home)[0] == 1


def test_submodules_and_unreadable_or_huge_configuration_round_up(tmp_path: Path, home: Path) -> None:
    repo = _repo(tmp_path)
    (repo / ".gitmodules").write_text('[submodule "s"]\n\tpath = s\n')
    assert _analyze("git status", repo, home)[0] == 1
    (repo / ".gitmodules").unlink()
    config = repo / ".git" / "config"
    config.write_text("[core]\n" + "# padding\n" * (MAX_CONFIG_BYTES // 10 + 1))
    assert _analyze("git status", repo, home)[0] == 1
    config.write_text("[core]\n\tbare = false\n")
    assert _analyze("git status", repo, home)[0] == 0
    config.unlink()
    config.mkdir()  # not a file git or the check can read
    assert _analyze("git status", repo, home)[0] == 1


def test_answers_are_remembered_within_one_call_only(tmp_path: Path, home: Path) -> None:
    """A script repeating a git read asks the file system once per directory; a driver
    written after a call is seen by the next one, and each directory of one call counts."""
    repo, other = _repo(tmp_path), tmp_path / "other"
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    with (other / ".git" / "config").open("a") as handle:
        handle.write(CONFIGS["textconv"])
    assert _analyze("git status\n" * 50, repo, home) == (0, False)
    assert _analyze(f"git status\ncd {other}\ngit status\ncd {repo}\ngit status\n", repo, home)[0] >= 1
    with (repo / ".git" / "config").open("a") as handle:
        handle.write(CONFIGS["clean filter"])
    assert _analyze("git status\n" * 50, repo, home)[0] >= 1
