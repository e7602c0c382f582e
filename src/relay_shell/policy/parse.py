"""Find every simple command in a shell text, with its words, redirections and stdin.

The text is parsed with tree-sitter-bash (it never fails hard; text it cannot read becomes
ERROR nodes, reported as ``errors``). The tree is walked with an explicit stack (no
recursion, so deep nesting costs no Python frames) and yields :class:`RawCommand` records
for commands, declarations (``declare``, ``export``...), ``unset``, ``[[ ]]`` tests,
standalone assignments, function definitions, arithmetic commands and redirections on
compound statements, in source order. Words are read by :class:`WordScanner` once the walk
has seen every command substitution, so a substitution the scanner finds and the grammar
did not is reported instead of being silently skipped.

Each command also knows where its standard input comes from (the call's stdin, a pipe and
the previous stage, a file, a here-document or here-string text), which is what makes
``echo ... | sh``, ``sh <<'EOF'`` and ``bash -s`` with a stdin argument classifiable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from tree_sitter import Node, Tree

from relay_shell.policy.arith_nodes import (
    arithmetic_parts,
    is_arithmetic,
    operand_uses,
    record_for,
    test_evaluations,
)
from relay_shell.policy.grammar import (
    LEAVES,
    NESTED_REDIRECTS,
    encode,
    flatten_redirects,
    heredoc_substitutions,
    parse_tree,
    walked_contents,
)
from relay_shell.policy.raw import (
    INPUT_OPERATORS,
    IntegerTable,
    RawCommand,
    RawKind,
    RawRedirect,
    ShellParse,
    StdinKind,
)
from relay_shell.policy.words import Word, WordScanner, arith_assignments, arith_uses

_NAMING_BUILTINS = {
    "read",
    "mapfile",
    "readarray",
    "getopts",
    "printf",
    "wait",
    "declare",
    "typeset",
    "local",
}
_NAMING_BUILTINS |= {"export", "readonly", "unset"}


_SPECIAL = frozenset({
    "command", "ERROR", "pipeline", "redirected_statement", "command_substitution", "process_substitution",
    "declaration_command", "unset_command", "variable_assignment", "variable_assignments", "comment",
    "heredoc_body", *NESTED_REDIRECTS, "test_command", "function_definition", "compound_statement",
    "c_style_for_statement", "arithmetic_expansion", "for_statement",
})  # fmt: skip
"""Node types the walk reads itself; any other node only holds the nodes below it."""


class _Ctx(NamedTuple):
    stdin: StdinKind
    stdin_text: str | None
    pipe_from: int | None  # node id of the previous pipeline stage
    redirects: tuple[Node, ...]


_BASE = _Ctx("inherited", None, None, ())


@dataclass(slots=True)
class _Pending:
    """A command whose words are read after the walk (when every substitution is known)."""

    command: RawCommand
    words: list[tuple[int, int]]
    assignments: list[Node]
    redirects: list[Node]
    pipe_from: int | None


class ShellParser:
    """Parses one shell text into a :class:`ShellParse` (see the module docstring)."""

    def __init__(self, scanner: WordScanner, budget: int = 1_000_000) -> None:
        self._scanner = scanner
        self._budget = budget
        self.truncated_at = 1 << 62

    def parse(self, text: str, tree: Tree | None = None) -> ShellParse:
        """Parse ``text`` (``tree``: the grammar's tree of it, when the caller already has it).
        Never raises for any input text."""
        self._data = encode(text)
        tree = tree if tree is not None else parse_tree(self._data)
        self._substitutions: set[int] = set()
        self._pending: list[_Pending] = []
        self._by_node: dict[int, int] = {}
        self._functions: set[str] = set()
        self._integers = IntegerTable()
        self._heredocs: list[tuple[RawCommand, int, str]] = []
        self._attached: set[int] = set()  # redirections given to a command
        self._simple: dict[bytes, Word] = {}  # words with nothing to expand, by their bytes
        self._walk(tree.root_node)
        commands = [self._finish(pending) for pending in self._pending]
        for command, start, body in self._heredocs:
            if any(start + offset not in self._substitutions for offset in heredoc_substitutions(body)):
                command.reasons.append("a here-document substitution the parser did not read")
        truncated = self.truncated_at if self.truncated_at < len(self._data) else None
        return ShellParse(
            commands, tree.root_node.has_error, self._functions, self._integers, self._data, truncated
        )

    # -- the walk --------------------------------------------------------------------------

    def _walk(self, root: Node) -> None:
        stack: list[tuple[Node, _Ctx]] = [(root, _BASE)]
        while stack:
            node, ctx = stack.pop()
            if len(self._pending) >= self._budget:  # the rest is read from the earliest node left
                self.truncated_at = min(
                    self.truncated_at, node.start_byte, *(left.start_byte for left, _ in stack)
                )
                return
            kind = node.type
            children: list[tuple[Node, _Ctx]]
            if kind not in _SPECIAL:  # a node that only holds others (a list, a word, a string...)
                children = [(child, ctx) for child in node.named_children if child.type not in LEAVES]
            elif kind == "command":
                children = self._command(node, ctx)
            elif kind == "ERROR" and self._brace_command(node):
                children = self._brace_error(node, ctx)
            elif kind == "pipeline":
                children = self._pipeline(node, ctx)
            elif kind == "redirected_statement":
                children = self._redirected(node, ctx)
            else:
                children = self._other(node, kind, ctx)
            stack.extend(reversed(children))

    def _other(self, node: Node, kind: str, ctx: _Ctx) -> list[tuple[Node, _Ctx]]:
        if kind in ("command_substitution", "process_substitution"):
            self._substitutions.add(node.start_byte)
            # ``>(cmd)``: cmd reads what is written to it (a pipe); ``<(cmd)``, ``$(cmd)``: the shell's stdin
            piped = kind == "process_substitution" and self._text(node).startswith(">")
            inner = _Ctx("pipe", None, None, ()) if piped else _BASE
            return [(child, inner) for child in node.named_children]
        if kind in ("declaration_command", "unset_command"):
            return self._declaration(node, "declaration" if kind == "declaration_command" else "unset")
        if kind in ("variable_assignment", "variable_assignments"):
            return [(child, _BASE) for child in self._standalone_assignment(node)]
        if kind in ("comment", "heredoc_body"):
            return [] if kind == "comment" else [(child, _BASE) for child in node.named_children]
        if kind in NESTED_REDIRECTS and node.id not in self._attached:
            # a redirection the grammar hung somewhere no command took it from: still a write
            raw = RawCommand("redirects", node.start_byte, self._text(node))
            self._add(raw, node, [], [], list(flatten_redirects((node,))), None)
        self._record(node, kind)
        return [(child, ctx) for child in node.named_children if child.type not in LEAVES]

    def _record(self, node: Node, kind: str) -> None:
        """Record what a structural node means on its own (tests, functions, arithmetic, loops)."""
        if kind == "test_command":
            self._test(node)
        elif kind == "function_definition":
            self._function(node)
        elif kind in ("compound_statement", "c_style_for_statement") and is_arithmetic(node):
            self._arithmetic(node)
        elif kind == "arithmetic_expansion":
            self._record_arith_assignments(self._text(node), node.start_byte)
        elif kind == "for_statement":
            record_for(node, self._text, self._integers)

    def _pipeline(self, node: Node, ctx: _Ctx) -> list[tuple[Node, _Ctx]]:
        children: list[tuple[Node, _Ctx]] = []
        previous: int | None = ctx.pipe_from
        piped = False
        for child in node.children:
            if child.type in ("|", "|&"):
                piped = True
                continue
            if not child.is_named:
                continue
            children.append((child, _Ctx("pipe", None, previous, ()) if piped else ctx))
            previous, piped = child.id, False
        return children

    def _redirected(self, node: Node, ctx: _Ctx) -> list[tuple[Node, _Ctx]]:
        body = node.child_by_field_name("body")
        redirects = flatten_redirects(tuple(node.children_by_field_name("redirect")))
        children: list[tuple[Node, _Ctx]] = []
        # ``a && cat <<EOF``: the grammar hangs the here-document on the list; bash gives it to cat.
        while body is not None and body.type == "list" and body.named_children:
            *left, body = body.named_children
            children.extend((child, ctx) for child in left)
        if body is not None and body.type == "command":
            children.append((body, ctx._replace(redirects=ctx.redirects + redirects)))
        else:
            raw = RawCommand("redirects", node.start_byte, self._text(node))
            self._add(raw, node, [], [], list(redirects), None)
            stdin, text = self._stdin_from(redirects)
            if body is not None:
                children.append((body, ctx._replace(stdin=stdin, stdin_text=text) if stdin else ctx))
        previous = body.id if body is not None else None
        for redirect in redirects:
            for child in redirect.named_children:
                if child.type == "pipeline":  # ``cat <<EOF | sh``: the grammar nests the pipe here
                    children.append((child, _Ctx(ctx.stdin, ctx.stdin_text, previous, ())))
                elif child.type not in (
                    "heredoc_start",
                    "heredoc_end",
                    "file_descriptor",
                    *NESTED_REDIRECTS,
                ):
                    children.append((child, _BASE))
        return children

    def _stdin_from(self, redirects: tuple[Node, ...]) -> tuple[StdinKind | None, str | None]:
        result: tuple[StdinKind | None, str | None] = (None, None)
        for redirect in redirects:
            operator, fd = self._operator(redirect)
            if operator in INPUT_OPERATORS and fd in (None, 0):
                if redirect.type == "heredoc_redirect":
                    body, literal = self._heredoc(redirect)
                    result = ("text", body if literal else None)
                elif redirect.type == "herestring_redirect":
                    result = ("text", None)
                else:
                    result = ("file", None)
        return result

    # -- simple commands -------------------------------------------------------------------

    def _brace_command(self, node: Node) -> bool:
        """``{r,}m -rf x``: the grammar reads a leading ``{`` as a group; bash reads a brace word."""
        children = node.children
        return (
            len(children) > 1
            and children[0].type == "{"
            and children[1].start_byte == children[0].end_byte
            and children[1].type in ("command", "command_name")
        )

    def _brace_error(self, node: Node, ctx: _Ctx) -> list[tuple[Node, _Ctx]]:
        brace, first = node.children[0], node.children[1]
        if first.type == "command":
            return self._command(first, ctx, name_start=brace.start_byte) + [
                (child, ctx) for child in node.named_children[1:]
            ]
        raw = RawCommand(
            "command", brace.start_byte, self._text(node), stdin=ctx.stdin, stdin_text=ctx.stdin_text
        )
        words = [(brace.start_byte, first.end_byte)]
        words.extend(
            (child.start_byte, child.end_byte) for child in node.named_children[1:] if child.type == "word"
        )
        self._add(raw, node, words, [], [], ctx.pipe_from)
        return [(child, _BASE) for child in node.named_children]

    def _command(self, node: Node, ctx: _Ctx, name_start: int | None = None) -> list[tuple[Node, _Ctx]]:
        raw = RawCommand(
            "command", node.start_byte, self._text(node), stdin=ctx.stdin, stdin_text=ctx.stdin_text
        )
        words: list[tuple[int, int]] = []
        assignments: list[Node] = []
        redirects: list[Node] = list(ctx.redirects)
        walked: list[tuple[Node, _Ctx]] = []  # each child's type is read once
        for child in node.named_children:
            kind = child.type
            if kind == "variable_assignment":
                assignments.append(child)
                walked.extend((part, _BASE) for part in child.named_children if part.type not in LEAVES)
                continue
            if kind.endswith("_redirect"):
                redirects.append(child)
            elif kind != "comment":
                start = name_start if kind == "command_name" and name_start is not None else child.start_byte
                words.append((start, child.end_byte))
            if kind not in LEAVES:
                walked.append((child, _BASE))
        self._add(raw, node, words, assignments, redirects, ctx.pipe_from)
        return walked

    def _declaration(self, node: Node, kind: RawKind) -> list[tuple[Node, _Ctx]]:
        raw = RawCommand(kind, node.start_byte, self._text(node))
        words: list[tuple[int, int]] = []
        assignments: list[Node] = []
        keyword = node.children[0] if node.children else None
        if keyword is not None:
            words.append((keyword.start_byte, keyword.end_byte))
        for child in node.children[1:]:
            if child.type == "variable_assignment":
                assignments.append(child)
                words.append((child.start_byte, child.end_byte))
            elif child.is_named and child.type != "comment":
                words.append((child.start_byte, child.end_byte))
                if child.type in ("word", "variable_name"):
                    self._integers.other.add(self._text(child).split("=", 1)[0].split("[", 1)[0])
        self._add(raw, node, words, assignments, [], None)
        return [(child, _BASE) for child in walked_contents(node.named_children)]

    def _test(self, node: Node) -> None:
        raw = RawCommand("test", node.start_byte, self._text(node), name="[[")
        reasons, uses = test_evaluations(node, self._text)
        raw.reasons.extend(reasons)
        for names, position in uses:
            raw.uses(names, position)
        words = [
            (
                node.start_byte,
                node.start_byte + 2 if self._text(node).startswith("[[") else node.start_byte + 1,
            )
        ]
        self._add(raw, node, words, [], [], None)

    def _function(self, node: Node) -> None:
        name_node = node.child_by_field_name("name")
        name = self._text(name_node) if name_node is not None else ""
        self._functions.add(name)
        raw = RawCommand("function", node.start_byte, self._text(node), name=name)
        self._add(raw, node, [], [], [], None)

    def _standalone_assignment(self, node: Node) -> list[Node]:
        """Record a statement that only assigns; return the nodes holding its substitutions."""
        raw = RawCommand("assignment", node.start_byte, self._text(node))
        nodes = [node] if node.type == "variable_assignment" else list(node.named_children)
        assignments = [child for child in nodes if child.type == "variable_assignment"]
        self._add(raw, node, [], assignments, [], None)
        return walked_contents(assignments)

    def _arithmetic(self, node: Node) -> None:
        raw = RawCommand("arith", node.start_byte, self._text(node), name="((")
        for part in arithmetic_parts(node):
            text = self._text(part)
            raw.uses(arith_uses(text), part.start_byte)
            self._record_arith_assignments(text, part.start_byte)
        self._add(raw, node, [], [], [], None)

    # -- helpers ---------------------------------------------------------------------------

    def _add(
        self,
        raw: RawCommand,
        node: Node,
        words: list[tuple[int, int]],
        assignments: list[Node],
        redirects: list[Node],
        pipe_from: int | None,
    ) -> None:
        self._by_node[node.id] = len(self._pending)
        if redirects:
            self._attached.update(redirect.id for redirect in redirects)
        self._pending.append(_Pending(raw, words, assignments, redirects, pipe_from))

    def _finish(self, pending: _Pending) -> RawCommand:
        raw, data, simple = pending.command, self._data, self._simple
        for start, end in pending.words:
            known = simple.get(data[start:end])
            if known is not None:  # nothing to expand (and no arithmetic to record)
                raw.words.append(known)
                continue
            found = self._words(start, end)
            raw.words.extend(found)
            for word in found:
                if word.arith:
                    raw.uses(word.arith, start)
        if raw.kind == "command" and raw.words and raw.words[0].literal:
            raw.name = raw.words[0].text
            if raw.name in _NAMING_BUILTINS:
                for word in raw.words[1:]:
                    self._integers.other.add(word.text.split("=", 1)[0].split("[", 1)[0])
            if raw.name == "let":
                for word in raw.words[1:]:
                    raw.uses(arith_uses(word.text), raw.position)
                    self._record_arith_assignments(word.text, raw.position + len(raw.source))
        for assignment in pending.assignments:
            raw.assignments.append(self._assignment(assignment, raw))
        for redirect in pending.redirects:
            raw.redirects.append(self._redirect(redirect, raw))
        if pending.pipe_from is not None:
            raw.pipe_source = self._by_node.get(pending.pipe_from)
        return raw

    def _words(self, start: int, end: int) -> list[Word]:
        raw = self._data[start:end]
        simple = self._simple.get(raw)
        if simple is not None:
            return [simple]
        source = raw.decode("utf-8", "surrogateescape")
        if self._scanner.is_simple(source):  # nothing to expand: the same word wherever it is written
            word = self._simple[raw] = Word(source, True, may_be_option=source.startswith("-"))
            return [word]
        if source.isascii():
            return self._scanner.words(source, lambda offset: start + offset in self._substitutions)
        return self._scanner.words(
            source,
            lambda offset: (
                start + len(source[:offset].encode("utf-8", "surrogateescape")) in self._substitutions
            ),
        )

    def _assignment(self, node: Node, raw: RawCommand) -> tuple[str, Word]:
        name_node = node.child_by_field_name("name")
        value_node = node.child_by_field_name("value")
        name = self._text(name_node) if name_node is not None else ""
        if name_node is not None and name_node.type == "subscript":
            index = name_node.child_by_field_name("index")
            if index is not None:
                raw.uses(operand_uses(self._text(index)), index.start_byte)
            name = name.split("[", 1)[0]
        if value_node is None:
            value = Word("", True)
        elif value_node.type == "array":
            value = Word(self._text(value_node), False, may_split=True)
        else:
            found = self._scanner.words(
                self._data[value_node.start_byte : value_node.end_byte].decode("utf-8", "surrogateescape"),
                lambda offset: value_node.start_byte + offset in self._substitutions,
                braces=False,
            )
            value = found[0] if found else Word("", True)
        raw.uses(value.arith, node.start_byte)
        self._integers.assigned(name, value.text if value.literal else None, node.start_byte)
        return name, value

    def _redirect(self, node: Node, raw: RawCommand) -> RawRedirect:
        operator, fd = self._operator(node)
        source = self._text(node)
        if node.type == "heredoc_redirect":
            body, literal = self._heredoc(node)
            if not literal:
                body_node = next((c for c in node.named_children if c.type == "heredoc_body"), None)
                if body_node is not None:
                    self._heredocs.append((raw, body_node.start_byte, self._text(body_node)))
            return RawRedirect(operator, fd, None, body, literal, source)
        destination = node.child_by_field_name("destination")
        if node.type == "herestring_redirect":
            target_node = next((c for c in node.named_children if c.type != "file_descriptor"), None)
            found = self._words(target_node.start_byte, target_node.end_byte) if target_node else []
            word = found[0] if len(found) == 1 else None
            text = word.text + "\n" if word is not None and word.literal else None
            return RawRedirect(operator, fd, None, text, text is not None, source)
        target = None
        if destination is not None:
            found = self._words(destination.start_byte, destination.end_byte)
            target = found[0] if len(found) == 1 else Word(self._text(destination), False, may_split=True)
        return RawRedirect(operator, fd, target, None, False, source)

    def _operator(self, node: Node) -> tuple[str, int | None]:
        operator, fd = "", None
        for child in node.children:
            if child.type == "file_descriptor":
                text = self._text(child)
                fd = int(text) if text.isdigit() and len(text) < 6 else None
            elif not child.is_named and not operator:
                operator = self._text(child)
        if node.type == "heredoc_redirect" and not operator:
            operator = "<<"
        return operator, fd

    def _heredoc(self, node: Node) -> tuple[str, bool]:
        start = next((c for c in node.children if c.type == "heredoc_start"), None)
        body = next((c for c in node.named_children if c.type == "heredoc_body"), None)
        delimiter = self._text(start) if start is not None else ""
        literal = any(quote in delimiter for quote in "'\"\\")
        text = self._text(body) if body is not None else ""
        if not literal and ("$" in text or "`" in text or "\\" in text):
            return text, False
        return text, True

    def _record_arith_assignments(self, text: str, position: int) -> None:
        for name, offset in arith_assignments(text).items():
            self._integers.integer(name, position + offset)

    def _text(self, node: Node) -> str:
        return self._data[node.start_byte : node.end_byte].decode("utf-8", "surrogateescape")
