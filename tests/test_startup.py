"""The start-up line and the exposure warning, from the settings and the services' published facts."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest

import relay_shell
from relay_shell.config import Settings
from relay_shell.startup import (
    announce,
    exposure_warning,
    http_url,
    is_loopback_host,
    serving_line,
)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("api.localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("[::]", False),
        ("10.1.2.3", False),
        ("192.168.0.10", False),
        ("fe80::1%eth0", False),
        ("relay.example.com", False),
        ("localhost.example.com", False),
        ("127.0.0.1.nip.io", False),
        ("", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_http_url_brackets_ipv6(make_settings: Callable[..., Settings]) -> None:
    assert http_url(make_settings(http_host="::1", http_port=9001)) == "http://[::1]:9001/mcp"
    assert http_url(make_settings(http_host="127.0.0.1")) == "http://127.0.0.1:8080/mcp"


def test_serving_line_reports_mode_audit_and_published_mechanisms(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(policy_mode="guarded")
    line = serving_line(settings, {"containment": "cgroup", "anchor": "journald"})
    assert line == (
        f"relay-shell {relay_shell.__version__} serving stdio policy=guarded "
        f"audit={settings.audit_path} containment=cgroup anchor=journald"
    )


@pytest.mark.parametrize("facts", [None, {}, {"containment": "", "anchor": ""}, {"other": "x"}])
def test_mechanisms_not_published_are_left_out(
    make_settings: Callable[..., Settings], facts: dict[str, str] | None
) -> None:
    settings = make_settings(transport="http", http_port=8123)
    assert serving_line(settings, facts) == (
        f"relay-shell {relay_shell.__version__} serving http://127.0.0.1:8123/mcp policy=open "
        f"audit={settings.audit_path}"
    )


@pytest.mark.parametrize(
    ("overrides", "warns"),
    [
        ({"transport": "http", "http_host": "0.0.0.0"}, True),
        ({"transport": "http", "http_host": "10.0.0.5"}, True),
        ({"transport": "http", "http_host": "relay.example.com"}, True),
        ({"transport": "http", "http_host": "0.0.0.0", "auth_enabled": True}, False),
        ({"transport": "http", "http_host": "127.0.0.1"}, False),
        ({"transport": "stdio", "http_host": "0.0.0.0"}, False),
    ],
)
def test_exposure_warning_only_for_http_without_oauth_off_loopback(
    make_settings: Callable[..., Settings], overrides: dict[str, object], warns: bool
) -> None:
    settings = make_settings(**overrides)
    warning = exposure_warning(settings)
    assert (warning is not None) is warns
    if warning is not None:
        assert f"{settings.http_host}:{settings.http_port}" in warning
        assert "RELAY_SHELL_AUTH_ENABLED" in warning


def test_announce_writes_the_line_then_the_warning(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(transport="http", http_host="0.0.0.0", http_port=8124)
    stream = io.StringIO()
    announce(settings, {}, stream)
    line, warning = stream.getvalue().splitlines()
    assert line == serving_line(settings, {})
    assert warning == f"relay-shell: WARNING {exposure_warning(settings)}"
