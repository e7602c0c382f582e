"""The documents stay true to the code.

- ``docs/tools.md`` is exactly what ``relay_shell.docs_gen`` generates from the registered
  tools now (the failure message says how to regenerate it);
- ``TIER_RULES`` covers every registered tool, names real parameters, agrees with the
  annotations, and fixed-tier tools report that tier when called;
- the documents link to files that exist, name repository paths that exist,
  ``RELAY_SHELL_*`` variables that exist and ``relay-shell`` options the CLI accepts;
- every ADR is numbered in sequence and has Context, Decision and Consequences.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
import socket
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from relay_shell.app import build_server
from relay_shell.cli import _parser
from relay_shell.config import Settings
from relay_shell.docs_gen import (
    DOC_PATH,
    REGENERATE_COMMAND,
    TIER_RULES,
    Catalog,
    TierRule,
    cell,
    collect,
    constraints_text,
    render,
    type_text,
)
from relay_shell.tools.base import hint
from tests.conftest import connected, read_audit

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [
    "README.md",
    "SECURITY.md",
    "AGENTS.md",
    "CLAUDE.md",
    "CONTRIBUTING.md",
    "docs/architecture.md",
    "docs/deployment.md",
    "docs/policy-patterns.md",
    "docs/tools.md",
    *sorted(str(path.relative_to(ROOT)) for path in (ROOT / "docs" / "adr").glob("*.md")),
]


@functools.cache
def catalog() -> Catalog:
    """The registered tools, prompts and resources (built once per test session)."""
    return anyio.run(collect)


# --- docs/tools.md ---------------------------------------------------------------------------------


def test_tools_doc_is_current() -> None:
    expected = render(catalog())
    committed_path = ROOT / DOC_PATH
    committed = committed_path.read_text(encoding="utf-8") if committed_path.is_file() else ""
    if committed != expected:
        diff = list(
            difflib.unified_diff(
                committed.splitlines(), expected.splitlines(), "committed", "generated", lineterm="", n=1
            )
        )
        shown = "\n".join(diff[:60]) + ("\n..." if len(diff) > 60 else "")
        pytest.fail(
            f"{DOC_PATH} is stale: the registered tools generate something else.\n"
            f"Regenerate it from the repository root with:\n\n    {REGENERATE_COMMAND}\n\n"
            f"and commit the result. Difference:\n{shown}",
            pytrace=False,
        )


def test_generation_is_deterministic() -> None:
    first = render(catalog())
    assert render(anyio.run(collect)) == first
    assert "\r" not in first
    assert first.endswith("\n")


def test_every_registered_tool_has_a_tier_rule_and_no_rule_is_stale() -> None:
    registered = {tool.name for tool in catalog().tools}
    missing = sorted(registered - set(TIER_RULES))
    stale = sorted(set(TIER_RULES) - registered)
    assert not missing, f"add these tools to TIER_RULES in src/relay_shell/docs_gen.py: {missing}"
    assert not stale, f"TIER_RULES names tools that are not registered: {stale}"


def test_tier_rules_are_well_formed_and_name_real_parameters() -> None:
    for tool in catalog().tools:
        rule = TIER_RULES.get(tool.name)
        if rule is None:
            continue  # reported by the coverage test above
        parameters = set(tool.input_schema.get("properties", {}))
        if rule.fixed is None:
            assert rule.classified_from, f"{tool.name}: a classified tool must name its sources"
            unknown = set(rule.classified_from) - parameters
            assert not unknown, f"{tool.name}: TIER_RULES names parameters it does not have: {unknown}"
            assert 1 <= rule.floor <= 3
        else:
            assert 0 <= rule.fixed <= 3
            assert not rule.classified_from, f"{tool.name}: a fixed tier is not classified"


def test_annotations_agree_with_the_tier_rules() -> None:
    for tool in catalog().tools:
        rule = TIER_RULES.get(tool.name)
        if rule is None:
            continue  # reported by the coverage test above
        hints = tool.annotations
        assert hints is not None, f"{tool.name} declares no annotations"
        if rule.fixed == 0:
            assert hint(hints, "read_only_hint") is True, f"{tool.name} is tier 0 but not read-only"
        if rule.fixed is None:
            assert hint(hints, "read_only_hint") is False, (
                f"{tool.name} is classified but claims to be read-only"
            )
        if rule.fixed is None and rule.floor == 1:
            assert hint(hints, "destructive_hint") is True, (
                f"{tool.name} runs text but claims not to be destructive"
            )
        if hint(hints, "read_only_hint"):
            assert rule.fixed is not None and rule.fixed <= 1, (
                f"{tool.name} is read-only but can be tier >= 2"
            )


def _callable_without_arguments() -> list[tuple[str, int]]:
    return [
        (tool.name, rule.fixed)
        for tool in catalog().tools
        if (rule := TIER_RULES.get(tool.name)) is not None
        and rule.fixed is not None
        and not tool.input_schema.get("required")
    ]


def _closed_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(("name", "tier"), _callable_without_arguments())
async def test_fixed_tier_tools_report_that_tier(
    make_settings: Callable[..., Settings], tmp_path: Path, name: str, tier: int
) -> None:
    # One inventory host on a closed loopback port, so tools that default to the whole
    # inventory have something to work on (and fail fast when they connect).
    inventory = tmp_path / "inventory.json"
    inventory.write_text(
        json.dumps({"nowhere": {"hostname": "127.0.0.1", "port": _closed_loopback_port()}}), encoding="utf-8"
    )
    settings = make_settings(inventory=inventory)
    server = build_server(settings)
    try:
        async with connected(server) as client:
            result = await client.call_tool(name, {})
    finally:
        await server.services.aclose()
    assert result.is_error is False, result
    assert result.structured_content is not None
    assert result.structured_content["tier"] == tier
    record = read_audit(settings.audit_path)[-1]
    assert (record["tool"], record["tier"]) == (name, tier)


def test_the_callable_fixed_tier_tools_include_the_diagnostics() -> None:
    names = {name for name, _ in _callable_without_arguments()}
    assert {"server_info", "audit_tail", "session_list", "ssh_hosts"} <= names


# --- the renderer -----------------------------------------------------------------------------------

TYPE_CASES: list[tuple[dict[str, Any], str]] = [
    ({"type": "string"}, "string"),
    ({"anyOf": [{"type": "integer"}, {"type": "null"}]}, "integer or null"),
    ({"type": "array", "items": {"type": "string"}}, "array of string"),
    (
        {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]},
        "array of string, or null",
    ),
    (
        {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "string or array of string",
    ),
    (
        {
            "anyOf": [
                {"type": "object", "additionalProperties": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
                {"type": "null"},
            ]
        },
        "object of (string or null), or null",
    ),
    ({"type": "array", "items": {"$ref": "#/$defs/FanoutHostRow"}}, "array of FanoutHostRow"),
    ({"type": "object"}, "object"),
    ({"type": ["string", "integer"]}, "string or integer"),
    ({"const": "x"}, '"x"'),
    ({}, "any"),
]


@pytest.mark.parametrize(("schema", "expected"), TYPE_CASES)
def test_type_text(schema: dict[str, Any], expected: str) -> None:
    assert type_text(schema) == expected


CONSTRAINT_CASES: list[tuple[dict[str, Any], str]] = [
    ({"type": "integer", "minimum": 1, "maximum": 65535}, "≥ 1, ≤ 65535"),
    ({"anyOf": [{"type": "integer", "minimum": 0, "maximum": 3}, {"type": "null"}]}, "≥ 0, ≤ 3"),
    ({"type": "string", "maxLength": 64}, "length ≤ 64"),
    ({"type": "string", "enum": ["bash", "sh"]}, "one of `bash`, `sh`"),
    ({"type": "number", "exclusiveMinimum": 0}, "> 0"),
    ({"type": "string", "pattern": "^a+$"}, "matches `^a+$`"),
    ({"type": "string"}, ""),
]


@pytest.mark.parametrize(("schema", "expected"), CONSTRAINT_CASES)
def test_constraints_text(schema: dict[str, Any], expected: str) -> None:
    assert constraints_text(schema) == expected


def test_table_cells_are_one_line_with_pipes_escaped() -> None:
    assert cell("a | b\n  c") == "a \\| b c"


def test_describe_names_the_tier_and_the_sources() -> None:
    assert TierRule(fixed=0).describe() == "fixed: 0 (READ_ONLY)"
    described = TierRule(classified_from=("command", "stdin"), targets="the host").describe()
    assert "`command`, `stdin`" in described
    assert "at least 1 (REVERSIBLE)" in described
    assert described.endswith("the deny list also reads the host")


# --- the documents ---------------------------------------------------------------------------------

_LINK = re.compile(r"\]\(([^)\s]+)\)")
_CODE = re.compile(r"`([^`\n]+)`")
_PATH_SUFFIXES = (".py", ".md", ".toml", ".tsv", ".sh", ".yml", ".service", ".conf", ".txt")
_PATH_ROOTS = (
    ROOT,
    ROOT / "src",
    ROOT / "src" / "relay_shell",
    ROOT / "docs",
    Path(sysconfig.get_paths()["purelib"]),
)
_VARIABLE = re.compile(r"RELAY_SHELL_([A-Z0-9_]+)")
_OPTION = re.compile(r"relay-shell((?: \[?--[a-z-]+\]?)+)")


def _text(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("name", DOCUMENTS)
def test_relative_links_point_to_existing_files(name: str) -> None:
    document = ROOT / name
    broken = []
    for target in _LINK.findall(_text(name)):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0]
        if not (document.parent / path).exists():
            broken.append(target)
    assert not broken, f"{name} links to missing files: {broken}"


def _looks_like_repository_path(token: str) -> bool:
    if token.startswith(("/", "~", ".")) or " " in token or "*" in token or "<" in token:
        return False
    return "/" in token and token.endswith(_PATH_SUFFIXES)


@pytest.mark.parametrize("name", DOCUMENTS)
def test_named_repository_paths_exist(name: str) -> None:
    missing = []
    for token in _CODE.findall(_text(name)):
        candidate = token.split(":", 1)[0]  # `tools/local.py:bound_notes`
        if _looks_like_repository_path(candidate) and not any(
            (root / candidate).exists() for root in _PATH_ROOTS
        ):
            missing.append(candidate)
    assert not missing, f"{name} names files that do not exist: {missing}"


def _known_variables() -> set[str]:
    names = {field.upper() for field in Settings.model_fields}
    edge = _text("deploy/install-edge.sh") + _text("deploy/Caddyfile")
    names |= set(_VARIABLE.findall(edge))
    return names


@pytest.mark.parametrize("name", DOCUMENTS)
def test_named_variables_exist(name: str) -> None:
    known = _known_variables()
    unknown = []
    for variable in _VARIABLE.findall(_text(name)):
        if variable.endswith("_"):  # a prefix such as RELAY_SHELL_EDGE_*
            if not any(known_name.startswith(variable) for known_name in known):
                unknown.append(variable)
        elif variable not in known:
            unknown.append(variable)
    assert not unknown, f"{name} names RELAY_SHELL_ variables that do not exist: {sorted(set(unknown))}"


@pytest.mark.parametrize("name", DOCUMENTS)
def test_named_command_line_options_exist(name: str) -> None:
    accepted = {option for action in _parser()._actions for option in action.option_strings}
    used = {
        option for options in _OPTION.findall(_text(name)) for option in re.findall(r"--[a-z-]+", options)
    }
    assert used <= accepted, f"{name} names options relay-shell does not accept: {sorted(used - accepted)}"


def test_adrs_are_numbered_in_sequence_with_the_usual_sections() -> None:
    adrs = sorted((ROOT / "docs" / "adr").glob("[0-9][0-9][0-9][0-9]-*.md"))
    assert adrs, "no ADRs found"
    for expected_number, path in enumerate(adrs, start=1):
        number = int(path.name[:4])
        assert number == expected_number, f"ADR numbers must be consecutive: {path.name}"
        text = path.read_text(encoding="utf-8")
        assert text.startswith(f"# ADR {number:04d}: "), (
            f"{path.name}: title must be '# ADR {number:04d}: ...'"
        )
        for section in ("## Context", "## Decision", "## Consequences"):
            assert f"\n{section}\n" in text, f"{path.name} lacks '{section}'"


def test_the_code_cites_the_projects_own_documents() -> None:
    """Docstrings and comments point at docs/ (architecture, tools, ADRs), never an outside contract."""
    citing = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "src").rglob("*.py")
        if "SPEC §" in path.read_text(encoding="utf-8")
    )
    assert citing == []
