"""Host targets: parsing and validating ``user@host:port``, and the resolved :class:`HostSpec`.

Everything a caller types as a host passes through :func:`parse_target` (or an alias
lookup) before any connection is made, so no option (``-oProxyCommand=...``), whitespace
or shell metacharacter can reach a connection attempt, a known_hosts line or a log.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from relay_shell.config import KnownHostsMode
from relay_shell.errors import InvalidInput

DEFAULT_PORT = 22
MAX_HOSTNAME_LENGTH = 253
MAX_USER_LENGTH = 64

_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_USER = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*")
_PORT = re.compile(r"[0-9]{1,5}")

PoolKey = tuple[str, str, int, tuple[str, ...], str, tuple[object, ...]]


@dataclass(frozen=True)
class ConnectOverrides:
    """Per-call connection overrides (docs/tools.md): each ``None`` means inventory, then defaults."""

    user: str | None = None
    port: int | None = None
    key_path: Path | None = None
    known_hosts: KnownHostsMode | None = None
    jump: str | None = None


@dataclass(frozen=True)
class HostSpec:
    """Everything needed to connect to one host, fully resolved.

    ``jump`` is the flattened chain of hops, outermost first; each hop has an empty
    ``jump`` and the same known-hosts mode as the target.
    """

    alias: str
    hostname: str
    port: int
    user: str
    identity_files: tuple[Path, ...] = ()
    known_hosts: KnownHostsMode = KnownHostsMode.ACCEPT_NEW
    jump: tuple[HostSpec, ...] = ()
    tags: tuple[str, ...] = field(default=())
    source: str = "literal"  # "inventory" | "ssh_config" | "literal"

    def pool_key(self) -> PoolKey:
        """Everything that changes the connection: two specs share a connection only if equal."""
        return (
            self.user,
            self.hostname.lower(),
            self.port,
            tuple(str(path) for path in self.identity_files),
            self.known_hosts.value,
            tuple(hop.pool_key() for hop in self.jump),
        )

    def display(self) -> str:
        """``user@host:port`` (IPv6 literals in brackets)."""
        return f"{self.user}@{format_host_port(self.hostname, self.port)}"

    def describe(self) -> dict[str, object]:
        """A JSON-ready description (no secrets: key paths only, never key material)."""
        return {
            "alias": self.alias,
            "hostname": self.hostname,
            "port": self.port,
            "user": self.user,
            "identity_files": [str(path) for path in self.identity_files],
            "known_hosts": self.known_hosts.value,
            "jump": [hop.display() for hop in self.jump],
            "tags": list(self.tags),
            "source": self.source,
        }


def format_host_port(host: str, port: int) -> str:
    """``host:port``, with brackets around IPv6 literals."""
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}"


def known_hosts_name(host: str, port: int) -> str:
    """The name a known_hosts line uses: ``host`` for port 22, ``[host]:port`` otherwise."""
    return host if port == DEFAULT_PORT else f"[{host}]:{port}"


def validate_hostname(name: str, *, argument: str = "host") -> str:
    """Return ``name`` if it is an IP literal or an RFC 1123 host name, else raise.

    Raises:
        InvalidInput: empty, leading ``-``, whitespace or metacharacters, bad labels.
    """
    if not name:
        raise InvalidInput(argument, "host name must not be empty")
    if name.startswith("-"):
        raise InvalidInput(argument, f"host name must not start with '-' (got {name!r})")
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return name
    if len(name) > MAX_HOSTNAME_LENGTH:
        raise InvalidInput(argument, f"host name longer than {MAX_HOSTNAME_LENGTH} characters")
    labels = name[:-1].split(".") if name.endswith(".") else name.split(".")
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise InvalidInput(
                argument,
                f"{name!r} is not a valid host name (letters, digits and '-' in dot-separated "
                "labels of 1-63 characters) nor an IP address",
            )
    return name


def validate_user(user: str, *, argument: str = "user") -> str:
    """Return ``user`` if it is a plausible login name (no option or shell syntax), else raise."""
    if not user or len(user) > MAX_USER_LENGTH or not _USER.fullmatch(user):
        raise InvalidInput(
            argument, f"{user!r} is not a valid user name (letters, digits, '.', '_', '-'; no leading '-')"
        )
    return user


def validate_port(port: int | str, *, argument: str = "port") -> int:
    """Return the port as an int in 1..65535, else raise."""
    if isinstance(port, str):
        if not _PORT.fullmatch(port):
            raise InvalidInput(argument, f"port must be a number (got {port!r})")
        port = int(port)
    if isinstance(port, bool) or not 1 <= port <= 65535:
        raise InvalidInput(argument, f"port must be between 1 and 65535 (got {port})")
    return port


def parse_target(text: str) -> tuple[str | None, str, int | None]:
    """Split ``[user@]host[:port]`` into its parts, validating each.

    Accepts ``host``, ``user@host``, ``host:22``, ``[::1]``, ``[::1]:22`` and a bare IPv6
    literal (``::1``, no port). Returns ``(user or None, host, port or None)``.

    Raises:
        InvalidInput: (argument ``host``) anything malformed.
    """
    text = text.strip()
    if not text:
        raise InvalidInput("host", "must not be empty")
    user: str | None = None
    if "@" in text:
        user, _, text = text.rpartition("@")
        validate_user(user, argument="host")
    host, port = _split_host_port(text)
    validate_hostname(host, argument="host")
    return user, host, (validate_port(port, argument="host") if port is not None else None)


def _split_host_port(text: str) -> tuple[str, str | None]:
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise InvalidInput("host", f"missing ']' in {text!r}")
        host, rest = text[1:close], text[close + 1 :]
        if rest and not rest.startswith(":"):
            raise InvalidInput("host", f"unexpected text after ']' in {text!r}")
        return host, (rest[1:] if rest else None)
    if text.count(":") > 1:  # a bare IPv6 literal cannot carry a port
        return text, None
    host, colon, port = text.partition(":")
    return host, (port if colon else None)


def split_hosts(value: str | Sequence[str]) -> list[str]:
    """Host lists as comma/space separated text or a list; blanks dropped, duplicates removed in order."""
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    seen: dict[str, None] = {}
    for item in items:
        if not isinstance(item, str):
            raise InvalidInput("hosts", "every host must be a string")
        for part in item.replace(",", " ").split():
            seen.setdefault(part, None)
    return list(seen)


def split_jump_chain(value: str) -> list[str]:
    """``user@a:22,b`` -> ``["user@a:22", "b"]``; each hop is validated later when resolved."""
    hops = [hop.strip() for hop in value.split(",")]
    if any(not hop for hop in hops):
        raise InvalidInput("jump", f"empty hop in jump chain {value!r}")
    return hops
