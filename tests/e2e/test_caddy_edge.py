"""The shipped Caddy edge (deploy/Caddyfile) in front of the real relay-shell: no MCP response lost.

A real ``/usr/bin/caddy run`` serves the shipped Caddyfile, rendered for an offline loopback run
(Caddy's local CA instead of ACME, listeners and admin on 127.0.0.1, storage in a temp dir), in
front of the real ``relay-shell`` HTTP server. The MCP client reaches it by its public name
``relay.localhost`` (pinned to 127.0.0.1, certificate checked against Caddy's root), so the
edge forwards that name and relay-shell accepts it through ``RELAY_SHELL_HTTP_ALLOWED_HOSTS``.

Without the request-body settings of the shipped file, Caddy 2.6 cut off up to 4 % of tool-call
answers (docs/deployment.md, "Edge: zero lost responses"), and these tests fail. The full
2,000 + 500 calls are bench/caddy_loss.py's job; these tests make 400 per protocol generation.
Needs the Debian package caddy (scripts/setup --dev installs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from relay_shell.deploy_check import render_edge_template
from tests.netutil import listens_on

REPO = Path(__file__).resolve().parents[2]
RELAY = str(Path(sys.executable).parent / "relay-shell")
CADDY = "/usr/bin/caddy"
DOMAIN = "relay.localhost"
START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 20.0
CALL_TIMEOUT_S = 10.0
SEQUENTIAL_CALLS = 300
CONCURRENT_CALLS = 100
CONCURRENT_SESSIONS = 10
SECURITY_HEADERS = {
    "strict-transport-security": "max-age=31536000; includeSubDomains",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    "referrer-policy": "no-referrer",
}

pytestmark = pytest.mark.slow


def caddy_binary() -> str:
    if not os.access(CADDY, os.X_OK):
        pytest.fail(f"{CADDY} is missing: apt-get install caddy (scripts/setup --dev installs it)")
    return CADDY


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def poll_until(ready: Callable[[], bool], process: subprocess.Popen[bytes], log: Path, what: str) -> None:
    """Poll ``ready`` with a bounded deadline; fail with the log's tail when the process exits first."""
    deadline = time.monotonic() + START_DEADLINE_S
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what} did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM and wait; SIGKILL (and fail) when it does not exit in time. Returns the exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=STOP_DEADLINE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_DEADLINE_S)
        pytest.fail(f"pid {process.pid} ignored SIGTERM for {STOP_DEADLINE_S} s")


def gone(pid: int) -> bool:
    """The process no longer exists (reaped), or is a zombie nobody reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2] in ("Z", "X")


def listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class PinnedToLoopback(httpx2.AsyncBaseTransport):
    """Sends every request to 127.0.0.1 while keeping the URL's name for Host, SNI and the cert check."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.inner = httpx2.AsyncHTTPTransport(verify=context, trust_env=False)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        request.extensions = {**request.extensions, "sni_hostname": request.url.host}
        request.url = request.url.copy_with(host="127.0.0.1")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Edge:
    """A relay-shell server and the Caddy in front of it."""

    relay: subprocess.Popen[bytes]
    relay_port: int
    caddy: subprocess.Popen[bytes]
    https_port: int
    context: ssl.SSLContext
    caddy_log: Path
    pids: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://{DOMAIN}:{self.https_port}"

    def http(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=PinnedToLoopback(self.context), timeout=CALL_TIMEOUT_S)


def local_caddyfile(*, upstream_port: int, https_port: int, allowed_cidrs: str) -> str:
    """The shipped template rendered for an offline loopback run; its site block is left as shipped."""
    template = (REPO / "deploy" / "Caddyfile").read_text(encoding="utf-8")
    anchor = "\temail {$RELAY_SHELL_EDGE_EMAIL}\n"
    assert anchor in template
    local_options = (
        "\tlocal_certs\n\tskip_install_trust\n"
        f"\tadmin 127.0.0.1:{free_port()}\n\thttp_port {free_port()}\n\thttps_port {https_port}\n"
        "\tdefault_bind 127.0.0.1\n"
    )
    values = {
        "RELAY_SHELL_EDGE_DOMAIN": DOMAIN,
        "RELAY_SHELL_EDGE_EMAIL": "ops@example.com",
        "RELAY_SHELL_EDGE_ALLOWED_CIDRS": allowed_cidrs,
        "RELAY_SHELL_EDGE_UPSTREAM": f"127.0.0.1:{upstream_port}",
    }
    return render_edge_template(template.replace(anchor, anchor + local_options, 1), values)


def start_relay(state: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(state),
        "RELAY_SHELL_TRANSPORT": "http",
        "RELAY_SHELL_HTTP_PORT": str(port),
        "RELAY_SHELL_HTTP_ALLOWED_HOSTS": DOMAIN,
        "RELAY_SHELL_AUDIT_PATH": str(state / "audit.jsonl"),
        "RELAY_SHELL_SSH_CONFIG": str(state / "ssh_config"),
        "RELAY_SHELL_SSH_KNOWN_HOSTS_FILE": str(state / "known_hosts"),
        "RELAY_SHELL_AUTH_STATE_DIR": str(state / "oauth"),
    }
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    log = state / "relay.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [RELAY], env=env, cwd=state, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink
        )
    try:
        poll_until(lambda: listens_on(process.pid, port), process, log, "relay-shell")
    except BaseException:
        stop(process)
        raise
    return process, port


def start_caddy(
    state: Path, relay_port: int, allowed_cidrs: str, https_port: int | None = None
) -> tuple[subprocess.Popen[bytes], int, ssl.SSLContext]:
    """Caddy on ``https_port`` (a free one by default) in front of ``relay_port``; its local CA's context."""
    https_port = https_port or free_port()
    config = state / "Caddyfile"
    config.write_text(
        local_caddyfile(upstream_port=relay_port, https_port=https_port, allowed_cidrs=allowed_cidrs)
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(state),
        "XDG_DATA_HOME": str(state / "data"),
        "XDG_CONFIG_HOME": str(state / "config"),
    }
    log = state / "caddy.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [caddy_binary(), "run", "--config", str(config), "--adapter", "caddyfile"],
            env=env,
            cwd=state,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
        )
    root = state / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
    try:
        poll_until(root.is_file, process, log, "caddy's local CA")
        poll_until(lambda: listens_on(process.pid, https_port), process, log, "caddy")
    except BaseException:
        stop(process)
        raise
    return process, https_port, ssl.create_default_context(cafile=str(root))


@contextlib.contextmanager
def running_edge(state: Path, allowed_cidrs: str = "127.0.0.1/32") -> Iterator[Edge]:
    """relay-shell and Caddy for the block; both are stopped and reaped after it."""
    (state / "relay").mkdir(parents=True)
    (state / "edge").mkdir()
    relay, relay_port = start_relay(state / "relay")
    try:
        caddy, https_port, context = start_caddy(state / "edge", relay_port, allowed_cidrs)
        try:
            yield Edge(relay, relay_port, caddy, https_port, context, state / "edge" / "caddy.log")
        finally:
            assert stop(caddy) == 0, (state / "edge" / "caddy.log").read_text(errors="replace")[-2000:]
    finally:
        assert stop(relay) == 0, (state / "relay" / "relay.log").read_text(errors="replace")[-2000:]


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    with running_edge(tmp_path_factory.mktemp("caddy-edge")) as running:
        yield running
    for process, port in ((running.caddy, running.https_port), (running.relay, running.relay_port)):
        assert gone(process.pid) and not listening(port)


@dataclass
class Tally:
    completed: int = 0
    lost: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def accounted(self) -> int:
        return self.completed + self.lost + len(self.failures)


@contextlib.asynccontextmanager
async def mcp_session(edge: Edge, mode: str) -> AsyncIterator[Client]:
    async with (
        edge.http() as http,
        Client(streamable_http_client(f"{edge.url}/mcp", http_client=http), mode=mode) as client,
    ):
        yield client


async def bounded_call(client: Client, tally: Tally) -> None:
    """server_info with a bounded wait: a timeout is a lost answer, anything else wrong a failure."""
    try:
        async with asyncio.timeout(CALL_TIMEOUT_S):
            result = await client.call_tool("server_info", {})
    except TimeoutError:
        tally.lost += 1
        return
    except Exception as exc:
        tally.failures.append(f"{type(exc).__name__}: {exc}")
        return
    if result.is_error or not result.structured_content:
        tally.failures.append(f"isError or empty answer: {result}")
    else:
        tally.completed += 1


async def session_calls(edge: Edge, mode: str, calls: int, *, at_once: bool) -> Tally:
    """``calls`` calls on one session, one after another or all at once.

    A cut answer can make the SDK tear the whole session down (a transport error in its task
    group): every call still unanswered then counts as a failure, and sequential calls go on
    on a new session.
    """
    tally = Tally()
    while tally.accounted < calls:
        try:
            async with mcp_session(edge, mode) as client:
                if at_once:
                    async with asyncio.TaskGroup() as group:
                        for _ in range(calls):
                            group.create_task(bounded_call(client, tally))
                while tally.accounted < calls:
                    await bounded_call(client, tally)
        except* (httpx2.HTTPError, OSError) as group:
            unanswered = calls - tally.accounted if at_once else 1
            tally.failures.extend([f"session lost: {group.exceptions[0]!r}"] * max(unanswered, 1))
    return tally


async def sequential_then_concurrent(edge: Edge, mode: str) -> Tally:
    tally = await session_calls(edge, mode, SEQUENTIAL_CALLS, at_once=False)
    share = CONCURRENT_CALLS // CONCURRENT_SESSIONS
    for part in await asyncio.gather(
        *(session_calls(edge, mode, share, at_once=True) for _ in range(CONCURRENT_SESSIONS))
    ):
        tally.completed += part.completed
        tally.lost += part.lost
        tally.failures.extend(part.failures)
    return tally


def proxy_errors(log: Path) -> list[str]:
    """Caddy's 'reading from backend' errors: the signature of an answer cut off at the edge."""
    return [
        line
        for line in log.read_text(errors="replace").splitlines()
        if '"msg":"reading from backend"' in line
    ]


# auto: the 2026-07-28 protocol (answers as JSON); legacy: handshake era (answers as SSE streams).
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_no_tool_call_answer_is_lost_through_the_edge(edge: Edge, mode: str) -> None:
    tally = await sequential_then_concurrent(edge, mode)
    assert (tally.lost, tally.failures[:3], len(tally.failures)) == (0, [], 0)
    assert tally.completed == SEQUENTIAL_CALLS + CONCURRENT_CALLS
    assert proxy_errors(edge.caddy_log) == []


async def test_responses_carry_the_security_headers(edge: Edge) -> None:
    async with edge.http() as http:
        answered = await http.get(f"{edge.url}/metrics")
        unknown = await http.get(f"{edge.url}/healthz")
    assert answered.status_code == 200 and "relay_shell_" in answered.text
    assert unknown.status_code == 404
    for response in (answered, unknown):
        assert {name: response.headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS
        assert "server" not in response.headers


async def test_a_client_outside_the_allowlist_gets_403(tmp_path: Path) -> None:
    with running_edge(tmp_path, allowed_cidrs="203.0.113.0/24 2001:db8::/48") as refusing:
        async with refusing.http() as http:
            post = await http.post(
                f"{refusing.url}/mcp",
                json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                headers={"accept": "application/json, text/event-stream"},
            )
            metrics = await http.get(f"{refusing.url}/metrics")
            token = await http.post(f"{refusing.url}/token", data={"grant_type": "refresh_token"})
        pids = [refusing.caddy.pid, refusing.relay.pid]
        ports = [refusing.https_port, refusing.relay_port]
    assert [(response.status_code, response.text) for response in (post, metrics, token)] == [
        (403, "forbidden")
    ] * 3
    assert {name: post.headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS
    assert all(gone(pid) for pid in pids) and not any(listening(port) for port in ports)
