"""Where a command name resolves on a PATH, and whether that place can be trusted.

A name that resolves into a root-owned system directory is a condition of a known-safe read;
elsewhere it is at least tier 1, and opaque in a directory others can write or a relative
PATH entry (:data:`PLACE_VERDICTS`). Resolutions are cached per process and forgotten when
a directory they read has changed (:func:`forget_resolutions`, before each call).
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from typing import Literal

from relay_shell.policy.model import REVERSIBLE, Verdict, opaque
from relay_shell.policy.paths import SYSTEM_DIRS

Resolution = Literal["system", "trusted", "untrusted", "missing", "relative"]


SHELL_BUILTINS = frozenset(
    [
        "alias",
        "bg",
        "bind",
        "break",
        "builtin",
        "caller",
        "cd",
        "command",
        "compgen",
        "complete",
        "compopt",
        "continue",
        "declare",
        "dirs",
        "disown",
        "echo",
        "enable",
        "eval",
        "exec",
        "exit",
        "export",
        "false",
        "fc",
        "fg",
        "getopts",
        "hash",
        "help",
        "history",
        "jobs",
        "kill",
        "let",
        "local",
        "logout",
        "mapfile",
        "popd",
        "printf",
        "pushd",
        "pwd",
        "read",
        "readarray",
        "readonly",
        "return",
        "set",
        "shift",
        "shopt",
        "source",
        "suspend",
        "test",
        "times",
        "trap",
        "true",
        "type",
        "typeset",
        "ulimit",
        "umask",
        "unalias",
        "unset",
        "wait",
        ".",
        ":",
        "[",
        "[[",
        "{",
        "}",
        "coproc",
        "time",
    ]
)
"""Names the shell runs itself: never looked up on a PATH."""

_RESOLVED: dict[tuple[str, str], Resolution] = {}
_PLACED: dict[str, Resolution] = {}
_WATCHED: dict[str, tuple[int, ...] | None] = {}  # directory -> its signature when last read


def _signature(directory: str) -> tuple[int, ...] | None:
    try:
        status = os.stat(directory)
    except (OSError, ValueError):
        return None
    return (status.st_ino, status.st_mtime_ns, status.st_ctime_ns)


def _watch(directory: str) -> None:
    if directory not in _WATCHED:
        _WATCHED[directory] = _signature(directory)


_CHECKED = [-1e9]
CHECK_INTERVAL = 0.1  # seconds


def forget_resolutions() -> None:
    """Called before each call is classified: when a directory a resolution read has changed
    since (a file an earlier call wrote into a PATH directory, a replaced link, a chmod: each
    changes the directory's mtime or ctime), every resolution is read again.

    Checked at most every :data:`CHECK_INTERVAL` (a dozen ``stat`` calls would cost a quarter
    of a typical classification); calls sent together are classified before any of them runs
    anyway, so a file written by one and run by the next is out of reach either way."""
    now = time.monotonic()
    if now - _CHECKED[0] < CHECK_INTERVAL:
        return
    _CHECKED[0] = now
    if any(_signature(directory) != signature for directory, signature in list(_WATCHED.items())):
        _RESOLVED.clear()
        _PLACED.clear()
        _WATCHED.clear()


def resolve(name: str, search_path: str) -> Resolution:
    """Where ``name`` resolves with ``search_path``.

    ``system``: a root-owned system directory (``/usr/bin``, ``/bin``, ``/usr/sbin``,
    ``/sbin``); ``trusted``: another root-owned directory nobody else can write;
    ``untrusted``: a directory another user (or group) could write; ``missing``: nowhere;
    ``relative``: the search reaches a relative or empty entry (the working directory).
    """
    key = (name, search_path)
    found = _RESOLVED.get(key)
    if found is None:
        found = _RESOLVED[key] = _resolve(name, search_path)
    return found


def _resolve(name: str, search_path: str) -> Resolution:
    for entry in search_path.split(os.pathsep):
        if not entry.startswith("/"):
            return "relative"
        _watch(entry)
        candidate = f"{entry.rstrip('/')}/{name}"
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return _place(candidate)
    return "missing"


def _place(path: str) -> Resolution:
    found = _PLACED.get(path)
    if found is None:
        found = _PLACED[path] = _placed(path)
    return found


def _placed(path: str) -> Resolution:
    real = os.path.realpath(path)
    directory = os.path.dirname(real)
    _watch(directory)
    try:
        status = os.stat(directory)
    except OSError:
        return "untrusted"
    if status.st_uid != 0 or status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "untrusted"
    system = {os.path.realpath(d) for d in SYSTEM_DIRS}
    return "system" if directory in SYSTEM_DIRS or directory in system else "trusted"


PLACE_VERDICTS: dict[Resolution, Callable[[str], Verdict | None]] = {
    "system": lambda name: None,
    "trusted": lambda name: Verdict(REVERSIBLE, "resolution.not_system"),
    "missing": lambda name: Verdict(REVERSIBLE, "resolution.missing"),
    "untrusted": lambda name: opaque(
        "opaque.run_file", f"{name} resolves into a directory that is not root-owned"
    ),
    "relative": lambda name: opaque("opaque.run_file", f"{name} is looked up in a relative PATH entry"),
}


def system_file(path: str) -> bool:
    """Whether the executable ``path`` lies in a root-owned system directory."""
    return _place(path) == "system"
