"""Rollout rules (batches, failure budget, canaries) and the fan-out history, with scripted hosts.

The hosts here are coroutines of the test (our own protocol: index in, status out); the same
rules run against real sshd in ``tests/tools/test_fleet_tools.py``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from relay_shell.errors import InvalidInput
from relay_shell.ssh.fleet import FanoutHistory, Rollout, RolloutReport, plan_rollout, run_rollout


@dataclass(frozen=True)
class Row:
    index: int
    status: str
    reason: str | None = None


class Script:
    """Hosts whose status is scripted; records the order of starts and ends and the width in flight."""

    def __init__(self, statuses: Sequence[str]) -> None:
        self.statuses = list(statuses)
        self.events: list[tuple[str, int]] = []
        self.in_flight = 0
        self.widest = 0

    async def run_one(self, index: int) -> Row:
        self.events.append(("start", index))
        self.in_flight += 1
        self.widest = max(self.widest, self.in_flight)
        for _ in range(3):  # let every other ready host run meanwhile
            await asyncio.sleep(0)
        self.in_flight -= 1
        self.events.append(("end", index))
        return Row(index, self.statuses[index])

    def started(self) -> list[int]:
        return [index for event, index in self.events if event == "start"]

    async def run(self, rollout: Rollout, concurrency: int) -> RolloutReport[Row]:
        return await run_rollout(
            len(self.statuses), rollout, concurrency=concurrency, run_one=self.run_one,
            skip=lambda index, reason: Row(index, "skipped", reason), label=lambda index: f"h{index}",
        )  # fmt: skip


@pytest.mark.parametrize(
    ("batch", "max_fail", "canary", "hosts", "expected"),
    [
        (None, None, 0, 10, (None, None, 0)),
        (4, 2, 1, 10, (4, 2, 1)),
        ("4", "2", 0, 10, (4, 2, 0)),
        ("25%", "10%", 0, 10, (2, 1, 0)),  # rounded down
        ("1%", "0%", 0, 10, (1, 0, 0)),  # never a batch of 0
        ("100%", "100%", 0, 7, (7, 7, 0)),
        (" 50% ", 0, 0, 3, (1, 0, 0)),
    ],
)
def test_plan_rollout(
    batch: int | str | None, max_fail: int | str | None, canary: int, hosts: int, expected: tuple[object, ...]
) -> None:
    rollout = plan_rollout(batch, max_fail, canary, hosts)
    assert (rollout.batch, rollout.max_fail, rollout.canary) == expected


@pytest.mark.parametrize(
    ("batch", "max_fail", "canary", "argument"),
    [
        (0, None, 0, "batch"),
        (-1, None, 0, "batch"),
        ("0%", None, 0, "batch"),
        ("101%", None, 0, "batch"),
        ("25 %", None, 0, "batch"),
        ("1e3", None, 0, "batch"),
        ("", None, 0, "batch"),
        (True, None, 0, "batch"),
        (None, -1, 0, "max_fail"),
        (None, "-5%", 0, "max_fail"),
        (None, "200%", 0, "max_fail"),
        (None, "two", 0, "max_fail"),
        (None, None, -1, "canary"),
    ],
)
def test_plan_rollout_rejects(batch: object, max_fail: object, canary: int, argument: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        plan_rollout(batch, max_fail, canary, 10)  # type: ignore[arg-type]
    assert caught.value.argument == argument


@pytest.mark.parametrize(
    ("rollout", "count", "expected"),
    [
        (Rollout(), 5, [[0, 1, 2, 3, 4]]),
        (Rollout(batch=2), 5, [[0, 1], [2, 3], [4]]),
        (Rollout(canary=1, batch=2), 5, [[0], [1, 2], [3, 4]]),
        (Rollout(canary=2), 5, [[0, 1], [2, 3, 4]]),
        (Rollout(canary=9), 3, [[0, 1, 2]]),
        (Rollout(batch=4), 0, []),
    ],
)
def test_batches(rollout: Rollout, count: int, expected: list[list[int]]) -> None:
    assert rollout.batches(count) == expected


async def test_a_batch_starts_only_when_the_previous_one_ended() -> None:
    script = Script(["ok"] * 10)
    report = await script.run(Rollout(batch=4), concurrency=16)
    assert report.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    position = {event: order for order, event in enumerate(script.events)}
    for earlier, later in zip(report.batches, report.batches[1:], strict=False):
        last_end = max(position[("end", index)] for index in earlier)
        first_start = min(position[("start", index)] for index in later)
        assert last_end < first_start
    assert script.widest == 4  # the whole batch ran together
    assert not report.aborted


async def test_concurrency_bounds_a_batch() -> None:
    script = Script(["ok"] * 9)
    await script.run(Rollout(batch=6), concurrency=2)
    assert script.widest == 2


async def test_max_fail_stops_after_the_failure_that_exceeds_it() -> None:
    script = Script(["failed", "timeout", "unreachable", "ok", "ok", "failed", "ok"])
    report = await script.run(Rollout(max_fail=2), concurrency=1)
    assert script.started() == [0, 1, 2]
    assert report.started == [0, 1, 2]
    assert report.skipped == [3, 4, 5, 6]
    assert [row.status for row in report.results] == ["failed", "timeout", "unreachable", *["skipped"] * 4]
    assert report.aborted
    assert report.reason is not None
    assert report.reason == "3 hosts failed (h0, h1, h2), more than max_fail 2"
    assert all(row.reason and "max_fail" in row.reason for row in report.results[3:])


async def test_max_fail_zero_lets_the_running_batch_finish_and_skips_the_next() -> None:
    script = Script(["ok", "failed", "ok", "ok", "ok", "ok", "ok", "ok"])
    report = await script.run(Rollout(batch=4, max_fail=0), concurrency=4)
    assert report.reason == "1 host failed (h1), more than max_fail 0"
    assert report.started == [0, 1, 2, 3]  # the batch was already running
    assert [row.status for row in report.results[4:]] == ["skipped"] * 4
    assert report.aborted


async def test_failures_within_the_budget_do_not_stop() -> None:
    script = Script(["failed", "ok", "failed", "ok"])
    report = await script.run(Rollout(max_fail=2, batch=1), concurrency=1)
    assert report.started == [0, 1, 2, 3]
    assert not report.aborted
    assert report.reason is None


async def test_percentages_apply_to_the_hosts_that_run() -> None:
    script = Script(["failed"] * 3 + ["ok"] * 7)
    report = await script.run(plan_rollout(None, "20%", 0, 10), concurrency=1)  # 2 tolerated
    assert report.started == [0, 1, 2]


async def test_a_failing_canary_skips_every_other_host() -> None:
    script = Script(["failed", "ok", "ok", "ok", "ok"])
    report = await script.run(Rollout(canary=1, batch=2), concurrency=4)
    assert script.started() == [0]
    assert [row.status for row in report.results] == ["failed", *["skipped"] * 4]
    assert report.reason == "canary h0 ended failed"
    assert report.batches[0] == [0]


async def test_the_first_failing_canary_stops_the_other_canaries() -> None:
    script = Script(["unreachable", "ok", "ok"])
    report = await script.run(Rollout(canary=2), concurrency=1)
    assert script.started() == [0]
    assert [row.status for row in report.results] == ["unreachable", "skipped", "skipped"]


async def test_canaries_count_toward_max_fail() -> None:
    script = Script(["ok", "failed", "ok", "failed", "ok"])
    report = await script.run(Rollout(canary=1, max_fail=0), concurrency=1)
    assert script.started() == [0, 1]
    assert report.aborted
    script = Script(["failed", "ok"])
    failed_canary = await script.run(Rollout(canary=1, max_fail=5), concurrency=1)
    assert failed_canary.aborted  # a canary must succeed whatever the budget


async def test_succeeding_canaries_let_the_rest_run() -> None:
    script = Script(["ok", "ok", "failed", "ok"])
    report = await script.run(Rollout(canary=2, batch=1), concurrency=8)
    assert report.started == [0, 1, 2, 3]
    assert not report.aborted


async def test_progress_is_reported_for_every_host_run_or_skipped() -> None:
    done: list[int] = []

    async def on_done() -> None:
        done.append(1)

    script = Script(["failed", "ok", "ok"])
    await run_rollout(
        3, Rollout(canary=1, batch=1), concurrency=1, run_one=script.run_one,
        skip=lambda index, reason: Row(index, "skipped", reason), label=str, on_done=on_done,
    )  # fmt: skip
    assert len(done) == 3


async def test_cancellation_propagates_and_stops_starting_hosts() -> None:
    release = asyncio.Event()
    started: list[int] = []

    async def run_one(index: int) -> Row:
        started.append(index)
        await release.wait()
        return Row(index, "ok")

    rollout = run_rollout(
        6, Rollout(batch=2), concurrency=2, run_one=run_one,
        skip=lambda index, reason: Row(index, "skipped", reason), label=str,
    )  # fmt: skip
    task = asyncio.create_task(rollout)
    while len(started) < 2:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert started == [0, 1]


def test_history_is_bounded_and_ids_have_their_shape() -> None:
    history = FanoutHistory(3)
    ids = [history.new_id() for _ in range(5)]
    assert all(re.fullmatch(r"fo-[0-9a-f]{12}", fanout_id) for fanout_id in ids)
    assert len(set(ids)) == 5
    for number, fanout_id in enumerate(ids):
        history.record(fanout_id, [(f"h{number}", "ok")])
    assert len(history) == 3
    assert history.lookup(ids[0]) is None
    assert history.lookup(ids[1]) is None
    assert history.lookup(ids[4]) == (("h4", "ok"),)
    with pytest.raises(ValueError):
        FanoutHistory(0)
