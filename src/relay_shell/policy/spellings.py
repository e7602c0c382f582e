"""A command as normalised text, and the further spellings the deny list is matched against.

:func:`render` is the text a command is recorded and audited as; :func:`deny_spellings` adds
the forms a deny entry must also catch (``/usr/bin/rm`` as ``rm``, ``/etc//x`` as ``/etc/x``,
a glob as the files it matches, ``kill -9`` as ``kill -KILL``).
"""

from __future__ import annotations

import glob
import os
import posixpath
import re
import shlex
from collections.abc import Callable, Sequence
from functools import lru_cache

from relay_shell.policy.options import signal_spellings
from relay_shell.policy.rules import Invocation, Nested, Stdin
from relay_shell.policy.rules.system import kill_signals
from relay_shell.policy.words import Word

_MAX_GLOB_MATCHES = 32


def render(words: Sequence[Word]) -> str:
    """Words as normalised text: literal words shell-quoted only when needed (absolute paths with
    ``//`` and ``/./`` collapsed), expansions as written."""
    short = _short_quoted  # scripts repeat their words: a short literal is rendered once
    return " ".join([
        (short(word.text) if len(word.text) <= 200 else _quoted(word.text)) if word.literal else word.text
        for word in words
    ])  # fmt: skip


def _quoted(text: str) -> str:
    """A literal word as rendered; short words are remembered (scripts repeat their words)."""
    return _short_quoted(text) if len(text) <= 200 else shlex.quote(_tidy(text))


@lru_cache(maxsize=4096)
def _short_quoted(text: str) -> str:
    return shlex.quote(_tidy(text))


_DOUBLE_SLASH = re.compile(r"/(?:\.?/)+")


def _tidy(text: str) -> str:
    """``/etc//x`` and ``/etc/./x`` as ``/etc/x`` (always the same file); ``..`` is kept."""
    return _DOUBLE_SLASH.sub("/", text) if text.startswith("/") else text


def resolved_path(word: Word) -> str:
    """An absolute path with ``..`` collapsed and symlinks resolved (for the deny list)."""
    if not word.literal or not word.text.startswith("/") or "\x00" in word.text:
        return word.text
    return os.path.realpath(posixpath.normpath(word.text))


def expand_glob(word: Word, cwd: str | None) -> str:
    """A glob word as the paths it matches now (at most 32), or as written."""
    if not word.safe_glob or cwd is None:
        return word.text
    matches = []
    for match in glob.iglob(word.text, root_dir=None if word.text.startswith("/") else cwd):
        matches.append(shlex.quote(match))
        if len(matches) >= _MAX_GLOB_MATCHES:
            break
    return " ".join(matches) or word.text


def deny_spellings(
    name: str, current: list[Word], core: list[Word], cwd: str | None, nested: Callable[[], Nested]
) -> tuple[str, ...]:
    """Further normalised forms of one command for the deny list: without wrappers, by base
    name, with globs expanded against the files that exist now (``cwd``; None: not expanded),
    and for ``kill`` every spelling of its signal (``-9``, ``-KILL``, ``-SIGKILL``).

    ``current`` is the command as written after its wrappers, ``core`` the same with the
    resolved name; ``nested`` gives the rules' view of nested code (for reading ``kill``)."""
    spellings = [render(core), " ".join(word.text for word in core)]
    if any(word.literal and word.text.startswith("/") for word in core):
        spellings.append(" ".join(resolved_path(word) for word in core))
    if any(word.glob for word in core):
        spellings.append(" ".join(expand_glob(word, cwd) for word in core))
    if name == "kill" and len(current) > 1:
        invocation = Invocation("kill", list(current[1:]), Stdin("empty"), nested(), None, False, None)
        signals, _ = kill_signals(invocation)
        targets: list[str] = []
        skip = False
        for word in current[1:]:
            if skip or word.text.startswith("-"):
                skip = word.text in ("-s", "-n", "--signal")
                continue
            targets.append(word.text)
        for signal in signals:
            for spelling in signal_spellings(signal):
                spellings.append(" ".join(["kill", f"-{spelling}", *targets]))
    return tuple(dict.fromkeys(spellings))
