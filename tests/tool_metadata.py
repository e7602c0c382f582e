"""The MCP SDK's per-function tool metadata, derived once per test process.

``build_server`` registers every tool; the SDK derives each tool's argument model and its
input and output JSON schemas from the tool function's signature (``func_metadata``), about
a fifth of a second for the whole set. A server process builds that table once; the test
process builds a server for most tests, and re-derived the same metadata from the same
module-level functions hundreds of times.

:func:`install` memoises ``func_metadata`` for the tool registrations, keyed on the function
object and the other arguments. Everything else about a registration (name, description,
annotations, the ``Tool`` itself, the server's tool table) is still built per server, and
the first registration of each function goes through the SDK's own derivation: the schemas
and argument validation every test sees are the ones the SDK produces for that function.
A function the test process defines anew (a fixture tool, a different closure) is a new key.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

from mcp.server.mcpserver.tools import base as tool_base
from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata, func_metadata

_derived: dict[tuple[Callable[..., Any], tuple[str, ...], bool | None], FuncMetadata] = {}


def memoised_func_metadata(
    func: Callable[..., Any], skip_names: Sequence[str] = (), structured_output: bool | None = None
) -> FuncMetadata:
    """A copy of ``func_metadata(func, skip_names, structured_output)``, derived once per key."""
    key = (func, tuple(skip_names), structured_output)
    pristine = _derived.get(key)
    if pristine is None:
        pristine = _derived[key] = func_metadata(
            func, skip_names=skip_names, structured_output=structured_output
        )
    return pristine.model_copy(update={"output_schema": copy.deepcopy(pristine.output_schema)})


def install() -> None:
    """Make the SDK's tool registration use :func:`memoised_func_metadata` (idempotent)."""
    tool_base.func_metadata = memoised_func_metadata  # type: ignore[attr-defined]
