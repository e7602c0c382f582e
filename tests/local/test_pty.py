"""Local PTY sessions end to end: real pseudo-terminals, real shells, the real registry."""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import pytest

from relay_shell.config import ContainmentMode
from relay_shell.errors import LimitReached, SessionEnded, SpawnFailed
from relay_shell.linear_regex import compile_caller_regex
from relay_shell.local.contained import Contained
from relay_shell.local.containment import ContainmentService
from relay_shell.local.pty import LocalPtyTransport, spawn_local_pty
from relay_shell.sessions import RecvResult, SessionRegistry, keys_to_bytes

PROMPT = r"[$#] $"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def open_fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def process_stat(pid: int) -> list[str] | None:
    """The fields after the command name in /proc/PID/stat; None when gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else fields


def live_session_members(session_id: int) -> list[int]:
    """Live processes whose session id is ``session_id`` (covers every job's process group)."""
    members = []
    for entry in Path("/proc").iterdir():
        if (
            entry.name.isdigit()
            and (fields := process_stat(int(entry.name)))
            and int(fields[3]) == session_id
        ):
            members.append(int(entry.name))
    return members


def session_member_running(session_id: int, command_line: str) -> int | None:
    for pid in live_session_members(session_id):
        try:
            if (
                Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\x00", b" ").strip()
                == command_line.encode()
            ):
                return pid
        except OSError:
            continue
    return None


async def eventually(predicate: Callable[[], object], what: str, timeout_s: float = 10.0) -> object:
    """Poll ``predicate`` until it is truthy, within a bounded deadline."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not (value := predicate()):
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)
    return value


_CONTAINMENT: list[ContainmentService] = []


@pytest.fixture(autouse=True)
async def containment() -> AsyncIterator[ContainmentService]:
    """The containment every PTY of a test is spawned in; whatever is left is killed after."""
    service = ContainmentService(ContainmentMode.AUTO)
    _CONTAINMENT.append(service)
    yield service
    _CONTAINMENT.remove(service)
    await service.aclose()


def contained() -> Contained:
    return _CONTAINMENT[-1].open("session")


@pytest.fixture
async def registry() -> AsyncIterator[SessionRegistry]:
    registry = SessionRegistry(max_sessions=8, buffer_bytes=262144, idle_timeout_s=1800, max_lifetime_s=86400)
    yield registry
    await registry.aclose()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A clean HOME so the operator's ~/.bashrc does not shape the output."""
    path = tmp_path / "home"
    path.mkdir()
    return path


async def spawn(
    registry: SessionRegistry,
    command: str = "",
    *,
    home: Path | None = None,
    cols: int = 80,
    rows: int = 24,
    cwd: Path | None = None,
    env: Mapping[str, str | None] | None = None,
) -> tuple[str, LocalPtyTransport]:
    overlay = dict(env or {})
    if home is not None:
        overlay.setdefault("HOME", str(home))
    transport = await spawn_local_pty(
        command, cols=cols, rows=rows, cwd=cwd, env=overlay, contained=contained()
    )
    info = await registry.add(transport, kind="local", host=None, command=command, cols=cols, rows=rows)
    return info.session_id, transport


async def expect(
    registry: SessionRegistry, session_id: str, pattern: str, timeout_s: float = 15
) -> RecvResult:
    result = await registry.recv(
        session_id, timeout_s=timeout_s, max_bytes=1 << 20, until=compile_caller_regex("until", pattern)
    )
    assert result.matched, f"{pattern!r} not seen in {result.output!r}"
    return result


async def read_to_end(registry: SessionRegistry, session_id: str) -> tuple[str, RecvResult]:
    """Everything the session still prints, up to the end (bounded: 20 waits of 10 s)."""
    output = []
    for _ in range(20):
        result = await registry.recv(session_id, timeout_s=10, max_bytes=1 << 20)
        output.append(result.output)
        if result.ended:
            return "".join(output), result
    raise AssertionError(f"session did not end; output so far {''.join(output)!r}")


async def bash(
    registry: SessionRegistry, home: Path, *, cols: int = 80, rows: int = 24
) -> tuple[str, LocalPtyTransport]:
    session_id, transport = await spawn(registry, "", home=home, cols=cols, rows=rows)
    await expect(registry, session_id, PROMPT)
    return session_id, transport


# -- interaction --------------------------------------------------------------------------


async def test_bash_keeps_state_between_commands(registry: SessionRegistry, home: Path) -> None:
    session_id, _ = await bash(registry, home)
    await registry.send(session_id, b"cd /tmp\r")
    await expect(registry, session_id, PROMPT)
    await registry.send(session_id, b"pwd\r")
    result = await expect(registry, session_id, r"(?m)^/tmp$")
    assert "\x1b" not in result.output


async def test_python_repl_answers(registry: SessionRegistry) -> None:
    session_id, _ = await spawn(registry, f"{shlex.quote(sys.executable)} -q")
    await expect(registry, session_id, r">>> $")
    await registry.send(session_id, b"1+1\r")
    result = await expect(registry, session_id, r"(?m)^2\n>>> $")
    assert result.output.startswith("1+1\n")


async def test_prompt_answered_with_until_and_send(registry: SessionRegistry) -> None:
    script = 'printf "Continue? [Y/n] "; read answer; echo "answer=$answer"'
    session_id, _ = await spawn(registry, script)
    asked = await expect(registry, session_id, r"Continue\? \[Y/n\] $")
    assert (asked.matched, asked.timed_out) == (True, False)
    await registry.send(session_id, b"y\r")
    await expect(registry, session_id, r"(?m)^answer=y$")
    _, last = await read_to_end(registry, session_id)
    assert (last.ended, last.exit_code) == (True, 0)


async def test_ctrl_c_interrupts_the_foreground_job_and_the_shell_survives(
    registry: SessionRegistry, home: Path
) -> None:
    session_id, transport = await bash(registry, home)
    assert transport.pid is not None
    await registry.send(session_id, b"sleep 987\r")
    sleep_pid = await eventually(
        lambda: session_member_running(transport.pid or 0, "sleep 987"), "sleep to start"
    )
    assert isinstance(sleep_pid, int)
    await registry.send(session_id, keys_to_bytes(["C-c"]))
    await registry.send(session_id, b"echo alive\r")
    await expect(registry, session_id, r"(?m)^alive$")
    await eventually(lambda: process_stat(sleep_pid) is None, "the interrupted sleep to be gone")
    assert registry.info(session_id).state == "running"


async def test_resize_is_seen_by_stty(registry: SessionRegistry, home: Path) -> None:
    session_id, _ = await bash(registry, home, cols=80, rows=24)
    await registry.send(session_id, b"stty size\r")
    await expect(registry, session_id, r"(?m)^24 80$")  # set before exec
    await registry.resize(session_id, 100, 30)
    await registry.send(session_id, b"stty size\r")
    await expect(registry, session_id, r"(?m)^30 100$")
    info = registry.info(session_id)
    assert (info.cols, info.rows) == (100, 30)


async def test_resize_delivers_sigwinch_to_the_foreground_job(registry: SessionRegistry) -> None:
    code = (
        "import shutil, signal\n"
        "signal.signal(signal.SIGWINCH, lambda *_: print('winch', *shutil.get_terminal_size(), flush=True))\n"
        "print('ready', flush=True)\n"
        "while True: signal.pause()\n"
    )
    session_id, _ = await spawn(registry, f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}")
    await expect(registry, session_id, r"(?m)^ready$")
    await registry.resize(session_id, 120, 40)
    await expect(registry, session_id, r"(?m)^winch 120 40$")


async def test_child_has_the_terminal_as_controlling_tty_in_its_own_session(
    registry: SessionRegistry,
) -> None:
    session_id, transport = await spawn(registry, "sleep 30")
    pid = transport.pid
    assert pid is not None
    fields = process_stat(pid)
    assert fields is not None
    pgrp, session, tty_nr, foreground_group = int(fields[2]), int(fields[3]), int(fields[4]), int(fields[5])
    assert (pgrp, session) == (pid, pid)
    assert tty_nr != 0
    assert foreground_group == pid
    await registry.kill(session_id)


@pytest.mark.parametrize(
    ("command", "typed", "exit_code"),
    [("", "exit 3\r", 3), ("exit 4", None, 4), ("kill -KILL $$", None, 137), ("kill -TERM $$", None, 143)],
)
async def test_end_of_session_reports_the_exit_code(
    registry: SessionRegistry, home: Path, command: str, typed: str | None, exit_code: int
) -> None:
    session_id, transport = await spawn(registry, command, home=home)
    if typed:
        await expect(registry, session_id, PROMPT)
        await registry.send(session_id, typed.encode())
    _, last = await read_to_end(registry, session_id)
    assert (last.ended, last.exit_code) == (True, exit_code)
    assert transport.exit_status == exit_code
    info = registry.info(session_id)
    assert (info.state, info.exit_code) == ("ended", exit_code)
    with pytest.raises(SessionEnded):
        await registry.send(session_id, b"echo more\r")
    await registry.kill(session_id)
    assert len(registry) == 0


async def test_command_not_found_is_exit_127_not_a_spawn_failure(registry: SessionRegistry) -> None:
    session_id, _ = await spawn(registry, "relay-shell-no-such-command-xyz")
    output, last = await read_to_end(registry, session_id)
    assert "not found" in output
    assert last.exit_code == 127


async def test_session_ends_when_the_child_exits_even_if_a_background_job_holds_the_terminal(
    registry: SessionRegistry,
) -> None:
    # The job ignores SIGHUP, so the child's exit does not end it: it keeps the terminal open.
    session_id, transport = await spawn(registry, "trap '' HUP; sleep 993 & echo started")
    pid = transport.pid
    assert pid is not None
    output, last = await read_to_end(registry, session_id)
    assert output.startswith("started")
    assert (last.ended, last.exit_code) == (True, 0)
    # At the end of output the registry closes the transport: the straggler is killed.
    await eventually(lambda: live_session_members(pid) == [], "the background sleep to be killed")


async def test_end_is_reported_with_the_exit_code_when_the_terminal_closes_first(
    registry: SessionRegistry,
) -> None:
    session_id, _ = await spawn(registry, "exec </dev/null >/dev/null 2>&1; exit 5")
    _, last = await read_to_end(registry, session_id)
    assert (last.ended, last.exit_code) == (True, 5)


async def test_kill_without_close_sends_the_signal(registry: SessionRegistry) -> None:
    session_id, transport = await spawn(registry, "sleep 100")
    # A signal that lands while sh is still starting is deferred until its child exits.
    await eventually(lambda: session_member_running(transport.pid or 0, "sleep 100"), "sleep to start")
    info = await registry.kill(session_id, "SIGINT", close=False)
    assert len(registry) == 1
    assert info.session_id == session_id
    _, last = await read_to_end(registry, session_id)
    assert last.exit_code == 130


# -- output bytes -------------------------------------------------------------------------


async def test_a_utf8_character_split_across_reads_is_never_split_in_recv(registry: SessionRegistry) -> None:
    # 😀 is F0 9F 98 80: the first half is printed, then the child waits for a line.
    script = r'stty -echo; printf "A\360\237"; read line; printf "\230\200B\n"'
    session_id, _ = await spawn(registry, script)
    first = await expect(registry, session_id, r"A")
    assert (first.output, first.bytes) == ("A", 3)
    assert registry.info(session_id).bytes_buffered == 2  # the half character is carried
    await registry.send(session_id, b"\r")
    second = await expect(registry, session_id, r"B")
    assert second.output.startswith("😀B")
    assert "\ufffd" not in first.output + second.output


async def test_ring_buffer_overflow_counts_dropped_bytes() -> None:
    registry = SessionRegistry(max_sessions=2, buffer_bytes=4096, idle_timeout_s=60, max_lifetime_s=600)
    try:
        session_id, _ = await spawn(registry, r"head -c 20000 /dev/zero | tr '\0' x; printf END")
        await eventually(lambda: registry.info(session_id).bytes_produced >= 20003, "all output")
        info = registry.info(session_id)
        assert (info.bytes_produced, info.bytes_buffered, info.bytes_dropped) == (20003, 4096, 20003 - 4096)
        result = await expect(registry, session_id, r"END$")
        assert result.output == "x" * 4093 + "END"
        assert result.dropped_bytes == 20003 - 4096
    finally:
        await registry.aclose()


# -- spawning: environment, cwd, failures -------------------------------------------------


@pytest.mark.parametrize(
    ("server_term", "overlay", "seen"),
    [
        (None, {}, "[xterm-256color] [overlay]"),
        ("dumb", {}, "[dumb] [overlay]"),
        ("dumb", {"TERM": "vt100"}, "[vt100] [overlay]"),
        ("dumb", {"TERM": None}, "[] [overlay]"),
    ],
)
async def test_child_environment(
    registry: SessionRegistry,
    monkeypatch: pytest.MonkeyPatch,
    server_term: str | None,
    overlay: dict[str, str | None],
    seen: str,
) -> None:
    if server_term is None:
        monkeypatch.delenv("TERM", raising=False)
    else:
        monkeypatch.setenv("TERM", server_term)
    command = 'printf "[%s] [%s] [%s]\\n" "$TERM" "$RELAY_TEST_VALUE" "$LANG"'
    session_id, _ = await spawn(registry, command, env={**overlay, "RELAY_TEST_VALUE": "overlay"})
    output, _ = await read_to_end(registry, session_id)
    assert output.startswith(seen)
    assert output.rstrip().endswith(f"[{os.environ.get('LANG', 'C.UTF-8')}]")


async def test_cwd_is_applied(registry: SessionRegistry, tmp_path: Path) -> None:
    session_id, _ = await spawn(registry, "pwd", cwd=tmp_path)
    output, _ = await read_to_end(registry, session_id)
    assert output.strip() == str(tmp_path)


async def test_vanished_cwd_is_a_spawn_failure_that_leaks_no_fd(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    gone.rmdir()
    before = open_fd_count()
    with pytest.raises(SpawnFailed, match="cannot start"):
        await spawn_local_pty("true", cols=80, rows=24, cwd=gone, env={}, contained=contained())
    assert open_fd_count() == before


async def test_full_registry_refuses_and_kills_the_spawned_child() -> None:
    registry = SessionRegistry(max_sessions=1, buffer_bytes=4096, idle_timeout_s=60, max_lifetime_s=600)
    try:
        await spawn(registry, "sleep 100")
        extra = await spawn_local_pty("sleep 101", cols=80, rows=24, cwd=None, env={}, contained=contained())
        with pytest.raises(LimitReached) as raised:
            await registry.add(extra, kind="local", host=None, command="sleep 101", cols=80, rows=24)
        assert raised.value.limit == "RELAY_SHELL_MAX_SESSIONS"
        assert extra.pid is not None
        assert live_session_members(extra.pid) == []
    finally:
        await registry.aclose()


# -- teardown: processes and fds ----------------------------------------------------------


async def test_kill_ends_every_job_of_an_interactive_shell(registry: SessionRegistry, home: Path) -> None:
    session_id, transport = await bash(registry, home)
    pid = transport.pid
    assert pid is not None
    await registry.send(session_id, b"sleep 988 &\r")
    await registry.send(session_id, b"sleep 989\r")
    await eventually(lambda: session_member_running(pid, "sleep 989"), "the foreground sleep")
    await registry.send(session_id, keys_to_bytes(["C-z"]))  # a stopped job too
    await expect(registry, session_id, r"Stopped")
    assert session_member_running(pid, "sleep 988")
    info = await registry.kill(session_id)
    assert info.state == "ended"
    assert live_session_members(pid) == []
    assert len(registry) == 0


async def test_reaping_by_the_injected_clock_ends_the_process_group() -> None:
    clock = FakeClock()
    registry = SessionRegistry(
        max_sessions=4, buffer_bytes=4096, idle_timeout_s=60, max_lifetime_s=600, clock=clock
    )
    try:
        session_id, transport = await spawn(registry, "sleep 100")
        assert transport.pid is not None
        assert await registry.sweep() == []
        clock.now += 61
        assert await registry.sweep() == [session_id]
        assert live_session_members(transport.pid) == []
    finally:
        await registry.aclose()


async def test_spawning_and_killing_sessions_leaks_no_fd_and_no_process(home: Path) -> None:
    before = open_fd_count()
    registry = SessionRegistry(max_sessions=8, buffer_bytes=65536, idle_timeout_s=60, max_lifetime_s=600)
    pids = []
    for command in ("", "sleep 100", f"{shlex.quote(sys.executable)} -q", "exit 3", "cat"):
        session_id, transport = await spawn(registry, command, home=home)
        assert transport.pid is not None
        pids.append(transport.pid)
        if command != "exit 3":
            await registry.send(session_id, b"echo hi\r")
        await registry.recv(session_id, timeout_s=0.2, max_bytes=65536)
        await registry.kill(session_id)
    assert open_fd_count() == before
    assert all(live_session_members(pid) == [] for pid in pids)
    await registry.aclose()


async def test_aclose_leaves_no_process_and_no_fd(home: Path) -> None:
    before = open_fd_count()
    registry = SessionRegistry(max_sessions=8, buffer_bytes=65536, idle_timeout_s=60, max_lifetime_s=600)
    await registry.start()
    pids = []
    for command in ("", "", "sleep 100", f"{shlex.quote(sys.executable)} -q"):
        _, transport = await spawn(registry, command, home=home)
        assert transport.pid is not None
        pids.append(transport.pid)
    first_shell = registry.list()[0].session_id
    await expect(registry, first_shell, PROMPT)
    await registry.send(first_shell, b"sleep 990 &\r")
    await eventually(lambda: session_member_running(pids[0], "sleep 990"), "the background job")
    await registry.aclose()
    assert len(registry) == 0
    assert all(live_session_members(pid) == [] for pid in pids)
    assert open_fd_count() == before


async def test_echo_enabled_follows_the_terminal_mode(tmp_path: Path) -> None:
    registry = SessionRegistry(max_sessions=1, buffer_bytes=65536, idle_timeout_s=600, max_lifetime_s=600)
    session_id, _ = await spawn(
        registry, "stty -echo; echo off; read line; stty echo; echo on; cat", home=tmp_path
    )
    await expect(registry, session_id, r"^off\r?$")
    assert registry.echo_enabled(session_id) is False
    await registry.send(session_id, b"hidden\r")
    await expect(registry, session_id, r"^on\r?$")
    assert registry.echo_enabled(session_id) is True
    await registry.aclose()
