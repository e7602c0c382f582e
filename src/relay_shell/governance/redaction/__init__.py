"""Secret redaction of audited arguments.

Applied to the copy of a call's arguments that goes into the audit record, never to what
executes: every function here is pure and returns new objects. :func:`redact_text` keeps
the key, flag, scheme or token prefix and replaces only the secret with :data:`REDACTED`;
the rule families live in :mod:`.generic` (whatever the program) and :mod:`.commands`
(options that carry a secret only for their program), names in :mod:`.names`.

Guarantees: linear time (every pattern is anchored and possessive or bounded; callers bound
arguments before redacting them, so a 100 MB argument is never scanned); idempotent (the
rules are re-applied until the text stops changing, which costs one pass when there is no
secret); an empty value is never shown as ``[REDACTED]``.

Redaction hides values, never what ran: the audit record carries the parse's command names
and rules beside the redacted arguments.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Final

from relay_shell.governance.redaction.commands import (
    LINE_SECRETS,
    STDIN_READER_PATTERN,
    redact_stdin,
    scrub_command_options,
    scrub_netrc,
    scrub_sql,
    scrub_stdin_secrets,
)
from relay_shell.governance.redaction.generic import (
    SECRET_FLAG_ALONE,
    scrub_bearer,
    scrub_flags,
    scrub_headers,
    scrub_key_values,
    scrub_private_keys,
    scrub_token_shapes,
    scrub_urls,
)
from relay_shell.governance.redaction.names import is_secret_name
from relay_shell.governance.redaction.program_table import StdinMode
from relay_shell.governance.redaction.programs import may_name_program, scrub_programs, stdin_mode
from relay_shell.governance.redaction.words import REDACTED

__all__ = [
    "REDACTED",
    "is_secret_name",
    "redact",
    "redact_session_input",
    "redact_text",
    "removed_values",
    "scrub_removed",
]

# Re-applying the rules converges in one or two passes; the cap only bounds the work.
_MAX_PASSES: Final = 8
# Deeper nesting (or a reference cycle) is replaced by REDACTED rather than recursed into.
_MAX_DEPTH: Final = 64
# Argument names whose value is what a program reads on its standard input.
_STDIN_KEYS: Final = frozenset({"stdin", "input"})

_TEXT_RULES: Final[tuple[Callable[[str], str], ...]] = (
    scrub_private_keys,
    scrub_urls,
    scrub_headers,
    scrub_bearer,
    scrub_flags,
    scrub_command_options,
    scrub_stdin_secrets,
    scrub_sql,
    scrub_netrc,
    scrub_key_values,
    scrub_token_shapes,
    scrub_programs,
)


# Every rule needs one of these to find anything: a secret-ish word (the name triggers of
# names.py, header and scheme words, the programs of commands.py), '@' or '%' (credentials),
# '-D' (properties), or a token-shape prefix. Text without any is returned at once.
_MAY_HOLD_SECRET: Final = re.compile(
    r"(?i:pass|pw|secret|token|key|cred|auth|bearer|cookie|sig|sas|private|webhook|hooks\.slack|mysql|mariadb"
    r"|login|curl|redis|keydb|valkey|mongo|ldap|openssl|zip|7z|configure|sudo|stdin|vault|identified)"
    r"|[@%]|-D|gh[pousr]_|github_pat_|gl(?:pat|dt|rt|ptt|soat)-|xox|AKIA|ASIA|sk-|AIza|_live_|_test_|npm_"
    r"|pypi-|hf_|hv[sbr]\.|eyJ"
)


def _scrub_once(text: str) -> str:
    if _MAY_HOLD_SECRET.search(text) is None and not may_name_program(text):
        return text
    for rule in _TEXT_RULES:
        text = rule(text)
    return text


def scrub_all_rules(text: str) -> str:
    """One pass of every rule without the pre-check (what the pre-check must never change)."""
    for rule in _TEXT_RULES:
        text = rule(text)
    return text


# Texts seen to hold nothing to redact (they are audited verbatim anyway), so the same host,
# path or command in the next call is not scanned again; cleared whole when full.
_CLEAN: Final[dict[str, None]] = {}
_CLEAN_ENTRIES: Final = 4096
_CLEAN_LONGEST: Final = 1024  # at most about 4 MiB remembered


def redact_text(text: str) -> str:
    """Return ``text`` with every recognised secret replaced by :data:`REDACTED`.

    Keys, flags, schemes and token prefixes are kept so the audit still says what was
    there. Pure, never raises on any ``str``, linear in ``len(text)``, idempotent. A short
    text found clean is remembered (never one that held a secret).
    """
    if text in _CLEAN:
        return text
    current = text
    for _ in range(_MAX_PASSES):
        scrubbed = _scrub_once(current)
        if scrubbed == current:
            break
        current = scrubbed
    if current == text and len(text) <= _CLEAN_LONGEST:
        if len(_CLEAN) >= _CLEAN_ENTRIES:
            _CLEAN.clear()
        _CLEAN[text] = None
    return current


def redact_session_input(text: str, *, echo: bool) -> str:
    """Redact what was typed into a session, given the terminal's ECHO flag when it was typed.

    With ECHO off (a password prompt: ``sudo``, ``passwd``, ``ssh``, ``read -s``) the whole
    input is secret and becomes :data:`REDACTED` (empty input stays empty). With ECHO on it
    is an ordinary argument: only the secrets :func:`redact_text` recognises go, so an
    agent that prints ``Password:`` itself cannot hide the command it types next.
    """
    if echo:
        return redact_text(text)
    return REDACTED if text else text


def redact(value: object) -> object:
    """Return a redacted copy of an audited argument; the input is never mutated.

    Strings go through :func:`redact_text`. Dicts, lists, tuples, sets and frozensets are
    rebuilt recursively: a dict key is itself redacted, and a value whose key names a secret
    (``password``, ``DB_PASSWORD``, ``STRIPE_KEY``, ``apiKey``, ``Authorization``...)
    becomes REDACTED whatever its type, unless it is empty. A dict's ``stdin`` that feeds a
    program reading a secret there (named in another of the dict's strings: ``sudo -S``,
    ``chpasswd``, ``--password-stdin``...) loses its first line, or for chpasswd every
    line's secret. In a list or tuple, the element after a bare secret flag
    (``["--password", "x"]``) becomes REDACTED. Other values are returned unchanged;
    containers nested deeper than 64 levels become REDACTED.
    """
    return _redact_nested(value, 0)


def _is_empty(value: object) -> bool:
    return value is None or (
        isinstance(value, str | bytes | list | tuple | dict | set | frozenset) and not value
    )


def _redact_nested(value: object, depth: int) -> object:
    if isinstance(value, str):
        return redact_text(value)
    if not isinstance(value, dict | list | tuple | set | frozenset):
        return value
    if depth >= _MAX_DEPTH:
        return REDACTED
    if isinstance(value, dict):
        return _redact_dict(value, depth)
    if isinstance(value, set | frozenset):
        members = (_redact_nested(member, depth + 1) for member in value)
        return set(members) if isinstance(value, set) else frozenset(members)
    items = _redact_sequence(value, depth)
    return items if isinstance(value, list) else tuple(items)


def _redact_dict(value: Mapping[object, object], depth: int) -> dict[object, object]:
    reader = _stdin_reader(value)
    redacted: dict[object, object] = {}
    for key, item in value.items():
        fed = (
            _redact_fed(item, reader)
            if reader is not None and key in _STDIN_KEYS and isinstance(item, str)
            else item
        )
        new_key, new_item = _redact_entry(key, fed, depth)
        redacted[new_key] = new_item
    return redacted


def _stdin_reader(value: Mapping[object, object]) -> StdinMode | None:
    """None when no string of the dict names a secret stdin reader; else how it reads the
    stdin: every line ``name:secret`` (chpasswd), every line a secret (passwd), or the first."""
    if not any(key in _STDIN_KEYS for key in value):
        return None
    found: StdinMode | None = None
    for key, item in value.items():
        if key in _STDIN_KEYS or not isinstance(item, str):
            continue
        mode = stdin_mode(item)
        if mode is None and STDIN_READER_PATTERN.search(item):
            mode = "pairs" if LINE_SECRETS.search(item) else "line"
        if mode is not None and (found is None or _STDIN_STRENGTH[mode] > _STDIN_STRENGTH[found]):
            found = mode
    return found


_STDIN_STRENGTH: Final[dict[StdinMode, int]] = {"line": 0, "pairs": 1, "all": 2}


def _redact_fed(text: str, mode: StdinMode) -> str:
    """The stdin of a secret reader: every non-blank line (``all``), every ``name:secret``
    line's secret (``pairs``), or the first line (``line``)."""
    if mode == "all":
        return "\n".join(REDACTED if line.strip() else line for line in text.split("\n"))
    return redact_stdin(text, every_line=mode == "pairs")


def _redact_entry(key: object, item: object, depth: int) -> tuple[object, object]:
    """Redact a dict entry. The value is secret when the key names a secret before or after
    its own redaction (the second keeps redact idempotent: ``-----BEGIN ... KEY-----x``
    only reads as ``private_key`` once its tail is REDACTED)."""
    redacted_key = _redact_nested(key, depth + 1)
    secret = isinstance(key, str) and (
        is_secret_name(key) or (isinstance(redacted_key, str) and is_secret_name(redacted_key))
    )
    if secret and not _is_empty(item):
        return redacted_key, REDACTED
    return redacted_key, _redact_nested(item, depth + 1)


def _redact_sequence(items: list[object] | tuple[object, ...], depth: int) -> list[object]:
    """Redact each element; a non-empty element following a bare secret flag is a secret."""
    redacted: list[object] = []
    after_secret_flag = False
    for item in items:
        secret = after_secret_flag and not _is_empty(item)
        redacted.append(REDACTED if secret else _redact_nested(item, depth + 1))
        after_secret_flag = isinstance(item, str) and SECRET_FLAG_ALONE.fullmatch(item) is not None
    return redacted


_MIN_ECHOED_SECRET: Final = 4  # shorter removed values are not hunted down elsewhere (too common)


def removed_values(original: object, redacted: object) -> set[str]:
    """The strings :func:`redact` took out of ``original`` to make ``redacted``.

    A string whose redacted form is ``…[REDACTED]…`` gave up the text between the kept
    pieces; a value replaced whole gave up its text. Used to hunt the same secrets down
    where they are echoed (an error message naming the argument, a target list).
    """
    if redacted == original:  # nothing was redacted (the common case), so nothing was removed
        return set()
    found: set[str] = set()
    _collect_removed(original, redacted, found, 0)
    return {value for value in found if len(value) >= _MIN_ECHOED_SECRET}


def _collect_removed(original: object, redacted: object, found: set[str], depth: int) -> None:
    if depth > _MAX_DEPTH:
        return
    if isinstance(original, str):
        if isinstance(redacted, str) and redacted != original:
            found.update(_gaps(original, redacted))
        return
    if isinstance(original, dict) and isinstance(redacted, dict):
        for (key, item), (new_key, new_item) in zip(original.items(), redacted.items(), strict=False):
            _collect_removed(key, new_key, found, depth + 1)
            _collect_removed(item, new_item, found, depth + 1)
    elif isinstance(original, list | tuple) and isinstance(redacted, list | tuple):
        for item, new_item in zip(original, redacted, strict=False):
            _collect_removed(item, new_item, found, depth + 1)


def _gaps(original: str, redacted: str) -> list[str]:
    """The spans of ``original`` that became ``[REDACTED]`` in ``redacted``."""
    kept = redacted.split(REDACTED)
    gaps: list[str] = []
    position = len(kept[0]) if original.startswith(kept[0]) else 0
    for piece in kept[1:]:
        end = original.find(piece, position) if piece else len(original)
        if end < 0:
            break
        gaps.append(original[position:end])
        position = end + len(piece)
    return [gap.strip("'\"") for gap in gaps if gap]


def scrub_removed(value: object, removed: set[str]) -> object:
    """``value`` with every occurrence of a removed secret replaced by :data:`REDACTED`."""
    if not removed:
        return value
    pattern = re.compile("|".join(re.escape(secret) for secret in sorted(removed, key=len, reverse=True)))
    return _replace_all(value, pattern, 0)


def _replace_all(value: object, pattern: re.Pattern[str], depth: int) -> object:
    if isinstance(value, str):
        return pattern.sub(REDACTED, value)
    if depth > _MAX_DEPTH:
        return value
    if isinstance(value, dict):
        return {key: _replace_all(item, pattern, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        items = [_replace_all(item, pattern, depth + 1) for item in value]
        return items if isinstance(value, list) else tuple(items)
    return value
