"""Bench: what the SSH layer costs on top of raw asyncssh, against real OpenSSH sshd on loopback.

1. One command on a reused connection: raw ``conn.run("true")`` vs ``run_remote`` through the
   pool (lease, channel accounting, bounded capture, deadline), N iterations each: p50, p99, ratio.
2. Fan-out of ``true`` across W sshd (one per loopback address 127.0.0.2 ..): raw
   ``asyncio.gather`` of ``asyncssh.connect`` + ``run`` vs ``fanout`` on a cold pool, then on the
   warm pool (connections reused) vs a raw gather over already-open connections.

Both sides check host keys against the same known_hosts file. Every sshd started here is
stopped (with its whole process tree) before the script exits, also on error or Ctrl-C.

    .venv/bin/python bench/ssh_exec_pool.py [--iterations 200] [--width 49]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncssh

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.sshd (the sshd helper shared with the test suite)

from tests.sshd import ClientKey, SshdInstance, start_many, start_sshd, stop_all  # noqa: E402

from relay_shell.config import Settings, load_settings  # noqa: E402
from relay_shell.ssh.fanout import fanout  # noqa: E402
from relay_shell.ssh.inventory import Inventory  # noqa: E402
from relay_shell.ssh.pool import ConnectionPool  # noqa: E402
from relay_shell.ssh.remote_exec import run_remote  # noqa: E402
from relay_shell.ssh.targets import ConnectOverrides, HostSpec  # noqa: E402


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


async def timed(repeat: int, action: Callable[[], Awaitable[object]]) -> list[float]:
    """Milliseconds per call, after two warm-up calls."""
    for _ in range(2):
        await action()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await action()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def report(label: str, samples: list[float]) -> float:
    p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
    print(f"  {label:<34} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   mean {statistics.fmean(samples):7.2f} ms")
    return p50


async def raw_connect(instance: SshdInstance, known_hosts: Path) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect(
        instance.address, instance.port, username=instance.user, config=None,
        client_keys=[str(instance.client_key.private_path)], known_hosts=str(known_hosts),
    )  # fmt: skip


def make_spec(settings: Settings, instance: SshdInstance) -> HostSpec:
    return Inventory.load(settings).resolve(
        instance.target(), ConnectOverrides(key_path=instance.client_key.private_path)
    )


async def bench_single(
    instance: SshdInstance, settings: Settings, known_hosts: Path, iterations: int
) -> None:
    print(f"\n1. one command on a reused connection ({iterations} iterations, `true`)")
    connection = await raw_connect(instance, known_hosts)
    try:
        raw = report("raw asyncssh conn.run", await timed(iterations, lambda: connection.run("true")))
    finally:
        connection.close()
        await connection.wait_closed()
    pool = ConnectionPool(settings)
    spec = make_spec(settings, instance)
    try:
        pooled = report(
            "run_remote via the pool",
            await timed(iterations, lambda: run_remote(pool, spec, "true", timeout_s=30, budget=65536)),
        )
        print(f"  ratio run_remote / raw (p50): {pooled / raw:.2f}   pool: {pool.stats()}")
    finally:
        await pool.aclose()


async def bench_fanout(farm: list[SshdInstance], settings: Settings, known_hosts: Path) -> None:
    width = len(farm)
    print(f"\n2. fan-out of `true` across {width} sshd")

    started = time.perf_counter()
    connections = await asyncio.gather(*(raw_connect(instance, known_hosts) for instance in farm))
    await asyncio.gather(*(connection.run("true") for connection in connections))
    raw_cold = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    await asyncio.gather(*(connection.run("true") for connection in connections))
    raw_warm = (time.perf_counter() - started) * 1000
    for connection in connections:
        connection.close()
    await asyncio.gather(*(connection.wait_closed() for connection in connections))

    pool = ConnectionPool(settings)
    targets: list[tuple[str, HostSpec | None, str | None]] = [
        (instance.address, make_spec(settings, instance), None) for instance in farm
    ]
    try:
        started = time.perf_counter()
        cold = await fanout(pool, targets, "true", timeout_s=30, concurrency=width, budget=65536)
        fanout_cold = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        warm = await fanout(pool, targets, "true", timeout_s=30, concurrency=width, budget=65536)
        fanout_warm = (time.perf_counter() - started) * 1000
    finally:
        await pool.aclose()
    failures = [result for result in [*cold, *warm] if result.status != "ok"]
    print(f"  {'raw gather, connect + run':<34} {raw_cold:8.1f} ms")
    print(f"  {'fanout, cold pool':<34} {fanout_cold:8.1f} ms   ratio {fanout_cold / raw_cold:.2f}")
    print(f"  {'raw gather, open connections':<34} {raw_warm:8.1f} ms")
    print(f"  {'fanout, warm pool':<34} {fanout_warm:8.1f} ms   ratio {fanout_warm / raw_warm:.2f}")
    print(
        f"  hosts not ok: {len(failures)}"
        + (f" ({failures[0].status}: {failures[0].reason})" if failures else "")
    )


async def main(iterations: int, width: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="relay-bench-ssh-"))
    known_hosts = workdir / "known_hosts"
    client_key = ClientKey.create()
    instances: list[SshdInstance] = []
    try:
        single = start_sshd(client_key)
        instances.append(single)
        instances.extend(start_many(client_key, width, first_address="127.0.0.2"))
        known_hosts.write_text("".join(instance.known_hosts_line() for instance in instances))
        settings = load_settings(
            audit_path=workdir / "audit.jsonl",
            ssh_config=workdir / "ssh_config",
            ssh_known_hosts="strict",
            ssh_known_hosts_file=known_hosts,
            max_conns=max(256, width + 8),
        )
        print(f"sshd: 1 + {width} instances, known_hosts checked strictly on both sides")
        await bench_single(single, settings, known_hosts, iterations)
        await bench_fanout(instances[1:], settings, known_hosts)
    finally:
        stop_all(instances)
        client_key.remove()
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"\nstopped {len(instances)} sshd instances")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--width", type=int, default=49)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.iterations, arguments.width))
