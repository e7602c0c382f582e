"""Imports point one way: app -> tools -> services -> governance, local, ssh, sessions -> errors,
config, vocabulary. No cycle between the app and the tools; the executors know no governance."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "relay_shell"

# module prefix -> imports it must never make
FORBIDDEN = {
    "relay_shell.governance": (
        "mcp",
        "mcp_types",
        "relay_shell.local",
        "relay_shell.ssh",
        "relay_shell.tools",
        "relay_shell.sessions",
        "relay_shell.http",
        "relay_shell.services",
        "relay_shell.app",
    ),
    "relay_shell.local": (
        "mcp",
        "relay_shell.tools",
        "relay_shell.ssh",
        "relay_shell.http",
        "relay_shell.governance",
        "relay_shell.services",
        "relay_shell.app",
    ),
    "relay_shell.ssh": (
        "mcp",
        "relay_shell.tools",
        "relay_shell.local",
        "relay_shell.http",
        "relay_shell.governance",
        "relay_shell.services",
        "relay_shell.app",
    ),
    "relay_shell.sessions": (
        "mcp",
        "relay_shell.tools",
        "relay_shell.http",
        "relay_shell.governance",
        "relay_shell.services",
        "relay_shell.app",
    ),
    "relay_shell.capture": ("relay_shell.governance", "relay_shell.tools", "relay_shell.services"),
    "relay_shell.report": ("relay_shell.governance", "relay_shell.tools", "relay_shell.services"),
    "relay_shell.services": ("mcp", "mcp_types", "relay_shell.tools", "relay_shell.app", "relay_shell.http"),
    "relay_shell.tools": ("relay_shell.app", "relay_shell.cli", "relay_shell.http.serve"),
    "relay_shell.errors": ("relay_shell.",),
    "relay_shell.vocabulary": ("relay_shell.",),
    "relay_shell.config": (
        "relay_shell.governance",
        "relay_shell.tools",
        "relay_shell.local",
        "relay_shell.ssh",
    ),
}

# module -> imports it may make although its prefix forbids them
ALLOWED = {
    "relay_shell.errors": ("relay_shell.vocabulary",),
}


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_imports_point_one_way(path: Path) -> None:
    name = module_name(path)
    for prefix, forbidden in FORBIDDEN.items():
        if name == prefix or name.startswith(prefix + "."):
            for imported in imports_of(path) - set(ALLOWED.get(name, ())):
                for bad in forbidden:
                    hit = imported == bad.rstrip(".") or imported.startswith(
                        bad if bad.endswith(".") else bad + "."
                    )
                    assert not hit, f"{name} imports {imported}, which {prefix} must not depend on"


def test_the_tools_never_import_the_app() -> None:
    """app.py builds the server from the tools; a tool importing app.py would close a cycle."""
    offenders = {
        module_name(path): sorted(found)
        for path in MODULES
        if module_name(path).startswith("relay_shell.tools")
        and (found := {name for name in imports_of(path) if name == "relay_shell.app"})
    }
    assert offenders == {}


def test_the_forbidden_table_catches_a_cycle(tmp_path: Path) -> None:
    """The check above reads real imports: a tool module importing the app is caught."""
    module = tmp_path / "tool.py"
    module.write_text("from relay_shell.app import RelayServer\nimport relay_shell.app\n", encoding="utf-8")
    assert imports_of(module) == {"relay_shell.app"}


def test_no_module_is_huge() -> None:
    oversized = {module_name(p): n for p in MODULES if (n := len(p.read_text().splitlines())) > 800}
    assert oversized == {}, f"split these modules (over 800 lines): {oversized}"
