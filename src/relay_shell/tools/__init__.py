"""The thin MCP surface: one module per tool family, each with ``register()``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from relay_shell.app import RelayServer, Services


def register_all(server: RelayServer, services: Services) -> None:
    """Register every tool family on ``server``; families may add services they own."""
    from relay_shell.tools import diagnostics, local, sessions, ssh

    local.register(server)
    sessions.register(server, services)
    ssh.register(server, services)
    diagnostics.register(server)
