"""ssh_exec and ssh_fanout yield to jobs like local commands; killing a job stops the remote command.

Real OpenSSH sshd instances on loopback; the remote processes are looked for on the sshd host.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from mcp import Client

from relay_shell.app import RelayServer, build_server
from relay_shell.config import Settings
from tests.conftest import connected, read_audit, sc
from tests.sshd import ClientKey, SshdInstance, start_many, start_sshd, stop_all
from tests.tools.test_jobs import read_to_end

pytestmark = pytest.mark.usefixtures("sshd_installed")


@pytest.fixture(scope="module")
def hosts(key: ClientKey) -> Iterator[list[SshdInstance]]:
    instances = [start_sshd(key), *start_many(key, 2, first_address="127.0.0.60")]
    yield instances
    stop_all(instances)


@pytest.fixture
async def server(
    make_settings: Callable[..., Settings], tmp_path: Path, key: ClientKey, hosts: list[SshdInstance]
) -> AsyncIterator[RelayServer]:
    inventory = {
        f"web{index + 1}": {
            "hostname": instance.address, "port": instance.port, "user": instance.user,
            "identity_file": str(key.private_path),
        }
        for index, instance in enumerate(hosts)
    }  # fmt: skip
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(inventory))
    built = build_server(make_settings(inventory=path))
    yield built
    await built.services.aclose()


@pytest.fixture
async def client(server: RelayServer) -> AsyncIterator[Client]:
    async with connected(server) as connected_client:
        yield connected_client


async def remote_pids(client: Client, host: str, marker: str) -> str:
    """What pgrep finds on ``host`` for ``marker`` ("none" when nothing runs)."""
    pattern = f"[{marker[0]}]{marker[1:]}"  # matches the marker, not the pgrep command itself
    found = await client.call_tool(
        "ssh_exec", {"host": host, "command": f"pgrep -f '{pattern}' || echo none", "yield_after": 0}
    )
    return str(sc(found)["stdout"]).strip()


async def test_ssh_exec_yields_and_is_read_to_its_end(client: Client, server: RelayServer) -> None:
    command = "for i in $(seq 1 8); do echo $i; sleep 0.25; done; echo done >&2"
    first = sc(await client.call_tool("ssh_exec", {"host": "web1", "command": command, "yield_after": 0.8}))
    assert first["status"] == "running"
    assert first["stdout"].startswith("1\n")
    output, last = await read_to_end(client, first["job_id"], "stdout")
    stdout = first["stdout"] + output
    assert stdout == "".join(f"{i}\n" for i in range(1, 9))
    assert (last["outcome"], last["exit_code"]) == ("ok", 0)
    assert last["output_bytes"] == len(stdout) + len("done\n")
    # The streams were kept apart; the hash covers both in arrival order (stderr came last).
    assert last["stream_sha256"] == hashlib.sha256((stdout + "done\n").encode()).hexdigest()
    records = read_audit(server.services.settings.audit_path)
    end = next(r for r in records if r["tool"] == "job_end")
    assert (end["call_id"], end["outcome"], end["exit_code"]) == (first["call_id"], "ok", 0)
    assert end["stream_sha256"] == last["stream_sha256"]


async def test_killing_an_ssh_job_stops_the_remote_command(client: Client, server: RelayServer) -> None:
    marker = f"relay-remote-job-{time.monotonic_ns()}"
    first = sc(
        await client.call_tool(
            "ssh_exec",
            {"host": "web1", "command": f"echo begun; sleep 300; echo {marker}", "yield_after": 0.5},
        )
    )
    assert first["status"] == "running"
    assert await remote_pids(client, "web1", marker) != "none"
    killed = await client.call_tool("session_kill", {"session_id": first["job_id"]})
    assert sc(killed)["outcome"] == "cancelled"
    deadline = time.monotonic() + 10
    while (found := await remote_pids(client, "web1", marker)) != "none":
        assert time.monotonic() < deadline, f"remote process survived: {found}"
        await asyncio.sleep(0.1)
    end = next(r for r in read_audit(server.services.settings.audit_path) if r["tool"] == "job_end")
    assert (end["outcome"], end["call_id"]) == ("cancelled", first["call_id"])


async def test_ssh_fanout_yields_and_returns_its_rows(client: Client, server: RelayServer) -> None:
    first = sc(
        await client.call_tool(
            "ssh_fanout",
            {"command": "sleep 1; echo fleet-ok", "hosts": "web1 web2 web3", "yield_after": 0.3},
        )
    )
    assert first["status"] == "running"
    assert "results" not in first  # only a finished fan-out has rows
    progress, last = await read_to_end(client, first["job_id"])
    assert "3/3 hosts done" in first["output"] + progress
    assert last["outcome"] == "ok"
    rows = last["results"]
    assert [row["host"] for row in rows] == ["web1", "web2", "web3"]
    assert all(row["status"] == "ok" and row["output"] == "fleet-ok\n" for row in rows)
    end = next(r for r in read_audit(server.services.settings.audit_path) if r["tool"] == "job_end")
    assert (end["call_tool"], end["outcome"], end["recap"]) == ("ssh_fanout", "ok", {"ok": 3})


async def test_killing_a_fanout_job_stops_every_host(client: Client) -> None:
    marker = f"relay-fleet-job-{time.monotonic_ns()}"
    first = sc(
        await client.call_tool(
            "ssh_fanout", {"command": f"sleep 300; echo {marker}", "hosts": "web2 web3", "yield_after": 0.5}
        )
    )
    assert first["status"] == "running"
    for host in ("web2", "web3"):  # the command runs on both before the kill (else it proves nothing)
        deadline = time.monotonic() + 10
        while await remote_pids(client, host, marker) == "none":
            assert time.monotonic() < deadline, f"{host}: the command never started"
            await asyncio.sleep(0.1)
    await client.call_tool("session_kill", {"session_id": first["job_id"]})
    for host in ("web2", "web3"):
        deadline = time.monotonic() + 10
        while (found := await remote_pids(client, host, marker)) != "none":
            assert time.monotonic() < deadline, f"{host}: remote process survived: {found}"
            await asyncio.sleep(0.1)
    _, last = await read_to_end(client, first["job_id"])
    assert last["outcome"] == "cancelled"
