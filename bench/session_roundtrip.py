"""Round trip through a local PTY session: send a command, wait for its output.

Spawns an interactive bash through the session registry (no MCP layer), waits for the
prompt, then ROUNDS times sends ``echo x<n>`` and calls ``recv(until=^x<n>$)``, timing each
send+recv pair. Prints p50/p99/max in milliseconds. Exit status 1 when a round did not match.

    .venv/bin/python bench/session_roundtrip.py [--rounds 200] [--no-strip]

Numbers are for comparing runs on the same machine, not thresholds. HOME points to an empty
temp dir so the operator's ~/.bashrc does not weigh on the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time

from relay_shell.config import ContainmentMode
from relay_shell.linear_regex import compile_caller_regex
from relay_shell.local.containment import ContainmentService
from relay_shell.local.pty import spawn_local_pty
from relay_shell.sessions import SessionRegistry

RECV_TIMEOUT_S = 10.0


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def run(rounds: int, strip: bool) -> int:
    registry = SessionRegistry(max_sessions=1, buffer_bytes=262144, idle_timeout_s=600, max_lifetime_s=3600)
    with tempfile.TemporaryDirectory() as home:
        try:
            containment = ContainmentService(ContainmentMode.AUTO)
            transport = await spawn_local_pty(
                "", cols=120, rows=40, cwd=None, env={"HOME": home}, contained=containment.open("session")
            )
            info = await registry.add(transport, kind="local", host=None, command="", cols=120, rows=40)
            session_id = info.session_id
            started = time.perf_counter()
            prompt = await registry.recv(
                session_id,
                timeout_s=RECV_TIMEOUT_S,
                max_bytes=65536,
                until=compile_caller_regex("until", r"[$#] $"),
            )
            print(f"prompt after {(time.perf_counter() - started) * 1000:.1f} ms: {prompt.output!r}")
            samples: list[float] = []
            for number in range(rounds):
                # The echoed command line also contains x<n>: anchor on the output line (raw
                # output has "\r" around it, and bash's bracketed-paste escapes before it).
                until = compile_caller_regex("until", rf"^x{number}$" if strip else rf"(?:^|\r)x{number}\r$")
                began = time.perf_counter()
                await registry.send(session_id, f"echo x{number}\r".encode())
                result = await registry.recv(
                    session_id, timeout_s=RECV_TIMEOUT_S, max_bytes=65536, until=until, strip_ansi=strip
                )
                samples.append((time.perf_counter() - began) * 1000)
                if not result.matched:
                    print(f"round {number}: no match in {result.output!r}", file=sys.stderr)
                    return 1
        finally:
            await registry.aclose()
    print(
        f"{rounds} rounds (strip_ansi={strip}): p50 {statistics.median(samples):.2f} ms, "
        f"p99 {percentile(samples, 0.99):.2f} ms, max {max(samples):.2f} ms"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--no-strip", dest="strip", action="store_false", help="match on raw output")
    arguments = parser.parse_args()
    return asyncio.run(run(arguments.rounds, arguments.strip))


if __name__ == "__main__":
    sys.exit(main())
