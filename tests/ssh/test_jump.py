"""Jump hosts (SPEC §9.1): ProxyJump in ssh_config and the `jump` override, through a second sshd."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from relay_shell.capture import SplitCapture
from relay_shell.config import Settings
from relay_shell.errors import RemoteUnreachable
from relay_shell.ssh.connect import Dialer
from relay_shell.ssh.inventory import Inventory
from relay_shell.ssh.pool import ConnectionPool
from relay_shell.ssh.remote_exec import run_remote
from tests.components import require_sshd
from tests.ssh.helpers import spec_for
from tests.sshd import ClientKey, SshdInstance, start_sshd


def _stdout(result_capture: object) -> str:
    assert isinstance(result_capture, SplitCapture)
    return result_capture.stdout.render()


async def test_jump_override_tunnels_through_the_jump_host(
    pool: ConnectionPool, sshd_jump: SshdInstance, sshd_farm: list[SshdInstance], client_key: ClientKey,
    make_settings: Callable[..., Settings], tmp_path: Path,
) -> None:  # fmt: skip
    target = sshd_farm[4]
    inventory_file = tmp_path / "inventory.json"
    inventory_file.write_text(json.dumps({"bastion": {
        "hostname": sshd_jump.address, "port": sshd_jump.port, "user": sshd_jump.user,
        "identity_file": str(client_key.private_path),
    }}))  # fmt: skip
    settings = make_settings(inventory=inventory_file)
    spec = spec_for(target, settings, client_key, jump="bastion")
    assert [hop.display() for hop in spec.jump] == [sshd_jump.target()]
    result = await run_remote(pool, spec, "echo $SSH_CONNECTION", timeout_s=15, budget=4096)
    assert result.exit_code == 0
    assert _stdout(result.capture).split()[2:4] == [target.address, str(target.port)]
    # accept-new recorded both the hop and the target.
    assert (tmp_path / "known_hosts").read_text().splitlines() == [
        sshd_jump.known_hosts_line().strip(), target.known_hosts_line().strip(),
    ]  # fmt: skip

    dialed = await Dialer(settings).dial(spec, deadline=asyncio.get_running_loop().time() + 10)
    try:
        assert len(dialed.tunnels) == 1
    finally:
        await dialed.aclose()
    assert dialed.tunnels[0].is_closed()


async def test_ssh_config_proxyjump_alias(
    pool: ConnectionPool, sshd_jump: SshdInstance, sshd_farm: list[SshdInstance], client_key: ClientKey,
    make_settings: Callable[..., Settings], tmp_path: Path,
) -> None:  # fmt: skip
    target = sshd_farm[5]
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host bastion\n    HostName {sshd_jump.address}\n    Port {sshd_jump.port}\n\n"
        f"Host inner\n    HostName {target.address}\n    Port {target.port}\n    ProxyJump bastion\n\n"
        f"Host *\n    User relaytest\n    IdentityFile {client_key.private_path}\n"
    )
    settings = make_settings(ssh_config=config)
    inventory = Inventory.load(settings)
    spec = inventory.resolve("inner")
    assert (spec.source, [hop.alias for hop in spec.jump]) == ("ssh_config", ["bastion"])
    result = await run_remote(pool, spec, "echo $SSH_CONNECTION", timeout_s=15, budget=4096)
    assert _stdout(result.capture).split()[2] == target.address


@pytest.fixture
def no_forwarding_jump(client_key: ClientKey) -> Iterator[SshdInstance]:
    require_sshd()
    instance = start_sshd(client_key, extra_config=["AllowTcpForwarding no"])
    yield instance
    instance.remove()


async def test_a_jump_host_that_refuses_tunnels(
    pool: ConnectionPool, no_forwarding_jump: SshdInstance, sshd_farm: list[SshdInstance],
    client_key: ClientKey, settings: Settings,
) -> None:  # fmt: skip
    hop = spec_for(no_forwarding_jump, settings, client_key)
    spec = replace(spec_for(sshd_farm[6], settings, client_key), jump=(hop,))
    with pytest.raises(RemoteUnreachable) as caught:
        await run_remote(pool, spec, "true", timeout_s=10, budget=4096)
    assert caught.value.reason == "refused"
    assert "jump host" in caught.value.detail
    assert pool.stats().connections == 0
