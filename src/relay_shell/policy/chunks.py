"""A long shell text cut into pieces that each parse on their own (the grammar's cost grows
faster than linearly with one long program)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from tree_sitter import Tree

from relay_shell.policy.grammar import encode, parse_tree

CHUNK_CHARS = 64 * 1024


@dataclass(frozen=True)
class Chunk:
    """A piece of a long text, and the grammar's tree of it when choosing the cut built one."""

    text: str
    tree: Tree | None = None


def chunks(text: str) -> Iterator[Chunk]:
    """``text`` cut at line ends into pieces of about :data:`CHUNK_CHARS` that each parse on
    their own (the grammar's cost grows faster than linearly with one long program).

    A cut is only made where the piece before it parses without error or missing part and
    does not end with a line continuation, so no quote, here-document, compound command or
    continued line is split; otherwise the piece grows until it does (at worst: the rest).
    The pieces come one at a time, in order and without gaps, each with the tree its cut was
    checked on (parsed once): a caller that stops (the command budget) parses nothing more.
    """
    if len(text) <= CHUNK_CHARS:
        yield Chunk(text)
        return
    start = 0
    while start < len(text):
        end = start + CHUNK_CHARS
        while True:
            cut = text.find("\n", end)
            if cut < 0:
                yield Chunk(text[start:])
                return
            piece = text[start : cut + 1]
            if not piece.rstrip("\n").endswith("\\"):
                tree = parse_tree(encode(piece))
                if not tree.root_node.has_error:
                    yield Chunk(piece, tree)
                    start = cut + 1
                    break
            end = cut + 1 + CHUNK_CHARS // 4
