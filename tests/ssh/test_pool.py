"""The connection pool against real sshd: reuse, single-flight, caps, eviction, MaxSessions, keepalive."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Iterator

import asyncssh
import pytest

from relay_shell.capture import SplitCapture
from relay_shell.config import KnownHostsMode, Settings
from relay_shell.errors import LimitReached, RemoteFailed, RemoteUnreachable
from relay_shell.ssh.pool import ConnectionPool, Lease
from relay_shell.ssh.remote_exec import run_remote
from tests.components import require_sshd
from tests.ssh.helpers import spec_for
from tests.sshd import ClientKey, SshdInstance, descendants, free_port, start_sshd


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _deadline(seconds: float = 10.0) -> float:
    return asyncio.get_running_loop().time() + seconds


async def _closed(connection: asyncssh.SSHClientConnection) -> bool:
    """Whether the connection is closed (waiting a bounded moment for the close to complete)."""
    try:
        async with asyncio.timeout(5):
            await connection.wait_closed()
    except TimeoutError:
        return False
    return connection.is_closed()


async def test_sequential_calls_reuse_one_connection(pool: ConnectionPool, sshd: SshdInstance,
                                                     client_key: ClientKey, settings: Settings) -> None:  # fmt: skip
    spec = spec_for(sshd, settings, client_key)
    for _ in range(3):
        result = await run_remote(pool, spec, "echo hi", timeout_s=10, budget=4096)
        assert result.exit_code == 0
    stats = pool.stats()
    assert (stats.connections, stats.in_use, stats.idle, stats.dials) == (1, 0, 1, 1)
    assert pool.dialer.attempts == 1


async def test_concurrent_leases_share_one_dial(pool: ConnectionPool, sshd: SshdInstance,
                                                client_key: ClientKey, settings: Settings) -> None:  # fmt: skip
    spec = spec_for(sshd, settings, client_key)
    inside = asyncio.Event()
    seen: list[asyncssh.SSHClientConnection] = []

    async def hold() -> None:
        async with pool.lease(spec, deadline=_deadline()) as lease:
            seen.append(lease.connection)
            if len(seen) == 10:
                inside.set()
            await inside.wait()
            assert pool.stats().in_use == 1

    async with asyncio.timeout(20):
        await asyncio.gather(*(hold() for _ in range(10)))
    assert pool.stats().dials == 1
    assert pool.dialer.attempts == 1
    assert all(connection is seen[0] for connection in seen)
    assert pool.stats().in_use == 0


async def test_a_failed_dial_is_shared_too(
    pool: ConnectionPool, client_key: ClientKey, settings: Settings
) -> None:
    spec = spec_for(f"relaytest@127.0.0.1:{free_port()}", settings, client_key)

    async def attempt() -> str:
        with pytest.raises(RemoteUnreachable) as caught:
            async with pool.lease(spec, deadline=_deadline()):
                pass
        return caught.value.reason

    assert await asyncio.gather(*(attempt() for _ in range(5))) == ["refused"] * 5
    assert pool.stats().dials == 1
    assert pool.stats().connections == 0


async def test_pool_keys_separate_known_hosts_modes(pool: ConnectionPool, sshd: SshdInstance,
                                                    client_key: ClientKey, settings: Settings) -> None:  # fmt: skip
    checked = spec_for(sshd, settings, client_key)
    unchecked = spec_for(sshd, settings, client_key, known_hosts=KnownHostsMode.IGNORE)
    async with pool.lease(checked, deadline=_deadline()) as first:
        pass
    async with pool.lease(unchecked, deadline=_deadline()) as second:
        pass
    assert first.connection is not second.connection
    assert pool.stats().connections == 2


@pytest.fixture
def three_hosts(
    sshd: SshdInstance, sshd_jump: SshdInstance, sshd_farm: list[SshdInstance]
) -> list[SshdInstance]:
    return [sshd, sshd_jump, sshd_farm[0]]


async def test_cap_evicts_the_least_recently_used_idle_connection(
    make_settings: Callable[..., Settings], pool_factory: Callable[..., ConnectionPool],
    three_hosts: list[SshdInstance], client_key: ClientKey,
) -> None:  # fmt: skip
    settings = make_settings(max_conns=2)
    clock = FakeClock()
    pool = pool_factory(settings, clock=clock)
    a, b, c = (spec_for(host, settings, client_key) for host in three_hosts)
    connections: dict[str, asyncssh.SSHClientConnection] = {}
    for name, spec in (("a", a), ("b", b), ("a", a)):  # a is used again after b: b is now the LRU
        clock.now += 1
        async with pool.lease(spec, deadline=_deadline()) as lease:
            connections[name] = lease.connection
    clock.now += 1
    async with pool.lease(c, deadline=_deadline()):
        pass
    assert pool.stats().connections == 2
    assert await _closed(connections["b"])
    assert not connections["a"].is_closed()
    assert pool.stats().dials == 3


async def test_connections_in_use_are_never_evicted(
    make_settings: Callable[..., Settings], pool_factory: Callable[..., ConnectionPool],
    three_hosts: list[SshdInstance], client_key: ClientKey,
) -> None:  # fmt: skip
    settings = make_settings(max_conns=1)
    pool = pool_factory(settings)
    a, b, _ = (spec_for(host, settings, client_key) for host in three_hosts)
    held = await pool.pin(a, deadline=_deadline())
    with pytest.raises(LimitReached) as caught:
        await pool.pin(b, deadline=_deadline())
    assert caught.value.limit == "RELAY_SHELL_MAX_CONNS"
    assert caught.value.value == 1
    assert not held.connection.is_closed()
    result = await run_remote(pool, a, "echo still-usable", timeout_s=10, budget=4096)  # same key: shares it
    assert isinstance(result.capture, SplitCapture)
    assert result.capture.stdout.render() == "still-usable\n"
    pool.unpin(held)
    pool.unpin(held)  # idempotent
    async with pool.lease(b, deadline=_deadline()):  # now the idle one can be evicted
        pass
    assert await _closed(held.connection)


async def test_idle_sweep_uses_the_injected_clock(
    make_settings: Callable[..., Settings], pool_factory: Callable[..., ConnectionPool],
    sshd: SshdInstance, sshd_jump: SshdInstance, client_key: ClientKey,
) -> None:  # fmt: skip
    settings = make_settings(ssh_idle_timeout=300)
    clock = FakeClock()
    pool = pool_factory(settings, clock=clock)
    idle_spec, busy_spec = spec_for(sshd, settings, client_key), spec_for(sshd_jump, settings, client_key)
    async with pool.lease(idle_spec, deadline=_deadline()) as lease:
        idle_connection = lease.connection
    busy = await pool.pin(busy_spec, deadline=_deadline())
    clock.now += 299
    assert await pool.sweep() == 0
    clock.now += 2
    assert await pool.sweep() == 1  # only the idle one: the pinned one is in use
    assert idle_connection.is_closed()
    assert pool.stats().connections == 1
    assert pool.stats().in_use == 1
    pool.unpin(busy)
    clock.now += 301
    assert await pool.sweep() == 1
    assert pool.stats().connections == 0


async def test_fifteen_concurrent_commands_under_default_max_sessions(
    pool: ConnectionPool, sshd_default: SshdInstance, client_key: ClientKey, settings: Settings
) -> None:
    spec = spec_for(sshd_default, settings, client_key)
    results = await asyncio.gather(
        *(
            run_remote(pool, spec, f"sleep 0.5; echo {index}", timeout_s=20, budget=4096)
            for index in range(15)
        )
    )
    outputs = [
        result.capture.stdout.render() for result in results if isinstance(result.capture, SplitCapture)
    ]
    assert outputs == [f"{index}\n" for index in range(15)]
    assert all(result.exit_code == 0 for result in results)
    # sshd refused the 11th channel on the first connection: the pool opened another one.
    assert pool.stats().connections >= 2


async def test_a_dead_pooled_connection_is_replaced(
    pool: ConnectionPool, sshd: SshdInstance, client_key: ClientKey, settings: Settings
) -> None:
    spec = spec_for(sshd, settings, client_key)
    lease: Lease = await pool.pin(spec, deadline=_deadline())
    first = lease.connection
    first.close()
    assert await _closed(first)

    async def open_exec(connection: asyncssh.SSHClientConnection) -> str:
        result = await connection.run("echo fresh", check=True)
        return str(result.stdout)

    assert await lease.open_channel(open_exec) == "fresh\n"
    assert lease.connection is not first
    pool.unpin(lease)
    assert pool.stats().dials == 2
    assert pool.stats().connections == 1


async def test_closed_pool_refuses_new_leases(pool: ConnectionPool, sshd: SshdInstance,
                                              client_key: ClientKey, settings: Settings) -> None:  # fmt: skip
    spec = spec_for(sshd, settings, client_key)
    async with pool.lease(spec, deadline=_deadline()) as lease:
        connection = lease.connection
    await pool.aclose()
    assert connection.is_closed()
    with pytest.raises(RemoteUnreachable) as caught:
        await pool.pin(spec, deadline=_deadline())
    assert caught.value.reason == "closed"


@pytest.fixture
def frozen_sshd(client_key: ClientKey) -> Iterator[SshdInstance]:
    require_sshd()
    instance = start_sshd(client_key)
    try:
        yield instance
    finally:
        if instance.process is not None:
            for pid in descendants(instance.process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        instance.remove()


async def test_keepalive_detects_a_frozen_server(
    make_settings: Callable[..., Settings], pool_factory: Callable[..., ConnectionPool],
    frozen_sshd: SshdInstance, client_key: ClientKey,
) -> None:  # fmt: skip
    settings = make_settings(ssh_keepalive=0.2)
    pool = pool_factory(settings)
    spec = spec_for(frozen_sshd, settings, client_key)
    async with pool.lease(spec, deadline=_deadline()) as lease:
        connection = lease.connection
    # A command first: then sshd's post-auth process (the one answering keepalives) surely exists.
    assert (await run_remote(pool, spec, "true", timeout_s=10, budget=1024)).exit_code == 0
    assert frozen_sshd.process is not None
    sessions = descendants(frozen_sshd.process.pid)
    assert sessions
    for pid in sessions:
        os.kill(pid, signal.SIGSTOP)  # the server stops answering, the TCP connection stays up
    assert await _closed(connection)  # unanswered keepalives closed it
    assert pool.stats().connections == 0


async def test_open_channel_failures_on_a_live_connection(
    pool: ConnectionPool, sshd: SshdInstance, client_key: ClientKey, settings: Settings
) -> None:
    spec = spec_for(sshd, settings, client_key)
    async with pool.lease(spec, deadline=_deadline()) as lease:

        async def opener_fails_locally(connection: asyncssh.SSHClientConnection) -> None:
            raise FileNotFoundError("/no/such/local/file")

        with pytest.raises(FileNotFoundError):  # the opener's own error passes through untouched
            await lease.open_channel(opener_fails_locally)

        async def tunnel_to_nowhere(connection: asyncssh.SSHClientConnection) -> object:
            return await connection.create_connection(asyncssh.SSHTCPSession, "127.0.0.1", free_port())

        with pytest.raises(
            RemoteFailed
        ) as caught:  # refused with no other channel open: not a capacity issue
            await lease.open_channel(tunnel_to_nowhere)
        assert "refused the channel" in caught.value.message
        assert lease.channels == 0
    assert pool.stats().dials == 1
