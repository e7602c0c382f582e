"""Redaction rules that hold in any text, whatever program it is for.

Each rule keeps the key, flag, scheme or token prefix and replaces only the secret:

- private key blocks: PEM/OpenSSH (the body) and PuTTY ``.ppk`` (the private lines and
  MAC); a block without its end is redacted to the end of the text;
- URL credentials: ``scheme://user:secret@``, a token used as the user name
  (``https://<token>@host``), and ``user:secret@host`` without a scheme (an SSH host);
  webhook URLs whose path is the secret (Slack, Discord, Microsoft Teams);
- ``Authorization``/``Proxy-Authorization`` values after the scheme word, ``Cookie`` and
  ``Set-Cookie`` values whole, ``Bearer <token>``;
- ``--password``-style flags in all their spellings, and ``-D<name>=<value>`` properties;
- ``key=value``, ``key: value``, ``"key": "value"`` whose key names a secret (:mod:`names`);
- well-known token shapes (GitHub, GitLab, Slack, AWS, OpenAI/Anthropic, Google, Stripe,
  npm, PyPI, Hugging Face, Vault, JWT).
"""

from __future__ import annotations

import re
from typing import Final

from relay_shell.governance.redaction.names import is_secret_name
from relay_shell.governance.redaction.words import (
    DOUBLE_QUOTED,
    REDACTED,
    SHELL_WORD,
    SINGLE_QUOTED,
    Decision,
    redact_word,
    rewrite,
)

# --- private key blocks ---------------------------------------------------------------------

_KEY_LABEL: Final = r"(?:[A-Z0-9]{1,24} ){0,3}PRIVATE KEY(?: BLOCK)?-----"
_PRIVATE_KEY_BEGIN: Final = re.compile(rf"-----BEGIN {_KEY_LABEL}")
_PRIVATE_KEY_END: Final = re.compile(rf"-----END {_KEY_LABEL}")
_PUTTY_PRIVATE: Final = re.compile(r"Private-Lines:[ \t]*+[0-9]{1,6}+")
_PUTTY_MAC: Final = re.compile(r"Private-(?:MAC|Hash):[ \t]*+[0-9A-Fa-f]*+")


def scrub_private_keys(text: str) -> str:
    """``-----BEGIN X PRIVATE KEY-----<body>-----END X PRIVATE KEY-----`` -> body REDACTED;
    a PuTTY key keeps its public part and loses everything from its private lines on."""
    if "PRIVATE KEY" in text:
        text = _scrub_between(text, _PRIVATE_KEY_BEGIN, _PRIVATE_KEY_END)
    if "Private-Lines:" in text:
        text = _scrub_between(text, _PUTTY_PRIVATE, _PUTTY_MAC, keep_end=False)
    return text


def _scrub_between(
    text: str, begin_pattern: re.Pattern[str], end_pattern: re.Pattern[str], *, keep_end: bool = True
) -> str:
    pieces: list[str] = []
    copied = 0
    while (begin := begin_pattern.search(text, copied)) is not None:
        pieces.append(text[copied : begin.end()])
        pieces.append(REDACTED)
        end = end_pattern.search(text, begin.end())
        if end is None:
            return "".join(pieces)
        if keep_end:
            pieces.append(end.group())
        copied = end.end()
    pieces.append(text[copied:])
    return "".join(pieces)


# --- URLs -------------------------------------------------------------------------------------

# The password runs to the last '@' of the authority; authorities of different URLs are
# disjoint (they cannot contain '/'), so the backtracking to that '@' stays linear.
_URL_CREDENTIALS: Final = re.compile(
    r"(?P<prefix>(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}+://[^\s/?#@:]*+):[^\s/?#]+@"
)
# A user name without a password that reads like a token (16+ characters, letters and digits).
_URL_TOKEN_USER: Final = re.compile(
    r"(?P<prefix>(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}+://)(?P<user>[A-Za-z0-9._~%+-]{16,256}+)@"
)
# user:secret@host given without a scheme (an SSH target, a git remote); not an image digest.
_BARE_CREDENTIALS: Final = re.compile(
    r"(?<![A-Za-z0-9._%+/:@-])(?P<user>[A-Za-z0-9._+-]{1,64}+):(?P<secret>[^\s@/:'\"]{1,256}+)@"
    r"(?=\[?[A-Za-z0-9])(?!sha(?:256|384|512):)"
)
_WEBHOOK: Final = re.compile(
    r"(?P<prefix>(?:hooks\.slack\.com/(?:services|workflows|triggers)"
    r"|(?:discord(?:app)?\.com|ptb\.discord\.com|canary\.discord\.com)/api/webhooks"
    r"|webhook\.office\.com/webhookb2"
    r"|[A-Za-z0-9-]{1,63}\.webhook\.office\.com/webhookb2)/)(?P<secret>[^\s\"'`<>()\[\]{},;]++)"
)


def scrub_urls(text: str) -> str:
    """URL credentials, token user names, scheme-less ``user:secret@host`` and webhook paths."""
    if "@" in text:
        if "://" in text:
            text = _URL_CREDENTIALS.sub(rf"\g<prefix>:{REDACTED}@", text)
            text = rewrite(text, _URL_TOKEN_USER, _decide_token_user)
        if ":" in text:
            text = _BARE_CREDENTIALS.sub(rf"\g<user>:{REDACTED}@", text)
    if "webhook" in text or "hooks.slack.com" in text:
        text = _WEBHOOK.sub(rf"\g<prefix>{REDACTED}", text)
    return text


def _decide_token_user(match: re.Match[str]) -> Decision:
    user = match["user"]
    if any(char.isdigit() for char in user) and any(char.isalpha() for char in user):
        return (match.start("user"), match.end("user"), REDACTED)
    return match.end()


# --- headers ----------------------------------------------------------------------------------

_HEADER_NAME: Final = r"(?:[A-Za-z0-9]{1,32}[-_]){0,3}authorization|(?:set-)?cookie"
_AUTHORIZATION_NAME: Final = re.compile(r"(?:[A-Za-z0-9]{1,32}[-_]){0,3}authorization", re.IGNORECASE)
_HEADER: Final = re.compile(
    r"(?<![A-Za-z0-9_.-])(?P<key_quote>[\"']?)"
    rf"(?P<name>{_HEADER_NAME})(?P=key_quote)[ \t]*+[:=][ \t]*+",
    re.IGNORECASE,
)
_VALUE_UNTIL: Final = {
    '"': re.compile(r'(?:[^"\\\r\n]|\\.)*+'),
    "'": re.compile(r"[^'\r\n]*+"),
    "": re.compile(r"[^\r\n]*+"),
}
_AUTH_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_.+-]{0,31}+[ \t]++(?=\S)")


def _decide_header(match: re.Match[str]) -> Decision:
    """Find where the header value ends (its quote, the quote around the header, or the end
    of the line) and redact it, after the scheme word of an Authorization value."""
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
    secret_start = value_start
    if "cookie" not in match["name"].lower():
        scheme = _AUTH_SCHEME.match(text, value_start, secret_end)
        secret_start = scheme.end() if scheme is not None else value_start
    if secret_start >= secret_end or text[secret_start:secret_end] == REDACTED:
        return value_end
    return (secret_start, secret_end, REDACTED)


def scrub_headers(text: str) -> str:
    """``Authorization: Basic xyz`` -> ``Authorization: Basic [REDACTED]``; ``Cookie: a=b`` ->
    ``Cookie: [REDACTED]``."""
    return rewrite(text, _HEADER, _decide_header)


# Wider than RFC 6750's token68 so a malformed token still goes; '[' is excluded so
# "Bearer [REDACTED]" is stable.
_BEARER: Final = re.compile(
    r"(?<![A-Za-z0-9_-])(?P<scheme>bearer[ \t]++)(?P<token>[^\s\"'`<>()\[\]{},;]++)", re.IGNORECASE
)
_BEARER_MIN_LENGTH: Final = 8
_BEARER_WORD_MAX_LENGTH: Final = 20


def _decide_bearer(match: re.Match[str]) -> Decision:
    """Redact the token unless it reads like prose (short, or a plain word before punctuation)."""
    token = match["token"]
    word = token.rstrip(".:!?")
    if len(token) < _BEARER_MIN_LENGTH or (word.isalpha() and len(word) < _BEARER_WORD_MAX_LENGTH):
        return match.end("scheme")
    return (match.start("token"), match.end("token"), REDACTED)


def scrub_bearer(text: str) -> str:
    """``Bearer abc.def`` -> ``Bearer [REDACTED]``."""
    return rewrite(text, _BEARER, _decide_bearer)


# --- flags and properties --------------------------------------------------------------------

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
    rf"(?<![A-Za-z0-9_-])(?P<flag>{_SECRET_FLAG_NAME})(?:=|[ \t]++(?=[^\s-]))(?P<value>{SHELL_WORD})",
    re.IGNORECASE,
)
SECRET_FLAG_ALONE: Final = re.compile(_SECRET_FLAG_NAME, re.IGNORECASE)
# -Dname=value (JVM system properties, Maven, Gradle): secret when the name is.
_PROPERTY: Final = re.compile(rf"(?<![^\s\"'])-D(?P<name>[A-Za-z0-9_.-]{{1,128}}+)=(?P<value>{SHELL_WORD})")


def scrub_flags(text: str) -> str:
    """``--password 'x'`` -> ``--password '[REDACTED]'``; ``-Ddb.password=x`` -> ``-Ddb.password=[REDACTED]``."""

    def replace(match: re.Match[str]) -> str:
        offset = match.start("value") - match.start()
        return match.group()[:offset] + redact_word(match["value"])

    text = _SECRET_FLAG.sub(replace, text)
    if "-D" in text:
        text = rewrite(text, _PROPERTY, _decide_property)
    return text


def _decide_property(match: re.Match[str]) -> Decision:
    if not is_secret_name(match["name"]):
        return match.end("name")
    return (match.start("value"), match.end("value"), redact_word(match["value"]))


# --- key=value --------------------------------------------------------------------------------

# Only keys containing a trigger reach Python; is_secret_name makes the final call.
_KEY_VALUE: Final = re.compile(
    r"(?<![A-Za-z0-9_.\\-])(?P<key_quote>[\"']?)"
    r"(?=[A-Za-z0-9_.-]{0,127}?(?i:pass|pw|secret|token|key|cred|auth|sig|sas|cookie))"
    r"(?P<key>[A-Za-z_][A-Za-z0-9_.-]{0,127}+)(?P=key_quote)"
    r"(?P<before>[ \t]{0,16}+)(?P<separator>:=|=>|==|[:=])(?P<after>[ \t]{0,16}+)"
)
_PAIR_VALUE: Final = re.compile(
    rf"""(?P<scheme>(?i:bearer)[ \t]++)?(?P<word>{DOUBLE_QUOTED}|{SINGLE_QUOTED}|[^\s"'`;&|<>(){{}}]++)"""
)


def _decide_key_value(match: re.Match[str]) -> Decision:
    """Redact the value when the key looks secret; otherwise resume right after the key,
    so ``a=password=x`` still finds ``password=x``."""
    key = match["key"]
    if (
        not is_secret_name(key)
        or _AUTHORIZATION_NAME.fullmatch(key)
        or key.lower() in ("cookie", "set-cookie")
    ):
        return match.end("key")
    if match["separator"] == "=" and not match["before"] and match["after"]:
        return match.end()  # KEY= cmd: a shell assignment of the empty string
    if match.string[match.start() - 1 : match.start()] == "/" and match["separator"] != "=":
        return match.end("key")  # a path (/etc/secret:/etc/secret:ro), unless it reads /token=x
    value = _PAIR_VALUE.match(match.string, match.end())
    if value is None:
        return match.end()
    return (value.start("word"), value.end("word"), redact_word(value["word"]))


def scrub_key_values(text: str) -> str:
    """``DB_PASSWORD=x``, ``token: x``, ``"api_key": "x"``, ``AccountKey=x`` -> the value REDACTED."""
    return rewrite(text, _KEY_VALUE, _decide_key_value)


# --- token shapes -----------------------------------------------------------------------------

_TOKEN_SHAPES: Final = tuple(
    re.compile(pattern)
    for pattern in (
        r"(?<![A-Za-z0-9_])(?P<prefix>gh[pousr]_)[A-Za-z0-9]{30,}+",
        r"(?<![A-Za-z0-9_])(?P<prefix>github_pat_)[A-Za-z0-9_]{20,}+",
        r"(?<![A-Za-z0-9_-])(?P<prefix>gl(?:pat|dt|rt|ptt|soat)-)[A-Za-z0-9_-]{20,}+",
        r"(?<![A-Za-z0-9_-])(?P<prefix>xox[abprse]-)[A-Za-z0-9-]{10,}+",
        r"(?<![A-Za-z0-9])(?P<prefix>AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])",
        r"(?<![A-Za-z0-9_-])(?P<prefix>sk-(?:ant-|proj-)?)(?=[A-Za-z_-]{0,200}[0-9])[A-Za-z0-9_-]{20,}+",
        r"(?<![A-Za-z0-9_-])(?P<prefix>AIza)[A-Za-z0-9_-]{35}(?![A-Za-z0-9_-])",
        r"(?<![A-Za-z0-9_])(?P<prefix>(?:sk|rk|pk)_(?:live|test)_)[A-Za-z0-9]{10,}+",
        r"(?<![A-Za-z0-9_])(?P<prefix>npm_)[A-Za-z0-9]{36,}+",
        r"(?<![A-Za-z0-9_-])(?P<prefix>pypi-)[A-Za-z0-9_-]{50,}+",
        r"(?<![A-Za-z0-9_])(?P<prefix>hf_)[A-Za-z0-9]{30,}+",
        r"(?<![A-Za-z0-9_.-])(?P<prefix>hv[sbr]\.)[A-Za-z0-9_-]{12,}+",
        r"(?<![A-Za-z0-9_-])(?P<prefix>eyJ)[A-Za-z0-9_-]{8,}+\.[A-Za-z0-9_-]{8,}+\.[A-Za-z0-9_-]*+"
        r"(?:\.[A-Za-z0-9_-]++){0,2}+",
    )
)


def scrub_token_shapes(text: str) -> str:
    """``ghp_abc...`` -> ``ghp_[REDACTED]``: the recognisable prefix is kept, the rest goes."""
    for pattern in _TOKEN_SHAPES:
        text = pattern.sub(rf"\g<prefix>{REDACTED}", text)
    return text


def is_authorization_name(name: str) -> bool:
    """``Authorization``, ``Proxy-Authorization``, ``X-Authorization``..."""
    return _AUTHORIZATION_NAME.fullmatch(name) is not None
