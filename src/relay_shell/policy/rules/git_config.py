"""Whether the configuration a local ``git`` read will load can name a program to run.

The overlay a tier-0 git gets (:data:`relay_shell.policy.environment.GIT_SAFE_ENV`) switches off
the configuration keys git reads by a fixed name (``core.fsmonitor``, ``core.pager``...).
Drivers are different: ``.gitattributes`` (or ``.git/info/attributes``) gives a path a driver
name of the author's choice and the configuration gives that name a program:
``filter.NAME.clean`` runs during ``git status`` and ``git diff``, ``diff.NAME.textconv``
and ``diff.NAME.command`` during ``git diff``, ``git log -p`` and ``git show``. No override
can switch every name off, so a local git read is a known-safe read only when no
configuration file git will load defines a driver, an external diff or an include (the
included file is not read here: rounding up). Repositories with submodules round up too
(``git status`` runs git in each of them, with their own configuration).

The check reads files only (no git process); what it cannot read rounds up. Remote git
reads cannot be checked from here and keep the overlay alone (docs/policy-patterns.md).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

MAX_CONFIG_BYTES = 256 * 1024
"""A configuration file larger than this is not read: the read rounds up."""

_PROGRAMS = re.compile(
    rb"\[\s*(?:filter|include|includeif)\b|\[\s*diff\s*[\".]|^\s*external\s*=",
    re.IGNORECASE | re.MULTILINE,
)
"""Driver and include sections (``[filter "x"]``, ``[diff "x"]``, ``[diff.x]``,
``[include]``, ``[includeIf ...]``) and ``diff.external``, wherever they appear."""


_ANSWERS: ContextVar[dict[tuple[object, ...], bool] | None] = ContextVar("relay_git_config", default=None)


@contextmanager
def answers_remembered() -> Iterator[None]:
    """Within the block (one classification), :func:`may_run_configured_programs` reads the
    file system once per question: a script running ``git status`` a thousand times in one
    directory costs one look. Nothing is remembered past the block (a later call must see a
    configuration written since)."""
    token = _ANSWERS.set({})
    try:
        yield
    finally:
        _ANSWERS.reset(token)


def may_run_configured_programs(
    cwd: str | None, options: Sequence[tuple[str, str | None]], home: str | None
) -> bool:
    """Whether ``git`` started in ``cwd`` with global ``options`` (``-C``, ``--git-dir``) may
    load configuration that runs a program (True also when it cannot be told)."""
    answers = _ANSWERS.get()
    if answers is None:
        return _may_run(cwd, options, home)
    key = (cwd, tuple(options), home)
    found = answers.get(key)
    if found is None:
        found = answers[key] = _may_run(cwd, options, home)
    return found


def _may_run(cwd: str | None, options: Sequence[tuple[str, str | None]], home: str | None) -> bool:
    if cwd is None:
        return True
    start, git_dir = cwd, None
    for option, value in options:
        if option == "-C" and value:
            start = os.path.join(start, value)
        elif option == "--git-dir" and value:
            git_dir = os.path.join(start, value)
    git_dir = git_dir or os.environ.get("GIT_DIR") or _discover(start)
    if git_dir is None:
        return False  # not a repository: git reads no repository configuration and fails
    if os.path.exists(os.path.join(os.path.dirname(os.path.abspath(git_dir)), ".gitmodules")):
        return True
    if os.path.isdir(os.path.join(git_dir, "modules")):
        return True
    return any(_names_programs(path) for path in _config_files(git_dir, home))


def _discover(start: str) -> str | None:
    """The git directory git finds from ``start`` (``.git`` directory or file, or a bare repository)."""
    directory = os.path.abspath(start)
    while True:
        dot_git = os.path.join(directory, ".git")
        if os.path.isdir(dot_git):
            return dot_git
        if os.path.isfile(dot_git):
            return _gitdir_file(dot_git, directory)
        if all(os.path.exists(os.path.join(directory, part)) for part in ("HEAD", "objects", "refs")):
            return directory
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent


def _gitdir_file(path: str, directory: str) -> str:
    """The directory a ``.git`` file (``gitdir: PATH``) names; the file itself when unreadable."""
    try:
        with open(path, "rb") as handle:
            text = handle.read(4096).decode("utf-8", "replace").strip()
    except OSError:
        return path
    if not text.startswith("gitdir:"):
        return path
    return os.path.join(directory, text.removeprefix("gitdir:").strip())


def _config_files(git_dir: str, home: str | None) -> Iterator[str]:
    yield "/etc/gitconfig"
    if home:
        yield os.path.join(home, ".gitconfig")
        yield os.path.join(
            os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config"), "git", "config"
        )
    for variable in ("GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM"):
        if os.environ.get(variable):
            yield os.environ[variable]
    yield os.path.join(git_dir, "config")
    yield os.path.join(git_dir, "config.worktree")
    common = _common_dir(git_dir)
    if common is not None:
        yield os.path.join(common, "config")
        yield os.path.join(common, "config.worktree")


def _common_dir(git_dir: str) -> str | None:
    """The main repository's git directory for a linked worktree (its ``commondir`` file)."""
    try:
        with open(os.path.join(git_dir, "commondir"), "rb") as handle:
            named = handle.read(4096).decode("utf-8", "replace").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return os.path.join(git_dir, "commondir")  # not a directory: its "config" is unreadable, rounds up
    return os.path.join(git_dir, named) if named else None


def _names_programs(path: str) -> bool:
    """Whether the configuration file at ``path`` may name a program (unreadable: True)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return len(data) > MAX_CONFIG_BYTES or _PROGRAMS.search(data) is not None
