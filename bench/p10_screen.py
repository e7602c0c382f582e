"""P10: 50 MiB through a rendered session, while another client is served.

A real ``relay-shell`` serves streamable HTTP on a loopback port. Client A starts a session
running a program that takes the alternate screen and repaints 80x24 frames (cursor
addressing, colours, line erases: what top or htop send) until it has written 50 MiB, then
leaves the alternate screen and exits; A reads it with ``session_recv`` (screen ``auto``:
screen reads) in a loop until the session ends. Client B calls ``server_info`` every 20 ms
the whole time.

- P10a: B's ``server_info`` latency p99 during the run. Floor: the same calls with no session.
  Target < 200 ms.
- P10b: the server's peak RSS growth during the run (VmHWM after ``clear_refs``, plus 20 ms
  samples) against an allowance of 3 x (session ring buffer + the screen's pending bound)
  + 20 MiB, as P4a does for exec; the ratio is growth / allowance.
- P10c: the server's CPU time (user + system, from /proc) per MiB produced. Floor: the same
  50 MiB read as a stream (``screen="never"``). Target <= 3x the floor: screen reads feed
  the emulator only what is pending when a screen is read, so the cost follows the reads,
  not the output.

    .venv/bin/python bench/p10_screen.py [--mib 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import http_load
from common import (
    Figure,
    children_of,
    measure,
    memory_kib,
    mib,
    ratio,
    remove_tree,
    reset_peak_rss,
    run_main,
    state_dir,
    summarize,
)
from mcp import Client

MIB = 1024 * 1024
SESSION_BUFFER_BYTES = 262144  # RELAY_SHELL_SESSION_BUFFER_BYTES default
SCREEN_PENDING_BYTES = 64 * 1024  # sessions/screen.py: the pending bound of an 80x24 screen
ALLOWANCE_KIB = (3 * (SESSION_BUFFER_BYTES + SCREEN_PENDING_BYTES) + 20 * MIB) / 1024
PROBE_INTERVAL_S = 0.02
TARGET_P99_S = 0.2
TARGET_CPU_RATIO = 3.0
RUN_DEADLINE_S = 600.0

FRAMES = r"""
import sys
total = int(sys.argv[1])
out = sys.stdout.buffer
out.write(b"\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J")
written = frame = 0
while written < total:
    rows = [b"\x1b[H\x1b[1;37;44m frame %08d \x1b[0m\x1b[K" % frame]
    rows += [b"\x1b[%d;1H\x1b[2K%3d %s" % (row + 2, row, (b"%08x " % (frame * row)) * 7) for row in range(22)]
    data = b"".join(rows)
    out.write(data)
    written += len(data)
    frame += 1
out.write(b"\x1b[?25h\x1b[?1049l")
out.flush()
"""


@dataclass
class Run:
    """What one pass of the workload measured."""

    latencies_s: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    wall_s: float = 0.0
    produced: int = 0
    reads: int = 0
    screen_reads: int = 0
    rss_before_kib: int = 0
    rss_peak_kib: int = 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def server(state: Path) -> Iterator[tuple[str, int]]:
    """relay-shell over streamable HTTP: its MCP URL and pid (either form of bench/http_load.py)."""
    if hasattr(http_load, "relay_http"):  # yields the URL and the pid itself
        with http_load.relay_http(state) as started:
            yield started.url, started.pid
        return
    before = set(children_of(os.getpid()))
    with http_load.relay_server(state) as url:
        [pid] = [child for child in children_of(os.getpid()) if child not in before]
        yield f"{url}/mcp", pid


async def probe(url: str, stop: asyncio.Event, latencies: list[float]) -> None:
    """Client B: server_info every PROBE_INTERVAL_S until ``stop``."""
    async with Client(url, read_timeout_seconds=RUN_DEADLINE_S) as client:
        await client.call_tool("server_info", {})
        while not stop.is_set():
            started = time.perf_counter()
            result = await client.call_tool("server_info", {})
            latencies.append(time.perf_counter() - started)
            if result.is_error:
                raise RuntimeError("server_info failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PROBE_INTERVAL_S)


async def sample_rss(pid: int, run: Run, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(OSError, KeyError):
            run.rss_peak_kib = max(run.rss_peak_kib, memory_kib(pid)["VmRSS"])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.02)


async def drive(url: str, pid: int, state: Path, total: int, screen: str) -> Run:
    """Client A: the session and its reads, while B probes; returns the measurements."""
    # Outside the server's own state directory (which holds its audit file: protected).
    script = Path(tempfile.mkdtemp(prefix="relay-bench-p10-programs-")) / "frames.py"
    script.write_text(FRAMES)
    run = Run()
    stop = asyncio.Event()
    async with Client(url, read_timeout_seconds=RUN_DEADLINE_S) as client:
        run.rss_before_kib = memory_kib(pid)["VmRSS"]
        hwm = reset_peak_rss(pid)
        cpu_before = cpu_seconds(pid)
        started = time.perf_counter()
        prober = asyncio.create_task(probe(url, stop, run.latencies_s))
        sampler = asyncio.create_task(sample_rss(pid, run, stop))
        spawned = await client.call_tool(
            "shell_spawn", {"command": f"python3 {script} {total}", "cols": 80, "rows": 24}
        )
        session_id = (spawned.structured_content or {}).get("session_id")
        if spawned.is_error or not isinstance(session_id, str):
            raise RuntimeError(f"shell_spawn failed: {spawned.content}")
        async with asyncio.timeout(RUN_DEADLINE_S):
            while True:
                got = await client.call_tool(
                    "session_recv",
                    {"session_id": session_id, "timeout": 0.5, "screen": screen, "max_bytes": MIB},
                )
                data = got.structured_content or {}
                run.reads += 1
                run.screen_reads += data.get("mode") == "screen"
                if data.get("ended"):
                    break
        listed = await client.call_tool("session_list", {})
        run.produced = next(
            (int(row["bytes_produced"]) for row in (listed.structured_content or {}).get("sessions", [])
             if row["session_id"] == session_id),
            total,
        )  # fmt: skip
        await client.call_tool("session_kill", {"session_id": session_id})
        run.wall_s = time.perf_counter() - started
        run.cpu_s = cpu_seconds(pid) - cpu_before
        stop.set()
        await asyncio.gather(prober, sampler)
        if hwm:
            run.rss_peak_kib = max(run.rss_peak_kib, memory_kib(pid)["VmHWM"])
    remove_tree(script.parent)
    return run


async def idle_latencies(url: str, count: int) -> list[float]:
    latencies: list[float] = []
    stop = asyncio.Event()
    task = asyncio.create_task(probe(url, stop, latencies))
    while len(latencies) < count and not task.done():
        await asyncio.sleep(0.05)
    stop.set()
    await task
    return latencies


async def main_async(total: int) -> list[Figure]:
    figures: list[Figure] = []
    state = state_dir("relay-bench-p10-")
    runs: dict[str, Run] = {}
    try:
        with server(state) as (url, pid):
            runs["idle"] = Run(latencies_s=await idle_latencies(url, 300))
            runs["screen"] = await drive(url, pid, state, total, "auto")
            runs["stream"] = await drive(url, pid, state, total, "never")

        async def p10a(figure: Figure) -> None:
            busy, idle = summarize(runs["screen"].latencies_s), summarize(runs["idle"].latencies_s)
            streaming = summarize(runs["stream"].latencies_s)
            figure.value, figure.floor = busy.ms(), idle.ms()
            figure.ratio = ratio(busy.p99, idle.p99)
            figure.judge(busy.p99 < TARGET_P99_S)
            run = runs["screen"]
            figure.note = (
                f"{run.produced / MIB:.1f} MiB in {run.wall_s:.1f} s, {run.reads} reads "
                f"({run.screen_reads} screen), {len(run.latencies_s)} server_info calls over streamable HTTP; "
                f"max {busy.max * 1000:.1f} ms. The same 50 MiB read as a stream: {streaming.ms()}"
            )

        async def p10b(figure: Figure) -> None:
            run = runs["screen"]
            growth = max(0, run.rss_peak_kib - run.rss_before_kib)
            figure.value = f"+{mib(growth)} peak RSS"
            figure.floor = f"RSS before {mib(run.rss_before_kib)}; allowance {mib(ALLOWANCE_KIB)}"
            figure.ratio = growth / ALLOWANCE_KIB
            figure.judge(growth < ALLOWANCE_KIB)

        async def p10c(figure: Figure) -> None:
            screen, stream = runs["screen"], runs["stream"]
            per_mib = screen.cpu_s * 1000 / (screen.produced / MIB)
            floor = stream.cpu_s * 1000 / (stream.produced / MIB)
            figure.value, figure.floor = f"{per_mib:.1f} ms CPU/MiB", f"{floor:.1f} ms CPU/MiB (stream reads)"
            figure.ratio = ratio(per_mib, floor)
            figure.judge(figure.ratio <= TARGET_CPU_RATIO)
            figure.note = (
                f"server CPU {screen.cpu_s:.1f} s for {screen.produced / MIB:.1f} MiB read as screens, "
                f"{stream.cpu_s:.1f} s read as a stream"
            )

        await measure(figures, "P10a", "50 MiB through a rendered session: other client's server_info p99",
                      f"< {TARGET_P99_S * 1000:.0f} ms", p10a)  # fmt: skip
        await measure(figures, "P10b", "50 MiB through a rendered session: server peak RSS growth",
                      "< 3x (buffer + screen bound) + 20 MiB", p10b)  # fmt: skip
        await measure(figures, "P10c", "50 MiB through a rendered session: server CPU per MiB",
                      f"<= {TARGET_CPU_RATIO:.0f}x stream reads", p10c)  # fmt: skip
    finally:
        remove_tree(state)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=50, help="MiB the full-screen program writes")
    args = parser.parse_args()
    run_main(lambda: main_async(args.mib * MIB))


if __name__ == "__main__":
    main()
