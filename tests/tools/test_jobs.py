"""Calls that outlive their request: yield_after, jobs read and killed through the session tools.

Real processes through an in-process MCP client; audit records read back from the file.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from relay_shell.app import RelayServer, build_server
from relay_shell.config import Settings
from relay_shell.errors import InvalidInput
from relay_shell.governance.bounds import yield_after_seconds
from tests.conftest import connected, pids_with_marker, principal, read_audit, sc

COUNT_LOOP = "for i in $(seq 1 {n}); do echo $i; sleep {pause}; done"


def marker_duration() -> str:
    """A unique ``sleep`` argument: both the shell and its sleep carry it on their command line."""
    return f"300.{time.monotonic_ns() % 1_000_000_000:09d}"


async def read_to_end(
    client: Client, job_id: str, field: str = "output", **extra: Any
) -> tuple[str, dict[str, Any]]:
    """session_recv until the job has ended and was read; returns ``field`` of every read joined
    (``stdout`` for a job with separate streams) and the last read."""
    collected = []
    deadline = time.monotonic() + 60
    while True:
        got = sc(await client.call_tool("session_recv", {"session_id": job_id, "timeout": 5, **extra}))
        collected.append(got[field])
        if got["ended"]:
            return "".join(collected), got
        assert time.monotonic() < deadline, f"job {job_id} never ended"


async def wait_gone(marker: str) -> None:
    deadline = time.monotonic() + 10
    while pids_with_marker(marker):
        assert time.monotonic() < deadline, f"processes survived: {pids_with_marker(marker)}"
        await asyncio.sleep(0.05)


@pytest.fixture
async def make_server(make_settings: Callable[..., Settings]) -> AsyncIterator[Callable[..., RelayServer]]:
    """Servers built by a test; each is shut down at the end (idempotent if the test did)."""
    built: list[RelayServer] = []

    def factory(**overrides: Any) -> RelayServer:
        server = build_server(make_settings(**overrides))
        built.append(server)
        return server

    yield factory
    for server in built:
        await server.services.aclose()


@pytest.fixture
async def server(make_server: Callable[..., RelayServer]) -> AsyncIterator[RelayServer]:
    server = make_server()
    yield server
    await server.services.aclose()


@pytest.fixture
async def client(server: RelayServer) -> AsyncIterator[Client]:
    async with connected(server) as connected_client:
        yield connected_client


async def test_a_long_command_yields_a_job_read_to_its_end(client: Client, server: RelayServer) -> None:
    result = await client.call_tool(
        "shell_exec", {"command": COUNT_LOOP.format(n=10, pause=0.3), "yield_after": 1, "timeout": 60}
    )
    assert result.is_error is False
    first = sc(result)
    assert first["status"] == "running"
    assert first["job_id"].startswith("job-") and len(first["job_id"]) == 16
    assert len(first["call_id"]) >= 24  # at least 96 random bits, hex
    assert first["output"].startswith("1\n")
    assert "10\n" not in first["output"]
    assert "exit_code" not in first or first["exit_code"] is None
    job = first["job_id"]

    upto = sc(await client.call_tool("session_recv", {"session_id": job, "until": "^8$", "timeout": 20}))
    assert upto["matched"] is True
    assert upto["output"].splitlines()[-1] == "8"
    rest, last = await read_to_end(client, job)
    whole = first["output"] + upto["output"] + rest
    expected = "".join(f"{i}\n" for i in range(1, 11))
    assert whole == expected
    assert last["outcome"] == "ok"
    assert last["exit_code"] == 0
    assert last["signal"] is None
    assert last["output_bytes"] == len(expected)
    assert last["stream_sha256"] == hashlib.sha256(expected.encode()).hexdigest()

    records = read_audit(server.services.settings.audit_path)
    call = next(r for r in records if r["tool"] == "shell_exec")
    end = next(r for r in records if r["tool"] == "job_end")
    assert (call["outcome"], call["job_id"], call["call_id"]) == ("running", job, first["call_id"])
    assert call["exit_code"] is None
    assert (end["call_id"], end["job_id"], end["outcome"]) == (first["call_id"], job, "ok")
    assert end["exit_code"] == 0
    assert end["stream_sha256"] == last["stream_sha256"]
    assert isinstance(end["duration_ms"], int)
    assert end["tier"] == call["tier"] == 1


async def test_a_tier_0_command_yields_a_job_with_its_own_call_id(
    client: Client, server: RelayServer
) -> None:
    """A read that outlives yield_after (tail -f) is a job like any other; the call is named then."""
    marker = marker_duration()
    result = await client.call_tool(
        "shell_exec", {"command": f"tail -s {marker} -f /dev/null", "yield_after": 0.3}
    )
    first = sc(result)
    assert result.is_error is False, first
    assert (first["status"], first["tier"]) == ("running", 0)
    assert len(first["call_id"]) >= 24
    assert pids_with_marker(marker)
    listed = sc(await client.call_tool("session_list", {}))
    assert [row["state"] for row in listed["sessions"] if row["session_id"] == first["job_id"]] == ["running"]
    assert (await client.call_tool("session_kill", {"session_id": first["job_id"]})).is_error is False
    await wait_gone(marker)
    records = read_audit(server.services.settings.audit_path)
    call = next(r for r in records if r["tool"] == "shell_exec")
    end = next(r for r in records if r["tool"] == "job_end")
    assert (call["tier"], call["outcome"], call["job_id"]) == (0, "running", first["job_id"])
    assert call["call_id"] == end["call_id"] == first["call_id"]
    assert end["outcome"] == "cancelled"


async def test_a_call_that_ends_in_time_is_done(client: Client, server: RelayServer) -> None:
    # sleep makes it tier 1 (echo alone is a tier-0 read, which has no call_id)
    result = sc(await client.call_tool("shell_exec", {"command": "sleep 0; echo quick", "yield_after": 5}))
    assert (result["status"], result["exit_code"], result["output"]) == ("done", 0, "quick\n")
    assert "job_id" not in result
    assert server.services.jobs.jobs() == []
    record = read_audit(server.services.settings.audit_path)[-1]
    assert record["outcome"] == "ok" and "job_id" not in record
    assert len(record["call_id"]) == 24


async def test_a_read_only_command_that_outlives_yield_after_becomes_a_job_too(
    client: Client, server: RelayServer, tmp_path: Path
) -> None:
    """A tier-0 read (no call id of its own: it has one record) that is still running yields
    like any call: it gets a call id, its record says running, its job_end has the same id."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    result = await client.call_tool("shell_exec", {"command": f"cat {fifo}", "yield_after": 0.3})
    assert result.is_error is False, result.content[0].text
    first = sc(result)
    assert first["status"] == "running"
    assert len(first["call_id"]) == 24

    def write() -> None:  # opening a FIFO for writing waits for its reader: off the loop
        with fifo.open("w") as writer:
            writer.write("through-the-fifo\n")

    await asyncio.to_thread(write)
    output, last = await read_to_end(client, first["job_id"])
    assert first["output"] + output == "through-the-fifo\n"
    assert (last["outcome"], last["exit_code"]) == ("ok", 0)
    records = read_audit(server.services.settings.audit_path)
    call = next(r for r in records if r["tool"] == "shell_exec")
    end = next(r for r in records if r["tool"] == "job_end")
    assert (call["tier"], call["outcome"], call["call_id"], call["job_id"]) == (
        0,
        "running",
        first["call_id"],
        first["job_id"],
    )
    assert (end["call_id"], end["job_id"], end["outcome"]) == (first["call_id"], first["job_id"], "ok")


async def test_yield_after_zero_never_yields(make_server: Callable[..., RelayServer]) -> None:
    server = make_server(yield_after=0.2)
    async with connected(server) as client:
        never = sc(await client.call_tool("shell_exec", {"command": "sleep 1; echo late", "yield_after": 0}))
        default = sc(await client.call_tool("shell_exec", {"command": "sleep 1; echo late"}))
    await server.services.aclose()
    assert (never["status"], never["output"]) == ("done", "late\n")
    assert default["status"] == "running"  # RELAY_SHELL_YIELD_AFTER applies when omitted


@pytest.mark.parametrize("bad", [-1, -0.5, "soon", "3 minutes", [5], "5", True])
async def test_bad_yield_after_is_invalid_naming_it(client: Client, server: RelayServer, bad: object) -> None:
    result = await client.call_tool("shell_exec", {"command": "true", "yield_after": bad})
    assert result.is_error is True
    error = sc(result)["error"]
    assert (error["kind"], error["argument"]) == ("invalid", "yield_after")
    record = read_audit(server.services.settings.audit_path)[-1]
    assert (record["tool"], record["error_kind"]) == ("shell_exec", "invalid")


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), -1.0, True, "5"])
def test_yield_after_bound_refuses_what_the_wire_cannot_carry(settings: Settings, bad: object) -> None:
    with pytest.raises(InvalidInput) as refused:
        yield_after_seconds(bad, settings)  # type: ignore[arg-type]
    assert refused.value.argument == "yield_after"


def test_yield_after_bound_defaults_and_zero(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(yield_after=7)
    assert yield_after_seconds(None, settings) == 7.0
    assert yield_after_seconds(0, settings) is None
    assert yield_after_seconds(2.5, settings) == 2.5
    assert yield_after_seconds(None, make_settings(yield_after=0)) is None


async def test_full_job_store_runs_inline_and_names_the_variable(
    make_server: Callable[..., RelayServer],
) -> None:
    server = make_server(max_jobs=1)
    async with connected(server) as client:
        held = sc(await client.call_tool("shell_exec", {"command": "sleep 30", "yield_after": 0.2}))
        assert held["status"] == "running"
        info = sc(await client.call_tool("server_info", {}))
        assert info["jobs"] == {"count": 1, "max": 1}
        inline = await client.call_tool(
            "shell_exec", {"command": "sleep 0.6; echo inline", "yield_after": 0.2}
        )
        data = sc(inline)
        assert (data["status"], data["output"], data["exit_code"]) == ("done", "inline\n", 0)
        assert any("RELAY_SHELL_MAX_JOBS" in note for note in data["notes"])
        assert "RELAY_SHELL_MAX_JOBS" in inline.content[0].text
        # Killed and read, the job frees its place: the next long call yields again.
        await client.call_tool("session_kill", {"session_id": held["job_id"]})
        _, last = await read_to_end(client, held["job_id"])
        assert last["outcome"] == "cancelled"
        again = sc(await client.call_tool("shell_exec", {"command": "sleep 0.6", "yield_after": 0.2}))
        assert again["status"] == "running"
    await server.services.aclose()


async def test_session_kill_ends_the_job_and_its_processes(client: Client, server: RelayServer) -> None:
    duration = marker_duration()
    first = sc(
        await client.call_tool(
            "shell_exec",
            {"command": f"echo started; sleep {duration} & sleep {duration}", "yield_after": 0.3},
        )
    )
    assert first["status"] == "running"
    assert pids_with_marker(duration)
    killed = await client.call_tool("session_kill", {"session_id": first["job_id"]})
    assert killed.is_error is False
    assert sc(killed) == {
        "session_id": first["job_id"], "state": "ended", "exit_code": None, "outcome": "cancelled", "tier": 1,
    }  # fmt: skip
    await wait_gone(duration)
    _, last = await read_to_end(client, first["job_id"])
    assert (last["outcome"], last["exit_code"]) == ("cancelled", None)
    assert last["output_bytes"] == len("started\n")
    assert last["stream_sha256"] == hashlib.sha256(b"started\n").hexdigest()
    end = next(r for r in read_audit(server.services.settings.audit_path) if r["tool"] == "job_end")
    assert (end["outcome"], end["call_id"], end["error_kind"]) == ("cancelled", first["call_id"], "cancelled")
    # An ended job is removed by a second kill.
    await client.call_tool("session_kill", {"session_id": first["job_id"]})
    gone = await client.call_tool("session_recv", {"session_id": first["job_id"]})
    assert sc(gone)["error"]["kind"] == "invalid"


async def test_a_job_ends_at_its_own_timeout(client: Client, server: RelayServer) -> None:
    duration = marker_duration()
    first = sc(
        await client.call_tool(
            "shell_exec", {"command": f"echo begun; sleep {duration}", "yield_after": 0.3, "timeout": 1.5}
        )
    )
    assert first["status"] == "running"
    output, last = await read_to_end(client, first["job_id"])
    assert first["output"] + output == "begun\n"
    assert (last["outcome"], last["exit_code"]) == ("timeout", None)
    await wait_gone(duration)
    end = next(r for r in read_audit(server.services.settings.audit_path) if r["tool"] == "job_end")
    assert (end["outcome"], end["error_kind"]) == ("timeout", "timeout")
    assert end["stream_sha256"] == hashlib.sha256(b"begun\n").hexdigest()


async def test_separate_streams_stay_apart(client: Client) -> None:
    command = "echo out; echo err >&2; sleep 1; echo out2; echo err2 >&2; exit 4"
    first = sc(
        await client.call_tool("shell_exec", {"command": command, "merge_stderr": False, "yield_after": 0.5})
    )
    assert first["status"] == "running"
    assert (first["stdout"], first["stderr"]) == ("out\n", "err\n")
    stdout, stderr = [], []
    deadline = time.monotonic() + 30
    while True:
        got = sc(await client.call_tool("session_recv", {"session_id": first["job_id"], "timeout": 5}))
        stdout.append(got["stdout"])
        stderr.append(got["stderr"])
        if got["ended"]:
            break
        assert time.monotonic() < deadline
    assert ("".join(stdout), "".join(stderr)) == ("out2\n", "err2\n")
    assert (got["outcome"], got["exit_code"]) == ("failed", 4)
    assert got["output_bytes"] == len("out\nerr\nout2\nerr2\n")


async def test_a_script_yields_too(client: Client) -> None:
    first = sc(
        await client.call_tool(
            "shell_script", {"script": "echo one\nsleep 1\necho two\n", "yield_after": 0.3}
        )
    )
    assert first["status"] == "running"
    output, last = await read_to_end(client, first["job_id"])
    assert first["output"] + output == "one\ntwo\n"
    assert last["exit_code"] == 0


async def test_a_job_takes_no_input(client: Client) -> None:
    first = sc(await client.call_tool("shell_exec", {"command": "sleep 5", "yield_after": 0.2}))
    for tool, arguments in (
        ("session_send", {"session_id": first["job_id"], "data": "hello"}),
        ("session_resize", {"session_id": first["job_id"], "cols": 80, "rows": 24}),
        ("session_kill", {"session_id": first["job_id"], "close": False}),
    ):
        result = await client.call_tool(tool, arguments)
        assert result.is_error is True
        assert sc(result)["error"]["kind"] == "invalid", tool
    listed = sc(await client.call_tool("session_list", {}))
    row = next(row for row in listed["sessions"] if row["session_id"] == first["job_id"])
    assert (row["kind"], row["state"], row["command"]) == ("job", "running", "sleep 5")
    await client.call_tool("session_kill", {"session_id": first["job_id"]})


async def test_shutdown_cancels_running_jobs_with_records(make_server: Callable[..., RelayServer]) -> None:
    server = make_server()
    duration = marker_duration()
    async with connected(server) as client:
        first = sc(await client.call_tool("shell_exec", {"command": f"sleep {duration}", "yield_after": 0.2}))
    assert first["status"] == "running"
    await server.services.aclose()
    assert pids_with_marker(duration) == []
    end = next(r for r in read_audit(server.services.settings.audit_path) if r["tool"] == "job_end")
    assert (end["outcome"], end["call_id"], end["job_id"]) == ("cancelled", first["call_id"], first["job_id"])


async def test_jobs_belong_to_their_principal(server: RelayServer) -> None:
    with principal("alice", "relay-shell:operate"):
        async with connected(server) as alice:
            first = sc(
                await alice.call_tool("shell_exec", {"command": "echo mine; sleep 5", "yield_after": 0.3})
            )
            job = first["job_id"]
            with principal("bob", "relay-shell:operate"):
                async with connected(server) as bob:
                    for tool in ("session_recv", "session_kill"):
                        refused = await bob.call_tool(tool, {"session_id": job})
                        assert refused.is_error is True
                        assert (sc(refused)["error"]["kind"], sc(refused)["error"]["rule"]) == (
                            "denied",
                            "owner",
                        )
                    listed = sc(await bob.call_tool("session_list", {}))
                    assert job not in [row["session_id"] for row in listed["sessions"]]
            with principal("root", "relay-shell:admin"):
                async with connected(server) as admin:
                    listed = sc(await admin.call_tool("session_list", {}))
                    assert job in [row["session_id"] for row in listed["sessions"]]
                    killed = await admin.call_tool("session_kill", {"session_id": job})
                    assert killed.is_error is False
            _, last = await read_to_end(alice, job)
            assert last["outcome"] == "cancelled"
    denials = [r for r in read_audit(server.services.settings.audit_path) if r.get("decision") == "denied"]
    assert {(r["tool"], r["principal"], r["rule"]) for r in denials} == {
        ("session_recv", "bob", "owner"),
        ("session_kill", "bob", "owner"),
    }
