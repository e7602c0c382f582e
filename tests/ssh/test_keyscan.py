"""Native host key scanning (SPEC §5.2 ssh_keyscan): no ssh-keyscan binary, validated names."""

from __future__ import annotations

import pytest

from relay_shell.errors import InvalidInput
from relay_shell.ssh.keyscan import keyscan
from tests.sshd import SshdInstance, free_port

ALL_TYPES = ["ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512"]


async def test_fingerprints_equal_the_generated_host_keys(sshd_farm: list[SshdInstance]) -> None:
    hosts = sshd_farm[:5]
    scanned = await keyscan(
        [f"{host.address}:{host.port}" for host in hosts], port=22, key_types=ALL_TYPES, timeout_s=10
    )
    assert [text for text, _, _ in scanned] == [f"{host.address}:{host.port}" for host in hosts]
    for host, (_, keys, error) in zip(hosts, scanned, strict=True):
        assert error is None
        # Each daemon has only an ed25519 key: the other types are simply absent.
        assert len(keys) == 1
        key = keys[0]
        assert (key.host, key.port, key.key_type) == (host.address, host.port, "ssh-ed25519")
        assert key.fingerprint_sha256 == host.fingerprint
        assert key.known_hosts_line + "\n" == host.known_hosts_line()


async def test_port_argument_and_unreachable_hosts(sshd: SshdInstance) -> None:
    dead_port = free_port()
    scanned = await keyscan(
        [sshd.address, f"127.0.0.1:{dead_port}"], port=sshd.port, key_types=["ssh-ed25519"], timeout_s=10
    )
    (_, live_keys, live_error), (_, dead_keys, dead_error) = scanned
    assert live_error is None
    assert [key.fingerprint_sha256 for key in live_keys] == [sshd.fingerprint]
    assert dead_keys == []
    assert dead_error is not None
    assert dead_error.startswith("refused")


async def test_a_type_the_server_lacks_is_an_explained_empty_result(sshd: SshdInstance) -> None:
    [(_, keys, error)] = await keyscan(
        [sshd.address], port=sshd.port, key_types=["rsa-sha2-512"], timeout_s=10
    )
    assert keys == []
    assert error == "the server offered none of the requested key types"


@pytest.mark.parametrize(
    ("hosts", "key_types", "argument"),
    [
        (["-oProxyCommand=touch /tmp/pwned"], ["ssh-ed25519"], "hosts"),
        (["host;id"], ["ssh-ed25519"], "hosts"),
        (["$(id)"], ["ssh-ed25519"], "hosts"),
        (["a b"], ["ssh-ed25519"], "hosts"),
        (["root@127.0.0.1"], ["ssh-ed25519"], "hosts"),
        (["127.0.0.1"], ["ssh-bogus"], "key_types"),
        (["127.0.0.1"], [], "key_types"),
    ],
)
async def test_invalid_input_is_refused_before_any_connection(
    hosts: list[str], key_types: list[str], argument: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        await keyscan(hosts, port=22, key_types=key_types, timeout_s=5)
    assert caught.value.argument == argument
