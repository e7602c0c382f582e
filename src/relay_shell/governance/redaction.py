"""Secret redaction of audited arguments (docs/adr/0009-audit-sink.md).

Applied to the copy of a call's arguments that goes into the audit record, never to what
executes: every function here is pure and returns new objects.

:func:`redact_text` keeps the key, flag, scheme or token prefix and replaces only the
secret with :data:`REDACTED`. Rule families, applied in this order:

1. PEM / OpenSSH private key blocks (the whole body; a block without its END line is
   redacted to the end of the text, since a truncated key is still a key);
2. URL credentials (``scheme://user:secret@host``);
3. ``Authorization`` / ``Proxy-Authorization`` header values (any scheme, scheme kept);
4. ``Bearer <token>``;
5. secret-looking CLI flags (``--password x``, ``--db-password=x``, ``-storepass x``);
6. command-specific short options: ``mysql``/``mariadb*`` ``-p<secret>``, ``sshpass -p``,
   ``docker|podman ... login -p``, ``curl -u user:secret``;
7. ``key=value``, ``key: value``, ``"key": "value"`` pairs whose key looks secret;
8. well-known token shapes (GitHub, GitLab, Slack, AWS, OpenAI/Anthropic, Google,
   Stripe, npm, PyPI, Hugging Face, JWT).

Linear time: every pattern starts at an anchor guarded by a lookbehind that excludes the
pattern's own alphabet (so two attempts never scan the same run) and consumes with
possessive or bounded quantifiers; values that run to a delimiter are scanned once and
never re-entered.

Idempotence: the rules are re-applied until the text stops changing, so
``redact(redact(x)) == redact(x)``; text without secrets costs exactly one pass.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

REDACTED: Final = "[REDACTED]"

# Re-applying the rules converges in one or two passes; the cap only bounds the work.
_MAX_PASSES: Final = 8
# Deeper nesting (or a reference cycle) is replaced by REDACTED rather than recursed into.
_MAX_DEPTH: Final = 64

# --- secret-looking names (dict keys, key=value keys) -----------------------------------

_CAMEL_BOUNDARY: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NAME_PART: Final = re.compile(r"[a-z0-9]+")
_SECRET_SUBSTRING: Final = re.compile(
    r"passw(?:or)?d|pwd|secret|token|apikey|credential|passphrase|privatekey"
)
_SECRET_WHOLE_PARTS: Final = frozenset({"pass", "auth", "authorization"})
_SECRET_PART_PAIRS: Final = ("api_key", "private_key")
# Ordinary words that contain a trigger: tokenizer, tokenise, secretary, passwordless.
_LOOKALIKE_WORD: Final = re.compile(r"token(?:i[sz])|secretar|passwordless")
# A last name part that makes the name describe a secret rather than hold one.
_METADATA_LAST_PART: Final = re.compile(
    r"algorithm|authentications?|count|dir|disabled|enabled|endpoint|expiration|expires|expiry|files?"
    r"|format|helper|hint|len|length|lifetime|limit|name|path|polic(?:y|ies)|prompt|ref|required|ttl|type"
    r"|ur[il]"
)
_COUNTING_FIRST_PARTS: Final = frozenset({"max", "min", "num"})
# The shell's working-directory variables, not MySQL-style passwords.
_SHELL_STATE_NAMES: Final = frozenset({"PWD", "OLDPWD"})


def _is_secret_name(name: str) -> bool:
    """Whether a dict key or ``key=value`` key names a secret (``DB_PASSWORD``, ``apiKey``).

    The name is split into lower-case parts at non-alphanumerics and camelCase
    boundaries. It is secret when a part contains password/passwd/pwd/secret/token/
    apikey/credential/passphrase/privatekey, a part is exactly pass/auth/authorization,
    or two parts read api_key/private_key; unless the last part is metadata
    (``password_policy``, ``token_url``, ``PasswordAuthentication``) or the first counts
    (``max_tokens``).
    """
    if name in _SHELL_STATE_NAMES:
        return False
    parts = _NAME_PART.findall(_CAMEL_BOUNDARY.sub("_", name).lower())
    if not parts:
        return False
    if len(parts) > 1 and (_METADATA_LAST_PART.fullmatch(parts[-1]) or parts[0] in _COUNTING_FIRST_PARTS):
        return False
    for part in parts:
        if part in _SECRET_WHOLE_PARTS:
            return True
        if _SECRET_SUBSTRING.search(_LOOKALIKE_WORD.sub(" ", part)):
            return True
    joined = "_".join(parts)
    return any(pair in joined for pair in _SECRET_PART_PAIRS)


# --- shared pieces ------------------------------------------------------------------------

# Shell-ish words: a double-quoted string (backslash escapes), a single-quoted string (no
# escapes), or a bare run. The closing quote is optional: an unclosed quote runs to the end
# of the line, which over-redacts rather than leaks.
_DOUBLE_QUOTED: Final = r'"(?:[^"\\\n]|\\.)*+"?'
_SINGLE_QUOTED: Final = r"'[^'\n]*+'?"
_SHELL_WORD: Final = rf"""(?:{_DOUBLE_QUOTED}|{_SINGLE_QUOTED}|[^\s"'`;|&<>()]++)"""

# An edit (start, end, replacement), or the position to resume searching from.
type _Decision = tuple[int, int, str] | int


def _rewrite(text: str, pattern: re.Pattern[str], decide: Callable[[re.Match[str]], _Decision]) -> str:
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


def _redact_word(word: str) -> str:
    """Replace a shell word's content with REDACTED, keeping its quotes; empty stays empty."""
    if word[:1] in ('"', "'"):
        quote = word[0]
        closed = len(word) > 1 and word.endswith(quote)
        content = word[1:-1] if closed else word[1:]
        if not content:
            return word
        return f"{quote}{REDACTED}{quote}" if closed else f"{quote}{REDACTED}"
    return REDACTED


# --- 1. private key blocks ---------------------------------------------------------------

_KEY_LABEL: Final = r"(?:[A-Z0-9]{1,24} ){0,3}PRIVATE KEY(?: BLOCK)?-----"
_PRIVATE_KEY_BEGIN: Final = re.compile(rf"-----BEGIN {_KEY_LABEL}")
_PRIVATE_KEY_END: Final = re.compile(rf"-----END {_KEY_LABEL}")


def _scrub_private_keys(text: str) -> str:
    """``-----BEGIN X PRIVATE KEY-----<body>-----END X PRIVATE KEY-----`` -> body REDACTED."""
    if "PRIVATE KEY" not in text:
        return text
    pieces: list[str] = []
    copied = 0
    while (begin := _PRIVATE_KEY_BEGIN.search(text, copied)) is not None:
        pieces.append(text[copied : begin.end()])
        pieces.append(REDACTED)
        end = _PRIVATE_KEY_END.search(text, begin.end())
        if end is None:
            return "".join(pieces)
        pieces.append(end.group())
        copied = end.end()
    pieces.append(text[copied:])
    return "".join(pieces)


# --- 2. URL credentials ------------------------------------------------------------------

# The password runs to the last '@' of the authority; authorities of different URLs are
# disjoint (they cannot contain '/'), so the backtracking to that '@' stays linear.
_URL_CREDENTIALS: Final = re.compile(
    r"(?P<prefix>(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}+://[^\s/?#@:]*+):[^\s/?#]+@"
)


def _scrub_url_credentials(text: str) -> str:
    """``https://user:secret@host`` -> ``https://user:[REDACTED]@host``."""
    if "://" not in text:
        return text
    return _URL_CREDENTIALS.sub(rf"\g<prefix>:{REDACTED}@", text)


# --- 3. Authorization headers ------------------------------------------------------------

_AUTHORIZATION_NAME: Final = re.compile(r"(?:[A-Za-z0-9]{1,32}[-_]){0,3}authorization", re.IGNORECASE)
_AUTHORIZATION: Final = re.compile(
    r"(?<![A-Za-z0-9_.-])(?P<key_quote>[\"']?)"
    rf"(?P<name>{_AUTHORIZATION_NAME.pattern})(?P=key_quote)[ \t]*+[:=][ \t]*+",
    re.IGNORECASE,
)
_VALUE_UNTIL: Final = {
    '"': re.compile(r'(?:[^"\\\r\n]|\\.)*+'),
    "'": re.compile(r"[^'\r\n]*+"),
    "": re.compile(r"[^\r\n]*+"),
}
_AUTH_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_.+-]{0,31}+[ \t]++(?=\S)")


def _decide_authorization(match: re.Match[str]) -> _Decision:
    """Find where the header value ends (its quote, the quote around the header, or the
    end of the line) and redact it after an optional scheme word."""
    text = match.string
    value_start = match.end()
    opening = text[value_start : value_start + 1]
    if opening in ('"', "'"):
        closing = opening
        value_start += 1
    elif not match["key_quote"] and text[match.start() - 1 : match.start()] in ('"', "'"):
        closing = text[match.start() - 1]
    else:
        closing = ""
    run = _VALUE_UNTIL[closing].match(text, value_start)
    value_end = run.end() if run is not None else value_start
    secret_end = value_start + len(text[value_start:value_end].rstrip())
    scheme = _AUTH_SCHEME.match(text, value_start, secret_end)
    secret_start = scheme.end() if scheme is not None else value_start
    if secret_start >= secret_end:
        return value_end
    return (secret_start, secret_end, REDACTED)


def _scrub_authorization(text: str) -> str:
    """``Authorization: Basic xyz`` -> ``Authorization: Basic [REDACTED]``."""
    return _rewrite(text, _AUTHORIZATION, _decide_authorization)


# --- 4. Bearer tokens --------------------------------------------------------------------

# Wider than RFC 6750's token68 so a malformed token still goes; '[' is excluded so
# "Bearer [REDACTED]" is stable.
_BEARER: Final = re.compile(
    r"(?<![A-Za-z0-9_-])(?P<scheme>bearer[ \t]++)(?P<token>[^\s\"'`<>()\[\]{},;]++)", re.IGNORECASE
)
_BEARER_MIN_LENGTH: Final = 8
_BEARER_WORD_MAX_LENGTH: Final = 20


def _decide_bearer(match: re.Match[str]) -> _Decision:
    """Redact the token unless it reads like prose (short, or a plain word before punctuation)."""
    token = match["token"]
    word = token.rstrip(".:!?")
    if len(token) < _BEARER_MIN_LENGTH or (word.isalpha() and len(word) < _BEARER_WORD_MAX_LENGTH):
        return match.end("scheme")
    return (match.start("token"), match.end("token"), REDACTED)


def _scrub_bearer(text: str) -> str:
    """``Bearer abc.def`` -> ``Bearer [REDACTED]``."""
    return _rewrite(text, _BEARER, _decide_bearer)


# --- 5. secret CLI flags -----------------------------------------------------------------

# A long flag whose name ends with a secret word (--password, --db-password, --api-key,
# --client-secret), or a single-dash one that is exactly a secret word (-password,
# -storepass: -psecret is mysql's business); not --password-file, --tokenizer,
# --no-password, --ask-pass. A value after a space must not look like the next flag.
_SECRET_WORD: Final = r"(?:password|passwd|pwd|secret|token|api[-_]?key|credentials?|passphrase)"
_STORE_PASS: Final = r"(?:(?:src|dest)?(?:store|key))?pass"
_SECRET_FLAG_NAME: Final = (
    r"(?:--(?!no-|ask-)(?:(?:[A-Za-z0-9]{1,40}[-_]){0,8}[A-Za-z0-9]{0,40}?"
    rf"{_SECRET_WORD}|{_STORE_PASS})|-(?:{_SECRET_WORD}|{_STORE_PASS}))(?![A-Za-z0-9_-])"
)
_SECRET_FLAG: Final = re.compile(
    rf"(?<![A-Za-z0-9_-])(?P<flag>{_SECRET_FLAG_NAME})(?:=|[ \t]++(?=[^\s-]))(?P<value>{_SHELL_WORD})",
    re.IGNORECASE,
)
_SECRET_FLAG_ALONE: Final = re.compile(_SECRET_FLAG_NAME, re.IGNORECASE)


def _scrub_secret_flags(text: str) -> str:
    """``--password 'x'`` -> ``--password '[REDACTED]'``; ``--token=x`` -> ``--token=[REDACTED]``."""

    def replace(match: re.Match[str]) -> str:
        offset = match.start("value") - match.start()
        return match.group()[:offset] + _redact_word(match["value"])

    return _SECRET_FLAG.sub(replace, text)


# --- 6. command-specific short options ---------------------------------------------------


def _redact_after_colon(word: str) -> str:
    """``user:secret`` -> ``user:[REDACTED]`` (quotes kept); a word without ':' is kept."""
    quote = word[0] if word[:1] in ('"', "'") else ""
    closed = bool(quote) and len(word) > 1 and word.endswith(quote)
    content = word[len(quote) : len(word) - 1 if closed else len(word)]
    user, colon, secret = content.partition(":")
    if not colon or not secret:
        return word
    return f"{quote}{user}:{REDACTED}{quote if closed else ''}"


@dataclass(frozen=True)
class _CommandOption:
    """An option that carries a secret only after a given program in the same command."""

    program: re.Pattern[str]
    option: re.Pattern[str]
    redact_value: Callable[[str], str]


_PROGRAM_START: Final = r"(?<![A-Za-z0-9_.-])"
_PROGRAM_END: Final = r"(?![A-Za-z0-9_.-])"
_OPTION_START: Final = r"(?<![^\s\"'])"
_COMMAND_SEPARATOR: Final = re.compile(r"[\n;|&]")
_COMMAND_OPTIONS: Final = (
    _CommandOption(
        program=re.compile(rf"{_PROGRAM_START}(?:mysql|mariadb)[A-Za-z0-9_-]*+(?![A-Za-z0-9_.])"),
        option=re.compile(rf"{_OPTION_START}-p(?P<value>{_SHELL_WORD})"),
        redact_value=_redact_word,
    ),
    _CommandOption(
        program=re.compile(
            rf"{_PROGRAM_START}(?:docker|podman|buildah|skopeo|nerdctl|oras|helm[ \t]++registry)"
            rf"[ \t]++login{_PROGRAM_END}"
        ),
        option=re.compile(rf"{_OPTION_START}-p[ \t]*+(?P<value>{_SHELL_WORD})"),
        redact_value=_redact_word,
    ),
    _CommandOption(
        program=re.compile(rf"{_PROGRAM_START}curl{_PROGRAM_END}"),
        option=re.compile(
            rf"{_OPTION_START}(?:-u|--user|-U|--proxy-user)(?:=|[ \t]*+)(?P<value>{_SHELL_WORD})"
        ),
        redact_value=_redact_after_colon,
    ),
)


def _scrub_command_option(text: str, rule: _CommandOption) -> str:
    """Redact ``rule.option`` values between each ``rule.program`` and the end of its command
    (newline, ``;``, ``|``, ``&``)."""
    edits: list[tuple[int, int, str]] = []
    search_from = 0
    while (program := rule.program.search(text, search_from)) is not None:
        separator = _COMMAND_SEPARATOR.search(text, program.end())
        command_end = separator.start() if separator is not None else len(text)
        for option in rule.option.finditer(text, program.end(), command_end):
            replacement = rule.redact_value(option["value"])
            if replacement != option["value"]:
                edits.append((option.start("value"), option.end("value"), replacement))
        search_from = max(command_end, program.end())
    if not edits:
        return text
    pieces: list[str] = []
    copied = 0
    for start, end, replacement in edits:
        pieces.extend((text[copied:start], replacement))
        copied = end
    pieces.append(text[copied:])
    return "".join(pieces)


# sshpass's own -p comes before the wrapped command (whose -p, as in ssh -p 22, is a port),
# possibly after -v, -P prompt or -d fd.
_SSHPASS: Final = re.compile(
    rf"{_PROGRAM_START}sshpass(?:[ \t]++-(?:[vV]|[dP][ \t]*+[^\s-]\S*+)){{0,4}}+"
    rf"[ \t]++-p[ \t]*+(?P<value>{_SHELL_WORD})"
)


def _scrub_command_options(text: str) -> str:
    """``mysql -psecret``, ``sshpass -p secret``, ``docker login -p secret``,
    ``curl -u user:secret``; ``mkdir -p dir`` and ``ssh -p 22`` are left alone."""
    text = _SSHPASS.sub(
        lambda match: match.group()[: match.start("value") - match.start()] + _redact_word(match["value"]),
        text,
    )
    for rule in _COMMAND_OPTIONS:
        text = _scrub_command_option(text, rule)
    return text


# --- 7. key=value pairs ------------------------------------------------------------------

# Only keys containing a trigger reach Python; _is_secret_name makes the final call.
_KEY_VALUE: Final = re.compile(
    r"(?<![A-Za-z0-9_./\\-])(?P<key_quote>[\"']?)"
    r"(?=[A-Za-z0-9_.-]{0,127}?(?i:pass|pwd|secret|token|key|credential|auth))"
    r"(?P<key>[A-Za-z_][A-Za-z0-9_.-]{0,127}+)(?P=key_quote)"
    r"[ \t]{0,16}+(?::=|=>|==|[:=])[ \t]{0,16}+"
)
_PAIR_VALUE: Final = re.compile(
    rf"""(?P<scheme>(?i:bearer)[ \t]++)?(?P<word>{_DOUBLE_QUOTED}|{_SINGLE_QUOTED}|[^\s"'`;&|<>(){{}}]++)"""
)


def _decide_key_value(match: re.Match[str]) -> _Decision:
    """Redact the value when the key looks secret; otherwise resume right after the key,
    so ``a=password=x`` still finds ``password=x``."""
    key = match["key"]
    if not _is_secret_name(key) or _AUTHORIZATION_NAME.fullmatch(key):
        return match.end("key")
    value = _PAIR_VALUE.match(match.string, match.end())
    if value is None:
        return match.end()
    replacement = _redact_word(value["word"])
    return (value.start("word"), value.end("word"), replacement)


def _scrub_key_values(text: str) -> str:
    """``DB_PASSWORD=x``, ``token: x``, ``"api_key": "x"`` -> the value REDACTED."""
    return _rewrite(text, _KEY_VALUE, _decide_key_value)


# --- 8. token shapes ---------------------------------------------------------------------

_TOKEN_SHAPES: Final = tuple(
    re.compile(pattern)
    for pattern in (
        r"(?<![A-Za-z0-9_])(?P<prefix>gh[pousr]_)[A-Za-z0-9]{30,}+",
        r"(?<![A-Za-z0-9_])(?P<prefix>github_pat_)[A-Za-z0-9_]{20,}+",
        r"(?<![A-Za-z0-9_-])(?P<prefix>gl(?:pat|dt|rt|ptt|soat)-)[A-Za-z0-9_-]{20,}+",
        r"(?<![A-Za-z0-9_-])(?P<prefix>xox[abprs]-)[A-Za-z0-9-]{10,}+",
        r"(?<![A-Za-z0-9])(?P<prefix>AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])",
        r"(?<![A-Za-z0-9_-])(?P<prefix>sk-(?:ant-|proj-)?)(?=[A-Za-z_-]{0,200}[0-9])[A-Za-z0-9_-]{20,}+",
        r"(?<![A-Za-z0-9_-])(?P<prefix>AIza)[A-Za-z0-9_-]{35}(?![A-Za-z0-9_-])",
        r"(?<![A-Za-z0-9_])(?P<prefix>(?:sk|rk|pk)_(?:live|test)_)[A-Za-z0-9]{10,}+",
        r"(?<![A-Za-z0-9_])(?P<prefix>npm_)[A-Za-z0-9]{36,}+",
        r"(?<![A-Za-z0-9_-])(?P<prefix>pypi-)[A-Za-z0-9_-]{50,}+",
        r"(?<![A-Za-z0-9_])(?P<prefix>hf_)[A-Za-z0-9]{30,}+",
        r"(?<![A-Za-z0-9_-])(?P<prefix>eyJ)[A-Za-z0-9_-]{8,}+\.[A-Za-z0-9_-]{8,}+\.[A-Za-z0-9_-]*+"
        r"(?:\.[A-Za-z0-9_-]++){0,2}+",
    )
)


def _scrub_token_shapes(text: str) -> str:
    """``ghp_abc...`` -> ``ghp_[REDACTED]``: the recognisable prefix is kept, the rest goes."""
    for pattern in _TOKEN_SHAPES:
        text = pattern.sub(rf"\g<prefix>{REDACTED}", text)
    return text


# --- public API --------------------------------------------------------------------------

_TEXT_RULES: Final[tuple[Callable[[str], str], ...]] = (
    _scrub_private_keys,
    _scrub_url_credentials,
    _scrub_authorization,
    _scrub_bearer,
    _scrub_secret_flags,
    _scrub_command_options,
    _scrub_key_values,
    _scrub_token_shapes,
)


def _scrub_once(text: str) -> str:
    for rule in _TEXT_RULES:
        text = rule(text)
    return text


def redact_text(text: str) -> str:
    """Return ``text`` with every recognised secret replaced by :data:`REDACTED`.

    Keys, flags, schemes and token prefixes are kept so the audit still says what was
    there. Pure, never raises on any ``str``, linear in ``len(text)``, idempotent.
    """
    current = text
    for _ in range(_MAX_PASSES):
        scrubbed = _scrub_once(current)
        if scrubbed == current:
            break
        current = scrubbed
    return current


def redact(value: object) -> object:
    """Return a redacted copy of an audited argument; the input is never mutated.

    Strings go through :func:`redact_text`. Dicts, lists, tuples, sets and frozensets are
    rebuilt recursively: a dict key is itself redacted, and a value whose key looks secret
    (``password``, ``DB_PASSWORD``, ``apiKey``, ``x-api-key``, ``Authorization``, ``auth``,
    ``private_key`` ...) becomes REDACTED whatever its type. In a list or tuple, the
    element after a bare secret flag (``["--password", "x"]``) becomes REDACTED. Other
    values are returned unchanged; containers nested deeper than 64 levels become REDACTED.
    """
    return _redact_nested(value, 0)


def _redact_nested(value: object, depth: int) -> object:
    if isinstance(value, str):
        return redact_text(value)
    if not isinstance(value, dict | list | tuple | set | frozenset):
        return value
    if depth >= _MAX_DEPTH:
        return REDACTED
    if isinstance(value, dict):
        return dict(_redact_entry(key, item, depth) for key, item in value.items())
    if isinstance(value, set | frozenset):
        members = (_redact_nested(member, depth + 1) for member in value)
        return set(members) if isinstance(value, set) else frozenset(members)
    items = _redact_sequence(value, depth)
    return items if isinstance(value, list) else tuple(items)


def _redact_entry(key: object, item: object, depth: int) -> tuple[object, object]:
    """Redact a dict entry. The value is secret when the key names a secret before or after
    its own redaction (the second keeps redact idempotent: ``-----BEGIN ... KEY-----x``
    only reads as ``private_key`` once its tail is REDACTED)."""
    redacted_key = _redact_nested(key, depth + 1)
    secret = isinstance(key, str) and (
        _is_secret_name(key) or (isinstance(redacted_key, str) and _is_secret_name(redacted_key))
    )
    return redacted_key, REDACTED if secret else _redact_nested(item, depth + 1)


def _redact_sequence(items: list[object] | tuple[object, ...], depth: int) -> list[object]:
    """Redact each element; an element following a bare secret flag is a secret."""
    redacted: list[object] = []
    after_secret_flag = False
    for item in items:
        redacted.append(REDACTED if after_secret_flag else _redact_nested(item, depth + 1))
        after_secret_flag = isinstance(item, str) and _SECRET_FLAG_ALONE.fullmatch(item) is not None
    return redacted
