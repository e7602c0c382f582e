"""The regex rule table, kept as the classifier's floor for text that does not parse.

The table lives in :mod:`relay_shell.policy.regex_floor` (the policy package is pure and
must not import governance); this module re-exports it for the callers that predate the
parse.
"""

from __future__ import annotations

from relay_shell.policy.regex_floor import (
    IRREVERSIBLE,
    PATTERNS_VERSION,
    READ_ONLY,
    REVERSIBLE,
    RULES,
    STATEFUL,
    Classification,
    Rule,
    classify_text,
)

__all__ = [
    "IRREVERSIBLE",
    "PATTERNS_VERSION",
    "READ_ONLY",
    "REVERSIBLE",
    "RULES",
    "STATEFUL",
    "Classification",
    "Rule",
    "classify_text",
]
