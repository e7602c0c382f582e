"""The shell's builtins that run code or change how later input runs.

Family ``opaque`` (tier 2 at least, flagged): ``eval``; ``source``/``.``; builtins that
evaluate array subscripts (``test -v``, ``printf -v``, ``read -a``, ``declare`` with
``[...]``, ``mapfile -C``...). Builtins that change how later input runs (``alias``,
``trap``, ``bind``, ``set -o``, ``shopt``, ``hash``, ``complete``, ``enable``) taint a
session.
"""

from __future__ import annotations

import re

from relay_shell.policy.model import REVERSIBLE, Verdict, opaque
from relay_shell.policy.options import spec
from relay_shell.policy.rules.base import Invocation, rule
from relay_shell.policy.words import Word


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
