"""What the parse of a shell text yields, before classification: raw commands with their words,
assignments, redirections and stdin, and the table of variables that only hold integers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from relay_shell.policy.words import Word

RawKind = Literal["command", "declaration", "unset", "test", "assignment", "function", "arith", "redirects"]
StdinKind = Literal["inherited", "pipe", "file", "text", "unknown"]

INPUT_OPERATORS = {"<", "<<", "<<-", "<<<", "<&", "<>"}
INTEGER = re.compile(r"-?[0-9]+")
_BUILTIN_INTEGERS = {"RANDOM", "SRANDOM", "SECONDS", "LINENO", "BASHPID", "PPID", "UID", "EUID", "OPTIND"}
_BUILTIN_INTEGERS |= {"EPOCHSECONDS", "HISTCMD", "#", "?", "$", "!"}


@dataclass(slots=True)
class RawRedirect:
    """One redirection: ``operator`` (``>``, ``>>``, ``<``, ``&>``, ``<<``, ``<<<``...)."""

    operator: str
    fd: int | None
    target: Word | None
    body: str | None = None
    body_literal: bool = False
    source: str = ""

    @property
    def reads(self) -> bool:
        return self.operator in INPUT_OPERATORS and self.operator != "<>"

    @property
    def duplicates(self) -> bool:
        """``>&2``, ``2>&1``, ``<&3``, ``>&-``: no file is named."""
        if self.operator in (">&", "<&", ">&-", "<&-"):
            return self.target is None or (self.target.literal and self.target.text.rstrip("-").isdigit())
        return False


@dataclass
class IntegerTable:
    """Where each variable is assigned, and whether it only ever holds integers.

    Arithmetic (``$((x))``, ``((..))``, ``[[ x -eq 1 ]]``, ``${a[x]}``, ``${s:x}``, ``let``)
    evaluates a variable's *value* as an expression, and a subscript in that value runs
    command substitutions: ``x='a[$(cmd)]'; echo $((x))`` runs ``cmd``. A variable is safe
    in arithmetic at a position only if an integer was assigned to it earlier in the same
    text and nothing else is ever assigned to it there (loops can carry a later value back).
    """

    first_integer: dict[str, int] = field(default_factory=dict)
    other: set[str] = field(default_factory=set)

    def integer(self, name: str, position: int) -> None:
        if position < self.first_integer.get(name, position + 1):
            self.first_integer[name] = position

    def assigned(self, name: str, value: str | None, position: int) -> None:
        if value is not None and INTEGER.fullmatch(value):
            self.integer(name, position)
        else:
            self.other.add(name)

    def safe(self, name: str, position: int) -> bool:
        if name in self.other:
            return False
        if name in _BUILTIN_INTEGERS:
            return True
        return self.first_integer.get(name, position) < position


@dataclass(slots=True)
class RawCommand:
    """A simple command (or declaration, test, assignment...) before classification."""

    kind: RawKind
    position: int
    source: str
    words: list[Word] = field(default_factory=list)
    assignments: list[tuple[str, Word]] = field(default_factory=list)
    redirects: list[RawRedirect] = field(default_factory=list)
    stdin: StdinKind = "inherited"
    stdin_text: str | None = None
    pipe_source: int | None = None
    arith: dict[str, int] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    name: str = ""

    def uses(self, names: dict[str, int] | frozenset[str], position: int) -> None:
        """Record variables evaluated arithmetically (at ``position`` + their offset)."""
        if isinstance(names, frozenset):
            for name in sorted(names):  # a set's order depends on the hash seed; reasons must not
                self.arith.setdefault(name, position)
        else:
            for name, offset in names.items():
                self.arith.setdefault(name, position + offset)


@dataclass
class ShellParse:
    """The commands of one text, whether it parsed cleanly, and what it defines."""

    commands: list[RawCommand]
    errors: bool
    functions: set[str]
    integers: IntegerTable
    source: bytes = b""
    truncated_at: int | None = None  # byte offset where the command budget ran out

    def rest(self, position: int) -> str:
        """The text from byte ``position`` on (what is left when the command budget runs out)."""
        return self.source[position:].decode("utf-8", "replace")
