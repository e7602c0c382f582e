"""git: history rewrites (tier 3) and the commands that run code (opaque).

* Tier 3 (``history``): ``push`` with ``--force`` in any spelling (``-f``, ``--forc``,
  ``--force-with-lease``, ``--mirror``, ``--delete``, ``+ref``, ``:ref``), ``reset --hard``,
  ``clean -f`` (or without ``-n``), ``checkout``/``switch``/``restore`` that discard local
  changes, ``branch -D``, ``stash drop|clear``, ``rm -f``, ``filter-branch``,
  ``filter-repo``, ``reflog expire``, ``gc --prune``, ``prune``.
* Opaque: commands that fire hooks (``commit``, ``merge``, ``checkout``, ``switch``,
  ``rebase``, ``am``, ``push``, ``pull``, ``cherry-pick``, ``revert``, ``clone``,
  ``worktree``, ``gc``...), ``-c`` (configuration that can name a program), ``--exec-path``,
  options that run programs (``--ext-diff``, ``--textconv``, ``-O``, ``--upload-pack``,
  ``rebase --exec``, ``bisect run``, ``submodule foreach``) and any subcommand git does not
  ship (an alias or a ``git-*`` program can run anything).
"""

from __future__ import annotations

from collections.abc import Callable

from relay_shell.policy.model import IRREVERSIBLE, REVERSIBLE, STATEFUL, Verdict, opaque
from relay_shell.policy.options import Parsed, spec
from relay_shell.policy.rules.base import Invocation, rule
from relay_shell.policy.words import Word

_GLOBAL = spec(
    "pPh",
    "Cc",
    long="paginate no-pager bare no-replace-objects literal-pathspecs glob-pathspecs noglob-pathspecs "
    "icase-pathspecs no-optional-locks help version html-path man-path info-path no-advice",
    long_values="git-dir work-tree namespace config-env super-prefix list-cmds attr-source",
    long_optional="exec-path",
    permute=False,
)
HOOK_COMMANDS = {
    "commit",
    "merge",
    "checkout",
    "switch",
    "rebase",
    "am",
    "push",
    "pull",
    "cherry-pick",
    "revert",
    "clone",
    "worktree",
    "gc",
    "send-email",
    "difftool",
    "mergetool",
    "maintenance",
    "citool",
    "gui",
    "svn",
    "p4",
    "filter-branch",
    "filter-repo",
    "notes",
    "imap-send",
}
QUIET_COMMANDS = {
    "status",
    "log",
    "diff",
    "show",
    "grep",
    "blame",
    "describe",
    "rev-parse",
    "ls-files",
    "ls-tree",
    "cat-file",
    "shortlog",
    "show-ref",
    "for-each-ref",
    "count-objects",
    "merge-base",
    "name-rev",
    "whatchanged",
    "range-diff",
    "var",
    "version",
    "help",
    "cherry",
    "rev-list",
    "diff-tree",
    "diff-index",
    "diff-files",
    "ls-remote",
    "verify-pack",
    "check-ignore",
    "check-attr",
    "check-ref-format",
    "fsck",
    "annotate",
    "show-branch",
    "format-patch",
    "archive",
    "bundle",
    "init",
    "add",
    "mv",
    "apply",
    "fetch",
    "remote",
    "tag",
    "branch",
    "stash",
    "reset",
    "restore",
    "rm",
    "clean",
    "config",
    "reflog",
    "bisect",
    "submodule",
    "update-index",
    "update-ref",
    "symbolic-ref",
    "hash-object",
    "mktag",
    "mktree",
    "read-tree",
    "write-tree",
    "repack",
    "prune",
    "prune-packed",
    "pack-refs",
    "replace",
    "request-pull",
    "sparse-checkout",
    "stripspace",
    "interpret-trailers",
    "mailinfo",
    "mailsplit",
    "column",
    "credential",
    "fast-export",
    "fast-import",
    "unpack-objects",
    "index-pack",
    "pack-objects",
    "multi-pack-index",
    "commit-graph",
    "rerere",
    "backfill",
    "merge-tree",
    "merge-file",
    "get-tar-commit-id",
}
_CODE_OPTIONS = {
    "--ext-diff": "git --ext-diff runs an external diff program",
    "--textconv": "git --textconv runs text conversion programs",
    "-O": "git grep -O runs a pager program",
    "--open-files-in-pager": "git grep --open-files-in-pager runs a pager program",
    "--upload-pack": "git --upload-pack runs a program",
    "--receive-pack": "git --receive-pack runs a program",
    "--exec": "git --exec runs a command",
    "-x": "git rebase -x runs a command",
    "--show-signature": "git --show-signature runs the configured gpg program",
    "--template": "git --template copies hooks from a directory",
}
_HARMLESS_CONFIG = (
    "color.",
    "column.",
    "user.name",
    "user.email",
    "advice.",
    "core.quotepath",
    "log.date",
    "init.defaultbranch",
    "safe.directory",
)


def global_options(invocation: Invocation) -> tuple[Parsed, list[Word]] | None:
    """git's global options and the words from the subcommand on; None when unclear."""
    words = invocation.args
    index = 0
    parsed = Parsed()
    while index < len(words):
        word = words[index]
        if not word.literal:
            return None
        text = word.text
        if not text.startswith("-"):
            break
        if text in ("-C", "-c"):
            if index + 1 >= len(words) or not words[index + 1].literal:
                return None
            parsed.options.append((text, words[index + 1].text))
            index += 2
            continue
        if text.startswith("--"):
            name, equals, value = text[2:].partition("=")
            candidates = _GLOBAL.resolve_long(name)
            takes_value = any(candidate in _GLOBAL.long_values for candidate in candidates)
            if takes_value and not equals:
                if index + 1 >= len(words) or not words[index + 1].literal:
                    return None
                value, index = words[index + 1].text, index + 1
            for candidate in candidates or [name]:
                parsed.options.append(("--" + candidate, value if (equals or takes_value) else None))
        else:
            parsed.options.append((text, None))
        index += 1
    return parsed, list(words[index:])


@rule("git", worst=opaque("opaque.git", "git with an expansion as its subcommand or options", IRREVERSIBLE))
def git(invocation: Invocation) -> Verdict:
    invocation.uses_git = True
    found = global_options(invocation)
    if found is None:
        return opaque("opaque.git", "git with an expansion as its subcommand or options", IRREVERSIBLE)
    globals_, rest = found
    verdict = Verdict(REVERSIBLE, "git.command")
    for key in globals_.values("-c"):
        if not key.lower().startswith(_HARMLESS_CONFIG):
            verdict = verdict.worst(
                opaque("opaque.git", f"git -c {key.split('=')[0]} can name a program to run")
            )
    if globals_.has("--config-env") or any(value for value in globals_.values("--exec-path")):
        verdict = verdict.worst(opaque("opaque.git", "git configuration from the environment or --exec-path"))
    if not rest:
        return verdict
    if not rest[0].literal:
        return opaque("opaque.git", "git subcommand is an expansion", IRREVERSIBLE)
    return verdict.worst(subcommand(invocation, rest[0].text, rest[1:]))


def subcommand(invocation: Invocation, name: str, args: list[Word]) -> Verdict:
    """The verdict for ``git NAME ARGS`` (global options already read)."""
    texts = [word.text for word in args]
    if texts in (["--help"], ["-h"]):
        return Verdict(REVERSIBLE, "git.help")
    if any(not word.literal and (word.may_be_option or word.may_split) for word in args):
        return opaque("opaque.git", f"git {name} with expansions among its arguments", IRREVERSIBLE)
    verdict = _history(name, texts)
    for text in texts:
        reason = _code_option(name, text)
        if reason:
            verdict = verdict.worst(opaque("opaque.git", reason))
    if name in HOOK_COMMANDS:
        verdict = verdict.worst(opaque("opaque.git_hooks", f"git {name} runs repository hooks"))
    elif name not in QUIET_COMMANDS:
        return verdict.worst(
            opaque(
                "opaque.git",
                f"git {name} is not a git command the classifier knows "
                "(an alias or a git-* program can run anything)",
            )
        )
    return verdict.worst(_runs_commands(invocation, name, args))


_GREP_SHORT_VALUES = "ABCefm"
"""``git grep`` short options that take the rest of a cluster as their value (``-e``, ``-A3``...)."""
_EXACT_LONG = {"--text"}
"""Real options that are also prefixes of an option in ``_CODE_OPTIONS`` (``diff --text``)."""


def _code_option(name: str, text: str) -> str | None:
    """Why ``text``, an argument of ``git NAME``, makes git run a program (None: it does not).

    git's parse-options reads any unambiguous prefix of a long option (``--open-files`` is
    ``--open-files-in-pager``, ``--upload-p`` is ``--upload-pack``) and clusters short ones
    with an attached value (``git grep -iOcmd``): both spellings count as the option."""
    option = text.split("=", 1)[0]
    if option in _CODE_OPTIONS:
        if (option == "-x" and name != "rebase") or (option == "-O" and name != "grep"):
            return None
        return _CODE_OPTIONS[option]
    if option.startswith("--") and len(option) > 2 and option not in _EXACT_LONG:
        for candidate, reason in _CODE_OPTIONS.items():
            if candidate.startswith(option):
                return reason
        return None
    if name == "grep" and option.startswith("-") and not option.startswith("--"):
        for letter in text[1:]:
            if letter == "O":
                return _CODE_OPTIONS["-O"]
            if letter in _GREP_SHORT_VALUES:
                break
    return None


def _has_short(texts: list[str], letters: str) -> bool:
    return any(
        t.startswith("-") and not t.startswith("--") and any(c in t[1:] for c in letters) for t in texts
    )


def _has_long(texts: list[str], *names: str) -> bool:
    """A long option given as any prefix (git accepts unique abbreviations: ``--ha`` is ``--hard``;
    an ambiguous one is refused by git, so reading it as the dangerous option only rounds up)."""
    for text in texts:
        if text.startswith("--") and len(text) > 2:
            given = text[2:].split("=", 1)[0]
            if any(name.startswith(given) for name in names):
                return True
    return False


def _push_force(texts: list[str]) -> bool:
    refspec_force = any(t.startswith(("+", ":")) and len(t) > 1 for t in texts if not t.startswith("-"))
    return (
        _has_short(texts, "fd")
        or refspec_force
        or _has_long(texts, "force", "force-with-lease", "force-if-includes", "mirror", "delete", "prune")
    )


def _discards(texts: list[str]) -> bool:
    """``checkout``/``switch`` that throw local changes away."""
    return (
        _has_short(texts, "fp")
        or _has_long(texts, "force", "discard-changes", "patch", "theirs", "ours")
        or "--" in texts
        or "." in texts
    )


def _config_writes(texts: list[str]) -> bool:
    reads = (
        "--get",
        "--get-all",
        "--get-regexp",
        "--get-urlmatch",
        "--list",
        "-l",
        "--show-origin",
        "--show-scope",
        "--name-only",
        "--get-color",
        "--get-colorbool",
        "-e",
        "--edit",
    )
    operands = [t for t in texts if not t.startswith("-")]
    if operands[:1] in (["get"], ["list"]) or any(t.startswith(reads) for t in texts):
        return any(t in ("-e", "--edit") for t in texts)
    return len(operands) >= 2 or operands[:1] in (
        ["set"],
        ["unset"],
        ["rename-section"],
        ["remove-section"],
        ["edit"],
    )


def _first_is(*words: str) -> Callable[[list[str]], bool]:
    return lambda texts: bool(texts) and texts[0] in words


_HISTORY: dict[str, tuple[Callable[[list[str]], bool], Verdict]] = {
    "push": (_push_force, Verdict(IRREVERSIBLE, "history.git_push_force")),
    "reset": (
        lambda texts: _has_long(texts, "hard", "merge"),
        Verdict(IRREVERSIBLE, "history.git_reset_hard"),
    ),
    "clean": (
        lambda texts: not (_has_short(texts, "n") or _has_long(texts, "dry-run")),
        Verdict(IRREVERSIBLE, "history.git_clean"),
    ),
    "checkout": (_discards, Verdict(IRREVERSIBLE, "history.git_discard_changes")),
    "switch": (_discards, Verdict(IRREVERSIBLE, "history.git_discard_changes")),
    "restore": (
        lambda texts: not (_has_long(texts, "staged") and not _has_long(texts, "worktree")),
        Verdict(IRREVERSIBLE, "history.git_discard_changes"),
    ),
    "branch": (
        lambda texts: (
            _has_short(texts, "D")
            or (_has_long(texts, "delete") and _has_long(texts, "force"))
            or (_has_short(texts, "d") and _has_short(texts, "f"))
        ),
        Verdict(IRREVERSIBLE, "history.git_branch_delete"),
    ),
    "stash": (_first_is("drop", "clear"), Verdict(IRREVERSIBLE, "history.git_stash_drop")),
    "rm": (
        lambda texts: _has_short(texts, "f") or _has_long(texts, "force"),
        Verdict(IRREVERSIBLE, "deletion.git_rm_forced"),
    ),
    "filter-branch": (
        lambda texts: True,
        Verdict(
            IRREVERSIBLE, "history.git_rewrite", "opaque: git filter-branch runs its filters as commands"
        ),
    ),
    "filter-repo": (lambda texts: True, Verdict(IRREVERSIBLE, "history.git_rewrite")),
    "reflog": (_first_is("expire", "delete"), Verdict(IRREVERSIBLE, "history.git_rewrite")),
    "prune": (lambda texts: True, Verdict(IRREVERSIBLE, "history.git_prune")),
    "gc": (lambda texts: _has_long(texts, "prune"), Verdict(IRREVERSIBLE, "history.git_prune")),
    "config": (_config_writes, Verdict(STATEFUL, "git.config_write")),
    "update-ref": (lambda texts: "-d" in texts or "--delete" in texts, Verdict(STATEFUL, "git.ref_change")),
    "symbolic-ref": (lambda texts: "-d" in texts or "--delete" in texts, Verdict(STATEFUL, "git.ref_change")),
    "replace": (lambda texts: "-d" in texts or "--delete" in texts, Verdict(STATEFUL, "git.ref_change")),
}
"""Subcommand -> (when it rewrites history or discards work, the verdict then)."""


def _history(name: str, texts: list[str]) -> Verdict:
    entry = _HISTORY.get(name)
    if entry is not None and entry[0](texts):
        return entry[1]
    return Verdict(REVERSIBLE, "git.command")


def _runs_commands(invocation: Invocation, name: str, args: list[Word]) -> Verdict:
    texts = [word.text for word in args]
    verdict = Verdict(REVERSIBLE, "git.command")
    if name == "rebase":
        for index, text in enumerate(texts):
            if text in ("-x", "--exec") and index + 1 < len(texts):
                verdict = verdict.worst(invocation.nested.shell(texts[index + 1], "git rebase --exec"))
            elif text.startswith("--exec="):
                verdict = verdict.worst(invocation.nested.shell(text.partition("=")[2], "git rebase --exec"))
    if name == "bisect" and texts[:1] == ["run"]:
        verdict = verdict.worst(invocation.nested.argv(args[1:], "git bisect run"))
        verdict = verdict.worst(opaque("opaque.git", "git bisect run runs a command repeatedly"))
    if name == "submodule" and "foreach" in texts:
        command = texts[texts.index("foreach") + 1 :]
        command = [text for text in command if text not in ("--recursive", "-q", "--quiet")]
        verdict = verdict.worst(
            opaque("opaque.git", "git submodule foreach runs a command in every submodule")
        )
        if command:
            verdict = verdict.worst(invocation.nested.shell(" ".join(command), "git submodule foreach"))
    if name == "submodule" and any(
        t in ("update", "init", "add", "sync", "absorbgitdirs") for t in texts[:1]
    ):
        verdict = verdict.worst(opaque("opaque.git_hooks", f"git submodule {texts[0]} clones and checks out"))
    if name in ("add", "commit") and any(
        t in ("-e", "--edit", "-p", "--patch", "-i", "--interactive") for t in texts
    ):
        verdict = verdict.worst(
            opaque("opaque.git", f"git {name} starts an editor or an interactive program")
        )
    if name == "help" and any(t in ("-w", "--web", "-m", "--man", "-i", "--info") for t in texts):
        verdict = verdict.worst(opaque("opaque.git", "git help starts a browser or a pager program"))
    if name == "archive" and any(t.startswith("--remote") for t in texts):
        verdict = verdict.worst(opaque("opaque.git", "git archive --remote runs a program"))
    if name == "config" and any(t in ("-e", "--edit") for t in texts):
        verdict = verdict.worst(opaque("opaque.editor", "git config --edit starts an editor"))
    return verdict
