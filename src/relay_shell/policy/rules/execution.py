"""Code the server cannot see before it runs: shells, interpreters, eval, builtins.

Family ``opaque`` (tier 2 at least, flagged): ``eval``; ``source``/``.``; output piped
into a shell or interpreter; interpreter code given inline (``python -c``, ``perl -e``...)
or read from a file or stdin; awk programs that run commands; builtins that evaluate array
subscripts (``test -v``, ``printf -v``, ``read -a``, ``declare`` with ``[...]``,
``mapfile -C``...). Shell text that is visible (``bash -c 'TEXT'``, a quoted here-document
fed to ``sh``, stdin text given to the call) is classified recursively instead. Builtins
that change how later input runs (``alias``, ``trap``, ``bind``, ``set -o``, ``shopt``,
``hash``, ``complete``, ``enable``) taint a session.
"""

from __future__ import annotations

import re

from relay_shell.policy.model import IRREVERSIBLE, REVERSIBLE, STATEFUL, Verdict, opaque
from relay_shell.policy.options import Parsed, parse_options, spec
from relay_shell.policy.rules.base import Invocation, inline_code, rule, run_file, stdin_code
from relay_shell.policy.rules.scripts import awk_danger, sql_verdict
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


# -- database clients --------------------------------------------------------------------------

_SQL = {
    "psql": (
        spec(
            "aAbeEHlnqsStxXwW",
            "cdfhLoPpRTUvF",
            long_values="command file dbname host port username "
            "output log-file pset set variable field-separator record-separator",
            long="no-psqlrc",
        ),
        ("-c", "--command"),
        ("-f", "--file"),
    ),
    "mysql": (
        spec(
            "BCEfGHnNqrstvVwX",
            "DehPSuWpO",
            long="batch force html xml silent table vertical",
            long_values="execute database host port user password socket init-command",
        ),
        ("-e", "--execute"),
        (),
    ),
    "mariadb": (
        spec("BCEfGHnNqrstvVwX", "DehPSuWpO", long_values="execute database host port user password"),
        ("-e", "--execute"),
        (),
    ),
    "sqlcmd": (spec("bEeIrvXy", "QqidSUPHo"), ("-Q", "-q"), ("-i",)),
    "clickhouse-client": (
        spec("mnt", "qdhu", long_values="query queries-file host user password database"),
        ("-q", "--query"),
        ("--queries-file",),
    ),
    "cqlsh": (
        spec("C", "efuk", long_values="execute file username keyspace"),
        ("-e", "--execute"),
        ("-f", "--file"),
    ),
    "cockroach": (
        spec("", "e", long_values="execute file url host user database"),
        ("-e", "--execute"),
        ("-f",),
    ),
}


@rule(*_SQL, "sqlite3", "sqlite", "duckdb", "pgcli", "mycli", "litecli", "usql")
def sql_client(invocation: Invocation) -> Verdict:
    name = invocation.name
    if name in _SQL:
        option_spec, inline_options, file_options = _SQL[name]
        parsed = invocation.options(option_spec)
        inline = parsed.values(*inline_options)
        if parsed.dynamic_values and any(option in inline_options for option in parsed.dynamic_values):
            return opaque("opaque.sql_client", f"{name} runs SQL given as an expansion")
        if file_options and parsed.has(*file_options):
            return run_file(invocation, "an SQL file")
    else:
        parsed = invocation.options(spec(long_values="cmd init"))
        texts = [word for word in invocation.args if not word.text.startswith("-")]
        inline = [word.text for word in texts[1:]] + parsed.values("--cmd")
        if any(not word.literal for word in texts[1:]):
            return opaque("opaque.sql_client", f"{name} runs SQL given as an expansion")
        if any(word.text in ("-init", "--init", "-cmd") for word in invocation.args):
            return run_file(invocation, "an SQL file")
    if inline:
        return sql_verdict("\n".join(inline))
    return _sql_stdin(invocation)


def _sql_stdin(invocation: Invocation) -> Verdict:
    stdin = invocation.stdin
    if stdin.text is not None:
        return sql_verdict(stdin.text)
    if stdin.source == "empty":
        return Verdict(REVERSIBLE, "sql.client")
    if stdin.source == "terminal":
        invocation.interactive = True
        return Verdict(REVERSIBLE, "sql.client")
    return opaque("opaque.sql_client", f"{invocation.name} runs SQL read from {stdin.label}")


@rule("redis-cli", "valkey-cli", "keydb-cli")
def redis(invocation: Invocation) -> Verdict:
    words = [word.text.upper() for word in invocation.args if word.literal]
    if invocation.dynamic() or "FLUSHALL" in words or "FLUSHDB" in words:
        return Verdict(IRREVERSIBLE, "sql.redis_flush")
    if {
        "SHUTDOWN",
        "CONFIG",
        "DEBUG",
        "EVAL",
        "EVALSHA",
        "SCRIPT",
        "MODULE",
        "FUNCTION",
        "SLAVEOF",
        "REPLICAOF",
        "DEL",
        "UNLINK",
    } & set(words):
        return Verdict(STATEFUL, "sql.redis_change")
    operands = [text for text in words if not text.startswith("-")]
    if not operands and invocation.stdin.text is not None:
        return sql_verdict(invocation.stdin.text)
    return Verdict(REVERSIBLE, "sql.client")


@rule("mongo", "mongosh")
def mongo(invocation: Invocation) -> Verdict:
    parsed = invocation.options(
        spec("", "", long_values="eval host port username password file", long="quiet nodb norc shell")
    )
    if parsed.values("--eval"):
        return inline_code(invocation, "\n".join(parsed.values("--eval")), "JavaScript")
    if any(word.text.endswith(".js") for word in parsed.operands) or parsed.has("--file"):
        return run_file(invocation, "a script")
    code = stdin_code(invocation, "code")
    return Verdict(REVERSIBLE, "sql.client") if code is None else code


# -- builtins that run code or change later input ----------------------------------------------


@rule("eval")
def eval_builtin(invocation: Invocation) -> Verdict:
    verdict = opaque("opaque.eval", "eval runs its arguments as shell code")
    if invocation.args and all(word.literal for word in invocation.args):
        text = " ".join(word.text for word in invocation.args)
        verdict = verdict.worst(invocation.nested.shell(text, "eval", stdin=invocation.stdin))
    return verdict


@rule("source", ".")
def source(invocation: Invocation) -> Verdict:
    return opaque("opaque.source", f"{invocation.name} runs a file in the current shell")


@rule("trap")
def trap(invocation: Invocation) -> Verdict:
    invocation.taints = True
    words = [word for word in invocation.args if word.text not in ("--",)]
    if not words or words[0].text in ("-l", "-p", "-P"):
        return Verdict(REVERSIBLE, "shell.trap")
    if not words[0].literal:
        return opaque("opaque.trap", "trap sets an expansion as a handler")
    nested = invocation.nested.shell(words[0].text, "trap handler")
    return Verdict(REVERSIBLE, "shell.trap").worst(nested)


@rule("alias")
def alias(invocation: Invocation) -> Verdict:
    verdict = Verdict(REVERSIBLE, "shell.alias")
    for word in invocation.args:
        if not word.literal:
            invocation.taints = True
            return opaque("opaque.alias", "alias defines an expansion")
        name, equals, value = word.text.partition("=")
        if equals:
            invocation.taints = True
            verdict = verdict.worst(invocation.nested.shell(value, f"alias {name}"))
    return verdict


@rule("bind")
def bind(invocation: Invocation) -> Verdict:
    invocation.taints = True
    if invocation.dynamic() or any(
        word.text.startswith("-") and "x" in word.text for word in invocation.args
    ):
        return opaque("opaque.bind", "bind -x runs a shell command on a key")
    return Verdict(REVERSIBLE, "shell.bind")


@rule("set")
def set_builtin(invocation: Invocation) -> Verdict:
    if any(word.text.startswith(("-", "+")) and word.text != "--" for word in invocation.args) or (
        not (invocation.args and invocation.args[0].text == "--") and invocation.args
    ):
        invocation.taints = True
    return Verdict(REVERSIBLE, "shell.set")


@rule("shopt")
def shopt(invocation: Invocation) -> Verdict:
    texts = invocation.literal_texts()
    if invocation.dynamic() or any(
        text in ("-s", "-u") or (text.startswith("-") and set(text[1:]) & set("su")) for text in texts
    ):
        invocation.taints = True
    return Verdict(REVERSIBLE, "shell.shopt")


@rule("hash")
def hash_builtin(invocation: Invocation) -> Verdict:
    texts = invocation.literal_texts()
    if invocation.dynamic() or any(text.startswith("-") and "p" in text for text in texts):
        invocation.taints = True
        return opaque("opaque.hash", "hash -p makes a name run another file")
    if any(text.startswith("-") and set(text[1:]) & set("rd") for text in texts):
        invocation.taints = True
    return Verdict(REVERSIBLE, "shell.hash")


@rule("complete", "compgen", "compopt")
def complete(invocation: Invocation) -> Verdict:
    if invocation.name != "compopt":
        invocation.taints = invocation.name == "complete"
    texts = invocation.literal_texts()
    if invocation.dynamic() or any(
        text == "-C" or (text.startswith("-") and not text.startswith("--") and "C" in text) for text in texts
    ):
        return opaque("opaque.complete", f"{invocation.name} -C runs a command")
    return Verdict(REVERSIBLE, "shell.complete")


@rule("enable")
def enable(invocation: Invocation) -> Verdict:
    invocation.taints = bool(invocation.args)
    if invocation.dynamic() or any(
        word.text.startswith("-") and "f" in word.text for word in invocation.args
    ):
        return opaque("opaque.enable", "enable -f loads a builtin from a shared library")
    return Verdict(REVERSIBLE, "shell.enable")


@rule("fc")
def fc(invocation: Invocation) -> Verdict:
    return opaque("opaque.history", "fc edits and re-runs earlier commands")


def _names_opaque(invocation: Invocation, words: list[Word], what: str) -> Verdict | None:
    for word in words:
        name = word.text.split("=", 1)[0]
        if not word.literal and ("=" not in word.text or any(c in name for c in "$`")):
            return opaque("opaque.subscript", f"{what} with a variable name that is an expansion")
        if "[" in name:
            return opaque("opaque.subscript", f"{what} evaluates the array subscript in {name}")
    return None


_DECLARE = spec("aAfFgiIlnprtuxp", "", permute=True)


@rule("declare", "typeset", "local", "export", "readonly")
def declare(invocation: Invocation) -> Verdict:
    parsed = invocation.options(_DECLARE)
    if parsed.has("-n"):
        return opaque(
            "opaque.subscript", f"{invocation.name} -n makes a name reference (it can evaluate a subscript)"
        )
    found = _names_opaque(
        invocation, [w for w in invocation.args if not w.text.startswith(("-", "+"))], invocation.name
    )
    if found is not None:
        return found
    if parsed.has("-i"):
        for word in parsed.operands:
            value = word.text.partition("=")[2]
            if value and not re.fullmatch(r"-?\d+", value):
                return opaque("opaque.arithmetic", f"{invocation.name} -i evaluates {value!r} as arithmetic")
    return Verdict(REVERSIBLE, "shell.declare")


@rule("unset")
def unset(invocation: Invocation) -> Verdict:
    found = _names_opaque(invocation, [w for w in invocation.args if not w.text.startswith("-")], "unset")
    return found or Verdict(REVERSIBLE, "shell.unset")


@rule("read")
def read(invocation: Invocation) -> Verdict:
    parsed = invocation.options(spec("ers", "adinNptu"))
    if parsed.has("-a"):
        return opaque("opaque.subscript", "read -a assigns array elements (subscripts are evaluated)")
    found = _names_opaque(invocation, parsed.operands, "read")
    if invocation.stdin.source == "terminal":
        invocation.interactive = True
    return found or Verdict(REVERSIBLE, "shell.read")


@rule("mapfile", "readarray")
def mapfile(invocation: Invocation) -> Verdict:
    parsed = invocation.options(spec("t", "dnOsuCc"))
    if parsed.has("-C"):
        return opaque("opaque.callback", f"{invocation.name} -C runs a callback")
    return _names_opaque(invocation, parsed.operands, invocation.name) or Verdict(REVERSIBLE, "shell.read")


@rule("getopts")
def getopts(invocation: Invocation) -> Verdict:
    return _names_opaque(invocation, invocation.args[1:2], "getopts") or Verdict(REVERSIBLE, "shell.getopts")


@rule("wait")
def wait(invocation: Invocation) -> Verdict:
    if any(word.text.startswith("-") and "p" in word.text for word in invocation.args):
        return opaque("opaque.subscript", "wait -p assigns a variable (a subscript is evaluated)")
    return Verdict(REVERSIBLE, "shell.wait")


@rule("printf")
def printf(invocation: Invocation) -> Verdict:
    first = invocation.args[0] if invocation.args else None
    if first is not None and (
        (not first.literal and first.may_be_option) or (first.literal and first.text.startswith("-v"))
    ):
        return opaque("opaque.subscript", "printf -v assigns a variable (a subscript is evaluated)")
    return Verdict(REVERSIBLE, "text.printf")


@rule("test", "[")
def test(invocation: Invocation) -> Verdict:
    for word in invocation.args:
        if word.literal and word.text in ("-v", "-R"):
            return opaque("opaque.subscript", f"test {word.text} evaluates an array subscript in its operand")
        if not word.literal and word.may_split:
            return opaque("opaque.subscript", "test with an expansion that could become -v")
    return Verdict(REVERSIBLE, "shell.test")


@rule("let")
def let(invocation: Invocation) -> Verdict:
    return Verdict(REVERSIBLE, "shell.arithmetic")


@rule("stty")
def stty(invocation: Invocation) -> Verdict:
    """``stty`` with settings changes which keys edit the line (the session model follows the
    defaults): it taints a session. Reading the settings does not."""
    texts = invocation.literal_texts()
    if invocation.dynamic() or any(
        text not in ("-a", "--all", "-g", "--save", "size", "speed") for text in texts
    ):
        invocation.taints = True
    return Verdict(REVERSIBLE, "terminal.stty")


# -- database administration commands ----------------------------------------------------------

_HELP = frozenset({"--help", "-?", "--version", "-V"})


@rule("dropdb", "dropuser", "dropdb.mysql")
def dropdb(invocation: Invocation) -> Verdict:
    if invocation.args and all(word.literal and word.text in _HELP for word in invocation.args):
        return Verdict(REVERSIBLE, "sql.client")
    return Verdict(IRREVERSIBLE, f"sql.{invocation.name}")


@rule("createdb", "createuser", "pg_ctl", "pg_ctlcluster", "pg_dropcluster", "pg_upgrade", "pg_resetwal")
def pg_admin(invocation: Invocation) -> Verdict:
    texts = invocation.literal_texts()
    if texts and all(text in _HELP for text in texts):
        return Verdict(REVERSIBLE, "sql.client")
    if invocation.name in ("pg_dropcluster", "pg_resetwal") or (
        invocation.name == "pg_ctl" and "kill" in texts
    ):
        return Verdict(IRREVERSIBLE, f"sql.{invocation.name}")
    return Verdict(STATEFUL, f"sql.{invocation.name}")


@rule("pg_restore")
def pg_restore(invocation: Invocation) -> Verdict:
    parsed = invocation.options(
        spec(
            "acCeFjlLnOPsStxv1",
            "dfhIjLnNpPStTUW",
            long="clean create exit-on-error if-exists single-transaction",
        )
    )
    if parsed.has("-c", "--clean"):
        return Verdict(IRREVERSIBLE, "sql.restore_clean")
    if parsed.has("-d", "--dbname"):
        return Verdict(STATEFUL, "sql.restore")
    return Verdict(REVERSIBLE, "sql.client")  # without a database it prints a script


_MYSQLADMIN_READS = frozenset(
    {"status", "ping", "version", "variables", "processlist", "extended-status", "debug"}
)


@rule("mysqladmin", "mariadb-admin")
def mysqladmin(invocation: Invocation) -> Verdict:
    parsed = invocation.options(spec("fsvVE?", "hPSuOcpw", long="force silent verbose"))
    if parsed.dynamic or not parsed.literal_operands:
        return Verdict(IRREVERSIBLE, "sql.mysqladmin_drop")
    verbs = [word.text.lower() for word in parsed.operands]
    if "drop" in verbs:
        return Verdict(IRREVERSIBLE, "sql.mysqladmin_drop")
    if all(verb in _MYSQLADMIN_READS for verb in verbs):
        return Verdict(REVERSIBLE, "sql.client")
    return Verdict(STATEFUL, "sql.mysqladmin")


@rule("influx")
def influx(invocation: Invocation) -> Verdict:
    parsed = invocation.options(spec("", "", long_values="execute host port username password database"))
    texts = invocation.literal_texts()
    inline = parsed.values("--execute") + [
        texts[index + 1] for index, text in enumerate(texts[:-1]) if text == "-execute"
    ]
    if invocation.dynamic():
        return opaque("opaque.sql_client", "influx with expansions among its arguments")
    if inline:
        return sql_verdict("\n".join(inline))
    if "delete" in texts:
        return Verdict(IRREVERSIBLE, "sql.influx_delete")
    if {"write", "create", "update", "restore", "setup", "apply", "import"} & set(texts):
        return Verdict(STATEFUL, "sql.influx")
    return Verdict(REVERSIBLE, "sql.client")


@rule("etcdctl")
def etcdctl(invocation: Invocation) -> Verdict:
    texts = invocation.literal_texts()
    if invocation.dynamic():
        return Verdict(IRREVERSIBLE, "sql.etcd_delete")
    operands = [text for text in texts if not text.startswith("-")]
    verb = operands[0] if operands else ""
    if verb in ("del", "delete") or (verb in ("snapshot", "defrag", "compaction") and verb != "snapshot"):
        return Verdict(IRREVERSIBLE, "sql.etcd_delete")
    if verb == "snapshot" and operands[1:2] == ["restore"]:
        return Verdict(IRREVERSIBLE, "sql.etcd_restore")
    if verb in ("get", "watch", "version", "endpoint", "member", "alarm", "check", "help", "snapshot"):
        return (
            Verdict(REVERSIBLE, "sql.client")
            if verb != "member" or "list" in operands
            else Verdict(STATEFUL, "sql.etcd")
        )
    return Verdict(STATEFUL, "sql.etcd")
