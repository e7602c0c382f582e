"""The rule table: one function per command name, grouped by family in the modules here.

Importing the package fills :data:`RULES` (name -> rule) and :data:`WORST` (the verdict a
rule takes when its arguments are expansions); :data:`WRAPPERS` holds the commands that run
another command, :func:`known_safe` the reads that may be tier 0.
"""

from __future__ import annotations

import re
from functools import lru_cache

from relay_shell.policy.rules import (  # noqa: F401 (fill RULES)
    builtins,
    containers,
    daemons,
    databases,
    execution,
    files,
    git,
    network,
    packages,
    runners,
    system,
    tools,
)
from relay_shell.policy.rules.base import RULES, WORST, Invocation, Nested, Rule, Stdin
from relay_shell.policy.rules.execution import interpreter_base
from relay_shell.policy.rules.readonly import BUILTINS, known_safe
from relay_shell.policy.rules.wrappers import WRAPPERS, Unwrapped

__all__ = [
    "BUILTINS",
    "RULES",
    "WORST",
    "WRAPPERS",
    "Invocation",
    "Nested",
    "Rule",
    "Stdin",
    "Unwrapped",
    "interpreter_base",
    "known_safe",
    "lookup",
]


_VERSIONED_TOOL = re.compile(r"(?:pip|pip3|pydoc|easy_install|gem|bundle|irb|erb)[0-9][0-9.]*")


def lookup(name: str) -> Rule | None:
    """The rule for a command base name (versioned interpreters and ``mkfs.*`` included)."""
    found = RULES.get(name)
    if found is not None:
        return found
    return _derived(name, len(RULES))


@lru_cache(maxsize=4096)
def _derived(name: str, table_size: int) -> Rule | None:
    """The rule a name not in the table borrows (a pure function of the name while the table
    keeps ``table_size`` entries: scripts repeat their unlisted names)."""
    del table_size  # part of the cache key only
    if name.startswith("mkfs."):
        return RULES["mkfs"]
    if _VERSIONED_TOOL.fullmatch(name):
        return RULES.get(name.rstrip("0123456789.")) or RULES.get("pip")
    base = interpreter_base(name)
    if base is not None:
        return RULES.get("python" if base == "python" else base) or RULES.get("python3")
    return None
