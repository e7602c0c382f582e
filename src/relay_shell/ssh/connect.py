"""Opening one SSH connection (with its jump chain) under a deadline.

A dial is bounded by ``min(deadline, now + SSH_CONNECT_TIMEOUT)``. A handshake the server
drops (sshd sheds unauthenticated connections above ``MaxStartups``: the TCP connection
is accepted, then closed or reset during the key exchange) is retried with jittered
exponential backoff until that bound; every other failure is final. asyncssh never reads
``~/.ssh/config`` here (``config=None``): the inventory already resolved it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncssh

from relay_shell.config import Settings
from relay_shell.errors import RemoteUnreachable
from relay_shell.ssh.hostkeys import KnownHostsFile, VerifyingClient
from relay_shell.ssh.targets import HostSpec
from relay_shell.ssh.translate import is_handshake_drop, unreachable
from relay_shell.ssh.wire import coalesce_packet_writes

# asyncssh's own set of ciphers, AES-GCM first (ADR 0012): the server takes the
# first one it supports. asyncssh's ChaCha20-Poly1305 runs partly in Python and costs about a
# third of a millisecond of CPU per command more than AES-GCM, which OpenSSL runs in hardware.
ENCRYPTION_ALGS = (
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)
BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 1.0
KEEPALIVE_COUNT_MAX = 3
CLOSE_WAIT_S = 2.0


@dataclass
class Dialed:
    """A connection plus the jump connections it is tunnelled through (closed with it)."""

    connection: asyncssh.SSHClientConnection
    client: VerifyingClient
    tunnels: tuple[asyncssh.SSHClientConnection, ...] = ()

    def close(self) -> None:
        self.connection.close()
        for tunnel in reversed(self.tunnels):
            tunnel.close()

    async def aclose(self) -> None:
        """Close everything and wait (bounded) until asyncssh has released it."""
        self.close()
        for connection in (self.connection, *self.tunnels):
            try:
                async with asyncio.timeout(CLOSE_WAIT_S):
                    await connection.wait_closed()
            except TimeoutError:
                connection.abort()


@dataclass
class Dialer:
    """Builds asyncssh connections for :class:`HostSpec` s; shares one known_hosts file."""

    settings: Settings
    known_hosts: KnownHostsFile = field(init=False)
    attempts: int = 0  # TCP connection attempts made, retries included
    _random: random.Random = field(default_factory=random.SystemRandom, repr=False)

    def __post_init__(self) -> None:
        self.known_hosts = KnownHostsFile(self.settings.expand(self.settings.ssh_known_hosts_file))

    async def dial(
        self,
        spec: HostSpec,
        *,
        deadline: float,
        on_lost: Callable[[], None] | None = None,
        record_host_keys: bool = True,
    ) -> Dialed:
        """Connect (through ``spec.jump`` if any) by ``deadline`` (``loop.time()`` based).

        ``record_host_keys=False`` never writes known_hosts (an unknown host is refused).

        Raises:
            RemoteUnreachable: with the reason (see :mod:`relay_shell.ssh.translate`).
        """
        loop = asyncio.get_running_loop()
        limit = min(deadline, loop.time() + self.settings.ssh_connect_timeout)
        tunnels: list[asyncssh.SSHClientConnection] = []
        try:
            for hop in spec.jump:
                connection, _ = await self._connect(
                    hop,
                    tunnels[-1] if tunnels else None,
                    limit,
                    label=spec.alias,
                    via=f"jump host {hop.display()}",
                    record=record_host_keys,
                )
                tunnels.append(connection)
            connection, client = await self._connect(
                spec,
                tunnels[-1] if tunnels else None,
                limit,
                label=spec.alias,
                on_lost=on_lost,
                record=record_host_keys,
            )
        except BaseException:
            for tunnel in reversed(tunnels):
                tunnel.abort()
            raise
        return Dialed(connection, client, tuple(tunnels))

    async def _connect(
        self,
        spec: HostSpec,
        tunnel: asyncssh.SSHClientConnection | None,
        limit: float,
        *,
        label: str,
        via: str | None = None,
        on_lost: Callable[[], None] | None = None,
        record: bool = True,
    ) -> tuple[asyncssh.SSHClientConnection, VerifyingClient]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        dropped: BaseException | None = None
        retries = 0
        while True:
            client = VerifyingClient(spec.known_hosts, self.known_hosts, on_lost, record=record)
            try:
                async with asyncio.timeout_at(limit):
                    return await self._connect_once(spec, tunnel, client), client
            except TimeoutError as exc:
                if dropped is not None:
                    raise unreachable(label, dropped, via=via) from exc
                raise RemoteUnreachable(
                    label,
                    "timeout",
                    _with_via(f"no SSH connection within {loop.time() - started:.1f} s", via),
                ) from exc
            except (asyncssh.Error, OSError, ValueError) as exc:
                delay = self._backoff(retries)
                if not is_handshake_drop(exc) or loop.time() + delay >= limit:
                    raise unreachable(label, exc, via=via, problem=client.problem) from exc
                dropped, retries = exc, retries + 1
            await asyncio.sleep(delay)

    async def _connect_once(
        self, spec: HostSpec, tunnel: asyncssh.SSHClientConnection | None, client: VerifyingClient
    ) -> asyncssh.SSHClientConnection:
        self.attempts += 1
        keys = [str(path) for path in spec.identity_files if path.is_file()]
        connection = await asyncssh.connect(
            spec.hostname,
            spec.port,
            tunnel=tunnel if tunnel is not None else (),
            config=None,
            client_factory=lambda: client,
            username=spec.user,
            known_hosts=client.known_hosts_argument(spec.hostname, spec.port),
            client_keys=keys if keys else (),
            keepalive_interval=self.settings.ssh_keepalive,
            keepalive_count_max=KEEPALIVE_COUNT_MAX,
            encryption_algs=list(ENCRYPTION_ALGS),
            connect_timeout=None,
        )
        coalesce_packet_writes(connection)
        return connection

    def _backoff(self, retries: int) -> float:
        """Jittered exponential backoff: half fixed, half random, doubling up to a cap."""
        ceiling = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2.0**retries)
        return ceiling / 2 + self._random.uniform(0, ceiling / 2)


def _with_via(detail: str, via: str | None) -> str:
    return f"via {via}: {detail}" if via else detail
