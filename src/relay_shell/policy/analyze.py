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
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from tree_sitter import Tree

from relay_shell.config import Settings
from relay_shell.policy.addresses import addresses_in_text
from relay_shell.policy.classify import CommandClassifier, Context, Flags
from relay_shell.policy.env import CodeVariables, env_verdict, is_harmless, loads_code
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
from relay_shell.policy.parse import RawCommand, RawRedirect, ShellParse, ShellParser, encode, parse_tree
from relay_shell.policy.paths import Protected, collapse, protected_rule
from relay_shell.policy.regex_floor import classify_text
from relay_shell.policy.resolution import forget_resolutions
from relay_shell.policy.rules import Nested, Stdin
from relay_shell.policy.spellings import render
from relay_shell.policy.words import Word, WordScanner, literal_word

log = logging.getLogger("relay_shell.policy")

MAX_DEPTH = 8
MAX_COMMANDS = 20_000
GIT_SAFE_ENV: Mapping[str, str | None] = MappingProxyType({
    "GIT_CONFIG_COUNT": "6",
    "GIT_CONFIG_KEY_0": "core.fsmonitor", "GIT_CONFIG_VALUE_0": "false",
    "GIT_CONFIG_KEY_1": "core.hooksPath", "GIT_CONFIG_VALUE_1": "/dev/null",
    "GIT_CONFIG_KEY_2": "core.pager", "GIT_CONFIG_VALUE_2": "cat",
    "GIT_CONFIG_KEY_3": "diff.external", "GIT_CONFIG_VALUE_3": "",
    "GIT_CONFIG_KEY_4": "log.showSignature", "GIT_CONFIG_VALUE_4": "false",
    "GIT_CONFIG_KEY_5": "gpg.program", "GIT_CONFIG_VALUE_5": "false",
    "GIT_OPTIONAL_LOCKS": "0", "GIT_PAGER": "cat", "PAGER": "cat", "LESSSECURE": "1",
    "GIT_EXTERNAL_DIFF": None, "GIT_CONFIG_PARAMETERS": None,
})  # fmt: skip
"""The overlay a tier-0 run of git gets: configuration that would run code switched off."""


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


@dataclass(frozen=True)
class PolicyEnvironment:
    """What classification is measured against: protected files, the server's PATH, HOME, cwd."""

    protected: Protected | None
    search_path: str
    home: str | None
    cwd: str
    spellings: bool = True  # a deny list is configured: spellings (paths resolved, globs expanded), addresses

    @classmethod
    def from_settings(cls, settings: Settings) -> PolicyEnvironment:
        """The environment of a server started with ``settings`` (in this process)."""
        return cls(
            Protected.from_settings(settings),
            os.environ.get("PATH", os.defpath),
            os.path.expanduser("~"),
            os.getcwd(),
            spellings=settings.policy_deny is not None,
        )

    @classmethod
    def bare(cls) -> PolicyEnvironment:
        """No protected files (tests and tools that only want the parse)."""
        return cls(None, os.environ.get("PATH", os.defpath), os.path.expanduser("~"), os.getcwd())


@dataclass
class _Run:
    commands: list[SimpleCommand] = field(default_factory=list)
    flags: Flags = field(default_factory=Flags)
    exhausted: bool = False


class _NestedCode(Nested):
    def __init__(self, analyzer: Analyzer, run: _Run, context: Context) -> None:
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
        run = _Run()
        try:
            forget_resolutions()
            if self.environment.protected is not None:
                self.environment.protected.refresh()
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

    def _channels(self, run: _Run, call: CallText) -> None:
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

    def _env_channel(self, run: _Run, call: CallText, cwd: str | None) -> bool:
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

    def _python_script(self, run: _Run, script: str) -> None:
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

    def _local_path(self, run: _Run, path: str, cwd: str | None) -> None:
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
        run: _Run,
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
                self._commands(run, parse, context)
                if parse.truncated_at is not None or run.exhausted:
                    rest = parse.rest(parse.truncated_at) if parse.truncated_at is not None else ""
                    self._exhausted(run, rest + reading[consumed:], origin, depth)
                    break
        return worst_of(_verdicts(run.commands[before:]), Verdict(REVERSIBLE, "shell.empty"))

    def _unparsed(self, run: _Run, text: str, origin: str, depth: int) -> None:
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

    def _commands(self, run: _Run, parse: ShellParse, context: Context) -> None:
        classifier = self._classifier(run)
        for raw in parse.commands:
            if len(run.commands) >= MAX_COMMANDS:
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
                self._test_or_arith(run, raw, context, extra)
            elif raw.kind == "assignment":
                self._assignment(run, raw, context, extra)
            elif raw.kind in ("command", "declaration", "unset"):
                if raw.kind == "declaration" and context.same_shell and _declares_code(raw):
                    run.flags.taints = True
                stdin = _stdin_of(raw, parse.commands, context)
                classifier.command(raw.words, raw.assignments, stdin, context, extra)
                self._track_cwd(raw, context)
            elif extra:
                classifier.command([], [], context.stdin, context, extra, kind="redirect")

    def _raw_verdicts(self, raw: RawCommand, context: Context) -> list[Verdict]:
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

    def _test_or_arith(self, run: _Run, raw: RawCommand, context: Context, extra: list[Verdict]) -> None:
        safe = not extra and all(word.plain for word in raw.words)
        verdict = (
            Verdict(READ_ONLY, "read.known_safe")
            if safe and raw.kind == "test"
            else Verdict(REVERSIBLE, "shell.arithmetic" if raw.kind == "arith" else "shell.test")
        )
        verdict = worst_of([verdict, *extra], verdict)
        run.commands.append(
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

    def _assignment(self, run: _Run, raw: RawCommand, context: Context, extra: list[Verdict]) -> None:
        nested = _NestedCode(self, run, context)
        verdicts = list(extra)
        for name, value in raw.assignments:
            verdict = env_verdict(name, value, nested, "an assignment")
            verdicts.append(verdict)
            if (loads_code(name) or name in CodeVariables.TAINTING) and context.same_shell:
                run.flags.taints = True
            if value.literal:
                context.known_values[name] = value.text
            else:
                context.known_values.pop(name, None)
            if value.code:
                verdicts.append(opaque("opaque.expansion", value.code))
        self._classifier(run).command([], raw.assignments, context.stdin, context, verdicts)

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

    # -- helpers ----------------------------------------------------------------------------

    def _context(
        self,
        run: _Run,
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

    def _classifier(self, run: _Run) -> CommandClassifier:
        return CommandClassifier(
            self.environment.protected,
            self.environment.search_path,
            run.commands.append,
            run.flags,
            lambda context: _NestedCode(self, run, context),
            lambda: len(run.commands),
            spellings=self.environment.spellings,
        )

    def _too_deep(self, run: _Run, origin: str, depth: int) -> Verdict:
        verdict = opaque("opaque.depth", f"code nested deeper than {MAX_DEPTH} levels")
        run.commands.append(
            SimpleCommand(
                "unparsed", "", "", verdict.tier, verdict.rule, True, verdict.opaque or "", origin, depth
            )
        )
        return verdict

    def _exhausted(self, run: _Run, text: str, origin: str, depth: int) -> Verdict:
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

    def _result(self, run: _Run, call: CallText) -> Analysis:
        _missing_commands(run)
        texts = [call.shell or "", call.stdin, " ".join(call.argv or ()), *(unit.text for unit in call.typed)]
        _opaque_floor(run, [*texts, *(value for value in call.env.values() if value)])
        commands = tuple(run.commands)
        driver: SimpleCommand | None = None
        for command in commands:
            if driver is None or (command.tier, command.opaque) > (driver.tier, driver.opaque):
                driver = command
        tier = driver.tier if driver else READ_ONLY
        is_opaque = any(command.opaque for command in commands)
        exec_env: Mapping[str, str | None] = GIT_SAFE_ENV if run.flags.uses_git and tier == READ_ONLY else {}
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


CHUNK_CHARS = 64 * 1024


@dataclass(frozen=True)
class Chunk:
    """A piece of a long text, and the grammar's tree of it when choosing the cut built one."""

    text: str
    tree: Tree | None = None


def chunks(text: str) -> Iterator[Chunk]:
    """``text`` cut at line ends into pieces of about :data:`CHUNK_CHARS` that each parse on
    their own (the grammar's cost grows faster than linearly with one long program).

    A cut is only made where the piece before it parses without error or missing part and
    does not end with a line continuation, so no quote, here-document, compound command or
    continued line is split; otherwise the piece grows until it does (at worst: the rest).
    The pieces come one at a time, in order and without gaps, each with the tree its cut was
    checked on (parsed once): a caller that stops (the command budget) parses nothing more.
    """
    if len(text) <= CHUNK_CHARS:
        yield Chunk(text)
        return
    start = 0
    while start < len(text):
        end = start + CHUNK_CHARS
        while True:
            cut = text.find("\n", end)
            if cut < 0:
                yield Chunk(text[start:])
                return
            piece = text[start : cut + 1]
            if not piece.rstrip("\n").endswith("\\"):
                tree = parse_tree(encode(piece))
                if not tree.root_node.has_error:
                    yield Chunk(piece, tree)
                    start = cut + 1
                    break
            end = cut + 1 + CHUNK_CHARS // 4


_CREATES = (
    "writes.",
    "redirect.write",
    "files.",
    "etc_writes.",
    "permissions.",
    "disk.",
    "deletion.",
    "remote.copy",
    "network.http",
    "tools.",
    "git.",
)


def _opaque_floor(run: _Run, texts: list[str]) -> None:
    """Opaque code is read with the regex table too: what it says rounds its tier up
    (``awk 'BEGIN{system("rm -rf /x")}'``, ``"$@"`` after ``set -- rm -rf /x``)."""
    worst = max((command.tier for command in run.commands), default=READ_ONLY)
    if worst >= IRREVERSIBLE or not any(command.opaque for command in run.commands):
        return
    floor = classify_text("\n".join(text for text in texts if text))
    if floor.tier <= worst or floor.rule is None:
        return
    run.commands.append(
        SimpleCommand(
            "floor",
            "",
            "",
            floor.tier,
            floor.rule,
            True,
            f"opaque: the call runs code the classifier cannot follow, and its text reads as {floor.rule}",
            "regex table",
        )
    )


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


def _missing_commands(run: _Run) -> None:
    """A name on no PATH is a typo, or a file this very call creates: when the call also
    writes files (or runs opaque code), running that name is opaque."""
    if not run.flags.missing:
        return
    missing = set(run.flags.missing)
    creates = any(
        index not in missing and not command.remote and (command.opaque or command.rule.startswith(_CREATES))
        for index, command in enumerate(run.commands)
    )
    if not creates:
        return
    for index in missing:
        command = run.commands[index]
        reason = f"opaque: {command.name} is on no PATH and this call writes files (it could create it)"
        run.commands[index] = replace(
            command, tier=max(STATEFUL, command.tier), opaque=True, rule="opaque.not_found", reason=reason
        )


def _verdicts(commands: Sequence[SimpleCommand]) -> list[Verdict]:
    return [
        Verdict(command.tier, command.rule, command.reason if command.opaque else None)
        for command in commands
    ]


def _stdin_of(raw: RawCommand, commands: Sequence[RawCommand], context: Context) -> Stdin:
    """Where this command's stdin comes from, with its text when the text is known."""
    for redirect in reversed(raw.redirects):
        if redirect.fd in (None, 0) and (redirect.reads or redirect.operator == "<>"):
            return _redirected_stdin(redirect)
    if raw.stdin == "pipe":
        source = commands[raw.pipe_source] if raw.pipe_source is not None else None
        return Stdin("pipe", _output_of(source) if source is not None else None)
    if raw.stdin in ("text", "file"):
        return Stdin(raw.stdin, raw.stdin_text)
    return context.stdin


def _redirected_stdin(redirect: RawRedirect) -> Stdin:
    if redirect.operator in ("<<", "<<-", "<<<"):
        return Stdin("text", redirect.body if redirect.body_literal else None)
    if redirect.target is not None and redirect.target.literal and redirect.target.text == "/dev/null":
        return Stdin("empty")
    return Stdin("file") if redirect.operator in ("<", "<>") else Stdin("unknown")


def _output_of(source: RawCommand) -> str | None:
    """The literal output of ``echo``/``printf`` words or of ``cat`` fed a here-document."""
    words = source.words
    if not words or not all(word.literal for word in words):
        return None
    name = words[0].text.rsplit("/", 1)[-1]
    if name == "echo":
        return " ".join(word.text for word in words[1:] if word.text not in ("-n", "-e", "-E")) + "\n"
    if name == "printf":
        return " ".join(word.text for word in words[1:]).replace("\\n", "\n")
    if name == "cat" and len(words) == 1:
        for redirect in source.redirects:
            if redirect.body is not None and redirect.body_literal:
                return redirect.body
    return None


def analyze_text(text: str, environment: PolicyEnvironment | None = None, **call: object) -> Analysis:
    """Convenience: classify shell ``text`` (for tests and ``--explain``)."""
    return Analyzer(environment or PolicyEnvironment.bare()).analyze(CallText(shell=text, **call))  # type: ignore[arg-type]


__all__ = [
    "GIT_SAFE_ENV",
    "MAX_COMMANDS",
    "MAX_DEPTH",
    "Analyzer",
    "PolicyEnvironment",
    "analyze_text",
    "render",
]
