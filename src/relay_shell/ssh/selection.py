"""Host patterns evaluated against the inventory and the fan-out history.

The glue between :mod:`relay_shell.ssh.hostpatterns` (pure grammar and evaluation) and the
loaded :class:`~relay_shell.ssh.inventory.Inventory`: aliases and tags come from the
inventory, endpoints from its resolution rules, ``failed:``/``ok:``/``skipped:`` terms from
a :class:`HistorySource` (the :class:`~relay_shell.ssh.fleet.FanoutHistory`, or the tools' view
of it that lets a caller read only its own fan-outs). Nothing here connects anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from relay_shell.errors import InvalidInput, LimitReached
from relay_shell.ssh.hostpatterns import Catalog, Endpoint, canonical_host, select
from relay_shell.ssh.inventory import ConnectOverrides, HostSpec, Inventory
from relay_shell.ssh.targets import format_host_port


class HistorySource(Protocol):
    """Where ``failed:``/``ok:``/``skipped:`` terms read earlier fan-outs from.

    ``lookup`` returns the ``(host, status)`` pairs of a fan-out, ``None`` when unknown; it may
    raise to refuse a fan-out the caller may not use (the error propagates unchanged).
    """

    def lookup(self, fanout_id: str) -> Sequence[tuple[str, str]] | None: ...


def inventory_catalog(inventory: Inventory, history: HistorySource | None, *, argument: str) -> Catalog:
    """The :class:`Catalog` of ``inventory``; an unresolvable name is ``invalid`` naming ``argument``."""
    specs = inventory.hosts()

    def endpoint(name: str) -> Endpoint:
        try:
            spec = inventory.resolve(name)
        except InvalidInput as exc:
            raise InvalidInput(argument, f"{name!r}: {exc.problem}") from exc
        return Endpoint(spec.user, spec.hostname, spec.port)

    return Catalog(
        aliases=[spec.alias for spec in specs],
        tags={spec.alias: spec.tags for spec in specs},
        endpoint=endpoint,
        history=history.lookup if history is not None else (lambda fanout_id: None),
    )


def select_hosts(
    inventory: Inventory,
    pattern: str | Sequence[str],
    history: HistorySource | None,
    *,
    limit: int,
    argument: str = "hosts",
) -> list[str]:
    """The names ``pattern`` selects (the whole inventory when it is empty), at most ``limit``.

    Raises:
        InvalidInput: a bad term, a term that selects nothing, an empty selection, or an
            empty inventory with no pattern.
        LimitReached: more than ``limit`` hosts (``RELAY_SHELL_FANOUT_MAX_HOSTS``).
    """
    names = select(pattern, inventory_catalog(inventory, history, argument=argument), argument=argument)
    if len(names) > limit:
        raise LimitReached("RELAY_SHELL_FANOUT_MAX_HOSTS", limit, f"{len(names)} hosts selected")
    return names


def resolve_selected(
    inventory: Inventory, name: str, overrides: ConnectOverrides | None = None, *, argument: str = "hosts"
) -> HostSpec:
    """One selected name resolved; a problem with the name is ``invalid`` naming ``argument``."""
    try:
        return inventory.resolve(name, overrides)
    except InvalidInput as exc:
        if exc.argument != "host":
            raise
        raise InvalidInput(argument, f"{name!r}: {exc.problem}") from exc


def all_configured(inventory: Inventory, specs: Sequence[HostSpec]) -> bool:
    """Does every spec reach an inventory or ssh_config host as configured: the same host and
    port by the same route (jump chain), whatever name or user it was written with?"""
    configured = {_route(spec) for spec in inventory.hosts()}
    return all(_route(spec) in configured for spec in specs)


def _route(spec: HostSpec) -> tuple[tuple[str, int], ...]:
    return tuple((canonical_host(hop.hostname), hop.port) for hop in (*spec.jump, spec))


def keyscan_addresses(
    inventory: Inventory, names: Sequence[str], port: int | None
) -> tuple[list[str], list[str]]:
    """What a key scan dials for each name (an alias: its host, and its port unless ``port`` is
    given; anything else as written) and what the deny list reads (names, hosts, addresses).

    Raises:
        InvalidInput: an alias reached through a jump host (a key scan connects directly).
    """
    aliases = set(inventory.aliases())
    addresses: list[str] = []
    targets: list[str] = []
    for name in names:
        if name not in aliases:
            addresses.append(name)
            targets.append(name)
            continue
        spec = inventory.resolve(name)
        if spec.jump:
            raise InvalidInput("hosts", f"{name!r} is reached through a jump host; keyscan connects directly")
        addresses.append(format_host_port(spec.hostname, port or spec.port))
        targets.extend([name, spec.hostname, addresses[-1]])
    return addresses, list(dict.fromkeys(targets))
