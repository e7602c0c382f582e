"""Probes of the SSH settings, against a real OpenSSH ``sshd`` on loopback (and a black hole)."""

from __future__ import annotations

from typing import Any

from tests.settings.harness import Harness, poll_until

SWEEP_DEADLINE_S = 2.0
KEEPALIVE_DEADLINE_S = 2.0
"""The rows act within 0.5 s, the defaults after 30 s or more: two seconds tell them apart, and
are all the run without the setting waits."""
CLOSED = "relaytest@127.0.0.1:1"  # nothing listens on port 1: a refusal, at once


def exec_args(h: Harness, command: str, *, address: str | None = None, **extra: Any) -> dict[str, Any]:
    sshd, key = h.peers.sshd, h.peers.key
    assert sshd is not None and key is not None
    return {
        "host": f"{sshd.user}@{address or sshd.address}:{sshd.port}",
        "key_path": str(key.private_path),
        "command": command,
        **extra,
    }


async def ssh_connections(h: Harness, client: Any) -> int:
    info = await h.call(client, "server_info", {})
    return int(info["counts"].get("ssh_connections", 0))


async def ssh_config(h: Harness) -> None:  # RELAY_SHELL_SSH_CONFIG=<tmp>/custom_ssh_config
    data = await h.one_call("ssh_hosts", {})
    assert [(row["alias"], row["port"], row["source"]) for row in data["hosts"]] == [
        ("relay-from-config", 2201, "ssh_config")
    ]


async def inventory(h: Harness) -> None:  # RELAY_SHELL_INVENTORY=<tmp>/inventory.json
    data = await h.one_call("ssh_hosts", {})
    assert ("relay-from-inventory", "127.0.0.9", 2202) in {
        (row["alias"], row["hostname"], row["port"]) for row in data["hosts"]
    }


async def ssh_known_hosts(h: Harness) -> None:  # RELAY_SHELL_SSH_KNOWN_HOSTS=strict
    data = await h.one_call("ssh_exec", exec_args(h, "echo reached"))
    assert data["is_error"] is True
    assert "host key" in data["error"]["message"].lower()


async def ssh_known_hosts_file(
    h: Harness,
) -> None:  # RELAY_SHELL_SSH_KNOWN_HOSTS_FILE=<tmp>/custom_known_hosts
    data = await h.one_call("ssh_exec", exec_args(h, "echo reached"))
    assert data["stdout"] == "reached\n"
    assert h.peers.sshd is not None
    path = h.tmp / "custom_known_hosts"
    assert path.is_file()
    recorded = path.read_text()
    assert h.peers.sshd.known_hosts_line().split()[2] in recorded


async def ssh_connect_timeout(h: Harness) -> None:  # RELAY_SHELL_SSH_CONNECT_TIMEOUT=1
    target = f"relaytest@127.0.0.1:{h.peers.black_hole_port}"
    data = await h.one_call("ssh_exec", {"host": target, "command": "true", "timeout": 2})
    assert data["is_error"] is True
    assert "no SSH connection within 1.0 s" in data["error"]["message"]


async def ssh_keepalive(h: Harness) -> None:  # RELAY_SHELL_SSH_KEEPALIVE=0.3
    sshd = h.peers.sshd
    assert sshd is not None
    start = sshd.log_path.stat().st_size
    async with h.client() as client:
        data = await h.call(client, "ssh_exec", exec_args(h, "echo reached"))
        assert data["stdout"] == "reached\n"

        async def keepalive_seen() -> bool:
            with sshd.log_path.open("rb") as log:
                log.seek(start)
                return b"keepalive@openssh.com" in log.read()

        await poll_until(keepalive_seen, KEEPALIVE_DEADLINE_S, "a keepalive request reached sshd")


async def ssh_idle_timeout(h: Harness) -> None:  # RELAY_SHELL_SSH_IDLE_TIMEOUT=0.5
    async with h.client() as client:
        data = await h.call(client, "ssh_exec", exec_args(h, "echo reached"))
        assert data["stdout"] == "reached\n"
        assert await ssh_connections(h, client) == 1

        async def closed() -> bool:
            return await ssh_connections(h, client) == 0

        await poll_until(closed, SWEEP_DEADLINE_S, "the idle pooled connection closed")


async def max_conns(h: Harness) -> None:  # RELAY_SHELL_MAX_CONNS=1
    async with h.client() as client:
        for address in ("127.0.0.1", "localhost"):  # two pool keys: two connections by default
            data = await h.call(client, "ssh_exec", exec_args(h, "echo reached", address=address))
            assert data["stdout"] == "reached\n"
        assert await ssh_connections(h, client) == 1


async def max_forwards(h: Harness) -> None:  # RELAY_SHELL_MAX_FORWARDS=1
    async with h.client() as client:
        arguments = exec_args(h, "")
        del arguments["command"]
        first = await h.call(client, "ssh_forward", {**arguments, "spec": "L:0:127.0.0.1:9"})
        assert first["is_error"] is False, first
        second = await h.call(client, "ssh_forward", {**arguments, "spec": "L:0:127.0.0.1:9"})
        assert second["is_error"] is True
        assert "RELAY_SHELL_MAX_FORWARDS=1" in second["error"]["message"]


async def fanout_max_hosts(h: Harness) -> None:  # RELAY_SHELL_FANOUT_MAX_HOSTS=2
    hosts = [CLOSED, "relaytest@127.0.0.1:2", "relaytest@127.0.0.1:3"]
    data = await h.one_call("ssh_fanout", {"command": "true", "hosts": hosts, "timeout": 5})
    assert data["is_error"] is True
    assert data["error"]["kind"] == "failed"
    assert "RELAY_SHELL_FANOUT_MAX_HOSTS=2" in data["error"]["message"]


async def fanout_history(h: Harness) -> None:  # RELAY_SHELL_FANOUT_HISTORY=1
    async with h.client() as client:
        first = await h.call(client, "ssh_fanout", {"command": "true", "hosts": [CLOSED], "timeout": 5})
        await h.call(client, "ssh_fanout", {"command": "true", "hosts": [CLOSED], "timeout": 5})
        retry = await h.call(
            client, "ssh_fanout", {"command": "true", "hosts": f"failed:{first['fanout_id']}"}
        )
    assert retry["is_error"] is True  # the second fan-out pushed the first out of a history of one
    assert (retry["error"]["kind"], retry["error"]["argument"]) == ("invalid", "hosts")
    assert "not in the history" in retry["error"]["message"]


async def fanout_max_concurrency(h: Harness) -> None:  # RELAY_SHELL_FANOUT_MAX_CONCURRENCY=2
    data = await h.one_call(
        "ssh_fanout", {"command": "true", "hosts": [CLOSED], "concurrency": 10, "timeout": 5}
    )
    assert "concurrency clamped to 2" in data.get("notes", [])
