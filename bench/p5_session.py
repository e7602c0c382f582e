"""P5: session round trip over stdio: ``session_send "echo x<n>"`` then ``session_recv until ^x<n>$``.

- value: the two MCP calls through the real ``relay-shell`` (a ``shell_spawn`` bash with an
  empty HOME, so no start-up files), p50/p99 over ROUNDS after WARMUP;
- floor: the same exchange with a bash this script runs on a raw PTY (``os.openpty``), writing
  ``echo x<n>\\r`` and reading until the ``x<n>`` output line.

Target: p50 <= 10 ms. The registry-level number (no MCP) comes from
``bench/session_roundtrip.py`` and is reported by ``bench/run`` as its own row.

    .venv/bin/python bench/p5_session.py
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from pathlib import Path

from common import (
    Figure,
    RelayStdio,
    measure,
    profile_summary,
    py_spy,
    ratio,
    relay_stdio,
    remove_tree,
    run_main,
    state_dir,
    summarize,
)

ROUNDS = 200
WARMUP = 20
TARGET_MS = 10.0
PROMPT = r"[$#] $"


async def mcp_rounds(relay: RelayStdio, count: int, first: int) -> list[float]:
    spawned = await relay.call("shell_spawn", {"command": ""})
    session_id = spawned.data.get("session_id")
    if spawned.is_error or not isinstance(session_id, str):
        raise RuntimeError(f"shell_spawn failed: {spawned.text[:300]}")
    prompt = await relay.call("session_recv", {"session_id": session_id, "until": PROMPT, "timeout": 10})
    if not prompt.data.get("matched"):
        raise RuntimeError(f"no prompt: {prompt.text[:300]}")
    samples = []
    try:
        for number in range(first, first + count):
            started = time.perf_counter()
            sent = await relay.call("session_send", {"session_id": session_id, "data": f"echo x{number}"})
            got = await relay.call(
                "session_recv", {"session_id": session_id, "until": rf"^x{number}$", "timeout": 10}
            )
            samples.append(time.perf_counter() - started)
            if sent.is_error or not got.data.get("matched"):
                raise RuntimeError(f"round {number} did not match: {got.text[:300]}")
    finally:
        await relay.call("session_kill", {"session_id": session_id})
    return samples


async def raw_pty_rounds(home: Path, count: int) -> list[float]:
    """bash on a PTY we own: write ``echo x<n>\\r``, read until the output line ``x<n>``."""
    master, slave = os.openpty()
    process = subprocess.Popen(
        ["/bin/bash", "-i"], stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
        env={"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "xterm", "PS1": "$ "},
    )  # fmt: skip
    os.close(slave)
    os.set_blocking(master, False)
    loop = asyncio.get_running_loop()
    buffer = bytearray()
    arrived = asyncio.Event()

    def readable() -> None:
        try:
            buffer.extend(os.read(master, 65536))
        except OSError:
            loop.remove_reader(master)
        arrived.set()

    async def read_until(pattern: re.Pattern[bytes]) -> None:
        async with asyncio.timeout(10):
            while not pattern.search(buffer):
                arrived.clear()
                await arrived.wait()
        buffer.clear()

    loop.add_reader(master, readable)
    try:
        await read_until(re.compile(rb"[$#] $"))
        samples = []
        for number in range(count):
            started = time.perf_counter()
            os.write(master, f"echo x{number}\r".encode())
            await read_until(re.compile(rf"[\r\n]x{number}\r\n".encode()))
            samples.append(time.perf_counter() - started)
        return samples
    finally:
        loop.remove_reader(master)
        process.kill()
        process.wait(timeout=10)
        os.close(master)


async def p5(figure: Figure) -> None:
    state = state_dir()
    try:
        async with relay_stdio(state) as relay:
            await mcp_rounds(relay, WARMUP, 0)
            measured = summarize(await mcp_rounds(relay, ROUNDS, WARMUP))
            floor = summarize((await raw_pty_rounds(state, WARMUP + ROUNDS))[WARMUP:])
            figure.value, figure.floor = measured.ms(), floor.ms()
            figure.ratio = ratio(measured.p50, floor.p50)
            figure.judge(measured.p50 * 1000 <= TARGET_MS)
            figure.details = {"rounds": ROUNDS}
            figure.note = (
                f"two MCP calls per round (send, recv until); floor: bash on a raw PTY. p99 "
                f"{measured.p99 * 1000:.1f} ms."
            )
            if figure.holds == "no":
                raw = state / "p5.pyspy"
                with py_spy(relay.pid, raw):
                    await mcp_rounds(relay, ROUNDS, WARMUP + ROUNDS)
                figure.note += " Profile of the server during more rounds: " + profile_summary(raw)
    finally:
        remove_tree(state)


async def main() -> list[Figure]:
    figures: list[Figure] = []
    await measure(figures, "P5", "session round trip echo/recv over stdio (p50)", f"<= {TARGET_MS:g} ms", p5)
    return figures


if __name__ == "__main__":
    run_main(main)
