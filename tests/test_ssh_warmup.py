"""The SSH layer is loaded ahead of use, after the handshake, only when SSH hosts are configured."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mcp.server.context import HandlerResult

from relay_shell.app import WarmSshAfterHandshake, build_server
from relay_shell.config import Settings
from relay_shell.services import SSH_LAYER
from tests.conftest import connected


def inventory_file(tmp_path: Path) -> Path:
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps({"web1": {"hostname": "127.0.0.1", "port": 1, "user": "nobody"}}))
    return path


async def test_with_hosts_configured_the_ssh_layer_loads_after_the_handshake(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    server = build_server(make_settings(inventory=inventory_file(tmp_path)))
    await server.services.start()
    try:
        assert server.services.pool.preloading is None  # nothing before a client speaks
        async with connected(server) as client:
            result = await client.call_tool("shell_exec", {"command": "echo local"})
            assert not result.is_error
            assert result.structured_content is not None
            assert result.structured_content["output"] == "local\n"
            preload = server.services.pool.preloading
            assert preload is not None
            await asyncio.wait_for(preload, 60)
            assert preload.exception() is None
        assert all(name in sys.modules for name in SSH_LAYER)
        assert server.services.pool.connections() == 0  # loaded, nothing dialled
        assert server.services.pool.preload() is None  # once per server
    finally:
        await server.services.aclose()


async def test_without_hosts_nothing_is_loaded_ahead(make_settings: Callable[..., Settings]) -> None:
    server = build_server(make_settings())
    await server.services.start()
    try:
        assert server.services.inventory_size() == 0
        async with connected(server) as client:
            result = await client.call_tool("shell_exec", {"command": "true"})
            assert not result.is_error
        assert server.services.pool.preloading is None
        assert server.services.warm_ssh() is False
    finally:
        await server.services.aclose()


async def test_the_handshake_itself_never_starts_the_load(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    server = build_server(make_settings(inventory=inventory_file(tmp_path)))
    middleware = WarmSshAfterHandshake(server.services)
    seen: list[str] = []

    async def call_next(ctx: Any) -> HandlerResult:
        seen.append(ctx.method)
        return {}

    await server.services.start()
    try:
        for method in ("initialize", "server/discover"):
            await middleware(SimpleNamespace(method=method), call_next)  # type: ignore[arg-type]
            assert server.services.pool.preloading is None
        await middleware(SimpleNamespace(method="notifications/initialized"), call_next)  # type: ignore[arg-type]
        first = server.services.pool.preloading
        assert first is not None
        await middleware(SimpleNamespace(method="tools/list"), call_next)  # type: ignore[arg-type]
        assert server.services.pool.preloading is first
        assert seen == ["initialize", "server/discover", "notifications/initialized", "tools/list"]
        await asyncio.wait_for(first, 60)
    finally:
        await server.services.aclose()


async def test_closing_while_the_load_runs_does_not_wait_for_it(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    server = build_server(make_settings(inventory=inventory_file(tmp_path)))
    await server.services.start()
    assert server.services.warm_ssh() is True
    preload = server.services.pool.preloading
    assert preload is not None
    await server.services.aclose()
    assert preload.done()
    assert server.services.warm_ssh() is False  # closed: nothing starts any more
