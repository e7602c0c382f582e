"""Small languages inside arguments: sed scripts, awk programs, SQL text.

Each scanner answers one question, "can this run a command or write a file?", and reads
anything it does not understand as "yes" (ambiguity rounds up).
"""

from __future__ import annotations

import re

from relay_shell.policy.model import IRREVERSIBLE, REVERSIBLE, Verdict, opaque
from relay_shell.policy.regex_floor import classify_text

_SED_SIMPLE = set("=dDgGhHlnNpPxzFqQLv")
_SED_LABEL = set("btT:")
_SED_TEXT = set("aic")
_AWK_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_AWK_DANGER = (
    (re.compile(r"\bsystem\s*\("), "awk system() runs a shell command"),
    (re.compile(r"\bgetline\b"), "awk getline reads from a command or a file"),
    (re.compile(r"(?<!\|)\|(?!\|)"), "awk pipes to or from a command"),
    (re.compile(r"\bprintf?\b[^;{}\n]*>"), "awk print redirected into a file"),
    (re.compile(r"@(?:load|include|namespace)\b"), "gawk loads code (@load/@include)"),
)
_SQL_ESCAPES = (
    (re.compile(r"\\!"), "psql \\! runs a shell command"),
    (
        re.compile(r"(?im)^\s*\.(?:shell|system|sh|import|output|once|read|load)\b"),
        "a sqlite dot-command runs or writes",
    ),
    (re.compile(r"(?im)^\s*(?:system|\\!)\s"), "a mysql client command runs a shell command"),
    (re.compile(r"(?i)\bprogram\s*'"), "COPY ... PROGRAM runs a command"),
    (re.compile(r"(?i)\\(?:o|g|gx|w|copy|i|ir|include)\b"), "a psql meta-command reads or writes files"),
    (re.compile(r"(?i)\bsource\s+\S"), "a client source command runs a file"),
    (re.compile(r"(?i)\binto\s+(?:out|dump)file\b"), "SELECT ... INTO OUTFILE writes a file"),
)


def sed_danger(script: str) -> str | None:
    """Why a sed script can run a command or write a file (``e``, ``w``, ``s///e``, ``s///w``).

    Returns a reason, or None when every command is understood and harmless.
    """
    index, length = 0, len(script)
    while index < length:
        char = script[index]
        if char in " \t\n;{}!":
            index += 1
            continue
        if char == "#":
            end = script.find("\n", index)
            index = length if end < 0 else end + 1
            continue
        index = _sed_address(script, index)
        while index < length and script[index] in " \t!":
            index += 1
        if index >= length:
            return None
        index, reason = _sed_command(script, index)
        if reason:
            return reason
    return None


def _skip_label(script: str, index: int) -> int:
    while index < len(script) and script[index] not in ";\n":
        index += 1
    return index


def _skip_digits(script: str, index: int) -> int:
    while index < len(script) and script[index].isdigit():
        index += 1
    return index


def _sed_command(script: str, index: int) -> tuple[int, str | None]:
    """Read the sed command at ``index``; return where the next one starts and any danger."""
    command = script[index]
    index += 1
    if command in "eEwW":
        return index, f"sed {command} runs a command or writes a file"
    if command == "s":
        return _sed_substitute(script, index)
    if command == "y":
        return _sed_skip_delimited(script, index, parts=2), None
    skip = (
        _sed_to_line_end
        if command in _SED_TEXT or command in "rR"
        else _skip_label
        if command in _SED_LABEL
        else _skip_digits
        if command in _SED_SIMPLE or command in "{}"
        else None
    )
    if skip is None:
        return index, f"sed command {command!r} the classifier does not know"
    return skip(script, index), None


def _sed_address(script: str, index: int) -> int:
    length = len(script)
    for _ in range(2):
        if index < length and (script[index].isdigit() or script[index] in "$+~"):
            while index < length and (script[index].isdigit() or script[index] in "$+~"):
                index += 1
        elif index < length and script[index] == "/":
            index = _sed_skip_delimited(script, index, parts=1)
            while index < length and script[index] in "IM":
                index += 1
        elif index + 1 < length and script[index] == "\\":
            index = _sed_skip_delimited(script, index + 1, parts=1)
        if index < length and script[index] == ",":
            index += 1
            continue
        break
    return index


def _sed_skip_delimited(script: str, index: int, parts: int) -> int:
    """Skip ``parts`` fields delimited by ``script[index]``; return the index after the last."""
    if index >= len(script):
        return index
    delimiter = script[index]
    index += 1
    for _ in range(parts):
        while index < len(script) and script[index] != delimiter:
            index += 2 if script[index] == "\\" else 1
        index += 1
    return index


def _sed_substitute(script: str, index: int) -> tuple[int, str | None]:
    index = _sed_skip_delimited(script, index, parts=2)
    while index < len(script) and script[index] not in ";\n}":
        flag = script[index]
        if flag == "e":
            return index, "sed s///e runs the result as a command"
        if flag == "w":
            return index, "sed s///w writes a file"
        if not (flag.isdigit() or flag in "gpiImM "):
            return index, f"sed substitution flag {flag!r} the classifier does not know"
        index += 1
    return index, None


def _sed_to_line_end(script: str, index: int) -> int:
    while index < len(script) and script[index] != "\n":
        index += 2 if script[index] == "\\" else 1
    return index


def awk_danger(program: str) -> str | None:
    """Why an awk program can run a command or write a file, or None."""
    stripped = _AWK_STRING.sub('""', program)
    for pattern, reason in _AWK_DANGER:
        if pattern.search(stripped):
            return reason
    return None


def sql_verdict(sql: str) -> Verdict:
    """SQL (or a client's commands) sent to a database client.

    Destructive statements (``DROP``, ``TRUNCATE``, ``DELETE`` without ``WHERE``,
    ``FLUSHALL``...) are tier 3; client escapes that run commands or touch files (``\\!``,
    ``.shell``, ``COPY ... PROGRAM``, ``\\o``) are opaque; other SQL is tier 1.
    """
    verdict = Verdict(REVERSIBLE, "sql.statement")
    floor = classify_text(sql)
    if floor.family == "sql" and floor.rule:
        verdict = Verdict(IRREVERSIBLE, floor.rule)
    for pattern, reason in _SQL_ESCAPES:
        if pattern.search(sql):
            return verdict.worst(opaque("opaque.sql_client", reason))
    return verdict
