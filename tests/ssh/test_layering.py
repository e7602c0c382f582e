"""The SSH layer knows nothing of MCP (DESIGN: ``local`` and ``ssh`` never import ``mcp``)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import relay_shell.ssh

SSH_PACKAGE = Path(relay_shell.ssh.__file__).parent
FORBIDDEN = ("mcp", "mcp_types", "relay_shell.tools", "relay_shell.governance.pipeline", "relay_shell.app")


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_ssh_module_imports_mcp_or_the_tool_layer() -> None:
    offenders = {
        path.name: sorted(name for name in _imported_modules(path) if name.startswith(FORBIDDEN))
        for path in sorted(SSH_PACKAGE.glob("*.py"))
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_importing_the_ssh_layer_loads_no_mcp_module() -> None:
    modules = [
        f"relay_shell.ssh.{path.stem}" for path in sorted(SSH_PACKAGE.glob("*.py")) if path.stem != "__init__"
    ]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "loaded = sorted(m for m in sys.modules if m == 'mcp' or m.startswith(('mcp.', 'mcp_types')))\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
