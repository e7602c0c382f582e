"""Our SSH connections write each packet, and the IGNORE packet asyncssh puts ahead of it, at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncssh

from relay_shell.capture import render_capture
from relay_shell.config import Settings
from relay_shell.ssh.pool import ConnectionPool
from relay_shell.ssh.remote_exec import run_remote
from relay_shell.ssh.wire import coalesce_packet_writes
from tests.ssh.helpers import spec_for
from tests.sshd import ClientKey, SshdInstance, start_sshd

MSG_IGNORE = 2


class _Counted:
    """The socket writes and the packets (by type) one connection sends."""

    def __init__(self, connection: asyncssh.SSHClientConnection) -> None:
        self.writes: list[bytes] = []
        self.packets: list[int] = []
        transport = connection._transport  # type: ignore[attr-defined]
        write: Callable[[bytes], None] = transport.write
        send_packet: Callable[..., None] = connection.send_packet

        def counted_write(data: bytes) -> None:
            self.writes.append(bytes(data))
            write(data)

        def counted_packet(pkttype: int, *args: bytes, **options: object) -> None:
            self.packets.append(pkttype)
            send_packet(pkttype, *args, **options)

        transport.write = counted_write
        connection.send_packet = counted_packet  # type: ignore[method-assign]


async def test_one_write_per_packet_and_the_command_still_runs(
    sshd: SshdInstance, client_key: ClientKey, settings: Settings, pool: ConnectionPool
) -> None:
    spec = spec_for(sshd, settings, client_key)
    loop = asyncio.get_running_loop()
    async with pool.lease(spec, deadline=loop.time() + 10) as lease:
        counted = _Counted(lease.connection)
    result = await run_remote(pool, spec, "cat; echo done", timeout_s=10, budget=65536, stdin=b"x" * 5000)
    assert (result.exit_code, render_capture(result.capture)) == (0, "x" * 5000 + "done\n")
    sent = [kind for kind in counted.packets if kind != MSG_IGNORE]
    assert counted.packets.count(MSG_IGNORE) == len(sent) >= 4  # open, exec, data, EOF, close...
    assert len(counted.writes) == len(sent)


async def test_a_plain_asyncssh_connection_writes_twice_per_packet(
    sshd: SshdInstance, client_key: ClientKey
) -> None:
    """What the wrapper saves, and that it is what makes the difference."""
    async with asyncssh.connect(
        sshd.address, sshd.port, username=sshd.user, config=None, known_hosts=None,
        client_keys=[str(client_key.private_path)],
    ) as connection:  # fmt: skip
        plain = _Counted(connection)
        await connection.run("true", check=True)
        plain_writes = len(plain.writes)
        assert plain_writes == len(plain.packets) == 2 * plain.packets.count(MSG_IGNORE)
        assert coalesce_packet_writes(connection)
        coalesced = _Counted(connection)
        await connection.run("true", check=True)
        assert len(coalesced.writes) == len(coalesced.packets) // 2 == plain_writes // 2


def test_an_object_without_the_methods_is_left_alone() -> None:
    class Other:
        pass

    other = Other()
    assert not coalesce_packet_writes(other)  # type: ignore[arg-type]
    assert vars(other) == {}


async def test_connections_prefer_aes_gcm_from_asyncssh_own_set(
    sshd: SshdInstance, client_key: ClientKey, settings: Settings, pool: ConnectionPool
) -> None:
    """The same ciphers asyncssh offers by default, none added or dropped; AES-GCM is agreed with sshd."""
    from asyncssh.encryption import get_default_encryption_algs

    from relay_shell.ssh.connect import ENCRYPTION_ALGS

    assert sorted(name.encode() for name in ENCRYPTION_ALGS) == sorted(get_default_encryption_algs())
    spec = spec_for(sshd, settings, client_key)
    loop = asyncio.get_running_loop()
    async with pool.lease(spec, deadline=loop.time() + 10) as lease:
        agreed = (
            lease.connection.get_extra_info("send_cipher"),
            lease.connection.get_extra_info("recv_cipher"),
        )
    assert agreed == ("aes256-gcm@openssh.com", "aes256-gcm@openssh.com")


async def test_a_server_without_aes_gcm_still_gets_a_connection(
    client_key: ClientKey, settings: Settings, pool: ConnectionPool
) -> None:
    instance = start_sshd(client_key, extra_config=["Ciphers chacha20-poly1305@openssh.com"])
    try:
        spec = spec_for(instance, settings, client_key)
        result = await run_remote(pool, spec, "echo ok", timeout_s=10, budget=4096, merge_stderr=True)
        assert (result.exit_code, render_capture(result.capture)) == (0, "ok\n")
        loop = asyncio.get_running_loop()
        async with pool.lease(spec, deadline=loop.time() + 10) as lease:
            assert lease.connection.get_extra_info("send_cipher") == "chacha20-poly1305@openssh.com"
    finally:
        instance.remove()
