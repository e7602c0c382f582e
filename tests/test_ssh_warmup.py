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

from relay_shell.app import RelayServer, WarmSshWhenQuiet, build_server
from relay_shell.config import Settings
from relay_shell.services import SSH_LAYER
from tests.conftest import connected


def inventory_file(tmp_path: Path) -> Path:
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps({"web1": {"hostname": "127.0.0.1", "port": 1, "user": "nobody"}}))
    return path


async def started_preload(server: RelayServer) -> asyncio.Task[None]:
    """The server's SSH preload, once the quiet period after the last message has passed."""
    deadline = asyncio.get_running_loop().time() + 30
    while (preload := server.services.pool.preloading) is None:
        assert asyncio.get_running_loop().time() < deadline, "the load never started"
        await asyncio.sleep(0.01)
    return preload


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
            preload = await started_preload(server)
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
        middleware = WarmSshWhenQuiet(server.services, quiet_s=0.01)

        async def quick(ctx: Any) -> HandlerResult:
            return {}

        await middleware(SimpleNamespace(method="initialize"), quick)  # type: ignore[arg-type]
        assert not middleware.armed  # no quiet period is even timed
        async with connected(server) as client:
            result = await client.call_tool("shell_exec", {"command": "true"})
            assert not result.is_error
            assert server.services.warm_ssh() is False  # what the quiet period calls: nothing to load
    finally:
        await server.services.aclose()


async def test_the_load_waits_for_a_quiet_server(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    server = build_server(make_settings(inventory=inventory_file(tmp_path)))
    middleware = WarmSshWhenQuiet(server.services, quiet_s=0.02)
    in_handler = asyncio.Event()
    release = asyncio.Event()

    async def held(ctx: Any) -> HandlerResult:
        in_handler.set()
        await release.wait()
        return {"method": ctx.method}

    await server.services.start()
    try:
        handshake = asyncio.create_task(middleware(SimpleNamespace(method="initialize"), held))  # type: ignore[arg-type]
        await in_handler.wait()
        assert not middleware.armed  # never while the handshake is being answered
        second = asyncio.create_task(middleware(SimpleNamespace(method="tools/list"), held))  # type: ignore[arg-type]
        release.set()
        assert await handshake == {"method": "initialize"}
        assert await second == {"method": "tools/list"}
        assert middleware.armed
        first = await started_preload(server)
        assert not middleware.armed
        assert await middleware(SimpleNamespace(method="tools/call"), held) == {"method": "tools/call"}  # type: ignore[arg-type]
        assert not middleware.armed and server.services.pool.preloading is first  # once
        await asyncio.wait_for(first, 60)
    finally:
        await server.services.aclose()


async def test_a_message_in_progress_holds_the_load_back(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    server = build_server(make_settings(inventory=inventory_file(tmp_path)))
    middleware = WarmSshWhenQuiet(server.services, quiet_s=0.02)
    release = asyncio.Event()
    entered = asyncio.Event()

    async def quick(ctx: Any) -> HandlerResult:
        return {}

    async def held(ctx: Any) -> HandlerResult:
        entered.set()
        await release.wait()
        return {}

    await server.services.start()
    try:
        await middleware(SimpleNamespace(method="initialize"), quick)  # type: ignore[arg-type]
        assert middleware.armed
        long_call = asyncio.create_task(middleware(SimpleNamespace(method="tools/call"), held))  # type: ignore[arg-type]
        await entered.wait()
        assert not middleware.armed  # a message arrived: the quiet period starts again after it
        await middleware(SimpleNamespace(method="ping"), quick)  # type: ignore[arg-type]
        assert not middleware.armed  # the long call is still in progress
        release.set()
        await long_call
        assert middleware.armed
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
