"""The thin MCP surface: one module per tool family, each with ``register()``.

``local`` (shell_exec, shell_script), ``sessions`` (shell_spawn, session_*), ``ssh`` (ssh_exec,
ssh_check, ssh_fanout, ssh_keyscan; it registers ``inventory``'s ssh_hosts and the inventory
resources), ``ssh_sessions``
(ssh_spawn), ``sftp`` (ssh_upload, ssh_download), ``forwards`` (ssh_forward*),
``diagnostics`` (server_info, audit_tail, the operating_guide prompt). ``base`` hands a
call to the pipeline, ``adapter`` maps the pipeline's replies to the wire, ``hosts`` and
``shape`` hold what several families share.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

from relay_shell.services import Services


def register_all(server: MCPServer, services: Services) -> None:
    """Register every tool family on ``server`` (the inventory resources read ``services``)."""
    from relay_shell.tools import diagnostics, forwards, local, sessions, sftp, ssh, ssh_sessions

    local.register(server)
    sessions.register(server)
    ssh.register(server, services)
    ssh_sessions.register(server)
    sftp.register(server)
    forwards.register(server)
    diagnostics.register(server)
