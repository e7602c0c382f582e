"""The one MCP adapter: the pipeline's replies on the wire, on two planes.

- **Tool plane.** A tool call always answers with a ``CallToolResult``: one text block and
  ``structuredContent``; ``isError`` is true when the reply carries an error. A tier-3
  question pending in the client is the confirmer's ``InputRequiredResult``.
- **Protocol plane.** A resource read or prompt fetch that fails, and a call of a tool that
  does not exist, answer with a JSON-RPC error (``MCPError``): ``-32602`` (invalid params)
  when the request named something that does not exist or is malformed, ``-32603``
  otherwise (refused by policy, audit sink down, the read failed), with the error fields
  (``kind``, ``tier``, ``reason``...) in ``data``. Nothing is logged with a traceback:
  the audit record already tells what happened.
"""

from __future__ import annotations

from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, CallToolResult, InputRequiredResult, TextContent

from relay_shell.errors import RelayError
from relay_shell.governance.call import AwaitingInput, CallResult
from relay_shell.governance.shaping import error_fields
from relay_shell.vocabulary import ErrorKind, Tier


def tool_result(result: CallResult, pending: InputRequiredResult | None) -> CallToolResult:
    """The wire form of a tool call's result.

    ``pending`` is the question the confirmer handed the client; it passes through the SDK
    unchanged (tools declare ``CallToolResult`` because the SDK refuses a union return
    annotation, hence the declared type here).
    """
    if isinstance(result, AwaitingInput):
        if pending is None:
            raise RuntimeError("a confirmation is pending but the confirmer holds no question")
        return pending  # type: ignore[return-value]
    return CallToolResult(
        content=[TextContent(type="text", text=result.text)],
        structured_content=dict(result.data),
        is_error=result.error is not None,
    )


def error_code(kind: ErrorKind) -> int:
    """The JSON-RPC code of a failed resource read, prompt fetch or unknown tool."""
    return INVALID_PARAMS if kind is ErrorKind.INVALID else INTERNAL_ERROR


def protocol_error(
    error: RelayError, tier: Tier | None = None, *, message: str | None = None, **data: object
) -> MCPError:
    """``error`` as a JSON-RPC error; ``data`` adds fields (the URI read, the name asked for).

    ``message`` replaces the error's own message on the wire (its fields stay in ``data``).
    """
    fields = {**error_fields(error, tier), **data}
    return MCPError(code=error_code(error.kind), message=message or error.message, data=fields)


def raise_for_protocol(result: CallResult, **data: object) -> None:
    """Raise the JSON-RPC error of a failed resource read or prompt fetch; return on success.

    Raises:
        MCPError: the reply carries an error (or asks for input, which reads do not use).
    """
    if isinstance(result, AwaitingInput):
        raise MCPError(code=INTERNAL_ERROR, message="this request needs client input, which reads do not use")
    if result.error is not None:
        tier = result.data.get("tier")
        raise protocol_error(
            result.error, Tier(tier) if isinstance(tier, int) else None, message=None, **data
        )
