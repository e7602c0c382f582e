"""Fan-out and connectivity checks across many real sshd (SPEC §5.2 ssh_fanout, ssh_check)."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from relay_shell.config import Settings
from relay_shell.ssh.check import check_hosts
from relay_shell.ssh.fanout import FanoutHostResult, fanout, group_identical, host_budget
from relay_shell.ssh.pool import ConnectionPool
from relay_shell.ssh.targets import HostSpec
from tests.ssh.helpers import spec_for, trust
from tests.sshd import ClientKey, SshdInstance, free_port

SERVER_ADDRESS = "echo $SSH_CONNECTION | cut -d' ' -f3"  # the address the client connected to


def _dead(settings: Settings, key: ClientKey) -> HostSpec:
    """A free port on 127.0.0.1 with nothing listening."""
    return spec_for(f"relaytest@127.0.0.1:{free_port()}", settings, key)


def _key_copies(key: ClientKey, directory: Path, count: int) -> list[Path]:
    """The same key under ``count`` paths: distinct pool keys, as if every host had its own key."""
    paths = []
    for index in range(count):
        path = directory / f"id_{index:02d}"
        shutil.copyfile(key.private_path, path)
        path.chmod(0o600)
        paths.append(path)
    return paths


async def test_fanout_across_the_farm_and_a_dead_host(
    pool: ConnectionPool, sshd_farm: list[SshdInstance], client_key: ClientKey, settings: Settings
) -> None:
    targets: list[tuple[str, HostSpec | None, str | None]] = [
        (instance.address, spec_for(instance, settings, client_key), None) for instance in sshd_farm
    ]
    targets.insert(7, ("dead", _dead(settings, client_key), None))
    targets.insert(3, ("blocked", None, "denied by RELAY_SHELL_POLICY_DENY"))
    progress: list[tuple[int, int]] = []

    async def on_progress(done: int, total: int) -> None:
        progress.append((done, total))

    budget = 8192
    results = await fanout(
        pool, targets, SERVER_ADDRESS, timeout_s=15, concurrency=8, budget=budget, on_progress=on_progress
    )
    assert [result.host for result in results] == [name for name, _, _ in targets]
    by_host = {result.host: result for result in results}
    for instance in sshd_farm:
        result = by_host[instance.address]
        assert (result.status, result.exit_code, result.output) == ("ok", 0, f"{instance.address}\n")
        assert result.stream_sha256 == hashlib.sha256(f"{instance.address}\n".encode()).hexdigest()
    assert by_host["dead"].status == "unreachable"
    assert by_host["dead"].reason is not None
    assert by_host["dead"].reason.startswith("refused")
    assert (by_host["blocked"].status, by_host["blocked"].reason) == (
        "denied",
        "denied by RELAY_SHELL_POLICY_DENY",
    )
    assert sum(len(result.output.encode()) for result in results) <= budget
    assert progress[-1] == (len(targets), len(targets))
    assert all(done <= total for done, total in progress)


async def test_one_shared_budget_bounds_the_whole_result(
    pool: ConnectionPool, sshd_farm: list[SshdInstance], client_key: ClientKey, settings: Settings
) -> None:
    targets = [(instance.address, spec_for(instance, settings, client_key), None) for instance in sshd_farm]
    budget = 8192
    results = await fanout(
        pool, targets, "head -c 5000 /dev/zero | tr '\\0' x", timeout_s=15, concurrency=20, budget=budget
    )
    assert all(result.status == "ok" for result in results)
    assert all(result.truncated and result.output_bytes == 5000 for result in results)
    assert all(result.stream_sha256 == hashlib.sha256(b"x" * 5000).hexdigest() for result in results)
    assert sum(len(result.output.encode()) for result in results) <= budget
    assert host_budget(budget, len(targets)) <= budget // len(targets)


async def test_statuses_timeout_and_failed(
    pool: ConnectionPool, sshd_farm: list[SshdInstance], client_key: ClientKey, settings: Settings
) -> None:
    slow, failing, fine = sshd_farm[1], sshd_farm[2], sshd_farm[3]
    command = (
        f'case "$SSH_CONNECTION" in *" {slow.address} "*) echo waiting; sleep 30;; '
        f'*" {failing.address} "*) echo broken >&2; exit 3;; esac; echo fine'
    )
    targets = [(host.address, spec_for(host, settings, client_key), None) for host in (slow, failing, fine)]
    results = await fanout(pool, targets, command, timeout_s=1.0, concurrency=3, budget=4096)
    timed_out, failed, ok = results
    assert (timed_out.status, timed_out.exit_code, timed_out.output) == ("timeout", None, "waiting\n")
    assert timed_out.reason is not None
    assert "timed out" in timed_out.reason
    assert (failed.status, failed.exit_code, failed.output) == ("failed", 3, "broken\n")
    assert (ok.status, ok.exit_code, ok.output) == ("ok", 0, "fine\n")


async def test_fifty_wide_against_one_default_config_sshd(
    make_settings: Callable[..., Settings], pool_factory: Callable[..., ConnectionPool],
    sshd_default: SshdInstance, client_key: ClientKey, tmp_path: Path,
) -> None:  # fmt: skip
    """MaxStartups 10:30:100 drops parallel handshakes: every host still completes (retry + backoff)."""
    settings = make_settings()
    pool = pool_factory(settings)
    keys = _key_copies(client_key, tmp_path, 50)
    targets: list[tuple[str, HostSpec | None, str | None]] = [
        (f"node{index:02d}", spec_for(sshd_default, settings, client_key, key_path=key), None)
        for index, key in enumerate(keys)
    ]
    assert len({spec.pool_key() for _, spec, _ in targets if spec is not None}) == 50
    results = await fanout(pool, targets, "echo up", timeout_s=30, concurrency=50, budget=65536)
    assert [(result.host, result.status, result.output) for result in results] == [
        (name, "ok", "up\n") for name, _, _ in targets
    ]
    assert pool.stats().dials == 50
    assert pool.dialer.attempts >= 50


async def test_fifty_commands_sharing_one_pool_key_under_default_max_sessions(
    pool: ConnectionPool, sshd_default: SshdInstance, client_key: ClientKey, settings: Settings
) -> None:
    spec = spec_for(sshd_default, settings, client_key)
    targets = [(f"same{index}", spec, None) for index in range(50)]
    results = await fanout(pool, targets, "sleep 0.2; echo same", timeout_s=30, concurrency=50, budget=65536)
    assert all((result.status, result.output) == ("ok", "same\n") for result in results)
    assert pool.stats().connections >= 5  # MaxSessions 10 per connection


def test_group_identical_keeps_first_appearance_order() -> None:
    def row(
        host: str, status: str, output: str, exit_code: int | None = 0, reason: str | None = None
    ) -> FanoutHostResult:
        return FanoutHostResult(host, status, exit_code, output, False, len(output), "", 1, reason)  # type: ignore[arg-type]

    results = [
        row("web1", "ok", "same\n"),
        row("web2", "failed", "same\n", exit_code=1),
        row("web3", "ok", "same\n"),
        row("db1", "unreachable", "", exit_code=None, reason="refused: connection refused"),
        row("web4", "ok", "other\n"),
        row("db2", "unreachable", "", exit_code=None, reason="refused: connection refused"),
    ]
    assert group_identical(results) == [
        (["web1", "web3"], "ok (exit 0)\nsame"),
        (["web2"], "failed (exit 1)\nsame"),
        (["db1", "db2"], "unreachable: refused: connection refused"),
        (["web4"], "ok (exit 0)\nother"),
    ]


async def test_check_hosts_reports_each_host_in_order(
    pool: ConnectionPool,
    sshd_farm: list[SshdInstance],
    client_key: ClientKey,
    settings: Settings,
    tmp_path: Path,
) -> None:
    stranger = ClientKey.create(tmp_path)
    trust(settings, *sshd_farm[:3])  # a probe records no host key
    specs = [
        spec_for(sshd_farm[0], settings, client_key),
        _dead(settings, client_key),
        spec_for(sshd_farm[1], settings, stranger),
        spec_for(sshd_farm[2], settings, client_key),
    ]
    results = await check_hosts(pool, specs, timeout_s=5, concurrency=4, fresh=True)
    assert [result.host for result in results] == [spec.alias for spec in specs]
    assert [(result.ok, result.reason) for result in results] == [
        (True, None), (False, "refused"), (False, "auth"), (True, None),
    ]  # fmt: skip
    assert results[0].latency_ms is not None
    assert results[0].latency_ms >= 0
    assert results[1].latency_ms is None
    assert results[1].detail
    assert pool.stats().connections == 0  # fresh probes are not pooled


async def test_check_fifty_hosts_against_default_max_startups(
    pool: ConnectionPool, sshd_default: SshdInstance, client_key: ClientKey, settings: Settings
) -> None:
    trust(settings, sshd_default)  # a probe records no host key
    spec = spec_for(sshd_default, settings, client_key)
    results = await check_hosts(pool, [spec] * 50, timeout_s=30, concurrency=50, fresh=True)
    assert [result.ok for result in results] == [True] * 50


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_concurrency_is_bounded(
    pool: ConnectionPool,
    sshd_farm: list[SshdInstance],
    client_key: ClientKey,
    settings: Settings,
    concurrency: int,
) -> None:
    """The remote side records how many commands overlap; it never exceeds the bound."""
    marker_dir = f"/tmp/relay-fanout-{concurrency}-{id(pool)}"
    command = (
        f"mkdir -p {marker_dir} && touch {marker_dir}/$$ && ls {marker_dir} | wc -l; sleep 0.2; "
        f"rm {marker_dir}/$$; rmdir {marker_dir} 2>/dev/null; true"
    )
    targets = [
        (instance.address, spec_for(instance, settings, client_key), None) for instance in sshd_farm[:6]
    ]
    results = await fanout(pool, targets, command, timeout_s=15, concurrency=concurrency, budget=8192)
    assert all(result.status == "ok" for result in results)
    assert max(int(result.output.strip()) for result in results) <= concurrency
