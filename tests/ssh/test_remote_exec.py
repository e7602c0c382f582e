"""run_remote against a real sshd: exit status, streams, bounds, and no survivor after timeout/cancel."""

from __future__ import annotations

import asyncio
import hashlib
import secrets

import asyncssh
import pytest

from relay_shell.capture import OutputCapture, SplitCapture
from relay_shell.config import Settings
from relay_shell.errors import ExecTimeout, RemoteFailed
from relay_shell.ssh.pool import ConnectionPool
from relay_shell.ssh.remote_exec import run_remote
from relay_shell.ssh.targets import HostSpec
from tests.conftest import pids_with_marker
from tests.ssh.helpers import spec_for
from tests.sshd import ClientKey, SshdInstance


@pytest.fixture
def spec(sshd: SshdInstance, client_key: ClientKey, settings: Settings) -> HostSpec:
    return spec_for(sshd, settings, client_key)


@pytest.mark.parametrize(
    ("command", "exit_code"), [("true", 0), ("exit 1", 1), ("exit 42", 42), ("false", 1)]
)
async def test_exit_status_is_a_result(
    pool: ConnectionPool, spec: HostSpec, command: str, exit_code: int
) -> None:
    result = await run_remote(pool, spec, command, timeout_s=10, budget=4096)
    assert (result.exit_code, result.signal) == (exit_code, None)
    assert result.duration_ms >= 0


async def test_stdout_and_stderr_are_separate(pool: ConnectionPool, spec: HostSpec) -> None:
    result = await run_remote(pool, spec, "echo out; echo err >&2; exit 3", timeout_s=10, budget=4096)
    assert result.exit_code == 3
    assert isinstance(result.capture, SplitCapture)
    assert result.capture.stdout.render() == "out\n"
    assert result.capture.stderr.render() == "err\n"
    assert result.capture.total == 8


async def test_merged_output_and_stdin(pool: ConnectionPool, spec: HostSpec) -> None:
    merged = await run_remote(
        pool, spec, "echo one; echo two >&2", timeout_s=10, budget=4096, merge_stderr=True
    )
    assert isinstance(merged.capture, OutputCapture)
    assert sorted(merged.capture.render().splitlines()) == ["one", "two"]

    fed = await run_remote(pool, spec, "tr a-z A-Z", timeout_s=10, budget=4096, stdin=b"hello\nworld\n")
    assert isinstance(fed.capture, SplitCapture)
    assert fed.capture.stdout.render() == "HELLO\nWORLD\n"
    # No stdin means an immediate EOF, like /dev/null: `cat` returns at once.
    empty = await run_remote(pool, spec, "cat; echo eof", timeout_s=10, budget=4096)
    assert isinstance(empty.capture, SplitCapture)
    assert empty.capture.stdout.render() == "eof\n"


async def test_output_is_bounded_whatever_the_remote_prints(pool: ConnectionPool, spec: HostSpec) -> None:
    size = 3_000_000
    result = await run_remote(
        pool, spec, f"head -c {size} /dev/zero | tr '\\0' a", timeout_s=20, budget=4096, merge_stderr=True
    )
    capture = result.capture
    assert isinstance(capture, OutputCapture)
    assert capture.total == size
    assert capture.truncated
    assert len(capture.kept) <= 4096
    assert capture.sha256 == hashlib.sha256(b"a" * size).hexdigest()
    assert "bytes omitted" in capture.render()


async def test_death_by_signal_is_reported(pool: ConnectionPool, spec: HostSpec) -> None:
    result = await run_remote(pool, spec, "kill -TERM $$", timeout_s=10, budget=4096)
    assert (result.exit_code, result.signal) == (143, "TERM")  # 128 + SIGTERM, as a shell reports it


async def _remote_survivors(sshd: SshdInstance, key: ClientKey, pattern: str) -> str:
    """``pgrep -af`` on the server over a separate connection (the pattern excludes pgrep itself)."""
    async with asyncssh.connect(
        sshd.address, sshd.port, username=sshd.user, client_keys=[str(key.private_path)],
        known_hosts=None, config=None,
    ) as connection:  # fmt: skip
        result = await connection.run(f"pgrep -af '{pattern}' || true", check=False)
    return str(result.stdout)


def _marked_command(trap_term: bool) -> tuple[str, str, str]:
    """A command whose shell AND sleeping child carry a unique marker in their argv."""
    digits = str(secrets.randbelow(10**9)).zfill(9)
    marker = f"300.{digits}"
    prefix = "trap '' TERM; " if trap_term else ""
    # The bracket keeps pgrep's own command line from matching its pattern.
    pattern = f"300[.]{digits}"
    return f"{prefix}echo started; sleep {marker}; echo done-{digits}", marker, pattern


@pytest.mark.parametrize("trap_term", [False, True], ids=["plain", "ignores-TERM"])
async def test_timeout_leaves_no_remote_process(
    pool: ConnectionPool, spec: HostSpec, sshd: SshdInstance, client_key: ClientKey, trap_term: bool
) -> None:
    command, marker, pattern = _marked_command(trap_term)
    with pytest.raises(ExecTimeout) as caught:
        await run_remote(pool, spec, command, timeout_s=1.0, budget=4096)
    assert caught.value.partial.text.startswith("started")
    assert caught.value.partial.fields["output_bytes"] == len("started\n")
    assert await _remote_survivors(sshd, client_key, pattern) == ""
    assert pids_with_marker(marker) == []
    # The pooled connection is still healthy afterwards.
    again = await run_remote(pool, spec, "echo ok", timeout_s=10, budget=4096)
    assert again.exit_code == 0


async def test_cancellation_leaves_no_remote_process(
    pool: ConnectionPool, spec: HostSpec, sshd: SshdInstance, client_key: ClientKey
) -> None:
    command, marker, pattern = _marked_command(trap_term=False)
    task = asyncio.create_task(run_remote(pool, spec, command, timeout_s=60, budget=4096))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not pids_with_marker(marker):  # wait (bounded) until the remote sleep runs
        assert loop.time() < deadline, "the remote command never started"
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _remote_survivors(sshd, client_key, pattern) == ""
    assert pids_with_marker(marker) == []
    assert pool.stats().in_use == 0


async def test_progress_is_reported_about_once_a_second(pool: ConnectionPool, spec: HostSpec) -> None:
    reports: list[tuple[float, int]] = []

    async def on_progress(elapsed: float, produced: int) -> None:
        reports.append((elapsed, produced))

    result = await run_remote(
        pool, spec, "echo begin; sleep 1.4; echo end", timeout_s=10, budget=4096, on_progress=on_progress
    )
    assert result.exit_code == 0
    assert len(reports) == 1
    elapsed, produced = reports[0]
    assert elapsed >= 1.0
    assert produced == len("begin\n")


async def test_a_background_child_holding_the_output_does_not_hold_the_call(
    pool: ConnectionPool, spec: HostSpec
) -> None:
    result = await run_remote(
        pool, spec, "echo now; (sleep 3; echo late) & exit 5", timeout_s=20, budget=4096
    )
    assert (result.exit_code, result.pipe_held) == (5, True)
    assert isinstance(result.capture, SplitCapture)
    assert result.capture.stdout.render() == "now\n"


async def test_a_connection_lost_mid_command_is_remote_failed(pool: ConnectionPool, spec: HostSpec) -> None:
    # The shell's parent is sshd's per-connection process: killing it drops the connection.
    with pytest.raises(RemoteFailed) as caught:
        await run_remote(pool, spec, "echo before; kill -KILL $PPID; sleep 5", timeout_s=20, budget=4096)
    assert "connection was lost" in caught.value.message
    assert pool.stats().connections == 0
    assert (await run_remote(pool, spec, "true", timeout_s=20, budget=4096)).exit_code == 0
