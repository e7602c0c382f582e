"""Nothing a call starts outlives it: escapes after a normal return, a timeout, a cancellation,
and a PTY session's children at session_kill, under each containment mechanism."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from mcp import Client

from relay_shell.app import RelayServer, build_server
from relay_shell.config import Settings
from tests.components import containment_mechanisms
from tests.conftest import connected, live_command_lines, pids_with_marker, read_audit, sc, started


@pytest.fixture(params=containment_mechanisms())
def mechanism(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def contained_server(
    make_settings: Callable[..., Settings], mechanism: str
) -> AsyncIterator[RelayServer]:
    async with started(build_server(make_settings(containment=mechanism))) as server:
        yield server


@pytest.fixture
async def client(contained_server: RelayServer) -> AsyncIterator[Client]:
    async with connected(contained_server) as connected_client:
        yield connected_client


def sleeper() -> str:
    """A unique ``sleep`` argument: the marker is the sleeping process's own argv."""
    return f"300.{time.monotonic_ns()}"


def escapes() -> tuple[str, list[str]]:
    """A command line that leaves processes behind in every known way, and their markers.

    The line returns only once every one of them runs (so a test sees them established,
    not killed before they got going).
    """
    markers = [sleeper() for _ in range(7)]
    first, second, third, fourth, fifth, sixth, seventh = markers
    command = (
        f"sleep {first} & "  # a background job (it keeps the output pipe)
        f"setsid sleep {second} & "  # a session of its own
        f"setsid -f sleep {third} >/dev/null 2>&1; "  # setsid that forks and returns
        f"nohup sleep {fourth} >/dev/null 2>&1 & "  # immune to hangups, output redirected
        f"(sleep {fifth} &); "  # a subshell's job: orphaned at once
        f"sh -c 'sh -c \"setsid sleep {sixth} </dev/null >/dev/null 2>&1 &\" &'; "  # double fork + setsid
        f"setsid sh -c 'trap \"\" TERM HUP; exec sleep {seventh}' </dev/null >/dev/null 2>&1 & "  # ignores TERM
    )
    waits = "".join(
        f"until pgrep -f '^sleep {marker}$' >/dev/null; do sleep 0.01; done; " for marker in markers
    )
    return command + waits, markers


async def wait_started(markers: list[str], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while missing := sorted(set(markers) - set(survivors(markers))):
        assert time.monotonic() < deadline, f"never started: {missing}"
        await asyncio.sleep(0.02)


def survivors(markers: list[str]) -> dict[str, list[int]]:
    """Marker -> live ``sleep <marker>`` processes, from one read of /proc.

    Only the sleeps themselves count: the shell that started them (or the hold it waited
    in) has every marker in its argv too, and would satisfy a wait before they ran.
    """
    found: dict[str, list[int]] = {}
    for pid, cmdline in live_command_lines():
        for marker in markers:
            if cmdline.strip() == f"sleep {marker}":
                found.setdefault(marker, []).append(pid)
    return found


async def test_server_info_names_the_mechanism(client: Client, mechanism: str) -> None:
    data = sc(await client.call_tool("server_info", {}))
    assert data["containment"] == mechanism


async def test_nothing_outlives_a_normal_return(client: Client, settings: Settings, mechanism: str) -> None:
    command, markers = escapes()
    result = await client.call_tool("shell_exec", {"command": command + "echo started", "timeout": 30})
    data = sc(result)
    assert (result.is_error, data["exit_code"], data["output"]) == (False, 0, "started\n")
    assert survivors(markers) == {}  # gone when the call returned, not some time later
    record = read_audit(settings.audit_path)[-1]
    assert record["outcome"] == "ok"
    assert record["left_running"] >= len(markers)
    assert "killed when the command exited" in result.content[0].text


@pytest.mark.parametrize(
    "template",
    [
        "sleep {m} & echo started",
        "setsid sleep {m} & echo started",
        "nohup sleep {m} & echo started",
        "(sleep {m} &); echo started",
        "sh -c 'sh -c \"sleep {m} &\" &'; echo started",
    ],
)
async def test_each_escape_alone(client: Client, template: str) -> None:
    marker = sleeper()
    established = f"until pgrep -f '^sleep {marker}$' >/dev/null; do :; done; "  # the escape runs
    command = template.format(m=marker).replace("echo started", established + "echo started")
    result = await client.call_tool("shell_exec", {"command": command, "timeout": 30})
    assert (sc(result)["exit_code"], sc(result)["output"]) == (0, "started\n")
    assert pids_with_marker(marker) == []


async def test_script_escapes_are_contained_too(client: Client) -> None:
    marker = sleeper()
    result = await client.call_tool(
        "shell_script", {"script": f"setsid sleep {marker} >/dev/null 2>&1 &\necho done\n", "timeout": 30}
    )
    assert sc(result)["output"] == "done\n"
    assert pids_with_marker(marker) == []


async def test_nothing_outlives_a_timeout(client: Client, settings: Settings) -> None:
    command, markers = escapes()
    foreground = sleeper()
    result = await client.call_tool(
        "shell_exec", {"command": command + f"echo started; sleep {foreground}", "timeout": 2}
    )
    assert sc(result)["error"]["kind"] == "timeout"
    assert "started" in sc(result)["output"]
    assert survivors([*markers, foreground]) == {}
    assert read_audit(settings.audit_path)[-1]["outcome"] == "timeout"


async def test_nothing_outlives_a_cancellation(contained_server: RelayServer, settings: Settings) -> None:
    command, markers = escapes()
    foreground = sleeper()
    async with Client(contained_server) as client:
        task = asyncio.create_task(
            client.call_tool("shell_exec", {"command": command + f"sleep {foreground}"})
        )
        await wait_started([*markers, foreground])
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        deadline = time.monotonic() + 15
        while not read_audit(settings.audit_path) or survivors([*markers, foreground]):
            assert time.monotonic() < deadline, f"survivors {survivors([*markers, foreground])}"
            await asyncio.sleep(0.02)
    assert read_audit(settings.audit_path)[-1]["outcome"] == "cancelled"


async def test_a_sessions_children_die_at_session_kill(client: Client) -> None:
    command, markers = escapes()
    foreground = sleeper()
    spawned = await client.call_tool("shell_spawn", {"command": command + f"exec sleep {foreground}"})
    session_id = sc(spawned)["session_id"]
    await wait_started([*markers, foreground])
    killed = await client.call_tool("session_kill", {"session_id": session_id})
    assert killed.is_error is False
    assert survivors([*markers, foreground]) == {}


async def test_an_interactive_sessions_daemons_die_at_session_kill(client: Client, tmp_path: Path) -> None:
    daemon, job = sleeper(), sleeper()
    spawned = await client.call_tool("shell_spawn", {"command": "", "env": {"HOME": str(tmp_path)}})
    session_id = sc(spawned)["session_id"]
    typed = f"setsid -f sleep {daemon} >/dev/null 2>&1; sleep {job} &\r"
    await client.call_tool("session_send", {"session_id": session_id, "data": typed})
    await wait_started([daemon, job])
    await client.call_tool("session_kill", {"session_id": session_id})
    assert survivors([daemon, job]) == {}


async def test_calls_running_side_by_side_keep_their_own(client: Client) -> None:
    # One call's leftovers are killed when it returns; a concurrent call's running work is not touched.
    slow_marker, quick_marker = sleeper(), sleeper()
    slow = asyncio.create_task(
        client.call_tool("shell_exec", {"command": f"sleep {slow_marker}; echo never", "timeout": 60})
    )
    await wait_started([slow_marker])
    quick = await client.call_tool("shell_exec", {"command": f"sleep {quick_marker} & echo quick"})
    assert sc(quick)["output"] == "quick\n"
    assert pids_with_marker(quick_marker) == []
    assert pids_with_marker(slow_marker) != []  # the other call is still running its command
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow


async def test_a_process_forking_while_it_is_killed_leaves_nothing(client: Client) -> None:
    # The spawner is still forking setsid children (each a session of its own) when the
    # command returns and the containment is killed.
    marker = sleeper()
    spawner = (
        f"i=0; while [ $i -lt 400 ]; do setsid sleep {marker} </dev/null >/dev/null 2>&1 & i=$((i+1)); done"
    )
    result = await client.call_tool(
        "shell_exec",
        {
            "command": f"sh -c '{spawner}' & until pgrep -f '^sleep {marker}$' >/dev/null; do :; done; echo started"
        },
    )
    assert sc(result)["output"] == "started\n"
    assert pids_with_marker(marker) == []


async def test_a_process_that_keeps_hopping_to_new_pids_is_caught(client: Client, tmp_path: Path) -> None:
    # Each generation starts the next in a session of its own and exits at once: the
    # hopper never stays at one pid, and never in one session, long enough to be seen twice.
    marker = sleeper()
    hopper = tmp_path / "hop.sh"
    hopper.write_text('setsid /bin/sh "$0" "$1" </dev/null >/dev/null 2>&1 &\n')
    result = await client.call_tool(
        "shell_exec",
        {
            "command": f"/bin/sh {hopper} {marker}; until pgrep -f {marker} >/dev/null; do :; done; echo started"
        },
    )
    assert sc(result)["output"] == "started\n"
    for _ in range(20):  # a hopper that got away would show up in one of these scans
        assert pids_with_marker(marker) == []
