"""ssh_check probes against real sshd: pooled round trips, fresh handshakes, no host key recorded."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from relay_shell.config import KnownHostsMode, Settings
from relay_shell.ssh.check import check_hosts, round_trip
from relay_shell.ssh.pool import ConnectionPool
from tests.ssh.helpers import spec_for, trust
from tests.sshd import ClientKey, SshdInstance, descendants, start_sshd


async def test_pooled_probe_reuses_the_connection_with_one_round_trip(
    pool: ConnectionPool, sshd: SshdInstance, client_key: ClientKey, settings: Settings
) -> None:
    trust(settings, sshd)
    spec = spec_for(sshd, settings, client_key)
    first = await check_hosts(pool, [spec], timeout_s=10, concurrency=1)
    assert [(result.ok, result.reused) for result in first] == [(True, False)]
    assert pool.stats().connections == 1
    attempts = pool.dialer.attempts
    second = await check_hosts(pool, [spec], timeout_s=10, concurrency=1)
    assert [(result.ok, result.reused) for result in second] == [(True, True)]
    assert pool.dialer.attempts == attempts  # no new TCP connection
    assert pool.stats().dials == 1


async def test_a_killed_server_is_never_ok_from_a_stale_connection(
    pool: ConnectionPool, client_key: ClientKey, settings: Settings
) -> None:
    instance = start_sshd(client_key)
    try:
        trust(settings, instance)
        spec = spec_for(instance, settings, client_key)
        assert (await check_hosts(pool, [spec], timeout_s=10, concurrency=1))[0].ok
    finally:
        instance.remove()
    [after] = await check_hosts(pool, [spec], timeout_s=10, concurrency=1)
    assert (after.ok, after.reason) == (False, "refused")


async def test_a_frozen_server_is_never_ok_from_its_open_pooled_connection(
    pool: ConnectionPool, client_key: ClientKey, settings: Settings
) -> None:
    """The TCP connection stays open but nothing answers: only the round trip can tell."""
    instance = start_sshd(client_key)
    try:
        trust(settings, instance)
        spec = spec_for(instance, settings, client_key)
        assert (await check_hosts(pool, [spec], timeout_s=10, concurrency=1))[0].ok
        assert instance.process is not None
        frozen = [instance.process.pid, *descendants(instance.process.pid)]
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        try:
            [result] = await check_hosts(pool, [spec], timeout_s=1, concurrency=1)
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
        assert (result.ok, result.reason) == (False, "timeout")
    finally:
        instance.remove()


async def test_round_trip_on_a_closed_connection_is_false(
    pool: ConnectionPool, sshd: SshdInstance, client_key: ClientKey, settings: Settings
) -> None:
    spec = spec_for(sshd, settings, client_key)
    async with pool.lease(spec, deadline=_deadline(10)) as lease:
        assert await round_trip(lease.connection, _deadline(5))
        lease.connection.close()
        await lease.connection.wait_closed()
        assert not await round_trip(lease.connection, _deadline(5))


async def test_an_unknown_host_key_is_reported_and_not_recorded(
    make_settings: Callable[..., Settings],
    pool_factory: Callable[..., ConnectionPool],
    sshd: SshdInstance,
    client_key: ClientKey,
    tmp_path: Path,
) -> None:
    known_hosts = tmp_path / "probe_known_hosts"
    settings = make_settings(ssh_known_hosts_file=known_hosts, ssh_known_hosts=KnownHostsMode.ACCEPT_NEW)
    pool = pool_factory(settings)
    spec = spec_for(sshd, settings, client_key)
    for fresh in (False, True):
        [result] = await check_hosts(pool, [spec], timeout_s=10, concurrency=1, fresh=fresh)
        assert (result.ok, result.reason) == (False, "host_key")
        assert result.detail is not None
        assert "unknown host key" in result.detail
        assert sshd.fingerprint in result.detail
        assert not known_hosts.exists() or known_hosts.read_text() == ""
    assert pool.stats().connections == 0


async def test_a_known_key_probe_joins_the_pool_for_later_calls(
    make_settings: Callable[..., Settings],
    pool_factory: Callable[..., ConnectionPool],
    sshd: SshdInstance,
    client_key: ClientKey,
    tmp_path: Path,
) -> None:
    known_hosts = tmp_path / "known"
    known_hosts.write_text(sshd.known_hosts_line())
    before = known_hosts.read_text()
    settings = make_settings(ssh_known_hosts_file=known_hosts, ssh_known_hosts=KnownHostsMode.ACCEPT_NEW)
    pool = pool_factory(settings)
    spec = spec_for(sshd, settings, client_key)
    [result] = await check_hosts(pool, [spec], timeout_s=10, concurrency=1)
    assert result.ok
    async with pool.lease(spec, deadline=_deadline(10)) as lease:
        assert lease.reused  # an exec after the check rides the same connection
    assert known_hosts.read_text() == before


def _deadline(seconds: float) -> float:
    import asyncio

    return asyncio.get_running_loop().time() + seconds
