"""Connecting: failures become RemoteUnreachable with one short reason; dropped handshakes are retried."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncssh
import pytest

from relay_shell.config import Settings
from relay_shell.errors import RemoteUnreachable
from relay_shell.ssh.pool import ConnectionPool
from relay_shell.ssh.remote_exec import run_remote
from relay_shell.ssh.translate import REASONS, classify, is_handshake_drop
from tests.ssh.helpers import spec_for
from tests.sshd import ClientKey, SshdInstance, free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "dns"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "refused"),
        (OSError(errno.EHOSTUNREACH, "No route to host"), "refused"),
        (TimeoutError(), "timeout"),
        (ConnectionResetError(errno.ECONNRESET, "reset"), "closed"),
        (asyncssh.ConnectionLost("Connection lost"), "closed"),
        (asyncssh.PermissionDenied("Permission denied"), "auth"),
        (asyncssh.KeyEncryptionError("Passphrase must be specified"), "auth"),
        (asyncssh.HostKeyNotVerifiable("Host key is not trusted"), "host_key"),
        (asyncssh.KeyExchangeFailed("No matching key exchange"), "protocol"),
        (asyncssh.ProtocolError("Invalid SSH version"), "protocol"),
        (asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, "Connection refused"), "refused"),
        (ValueError("odd"), "protocol"),
    ],
)
def test_classify(exc: BaseException, reason: str) -> None:
    assert reason in REASONS
    assert classify(exc)[0] == reason
    assert classify(exc)[1]


def test_handshake_drops_are_the_retryable_ones() -> None:
    assert is_handshake_drop(asyncssh.ConnectionLost("lost"))
    assert is_handshake_drop(ConnectionResetError())
    assert not is_handshake_drop(ConnectionRefusedError())
    assert not is_handshake_drop(asyncssh.PermissionDenied("no"))


@pytest.fixture
async def fake_server() -> AsyncIterator[Callable[[Handler], Awaitable[int]]]:
    """Starts loopback TCP servers speaking whatever a test needs; closed afterwards."""
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> int:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):  # bounded: a handler may still hold a client connection
                await server.wait_closed()


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # never answers; returns when the client hangs up
    writer.close()


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def _ancient(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"SSH-1.5-ancient\r\n")
    await writer.drain()
    await reader.read()
    writer.close()


@pytest.mark.parametrize(
    ("handler", "reason"),
    [(_silent, "timeout"), (_hang_up, "closed"), (_ancient, "protocol")],
    ids=["silent", "hangs-up", "ssh-1"],
)
async def test_misbehaving_servers(
    settings: Settings,
    pool: ConnectionPool,
    client_key: ClientKey,
    fake_server: Callable[[Handler], Awaitable[int]],
    handler: Handler,
    reason: str,
) -> None:
    port = await fake_server(handler)
    spec = spec_for(f"relaytest@127.0.0.1:{port}", settings, client_key)
    with pytest.raises(RemoteUnreachable) as caught:
        await run_remote(pool, spec, "true", timeout_s=0.8, budget=4096)
    assert caught.value.reason == reason
    assert caught.value.host == spec.alias
    assert pool.stats().connections == 0


async def test_nothing_listening_is_refused(
    settings: Settings, pool: ConnectionPool, client_key: ClientKey
) -> None:
    spec = spec_for(f"relaytest@127.0.0.1:{free_port()}", settings, client_key)
    with pytest.raises(RemoteUnreachable) as caught:
        await run_remote(pool, spec, "true", timeout_s=5, budget=4096)
    assert caught.value.reason == "refused"


async def test_a_key_the_server_does_not_know_is_auth(
    settings: Settings, pool: ConnectionPool, sshd: SshdInstance, tmp_path: Path
) -> None:
    stranger = ClientKey.create(tmp_path)
    spec = spec_for(sshd, settings, stranger)
    with pytest.raises(RemoteUnreachable) as caught:
        await run_remote(pool, spec, "true", timeout_s=5, budget=4096)
    assert caught.value.reason == "auth"
    assert "authentication refused" in caught.value.detail


@pytest.mark.timeout(20)
async def test_connect_timeout_setting_bounds_the_dial(
    make_settings: Callable[..., Settings],
    pool_factory: Callable[..., ConnectionPool],
    client_key: ClientKey,
    fake_server: Callable[[Handler], Awaitable[int]],
) -> None:
    settings = make_settings(ssh_connect_timeout=0.3)
    port = await fake_server(_silent)
    spec = spec_for(f"relaytest@127.0.0.1:{port}", settings, client_key)
    with pytest.raises(RemoteUnreachable) as caught:
        await run_remote(pool_factory(settings), spec, "true", timeout_s=60, budget=4096)
    assert (
        caught.value.reason == "timeout"
    )  # ended by the 0.3 s connect timeout (the test's own limit is 20 s)


async def test_dropped_handshakes_are_retried_until_one_gets_through(
    settings: Settings,
    pool: ConnectionPool,
    sshd: SshdInstance,
    client_key: ClientKey,
    fake_server: Callable[[Handler], Awaitable[int]],
) -> None:
    """What sshd does above MaxStartups, made deterministic: the first three connections are cut."""
    accepted = 0

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def flaky_proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        if accepted <= 3:
            writer.close()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection(sshd.address, sshd.port)
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    port = await fake_server(flaky_proxy)
    spec = spec_for(f"relaytest@127.0.0.1:{port}", settings, client_key)
    result = await run_remote(pool, spec, "echo through", timeout_s=15, budget=4096, merge_stderr=True)
    assert result.capture.total == len("through\n")
    assert pool.dialer.attempts == 4
    assert accepted == 4
    await pool.aclose()  # hang up before the proxy stops
