"""Host key policy (SPEC §9.1): the known_hosts file and strict / accept-new / ignore against real sshd."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncssh
import pytest

from relay_shell.capture import render_capture
from relay_shell.config import KnownHostsMode, Settings
from relay_shell.errors import RemoteUnreachable
from relay_shell.ssh.hostkeys import KnownHostsFile, fingerprint, known_hosts_line
from relay_shell.ssh.pool import ConnectionPool
from relay_shell.ssh.remote_exec import run_remote
from tests.components import require_sshd
from tests.ssh.helpers import spec_for
from tests.sshd import ClientKey, SshdInstance, start_sshd


def _key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519").convert_to_public()


def _hashed(name: str) -> str:
    salt = b"0123456789abcdefghij"
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def _line(pattern: str, key: asyncssh.SSHKey, marker: str = "") -> str:
    algorithm, data = key.export_public_key("openssh").decode().split()[:2]
    return f"{marker}{pattern} {algorithm} {data}\n"


def test_lookup_exact_hashed_wildcard_and_port_separation(tmp_path: Path) -> None:
    keys = {name: _key() for name in ("plain", "port", "hashed", "wild", "revoked", "ca")}
    path = tmp_path / "known_hosts"
    path.write_text(
        "# comment line\n\ngarbage line without a key\n"
        + _line("web1,10.0.0.1", keys["plain"])
        + _line("[web1]:2222", keys["port"])
        + _line(_hashed("db1"), keys["hashed"])
        + _line("*.lab,!secret.lab", keys["wild"])
        + _line("web1", keys["revoked"], marker="@revoked ")
        + _line("*.lab", keys["ca"], marker="@cert-authority ")
    )
    known = KnownHostsFile(path)
    web1 = known.lookup("web1", 22)
    assert web1.host_keys == (keys["plain"],)
    assert web1.revoked == (keys["revoked"],)
    assert known.lookup("10.0.0.1", 22).host_keys == (keys["plain"],)
    # A port-22 entry never vouches for another port (OpenSSH keeps [host]:port separate).
    assert known.lookup("web1", 2222).host_keys == (keys["port"],)
    assert known.lookup("web1", 2200).host_keys == ()
    assert known.lookup("db1", 22).host_keys == (keys["hashed"],)
    assert known.lookup("db2", 22).host_keys == ()
    assert known.lookup("a.lab", 22).host_keys == (keys["wild"],)
    assert known.lookup("a.lab", 22).ca_keys == (keys["ca"],)
    assert known.lookup("secret.lab", 22).host_keys == ()
    assert known.lookup("WEB1", 22).host_keys == (keys["plain"],)


def test_record_appends_once_and_reports_conflicts(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "known_hosts"
    known = KnownHostsFile(path)
    first, second = _key(), _key()
    assert known.record("10.0.0.1", 2222, first) == ()
    assert known.record("10.0.0.1", 2222, first) == ()  # already present: not duplicated
    assert known.record("10.0.0.1", 2222, second) == (first,)  # a different key is a conflict
    assert known.record("10.0.0.1", 22, second) == ()  # another port is another entry
    assert path.read_text() == known_hosts_line("10.0.0.1", 2222, first) + known_hosts_line(
        "10.0.0.1", 22, second
    )
    assert path.read_text().startswith("[10.0.0.1]:2222 ssh-ed25519 ")
    assert path.stat().st_mode & 0o777 == 0o600


def test_record_keeps_lines_separate_when_the_file_lacks_a_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    other = _key()
    path.write_text(_line("other", other).rstrip("\n"))
    key = _key()
    KnownHostsFile(path).record("web1", 22, key)
    assert path.read_text().splitlines() == [
        _line("other", other).rstrip("\n"),
        known_hosts_line("web1", 22, key).rstrip("\n"),
    ]


@pytest.fixture
def own_sshd(client_key: ClientKey) -> Iterator[SshdInstance]:
    """A private sshd this test may restart with a new host key."""
    require_sshd()
    instance = start_sshd(client_key)
    yield instance
    instance.remove()


async def _echo(pool: ConnectionPool, spec_settings: Settings, instance: SshdInstance, key: ClientKey) -> str:
    spec = spec_for(instance, spec_settings, key)
    result = await run_remote(pool, spec, "echo hello", timeout_s=10, budget=4096, merge_stderr=True)
    return render_capture(result.capture)


async def test_accept_new_records_then_refuses_a_changed_key(
    own_sshd: SshdInstance,
    client_key: ClientKey,
    make_settings: Callable[..., Settings],
    pool_factory: Callable[..., ConnectionPool],
    tmp_path: Path,
) -> None:
    settings = make_settings(ssh_known_hosts="accept-new")
    known_hosts = tmp_path / "known_hosts"
    assert not known_hosts.exists()
    assert await _echo(pool_factory(settings), settings, own_sshd, client_key) == "hello\n"
    # Recorded in OpenSSH's [host]:port form, with the daemon's real key.
    assert known_hosts.read_text() == own_sshd.known_hosts_line()

    old_fingerprint = own_sshd.fingerprint
    own_sshd.restart(new_host_key=True)
    assert own_sshd.fingerprint != old_fingerprint
    with pytest.raises(RemoteUnreachable) as caught:
        await _echo(pool_factory(settings), settings, own_sshd, client_key)
    assert caught.value.reason == "host_key"
    assert old_fingerprint in caught.value.detail
    assert own_sshd.fingerprint in caught.value.detail
    assert "CHANGED" in caught.value.detail
    assert known_hosts.read_text().count("\n") == 1  # the new key was not recorded


async def test_concurrent_first_connections_record_the_key_once(
    sshd: SshdInstance,
    client_key: ClientKey,
    make_settings: Callable[..., Settings],
    pool_factory: Callable[..., ConnectionPool],
    tmp_path: Path,
) -> None:
    settings = make_settings(ssh_known_hosts="accept-new")
    pools = [pool_factory(settings) for _ in range(8)]
    outputs = await asyncio.gather(*(_echo(pool, settings, sshd, client_key) for pool in pools))
    assert outputs == ["hello\n"] * 8
    assert (tmp_path / "known_hosts").read_text() == sshd.known_hosts_line()


async def test_strict_refuses_an_unknown_host_and_accepts_a_known_one(
    sshd: SshdInstance,
    client_key: ClientKey,
    make_settings: Callable[..., Settings],
    pool_factory: Callable[..., ConnectionPool],
    tmp_path: Path,
) -> None:
    settings = make_settings(ssh_known_hosts="strict")
    with pytest.raises(RemoteUnreachable) as caught:
        await _echo(pool_factory(settings), settings, sshd, client_key)
    assert caught.value.reason == "host_key"
    assert "no host key" in caught.value.detail
    assert sshd.fingerprint in caught.value.detail
    assert not (tmp_path / "known_hosts").exists()  # strict never writes

    (tmp_path / "known_hosts").write_text(sshd.known_hosts_line())
    assert await _echo(pool_factory(settings), settings, sshd, client_key) == "hello\n"


async def test_strict_refuses_a_wrong_key_with_both_fingerprints(
    sshd: SshdInstance,
    client_key: ClientKey,
    make_settings: Callable[..., Settings],
    pool_factory: Callable[..., ConnectionPool],
    tmp_path: Path,
) -> None:
    settings = make_settings(ssh_known_hosts="strict")
    impostor = _key()
    (tmp_path / "known_hosts").write_text(known_hosts_line(sshd.address, sshd.port, impostor))
    with pytest.raises(RemoteUnreachable) as caught:
        await _echo(pool_factory(settings), settings, sshd, client_key)
    assert caught.value.reason == "host_key"
    assert fingerprint(impostor) in caught.value.detail
    assert sshd.fingerprint in caught.value.detail


async def test_ignore_checks_nothing_and_writes_nothing(
    sshd: SshdInstance,
    client_key: ClientKey,
    make_settings: Callable[..., Settings],
    pool_factory: Callable[..., ConnectionPool],
    tmp_path: Path,
) -> None:
    settings = make_settings(ssh_known_hosts="ignore")
    (tmp_path / "known_hosts").write_text(known_hosts_line(sshd.address, sshd.port, _key()))
    before = (tmp_path / "known_hosts").read_text()
    spec = spec_for(sshd, settings, client_key)
    assert spec.known_hosts is KnownHostsMode.IGNORE
    assert await _echo(pool_factory(settings), settings, sshd, client_key) == "hello\n"
    assert (tmp_path / "known_hosts").read_text() == before
