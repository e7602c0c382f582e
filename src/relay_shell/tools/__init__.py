"""The thin MCP surface: one module per tool family, each with ``register()``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from relay_shell.app import RelayServer, Services


def register_all(server: RelayServer, services: Services) -> None:
    """Register every tool family on ``server``; families may add services they own.

    Teardown runs last-registered-first, so the order here is also the shutdown order
    reversed: forwards close first, then sessions (SSH PTYs still have their pooled
    connection for an orderly TERM/KILL), then the SSH pool.
    """
    from relay_shell.tools import diagnostics, local, sessions, ssh, ssh_extra

    local.register(server)
    ssh.register(server, services)
    sessions.register(server, services)
    ssh_extra.register(server, services)
    diagnostics.register(server)
