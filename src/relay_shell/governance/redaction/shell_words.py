"""Shell text cut into simple commands, for the program-aware redaction (:mod:`.programs`).

The text is cut at newlines, ``;``, ``|``, ``&``, parentheses, braces and backquotes,
outside quotes. Each :class:`Command` keeps its words with their spans in the text, what it
is given on stdin by redirection (here-string words, here-document body spans: those bodies
are not read as commands) and the commands whose output it reads through a pipe (a group's
commands for ``(a; b) | c``). Redirection targets are not words. One forward pass over the
tokens, every pattern compiled at import.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from relay_shell.governance.redaction.words import SHELL_WORD, word_value

TOKEN: Final = re.compile(
    rf"(?P<word>{SHELL_WORD})|(?P<sep>\|\||&&|[\n;|&()`{{}}])|(?P<redirect>[0-9]{{0,2}}[<>]{{1,3}}[&|]?)|\s++"
)
MAX_HERE_DOCS: Final = 16  # here-documents opened on one line that are read


@dataclass(frozen=True)
class Word:
    """One shell word: its span in the text and its raw spelling (quotes kept)."""

    start: int
    end: int
    raw: str

    @property
    def value(self) -> str:
        return word_value(self.raw)


@dataclass
class Command:
    """A simple command: its words, what it is given on stdin by redirection (here-string
    words, here-document body spans), and the commands whose output it reads (``a | b``,
    ``(a; b) | c``: empty when it reads no pipe)."""

    words: list[Word] = field(default_factory=list)
    here_strings: list[Word] = field(default_factory=list)
    here_docs: list[tuple[int, int]] = field(default_factory=list)
    feeders: list[Command] = field(default_factory=list)


_GROUP_OPEN: Final = frozenset({"(", "{", "$("})
_GROUP_CLOSE: Final = frozenset({")", "}"})


def commands(text: str) -> Iterator[Command]:
    """The simple commands of ``text``; redirection targets are not words of their command,
    here-document bodies are not commands."""
    command = Command()
    redirect = ""
    all_commands: list[Command] = []
    groups: list[int] = []  # where each open group's commands start in all_commands
    last_unit: list[Command] = []  # the last simple command or group: what a pipe reads
    pending_tags: list[str] = []
    skip_until = 0
    for token in TOKEN.finditer(text):
        if token.start() < skip_until:
            continue
        separator = token["sep"]
        if token["word"] is not None and token.group() in ("{", "}"):
            separator = token.group()
        if token["word"] is not None and separator is None:
            _take_word(command, Word(token.start(), token.end(), token.group()), redirect, pending_tags)
            redirect = ""
        elif separator is not None:
            if separator == "\n" and pending_tags:
                skip_until = _read_here_docs(text, token.end(), pending_tags, command)
                pending_tags = []
            if command.words:
                all_commands.append(command)
                last_unit = [command]
                yield command
            if separator in _GROUP_OPEN:
                groups.append(len(all_commands))
            elif separator in _GROUP_CLOSE and groups:
                last_unit = all_commands[groups.pop() :]
            command = Command(feeders=last_unit if separator == "|" else [])
            redirect = ""
        elif token["redirect"] is not None:
            redirect = token["redirect"].lstrip("0123456789")
    if command.words:
        yield command


def _take_word(command: Command, word: Word, redirect: str, pending_tags: list[str]) -> None:
    """A word is an argument, a here-string, a here-document's tag, or a redirection target."""
    if redirect == "<<<":
        command.here_strings.append(word)
    elif redirect == "<<":
        pending_tags.append(word.value.lstrip("-"))
    elif not redirect:
        command.words.append(word)


def _read_here_docs(text: str, body_start: int, tags: list[str], command: Command) -> int:
    """Record the bodies of the here-documents opened on a line; return where the text resumes."""
    position = body_start
    for tag in tags[:MAX_HERE_DOCS]:
        end = text.find(f"\n{tag}", position - 1)
        while end >= 0 and text[end + 1 + len(tag) : end + 2 + len(tag)].strip(" \t") not in ("", "\n"):
            end = text.find(f"\n{tag}", end + 1)
        body_end = end if end >= 0 else len(text)
        command.here_docs.append((position, body_end))
        line_end = text.find("\n", body_end + 1) if end >= 0 else len(text)
        position = len(text) if line_end < 0 else line_end + 1
    return position
