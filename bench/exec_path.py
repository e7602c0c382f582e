"""The local exec path alone, in one process: ``run_process`` of ``sh -c true`` in a containment.

Not a figure of the table: a profiling aid for P1 and P8, without MCP, the pipeline or the
audit. In alternating batches it measures, per call, the wall time (p50) and this process's
CPU time (what the server pays; the children's CPU is not in it) of:

- ``raw``: ``asyncio.create_subprocess_exec("true")`` with pipes, read to the end;
- ``cgroup``: a containment opened, ``run_process(["/bin/sh", "-c", "true"])`` in it, closed
  (the cgroup mechanism: the hold, the move, the kill check, the cgroup's mkdir and rmdir);
- ``subreaper``: the same under the subreaper mechanism.

    .venv/bin/python bench/exec_path.py [--calls 50] [--rounds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from relay_shell.config import ContainmentMode
from relay_shell.local.containment import ContainmentService, cgroup_unavailable
from relay_shell.local.environment import build_child_env
from relay_shell.local.runner import ProcessSpec, run_process

Action = Callable[[], Awaitable[None]]


async def raw_true() -> None:
    process = await asyncio.create_subprocess_exec(
        "true",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    await process.communicate()


def contained_true(service: ContainmentService) -> Action:
    async def run() -> None:
        spec = ProcessSpec(argv=["/bin/sh", "-c", "true"], env=build_child_env({}))
        async with service.contain("shell_exec") as contained:
            report = await run_process(spec, timeout_s=30, budget=65536, contained=contained)
        if report.exit_code != 0:
            raise RuntimeError(f"exit {report.exit_code}")

    return run


async def batch(action: Action, calls: int) -> tuple[list[float], float]:
    walls: list[float] = []
    cpu_start = time.process_time()
    for _ in range(calls):
        started = time.perf_counter()
        await action()
        walls.append(time.perf_counter() - started)
    return walls, (time.process_time() - cpu_start) / calls


async def main(calls: int, rounds: int) -> None:
    services = {"subreaper": ContainmentService(ContainmentMode.SUBREAPER)}
    if cgroup_unavailable() is None:
        services["cgroup"] = ContainmentService(ContainmentMode.CGROUP)
    actions: dict[str, Action] = {"raw": raw_true}
    actions.update({name: contained_true(service) for name, service in services.items()})
    try:
        for action in actions.values():
            await batch(action, 20)  # warm
        walls: dict[str, list[float]] = {name: [] for name in actions}
        cpus: dict[str, list[float]] = {name: [] for name in actions}
        for _ in range(rounds):
            for name, action in actions.items():
                wall, cpu = await batch(action, calls)
                walls[name].extend(wall)
                cpus[name].append(cpu)
        for name in actions:
            print(
                f"{name:10s} wall p50 {statistics.median(walls[name]) * 1000:.3f} ms, "
                f"server CPU {statistics.median(cpus[name]) * 1000:.3f} ms per call"
            )
    finally:
        for service in services.values():
            await service.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=8)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.calls, arguments.rounds))
