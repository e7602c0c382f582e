"""The generated wire schemas (``tools/listing.json``) against what the tools' code derives.

A server registers its tools from the generated file; these tests fail when the file no longer
says what pydantic and the compaction derive from the signatures and output models (regenerate
with ``.venv/bin/python -m relay_shell.docs_gen``), and check that the tools a server lists, the
argument models that validate calls and the output models are those the SDK's own
registration gives, under both confirmation modes (``confirm_token`` listed or hidden).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from mcp.server.mcpserver.tools.base import Tool
from mcp_types import CallToolResult
from pydantic import BaseModel

from relay_shell.app import build_server
from relay_shell.config import Settings
from relay_shell.tools import listing
from relay_shell.tools.schemas import compact_input, compact_output


def test_the_listing_file_is_what_the_code_derives(settings: Settings) -> None:
    server = build_server(settings)
    tools = server._tool_manager.list_tools()
    rendered, text = listing.render(tools), listing.LISTING_PATH.read_text(encoding="utf-8")
    expected, current = json.loads(rendered), json.loads(text)
    stale = sorted(
        name for name in expected.keys() | current.keys() if expected.get(name) != current.get(name)
    )
    assert not stale, (
        f"stale in {listing.LISTING_PATH.name}: {stale}; run .venv/bin/python -m relay_shell.docs_gen"
    )
    assert text == rendered  # order and layout too


@pytest.mark.parametrize("confirm", ["off", "token"])
def test_a_listed_server_lists_what_the_sdk_registration_gives(
    make_settings: Callable[..., Settings], confirm: str
) -> None:
    server = build_server(make_settings(confirm_tier3=confirm))
    hidden = () if confirm == "token" else ("confirm_token",)
    tools = server._tool_manager.list_tools()
    assert len(tools) == 21
    for tool in tools:
        derived = Tool.from_function(tool.fn, name=tool.name, description=tool.description)
        assert not derived.resolved_params, tool.name
        expected_input = {
            **compact_input(compact_input(derived.parameters), hidden),
            "additionalProperties": False,
        }
        assert tool.parameters == expected_input, tool.name
        sdk_output = derived.fn_metadata.output_schema
        assert sdk_output is not None, tool.name
        assert tool.output_schema == compact_output(compact_output(sdk_output)), tool.name
        assert tool.fn_metadata.output_model is derived.fn_metadata.output_model, tool.name
        assert (
            tool.fn_metadata.arg_model.model_json_schema()
            == derived.fn_metadata.arg_model.model_json_schema()
        )
        assert (tool.context_kwarg, tool.is_async) == (derived.context_kwarg, derived.is_async), tool.name


def test_compaction_is_idempotent_on_every_listed_schema(settings: Settings) -> None:
    """build_server compacts the listed schemas again (hiding parameters): that pass changes nothing else."""
    server = build_server(settings)
    for tool in server._tool_manager.list_tools():
        schemas = listing.listed_schemas(tool.name)
        assert schemas is not None, tool.name
        assert compact_input(schemas.input) == schemas.input, tool.name
        assert schemas.output is not None
        assert compact_output(schemas.output) == schemas.output, tool.name


async def test_each_server_gets_schemas_of_its_own(make_settings: Callable[..., Settings]) -> None:
    token = make_settings(confirm_tier3="token")
    first = build_server(token)
    second = build_server(
        make_settings(confirm_tier3="off", audit_path=token.audit_path.with_name("second.jsonl"))
    )
    for server in (first, second):
        await server.services.aclose()
    exec_first = first._tool_manager.get_tool("shell_exec")
    exec_second = second._tool_manager.get_tool("shell_exec")
    assert exec_first is not None
    assert exec_second is not None
    assert "confirm_token" in exec_first.parameters["properties"]
    assert "confirm_token" not in exec_second.parameters["properties"]
    assert exec_first.output_schema is not exec_second.output_schema


class _Echoed(BaseModel):
    tier: int | None
    said: str


async def unlisted_echo(text: str, times: int = 1) -> Annotated[CallToolResult, _Echoed]:
    """Not in the generated file."""
    return CallToolResult(content=[], structured_content={"tier": 0, "said": text * times})


def test_a_tool_the_listing_lacks_is_derived_at_registration(settings: Settings) -> None:
    server = build_server(settings)
    assert listing.listed_schemas("unlisted_echo") is None
    server.add_tool(unlisted_echo, description="echo")
    tool = server._tool_manager.get_tool("unlisted_echo")
    assert tool is not None
    assert tool.fn_metadata.output_model is _Echoed
    properties: dict[str, Any] = tool.parameters["properties"]
    assert set(properties) == {"text", "times"}
    assert tool.output_schema is not None
    assert set(tool.output_schema["properties"]) == {"tier", "said"}


def test_derive_names_the_context_parameter_and_the_output_model(settings: Settings) -> None:
    tool = Tool.from_function(unlisted_echo, description="echo")
    derived = listing.derive(tool)
    assert derived.context is None
    assert derived.output_model == f"{__name__}:_Echoed"
    assert listing._located(derived.output_model) is _Echoed


@pytest.fixture
def listing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The generated file moved to ``tmp_path`` for one test (read afresh before and after)."""
    path = tmp_path / "listing.json"
    monkeypatch.setattr(listing, "LISTING_PATH", path)
    listing.forget_loaded()
    yield path
    listing.forget_loaded()


@pytest.mark.parametrize(
    "text",
    [
        '{"shell_exec": {"input": {"type": "object", "properties": {}}, "output": null}}',  # another layout
        "{}",  # lists nothing
    ],
)
def test_without_a_usable_entry_the_tools_are_derived_at_registration(
    make_settings: Callable[..., Settings], listing_file: Path, text: str
) -> None:
    listing_file.write_text(text, encoding="utf-8")
    server = build_server(make_settings(confirm_tier3="token"))
    shell_exec = server._tool_manager.get_tool("shell_exec")
    assert shell_exec is not None
    assert set(shell_exec.parameters["properties"]) >= {"command", "timeout", "confirm_token"}
    derived = Tool.from_function(shell_exec.fn, name="shell_exec", description=shell_exec.description)
    assert derived.fn_metadata.output_schema is not None
    assert shell_exec.output_schema == compact_output(derived.fn_metadata.output_schema)
