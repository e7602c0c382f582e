"""Whether a name (a dict key, the key of ``key=value``, an environment variable) holds a secret."""

from __future__ import annotations

import re
from typing import Final

_CAMEL_BOUNDARY: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NAME_PART: Final = re.compile(r"[a-z0-9]+")
_SECRET_SUBSTRING: Final = re.compile(
    r"passw(?:or)?d|pwd|secret|token|apikey|credential|passphrase|privatekey|accountkey|cookie"
)
_SECRET_WHOLE_PARTS: Final = frozenset({"pass", "auth", "authorization", "creds", "sig", "sas"})
_SECRET_PART_PAIRS: Final = (
    "api_key",
    "private_key",
    "account_key",
    "access_key",
    "shared_access",
    "signing_key",
)
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
# Environment-style names (upper case): stricter, as environment variables carry credentials
# by convention (STRIPE_KEY, SMTP_PW, RSYNC_PASS, GIT_AUTH, AWS_CREDS, DB_PASSWORD_URL).
_ENV_STYLE: Final = re.compile(r"[A-Z][A-Z0-9_]*+")
_ENV_SECRET_SUFFIXES: Final = (
    "_KEY",
    "_PW",
    "_PASS",
    "_AUTH",
    "_CREDS",
    "_CRED",
    "_PWD",
    "_SECRET",
    "_TOKEN",
)
_ENV_SECRET_NAMES: Final = frozenset({"SSHPASS", "PGPASSWORD", "MYSQL_PWD", "REDISCLI_AUTH", "LDAPPASSWD"})


# Answers for names seen before (argument keys repeat on every call; the answer depends on
# the name alone); cleared whole when full.
_KNOWN: Final[dict[str, bool]] = {}
_KNOWN_ENTRIES: Final = 4096
_KNOWN_LONGEST: Final = 256


def is_secret_name(name: str) -> bool:
    """Whether a dict key, ``key=value`` key or environment variable names a secret.

    Pure; a short name's answer is remembered (:func:`name_is_secret` decides).
    """
    known = _KNOWN.get(name)
    if known is not None:
        return known
    answer = name_is_secret(name)
    if len(name) <= _KNOWN_LONGEST:
        if len(_KNOWN) >= _KNOWN_ENTRIES:
            _KNOWN.clear()
        _KNOWN[name] = answer
    return answer


def name_is_secret(name: str) -> bool:
    """:func:`is_secret_name` without the memory: whether a dict key, ``key=value`` key or
    environment variable names a secret.

    Environment-style (upper-case) names are secret when they contain PASSWORD or PASSWD
    anywhere, end in ``_KEY``, ``_PW``, ``_PASS``, ``_AUTH``, ``_CREDS`` (and the like), or
    are a known one (``SSHPASS``, ``PGPASSWORD``...). Any name is then split into lower-case
    parts at non-alphanumerics and camelCase boundaries; it is secret when a part contains
    password/passwd/pwd/secret/token/apikey/credential/passphrase/privatekey/accountkey/
    cookie, a part is exactly pass/auth/authorization/creds/sig/sas, or two parts read
    api_key/private_key/account_key/access_key/shared_access/signing_key; unless the last part
    is metadata (``password_policy``, ``token_url``, ``PasswordAuthentication``) or the first
    counts (``max_tokens``).
    """
    if name in _SHELL_STATE_NAMES:
        return False
    if _ENV_STYLE.fullmatch(name) and _is_secret_env_name(name):
        return True
    parts = _NAME_PART.findall(_CAMEL_BOUNDARY.sub("_", name).lower())
    if not parts:
        return False
    if len(parts) > 1 and (_METADATA_LAST_PART.fullmatch(parts[-1]) or parts[0] in _COUNTING_FIRST_PARTS):
        return False
    return _has_secret_part(parts)


def _has_secret_part(parts: list[str]) -> bool:
    for part in parts:
        if part in _SECRET_WHOLE_PARTS or _SECRET_SUBSTRING.search(_LOOKALIKE_WORD.sub(" ", part)):
            return True
    joined = "_".join(parts)
    return any(pair in joined for pair in _SECRET_PART_PAIRS)


def _is_secret_env_name(name: str) -> bool:
    if "PASSWORD" in name or "PASSWD" in name or name in _ENV_SECRET_NAMES:
        return True
    return name.endswith(_ENV_SECRET_SUFFIXES)
