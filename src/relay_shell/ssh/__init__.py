"""SSH over asyncssh: pool, inventory, host keys, exec, sftp, forwards. Knows nothing of MCP."""
