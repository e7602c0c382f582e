"""Environment variables as a channel: which names change how commands run.

* Harmless names (``LANG``, ``LC_*``, ``TZ``, ``TERM``, ``COLUMNS``...) keep a read tier 0.
* Code-loading names (``PATH``, ``LD_*``, ``BASH_ENV``, ``ENV``, ``BASH_FUNC_*``, ``PYTHON*``,
  ``PERL5*``, ``GIT_*``, ``NODE_OPTIONS``, ``PAGER``, ``EDITOR``, ``PROMPT_COMMAND``, ``PS4``...)
  make the command opaque: a library, a start-up file or a program named by the value runs.
  Values that are command lines (``PAGER``, ``GIT_SSH_COMMAND``, ``PROMPT_COMMAND``...) are
  classified as shell text too, so their tier and the deny list see them.
* Any other name keeps the command out of tier 0 but is not opaque.
"""

from __future__ import annotations

import re

from relay_shell.policy.model import READ_ONLY, REVERSIBLE, Verdict, opaque
from relay_shell.policy.rules.base import Nested
from relay_shell.policy.words import Word

_HARMLESS = re.compile(
    r"LANG|LANGUAGE|LC_[A-Z_]+|TZ|TERM|COLUMNS|LINES|NO_COLOR|CLICOLOR|CLICOLOR_FORCE|"
    r"FORCE_COLOR|GREP_COLORS|LS_COLORS|TIME_STYLE|DEBIAN_FRONTEND|QUOTING_STYLE|POSIXLY_CORRECT|"
    r"SYSTEMD_COLORS|SYSTEMD_LESS|TERM_PROGRAM|COLORTERM"
)
_CODE_PREFIXES = (
    "LD_",
    "BASH_FUNC_",
    "PYTHON",
    "PERL5",
    "PERL",
    "GIT_",
    "DYLD_",
    "RUBY",
    "NODE_",
    "LUA_",
    "JAVA_",
    "_JAVA_",
    "JDK_",
    "GCONV_",
    "MALLOC_",
    "GLIBC_",
    "SHELLOPTS",
    "BASHOPTS",
    "BASH_",
)


class CodeVariables:
    """Names whose value is code, a command line, or a file that is run or loaded."""

    COMMAND_LINES = frozenset({
        "PROMPT_COMMAND", "GIT_SSH_COMMAND", "GIT_SSH", "GIT_EDITOR", "GIT_PAGER", "GIT_EXTERNAL_DIFF",
        "GIT_ASKPASS", "GIT_SEQUENCE_EDITOR", "SSH_ASKPASS", "SUDO_ASKPASS", "PAGER", "MANPAGER",
        "SYSTEMD_PAGER", "EDITOR", "VISUAL", "LESSOPEN", "LESSCLOSE", "BROWSER", "SUDO_EDITOR", "FCEDIT",
        "TAR_OPTIONS", "RSYNC_RSH", "CVS_RSH", "DIFF_OPTIONS",
    })  # fmt: skip
    PROMPTS = frozenset({"PS0", "PS1", "PS2", "PS3", "PS4"})
    FILES = frozenset(
        {
            "BASH_ENV",
            "ENV",
            "PYTHONSTARTUP",
            "ZDOTDIR",
            "INPUTRC",
            "KUBECONFIG",
            "CURL_HOME",
            "WGETRC",
            "LESSKEY",
            "LESSKEYIN",
            "NPM_CONFIG_USERCONFIG",
            "XDG_CONFIG_HOME",
            "HOSTALIASES",
            "TERMINFO",
            "MAGIC",
            "SSH_CONFIG",
        }
    )
    EXACT = frozenset(
        {
            "PATH",
            "IFS",
            "CDPATH",
            "GLOBIGNORE",
            "EXECIGNORE",
            "FPATH",
            "CLASSPATH",
            "NODE_OPTIONS",
            "RUSTC_WRAPPER",
            "CC",
            "CXX",
            "MAKEFLAGS",
            "MAKEFILES",
            "HISTFILE",
            "HOME",
            "TMPDIR",
        }
    )
    TAINTING = (
        COMMAND_LINES | FILES | PROMPTS | frozenset({"PATH", "IFS", "CDPATH", "HOME", "FPATH", "HISTFILE"})
    )
    NOT_CODE = frozenset({"IFS", "CDPATH", "GLOBIGNORE", "HOME", "TMPDIR", "HISTFILE", "EXECIGNORE"})


def is_harmless(name: str) -> bool:
    """Whether setting ``name`` still allows a known-safe read."""
    return _HARMLESS.fullmatch(name) is not None


def loads_code(name: str) -> bool:
    """Whether setting ``name`` can make a command run code it does not show."""
    if name in CodeVariables.NOT_CODE:
        return False
    return (
        name in CodeVariables.COMMAND_LINES
        or name in CodeVariables.FILES
        or name in CodeVariables.EXACT
        or name.startswith(_CODE_PREFIXES)
    )


def env_verdict(name: str, value: Word | None, nested: Nested, where: str) -> Verdict:
    """The verdict of setting ``name`` (to ``value``; None unsets) for a command or a call.

    ``where`` names the channel in reasons (``prefix``, ``env``, ``export``...).
    """
    if value is None or is_harmless(name):
        return Verdict(READ_ONLY, "env.harmless")
    if name in CodeVariables.PROMPTS:
        return _prompt_verdict(name, value, where)
    if not loads_code(name):
        return opaque("opaque.expansion", value.code) if value.code else Verdict(REVERSIBLE, "env.variable")
    verdict = opaque("opaque.env_code", f"{where} sets {name}, which makes programs load or run code")
    if name in CodeVariables.COMMAND_LINES and value.literal and value.text.strip():
        verdict = verdict.worst(nested.shell(value.text, f"env {name}"))
    return verdict


def _prompt_verdict(name: str, value: Word, where: str) -> Verdict:
    """A prompt is expanded each time it is shown: command substitution in it runs code."""
    if not value.literal or any(marker in value.text for marker in ("$(", "`", "$[", "${")):
        return opaque("opaque.env_code", f"{where} sets {name} with expansions that run when it is shown")
    return Verdict(REVERSIBLE, "env.prompt")
