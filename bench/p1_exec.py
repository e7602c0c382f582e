"""P1 and P1H: ``shell_exec true`` vs a no-op MCP round trip plus a raw spawn, over stdio and HTTP.

relay-shell runs with what a call pays for in production: the parsed classification, the audit
(a chained file; anchored to a real journald in a namespace of its own when this runs as root,
else no anchor) and containment (``auto``: a cgroup per call where cgroup v2 is writable).

Measured in one run, each CALLS times after WARMUP unmeasured calls, in alternating batches of 50:

- value: ``shell_exec {"command": "true"}`` round trip through the real ``relay-shell``;
- floor: the round trip of a no-op tool on a bare MCPServer (``bench/bare_server.py``, same SDK,
  same transport) **plus** ``asyncio.create_subprocess_exec("true")`` with pipes read to EOF;
  their p50s are added, and the ratio is value p50 / that sum (target <= 1.15x: relay-shell's
  own work is at most 15 % of what the protocol and the spawn cost anyway);
- breakdown (note and details): relay-shell's own no-op (``server_info``, through the whole
  pipeline), ``use_shell=false``, a raw spawn of the child a contained call runs (``/bin/sh -c``
  with the self-join's first line, written to ``/dev/null`` here: no cgroup), and the same call on a server forced to ``subreaper``.

P1 is over stdio (the official client starting both servers); P1H is over streamable HTTP (one
client per server, servers on loopback). When a target is missed the server is sampled with
py-spy during more calls and the note says where its time went.

    .venv/bin/python bench/p1_exec.py
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from common import (
    BENCH,
    PYTHON,
    Figure,
    RelayStdio,
    Stats,
    interleaved,
    measure,
    profile_summary,
    py_spy,
    ratio,
    relay_stdio,
    remove_tree,
    run_main,
    state_dir,
    summarize,
    timed,
)
from http_load import bare_http, relay_http

from relay_shell.local.contained import join_argv

CALLS = 300
WARMUP = 30
TARGET_RATIO = 1.15
BARE = (PYTHON, str(BENCH / "bare_server.py"))

Action = Callable[[], Awaitable[None]]


async def raw_spawn(*argv: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    await process.communicate()


async def joining_spawn(text: str) -> None:
    """A raw spawn of the child a contained call runs for ``text``: ``/bin/sh -c`` with the
    self-join's first line, its write aimed at ``/dev/null`` (no cgroup is made or joined)."""
    argv = join_argv(["/bin/sh", "-c", text], Path(os.devnull))
    if argv is None:  # /bin/sh is not dash: the child is the plain shell
        argv = ["/bin/sh", "-c", text]
    await raw_spawn(*argv)


@contextlib.contextmanager
def audit_anchor() -> Iterator[tuple[str, str]]:
    """(RELAY_SHELL_AUDIT_ANCHOR value, what it is): a journald of its own when root, else off."""
    if os.geteuid() != 0:
        yield "off", "no anchor (a journald namespace needs root)"
        return
    from tests.audit_peers import journald

    with journald() as journal:
        yield f"journald:{journal.socket}", "anchored to a journald namespace of its own"


def checked(call: Callable[[], Awaitable[tuple[bool, dict[str, object], str]]], key: str) -> Action:
    """An action that fails loudly when the call's answer is an error or lacks a zero ``key``."""

    async def action() -> None:
        is_error, data, text = await call()
        if is_error or data.get(key) not in (0, "ok"):
            raise RuntimeError(f"call failed: {text[:300]}")

    return action


def stdio_call(
    server: RelayStdio, tool: str, arguments: dict[str, object]
) -> Callable[[], Awaitable[tuple[bool, dict[str, object], str]]]:
    async def call() -> tuple[bool, dict[str, object], str]:
        result = await server.call(tool, arguments)
        return result.is_error, result.data, result.text

    return call


def http_call(
    client: object, tool: str, arguments: dict[str, object]
) -> Callable[[], Awaitable[tuple[bool, dict[str, object], str]]]:
    from mcp import Client

    assert isinstance(client, Client)

    async def call() -> tuple[bool, dict[str, object], str]:
        result = await client.call_tool(tool, arguments)
        text = "".join(str(getattr(block, "text", "")) for block in result.content or [])
        return bool(result.is_error), dict(result.structured_content or {}), text

    return call


def judge(figure: Figure, runs: dict[str, list[float]], transport: str, anchor: str) -> tuple[Stats, float]:
    """Fill the figure from the samples; returns (value stats, floor p50 in seconds)."""
    measured, noop, spawn = summarize(runs["exec"]), summarize(runs["bare_noop"]), summarize(runs["spawn"])
    floor_p50 = noop.p50 + spawn.p50
    floor_p99 = noop.p99 + spawn.p99
    figure.value = measured.ms()
    figure.floor = (
        f"p50 {floor_p50 * 1000:.2f} ms (bare no-op {noop.p50 * 1000:.2f} + raw spawn {spawn.p50 * 1000:.2f}), "
        f"p99 {floor_p99 * 1000:.2f} ms"
    )
    figure.ratio = ratio(measured.p50, floor_p50)
    figure.judge(figure.ratio <= TARGET_RATIO)
    own = measured.p50 - floor_p50
    relay_noop = summarize(runs["relay_noop"])
    figure.details = {
        "calls": CALLS,
        "transport": transport,
        "audit_anchor": anchor,
        "p99_ratio": round(ratio(measured.p99, floor_p99), 2),
        "bare_noop": noop.ms(),
        "raw_spawn_true": spawn.ms(),
        "relay_server_info": relay_noop.ms(),
        "relay_own_work_p50_ms": round(own * 1000, 3),
        "allowed_own_work_p50_ms": round((TARGET_RATIO - 1) * floor_p50 * 1000, 3),
    }
    figure.note = (
        f"{transport}; p99 ratio {figure.details['p99_ratio']}x. relay-shell's own work at the p50: "
        f"{own * 1000:.2f} ms (allowed {(TARGET_RATIO - 1) * floor_p50 * 1000:.2f} ms); relay-shell's "
        f"server_info (the whole pipeline on a no-op) {relay_noop.p50 * 1000:.2f} ms vs the bare no-op "
        f"{noop.p50 * 1000:.2f} ms. Audit: {anchor}."
    )
    return measured, floor_p50


async def p1(figure: Figure) -> None:
    state = state_dir()
    subreaper_state, bare_state = state / "subreaper", state / "bare"
    subreaper_state.mkdir()
    bare_state.mkdir()
    try:
        with audit_anchor() as (anchor, anchor_text):
            async with (
                relay_stdio(state, RELAY_SHELL_AUDIT_ANCHOR=anchor) as relay,
                relay_stdio(subreaper_state, RELAY_SHELL_CONTAINMENT="subreaper") as subreaper,
                relay_stdio(bare_state, command=BARE) as bare,
            ):
                mechanism = str((await relay.call("server_info", {})).data.get("containment"))
                actions: dict[str, Action] = {
                    "exec": checked(stdio_call(relay, "shell_exec", {"command": "true"}), "exit_code"),
                    "bare_noop": checked(stdio_call(bare, "noop", {}), "result"),
                    "spawn": lambda: raw_spawn("true"),
                    "relay_noop": _noop_of(relay),
                    "no_shell": checked(
                        stdio_call(relay, "shell_exec", {"command": "true", "use_shell": False}), "exit_code"
                    ),
                    "exec_subreaper": checked(
                        stdio_call(subreaper, "shell_exec", {"command": "true"}), "exit_code"
                    ),
                    "joining_spawn": lambda: joining_spawn("true"),
                }
                for action in actions.values():
                    await timed(WARMUP, action)
                runs = await interleaved(actions, CALLS)
                judge(figure, runs, "stdio", anchor_text)
                spawn, joining = summarize(runs["spawn"]), summarize(runs["joining_spawn"])
                no_shell, forced = summarize(runs["no_shell"]), summarize(runs["exec_subreaper"])
                figure.details.update(
                    containment=mechanism,
                    use_shell_false=no_shell.ms(),
                    raw_joining_shell_true=joining.ms(),
                    exec_forced_subreaper=forced.ms(),
                )
                figure.note += (
                    f" Containment in use: {mechanism}; a raw spawn of the child a contained `true` runs "
                    f"(`/bin/sh -c` with the join's line, no cgroup) {joining.p50 * 1000:.2f} ms (raw `true` "
                    f"{spawn.p50 * 1000:.2f} ms: the shell is {(joining.p50 - spawn.p50) * 1000:.2f} ms of the "
                    f"own work); use_shell=false "
                    f"{no_shell.p50 * 1000:.2f} ms; on a server forced to subreaper {forced.p50 * 1000:.2f} ms."
                )
                if figure.holds == "no":
                    raw = state / "p1.pyspy"
                    with py_spy(relay.pid, raw):
                        await timed(CALLS, actions["exec"])
                    figure.note += f" Profile of the server during {CALLS} more calls: " + profile_summary(
                        raw
                    )
    finally:
        remove_tree(state)


def _noop_of(relay: RelayStdio) -> Action:
    async def noop() -> None:
        if (await relay.call("server_info", {})).is_error:
            raise RuntimeError("server_info failed")

    return noop


async def p1h(figure: Figure) -> None:
    from mcp import Client

    state = state_dir()
    relay_state, bare_state = state / "relay", state / "bare"
    relay_state.mkdir()
    bare_state.mkdir()
    try:
        with (
            audit_anchor() as (anchor, anchor_text),
            relay_http(relay_state, RELAY_SHELL_AUDIT_ANCHOR=anchor) as relay_server,
            bare_http(bare_state) as bare_server,
        ):
            async with Client(relay_server.url) as relay, Client(bare_server.url) as bare:

                async def relay_noop() -> None:
                    if (await relay.call_tool("server_info", {})).is_error:
                        raise RuntimeError("server_info failed")

                actions: dict[str, Action] = {
                    "exec": checked(http_call(relay, "shell_exec", {"command": "true"}), "exit_code"),
                    "bare_noop": checked(http_call(bare, "noop", {}), "result"),
                    "spawn": lambda: raw_spawn("true"),
                    "relay_noop": relay_noop,
                }
                for action in actions.values():
                    await timed(WARMUP, action)
                runs = await interleaved(actions, CALLS)
                judge(figure, runs, "streamable HTTP, one client per server", anchor_text)
                if figure.holds == "no":
                    raw = Path(state) / "p1h.pyspy"
                    with py_spy(relay_server.pid, raw):
                        await timed(CALLS, actions["exec"])
                    figure.note += f" Profile of the server during {CALLS} more calls: " + profile_summary(
                        raw
                    )
    finally:
        remove_tree(state)


async def main() -> list[Figure]:
    figures: list[Figure] = []
    target = f"<= {TARGET_RATIO}x"
    await measure(
        figures, "P1", "shell_exec true over stdio vs no-op round trip + raw spawn (p50)", target, p1
    )
    await measure(
        figures, "P1H", "shell_exec true over HTTP vs no-op round trip + raw spawn (p50)", target, p1h
    )
    return figures


if __name__ == "__main__":
    run_main(main)
