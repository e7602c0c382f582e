"""The line a session's shell will execute, assembled across sends.

The server keeps, per session, the line being edited as the shell's line editor holds it
(bash with an empty ``INPUTRC`` in emacs mode), over an explicit set of keys it emulates:
printable text, Backspace, C-a/C-e/Home/End, C-u, C-k, C-w, Left/Right and Enter (for an
SSH session, whose line editor is unknown, only printable text, Backspace and Enter).
Every other key or control byte (Tab, C-r, Up, C-y, an unknown escape sequence, bracketed
paste...) makes the line *opaque*: what the shell will run can no longer be told. Unknown
is opaque by construction: a key is emulated only if :func:`feed` knows it.

:func:`feed` returns the units to classify: each line Enter submits (joined with earlier
lines of an unfinished command: an open quote, a trailing backslash, a here-document, an
open ``if``), plus the pending line a send leaves unsubmitted. History expansion (``!!``,
``!$``, ``^a^b``) makes a line opaque. A session whose foreground process is not the shell,
or that ran a line changing how later input is read (``alias``, a function, ``bind``,
``set -o``, ``PATH=``, ``trap``...), is *tainted*: every later send is opaque.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from relay_shell.policy.grammar import encode, parse_tree
from relay_shell.policy.model import Analysis, TypedUnit

EditorKind = Literal["readline", "basic"]
MAX_PENDING = 1_000_000
MAX_CONTINUATION_LINES = 500

_KEYS_READLINE = {
    "\x1b[D": "left", "\x1b[C": "right", "\x1bOD": "left", "\x1bOC": "right",
    "\x1b[H": "home", "\x1b[F": "end", "\x1bOH": "home", "\x1bOF": "end",
    "\x1b[1~": "home", "\x1b[4~": "end", "\x1b[7~": "home", "\x1b[8~": "end",
}  # fmt: skip
_CONTROL_READLINE = {
    "\x01": "home",
    "\x05": "end",
    "\x15": "kill_start",
    "\x0b": "kill_end",
    "\x17": "rubout",
}
_BACKSPACE = {"\x7f", "\x08"}
_ENTER = {"\r", "\n"}
_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|O.|[^\[O])?")
_HISTORY = re.compile(r"(?:^|[^\\])!(?=[^\s=(\"'])|^\s*\^")
_OPENERS = ("{", "(", "|", "&&", "||", " then", " do", " else", " in", " elif", ";then", ";do")
_SINGLE_QUOTED = re.compile(r"'[^']*'")


@dataclass(frozen=True)
class LineState:
    """One session's line editor as the server models it."""

    editor: EditorKind = "readline"
    buffer: str = ""
    cursor: int = 0
    opaque: str | None = None
    continuation: str = ""
    continuation_lines: int = 0
    tainted: str | None = None

    def taint(self, reason: str) -> LineState:
        """Every later send is opaque, for ``reason``."""
        return replace(self, tainted=self.tainted or reason)


@dataclass(frozen=True)
class Feed:
    """What a send amounts to: the units to classify, and the state once it is sent."""

    units: tuple[TypedUnit, ...]
    state: LineState
    uncertain: bool


def feed(state: LineState, data: str, *, foreground_is_shell: bool | None = True) -> Feed:
    """Apply the keys of ``data`` to ``state`` (see the module docstring).

    ``foreground_is_shell``: False when the terminal's foreground process group is not the
    session's shell (the keys go to another program), None when it cannot be known (SSH).
    """
    if state.tainted is not None:
        return Feed((TypedUnit(data, True, f"the session is tainted: {state.tainted}"),), state, True)
    if foreground_is_shell is False:
        reason = "typed while another program runs in the foreground of the terminal"
        return Feed((TypedUnit(data, True, reason),), state, True)
    editor = _Editor(state)
    for key in _keys(data):
        editor.key(key)
    units = editor.units
    if editor.buffer or editor.opaque or editor.continuation:
        pending = editor.continuation + editor.buffer
        units.append(TypedUnit(pending, False, editor.opaque))
    uncertain = any(unit.opaque is not None for unit in units)
    return Feed(tuple(units), editor.state(), uncertain)


def _keys(data: str) -> list[str]:
    """Split ``data`` into keys: escape sequences stay whole, everything else is one character."""
    keys: list[str] = []
    index = 0
    while index < len(data):
        if data[index] == "\x1b":
            match = _ESCAPE.match(data, index)
            end = match.end() if match else index + 1
            keys.append(data[index:end])
            index = end
        else:
            keys.append(data[index])
            index += 1
    return keys


class _Editor:
    def __init__(self, state: LineState) -> None:
        self.kind = state.editor
        self.buffer = state.buffer
        self.cursor = min(state.cursor, len(state.buffer))
        self.opaque = state.opaque
        self.continuation = state.continuation
        self.continuation_lines = state.continuation_lines
        self.units: list[TypedUnit] = []

    def state(self) -> LineState:
        return LineState(
            self.kind, self.buffer, self.cursor, self.opaque, self.continuation, self.continuation_lines
        )

    def key(self, key: str) -> None:
        if key in _ENTER:
            self._submit()
        elif key in _BACKSPACE:
            if self.cursor > 0:
                self.buffer = self.buffer[: self.cursor - 1] + self.buffer[self.cursor :]
                self.cursor -= 1
        elif self.kind == "readline" and (key in _KEYS_READLINE or key in _CONTROL_READLINE):
            self._edit(_KEYS_READLINE.get(key) or _CONTROL_READLINE[key])
        elif len(key) == 1 and key.isprintable():
            if not key.isascii():  # readline reads bytes above 127 per the locale (meta keys in C)
                self.opaque = (
                    self.opaque or "text outside ASCII: the line editor's reading of it depends on the locale"
                )
            if len(self.buffer) < MAX_PENDING:
                self.buffer = self.buffer[: self.cursor] + key + self.buffer[self.cursor :]
                self.cursor += 1
        else:
            self.opaque = self.opaque or f"the key {key!r} is not one the line model follows"

    def _edit(self, action: str) -> None:
        if action == "left":
            self.cursor = max(0, self.cursor - 1)
        elif action == "right":
            self.cursor = min(len(self.buffer), self.cursor + 1)
        elif action == "home":
            self.cursor = 0
        elif action == "end":
            self.cursor = len(self.buffer)
        elif action == "kill_start":
            self.buffer, self.cursor = self.buffer[self.cursor :], 0
        elif action == "kill_end":
            self.buffer = self.buffer[: self.cursor]
        elif action == "rubout":
            start = self.cursor
            while start > 0 and self.buffer[start - 1].isspace():
                start -= 1
            while start > 0 and not self.buffer[start - 1].isspace():
                start -= 1
            self.buffer, self.cursor = self.buffer[:start] + self.buffer[self.cursor :], start

    def _submit(self) -> None:
        line = self.buffer
        opaque = self.opaque
        if opaque is None and _HISTORY.search(_SINGLE_QUOTED.sub("''", line)):
            opaque = "history expansion (! or ^) makes the line another command"
        text = self.continuation + line
        self.buffer, self.cursor, self.opaque = "", 0, None
        if incomplete(text) and self.continuation_lines < MAX_CONTINUATION_LINES:
            self.continuation = text + "\n"
            self.continuation_lines += 1
            self.opaque = opaque
            return
        self.continuation, self.continuation_lines = "", 0
        self.units.append(TypedUnit(text, True, opaque))


def incomplete(text: str) -> bool:
    """Whether the shell would wait for more lines: a trailing backslash, an open quote, an
    unfinished here-document or compound command, a trailing ``|``/``&&``."""
    if re.search(r"(?<!\\)(?:\\\\)*\\$", text):
        return True
    if _open_quote(text) or _open_heredoc(text):
        return True
    tree = parse_tree(encode(text + "\n"))
    if not tree.root_node.has_error:
        return False
    return _has_missing(tree.root_node) or text.rstrip().endswith(_OPENERS)


def _has_missing(root: object) -> bool:
    stack = [root]
    while stack:
        node = stack.pop()
        if getattr(node, "is_missing", False):
            return True
        if getattr(node, "has_error", False):
            stack.extend(getattr(node, "children", []))
    return False


_HEREDOC = re.compile(r"<<(-?)\s*(['\"]?)([A-Za-z0-9_.-]+)\2")


def _open_heredoc(text: str) -> bool:
    """A here-document whose delimiter line has not come yet."""
    lines = text.split("\n")
    for match in _HEREDOC.finditer(text):
        start = text.count("\n", 0, match.start()) + 1
        strip = match.group(1) == "-"
        delimiter = match.group(3)
        if not any((line.lstrip("\t") if strip else line) == delimiter for line in lines[start:]):
            return True
    return False


def _open_quote(text: str) -> bool:
    quote: str | None = None
    index = 0
    while index < len(text):
        char = text[index]
        if quote is None:
            if char == "\\":
                index += 2
                continue
            if char == "#" and (index == 0 or text[index - 1] in " \t\n;&|("):
                end = text.find("\n", index)
                index = len(text) if end < 0 else end
                continue
            if char in "'\"`":
                quote = char
        elif quote == "'":
            if char == "'":
                quote = None
        else:
            if char == "\\":
                index += 2
                continue
            if char == quote:
                quote = None
        index += 1
    return quote is not None


def initial_state(program: str, *, ssh: bool, bash: bool = True) -> LineState:
    """The line state of a new session running ``program`` (empty: the login or default shell).

    A session whose program is not a plain interactive shell is tainted from the start: what
    is typed goes to that program.
    """
    editor: EditorKind = "readline" if bash and not ssh else "basic"
    words = program.split()
    shells = ("sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish")
    plain_shell = not words or (
        words[0].rsplit("/", 1)[-1] in shells and all(word in ("-i", "-l", "--login") for word in words[1:])
    )
    if plain_shell:
        # Only the default local shell is started with the fixed line editor the model follows.
        return LineState(editor=editor if not words else "basic")
    return LineState(
        editor="basic", tainted=f"the session runs {program[:80]!r}, not a shell the server follows"
    )


def after_send(sent: Feed, analysis: Analysis | None, *, ssh: bool) -> LineState:
    """The state once ``sent`` was delivered, tainted when what ran changes later input.

    A line that taints (an alias, a function, ``bind``, ``set -o``, ``PATH=``...), input the
    model could not follow, and on SSH (where the foreground program is unknown) a line that
    starts an interactive program or runs opaque code: every later send is opaque.
    """
    state = sent.state
    if sent.uncertain:
        state = state.taint("input the line model could not follow was delivered")
    if analysis is None:
        return state.taint("the sent text was not classified")
    if analysis.taints:
        state = state.taint("a line changed how later input is read or run")
    if ssh and (analysis.interactive or analysis.opaque):
        state = state.taint("a line started an interactive program or opaque code on the remote host")
    return state
