"""Helpers shared by the SSH tests (fixtures live in conftest.py)."""

from __future__ import annotations

from typing import Any

from relay_shell.config import Settings
from relay_shell.ssh.inventory import Inventory
from relay_shell.ssh.targets import ConnectOverrides, HostSpec
from tests.sshd import ClientKey, SshdInstance


def spec_for(target: SshdInstance | str, settings: Settings, key: ClientKey, **overrides: Any) -> HostSpec:
    """The HostSpec for a test sshd (or a ``user@host:port`` text), authenticating with ``key``."""
    overrides.setdefault("key_path", key.private_path)
    text = target if isinstance(target, str) else target.target()
    return Inventory.load(settings).resolve(text, ConnectOverrides(**overrides))


def trust(settings: Settings, *instances: SshdInstance) -> None:
    """Add the instances' host keys to the known_hosts file of ``settings`` (probes record none)."""
    path = settings.expand(settings.ssh_known_hosts_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as known:
        known.writelines(instance.known_hosts_line() for instance in instances)
