"""What a rule sees (:class:`Invocation`) and the table rules register in.

A rule is a function of one normalised simple command (base name, argument words, where
its stdin comes from) returning a :class:`Verdict`. Rules that find code inside their
arguments (``bash -c``, ``find -exec``, ``xargs``, ``ssh host cmd``) hand it back through
:class:`Nested`, which classifies it recursively and records the commands it finds. Rules
also raise flags on the invocation: ``taints`` (the line changes how later session input
runs), ``interactive`` (a program that reads the terminal itself), ``uses_git``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from relay_shell.policy.model import IRREVERSIBLE, REVERSIBLE, STATEFUL, Verdict, opaque
from relay_shell.policy.options import OptionSpec, Parsed, parse_options, spec
from relay_shell.policy.paths import collapse, write_verdict
from relay_shell.policy.regex_floor import classify_text
from relay_shell.policy.words import Word

StdinSource = Literal["empty", "terminal", "text", "pipe", "file", "unknown"]


@dataclass(frozen=True)
class Stdin:
    """Where a command's standard input comes from; ``text`` when its content is known."""

    source: StdinSource
    text: str | None = None

    @property
    def label(self) -> str:
        return {
            "empty": "nothing",
            "terminal": "the terminal",
            "text": "text",
            "pipe": "a pipe",
            "file": "a file",
            "unknown": "an input the classifier cannot see",
        }[self.source]


class Nested(Protocol):
    """Classifies code found inside a command's arguments (recording what it finds)."""

    def shell(self, text: str, origin: str, *, remote: bool = False, stdin: Stdin | None = None) -> Verdict:
        """Classify shell text run by this command (``bash -c TEXT``, ``eval``, ``ssh host TEXT``)."""

    def argv(self, words: Sequence[Word], origin: str, *, more_arguments: bool = False) -> Verdict:
        """Classify a command given as words (``find -exec``, ``xargs``, ``sudo``...)."""


@dataclass(slots=True)
class Invocation:
    """One simple command after its wrappers were stripped, as a rule sees it."""

    name: str
    args: list[Word]
    stdin: Stdin
    nested: Nested
    cwd: str | None
    remote: bool
    home: str | None
    taints: bool = False
    interactive: bool = False
    uses_git: bool = False
    other_cwds: tuple[str | None, ...] = ()  # earlier directories a failed ``cd`` would leave
    _parsed: dict[int, Parsed] = field(default_factory=dict)

    def options(self, option_spec: OptionSpec) -> Parsed:
        """The arguments parsed with ``option_spec`` (cached per spec)."""
        key = id(option_spec)
        if key not in self._parsed:
            self._parsed[key] = parse_options(self.args, option_spec)
        return self._parsed[key]

    def path(self, word: Word) -> str | None:
        """The absolute collapsed path a literal word names (None: not literal or cwd unknown)."""
        return collapse(word.text, self.cwd) if word.literal and word.text else None

    def write(self, word: Word) -> Verdict:
        """What writing to the file ``word`` names is (unknown targets read as the worst case)."""
        if word.text.startswith((">(", "<(")) and word.text.endswith(")") and not word.may_split:
            return Verdict(REVERSIBLE, "writes.process_substitution")
        if not word.literal:
            return (
                Verdict(IRREVERSIBLE, "writes.unknown_target")
                if not word.safe_glob
                else self._glob_write(word)
            )
        if not word.text.startswith("/") and self.other_cwds:
            verdicts = [self._write_in(word, cwd) for cwd in (self.cwd, *self.other_cwds)]
            return max(verdicts, key=lambda verdict: verdict.severity)
        return self._write_in(word, self.cwd)

    def _write_in(self, word: Word, cwd: str | None) -> Verdict:
        path = collapse(word.text, cwd) if word.text else None
        if path is None:
            if self.remote and not word.text.startswith("/"):
                return Verdict(REVERSIBLE, "writes.file")
            return Verdict(STATEFUL, "writes.unknown_directory")
        verdict = write_verdict(path, home=self.home)
        if not self.remote:
            real = os.path.realpath(path)  # a symlink to /etc makes the write a write into /etc
            if real != path:
                verdict = max(verdict, write_verdict(real, home=self.home), key=lambda found: found.severity)
        return verdict

    def _glob_write(self, word: Word) -> Verdict:
        prefix = word.text.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0]
        path = collapse(prefix or ".", self.cwd)
        base = write_verdict(path, home=self.home) if path else Verdict(STATEFUL, "writes.unknown_directory")
        return base if base.tier >= STATEFUL else Verdict(STATEFUL, "writes.glob_target")

    def dynamic(self) -> bool:
        """Whether any argument is an expansion that could become options or several words."""
        return any(not word.literal and (word.may_be_option or word.may_split) for word in self.args)

    def literal_texts(self) -> list[str]:
        return [word.text for word in self.args if word.literal]


Rule = Callable[[Invocation], Verdict]
RULES: dict[str, Rule] = {}
WORST: dict[str, Verdict] = {}


def rule(*names: str, worst: Verdict | None = None) -> Callable[[Rule], Rule]:
    """Register a rule for ``names``; ``worst`` is its verdict when arguments are expansions."""

    def register(function: Rule) -> Rule:
        for name in names:
            RULES[name] = function
            if worst is not None:
                WORST[name] = worst
        return function

    return register


def inline_code(invocation: Invocation, code: str | None, what: str) -> Verdict:
    """Interpreter code given inline: opaque, at least the regex table's tier for its text."""
    verdict = opaque("opaque.inline_code", f"{invocation.name} runs {what} given inline")
    if code:
        floor = classify_text(code)
        if floor.tier > verdict.tier and floor.rule:
            verdict = Verdict(floor.tier, floor.rule, verdict.opaque)
    return verdict


def run_file(invocation: Invocation, what: str = "a file") -> Verdict:
    return opaque("opaque.run_file", f"{invocation.name} runs {what} the classifier cannot read")


def stdin_code(invocation: Invocation, language: Literal["shell", "code"]) -> Verdict | None:
    """A shell or interpreter reading its program from stdin; None when stdin is empty.

    Known shell text is classified as a script (opaque when it comes through a pipe: the
    output of another command is what runs); interpreter code is inline code; a pipe, a file
    or an unknown input is opaque; the terminal is an interactive program.
    """
    stdin = invocation.stdin
    if stdin.source == "empty":
        return None
    if stdin.source == "terminal":
        invocation.interactive = True
        return Verdict(REVERSIBLE, "interactive.program")
    if stdin.text is not None:
        return _known_stdin(invocation, stdin, language)
    if stdin.source == "pipe":
        return opaque("opaque.pipe_to_shell", f"output piped into {invocation.name}")
    if stdin.source == "file":
        return run_file(invocation, "a file fed on stdin")
    return opaque("opaque.stdin_code", f"{invocation.name} runs code from {stdin.label}")


def _known_stdin(invocation: Invocation, stdin: Stdin, language: Literal["shell", "code"]) -> Verdict:
    """Stdin whose text is known: a script for a shell (opaque when it is another command's
    output), inline code for an interpreter."""
    text = stdin.text or ""
    if language == "code":
        return inline_code(invocation, text, "code read from stdin")
    verdict = invocation.nested.shell(text, f"{invocation.name} stdin", stdin=Stdin("empty"))
    if stdin.source == "pipe":
        verdict = verdict.worst(opaque("opaque.pipe_to_shell", f"output piped into {invocation.name}"))
    return verdict


def text_floor(invocation: Invocation, verdict: Verdict) -> Verdict:
    """``verdict`` raised by the regex table read over the arguments, for programs that may run
    them somewhere the parse cannot follow (an unknown program, a VM, a cloud shell):
    ``pssh -h hosts 'rm -rf /x'``, ``gcloud compute ssh vm --command 'rm -rf /x'``."""
    if verdict.tier >= IRREVERSIBLE or not invocation.args:
        return verdict
    floor = classify_text(" ".join(word.text for word in invocation.args))
    if floor.rule is None or floor.tier <= verdict.tier:
        return verdict
    return Verdict(floor.tier, floor.rule)


def subcommand(invocation: Invocation, option_spec: OptionSpec) -> tuple[str | None, Parsed]:
    """The first operand (the subcommand) and the parse; ``"?"`` when it is an expansion."""
    parsed = invocation.options(option_spec)
    if not parsed.operands:
        return None, parsed
    first = parsed.operands[0]
    return (first.text if first.literal else "?"), parsed


def any_of(words: Iterable[str], names: Collection[str]) -> bool:
    """True when one of ``words`` is one of ``names``."""
    return any(word in names for word in words)


ANY_OPTIONS = spec("", "")
"""An option spec that knows no option: a word starting with ``-`` is an option without a value,
so :func:`subcommand` finds the first other word."""
