"""Imports point one way: tools -> governance, local, ssh, sessions -> errors, config, models."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "relay_shell"

# module prefix -> imports it must never make
FORBIDDEN = {
    "relay_shell.governance": (
        "relay_shell.local",
        "relay_shell.ssh",
        "relay_shell.tools",
        "relay_shell.sessions",
        "relay_shell.http",
    ),
    "relay_shell.local": (
        "mcp",
        "relay_shell.tools",
        "relay_shell.ssh",
        "relay_shell.http",
        "relay_shell.governance.pipeline",
    ),
    "relay_shell.ssh": (
        "mcp",
        "relay_shell.tools",
        "relay_shell.local",
        "relay_shell.http",
        "relay_shell.governance.pipeline",
    ),
    "relay_shell.sessions": (
        "mcp",
        "relay_shell.tools",
        "relay_shell.http",
        "relay_shell.governance.pipeline",
    ),
    "relay_shell.errors": ("relay_shell.",),
    "relay_shell.config": (
        "relay_shell.governance",
        "relay_shell.tools",
        "relay_shell.local",
        "relay_shell.ssh",
    ),
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
            for imported in imports_of(path):
                for bad in forbidden:
                    hit = imported == bad.rstrip(".") or imported.startswith(
                        bad if bad.endswith(".") else bad + "."
                    )
                    assert not hit, f"{name} imports {imported}, which {prefix} must not depend on"


POLICY_MAY_IMPORT = (
    "relay_shell.policy",
    "relay_shell.errors",
    "relay_shell.config",
    "tree_sitter",
    "tree_sitter_bash",
)


@pytest.mark.parametrize("path", sorted((PACKAGE / "policy").rglob("*.py")), ids=module_name)
def test_policy_package_is_pure(path: Path) -> None:
    """The classifier imports only the standard library, tree-sitter, errors and config."""
    import sys

    for imported in imports_of(path):
        top = imported.split(".")[0]
        if top in sys.stdlib_module_names or top == "__future__":
            continue
        assert any(
            imported == allowed or imported.startswith(allowed + ".") for allowed in POLICY_MAY_IMPORT
        ), f"{module_name(path)} imports {imported}; the policy package stays pure"


def test_no_module_is_huge() -> None:
    oversized = {module_name(p): n for p in MODULES if (n := len(p.read_text().splitlines())) > 800}
    assert oversized == {}, f"split these modules (over 800 lines): {oversized}"
