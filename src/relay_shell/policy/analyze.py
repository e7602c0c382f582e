"""The classifier: every channel of a call, parsed, normalised and classified into an Analysis.

:class:`Analyzer` reads a :class:`CallText` (shell text, argv, script, stdin, env overlay,
working directory, session input, local paths), parses each shell text with
:class:`ShellParser`, classifies each simple command with :class:`CommandClassifier`,
follows code found inside arguments (``bash -c``, ``eval``, ``ssh host cmd``,
``find -exec``, ``xargs``, stdin fed to a shell...) up to :data:`MAX_DEPTH` levels, and
returns the :class:`Analysis` that admission, ``--explain`` and the audit read.

Classification never raises: an internal error classifies the call as opaque tier 3.
Text that does not parse is opaque with the regex table as its floor. After
:data:`MAX_COMMANDS` commands the rest of a text is classified by the regex table only
(opaque), so the cost stays linear in the input.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import replace

from relay_shell.policy.addresses import addresses_in_text
from relay_shell.policy.chunks import chunks
from relay_shell.policy.classify import CommandClassifier, Context
from relay_shell.policy.env import CodeVariables, env_verdict, is_harmless, loads_code
from relay_shell.policy.environment import GIT_SAFE_ENV, LOCAL_GIT_SAFE_ENV, PolicyEnvironment
from relay_shell.policy.floors import missing_commands, opaque_floor
from relay_shell.policy.model import (
    IRREVERSIBLE,
    READ_ONLY,
    REVERSIBLE,
    STATEFUL,
    Analysis,
    CallText,
    Interpreter,
    SimpleCommand,
    Verdict,
    opaque,
    worst_of,
)
from relay_shell.policy.parse import ShellParser
from relay_shell.policy.paths import collapse, protected_rule
from relay_shell.policy.regex_floor import classify_text
from relay_shell.policy.resolution import forget_resolutions
from relay_shell.policy.rules import Nested, Stdin
from relay_shell.policy.spellings import render
from relay_shell.policy.walk import ParseWalk, Run
from relay_shell.policy.words import Word, WordScanner, literal_word

log = logging.getLogger("relay_shell.policy")

MAX_DEPTH = 8
MAX_COMMANDS = 20_000
LARGE_TEXT = 64 * 1024
"""Above this many characters a call is classified with the cyclic collector held off."""


_SESSION_GIT = SimpleCommand(
    "channel",
    "git",
    "",
    REVERSIBLE,
    "session.git_config",
    False,
    "git in a running shell keeps the repository's configuration (fsmonitor, hooks, pagers): the "
    "overlay that makes a git read tier 0 cannot be applied to a shell that is already running",
    "session line",
)
"""Typed into a session, a git read is not tier 0 (``GIT_SAFE_ENV`` needs a process of its own)."""


class _NestedCode(Nested):
    def __init__(self, analyzer: Analyzer, run: Run, context: Context) -> None:
        self._analyzer = analyzer
        self._run = run
        self._context = context

    def shell(self, text: str, origin: str, *, remote: bool = False, stdin: Stdin | None = None) -> Verdict:
        context = self._context
        return self._analyzer._shell(
            self._run,
            text,
            origin=origin,
            depth=context.depth + 1,
            stdin=stdin or Stdin("empty"),
            remote=remote or context.remote,
            cwd=context.cwd if not remote else None,
            known={},
        )

    def argv(self, words: Sequence[Word], origin: str, *, more_arguments: bool = False) -> Verdict:
        context = self._context
        if context.depth + 1 > MAX_DEPTH:
            return self._analyzer._too_deep(self._run, origin, context.depth + 1)
        extra = (
            [Word("<more arguments>", False, may_be_option=True, may_split=True)] if more_arguments else []
        )
        inner = replace(context, depth=context.depth + 1, origin=origin)
        return self._analyzer._classifier(self._run).command(list(words) + extra, [], context.stdin, inner)


class Analyzer:
    """Classifies calls (see the module docstring). Thread-safe: one analysis per call."""

    def __init__(self, environment: PolicyEnvironment) -> None:
        self.environment = environment

    def analyze(self, call: CallText) -> Analysis:
        """Classify everything ``call`` will run. Never raises."""
        run = Run()
        try:
            forget_resolutions()
            if self.environment.protected is not None:
                self.environment.protected.refresh()
            from relay_shell.policy.collector import collector_paused
            from relay_shell.policy.rules.git_config import answers_remembered

            large = collector_paused() if call.size() > LARGE_TEXT else nullcontext()
            with large, answers_remembered():  # one look at the file system per question, this call only
                self._channels(run, call)
        except Exception:  # classification must never fail a call open
            log.exception("classification failed; treating the call as opaque")
            run.commands.append(
                SimpleCommand(
                    "unparsed",
                    "",
                    "",
                    IRREVERSIBLE,
                    "classifier.error",
                    True,
                    "opaque: the classifier failed on this text",
                )
            )
        return self._result(run, call)

    # -- channels ---------------------------------------------------------------------------

    def _channels(self, run: Run, call: CallText) -> None:
        cwd = collapse(call.cwd, self.environment.cwd) if call.cwd else self.environment.cwd
        env_safe = self._env_channel(run, call, cwd)
        known = {name: value for name, value in call.env.items() if value is not None}
        terminal = call.spawn or bool(call.typed)
        stdin = (
            Stdin("terminal") if terminal else (Stdin("text", call.stdin) if call.stdin else Stdin("empty"))
        )
        remote_cwd = None if call.remote else cwd
        if call.argv is not None:
            context = self._context(run, cwd, call.remote, 0, "command", stdin, set(), known, env_safe)
            self._classifier(run).command([literal_word(word) for word in call.argv], [], stdin, context)
        if call.shell is not None:
            if call.interpreter is Interpreter.PYTHON:
                self._python_script(run, call.shell)
            else:
                origin = (
                    "script"
                    if call.interpreter is not None
                    else ("session program" if call.spawn else "command")
                )
                script_stdin = Stdin("unknown") if call.interpreter is not None else stdin
                self._shell(
                    run,
                    call.shell,
                    origin=origin,
                    depth=0,
                    stdin=script_stdin,
                    remote=call.remote,
                    cwd=remote_cwd,
                    known=known,
                    env_safe=env_safe,
                )
        for unit in call.typed:
            if unit.opaque:
                run.commands.append(
                    SimpleCommand(
                        "channel",
                        unit.text[:200],
                        "",
                        STATEFUL,
                        "session.opaque_input",
                        True,
                        "opaque: " + unit.opaque,
                        "session line",
                    )
                )
            origin = "session line" if unit.submitted else "session pending line"
            self._shell(
                run,
                unit.text,
                origin=origin,
                depth=0,
                stdin=stdin,
                remote=call.remote,
                cwd=remote_cwd,
                known=known,
                env_safe=env_safe,
            )
        if call.typed and run.flags.uses_git:
            run.commands.append(_SESSION_GIT)  # the overlay that makes a git read tier 0 cannot reach it
        for path in call.paths:
            self._local_path(run, path, cwd)

    def _env_channel(self, run: Run, call: CallText, cwd: str | None) -> bool:
        """Classify the env overlay; return whether it still allows a known-safe read."""
        safe = True
        for name, value in call.env.items():
            if value is None or is_harmless(name):
                continue
            safe = False
            word = Word(value, True)
            nested = _NestedCode(
                self,
                run,
                self._context(run, cwd, call.remote, 0, f"env {name}", Stdin("empty"), set(), {}, False),
            )
            verdict = env_verdict(name, word, nested, "the call's env")
            if loads_code(name):
                run.flags.taints |= name in CodeVariables.TAINTING
                run.commands.append(
                    SimpleCommand(
                        "channel",
                        f"{name}={value}"[:300],
                        name,
                        verdict.tier,
                        verdict.rule,
                        verdict.opaque is not None,
                        verdict.opaque or verdict.rule,
                        f"env {name}",
                    )
                )
        return safe

    def _python_script(self, run: Run, script: str) -> None:
        floor = classify_text(script)
        tier = max(STATEFUL, floor.tier)
        rule = floor.rule if floor.tier > STATEFUL and floor.rule else "opaque.inline_code"
        run.commands.append(
            SimpleCommand(
                "channel",
                "python script",
                "python",
                tier,
                rule,
                True,
                "opaque: a python script is inline interpreter code",
                "script",
            )
        )

    def _local_path(self, run: Run, path: str, cwd: str | None) -> None:
        classifier = self._classifier(run)
        label = classifier.protected_word(Word(path, True), cwd, False)
        if label is not None:
            run.flags.protected = True
            run.commands.append(
                SimpleCommand(
                    "channel",
                    path,
                    "",
                    IRREVERSIBLE,
                    protected_rule(label),
                    False,
                    f"protected: names {label}",
                    "local path",
                )
            )

    # -- shell text -------------------------------------------------------------------------

    def _shell(
        self,
        run: Run,
        text: str,
        *,
        origin: str,
        depth: int,
        stdin: Stdin,
        remote: bool,
        cwd: str | None,
        known: dict[str, str],
        env_safe: bool = True,
    ) -> Verdict:
        if depth > MAX_DEPTH:
            return self._too_deep(run, origin, depth)
        before = len(run.commands)
        if run.exhausted or before >= MAX_COMMANDS:
            return self._exhausted(run, text, origin, depth)
        home = self.environment.home if not remote else None
        readings = [text]
        if "\\\n" in text:
            # The grammar splits a word at a line continuation (``r\<newline>m``); bash joins it.
            # Classify both readings: the joined one cannot hide a command in a comment, the
            # original one cannot miss a joined word.
            readings.append(text.replace("\\\n", ""))
        for reading in readings:
            # One context across the chunks of a long text: cwd, functions and known values carry on.
            context = self._context(run, cwd, remote, depth, origin, stdin, set(), dict(known), env_safe)
            consumed = 0  # the pieces cut the reading in order, without gaps
            for chunk in chunks(reading):
                budget = MAX_COMMANDS - len(run.commands)
                if run.exhausted or budget <= 0:
                    self._exhausted(run, reading[consumed:], origin, depth)
                    break
                parse = ShellParser(WordScanner(home), budget).parse(chunk.text, chunk.tree)
                consumed += len(chunk.text)
                if parse.errors:
                    self._unparsed(run, chunk.text, origin, depth)
                context.integer_safe = parse.integers.safe
                ParseWalk(run, self._classifier(run), self._nested(run), MAX_COMMANDS).commands(
                    parse, context
                )
                if parse.truncated_at is not None or run.exhausted:
                    rest = parse.rest(parse.truncated_at) if parse.truncated_at is not None else ""
                    self._exhausted(run, rest + reading[consumed:], origin, depth)
                    break
        return worst_of(_verdicts(run.commands[before:]), Verdict(REVERSIBLE, "shell.empty"))

    def _unparsed(self, run: Run, text: str, origin: str, depth: int) -> None:
        floor = classify_text(text)
        run.commands.append(
            SimpleCommand(
                "unparsed",
                text[:200],
                "",
                max(STATEFUL, floor.tier),
                floor.rule or "parse.error",
                True,
                "opaque: text that does not parse (read with the regex table)",
                origin,
                depth,
            )
        )

    # -- helpers ----------------------------------------------------------------------------

    def _context(
        self,
        run: Run,
        cwd: str | None,
        remote: bool,
        depth: int,
        origin: str,
        stdin: Stdin,
        functions: set[str],
        known: dict[str, str],
        env_safe: bool,
    ) -> Context:
        home = self.environment.home if not remote else None
        return Context(cwd, remote, home, depth, origin, stdin, functions, known, env_safe=env_safe)

    def _nested(self, run: Run) -> Callable[[Context], Nested]:
        return lambda context: _NestedCode(self, run, context)

    def _classifier(self, run: Run) -> CommandClassifier:
        return CommandClassifier(
            self.environment.protected,
            self.environment.search_path,
            run.commands.append,
            run.flags,
            self._nested(run),
            lambda: len(run.commands),
            spellings=self.environment.spellings,
        )

    def _too_deep(self, run: Run, origin: str, depth: int) -> Verdict:
        verdict = opaque("opaque.depth", f"code nested deeper than {MAX_DEPTH} levels")
        run.commands.append(
            SimpleCommand(
                "unparsed", "", "", verdict.tier, verdict.rule, True, verdict.opaque or "", origin, depth
            )
        )
        return verdict

    def _exhausted(self, run: Run, text: str, origin: str, depth: int) -> Verdict:
        run.exhausted = True
        floor = classify_text(text)
        verdict = Verdict(
            max(STATEFUL, floor.tier),
            floor.rule or "classifier.limit",
            f"opaque: more than {MAX_COMMANDS} commands (the rest read with the regex table)",
        )
        run.commands.append(
            SimpleCommand(
                "unparsed",
                text[:200],
                "",
                verdict.tier,
                verdict.rule,
                True,
                verdict.opaque or "",
                origin,
                depth,
            )
        )
        return verdict

    def _result(self, run: Run, call: CallText) -> Analysis:
        missing_commands(run.commands, run.flags.missing)
        texts = [call.shell or "", call.stdin, " ".join(call.argv or ()), *(unit.text for unit in call.typed)]
        opaque_floor(run.commands, [*texts, *(value for value in call.env.values() if value)])
        commands = tuple(run.commands)
        driver: SimpleCommand | None = None
        for command in commands:
            if driver is None or (command.tier, command.opaque) > (driver.tier, driver.opaque):
                driver = command
        tier = driver.tier if driver else READ_ONLY
        is_opaque = any(command.opaque for command in commands)
        exec_env: Mapping[str, str | None] = {}
        if run.flags.uses_git and tier == READ_ONLY:
            exec_env = GIT_SAFE_ENV if call.remote else LOCAL_GIT_SAFE_ENV
        with_deny = self.environment.spellings  # addresses, like spellings, only serve a deny list
        addresses = tuple(addresses_in_text("\n".join(texts))) if with_deny and any(texts) else ()
        return Analysis(
            commands,
            tier,
            is_opaque,
            driver,
            exec_env,
            run.flags.taints,
            run.flags.interactive,
            addresses,
            run.flags.protected,
        )


def _verdicts(commands: Sequence[SimpleCommand]) -> list[Verdict]:
    """The verdicts of ``commands`` that can change their worst: after the first, a known-safe
    read (tier 0, not opaque) never does (``Verdict.worst`` keeps what it has)."""
    verdicts: list[Verdict] = []
    for command in commands:
        if verdicts and command.tier == READ_ONLY and not command.opaque:
            continue
        verdicts.append(Verdict(command.tier, command.rule, command.reason if command.opaque else None))
    return verdicts


def analyze_text(text: str, environment: PolicyEnvironment | None = None, **call: object) -> Analysis:
    """Convenience: classify shell ``text`` (for tests and ``--explain``)."""
    return Analyzer(environment or PolicyEnvironment.bare()).analyze(CallText(shell=text, **call))  # type: ignore[arg-type]


__all__ = [
    "GIT_SAFE_ENV",
    "LOCAL_GIT_SAFE_ENV",
    "MAX_COMMANDS",
    "MAX_DEPTH",
    "Analyzer",
    "PolicyEnvironment",
    "analyze_text",
    "render",
]
