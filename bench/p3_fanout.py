"""P3: ``ssh_fanout`` across 49 real sshd instances vs a raw asyncssh gather; 1,000 hosts in one call.

49 hosts (``tests/sshd.py``: one OpenSSH sshd per loopback address 127.0.0.2 ..), listed in a
JSON inventory (``RELAY_SHELL_INVENTORY``, known_hosts ``ignore``), command ``true``,
concurrency 49 (the whole width at once):

- P3a cold: the first ``ssh_fanout`` of a fresh relay-shell (every connection dialled),
  median of COLD_REPS servers, vs ``asyncio.gather`` of 49 x (``asyncssh.connect`` +
  ``run("true")`` + close). The client lists the tools after the handshake and sends the
  call THINK_S later, as a model's first turn would (the server loads the SSH layer once it
  has been quiet for a moment); the note also gives the call sent straight after the list;
- P3b warm: later calls on the pooled connections, median of WARM_REPS, vs a gather of
  ``conn.run("true")`` on 49 held connections.

The SSH layer is loaded in the background once the handshake is over and the server is
quiet (only when SSH hosts are configured); the P3a note also gives the first local call
(``shell_exec true``) sent LOCAL_AFTER_S after tools/list, while that load runs, and THINK_S
after it, on a fresh server with the 49-host inventory vs one without any inventory (no
load), LOCAL_REPS fresh servers each, alternated: what the load costs a call that meets it,
and that a call after it pays nothing.

P3c: 1,000 hosts served by in-process asyncssh servers (``asyncssh.create_server``, one
listener per loopback port, all in this process, accepting the bench key and answering any
command with exit 0), one ``ssh_fanout`` call with concurrency 256 over the whole inventory.
Target: no host fails; the wall time is reported.

    .venv/bin/python bench/p3_fanout.py
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import asyncssh
from common import (
    Figure,
    RelayStdio,
    measure,
    memory_kib,
    mib,
    profile_summary,
    py_spy,
    ratio,
    relay_stdio,
    remove_tree,
    run_main,
    state_dir,
)
from tests.sshd import ClientKey, SshdInstance, start_many, stop_all

WIDTH = 49
COLD_REPS = 3
WARM_REPS = 10
LOCAL_REPS = 3
THINK_S = 1.0
LOCAL_AFTER_S = 0.15
BIG_FLEET = 1000
BIG_CONCURRENCY = 256
TARGET_RATIO = 1.3


def write_inventory(path: Path, hosts: Sequence[tuple[str, int]], user: str, key: Path) -> None:
    entries = {
        f"h{index:04d}": {
            "hostname": address,
            "user": user,
            "port": port,
            "identity_file": str(key),
            "known_hosts": "ignore",
        }
        for index, (address, port) in enumerate(hosts)
    }
    path.write_text(json.dumps(entries))


def fleet_env(inventory: Path, hosts: int) -> dict[str, str]:
    return {
        "RELAY_SHELL_INVENTORY": str(inventory),
        "RELAY_SHELL_FANOUT_MAX_HOSTS": str(max(1000, hosts)),
        "RELAY_SHELL_FANOUT_MAX_CONCURRENCY": str(BIG_CONCURRENCY),
        "RELAY_SHELL_MAX_CONNS": str(hosts + 100),
    }


async def list_tools(relay: RelayStdio) -> None:
    from mcp import Client

    assert isinstance(relay.client, Client)
    await relay.client.list_tools()


async def first_fanout(relay: RelayStdio, think_s: float) -> float:
    """The first fan-out of a fresh server: list the tools, ``think_s`` later send the call."""
    await list_tools(relay)
    await asyncio.sleep(think_s)
    return await fanout_once(relay, WIDTH, WIDTH)


async def fanout_once(relay: RelayStdio, hosts: int, concurrency: int) -> float:
    """Wall seconds of one ``ssh_fanout true`` over the whole inventory; raises unless all are ok."""
    started = time.perf_counter()
    result = await relay.call("ssh_fanout", {"command": "true", "concurrency": concurrency, "timeout": 120})
    elapsed = time.perf_counter() - started
    recap = result.data.get("recap")
    if result.is_error or recap != {"ok": hosts}:
        raise RuntimeError(f"fan-out failed: recap {recap}: {result.text[:400]}")
    return elapsed


def connect(instance: SshdInstance) -> asyncssh.connection._ConnectionManager:  # type: ignore[name-defined]
    return asyncssh.connect(
        instance.address,
        instance.port,
        username=instance.user,
        client_keys=[str(instance.client_key.private_path)],
        known_hosts=None,
    )


async def first_local_call(state: Path, env: dict[str, str], after_s: float) -> float:
    """Wall seconds of the first ``shell_exec true`` of a fresh server, sent ``after_s`` after tools/list."""
    async with relay_stdio(state, **env) as relay:
        await list_tools(relay)
        await asyncio.sleep(after_s)
        started = time.perf_counter()
        result = await relay.call("shell_exec", {"command": "true"})
        elapsed = time.perf_counter() - started
        if result.is_error:
            raise RuntimeError(f"shell_exec true failed: {result.text[:300]}")
        return elapsed


async def first_local_calls(state: Path, env: dict[str, str], after_s: float) -> tuple[float, float]:
    """Median first local call with the inventory (SSH layer loaded ahead) and without any, alternated."""
    with_hosts, without = [], []
    for _ in range(LOCAL_REPS):
        with_hosts.append(await first_local_call(state, env, after_s))
        without.append(await first_local_call(state, {}, after_s))
    return statistics.median(with_hosts), statistics.median(without)


async def raw_cold(instances: Sequence[SshdInstance]) -> float:
    async def one(instance: SshdInstance) -> None:
        async with connect(instance) as connection:
            await connection.run("true", check=True)

    started = time.perf_counter()
    await asyncio.gather(*(one(instance) for instance in instances))
    return time.perf_counter() - started


@contextlib.asynccontextmanager
async def held_connections(
    instances: Sequence[SshdInstance],
) -> AsyncIterator[Callable[[], Awaitable[float]]]:
    """49 raw asyncssh connections held open; yields a sampler: wall seconds of one gather of run("true")."""
    connections = await asyncio.gather(*(connect(instance) for instance in instances))

    async def sample() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(c.run("true", check=True) for c in connections))
        return time.perf_counter() - started

    try:
        await sample()  # warm-up
        yield sample
    finally:
        for connection in connections:
            connection.close()
        await asyncio.gather(*(c.wait_closed() for c in connections))


async def p3_small(cold: Figure, warm: Figure) -> None:
    """Relay and floor samples alternate (cold: one each per fresh server; warm: one each per call),
    so a change of the machine's load during the run moves both alike."""
    state = state_dir()
    key = ClientKey.create(state)
    instances = start_many(key, WIDTH)
    try:
        inventory = state / "inventory.json"
        write_inventory(
            inventory, [(i.address, i.port) for i in instances], instances[0].user, key.private_path
        )
        env = fleet_env(inventory, WIDTH)
        cold_samples, warm_samples, cold_floors, warm_floors, immediate = [], [], [], [], []
        profile = "no profile"
        async with held_connections(instances) as raw_warm:
            for rep in range(COLD_REPS):
                cold_floors.append(await raw_cold(instances))
                async with relay_stdio(state, **env) as relay:
                    immediate.append(await first_fanout(relay, 0.0))
                cold_floors.append(await raw_cold(instances))
                async with relay_stdio(state, **env) as relay:
                    cold_samples.append(await first_fanout(relay, THINK_S))
                    for _ in range(WARM_REPS):
                        warm_floors.append(await raw_warm())
                        warm_samples.append(await fanout_once(relay, WIDTH, WIDTH))
                    ratio_now = statistics.median(warm_samples) / statistics.median(warm_floors)
                    if rep == COLD_REPS - 1 and ratio_now > TARGET_RATIO:
                        raw = state / "p3b.pyspy"
                        with py_spy(relay.pid, raw):
                            for _ in range(WARM_REPS):
                                await fanout_once(relay, WIDTH, WIDTH)
                        profile = profile_summary(raw)
        local_with, local_without = await first_local_calls(state, env, LOCAL_AFTER_S)
        later_with, later_without = await first_local_calls(state, env, THINK_S)
        for figure, samples, floors in ((cold, cold_samples, cold_floors), (warm, warm_samples, warm_floors)):
            value, floor = statistics.median(samples), statistics.median(floors)
            figure.value, figure.floor = f"{value * 1000:.0f} ms", f"{floor * 1000:.0f} ms"
            figure.ratio = ratio(value, floor)
            figure.judge(figure.ratio <= TARGET_RATIO)
            figure.details = {
                "samples_ms": [round(s * 1000) for s in samples],
                "floor_samples_ms": [round(s * 1000) for s in floors],
                **(
                    {"straight_after_list_ms": [round(s * 1000) for s in immediate]} if figure is cold else {}
                ),
                "hosts": WIDTH,
            }
        cold.note = (
            f"median of {COLD_REPS} fresh servers (all {WIDTH} connections dialled in the call) vs a raw "
            f"gather of connect+run+close, alternated; the call sent {THINK_S:g} s after tools/list; max "
            f"{max(cold_samples) * 1000:.0f} ms. Sent straight after tools/list (SSH layer not loaded ahead): "
            f"median {statistics.median(immediate) * 1000:.0f} ms "
            f"({ratio(statistics.median(immediate), statistics.median(cold_floors)):.2f}x). First local call "
            f"(shell_exec true) {LOCAL_AFTER_S * 1000:.0f} ms after tools/list, median of {LOCAL_REPS} fresh "
            f"servers: {local_with * 1000:.1f} ms with the {WIDTH}-host inventory (SSH layer loading) vs "
            f"{local_without * 1000:.1f} ms without an inventory ({ratio(local_with, local_without):.2f}x); sent "
            f"{THINK_S:g} s after tools/list (load over): {later_with * 1000:.1f} ms vs {later_without * 1000:.1f} ms "
            f"({ratio(later_with, later_without):.2f}x)."
        )
        cold.details["first_local_call_ms"] = {
            "with_inventory": round(local_with * 1000, 1),
            "without_inventory": round(local_without * 1000, 1),
            "with_inventory_after_think": round(later_with * 1000, 1),
            "without_inventory_after_think": round(later_without * 1000, 1),
        }
        warm.note = (
            f"median of {len(warm_samples)} calls on pooled connections vs a gather of run() on held "
            "connections, one of each in turn."
        )
        if warm.holds == "no":
            warm.note += f" Profile of the server during {WARM_REPS} more calls: {profile}"
    finally:
        stop_all(instances)
        remove_tree(state)


class _AcceptAll(asyncssh.SSHServer):
    """Public-key auth only, against the keys given to ``create_server``."""


def _answer_true(process: asyncssh.SSHServerProcess[str]) -> None:
    process.exit(0)


async def start_fleet(count: int, client_key: ClientKey) -> tuple[list[asyncssh.SSHAcceptor], list[int]]:
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    authorized = asyncssh.import_authorized_keys(client_key.public_line + "\n")
    options = {
        "server_host_keys": [host_key],
        "authorized_client_keys": authorized,
        "process_factory": _answer_true,
        "encoding": None,
        "backlog": 512,
    }
    servers = await asyncio.gather(
        *(asyncssh.create_server(_AcceptAll, "127.0.0.1", 0, **options) for _ in range(count))
    )
    ports = [int(server.sockets[0].getsockname()[1]) for server in servers]
    return list(servers), ports


async def p3_big(figure: Figure) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    state = state_dir()
    key = ClientKey.create(state)
    servers, ports = await start_fleet(BIG_FLEET, key)
    try:
        inventory = state / "inventory.json"
        write_inventory(inventory, [("127.0.0.1", port) for port in ports], "bench", key.private_path)
        async with relay_stdio(state, **fleet_env(inventory, BIG_FLEET)) as relay:
            before = memory_kib(relay.pid)["VmRSS"]
            elapsed = await fanout_once(relay, BIG_FLEET, BIG_CONCURRENCY)
            after = memory_kib(relay.pid)
            again = await fanout_once(relay, BIG_FLEET, BIG_CONCURRENCY)
        figure.value = f"{elapsed:.1f} s, 0 failures"
        figure.floor = "-"
        figure.judge(True)
        figure.details = {
            "hosts": BIG_FLEET,
            "concurrency": BIG_CONCURRENCY,
            "pooled_again_s": round(again, 2),
        }
        figure.note = (
            f"{BIG_FLEET} in-process asyncssh servers, concurrency {BIG_CONCURRENCY}, every connection dialled "
            f"in the call ({BIG_FLEET / elapsed:.0f} hosts/s; both ends share this machine's 2 cores); "
            f"a second call on the pooled connections took {again:.1f} s. Server RSS "
            f"{mib(before)} -> {mib(after['VmRSS'])} (peak {mib(after['VmHWM'])})."
        )
    finally:
        for server in servers:
            server.close()
        await asyncio.gather(*(server.wait_closed() for server in servers))
        remove_tree(state)


async def main() -> list[Figure]:
    figures: list[Figure] = []
    warm = Figure(
        key="P3b", title=f"ssh_fanout true x {WIDTH} sshd, pooled (wall)", target=f"<= {TARGET_RATIO}x"
    )

    async def small(cold: Figure) -> None:
        try:
            await p3_small(cold, warm)
        except Exception as exc:
            warm.holds, warm.note = "error", f"bench failed: {type(exc).__name__}: {exc}"[:600]
            raise

    await measure(
        figures, "P3a", f"ssh_fanout true x {WIDTH} sshd, cold (wall)", f"<= {TARGET_RATIO}x", small
    )
    figures.append(warm)
    await measure(figures, "P3c", f"ssh_fanout true x {BIG_FLEET} hosts, one call", "0 failures", p3_big)
    return figures


if __name__ == "__main__":
    run_main(main)
