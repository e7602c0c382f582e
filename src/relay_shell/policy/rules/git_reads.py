"""The git reads that may be tier 0: ``status``, ``log``, ``diff``, ``show``, ``branch --list``, ``grep``.

Each has an allowlist of options (no ``--output``, no ``-O``, no ``--ext-diff``, no
``--textconv``, no ``-c``); the executor also runs tier-0 git with configuration that
would run code switched off (:data:`relay_shell.policy.environment.GIT_SAFE_ENV`). Locally, a
read is tier 0 only when no configuration git loads names a driver program (textconv,
filters, external diff: :mod:`relay_shell.policy.rules.git_config`).
"""

from __future__ import annotations

from relay_shell.policy.options import OptionSpec, Parsed, parse_options, spec
from relay_shell.policy.rules.base import Invocation
from relay_shell.policy.rules.git import global_options
from relay_shell.policy.rules.git_config import may_run_configured_programs

_SAFE_GLOBALS = {
    "-C",
    "--no-pager",
    "-P",
    "--no-optional-locks",
    "--literal-pathspecs",
    "--no-replace-objects",
    "--git-dir",
    "--work-tree",
    "--glob-pathspecs",
    "--noglob-pathspecs",
    "--icase-pathspecs",
    "--bare",
    "--no-advice",
}
_DIFF_LONG = (
    "patch no-patch raw patch-with-raw patch-with-stat stat numstat shortstat summary name-only "
    "name-status minimal patience histogram full-index binary no-color color-moved-ws no-renames "
    "find-copies-harder irreversible-delete text ignore-cr-at-eol ignore-space-at-eol "
    "ignore-space-change ignore-all-space ignore-blank-lines exit-code quiet no-ext-diff no-textconv "
    "no-prefix no-relative ita-invisible-in-index ita-visible-in-index check compact-summary "
    "cached staged merge-base no-index cumulative"
)
_DIFF_VALUES = (
    "diff-algorithm diff-filter src-prefix dst-prefix line-prefix anchored stat-width stat-name-width "
    "stat-graph-width stat-count output-indicator-new output-indicator-old "
    "output-indicator-context inter-hunk-context ignore-matching-lines rotate-to skip-to"
)
_DIFF_OPTIONAL = (
    "unified color word-diff word-diff-regex color-words dirstat find-renames find-copies "
    "break-rewrites abbrev relative ignore-submodules submodule color-moved src-prefix dst-prefix"
)
_LOG_LONG = (
    "oneline graph all branches tags remotes no-merges merges first-parent reverse follow abbrev-commit "
    "no-abbrev-commit relative-date topo-order date-order author-date-order left-right cherry-pick "
    "cherry-mark cherry no-walk simplify-by-decoration full-history dense sparse simplify-merges "
    "ancestry-path source use-mailmap full-diff log-size boundary parents children left-only "
    "right-only no-decorate mailmap regexp-ignore-case basic-regexp extended-regexp fixed-strings "
    "perl-regexp all-match invert-grep remove-empty clear-decorations show-pulls single-worktree "
    "reflog walk-reflogs merge no-notes show-linear-break"
)
_LOG_VALUES = (
    "max-count skip since after until before author committer grep grep-reflog date min-parents "
    "max-parents exclude glob decorate-refs decorate-refs-exclude"
)
_LOG_OPTIONAL = "decorate pretty format notes expand-tabs no-expand-tabs encoding"
_STATUS = spec(
    "sbvz",
    long="short branch porcelain long verbose null no-column no-ahead-behind ahead-behind "
    "renames no-renames show-stash no-renames",
    long_optional="untracked-files ignored ignore-submodules column find-renames porcelain",
    short_optional="uM",
)
_DIFF = spec(
    "pusMCDRaBzwbW", "UlSGO", long=_DIFF_LONG, long_values=_DIFF_VALUES, long_optional=_DIFF_OPTIONAL
)
_LOG = spec(
    "pusMCDRaBzwbWiEFPLg",
    "nUlSGL",
    long=_DIFF_LONG + " " + _LOG_LONG,
    long_values=_DIFF_VALUES + " " + _LOG_VALUES,
    long_optional=_DIFF_OPTIONAL + " " + _LOG_OPTIONAL,
)
_BRANCH = spec(
    "aciltrv",
    long="list all remotes verbose ignore-case show-current no-column omit-empty",
    long_values="contains no-contains merged no-merged points-at sort format",
    long_optional="color abbrev column",
)
_GREP = spec(
    "aiIvwclLoqnhHpWEGFPzr",
    "ABCefm",
    long="cached untracked no-index no-exclude-standard "
    "exclude-standard recurse-submodules text ignore-case word-regexp invert-match full-name "
    "extended-regexp basic-regexp perl-regexp fixed-strings line-number files-with-matches "
    "name-only files-without-match count only-matching quiet break heading show-function function-context "
    "all-match and or not null column",
    long_values="max-depth after-context before-context context threads file max-count",
    long_optional="color",
)
_SUBCOMMANDS: dict[str, OptionSpec] = {
    "status": _STATUS, "log": _LOG, "show": _LOG, "diff": _DIFF, "branch": _BRANCH, "grep": _GREP,
    "whatchanged": _LOG,
}  # fmt: skip


def _clean(parsed: Parsed) -> bool:
    if parsed.unknown or parsed.dynamic or parsed.dynamic_values or parsed.abbreviated:
        return False
    forbidden = ("--output", "-O", "--ext-diff", "--textconv", "--open-files-in-pager")
    return not any(option in forbidden for option, _ in parsed.options)


def git_read(invocation: Invocation) -> bool:
    """Whether this ``git`` invocation is a known-safe read (see the module docstring)."""
    found = global_options(invocation)
    if found is None:
        return False
    globals_, rest = found
    if any(option not in _SAFE_GLOBALS for option, _ in globals_.options) or not rest or not rest[0].literal:
        return False
    name = rest[0].text
    option_spec = _SUBCOMMANDS.get(name)
    arguments = rest[1:]
    if name in ("log", "show"):  # ``git log -5``: a count
        arguments = [
            word
            for word in arguments
            if not (word.literal and word.text[:1] == "-" and word.text[1:].isdigit())
        ]
    parsed = parse_options(arguments, option_spec) if option_spec is not None else None
    if parsed is None or not _clean(parsed):
        return False
    if name == "branch":
        listing = parsed.has("--list", "-l", "--show-current")
        if not (listing or not parsed.operands):
            return False
    elif not all(word.plain for word in rest):
        return False
    return invocation.remote or not may_run_configured_programs(
        invocation.cwd, globals_.options, invocation.home
    )
