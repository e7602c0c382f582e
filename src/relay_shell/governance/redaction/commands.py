"""Redaction rules that depend on the program a word is given to.

An option only carries a secret after its program in the same command (up to a newline,
``;``, ``|`` or ``&``): ``mysql -psecret`` but ``mkdir -p dir``, ``sshpass -p x`` but
``ssh -p 22``. Covered:

- ``mysql``/``mariadb*`` ``-p<secret>``; ``docker|podman|buildah|skopeo|nerdctl|oras|helm
  registry login -p``; ``curl -u|--user|-U|--proxy-user user:secret`` and ``-b|--cookie
  name=value``; ``redis-cli -a``; ``mongo``/``mongosh -p``; the OpenLDAP clients' ``-w``
  (and ``ldappasswd -a``/``-s``); ``openssl ... -k`` and ``-pass|-passin|-passout pass:``;
  ``zip``/``unzip -P``; ``7z -p<secret>``; Samba clients' ``-U user%secret``;
  ``htpasswd -b`` (its password argument); ``sshpass -p``; ``aws configure set <secret name>
  <value>``;
- SQL ``PASSWORD '...'``, ``IDENTIFIED BY '...'``, ``PASSWORD('...')``;
- ``.netrc`` ``password`` tokens;
- words echoed into a program that reads a secret from stdin (``echo pw | sudo -S``,
  ``echo u:p | chpasswd``, ``... | docker login --password-stdin``) and here-strings given
  to them (``chpasswd <<< 'u:p'``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from relay_shell.governance.redaction.names import is_secret_name
from relay_shell.governance.redaction.words import (
    COMMAND_SEPARATOR,
    OPTION_START,
    PROGRAM_END,
    PROGRAM_START,
    REDACTED,
    SHELL_WORD,
    SHELL_WORD_PATTERN,
    Decision,
    redact_after,
    redact_word,
    rewrite,
    splice,
    word_value,
)


def _redact_cookie(word: str) -> str:
    """A cookie string (``name=value; ...``) goes whole; a cookie-jar file name stays."""
    return redact_word(word) if "=" in word_value(word) else word


@dataclass(frozen=True)
class _CommandOption:
    """An option that carries a secret only after a given program in the same command."""

    needle: str  # cheap pre-check: the program name must occur in the text
    program: re.Pattern[str]
    option: re.Pattern[str]
    redact_value: Callable[[str], str]


def _program(names: str) -> re.Pattern[str]:
    return re.compile(rf"{PROGRAM_START}(?:{names}){PROGRAM_END}")


def _option(flags: str, *, attached: bool = True, separated: bool = True) -> re.Pattern[str]:
    gap = r"(?:=|[ \t]++)" if separated and not attached else r"(?:=|[ \t]*+)" if separated else ""
    return re.compile(rf"{OPTION_START}(?:{flags}){gap}(?P<value>{SHELL_WORD})")


_COMMAND_OPTIONS: Final = (
    _CommandOption(
        "m",
        re.compile(rf"{PROGRAM_START}(?:mysql|mariadb)[A-Za-z0-9_-]*+(?![A-Za-z0-9_.])"),
        _option("-p", separated=False),
        redact_word,
    ),
    _CommandOption(
        "login",
        re.compile(
            rf"{PROGRAM_START}(?:docker|podman|buildah|skopeo|nerdctl|oras|helm[ \t]++registry)"
            rf"[ \t]++login{PROGRAM_END}"
        ),
        _option("-p"),
        redact_word,
    ),
    _CommandOption(
        "curl", _program("curl"), _option("-u|--user|-U|--proxy-user"), lambda w: redact_after(w, ":")
    ),
    _CommandOption("curl", _program("curl"), _option("-b|--cookie"), _redact_cookie),
    _CommandOption("redis", _program("redis-cli|keydb-cli|valkey-cli"), _option("-a"), redact_word),
    _CommandOption("mongo", _program("mongo|mongosh"), _option("-p", attached=False), redact_word),
    _CommandOption("ldap", _program("ldap[a-z]{3,12}"), _option("-w"), redact_word),
    _CommandOption("ldappasswd", _program("ldappasswd"), _option("-a|-s"), redact_word),
    _CommandOption("openssl", _program("openssl"), _option("-k", attached=False), redact_word),
    _CommandOption("zip", _program("zip|unzip|zipcloak|funzip"), _option("-P", attached=False), redact_word),
    _CommandOption("7z", _program("7z|7za|7zr|7zz"), _option("-p", separated=False), redact_word),
    _CommandOption(
        "%",
        _program("smbclient|rpcclient|smbcacls|smbget|smbtree|smbmap|smbpasswd|net|wbinfo|mount\\.cifs"),
        _option("-U|--user|--username"),
        lambda word: redact_after(word, "%"),
    ),
)

# sshpass's own -p comes before the wrapped command (whose -p, as in ssh -p 22, is a port),
# possibly after -v, -P prompt or -d fd.
_SSHPASS: Final = re.compile(
    rf"{PROGRAM_START}sshpass(?:[ \t]++-(?:[vV]|[dP][ \t]*+[^\s-]\S*+)){{0,4}}+"
    rf"[ \t]++-p[ \t]*+(?P<value>{SHELL_WORD})"
)
# openssl's passphrase arguments: pass:<secret> (env:, file:, fd: and stdin name no secret).
_OPENSSL_PASS: Final = re.compile(
    rf"{OPTION_START}-(?:pass|passin|passout|password)[ \t]++(?P<value>{SHELL_WORD})"
)
_AWS_CONFIGURE: Final = re.compile(
    rf"{PROGRAM_START}configure[ \t]++set[ \t]++(?:--profile[ \t]++\S++[ \t]++)?"
    rf"(?P<name>[A-Za-z0-9_.-]{{1,128}}+)[ \t]++(?P<value>{SHELL_WORD})"
)


def scrub_command_options(text: str) -> str:
    """Program-specific options (see the module docstring); ``mkdir -p dir``, ``ssh -p 22``
    and other programs' same-looking options are left alone."""
    if "sshpass" in text:
        text = _SSHPASS.sub(
            lambda match: match.group()[: match.start("value") - match.start()] + redact_word(match["value"]),
            text,
        )
    for rule in _COMMAND_OPTIONS:
        if rule.needle in text:
            text = _scrub_command_option(text, rule)
    if "pass" in text and "openssl" in text:
        text = rewrite(text, _OPENSSL_PASS, _decide_openssl_pass)
    if "configure" in text:
        text = rewrite(text, _AWS_CONFIGURE, _decide_aws_configure)
    if "htpasswd" in text:
        text = _scrub_htpasswd(text)
    return text


def _scrub_command_option(text: str, rule: _CommandOption) -> str:
    """Redact ``rule.option`` values between each ``rule.program`` and the end of its command."""
    edits: list[tuple[int, int, str]] = []
    search_from = 0
    while (program := rule.program.search(text, search_from)) is not None:
        separator = COMMAND_SEPARATOR.search(text, program.end())
        command_end = separator.start() if separator is not None else len(text)
        for option in rule.option.finditer(text, program.end(), command_end):
            replacement = rule.redact_value(option["value"])
            if replacement != option["value"]:
                edits.append((option.start("value"), option.end("value"), replacement))
        search_from = max(command_end, program.end())
    return splice(text, edits)


def _decide_openssl_pass(match: re.Match[str]) -> Decision:
    word = match["value"]
    if not word_value(word).startswith("pass:"):
        return match.end()
    replacement = redact_after(word, "pass:")
    return (match.start("value"), match.end("value"), replacement)


def _decide_aws_configure(match: re.Match[str]) -> Decision:
    if not is_secret_name(match["name"]):
        return match.end("name")
    return (match.start("value"), match.end("value"), redact_word(match["value"]))


_HTPASSWD: Final = re.compile(rf"{PROGRAM_START}htpasswd{PROGRAM_END}")


def _scrub_htpasswd(text: str) -> str:
    """``htpasswd -b[c...] FILE USER PASSWORD`` and ``htpasswd -nb USER PASSWORD``: the password."""
    edits: list[tuple[int, int, str]] = []
    search_from = 0
    while (program := _HTPASSWD.search(text, search_from)) is not None:
        separator = COMMAND_SEPARATOR.search(text, program.end())
        command_end = separator.start() if separator is not None else len(text)
        flags = ""
        positionals: list[re.Match[str]] = []
        for word in SHELL_WORD_PATTERN.finditer(text, program.end(), command_end):
            value = word_value(word.group())
            if value.startswith("-") and not positionals:
                flags += value[1:]
            else:
                positionals.append(word)
        wanted = 2 if "n" in flags else 3
        if "b" in flags and len(positionals) >= wanted:
            secret = positionals[wanted - 1]
            edits.append((secret.start(), secret.end(), redact_word(secret.group())))
        search_from = max(command_end, program.end())
    return splice(text, edits)


# --- SQL and .netrc ---------------------------------------------------------------------------

_SQL_STRING: Final = r"(?:'(?:[^'\\\n]|\\.|'')*+'|\"(?:[^\"\\\n]|\\.)*+\")"
_SQL_PASSWORD: Final = re.compile(
    r"(?<![A-Za-z0-9_-])(?:(?:ENCRYPTED[ \t]++)?PASSWORD(?:[ \t]*+=[ \t]*+|[ \t]++|[ \t]*+\([ \t]*+)"
    r"(?:PASSWORD[ \t]*+\([ \t]*+)?"
    rf"(?P<quoted>{_SQL_STRING})"
    r"|IDENTIFIED[ \t]++(?:WITH[ \t]++[A-Za-z0-9_]{1,64}+[ \t]++)?(?:BY|AS)[ \t]++(?:PASSWORD[ \t]++)?"
    rf"(?P<value>{_SQL_STRING}|[A-Za-z0-9_$#!%^*+.-]{{1,256}}+))",
    re.IGNORECASE,
)


def scrub_sql(text: str) -> str:
    """``CREATE USER u WITH PASSWORD 'x'``, ``IDENTIFIED BY 'x'``, ``SET PASSWORD = 'x'``: the string."""
    if "ASSWORD" not in text.upper() and "IDENTIFIED" not in text.upper():
        return text
    return rewrite(text, _SQL_PASSWORD, _decide_sql)


def _decide_sql(match: re.Match[str]) -> Decision:
    group = "quoted" if match["quoted"] is not None else "value"
    value = match[group]
    if value in ("''", '""') or value.upper() in ("NULL", "PASSWORD"):
        return match.end()
    return (match.start(group), match.end(group), redact_word(value))


_NETRC: Final = re.compile(
    r"(?:(?<![A-Za-z0-9_.-])(?:machine|login|account|default)[ \t]++(?:[^\s]++[ \t]++)?+|(?m:^)[ \t]*+)"
    rf"password[ \t]++(?P<value>{SHELL_WORD})"
)


def scrub_netrc(text: str) -> str:
    """``machine h login u password SECRET`` and a ``password SECRET`` line: the secret."""
    if "password" not in text:
        return text
    return rewrite(text, _NETRC, _decide_netrc)


def _decide_netrc(match: re.Match[str]) -> Decision:
    value = match["value"]
    if value == REDACTED or value.startswith("-"):
        return match.end()
    return (match.start("value"), match.end("value"), redact_word(value))


# --- secrets written to a program's stdin ------------------------------------------------------

# Programs that read a secret on stdin: sudo -S, chpasswd/chgpasswd (user:password lines),
# passwd --stdin, the registry logins' --password-stdin, htpasswd -i, vault login -.
STDIN_READER: Final = (
    r"(?:sudo(?![A-Za-z0-9_.-])[^\n;|&]{0,256}?[ \t]-(?:[A-Za-z]*S[A-Za-z]*|-stdin)(?![A-Za-z0-9_-])"
    r"|chg?passwd(?![A-Za-z0-9_.-])"
    r"|passwd(?![A-Za-z0-9_.-])[^\n;|&]{0,256}?[ \t]--stdin(?![A-Za-z0-9_-])"
    r"|login(?![A-Za-z0-9_.-])[^\n;|&]{0,256}?[ \t]--password-stdin(?![A-Za-z0-9_-])"
    r"|htpasswd(?![A-Za-z0-9_.-])[^\n;|&]{0,256}?[ \t]-[A-Za-z]*i[A-Za-z]*(?![A-Za-z0-9_-])"
    r"|vault[ \t]++login[ \t]++-(?![A-Za-z0-9_-]))"
)
STDIN_READER_PATTERN: Final = re.compile(rf"{PROGRAM_START}{STDIN_READER}")
LINE_SECRETS: Final = re.compile(rf"{PROGRAM_START}chg?passwd(?![A-Za-z0-9_.-])")
"""Readers whose every stdin line is ``name:secret`` (the others read one secret line)."""
_ECHO_INTO: Final = re.compile(
    rf"{PROGRAM_START}(?:echo|printf)(?P<words>(?:[ \t]++{SHELL_WORD}){{1,16}}+)[ \t]*+\|[ \t]*+"
    rf"(?:[A-Za-z0-9_]{{1,64}}+=\S{{0,256}}+[ \t]++){{0,8}}+(?:[^\n;|&\s]{{1,64}}+[ \t]++){{0,8}}?{STDIN_READER}"
)
_HERE_STRING: Final = re.compile(
    rf"{PROGRAM_START}{STDIN_READER}[^\n;|&<]{{0,256}}+<<<[ \t]*+(?P<value>{SHELL_WORD})"
)
_HERE_DOC: Final = re.compile(
    rf"{PROGRAM_START}{STDIN_READER}[^\n<]{{0,256}}+<<-?[ \t]*+(?P<quote>['\"]?)(?P<tag>[A-Za-z_][A-Za-z0-9_]{{0,63}}+)"
    r"(?P=quote)[^\n]*+\n"
)
STDIN_SECRET_NEEDLES: Final = ("sudo", "passwd", "stdin", "vault")


def scrub_stdin_secrets(text: str) -> str:
    """``echo pw | sudo -S x`` -> ``echo [REDACTED] | sudo -S x``; here-strings and here-documents
    given to such readers likewise (every ``name:secret`` line for chpasswd, the first line
    for the others)."""
    if not any(needle in text for needle in STDIN_SECRET_NEEDLES):
        return text
    if "|" in text:
        text = rewrite(text, _ECHO_INTO, _decide_echo)
    if "<<<" in text:
        text = rewrite(
            text,
            _HERE_STRING,
            lambda match: (match.start("value"), match.end("value"), redact_word(match["value"])),
        )
    if "<<" in text:
        text = rewrite(text, _HERE_DOC, _decide_here_doc)
    return text


def _decide_here_doc(match: re.Match[str]) -> Decision:
    text, tag = match.string, match["tag"]
    body_start = match.end()
    end = re.compile(rf"(?m:^)[ \t]*+{re.escape(tag)}[ \t]*+$").search(text, body_start)
    body_end = end.start() if end is not None else len(text)
    body = text[body_start:body_end]
    every_line = LINE_SECRETS.match(text, match.start()) is not None
    return (body_start, body_end, redact_stdin(body, every_line=every_line))


def redact_stdin(text: str, *, every_line: bool) -> str:
    """The stdin of a secret reader: the first line redacted, or every ``name:secret`` line's secret."""
    if not every_line:
        first, newline, rest = text.partition("\n")
        return (REDACTED if first.strip() else first) + newline + rest
    lines = text.split("\n")
    return "\n".join(redact_after(line, ":") if ":" in line else line for line in lines)


def _decide_echo(match: re.Match[str]) -> Decision:
    edits = [
        (word.start(), word.end(), redact_word(word.group()))
        for word in SHELL_WORD_PATTERN.finditer(match.string, match.start("words"), match.end("words"))
        if not word_value(word.group()).startswith("-") and "%" not in word.group()
    ]
    if not edits:
        return match.end()
    start, end = edits[0][0], edits[-1][1]
    return (start, end, splice(match.string[start:end], [(s - start, e - start, r) for s, e, r in edits]))
