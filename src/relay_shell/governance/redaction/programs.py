"""Redaction by the program a command runs: a shell-aware scan plus a table of secret forms.

The text is cut into simple commands by :mod:`.shell_words` (at newlines, ``;``, ``|``,
``&``, parentheses and backquotes, outside quotes) and each command's program is resolved past environment
assignments and wrappers (``sudo -u root``, ``env X=1``, ``timeout 5``, ``nice -n 5``...).
Its arguments are then read with the program's rules (:data:`PROGRAMS`):

- options whose value is a secret, separated (``-P PW``, ``--pass PW``), with ``=``
  (``--pass=PW``) or attached (``-PPW``), also clustered behind value-less short flags
  (``-bP PW`` reads ``-P``); Windows-style ``/p:PW``;
- positional secrets after a subcommand (``rabbitmqctl add_user U PW``, ``vault login
  TOKEN``, ``net user U PW``, ``wpa_passphrase SSID PW``...);
- ``user:secret``, ``user,secret``, ``user%secret`` and ``user/secret@db`` values keep the
  user;
- keyword pairs of connection managers (``nmcli ... password PW``, ``wifi-sec.psk PW``).

Whatever the program, a long option whose name reads as a secret (pass, secret, token,
community, psk, credentials, a secret key...; not ``--password-file``, ``--token-type``)
loses its value, ``--user``/``--auth user:secret`` loses the part after ``:``, and
``<tool> config [set] NAME VALUE`` loses VALUE when NAME reads as a secret. Quoted arguments
with spaces (``bash -c '...'``, ``ssh host '...'``) are scanned as commands of their own, and
a program named further on in a command (``ssh h sqlcmd -P x``) is read with its rules.

A program that reads a secret on stdin (``passwd``, ``chpasswd``, ``kinit``, ``sudo -S``,
``--password-stdin``...) has it redacted wherever it comes from: the words ``echo``,
``printf`` or ``yes`` pipe into it (also from a group, ``(echo a; echo a) | passwd``), a
here-string, or a here-document (given to it or to the ``cat`` piped into it).
Every pattern is compiled at import; the scan is one forward pass over the tokens.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Final, Protocol, cast

import re2  # type: ignore[import-untyped]  # google-re2 ships no type information

from relay_shell.governance.redaction.names import is_secret_name
from relay_shell.governance.redaction.program_table import (
    PROGRAMS,
    STDIN_PROGRAMS,
    WRAPPERS,
    Mode,
    Positional,
    Rule,
    StdinMode,
)
from relay_shell.governance.redaction.shell_words import Command, Word, commands
from relay_shell.governance.redaction.words import (
    REDACTED,
    redact_after,
    redact_word,
    splice,
    word_value,
)

_ASSIGNMENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*+\+?=")
# The parts of an option name, a config key or an nmcli keyword that make its value a secret.
_SECRET_PART: Final = re.compile(
    r"pass(?:w(?:or)?d|phrase)?|pwd?|secrets?|tokens?|bearer|community|psk|creds?|credentials?|wep-?key[0-3]?|key[0-3]"
    r"|[a-z]*(?:pass|passw(?:or)?d|secret|token|apikey|authkey|accesskey|secretkey|privatekey)"
)
_KEY_PAIR_FIRST: Final = frozenset(
    {
        *("api", "access", "secret", "private", "auth", "master", "signing", "shared", "encryption"),
        *("decryption", "license", "client", "storage", "account", "session", "hmac", "root", "admin"),
    }
)
_METADATA_PART: Final = re.compile(
    r"files?|paths?|fd|stdin|env|type|name|url|uri|id|method|mode|dir|helper|command|cmd|prompt|length"
    r"|len|flags|format|hint|policy|expiry|expires|ttl|lifetime|count|required|disabled|enabled|cache|store"
    r"|from|source|ref|server|endpoint|id-file"
)
_USER_OPTIONS: Final = frozenset({"--user", "--auth", "--basic-auth", "--userpass", "--proxy-user"})
_USER_EXEMPT_PROGRAMS: Final = frozenset(
    {
        "docker",
        "podman",
        "nerdctl",
        "kubectl",
        "buildah",
        "lxc",
        "systemd-run",
        "install",
        "chown",
        "ps",
        "pkill",
    }
)
_NAME_SEPARATOR: Final = re.compile(r"[-_.]")
_NAME_VALUE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*+=")
_POWERSHELL_VARIABLE: Final = re.compile(r"\$[A-Za-z_][A-Za-z0-9_:]*+")
_COUNTING_PARTS: Final = frozenset({"max", "min", "num"})
_MAX_DEPTH: Final = 3
_MAX_FEEDERS: Final = 16
# A program named further on in a command (after ssh, docker exec, xargs...) is read with its
# rules too, unless its name is short or an ordinary word (then only as the command's program).
_MIN_INNER_PROGRAM: Final = 4
_MAX_PROGRAMS_PER_COMMAND: Final = 8
_COMMAND_POSITION_ONLY: Final = frozenset({"open", "http", "https", "security", "isql", "mkpasswd", "dotnet"})
_MIN_NESTED: Final = 3  # a quoted argument shorter than this holds no command worth scanning


type _Edit = tuple[int, int, str]


def scrub_programs(text: str) -> str:
    """Redact every secret the program table and the generic option rules find (see the
    module docstring); words that are not secrets, and every program and flag, are kept."""
    edits = sorted(_scan(text, 0), key=lambda edit: (edit[0], -edit[1]))
    return splice(text, edits)


def _scan(text: str, depth: int) -> Iterator[_Edit]:
    for command in commands(text):
        yield from _scrub_command(command.words, depth)
        mode = _stdin_mode(command.words)
        if mode is None:
            continue
        yield from _given_edits(text, command, mode)
        for feeder in command.feeders[:_MAX_FEEDERS]:
            yield from _fed_words(feeder.words, mode)
            yield from _given_edits(text, feeder, mode)


def _given_edits(text: str, command: Command, mode: StdinMode) -> Iterator[_Edit]:
    """The here-strings and here-document lines a command is given, redacted as ``mode`` reads them."""
    for word in command.here_strings:
        yield from _edit(word, ":" if mode == "pairs" and ":" in word.value else "whole")
    for start, end in command.here_docs:
        position = start
        for line in text[start:end].split("\n"):
            secret_start = position
            if mode == "pairs":
                colon = line.find(":")
                secret_start = position + colon + 1 if colon >= 0 else position + len(line)
            secret = text[secret_start : position + len(line)]
            if secret.strip() and REDACTED not in secret:
                yield (secret_start, position + len(line), REDACTED)
            if mode == "line" and line.strip():
                break
            position += len(line) + 1


# Options that make any program read its secret on standard input.
_STDIN_OPTIONS: Final = re.compile(
    r"--(?:password|passphrase|token|secret|pass)[-_]stdin|--(?:stdin[-_](?:password|passphrase|pass)"
    r"|with-token|password-from-stdin|passphrase-fd(?:=0)?)|-passin"
)
_SHORT_WITH_S: Final = re.compile(r"-[A-Za-z]*S[A-Za-z]*")
_SHORT_WITH_I: Final = re.compile(r"-[A-Za-z]*i[A-Za-z]*")
_FEEDERS: Final = frozenset({"echo", "printf", "print", "yes"})


def stdin_mode(command_text: str) -> StdinMode | None:
    """How the last command of ``command_text`` that reads a secret on stdin reads it (None:
    none does): used for the ``stdin`` argument given beside a command."""
    found: StdinMode | None = None
    for command in commands(command_text):
        found = _stdin_mode(command.words) or found
    return found


def _stdin_mode(words: list[Word]) -> StdinMode | None:
    """How the command reads a secret on stdin: ``sudo -S``, a reader program, or an option."""
    start = _program_index(words)
    before = {word.value for word in words[:start]}
    if "--stdin" in before or any(_SHORT_WITH_S.fullmatch(value) for value in before):
        return "line"  # sudo -S
    if start >= len(words):
        return None
    program = _base_name(words[start].value)
    args = [word.value for word in words[start + 1 :]]
    if program in STDIN_PROGRAMS:
        return STDIN_PROGRAMS[program] if _reads_stdin(program, args) else None
    reads = any(_STDIN_OPTIONS.fullmatch(arg) for arg in args if arg.startswith("--") or arg == "-passin")
    if reads or (program in ("vault", "op", "bw") and args[-1:] == ["-"]):
        return "line"
    return None


def _reads_stdin(program: str, args: list[str]) -> bool:
    """Whether a reader of :data:`STDIN_PROGRAMS` reads its secret on stdin with these arguments."""
    if program == "htpasswd":
        return any(_SHORT_WITH_I.fullmatch(arg) for arg in args)
    if program == "wpa_passphrase":
        return len([arg for arg in args if not arg.startswith("-")]) == 1
    return True


def _fed_words(words: list[Word], mode: StdinMode) -> Iterator[_Edit]:
    """The words ``echo``/``printf``/``yes`` write into a secret reader (options, ``printf``
    formats and the command name kept)."""
    start = _program_index(words)
    if start >= len(words) or words[start].value.rsplit("/", 1)[-1] not in _FEEDERS:
        return
    for word in words[start + 1 :]:
        value = word.value
        if value.startswith("-") or "%" in value:
            continue
        yield from _edit(word, ":" if mode == "pairs" and ":" in value else "whole")


def _program_index(words: list[Word]) -> int:
    """The index of the command's program past assignments and wrappers (len(words): none)."""
    index = 0
    while index < len(words):
        value = words[index].value
        if _ASSIGNMENT.match(value):
            index += 1
            continue
        wrapper = WRAPPERS.get(value.rsplit("/", 1)[-1])
        if wrapper is None:
            return index
        takes_value, operands = wrapper
        index += 1
        while index < len(words) and words[index].value.startswith("-") and words[index].value != "-":
            option = words[index].value
            index += 2 if option in takes_value else 1
        while index < len(words) and _ASSIGNMENT.match(words[index].value):
            index += 1
        index += operands
    return index


def _scrub_command(words: list[Word], depth: int) -> Iterator[_Edit]:
    """The edits of one simple command: its program's rules, also for a program it runs
    further on (``ssh h sqlcmd -P x``, ``kubectl exec p -- ipmitool -P x``), the generic
    option rules, and the commands inside its quoted arguments."""
    start = _program_index(words)
    if start >= len(words):
        return
    program = _base_name(words[start].value)
    read = 0  # programs read in this command: bounded, each reading costs a pass over the rest
    for index in range(start, len(words)):
        name = program if index == start else _base_name(words[index].value)
        inner = len(name) >= _MIN_INNER_PROGRAM and name not in _COMMAND_POSITION_ONLY
        if (index == start or inner) and name in PROGRAMS and read < _MAX_PROGRAMS_PER_COMMAND:
            read += 1
            args = words[index + 1 :]
            for rule in PROGRAMS[name]:
                if not rule.when or any(word.value in rule.when for word in args):
                    yield from _rule_edits(rule, args)
    args = words[start + 1 :]
    yield from _generic_edits(program, args)
    yield from _config_edits(args)
    if depth < _MAX_DEPTH:
        for word in args:
            if word.raw[:1] in ("'", '"') and len(word.value) >= _MIN_NESTED and " " in word.value:
                offset = word.start + 1
                for start_at, end_at, replacement in _scan(word.value, depth + 1):
                    yield (offset + start_at, offset + end_at, replacement)


def _base_name(word: str) -> str:
    return word.rsplit("/", 1)[-1].lower()


def _redact_value(word: str, mode: Mode) -> str:
    if mode == "whole":
        return redact_word(word)
    if mode != "/":
        return redact_after(word, mode)
    value = word_value(word)
    user, slash, rest = value.partition("/")
    secret, at, database = rest.partition("@")
    if not user or not slash or not secret:
        return word
    quote = word[0] if word[:1] in ("'", '"') and word.endswith(word[0]) and len(word) > 1 else ""
    return f"{quote}{user}/{REDACTED}{at}{database}{quote}"


def _edit(word: Word, mode: Mode, offset: int = 0) -> Iterator[_Edit]:
    """An edit redacting ``word`` from ``offset`` on (an attached or ``=`` value)."""
    raw = word.raw[offset:]
    if not word_value(raw) or REDACTED in raw:
        return
    replacement = _redact_value(raw, mode)
    if replacement != raw:
        yield (word.start + offset, word.end, replacement)


def _rule_edits(rule: Rule, args: list[Word]) -> Iterator[_Edit]:
    if rule.options or rule.prefixes:
        yield from _option_edits(rule, args)
    for positional in rule.positionals:
        yield from _positional_edits(positional, args)
    if rule.keywords:
        for keyword, value in itertools.pairwise(args):
            name = keyword.value.lstrip("+-").lower()
            if _is_secret_option_name(name) or is_secret_name(name):
                yield from _edit(value, "whole")


def _option_edits(rule: Rule, args: list[Word]) -> Iterator[_Edit]:
    for index, word in enumerate(args):
        value = word.value.lower() if rule.ignore_case else word.value
        following = args[index + 1] if index + 1 < len(args) else None
        for prefix, mode in rule.prefixes.items():
            if value.startswith(prefix) and len(value) > len(prefix):
                raw = word.raw.lower() if rule.ignore_case else word.raw
                yield from _edit(word, mode, raw.index(prefix) + len(prefix))
        if not rule.options:
            continue
        if value in rule.options:
            if following is not None and not following.value.startswith("-"):
                yield from _edit(following, rule.options[value])
            continue
        name, equals, _ = value.partition("=")
        if equals and name in rule.options:
            yield from _edit(word, rule.options[name], word.raw.index("=") + 1)
        elif value[:1] == "-" and value[1:2] != "-" and len(value) > 2:
            yield from _cluster_edits(rule, word, following)


def _cluster_edits(rule: Rule, word: Word, following: Word | None) -> Iterator[_Edit]:
    """``-PPW`` (attached) and ``-bP PW`` (clustered, the secret option last)."""
    value = word.value
    attached = rule.options.get(value[:2])
    if attached is not None and value[2:3] != "=":
        yield from _edit(word, attached, word.raw.index(value[:2]) + 2)
        return
    last = rule.options.get("-" + value[-1])
    if last is not None and value[1:].isalpha() and following is not None and following.value[:1] != "-":
        yield from _edit(following, last)


def _positional_window(positional: Positional, args: list[Word]) -> list[Word]:
    """The words a positional secret is counted in: past the subcommand ``path``, and past
    the ``after`` anchor (only the next word when ``adjacent``); empty when one is missing."""
    index = 0
    for step in positional.path:
        while index < len(args) and args[index].value.lower() != step:
            index += 1
        index += 1
    if index > len(args):
        return []
    if positional.after:
        anchor = next(
            (n for n in range(index, len(args)) if args[n].value.startswith(positional.after)), None
        )
        if anchor is None:
            return []
        index = anchor + 1
        if positional.adjacent:
            return args[index : index + 1]
    return args[index:]


def _positional_edits(positional: Positional, args: list[Word]) -> Iterator[_Edit]:
    operands: list[Word] = []
    skip = False
    for word in _positional_window(positional, args):
        value = word.value
        if skip:
            skip = False
        elif value in positional.takes_value:
            skip = True
        elif (
            (value.startswith("-") and value != "-")
            or (positional.slash_options and value.startswith("/"))
            or _NAME_VALUE.match(value)
        ):
            continue
        else:
            operands.append(word)
    if not operands or positional.index >= len(operands):
        return
    secret = operands[positional.index]
    # "-" and "*" read the secret from stdin or a prompt; in PowerShell "$name" is a variable
    variable = positional.variables and _POWERSHELL_VARIABLE.fullmatch(secret.raw.strip('"')) is not None
    if secret.value not in ("-", "*") and not variable:
        yield from _edit(secret, positional.mode)


def _is_secret_option_name(name: str) -> bool:
    """Whether a long option or keyword name (no dashes) reads as a secret: a part is a secret
    word (pass, passphrase, secret, token, community, psk, creds, authpass, privpass...) or
    ``<api|access|secret|private|auth...> key``, and the last part is not metadata."""
    parts = [part for part in _NAME_SEPARATOR.split(name.lower()) if part]
    if not parts or parts[0] in ("no", "ask", *_COUNTING_PARTS) or _METADATA_PART.fullmatch(parts[-1]):
        return False
    if any(_SECRET_PART.fullmatch(part) for part in parts):
        return True
    return any(first in _KEY_PAIR_FIRST and second == "key" for first, second in itertools.pairwise(parts))


def _generic_edits(program: str, args: list[Word]) -> Iterator[_Edit]:
    for index, word in enumerate(args):
        value = word.value
        if not value.startswith("--") or len(value) < 4:
            continue
        name, equals, attached = value.partition("=")
        user_option = name in _USER_OPTIONS and program not in _USER_EXEMPT_PROGRAMS
        if not user_option and not _is_secret_option_name(name[2:]):
            continue
        mode: Mode = ":" if user_option else "whole"
        if equals:
            if user_option and attached.rpartition(":")[2].isdigit():
                continue
            yield from _edit(word, mode, word.raw.index("=") + 1)
        elif index + 1 < len(args) and not args[index + 1].value.startswith("-"):
            following = args[index + 1]
            if user_option and following.value.rpartition(":")[2].isdigit():
                continue
            yield from _edit(following, mode)


_CONFIG_WORDS: Final = frozenset({"config", "configure", "conf"})


def _config_edits(args: list[Word]) -> Iterator[_Edit]:
    """``<tool> config [set] NAME VALUE`` (npm, yarn, poetry, redis CONFIG SET, pip): VALUE when
    NAME reads as a secret."""
    for index, word in enumerate(args):
        if word.value.lower() not in _CONFIG_WORDS:
            continue
        rest = [item for item in args[index + 1 :] if not item.value.startswith("-")]
        if rest and rest[0].value.lower() == "set":
            rest = rest[1:]
        if len(rest) >= 2:
            name = rest[0].value.rsplit(":", 1)[-1]
            if is_secret_name(name) or _is_secret_option_name(name):
                yield from _edit(rest[1], "whole")
        return


class _Needles(Protocol):
    """The part of ``re2._Regexp`` this module uses."""

    def search(self, text: str) -> object | None: ...


# A text in which none of these occur holds nothing this module redacts (the generic option
# rules need a secret word, which the caller's own pre-check looks for). RE2 runs the large
# alternation as one automaton: a few microseconds for an ordinary command.
_NEEDLES: Final = cast(
    _Needles,
    re2.compile(
        r"(?i)(?:^|[^A-Za-z0-9_.-])(?:"
        + "|".join(re.escape(name) for name in sorted({*PROGRAMS, *STDIN_PROGRAMS}, key=len, reverse=True))
        + r")(?:$|[^A-Za-z0-9_-])|community|psk|--(?:proxy-)?user"
    ),
)


def may_name_program(text: str) -> bool:
    """False when ``text`` names no program of the table, nor community, psk or ``--user``:
    then :func:`scrub_programs` finds nothing the other rules' pre-check would not see."""
    return _NEEDLES.search(text) is not None
