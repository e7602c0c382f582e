"""The fan-out history belongs to the principal that ran each fan-out.

A ``failed:``/``ok:``/``skipped:`` term naming another principal's fan-out is refused as
``denied`` (rule ``owner``, audited with the refused principal) by every tool that takes a
host pattern, whether the term selects, intersects (``&``) or subtracts (``!``): no pattern
tells one principal which hosts another reached or how they ended. An unknown id is still
``invalid``; the owner and an admin read the fan-out back. Two principals (the SDK's auth
context, as the bearer middleware sets it) call one in-process server; the fan-out dials a
closed loopback port, so its one host ends ``unreachable`` without any sshd.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from relay_shell.app import RelayServer
from relay_shell.config import Settings
from tests.conftest import connected, ok, principal, read_audit, sc
from tests.sshd import free_port

OPERATE = "relay-shell:operate"
ADMIN = "relay-shell:admin"


def endpoints(listed: dict[str, Any]) -> list[tuple[str, int]]:
    return [(row["hostname"], row["port"]) for row in listed["hosts"]]


def pattern_calls(fanout_id: str, host: str, upload: Path) -> list[tuple[str, dict[str, Any]]]:
    """Every tool that reads a host pattern, each naming the fan-out one way or another."""
    return [
        ("ssh_hosts", {"pattern": f"failed:{fanout_id}"}),
        ("ssh_hosts", {"pattern": f"{host},!failed:{fanout_id}"}),
        ("ssh_hosts", {"pattern": f"{host},&ok:{fanout_id}"}),
        ("ssh_check", {"hosts": f"failed:{fanout_id}", "timeout": 1}),
        ("ssh_keyscan", {"hosts": [f"skipped:{fanout_id}", host], "timeout": 1}),
        ("ssh_fanout", {"command": "true", "hosts": f"failed:{fanout_id}", "timeout": 1}),
        ("ssh_upload", {"local_path": str(upload), "remote_path": "x", "hosts": f"failed:{fanout_id}"}),
    ]


async def test_a_fanout_is_read_back_only_by_its_owner_or_an_admin(
    server: RelayServer, settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    host = f"127.0.0.1:{port}"  # nothing listens: the one host ends unreachable
    upload = tmp_path / "payload.txt"
    upload.write_text("payload\n")
    with principal("alice", OPERATE):
        async with connected(server) as alice:
            ran = sc(await alice.call_tool("ssh_fanout", {"command": "true", "hosts": host, "timeout": 5}))
            fanout_id = ran["fanout_id"]
            assert [(row["host"], row["status"]) for row in ran["results"]] == [(host, "unreachable")]
            mine = ok(await alice.call_tool("ssh_hosts", {"pattern": f"failed:{fanout_id}"}))
            assert endpoints(mine) == [("127.0.0.1", port)]
    calls = pattern_calls(fanout_id, host, upload)
    with principal("bob", OPERATE):
        async with connected(server) as bob:
            for tool, arguments in calls:
                result = await bob.call_tool(tool, arguments)
                assert result.is_error is True, (tool, arguments)
                error = sc(result)["error"]
                assert (error["kind"], error["rule"]) == ("denied", "owner"), (tool, arguments)
                assert error["message"] == (
                    f"refused: fan-out {fanout_id} belongs to another principal; "
                    "only its owner or an admin may use it"
                )
                assert host not in result.content[0].text
            unknown = sc(await bob.call_tool("ssh_hosts", {"pattern": "failed:fo-000000000000"}))
            assert (unknown["error"]["kind"], unknown["error"]["argument"]) == ("invalid", "pattern")
    with principal("root", ADMIN):
        async with connected(server) as admin:
            seen = ok(await admin.call_tool("ssh_hosts", {"pattern": f"failed:{fanout_id}"}))
            assert endpoints(seen) == [("127.0.0.1", port)]
    refused = [
        (r["tool"], r["principal"], r["rule"])
        for r in read_audit(settings.audit_path)
        if r.get("decision") == "denied"
    ]
    assert refused == [(tool, "bob", "owner") for tool, _ in calls]
    # Bob's refusals left nothing: no new fan-out was run or remembered.
    assert len(server.services.fanout_history) == 1


async def test_each_principal_reads_its_own_fanouts(server: RelayServer) -> None:
    """Both run fan-outs; each one's pattern terms select from its own, never the other's."""
    ports = {name: free_port() for name in ("alice", "bob")}
    hosts = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
    ids: dict[str, str] = {}
    for name, host in hosts.items():
        with principal(name, OPERATE):
            async with connected(server) as client:
                ran = sc(
                    await client.call_tool("ssh_fanout", {"command": "true", "hosts": host, "timeout": 5})
                )
                ids[name] = ran["fanout_id"]
    for name in hosts:
        with principal(name, OPERATE):
            async with connected(server) as client:
                own = ok(await client.call_tool("ssh_hosts", {"pattern": f"failed:{ids[name]}"}))
                assert endpoints(own) == [("127.0.0.1", ports[name])]
                other = ids["bob" if name == "alice" else "alice"]
                refused = sc(await client.call_tool("ssh_hosts", {"pattern": f"failed:{other}"}))
                assert (refused["error"]["kind"], refused["error"]["rule"]) == ("denied", "owner")
