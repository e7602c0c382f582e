"""The tree-sitter bash grammar: text to bytes, bytes to a tree, and the node shapes the walk reads.

One parser per thread (tree-sitter parsers are not thread-safe). Every byte above 127 is
read as ``.`` by the grammar (see :func:`parse_tree`); offsets stay those of the original
bytes, from which words are read.
"""

from __future__ import annotations

import threading

import tree_sitter_bash
from tree_sitter import Language, Node, Parser, Tree

_LANGUAGE = Language(tree_sitter_bash.language())
_LOCAL = threading.local()


def _parser() -> Parser:
    parser: Parser | None = getattr(_LOCAL, "parser", None)
    if parser is None:
        parser = _LOCAL.parser = Parser(_LANGUAGE)
    return parser


_ASCII_ONLY = bytes(range(128)) + b"." * 128


def encode(text: str) -> bytes:
    """The bytes the shell will read (``surrogateescape`` keeps bytes that are not UTF-8);
    text holding lone surrogates cannot be run at all and is read with them replaced."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def parse_tree(data: bytes) -> Tree:
    """The grammar's tree of ``data``, parsed with every byte above 127 read as ``.``.

    tree-sitter-bash 0.25 can crash the process (SIGSEGV) on a ``{`` followed by a 4-byte
    UTF-8 sequence (tree-sitter/tree-sitter-bash#337), and any input text reaches the
    parser. Bash itself reads bytes above 127 as ordinary word characters (never as
    operators or in names), which is what ``.`` is to the grammar; offsets are unchanged,
    and words are read from the original bytes.
    """
    return _parser().parse(data.translate(_ASCII_ONLY))


LEAVES = frozenset({
    "word", "number", "raw_string", "ansi_c_string", "variable_name", "special_variable_name",
    "simple_expansion", "file_descriptor", "heredoc_start", "heredoc_end", "comment", "string_content",
    "test_operator", "regex", "extglob_pattern",
})  # fmt: skip
"""Node types that never hold a command (nothing to walk into)."""


def walked_contents(nodes: list[Node]) -> list[Node]:
    """The nodes to walk for nested commands: an assignment is walked through its parts."""
    result: list[Node] = []
    for node in nodes:
        if node.type == "variable_assignment":
            result.extend(node.named_children)
        else:
            result.append(node)
    return result


NESTED_REDIRECTS = ("file_redirect", "herestring_redirect", "heredoc_redirect")


def flatten_redirects(redirects: tuple[Node, ...]) -> tuple[Node, ...]:
    """``cat <<EOF > f``: the grammar nests the redirections written after a here-document
    operator inside it; bash gives them to the command like the others."""
    result: list[Node] = []
    for redirect in redirects:
        result.append(redirect)
        if redirect.type == "heredoc_redirect":
            result.extend(
                flatten_redirects(tuple(c for c in redirect.named_children if c.type in NESTED_REDIRECTS))
            )
    return tuple(result)


def heredoc_substitutions(body: str) -> list[int]:
    """Offsets of ``$(`` and backticks in an unquoted here-document body (bash runs them)."""
    offsets: list[int] = []
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\":
            index += 2
            continue
        if char == "`" or (
            char == "$" and body.startswith("$(", index) and not body.startswith("$((", index)
        ):
            offsets.append(index)
            if char == "`":
                end = body.find("`", index + 1)
                index = len(body) if end < 0 else end + 1
                continue
        index += 1
    return offsets
