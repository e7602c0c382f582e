"""Host key verification (docs/adr/0012-ssh-connections.md): ``strict``, ``accept-new`` and ``ignore``.

The check runs inside the key exchange, before authentication: asyncssh is given the keys
the known_hosts file lists for the exact name (``host`` for port 22, ``[host]:port``
otherwise; hashed and wildcard entries included) and calls
:meth:`VerifyingClient.validate_host_public_key` for any other key, which decides:

- ``strict``: unknown host or different key -> refused;
- ``accept-new``: unknown host -> accepted and appended to the file (plain ``[host]:port``
  form, under a file lock, re-checked so concurrent first connections record it once);
  a host with other keys on record -> refused, naming the old and new SHA-256 fingerprints;
- ``ignore``: asyncssh is given ``known_hosts=None`` and nothing is checked.

A connection made with ``record=False`` (``ssh_check``: a read-only probe) never writes the
file: under ``accept-new`` an unknown host is refused like under ``strict``, with a detail
saying the key is unknown and was not recorded.

Unlike asyncssh's own matcher, an entry for port 22 never vouches for another port
(OpenSSH keeps ``[host]:2222`` separate), so two daemons behind one address do not clash.
"""

from __future__ import annotations

import binascii
import contextlib
import fcntl
import fnmatch
import hashlib
import hmac
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from relay_shell.config import KnownHostsMode
from relay_shell.ssh.targets import known_hosts_name

KnownHostsArgument = tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey], list[asyncssh.SSHKey]] | None


@dataclass(frozen=True)
class KnownKeys:
    """What the file says about one name."""

    host_keys: tuple[asyncssh.SSHKey, ...] = ()
    ca_keys: tuple[asyncssh.SSHKey, ...] = ()
    revoked: tuple[asyncssh.SSHKey, ...] = ()


@dataclass(frozen=True)
class _Line:
    marker: str | None
    patterns: tuple[str, ...]
    key: asyncssh.SSHKey


@dataclass
class _Parsed:
    exact: dict[str, list[_Line]] = field(default_factory=dict)
    patterned: list[_Line] = field(default_factory=list)

    def lookup(self, name: str) -> KnownKeys:
        name = name.lower()
        lines = [
            *self.exact.get(name, []),
            *(line for line in self.patterned if _matches(line.patterns, name)),
        ]
        return KnownKeys(
            host_keys=tuple(line.key for line in lines if line.marker is None),
            ca_keys=tuple(line.key for line in lines if line.marker == "cert-authority"),
            revoked=tuple(line.key for line in lines if line.marker == "revoked"),
        )


def fingerprint(key: asyncssh.SSHKey) -> str:
    """``SHA256:<base64>`` as ``ssh-keygen -l`` prints it."""
    return str(key.get_fingerprint("sha256"))


def known_hosts_line(host: str, port: int, key: asyncssh.SSHKey) -> str:
    """One plain known_hosts line (no comment), ending in a newline."""
    algorithm, data = key.export_public_key("openssh").decode("ascii").split()[:2]
    return f"{known_hosts_name(host, port)} {algorithm} {data}\n"


class KnownHostsFile:
    """A known_hosts file: parsed on demand (cached until it changes on disk) and appended to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._parsed = _Parsed()

    def lookup(self, host: str, port: int) -> KnownKeys:
        return self._current().lookup(known_hosts_name(host, port))

    def record(self, host: str, port: int, key: asyncssh.SSHKey) -> tuple[asyncssh.SSHKey, ...]:
        """Append ``key`` for ``host:port`` unless the file already has keys for that name.

        Returns the keys already on record that differ from ``key`` (empty: recorded, or
        already present). Holds an exclusive ``flock`` while re-reading and appending.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            with _locked(descriptor):
                self._stamp = None  # another process may have appended: re-read under the lock
                existing = self.lookup(host, port).host_keys
                if key in existing:
                    return ()
                if existing:
                    return existing
                size = os.fstat(descriptor).st_size
                needs_newline = size > 0 and os.pread(descriptor, 1, size - 1) != b"\n"
                line = known_hosts_line(host, port, key)
                os.write(descriptor, (("\n" if needs_newline else "") + line).encode("ascii"))
                self._stamp = None
                return ()
        finally:
            os.close(descriptor)

    def _current(self) -> _Parsed:
        try:
            status = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._parsed = None, _Parsed()
            return self._parsed
        stamp = (status.st_ino, status.st_mtime_ns, status.st_size)
        if stamp != self._stamp:
            self._parsed = _parse(self.path.read_text(encoding="utf-8", errors="replace"))
            self._stamp = stamp
        return self._parsed


@contextlib.contextmanager
def _locked(descriptor: int) -> Iterator[None]:
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(descriptor, fcntl.LOCK_UN)


def _parse(text: str) -> _Parsed:
    """Parse known_hosts text; lines that cannot be parsed are skipped, as OpenSSH does."""
    parsed = _Parsed()
    for raw in text.splitlines():
        fields = raw.split()
        if not fields or fields[0].startswith("#"):
            continue
        marker = None
        if fields[0].startswith("@"):
            marker, fields = fields[0][1:], fields[1:]
            if marker not in ("cert-authority", "revoked"):
                continue
        if len(fields) < 3:
            continue
        try:
            key = asyncssh.import_public_key(f"{fields[1]} {fields[2]}")
        except (asyncssh.KeyImportError, ValueError):
            continue
        patterns = tuple(_normalize(pattern) for pattern in fields[0].split(","))
        line = _Line(marker, patterns, key)
        if any(char in fields[0] for char in "*?!|"):
            parsed.patterned.append(line)
        else:
            for pattern in patterns:
                parsed.exact.setdefault(pattern, []).append(line)
    return parsed


def _normalize(pattern: str) -> str:
    """Host names compare case-insensitively; hashed entries (``|1|salt|hash``) are base64: kept as is."""
    return pattern if pattern.lstrip("!").startswith("|") else pattern.lower()


def _matches(patterns: tuple[str, ...], name: str) -> bool:
    matched = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern[1:] if negated else pattern
        hit = _hashed_match(body, name) if body.startswith("|") else fnmatch.fnmatchcase(name, body)
        if hit and negated:
            return False
        matched = matched or hit
    return matched


def _hashed_match(pattern: str, name: str) -> bool:
    """OpenSSH ``|1|salt|hash`` entries: HMAC-SHA1 of the name keyed with the salt."""
    parts = pattern.split("|")
    if len(parts) != 4 or parts[1] != "1":
        return False
    try:
        salt, expected = binascii.a2b_base64(parts[2]), binascii.a2b_base64(parts[3])
    except binascii.Error:
        return False
    return hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), expected)


class VerifyingClient(asyncssh.SSHClient):
    """The asyncssh client object of one connection: host key decisions and loss notice.

    After a refused handshake, :attr:`problem` explains why (asyncssh's own exception
    only says "not trusted").
    """

    def __init__(
        self,
        mode: KnownHostsMode,
        known_hosts: KnownHostsFile,
        on_lost: Callable[[], None] | None = None,
        *,
        record: bool = True,
    ) -> None:
        self.mode = mode
        self.known_hosts = known_hosts
        self.on_lost = on_lost
        self.record = record
        self.problem: str | None = None

    def known_hosts_argument(self, host: str, port: int) -> KnownHostsArgument:
        """What to pass as asyncssh's ``known_hosts`` for this connection."""
        if self.mode is KnownHostsMode.IGNORE:
            return None
        known = self.known_hosts.lookup(host, port)
        return list(known.host_keys), list(known.ca_keys), list(known.revoked)

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        """Called by asyncssh for a key not among the known ones; decides per mode."""
        name = known_hosts_name(host, port)
        known = self.known_hosts.lookup(host, port).host_keys
        if key in known:  # recorded meanwhile by a concurrent first connection
            return True
        if not known and self.mode is KnownHostsMode.ACCEPT_NEW:
            if not self.record:
                self.problem = (
                    f"unknown host key for {name}: {fingerprint(key)} ({key.get_algorithm()}) is not in "
                    f"{self.known_hosts.path}, and this probe records no host key; check it (ssh_keyscan), "
                    "then the first connection of another SSH tool records it (known_hosts accept-new)"
                )
                return False
            known = self.known_hosts.record(host, port, key)
            if not known:
                return True
        if known:
            old = ", ".join(f"{fingerprint(item)} ({item.get_algorithm()})" for item in known)
            self.problem = (
                f"host key for {name} has CHANGED: {self.known_hosts.path} has {old}, the server "
                f"presented {fingerprint(key)} ({key.get_algorithm()}). This can be a man-in-the-middle "
                f"attack or a reinstalled host; if the change is expected, remove the old entry "
                f"(ssh-keygen -R '{name}' -f {self.known_hosts.path}) and connect again"
            )
        else:
            self.problem = (
                f"no host key for {name} in {self.known_hosts.path} and known_hosts mode is strict; "
                f"the server presented {fingerprint(key)} ({key.get_algorithm()}): verify it "
                f"(ssh_keyscan) and add it to the file"
            )
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.on_lost is not None:
            self.on_lost()
