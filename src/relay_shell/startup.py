"""What the server says on stderr once it serves: one start-up line, and a warning when exposed.

The line tells an operator (or a client's log) that the server is ready and what it runs
with::

    relay-shell 0.4.0 serving stdio policy=open audit=/root/.local/state/relay-shell/audit.jsonl
    relay-shell 0.4.0 serving http://127.0.0.1:8080/mcp policy=guarded audit=... containment=cgroup anchor=journald

``containment=`` and ``anchor=`` appear when the services report the mechanism in effect
(``Services.facts()``). Over stdio nothing of this goes to stdout, the JSON-RPC channel.

HTTP without OAuth on an address other than loopback lets anyone who reaches the port run
commands as this service account: :func:`exposure_warning` says so at start and in
``--check-config``.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Mapping
from typing import TextIO

import relay_shell
from relay_shell.config import Settings, Transport

FACTS = ("containment", "anchor")
"""The mechanisms the start-up line names, in this order, when the services report them."""


def is_loopback_host(host: str) -> bool:
    """True when ``host`` only binds loopback: ``127.0.0.0/8``, ``::1``, ``localhost`` names.

    Anything else (``0.0.0.0``, ``::``, a routable address, a host name that could resolve
    elsewhere) counts as exposed.
    """
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def http_url(settings: Settings) -> str:
    """``http://HOST:PORT/mcp`` for the bind address (an IPv6 address in brackets)."""
    host = settings.http_host.strip()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.http_port}/mcp"


def endpoint(settings: Settings) -> str:
    """What is served: ``stdio`` or the HTTP URL of the MCP endpoint."""
    return http_url(settings) if settings.transport is Transport.HTTP else "stdio"


def serving_line(settings: Settings, facts: Mapping[str, str] | None = None) -> str:
    """The start-up line (see the module docstring); ``facts`` is ``Services.facts()``."""
    parts = [
        f"relay-shell {relay_shell.__version__} serving {endpoint(settings)}",
        f"policy={settings.policy_mode.value}",
        f"audit={settings.expand(settings.audit_path)}",
    ]
    for label in FACTS:
        text = (facts or {}).get(label)
        if text:
            parts.append(f"{label}={text}")
    return " ".join(parts)


def exposure_warning(settings: Settings) -> str | None:
    """The warning for HTTP without OAuth on a non-loopback bind, else ``None``."""
    if settings.transport is not Transport.HTTP or settings.auth_enabled:
        return None
    if is_loopback_host(settings.http_host):
        return None
    return (
        f"HTTP on {settings.http_host}:{settings.http_port} without OAuth "
        "(RELAY_SHELL_AUTH_ENABLED=false): anyone who reaches this port runs commands as this "
        "account; bind 127.0.0.1 behind the TLS edge, or enable OAuth"
    )


def announce(
    settings: Settings, facts: Mapping[str, str] | None = None, stream: TextIO | None = None
) -> None:
    """Write the start-up line (and the exposure warning, if any) to stderr, flushed."""
    out = stream or sys.stderr
    print(serving_line(settings, facts), file=out)
    warning = exposure_warning(settings)
    if warning is not None:
        print(f"relay-shell: WARNING {warning}", file=out)
    out.flush()
