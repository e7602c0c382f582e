"""One exec report for local and remote commands: the same fields, signals as 128+N, lost links failed.

Against a real OpenSSH sshd on loopback; the connection-loss case kills sshd's per-connection
process (the listener's child) while the command runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from mcp import Client

from relay_shell.app import RelayServer, build_server
from relay_shell.config import Settings
from tests.conftest import connected, pids_with_marker, read_audit, sc
from tests.sshd import ClientKey, SshdInstance, descendants, start_sshd

pytestmark = pytest.mark.usefixtures("sshd_installed")

WAIT_S = 20.0


@pytest.fixture
def host(key: ClientKey) -> Iterator[SshdInstance]:
    """An sshd of this test's own: the connection-loss test kills its per-connection processes."""
    instance = start_sshd(key)
    yield instance
    instance.remove()


@pytest.fixture
async def relay(
    make_settings: Callable[..., Settings], tmp_path: Path, key: ClientKey, host: SshdInstance
) -> AsyncIterator[tuple[RelayServer, Client]]:
    inventory = tmp_path / "inventory.json"
    inventory.write_text(
        json.dumps(
            {
                "box": {
                    "hostname": host.address,
                    "port": host.port,
                    "user": host.user,
                    "identity_file": str(key.private_path),
                    "known_hosts": "ignore",
                }
            }
        )
    )
    server = build_server(make_settings(inventory=inventory))
    async with connected(server) as client:
        yield server, client
    await server.services.aclose()


async def test_a_signal_death_reads_the_same_locally_and_over_ssh(relay: tuple[RelayServer, Client]) -> None:
    _, client = relay
    local = await client.call_tool("shell_exec", {"command": "kill -9 $$", "merge_stderr": False})
    remote = await client.call_tool("ssh_exec", {"host": "box", "command": "kill -9 $$"})
    assert (local.is_error, remote.is_error) == (False, False)
    local_data, remote_data = sc(local), sc(remote)
    for data in (local_data, remote_data):
        assert (data["signal"], data["exit_code"]) == ("KILL", 137)
    assert remote_data["host"].endswith(f":{remote_data['host'].rsplit(':', 1)[1]}")
    assert local_data["host"] is None
    assert set(local_data) == set(remote_data)  # one shaper: the same fields either way
    assert "killed by SIGKILL" in remote.content[0].text.splitlines()[0]


async def test_a_connection_lost_mid_command_is_failed(
    relay: tuple[RelayServer, Client], host: SshdInstance
) -> None:
    server, client = relay
    marker = f"30.{secrets.randbelow(10**9):09d}"
    call = asyncio.create_task(client.call_tool("ssh_exec", {"host": "box", "command": f"sleep {marker}"}))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not pids_with_marker(marker):  # bounded wait until the remote command runs
        assert loop.time() < deadline, "the remote command never started"
        await asyncio.sleep(0.02)
    assert host.process is not None
    listener = host.process.pid
    # The per-connection sshd is the listener's child ("sshd: user [priv]") and, with privilege
    # separation, its own sshd child that holds the socket ("sshd: user@notty").
    per_connection = [pid for pid in descendants(listener) if _command(pid).startswith(b"sshd:")]
    assert [_parent(pid) for pid in per_connection][:1] == [listener]
    for pid in per_connection:
        os.kill(pid, signal.SIGKILL)
    result = await asyncio.wait_for(call, WAIT_S)
    assert result.is_error is True
    error = sc(result)["error"]
    assert (error["kind"], error["reason"]) == ("failed", "connection_lost")
    assert "connection was lost" in error["message"]
    record = read_audit(server.services.settings.audit_path)[-1]
    assert (record["tool"], record["outcome"], record["error_kind"]) == ("ssh_exec", "error", "failed")


def _command(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rfind(")") + 2 :].split()[1])
