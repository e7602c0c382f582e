"""What is typed at a password prompt never reaches the audit file; what is typed elsewhere does.

A real bash on a PTY: ``read -s`` turns the terminal's ECHO off (canonical mode kept, as
sudo, passwd, ssh and getpass do), so the text typed next is a secret and its ``session_send``
record carries ``[REDACTED]`` (also in the parse's command names). At readline's prompt
(ECHO off too, but the line editor draws the text itself) and after an agent-printed
``Password:`` (ECHO on) the typed command stays in the record.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

from relay_shell.app import build_server
from relay_shell.config import Settings
from tests.conftest import connected, read_audit
from tests.tools.test_session_screen import recv, send, shell


def _sends(settings: Settings) -> list[dict[str, object]]:
    return [record for record in read_audit(settings.audit_path) if record["tool"] == "session_send"]


async def test_a_password_typed_with_echo_off_is_redacted_and_commands_are_not(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    secret = "pw" + secrets.token_hex(12)
    server = build_server(settings)
    async with connected(server) as client:
        session_id = await shell(client, tmp_path)
        await send(client, session_id, "read -s -p 'Password: ' secret; echo; echo got-${#secret}")
        await recv(client, session_id, until=r"Password: $")
        await send(client, session_id, secret)
        await recv(client, session_id, until=rf"^got-{len(secret)}\r?$")
        # An agent printing the prompt itself does not hide the command it types next.
        await send(client, session_id, "echo Password:")
        await recv(client, session_id, until=r"^Password:\r?$")
        await send(client, session_id, "echo visible-marker")
        await recv(client, session_id, until=r"^visible-marker\r?$")
        await client.call_tool("session_kill", {"session_id": session_id})
    await server.services.aclose()

    raw = settings.audit_path.read_text(encoding="utf-8")
    assert secret not in raw
    typed = [record["args"].get("data") for record in _sends(settings)]  # type: ignore[union-attr]
    assert len(typed) == 4 and str(typed[0]).startswith("read -s -p ")  # (its prompt text reads as a key)
    assert typed[1:] == ["[REDACTED]", "echo Password:", "echo visible-marker"]
