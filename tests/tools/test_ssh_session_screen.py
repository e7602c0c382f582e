"""Screens and recordings of an SSH session (ssh_spawn) against a real OpenSSH sshd."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from mcp import Client

from relay_shell.app import RelayServer
from relay_shell.config import Settings
from tests.conftest import connected, started
from tests.sshd import SshdInstance
from tests.tools.test_session_recording import session_end, validate_asciicast
from tests.tools.test_ssh_session_sftp_forward_tools import (  # noqa: F401  (fixtures)
    PROMPT,
    build_ssh_server,
    make_ssh_settings,
    ok,
    recv_until,
    send,
    sshd,
    target,
)

pytestmark = pytest.mark.sshd


@pytest.fixture
def recorded_settings(make_ssh_settings: Callable[..., Settings], tmp_path: Path) -> Settings:  # noqa: F811
    return make_ssh_settings(session_record_dir=tmp_path / "rec", session_record_input=True)


@pytest.fixture
async def recorded_server(recorded_settings: Settings) -> AsyncIterator[RelayServer]:
    async with started(build_ssh_server(recorded_settings)) as server:
        yield server


async def test_remote_vim_screen_and_a_recording_without_input(
    recorded_server: RelayServer,
    recorded_settings: Settings,
    sshd: SshdInstance,  # noqa: F811
) -> None:
    async with connected(recorded_server) as client:
        started = ok(await client.call_tool("ssh_spawn", target(sshd, cols=80, rows=24)))
        session_id = started["session_id"]
        await recv_until(client, session_id, PROMPT)
        await send(
            client, session_id, data="""vim -u NONE -i NONE -c 'call setline(1, ["one", "two", "three"])'"""
        )
        data = await recv_until(client, session_id, r"^three$")
        assert data["mode"] == "screen"
        assert data["screen"]["rows"][:4] == ["one", "two", "three", "~"]
        await send(client, session_id, data=":q!")
        data = await recv_until(client, session_id, PROMPT)
        assert data["mode"] == "stream"

        await send(
            client,
            session_id,
            data="stty -echo; printf 'Password: '; read secret; stty echo; echo got-${#secret}",
        )
        await recv_until(client, session_id, r"Password: $")
        await send(client, session_id, data="remote-s3cret")
        await recv_until(client, session_id, r"^got-13\r?$")
        ok(await client.call_tool("session_kill", {"session_id": session_id}))
        record = await session_end(recorded_settings, session_id)
    assert record["session_kind"] == "ssh"
    assert record["target"] == sshd.target()
    assert record["recording"]["input"] is False  # the remote terminal mode is not visible: no input
    path = Path(record["recording"]["path"])
    header, events = validate_asciicast(path)
    assert sshd.target() in header["title"]
    assert not [event for event in events if event[1] == "i"]
    assert b"remote-s3cret" not in path.read_bytes()
    output = "".join(event[2] for event in events if event[1] == "o")
    assert "three" in output and "got-13" in output


async def test_screen_follows_a_remote_resize(
    recorded_server: RelayServer,
    sshd: SshdInstance,  # noqa: F811
) -> None:
    client: Client
    async with connected(recorded_server) as client:
        session_id = ok(await client.call_tool("ssh_spawn", target(sshd, cols=80, rows=24)))["session_id"]
        await recv_until(client, session_id, PROMPT)
        await send(client, session_id, data="""vim -u NONE -i NONE -c 'call setline(1, repeat("x", 100))'""")
        data = await recv_until(client, session_id, r"^x{80}$")
        assert data["screen"]["rows"][1] == "x" * 20  # wrapped at 80 columns
        ok(await client.call_tool("session_resize", {"session_id": session_id, "cols": 120, "rows": 30}))
        data = await recv_until(client, session_id, r"^x{100}$")
        assert (data["screen"]["width"], data["screen"]["height"]) == (120, 30)
        await send(client, session_id, data=":q!")
        await recv_until(client, session_id, PROMPT)
