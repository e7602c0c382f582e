"""ssh_spawn, ssh_upload/ssh_download and ssh_forward* through an in-process MCP client, real sshd."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from relay_shell.app import RelayServer, build_server
from relay_shell.config import Settings
from relay_shell.services import LazyForwards, LazyPool
from relay_shell.ssh.pool import ConnectionPool
from tests.components import require_sshd
from tests.conftest import pids_with_marker, read_audit, sc, sha256_of, started, tree_hashes
from tests.netutil import round_trip, wait_refused
from tests.sshd import ClientKey, SshdInstance, start_sshd

PROMPT = r"\$ $"
WAIT_S = 10.0
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def sshd() -> Iterator[SshdInstance]:
    require_sshd()
    instance = start_sshd(ClientKey.create())
    yield instance
    instance.remove()


@pytest.fixture
def make_ssh_settings(make_settings: Callable[..., Settings], sshd: SshdInstance) -> Callable[..., Settings]:
    """Settings whose known_hosts file holds the test sshd's key, checked strictly."""

    def factory(**overrides: Any) -> Settings:
        settings = make_settings(ssh_known_hosts="strict", **overrides)
        settings.ssh_known_hosts_file.write_text(sshd.known_hosts_line())
        return settings

    return factory


@pytest.fixture
def settings(make_ssh_settings: Callable[..., Settings]) -> Settings:
    return make_ssh_settings(max_forwards=3)


def build_ssh_server(settings: Settings) -> RelayServer:
    """The full server, as relay-shell builds it (every tool family registered)."""
    server = build_server(settings)
    assert isinstance(server.services.pool, LazyPool)
    assert isinstance(server.services.forwards, LazyForwards)
    return server


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[RelayServer]:
    async with started(build_ssh_server(settings)) as srv:
        yield srv


def pool(server: RelayServer) -> ConnectionPool:
    return server.services.pool.get()


def ok(result: Any) -> dict[str, Any]:
    assert result.is_error is False, result.content[0].text
    return sc(result)


def target(sshd: SshdInstance, **extra: Any) -> dict[str, Any]:
    return {"host": sshd.target(), "key_path": str(sshd.client_key.private_path), **extra}


async def recv_until(client: Client, session_id: str, until: str) -> dict[str, Any]:
    data = ok(
        await client.call_tool("session_recv", {"session_id": session_id, "until": until, "timeout": WAIT_S})
    )
    assert data["matched"] is True, data
    return data


async def send(client: Client, session_id: str, **args: Any) -> None:
    ok(await client.call_tool("session_send", {"session_id": session_id, **args}))


# --- ssh_spawn ------------------------------------------------------------------------------------


async def test_remote_shell_session(
    client: Client, server: RelayServer, sshd: SshdInstance, settings: Settings
) -> None:
    started = ok(await client.call_tool("ssh_spawn", target(sshd, cols=90, rows=25)))
    sid = started["session_id"]
    assert sid.startswith("ssh-")
    assert (started["kind"], started["host"], started["command"]) == ("ssh", sshd.target(), "login shell")
    assert started["tier"] == 1
    await recv_until(client, sid, PROMPT)
    assert pool(server).stats().in_use == 1

    await send(client, sid, data="cd /tmp")
    await recv_until(client, sid, PROMPT)
    await send(client, sid, data="pwd")
    assert "/tmp" in (await recv_until(client, sid, r"^/tmp\r?$"))["output"]

    duration = f"100.{secrets.randbelow(10**6):06d}"
    await send(client, sid, data=f"sleep {duration}")
    async with asyncio.timeout(WAIT_S):
        while not pids_with_marker(f"sleep {duration}"):
            await asyncio.sleep(0.02)
    await send(client, sid, enter=False, keys=["C-c"])
    await recv_until(client, sid, PROMPT)
    assert pids_with_marker(f"sleep {duration}") == []
    await send(client, sid, data="echo alive-$((40+2))")
    await recv_until(client, sid, r"alive-42")

    resized = ok(await client.call_tool("session_resize", {"session_id": sid, "cols": 100, "rows": 30}))
    assert (resized["cols"], resized["rows"]) == (100, 30)
    await send(client, sid, data="stty size")
    await recv_until(client, sid, r"^30 100\r?$")

    listed = ok(await client.call_tool("session_list", {}))
    [row] = [row for row in listed["sessions"] if row["session_id"] == sid]
    assert (row["kind"], row["host"], row["state"]) == ("ssh", sshd.target(), "running")

    await send(client, sid, data="exit 3")
    final: dict[str, Any] = {"ended": False}
    async with asyncio.timeout(WAIT_S):
        while not final["ended"]:
            final = ok(await client.call_tool("session_recv", {"session_id": sid, "timeout": 2}))
    assert final["exit_code"] == 3
    ok(await client.call_tool("session_kill", {"session_id": sid}))
    assert pool(server).stats().in_use == 0

    [record] = [r for r in read_audit(settings.audit_path) if r["tool"] == "ssh_spawn"]
    assert record["outcome"] == "ok"
    assert sshd.target() in record["target"]
    assert record["known_hosts"] == "strict"


async def test_spawn_with_a_command(client: Client, sshd: SshdInstance) -> None:
    started = ok(await client.call_tool("ssh_spawn", target(sshd, command="echo from-$((6*7)); exit 5")))
    assert started["command"] == "echo from-$((6*7)); exit 5"
    data = await recv_until(client, started["session_id"], r"from-42")
    assert "from-42" in data["output"]


async def test_spawn_refused_for_an_unknown_host_key(
    make_settings: Callable[..., Settings], sshd: SshdInstance, tmp_path: Path
) -> None:
    settings = make_settings(ssh_known_hosts="strict", ssh_known_hosts_file=tmp_path / "empty_known_hosts")
    server = build_ssh_server(settings)
    async with Client(server) as client:
        refused = await client.call_tool("ssh_spawn", target(sshd))
        assert refused.is_error is True
        assert sc(refused)["error"]["kind"] == "failed"
        assert "host_key" in sc(refused)["error"]["message"]
        assert ok(await client.call_tool("session_list", {}))["count"] == 0
    await server.services.aclose()


# --- ssh_upload / ssh_download --------------------------------------------------------------------


async def test_file_and_tree_round_trip_with_progress(
    client: Client, sshd: SshdInstance, tmp_path: Path, remote_dir: Path, settings: Settings
) -> None:
    source = tmp_path / "blob.bin"
    source.write_bytes(secrets.token_bytes(5 * MIB))
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    remote_file = str(remote_dir / "blob.bin")
    sent = ok(await client.call_tool(
        "ssh_upload", target(sshd, local_path=str(source), remote_path=remote_file), progress_callback=on_progress
    ))  # fmt: skip
    assert (sent["bytes"], sent["file_count"], sent["destination"]) == (5 * MIB, 1, remote_file)
    assert sent["sha256"] == sha256_of(source)
    assert sent["tier"] == 2
    assert progress, "no progress notification reached the client"
    assert progress[-1][:2] == (5 * MIB, 5 * MIB)
    assert all(total == 5 * MIB for _, total, _ in progress)

    back = tmp_path / "back.bin"
    fetched = ok(
        await client.call_tool("ssh_download", target(sshd, remote_path=remote_file, local_path=str(back)))
    )
    assert fetched["sha256"] == sha256_of(back) == sha256_of(source)

    tree = tmp_path / "tree"
    for index in range(50):
        path = tree / f"dir{index % 5}" / f"file{index:02d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(secrets.token_bytes(64 + index))
    up = ok(await client.call_tool(
        "ssh_upload", target(sshd, local_path=str(tree), remote_path=str(remote_dir / "t"), recursive=True)
    ))  # fmt: skip
    assert (up["file_count"], up["directory_count"], up["destination"]) == (50, 5, str(remote_dir / "t"))
    assert len(up["files"]) == 50
    down = ok(await client.call_tool(
        "ssh_download", target(sshd, remote_path=str(remote_dir / "t"), local_path=str(tmp_path / "t2"), recursive=True)
    ))  # fmt: skip
    assert down["file_count"] == 50
    assert tree_hashes(tmp_path / "t2") == tree_hashes(tree)

    records = [r for r in read_audit(settings.audit_path) if r["tool"] == "ssh_upload"]
    assert records[0]["args"]["remote_path"] == remote_file
    assert records[0]["sha256"] == sha256_of(source)
    assert records[0]["tier"] == 2


async def test_transfer_errors_are_clear(
    client: Client, server: RelayServer, sshd: SshdInstance, tmp_path: Path, remote_dir: Path
) -> None:
    missing = await client.call_tool(
        "ssh_upload", target(sshd, local_path=str(tmp_path / "absent"), remote_path=str(remote_dir))
    )
    assert (sc(missing)["error"]["kind"], sc(missing)["error"]["argument"]) == ("invalid", "local_path")
    assert pool(server).stats().dials == 0  # refused before connecting

    no_remote = await client.call_tool(
        "ssh_download", target(sshd, remote_path=str(remote_dir / "absent"), local_path=str(tmp_path / "x"))
    )
    assert (sc(no_remote)["error"]["kind"], sc(no_remote)["error"]["argument"]) == ("invalid", "remote_path")

    source = tmp_path / "note.txt"
    source.write_text("hello")
    root_only = Path(tempfile.mkdtemp(prefix="relay-rootonly-"))
    root_only.chmod(0o755)
    try:
        denied = await client.call_tool(
            "ssh_upload", target(sshd, local_path=str(source), remote_path=str(root_only / "note.txt"))
        )
        assert sc(denied)["error"]["kind"] == "failed"
        assert "permission denied" in sc(denied)["error"]["message"]
        assert str(root_only / "note.txt") in sc(denied)["error"]["message"]
    finally:
        shutil.rmtree(root_only)

    (remote_dir / "taken").write_text("file")
    (tmp_path / "srcdir").mkdir()
    (tmp_path / "srcdir" / "a").write_text("a")
    wrong_kind = await client.call_tool(
        "ssh_upload",
        target(
            sshd, local_path=str(tmp_path / "srcdir"), remote_path=str(remote_dir / "taken"), recursive=True
        ),
    )
    assert (sc(wrong_kind)["error"]["kind"], sc(wrong_kind)["error"]["argument"]) == (
        "invalid",
        "remote_path",
    )
    no_parent = await client.call_tool(
        "ssh_download",
        target(sshd, remote_path=str(remote_dir / "taken"), local_path=str(tmp_path / "no" / "x")),
    )
    assert (sc(no_parent)["error"]["kind"], sc(no_parent)["error"]["argument"]) == ("invalid", "local_path")


# --- forwards -------------------------------------------------------------------------------------

OPENED = ("forward_id", "kind", "spec", "bind", "listen_port", "host", "target", "state", "owner")


async def test_local_socks_and_remote_forwards(
    client: Client, server: RelayServer, sshd: SshdInstance, echo_port: int, settings: Settings
) -> None:
    local = ok(await client.call_tool("ssh_forward", target(sshd, spec=f"L:0:127.0.0.1:{echo_port}")))
    socks = ok(await client.call_tool("ssh_forward", target(sshd, spec="D:0")))
    remote = ok(await client.call_tool("ssh_forward", target(sshd, spec=f"R:0:127.0.0.1:{echo_port}")))
    for opened in (local, socks, remote):
        assert opened["forward_id"].startswith("fwd-")
        assert opened["listen_port"] > 0
        assert opened["bind"] == "127.0.0.1"
        assert opened["tier"] == 2
        assert (opened["host"], opened["state"]) == (sshd.target(), "open")
        # an open reports where it listens and leads; its counters are ssh_forward_list's
        assert set(opened) == {*OPENED, "tier"}
    assert local["spec"] == f"L:{local['listen_port']}:127.0.0.1:{echo_port}"
    assert (local["kind"], local["target"]) == ("L", f"127.0.0.1:{echo_port}")
    assert (socks["kind"], socks["target"]) == ("D", None)

    assert await round_trip(local["listen_port"], b"over L") == b"over L"
    assert await round_trip(socks["listen_port"], b"over D", socks_to=echo_port) == b"over D"
    assert await round_trip(remote["listen_port"], b"over R") == b"over R"

    listed = ok(await client.call_tool("ssh_forward_list", {}))
    assert listed["count"] == 3
    rows = {row["forward_id"]: row for row in listed["forwards"]}
    assert rows[local["forward_id"]]["bytes_sent"] == rows[local["forward_id"]]["bytes_received"] == 6
    assert rows[socks["forward_id"]]["target"] is None
    assert rows[remote["forward_id"]]["kind"] == "R"
    assert {row["host"] for row in rows.values()} == {sshd.target()}

    full = await client.call_tool("ssh_forward", target(sshd, spec="D:0"))
    assert "RELAY_SHELL_MAX_FORWARDS" in sc(full)["error"]["message"]

    for opened in (local, socks, remote):
        closed = ok(await client.call_tool("ssh_forward_close", {"forward_id": opened["forward_id"]}))
        row = rows[opened["forward_id"]]
        assert closed == {  # a close reports the forward's final state and traffic
            "forward_id": opened["forward_id"], "state": "closed", "bytes_sent": row["bytes_sent"],
            "bytes_received": row["bytes_received"], "connections": 1, "tier": 1,
        }  # fmt: skip
        assert await wait_refused(opened["listen_port"])
    assert ok(await client.call_tool("ssh_forward_list", {}))["count"] == 0
    assert pool(server).stats().in_use == 0
    again = await client.call_tool("ssh_forward_close", {"forward_id": local["forward_id"]})
    assert (sc(again)["error"]["kind"], sc(again)["error"]["argument"]) == ("invalid", "forward_id")

    forward_records = [r for r in read_audit(settings.audit_path) if r["tool"] == "ssh_forward"]
    assert f"127.0.0.1:{echo_port}" in forward_records[0]["target"]


@pytest.mark.parametrize("spec", ["L:abc", "X:1:2:3", "L:70000:127.0.0.1:80", "L:1:127.0.0.1", "D:1:2:3"])
async def test_malformed_specs_never_connect(
    client: Client, server: RelayServer, sshd: SshdInstance, spec: str
) -> None:
    result = await client.call_tool("ssh_forward", target(sshd, spec=spec))
    assert result.is_error is True
    assert (sc(result)["error"]["kind"], sc(result)["error"]["argument"]) == ("invalid", "spec")
    assert pool(server).stats().dials == 0
    assert pool(server).stats().connections == 0


async def test_deny_list_sees_the_forward_destination(
    make_ssh_settings: Callable[..., Settings], sshd: SshdInstance
) -> None:
    server = build_ssh_server(make_ssh_settings(policy_deny=r"10\.9\.9\.9"))
    async with Client(server) as client:
        denied = await client.call_tool("ssh_forward", target(sshd, spec="L:0:0x0a090909:80"))
        assert sc(denied)["error"]["kind"] == "denied"
        bad_bind = await client.call_tool("ssh_forward", target(sshd, spec="D:0", bind="example.com"))
        assert sc(bad_bind)["error"]["argument"] == "bind"
        assert server.services.pool.get().stats().dials == 0
        socks = ok(await client.call_tool("ssh_forward", target(sshd, spec="D:0")))
        reader, writer = await asyncio.open_connection("127.0.0.1", socks["listen_port"])
        try:
            writer.write(bytes([5, 1, 0]))
            assert await reader.readexactly(2) == bytes([5, 0])
            writer.write(bytes([5, 1, 0, 1]) + socket.inet_aton("10.9.9.9") + (80).to_bytes(2, "big"))
            reply = await asyncio.wait_for(reader.readexactly(10), WAIT_S)
            assert reply[1] == 0x02  # not allowed by ruleset: the deny list covers SOCKS destinations
        finally:
            writer.close()
        listed = ok(await client.call_tool("ssh_forward_list", {}))
        assert "refused" in listed["forwards"][0]["last_error"]
    await server.services.aclose()
    assert len(server.services.forwards.get()) == 0
    # The SOCKS destination was decided by the pipeline: its own audit record, and a denial counted.
    socks_records = [
        r
        for r in read_audit(server.services.settings.audit_path)
        if r["args"].get("text", "").startswith("socks ")
    ]
    assert [
        (r["tool"], r["side_channel"], r["tier"], r["decision"], r["outcome"], r["rule"])
        for r in socks_records
    ] == [("ssh_forward", "socks", 2, "denied", "denied", "deny")]
    assert "10.9.9.9" in socks_records[0]["target"]
    metrics = server.services.metrics.render().decode()
    assert 'relay_shell_denials_total{reason="deny",tool="ssh_forward"} 2.0' in metrics
    assert (
        'relay_shell_tool_calls_total{mode="open",outcome="denied",tier="2",tool="ssh_forward/socks"} 1.0'
        in metrics
    )
