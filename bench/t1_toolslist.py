"""T1, T2: what ``tools/list`` costs a client, in bytes on the wire and in what a model is given.

Starts ``relay-shell`` (stdio, default settings) with the official Python client, whose server
process's stdout passes through ``tee`` into a file, and asks ``tools/list`` through the client.
Counted exactly:

- **T1, the whole response**: the bytes of every JSON-RPC response line that answered a
  ``tools/list`` request, as the server wrote them to stdout (UTF-8, no trailing newline).
- **T2, the model-visible part**: for each tool, the compact JSON (UTF-8) of its ``name``,
  ``description`` and ``inputSchema`` exactly as sent, summed over the tools: what a client
  hands a model as a tool definition. Output schemas, annotations and the envelope are left out.

KB here is 1,024 bytes; the exact byte counts are printed. The note breaks the response
down (descriptions, input schemas, output schemas, annotations, the rest) and names the
largest tools, so a missed target says where the bytes go.

    .venv/bin/python bench/t1_toolslist.py
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from common import RELAY, Figure, measure, relay_stdio, remove_tree, run_main, state_dir

KB = 1024
TOTAL_TARGET = 32 * KB
VISIBLE_TARGET = 16 * KB
TOKEN_BYTES = 4
"""About four bytes of this JSON per model token (English text and schema keywords)."""


@dataclass(frozen=True)
class Listing:
    """The tools/list answer as it crossed the wire."""

    wire_bytes: int
    tools: list[dict[str, object]]


def compact(value: object) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def wire_listing(capture: Path) -> Listing:
    """The tools/list response lines the server wrote (``capture`` is its stdout, teed)."""
    total, tools = 0, []
    for line in capture.read_bytes().splitlines():
        result = json.loads(line).get("result")
        if isinstance(result, dict) and isinstance(result.get("tools"), list):
            total += len(line)
            tools.extend(result["tools"])
    if not tools:
        raise RuntimeError(f"no tools/list response in the server's stdout ({capture})")
    return Listing(total, tools)


def _presence(tool: dict[str, object]) -> object:
    """The output schema's ``anyOf``: what a success carries, or ``error`` (docs/adr/0020)."""
    output = tool.get("outputSchema")
    return output.get("anyOf", []) if isinstance(output, dict) else []


def visible_note(listing: Listing) -> str:
    """Where the model-visible bytes go: the totals and the tools that weigh most."""
    tools = sorted(listing.tools, key=visible_bytes, reverse=True)[:6]
    tops = ", ".join(
        f"{tool['name']} {visible_bytes(tool):,} B (description {compact(tool.get('description', '')):,}, "
        f"input schema {compact(tool.get('inputSchema', {})):,})"
        for tool in tools
    )
    parameters = sum(
        len(schema.get("properties", {}))
        for tool in listing.tools
        if isinstance(schema := tool.get("inputSchema"), dict)
    )
    return (
        "name, description and inputSchema of every tool as sent, compact JSON, summed; "
        f"descriptions {sum(compact(t.get('description', '')) for t in listing.tools):,} B, "
        f"input schemas {sum(compact(t.get('inputSchema', {})) for t in listing.tools):,} B "
        f"({parameters} parameters); heaviest: {tops}."
    )


def visible_bytes(tool: dict[str, object]) -> int:
    return compact({key: tool.get(key) for key in ("name", "description", "inputSchema")})


def breakdown(listing: Listing) -> str:
    parts = {
        "descriptions": sum(compact(tool.get("description", "")) for tool in listing.tools),
        "input schemas": sum(compact(tool.get("inputSchema", {})) for tool in listing.tools),
        "output schemas": sum(compact(tool.get("outputSchema", {})) for tool in listing.tools),
        "annotations": sum(compact(tool.get("annotations", {})) for tool in listing.tools),
    }
    parts["names, keys and envelope"] = listing.wire_bytes - sum(parts.values())
    shares = ", ".join(f"{name} {size:,} B" for name, size in parts.items())
    presence = sum(compact(_presence(tool)) for tool in listing.tools)
    shares += (
        f" (of the output schemas, the anyOf lists of what a success or a failure carries: {presence:,} B)"
    )
    largest = sorted(listing.tools, key=compact, reverse=True)[:5]
    tops = ", ".join(
        f"{tool['name']} {compact(tool):,} B (output schema {compact(tool.get('outputSchema', {})):,} B)"
        for tool in largest
    )
    return f"{len(listing.tools)} tools; where the bytes go: {shares}; largest tools: {tops}."


async def listed(state: Path) -> Listing:
    capture = state / "stdout.jsonl"
    command = ("sh", "-c", 'exec "$0" | tee "$1"', RELAY, str(capture))
    async with relay_stdio(state, command=command) as relay:
        from mcp import Client

        assert isinstance(relay.client, Client)
        answer = await relay.client.list_tools()
    listing = wire_listing(capture)
    if sorted(tool.name for tool in answer.tools) != sorted(str(tool["name"]) for tool in listing.tools):
        raise RuntimeError("the client's tools differ from the response on the wire")
    return listing


async def sizes(total: Figure, visible: Figure) -> None:
    state = state_dir()
    try:
        listing = await listed(state)
    finally:
        remove_tree(state)
    seen = sum(visible_bytes(tool) for tool in listing.tools)
    total.value = f"{listing.wire_bytes:,} B (~{listing.wire_bytes // TOKEN_BYTES:,} tokens)"
    total.judge(listing.wire_bytes <= TOTAL_TARGET)
    total.note = breakdown(listing)
    visible.value = f"{seen:,} B (~{seen // TOKEN_BYTES:,} tokens)"
    visible.judge(seen <= VISIBLE_TARGET)
    visible.note = visible_note(listing)
    total.details = {"tools": len(listing.tools), "bytes": listing.wire_bytes}
    visible.details = {"bytes": seen}


async def main() -> list[Figure]:
    figures: list[Figure] = []
    visible = Figure("T2", "tools/list: model-visible part (names, descriptions, input schemas)")
    visible.target = f"<= {VISIBLE_TARGET // KB} KB"

    async def both(total: Figure) -> None:
        try:
            await sizes(total, visible)
        except Exception:
            visible.holds, visible.note = "error", "see T1"
            raise

    await measure(figures, "T1", "tools/list: whole response (stdio, default settings)",
                  f"<= {TOTAL_TARGET // KB} KB", both)  # fmt: skip
    figures.append(visible)
    return figures


if __name__ == "__main__":
    run_main(main)
