"""Session input through the MCP client: split, edited and tainted lines in guarded mode."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from relay_shell.app import build_server
from relay_shell.config import Settings
from tests.conftest import connected, sc

PROMPT = r"\$ $"


@pytest.fixture
async def shell(make_settings: Callable[..., Settings]) -> AsyncIterator[tuple[Client, str]]:
    server = build_server(make_settings(policy_mode="guarded"))
    async with connected(server) as client:
        started = await client.call_tool("shell_spawn", {"env": {"PS1": "$ "}})
        assert started.is_error is False, started.content[0].text
        session_id = str(sc(started)["session_id"])
        await client.call_tool("session_recv", {"session_id": session_id, "until": PROMPT, "timeout": 10})
        yield client, session_id
    await server.services.aclose()


async def send(
    client: Client, session_id: str, data: str = "", *, enter: bool = False, keys: list[str] | None = None
) -> Any:
    return await client.call_tool(
        "session_send", {"session_id": session_id, "data": data, "enter": enter, "keys": keys or []}
    )


async def ran(client: Client, session_id: str, marker: str) -> str:
    """Run ``echo <marker>`` and return the output up to it (the shell read everything before)."""
    result = await send(client, session_id, f"echo {marker}", enter=True)
    assert result.is_error is False, result.content[0].text
    got = await client.call_tool(
        "session_recv", {"session_id": session_id, "until": f"^{marker}", "timeout": 10}
    )
    return str(sc(got)["output"])


def victim_in(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("x")
    return victim


async def test_a_command_typed_in_two_sends_is_refused(shell: tuple[Client, str], tmp_path: Path) -> None:
    client, session_id = shell
    victim = victim_in(tmp_path)
    first = await send(client, session_id, "r")
    assert first.is_error is False
    second = await send(client, session_id, f"m -rf {victim}")
    error = sc(second)["error"]
    assert (error["kind"], error["tier"]) == ("denied", 3)
    assert error["subcommand"] == f"rm -rf {victim}"
    enter = await send(client, session_id, "", enter=True)  # the shell only holds "r"
    assert enter.is_error is False
    # `r` runs (not found) in a child: text typed before the prompt is back would be opaque
    await client.call_tool("session_recv", {"session_id": session_id, "until": PROMPT, "timeout": 10})
    await ran(client, session_id, "done-1")
    assert (victim / "keep").exists()


async def test_a_line_edited_into_a_command_is_refused(shell: tuple[Client, str], tmp_path: Path) -> None:
    client, session_id = shell
    victim = victim_in(tmp_path)
    assert (await send(client, session_id, f"XX -rf {victim}")).is_error is False
    moved = await send(client, session_id, keys=["C-a", "Right", "Right", "Backspace", "Backspace"])
    assert moved.is_error is False
    refused = await send(client, session_id, "rm", enter=True)
    assert sc(refused)["error"]["subcommand"] == f"rm -rf {victim}"
    cleared = await send(client, session_id, keys=["C-e", "C-u"])
    assert cleared.is_error is False
    await ran(client, session_id, "done-2")
    assert (victim / "keep").exists()


async def test_keys_the_model_does_not_follow_make_the_line_opaque(shell: tuple[Client, str]) -> None:
    client, session_id = shell
    for keys in (["Tab"], ["Up"], ["C-r"], ["Escape"], ["C-y"]):
        result = await send(client, session_id, "ls", keys=keys)
        error = sc(result)["error"]
        assert (error["kind"], error["opaque"]) == ("denied", True), keys
    history = await send(client, session_id, "!!", enter=True)
    assert sc(history)["error"]["opaque"] is True


async def test_a_line_that_changes_later_input_taints_the_session(shell: tuple[Client, str]) -> None:
    client, session_id = shell
    assert (await send(client, session_id, "alias ll='ls -l'", enter=True)).is_error is False
    later = await send(client, session_id, "ls", enter=True)
    error = sc(later)["error"]
    assert error["opaque"] is True
    assert error["rule"] == "session.opaque_input"
    assert "the session is tainted" in error["message"]


async def test_text_typed_while_another_program_runs_is_opaque(shell: tuple[Client, str]) -> None:
    client, session_id = shell
    assert (await send(client, session_id, "cat", enter=True)).is_error is False
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:  # bounded poll: the foreground process group switches once bash starts cat
        probe = await send(client, session_id, "")
        if probe.is_error:
            break
        assert loop.time() < deadline, "cat never became the foreground process"
        await asyncio.sleep(0.05)
    error = sc(probe)["error"]
    assert (error["kind"], error["opaque"]) == ("denied", True)


async def test_a_multi_line_command_in_one_send_is_read_whole(
    shell: tuple[Client, str], tmp_path: Path
) -> None:
    client, session_id = shell
    victim = victim_in(tmp_path)
    heredoc = await send(client, session_id, f"sh <<'EOF'\nrm -rf {victim}\nEOF", enter=True)
    assert sc(heredoc)["error"]["tier"] == 3
    continued = await send(client, session_id, f"rm \\\n-rf {victim}", enter=True)
    assert sc(continued)["error"]["tier"] == 3
    assert (victim / "keep").exists()
