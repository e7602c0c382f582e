"""The real ``relay-shell`` over stdio: a signal mid-call, and the cgroups a killed server left.

Raw JSON-RPC on the child's pipes, so the test decides exactly when the signal lands.
"""

from __future__ import annotations

import json
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relay_shell.local import cgroups
from relay_shell.local.containment import cgroup_unavailable
from tests.components import cgroup_mechanism
from tests.conftest import initialize_message, pids_with_marker, read_audit
from tests.e2e.test_stdio import RELAY, server_env

INITIALIZE = initialize_message("2025-06-18")


class StdioServer:
    """One ``relay-shell`` child spoken to in raw JSON-RPC lines."""

    def __init__(self, tmp_path: Path, argv: list[str] | None = None, **env: str) -> None:
        self.stderr_path = tmp_path / f"stderr-{time.monotonic_ns()}"
        self._stderr = self.stderr_path.open("wb")
        self.process = subprocess.Popen(
            argv or [RELAY],
            env=server_env(tmp_path, **env),
            cwd=tmp_path,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        self.process.stdin.flush()

    def receive(self, timeout_s: float = 30.0) -> dict[str, Any]:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        assert ready, "no answer from the server"
        line = self.process.stdout.readline()
        assert line, "the server closed stdout"
        return dict(json.loads(line))

    def initialize(self) -> None:
        self.send(INITIALIZE)
        assert "result" in self.receive()
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def call(self, request_id: int, tool: str, arguments: dict[str, Any]) -> None:
        self.send(
            {
                "jsonrpc": "2.0",
                "id": request_id,
                "method": "tools/call",
                "params": {"name": tool, "arguments": arguments},
            }
        )

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        self._stderr.close()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[StdioServer]]:
    started: list[StdioServer] = []
    yield started
    for server in started:
        server.close()


def sleeper() -> str:
    return f"300.{time.monotonic_ns()}"


def sleeping(marker: str) -> list[int]:
    """Live ``sleep <marker>`` processes (not the shell or hold whose argv also holds the marker)."""
    return [pid for pid in pids_with_marker(marker) if _cmdline(pid) == f"sleep {marker}"]


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\x00", b" ").decode(errors="replace").strip()
        )
    except OSError:
        return ""


def wait_for(predicate: Any, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.parametrize("mechanism", [cgroup_mechanism(), "subreaper"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_call_cancels_it_kills_its_processes_and_audits_it(
    tmp_path: Path, servers: list[StdioServer], mechanism: str, signum: signal.Signals
) -> None:
    server = StdioServer(tmp_path, RELAY_SHELL_CONTAINMENT=mechanism)
    servers.append(server)
    server.initialize()
    escaped, foreground = sleeper(), sleeper()
    server.call(2, "shell_exec", {"command": f"setsid sleep {escaped} >/dev/null 2>&1 & sleep {foreground}"})
    wait_for(lambda: sleeping(escaped) and sleeping(foreground), "the call's processes")
    server.process.send_signal(signum)
    assert server.process.wait(timeout=60) == 0, server.stderr()
    assert pids_with_marker(escaped) == [] and pids_with_marker(foreground) == []
    calls = [record for record in read_audit(tmp_path / "audit.jsonl") if record.get("tool") == "shell_exec"]
    assert [record["outcome"] for record in calls] == ["cancelled"]
    assert calls[0]["error_kind"] == "cancelled"
    assert "cancelled 1 call(s) in flight" in server.stderr()


@pytest.mark.parametrize("mechanism", [cgroup_mechanism(), "subreaper"])
def test_a_call_that_arrives_during_shutdown_is_refused(
    tmp_path: Path, servers: list[StdioServer], mechanism: str
) -> None:
    # The running call's shell ignores TERM, so shutdown spends its kill grace on it; a call
    # that arrives meanwhile must not start anything.
    server = StdioServer(tmp_path, RELAY_SHELL_CONTAINMENT=mechanism)
    servers.append(server)
    server.initialize()
    marker, late = sleeper(), sleeper()
    server.call(2, "shell_exec", {"command": f"trap '' TERM; sleep {marker}; sleep {marker}"})
    wait_for(lambda: sleeping(marker), "the first call's process")
    server.process.send_signal(signal.SIGTERM)
    wait_for(lambda: "shutting down" in server.stderr(), "shutdown to begin")
    server.call(3, "shell_exec", {"command": f"sleep {late}"})
    assert server.process.wait(timeout=60) == 0, server.stderr()
    assert pids_with_marker(marker) == [] and pids_with_marker(late) == []
    records = {
        str(record["args"]["command"]): record
        for record in read_audit(tmp_path / "audit.jsonl")
        if record.get("tool") == "shell_exec"
    }
    assert records[f"trap '' TERM; sleep {marker}; sleep {marker}"]["outcome"] == "cancelled"
    refused = records[f"sleep {late}"]
    assert (refused["outcome"], refused["error_kind"]) == ("error", "unavailable")
    assert "shutting down" in refused["error"]


@pytest.mark.parametrize("mechanism", [cgroup_mechanism()])
def test_stale_cgroups_of_a_killed_server_are_swept_at_the_next_start(
    tmp_path: Path, servers: list[StdioServer], mechanism: str
) -> None:
    own = cgroups.locate_own_cgroup(
        Path("/proc/self/mountinfo").read_text(), Path("/proc/self/cgroup").read_text()
    )
    assert own is not None
    first = StdioServer(tmp_path, RELAY_SHELL_CONTAINMENT=mechanism)
    servers.append(first)
    first.initialize()
    marker = sleeper()
    first.call(2, "shell_exec", {"command": f"sleep {marker}"})
    wait_for(lambda: sleeping(marker), "the call's process")
    stale = [path for path in own.iterdir() if path.name.startswith(f"relay-shell-{first.process.pid}-")]
    assert len(stale) == 1
    first.process.kill()  # as a crash would: no teardown at all
    first.process.wait(timeout=30)
    assert sleeping(marker) != []  # left running by the dead server, in its cgroup
    assert stale[0].is_dir()

    second = StdioServer(tmp_path, RELAY_SHELL_CONTAINMENT=mechanism)
    servers.append(second)
    second.initialize()  # the sweep happens before the server answers
    assert not stale[0].exists()
    assert pids_with_marker(marker) == []
    assert f"swept the stale cgroup {stale[0]}" in second.stderr()
    own_dir = [path for path in own.iterdir() if path.name.startswith(f"relay-shell-{second.process.pid}-")]
    assert len(own_dir) == 1
    assert second.process.stdin is not None
    second.process.stdin.close()  # stdin EOF: an orderly exit removes its own directory
    assert second.process.wait(timeout=60) == 0
    assert not own_dir[0].exists()


WITHOUT_CGROUP2 = (
    "for mount in $(awk '$0 ~ / - cgroup2 / {print $5}' /proc/self/mountinfo); do umount \"$mount\" || exit 99; done; "
    'exec "$@"'
)


def without_cgroup2(*argv: str) -> list[str]:
    """``argv`` run in a mount namespace of its own where no cgroup2 hierarchy is mounted."""
    return ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", WITHOUT_CGROUP2, "sh", *argv]


def test_without_cgroup2_forced_cgroup_is_a_configuration_error_and_auto_falls_back(
    tmp_path: Path, servers: list[StdioServer]
) -> None:
    probe = subprocess.run(without_cgroup2("true"), capture_output=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a mount namespace without cgroup2 here: {probe.stderr!r}")
    forced = subprocess.run(
        without_cgroup2(RELAY),
        env=server_env(tmp_path, RELAY_SHELL_CONTAINMENT="cgroup"),
        input=b"",
        capture_output=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert forced.returncode == 2, forced.stderr
    assert b"configuration error: RELAY_SHELL_CONTAINMENT=cgroup, but no cgroup v2 hierarchy" in forced.stderr
    checked = subprocess.run(
        without_cgroup2(RELAY, "--check-config"),
        env=server_env(tmp_path, RELAY_SHELL_CONTAINMENT="cgroup"),
        capture_output=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert checked.returncode == 2, checked.stderr
    assert b"FAIL RELAY_SHELL_CONTAINMENT: cgroup was asked for, but no cgroup v2 hierarchy" in (
        checked.stdout + checked.stderr
    )
    fine = subprocess.run(
        [RELAY, "--check-config"],
        env=server_env(tmp_path, RELAY_SHELL_CONTAINMENT="cgroup"),
        capture_output=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert fine.returncode == (2 if cgroup_unavailable() else 0), fine.stderr
    automatic = StdioServer(tmp_path, without_cgroup2(RELAY), RELAY_SHELL_CONTAINMENT="auto")
    servers.append(automatic)
    automatic.initialize()
    automatic.call(2, "server_info", {})
    answer = automatic.receive()
    assert answer["id"] == 2
    assert answer["result"]["structuredContent"]["containment"] == "subreaper"
    assert automatic.process.stdin is not None
    automatic.process.stdin.close()
    assert automatic.process.wait(timeout=60) == 0
