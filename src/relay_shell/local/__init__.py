"""Local execution: subprocesses and PTYs. Knows nothing of MCP."""
