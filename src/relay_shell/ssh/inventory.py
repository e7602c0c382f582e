"""The host inventory (ADR 0012): ssh_config aliases merged with a JSON inventory file.

Resolution of a host text, field by field (first that is set wins)::

    user      override > "user@" in the text > inventory > ssh_config > local user
    port      override > ":port" in the text > inventory > ssh_config > 22
    hostname  inventory > ssh_config HostName > the name itself
    keys      override key_path > inventory identity_file > ssh_config IdentityFile > agent + defaults
    known     override > inventory known_hosts > RELAY_SHELL_SSH_KNOWN_HOSTS
    jump      override > inventory jump > ssh_config ProxyJump > none

So the inventory wins per alias, field by field, and ssh_config ``Host`` blocks (wildcards
included) also apply to literal host names, as they do for ``ssh``. A jump chain is
flattened: the first hop's own jump (if any) is prepended, later hops' own jumps are
ignored (as ``ssh -J a,b`` does); every hop uses the target's known-hosts mode.
"""

from __future__ import annotations

import getpass
import json
import os
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from relay_shell.config import KnownHostsMode, Settings
from relay_shell.errors import ConfigError, InvalidInput
from relay_shell.ssh.sshconfig import HostConfig, SshConfig, expand_tokens
from relay_shell.ssh.targets import (
    DEFAULT_PORT,
    ConnectOverrides,
    HostSpec,
    parse_target,
    split_hosts,
    split_jump_chain,
    validate_hostname,
    validate_port,
    validate_user,
)

__all__ = ["ConnectOverrides", "HostSpec", "Inventory", "InventoryEntry", "split_hosts"]

MAX_INVENTORY_BYTES = 16 * 1024 * 1024
MAX_JUMP_HOPS = 8
_ALIAS = re.compile(r"[A-Za-z0-9_.@:\[\]-]{1,253}")


class InventoryEntry(BaseModel):
    """One inventory alias. Unknown fields are an error (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hostname: Annotated[str, Field(min_length=1, max_length=253)] | None = None
    user: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    port: Annotated[int, Field(ge=1, le=65535, strict=True)] | None = None
    identity_file: str | list[str] | None = None
    jump: str | list[str] | None = None
    known_hosts: KnownHostsMode | None = None
    tags: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(default_factory=list)

    def identity_files(self) -> list[str]:
        if self.identity_file is None:
            return []
        return [self.identity_file] if isinstance(self.identity_file, str) else list(self.identity_file)

    def jump_text(self) -> str | None:
        if self.jump is None:
            return None
        return self.jump if isinstance(self.jump, str) else ",".join(self.jump)


_ENTRIES = TypeAdapter(dict[str, InventoryEntry])
_NO_ENTRY = InventoryEntry()


class Inventory:
    """Resolved view of ssh_config + inventory file. Immutable once loaded."""

    def __init__(
        self,
        settings: Settings,
        ssh_config: SshConfig,
        entries: Mapping[str, InventoryEntry],
        *,
        ssh_config_path: Path | None,
        inventory_path: Path | None,
    ) -> None:
        self._settings = settings
        self._ssh_config = ssh_config
        self._entries = dict(entries)
        self._hosts: list[HostSpec] | None = None
        self._ssh_config_path = ssh_config_path
        self._inventory_path = inventory_path
        self._config_aliases = [
            alias
            for alias in ssh_config.aliases()
            if alias not in self._entries and ssh_config.lookup(alias).proxy_command is None
        ]

    @classmethod
    def load(cls, settings: Settings) -> Inventory:
        """Read ``SSH_CONFIG`` (missing -> empty) and ``INVENTORY`` (set but missing -> error).

        Every alias is resolved once here, so a bad hostname, port or jump in either file
        fails at start-up rather than at the first call.

        Raises:
            ConfigError: naming the file and the problem.
        """
        ssh_config_path = settings.expand(settings.ssh_config)
        ssh_config = SshConfig.load(ssh_config_path)
        inventory_path = settings.expand(settings.inventory) if settings.inventory is not None else None
        entries = _read_inventory(inventory_path) if inventory_path is not None else {}
        inventory = cls(
            settings,
            ssh_config,
            entries,
            ssh_config_path=ssh_config_path,
            inventory_path=inventory_path,
        )
        for alias in inventory.aliases():
            origin = inventory_path if alias in entries else ssh_config_path
            try:
                inventory.resolve(alias)
            except InvalidInput as exc:
                raise ConfigError(f"{origin}: host {alias!r}: {exc.problem}") from exc
        return inventory

    @property
    def ssh_config_path(self) -> Path | None:
        return self._ssh_config_path

    @property
    def inventory_path(self) -> Path | None:
        return self._inventory_path

    def aliases(self) -> list[str]:
        """Inventory aliases in file order, then ssh_config aliases not in the inventory."""
        return [*self._entries, *self._config_aliases]

    def hosts(self) -> list[HostSpec]:
        """Every alias resolved (validated at load, so this does not raise); computed once."""
        if self._hosts is None:
            self._hosts = [self.resolve(alias) for alias in self.aliases()]
        return list(self._hosts)

    def __len__(self) -> int:
        return len(self._entries) + len(self._config_aliases)

    def resolve(self, host: str, overrides: ConnectOverrides | None = None) -> HostSpec:
        """Turn an alias or ``[user@]host[:port]`` plus overrides into a :class:`HostSpec`.

        Raises:
            InvalidInput: a malformed host, user, port, key_path or jump, or conflicting values.
        """
        overrides = overrides or ConnectOverrides()
        text_user, name, text_port = self._split(host)
        override_user = validate_user(overrides.user) if overrides.user else None  # "" means unset
        override_port = validate_port(overrides.port) if overrides.port is not None else None
        user = _pick_one("user", override_user, text_user)
        port = _pick_one("port", override_port, text_port)
        known_hosts = _known_hosts_mode(overrides.known_hosts)
        if overrides.key_path is not None:
            key_path = overrides.key_path.expanduser()
            if not key_path.is_file():
                raise InvalidInput("key_path", f"no such key file: {key_path}")
        spec = self._resolve_name(
            name, user=user, port=port, known_hosts=known_hosts, key_path=overrides.key_path
        )
        jump_text = overrides.jump if overrides.jump is not None else self._jump_text(name)
        if jump_text is None or not jump_text.strip() or jump_text.strip().lower() == "none":
            return spec
        hops = self._resolve_chain(jump_text, spec.known_hosts, seen={name.lower()})
        return replace(spec, jump=tuple(hops))

    def _is_alias(self, name: str) -> bool:
        return name in self._entries or name in self._config_aliases

    def _split(self, host: str) -> tuple[str | None, str, int | None]:
        """An alias as is (also after ``user@``), otherwise a validated ``[user@]host[:port]``."""
        text = host.strip()
        if self._is_alias(text):
            return None, text, None
        user, at, rest = text.rpartition("@")
        if at and self._is_alias(rest):
            return validate_user(user, argument="host"), rest, None
        return parse_target(text)

    def _resolve_name(
        self,
        name: str,
        *,
        user: str | None,
        port: int | None,
        known_hosts: KnownHostsMode | None,
        key_path: Path | None,
    ) -> HostSpec:
        """Resolve one name (alias or literal) without its jump chain."""
        found = self._entries.get(name)
        entry = found if found is not None else _NO_ENTRY
        config = self._ssh_config.lookup(name)
        if config.proxy_command is not None and found is None:
            raise InvalidInput(
                "host",
                f"{name!r} is reached through a ProxyCommand ({config.origins.get('proxycommand')}), which "
                "relay-shell does not run; use ProxyJump or an inventory entry with `jump` instead",
            )
        if found is not None:
            source = "inventory"
        elif name in self._config_aliases:
            source = "ssh_config"
        else:
            source = "literal"
        resolved_user = validate_user(user or entry.user or config.user or _local_user())
        resolved_port = port or entry.port or _config_port(config) or DEFAULT_PORT
        hostname = entry.hostname or _config_hostname(config, name) or name
        validate_hostname(hostname)
        if key_path is not None:
            identity_files: tuple[Path, ...] = (key_path.expanduser(),)
        elif entry.identity_file is not None:
            identity_files = tuple(Path(path).expanduser() for path in entry.identity_files())
        else:
            identity_files = tuple(
                Path(expand_tokens(path, host=hostname, remote_user=resolved_user, port=resolved_port,
                                   origin=config.origins.get("identityfile", "ssh_config")))
                for path in config.identity_files
            )  # fmt: skip
        mode = known_hosts or entry.known_hosts or self._settings.ssh_known_hosts
        return HostSpec(
            alias=name,
            hostname=hostname,
            port=resolved_port,
            user=resolved_user,
            identity_files=identity_files,
            known_hosts=mode,
            jump=(),
            tags=tuple(entry.tags),
            source=source,
        )

    def _jump_text(self, name: str) -> str | None:
        entry = self._entries.get(name)
        if entry is not None and entry.jump is not None:
            return entry.jump_text()
        return self._ssh_config.lookup(name).proxy_jump

    def _resolve_chain(self, text: str, mode: KnownHostsMode, *, seen: set[str]) -> list[HostSpec]:
        """Resolve a jump chain, prepending the first hop's own jump chain (recursively)."""
        if len(seen) > MAX_JUMP_HOPS:
            raise InvalidInput("jump", f"jump chain longer than {MAX_JUMP_HOPS} hops or circular")
        hops: list[HostSpec] = []
        for index, hop_text in enumerate(split_jump_chain(text)):
            try:
                user, name, port = self._split(hop_text)
            except InvalidInput as exc:
                raise InvalidInput("jump", f"hop {hop_text!r}: {exc.problem}") from exc
            if name.lower() in seen:
                raise InvalidInput("jump", f"jump chain is circular at {name!r}")
            if index == 0:
                own = self._jump_text(name)
                if own and own.strip().lower() != "none":
                    hops.extend(self._resolve_chain(own, mode, seen=seen | {name.lower()}))
            hops.append(self._resolve_name(name, user=user, port=port, known_hosts=mode, key_path=None))
        return hops


def _known_hosts_mode(value: KnownHostsMode | str | None) -> KnownHostsMode | None:
    if value is None or isinstance(value, KnownHostsMode):
        return value
    try:
        return KnownHostsMode(value)
    except ValueError:
        allowed = ", ".join(mode.value for mode in KnownHostsMode)
        raise InvalidInput("known_hosts", f"must be one of {allowed} (got {value!r})") from None


def _pick_one[T](argument: str, override: T | None, from_text: T | None) -> T | None:
    if override is not None and from_text is not None and override != from_text:
        raise InvalidInput(argument, f"{override!r} conflicts with {from_text!r} given in `host`")
    return override if override is not None else from_text


def _config_port(config: HostConfig) -> int | None:
    if config.port is None:
        return None
    try:
        return validate_port(config.port)
    except InvalidInput as exc:
        raise InvalidInput("port", f"{config.origins.get('port', 'ssh_config')}: {exc.problem}") from exc


def _config_hostname(config: HostConfig, name: str) -> str | None:
    if config.hostname is None:
        return None
    origin = config.origins.get("hostname", "ssh_config")
    return expand_tokens(config.hostname, host=name, remote_user="", port=0, origin=origin)


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _read_inventory(path: Path) -> dict[str, InventoryEntry]:
    """Parse and validate the JSON inventory file.

    Raises:
        ConfigError: missing, unreadable, not JSON, wrong shape, bad alias or field.
    """
    try:
        if path.stat().st_size > MAX_INVENTORY_BYTES:
            raise ConfigError(f"inventory {path}: larger than {MAX_INVENTORY_BYTES} bytes")
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"inventory {path}: file not found (RELAY_SHELL_INVENTORY)") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"inventory {path}: cannot read: {exc}") from exc
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"inventory {path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    if not isinstance(document, dict):
        raise ConfigError(f"inventory {path}: expected an object mapping alias -> host entry")
    try:
        entries = _ENTRIES.validate_python(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"inventory {path}: {where}: {first['msg']}") from exc
    for alias, entry in entries.items():
        if not _ALIAS.fullmatch(alias) or alias.startswith("-"):
            raise ConfigError(f"inventory {path}: alias {alias!r} is not a valid name")
        try:
            if entry.hostname is not None:
                validate_hostname(entry.hostname, argument="hostname")
            if entry.user is not None:
                validate_user(entry.user)
        except InvalidInput as exc:
            raise ConfigError(f"inventory {path}: {alias}.{exc.argument}: {exc.problem}") from exc
    return entries
