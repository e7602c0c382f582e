"""P1: ``shell_exec true`` over stdio with the official MCP client vs a raw asyncio spawn of ``true``.

Measured in one run, each CALLS times after WARMUP unmeasured calls, in alternating batches of 50:

- value: ``shell_exec {"command": "true"}`` round trip through the real ``relay-shell`` command;
- floor: ``asyncio.create_subprocess_exec("true")`` with pipes, stdout/stderr read to EOF;
- breakdown (in the note and details): the MCP round trip of a no-op tool (``server_info``),
  ``shell_exec`` with ``use_shell=false`` (no ``/bin/sh``), and a raw spawn of ``/bin/sh -c true``.
- containment (details): the mechanism the server chose (``auto``), the same call on a second
  server forced to ``RELAY_SHELL_CONTAINMENT=subreaper``, and a raw spawn of ``true`` through
  the cgroup mechanism's hold (``/bin/sh`` reading one line, then ``exec``), which is what
  the hold adds to a spawn.

When the target is missed, the server is sampled with py-spy during further calls and the
note says where its time went.

    .venv/bin/python bench/p1_exec.py
"""

from __future__ import annotations

import asyncio

from common import (
    Figure,
    RelayStdio,
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

from relay_shell.local.contained import RELEASE_LINE, hold_argv

CALLS = 300
WARMUP = 30
TARGET_RATIO = 2.5


async def raw_spawn(*argv: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    await process.communicate()


async def held_spawn(*argv: str) -> None:
    """A raw spawn through the cgroup mechanism's hold (released at once, no cgroup)."""
    process = await asyncio.create_subprocess_exec(
        *hold_argv(argv, input_follows=False),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    await process.communicate(RELEASE_LINE)


async def p1(figure: Figure) -> None:
    state = state_dir()
    subreaper_state = state / "subreaper"
    subreaper_state.mkdir()
    try:
        async with (
            relay_stdio(state) as relay,
            relay_stdio(subreaper_state, RELAY_SHELL_CONTAINMENT="subreaper") as subreaper,
        ):

            async def exec_true(use_shell: bool = True, server: RelayStdio = relay) -> None:
                result = await server.call("shell_exec", {"command": "true", "use_shell": use_shell})
                if result.is_error or result.data.get("exit_code") != 0:
                    raise RuntimeError(f"shell_exec true failed: {result.text[:300]}")

            info = await relay.call("server_info", {})
            mechanism = str(info.data.get("containment"))

            async def noop() -> None:
                if (await relay.call("server_info", {})).is_error:
                    raise RuntimeError("server_info failed")

            for warm in (
                exec_true,
                lambda: exec_true(server=subreaper),
                noop,
                lambda: raw_spawn("true"),
                lambda: raw_spawn("/bin/sh", "-c", "true"),
                lambda: held_spawn("true"),
            ):
                await timed(WARMUP, warm)
            runs = await interleaved(
                {
                    "exec": exec_true,
                    "floor": lambda: raw_spawn("true"),
                    "noop": noop,
                    "no_shell": lambda: exec_true(False),
                    "sh_floor": lambda: raw_spawn("/bin/sh", "-c", "true"),
                    "exec_subreaper": lambda: exec_true(server=subreaper),
                    "held_floor": lambda: held_spawn("true"),
                },
                CALLS,
            )
            measured, floor, protocol = (
                summarize(runs["exec"]),
                summarize(runs["floor"]),
                summarize(runs["noop"]),
            )
            no_shell, shell_floor = summarize(runs["no_shell"]), summarize(runs["sh_floor"])
            figure.value, figure.floor = measured.ms(), floor.ms()
            figure.ratio = ratio(measured.p50, floor.p50)
            figure.judge(figure.ratio <= TARGET_RATIO)
            figure.details = {
                "calls": CALLS,
                "p99_ratio": round(ratio(measured.p99, floor.p99), 2),
                "noop_tool": protocol.ms(),
                "use_shell_false": no_shell.ms(),
                "raw_sh_c_true": shell_floor.ms(),
                "containment": mechanism,
                "exec_forced_subreaper": summarize(runs["exec_subreaper"]).ms(),
                "raw_true_through_the_hold": summarize(runs["held_floor"]).ms(),
            }
            overhead = measured.p50 - protocol.p50 - shell_floor.p50
            figure.note = (
                f"p99 ratio {figure.details['p99_ratio']}x. Breakdown of the p50: MCP stdio round trip of a "
                f"no-op tool {protocol.p50 * 1000:.2f} ms, raw `sh -c true` spawn {shell_floor.p50 * 1000:.2f} ms, "
                f"leaving {overhead * 1000:.2f} ms of relay-shell work per call (pipeline, classify, env, "
                f"capture, audit write, result shaping); use_shell=false: {no_shell.p50 * 1000:.2f} ms. "
                f"The target allows {TARGET_RATIO}x{floor.p50 * 1000:.2f} = {TARGET_RATIO * floor.p50 * 1000:.2f} ms "
                f"in all, and the no-op round trip alone is {ratio(protocol.p50, floor.p50):.1f}x the floor"
            )
            if protocol.p50 > TARGET_RATIO * floor.p50:
                figure.note += (
                    ", so no relay-shell change alone can reach the target: it needs a cheaper SDK stdio "
                    "round trip as well as less per-call work."
                )
            else:
                figure.note += "."
            held, forced = summarize(runs["held_floor"]), summarize(runs["exec_subreaper"])
            figure.note += (
                f" Containment in use: {mechanism}; a raw spawn of `true` through the cgroup hold "
                f"{held.p50 * 1000:.2f} ms (raw `true` {floor.p50 * 1000:.2f} ms); shell_exec true on a "
                f"server forced to subreaper {forced.p50 * 1000:.2f} ms."
            )
            if figure.holds == "no":
                raw = state / "p1.pyspy"
                with py_spy(relay.pid, raw):
                    await timed(CALLS, exec_true)
                figure.note += " Profile of the server during 300 more calls: " + profile_summary(raw)
    finally:
        remove_tree(state)


async def main() -> list[Figure]:
    figures: list[Figure] = []
    await measure(figures, "P1", "shell_exec true over stdio (p50)", f"<= {TARGET_RATIO}x", p1)
    return figures


if __name__ == "__main__":
    run_main(main)
