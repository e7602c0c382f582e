"""P2: ``ssh_exec true`` on a pooled connection vs raw asyncssh ``conn.run("true")`` on a reused one.

Against one real OpenSSH sshd on loopback (``tests/sshd.py``, user ``relaytest``), in one run:

- value: ``ssh_exec {"host": ..., "command": "true", "key_path": ...}`` through the real
  ``relay-shell`` over stdio; the first (connecting) calls are warm-up, so the pool is hot;
- floor: ``asyncssh.connect`` once, then ``conn.run("true")`` CALLS times (in alternating batches
  with the value, so a change of load hits both).

The layer-level figure (the pool without MCP) comes from ``bench/ssh_exec_pool.py`` and is
reported by ``bench/run`` as its own row.

    .venv/bin/python bench/p2_ssh_exec.py
"""

from __future__ import annotations

import asyncssh
from common import (
    Figure,
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
from tests.sshd import ClientKey, SshdInstance, start_sshd

CALLS = 200
WARMUP = 20
TARGET_RATIO = 2.0


def raw_connect(instance: SshdInstance) -> asyncssh.connection._ConnectionManager:  # type: ignore[name-defined]
    return asyncssh.connect(
        instance.address,
        instance.port,
        username=instance.user,
        client_keys=[str(instance.client_key.private_path)],
        known_hosts=None,
    )


async def p2(figure: Figure) -> None:
    state = state_dir()
    key = ClientKey.create(state)
    instance = start_sshd(key)
    try:
        async with relay_stdio(state) as relay:
            arguments: dict[str, object] = {
                "host": instance.target(),
                "command": "true",
                "key_path": str(key.private_path),
            }

            async def ssh_true() -> None:
                result = await relay.call("ssh_exec", arguments)
                if result.is_error or result.data.get("exit_code") != 0:
                    raise RuntimeError(f"ssh_exec true failed: {result.text[:300]}")

            async with raw_connect(instance) as connection:

                async def raw_true() -> None:
                    await connection.run("true", check=True)

                async def noop() -> None:
                    await relay.call("server_info", {})

                for warm in (ssh_true, raw_true, noop):
                    await timed(WARMUP, warm)
                runs = await interleaved({"ssh": ssh_true, "raw": raw_true, "noop": noop}, CALLS)
            measured, floor, noop_stats = (
                summarize(runs["ssh"]),
                summarize(runs["raw"]),
                summarize(runs["noop"]),
            )
            figure.value, figure.floor = measured.ms(), floor.ms()
            figure.ratio = ratio(measured.p50, floor.p50)
            figure.judge(figure.ratio <= TARGET_RATIO)
            figure.details = {"calls": CALLS, "noop_tool": noop_stats.ms()}
            figure.note = (
                f"p99 ratio {ratio(measured.p99, floor.p99):.2f}x. MCP stdio round trip of a no-op tool "
                f"{noop_stats.p50 * 1000:.2f} ms; relay-shell work beyond protocol and floor: "
                f"{(measured.p50 - noop_stats.p50 - floor.p50) * 1000:.2f} ms per call; value and floor measured in "
                "alternating batches of 50."
            )
            if figure.holds == "no":
                raw = state / "p2.pyspy"
                with py_spy(relay.pid, raw):
                    await timed(CALLS, ssh_true)
                figure.note += f" Profile of the server during {CALLS} more calls: " + profile_summary(raw)
    finally:
        instance.remove()
        remove_tree(state)


async def main() -> list[Figure]:
    figures: list[Figure] = []
    await measure(figures, "P2", "ssh_exec true, pooled, over stdio (p50)", f"<= {TARGET_RATIO}x", p2)
    return figures


if __name__ == "__main__":
    run_main(main)
