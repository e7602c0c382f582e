"""The data the parse produces and every later stage reads (denials, ``--explain``, audit).

A call's text becomes an :class:`Analysis`: a flat tuple of :class:`SimpleCommand` records,
each with its normalised words, the rule that classified it, its tier and whether it is
*opaque* (its effect cannot be seen before it runs). Nothing downstream re-parses the text:
it reads these records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Literal

READ_ONLY, REVERSIBLE, STATEFUL, IRREVERSIBLE = 0, 1, 2, 3
TIER_NAMES = ("READ_ONLY", "REVERSIBLE", "STATEFUL", "IRREVERSIBLE")
OPAQUE_PREFIX = "opaque: "

CommandKind = Literal["command", "redirect", "assignment", "definition", "channel", "unparsed", "floor"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one rule concluded: a tier, the rule's name, and an opaque reason (or None).

    Tier 0 means a known-safe read and nothing else. An opaque verdict is at least tier 2.
    """

    tier: int
    rule: str
    opaque: str | None = None

    def __post_init__(self) -> None:
        if self.opaque is not None and self.tier < STATEFUL:
            object.__setattr__(self, "tier", STATEFUL)

    @property
    def severity(self) -> tuple[int, int]:
        """Order of badness: tier first, then opaque."""
        return (self.tier, 1 if self.opaque else 0)

    def worst(self, other: Verdict) -> Verdict:
        """The worse of two verdicts; an opaque reason is never lost."""
        first, second = (self, other) if self.severity >= other.severity else (other, self)
        if first.opaque is None and second.opaque is not None:
            return Verdict(first.tier, first.rule, second.opaque)
        return first


def opaque(rule: str, why: str, tier: int = STATEFUL) -> Verdict:
    """An opaque verdict with the reason ``opaque: <why>``."""
    return Verdict(max(tier, STATEFUL), rule, OPAQUE_PREFIX + why)


def worst_of(verdicts: Iterable[Verdict], default: Verdict) -> Verdict:
    """The worst of ``verdicts`` (``default`` when there are none)."""
    result: Verdict | None = None
    for verdict in verdicts:
        result = verdict if result is None else result.worst(verdict)
    return default if result is None else result


SAFE = Verdict(READ_ONLY, "read.known_safe")
PLAIN = Verdict(REVERSIBLE, "default.unlisted")


@dataclass(frozen=True, slots=True)
class SimpleCommand:
    """One simple command of the parse, normalised and classified.

    ``text`` is the normalised command (quotes removed, escapes resolved, braces expanded,
    paths collapsed, words shell-quoted only where needed): the allow list must match it in
    full. ``spellings`` are further normalised forms the deny list also reads (the command
    without its wrappers, by base name, other signal spellings). ``origin`` says where the
    text came from (``command``, ``stdin``, ``env PAGER``, ``bash -c``, ``session line``...).
    """

    kind: CommandKind
    text: str
    name: str
    tier: int
    rule: str
    opaque: bool
    reason: str
    origin: str = "command"
    depth: int = 0
    wrappers: tuple[str, ...] = ()
    spellings: tuple[str, ...] = ()
    known_safe: bool = False
    remote: bool = False  # runs on another host or inside a container (its files are not ours)

    def to_dict(self) -> dict[str, object]:
        """The JSON shape used by ``--explain --json``."""
        return {
            "kind": self.kind,
            "text": self.text,
            "name": self.name,
            "tier": self.tier,
            "rule": self.rule,
            "opaque": self.opaque,
            "reason": self.reason,
            "origin": self.origin,
            "depth": self.depth,
            "wrappers": list(self.wrappers),
            "known_safe": self.known_safe,
            "remote": self.remote,
        }


_EMPTY_ENV: Mapping[str, str | None] = MappingProxyType({})


@dataclass(frozen=True)
class Analysis:
    """Every simple command of a call, and what they add up to.

    ``tier`` is the maximum over the commands (0 only when every one is a known-safe read);
    ``driver`` is the command that set it (the opaque one when the call is opaque and several
    share the top tier). ``exec_env`` is the environment overlay the executor must apply
    (for tier-0 ``git``: configuration that would run code switched off). ``taints`` says the
    text changes how later input of a session is read or run; ``interactive`` that it starts
    a program that reads the terminal itself.
    """

    commands: tuple[SimpleCommand, ...]
    tier: int
    opaque: bool
    driver: SimpleCommand | None
    exec_env: Mapping[str, str | None] = field(default_factory=lambda: _EMPTY_ENV)
    taints: bool = False
    interactive: bool = False
    addresses: tuple[str, ...] = ()
    protected: bool = False

    @property
    def rule(self) -> str | None:
        """The rule that set the tier (None when nothing was classified)."""
        return self.driver.rule if self.driver else None

    @property
    def reason(self) -> str:
        """Why the call got its tier, opaque reasons first."""
        return self.driver.reason if self.driver else ""

    @property
    def names(self) -> tuple[str, ...]:
        """The normalised command names, in order, without repeats (for the audit record)."""
        return tuple(dict.fromkeys(command.name for command in self.commands if command.name))

    @property
    def rules(self) -> tuple[str, ...]:
        """The rules that classified a command above tier 0 or as opaque, without repeats."""
        return tuple(
            dict.fromkeys(command.rule for command in self.commands if command.tier > 0 or command.opaque)
        )

    def needing_allow(self) -> tuple[SimpleCommand, ...]:
        """The commands a guarded-mode allow rule must match one by one (tier >= 2 or opaque).

        A ``floor`` record is not a command: it only raises the tier of opaque code."""
        return tuple(
            command
            for command in self.commands
            if (command.tier >= STATEFUL or command.opaque) and command.kind != "floor"
        )

    def to_dict(self) -> dict[str, object]:
        """The JSON shape used by ``--explain --json``."""
        return {
            "tier": self.tier,
            "tier_name": TIER_NAMES[self.tier],
            "opaque": self.opaque,
            "rule": self.rule,
            "reason": self.reason,
            "protected": self.protected,
            "taints_session": self.taints,
            "interactive": self.interactive,
            "addresses": list(self.addresses),
            "exec_env": dict(self.exec_env),
            "commands": [command.to_dict() for command in self.commands],
        }


class Interpreter(StrEnum):
    """How a script text is read: as shell code or as Python code."""

    BASH = "bash"
    SH = "sh"
    PYTHON = "python"


@dataclass(frozen=True)
class TypedUnit:
    """A piece of session input: a submitted line (or the pending one) and why it is opaque."""

    text: str
    submitted: bool
    opaque: str | None = None


@dataclass(frozen=True)
class CallText:
    """Everything an executor will run, by channel, for the classifier.

    * ``shell``: text a shell runs (``sh -c``, a script for bash/sh, a remote command);
    * ``argv``: an exact argument vector run without a shell;
    * ``interpreter``: set for ``shell_script`` (python scripts are inline interpreter code);
    * ``stdin``: what the command reads on standard input;
    * ``env``: the overlay on the server's environment (``None`` unsets);
    * ``cwd``: the working directory (``None``: the server's);
    * ``remote``: the text runs on another host (globs are opaque, no local path resolution);
    * ``typed``: session input, as lines the shell will read;
    * ``spawn``: ``shell`` starts a session program on a terminal;
    * ``paths``: local paths the call reads or writes (uploads, downloads).
    """

    shell: str | None = None
    argv: tuple[str, ...] | None = None
    interpreter: Interpreter | None = None
    stdin: str = ""
    env: Mapping[str, str | None] = field(default_factory=lambda: _EMPTY_ENV)
    cwd: str | None = None
    remote: bool = False
    typed: tuple[TypedUnit, ...] = ()
    spawn: bool = False
    paths: tuple[str, ...] = ()

    def size(self) -> int:
        """Characters to classify (decides whether to classify in a worker thread)."""
        total = len(self.shell or "") + len(self.stdin) + sum(len(word) for word in self.argv or ())
        total += sum(len(unit.text) for unit in self.typed)
        return total + sum(len(value or "") for value in self.env.values())
