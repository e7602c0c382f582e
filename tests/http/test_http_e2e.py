"""The real ``relay-shell`` command over streamable HTTP with the official MCP client (SPEC §10.1, §10.2).

Every server here is the installed ``relay-shell`` entry point started as a subprocess on a
free loopback port, with its audit trail, HOME and ssh files in a temp dir. One server is
shared by the tests that do not need a configuration of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx2
import pytest
from mcp import Client
from mcp.client.context import ClientRequestContext
from mcp_types import ElicitRequestParams, ElicitResult
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import initialize_message, pids_with_marker, read_audit, read_trail, sc
from tests.netutil import listens_on

RELAY = str(Path(sys.executable).parent / "relay-shell")
START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 20.0
PORT_ATTEMPTS = 5
# The 2026-07-28 protocol the client negotiates by default, and the handshake-era one
# (2025-11-25) that most deployed MCP clients still speak.
MODES = ("auto", "legacy")
INITIALIZE = initialize_message("2025-11-25")


def server_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A minimal environment: state in ``tmp_path``, nothing inherited from a developer's shell."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "RELAY_SHELL_AUDIT_PATH": str(tmp_path / "audit.jsonl"),
        "RELAY_SHELL_AUDIT_ANCHOR": "off",
        "RELAY_SHELL_SSH_CONFIG": str(tmp_path / "ssh_config"),
        "RELAY_SHELL_SSH_KNOWN_HOSTS_FILE": str(tmp_path / "known_hosts"),
        "RELAY_SHELL_AUTH_STATE_DIR": str(tmp_path / "oauth"),
    }
    if "PYTHONPATH" in os.environ:  # the server runs the same code as the tests
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    env.update(extra)
    return env


def free_port() -> int:
    """A loopback port nobody listened on a moment ago (the caller retries on a collision)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RelayProcess:
    """A running ``relay-shell`` HTTP server."""

    process: subprocess.Popen[bytes]
    port: int
    state_dir: Path
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mcp_url(self) -> str:
        return f"{self.base_url}/mcp"

    @property
    def audit_path(self) -> Path:
        return self.state_dir / "audit.jsonl"

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def http(self) -> httpx2.Client:
        return httpx2.Client(base_url=self.base_url, timeout=10.0, trust_env=False)

    def stop(self) -> int:
        """SIGTERM, then the exit status (SIGKILL and fail when it does not exit in time)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_DEADLINE_S)
            pytest.fail(f"relay-shell ignored SIGTERM for {STOP_DEADLINE_S} s\n{self.log_tail()}")


def _wait_ready(relay: RelayProcess) -> bool:
    """Poll until this process listens and answers /healthz; False when it exited first."""
    deadline = time.monotonic() + START_DEADLINE_S
    with relay.http() as http:
        while time.monotonic() < deadline:
            if relay.process.poll() is not None:
                return False
            if listens_on(relay.process.pid, relay.port):
                with contextlib.suppress(httpx2.TransportError):
                    if http.get("/healthz").status_code == 200:
                        return True
            time.sleep(0.05)
    relay.stop()
    pytest.fail(f"relay-shell did not become healthy within {START_DEADLINE_S} s\n{relay.log_tail()}")


def start_relay(state_dir: Path, **env: str) -> RelayProcess:
    """Start ``relay-shell`` over HTTP on a free port; retry on another port if the bind lost a race.

    ``{port}`` in an ``env`` value stands for the port chosen (for the issuer URL, say).
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(PORT_ATTEMPTS):
        port = free_port()
        chosen = {name: value.replace("{port}", str(port)) for name, value in env.items()}
        log_path = state_dir / f"server-{attempt}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [RELAY],
                env=server_env(
                    state_dir, RELAY_SHELL_TRANSPORT="http", RELAY_SHELL_HTTP_PORT=str(port), **chosen
                ),
                cwd=state_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        relay = RelayProcess(process, port, state_dir, log_path)
        if _wait_ready(relay):
            return relay
        if "address already in use" not in relay.log_tail().lower():
            pytest.fail(f"relay-shell exited with {process.returncode} at start\n{relay.log_tail()}")
    pytest.fail(f"no free port after {PORT_ATTEMPTS} attempts")


@contextlib.contextmanager
def running_relay(state_dir: Path, **env: str) -> Iterator[RelayProcess]:
    relay = start_relay(state_dir, **env)
    try:
        yield relay
    except BaseException:
        relay.stop()
        raise
    code = relay.stop()
    assert code == 0, f"relay-shell exited {code} on SIGTERM\n{relay.log_tail()}"


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    """One server for the tests that need no configuration of their own (tier 3 confirms by elicitation)."""
    with running_relay(tmp_path_factory.mktemp("relay-http"), RELAY_SHELL_CONFIRM_TIER3="elicit") as server:
        yield server


def scrape(relay: RelayProcess) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``GET /metrics`` parsed: sample name -> sorted labels -> value."""
    with relay.http() as http:
        response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def post_initialize(relay: RelayProcess, **headers: str) -> httpx2.Response:
    with relay.http() as http:
        return http.post(
            "/mcp",
            json=INITIALIZE,
            headers={"accept": "application/json, text/event-stream", **headers},
        )


def initialize_result(response: httpx2.Response) -> dict[str, Any]:
    """The JSON-RPC result of an initialize answered as SSE or as plain JSON."""
    if response.headers["content-type"].startswith("text/event-stream"):
        data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
        message = json.loads(data[-1])
    else:
        message = response.json()
    return dict(message["result"])


# -- tools, progress, elicitation ------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_tools_listed_and_called(relay: RelayProcess, mode: str) -> None:
    async with Client(relay.mcp_url, mode=mode, read_timeout_seconds=30) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert {"shell_exec", "shell_script", "server_info", "audit_tail"} <= tools.keys()
        assert all(tool.description and tool.output_schema for tool in tools.values())
        result = await client.call_tool("shell_exec", {"command": f"echo over-http-{mode}"})
    assert result.is_error is False
    assert (sc(result)["exit_code"], sc(result)["output"]) == (0, f"over-http-{mode}\n")
    assert read_audit(relay.audit_path)[-1]["args"]["command"] == f"echo over-http-{mode}"


@pytest.mark.parametrize("mode", MODES)
async def test_progress_notifications_for_a_long_command(relay: RelayProcess, mode: str) -> None:
    received: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        received.append((progress, total, message))

    async with Client(relay.mcp_url, mode=mode, read_timeout_seconds=30) as client:
        result = await client.call_tool(
            "shell_exec", {"command": "echo begun; sleep 3; echo ended"}, progress_callback=on_progress
        )
    assert (sc(result)["exit_code"], sc(result)["output"]) == (0, "begun\nended\n")
    assert len(received) >= 2, received
    progress_values = [progress for progress, _, _ in received]
    assert progress_values == sorted(progress_values) and progress_values[0] > 0
    assert all(message and "elapsed" in message for _, _, message in received)


def answering(answer: Literal["accept", "decline"], asked: list[str]) -> Any:
    async def callback(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action=answer, content={"confirm": True} if answer == "accept" else None)

    return callback


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("answer", "runs"), [("accept", True), ("decline", False)])
async def test_tier3_confirmed_through_elicitation(
    relay: RelayProcess, tmp_path: Path, mode: str, answer: Literal["accept", "decline"], runs: bool
) -> None:
    victim = tmp_path / "victim"
    (victim / "inner").mkdir(parents=True)
    asked: list[str] = []
    async with Client(
        relay.mcp_url, mode=mode, read_timeout_seconds=30, elicitation_callback=answering(answer, asked)
    ) as client:
        result = await client.call_tool("shell_exec", {"command": f"rm -rf {victim}"})
    assert victim.exists() is not runs
    assert len(asked) == 1 and f"rm -rf {victim}" in asked[0]
    assert result.is_error is not runs
    record = read_audit(relay.audit_path)[-1]
    assert (record["tier"], record["confirmation"]) == (3, f"elicit:{answer}")
    if not runs:
        assert sc(result)["error"]["kind"] == "confirm_required"
        assert record["decision"] == "confirm_required"


@pytest.mark.parametrize("mode", MODES)
async def test_tier3_fails_closed_for_a_client_without_elicitation(
    relay: RelayProcess, tmp_path: Path, mode: str
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    async with Client(relay.mcp_url, mode=mode, read_timeout_seconds=30) as client:
        result = await client.call_tool("shell_exec", {"command": f"rm -rf {victim}"})
    assert victim.exists()
    assert sc(result)["error"]["kind"] == "confirm_required"


# -- probes and metrics ----------------------------------------------------------------------


def test_health_and_readiness(relay: RelayProcess) -> None:
    with relay.http() as http:
        health, ready = http.get("/healthz"), http.get("/readyz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "audit_writable": True, "audit_path": str(relay.audit_path)}


async def test_metrics_count_the_calls_just_made(relay: RelayProcess) -> None:
    before = scrape(relay)
    async with Client(relay.mcp_url, read_timeout_seconds=30) as client:
        await client.call_tool("shell_exec", {"command": "echo counted"})  # known-safe reads: tier 0
        await client.call_tool("shell_exec", {"command": "exit 3"})
        await client.call_tool("server_info", {})
        invalid = await client.call_tool("shell_exec", {"command": "true", "timeout": -1})
        guide = await client.get_prompt("operating_guide")
        inventory = await client.read_resource("relay-shell://inventory")
    assert sc(invalid)["error"]["kind"] == "invalid"
    assert guide.messages and inventory.contents
    after = scrape(relay)

    def delta(name: str, **labels: str) -> float:
        key = tuple(sorted(labels.items()))
        return after.get(name, {}).get(key, 0.0) - before.get(name, {}).get(key, 0.0)

    calls = "relay_shell_tool_calls_total"
    assert delta(calls, tool="shell_exec", tier="0", mode="open", outcome="ok") == 2
    assert delta(calls, tool="server_info", tier="0", mode="open", outcome="ok") == 1
    assert (
        delta(calls, tool="shell_exec", tier="", mode="open", outcome="error") == 1
    )  # refused before tiering
    assert delta("relay_shell_tool_duration_seconds_count", tool="shell_exec") == 3
    assert delta("relay_shell_tool_duration_seconds_bucket", tool="shell_exec", le="+Inf") == 3
    assert delta("relay_shell_tool_duration_seconds_count", tool="server_info") == 1
    assert after["relay_shell_tool_duration_seconds_sum"][(("tool", "shell_exec"),)] > 0
    for gauge in (
        "relay_shell_active_sessions",
        "relay_shell_active_forwards",
        "relay_shell_ssh_connections",
        "relay_shell_audit_degraded",
    ):
        assert after[gauge] == {(): 0.0}, gauge


async def test_unwritable_audit_makes_readyz_503(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a regular file where the audit directory should be\n")
    audit_path = blocker / "audit.jsonl"
    with running_relay(tmp_path / "state", RELAY_SHELL_AUDIT_PATH=str(audit_path)) as relay:
        with relay.http() as http:
            health, ready = http.get("/healthz"), http.get("/readyz")
        assert health.status_code == 200  # alive, but not ready
        assert ready.status_code == 503
        assert ready.json()["status"] == "degraded" and ready.json()["audit_writable"] is False
        assert scrape(relay)["relay_shell_audit_degraded"] == {(): 1.0}
        async with Client(relay.mcp_url, read_timeout_seconds=30) as client:
            refused = await client.call_tool("shell_exec", {"command": f"touch {tmp_path / 'unaudited'}"})
            info = await client.call_tool("server_info", {})
        assert sc(refused)["error"]["kind"] == "unavailable"  # no unaudited change (AUDIT_REQUIRED)
        assert not (tmp_path / "unaudited").exists()
        assert info.is_error is False  # tier 0 still answers


# -- DNS-rebinding protection ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 200),
        ({"host": "evil.example"}, 421),
        ({"host": "evil.example:80"}, 421),
        ({"host": "relay.example.org"}, 421),  # not configured on this server
        ({"origin": "http://evil.example"}, 403),
    ],
)
def test_dns_rebinding_protection(relay: RelayProcess, headers: dict[str, str], status: int) -> None:
    response = post_initialize(relay, **headers)
    assert response.status_code == status, response.text
    if status == 200:
        assert initialize_result(response)["serverInfo"]["name"] == "relay-shell"


def test_allowed_hosts_accepts_the_public_name(tmp_path: Path) -> None:
    with running_relay(tmp_path, RELAY_SHELL_HTTP_ALLOWED_HOSTS="relay.example.org") as relay:
        for headers in (
            {"host": "relay.example.org"},
            {"host": "relay.example.org:443", "origin": "https://relay.example.org"},
        ):
            response = post_initialize(relay, **headers)
            assert response.status_code == 200, (headers, response.text)
            assert initialize_result(response)["serverInfo"]["name"] == "relay-shell"
        assert post_initialize(relay, host="evil.example").status_code == 421


# -- load and shutdown -----------------------------------------------------------------------


async def test_concurrent_clients_lose_no_response(relay: RelayProcess) -> None:
    clients, calls_each = 20, 10

    async def one_client(index: int) -> list[tuple[str, str]]:
        async with Client(relay.mcp_url, read_timeout_seconds=60) as client:

            async def one_call(call: int) -> tuple[str, str]:
                expected = f"load-{index}-{call}"
                command = f"sleep 0; echo {expected}"  # tier 1: a start and an end record each
                result = await client.call_tool("shell_exec", {"command": command})
                assert result.is_error is False, result.content
                return expected, sc(result)["output"]

            return list(await asyncio.gather(*(one_call(call) for call in range(calls_each))))

    seq_before = max((record["seq"] for record in read_trail(relay.audit_path)), default=0)
    answers = [pair for batch in await asyncio.gather(*map(one_client, range(clients))) for pair in batch]
    assert len(answers) == clients * calls_each
    assert [output for _, output in answers] == [f"{expected}\n" for expected, _ in answers]
    assert len({expected for expected, _ in answers}) == clients * calls_each
    new_records = [record for record in read_audit(relay.audit_path) if record["seq"] > seq_before]
    assert sorted(record["args"]["command"] for record in new_records) == sorted(
        f"sleep 0; echo {expected}" for expected, _ in answers
    )
    trail = [record for record in read_trail(relay.audit_path) if record["seq"] > seq_before]
    assert [record["seq"] for record in trail] == list(range(seq_before + 1, seq_before + 401))  # no gap
    starts = [record["call_id"] for record in trail if record.get("phase") == "start"]
    ends = [record["call_id"] for record in trail if record.get("phase") == "end"]
    assert len(set(starts)) == 200
    assert sorted(starts) == sorted(ends)  # every call that started has its end


async def test_sigterm_exits_zero_and_kills_running_work(tmp_path: Path) -> None:
    relay = start_relay(tmp_path)
    marker = f"relay-http-sigterm-{time.monotonic_ns()}"
    exits = contextlib.AsyncExitStack()
    try:
        client = await exits.enter_async_context(Client(relay.mcp_url, read_timeout_seconds=60))
        call = asyncio.create_task(
            client.call_tool("shell_exec", {"command": f"echo started; sleep 300; echo never # {marker}"})
        )
        deadline = time.monotonic() + 15
        while not pids_with_marker(marker):
            assert time.monotonic() < deadline, "the command never started"
            assert not call.done(), call
            await asyncio.sleep(0.05)
        relay.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(relay.process.wait, STOP_DEADLINE_S)
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):  # the server is gone mid-call
            await call
    finally:
        with contextlib.suppress(Exception):  # closing the session cannot reach a stopped server
            await exits.aclose()
        relay.stop()
    assert code == 0, relay.log_tail()
    assert not Path(f"/proc/{relay.process.pid}").exists()
    assert pids_with_marker(marker) == []
    record = read_audit(relay.audit_path)[-1]
    assert (record["args"]["command"].endswith(marker), record["outcome"]) == (True, "cancelled")


def test_taken_port_exits_1_with_one_line(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        finished = subprocess.run(
            [RELAY],
            env=server_env(tmp_path, RELAY_SHELL_TRANSPORT="http", RELAY_SHELL_HTTP_PORT=str(port)),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=START_DEADLINE_S,
        )
    stderr = finished.stderr.decode()
    assert finished.returncode == 1, stderr
    assert f"relay-shell: cannot serve HTTP on 127.0.0.1:{port}" in stderr.splitlines()
    assert "Traceback" not in stderr
