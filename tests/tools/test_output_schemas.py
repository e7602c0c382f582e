"""Every tool answers with structuredContent that fits its declared outputSchema, successes and failures.

The schemas are closed for the check (``additionalProperties: false`` on every object that
lists its properties), so a field a tool adds without declaring it fails here. The wire
schemas name the ``error`` object in their failure branch without declaring it (it is the
same in every tool, described once in docs/tools.md); the check declares the whole
:class:`ErrorInfo` model in each result schema, closed, so every field of a real error is
checked (its type, and that the model declares it). Results are
built as plain data on the hot path; this walk is what keeps them honest. The walk must
cover every tool the server lists, with a success and with a failure each: a failure's
``error`` object and partial output share the schema, and the schema's ``required`` holds
for both (``tier`` always; every success field, or ``error``).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import pytest
from mcp import Client

from relay_shell.app import build_server
from relay_shell.config import Settings
from relay_shell.tools.models import ErrorInfo
from tests.conftest import connected
from tests.netutil import start_echo_server
from tests.sshd import ClientKey, SshdInstance

pytestmark = pytest.mark.usefixtures("sshd_installed")


def _error_schema() -> dict[str, Any]:
    """The error object as its model declares it, every field typed (its one reference inlined)."""
    schema = ErrorInfo.model_json_schema()
    schema["properties"]["kind"] = schema.pop("$defs")["ErrorKind"]
    return schema


ERROR_SCHEMA = _error_schema()
NOTES_SCHEMA = {"type": "array", "items": {"type": "string"}}
"""``notes`` as its model types it (the wire schema says only ``array``)."""


def closed(schema: Any, top: bool = True) -> Any:
    """``schema`` with ``additionalProperties: false`` on every object that lists properties.

    A result's ``error``, which the wire schema only names, is checked against the whole error
    model (closed), and its ``notes`` as strings.
    """
    if isinstance(schema, dict):
        result = {key: closed(value, top=False) for key, value in schema.items()}
        properties = result.get("properties")
        if top and isinstance(properties, dict):
            strict = {"error": closed(ERROR_SCHEMA, top=False), "notes": NOTES_SCHEMA}
            result["properties"] = {**properties, **strict}
        if "properties" in result and result.get("additionalProperties") in (None, True):
            result["additionalProperties"] = False
        return result
    if isinstance(schema, list):
        return [closed(item, top=False) for item in schema]
    return schema


class Walk:
    """Calls tools and checks each answer against the tool's closed output schema."""

    def __init__(self, client: Client, schemas: dict[str, dict[str, Any]]) -> None:
        self.client = client
        self.schemas = schemas
        self.called: set[str] = set()
        self.failed: set[str] = set()
        self.fanout_rows_read = False

    async def call(self, tool: str, arguments: dict[str, Any], *, error: str | None = None) -> dict[str, Any]:
        result = await self.client.call_tool(tool, arguments)
        data = result.structured_content
        assert data is not None, tool
        assert result.is_error is (error is not None), result.content[0].text
        if error is not None:
            assert data["error"]["kind"] == error
            self.failed.add(tool)
        else:
            self.called.add(tool)
        jsonschema.validate(data, closed(self.schemas[tool]))
        if tool == "session_recv" and "results" in data:  # a fan-out job's rows: ssh_fanout declares them
            self.fanout_rows_read = True
            row = self.schemas["ssh_fanout"]["properties"]["results"]["items"]
            for each in data["results"]:
                jsonschema.validate(each, closed(row, top=False))
        return dict(data)


@pytest.fixture
async def walk(
    make_settings: Callable[..., Settings], tmp_path: Path, key: ClientKey, host: SshdInstance
) -> AsyncIterator[Walk]:
    inventory = tmp_path / "inventory.json"
    box = {
        "hostname": host.address,
        "port": host.port,
        "user": host.user,
        "identity_file": str(key.private_path),
        "known_hosts": "ignore",
    }
    inventory.write_text(json.dumps({"box": box, "twin": box, "forbidden-word-host": box}))
    server = build_server(make_settings(inventory=inventory, policy_deny="forbidden-word"))
    async with connected(server) as client:
        tools = (await client.list_tools()).tools
        schemas = {tool.name: dict(tool.output_schema or {}) for tool in tools}
        assert all(schemas.values())
        yield Walk(client, schemas)
    await server.services.aclose()


async def test_every_tool_answers_within_its_schema(walk: Walk, tmp_path: Path, remote_dir: Path) -> None:
    with pytest.raises(jsonschema.ValidationError):  # the closed schema refuses an undeclared field
        jsonschema.validate({"tier": 1, "undeclared": True}, closed(walk.schemas["shell_exec"]))
    with pytest.raises(jsonschema.ValidationError):  # ... also inside a nested object
        jsonschema.validate(
            {"error": {"kind": "invalid", "message": "m", "x": 1}}, closed(walk.schemas["ssh_exec"])
        )
    with pytest.raises(jsonschema.ValidationError):  # ... and a declared error field of the wrong type
        jsonschema.validate(
            {"tier": None, "error": {"kind": "invalid", "message": "m", "argument": 1}},
            closed(walk.schemas["ssh_exec"]),
        )
    with pytest.raises(jsonschema.ValidationError):  # ... and a note that is not a string
        jsonschema.validate({"tier": 1, "notes": [1], "hosts": []}, closed(walk.schemas["ssh_keyscan"]))
    await _local_tools(walk)
    await _session_tools(walk, "shell_spawn", {"command": ""})
    await _ssh_tools(walk, tmp_path, remote_dir)
    await _session_tools(walk, "ssh_spawn", {"host": "box"})
    await _jobs(walk)
    await walk.call("server_info", {})
    await walk.call("audit_tail", {"lines": 5})
    await walk.call("audit_tail", {"lines": 0}, error="invalid")
    for tool in sorted(walk.schemas):  # refused before it runs: tier null, error naming the argument
        refused = await walk.call(tool, {"bogus": 1}, error="invalid")
        assert refused["tier"] is None and refused["error"]["argument"] == "bogus"
    assert walk.called == set(walk.schemas)
    assert walk.failed == set(walk.schemas)
    assert walk.fanout_rows_read


def test_a_result_must_carry_what_its_schema_requires(schemas: dict[str, dict[str, Any]]) -> None:
    """No schema accepts ``{}`` or a bare tier: a result is a full success or carries ``error``."""
    for tool, schema in schemas.items():
        for hollow in ({}, {"tier": 1}, {"tier": None, "notes": []}):
            with pytest.raises(jsonschema.ValidationError):
                jsonschema.validate(hollow, closed(schema))
        failure = {"tier": None, "error": {"kind": "invalid", "message": "m", "argument": "x"}}
        jsonschema.validate(failure, closed(schema))
        jsonschema.validate(failure, schema)  # as a client validates it (TypeScript SDK 1.x: isError too)
        assert schema["required"] == ["tier"], tool
        assert schema["anyOf"][-1] == {"required": ["error"]}, tool  # named, described in docs/tools.md
        assert "error" not in schema["properties"], tool


@pytest.fixture(scope="module")
def schemas() -> dict[str, dict[str, Any]]:
    """Every tool's output schema as tools/list sends it (default settings)."""
    from relay_shell.config import load_settings

    with tempfile.TemporaryDirectory(prefix="relay-schemas-") as scratch:
        root = Path(scratch)
        settings = load_settings(
            _env_file=None, audit_path=root / "audit.jsonl", ssh_config=root / "none", inventory=None
        )
        server = build_server(settings)
        try:
            return {tool.name: dict(tool.output_schema or {}) for tool in server._tool_manager.list_tools()}
        finally:
            anyio.run(server.services.aclose)


async def _local_tools(walk: Walk) -> None:
    await walk.call("shell_exec", {"command": "echo hi"})
    await walk.call(
        "shell_exec", {"command": "echo out; echo err >&2", "merge_stderr": False, "timeout": 1e9}
    )
    await walk.call("shell_exec", {"command": "kill -9 $$"})
    await walk.call("shell_exec", {"command": "true", "timeout": -1}, error="invalid")
    await walk.call("shell_exec", {"command": "echo partial; sleep 5", "timeout": 0.5}, error="timeout")
    await walk.call("shell_exec", {"command": "echo forbidden-word"}, error="denied")
    await walk.call("shell_script", {"script": "echo script", "interpreter": "sh"})


async def _session_tools(walk: Walk, spawn: str, arguments: dict[str, Any]) -> None:
    started = await walk.call(spawn, arguments)
    session_id = started["session_id"]
    # A line the classifier follows (Tab, or typing into cat, is opaque: refused under a deny list)
    await walk.call("session_send", {"session_id": session_id, "data": "echo typed", "keys": ["Backspace"]})
    await walk.call("session_recv", {"session_id": session_id, "timeout": 1, "until": "typed"})
    screen = await walk.call("session_recv", {"session_id": session_id, "timeout": 1, "screen": "always"})
    assert screen["mode"] == "screen" and "cursor" in screen["screen"]
    await walk.call("session_resize", {"session_id": session_id, "cols": 90, "rows": 30})
    await walk.call("session_list", {})
    await walk.call("session_kill", {"session_id": session_id})
    await walk.call("session_recv", {"session_id": session_id}, error="invalid")


async def _ssh_tools(walk: Walk, tmp_path: Path, remote_dir: Path) -> None:
    await walk.call("ssh_exec", {"host": "box", "command": "echo remote; kill -9 $$"})
    await walk.call("ssh_check", {"hosts": "box"})
    await walk.call("ssh_fanout", {"command": "echo fan", "hosts": ["box"]})
    rolled = await walk.call(  # a failed canary: the rest skipped, a denied host, an aborted recap
        "ssh_fanout", {"command": "exit 3", "hosts": "box,twin,forbidden-word-host", "canary": 1}
    )
    assert {row["status"] for row in rolled["results"]} == {"failed", "skipped", "denied"}
    assert rolled["recap"]["aborted"] is True
    await walk.call("ssh_keyscan", {"hosts": "box", "port": 1})  # unreachable: a row with its error
    await walk.call("ssh_hosts", {})
    source = tmp_path / "payload.txt"
    source.write_text("payload\n")
    await walk.call("ssh_upload", {"host": "box", "local_path": str(source), "remote_path": str(remote_dir)})
    many = await walk.call(
        "ssh_upload", {"hosts": "box,twin", "local_path": str(source), "remote_path": str(remote_dir)}
    )
    assert [row["status"] for row in many["results"]] == ["ok", "ok"]
    back = tmp_path / "back.txt"
    remote_file = str(remote_dir / "payload.txt")
    await walk.call("ssh_download", {"host": "box", "remote_path": remote_file, "local_path": str(back)})
    echo, port = await start_echo_server()
    try:
        opened = await walk.call("ssh_forward", {"host": "box", "spec": f"L:0:127.0.0.1:{port}"})
        await walk.call("ssh_forward_list", {})
        await walk.call("ssh_forward_close", {"forward_id": opened["forward_id"]})
    finally:
        echo.close()
        await echo.wait_closed()


async def _jobs(walk: Walk) -> None:
    """Running results, reads of jobs (split and merged, fan-out rows), job rows and kills."""
    split = await walk.call(
        "shell_exec", {"command": "echo o; echo e >&2; sleep 1", "merge_stderr": False, "yield_after": 0.3}
    )
    assert split["status"] == "running"
    await walk.call("session_recv", {"session_id": split["job_id"], "timeout": 0.1})
    await walk.call("session_list", {})
    await walk.call("session_kill", {"session_id": split["job_id"]})
    await walk.call("session_recv", {"session_id": split["job_id"], "timeout": 5})
    await walk.call("session_send", {"session_id": split["job_id"], "data": "x"}, error="invalid")
    script = await walk.call("shell_script", {"script": "sleep 1; echo s", "yield_after": 0.2})
    remote = await walk.call("ssh_exec", {"host": "box", "command": "sleep 1; echo r", "yield_after": 0.2})
    fleet = await walk.call("ssh_fanout", {"command": "sleep 1; echo f", "hosts": "box", "yield_after": 0.2})
    for job in (script, remote, fleet):
        assert job["status"] == "running"
        reads = [
            await walk.call("session_recv", {"session_id": job["job_id"], "timeout": 5}) for _ in range(3)
        ]
        assert reads[-1]["ended"] is True  # a one-second job ends within three reads of up to 5 s
