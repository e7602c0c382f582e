"""P11: the server's memory with 32 running jobs and 64 rendered sessions at once.

One relay-shell over stdio (official client), ``RELAY_SHELL_MAX_JOBS`` 32 and
``RELAY_SHELL_MAX_SESSIONS`` 64 (the defaults, passed explicitly):

- 32 jobs: ``shell_exec`` of a command that prints 1 MiB (base64 of random bytes: more than a
  job's live buffer holds) and then keeps running (``sleep``), ``yield_after`` 0.05 s, so each
  becomes a running job with a full buffer;
- 64 sessions: ``shell_spawn`` (80x24) of a program that takes the alternate screen, repaints
  frames until it has written 512 KiB and then keeps running; each is read once with
  ``session_recv`` (``screen: always``) after the frames are out, so every session has a
  rendered screen model.

Value: the server's RSS growth, the larger of ``VmHWM`` (reset with ``clear_refs`` before the
workload) and 20 ms RSS samples, minus ``VmRSS`` before, with everything running and read.
Target: < 200 MiB. The note gives what is left after every job and session is killed.

    .venv/bin/python bench/p11_memory.py
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from common import (
    Figure,
    RelayStdio,
    measure,
    memory_kib,
    mib,
    relay_stdio,
    remove_tree,
    reset_peak_rss,
    run_main,
    state_dir,
)

JOBS = 32
SESSIONS = 64
TARGET_MIB = 200
JOB_COMMAND = "head -c 786432 /dev/urandom | base64; exec sleep 600"
FRAME_BYTES = 512 * 1024
FRAMES = r"""
import sys, time
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
out.write(b"\x1b[24;1Hframes done")
out.flush()
time.sleep(600)
"""


async def sample_rss(pid: int, peak: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(OSError, KeyError):
            peak[0] = max(peak[0], memory_kib(pid)["VmRSS"])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.02)


async def start_job(relay: RelayStdio) -> str:
    result = await relay.call("shell_exec", {"command": JOB_COMMAND, "yield_after": 0.05, "timeout": 900})
    job_id = result.data.get("job_id")
    if result.is_error or not isinstance(job_id, str):
        raise RuntimeError(f"the job did not start: {result.text[:300]}")
    return job_id


async def start_session(relay: RelayStdio, script: str) -> str:
    result = await relay.call(
        "shell_spawn", {"command": f"python3 {script} {FRAME_BYTES}", "cols": 80, "rows": 24}
    )
    session_id = result.data.get("session_id")
    if result.is_error or not isinstance(session_id, str):
        raise RuntimeError(f"shell_spawn failed: {result.text[:300]}")
    return session_id


async def render(relay: RelayStdio, session_id: str) -> int:
    """Wait until the session's frames are out, then read it as a screen; the bytes it read."""
    read = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        got = await relay.call(
            "session_recv",
            {"session_id": session_id, "timeout": 2, "screen": "always", "until": "frames done"},
        )
        if got.is_error:
            raise RuntimeError(f"session_recv failed: {got.text[:300]}")
        read += int(got.data.get("bytes") or 0)
        if got.data.get("matched"):
            return read
    raise RuntimeError(f"session {session_id} never finished its frames")


async def workload(relay: RelayStdio, figure: Figure) -> None:
    script = relay.state / "frames_hold.py"
    script.write_text(FRAMES)
    await relay.call("shell_exec", {"command": "echo warm"})
    before = memory_kib(relay.pid)["VmRSS"]
    hwm_reset = reset_peak_rss(relay.pid)
    peak, stop = [before], asyncio.Event()
    sampler = asyncio.create_task(sample_rss(relay.pid, peak, stop))
    started = time.perf_counter()
    jobs = [await start_job(relay) for _ in range(JOBS)]
    sessions = [await start_session(relay, script) for _ in range(SESSIONS)]
    rendered = [await render(relay, session_id) for session_id in sessions]
    listed = await relay.call("session_list", {})
    running = [row for row in listed.data.get("sessions", []) if row.get("state") == "running"]  # type: ignore[union-attr]
    loaded = memory_kib(relay.pid)
    elapsed = time.perf_counter() - started
    stop.set()
    await sampler
    top = max(peak[0], loaded["VmHWM"] if hwm_reset else 0)
    growth = top - before
    for handle in [*jobs, *sessions]:
        await relay.call("session_kill", {"session_id": handle})
    after_kill = memory_kib(relay.pid)["VmRSS"]
    figure.value = f"+{mib(growth)} peak RSS"
    figure.floor = f"RSS before {mib(before)}"
    figure.ratio = growth / (TARGET_MIB * 1024)
    figure.judge(growth < TARGET_MIB * 1024 and len(running) >= JOBS + SESSIONS)
    figure.details = {
        "rss_before_kib": before,
        "peak_kib": top,
        "rss_loaded_kib": loaded["VmRSS"],
        "rss_after_kill_kib": after_kill,
        "running_listed": len(running),
        "screen_bytes_read": sum(rendered),
        "setup_seconds": round(elapsed, 1),
    }
    figure.note = (
        f"{JOBS} running jobs (each printed 1 MiB, then sleeps) and {SESSIONS} 80x24 sessions (each painted "
        f"{FRAME_BYTES // 1024} KiB of frames, read once as a screen), {len(running)} listed running; RSS with all "
        f"of them {mib(loaded['VmRSS'])}, peak {mib(top)}, {mib(after_kill)} after every one was killed "
        f"(per job or session: {mib(growth / (JOBS + SESSIONS))}). Ratio = growth / {TARGET_MIB} MiB."
    )


async def main() -> list[Figure]:
    figures: list[Figure] = []
    state = state_dir()
    try:
        async with relay_stdio(
            state, RELAY_SHELL_MAX_JOBS=str(JOBS), RELAY_SHELL_MAX_SESSIONS=str(SESSIONS)
        ) as relay:
            await measure(
                figures, "P11", f"{JOBS} running jobs + {SESSIONS} rendered sessions: server RSS growth",
                f"< {TARGET_MIB} MiB", lambda figure: workload(relay, figure),
            )  # fmt: skip
    finally:
        remove_tree(state)
    return figures


if __name__ == "__main__":
    run_main(main)
