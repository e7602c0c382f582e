"""Fixtures of the tool tests that reach a real OpenSSH sshd (see ``tests/sshd.py``).

``key`` is the client key pair of one test module and ``host`` a loopback sshd that trusts it;
a module that needs its own daemon (one it may kill or restart) overrides ``host``. Both fail
the test, naming the package, when sshd is not installed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.components import require_sshd
from tests.sshd import ClientKey, SshdInstance, start_sshd


@pytest.fixture(scope="module")
def key() -> Iterator[ClientKey]:
    require_sshd()
    created = ClientKey.create()
    yield created
    created.remove()


@pytest.fixture(scope="module")
def host(key: ClientKey) -> Iterator[SshdInstance]:
    instance = start_sshd(key)
    yield instance
    instance.remove()
