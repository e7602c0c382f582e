"""SSH tools through the MCP client against real OpenSSH sshd instances on loopback."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from relay_shell.app import RelayServer, build_server
from relay_shell.config import Settings
from tests.conftest import connected, read_audit, sc
from tests.sshd import ClientKey, SshdInstance, free_port, start_many, stop_all

pytestmark = pytest.mark.usefixtures("sshd_installed")


@pytest.fixture(scope="module")
def farm(key: ClientKey) -> Iterator[list[SshdInstance]]:
    instances = start_many(key, 20, first_address="127.0.0.30")
    yield instances
    stop_all(instances)


@pytest.fixture
def ssh_server_factory(
    make_settings: Callable[..., Settings], tmp_path: Path, key: ClientKey
) -> Callable[..., RelayServer]:
    def factory(hosts: list[SshdInstance] | None = None, **overrides: Any) -> RelayServer:
        inventory = {}
        for index, instance in enumerate(hosts or []):
            inventory[f"web{index + 1}"] = {
                "hostname": instance.address,
                "port": instance.port,
                "user": instance.user,
                "identity_file": str(key.private_path),
                "tags": ["web"],
            }
        inventory_path = tmp_path / "inventory.json"
        inventory_path.write_text(json.dumps(inventory))
        return build_server(make_settings(inventory=inventory_path, **overrides))

    return factory


@pytest.fixture
async def ssh_client(
    ssh_server_factory: Callable[..., RelayServer], host: SshdInstance
) -> AsyncIterator[Client]:
    server = ssh_server_factory([host])
    async with connected(server) as client:
        yield client
    await server.services.aclose()


def exec_args(instance: SshdInstance, key: ClientKey, command: str, **extra: Any) -> dict[str, Any]:
    return {"host": instance.target(), "key_path": str(key.private_path), "command": command, **extra}


async def test_exec_exit_code_stderr_and_host_key_recorded(
    ssh_client: Client, host: SshdInstance, key: ClientKey, settings: Settings
) -> None:
    result = await ssh_client.call_tool("ssh_exec", exec_args(host, key, "echo out; echo err >&2; exit 3"))
    assert result.is_error is False
    data = sc(result)
    assert data["exit_code"] == 3
    assert data["stdout"] == "out\n"
    assert data["stderr"] == "err\n"
    assert host.known_hosts_line().split()[2] in settings.ssh_known_hosts_file.read_text()
    record = read_audit(settings.audit_path)[-1]
    assert record["tool"] == "ssh_exec"
    assert host.address in json.dumps(record["target"])


async def test_exec_by_inventory_alias(ssh_client: Client) -> None:
    result = await ssh_client.call_tool("ssh_exec", {"host": "web1", "command": "whoami"})
    assert sc(result)["stdout"].strip() == "relaytest"


async def test_exec_timeout_leaves_no_remote_process(
    ssh_client: Client, host: SshdInstance, key: ClientKey
) -> None:
    marker = f"relay-remote-timeout-{time.monotonic_ns()}"
    result = await ssh_client.call_tool(
        "ssh_exec", exec_args(host, key, f"echo begun; sleep 300; echo {marker}", timeout=1.5)
    )
    assert sc(result)["error"]["kind"] == "timeout"
    assert "begun" in sc(result)["stdout"]
    await assert_no_remote(ssh_client, host, key, marker)


async def assert_no_remote(client: Client, host: SshdInstance, key: ClientKey, marker: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        # "[r]elay-..." matches the marker but not the shell running pgrep (its command line differs)
        pattern = f"[{marker[0]}]{marker[1:]}"
        check = await client.call_tool("ssh_exec", exec_args(host, key, f"pgrep -f '{pattern}' || echo none"))
        if sc(check)["stdout"].strip() == "none":
            return
        assert time.monotonic() < deadline, f"remote process survived: {sc(check)['stdout']}"
        await asyncio.sleep(0.1)


async def test_exec_cancellation_leaves_no_remote_process(
    ssh_server_factory: Callable[..., RelayServer], host: SshdInstance, key: ClientKey
) -> None:
    marker = f"relay-remote-cancel-{time.monotonic_ns()}"
    server = ssh_server_factory([host])
    async with connected(server) as client:
        task = asyncio.create_task(
            client.call_tool("ssh_exec", exec_args(host, key, f"sleep 300; echo {marker}"))
        )
        deadline = time.monotonic() + 10
        while True:
            probe = await client.call_tool(
                "ssh_exec", exec_args(host, key, f"pgrep -f '{marker}' || echo none")
            )
            if sc(probe)["stdout"].strip() != "none":
                break
            assert time.monotonic() < deadline, "remote command never started"
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await assert_no_remote(client, host, key, marker)
    await server.services.aclose()
    assert any(r["outcome"] == "cancelled" for r in read_audit(server.services.settings.audit_path))


async def test_fanout_across_real_sshd_plus_dead(
    ssh_server_factory: Callable[..., RelayServer], farm: list[SshdInstance], key: ClientKey
) -> None:
    server = ssh_server_factory(farm)
    dead = f"relaytest@127.0.0.1:{free_port()}"
    names = [f"web{i + 1}" for i in range(len(farm))]
    hosts = [*names[:10], dead, *names[10:]]
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async with connected(server) as client:
        result = await client.call_tool(
            "ssh_fanout",
            {"command": "echo same-answer", "hosts": hosts, "max_output": 4096},
            progress_callback=on_progress,
        )
    await server.services.aclose()
    data = sc(result)
    rows = data["results"]
    assert [row["host"] for row in rows] == hosts
    assert all(row["status"] == "ok" for row in rows if row["host"] != dead)
    dead_row = next(row for row in rows if row["host"] == dead)
    assert dead_row["status"] == "unreachable"
    assert dead_row["reason"]
    assert data["recap"] == {"ok": 20, "unreachable": 1}
    text = result.content[0].text
    assert text.count("same-answer") == 1  # 20 identical outputs grouped into one block
    assert len(text.encode()) <= 4096
    assert progress  # hosts done / total


async def test_fanout_denied_host_by_canonical_ip(
    ssh_server_factory: Callable[..., RelayServer], farm: list[SshdInstance]
) -> None:
    server = ssh_server_factory(farm[:2], policy_deny=r"127\.0\.0\.30\b")
    async with connected(server) as client:
        result = await client.call_tool("ssh_fanout", {"command": "true", "hosts": "web1 web2"})
    await server.services.aclose()
    statuses = {row["host"]: row["status"] for row in sc(result)["results"]}
    assert statuses == {"web1": "denied", "web2": "ok"}
    record = read_audit(server.services.settings.audit_path)[-1]
    assert (record["decision"], record["denied_targets"]) == ("allowed", ["web1"])
    assert "web1" not in record["target"]  # only admitted hosts are the call's targets


async def test_deny_on_address_catches_other_spellings(
    ssh_server_factory: Callable[..., RelayServer], host: SshdInstance, key: ClientKey
) -> None:
    server = ssh_server_factory([host], policy_deny=r"\b127\.0\.0\.1\b")
    async with connected(server) as client:
        for spelling in ("2130706433", "0x7f000001", "127.1"):
            result = await client.call_tool(
                "ssh_exec",
                {
                    "host": f"relaytest@{spelling}:{host.port}",
                    "key_path": str(key.private_path),
                    "command": "true",
                },
            )
            assert sc(result)["error"]["kind"] == "denied", spelling
    await server.services.aclose()


async def test_check_keyscan_hosts_and_resources(
    ssh_server_factory: Callable[..., RelayServer], host: SshdInstance
) -> None:
    server = ssh_server_factory([host])
    known_hosts = server.services.settings.ssh_known_hosts_file
    known_hosts.write_text(host.known_hosts_line())  # ssh_check records no host key itself
    dead_port = free_port()
    async with connected(server) as client:
        check = sc(await client.call_tool("ssh_check", {"hosts": f"web1, relaytest@127.0.0.1:{dead_port}"}))
        assert [row["ok"] for row in check["hosts"]] == [True, False]
        assert check["hosts"][1]["reason"] == "refused"
        scan = sc(await client.call_tool("ssh_keyscan", {"hosts": host.address, "port": host.port}))
        fingerprints = {k["fingerprint_sha256"] for k in scan["hosts"][0]["keys"]}
        assert host.fingerprint in fingerprints
        assert any(
            k["known_hosts_line"].startswith(f"[{host.address}]:{host.port} ")
            for k in scan["hosts"][0]["keys"]
        )
        bad = await client.call_tool("ssh_keyscan", {"hosts": "-oProxyCommand=touch /tmp/pwned"})
        assert sc(bad)["error"]["kind"] == "invalid"
        listed = sc(await client.call_tool("ssh_hosts", {}))
        assert listed["hosts"][0]["alias"] == "web1"
        resource = await client.read_resource("relay-shell://inventory")
        assert "web1" in resource.contents[0].text
        one = await client.read_resource("relay-shell://inventory/web1")
        assert json.loads(one.contents[0].text)["port"] == host.port
    await server.services.aclose()
    reads = [
        r["args"]["uri"]
        for r in read_audit(server.services.settings.audit_path)
        if r["tool"] == "resource_read"
    ]
    assert reads == ["relay-shell://inventory", "relay-shell://inventory/web1"]
    assert all(
        r["tier"] == 0
        for r in read_audit(server.services.settings.audit_path)
        if r["tool"] == "resource_read"
    )


def test_malformed_inventory_fails_check_config(tmp_path: Path) -> None:
    bad = tmp_path / "inventory.json"
    bad.write_text('{"web1": {"hostname": 12, "port": "x"')
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "RELAY_SHELL_INVENTORY": str(bad),
        "RELAY_SHELL_AUDIT_PATH": str(tmp_path / "audit.jsonl"),
    }
    relay = str(Path(sys.executable).parent / "relay-shell")
    proc = subprocess.run([relay, "--check-config"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert str(bad) in proc.stderr
