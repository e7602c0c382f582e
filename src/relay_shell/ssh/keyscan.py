"""Fetch host keys natively (``ssh_keyscan`` in docs/tools.md): no ``ssh-keyscan`` binary.

Per host: one short connection reads the server's ``KEXINIT`` to learn which host key
algorithms it offers (OpenSSH resets a connection whose client asks for a type it lacks,
which a client cannot tell apart from a dropped handshake), then one key exchange per
requested and offered type (``asyncssh.get_server_host_key`` restricted to it), all under
the host's deadline. A type the server does not offer is simply absent; a host that
cannot be reached gets an error reason. Every host name is validated before any
connection is made. Handshakes dropped by ``MaxStartups`` are retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncssh
from asyncssh.public_key import get_public_key_algs

from relay_shell.errors import InvalidInput
from relay_shell.ssh.connect import BACKOFF_FIRST_S, BACKOFF_MAX_S
from relay_shell.ssh.hostkeys import fingerprint, known_hosts_line
from relay_shell.ssh.targets import parse_target, validate_port
from relay_shell.ssh.translate import classify, is_handshake_drop

MAX_PARALLEL_EXCHANGES = 32
MAX_BANNER_BYTES = 8192
MAX_PRE_BANNER_LINES = 32
MAX_KEXINIT_BYTES = 35000
MSG_KEXINIT = 20


@dataclass(frozen=True)
class ScannedKey:
    host: str
    port: int
    key_type: str  # the key's algorithm as known_hosts writes it (``ssh-rsa`` for rsa-sha2-512)
    known_hosts_line: str  # ``host type base64`` or ``[host]:port type base64``, no newline
    fingerprint_sha256: str  # ``SHA256:...``


def _validate(hosts: Sequence[str], port: int, key_types: Sequence[str]) -> list[tuple[str, str, int]]:
    validate_port(port)
    supported = {name.decode() for name in get_public_key_algs()}
    if not key_types:
        raise InvalidInput("key_types", "at least one key type is required")
    unknown = [name for name in key_types if name not in supported]
    if unknown:
        raise InvalidInput("key_types", f"unsupported {unknown}; supported: {', '.join(sorted(supported))}")
    parsed = []
    for text in hosts:
        try:
            user, host, host_port = parse_target(text)
        except InvalidInput as exc:
            raise InvalidInput("hosts", exc.problem) from exc
        if user is not None:
            raise InvalidInput("hosts", f"{text!r}: keyscan takes host[:port], not user@host")
        parsed.append((text, host, host_port or port))
    return parsed


async def keyscan(
    hosts: Sequence[str], *, port: int, key_types: Sequence[str], timeout_s: float
) -> list[tuple[str, list[ScannedKey], str | None]]:
    """For each host (``host``, ``host:port`` or ``[v6]:port``): its keys, or why none came.

    Returns ``(host as given, keys, error or None)`` in input order; keys are de-duplicated
    (``rsa-sha2-256`` and ``rsa-sha2-512`` return the same RSA key).

    Raises:
        InvalidInput: a malformed host name, port or unknown key type (before any connection).
    """
    parsed = _validate(hosts, port, key_types)
    gate = asyncio.Semaphore(MAX_PARALLEL_EXCHANGES)

    async def scan(text: str, host: str, host_port: int) -> tuple[str, list[ScannedKey], str | None]:
        deadline = asyncio.get_running_loop().time() + timeout_s
        offered = await _retrying(gate, deadline, lambda: _offered_algorithms(host, host_port))
        if isinstance(offered, str):
            return text, [], offered
        wanted = [key_type for key_type in key_types if key_type in offered]
        outcomes = await asyncio.gather(
            *(_retrying(gate, deadline, _fetcher(host, host_port, key_type)) for key_type in wanted)
        )
        keys: list[ScannedKey] = []
        seen: list[asyncssh.SSHKey] = []
        errors: list[str] = []
        for outcome in outcomes:
            if isinstance(outcome, str):
                errors.append(outcome)
            elif outcome is not None and outcome not in seen:
                seen.append(outcome)
                keys.append(_scanned(host, host_port, outcome))
        error = (
            None if keys else (errors[0] if errors else "the server offered none of the requested key types")
        )
        return text, keys, error

    async with asyncio.TaskGroup() as tasks:
        running = [tasks.create_task(scan(text, host, host_port)) for text, host, host_port in parsed]
    return [task.result() for task in running]


def _scanned(host: str, port: int, key: asyncssh.SSHKey) -> ScannedKey:
    return ScannedKey(
        host=host,
        port=port,
        key_type=key.get_algorithm(),
        known_hosts_line=known_hosts_line(host, port, key).rstrip("\n"),
        fingerprint_sha256=fingerprint(key),
    )


def _fetcher(host: str, port: int, key_type: str) -> Callable[[], Awaitable[asyncssh.SSHKey | None]]:
    async def fetch() -> asyncssh.SSHKey | None:
        return await asyncssh.get_server_host_key(host, port, server_host_key_algs=[key_type], config=None)

    return fetch


async def _retrying[T](
    gate: asyncio.Semaphore, deadline: float, attempt: Callable[[], Awaitable[T]]
) -> T | str:
    """Run ``attempt`` by ``deadline``, retrying dropped handshakes; a reason string on failure."""
    retries = 0
    loop = asyncio.get_running_loop()
    while True:
        try:
            async with gate, asyncio.timeout_at(deadline):
                return await attempt()
        except TimeoutError:
            return "timeout: no answer in time"
        except (asyncssh.Error, OSError, ValueError) as exc:
            delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2.0**retries)
            if not is_handshake_drop(exc) or loop.time() + delay >= deadline:
                reason, detail = classify(exc)
                return f"{reason}: {detail}"
            retries += 1
        await asyncio.sleep(delay)


async def _offered_algorithms(host: str, port: int) -> list[str]:
    """The server host key algorithms from the server's (cleartext) KEXINIT packet (RFC 4253 §7.1).

    Raises:
        asyncssh.ProtocolError: not an SSH-2 server, or a malformed packet.
        asyncssh.ConnectionLost, OSError: the connection failed or was dropped.
    """
    reader, writer = await asyncio.open_connection(host, port, limit=MAX_BANNER_BYTES)
    try:
        writer.write(b"SSH-2.0-relay_shell_keyscan\r\n")
        for _ in range(MAX_PRE_BANNER_LINES):
            line = await reader.readline()
            if not line:
                raise asyncssh.ConnectionLost("closed before the SSH banner")
            if line.startswith((b"SSH-2.0-", b"SSH-1.99-")):
                break
        else:
            raise asyncssh.ProtocolError("no SSH-2 banner")
        try:
            header = await reader.readexactly(5)
            length, padding = int.from_bytes(header[:4], "big"), header[4]
            if not padding < length <= MAX_KEXINIT_BYTES:
                raise asyncssh.ProtocolError("implausible packet length")
            payload = (await reader.readexactly(length - 1))[: length - 1 - padding]
        except asyncio.IncompleteReadError as exc:
            raise asyncssh.ConnectionLost("closed during the key exchange") from exc
        if not payload or payload[0] != MSG_KEXINIT:
            raise asyncssh.ProtocolError("first packet is not KEXINIT")
        offset = 1 + 16  # message type, cookie
        names: list[str] = []
        for _ in range(2):  # kex_algorithms, then server_host_key_algorithms
            size = int.from_bytes(payload[offset : offset + 4], "big")
            names = payload[offset + 4 : offset + 4 + size].decode("ascii", errors="replace").split(",")
            offset += 4 + size
        return names
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
