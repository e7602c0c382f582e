"""Shared fixtures: settings in a temp dir, an in-process MCP client, process-group checks."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken

from relay_shell.app import RelayServer, build_server
from relay_shell.config import Settings, load_settings
from tests import tool_metadata
from tests.components import need, require_sshd
from tests.netutil import start_echo_server
from tests.sshd import user_directory

tool_metadata.install()  # tool signatures are derived once per test process, not once per server

# Tests must not pick up a developer's .env or RELAY_SHELL_* variables.
for _name in [name for name in os.environ if name.upper().startswith("RELAY_SHELL_")]:
    del os.environ[_name]


@pytest.fixture(scope="session")
def sshd_installed() -> None:
    """Fails every test that uses it when OpenSSH's sshd is missing (session scope: checked first)."""
    require_sshd()


@pytest.fixture(scope="session")
def git_installed() -> None:
    """Fails every test that uses it when git is missing."""
    need("git", "git")


@pytest.fixture
def make_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
    """Settings with the audit log, known_hosts and OAuth state under ``tmp_path``."""
    monkeypatch.chdir(tmp_path)  # no stray .env

    def factory(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "audit_path": tmp_path / "audit" / "audit.jsonl",
            "ssh_config": tmp_path / "ssh_config",
            "ssh_known_hosts_file": tmp_path / "known_hosts",
            "auth_state_dir": tmp_path / "oauth",
            # hermetic: a journald another test starts must not become these servers' anchor
            "audit_anchor": "off",
        }
        base.update(overrides)
        return load_settings(**base)

    return factory


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


def initialize_message(protocol: str = "2025-11-25") -> dict[str, Any]:
    """The ``initialize`` request (id 1) a raw JSON-RPC client sends first."""
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": protocol,
            "capabilities": {},
            "clientInfo": {"name": "relay-tests", "version": "1"},
        },
    }


def initialize_line(protocol: str = "2025-06-18") -> bytes:
    """:func:`initialize_message` as one stdio line."""
    return (json.dumps(initialize_message(protocol)) + "\n").encode()


@asynccontextmanager
async def started(server: RelayServer) -> AsyncIterator[RelayServer]:
    """``server`` with its services started, and closed (sessions, jobs, audit) at the end."""
    await server.services.start()
    try:
        yield server
    finally:
        await server.services.aclose()


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[RelayServer]:
    async with started(build_server(settings)) as srv:
        yield srv


def sc(result: Any) -> dict[str, Any]:
    """A tool result's structured content (asserted present), as a plain dict."""
    assert result.structured_content is not None
    return dict(result.structured_content)


def ok(result: Any) -> dict[str, Any]:
    """The structured content of a tool result that must have succeeded (its text shown if not)."""
    assert result.is_error is False, result.content[0].text
    return sc(result)


@asynccontextmanager
async def connected(target: Any, **kwargs: Any) -> AsyncIterator[Client]:
    """An MCP client whose context is entered and exited in one task of its own.

    pytest-asyncio runs a fixture's setup and teardown in different tasks, which anyio's
    cancel scopes inside the client refuse; an owner task keeps them in one task.
    """
    ready = asyncio.Event()
    release = asyncio.Event()
    holder: dict[str, Client] = {}
    failure: list[BaseException] = []

    async def owner() -> None:
        try:
            async with Client(target, **kwargs) as client:
                holder["client"] = client
                ready.set()
                await release.wait()
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            raise

    task = asyncio.create_task(owner())
    await ready.wait()
    if failure:
        await task
    try:
        yield holder["client"]
    finally:
        release.set()
        await task


@pytest.fixture
async def client(server: RelayServer) -> AsyncIterator[Client]:
    async with connected(server) as connected_client:
        yield connected_client


def read_trail(path: Path) -> list[dict[str, Any]]:
    """Every record of a jsonl audit file: headers, start and end records, sink events."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_audit(path: Path) -> list[dict[str, Any]]:
    """One record per call or event, the one with its outcome: the ``phase: end`` record of a
    call above tier 0, the only record of the others (start records and the sink's own
    header, tamper and recovery records left out)."""
    return [
        record
        for record in read_trail(path)
        if record.get("kind") not in SINK_KINDS and record.get("phase") != "start"
    ]


SINK_KINDS = frozenset({"header", "tamper", "recovery"})
"""Records the audit sink writes about itself (events such as ``session_end`` are the server's)."""


def live_group_members(pgid: int) -> list[int]:
    """PIDs of non-zombie processes in process group ``pgid`` (zombies are already dead).

    PID 1 in some containers does not reap orphans, so zombies can linger: they hold no
    resources and cannot run, so they do not count as survivors.
    """
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def live_command_lines() -> Iterator[tuple[int, str]]:
    """``(pid, command line)`` of every live (non-zombie) process, from one read of /proc."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\x00", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat[stat.rfind(")") + 2] not in ("Z", "X"):
            yield int(entry.name), cmdline


def pids_with_marker(marker: str) -> list[int]:
    """Live (non-zombie) processes other than this one whose command line contains ``marker``."""
    me = os.getpid()
    return [pid for pid, cmdline in live_command_lines() if marker in cmdline and pid != me]


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    """A TCP echo server on loopback, closed after the test."""
    server, port = await start_echo_server()
    yield port
    server.close()
    await server.wait_closed()


@pytest.fixture
def remote_dir() -> Iterator[Path]:
    """A directory the SSH test user owns, removed afterwards (see ``tests/sshd.py``)."""
    directory = user_directory("relay-remote-")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_hashes(root: Path) -> dict[str, str]:
    """Every file under ``root`` (relative path) with its SHA-256."""
    return {
        str(path.relative_to(root)): sha256_of(path) for path in sorted(root.rglob("*")) if path.is_file()
    }


@contextmanager
def principal(subject: str, scope: str) -> Iterator[None]:
    """Calls from clients connected inside this block come from ``subject`` with ``scope``."""
    token = AccessToken(token=f"t-{subject}", client_id=f"client-{subject}", scopes=[scope], subject=subject)
    reset = auth_context_var.set(AuthenticatedUser(token))
    try:
        yield
    finally:
        auth_context_var.reset(reset)
