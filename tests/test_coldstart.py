"""Start-up loads only what answering ``initialize`` and ``tools/list`` needs; the rest is
loaded ahead once the server is quiet after the handshake, or by the first call."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from relay_shell.app import FIRST_CALLS, RelayServer, build_server
from relay_shell.config import Settings
from relay_shell.services import CALL_PATH
from relay_shell.tools.listing import DeferredArguments
from tests.conftest import connected

LEFT_TO_LATER = (*CALL_PATH, "pyte", "asyncssh", "relay_shell.sessions.vt")

BUILD_AND_LIST = """
import asyncio, json, sys
from relay_shell.app import build_server
from relay_shell.config import load_settings
from relay_shell.services import CALL_PATH

settings = load_settings(_env_file=None, audit_path=sys.argv[1], ssh_config=sys.argv[2],
                         ssh_known_hosts_file=sys.argv[3], auth_state_dir=sys.argv[4], audit_anchor="off")
server = build_server(settings)
listed = asyncio.run(server.list_tools())
print(json.dumps({"tools": len(listed), "loaded": sorted(sys.modules)}))
"""


def test_building_and_listing_loads_none_of_what_calls_need(tmp_path: Path) -> None:
    paths = [tmp_path / "audit.jsonl", tmp_path / "ssh_config", tmp_path / "known_hosts", tmp_path / "oauth"]
    finished = subprocess.run(
        [sys.executable, "-c", BUILD_AND_LIST, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=tmp_path,
    )
    report = json.loads(finished.stdout)
    assert report["tools"] == 21
    loaded = set(report["loaded"])
    assert not loaded & set(LEFT_TO_LATER), sorted(loaded & set(LEFT_TO_LATER))
    assert "relay_shell.tools.listing" in loaded  # the schemas came from the generated listing


async def test_the_call_path_loads_once_the_handshake_is_over(make_settings: Callable[..., Settings]) -> None:
    server = build_server(make_settings())
    await server.services.start()
    try:
        assert server.services.warming is None  # nothing before a client speaks
        async with connected(server):
            deadline = asyncio.get_running_loop().time() + 30
            while (warming := server.services.warming) is None:
                assert asyncio.get_running_loop().time() < deadline, "the load never started"
                await asyncio.sleep(0.01)
            await asyncio.wait_for(warming, 60)
            assert warming.exception() is None
        assert all(name in sys.modules for name in CALL_PATH)
        assert server.services.warm_calls() is False  # once per server
    finally:
        await server.services.aclose()
    assert server.services.warm_calls() is False  # closed: nothing starts any more


async def test_closing_while_the_call_path_loads_does_not_wait_for_it(settings: Settings) -> None:
    server = build_server(settings)
    await server.services.start()
    assert server.services.warm_calls() is True
    warming = server.services.warming
    assert warming is not None
    await server.services.aclose()
    assert warming.done()


def _built(server: RelayServer) -> set[str]:
    return {
        tool.name
        for tool in server._tool_manager.list_tools()
        if not isinstance(tool.fn_metadata, DeferredArguments) or "arg_model" in tool.fn_metadata.__dict__
    }


async def test_argument_models_are_built_for_first_calls_then_when_quiet(
    make_settings: Callable[..., Settings],
) -> None:
    server = build_server(make_settings())
    assert _built(server) == set(FIRST_CALLS)  # the others wait for their first call or a quiet server
    await server.services.start()
    try:
        async with connected(server) as client:
            refused = await client.call_tool("audit_tail", {"min_tier": 7})  # built by its first call
            assert refused.is_error
            assert refused.structured_content is not None
            assert refused.structured_content["error"]["argument"] == "min_tier"
            assert "audit_tail" in _built(server)
            deadline = asyncio.get_running_loop().time() + 30
            while (warming := server.services.warming) is None:
                assert asyncio.get_running_loop().time() < deadline, "the load never started"
                await asyncio.sleep(0.01)
            await asyncio.wait_for(warming, 60)
        assert _built(server) == {tool.name for tool in server._tool_manager.list_tools()}
    finally:
        await server.services.aclose()
