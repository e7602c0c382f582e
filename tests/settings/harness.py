"""What a probe of the settings table gets: the settings loaded from the environment, and ways
to observe a server built from them (an in-process MCP client, the HTTP app over ASGI, the real
``relay-shell`` command, the peers of the SSH rows).

A row's value reaches the server the way an operator's does: ``RELAY_SHELL_*`` variables in the
environment, read by :func:`load_settings`, never keyword overrides.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client

from relay_shell.app import RelayServer, build_server
from relay_shell.config import Settings
from tests.audit_peers import Journald, Rsyslog
from tests.conftest import connected, initialize_message, read_audit, started
from tests.sshd import ClientKey, SshdInstance

RELAY = str(Path(sys.executable).parent / "relay-shell")
START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 20.0
BASE_URL = "http://127.0.0.1:8080"
SERVING = re.compile(r"relay-shell \S+ serving (\S+) .*")
INITIALIZE = initialize_message("2025-11-25")
MCP_HEADERS = {"accept": "application/json, text/event-stream"}


def base_env(tmp: Path) -> dict[str, str]:
    """State of every row under ``tmp`` (a row may override any of these)."""
    return {
        "RELAY_SHELL_AUDIT_PATH": str(tmp / "audit" / "audit.jsonl"),
        "RELAY_SHELL_SSH_CONFIG": str(tmp / "ssh_config"),
        "RELAY_SHELL_SSH_KNOWN_HOSTS_FILE": str(tmp / "known_hosts"),
        "RELAY_SHELL_AUTH_STATE_DIR": str(tmp / "oauth"),
        "RELAY_SHELL_AUDIT_ANCHOR": "off",  # a row sets it; a journald someone else runs must not answer
    }


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


@dataclass
class Peers:
    """Real peers some rows need, created once per module by the test (``None`` when not asked for)."""

    sshd: SshdInstance | None = None
    key: ClientKey | None = None
    jwks_url: str | None = None
    signers: Mapping[str, Any] = field(default_factory=dict)
    black_hole_port: int | None = None
    journal: Journald | None = None
    collector: Rsyslog | None = None
    tls_collector: Rsyslog | None = None


@dataclass
class Harness:
    """One row's run: its temp dir, the ``RELAY_SHELL_*`` environment, the loaded settings."""

    tmp: Path
    env: dict[str, str]
    settings: Settings
    peers: Peers
    capfd: pytest.CaptureFixture[str]
    values: dict[str, str]

    # -- in process -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def server(self) -> AsyncIterator[RelayServer]:
        """The server these settings build, started, torn down afterwards."""
        async with started(build_server(self.settings)) as server:
            yield server

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[Client]:
        async with self.server() as server, connected(server) as client:
            yield client

    async def call(self, client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """The structured content of one tool call, with ``is_error`` added."""
        result = await client.call_tool(tool, arguments)
        assert result.structured_content is not None, result
        return {**result.structured_content, "is_error": result.is_error}

    async def one_call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        async with self.client() as client:
            return await self.call(client, tool, arguments)

    def audit(self) -> list[dict[str, Any]]:
        return read_audit(Path(self.env["RELAY_SHELL_AUDIT_PATH"]))

    # -- HTTP, in process -----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def http(self) -> AsyncIterator[tuple[httpx2.AsyncClient, RelayServer]]:
        """The HTTP app these settings build, its lifespan running, and a client talking ASGI to it."""
        from relay_shell.http.serve import build_http_stack

        server, app = build_http_stack(self.settings)
        async with app.router.lifespan_context(app):
            await server.services.start()
            try:
                transport = httpx2.ASGITransport(app=app)
                async with httpx2.AsyncClient(transport=transport, base_url=BASE_URL) as http:
                    yield http, server
            finally:
                await server.services.aclose()

    # -- the real command -----------------------------------------------------------------

    @contextlib.contextmanager
    def command(self) -> Iterator[tuple[subprocess.Popen[bytes], str | None]]:
        """``relay-shell`` with this environment; yields it and what its start-up line says it serves.

        ``None`` when it exited before serving. The process is stopped with SIGTERM afterwards.
        """
        log_path = self.tmp / "relay.log"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.tmp), **self.env}
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [RELAY], env=env, cwd=self.tmp, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        try:
            yield process, wait_for_serving(process, log_path)
        finally:
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for_serving(process: subprocess.Popen[bytes], log_path: Path) -> str | None:
    """What the start-up line says is served, or ``None`` once the process has exited without one."""
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        exited = process.poll() is not None
        for line in log_path.read_text(errors="replace").splitlines():
            match = SERVING.fullmatch(line)
            if match:
                return match.group(1)
        if exited:
            return None
        time.sleep(0.05)
    raise AssertionError(f"relay-shell did not start within {START_DEADLINE_S} s:\n{log_path.read_text()}")


async def poll_until(condition: Callable[[], Awaitable[bool]], deadline_s: float, what: str) -> None:
    """Await ``condition`` until it is true; fail naming ``what`` after ``deadline_s`` seconds."""
    import asyncio

    deadline = time.monotonic() + deadline_s
    while not await condition():
        assert time.monotonic() < deadline, f"{what}: not within {deadline_s} s"
        await asyncio.sleep(0.05)
