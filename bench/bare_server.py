"""The floor server of the bench: a bare MCPServer with a no-op tool and a tool that spawns ``true``.

Same SDK and the same transports as relay-shell, nothing else imported:

- ``noop``: returns at once (P7's cold-start floor, and the no-op round trip of P1 and P1H);
- ``spawn_true``: runs ``true`` with ``asyncio.create_subprocess_exec`` (stdin /dev/null,
  stdout and stderr pipes read to EOF) and returns its exit status; P8's floor server under
  the same load as relay-shell's ``shell_exec true``.

    .venv/bin/python bench/bare_server.py                 # stdio
    .venv/bin/python bench/bare_server.py --http PORT     # streamable HTTP on 127.0.0.1:PORT/mcp
"""

import asyncio
import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("bare", log_level="WARNING")


@server.tool()
def noop() -> str:
    """Do nothing."""
    return "ok"


@server.tool()
async def spawn_true() -> int:
    """Run ``true`` and return its exit status."""
    process = await asyncio.create_subprocess_exec(
        "true",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    await process.communicate()
    return process.returncode if process.returncode is not None else -1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        asyncio.run(server.run_streamable_http_async(host="127.0.0.1", port=int(sys.argv[2])))
    else:
        server.run("stdio")
