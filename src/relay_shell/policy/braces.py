"""Bash brace expansion over a word's tokens: ``{a,b}``, nested groups, ``{1..5}``, ``{a..e..2}``.

Only unquoted braces expand (a token ``("u", "{")``); quoted text and expansions are kept as
they are. Bounded: at most :data:`MAX_BRACE_WORDS` words and :data:`MAX_BRACE_DEPTH` groups.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from relay_shell.policy.words import Token

MAX_BRACE_WORDS = 4096
MAX_BRACE_DEPTH = 64

_SEQUENCE = re.compile(
    r"(-?\d{1,9})\.\.(-?\d{1,9})(?:\.\.(-?\d{1,9}))?|([A-Za-z])\.\.([A-Za-z])(?:\.\.(-?\d{1,9}))?"
)


def expand_braces(tokens: list[Token]) -> tuple[list[list[Token]], bool]:
    """Bash brace expansion (``{a,b}``, nested, ``{1..5}``, ``{a..e..2}``) over unquoted braces.

    Returns the expanded token lists and whether the expansion was cut at
    :data:`MAX_BRACE_WORDS` words or :data:`MAX_BRACE_DEPTH` groups.
    """
    results: list[list[Token]] = []
    overflow = _expand(tokens, results, 0)
    return results, overflow


def _expand(tokens: list[Token], results: list[list[Token]], depth: int) -> bool:
    if depth > MAX_BRACE_DEPTH:
        results.append(tokens)
        return True
    for start, token in enumerate(tokens):
        if token != ("u", "{"):
            continue
        alternatives = _alternatives(tokens, start)
        if alternatives is None:
            continue
        close, choices = alternatives
        for choice in choices:
            if len(results) >= MAX_BRACE_WORDS:
                return True
            if _expand(tokens[:start] + choice + tokens[close + 1 :], results, depth + 1):
                return True
        return False
    results.append(tokens)
    return False


def _alternatives(tokens: list[Token], start: int) -> tuple[int, list[list[Token]]] | None:
    """The matching close and the alternatives of the brace group at ``start``, or None."""
    depth = 0
    commas: list[int] = []
    for index in range(start, len(tokens)):
        kind, value = tokens[index]
        if kind != "u":
            continue
        if value == "{":
            depth += 1
        elif value == "}":
            depth -= 1
            if depth == 0:
                if commas:
                    edges = [start, *commas, index]
                    return index, [tokens[edges[i] + 1 : edges[i + 1]] for i in range(len(edges) - 1)]
                return _sequence(tokens, start, index)
        elif value == "," and depth == 1:
            commas.append(index)
    return None


def _sequence(tokens: list[Token], start: int, close: int) -> tuple[int, list[list[Token]]] | None:
    inner = tokens[start + 1 : close]
    if not inner or any(kind != "u" for kind, _ in inner):
        return None
    match = _SEQUENCE.fullmatch("".join(str(value) for _, value in inner))
    if match is None:
        return None
    if match.group(1) is not None:
        first, last, step = int(match.group(1)), int(match.group(2)), abs(int(match.group(3) or 1)) or 1
        width = (
            max(len(match.group(1)), len(match.group(2))) if match.group(1).lstrip("-").startswith("0") else 0
        )
        values = [str(n).zfill(width) for n in _steps(first, last, step)]
    else:
        first, last = ord(match.group(4)), ord(match.group(5))
        step = abs(int(match.group(6) or 1)) or 1
        values = [chr(n) for n in _steps(first, last, step)]
    return close, [[("q", value)] for value in values]


def _steps(first: int, last: int, step: int) -> range:
    count = abs(last - first) // step + 1
    if count > MAX_BRACE_WORDS:
        last = first + (MAX_BRACE_WORDS - 1) * step * (1 if last >= first else -1)
    return range(first, last + (1 if last >= first else -1), step if last >= first else -step)
