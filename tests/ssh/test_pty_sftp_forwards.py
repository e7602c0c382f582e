"""Remote PTYs, SFTP transfers and port forwards against a real OpenSSH sshd (non-root user)."""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import secrets
import shutil
import socket
import stat
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relay_shell.config import Settings
from relay_shell.errors import ExecFailed, InvalidInput, LimitReached, RemoteFailed, SessionEnded
from relay_shell.ssh.forwards import ForwardManager, ForwardSpec, parse_forward_spec, validate_bind
from relay_shell.ssh.pool import ConnectionPool
from relay_shell.ssh.pty import SshPtyTransport, spawn_ssh_pty
from relay_shell.ssh.sftp import download, upload
from relay_shell.ssh.targets import HostSpec
from tests.conftest import pids_with_marker, sha256_of, tree_hashes
from tests.netutil import round_trip, wait_refused
from tests.ssh.helpers import spec_for
from tests.sshd import TEST_USER, ClientKey, SshdInstance

PROMPT = re.compile(rb"\$ $")
WAIT_S = 10.0


@pytest.fixture
def spec(sshd: SshdInstance, client_key: ClientKey, settings: Settings) -> HostSpec:
    return spec_for(sshd, settings, client_key)


def deadline(seconds: float = WAIT_S) -> float:
    return asyncio.get_running_loop().time() + seconds


async def read_until(
    transport: SshPtyTransport, pattern: re.Pattern[bytes], timeout_s: float = WAIT_S
) -> bytes:
    """Accumulate output until ``pattern`` matches (or the output ends); fails on timeout."""
    seen = b""
    async with asyncio.timeout(timeout_s):
        while not pattern.search(seen):
            chunk = await transport.read()
            if not chunk:
                break
            seen += chunk
    return seen


async def read_to_end(transport: SshPtyTransport) -> bytes:
    seen = b""
    async with asyncio.timeout(WAIT_S):
        while chunk := await transport.read():
            seen += chunk
    return seen


async def wait_until_gone(marker: str) -> None:
    async with asyncio.timeout(WAIT_S):
        while pids_with_marker(marker):
            await asyncio.sleep(0.02)


async def wait_until_running(marker: str) -> None:
    async with asyncio.timeout(WAIT_S):
        while not pids_with_marker(marker):
            await asyncio.sleep(0.02)


# --- PTY ------------------------------------------------------------------------------------------


async def test_login_shell_keeps_state_resizes_and_reports_exit(pool: ConnectionPool, spec: HostSpec) -> None:
    transport = await spawn_ssh_pty(pool, spec, "", cols=80, rows=24, deadline=deadline())
    try:
        await read_until(transport, PROMPT)
        assert pool.stats().in_use == 1  # the session pins its connection
        await transport.write(b"cd /tmp; stty size\r")
        assert b"24 80" in await read_until(transport, re.compile(rb"24 80\r\n.*\$ $", re.S))
        await transport.resize(100, 30)
        await transport.write(b"pwd; stty size; echo $TERM\r")
        output = await read_until(transport, re.compile(rb"xterm-256color\r\n"))
        assert b"/tmp\r\n30 100\r\n" in output
        await transport.write(b"exit 3\r")
        await read_to_end(transport)
        assert transport.exit_status == 3
        assert transport.pid is None
    finally:
        await transport.close()
    assert pool.stats().in_use == 0  # closing the channel unpinned the connection
    with pytest.raises(SessionEnded):
        await transport.write(b"echo too late\r")


async def test_int_interrupts_the_foreground_job_and_the_shell_survives(
    pool: ConnectionPool, spec: HostSpec
) -> None:
    duration = f"100.{secrets.randbelow(10**6):06d}"
    transport = await spawn_ssh_pty(pool, spec, "", cols=80, rows=24, deadline=deadline())
    try:
        await read_until(transport, PROMPT)
        await transport.write(f"sleep {duration}\r".encode())
        await wait_until_running(f"sleep {duration}")
        await transport.signal("INT")
        await wait_until_gone(f"sleep {duration}")
        await read_until(transport, PROMPT)
        await transport.write(b"echo still-$((40+2))\r")
        assert b"still-42" in await read_until(transport, re.compile(rb"still-42"))
        assert transport.exit_status is None
    finally:
        await transport.close()


async def test_command_output_and_exit_status(pool: ConnectionPool, spec: HostSpec) -> None:
    transport = await spawn_ssh_pty(pool, spec, "printf 'ok-%s' \"$TERM\"; exit 7", cols=80, rows=24,
                                    term_type="vt100", deadline=deadline())  # fmt: skip
    output = await read_to_end(transport)
    assert b"ok-vt100" in output
    assert transport.exit_status == 7
    await transport.close()
    with pytest.raises(SessionEnded):
        await transport.signal("TERM")


async def test_close_ends_the_remote_processes(pool: ConnectionPool, spec: HostSpec) -> None:
    duration = f"200.{secrets.randbelow(10**6):06d}"
    transport = await spawn_ssh_pty(pool, spec, f"sleep {duration}", cols=80, rows=24, deadline=deadline())
    await wait_until_running(f"sleep {duration}")
    await transport.close(grace_s=2.0)
    await wait_until_gone(f"sleep {duration}")
    assert transport.exit_status is not None
    assert await transport.read() == b""
    assert pool.stats().in_use == 0


async def test_kill_signal_reports_128_plus_signal(pool: ConnectionPool, spec: HostSpec) -> None:
    duration = f"300.{secrets.randbelow(10**6):06d}"
    transport = await spawn_ssh_pty(pool, spec, f"sleep {duration}", cols=80, rows=24, deadline=deadline())
    # sshd signals the session's process group, which exists once its child has called setsid().
    await wait_until_running(f"sleep {duration}")
    await transport.signal("KILL")
    await read_to_end(transport)
    assert transport.exit_status == 128 + 9
    await transport.close()


# --- SFTP -----------------------------------------------------------------------------------------


def make_tree(root: Path, files: int) -> None:
    for index in range(files):
        path = root / f"d{index % 4}" / f"sub{index % 3}" / f"file{index}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(secrets.token_bytes(100 + index * 37))


async def test_five_mib_file_round_trips_with_progress(
    pool: ConnectionPool, spec: HostSpec, tmp_path: Path, remote_dir: Path
) -> None:
    source = tmp_path / "random.bin"
    source.write_bytes(secrets.token_bytes(5 * 1024 * 1024))
    source.chmod(0o640)
    os.utime(source, (1_600_000_000, 1_600_000_000))
    reports: list[tuple[int, int]] = []

    async def progress(done: int, total: int) -> None:
        reports.append((done, total))

    sent = await upload(pool, spec, source, str(remote_dir / "copy.bin"), timeout_s=30, on_progress=progress)
    assert (sent.file_count, sent.bytes, sent.bytes_total) == (1, 5 * 1024 * 1024, 5 * 1024 * 1024)
    assert sent.sha256 == sha256_of(source)
    assert sent.destination == str(remote_dir / "copy.bin")
    assert reports[0] == (0, 5 * 1024 * 1024)
    assert reports[-1] == (5 * 1024 * 1024, 5 * 1024 * 1024)
    assert [done for done, _ in reports] == sorted(done for done, _ in reports)
    landed = (remote_dir / "copy.bin").stat()
    assert stat.S_IMODE(landed.st_mode) == 0o640
    assert int(landed.st_mtime) == 1_600_000_000
    assert landed.st_uid == pwd.getpwnam(TEST_USER).pw_uid  # written by the test user over SFTP

    back = tmp_path / "back.bin"
    received = await download(pool, spec, str(remote_dir / "copy.bin"), back, timeout_s=30)
    assert received.sha256 == sha256_of(back) == sha256_of(source)
    assert back.read_bytes() == source.read_bytes()


async def test_tree_of_fifty_files_round_trips(
    pool: ConnectionPool, spec: HostSpec, tmp_path: Path, remote_dir: Path
) -> None:
    source = tmp_path / "tree"
    make_tree(source, 50)
    (source / "d0" / "link").symlink_to("sub0")
    sent = await upload(pool, spec, source, str(remote_dir), recursive=True, timeout_s=30)
    assert sent.destination == str(remote_dir / "tree")  # copied into the existing directory
    assert (sent.file_count, sent.link_count, sent.sha256) == (50, 1, None)
    assert sent.bytes == sum(path.stat().st_size for path in source.rglob("*") if path.is_file())
    assert tree_hashes(remote_dir / "tree") == tree_hashes(source)
    assert os.readlink(remote_dir / "tree" / "d0" / "link") == "sub0"

    back = tmp_path / "back"
    received = await download(pool, spec, str(remote_dir / "tree"), back, recursive=True, timeout_s=30)
    assert received.destination == str(back)
    assert received.file_count == 50
    assert tree_hashes(back) == tree_hashes(source)

    # Into a directory that holds an older copy: merged (files overwritten, others kept), never nested,
    # and repeatable (links that exist already are left as they are).
    parent = tmp_path / "parent"
    (parent / "tree" / "d1" / "sub1").mkdir(parents=True)
    (parent / "tree" / "d1" / "sub1" / "file1.bin").write_bytes(b"stale")
    (parent / "tree" / "extra.txt").write_text("kept")
    for _ in range(2):
        merged = await download(pool, spec, str(remote_dir / "tree"), parent, recursive=True, timeout_s=30)
        assert merged.destination == str(parent / "tree")
        assert not (parent / "tree" / "tree").exists()
        assert tree_hashes(parent / "tree") == {
            **tree_hashes(source),
            "extra.txt": sha256_of(parent / "tree" / "extra.txt"),
        }
        assert os.readlink(parent / "tree" / "d0" / "link") == "sub0"


async def test_missing_or_unsuitable_local_sources_fail_before_connecting(
    pool: ConnectionPool, spec: HostSpec, tmp_path: Path, remote_dir: Path
) -> None:
    with pytest.raises(InvalidInput) as missing:
        await upload(pool, spec, tmp_path / "nope", str(remote_dir), timeout_s=10)
    assert missing.value.argument == "local_path"
    (tmp_path / "dir").mkdir()
    with pytest.raises(InvalidInput) as directory:
        await upload(pool, spec, tmp_path / "dir", str(remote_dir), timeout_s=10)
    assert directory.value.argument == "recursive"
    assert pool.stats().dials == 0


async def test_remote_errors_name_the_path(
    pool: ConnectionPool, spec: HostSpec, tmp_path: Path, remote_dir: Path
) -> None:
    with pytest.raises(InvalidInput) as missing:
        await download(pool, spec, str(remote_dir / "absent"), tmp_path / "x", timeout_s=10)
    assert missing.value.argument == "remote_path"
    assert "absent" in missing.value.message

    root_owned = Path(tempfile.mkdtemp(prefix="relay-rootonly-"))
    root_owned.chmod(0o755)
    try:
        source = tmp_path / "f.txt"
        source.write_text("x")
        with pytest.raises(RemoteFailed) as denied:
            await upload(pool, spec, source, str(root_owned / "f.txt"), timeout_s=10)
        assert "permission denied" in denied.value.message
        assert str(root_owned / "f.txt") in denied.value.message
        assert not (root_owned / "f.txt").exists()
    finally:
        shutil.rmtree(root_owned)


async def test_destination_of_the_wrong_kind_is_refused(
    pool: ConnectionPool, spec: HostSpec, tmp_path: Path, remote_dir: Path
) -> None:
    tree = tmp_path / "tree"
    make_tree(tree, 2)
    (remote_dir / "plain").write_text("a file")
    with pytest.raises(InvalidInput) as dir_onto_file:
        await upload(pool, spec, tree, str(remote_dir / "plain"), recursive=True, timeout_s=10)
    assert dir_onto_file.value.argument == "remote_path"
    assert (remote_dir / "plain").read_text() == "a file"

    (remote_dir / "report").mkdir()
    (remote_dir / "inbox" / "report").mkdir(parents=True)
    source = tmp_path / "report"
    source.write_text("data")
    with pytest.raises(InvalidInput) as file_onto_dir:
        await upload(pool, spec, source, str(remote_dir / "inbox"), timeout_s=10)  # -> inbox/report: a dir
    assert file_onto_dir.value.argument == "remote_path"

    local_file = tmp_path / "local-file"
    local_file.write_text("keep")
    with pytest.raises(InvalidInput) as download_onto_file:
        await download(pool, spec, str(remote_dir / "report"), local_file, recursive=True, timeout_s=10)
    assert download_onto_file.value.argument == "local_path"
    assert local_file.read_text() == "keep"


# --- forwards -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("L:0:127.0.0.1:80", ForwardSpec("L", 0, "127.0.0.1", 80)),
        ("l:8080:db.internal:5432", ForwardSpec("L", 8080, "db.internal", 5432)),
        ("R:2222:localhost:22", ForwardSpec("R", 2222, "localhost", 22)),
        ("L:9000:[::1]:9001", ForwardSpec("L", 9000, "::1", 9001)),
        ("D:1080", ForwardSpec("D", 1080)),
        ("D:0", ForwardSpec("D", 0)),
    ],
)
def test_valid_specs(text: str, expected: ForwardSpec) -> None:
    assert parse_forward_spec(text) == expected
    assert parse_forward_spec(expected.text()) == expected


@pytest.mark.parametrize(
    "text",
    [
        "", "L:abc", "X:1:2:3", "L:70000:h:80", "L:1:h:70000", "L:1:h:0", "L:1:h", "L:1", "R:5",
        "D", "D:", "D:1:h:2", "L:-1:h:80", "L:1:-oProxyCommand=x:80", "L:1:::1:80", "L:1:a b:80",
        "L::h:80", "L:1:h:80:9", "1:h:80",
    ],
)  # fmt: skip
def test_malformed_specs(text: str) -> None:
    with pytest.raises(InvalidInput) as error:
        parse_forward_spec(text)
    assert error.value.argument == "spec"


@pytest.mark.parametrize(
    ("bind", "expected"), [("127.0.0.1", "127.0.0.1"), ("localhost", "127.0.0.1"), ("::1", "::1")]
)
def test_bind_addresses(bind: str, expected: str) -> None:
    assert validate_bind(bind) == expected


@pytest.mark.parametrize("bind", ["", "example.com", "127.0.0.1:80", "*"])
def test_bad_bind_addresses(bind: str) -> None:
    with pytest.raises(InvalidInput) as error:
        validate_bind(bind)
    assert error.value.argument == "bind"


@pytest.fixture
async def forwards(pool: ConnectionPool) -> AsyncIterator[ForwardManager]:
    manager = ForwardManager(pool, max_forwards=4)
    yield manager
    await manager.aclose()


async def test_local_forward_carries_data_and_counts_it(
    forwards: ForwardManager, pool: ConnectionPool, spec: HostSpec, echo_port: int
) -> None:
    info = await forwards.open(spec, parse_forward_spec(f"L:0:127.0.0.1:{echo_port}"), deadline=deadline())
    assert info.forward_id.startswith("fwd-")
    assert (info.kind, info.bind, info.target, info.state) == (
        "L",
        "127.0.0.1",
        f"127.0.0.1:{echo_port}",
        "open",
    )
    assert info.listen_port > 0
    assert info.spec == f"L:{info.listen_port}:127.0.0.1:{echo_port}"
    assert await round_trip(info.listen_port, b"hello through ssh") == b"hello through ssh"
    assert await round_trip(info.listen_port, b"x" * 200_000) == b"x" * 200_000
    [listed] = forwards.list()
    assert listed.connections == 2
    assert listed.bytes_sent == listed.bytes_received == 17 + 200_000
    assert pool.stats().in_use == 1
    closed = await forwards.close(info.forward_id)
    assert closed.state == "closed"
    await wait_refused(info.listen_port)
    assert forwards.list() == []
    assert pool.stats().in_use == 0
    with pytest.raises(InvalidInput) as unknown:
        await forwards.close(info.forward_id)
    assert unknown.value.argument == "forward_id"


async def test_socks_forward_proxies_to_the_echo_server(
    forwards: ForwardManager, spec: HostSpec, echo_port: int
) -> None:
    info = await forwards.open(spec, parse_forward_spec("D:0"), deadline=deadline())
    assert (info.kind, info.target) == ("D", None)
    assert await round_trip(info.listen_port, b"via socks", socks_to=echo_port) == b"via socks"
    assert forwards.info(info.forward_id).bytes_received == len(b"via socks")
    await forwards.close(info.forward_id)
    await wait_refused(info.listen_port)


async def test_socks_destination_check_refuses(
    forwards: ForwardManager, spec: HostSpec, echo_port: int
) -> None:
    info = await forwards.open(
        spec,
        parse_forward_spec("D:0"),
        deadline=deadline(),
        destination_check=lambda host, port: "denied here",
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", info.listen_port)
    try:
        writer.write(b"\x05\x01\x00")
        assert await reader.readexactly(2) == b"\x05\x00"
        writer.write(b"\x05\x01\x00\x03\x09localhost" + echo_port.to_bytes(2, "big"))
        reply = await asyncio.wait_for(reader.readexactly(10), WAIT_S)
        assert reply[1] == 0x02  # connection not allowed by ruleset
    finally:
        writer.close()
    assert "denied here" in (forwards.info(info.forward_id).last_error or "")


async def test_remote_forward_reaches_a_local_server(
    forwards: ForwardManager, spec: HostSpec, echo_port: int
) -> None:
    info = await forwards.open(spec, parse_forward_spec(f"R:0:127.0.0.1:{echo_port}"), deadline=deadline())
    assert info.kind == "R"
    assert info.listen_port > 0
    # The sshd is on this machine, so its loopback listener is reachable here.
    assert await round_trip(info.listen_port, b"back home") == b"back home"
    assert forwards.info(info.forward_id).bytes_sent == len(b"back home")
    await forwards.close(info.forward_id)
    await wait_refused(info.listen_port)


async def test_forward_cap_is_checked_before_connecting(pool: ConnectionPool, spec: HostSpec) -> None:
    manager = ForwardManager(pool, max_forwards=1)
    try:
        await manager.open(spec, parse_forward_spec("D:0"), deadline=deadline())
        dials = pool.stats().dials
        with pytest.raises(LimitReached) as full:
            await manager.open(spec, parse_forward_spec("D:0"), deadline=deadline())
        assert full.value.limit == "RELAY_SHELL_MAX_FORWARDS"
        assert pool.stats().dials == dials
    finally:
        await manager.aclose()
    assert len(manager) == 0
    assert pool.stats().in_use == 0


async def test_busy_local_port_is_a_clear_failure(
    forwards: ForwardManager, pool: ConnectionPool, spec: HostSpec
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ExecFailed) as busy:
            await forwards.open(spec, parse_forward_spec(f"D:{port}"), deadline=deadline())
    assert f"127.0.0.1:{port}" in busy.value.message
    assert len(forwards) == 0
    assert pool.stats().in_use == 0
