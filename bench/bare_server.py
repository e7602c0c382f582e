"""The cold-start floor for P7: a bare MCPServer over stdio with one no-op tool.

Same SDK and the same stdio transport as relay-shell, nothing else imported.

    .venv/bin/python bench/bare_server.py
"""

from mcp.server.mcpserver import MCPServer

server = MCPServer("bare")


@server.tool()
def noop() -> str:
    """Do nothing."""
    return "ok"


if __name__ == "__main__":
    server.run("stdio")
