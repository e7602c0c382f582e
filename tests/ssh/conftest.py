"""Fixtures for the SSH layer: real OpenSSH sshd instances on loopback (see ``tests/sshd.py``).

Session-scoped daemons (started once, killed with their whole process tree at the end):

- ``sshd``: wide limits (MaxStartups 200:30:400, MaxSessions 100) on 127.0.0.1;
- ``sshd_default``: OpenSSH's default MaxStartups 10:30:100 and MaxSessions 10;
- ``sshd_jump``: a second wide sshd used as a jump host;
- ``sshd_farm``: FARM_SIZE daemons, one per address from 127.0.0.2 (fan-out width).

Without /usr/sbin/sshd every test that needs one fails, naming the package to install.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from relay_shell.config import Settings
from relay_shell.ssh.pool import ConnectionPool
from tests.components import require_sshd
from tests.sshd import ClientKey, SshdInstance, start_many, start_sshd, stop_all

FARM_SIZE = 20


@pytest.fixture(scope="session")
def client_key() -> Iterator[ClientKey]:
    key = ClientKey.create()
    yield key
    key.remove()


@pytest.fixture(scope="session")
def sshd(client_key: ClientKey) -> Iterator[SshdInstance]:
    require_sshd()
    instance = start_sshd(client_key)
    yield instance
    instance.remove()


@pytest.fixture(scope="session")
def sshd_default(client_key: ClientKey) -> Iterator[SshdInstance]:
    require_sshd()
    instance = start_sshd(client_key, max_startups=None, max_sessions=None)
    yield instance
    instance.remove()


@pytest.fixture(scope="session")
def sshd_jump(client_key: ClientKey) -> Iterator[SshdInstance]:
    require_sshd()
    instance = start_sshd(client_key)
    yield instance
    instance.remove()


@pytest.fixture(scope="session")
def sshd_farm(client_key: ClientKey) -> Iterator[list[SshdInstance]]:
    require_sshd()
    instances = start_many(client_key, FARM_SIZE, first_address="127.0.0.2")
    yield instances
    stop_all(instances)


@pytest.fixture
async def pool_factory(settings: Settings) -> AsyncIterator[Callable[..., ConnectionPool]]:
    """Builds pools (default: the test's settings) and closes every one of them afterwards."""
    pools: list[ConnectionPool] = []

    def factory(pool_settings: Settings | None = None, **options: Any) -> ConnectionPool:
        pool = ConnectionPool(pool_settings or settings, **options)
        pools.append(pool)
        return pool

    yield factory
    for pool in pools:
        await pool.aclose()


@pytest.fixture
async def pool(pool_factory: Callable[..., ConnectionPool]) -> ConnectionPool:
    return pool_factory()
