"""The official TypeScript client accepts what relay-shell lists and answers.

The TypeScript SDK client (1.x) compiles every tool's ``outputSchema`` with Ajv when it lists
the tools, and validates ``structuredContent`` against it on every call, failures included;
a schema it cannot compile, or a result (success or ``isError``) that does not fit, makes
``callTool`` throw. This drives the real ``relay-shell`` over stdio with that client.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.components import NODE, require_node
from tests.http.test_http_e2e import RELAY, server_env

SCRIPT = Path(__file__).with_name("ts_client_calls.mjs")


@pytest.fixture(scope="module", autouse=True)
def _node_client() -> None:
    """Node 22 and the TypeScript SDK; a run without them fails naming ``npm ci``."""
    require_node("@modelcontextprotocol/sdk")


CALLS: list[tuple[str, dict[str, object], str | None]] = [
    ("shell_exec", {"command": "echo hi; echo err >&2; exit 3"}, None),
    ("shell_exec", {"command": "echo out; echo err >&2", "merge_stderr": False}, None),
    ("shell_exec", {"command": "echo forbidden-ts-word"}, "denied"),
    ("shell_exec", {"command": "sleep 5", "timeout": 0.3}, "timeout"),
    ("shell_exec", {"command": "true", "timout": 5}, "invalid"),
    ("shell_script", {"script": "echo script", "interpreter": "sh"}, None),
    ("shell_spawn", {"command": ""}, None),  # a shell: what is typed into it is classified
    ("session_send", {"session_id": "$session", "data": "echo typed"}, None),
    ("session_resize", {"session_id": "$session", "cols": 90, "rows": 30}, None),
    ("session_list", {}, None),
    ("session_kill", {"session_id": "$session"}, None),
    ("session_kill", {"session_id": "$session"}, "invalid"),
    ("session_recv", {"session_id": "sh-000000000000"}, "invalid"),
    ("ssh_hosts", {}, None),
    ("ssh_forward_list", {}, None),
    ("server_info", {}, None),
    ("audit_tail", {"lines": 5}, None),
    ("audit_tail", {"lines": 0}, "invalid"),
]


def test_the_typescript_client_accepts_every_schema_and_result(tmp_path: Path) -> None:
    env = server_env(tmp_path, RELAY_SHELL_POLICY_DENY="forbidden-ts-word")
    calls = json.dumps([[name, arguments] for name, arguments, _ in CALLS])
    done = subprocess.run(
        [str(NODE), str(SCRIPT), RELAY, calls],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["tools"] >= 21
    for (name, _, error), result in zip(CALLS, report["results"], strict=True):
        assert result["accepted"] is True, (name, result)
        assert (result["isError"], result["kind"]) == (error is not None, error), (name, result)
