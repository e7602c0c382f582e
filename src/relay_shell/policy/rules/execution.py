"""Code the server cannot see before it runs: shells, interpreters, debuggers, awk.

Family ``opaque`` (tier 2 at least, flagged): output piped into a shell or interpreter;
interpreter code given inline (``python -c``, ``perl -e``...) or read from a file or stdin;
awk programs that run commands. Shell text that is visible (``bash -c 'TEXT'``, a quoted
here-document fed to ``sh``, stdin text given to the call) is classified recursively instead.
The shell's own builtins are in :mod:`relay_shell.policy.rules.builtins`, database clients
in :mod:`relay_shell.policy.rules.databases`.
"""

from __future__ import annotations

import re

from relay_shell.policy.model import IRREVERSIBLE, REVERSIBLE, STATEFUL, Verdict, opaque
from relay_shell.policy.options import Parsed, parse_options, spec
from relay_shell.policy.rules.base import Invocation, inline_code, rule, run_file, stdin_code
from relay_shell.policy.rules.scripts import awk_danger
from relay_shell.policy.words import Word

SHELLS = {
    "sh",
    "bash",
    "dash",
    "zsh",
    "ksh",
    "mksh",
    "ash",
    "yash",
    "posh",
    "rbash",
    "fish",
    "csh",
    "tcsh",
    "ksh93",
    "pdksh",
    "oksh",
    "loksh",
    "elvish",
    "nu",
    "xonsh",
}
_SHELL = spec(
    "abefhikmnprstuvxBCEHPTcslDIN",
    "oO",
    long="login noprofile norc posix restricted verbose noediting debugger dump-strings dump-po-strings "
    "help version pretty-print interactive no-config private",
    long_values="rcfile init-file command init-command",
    permute=False,
)


@rule(*sorted(SHELLS), worst=opaque("opaque.shell", "a shell with expansions among its options"))
def shell(invocation: Invocation) -> Verdict:
    parsed = parse_options(_without_plus_options(invocation.args), _SHELL)
    base = Verdict(REVERSIBLE, "shells.run")
    if parsed.dynamic or parsed.dynamic_values:
        return opaque("opaque.shell", f"{invocation.name} with expansions among its options")
    if parsed.has("--rcfile", "--init-file", "--init-command"):
        return run_file(invocation, "a start-up file")
    if parsed.has("-c", "--command"):
        return base.worst(_shell_command(invocation, parsed))
    if parsed.operands and not parsed.has("-s"):
        return run_file(invocation, "a script")
    if parsed.has("-i") and invocation.stdin.source in ("terminal", "empty"):
        invocation.interactive = True
        return base
    verdict = stdin_code(invocation, "shell")
    return base if verdict is None else base.worst(verdict)


def _shell_command(invocation: Invocation, parsed: Parsed) -> Verdict:
    """``sh -c TEXT``: TEXT is the first operand (or the value of ``--command``)."""
    inline = parsed.values("--command")
    if not inline:
        if not parsed.operands:
            return Verdict(REVERSIBLE, "shells.run")
        if not parsed.operands[0].literal:
            return opaque("opaque.shell", f"{invocation.name} -c runs an expansion")
        inline = [parsed.operands[0].text]
    return invocation.nested.shell(inline[0], f"{invocation.name} -c", stdin=invocation.stdin)


def _without_plus_options(words: list[Word]) -> list[Word]:
    """Drop the ``+o NAME``/``+O NAME``/``+x`` words before the first operand (they unset options)."""
    result: list[Word] = []
    index = 0
    while index < len(words):
        word = words[index]
        if word.literal and word.text.startswith("+") and len(word.text) > 1:
            index += 2 if word.text in ("+o", "+O") else 1
            continue
        if word.literal and not word.text.startswith("-"):
            result.extend(words[index:])
            break
        result.append(word)
        index += 1
    return result


# -- interpreters ------------------------------------------------------------------------------


class _Interpreter:
    """How one interpreter takes code: inline options, module option, option letters with values."""

    def __init__(
        self,
        inline: str,
        flags: str,
        values: str,
        long_inline: str = "",
        module: str = "",
        inplace: bool = False,
    ) -> None:
        self.inline = set(inline)
        self.long_inline = set(long_inline.split())
        self.module = module
        self.inplace = inplace
        self.spec = spec(
            flags,
            inline + values + module,
            long="version help check interactive quiet",
            long_values=long_inline + " require import eval print",
            short_optional="i" if inplace else "",
            permute=False,
        )


_INTERPRETERS: dict[str, _Interpreter] = {
    "python": _Interpreter("c", "bBdEhiIOPqsSuvVx3", "WX", module="m"),
    "pypy": _Interpreter("c", "bBdEhiIOqsSuvVx", "WX", module="m"),
    "perl": _Interpreter("eE", "acCfhnpsStTuUvwWX", "dDIlmMx0", inplace=True),
    "ruby": _Interpreter("e", "acdhlnpsSvwWy", "CEFIrTx0K", inplace=True),
    "node": _Interpreter("ep", "chiv", "r", long_inline="eval print"),
    "nodejs": _Interpreter("ep", "chiv", "r", long_inline="eval print"),
    "php": _Interpreter("rRBE", "ahHilmnqsvwe", "cdftSz"),
    "lua": _Interpreter("e", "iEvW", "l"),
    "luajit": _Interpreter("e", "iEv", "ljbO"),
    "Rscript": _Interpreter("e", "", "", long_inline="default-packages"),
    "R": _Interpreter("e", "hqsv", "f", long_inline="file"),
    "julia": _Interpreter("eE", "hiqv", "LpJt", long_inline="eval print load"),
    "osascript": _Interpreter("e", "isl", "o"),
    "groovy": _Interpreter("e", "hdv", "cps"),
    "expect": _Interpreter("c", "bdDinNv", "f"),
    "guile": _Interpreter("c", "hqsv", "lLex"),
    "pwsh": _Interpreter("c", "hiv", "f", long_inline="command Command encodedcommand EncodedCommand"),
    "powershell": _Interpreter("c", "hiv", "f", long_inline="command Command encodedcommand EncodedCommand"),
    "tclsh": _Interpreter("", "", ""),
    "wish": _Interpreter("", "", ""),
    "awk-file": _Interpreter("", "", ""),
    "java": _Interpreter("", "", "", long_inline=""),
    "ts-node": _Interpreter("ep", "hiv", "r", long_inline="eval print"),
    "tsx": _Interpreter("ep", "hv", "r", long_inline="eval print"),
    "deno": _Interpreter("", "", ""),
    "racket": _Interpreter("e", "ihnv", "fitlr"),
    "sbcl": _Interpreter("", "", "", long_inline="eval"),
    "erl": _Interpreter("", "", "", long_inline="eval"),
    "elixir": _Interpreter("e", "hv", "r"),
    "swift": _Interpreter("e", "", ""),
}
_VERSIONED = re.compile(r"(python|pypy|perl|ruby|php|lua|tclsh|wish|node)[\d.]*[mw]?")
INTERPRETER_NAMES = set(_INTERPRETERS) | {
    "python2",
    "python3",
    "pypy3",
    "irb",
    "ipython",
    "bpython",
    "jshell",
    "scala",
    "kotlin",
    "clisp",
    "ocaml",
    "ghci",
    "runghc",
    "gdb",
    "lldb",
}
_SELF_MODULES = {"relay_shell", "relay_shell.cli", "relay_shell.__main__"}


def interpreter_base(name: str) -> str | None:
    """``python3.12`` -> ``python``, ``perl5.36`` -> ``perl``; None for names that are not interpreters."""
    if name in _INTERPRETERS:
        return name
    match = _VERSIONED.fullmatch(name)
    return match.group(1) if match else None


def interpreter(invocation: Invocation, base: str) -> Verdict:
    """Classify a run of the interpreter ``base`` (see the module docstring)."""
    table = _INTERPRETERS[base]
    parsed = parse_options(invocation.args, table.spec)
    if parsed.dynamic or parsed.dynamic_values:
        return opaque("opaque.inline_code", f"{invocation.name} with expansions among its options")
    verdict = Verdict(REVERSIBLE, "interpreters.run")
    if table.inplace and parsed.has("-i"):
        verdict = Verdict(STATEFUL, "inplace_edit.perl")
    source = _program_of(invocation, table, parsed)
    return verdict if source is None else verdict.worst(source)


def _program_of(invocation: Invocation, table: _Interpreter, parsed: Parsed) -> Verdict | None:
    """Where the interpreter's program comes from: inline, a module, a file, or stdin."""
    codes = [
        value
        for option, value in parsed.options
        if option.lstrip("-") in table.inline or option.lstrip("-") in table.long_inline
    ]
    modules = parsed.values("-" + table.module) if table.module else []
    if codes:
        return inline_code(invocation, "\n".join(code or "" for code in codes), "code")
    if modules:
        return _module(invocation, modules[0], parsed.operands)
    if parsed.operands and parsed.operands[0].text != "-":
        return run_file(invocation, "a script")
    if _only_version(parsed.options) and parsed.options:
        return None
    if parsed.has("-i", "--interactive") and invocation.stdin.source in ("terminal", "empty"):
        invocation.interactive = True
        return None
    return stdin_code(invocation, "code")


def _only_version(options: list[tuple[str, str | None]]) -> bool:
    return all(option in ("-V", "-v", "--version", "-h", "--help", "-VV") for option, _ in options)


def _module(invocation: Invocation, module: str, operands: list[Word]) -> Verdict:
    if module.split(".", maxsplit=1)[0] == "relay_shell" or module in _SELF_MODULES:
        return Verdict(IRREVERSIBLE, "protected.admin_verb")
    if module in ("pip", "pip3") and operands and operands[0].text in ("install", "uninstall"):
        verdict = Verdict(STATEFUL, "packages.install")
        if any(
            word.text in (".", "-e", "--editable", "-r") or word.text.startswith(("./", "/"))
            for word in operands
        ):
            verdict = verdict.worst(
                opaque("opaque.task_runner", "pip installs from a path and runs its build code")
            )
        return verdict
    return opaque(
        "opaque.run_module", f"{invocation.name} -m {module} runs a module (the working tree comes first)"
    )


@rule(
    *sorted(INTERPRETER_NAMES - {"gdb", "lldb"}),
    worst=opaque("opaque.inline_code", "an interpreter with expansions"),
)
def interpreters(invocation: Invocation) -> Verdict:
    base = interpreter_base(invocation.name)
    if base is None or base in ("tclsh", "wish", "deno", "java", "awk-file"):
        if invocation.name in ("java",) and all(w.text in ("-version", "--version") for w in invocation.args):
            return Verdict(REVERSIBLE, "interpreters.version")
        if invocation.args and all(
            word.literal and word.text in ("--version", "-V", "-v", "--help") for word in invocation.args
        ):
            return Verdict(REVERSIBLE, "interpreters.version")
        if invocation.args:
            return run_file(invocation, "a program")
        code = stdin_code(invocation, "code")
        return Verdict(REVERSIBLE, "interpreters.run") if code is None else code
    return interpreter(invocation, base)


@rule("gdb", "lldb", "pdb", "radare2", "r2")
def debugger(invocation: Invocation) -> Verdict:
    return opaque("opaque.debugger", f"{invocation.name} can run any command")


_AWK = spec(
    "bcCdghMNOPrStVyz",
    "fvFEiIlLpD",
    long="characters-as-bytes traditional copyright debug dump-variables "
    "gen-pot help lint posix re-interval sandbox optimize version bignum characters-as-bytes",
    long_values="file assign field-separator exec include load source profile pretty-print",
)


@rule(
    "awk",
    "gawk",
    "mawk",
    "nawk",
    "busybox-awk",
    worst=opaque("opaque.awk", "awk with an expansion in its program"),
)
def awk(invocation: Invocation) -> Verdict:
    parsed = invocation.options(_AWK)
    verdict = Verdict(REVERSIBLE, "text.awk")
    includes = parsed.values("-i", "--include")
    if "inplace" in includes or any(value.startswith("inplace") for value in includes):
        verdict = Verdict(STATEFUL, "inplace_edit.awk")
        includes = [value for value in includes if not value.startswith("inplace")]
    if parsed.dynamic or parsed.dynamic_values:
        return verdict.worst(opaque("opaque.awk", "awk with an expansion in its program or options"))
    if parsed.has("-f", "--file", "-E", "--exec") or includes or parsed.has("-l", "--load"):
        return verdict.worst(run_file(invocation, "an awk program file or extension"))
    programs = parsed.values("--source")
    if not programs and parsed.operands:
        if not parsed.operands[0].literal:
            return verdict.worst(opaque("opaque.awk", "awk program is an expansion"))
        programs = [parsed.operands[0].text]
    if parsed.has("--sandbox"):
        return verdict
    for program in programs:
        reason = awk_danger(program)
        if reason:
            verdict = verdict.worst(opaque("opaque.awk", reason))
    return verdict
