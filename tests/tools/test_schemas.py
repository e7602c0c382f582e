"""The schema compaction of ``relay_shell.tools.schemas``: smaller, and saying the same thing.

Table-driven over the shapes pydantic produces and the look-alikes the rewrite must leave
alone (a property named ``title``, ``anyOf`` branches whose keywords overlap, a recursive
definition), plus the registered tools themselves: every compacted input schema still accepts
the calls the tool accepts and refuses the ones it refuses.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable
from typing import Any, Literal

import jsonschema
import pytest
from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from relay_shell.app import build_server
from relay_shell.config import Settings
from relay_shell.docs_schema import length_limits
from relay_shell.tools.base import HINT_DEFAULTS, hint, hints
from relay_shell.tools.models import ErrorInfo
from relay_shell.tools.schemas import ALWAYS_PRESENT, compact_input, compact_output
from relay_shell.vocabulary import ErrorKind
from tests.conftest import connected

INPUT_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "titles go, a property named title stays",
        {"title": "X", "properties": {"title": {"title": "Title", "type": "string"}}},
        {"properties": {"title": {"type": "string"}}},
    ),
    (
        "a null default drops the null branch and the default",
        {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}], "default": None, "description": "d"},
        {"type": "integer", "minimum": 1, "description": "d"},
    ),
    (
        "an empty-string default is dropped",
        {"type": "string", "default": "", "pattern": "^a"},
        {"type": "string", "pattern": "^a"},
    ),
    (
        "a length limit is the server's, not advertised",
        {"type": "string", "maxLength": 4096, "minLength": 1},
        {"type": "string", "minLength": 1},
    ),
    (
        "a meaningful default stays",
        {"type": "string", "default": "bash", "enum": ["bash", "sh"]},
        {"default": "bash", "enum": ["bash", "sh"]},
    ),
    (
        "nullable without a default keeps null as a type",
        {"additionalProperties": {"anyOf": [{"type": "string"}, {"type": "null"}]}, "type": "object"},
        {"additionalProperties": {"type": ["string", "null"]}, "type": "object"},
    ),
    (
        "branches of different types merge with their own keywords",
        {"anyOf": [{"type": "string", "minLength": 5}, {"type": "array", "items": {"type": "string"}}]},
        {"type": ["string", "array"], "minLength": 5, "items": {"type": "string"}},
    ),
    (
        "integer and number both bounded do not merge (minimum would apply to both)",
        {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "number", "minimum": 0.5}]},
        {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "number", "minimum": 0.5}]},
    ),
    (
        "a branch with a keyword of another type does not merge",
        {"anyOf": [{"type": "string", "minimum": 1}, {"type": "null"}]},
        {"anyOf": [{"type": "string", "minimum": 1}, {"type": "null"}]},
    ),
    (
        "a nullable enum becomes an enum with null",
        {"anyOf": [{"enum": ["a", "b"], "type": "string"}, {"type": "null"}]},
        {"enum": ["a", "b", None]},
    ),
    (
        "number covers integer",
        {"additionalProperties": {"anyOf": [{"type": "number"}, {"type": "integer"}, {"type": "null"}]}},
        {"additionalProperties": {"type": ["number", "null"]}},
    ),
    (
        "an object open to any property says nothing more than its type",
        {"type": "object", "additionalProperties": True},
        {"type": "object"},
    ),
    (
        "boolean subschemas stay booleans",
        {"type": "object", "properties": {"never": False, "any": True}, "additionalProperties": False},
        {"type": "object", "properties": {"never": False, "any": True}, "additionalProperties": False},
    ),
    (
        "an integer enum keeps its type",
        {"type": "integer", "enum": [1, 2]},
        {"type": "integer", "enum": [1, 2]},
    ),
]


@pytest.mark.parametrize(("case", "schema", "expected"), INPUT_CASES, ids=[case[0] for case in INPUT_CASES])
def test_input_compaction(case: str, schema: dict[str, Any], expected: dict[str, Any]) -> None:
    document = {"type": "object", "properties": {"p": schema}}
    compacted = compact_input(document)
    assert compacted["properties"]["p"] == expected
    assert compact_input(compacted) == compacted  # idempotent


def test_references_are_inlined_and_recursive_ones_kept() -> None:
    document = {
        "$defs": {
            "Leaf": {
                "title": "Leaf",
                "description": "doc",
                "type": "object",
                "properties": {"n": {"type": "integer"}},
            },
            "Tree": {
                "type": "object",
                "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/Tree"}}},
            },
        },
        "type": "object",
        "properties": {
            "leaf": {"$ref": "#/$defs/Leaf", "description": "the field's own"},
            "tree": {"$ref": "#/$defs/Tree"},
        },
    }
    compacted = compact_input(document)
    assert compacted["properties"]["leaf"] == {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "description": "the field's own",
    }
    tree = compacted["properties"]["tree"]
    assert tree["properties"]["kids"]["items"] == {"$ref": "#/$defs/Tree"}
    assert set(compacted["$defs"]) == {"Tree"}
    jsonschema.validate({"tree": {"kids": [{"kids": []}]}, "leaf": {"n": 1}}, compacted)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"tree": {"kids": [{"kids": [1]}]}}, compacted)


def test_hidden_parameters_leave_the_schema_and_its_required_list() -> None:
    document = {
        "type": "object",
        "properties": {"a": {"type": "string"}, "secret": {"type": "string"}},
        "required": ["a", "secret"],
    }
    compacted = compact_input(document, hidden=("secret",))
    assert list(compacted["properties"]) == ["a"]
    assert compacted["required"] == ["a"]


class _Row(BaseModel):
    name: str
    note: str | None = None


class _Result(BaseModel):
    tier: int | None = Field(description="always")
    error: dict[str, str] | SkipJsonSchema[None] = Field(default=None, description="on failure")
    rows: list[_Row] = Field(description="listed")
    state: Literal["open", "closed"]
    extra: int | SkipJsonSchema[None] = None


def test_output_required_says_what_every_result_carries() -> None:
    schema = compact_output(_Result.model_json_schema())
    assert ALWAYS_PRESENT == ("tier",)
    assert schema["required"] == ["tier"]
    assert schema["anyOf"] == [{"required": ["rows", "state"]}, {"required": ["error"]}]
    assert "$defs" not in schema and "description" not in json.dumps(schema)
    assert schema["properties"]["state"] == {"enum": ["open", "closed"]}
    assert schema["properties"]["extra"] == {"type": "integer"}  # absent where it does not apply, never null
    assert schema["properties"]["rows"]["items"]["required"] == ["name"]
    jsonschema.validate({"tier": 1, "rows": [{"name": "a", "note": None}], "state": "open"}, schema)
    jsonschema.validate({"tier": None, "error": {"kind": "invalid"}}, schema)
    for hollow in ({}, {"tier": 1}, {"tier": 1, "rows": []}, {"rows": [], "state": "open"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(hollow, schema)


def test_the_error_is_named_by_the_failure_branch_and_described_once() -> None:
    """No schema declares the error object (it is the same in every tool): the failure branch names
    it, the open schema admits every error the model allows, and docs/tools.md describes it."""
    schema = compact_output(_Result.model_json_schema())
    assert "error" not in schema["properties"]
    assert schema["anyOf"][-1] == {"required": ["error"]}
    assert "additionalProperties" not in schema  # open: an error result validates with every client
    every_field = {
        "kind": "denied", "message": "m", "tier": 3, "reason": "r", "rule": "deny", "mode": "guarded",
        "subcommand": "rm -rf /", "opaque": False, "argument": "command", "confirm_token": "t",
    }  # fmt: skip
    assert set(every_field) == set(ErrorInfo.model_fields)
    for kind in ErrorKind:
        jsonschema.validate({"tier": None, "error": {**every_field, "kind": kind.value}}, schema)
    with pytest.raises(jsonschema.ValidationError):  # a failure still carries its tier
        jsonschema.validate({"error": every_field}, schema)
    with pytest.raises(jsonschema.ValidationError):  # and a success every success field
        jsonschema.validate({"tier": 1, "rows": []}, schema)


@pytest.mark.parametrize("stated", list(itertools.product([False, True], repeat=4)))
def test_hints_send_only_what_differs_from_the_protocol_defaults(stated: tuple[bool, ...]) -> None:
    names = ("read_only_hint", "destructive_hint", "idempotent_hint", "open_world_hint")
    read_only, destructive, idempotent, open_world = stated
    annotations = hints(
        read_only=read_only, destructive=destructive, idempotent=idempotent, open_world=open_world
    )
    sent = annotations.model_dump(exclude_none=True)
    assert sent == {
        name: value for name, value in zip(names, stated, strict=True) if value != HINT_DEFAULTS[name]
    }
    assert [hint(annotations, name) for name in names] == list(stated)


def test_no_tool_sends_a_default_hint(tools: list[Any]) -> None:
    for tool in tools:
        sent = tool.annotations.model_dump(exclude_none=True)
        assert all(value != HINT_DEFAULTS[name] for name, value in sent.items()), tool.name


@pytest.fixture
def tools(make_settings: Callable[..., Settings]) -> list[Any]:
    server = build_server(make_settings(confirm_tier3="token"))
    return list(server._tool_manager.list_tools())


def test_every_compacted_input_schema_agrees_with_the_tool(tools: list[Any]) -> None:
    """Calls the tool's own argument model accepts pass the schema; refused ones fail it."""
    checked = 0
    for tool in tools:
        schema = tool.parameters
        assert "title" not in _keywords(schema), tool.name
        jsonschema.Draft202012Validator.check_schema(schema)
        minimal = {name: _sample(schema["properties"][name]) for name in schema.get("required", [])}
        tool.fn_metadata.arg_model.model_validate(minimal)
        jsonschema.validate(minimal, schema)
        for name, property_schema in schema["properties"].items():
            for value in _bad_values(property_schema):
                with pytest.raises(jsonschema.ValidationError):
                    jsonschema.validate({**minimal, name: value}, schema)
                with pytest.raises(ValueError):
                    tool.fn_metadata.arg_model.model_validate({**minimal, name: value})
                checked += 1
    assert checked > 50


async def test_length_limits_are_enforced_though_not_advertised(
    tools: list[Any], make_settings: Callable[..., Settings]
) -> None:
    """No advertised schema carries ``maxLength``; every limit an argument model declares still refuses."""
    enforced = 0
    for tool in tools:
        schema = tool.parameters
        assert "maxLength" not in _keywords(schema), tool.name
        minimal = {name: _sample(schema["properties"][name]) for name in schema.get("required", [])}
        for name, limit in length_limits(tool.fn_metadata.arg_model).items():
            tool.fn_metadata.arg_model.model_validate({**minimal, name: "x" * min(limit, 64)})
            with pytest.raises(ValueError):
                tool.fn_metadata.arg_model.model_validate({**minimal, name: "x" * (limit + 1)})
            enforced += 1
    assert enforced > 40
    first = make_settings()  # the ``tools`` server still holds this audit file (one writer per file)
    server = build_server(make_settings(audit_path=first.audit_path.with_name("second.jsonl")))
    try:
        async with connected(server) as client:
            refused = await client.call_tool("shell_exec", {"command": "true", "cwd": "/" * 4097})
    finally:
        await server.services.aclose()
    assert refused.is_error is True
    assert refused.structured_content["error"]["kind"] == "invalid"
    assert refused.structured_content["error"]["argument"] == "cwd"


def _keywords(schema: object) -> set[str]:
    """Every keyword used anywhere in ``schema`` (property names are not keywords)."""
    if isinstance(schema, list):
        return set().union(*(_keywords(item) for item in schema)) if schema else set()
    if not isinstance(schema, dict):
        return set()
    found = set(schema)
    for key, value in schema.items():
        if key in ("properties", "$defs"):
            found |= set().union(*(_keywords(sub) for sub in value.values())) if value else set()
        elif key not in ("enum", "const", "default", "required"):
            found |= _keywords(value)
    return found


def _sample(schema: dict[str, Any]) -> object:
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    if "enum" in schema:
        return schema["enum"][0]
    if "string" in kinds:
        return "x"
    if "integer" in kinds:
        return max(1, schema.get("minimum", 1))
    if "number" in kinds:
        return 1.5
    if "boolean" in kinds:
        return True
    return {}


def _bad_values(schema: dict[str, Any]) -> list[object]:
    """Values of the wrong type, or past a bound, that schema and model must both refuse."""
    kind = schema.get("type")
    kinds = set(kind if isinstance(kind, list) else [kind])
    bad: list[object] = []
    if kinds == {"boolean"}:
        bad.append({"a": 1})
    if kinds and kinds <= {"integer", "number"}:
        bad.append("not a number")
        if "maximum" in schema:
            bad.append(schema["maximum"] + 1)
    if "string" in kinds and "maxLength" in schema and schema["maxLength"] <= 100_000:
        bad.append("x" * (schema["maxLength"] + 1))
    return [copy.deepcopy(value) for value in bad]


@pytest.mark.parametrize("mode", ["off", "elicit", "token"])
async def test_confirm_token_is_listed_only_where_it_means_something(
    make_settings: Callable[..., Settings], mode: str
) -> None:
    server = build_server(make_settings(confirm_tier3=mode))
    try:
        async with connected(server) as client:
            listed = {tool.name: tool.input_schema for tool in (await client.list_tools()).tools}
            sent = await client.call_tool("shell_exec", {"command": "true", "confirm_token": "abc"})
    finally:
        await server.services.aclose()
    takes_token = {name for name, schema in listed.items() if "confirm_token" in schema["properties"]}
    if mode == "token":
        assert {"shell_exec", "ssh_exec", "ssh_upload", "session_send"} <= takes_token
        assert sent.is_error is False  # accepted (a tier-1 call needs no confirmation)
    else:
        assert takes_token == set()
        assert sent.structured_content["error"] == {
            "kind": "invalid",
            "message": sent.structured_content["error"]["message"],
            "argument": "confirm_token",
        }
