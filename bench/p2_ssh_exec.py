"""P2: ``ssh_exec true`` on a pooled connection vs a no-op MCP round trip plus raw asyncssh ``conn.run("true")``.

Against one real OpenSSH sshd on loopback (``tests/sshd.py``, user ``relaytest``), in one run:

- value: ``ssh_exec {"host": ..., "command": "true", "key_path": ...}`` through the real
  ``relay-shell`` over stdio; the first (connecting) calls are warm-up, so the pool is hot;
- floor: the stdio round trip of a no-op tool on a bare MCPServer (``bench/bare_server.py``)
  **plus** ``conn.run("true")`` on a connection opened once (their p50s added); all measured in
  alternating batches, so a change of load hits each alike. Target: value p50 <= 1.15x the floor.

The layer-level figure (the pool without MCP) comes from ``bench/ssh_exec_pool.py`` and is
reported by ``bench/run`` as its own row.

    .venv/bin/python bench/p2_ssh_exec.py
"""

from __future__ import annotations

import asyncssh
from common import (
    BENCH,
    PYTHON,
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
TARGET_RATIO = 1.15
BARE = (PYTHON, str(BENCH / "bare_server.py"))


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
    bare_state = state / "bare"
    bare_state.mkdir()
    try:
        async with relay_stdio(state) as relay, relay_stdio(bare_state, command=BARE) as bare:
            arguments: dict[str, object] = {
                "host": instance.target(),
                "command": "true",
                "key_path": str(key.private_path),
            }

            async def ssh_true() -> None:
                result = await relay.call("ssh_exec", arguments)
                if result.is_error or result.data.get("exit_code") != 0:
                    raise RuntimeError(f"ssh_exec true failed: {result.text[:300]}")

            async def bare_noop() -> None:
                if (await bare.call("noop", {})).is_error:
                    raise RuntimeError("the bare no-op failed")

            async def relay_noop() -> None:
                if (await relay.call("server_info", {})).is_error:
                    raise RuntimeError("server_info failed")

            async with raw_connect(instance) as connection:

                async def raw_true() -> None:
                    await connection.run("true", check=True)

                actions = {"ssh": ssh_true, "raw": raw_true, "bare_noop": bare_noop, "relay_noop": relay_noop}
                for warm in actions.values():
                    await timed(WARMUP, warm)
                runs = await interleaved(actions, CALLS)
            measured, raw, noop = summarize(runs["ssh"]), summarize(runs["raw"]), summarize(runs["bare_noop"])
            relay_noop_stats = summarize(runs["relay_noop"])
            floor_p50, floor_p99 = noop.p50 + raw.p50, noop.p99 + raw.p99
            figure.value = measured.ms()
            figure.floor = (
                f"p50 {floor_p50 * 1000:.2f} ms (bare no-op {noop.p50 * 1000:.2f} + raw run {raw.p50 * 1000:.2f}), "
                f"p99 {floor_p99 * 1000:.2f} ms"
            )
            figure.ratio = ratio(measured.p50, floor_p50)
            figure.judge(figure.ratio <= TARGET_RATIO)
            own = measured.p50 - floor_p50
            figure.details = {
                "calls": CALLS,
                "bare_noop": noop.ms(),
                "raw_conn_run_true": raw.ms(),
                "relay_server_info": relay_noop_stats.ms(),
                "relay_own_work_p50_ms": round(own * 1000, 3),
                "allowed_own_work_p50_ms": round((TARGET_RATIO - 1) * floor_p50 * 1000, 3),
            }
            figure.note = (
                f"p99 ratio {ratio(measured.p99, floor_p99):.2f}x. relay-shell's own work at the p50: "
                f"{own * 1000:.2f} ms (allowed {(TARGET_RATIO - 1) * floor_p50 * 1000:.2f} ms); relay-shell's "
                f"server_info (the whole pipeline on a no-op) {relay_noop_stats.p50 * 1000:.2f} ms vs the bare "
                f"no-op {noop.p50 * 1000:.2f} ms; value and floors measured in alternating batches of 50."
            )
            if figure.holds == "no":
                profile = state / "p2.pyspy"
                with py_spy(relay.pid, profile):
                    await timed(CALLS, ssh_true)
                figure.note += f" Profile of the server during {CALLS} more calls: " + profile_summary(
                    profile
                )
    finally:
        instance.remove()
        remove_tree(state)


async def main() -> list[Figure]:
    figures: list[Figure] = []
    await measure(
        figures,
        "P2",
        "ssh_exec true, pooled, over stdio vs no-op round trip + raw run (p50)",
        f"<= {TARGET_RATIO}x",
        p2,
    )
    return figures


if __name__ == "__main__":
    run_main(main)
