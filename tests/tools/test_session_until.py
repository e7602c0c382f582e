"""session_recv `until` through an MCP client: a linear-time engine, off the event loop."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from mcp import Client

from relay_shell.app import RelayServer
from relay_shell.config import Settings
from tests.conftest import connected, read_audit, sc
from tests.tools.test_session_tools import spawn


async def wait_buffered(client: Client, session_id: str, at_least: int) -> None:
    """Poll session_list (bounded) until the session has buffered ``at_least`` bytes."""
    deadline = time.monotonic() + 20
    while True:
        listed = sc(await client.call_tool("session_list", {}))
        row = next(s for s in listed["sessions"] if s["session_id"] == session_id)
        if row["bytes_buffered"] >= at_least:
            return
        assert time.monotonic() < deadline, row
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    ("pattern", "program"),
    [
        # Catastrophic backtracking for Python's re: 2^n paths on a line of a's ending in b.
        (r"^(a+)+$", "import sys; sys.stdout.write('a' * 4000 + 'b\\n')"),
        # Linear for RE2 but costly (its DFA explodes, the NFA runs): must stay off the loop.
        (r"(a|b)*a(a|b){500}c", "import sys; sys.stdout.write('ab' * 150000 + '\\n')"),
    ],
)
async def test_adversarial_until_never_stalls_other_clients(
    server: RelayServer, client: Client, pattern: str, program: str, tmp_path: Path
) -> None:
    script = tmp_path / "out.py"
    script.write_text(f"{program}\nimport time; time.sleep(60)\n")
    session_id = await spawn(client, command=f"python3 {script}")
    await wait_buffered(client, session_id, 4000)
    recv = asyncio.create_task(
        client.call_tool(
            "session_recv", {"session_id": session_id, "until": pattern, "timeout": 1, "max_bytes": 1048576}
        )
    )
    async with connected(server) as other:
        info = await other.call_tool("server_info", {})
        assert info.is_error is False
        assert not recv.done()  # answered while the recv was still searching and waiting
    result = await recv
    data = sc(result)
    assert result.is_error is False
    assert (data["matched"], data["timed_out"]) == (False, True)
    assert data["bytes"] > 4000


async def test_lookbehind_is_invalid_naming_until(client: Client, settings: Settings) -> None:
    session_id = await spawn(client, command="sleep 30")
    for pattern in (r"(?<=a)b", r"(a)\1"):
        result = await client.call_tool("session_recv", {"session_id": session_id, "until": pattern})
        assert result.is_error is True
        error = sc(result)["error"]
        assert (error["kind"], error["argument"]) == ("invalid", "until")
    records = [r for r in read_audit(settings.audit_path) if r["tool"] == "session_recv"]
    assert [r["error_kind"] for r in records] == ["invalid", "invalid"]


async def test_prompt_split_across_chunks_matches(client: Client, tmp_path: Path) -> None:
    script = tmp_path / "slow.sh"
    script.write_text("printf 'Continue? [Y'; sleep 0.3; printf '/n] '; read answer; echo got-$answer\n")
    session_id = await spawn(client, command=f"sh {script}")
    result = await client.call_tool(
        "session_recv", {"session_id": session_id, "until": r"\[Y/n\] $", "timeout": 10}
    )
    assert sc(result)["matched"] is True
    assert sc(result)["output"].endswith("Continue? [Y/n] ")
