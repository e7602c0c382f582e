"""Pieces every redaction rule shares: the marker, shell words, and a forward-only rewriter.

Linear time: every rule's pattern starts at an anchor guarded by a lookbehind that excludes
the pattern's own alphabet (so two attempts never scan the same run) and consumes with
possessive or bounded quantifiers; :func:`rewrite` only moves forward.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

REDACTED: Final = "[REDACTED]"

# Shell-ish words: a double-quoted string (backslash escapes), a single-quoted string (no
# escapes), or a bare run. The closing quote is optional: an unclosed quote runs to the end
# of the line, which over-redacts rather than leaks.
DOUBLE_QUOTED: Final = r'"(?:[^"\\\n]|\\.)*+"?'
SINGLE_QUOTED: Final = r"'[^'\n]*+'?"
SHELL_WORD: Final = rf"""(?:{DOUBLE_QUOTED}|{SINGLE_QUOTED}|[^\s"'`;|&<>()]++)"""
SHELL_WORD_PATTERN: Final = re.compile(SHELL_WORD)

PROGRAM_START: Final = r"(?<![A-Za-z0-9_.-])"
PROGRAM_END: Final = r"(?![A-Za-z0-9_.-])"
OPTION_START: Final = r"(?<![^\s\"'])"
COMMAND_SEPARATOR: Final = re.compile(r"[\n;|&]")

# An edit (start, end, replacement), or the position to resume searching from.
type Decision = tuple[int, int, str] | int


def rewrite(text: str, pattern: re.Pattern[str], decide: Callable[[re.Match[str]], Decision]) -> str:
    """Apply ``decide`` to successive matches of ``pattern``, splicing the edits it returns.

    An edit starts at or after its match and may extend past it; searching resumes after
    the edit, or at the position ``decide`` returned, always moving forward.
    """
    pieces: list[str] = []
    copied = 0
    search_from = 0
    while (match := pattern.search(text, search_from)) is not None:
        decision = decide(match)
        if isinstance(decision, int):
            search_from = max(decision, match.start() + 1)
            continue
        start, end, replacement = decision
        pieces.append(text[copied:start])
        pieces.append(replacement)
        copied = end
        search_from = max(end, match.start() + 1)
    if not pieces:
        return text
    pieces.append(text[copied:])
    return "".join(pieces)


def splice(text: str, edits: list[tuple[int, int, str]]) -> str:
    """``text`` with non-overlapping, ordered ``(start, end, replacement)`` edits applied."""
    if not edits:
        return text
    pieces: list[str] = []
    copied = 0
    for start, end, replacement in edits:
        if start < copied:
            continue  # overlaps an earlier edit, which already covers it
        pieces.extend((text[copied:start], replacement))
        copied = end
    pieces.append(text[copied:])
    return "".join(pieces)


def redact_word(word: str) -> str:
    """Replace a shell word's content with REDACTED, keeping its quotes; empty stays empty."""
    if word[:1] in ('"', "'"):
        quote = word[0]
        closed = len(word) > 1 and word.endswith(quote)
        content = word[1:-1] if closed else word[1:]
        if not content:
            return word
        return f"{quote}{REDACTED}{quote}" if closed else f"{quote}{REDACTED}"
    return REDACTED if word else word


def redact_after(word: str, separator: str) -> str:
    """``user<sep>secret`` -> ``user<sep>[REDACTED]`` (quotes kept); a word without it is kept."""
    quote = word[0] if word[:1] in ('"', "'") else ""
    closed = bool(quote) and len(word) > 1 and word.endswith(quote)
    content = word[len(quote) : len(word) - 1 if closed else len(word)]
    head, found, secret = content.partition(separator)
    if not found or not secret:
        return word
    return f"{quote}{head}{separator}{REDACTED}{quote if closed else ''}"


def word_value(word: str) -> str:
    """A shell word without its quotes."""
    if word[:1] in ('"', "'"):
        closed = len(word) > 1 and word.endswith(word[0])
        return word[1:-1] if closed else word[1:]
    return word
