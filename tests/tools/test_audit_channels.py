"""The sink's channels seen through the MCP client: shipping to a real rsyslog, a collector that
goes down, and what server_info says about anchors."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from relay_shell.app import build_server
from relay_shell.config import Settings
from tests.audit_peers import rsyslog
from tests.conftest import connected, read_trail, sc


async def test_server_info_names_the_anchor_and_ship_channels(make_settings: Callable[..., Settings]) -> None:
    server = build_server(make_settings())
    try:
        async with connected(server) as client:
            audit = sc(await client.call_tool("server_info", {}))["audit"]
    finally:
        await server.services.aclose()
    assert (audit["anchor"], audit["ship"], audit["state"]) == ("off", "off", "healthy")
    assert audit["warning"] is None  # off by the operator's choice (the tests' settings): nothing to warn
    assert len(audit["instance_id"]) == 24


@pytest.mark.skipif(os.geteuid() != 0, reason="rsyslog on a test port is started as root here")
async def test_shipping_with_the_collector_down_refuses_calls_above_tier_0(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    victim = tmp_path / "must-not-exist"
    with rsyslog(tmp_path / "collector", tls=True) as collector:
        settings = make_settings(audit_ship=collector.spec, audit_tls_ca=str(collector.tls_ca))
        server = build_server(settings)
        try:
            async with connected(server) as client:
                ran = await client.call_tool(
                    "shell_exec", {"command": f"touch {tmp_path / 'shipped'}"}
                )  # tier 1
                assert ran.is_error is False
                collector.wait_for(3, 'kind="record"')  # header, start, end stored by the collector
                collector.stop()
                refused = await client.call_tool("shell_exec", {"command": f"touch {victim}"})
                info = sc(await client.call_tool("server_info", {}))  # tier 0 still answers
        finally:
            await server.services.aclose()
    assert sc(refused)["error"]["kind"] == "unavailable"
    assert not victim.exists()
    assert info["audit"]["healthy"] is False
    assert info["audit"]["ship"] == collector.spec
    assert info["audit"]["ship_status"]["error"]
    shipped = [line for line in collector.lines() if 'kind="record"' in line]
    end = next(record for record in read_trail(settings.audit_path) if record.get("phase") == "end")
    assert json.loads(shipped[2].split("] ", 1)[1]) == end  # the full record, as the file holds it
