"""Concurrent sends to one session are judged against the line the shell really holds.

The line model is read when a send is checked and written once it was typed; two sends in
flight at once must not both be judged against the same line. Through an MCP client on a
real bash in guarded mode: a send checked while another is still being typed is opaque, and
a send checked before another was typed is refused without typing anything. The waits are
made deterministic by holding our own objects (the registry's delivery, the classifier) on
events, never by sleeping.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from relay_shell.app import RelayServer, build_server
from relay_shell.config import Settings
from relay_shell.policy.model import CallText
from tests.conftest import connected
from tests.tools.test_policy_sessions import PROMPT, ran, sc, send, victim_in

HELD_S = 30.0


@pytest.fixture
async def guarded(make_settings: Callable[..., Settings]) -> AsyncIterator[tuple[RelayServer, Client, str]]:
    server = build_server(make_settings(policy_mode="guarded"))
    async with connected(server) as client:
        started = await client.call_tool("shell_spawn", {"env": {"PS1": "$ "}})
        assert started.is_error is False, started.content[0].text
        session_id = str(sc(started)["session_id"])
        await client.call_tool("session_recv", {"session_id": session_id, "until": PROMPT, "timeout": 10})
        yield server, client, session_id
    await server.services.aclose()


async def test_a_send_checked_while_another_is_typed_is_opaque(
    guarded: tuple[RelayServer, Client, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, client, session_id = guarded
    victim = victim_in(tmp_path)
    registry = server.services.sessions
    deliver = registry.send
    typing, release = asyncio.Event(), asyncio.Event()

    async def held_send(target: str, data: bytes) -> None:
        """The first send's first byte reaches the shell; the rest waits for ``release``."""
        if data.startswith(b"r") and not typing.is_set():
            await deliver(target, data[:1])
            typing.set()
            async with asyncio.timeout(HELD_S):
                await release.wait()
            data = data[1:]
        await deliver(target, data)

    monkeypatch.setattr(registry, "send", held_send)
    first = asyncio.create_task(send(client, session_id, "r" + "\x05" * 3))  # pending `r`: harmless
    async with asyncio.timeout(HELD_S):
        await typing.wait()
    second = await send(client, session_id, f"m -rf {victim}", enter=True)
    release.set()
    assert (await first).is_error is False
    error = sc(second)["error"]
    assert (error["kind"], error["opaque"]) == ("denied", True)
    # Once typed, the first send's line is the model's again: completing it is judged whole.
    third = await send(client, session_id, f"m -rf {victim}", enter=True)
    assert (sc(third)["error"]["tier"], sc(third)["error"]["subcommand"]) == (3, f"rm -rf {victim}")
    cleared = await send(client, session_id, keys=["C-u"])
    assert cleared.is_error is False  # the session was not tainted by the overlap it refused
    await ran(client, session_id, "done-held")
    assert (victim / "keep").exists()


async def test_a_send_checked_before_another_was_typed_types_nothing(
    guarded: tuple[RelayServer, Client, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, client, session_id = guarded
    victim = victim_in(tmp_path)
    analyzer = server.services.pipeline.analyzer
    analyze = analyzer.analyze
    checking, release = threading.Event(), threading.Event()
    padding = " " * 70_000  # large enough to be classified in a worker thread

    def held_analyze(call: CallText) -> Any:
        """The large send's classification waits (in its worker thread) for ``release``."""
        if call.size() > len(padding):
            checking.set()
            assert release.wait(HELD_S)
        return analyze(call)

    monkeypatch.setattr(analyzer, "analyze", held_analyze)
    # Checked against an empty line, `m -rf ...` is a harmless unknown command...
    late = asyncio.create_task(send(client, session_id, f"m -rf {victim}{padding}", enter=True))
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, checking.wait, HELD_S)
    # ...but before it is typed another send leaves `r` on the line.
    assert (await send(client, session_id, "r")).is_error is False
    release.set()
    refused = await late
    assert refused.is_error is True
    assert sc(refused)["error"]["kind"] == "failed"
    assert "nothing was typed" in sc(refused)["error"]["message"]
    cleared = await send(client, session_id, keys=["C-u"])
    assert cleared.is_error is False
    output = await ran(client, session_id, "done-late")
    assert "-rf" not in output  # the refused send reached neither the line nor the screen
    assert (victim / "keep").exists()
