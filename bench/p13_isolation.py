"""P13: isolation between clients: one client's adversarial call does not stall another's.

A real ``relay-shell`` serves streamable HTTP on a loopback port (auth off). Client B calls
``server_info`` every 20 ms while client A makes one heavy call; the figure is B's latency.
The floor is the same ``server_info`` loop on the same server with no other call in flight,
measured in the same run. A runs on its own event loop (a thread), so building its large
requests in this process never delays B: what B measures is the server.

- P13a: A's ``session_recv`` on a session whose output is a worst case for a backtracking
  engine (a line of 100,000 ``a`` followed by ``!``, produced whole before the recv starts:
  read while it arrives, a run of ``a`` at the end of the text would rightly match ``$``),
  with ``until='^(a+)+$'`` (never matches) and a 5 s ``timeout``: the call ends by its timeout. Target: B's p99 < 200 ms, and
  B's answers come back while A's recv is still pending (the ordering is recorded).
- P13b: with ``RELAY_SHELL_MAX_INPUT_BYTES=8388608``, A runs ``shell_exec 'cat >/dev/null'``
  with 5 MB of plain stdin, then with 5 MB of secret-dense stdin (``password=``, ``token=``,
  AWS key ids on every line), ten times each. Target: B's p99 < 200 ms across both.
- P13c: 100 MB of stdin on a server with the default ``RELAY_SHELL_MAX_INPUT_BYTES`` is
  refused (nothing runs): how it is refused and the time to the refusal; also the status a
  raw POST declaring that size gets (headers only), and a 1.5 MB stdin (under the ``/mcp``
  body cap, over the argument limit), which is a tool error of kind ``invalid``.

    .venv/bin/python bench/p13_isolation.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from common import Figure, measure, ratio, remove_tree, run_main, state_dir, summarize
from http_load import relay_http
from mcp import Client

MB = 1_000_000
PROBE_INTERVAL_S = 0.02
IDLE_SAMPLES = 300
TARGET_P99_S = 0.2
CALL_DEADLINE_S = 300.0
RECV_TIMEOUT_S = 5.0
EVIL_UNTIL = "^(a+)+$"
EVIL_LINE_CHARS = 100_000
BIG_INPUT_BYTES = 8_388_608
STDIN_BYTES = 5 * MB
REFUSED_BYTES = 100 * MB
OVER_LIMIT_BYTES = 1_500_000  # over the default 1 MiB limit, under the /mcp body cap


# --- server and the probing client ---------------------------------------------------------------


@dataclass
class Probe:
    """Client B's samples: each ``server_info`` latency and the monotonic time its answer came."""

    latencies_s: list[float] = field(default_factory=list)
    answered_at: list[float] = field(default_factory=list)

    def between(self, start: float, end: float) -> list[float]:
        """Latencies of the calls that were sent and answered inside ``[start, end]``."""
        return [
            latency
            for latency, at in zip(self.latencies_s, self.answered_at, strict=True)
            if at - latency >= start and at <= end
        ]


async def probe(url: str, stop: asyncio.Event, samples: Probe, ready: asyncio.Event) -> None:
    """Client B: ``server_info`` every PROBE_INTERVAL_S until ``stop``; ``ready`` once connected."""
    async with Client(url, read_timeout_seconds=CALL_DEADLINE_S) as client:
        await client.call_tool("server_info", {})
        ready.set()
        while not stop.is_set():
            started = time.perf_counter()
            result = await client.call_tool("server_info", {})
            samples.answered_at.append(time.perf_counter())
            samples.latencies_s.append(samples.answered_at[-1] - started)
            if result.is_error:
                raise RuntimeError("server_info failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PROBE_INTERVAL_S)


async def idle_floor(url: str) -> list[float]:
    """IDLE_SAMPLES ``server_info`` latencies with nothing else in flight."""
    samples, stop, ready = Probe(), asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(probe(url, stop, samples, ready))
    deadline = time.monotonic() + CALL_DEADLINE_S
    while len(samples.latencies_s) < IDLE_SAMPLES and not task.done() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await task
    return samples.latencies_s


async def while_probed(url: str, heavy: Callable[[Client], Awaitable[None]]) -> Probe:
    """Run ``heavy`` as client A while client B probes; B is connected before A starts.

    A runs on its own event loop in a thread, so encoding its large request in this process
    never delays B's loop: what B measures is the server.
    """
    samples, stop, ready = Probe(), asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(probe(url, stop, samples, ready))
    try:
        async with asyncio.timeout(30):
            await ready.wait()
        await asyncio.to_thread(asyncio.run, as_client(url, heavy))
    finally:
        stop.set()
        await task
    return samples


async def as_client(url: str, heavy: Callable[[Client], Awaitable[None]]) -> None:
    async with Client(url, read_timeout_seconds=CALL_DEADLINE_S) as client:
        await client.call_tool("server_info", {})
        await heavy(client)


# --- P13a: a backtracking-hostile until ----------------------------------------------------------


@dataclass
class RecvRun:
    started: float = 0.0
    ended: float = 0.0
    matched: object = None
    timed_out: object = None
    bytes_read: int = 0
    samples: Probe = field(default_factory=Probe)


async def evil_recv(url: str) -> RecvRun:
    run = RecvRun()

    async def heavy(client: Client) -> None:
        spawned = await client.call_tool("shell_spawn", {"command": "", "cols": 120, "rows": 40})
        session_id = (spawned.structured_content or {}).get("session_id")
        if spawned.is_error or not isinstance(session_id, str):
            raise RuntimeError(f"shell_spawn failed: {spawned.content}")
        try:
            # chr(33) is "!": typed literally, bash's history expansion would eat the command.
            line = (
                f"python3 -c 'import sys; sys.stdout.write(\"a\" * {EVIL_LINE_CHARS} + chr(33) + chr(10))'\n"
            )
            sent = await client.call_tool("session_send", {"session_id": session_id, "data": line})
            if sent.is_error:
                raise RuntimeError(f"session_send failed: {sent.content}")
            await produced(client, session_id, EVIL_LINE_CHARS + len(line))
            run.started = time.perf_counter()
            got = await client.call_tool(
                "session_recv",
                {
                    "session_id": session_id,
                    "until": EVIL_UNTIL,
                    "timeout": RECV_TIMEOUT_S,
                    "max_bytes": 1_000_000,
                },
            )
            run.ended = time.perf_counter()
            data = got.structured_content or {}
            if got.is_error:
                raise RuntimeError(f"session_recv failed: {got.content}")
            run.matched, run.timed_out = data.get("matched"), data.get("timed_out")
            output = str(data.get("output", ""))
            run.bytes_read = len(output)
            if "a" * EVIL_LINE_CHARS + "!" not in output:
                raise RuntimeError(f"the adversarial line never reached the recv: {output[-300:]!r}")
        finally:
            await client.call_tool("session_kill", {"session_id": session_id})

    run.samples = await while_probed(url, heavy)
    return run


async def produced(client: Client, session_id: str, at_least: int) -> None:
    """Wait (bounded) until the session has produced ``at_least`` bytes, none of them read yet.

    The recv must see the adversarial line whole: read while it arrives, a prefix of ``a``
    at the end of the text is a legitimate match of ``$``.
    """
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listed = await client.call_tool("session_list", {})
        rows = (listed.structured_content or {}).get("sessions", [])
        if any(row["session_id"] == session_id and int(row["bytes_produced"]) >= at_least for row in rows):
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the session did not produce {at_least} bytes within 30 s")


# --- P13b: 5 MB of stdin, plain and secret-dense -------------------------------------------------


def plain_stdin() -> str:
    line = "the quick brown fox jumps over the lazy dog 0123456789\n"
    return (line * (STDIN_BYTES // len(line) + 1))[:STDIN_BYTES]


def secret_stdin() -> str:
    line = "password=Hunter2Hunter2 token=ghp_0123456789abcdefABCDEF0123456789abcd AKIAIOSFODNN7EXAMPLE\n"
    return (line * (STDIN_BYTES // len(line) + 1))[:STDIN_BYTES]


@dataclass
class StdinRun:
    calls_s: list[float] = field(default_factory=list)
    exit_codes: list[object] = field(default_factory=list)
    samples: Probe = field(default_factory=Probe)


async def stdin_run(url: str, stdin: str, rounds: int) -> StdinRun:
    run = StdinRun()

    async def heavy(client: Client) -> None:
        for _ in range(rounds):
            started = time.perf_counter()
            result = await client.call_tool("shell_exec", {"command": "cat >/dev/null", "stdin": stdin})
            run.calls_s.append(time.perf_counter() - started)
            data = result.structured_content or {}
            if result.is_error:
                raise RuntimeError(f"shell_exec failed: {str(result.content)[:300]}")
            run.exit_codes.append(data.get("exit_code"))

    run.samples = await while_probed(url, heavy)
    return run


# --- P13c: 100 MB refused --------------------------------------------------------------------


async def refused(url: str, size: int) -> tuple[float, str]:
    """Seconds from sending ``size`` bytes of stdin to the refusal, and how it was refused.

    The call's outcome (a tool error, a JSON-RPC error or an exception) and any transport
    error the client raises when it closes are both described.
    """
    stdin = "x" * size
    seconds, how, started = -1.0, "no answer", time.perf_counter()
    try:
        async with Client(url, read_timeout_seconds=CALL_DEADLINE_S) as client:
            await client.call_tool("server_info", {})
            started = time.perf_counter()
            try:
                result = await client.call_tool("shell_exec", {"command": "cat >/dev/null", "stdin": stdin})
            except Exception as exc:
                seconds, how = time.perf_counter() - started, f"the call raised {describe(exc)}"
            else:
                seconds = time.perf_counter() - started
                data = result.structured_content or {}
                error = data.get("error")
                kind = error.get("kind") if isinstance(error, dict) else None
                text = "".join(str(getattr(block, "text", "")) for block in result.content)
                how = f"isError={result.is_error}, kind {kind}: {text[:160]!r}"
    except Exception as exc:
        if seconds < 0:
            seconds = time.perf_counter() - started
        how += f"; the client's session ended with {describe(exc)}"
    return seconds, how


async def edge_status(url: str, size: int) -> tuple[float, str]:
    """Seconds from a POST's headers declaring ``size`` bytes to the server's status line (no body sent)."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        started = time.perf_counter()
        writer.write(
            f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json, text/event-stream\r\nContent-Length: {size}\r\n\r\n".encode()
        )
        await writer.drain()
        async with asyncio.timeout(30):
            status = await reader.readline()
        return time.perf_counter() - started, status.decode(errors="replace").strip()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def describe(exc: BaseException) -> str:
    """The exception and its innermost cause, unwrapping exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    inner = exc
    while inner.__cause__ is not None:
        inner = inner.__cause__
    text = f"{type(exc).__name__}: {exc}"[:160]
    return text if inner is exc else f"{text} (from {type(inner).__name__}: {inner})"[:240]


# --- figures ---------------------------------------------------------------------------------


async def attempt[T](work: Awaitable[T]) -> T | Exception:
    """The workload's result, or the exception it raised (its figure then records an error)."""
    try:
        return await work
    except Exception as exc:
        traceback.print_exc()
        return exc


def need[T](outcome: T | Exception) -> T:
    if isinstance(outcome, Exception):
        raise RuntimeError(f"the workload failed: {describe(outcome)}") from outcome
    return outcome


@dataclass
class Results:
    """Every workload's outcome (or the exception it raised), gathered before any figure is judged."""

    idle_default: list[float] | Exception
    recv: RecvRun | Exception
    over_limit: tuple[float, str] | Exception
    refusal: tuple[float, str] | Exception
    edge: tuple[float, str] | Exception
    idle_big: list[float] | Exception
    plain: StdinRun | Exception
    secret: StdinRun | Exception


async def collect(state: Path, rounds: int) -> Results:
    """Run the workloads: two servers, the default one and one with an 8 MiB input limit."""
    default_state, big_state = state / "default", state / "big"
    default_state.mkdir()
    big_state.mkdir()
    with relay_http(default_state) as default_server:
        url = default_server.url
        idle_default = await attempt(idle_floor(url))
        recv = await attempt(evil_recv(url))
        over_limit = await attempt(refused(url, OVER_LIMIT_BYTES))
        refusal = await attempt(refused(url, REFUSED_BYTES))
        edge = await attempt(edge_status(url, REFUSED_BYTES))
    with relay_http(big_state, RELAY_SHELL_MAX_INPUT_BYTES=str(BIG_INPUT_BYTES)) as big_server:
        url = big_server.url
        idle_big = await attempt(idle_floor(url))
        plain = await attempt(stdin_run(url, plain_stdin(), rounds))
        secret = await attempt(stdin_run(url, secret_stdin(), rounds))
    return Results(idle_default, recv, over_limit, refusal, edge, idle_big, plain, secret)


def latency_cells(figure: Figure, during: list[float], floor: list[float]) -> float:
    """Fill value, floor and ratio from B's latencies; returns the busy p99 in seconds."""
    busy, idle = summarize(during), summarize(floor)
    figure.value = f"{busy.ms()}, max {busy.max * 1000:.1f} ms, n {busy.count}"
    figure.floor = f"{idle.ms()}, max {idle.max * 1000:.1f} ms, n {idle.count}"
    figure.ratio = ratio(busy.p99, idle.p99)
    return busy.p99


def p13a(figure: Figure, results: Results) -> None:
    recv = need(results.recv)
    during = recv.samples.between(recv.started, recv.ended)
    if not during:
        figure.judge(False)
        figure.note = "no server_info answer came back while the recv was pending (ordering fails)"
        return
    p99 = latency_cells(figure, during, need(results.idle_default))
    figure.judge(p99 < TARGET_P99_S and recv.matched is False)
    first = min(at for at in recv.samples.answered_at if at >= recv.started) - recv.started
    figure.note = (
        f"session_recv until {EVIL_UNTIL!r} over a {EVIL_LINE_CHARS:,}-char line of 'a' + '!' (already "
        f"buffered) ended after {recv.ended - recv.started:.2f} s (timeout {RECV_TIMEOUT_S:.0f} s; "
        f"matched={recv.matched}, timed_out={recv.timed_out}, {recv.bytes_read:,} chars read); ordering: "
        f"{len(during)} server_info calls were sent and answered while that recv was pending, the first "
        f"answer {first * 1000:.0f} ms after it was sent"
    )
    figure.details = {"recv_s": round(recv.ended - recv.started, 3), "answers_during_recv": len(during)}


def p13b(figure: Figure, results: Results) -> None:
    plain, secret = need(results.plain), need(results.secret)
    during = [*plain.samples.latencies_s, *secret.samples.latencies_s]
    p99 = latency_cells(figure, during, need(results.idle_big))
    exits_ok = all(code == 0 for code in [*plain.exit_codes, *secret.exit_codes])
    figure.judge(p99 < TARGET_P99_S and exits_ok)
    parts = []
    for name, run in (("plain", plain), ("secret-dense", secret)):
        stats, calls = summarize(run.samples.latencies_s), summarize(run.calls_s)
        parts.append(
            f"{name}: {len(run.calls_s)} calls of 5 MB stdin, each {calls.p50:.2f} s (p50) / "
            f"{calls.max:.2f} s (max), exit codes {run.exit_codes}; server_info meanwhile {stats.ms()}, "
            f"max {stats.max * 1000:.1f} ms, n {stats.count}"
        )
    figure.note = f"RELAY_SHELL_MAX_INPUT_BYTES={BIG_INPUT_BYTES}; " + "; ".join(parts)


def p13c(figure: Figure, results: Results) -> None:
    (seconds, how), (small_s, small_how) = need(results.refusal), need(results.over_limit)
    edge_s, edge_status_line = need(results.edge)
    figure.value = f"refused after {seconds * 1000:.0f} ms"
    figure.floor = f"1.5 MB refused after {small_s * 1000:.0f} ms"
    figure.judge("Error" in how or "isError=True" in how)
    figure.note = (
        f"100 MB stdin at the default RELAY_SHELL_MAX_INPUT_BYTES (1 MiB), official client: {how}. "
        f"The same size declared by a raw POST /mcp (headers only): {edge_status_line!r} after "
        f"{edge_s * 1000:.1f} ms, no body byte sent. "
        f"1.5 MB (passes the /mcp body cap, over the argument limit): {small_how}"
    )


async def main_async(rounds: int) -> list[Figure]:
    figures: list[Figure] = []
    state = state_dir("relay-bench-p13-")
    try:
        results = await collect(state, rounds)
    finally:
        remove_tree(state)

    def judged(body: Callable[[Figure, Results], None]) -> Callable[[Figure], Awaitable[None]]:
        async def run(figure: Figure) -> None:
            body(figure, results)

        return run

    await measure(figures, "P13a", "until '^(a+)+$' over an adversarial line: other client's server_info p99",
                  f"< {TARGET_P99_S * 1000:.0f} ms, answered before the recv", judged(p13a))  # fmt: skip
    await measure(figures, "P13b", "5 MB stdin (plain, secret-dense): other client's server_info p99",
                  f"< {TARGET_P99_S * 1000:.0f} ms", judged(p13b))  # fmt: skip
    await measure(figures, "P13c", "100 MB stdin at the default input limit: refused, time to refusal",
                  "refused", judged(p13c))  # fmt: skip
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="shell_exec calls per 5 MB stdin kind")
    args = parser.parse_args()
    run_main(lambda: main_async(args.rounds))


if __name__ == "__main__":
    main()
