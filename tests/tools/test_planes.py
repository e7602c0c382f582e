"""The two error planes: tool results (isError) and JSON-RPC errors, each audited.

Also the checks ``RelayServer.call_tool`` makes before a tool body runs: unknown tool,
unknown argument, input size; and the audit's view of the arguments (as sent, bounded
before redaction) and of a confirmation bound to the effective call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from relay_shell.app import RelayServer, build_server
from relay_shell.config import Settings
from relay_shell.governance import pipeline as pipeline_module
from relay_shell.governance import record as record_module
from relay_shell.governance.patterns import classify_text
from relay_shell.governance.record import MAX_AUDIT_STRING
from relay_shell.policy.model import Analysis, CallText
from tests.conftest import connected, read_audit, sc

INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603


@pytest.fixture
async def served(make_settings: Callable[..., Settings]) -> AsyncIterator[Callable[..., Any]]:
    """Connect a client to a server built with the given settings; everything closed afterwards."""
    servers: list[RelayServer] = []

    def build(**overrides: Any) -> RelayServer:
        server = build_server(make_settings(**overrides))
        servers.append(server)
        return server

    yield build
    for server in servers:
        await server.services.aclose()


def no_traceback_logged(caplog: pytest.LogCaptureFixture) -> bool:
    return all(record.exc_info is None for record in caplog.records)


# --- the protocol plane ---------------------------------------------------------------------------


async def test_unknown_resource_uri_is_invalid_params_without_a_traceback(
    served: Callable[..., RelayServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = served()
    caplog.set_level(logging.DEBUG)
    async with connected(server) as client:
        with pytest.raises(MCPError) as caught:
            await client.read_resource("relay-shell://no-such-thing")
    assert caught.value.code == INVALID_PARAMS
    assert caught.value.data["kind"] == "invalid"
    assert caught.value.data["uri"] == "relay-shell://no-such-thing"
    assert no_traceback_logged(caplog)
    record = read_audit(server.services.settings.audit_path)[-1]
    assert (record["tool"], record["error_kind"], record["target"]) == (
        "resource_read",
        "invalid",
        "relay-shell://no-such-thing",
    )


async def test_resource_uri_is_a_target_of_the_deny_list(served: Callable[..., RelayServer]) -> None:
    server = served(policy_deny="prod")
    async with connected(server) as client:
        with pytest.raises(MCPError) as caught:
            await client.read_resource("relay-shell://inventory/prod-db")
        listing = await client.read_resource("relay-shell://inventory")  # not denied: no "prod" in it
    assert caught.value.code == INTERNAL_ERROR
    assert (caught.value.data["kind"], caught.value.data["rule"], caught.value.data["tier"]) == (
        "denied",
        "deny",
        0,
    )
    assert listing.contents
    records = read_audit(server.services.settings.audit_path)
    assert [(r["decision"], r["outcome"]) for r in records] == [("denied", "denied"), ("allowed", "ok")]


async def test_unknown_prompt_is_invalid_params(served: Callable[..., RelayServer]) -> None:
    server = served()
    async with connected(server) as client:
        with pytest.raises(MCPError) as caught:
            await client.get_prompt("no_such_prompt")
    assert caught.value.code == INVALID_PARAMS
    assert read_audit(server.services.settings.audit_path)[-1]["error_kind"] == "invalid"


async def test_unknown_tool_is_a_json_rpc_error_and_an_audit_record(
    served: Callable[..., RelayServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = served()
    caplog.set_level(logging.DEBUG)
    async with connected(server) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("shell_exce", {"command": "true"})
    assert caught.value.code == INVALID_PARAMS
    assert "shell_exce" in caught.value.message
    assert no_traceback_logged(caplog)
    record = read_audit(server.services.settings.audit_path)[-1]
    assert (record["tool"], record["error_kind"], record["outcome"], record["args"]) == (
        "shell_exce",
        "invalid",
        "error",
        {"command": "true"},
    )


# --- checks before a tool body runs ---------------------------------------------------------------


async def test_a_misspelled_argument_is_invalid_naming_it(
    served: Callable[..., RelayServer], tmp_path: Path
) -> None:
    server = served()
    marker = tmp_path / "ran"
    async with connected(server) as client:
        result = await client.call_tool("shell_exec", {"command": f"touch {marker}", "timout": 5})
    assert result.is_error is True
    error = sc(result)["error"]
    assert (error["kind"], error["argument"]) == ("invalid", "timout")
    assert not marker.exists()
    record = read_audit(server.services.settings.audit_path)[-1]
    assert (record["tool"], record["error_kind"], record["args"]["timout"]) == ("shell_exec", "invalid", 5)


@pytest.mark.parametrize(
    ("tool", "arguments", "argument"),
    [
        ("shell_exec", {"command": "touch {marker}", "timeout": True}, "timeout"),  # not 1 second
        ("shell_exec", {"command": "touch {marker}", "max_output": False}, "max_output"),
        ("shell_exec", {"command": "touch {marker}", "yield_after": True}, "yield_after"),
        ("shell_exec", {"command": True}, "command"),
        ("ssh_fanout", {"command": "touch {marker}", "hosts": "h", "batch": True}, "batch"),
    ],
)
async def test_a_boolean_where_the_schema_wants_no_boolean_is_invalid_naming_it(
    served: Callable[..., RelayServer], tmp_path: Path, tool: str, arguments: dict[str, Any], argument: str
) -> None:
    server = served()
    marker = tmp_path / "ran"
    sent = {
        name: value.format(marker=marker) if isinstance(value, str) else value
        for name, value in arguments.items()
    }
    async with connected(server) as client:
        result = await client.call_tool(tool, sent)
        kept = await client.call_tool("shell_exec", {"command": "true", "merge_stderr": False})
    error = sc(result)["error"]
    assert (result.is_error, error["kind"], error["argument"]) == (True, "invalid", argument)
    assert "boolean" in error["message"]
    assert not marker.exists()
    assert kept.is_error is False  # a boolean where one is declared still passes


async def test_every_input_schema_is_closed(served: Callable[..., RelayServer]) -> None:
    async with connected(served()) as client:
        tools = (await client.list_tools()).tools
    assert tools
    assert {tool.name: tool.input_schema.get("additionalProperties") for tool in tools} == {
        tool.name: False for tool in tools
    }


@pytest.mark.parametrize(
    ("arguments", "argument"),
    [
        ({"command": "true #" + "x" * 2000}, "command"),
        ({"command": "true", "stdin": "é" * 600}, "stdin"),  # 1200 bytes in 600 characters
        ({"command": "true", "env": {"BIG": "y" * 5000}}, "env.BIG"),
    ],
)
async def test_input_over_the_cap_is_invalid_before_any_scan(
    served: Callable[..., RelayServer],
    monkeypatch: pytest.MonkeyPatch,
    arguments: dict[str, Any],
    argument: str,
) -> None:
    server = served(max_input_bytes=1024)
    scanned: list[int] = []
    analyzer = server.services.pipeline.analyzer
    real_analyze = analyzer.analyze

    def spy(text: str) -> Any:
        scanned.append(len(text))
        return classify_text(text)

    def analyze_spy(call: CallText) -> Analysis:
        scanned.append(call.size())
        return real_analyze(call)

    monkeypatch.setattr(pipeline_module, "classify_text", spy)
    monkeypatch.setattr(analyzer, "analyze", analyze_spy)
    async with connected(server) as client:
        result = await client.call_tool("shell_exec", arguments)
    error = sc(result)["error"]
    assert (error["kind"], error["argument"]) == ("invalid", argument)
    assert "RELAY_SHELL_MAX_INPUT_BYTES" in error["message"]
    assert scanned == []


async def test_large_input_is_classified_off_the_event_loop(
    served: Callable[..., RelayServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = served()
    threads: list[bool] = []
    analyzer = server.services.pipeline.analyzer  # shell_exec is classified by the parse
    real_analyze = analyzer.analyze

    def spy(call: CallText) -> Analysis:
        threads.append(threading.current_thread() is threading.main_thread())
        return real_analyze(call)

    monkeypatch.setattr(analyzer, "analyze", spy)
    async with connected(server) as client:
        small = await client.call_tool("shell_exec", {"command": "true"})
        large = await client.call_tool("shell_exec", {"command": "cat >/dev/null", "stdin": "z" * 100_000})
    assert (small.is_error, large.is_error) == (False, False)
    assert threads == [True, False]


async def test_each_host_of_a_large_fanout_is_judged_off_the_event_loop(
    served: Callable[..., RelayServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = served(policy_deny=r"192\.0\.2\.1")  # the host is refused: nothing connects
    threads: list[bool] = []
    real_decide = pipeline_module.decide

    def spy(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread() is threading.main_thread())
        return real_decide(*args, **kwargs)

    monkeypatch.setattr(pipeline_module, "decide", spy)
    async with connected(server) as client:
        small = await client.call_tool("ssh_fanout", {"command": "true", "hosts": "192.0.2.1"})
        large = await client.call_tool(
            "ssh_fanout", {"command": "true #" + "x" * 100_000, "hosts": "192.0.2.1"}
        )
    assert [row["status"] for row in sc(small)["results"] + sc(large)["results"]] == ["denied", "denied"]
    assert threads == [True, True, False, False]  # each call: its host, then the call itself


async def test_large_arguments_are_redacted_off_the_event_loop(
    served: Callable[..., RelayServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = served()
    threads: list[bool] = []
    real_redact = record_module.redact

    def spy(value: object) -> object:
        threads.append(threading.current_thread() is threading.main_thread())
        return real_redact(value)

    monkeypatch.setattr(record_module, "redact", spy)
    many = {f"VAR_{index}": "v" * 1000 for index in range(100)}  # 100 KB of text even once bounded
    async with connected(server) as client:
        await client.call_tool("shell_exec", {"command": "true"})
        await client.call_tool("shell_exec", {"command": "true", "env": many})
    assert threads == [True, False]
    record = read_audit(server.services.settings.audit_path)[-1]
    assert record["args"]["env"]["VAR_7"] == "v" * 1000


async def test_audited_arguments_are_bounded_before_redaction(
    served: Callable[..., RelayServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = served(max_input_bytes=8 * 1024 * 1024)
    longest: list[int] = []
    real_redact = record_module.redact

    def spy(value: object) -> object:
        longest.append(max((len(text) for text in _strings(value)), default=0))
        return real_redact(value)

    monkeypatch.setattr(record_module, "redact", spy)
    huge = "password=hunter2 " + "q" * 5_000_000
    async with connected(server) as client:
        await client.call_tool("shell_exec", {"command": "cat >/dev/null", "stdin": huge})
    assert longest
    assert max(longest) < MAX_AUDIT_STRING + 64
    record = read_audit(server.services.settings.audit_path)[-1]
    assert record["args"]["stdin"].startswith("password=[REDACTED]")
    assert len(record["args"]["stdin"]) < MAX_AUDIT_STRING + 64


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


async def test_confirmation_token_matches_the_call_with_defaults_spelled_out(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    settings = make_settings(confirm_tier3="token")
    server = build_server(settings)
    command = f"rm -rf {victim}"
    async with Client(server) as client:
        first = await client.call_tool("shell_exec", {"command": command})
        token = sc(first)["error"]["confirm_token"]
        spelled_out = {
            "command": command,
            "timeout": None,
            "cwd": "",
            "stdin": "",
            "merge_stderr": True,
            "use_shell": True,
            "confirm_token": token,
        }
        ran = await client.call_tool("shell_exec", spelled_out)
    await server.services.aclose()
    assert ran.is_error is False
    assert not victim.exists()
    record = read_audit(settings.audit_path)[-1]
    assert (record["confirmation"], sorted(record["args"])) == ("token:accepted", sorted(spelled_out))
