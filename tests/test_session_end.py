"""A session's end is reported once, with its reason and recording, however it ends."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from relay_shell.sessions import SessionRegistry
from relay_shell.sessions.model import SessionEnd
from relay_shell.sessions.recording import RecordingSettings
from tests.test_sessions import FakeClock, ScriptedTransport


def make(tmp_path: Path, ends: list[SessionEnd], clock: FakeClock | None = None) -> SessionRegistry:
    return SessionRegistry(
        max_sessions=4,
        buffer_bytes=4096,
        idle_timeout_s=60,
        max_lifetime_s=600,
        clock=clock or FakeClock(),
        recording=RecordingSettings(directory=tmp_path / "rec", record_input=True, max_bytes=1 << 20),
        on_end=ends.append,
    )


async def start(registry: SessionRegistry) -> tuple[str, ScriptedTransport]:
    transport = ScriptedTransport()
    info = await registry.add(
        transport, kind="local", host=None, command="bash", cols=80, rows=24, term="xterm"
    )
    await transport.reading.wait()
    return info.session_id, transport


async def test_an_exited_session_reports_once_with_its_recording(tmp_path: Path) -> None:
    ends: list[SessionEnd] = []
    registry = make(tmp_path, ends)
    session_id, transport = await start(registry)
    await transport.deliver(b"bye\r\n")
    await registry.send(session_id, b"exit\r")  # the scripted transport has no echo probe: not recorded
    await transport.end(3)
    await registry.kill(session_id)  # removing it afterwards does not report it again
    await registry.aclose()
    [end] = ends
    assert (end.session_id, end.reason, end.exit_code, end.bytes_produced) == (session_id, "exited", 3, 5)
    assert end.recording is not None
    data = Path(end.recording.path).read_bytes()
    assert end.recording.sha256 == hashlib.sha256(data).hexdigest()
    header, *events = data.decode().splitlines()
    assert json.loads(header)["env"] == {"TERM": "xterm"}
    assert [json.loads(event)[1:] for event in events] == [["o", "bye\r\n"]]


@pytest.mark.parametrize("how", ["killed", "reaped", "shutdown"])
async def test_closed_sessions_report_how_they_were_closed(tmp_path: Path, how: str) -> None:
    ends: list[SessionEnd] = []
    clock = FakeClock()
    registry = make(tmp_path, ends, clock)
    session_id, _ = await start(registry)
    if how == "killed":
        await registry.kill(session_id)
    elif how == "reaped":
        clock.now += 3600
        assert await registry.sweep() == [session_id]
    await registry.aclose()
    [end] = ends
    assert (end.session_id, end.reason) == (session_id, how)
    assert end.recording is not None and Path(end.recording.path).exists()


async def test_a_failing_end_hook_does_not_break_teardown(tmp_path: Path) -> None:
    def broken(end: SessionEnd) -> None:
        raise RuntimeError("audit down")

    registry = SessionRegistry(
        max_sessions=1, buffer_bytes=4096, idle_timeout_s=60, max_lifetime_s=600, on_end=broken
    )
    session_id, transport = await start(registry)
    await registry.kill(session_id)
    assert transport.close_calls >= 1
    assert len(registry) == 0
    await registry.aclose()
