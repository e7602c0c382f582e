"""Lost MCP responses through the Caddy edge: many tool calls through a real Caddy, counted.

Per configuration (``--list``): a real ``relay-shell`` HTTP server on a free loopback port and
a real ``caddy run`` in front of it, with ``deploy/Caddyfile`` rendered for an offline run
(Caddy's local CA, listeners and admin on 127.0.0.1, storage in a temp dir, allowlist
127.0.0.1/32, public name relay.localhost pinned to 127.0.0.1). Configurations other than
``shipped`` replace the streaming-tuning block and edit a few lines; ``direct`` is the control
(no Caddy). Phases, with the official MCP Python client:

- sequential: SEQUENTIAL calls on one session, each bounded to TIMEOUT;
- concurrent: CONCURRENT calls released at once over SESSIONS sessions, each bounded to
  CONCURRENT_TIMEOUT (on 2 cores, 500 calls at once take 10-30 s even with no edge);
- idle-gap (with ``--idle-sessions``): calls IDLE_GAP seconds apart, at uvicorn's keep-alive.

A call that times out is lost; one that errors, or whose session the client tore down, failed.
Runs are the outer loop, so configurations are compared under the same load. Exit status 1
when any call was lost or failed. CADDY_LOSS_KEEP_LOGS=1 keeps the logs, CADDY_LOSS_DEBUG=1
turns on Caddy's debug log. See docs/deployment.md, "Edge: zero lost responses".

    .venv/bin/python bench/caddy_loss.py --config direct --config naive --config shipped --runs 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from relay_shell.deploy_check import render_edge_template

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.netutil
from tests.netutil import listens_on

REPO = Path(__file__).resolve().parents[1]
RELAY = str(Path(sys.executable).parent / "relay-shell")
CADDY = "/usr/bin/caddy"
DOMAIN = "relay.localhost"  # the edge's public name; the client pins it to 127.0.0.1
TEMPLATE = REPO / "deploy" / "Caddyfile"
TUNING_BEGIN = "# --- BEGIN streaming tuning"
TUNING_END = "# --- END streaming tuning ---"
START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 20.0
CALL_TIMEOUT_S = 10.0
CONCURRENT_TIMEOUT_S = 120.0
SESSION_DEADLINE_S = 60.0
KEEP_LOGS = bool(os.environ.get("CADDY_LOSS_KEEP_LOGS"))
WORKLOADS: dict[str, dict[str, object]] = {"server_info": {}, "shell_exec": {"command": "true"}}


@dataclass(frozen=True)
class Setup:
    """One configuration under test: edits to the edge's Caddyfile (the server is always the same).

    ``tuning`` replaces the body of the Caddyfile's streaming-tuning block (None keeps the
    shipped block); ``edits`` are (old, new) text replacements applied to the template first;
    ``direct`` bypasses Caddy (the control).
    """

    description: str
    tuning: tuple[str, ...] | None = None
    edits: tuple[tuple[str, str], ...] = ()
    direct: bool = False


# Edits that take the shipped file back to the original recipe (flush_interval -1, nothing else).
REQUEST_BODY_BLOCK = "\t\trequest_body {\n\t\t\tmax_size 5MiB\n\t\t}\n"
NO_REQUEST_BODY = ((REQUEST_BODY_BLOCK, ""),)
SETUPS: dict[str, Setup] = {
    "direct": Setup("no edge: the client talks to uvicorn (control)", direct=True),
    "shipped": Setup("deploy/Caddyfile as shipped"),
    "naive": Setup(
        "the original recipe: flush_interval -1 and nothing else", tuning=(), edits=NO_REQUEST_BODY
    ),
    "keepalive-off": Setup(
        "naive + no upstream connection reuse (a new connection per request)",
        tuning=("transport http {", "\tkeepalive off", "}"),
        edits=NO_REQUEST_BODY,
    ),
    "body-limit": Setup("naive + request_body max_size 5MiB", tuning=()),
    "buffered": Setup("naive + buffer_requests", tuning=("buffer_requests",), edits=NO_REQUEST_BODY),
    "buffered-capped": Setup(
        "naive + buffer_requests + max_buffer_size 5MiB",
        tuning=("buffer_requests", "max_buffer_size 5MiB"),
        edits=NO_REQUEST_BODY,
    ),
}


@dataclass
class Tally:
    """Outcome of one phase: completed calls, lost ones (timed out) and other failures."""

    expected: int
    completed: int = 0
    lost: int = 0
    errors: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    slowest_s: float = 0.0

    @property
    def accounted(self) -> int:
        return self.completed + self.lost + len(self.errors)


@dataclass(frozen=True)
class Plan:
    """What to measure (fields named like the command-line options; times in seconds)."""

    mode: str
    tool: str = "server_info"
    sequential: int = 2000
    concurrent: int = 500
    sessions: int = 50
    timeout: float = CALL_TIMEOUT_S
    concurrent_timeout: float = CONCURRENT_TIMEOUT_S
    idle_sessions: int = 0
    idle_rounds: int = 10
    idle_gap: float = 5.0
    idle_jitter: float = 0.1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition: Callable[[], bool], what: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``condition()`` until true; raise with the log's tail when the process exits or time runs out."""
    deadline = time.monotonic() + START_DEADLINE_S
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)


def stop(process: subprocess.Popen[bytes], what: str) -> int:
    """SIGTERM, wait; SIGKILL when it does not exit in time. Returns the exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=STOP_DEADLINE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_DEADLINE_S)
        raise RuntimeError(f"{what} ignored SIGTERM for {STOP_DEADLINE_S} s") from None


class PinnedToLoopback(httpx2.AsyncBaseTransport):
    """Sends every request to 127.0.0.1 while keeping the URL's name for Host, SNI and the cert check."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.inner = httpx2.AsyncHTTPTransport(
            verify=context,
            trust_env=False,
            limits=httpx2.Limits(max_connections=200, max_keepalive_connections=200),
        )

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        request.extensions = {**request.extensions, "sni_hostname": request.url.host}
        request.url = request.url.copy_with(host="127.0.0.1")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@contextlib.contextmanager
def relay_server(state: Path, extra_env: dict[str, str]) -> Iterator[int]:
    """A relay-shell HTTP server for the duration of the block; yields its port."""
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(state),
        "RELAY_SHELL_TRANSPORT": "http",
        "RELAY_SHELL_HTTP_PORT": str(port),
        "RELAY_SHELL_AUDIT_PATH": str(state / "audit.jsonl"),
        "RELAY_SHELL_SSH_CONFIG": str(state / "ssh_config"),
        "RELAY_SHELL_SSH_KNOWN_HOSTS_FILE": str(state / "known_hosts"),
        "RELAY_SHELL_AUTH_STATE_DIR": str(state / "oauth"),
        **extra_env,
    }
    log = state / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [RELAY], env=env, cwd=state, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        wait_until(lambda: listens_on(process.pid, port), "relay-shell", process, log)
        yield port
    finally:
        code = stop(process, "relay-shell")
        if code != 0:
            raise RuntimeError(f"relay-shell exited {code} on SIGTERM")


def local_caddyfile(setup: Setup, upstream_port: int, https_port: int) -> str:
    """deploy/Caddyfile rendered for an offline loopback run, with the tuning block replaced if given."""
    text = TEMPLATE.read_text(encoding="utf-8")
    for old, new in setup.edits:
        assert old in text, f"edit target not in the template: {old!r}"
        text = text.replace(old, new)
    lines = text.splitlines(keepends=True)
    tuning = setup.tuning
    if tuning is not None:
        begin = next(number for number, line in enumerate(lines) if TUNING_BEGIN in line)
        while not lines[begin].rstrip().endswith("---"):
            begin += 1  # the header comment may span lines; it ends with "---"
        end = next(number for number, line in enumerate(lines) if TUNING_END in line)
        lines[begin + 1 : end] = [f"\t\t\t{line}\n" for line in tuning]
    text = "".join(lines)
    local_options = (
        f"\tlocal_certs\n\tskip_install_trust\n\tadmin 127.0.0.1:{free_port()}\n"
        f"\thttp_port {free_port()}\n\thttps_port {https_port}\n\tdefault_bind 127.0.0.1\n"
    ) + ("\tdebug\n" if os.environ.get("CADDY_LOSS_DEBUG") else "")
    text = text.replace(
        "\temail {$RELAY_SHELL_EDGE_EMAIL}\n", "\temail {$RELAY_SHELL_EDGE_EMAIL}\n" + local_options, 1
    )
    values = {
        "RELAY_SHELL_EDGE_DOMAIN": DOMAIN,
        "RELAY_SHELL_EDGE_EMAIL": "ops@example.com",
        "RELAY_SHELL_EDGE_ALLOWED_CIDRS": "127.0.0.1/32",
        "RELAY_SHELL_EDGE_UPSTREAM": f"127.0.0.1:{upstream_port}",
    }
    return render_edge_template(text, values)


@contextlib.contextmanager
def caddy_edge(state: Path, setup: Setup, upstream_port: int) -> Iterator[tuple[int, ssl.SSLContext]]:
    """A Caddy in front of ``upstream_port``; yields its https port and a context trusting its CA."""
    https_port = free_port()
    config = state / "Caddyfile"
    config.write_text(local_caddyfile(setup, upstream_port, https_port))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(state),
        "XDG_DATA_HOME": str(state / "data"),
        "XDG_CONFIG_HOME": str(state / "config"),
    }
    log = state / "caddy.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [CADDY, "run", "--config", str(config), "--adapter", "caddyfile"],
            env=env,
            cwd=state,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    root = state / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
    try:
        wait_until(root.is_file, "caddy (its local CA)", process, log)
        wait_until(lambda: listens_on(process.pid, https_port), "caddy", process, log)
        yield https_port, ssl.create_default_context(cafile=str(root))
    finally:
        stop(process, "caddy")


class SessionLost(Exception):
    """The client session died under a call (the SDK tears a session down on a transport error)."""


async def timed_call(client: Client, tool: str, tally: Tally, timeout_s: float) -> None:
    """One call with a bounded wait: a timeout is a lost response, anything else not ok a failure."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            result = await client.call_tool(tool, WORKLOADS[tool])
        tally.slowest_s = max(tally.slowest_s, time.perf_counter() - started)
    except TimeoutError:
        tally.lost += 1
        return
    except Exception as exc:
        tally.errors.append(f"{type(exc).__name__}: {exc}")
        return
    structured = result.structured_content or {}
    if result.is_error or (tool == "shell_exec" and structured.get("exit_code") != 0):
        tally.errors.append(f"isError or wrong answer: {structured}")
    else:
        tally.completed += 1


@contextlib.asynccontextmanager
async def session(url: str, context: ssl.SSLContext | None, mode: str) -> AsyncIterator[Client]:
    """An MCP client session over streamable HTTP (through Caddy when ``context`` is given).

    Raises SessionLost when the SDK tore the session down (its task group failed).
    """
    http = httpx2.AsyncClient(
        transport=PinnedToLoopback(context) if context is not None else None,
        trust_env=False,
        timeout=httpx2.Timeout(CALL_TIMEOUT_S * 3, read=300.0),
        limits=httpx2.Limits(max_connections=200, max_keepalive_connections=200),
    )
    try:
        async with http, Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            yield client
    except* (httpx2.HTTPError, OSError) as group:
        first = group.exceptions[0]
        raise SessionLost(f"{type(first).__name__}: {first}") from None


async def call_batch(
    url: str, context: ssl.SSLContext | None, plan: Plan, calls: int, line: asyncio.Barrier | None = None
) -> Tally:
    """``calls`` calls on one session: in sequence, or all at once when every session is at ``line``.

    A call whose session died under it is a failure; sequential calls go on on a new session.
    """
    tally = Tally(calls)
    released = line is None
    while tally.accounted < calls:
        try:
            async with session(url, context, plan.mode) as client:
                if line is None:
                    while tally.accounted < calls:
                        await timed_call(client, plan.tool, tally, plan.timeout)
                    return tally
                async with asyncio.timeout(SESSION_DEADLINE_S):
                    await line.wait()  # every session connected: release the calls together
                released = True
                async with asyncio.TaskGroup() as group:
                    for _ in range(calls):
                        group.create_task(timed_call(client, plan.tool, tally, plan.concurrent_timeout))
                return tally
        except SessionLost as exc:
            unanswered = 1 if line is None else calls - tally.accounted
            tally.errors.extend([f"session lost: {exc}"] * max(unanswered, 1))
            if line is not None:
                if not released:  # still let the other sessions through
                    async with asyncio.timeout(SESSION_DEADLINE_S):
                        await line.wait()
                return tally
    return tally


async def idle_batch(url: str, context: ssl.SSLContext | None, plan: Plan, generator: random.Random) -> Tally:
    """One session making ``plan.idle_rounds`` calls, each after an idle gap near ``plan.idle_gap``.

    The gaps put reused upstream connections right at the server's keep-alive timeout.
    """
    tally = Tally(plan.idle_rounds)
    while tally.accounted < plan.idle_rounds:
        try:
            async with session(url, context, plan.mode) as client:
                while tally.accounted < plan.idle_rounds:
                    await timed_call(client, plan.tool, tally, plan.timeout)
                    gap = plan.idle_gap + generator.uniform(-plan.idle_jitter, plan.idle_jitter)
                    if tally.accounted < plan.idle_rounds:
                        await asyncio.sleep(gap)
        except SessionLost as exc:
            tally.errors.append(f"session lost: {exc}")
    return tally


def merged(expected: int, parts: list[Tally], elapsed_s: float) -> Tally:
    total = Tally(expected, elapsed_s=elapsed_s)
    for part in parts:
        total.completed += part.completed
        total.lost += part.lost
        total.errors.extend(part.errors)
        total.slowest_s = max(total.slowest_s, part.slowest_s)
    return total


async def measure(url: str, context: ssl.SSLContext | None, plan: Plan) -> dict[str, Tally]:
    """The sequential phase, the concurrent one, then (when asked) the idle-gap one."""
    phases: dict[str, Tally] = {}
    started = time.perf_counter()
    phases["sequential"] = await call_batch(url, context, plan, plan.sequential)
    phases["sequential"].elapsed_s = time.perf_counter() - started
    shares = [
        plan.concurrent // plan.sessions + (1 if index < plan.concurrent % plan.sessions else 0)
        for index in range(plan.sessions)
    ]
    line = asyncio.Barrier(len(shares))
    started = time.perf_counter()
    parts = await asyncio.gather(*(call_batch(url, context, plan, share, line) for share in shares))
    phases["concurrent"] = merged(plan.concurrent, list(parts), time.perf_counter() - started)
    if plan.idle_sessions and plan.idle_rounds:
        generator = random.Random(0)
        started = time.perf_counter()
        parts = await asyncio.gather(
            *(idle_batch(url, context, plan, generator) for _ in range(plan.idle_sessions))
        )
        phases["idle-gap"] = merged(
            plan.idle_sessions * plan.idle_rounds, list(parts), time.perf_counter() - started
        )
    return phases


def caddy_errors(log: Path) -> Counter[str]:
    """Caddy's logged proxy errors, by their message (a hint at the cause of a loss)."""
    found: Counter[str] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        if '"level":"error"' in line:
            match = re.search(r'"msg":"([^"]*)".*"error":"([^"]*)"', line)
            text = f"{match.group(1)}: {match.group(2)}" if match else line[:160]
            found[re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)] += 1
    return found


def run_setup(setup: Setup, plan: Plan) -> tuple[dict[str, Tally], Counter[str]]:
    """Server (and edge) up, the phases measured, everything stopped."""
    with tempfile.TemporaryDirectory(prefix="relay-caddy-loss-", delete=not KEEP_LOGS) as temp:
        state = Path(temp)
        if KEEP_LOGS:
            print(f"    logs kept in {state}")
        (state / "server").mkdir()
        (state / "edge").mkdir()
        with relay_server(state / "server", {"RELAY_SHELL_HTTP_ALLOWED_HOSTS": DOMAIN}) as port:
            if setup.direct:
                return asyncio.run(measure(f"http://127.0.0.1:{port}/mcp", None, plan)), Counter()
            with caddy_edge(state / "edge", setup, port) as (https_port, context):
                phases = asyncio.run(measure(f"https://{DOMAIN}:{https_port}/mcp", context, plan))
            return phases, caddy_errors(state / "edge" / "caddy.log")


def row(name: str, mode: str, run: int, phase: str, tally: Tally) -> str:
    rate = tally.completed / tally.elapsed_s if tally.elapsed_s else 0.0
    return (
        f"{name:22} {mode:6} {run:3d}  {phase:10} {tally.expected:6d} {tally.completed:9d} {tally.lost:5d} "
        f"{len(tally.errors):6d}  {tally.elapsed_s:7.1f} {rate:7.0f} {tally.slowest_s:7.2f}"
    )


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", action="append", choices=sorted(SETUPS), help="repeatable; default: direct, shipped"
    )
    parser.add_argument(
        "--mode",
        action="append",
        choices=("auto", "legacy"),
        help="client protocol, repeatable; default both (auto: 2026-07-28, JSON; legacy: SSE answers)",
    )
    parser.add_argument("--list", action="store_true", help="describe the configurations and exit")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--tool", choices=sorted(WORKLOADS), default=Plan.tool)
    for option in fields(Plan):
        if option.name not in ("mode", "tool"):
            flag = "--" + option.name.replace("_", "-")
            parser.add_argument(flag, type=type(option.default), default=option.default, help="%(default)s")
    return parser.parse_args()


def describe(args: argparse.Namespace) -> None:
    idle = f"; idle-gap: {args.idle_sessions} x {args.idle_rounds} calls {args.idle_gap} s apart"
    print(
        f"tool {args.tool}; {args.sequential} sequential calls (each bounded to {args.timeout:.0f} s); "
        f"{args.concurrent} concurrent calls over {args.sessions} sessions "
        f"(bounded to {args.concurrent_timeout:.0f} s){idle if args.idle_sessions else ''}"
    )
    print(
        f"{'configuration':22} {'mode':6} run  {'phase':10} {'calls':>6} {'completed':>9} {'lost':>5} "
        f"{'failed':>6}  {'seconds':>7} {'calls/s':>7} {'slowest':>7}"
    )


def plan_for(args: argparse.Namespace, mode: str) -> Plan:
    options = {option.name: getattr(args, option.name) for option in fields(Plan) if option.name != "mode"}
    return Plan(mode=mode, **options)


def measure_and_print(name: str, mode: str, run: int, plan: Plan) -> int:
    """One configuration in one mode: its table rows; returns the number of lost and failed calls."""
    phases, errors = run_setup(SETUPS[name], plan)
    failures = 0
    for phase, tally in phases.items():
        print(row(name, mode, run, phase, tally), flush=True)
        failures += tally.lost + len(tally.errors)
        for error, count in Counter(tally.errors).most_common(2):
            print(f"    {count}x {error[:160]}")
    for message, count in errors.most_common(3):
        print(f"    caddy logged {count}x {message[:160]}")
    return failures


def stop_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so the server and Caddy are stopped on the way out."""
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    args = arguments()
    if args.list:
        for name, setup in SETUPS.items():
            print(f"{name:22} {setup.description}")
        return 0
    if shutil.which(CADDY) is None:
        print(f"{CADDY} not found: apt-get install caddy", file=sys.stderr)
        return 2
    describe(args)
    failures = 0
    for run in range(1, args.runs + 1):  # runs outermost: configurations compared under the same load
        for name in args.config or ["direct", "shipped"]:
            for mode in args.mode or ["auto", "legacy"]:
                failures += measure_and_print(name, mode, run, plan_for(args, mode))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
