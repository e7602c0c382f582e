"""No secret reaches the audit file: every form through real tool calls, fresh secrets each run.

The calls go through the MCP client and the pipeline; the check reads the file as bytes and
every record JSON-decoded, so neither the raw line nor a decoded value may hold a secret.
The records still say what ran (the tool, the command with its program and flags).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from relay_shell.app import build_server
from relay_shell.config import Settings
from tests.conftest import connected, read_trail
from tests.governance.test_redaction_forms import FORMS, fresh_secret


def assert_nowhere(path: Path, planted: list[str]) -> None:
    raw = path.read_text(encoding="utf-8")
    decoded = "\n".join(json.dumps(record, ensure_ascii=False) for record in read_trail(path))
    for secret in planted:
        assert secret not in raw, (
            f"{secret} leaked into the audit file: "
            + raw[max(0, raw.find(secret) - 300) : raw.find(secret) + 60]
        )
        assert secret not in decoded


async def test_no_form_of_secret_reaches_the_audit_file(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    planted: list[str] = []

    def plant(template: str) -> str:
        secret = fresh_secret()
        planted.append(secret)
        return template.replace("{s}", secret)

    commands = [plant(template) for table in FORMS.values() for template, _keep in table]
    server = build_server(settings)
    try:
        async with connected(server) as client:
            for command in commands:  # each form as the command text; `true` keeps it harmless
                await client.call_tool("shell_exec", {"command": f": {command}", "timeout": 5})
            await client.call_tool(
                "shell_exec",
                {
                    "command": "true",
                    "env": {
                        "STRIPE_KEY": plant("{s}"),
                        "SSHPASS": plant("{s}"),
                        "DB_PASSWORD_URL": plant("{s}"),
                    },
                },
            )
            await client.call_tool("shell_exec", {"command": "sudo -S -k true", "stdin": plant("{s}") + "\n"})
            await client.call_tool(
                "shell_exec", {"command": "chpasswd --help", "stdin": plant("alice:{s}") + "\n"}
            )
            # passwd reads the new password twice: every line of its stdin is secret
            await client.call_tool(
                "shell_exec",
                {"command": ": passwd alice", "stdin": plant("{s}") + "\n" + plant("{s}") + "\n"},
            )
            for reader in (": kinit admin@EXAMPLE.COM", ": gh auth login --with-token", ": sudo -S true"):
                await client.call_tool("shell_exec", {"command": reader, "stdin": plant("{s}") + "\n"})
            # a secret inside a command that is itself an argument, and after a wrapper
            await client.call_tool("shell_exec", {"command": plant(": bash -c 'sqlcmd -U sa -P {s} -Q q'")})
            await client.call_tool(
                "shell_exec", {"command": plant(": timeout 5 sudo -u ops ipmitool -P {s} power status")}
            )
            missing = tmp_path / plant("token={s}")
            bad_cwd = await client.call_tool("shell_exec", {"command": "true", "cwd": str(missing)})
            assert bad_cwd.is_error  # its error message names the cwd: redacted in the record too
            remote = await client.call_tool(
                "ssh_exec", {"host": plant("admin:{s}@127.0.0.1"), "command": "true"}
            )
            assert remote.is_error
    finally:
        await server.services.aclose()

    assert_nowhere(settings.audit_path, planted)
    trail = read_trail(settings.audit_path)
    ran = [record["args"]["command"] for record in trail if record.get("tool") == "shell_exec"]
    assert ran[0].startswith(": STRIPE_KEY=")  # what ran is still there, only values went
    errors = [record for record in trail if record.get("error_kind")]
    assert {record["tool"] for record in errors} >= {"shell_exec", "ssh_exec"}
