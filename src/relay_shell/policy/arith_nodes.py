"""What the grammar's arithmetic and test nodes evaluate and assign.

Arithmetic evaluates the value of every variable it reads (an array subscript in a value runs
code): a ``[[ ]]`` test with ``-eq``/``-lt``... reads its operands arithmetically and ``-v``/``-R``
evaluate a subscript; ``(( ))`` and a C-style ``for`` read and assign names; a plain ``for``
assigns its variable each value in turn. :mod:`relay_shell.policy.parse` records these uses
on the commands and the assignments in the parse's :class:`~relay_shell.policy.raw.IntegerTable`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from tree_sitter import Node

from relay_shell.policy.raw import INTEGER, IntegerTable
from relay_shell.policy.words import arith_uses

_ARITH_TEST_OPERATORS = {"-eq", "-ne", "-lt", "-le", "-gt", "-ge"}
_SUBSCRIPT_TEST_OPERATORS = {"-v", "-R"}

TextOf = Callable[[Node], str]
"""The source text of a node."""


def test_evaluations(node: Node, text_of: TextOf) -> tuple[list[str], list[tuple[dict[str, int], int]]]:
    """What a ``[[ ]]`` test evaluates: the reasons it is opaque (a subscript test) and the
    variables its arithmetic comparisons read, each with the byte where its operand starts."""
    reasons: list[str] = []
    uses: list[tuple[dict[str, int], int]] = []
    stack = list(node.named_children)
    while stack:
        child = stack.pop()
        if child.type == "test_operator":
            operator = text_of(child)
            if operator in _SUBSCRIPT_TEST_OPERATORS:
                reasons.append(f"the test {operator} evaluates an array subscript in its operand")
        elif child.type == "binary_expression":
            operator_node = child.child_by_field_name("operator")
            if operator_node is not None and text_of(operator_node) in _ARITH_TEST_OPERATORS:
                for side in (child.child_by_field_name("left"), child.child_by_field_name("right")):
                    if side is not None:
                        uses.append((operand_uses(text_of(side)), side.start_byte))
        stack.extend(child.named_children)
    return reasons, uses


def is_arithmetic(node: Node) -> bool:
    """Whether a compound statement or loop node is ``(( ))`` or a C-style ``for``."""
    return node.type == "c_style_for_statement" or (bool(node.children) and node.children[0].type == "((")


def arithmetic_parts(node: Node) -> list[Node]:
    """The nodes an arithmetic statement evaluates (a C-style ``for``: its three clauses)."""
    if node.type != "c_style_for_statement":
        return [node]
    return [c for f in ("initializer", "condition", "update") for c in node.children_by_field_name(f)]


def record_for(node: Node, text_of: TextOf, integers: IntegerTable) -> None:
    """A plain ``for`` assigns its variable: an integer when every value is one."""
    variable = node.child_by_field_name("variable")
    if variable is None:
        return
    values = [text_of(child) for child in node.children_by_field_name("value")]
    name = text_of(variable)
    if values and all(INTEGER.fullmatch(value) for value in values):
        integers.integer(name, node.start_byte)
    else:
        integers.other.add(name)


def operand_uses(text: str) -> dict[str, int]:
    """Variables an arithmetic operand evaluates: a bare name, ``$x`` or an expression."""
    stripped = text.strip().strip("\"'")
    if re.fullmatch(r"[A-Za-z_]\w*", stripped):
        return {stripped: 0}
    return arith_uses(text)
