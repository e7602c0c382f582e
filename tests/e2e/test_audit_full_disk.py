"""The audit file's filesystem fills up under a running HTTP server (a real 64 KiB tmpfs).

The call that filled it ran, but its end record could not be written: from then on every
call above tier 0 is refused ``unavailable``, tier 0 still answers and says why, ``/readyz``
is 503 and the gauge is 1. When space comes back the sink writes a recovery record that
counts the lost record, and ``--verify-audit`` keeps reporting that loss.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client

from tests.conftest import sc
from tests.http.test_http_e2e import RELAY, running_relay, scrape


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"this runner may not mount a tmpfs (needs root and CAP_SYS_ADMIN): {mounted.stderr.strip()}"
        )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False  # the torn end of a short write
    return True


async def test_a_full_filesystem_refuses_calls_above_tier_0(tmp_path: Path, small_filesystem: Path) -> None:
    audit = small_filesystem / "audit" / "audit.jsonl"  # its directory is protected: fill beside it
    with running_relay(tmp_path / "state", RELAY_SHELL_AUDIT_PATH=str(audit)) as relay:
        async with Client(relay.mcp_url, read_timeout_seconds=30) as client:
            assert (await client.call_tool("shell_exec", {"command": "echo before"})).is_error is False
            filled = await client.call_tool(
                "shell_exec", {"command": f"head -c 1000000 /dev/zero > {small_filesystem / 'fill'}"}
            )
            assert filled.is_error is False  # it ran; its records use what is left of the file's page
            # The file's last page may still hold a few records: calls run while their start
            # record can be written, and the first write that fails refuses the next call.
            refused_at = None
            for attempt in range(40):
                result = await client.call_tool(
                    "shell_exec", {"command": f"touch {tmp_path / f'victim-{attempt}'}"}
                )
                if result.is_error:
                    assert sc(result)["error"]["kind"] == "unavailable"
                    refused_at = attempt
                    break
            assert refused_at is not None, "the full filesystem never refused a call"
            assert not (tmp_path / f"victim-{refused_at}").exists()  # nothing unaudited ran
            info = sc(await client.call_tool("server_info", {}))
            assert (info["audit"]["healthy"], info["audit"]["state"]) == (False, "unwritable")
            assert "No space left" in info["audit"]["last_error"]
            with relay.http() as http:
                ready = http.get("/readyz")
            assert (ready.status_code, ready.json()["audit_writable"]) == (503, False)
            assert scrape(relay)["relay_shell_audit_degraded"] == {(): 1.0}

            (small_filesystem / "fill").unlink()  # the operator makes room
            after = await client.call_tool("shell_exec", {"command": "echo after"})
            assert after.is_error is False
            with relay.http() as http:
                assert http.get("/readyz").status_code == 200

    trail = [json.loads(line) for line in audit.read_bytes().splitlines() if _is_json(line)]
    started = {record["args"]["command"] for record in trail if record.get("phase") == "start"}
    for victim in tmp_path.glob("victim-*"):  # every call that ran had its start record written
        assert f"touch {victim}" in started
    [recovery] = [record for record in trail if record.get("kind") == "recovery"]
    assert recovery["lost_records"] >= 1
    assert "No space left" in recovery["error"]
    done = subprocess.run(
        [RELAY, "--verify-audit", "--json", str(audit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": os.environ.get("PATH", "")},
    )
    report = json.loads(done.stdout)
    assert done.returncode == 2
    kinds = [finding["kind"] for finding in report["findings"]]
    assert "lost" in kinds  # the lost end record stays visible
    assert "malformed" not in kinds  # a torn line, if any, is accounted for by the recovery record
