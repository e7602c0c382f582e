"""One simple command: strip wrappers, resolve the name, apply its rule, decide tier 0.

:class:`CommandClassifier` turns a word list (plus prefix assignments, redirections and
its stdin) into a recorded :class:`SimpleCommand` and returns its :class:`Verdict`. It is
the only place where the conditions of a known-safe read are combined: a rule that allows
it, the name resolving into a root-owned system directory (or a builtin), every word plain,
a harmless environment, no protected path named.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from relay_shell.policy.env import CodeVariables, env_verdict, is_harmless
from relay_shell.policy.model import (
    IRREVERSIBLE,
    PLAIN,
    READ_ONLY,
    REVERSIBLE,
    SAFE,
    CommandKind,
    SimpleCommand,
    Verdict,
    opaque,
)
from relay_shell.policy.named import NamedPaths
from relay_shell.policy.paths import VARIABLE_REFERENCE, Protected, collapse, is_system_path, protected_rule
from relay_shell.policy.raw import RawRedirect
from relay_shell.policy.relay_verbs import SELF_NAMES, acts_as_the_relay
from relay_shell.policy.resolution import PLACE_VERDICTS, SHELL_BUILTINS, resolve, system_file
from relay_shell.policy.rules import (
    BUILTINS,
    RULES,
    WORST,
    WRAPPERS,
    Invocation,
    Nested,
    Stdin,
    known_safe,
    lookup,
)
from relay_shell.policy.rules.base import text_floor
from relay_shell.policy.rules.readonly import SAFE as _SAFE_READS
from relay_shell.policy.rules.wrappers import PLAIN_WRAPPER
from relay_shell.policy.spellings import deny_spellings, render
from relay_shell.policy.words import Word

_PAGING = {
    "systemctl", "journalctl", "loginctl", "git", "man", "coredumpctl", "busctl", "psql", "mysql", "less",
    "more", "most", "top", "htop", "watch", "vi", "vim", "nano", "emacs", "ed",
}  # fmt: skip
_IFS = re.compile(r"\$\{?IFS\}?")
_IN_SHELL = frozenset({"opaque.dynamic_name", "opaque.unparsed", "opaque.history"})
_NOT_PATHS = {"echo", "printf", "test", "[", "expr", "seq", "sleep", "kill", "true", "false", ":"}


@dataclass(slots=True)
class Context:
    """What a command is classified against: where it runs and what the unit knows."""

    cwd: str | None
    remote: bool
    home: str | None
    depth: int
    origin: str
    stdin: Stdin
    functions: set[str] = field(default_factory=set)
    known_values: dict[str, str] = field(default_factory=dict)
    other_cwds: tuple[str | None, ...] = ()
    integer_safe: Callable[[str, int], bool] = lambda name, position: False
    env_safe: bool = True

    @property
    def same_shell(self) -> bool:
        """Whether this code runs in the shell that reads the next session line (not in a
        ``bash -c`` child, a remote shell or another program)."""
        return self.depth == 0 or self.origin == "eval"


@dataclass
class Flags:
    """What the commands of one call raised (for the analysis)."""

    taints: bool = False
    interactive: bool = False
    uses_git: bool = False
    protected: bool = False
    missing: list[int] = field(default_factory=list)  # positions of commands whose name is on no PATH
    named: dict[tuple[object, ...], str | None] = field(default_factory=dict)  # protected_word, this call
    named_words: dict[tuple[object, ...], str | None] = field(default_factory=dict)  # a word, every cwd
    named_plain: dict[tuple[object, ...], dict[str, str | None]] = field(default_factory=dict)  # by text


def known_safe_name(name: str) -> bool:
    """Whether ``name`` is on the known-safe list (a read that never runs its arguments)."""
    return name in _SAFE_READS


class CommandClassifier:
    """Classifies simple commands and records them (see the module docstring)."""

    def __init__(
        self,
        protected: Protected | None,
        search_path: str,
        record: Callable[[SimpleCommand], None],
        flags: Flags,
        nested: Callable[[Context], Nested],
        count: Callable[[], int],
        *,
        spellings: bool = True,
    ) -> None:
        self._named = (
            NamedPaths(protected, flags.named, flags.named_words, flags.named_plain)
            if protected is not None
            else None
        )
        self._search_path = search_path
        self._record = record
        self._flags = flags
        self._nested = nested
        self._count = count
        self._with_spellings = spellings

    # -- one command ------------------------------------------------------------------------

    def command(
        self,
        words: list[Word],
        assignments: list[tuple[str, Word]],
        stdin: Stdin,
        context: Context,
        extra: list[Verdict] | None = None,
        kind: CommandKind = "command",
    ) -> Verdict:
        """Classify and record one command; return its verdict."""
        verdicts = list(extra or [])
        safe = context.env_safe
        for name, value in assignments:
            verdicts.append(env_verdict(name, value, self._nested(context), "prefix"))
            safe = safe and is_harmless(name) and value.plain
            if name in CodeVariables.TAINTING and context.same_shell:
                self._flags.taints = True
        for word in words:
            if context.remote and word.glob:
                verdicts.append(
                    opaque(
                        "opaque.remote_glob",
                        f"the glob {word.text[:40]} matches remote files the classifier cannot see",
                    )
                )
            if word.code:
                verdicts.append(opaque("opaque.expansion", word.code))
            if word.unseen:
                verdicts.append(
                    opaque("opaque.unparsed", f"a part of {word.text[:40]!r} the parser did not read")
                )
        if not words:
            text = " ".join(f"{name}={value.text}" for name, value in assignments)
            return self._finish(
                kind if kind != "command" else "assignment",
                text,
                "",
                (),
                verdicts,
                Verdict(REVERSIBLE, "shell.assignment"),
                context,
                (),
                False,
            )
        return self._unwrap(words, stdin, context, verdicts, safe)

    def _unwrap(
        self, words: list[Word], stdin: Stdin, context: Context, verdicts: list[Verdict], safe: bool
    ) -> Verdict:
        current, wrappers, cwd = words, [], context.cwd
        name, invocation, rule_verdict = "", None, PLAIN
        missing = False
        while True:
            head = current[0]
            if not head.literal:
                verdicts.extend(self._dynamic_name(head, current, context))
                safe = False
                rule_verdict = Verdict(REVERSIBLE, "opaque.dynamic_name")
                name = head.text
                break
            name, path_verdict = self._name(head.text, context)
            if path_verdict is not None:
                verdicts.append(path_verdict)
                safe = safe and path_verdict.tier == READ_ONLY
                missing = missing or path_verdict.rule == "resolution.missing"
            invocation = Invocation(
                name,
                list(current[1:]),
                stdin,
                self._nested(context),
                cwd,
                context.remote,
                context.home,
                other_cwds=context.other_cwds,
            )
            if name in WRAPPERS and name not in context.functions:
                unwrapped = WRAPPERS[name](invocation)
                self._raise_flags(invocation, context)
                if unwrapped.command is not None or unwrapped.verdict is not PLAIN_WRAPPER:
                    verdicts.append(unwrapped.verdict)
                for variable, value in unwrapped.assignments:
                    verdicts.append(env_verdict(variable, value, self._nested(context), "wrapper"))
                    safe = safe and is_harmless(variable) and value.plain
                if unwrapped.cwd is not None:
                    cwd = collapse(unwrapped.cwd, cwd)
                if unwrapped.command is not None:
                    wrappers.append(name)
                    current = unwrapped.command
                    continue
                if unwrapped.label != "lookup" and name not in ("env",):
                    safe = False
            if (
                context.stdin.source == "terminal"
                and name in _PAGING
                and not any(word.text in ("--no-pager", "-P", "--pager=cat") for word in current)
            ):
                self._flags.interactive = True  # on a terminal it starts a pager that reads keys
            rule_verdict = self._rule(name, invocation, context)
            break
        if invocation is not None:
            safe = safe and self._known_safe(name, invocation, current, rule_verdict)
        verdict = (
            SAFE
            if safe
            else rule_verdict
            if rule_verdict.tier > READ_ONLY
            else Verdict(REVERSIBLE, rule_verdict.rule)
        )
        verdicts.extend(self._named_paths(words, cwd, context))
        spellings = self._spellings(name, current, cwd, context) if self._with_spellings else ()
        result = self._finish(
            "command",
            render(words),
            name,
            tuple(wrappers),
            verdicts,
            verdict,
            context,
            spellings,
            verdict is SAFE,
        )
        if missing:
            self._flags.missing.append(self._count() - 1)
        return result

    def _spellings(
        self, name: str, current: list[Word], cwd: str | None, context: Context
    ) -> tuple[str, ...]:
        """The further spellings a deny list reads (only built when a deny list is configured)."""
        core = [Word(name, True), *current[1:]] if current else []
        remote_cwd = None if context.remote else cwd
        return deny_spellings(name, current, core, remote_cwd, lambda: self._nested(_QUIET))

    def _raise_flags(self, invocation: Invocation, context: Context) -> None:
        self._flags.taints |= invocation.taints and context.same_shell
        self._flags.interactive |= invocation.interactive
        self._flags.uses_git |= invocation.uses_git

    def _rule(self, name: str, invocation: Invocation, context: Context) -> Verdict:
        if name in context.functions:
            return Verdict(REVERSIBLE, "shell.function_call")
        if name in SELF_NAMES and acts_as_the_relay(invocation.args):
            return Verdict(IRREVERSIBLE, "protected.admin_verb")
        rule = lookup(name)
        if rule is None:
            return self._unknown(invocation, context)
        verdict = rule(invocation)
        self._raise_flags(invocation, context)
        if name in WORST and invocation.dynamic():
            verdict = verdict.worst(WORST[name])
        return verdict

    def _unknown(self, invocation: Invocation, context: Context) -> Verdict:
        """An unlisted command: tier 1, but a known command among its arguments is classified
        as the command it may be running (unknown wrappers such as ``perf stat rm -rf x``)."""
        # a name on no PATH is scanned too: the corpus of tools that run their arguments
        # (sshpass, bwrap, pdsh...) is open-ended, and it may be installed by the time it runs
        if known_safe_name(invocation.name):
            return Verdict(REVERSIBLE, "default.unlisted")
        for index, word in enumerate(invocation.args):
            if not word.literal or ("/" in word.text and not is_system_path(word.text)):
                continue
            base = word.text.rsplit("/", 1)[-1]
            if (
                base
                and (base in RULES or base in WRAPPERS)
                and base not in _NOT_PATHS
                and base.isascii()
                and (base[0].isalnum() or base[0] == "_")
            ):  # ``jq . f``, ``foo : x``: punctuation is data, not ``.`` or ``:``
                nested = self._nested(context).argv(
                    invocation.args[index:], f"arguments of {invocation.name}"
                )
                return Verdict(REVERSIBLE, "default.unlisted").worst(nested)
        return text_floor(invocation, Verdict(REVERSIBLE, "default.unlisted"))

    def _name(self, text: str, context: Context) -> tuple[str, Verdict | None]:
        """The base name to look up, and a verdict for running a file by path (None: a plain name)."""
        if "/" not in text:
            if text in BUILTINS or text in SHELL_BUILTINS or context.remote or text in context.functions:
                return text, None
            return text, PLACE_VERDICTS[resolve(text, self._search_path)](text)
        path = collapse(text, context.cwd) if not context.remote else text
        base = text.rstrip("/").rsplit("/", 1)[-1]
        if path is not None and is_system_path(path) and (context.remote or system_file(path)):
            return base, Verdict(READ_ONLY, "resolution.system_path")
        return base, opaque("opaque.run_file", f"runs the file {text} (not a system command)")

    def _dynamic_name(self, head: Word, words: list[Word], context: Context) -> list[Verdict]:
        what = "a glob" if head.glob and not head.may_split else "an expansion"
        verdicts = [opaque("opaque.dynamic_name", f"the command name {head.text[:60]} is {what}")]
        match = VARIABLE_REFERENCE.fullmatch(head.text)
        if match and match.group(1) in context.known_values:
            value = context.known_values[match.group(1)]
            value_words = [Word(part, True, may_be_option=part.startswith("-")) for part in value.split()]
            if value_words:
                verdicts.append(
                    self._nested(context).argv(value_words + words[1:], f"the value of ${match.group(1)}")
                )
        elif _IFS.search(head.text) and "$" not in _IFS.sub("", head.text) and "`" not in head.text:
            # ``rm${IFS}-rf${IFS}/x``: the default IFS splits the word at every ${IFS}.
            parts = [
                Word(part, True, may_be_option=part.startswith("-")) for part in _IFS.split(head.text) if part
            ]
            if parts:
                verdicts.append(self._nested(context).argv(parts + words[1:], "the word split at $IFS"))
        elif len(words) > 1:
            verdicts.append(
                self._nested(context).argv(words[1:], f"after {head.text[:40]} (if it expands to nothing)")
            )
        return verdicts

    def _known_safe(self, name: str, invocation: Invocation, current: list[Word], verdict: Verdict) -> bool:
        if verdict.tier > REVERSIBLE or verdict.opaque is not None:
            return False
        for word in current:
            if not word.literal and not word.safe_glob:  # not plain
                return False
        if (
            name not in BUILTINS
            and "/" not in current[0].text
            and not invocation.remote
            and resolve(name, self._search_path) != "system"
        ):
            return False
        return known_safe(invocation)

    # -- paths ------------------------------------------------------------------------------

    def _named_paths(self, words: list[Word], cwd: str | None, context: Context) -> list[Verdict]:
        named = self._named
        if named is None:
            return []
        literal_only = bool(words and words[0].literal and words[0].text in _NOT_PATHS)
        candidates = (cwd, *context.other_cwds) if context.other_cwds else (cwd,)
        labels = named.labels(words, candidates, context.remote, literal_only)
        if not labels:
            return []
        self._flags.protected = True
        return named.verdicts(labels)

    def protected_word(
        self, word: Word, cwd: str | None, remote: bool, *, literal_only: bool = False
    ) -> str | None:
        """The protected file a word names (path, ``--opt=path``, glob), or None.

        ``literal_only``: only a protected path written inside the word counts (the argument
        of ``echo`` is not opened).
        """
        if self._named is None:
            return None
        return self._named.word(word, cwd, remote, literal_only=literal_only)

    # -- recording --------------------------------------------------------------------------

    def _finish(
        self,
        kind: CommandKind,
        text: str,
        name: str,
        wrappers: tuple[str, ...],
        verdicts: list[Verdict],
        verdict: Verdict,
        context: Context,
        spellings: tuple[str, ...],
        known: bool,
    ) -> Verdict:
        for other in verdicts:
            if other.tier > READ_ONLY or other.opaque is not None:
                verdict = verdict.worst(other)
        if verdict.tier > READ_ONLY:
            known = False
        if (
            verdict.opaque is not None
            and context.depth == 0
            and (
                not name or name in SHELL_BUILTINS or name.startswith(("$", "`")) or verdict.rule in _IN_SHELL
            )
        ):
            self._flags.taints = True  # opaque code in the shell itself can define anything
        reason = verdict.opaque or (_SAFE_REASON if verdict is SAFE else _describe(verdict))
        self._record(
            SimpleCommand(
                kind,
                text,
                name,
                verdict.tier,
                verdict.rule,
                verdict.opaque is not None,
                reason,
                context.origin,
                context.depth,
                wrappers,
                spellings,
                known,
                context.remote,
            )
        )
        if verdict.rule.startswith("protected."):
            self._flags.protected = True
        return verdict

    # -- redirections -----------------------------------------------------------------------

    def redirect(self, redirect: RawRedirect, context: Context) -> Verdict:
        """Classify and record one redirection on its own (a write names a file)."""
        target = redirect.target
        text = f"{redirect.fd if redirect.fd is not None else ''}{redirect.operator} {target.text if target else ''}"
        if (
            redirect.body is not None
            or redirect.operator in ("<<", "<<-", "<<<")
            or redirect.duplicates
            or target is None
        ):
            verdict = SAFE
        elif redirect.reads:
            verdict = SAFE if target.plain else Verdict(REVERSIBLE, "redirect.read")
        else:
            invocation = Invocation(
                "",
                [],
                context.stdin,
                self._nested(context),
                context.cwd,
                context.remote,
                context.home,
                other_cwds=context.other_cwds,
            )
            written = invocation.write(target)
            verdict = (
                SAFE if written.tier == READ_ONLY else Verdict(max(written.tier, REVERSIBLE), written.rule)
            )
            if verdict.rule in ("writes.file", "read.known_safe") and verdict.tier == REVERSIBLE:
                verdict = Verdict(REVERSIBLE, "redirect.write")
        extra: list[Verdict] = []
        if target is not None:
            if target.code:
                extra.append(opaque("opaque.expansion", target.code))
            label = None
            for candidate in (context.cwd, *context.other_cwds):
                label = label or self.protected_word(target, candidate, context.remote)
            if label is not None:
                extra.append(Verdict(IRREVERSIBLE, protected_rule(label)))
                self._flags.protected = True
        return self._finish("redirect", text.strip(), "", (), extra, verdict, context, (), verdict is SAFE)


_QUIET = Context(None, False, None, 0, "", Stdin("empty"))


@lru_cache(maxsize=1024)
def _describe(verdict: Verdict) -> str:
    if verdict.rule.startswith("protected."):
        return f"protected: names the relay's own files or administration commands ({verdict.rule})"
    family = verdict.rule.split(".", 1)[0]
    names = {0: "a known-safe read", 1: "reversible", 2: "stateful", 3: "irreversible"}
    return f"{family}: {names[verdict.tier]} ({verdict.rule})"


_SAFE_REASON = _describe(SAFE)  # the reason of most commands of a long script
