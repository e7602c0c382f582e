"""The regex rule table over raw text: the floor for text the parse cannot read.

The grammar-aware classifier (:mod:`relay_shell.policy.analyze`) applies this table to text
that does not parse (and to inline interpreter code) so that it never classifies lower than
the scan did. The rules themselves are in :mod:`relay_shell.policy.regex_rules`.

The highest tier whose rule matches anywhere wins; no match is tier 1 (REVERSIBLE). Tier 0
never comes from here: read-only tools have a fixed tier. Texts are also scanned in a plain
spelling (quotes, backslashes, ``$IFS`` removed). It is a guardrail, not a sandbox;
``docs/policy-patterns.md`` has the families and the look-alike decisions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from relay_shell.policy.regex_rules import IRREVERSIBLE, READ_ONLY, REVERSIBLE, RULES, STATEFUL, Rule

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

PATTERNS_VERSION = "2026.12.4"  # the grammar-aware classifier and its rule tables


@dataclass(frozen=True)
class Classification:
    """The outcome: the tier and the rule that set it (``None`` when no rule matched)."""

    tier: int
    rule: str | None
    family: str | None


_BY_TIER = tuple(sorted(RULES, key=lambda rule: -rule.tier))  # stable: table order within a tier
_NO_MATCH = Classification(REVERSIBLE, None, None)
SHORT_TEXT = 4096
"""Up to this many characters, the anchors are looked for all at once (cheaper than rule by
rule); a longer text is scanned rule by rule, so an early match spares the other scans."""


def _index_anchors() -> tuple[tuple[str, tuple[int, ...]], ...]:
    by_anchor: dict[str, list[int]] = {}
    for index, rule in enumerate(_BY_TIER):
        for anchor in rule.anchors:
            by_anchor.setdefault(anchor, []).append(index)
    return tuple((anchor, tuple(rules)) for anchor, rules in by_anchor.items())


_RULES_BY_ANCHOR = _index_anchors()
_UNANCHORED = tuple(index for index, rule in enumerate(_BY_TIER) if not rule.anchors)
_CONTINUATION = re.compile(r"\\\r?\n")
_IFS = re.compile(r"\$\{?IFS\}?")
_QUOTING = re.compile(r"[\\'\"]")
_FIND_EXEC = re.compile(r"(?<=\s)-(?:exec|execdir|ok|okdir)(?=[ \t])")


def _spellings(text: str) -> tuple[str, ...]:
    """The text as given and, when different, its plain spelling; each behind a newline."""
    plain = _FIND_EXEC.sub(";", _QUOTING.sub("", _IFS.sub(" ", _CONTINUATION.sub("", text))))
    return ("\n" + text,) if plain == text else ("\n" + text, "\n" + plain)


def classify_text(text: str) -> Classification:
    """Classify everything an executor will see (command, script, stdin, env, keys typed).

    Returns the highest-tier matching rule (table order breaks ties), or tier 1 with
    ``rule=None`` when nothing matches, including for empty or blank text. Never raises;
    linear in ``len(text)``.
    """
    if not text.strip():
        return _NO_MATCH
    spellings = _spellings(text)
    lowered = [spelling.lower() for spelling in spellings]
    if len(text) <= SHORT_TEXT:
        return _classify_short(spellings, lowered)
    seen: list[dict[str, bool]] = [{} for _ in spellings]  # anchor -> present, per spelling
    for rule in _BY_TIER:
        for spelling, lower, cache in zip(spellings, lowered, seen, strict=True):
            if _anchored(rule.anchors, lower, cache) and rule.pattern.search(spelling):
                return Classification(rule.tier, rule.name, rule.family)
    return _NO_MATCH


def _classify_short(spellings: tuple[str, ...], lowered: list[str]) -> Classification:
    """:func:`classify_text` for a short text: every anchor looked for once per spelling,
    then only the rules one of them names are tried, in the same order (same answer)."""
    candidates: list[set[int]] = []
    for lower in lowered:
        found: set[int] = set(_UNANCHORED)  # a rule without anchors is always tried
        for anchor, rules in _RULES_BY_ANCHOR:
            if anchor in lower:
                found.update(rules)
        candidates.append(found)
    for index in sorted(set().union(*candidates)):
        rule = _BY_TIER[index]
        for spelling, found in zip(spellings, candidates, strict=True):
            if index in found and rule.pattern.search(spelling):
                return Classification(rule.tier, rule.name, rule.family)
    return _NO_MATCH


def _anchored(anchors: tuple[str, ...], lowered: str, cache: dict[str, bool]) -> bool:
    """Whether one of ``anchors`` occurs in ``lowered`` (no anchors: always)."""
    if not anchors:
        return True
    for anchor in anchors:
        found = cache.get(anchor)
        if found is None:
            found = cache[anchor] = anchor in lowered
        if found:
            return True
    return False
