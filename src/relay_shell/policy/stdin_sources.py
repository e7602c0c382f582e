"""Where a parsed command's stdin comes from: a redirection, a here-document, a pipe from a
command whose output is literal (``echo``, ``printf``, ``cat <<EOF``), or the text's own stdin."""

from __future__ import annotations

from collections.abc import Sequence

from relay_shell.policy.raw import RawCommand, RawRedirect
from relay_shell.policy.rules import Stdin


def stdin_of(raw: RawCommand, commands: Sequence[RawCommand], inherited: Stdin) -> Stdin:
    """Where this command's stdin comes from, with its text when the text is known.

    ``commands`` are the commands of its parse (a pipe's source is one of them); ``inherited``
    is the stdin of the text the command is part of."""
    for redirect in reversed(raw.redirects):
        if redirect.fd in (None, 0) and (redirect.reads or redirect.operator == "<>"):
            return _redirected_stdin(redirect)
    if raw.stdin == "pipe":
        source = commands[raw.pipe_source] if raw.pipe_source is not None else None
        return Stdin("pipe", _output_of(source) if source is not None else None)
    if raw.stdin in ("text", "file"):
        return Stdin(raw.stdin, raw.stdin_text)
    return inherited


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
