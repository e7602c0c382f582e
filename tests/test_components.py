"""A missing component fails the test that needs it, naming what to install (never a skip)."""

from __future__ import annotations

import pytest

from tests.components import need, require_node


def test_a_missing_program_fails_naming_its_package() -> None:
    with pytest.raises(pytest.fail.Exception) as failed:
        need("relay-shell-no-such-tool", "relay-shell-no-such-package")
    assert "apt-get install relay-shell-no-such-package" in str(failed.value)
    assert "scripts/check installs it" in str(failed.value)


def test_a_missing_node_package_fails_naming_npm_ci() -> None:
    with pytest.raises(pytest.fail.Exception) as failed:
        require_node("@modelcontextprotocol/relay-shell-no-such-package")
    assert "node_modules/{@modelcontextprotocol/relay-shell-no-such-package}" in str(failed.value)
    assert "npm ci" in str(failed.value)


def test_installed_components_pass() -> None:
    assert need("sh", "dash").endswith("/sh")
    assert require_node("@modelcontextprotocol/sdk").name == "node"
