"""ssh_hosts and the inventory resources: the resolved hosts, read without dialling any (docs/tools.md).

``tools/ssh.py`` registers them with the other SSH tools.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult

from relay_shell.governance.call import Identity, Plan
from relay_shell.services import Services
from relay_shell.ssh.hostpatterns import split_terms
from relay_shell.ssh.inventory import HostSpec
from relay_shell.ssh.selection import resolve_selected
from relay_shell.tools.base import Listing, identity_of, listing_plan, run_tool
from relay_shell.tools.hosts import Hosts, resolve_many
from relay_shell.tools.models import HostsResult


def spec_fields(spec: HostSpec) -> dict[str, object]:
    return {
        "alias": spec.alias, "hostname": spec.hostname, "user": spec.user, "port": spec.port,
        "identity_files": [str(p) for p in spec.identity_files], "known_hosts": spec.known_hosts.value,
        "jump": [hop.display() for hop in spec.jump], "tags": list(spec.tags), "source": spec.source,
    }  # fmt: skip


def host_line(spec: HostSpec) -> str:
    """One host in the text of ``ssh_hosts``: alias, user@host:port and the jump chain."""
    via = f" via {','.join(hop.display() for hop in spec.jump)}" if spec.jump else ""
    return f"{spec.alias}: {spec.display()}{via}"


@dataclass(frozen=True)
class SshHosts:
    """ssh_hosts's arguments."""

    pattern: str | list[str]
    caller: Identity


def plan_ssh_hosts(request: SshHosts, svc: Services) -> Plan[Listing[HostSpec]]:
    """The whole inventory, or exactly what ``pattern`` selects (resolved, nothing dialled)."""
    if not split_terms(request.pattern, argument="pattern"):
        return listing_plan(Listing("host", "hosts", svc.inventory.hosts, host_line, spec_fields))
    names = resolve_many(svc, request.pattern, request.caller, argument="pattern")
    specs = [resolve_selected(svc.inventory, name, argument="pattern") for name in names]
    return listing_plan(Listing("host", "hosts", lambda: specs, host_line, spec_fields))


async def ssh_hosts(
    ctx: Context,
    pattern: Hosts = "",
) -> Annotated[CallToolResult, HostsResult]:
    return await run_tool(ctx, "ssh_hosts", plan_ssh_hosts, SshHosts(pattern, identity_of(ctx)))


def register_inventory_resources(server: MCPServer, svc: Services) -> None:
    """The inventory resources (they read ``svc.inventory``)."""
    inventory = svc.inventory

    @server.resource("relay-shell://inventory", name="inventory", mime_type="application/json",
                     description="All hosts of the resolved inventory (ssh_config + JSON inventory).")  # fmt: skip
    def inventory_resource() -> str:
        return json.dumps([spec_fields(s) for s in inventory.hosts()], indent=2)

    @server.resource("relay-shell://inventory/{host}", name="inventory-host", mime_type="application/json",
                     description="One host's resolved connection spec.")  # fmt: skip
    def inventory_host_resource(host: str) -> str:
        return json.dumps(spec_fields(inventory.resolve(host)), indent=2)

    @server.resource("relay-shell://ssh-config", name="ssh-config", mime_type="application/json",
                     description="The ssh_config path in use and its Host aliases.")  # fmt: skip
    def ssh_config_resource() -> str:
        inventory_path = str(inventory.inventory_path) if inventory.inventory_path else None
        return json.dumps(
            {
                "path": str(inventory.ssh_config_path),
                "inventory": inventory_path,
                "aliases": inventory.aliases(),
            },
            indent=2,
        )
