"""P8: concurrent streamable-HTTP clients calling ``shell_exec true``, against a bare MCPServer floor.

Starts ``.venv/bin/relay-shell`` over HTTP on a free loopback port (state in a temp dir,
default settings: containment on, audit on) and ``bench/bare_server.py --http`` (a bare
MCPServer whose ``spawn_true`` tool runs ``true`` with pipes, nothing else). For each server,
CLIENTS MCP sessions (clients on this machine, in this process) are opened, released together,
and each makes CALLS sequential calls: ``shell_exec {"command": "true"}`` on relay-shell,
``spawn_true`` on the bare server. Rounds alternate between the two servers (ROUNDS each), so a
change of load hits both; the figure takes the median round of each (of two: the slower).

Target: 0 errors (an ``isError`` result, a wrong answer or an exception), p99 <= 1 s, and
relay-shell's throughput >= 0.9x the bare server's under the same load in the same run.

    .venv/bin/python bench/http_load.py [--clients 100] [--calls 20] [--rounds 2] [--mode auto|legacy]

Also imported by ``p1_exec.py`` for P1H (:func:`relay_http`, :func:`bare_http`).
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common import PYTHON, RELAY, Figure, _stat_fields, emit, measure, percentile, profile_summary, py_spy

BARE_SERVER = str(Path(__file__).resolve().parent / "bare_server.py")
START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 20.0
CALL_TIMEOUT_S = 60.0
TARGET_P99_S = 1.0
TARGET_THROUGHPUT = 0.9


@dataclass
class Tally:
    latencies_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    server_cpu_s: float = 0.0
    """CPU of the server process and of the children it reaped (the commands) during the round."""

    @property
    def cpu_per_call_ms(self) -> float:
        return self.server_cpu_s / len(self.latencies_s) * 1000 if self.latencies_s else 0.0

    @property
    def throughput(self) -> float:
        return len(self.latencies_s) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def p(self, fraction: float) -> float:
        return percentile(sorted(self.latencies_s), fraction) if self.latencies_s else float("inf")


@dataclass(frozen=True)
class HttpServer:
    """A server under test: its MCP URL and pid."""

    url: str
    pid: int


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _healthy(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{url}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def _server(
    argv: Sequence[str], env: dict[str, str], state: Path, port: int, name: str
) -> Iterator[HttpServer]:
    """Start ``argv``, wait until it answers on ``port``, stop it with SIGTERM afterwards."""
    log_path = state / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(argv), env=env, cwd=state, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_DEADLINE_S
        while not (_healthy(base) if name == "relay" else _listening(port)):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        yield HttpServer(f"{base}/mcp", process.pid)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_DEADLINE_S)
            code = -signal.SIGKILL
        if name == "relay" and code != 0:
            raise RuntimeError(f"relay-shell exited {code} on SIGTERM")


def relay_http(state: Path, **extra_env: str) -> contextlib.AbstractContextManager[HttpServer]:
    """relay-shell over streamable HTTP with its state under ``state`` (default settings otherwise)."""
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(state),
        "RELAY_SHELL_TRANSPORT": "http",
        "RELAY_SHELL_HTTP_PORT": str(port),
        "RELAY_SHELL_AUDIT_PATH": str(state / "audit.jsonl"),
        "RELAY_SHELL_AUDIT_ANCHOR": "off",
        "RELAY_SHELL_SSH_CONFIG": str(state / "ssh_config"),
        "RELAY_SHELL_SSH_KNOWN_HOSTS_FILE": str(state / "known_hosts"),
        "RELAY_SHELL_AUTH_STATE_DIR": str(state / "oauth"),
        **extra_env,
    }
    return _server([RELAY], env, state, port, "relay")


def bare_http(state: Path) -> contextlib.AbstractContextManager[HttpServer]:
    """``bench/bare_server.py`` over streamable HTTP."""
    port = free_port()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(state)}
    return _server([PYTHON, BARE_SERVER, "--http", str(port)], env, state, port, "bare")


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


@dataclass(frozen=True)
class Workload:
    """The tool a client calls and how its answer is checked."""

    tool: str
    arguments: dict[str, object]

    def correct(self, structured: dict[str, object]) -> bool:
        if self.tool == "shell_exec":
            return structured.get("exit_code") == 0
        return structured.get("result") == 0


RELAY_TRUE = Workload("shell_exec", {"command": "true"})
BARE_TRUE = Workload("spawn_true", {})


async def one_client(
    url: str, mode: str, workload: Workload, calls: int, line: StartLine, tally: Tally
) -> None:
    """One MCP session: connect and warm up, wait at the line, then ``calls`` sequential calls."""
    from mcp import Client

    arrived = False
    try:
        async with Client(url, mode=mode, read_timeout_seconds=CALL_TIMEOUT_S) as client:
            await client.call_tool(workload.tool, workload.arguments)  # not measured
            line.arrive()
            arrived = True
            await line.go.wait()
            for _ in range(calls):
                started = time.perf_counter()
                try:
                    result = await client.call_tool(workload.tool, workload.arguments)
                except Exception as exc:
                    tally.errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                tally.latencies_s.append(time.perf_counter() - started)
                structured = dict(result.structured_content or {})
                if result.is_error or not workload.correct(structured):
                    tally.errors.append(f"isError or wrong answer: {structured}")
    except Exception as exc:
        tally.errors.append(f"session failed: {type(exc).__name__}: {exc}")
    finally:
        if not arrived:
            line.arrive()


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and of its reaped children (cutime + cstime), from /proc."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


async def run_load(url: str, mode: str, workload: Workload, clients: int, calls: int, pid: int = 0) -> Tally:
    """CLIENTS sessions released together, CALLS sequential calls each; wall time from the release
    (and the server's CPU over the same span when ``pid`` is given)."""
    tally = Tally()
    line = StartLine(clients)
    tasks = [asyncio.create_task(one_client(url, mode, workload, calls, line, tally)) for _ in range(clients)]
    async with asyncio.timeout(START_DEADLINE_S * 4):
        await line.all_arrived.wait()
    started, cpu_before = time.perf_counter(), cpu_seconds(pid) if pid else 0.0
    line.go.set()
    await asyncio.gather(*tasks)
    tally.elapsed_s = time.perf_counter() - started
    tally.server_cpu_s = cpu_seconds(pid) - cpu_before if pid else 0.0
    return tally


def describe(label: str, tally: Tally, expected: int) -> str:
    values = sorted(tally.latencies_s)
    if not values:
        return f"{label}: no call completed, errors {len(tally.errors)}"
    return (
        f"{label}: {len(values)}/{expected} calls, p50 {tally.p(0.5) * 1000:.1f} ms, "
        f"p99 {tally.p(0.99) * 1000:.1f} ms, max {values[-1] * 1000:.1f} ms, "
        f"mean {statistics.fmean(values) * 1000:.1f} ms, {tally.throughput:.0f} calls/s, errors {len(tally.errors)}, "
        f"server CPU {tally.cpu_per_call_ms:.2f} ms/call"
    )


def _median_round(tallies: list[Tally]) -> Tally:
    return sorted(tallies, key=lambda tally: tally.throughput)[(len(tallies) - 1) // 2]


async def p8(figure: Figure, clients: int, calls: int, rounds: int, mode: str) -> None:
    expected = clients * calls
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as temp:
        state = Path(temp)
        (state / "relay").mkdir()
        (state / "bare").mkdir()
        with relay_http(state / "relay") as relay, bare_http(state / "bare") as bare:
            relay_rounds: list[Tally] = []
            bare_rounds: list[Tally] = []
            for index in range(rounds):
                bare_rounds.append(await run_load(bare.url, mode, BARE_TRUE, clients, calls, bare.pid))
                print(describe(f"round {index + 1} bare spawn_true", bare_rounds[-1], expected), flush=True)
                relay_rounds.append(await run_load(relay.url, mode, RELAY_TRUE, clients, calls, relay.pid))
                print(describe(f"round {index + 1} relay shell_exec", relay_rounds[-1], expected), flush=True)
            measured, floor = _median_round(relay_rounds), _median_round(bare_rounds)
            errors = sum(len(tally.errors) for tally in relay_rounds)
            throughput_ratio = measured.throughput / floor.throughput if floor.throughput else 0.0
            figure.value = (
                f"{measured.throughput:.0f} calls/s, p50 {measured.p(0.5) * 1000:.1f} ms, "
                f"p99 {measured.p(0.99) * 1000:.1f} ms, {errors} errors"
            )
            figure.floor = f"{floor.throughput:.0f} calls/s, p50 {floor.p(0.5) * 1000:.1f} ms, p99 {floor.p(0.99) * 1000:.1f} ms"
            figure.ratio = floor.throughput / measured.throughput if measured.throughput else None
            worst_p99 = max(tally.p(0.99) for tally in relay_rounds)
            figure.judge(errors == 0 and worst_p99 <= TARGET_P99_S and throughput_ratio >= TARGET_THROUGHPUT)
            figure.details = {
                "clients": clients,
                "calls_per_client": calls,
                "rounds": [describe("relay", tally, expected) for tally in relay_rounds]
                + [describe("bare", tally, expected) for tally in bare_rounds],
                "throughput_ratio": round(throughput_ratio, 3),
                "server_cpu_ms_per_call": {
                    "relay": round(measured.cpu_per_call_ms, 2),
                    "bare": round(floor.cpu_per_call_ms, 2),
                },
                "first_errors": [error[:200] for tally in relay_rounds for error in tally.errors[:3]],
            }
            figure.note = (
                f"{clients} streamable-HTTP sessions x {calls} sequential calls, {rounds} alternating rounds per "
                f"server, the median round of each shown (of two: the slower); relay-shell throughput {throughput_ratio:.2f}x the bare server's "
                f"(ratio column: bare / relay time per call), worst relay p99 {worst_p99 * 1000:.0f} ms, "
                f"errors {errors}/{expected * rounds}; server CPU per call (the process and the commands it reaped) "
                f"{measured.cpu_per_call_ms:.2f} ms vs {floor.cpu_per_call_ms:.2f} ms; the {clients} clients run in "
                "the bench process on the same 2 CPUs as the servers."
            )
            if figure.holds == "no":
                raw = state / "p8.pyspy"
                with py_spy(relay.pid, raw):
                    await run_load(relay.url, mode, RELAY_TRUE, clients, calls)
                figure.note += " Profile of the server during one more round: " + profile_summary(raw)


async def main(clients: int, calls: int, rounds: int, mode: str) -> list[Figure]:
    figures: list[Figure] = []
    await measure(
        figures,
        "P8",
        f"HTTP: {clients} clients x {calls} calls, shell_exec true vs a bare server spawning true",
        f"0 errors, p99 <= {TARGET_P99_S:g} s, throughput >= {TARGET_THROUGHPUT}x",
        lambda figure: p8(figure, clients, calls, rounds, mode),
    )
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--mode", choices=("auto", "legacy"), default="auto")
    args = parser.parse_args()
    emit(asyncio.run(main(args.clients, args.calls, args.rounds, args.mode)))
    sys.exit(0)
