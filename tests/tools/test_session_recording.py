"""Session recordings through an MCP client: real PTYs, the real asciinema, the audit record."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import stat
import subprocess
import termios
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from relay_shell.app import build_server
from relay_shell.config import Settings
from tests.conftest import connected, read_audit
from tests.tools.test_session_screen import PROMPT, recv, send, shell


@pytest.fixture
def recorded_settings(make_settings: Callable[..., Settings], tmp_path: Path) -> Settings:
    return make_settings(session_record_dir=tmp_path / "recordings")


@pytest.fixture
async def recorded(recorded_settings: Settings) -> AsyncIterator[Client]:
    server = build_server(recorded_settings)
    await server.services.start()
    async with connected(server) as client:
        yield client
    await server.services.aclose()


async def session_end(settings: Settings, session_id: str) -> dict[str, Any]:
    """The session's end record (polled, bounded: it is written when the output ends)."""
    deadline = time.monotonic() + 20
    while True:
        for record in read_audit(settings.audit_path):
            if record.get("tool") == "session_end" and record.get("session_id") == session_id:
                return record
        assert time.monotonic() < deadline, "no session_end record"
        await asyncio.sleep(0.02)


def asciinema_cat(path: Path) -> subprocess.CompletedProcess[bytes]:
    """The real ``asciinema cat``. It opens /dev/tty, so it runs with a PTY as its controlling
    terminal; its standard output is a pipe, so what it prints is read exactly."""
    master, slave = os.openpty()
    try:
        return subprocess.run(
            ["asciinema", "cat", str(path)], stdin=slave, capture_output=True, timeout=60, check=False,
            start_new_session=True, preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )  # fmt: skip
    finally:
        os.close(master)
        os.close(slave)


def validate_asciicast(path: Path) -> tuple[dict[str, Any], list[list[Any]]]:
    """Check the header and every event of an asciicast v2 file; return them."""
    header_line, *event_lines = path.read_text(encoding="utf-8").splitlines()
    header = json.loads(header_line)
    assert header["version"] == 2
    assert isinstance(header["width"], int) and header["width"] > 0
    assert isinstance(header["height"], int) and header["height"] > 0
    assert isinstance(header["timestamp"], int) and abs(header["timestamp"] - time.time()) < 3600
    assert isinstance(header["title"], str) and isinstance(header["command"], str)
    assert isinstance(header["env"]["TERM"], str)
    events = [json.loads(line) for line in event_lines]
    previous = 0.0
    for event in events:
        assert isinstance(event, list) and len(event) == 3, event
        moment, code, data = event
        assert isinstance(moment, float | int) and not isinstance(moment, bool)
        assert moment >= previous, "event times must not decrease"
        previous = moment
        assert code in ("o", "i", "r"), event
        assert isinstance(data, str)
        if code == "r":
            cols, rows = data.split("x")
            assert int(cols) > 0 and int(rows) > 0
    return header, events


async def test_recording_of_ls_vim_exit_replays_and_matches_the_audit(
    recorded: Client, recorded_settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "f.txt").write_text("one\ntwo\nthree\n")
    session_id = await shell(recorded, tmp_path)
    await send(recorded, session_id, "ls")
    await recv(recorded, session_id, until=r"f\.txt")
    await send(recorded, session_id, "vim -u NONE -i NONE f.txt")
    await recv(recorded, session_id, until=r"^three$")
    resized = await recorded.call_tool("session_resize", {"session_id": session_id, "cols": 90, "rows": 26})
    assert resized.is_error is False
    await send(recorded, session_id, ":q!")
    await recv(recorded, session_id, until=PROMPT)
    await send(recorded, session_id, "exit")
    final = await recv(recorded, session_id, timeout=10)
    while not final["ended"]:
        final = await recv(recorded, session_id, timeout=10)

    record = await session_end(recorded_settings, session_id)
    assert (record["reason"], record["exit_code"], record["outcome"]) == ("exited", 0, "ok")
    path = Path(record["recording"]["path"])
    assert path.parent == recorded_settings.session_record_dir
    data = path.read_bytes()
    assert record["recording"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert record["recording"]["bytes"] == len(data)
    assert record["recording"]["truncated"] is False
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

    header, events = validate_asciicast(path)
    assert (header["width"], header["height"]) == (80, 24)
    assert header["env"]["TERM"] == "xterm-256color"
    assert [event[2] for event in events if event[1] == "r"] == ["90x26"]
    assert not [event for event in events if event[1] == "i"]  # input is not recorded by default
    output = "".join(event[2] for event in events if event[1] == "o")
    assert "f.txt" in output and "three" in output and "\x1b[?1049h" in output

    replay = asciinema_cat(path)
    assert replay.returncode == 0, replay.stderr
    assert b"f.txt" in replay.stdout and b"three" in replay.stdout
    assert replay.stdout == "".join(event[2] for event in events if event[1] == "o").encode()


async def test_input_recording_redacts_what_is_typed_with_echo_off(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(session_record_dir=tmp_path / "rec", session_record_input=True)
    server = build_server(settings)
    await server.services.start()
    async with connected(server) as client:
        session_id = await shell(client, tmp_path)
        # Wait for output of the command itself: once it runs, readline has given the terminal
        # back (echo on); the echo of the command line comes before that.
        await send(client, session_id, "echo cat-ready; cat")
        await recv(client, session_id, until=r"^cat-ready\r?$")
        await send(client, session_id, "typed-in-the-open")  # cat: the terminal echoes
        await recv(client, session_id, until=r"^typed-in-the-open\r?$")
        await send(client, session_id, enter=False, keys=["C-d"])
        await recv(client, session_id, until=PROMPT)
        await send(client, session_id, "read -s -p 'Password: ' secret; echo; echo got-${#secret}")
        await recv(client, session_id, until=r"Password: $")
        await send(client, session_id, "hunter2-s3cret")
        await recv(client, session_id, until=r"^got-14\r?$")
        killed = await client.call_tool("session_kill", {"session_id": session_id})
        assert killed.is_error is False
        record = await session_end(settings, session_id)
    await server.services.aclose()
    assert record["reason"] == "killed"
    assert record["recording"]["input"] is True
    path = Path(record["recording"]["path"])
    _, events = validate_asciicast(path)
    typed = [event[2] for event in events if event[1] == "i"]
    assert "typed-in-the-open\r" in typed
    assert "[REDACTED]" in typed
    assert b"hunter2" not in path.read_bytes()


async def test_the_size_cap_stops_the_recording_and_the_audit_says_so(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(session_record_dir=tmp_path / "rec", session_record_max_bytes=4096)
    server = build_server(settings)
    await server.services.start()
    async with connected(server) as client:
        result = await client.call_tool("shell_spawn", {"command": "seq 1 5000"})
        session_id = str(result.structured_content["session_id"])  # type: ignore[index]
        record = await session_end(settings, session_id)
    await server.services.aclose()
    path = Path(record["recording"]["path"])
    assert record["recording"]["truncated"] is True
    assert record["recording"]["bytes"] == path.stat().st_size <= 4096
    _, events = validate_asciicast(path)
    assert "recording stopped at 4096 bytes" in events[-1][2]
    assert asciinema_cat(path).returncode == 0


async def test_an_unusable_recording_directory_refuses_the_session(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    settings = make_settings(session_record_dir=blocker / "rec")
    server = build_server(settings)
    async with connected(server) as client:
        result = await client.call_tool("shell_spawn", {"command": "sleep 30"})
        assert result.is_error is True
        assert "recording" in result.structured_content["error"]["message"]  # type: ignore[index]
        listed = await client.call_tool("session_list", {})
        assert listed.structured_content["count"] == 0  # type: ignore[index]
    await server.services.aclose()
