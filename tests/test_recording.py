"""asciicast v2 recordings: header, events, redaction, size cap, file safety (no PTY)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from relay_shell.errors import SpawnFailed
from relay_shell.sessions import recording as recording_module
from relay_shell.sessions.recording import (
    MAX_HEADER_TEXT,
    REDACTED,
    Recording,
    RecordingSettings,
    prepare_directory,
)


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def start(tmp_path: Path, clock: Ticks | None = None, **options: Any) -> Recording:
    settings = RecordingSettings(
        directory=tmp_path / "rec",
        record_input=options.pop("record_input", False),
        max_bytes=options.pop("max_bytes", 1 << 20),
    )
    return Recording.start(
        settings, "sh-0123456789ab", cols=80, rows=24, command="bash", title="relay-shell sh-0123456789ab",
        term="xterm-256color", clock=clock or Ticks(), **options,
    )  # fmt: skip


def lines_of(path: Path) -> tuple[dict[str, Any], list[list[Any]]]:
    header, *events = path.read_text().splitlines()
    return json.loads(header), [json.loads(event) for event in events]


async def test_header_and_events_are_asciicast_v2(tmp_path: Path) -> None:
    clock = Ticks()
    recording = start(tmp_path, clock)
    recording.output(b"$ ls\r\n")
    clock.now += 0.25
    recording.output(b"\xe2\x9c")  # a character cut between two chunks
    recording.output(b"\x93 done\r\n")
    clock.now += 1
    recording.resize(100, 30)
    summary = await recording.close()
    header, events = lines_of(recording.path)
    assert header["version"] == 2
    assert (header["width"], header["height"]) == (80, 24)
    assert isinstance(header["timestamp"], int)
    assert header["command"] == "bash"
    assert header["title"] == "relay-shell sh-0123456789ab"
    assert header["env"] == {"TERM": "xterm-256color"}
    assert events == [[0.0, "o", "$ ls\r\n"], [0.25, "o", "✓ done\r\n"], [1.25, "r", "100x30"]]
    data = recording.path.read_bytes()
    assert (summary.bytes, summary.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert summary.path == str(recording.path)
    assert not summary.truncated


async def test_times_never_decrease(tmp_path: Path) -> None:
    clock = Ticks()
    recording = start(tmp_path, clock)
    recording.output(b"a")
    clock.now -= 5  # a clock that steps back must not make times go backwards
    recording.output(b"b")
    await recording.close()
    _, events = lines_of(recording.path)
    assert [event[0] for event in events] == [0.0, 0.0]


async def test_input_only_when_enabled_and_redacted_while_echo_is_off(tmp_path: Path) -> None:
    off = start(tmp_path / "off")
    off.input(b"ls\r", echo=True)
    assert not (await off.close()).input_recorded
    assert [e for e in lines_of(off.path)[1] if e[1] == "i"] == []

    recording = start(tmp_path / "on", record_input=True)
    recording.input(b"cat\r", echo=True)
    recording.input(b"hunter2\r", echo=False)
    recording.input(b"remote\r", echo=None)  # mode unknown (SSH): never recorded
    summary = await recording.close()
    assert summary.input_recorded
    _, events = lines_of(recording.path)
    assert [e[2] for e in events if e[1] == "i"] == ["cat\r", REDACTED]
    assert b"hunter2" not in recording.path.read_bytes()
    assert b"remote" not in recording.path.read_bytes()


async def test_size_cap_stops_the_recording_and_says_so(tmp_path: Path) -> None:
    recording = start(tmp_path, max_bytes=4096)
    for number in range(200):
        recording.output(f"line {number} of output\r\n".encode())
    summary = await recording.close()
    data = recording.path.read_bytes()
    assert len(data) <= 4096
    assert summary.truncated
    _, events = lines_of(recording.path)
    assert "recording stopped at 4096 bytes" in events[-1][2]
    assert events[-1][1] == "o"
    assert summary.sha256 == hashlib.sha256(data).hexdigest()


async def test_files_are_private_and_never_overwritten(tmp_path: Path) -> None:
    recording = start(tmp_path)
    await recording.close()
    assert stat.S_IMODE((tmp_path / "rec").stat().st_mode) == 0o700
    assert stat.S_IMODE(recording.path.stat().st_mode) == 0o600
    directory_fd = os.open(tmp_path / "rec", os.O_RDONLY | os.O_DIRECTORY)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    with pytest.raises(FileExistsError):
        os.open(recording.path.name, flags, 0o600, dir_fd=directory_fd)
    os.close(directory_fd)


async def test_a_symlink_or_existing_file_at_the_name_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "rec").mkdir(mode=0o700)
    target = tmp_path / "elsewhere"
    monkeypatch.setattr(recording_module, "recording_name", lambda session_id, moment: "fixed.cast")
    (tmp_path / "rec" / "fixed.cast").symlink_to(target)
    with pytest.raises(SpawnFailed):
        start(tmp_path)
    assert not target.exists()


def test_an_existing_directory_is_tightened_and_a_file_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "open"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    prepare_directory(directory)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    with pytest.raises(SpawnFailed):
        prepare_directory(not_a_directory)


async def test_a_write_error_stops_the_recording_but_not_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recording = start(tmp_path)
    recording.output(b"kept\r\n")
    recording.flush()
    size = recording.path.stat().st_size

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(recording_module.os, "write", full)
    recording.output(b"lost\r\n")
    recording.flush()
    recording.output(b"after\r\n")  # no longer recorded, no exception
    monkeypatch.undo()
    summary = await recording.close()
    assert summary.error is not None and "No space left" in summary.error
    assert summary.bytes == size == recording.path.stat().st_size
    assert summary.sha256 == hashlib.sha256(recording.path.read_bytes()).hexdigest()


async def test_a_long_command_is_cut_in_the_header(tmp_path: Path) -> None:
    settings = RecordingSettings(directory=tmp_path / "rec", record_input=False, max_bytes=1 << 20)
    recording = Recording.start(
        settings, "sh-0123456789ab", cols=80, rows=24, command="x" * 100_000, title="t", term="xterm"
    )
    await recording.close()
    header, _ = lines_of(recording.path)
    assert header["command"] == "x" * MAX_HEADER_TEXT + "..."
