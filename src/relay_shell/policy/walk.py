"""The statements of one parse, in order: commands, function definitions, tests and
arithmetic, assignments, redirections; the working directory followed through ``cd``.

:class:`ParseWalk` classifies each statement into the call's :class:`Run` (through the
:class:`CommandClassifier`), raising its flags: a function definition or a declaration that
loads code taints the session; a function that runs itself in the background is a fork bomb.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from relay_shell.policy.classify import CommandClassifier, Context, Flags
from relay_shell.policy.env import CodeVariables, env_verdict, loads_code
from relay_shell.policy.model import (
    IRREVERSIBLE,
    READ_ONLY,
    REVERSIBLE,
    SimpleCommand,
    Verdict,
    opaque,
    worst_of,
)
from relay_shell.policy.paths import collapse
from relay_shell.policy.raw import RawCommand, ShellParse
from relay_shell.policy.regex_floor import classify_text
from relay_shell.policy.rules import Nested
from relay_shell.policy.stdin_sources import stdin_of


@dataclass
class Run:
    """What the classification of one call has gathered so far."""

    commands: list[SimpleCommand] = field(default_factory=list)
    flags: Flags = field(default_factory=Flags)
    exhausted: bool = False


class ParseWalk:
    """Classifies the statements of a parse into ``run`` (see the module docstring)."""

    def __init__(
        self,
        run: Run,
        classifier: CommandClassifier,
        nested: Callable[[Context], Nested],
        max_commands: int,
    ) -> None:
        self.run = run
        self.classifier = classifier
        self.nested = nested
        self.max_commands = max_commands

    def commands(self, parse: ShellParse, context: Context) -> None:
        """Classify the statements of ``parse`` in order, ``context`` following them (cwd, functions, values)."""
        run, classifier = self.run, self.classifier
        for raw in parse.commands:
            if len(run.commands) >= self.max_commands:
                run.exhausted = True
                parse.truncated_at = raw.position
                return
            extra = self._raw_verdicts(raw, context)
            for redirect in raw.redirects:
                classifier.redirect(redirect, context)
            if raw.kind == "function":
                context.functions.add(raw.name)  # a call site before the definition runs the program
                run.flags.taints |= context.same_shell
                bomb = _fork_bomb(raw.name, raw.source)
                run.commands.append(
                    SimpleCommand(
                        "definition",
                        f"{raw.name}() {{ ... }}",
                        raw.name,
                        IRREVERSIBLE if bomb else REVERSIBLE,
                        "forkbomb.shell" if bomb else "shell.function_definition",
                        False,
                        "a function that runs itself twice or in the background (a fork bomb)"
                        if bomb
                        else "defines a shell function",
                        context.origin,
                        context.depth,
                    )
                )
            elif raw.kind in ("arith", "test"):
                self._test_or_arith(raw, context, extra)
            elif raw.kind == "assignment":
                self._assignment(raw, context, extra)
            elif raw.kind in ("command", "declaration", "unset"):
                if raw.kind == "declaration" and context.same_shell and _declares_code(raw):
                    run.flags.taints = True
                stdin = stdin_of(raw, parse.commands, context.stdin)
                classifier.command(raw.words, raw.assignments, stdin, context, extra)
                self._track_cwd(raw, context)
            elif extra:
                classifier.command([], [], context.stdin, context, extra, kind="redirect")

    def _raw_verdicts(self, raw: RawCommand, context: Context) -> list[Verdict]:
        if not raw.reasons and not raw.arith:
            return []
        verdicts = [opaque("opaque.unparsed", reason) for reason in raw.reasons]
        for name, position in raw.arith.items():
            if not context.integer_safe(name, position):
                verdicts.append(
                    opaque(
                        "opaque.arithmetic",
                        f"arithmetic evaluates the value of ${name} "
                        "(an array subscript in a value runs code)",
                    )
                )
                break
        return verdicts

    def _test_or_arith(self, raw: RawCommand, context: Context, extra: list[Verdict]) -> None:
        safe = not extra and all(word.plain for word in raw.words)
        verdict = (
            Verdict(READ_ONLY, "read.known_safe")
            if safe and raw.kind == "test"
            else Verdict(REVERSIBLE, "shell.arithmetic" if raw.kind == "arith" else "shell.test")
        )
        verdict = worst_of([verdict, *extra], verdict)
        self.run.commands.append(
            SimpleCommand(
                "command",
                raw.source[:300],
                raw.name,
                verdict.tier,
                verdict.rule,
                verdict.opaque is not None,
                verdict.opaque or verdict.rule,
                context.origin,
                context.depth,
                known_safe=verdict.tier == READ_ONLY,
            )
        )

    def _assignment(self, raw: RawCommand, context: Context, extra: list[Verdict]) -> None:
        nested = self.nested(context)
        verdicts = list(extra)
        for name, value in raw.assignments:
            verdict = env_verdict(name, value, nested, "an assignment")
            verdicts.append(verdict)
            if (loads_code(name) or name in CodeVariables.TAINTING) and context.same_shell:
                self.run.flags.taints = True
            if value.literal:
                context.known_values[name] = value.text
            else:
                context.known_values.pop(name, None)
            if value.code:
                verdicts.append(opaque("opaque.expansion", value.code))
        self.classifier.command([], raw.assignments, context.stdin, context, verdicts)

    def _track_cwd(self, raw: RawCommand, context: Context) -> None:
        words = raw.words
        if not words or not words[0].literal or words[0].text not in ("cd", "pushd", "popd"):
            return
        operands = [word for word in words[1:] if not (word.literal and word.text.startswith("-"))]
        # A cd can fail or run in a subshell: the directory before it stays a candidate.
        context.other_cwds = ((context.cwd, *context.other_cwds))[:4]
        if words[0].text == "popd" or (operands and not operands[0].literal):
            context.cwd = None
        elif not operands:
            context.cwd = context.home
        else:
            context.cwd = collapse(operands[0].text, context.cwd)


def _declares_code(raw: RawCommand) -> bool:
    """Whether a declaration (``export``, ``declare -x``...) sets or exports a name that loads code."""
    for word in raw.words[1:]:
        if not word.literal:
            return True
        name = word.text.partition("=")[0]
        if loads_code(name) or name in CodeVariables.TAINTING:
            return True
    return any(loads_code(name) or name in CodeVariables.TAINTING for name, _ in raw.assignments)


def _fork_bomb(name: str, source: str) -> bool:
    """Whether a function body runs the function itself in a pipeline or in the background."""
    opening = min((i for i in (source.find("{"), source.find("(", len(name))) if i >= 0), default=-1)
    body = source[opening + 1 :] if opening >= 0 else source
    call = rf"(?<![\w./-]){re.escape(name)}(?![\w./-])"
    pattern = rf"{call}[^;&|\n]*(?:\|(?!\|)|&(?![&>]))|(?:(?<!\|)\|&?|\(|`)[ \t]*{call}"
    return re.search(pattern, body) is not None or classify_text(source).family == "forkbomb"
