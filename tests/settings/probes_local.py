"""Probes of the settings that shape local calls: bounds, sessions, policy, confirmation, audit.

Each probe asserts an effect that only the row's value produces (with the variable unset the
same probe fails: the table checks that too).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.settings.harness import Harness, poll_until

TEN_KB = "head -c 10000 /dev/zero | tr '\\0' a"
REAP_DEADLINE_S = 2.0
"""The rows reap after 0.3 s, the defaults after ten minutes or more: two seconds tell them
apart, and are all the run without the setting waits."""


async def max_output(h: Harness) -> None:  # RELAY_SHELL_MAX_OUTPUT=2048
    data = await h.one_call("shell_exec", {"command": TEN_KB})
    assert (data["truncated"], data["output_bytes"]) == (True, 10000)
    assert len(data["output"].encode()) < 2048 + 200  # the budget plus the truncation marker


async def max_output_hard(h: Harness) -> None:  # RELAY_SHELL_MAX_OUTPUT_HARD=4096
    data = await h.one_call("shell_exec", {"command": TEN_KB, "max_output": 65536})
    assert data["truncated"] is True
    assert "max_output 65536 clamped to 4096 bytes" in data["notes"]


async def default_timeout(h: Harness) -> None:  # RELAY_SHELL_DEFAULT_TIMEOUT=7
    data = await h.one_call("shell_exec", {"command": "true"})
    assert data["timeout_s"] == 7


async def max_timeout(h: Harness) -> None:  # RELAY_SHELL_MAX_TIMEOUT=5
    data = await h.one_call("shell_exec", {"command": "true", "timeout": 100})
    assert data["timeout_s"] == 5


async def max_sessions(h: Harness) -> None:  # RELAY_SHELL_MAX_SESSIONS=1
    async with h.client() as client:
        first = await h.call(client, "shell_spawn", {"command": "cat"})
        assert first["is_error"] is False
        second = await h.call(client, "shell_spawn", {"command": "cat"})
        assert second["is_error"] is True
        assert "RELAY_SHELL_MAX_SESSIONS=1" in second["error"]["message"]


async def _reaped_without_activity(h: Harness) -> None:
    """A session left alone disappears at the next sweeps."""
    async with h.server() as server:
        from tests.conftest import connected

        async with connected(server) as client:
            spawned = await h.call(client, "shell_spawn", {"command": "cat"})
            registry = server.services.sessions
            assert len(registry) == 1

            async def reaped() -> bool:
                return spawned["session_id"] in await registry.sweep()

            await poll_until(reaped, REAP_DEADLINE_S, "session reaped")
            assert len(registry) == 0


async def session_idle_timeout(h: Harness) -> None:  # RELAY_SHELL_SESSION_IDLE_TIMEOUT=0.3
    await _reaped_without_activity(h)


async def session_max_lifetime(h: Harness) -> None:  # RELAY_SHELL_SESSION_MAX_LIFETIME=0.3
    await _reaped_without_activity(h)


async def session_buffer_bytes(h: Harness) -> None:  # RELAY_SHELL_SESSION_BUFFER_BYTES=4096
    async with h.client() as client:
        spawned = await h.call(client, "shell_spawn", {"command": f"{TEN_KB}; echo; echo relay-done; cat"})
        session_id = spawned["session_id"]

        async def produced() -> bool:
            listed = await h.call(client, "session_list", {})
            return any(
                s["bytes_produced"] >= 10000 and s["session_id"] == session_id for s in listed["sessions"]
            )

        await poll_until(produced, 20.0, "10000 bytes produced")
        read = await h.call(
            client, "session_recv", {"session_id": session_id, "until": "relay-done", "timeout": 10}
        )
        assert read["matched"] is True
        assert read["dropped_bytes"] > 10000 - 4096 - 100


async def policy_mode(h: Harness) -> None:  # RELAY_SHELL_POLICY_MODE=readonly
    proof = h.tmp / "readonly-proof"
    data = await h.one_call("shell_exec", {"command": f"touch {proof}"})  # tier 1 (echo would be a read)
    assert data["is_error"] is True
    assert data["error"]["kind"] == "denied"
    assert not proof.exists()


async def policy_deny(h: Harness) -> None:  # RELAY_SHELL_POLICY_DENY=relay-forbidden
    data = await h.one_call("shell_exec", {"command": "echo relay-forbidden"})
    assert data["is_error"] is True
    assert data["error"]["kind"] == "denied"
    assert h.audit()[-1]["decision"] == "denied"


async def policy_allow(h: Harness) -> None:  # RELAY_SHELL_POLICY_ALLOW (guarded mode), a whole command
    data = await h.one_call("shell_exec", {"command": "kill -9 99999999"})
    assert data["tier"] == 2
    assert data["is_error"] is False  # admitted: the command ran (and failed: no such process)
    assert data["exit_code"] != 0


async def confirm_tier3(h: Harness) -> None:  # RELAY_SHELL_CONFIRM_TIER3=token
    data = await h.one_call("shell_exec", {"command": "rm -f ./relay-never-existed"})
    assert data["is_error"] is True
    assert data["error"]["kind"] == "confirm_required"
    assert data["error"]["confirm_token"]


async def audit_path(h: Harness) -> None:  # RELAY_SHELL_AUDIT_PATH=<tmp>/elsewhere/audit.jsonl
    await h.one_call("shell_exec", {"command": "echo audited"})
    path = h.tmp / "elsewhere" / "audit.jsonl"
    assert path.is_file()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records[-1]["tool"] == "shell_exec"
    assert records[-1]["args"]["command"] == "echo audited"


async def audit_format(h: Harness) -> None:  # RELAY_SHELL_AUDIT_FORMAT=cef
    await h.one_call("shell_exec", {"command": "echo audited"})
    lines = Path(h.env["RELAY_SHELL_AUDIT_PATH"]).read_text().splitlines()
    assert lines and all(line.startswith("CEF:0|") for line in lines)


async def audit_stderr(h: Harness) -> None:  # RELAY_SHELL_AUDIT_STDERR=true
    h.capfd.readouterr()
    await h.one_call("shell_exec", {"command": "echo relay-echoed-record"})
    echoed = h.capfd.readouterr().err
    assert "relay-echoed-record" in echoed
    assert '"tool": "shell_exec"' in echoed or '"tool":"shell_exec"' in echoed


async def audit_chain(h: Harness) -> None:  # RELAY_SHELL_AUDIT_CHAIN=false
    await h.one_call("shell_exec", {"command": "echo audited"})
    records = h.audit()
    assert records
    assert all("chain" not in record and "prev" not in record for record in records)


async def audit_required(h: Harness) -> None:  # RELAY_SHELL_AUDIT_REQUIRED=false, audit path unwritable
    proof = h.tmp / "ran-without-audit"
    # touch: tier 1 (echo alone is a tier-0 read, which runs with the audit down anyway)
    data = await h.one_call("shell_exec", {"command": f"touch {proof} && echo ran-without-audit"})
    assert data["is_error"] is False
    assert data["output"] == "ran-without-audit\n"
    assert proof.exists()


async def policy_allow_protected(h: Harness) -> None:  # RELAY_SHELL_POLICY_ALLOW_PROTECTED=true
    audit = h.env["RELAY_SHELL_AUDIT_PATH"]
    data = await h.one_call("shell_exec", {"command": f"cat {audit}"})  # the relay's own audit file
    assert data["is_error"] is False, data.get("error")
    assert data["tier"] == 3


async def env_file(h: Harness) -> None:  # RELAY_SHELL_ENV_FILE=<tmp>/relay.env
    data = await h.one_call(
        "shell_exec", {"command": f"echo RELAY_SHELL_POLICY_MODE=open >> {h.tmp}//./relay.env"}
    )
    assert data["is_error"] is True
    assert (data["error"]["kind"], data["error"]["reason"]) == ("denied", "protected")
    assert not (h.tmp / "relay.env").exists()


async def max_input_bytes(h: Harness) -> None:  # RELAY_SHELL_MAX_INPUT_BYTES=2048
    data = await h.one_call("shell_exec", {"command": "cat", "stdin": "x" * 4096})
    assert data["is_error"] is True
    assert data["error"]["kind"] == "invalid"
    assert data["error"].get("argument") == "stdin"


async def _recorded_session(h: Harness, typed: str) -> tuple[Path, list[dict[str, Any]]]:
    """Spawn a shell, type ``typed``, exit; the recording file and the session_end records."""
    async with h.client() as client:
        spawned = await h.call(client, "shell_spawn", {"command": "/bin/sh"})
        session_id = spawned["session_id"]
        await h.call(client, "session_send", {"session_id": session_id, "data": typed})
        await h.call(client, "session_send", {"session_id": session_id, "data": "exit"})

        async def ended() -> bool:
            got = await h.call(client, "session_recv", {"session_id": session_id, "timeout": 1})
            return bool(got["ended"])

        await poll_until(ended, 20.0, "session ended")
    records = [r for r in h.audit() if r.get("tool") == "session_end"]
    directory = Path(h.tmp / "recordings")
    return directory, records


async def session_record_dir(h: Harness) -> None:  # RELAY_SHELL_SESSION_RECORD_DIR=<tmp>/recordings
    directory, records = await _recorded_session(h, "echo relay-recorded")
    files = list(directory.glob("*")) if directory.is_dir() else []
    assert len(files) == 1
    assert "relay-recorded" in files[0].read_text()
    assert records and records[-1]["recording"]["path"] == str(files[0])


async def session_record_input(h: Harness) -> None:  # RELAY_SHELL_SESSION_RECORD_INPUT=true
    directory, _ = await _recorded_session(h, "echo relay-typed")
    events = [json.loads(line) for line in next(directory.glob("*")).read_text().splitlines()[1:]]
    assert any(event[1] == "i" and "relay-typed" in event[2] for event in events)


async def session_record_max_bytes(h: Harness) -> None:  # RELAY_SHELL_SESSION_RECORD_MAX_BYTES=4096
    _, records = await _recorded_session(h, f"{TEN_KB}; echo")
    assert records[-1]["recording"]["truncated"] is True
    assert records[-1]["recording"]["bytes"] <= 4096 + 512


async def containment(h: Harness) -> None:  # RELAY_SHELL_CONTAINMENT=subreaper (auto picks cgroup here)
    data = await h.one_call("server_info", {})
    assert data["containment"] == "subreaper"


async def yield_after(h: Harness) -> None:  # RELAY_SHELL_YIELD_AFTER=0.5
    async with h.client() as client:
        data = await h.call(client, "shell_exec", {"command": "sleep 1.5; echo late"})
        assert data["status"] == "running"
        assert data["job_id"].startswith("job-")
        await h.call(client, "session_kill", {"session_id": data["job_id"]})


async def max_jobs(h: Harness) -> None:  # RELAY_SHELL_MAX_JOBS=1
    async with h.client() as client:
        first = await h.call(client, "shell_exec", {"command": "sleep 30", "yield_after": 0.2})
        assert first["status"] == "running"
        second = await h.call(client, "shell_exec", {"command": "sleep 0.5; echo inline", "yield_after": 0.2})
        await h.call(client, "session_kill", {"session_id": first["job_id"]})
        assert (second["status"], second["output"]) == ("done", "inline\n")
        assert any("RELAY_SHELL_MAX_JOBS" in note for note in second["notes"])


async def job_retention(h: Harness) -> None:  # RELAY_SHELL_JOB_RETENTION=0.3
    async with h.server() as server:
        from tests.conftest import connected

        async with connected(server) as client:
            started = await h.call(client, "shell_exec", {"command": "sleep 0.5", "yield_after": 0.1})
            assert started["status"] == "running"
            store = server.services.jobs

            async def swept() -> bool:
                return started["job_id"] in await store.sweep()

            await poll_until(swept, REAP_DEADLINE_S, "ended job swept after the retention")
