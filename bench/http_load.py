"""Load on the streamable HTTP transport: latency of concurrent tool calls against a real server.

Starts ``.venv/bin/relay-shell`` over HTTP on a free loopback port (state in a temp dir), then
for each workload opens CLIENTS MCP sessions, releases them together and has each make CALLS
sequential calls: ``server_info`` (a no-op through the whole pipeline: the floor) and
``shell_exec true`` (one process spawn per call). Prints p50/p99/max latency, throughput and
the error count (an ``isError`` result, a wrong answer or an exception), then stops the server
with SIGTERM. Exit status 1 when any call failed or the server did not stop cleanly.

    .venv/bin/python bench/http_load.py [--clients 20] [--calls 10] [--mode auto|legacy]

Numbers are for comparing runs on the same machine (see TESTING-NOTES: HTTP no-op is about 2x
a stdio no-op), not thresholds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mcp import Client

RELAY = str(Path(sys.executable).parent / "relay-shell")
START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 20.0
CALL_TIMEOUT_S = 60.0
WORKLOADS: dict[str, tuple[str, dict[str, object]]] = {
    "no-op (server_info)": ("server_info", {}),
    "shell_exec true": ("shell_exec", {"command": "true"}),
}


@dataclass
class Tally:
    latencies_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def healthy(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{url}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def relay_server(state: Path) -> Iterator[str]:
    """A relay-shell HTTP server for the duration of the block; yields its base URL."""
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
    }
    log_path = state / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [RELAY], env=env, cwd=state, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_DEADLINE_S
        while not healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"relay-shell did not start:\n{log_path.read_text(errors='replace')[-2000:]}"
                )
            time.sleep(0.05)
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_DEADLINE_S)
            code = -signal.SIGKILL
        print(f"server stopped with exit status {code}")
        if code != 0:
            raise RuntimeError(f"relay-shell exited {code} on SIGTERM")


class StartLine:
    """Holds every client at the line until all sessions are up, so the clock measures calls only."""

    def __init__(self, clients: int) -> None:
        self.waiting = clients
        self.all_arrived = asyncio.Event()
        self.go = asyncio.Event()

    def arrive(self) -> None:
        self.waiting -= 1
        if self.waiting == 0:
            self.all_arrived.set()


async def one_client(
    url: str, mode: str, workload: tuple[str, dict[str, object]], calls: int, line: StartLine, tally: Tally
) -> None:
    """One MCP session: connect and warm up, wait at the line, then ``calls`` sequential calls."""
    tool, arguments = workload
    arrived = False
    try:
        async with Client(f"{url}/mcp", mode=mode, read_timeout_seconds=CALL_TIMEOUT_S) as client:
            await client.call_tool(tool, arguments)  # not measured
            line.arrive()
            arrived = True
            await line.go.wait()
            for _ in range(calls):
                started = time.perf_counter()
                try:
                    result = await client.call_tool(tool, arguments)
                except Exception as exc:
                    tally.errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                tally.latencies_s.append(time.perf_counter() - started)
                structured = result.structured_content or {}
                if result.is_error or (tool == "shell_exec" and structured.get("exit_code") != 0):
                    tally.errors.append(f"isError or wrong answer: {structured}")
    except Exception as exc:
        tally.errors.append(f"session failed: {type(exc).__name__}: {exc}")
    finally:
        if not arrived:
            line.arrive()


async def run_workload(url: str, mode: str, label: str, clients: int, calls: int) -> Tally:
    tally = Tally()
    line = StartLine(clients)
    tasks = [
        asyncio.create_task(one_client(url, mode, WORKLOADS[label], calls, line, tally))
        for _ in range(clients)
    ]
    async with asyncio.timeout(START_DEADLINE_S):
        await line.all_arrived.wait()
    started = time.perf_counter()
    line.go.set()
    await asyncio.gather(*tasks)
    report(label, tally, time.perf_counter() - started, clients * calls)
    return tally


def percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def report(label: str, tally: Tally, elapsed_s: float, expected: int) -> None:
    values = sorted(tally.latencies_s)
    if values:
        print(
            f"{label:22} {len(values):4d}/{expected} calls  "
            f"p50 {percentile(values, 0.50) * 1000:7.1f} ms  p99 {percentile(values, 0.99) * 1000:7.1f} ms  "
            f"max {values[-1] * 1000:7.1f} ms  mean {statistics.fmean(values) * 1000:7.1f} ms  "
            f"{len(values) / elapsed_s:6.0f} calls/s  errors {len(tally.errors)}"
        )
    else:
        print(f"{label:22} no call completed, errors {len(tally.errors)}")
    for error in tally.errors[:5]:
        print(f"    {error[:200]}")


async def bench(url: str, mode: str, clients: int, calls: int) -> int:
    print(f"{clients} concurrent clients x {calls} sequential calls, protocol mode {mode}")
    errors = 0
    for label in WORKLOADS:
        errors += len((await run_workload(url, mode, label, clients, calls)).errors)
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--mode", choices=("auto", "legacy"), default="auto")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as temp, relay_server(Path(temp)) as url:
        errors = asyncio.run(bench(url, args.mode, args.clients, args.calls))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
