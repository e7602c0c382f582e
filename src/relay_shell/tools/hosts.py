"""What every SSH tool shares: the host parameters, the connection overrides, resolution, targets.

A host is an inventory alias, an ssh_config alias, ``host``, ``user@host`` or
``user@host:port``; the overrides ``user``, ``port``, ``key_path``, ``known_hosts`` and
``jump`` win over the inventory and ssh_config (docs/tools.md). Their names say what they
are, so only ``jump`` (a format) carries a description in the schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from relay_shell.config import KnownHostsMode
from relay_shell.errors import InvalidInput
from relay_shell.governance.call import Identity
from relay_shell.governance.ownership import require_owner
from relay_shell.services import Services
from relay_shell.ssh.fleet import FanoutHistory
from relay_shell.ssh.inventory import ConnectOverrides, HostSpec
from relay_shell.ssh.selection import select_hosts
from relay_shell.ssh.targets import parse_target
from relay_shell.vocabulary import Tier

Host = Annotated[str, Field(max_length=512)]
User = Annotated[str, Field(max_length=256)]
Port = Annotated[int | None, Field(ge=1, le=65535)]
KeyPath = Annotated[str, Field(max_length=4096)]
KnownHosts = Literal["", "strict", "accept-new", "ignore"]
Jump = Annotated[str, Field(max_length=2048)]
Hosts = str | list[str]


@dataclass(frozen=True)
class HostArguments:
    """A single-host tool's ``host`` and connection overrides, as sent ("" = not overridden)."""

    host: str
    user: str
    port: int | None
    key_path: str
    known_hosts: str
    jump: str


def overrides(user: str, port: int | None, key_path: str, known_hosts: str, jump: str) -> ConnectOverrides:
    """Validated connection overrides; an empty string means "not overridden"."""
    mode: KnownHostsMode | None = None
    if known_hosts:
        try:
            mode = KnownHostsMode(known_hosts)
        except ValueError:
            raise InvalidInput("known_hosts", "must be strict, accept-new or ignore") from None
    key = Path(key_path).expanduser() if key_path else None
    if key is not None and not key.is_file():
        raise InvalidInput("key_path", f"{key_path!r} is not a readable file")
    if jump:
        for hop in jump.split(","):
            parse_target(hop.strip())
    return ConnectOverrides(user=user or None, port=port, key_path=key, known_hosts=mode, jump=jump or None)


def resolve_host(svc: Services, arguments: HostArguments) -> HostSpec:
    """``arguments.host`` resolved through the inventory with the call's overrides (validated).

    Raises:
        InvalidInput: a bad override value, or a host that is neither an alias nor [user@]host[:port].
    """
    connect = overrides(
        arguments.user, arguments.port, arguments.key_path, arguments.known_hosts, arguments.jump
    )
    return svc.inventory.resolve(arguments.host, connect)


def host_targets(host: str, spec: HostSpec) -> list[str]:
    """What the deny list sees for one host: the name as given, the resolved name, the jump chain."""
    targets = [host, spec.hostname, spec.display()]
    targets.extend(hop.hostname for hop in spec.jump)
    return list(dict.fromkeys(targets))


@dataclass(frozen=True)
class OwnedHistory:
    """The fan-out history as ``caller`` may read it: its own fan-outs, or every one for an admin.

    A ``failed:``/``ok:``/``skipped:`` term (selected, ``&`` or ``!``) naming another
    principal's fan-out is refused as ``denied`` (rule ``owner``), so no host pattern learns
    which hosts another principal reached or how they ended. An unknown id stays ``None``
    (the pattern then names it as not in the history: ``invalid``).
    """

    history: FanoutHistory
    caller: Identity

    def lookup(self, fanout_id: str) -> tuple[tuple[str, str], ...] | None:
        """Raises PolicyDenied: the fan-out belongs to another principal and the caller is no admin."""
        entry = self.history.entry(fanout_id)
        if entry is None:
            return None
        require_owner(entry.owner, self.caller, f"fan-out {fanout_id}", Tier.READ_ONLY)
        return entry.outcomes


def resolve_many(
    svc: Services, hosts: str | list[str], caller: Identity, limit: int | None = None, argument: str = "hosts"
) -> list[str]:
    """The host names a host pattern selects (empty = the whole inventory), in order, capped at
    ``limit`` (default ``RELAY_SHELL_FANOUT_MAX_HOSTS``). See ``relay_shell.ssh.hostpatterns``.
    Fan-out terms read only ``caller``'s own fan-outs (:class:`OwnedHistory`).

    Raises:
        InvalidInput: a bad term, a term that selects nothing, an empty selection (or no hosts
            given and an empty inventory), naming ``argument``.
        LimitReached: more than ``limit`` hosts.
        PolicyDenied: a fan-out term names another principal's fan-out (rule ``owner``).
    """
    cap = svc.settings.fanout_max_hosts if limit is None else limit
    history = OwnedHistory(svc.fanout_history, caller)
    return select_hosts(svc.inventory, hosts, history, limit=cap, argument=argument)
