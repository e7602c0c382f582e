"""P12: what the yield path costs a call that never yields, over stdio with the official client.

Every ``shell_exec`` now runs its executor in a task of its own, waits up to ``yield_after``
and feeds a live stream (the job's, should it yield); ``yield_after: 0`` takes the plain path.
Measured in one run against the same server, in alternating batches:

- P12a: ``shell_exec true`` with the default ``yield_after`` vs ``yield_after: 0`` (p50);
- P12b: 256 MiB drained through ``shell_exec`` with the default vs ``yield_after: 0`` (best of 3);
- P12c: a job's ``session_recv`` that returns at once (``ended``, nothing new) vs ``server_info``,
  the no-op tool (p50): what one poll of a job costs.

    .venv/bin/python bench/p12_jobs.py
"""

from __future__ import annotations

from common import (
    Figure,
    interleaved,
    measure,
    ratio,
    relay_stdio,
    remove_tree,
    run_main,
    state_dir,
    summarize,
)

CALLS = 300
DRAIN = "head -c 268435456 /dev/zero"
DRAIN_ROUNDS = 5
TARGET_EXEC = 1.15
TARGET_DRAIN = 1.25
TARGET_POLL = 1.5


async def p9(figures: list[Figure]) -> None:
    state = state_dir()
    try:
        async with relay_stdio(state) as relay:

            async def exec_true(**extra: object) -> None:
                result = await relay.call("shell_exec", {"command": "true", **extra})
                if result.is_error or result.data.get("status") != "done":
                    raise RuntimeError(f"shell_exec true failed: {result.text[:300]}")

            async def drain(**extra: object) -> None:
                result = await relay.call("shell_exec", {"command": DRAIN, "timeout": 300, **extra})
                if result.data.get("output_bytes") != 268435456:
                    raise RuntimeError(f"drain failed: {result.text[:300]}")

            started = await relay.call("shell_exec", {"command": "echo x", "yield_after": 0})
            job = await relay.call("shell_exec", {"command": "sleep 0.2", "yield_after": 0.05})
            job_id = str(job.data["job_id"])
            while not (await relay.call("session_recv", {"session_id": job_id, "timeout": 5})).data["ended"]:
                pass
            assert not started.is_error

            async def poll() -> None:
                read = await relay.call("session_recv", {"session_id": job_id, "timeout": 0.001})
                if not read.data.get("ended"):
                    raise RuntimeError(f"poll failed: {read.text[:300]}")

            async def noop() -> None:
                await relay.call("server_info", {})

            async def p9a(figure: Figure) -> None:
                runs = await interleaved(
                    {"yield": exec_true, "plain": lambda: exec_true(yield_after=0)}, CALLS
                )
                value, floor = summarize(runs["yield"]), summarize(runs["plain"])
                figure.value, figure.floor = value.ms(), floor.ms()
                figure.ratio = ratio(value.p50, floor.p50)
                figure.note = f"p99 ratio {ratio(value.p99, floor.p99):.2f}x; {CALLS} calls each"
                figure.judge(figure.ratio <= TARGET_EXEC)

            async def p9b(figure: Figure) -> None:
                runs = await interleaved(
                    {"yield": drain, "plain": lambda: drain(yield_after=0)}, DRAIN_ROUNDS, batch=1
                )
                value, floor = min(runs["yield"]), min(runs["plain"])
                figure.value, figure.floor = f"{value:.2f} s", f"{floor:.2f} s"
                figure.ratio = ratio(value, floor)
                figure.note = (
                    "the live stream copies the output into its bounded buffer; nothing is hashed twice"
                )
                figure.judge(figure.ratio <= TARGET_DRAIN)

            async def p9c(figure: Figure) -> None:
                runs = await interleaved({"poll": poll, "noop": noop}, CALLS)
                value, floor = summarize(runs["poll"]), summarize(runs["noop"])
                figure.value, figure.floor = value.ms(), floor.ms()
                figure.ratio = ratio(value.p50, floor.p50)
                figure.judge(figure.ratio <= TARGET_POLL)

            await measure(figures, "P12a", "shell_exec true: yield path vs yield_after 0 (p50)",
                          f"<= {TARGET_EXEC}x", p9a)  # fmt: skip
            await measure(figures, "P12b", "256 MiB drained: yield path vs yield_after 0 (wall)",
                          f"<= {TARGET_DRAIN}x", p9b)  # fmt: skip
            await measure(figures, "P12c", "session_recv of an ended job vs server_info (p50)",
                          f"<= {TARGET_POLL}x", p9c)  # fmt: skip
    finally:
        remove_tree(state)


async def main() -> list[Figure]:
    figures: list[Figure] = []
    await p9(figures)
    return figures


if __name__ == "__main__":
    run_main(main)
