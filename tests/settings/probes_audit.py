"""Probes of the audit channel settings: anchors in a real journald, records in a real rsyslog."""

from __future__ import annotations

import time

from tests.settings.harness import Harness

PEER_WAIT_S = 3.0
"""A record reaches a local journald or collector in milliseconds; without the setting
nothing comes, and the probe's wait is all the run without it costs."""


async def audit_anchor(h: Harness) -> None:  # RELAY_SHELL_AUDIT_ANCHOR=journald:<a test namespace's socket>
    assert h.peers.journal is not None
    async with h.client() as client:
        await h.call(client, "shell_exec", {"command": "chmod 600 ./relay-anchored-file"})  # tier 2: anchored
    instance = str(h.audit()[0]["instance_id"])
    entries = h.peers.journal.wait_for(
        1, PEER_WAIT_S, RELAY_AUDIT_INSTANCE=instance, RELAY_AUDIT_KIND="shutdown"
    )
    kinds = [entry["RELAY_AUDIT_KIND"] for entry in entries if entry.get("RELAY_AUDIT_INSTANCE") == instance]
    assert kinds[0] == "header" and "start" in kinds


async def audit_anchor_interval(
    h: Harness,
) -> None:  # RELAY_SHELL_AUDIT_ANCHOR_INTERVAL=0.05 (anchor: journald)
    assert h.peers.journal is not None
    journal = h.peers.journal
    async with h.server() as server:
        written = server.services.audit.write({"tool": "probe", "tier": 0})
        deadline = time.monotonic() + 2  # the default interval (10 s) cannot anchor the head in time
        found: list[dict[str, str]] = []
        while time.monotonic() < deadline and not found:
            found = [
                entry
                for entry in journal.entries()
                if entry.get("RELAY_AUDIT_KIND") == "head"
                and entry.get("RELAY_AUDIT_CHAIN") == written["chain"]
            ]
    assert found, "the head was not anchored while the server ran"


async def audit_ship(h: Harness) -> None:  # RELAY_SHELL_AUDIT_SHIP=syslog+tcp://127.0.0.1:<collector>
    assert h.peers.collector is not None
    marker = f"relay-shipped-{time.monotonic_ns()}"
    data = await h.one_call("shell_exec", {"command": f"touch {h.tmp / marker}"})  # tier 1
    assert data["is_error"] is False
    assert h.peers.collector.wait_for(2, marker, PEER_WAIT_S)  # start and end records, in full


async def audit_tls_ca(h: Harness) -> None:  # RELAY_SHELL_AUDIT_TLS_CA=<test CA> (ship: syslog+tls)
    assert h.peers.tls_collector is not None
    marker = f"relay-shipped-tls-{time.monotonic_ns()}"
    data = await h.one_call("shell_exec", {"command": f"touch {h.tmp / marker}"})  # tier 1
    assert data["is_error"] is False, data  # without the CA the collector's certificate is refused
    assert h.peers.tls_collector.wait_for(2, marker, PEER_WAIT_S)
