"""One shell word, read the way bash reads it: quotes removed, escapes resolved, braces expanded.

The tree-sitter grammar gives the boundaries of each word; the characters inside are read
here by a small scanner of our own (quotes, backslashes, ``$'..'``, ``$"..."``, ``${..}``,
``$(..)``, backticks, ``$((..))``, process substitution, globs, braces, ``~``), so a quirk
of the grammar inside a word cannot hide anything: every command substitution the scanner
finds must be one the grammar also found (its commands are classified from the tree), or
the word is flagged as running unseen code.

A :class:`Word` says what is certain about the argument bash will pass: its ``text`` when
it is ``literal``; otherwise whether it can start with ``-`` (``may_be_option``), become
zero or several words (``may_split``), match files (``glob``), or run code while it is
expanded (``code``: command substitution, arithmetic on a variable, ``${!x}``, ``${x@P}``).
"""

from __future__ import annotations

import pwd
import re
from collections.abc import Callable
from dataclasses import dataclass

from relay_shell.policy.braces import expand_braces

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SIMPLE_WORD = re.compile(r"[A-Za-z0-9_./:=+%@^-]+")
_ARITH_NAME = re.compile(r"(?<![0-9A-Za-z_#.@])[A-Za-z_][A-Za-z0-9_]*")
_SUBSCRIPT_BODY = r"(?:\[[^\]]*\])?"
_PLAIN_ASSIGNMENT = re.compile(_SUBSCRIPT_BODY + r"\s*=(?!=)")
_DOLLAR_NAME = re.compile(r"\$\{?([0-9@*]|[A-Za-z_][A-Za-z0-9_]*)")
_SUBSTITUTION = re.compile(r"\$\([^()]*\)|`[^`]*`")
_ASSIGNING = re.compile(
    r"(?<![\w$])([A-Za-z_]\w*)\s*" + _SUBSCRIPT_BODY + r"\s*(?:[-+*/%&|^]|<<|>>|\*\*)?=(?!=)"
    r"|(?:\+\+|--)\s*([A-Za-z_]\w*)|([A-Za-z_]\w*)\s*(?:\+\+|--)"
)
_EXPRESSION_END = re.compile(r"[,;)]")
_SPECIAL = "@*#?-$!0123456789"
_INTEGER_SPECIALS = {"#", "?", "$", "!"}
_ANSI_SIMPLE = {
    "a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f", "n": "\n", "r": "\r",
    "t": "\t", "v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Expansion:
    """A ``$``/backtick/process-substitution piece of a word, kept as its source text."""

    source: str
    kind: str  # param | special | command | arith | process
    quoted: bool
    code: str | None = None
    splits: bool = False
    arith: frozenset[str] = frozenset()


# A token is ("u", char) for an unquoted character, ("q", text) for quoted literal text,
# or ("x", Expansion).
Token = tuple[str, "str | Expansion"]


@dataclass(frozen=True, slots=True)
class Word:
    """One argument as bash will see it (see the module docstring)."""

    text: str
    literal: bool
    glob: bool = False
    may_be_option: bool = False
    may_split: bool = False
    code: str | None = None
    unseen: bool = False
    arith: frozenset[str] = frozenset()

    @property
    def safe_glob(self) -> bool:
        """A pattern that starts with a literal other than ``-`` and expands nothing else."""
        return self.glob and not self.may_be_option and not self.may_split and self.code is None

    @property
    def plain(self) -> bool:
        """Literal text, or a pattern that can only name files (never an option)."""
        return self.literal or self.safe_glob


def literal_word(text: str) -> Word:
    """A word whose text is known exactly (an argv element run without a shell)."""
    return Word(text, True, may_be_option=text.startswith("-"))


@dataclass
class Scan:
    """The result of scanning one word's source: tokens and the substitutions found."""

    tokens: list[Token]
    substitutions: list[int]
    broken: bool = False


class WordScanner:
    """Reads word source text; ``home`` expands ``~`` (None: leave it as written)."""

    def __init__(self, home: str | None) -> None:
        self._home = home

    # -- public ---------------------------------------------------------------------------

    def words(
        self, source: str, known: Callable[[int], bool] | None = None, *, braces: bool = True
    ) -> list[Word]:
        """The words ``source`` (one shell word as written) becomes after brace expansion.

        ``known(offset)`` says whether the grammar found a command or process substitution
        at that character offset of ``source``; one the scanner finds where the grammar did
        not marks the word ``unseen``. Brace results that are empty and unquoted disappear,
        as in bash.
        """
        if self.is_simple(source):
            return [Word(source, True, may_be_option=source.startswith("-"))]  # nothing to expand
        scan = self.scan(source)
        unseen = scan.broken or any(not (known and known(offset)) for offset in scan.substitutions)
        expanded, overflow = expand_braces(scan.tokens) if braces else ([scan.tokens], False)
        words = [self._word(tokens, unseen) for tokens in expanded if tokens]
        if overflow:
            reason = "brace expansion larger than the classifier follows"
            words = [Word(w.text, False, w.glob, True, True, reason, True, w.arith) for w in words]
        return words

    def is_simple(self, source: str) -> bool:
        """Whether ``source`` has nothing to expand: it is one literal word, itself."""
        return _SIMPLE_WORD.fullmatch(source) is not None and not (
            source.startswith("~") and self._home is not None
        )

    def scan(self, source: str) -> Scan:
        """Tokens of ``source`` and the offsets of the substitutions in it."""
        scan = Scan([], [])
        index, length = 0, len(source)
        while index < length:
            char = source[index]
            if char == "\\":
                index = self._backslash(source, index, scan)
            elif char == "'":
                end = source.find("'", index + 1)
                if end < 0:
                    scan.broken, end = True, length
                scan.tokens.append(("q", source[index + 1 : end]))
                index = end + 1
            elif char == "$" and source.startswith("$'", index):
                text, index = _ansi_c(source, index + 2)
                scan.broken |= index > len(source)
                scan.tokens.append(("q", text))
            elif char == '"' or (char == "$" and source.startswith('$"', index)):
                index = self._double_quoted(source, index + (1 if char == '"' else 2), scan)
            elif char in "$`" or (char in "<>" and source.startswith("(", index + 1)):
                expansion, end = self._expansion(source, index, quoted=False, scan=scan)
                if expansion is None:
                    scan.tokens.append(("u", char))
                    index += 1
                else:
                    scan.tokens.append(("x", expansion))
                    index = end
            else:
                scan.tokens.append(("u", char))
                index += 1
        return scan

    # -- pieces ---------------------------------------------------------------------------

    @staticmethod
    def _backslash(source: str, index: int, scan: Scan) -> int:
        if index + 1 >= len(source):
            scan.tokens.append(("q", "\\"))
            return index + 1
        if source[index + 1] == "\n":
            return index + 2  # line continuation
        scan.tokens.append(("q", source[index + 1]))
        return index + 2

    def _double_quoted(self, source: str, index: int, scan: Scan) -> int:
        """Scan from just after the opening quote; return the index after the closing one."""
        literal: list[str] = []
        length = len(source)
        while index < length:
            char = source[index]
            if char == '"':
                scan.tokens.append(("q", "".join(literal)))
                return index + 1
            if char == "\\" and index + 1 < length and source[index + 1] in '$`"\\\n':
                if source[index + 1] != "\n":
                    literal.append(source[index + 1])
                index += 2
                continue
            if char in "$`":
                expansion, end = self._expansion(source, index, quoted=True, scan=scan)
                if expansion is not None:
                    scan.tokens.append(("q", "".join(literal)))
                    literal = []
                    scan.tokens.append(("x", expansion))
                    index = end
                    continue
            literal.append(char)
            index += 1
        scan.broken = True
        scan.tokens.append(("q", "".join(literal)))
        return length

    def _expansion(
        self, source: str, index: int, *, quoted: bool, scan: Scan
    ) -> tuple[Expansion | None, int]:
        """The expansion starting at ``source[index]`` (``$``, backtick, ``<(``, ``>(``)."""
        char = source[index]
        if char == "`":
            end = _backtick_end(source, index + 1)
            scan.substitutions.append(index)
            scan.broken |= end < 0
            end = len(source) if end < 0 else end
            return Expansion(source[index:end], "command", quoted, "command substitution", not quoted), end
        if char in "<>":
            end = _paren_end(source, index + 2)
            scan.substitutions.append(index)
            scan.broken |= end < 0
            end = len(source) if end < 0 else end
            return Expansion(source[index:end], "process", quoted, None, False), end
        return self._dollar(source, index, quoted=quoted, scan=scan)

    def _dollar(self, source: str, index: int, *, quoted: bool, scan: Scan) -> tuple[Expansion | None, int]:
        rest = source[index + 1 : index + 3]
        if rest.startswith(("(", "[", "{")):
            return self._bracketed(source, index, rest, quoted=quoted, scan=scan)
        match = _NAME.match(source, index + 1)
        if match:
            return Expansion(source[index : match.end()], "param", quoted, None, not quoted), match.end()
        if rest[:1] and rest[0] in _SPECIAL:
            name = rest[0]
            splits = name in "@*" or (not quoted and name not in _INTEGER_SPECIALS)
            return Expansion(source[index : index + 2], "special", quoted, None, splits), index + 2
        return None, index + 1

    def _bracketed(
        self, source: str, index: int, rest: str, *, quoted: bool, scan: Scan
    ) -> tuple[Expansion, int]:
        """``$((..))``, ``$(..)``, ``$[..]`` and ``${..}``."""
        if rest.startswith("(("):
            end = _paren_end(source, index + 3, depth=2)
            if end >= 0:
                body = source[index + 3 : end - 2]
                self._inner_substitutions(body, index + 3, scan)
                return Expansion(source[index:end], "arith", quoted, arith=arith_names(body)), end
        if rest.startswith("("):
            end = _paren_end(source, index + 2)
            scan.substitutions.append(index)
            scan.broken |= end < 0
            end = len(source) if end < 0 else end
            return Expansion(source[index:end], "command", quoted, "command substitution", not quoted), end
        if rest.startswith("["):
            end = source.find("]", index + 2)
            end = len(source) if end < 0 else end + 1
            body = source[index + 2 : end - 1]
            self._inner_substitutions(body, index + 2, scan)
            return Expansion(source[index:end], "arith", quoted, arith=arith_names(body)), end
        end = _brace_end(source, index + 2)
        scan.broken |= end < 0
        end = len(source) if end < 0 else end
        body = source[index + 2 : end - 1]
        self._inner_substitutions(body, index + 2, scan)
        return self._braced(source[index:end], body, quoted), end

    @staticmethod
    def _braced(source: str, body: str, quoted: bool) -> Expansion:
        """``${...}``: indirection, prompt expansion, subscripts and offsets can run code."""
        code: str | None = None
        names: frozenset[str] = frozenset()
        if body.startswith("!"):
            code = "indirect expansion ${!...} evaluates the value of another variable"
        elif "@P" in body:
            code = "prompt expansion ${...@P} runs command substitutions in the value"
        else:
            start = 1 if body.startswith("#") and len(body) > 1 else 0
            name = _NAME.match(body, start)
            after = body[name.end() :] if name else body[start + 1 :]
            if after.startswith("["):
                close = after.find("]")
                subscript = after[1:close] if close > 0 else after[1:]
                if subscript not in ("@", "*"):
                    names = arith_names(subscript)
                after = after[close + 1 :] if close > 0 else ""
            if after.startswith(":") and after[1:2] not in ("-", "=", "?", "+"):
                names = names | arith_names(after[1:])
        splits = not quoted or body.endswith("[@]") or body in ("@", "*")
        kind = "special" if body[:1] in _SPECIAL and len(body) == 1 else "param"
        return Expansion(source, kind, quoted, code, splits, names)

    def _inner_substitutions(self, body: str, offset: int, scan: Scan) -> None:
        """Record the command substitutions nested inside an expansion's body."""
        inner = self.scan(body)
        scan.substitutions.extend(offset + position for position in inner.substitutions)
        scan.broken |= inner.broken

    # -- assembling a word ----------------------------------------------------------------

    def _word(self, tokens: list[Token], unseen: bool) -> Word:
        tokens = self._tilde(tokens)
        text: list[str] = []
        literal, glob, split, code = True, False, False, None
        first_dash = False
        names: frozenset[str] = frozenset()
        lead = next((i for i, token in enumerate(tokens) if token != ("q", "")), 0)
        for position, (kind, value) in enumerate(tokens):
            if isinstance(value, Expansion):
                literal = False
                split |= value.splits
                code = code or value.code
                names = names | value.arith
                text.append(value.source)
                if position == lead:
                    first_dash = True
                continue
            if kind == "u" and value in "*?[" and (value != "[" or _closes(tokens, position)):
                glob = True
                literal = False
                if position == lead:
                    first_dash = True
            text.append(value)
        rendered = "".join(text)
        if literal or not first_dash:
            first_dash = rendered.startswith("-")
        if any(kind == "u" and value == "(" for kind, value in tokens):
            glob, literal, first_dash = True, False, True  # extglob patterns
        return Word(rendered, literal and not unseen, glob, first_dash, split, code, unseen, names)

    def _tilde(self, tokens: list[Token]) -> list[Token]:
        if not tokens or tokens[0] != ("u", "~") or self._home is None:
            return tokens
        end = 1
        while end < len(tokens) and tokens[end][0] == "u" and tokens[end][1] != "/":
            end += 1
        user = "".join(str(value) for _, value in tokens[1:end])
        if not user:
            return [("q", self._home), *tokens[end:]]
        if _NAME.fullmatch(user):
            try:
                return [("q", pwd.getpwnam(user).pw_dir), *tokens[end:]]
            except KeyError:
                return tokens
        return tokens  # ~+ and ~- stay as written


def arith_uses(expression: str) -> dict[str, int]:
    """The variables an arithmetic expression evaluates, with the offset of their first use.

    ``$x``, ``${x}`` and bare names count; the left side of a plain ``=`` does not (it is
    assigned, not read). Digits after ``#`` (``16#ff``) and hex digits (``0x1f``) are
    numbers; positional parameters (``$1``) count as the name ``1``. Command substitutions
    inside are skipped (their commands are classified on their own).
    """
    expression = _SUBSTITUTION.sub(lambda match: "0" * len(match.group()), expression)
    uses: dict[str, int] = {}
    for match in _ARITH_NAME.finditer(expression):
        if _PLAIN_ASSIGNMENT.match(expression, match.end()):
            continue
        uses.setdefault(match.group(), match.start())
    for match in _DOLLAR_NAME.finditer(expression):
        uses.setdefault(match.group(1), match.start())
    for name in _INTEGER_SPECIALS:
        uses.pop(name, None)
    return uses


def arith_names(expression: str) -> frozenset[str]:
    """The names of :func:`arith_uses`."""
    return frozenset(arith_uses(expression))


def arith_assignments(expression: str) -> dict[str, int]:
    """Variables an arithmetic expression assigns, with the offset where the value is set.

    An assignment takes effect at the end of its expression (the next ``,``, ``;`` or
    ``)``), so ``x = x`` still reads the old ``x`` first.
    """
    assigned: dict[str, int] = {}
    for match in _ASSIGNING.finditer(expression):
        name = match.group(1) or match.group(2) or match.group(3)
        end = _EXPRESSION_END.search(expression, match.end())
        assigned.setdefault(name, end.start() if end else len(expression))
    return assigned


def _closes(tokens: list[Token], position: int) -> bool:
    return any(kind == "u" and value == "]" for kind, value in tokens[position + 1 :])


def _ansi_c(source: str, index: int) -> tuple[str, int]:
    """Decode ``$'...'`` from just after the opening quote; return text and the index after it."""
    out: list[str] = []
    length = len(source)
    while index < length:
        char = source[index]
        if char == "'":
            return "".join(out), index + 1
        if char != "\\" or index + 1 >= length:
            out.append(char)
            index += 1
            continue
        escape = source[index + 1]
        index += 2
        if escape in _ANSI_SIMPLE:
            out.append(_ANSI_SIMPLE[escape])
        elif escape in "01234567":
            digits = re.match(r"[0-7]{1,2}", source[index:])
            number = escape + (digits.group() if digits else "")
            index += len(number) - 1
            out.append(chr(int(number, 8) & 0xFF))
        elif escape in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[escape]
            digits = re.match(rf"[0-9A-Fa-f]{{1,{width}}}", source[index:])
            if digits is None:
                out.append("\\" + escape)
            else:
                index += len(digits.group())
                out.append(chr(min(int(digits.group(), 16), 0x10FFFF)))
        elif escape == "c" and index < length:
            out.append(chr(ord(source[index]) & 0x1F))
            index += 1
        else:
            out.append("\\" + escape)
    return "".join(out), length + 1  # past the end: the quote was never closed


def _skip_quoted(source: str, index: int) -> int:
    """Index after the quoted string starting at ``source[index]`` (a quote character)."""
    quote = source[index]
    index += 1
    while index < len(source):
        if source[index] == "\\" and quote == '"':
            index += 2
            continue
        if source[index] == quote:
            return index + 1
        index += 1
    return len(source)


def _paren_end(source: str, index: int, depth: int = 1) -> int:
    """Index after the ``)`` closing a ``$(``/``<(`` whose body starts at ``index``; -1 if none."""
    return _group_end(source, index, "(", ")", depth)


def _brace_end(source: str, index: int) -> int:
    """Index after the ``}`` closing a ``${`` whose body starts at ``index``; -1 if none."""
    return _group_end(source, index, "{", "}", 1)


def _group_end(source: str, index: int, opening: str, closing: str, depth: int) -> int:
    """Index after the ``closing`` that brings ``depth`` open groups to 0 (quotes and backslash
    escapes skipped); -1 if the text ends first."""
    length = len(source)
    while index < length:
        char = source[index]
        if char in "'\"":
            index = _skip_quoted(source, index)
            continue
        if char == "\\":
            index += 2
            continue
        if char == opening:
            depth += 1
        elif char == closing:
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    return -1


def _backtick_end(source: str, index: int) -> int:
    while index < len(source):
        if source[index] == "\\":
            index += 2
            continue
        if source[index] == "`":
            return index + 1
        index += 1
    return -1
