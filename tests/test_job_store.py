"""The job store on its own: places (MAX_JOBS), retention with an injected clock, reads, kills, task ids."""

from __future__ import annotations

import asyncio
import re

import pytest

from relay_shell.background import JobEnd, JobMeta
from relay_shell.errors import LimitReached, SessionNotFound, SpawnFailed
from relay_shell.linear_regex import compile_caller_regex
from relay_shell.sessions.jobs import JobStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def meta(*, split: bool = False, task: bool = False) -> JobMeta:
    return JobMeta(
        tool="shell_exec", call_id="c" * 24, owner=None, label="work", host=None, split=split, task=task,
        timeout_s=60.0, budget=1024,
    )  # fmt: skip


class Work:
    """Stand-in for an executor's task: ends when told to, or when cancelled (as a kill does)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.task = asyncio.create_task(self.release.wait())

    async def finish(self, job_id: str) -> tuple[JobEnd, str]:
        await asyncio.wait({self.task})
        outcome = "cancelled" if self.task.cancelled() else "ok"
        return JobEnd(outcome, None if self.task.cancelled() else 0, None, 0, None, 1), f"final {job_id}"


async def adopt(store: JobStore[str], **kwargs: bool) -> tuple[str, Work]:
    work = Work()
    output = store.new_output(kwargs.get("split", False))
    output.stdout(b"hello\n")
    ticket = await store.adopt(meta(**kwargs), output, work.task.cancel, work.finish)
    # What the call printed before it yielded travels in the yielded result, not in later reads.
    assert (ticket.stdout if kwargs.get("split") else ticket.output) == "hello\n"
    return ticket.job_id, work


async def test_places_count_running_and_unread_jobs() -> None:
    clock = Clock()
    store: JobStore[str] = JobStore(max_jobs=2, retention_s=600, buffer_bytes=4096, clock=clock)
    first, first_work = await adopt(store)
    second, _ = await adopt(store)
    assert store.full() is True
    with pytest.raises(LimitReached) as full:
        await adopt(store)
    assert full.value.limit == "RELAY_SHELL_MAX_JOBS"
    store.get(first).output.stdout(b"more\n")
    first_work.release.set()
    read = await store.recv(first, timeout_s=5, max_bytes=100, until=None, strip=False)
    assert (read.output, read.ended) == ("more\n", False)
    read = await store.recv(first, timeout_s=5, max_bytes=100, until=None, strip=False)
    assert (read.output, read.ended) == ("", True)
    assert read.end is not None and read.end.outcome == "ok"
    assert store.get(first).final == f"final {first}"
    assert store.counted() == 1  # read: it no longer holds a place, though it is still kept
    assert store.full() is False
    await store.kill(second)
    assert store.get(second).end is not None
    assert store.counted() == 1  # killed but not read yet


async def test_ended_jobs_are_kept_for_the_retention_then_swept() -> None:
    clock = Clock()
    store: JobStore[str] = JobStore(max_jobs=4, retention_s=600, buffer_bytes=4096, clock=clock)
    job_id, work = await adopt(store)
    clock.now += 10_000  # a running job is never swept, however old
    assert await store.sweep() == []
    work.release.set()
    await store.wait_end(store.get(job_id), 5)
    clock.now += 600
    assert await store.sweep() == []
    clock.now += 1
    assert await store.sweep() == [job_id]
    with pytest.raises(SessionNotFound):
        store.get(job_id)


async def test_until_and_split_reads() -> None:
    store: JobStore[str] = JobStore(max_jobs=4, retention_s=600, buffer_bytes=4096)
    job_id, work = await adopt(store, split=True)
    output = store.get(job_id).output
    output.stdout(b"a\nb\n")
    output.stderr(b"oops\n")
    got = await store.recv(
        job_id, timeout_s=5, max_bytes=1000, until=compile_caller_regex("until", "^b$"), strip=False
    )
    assert (got.output, got.stderr, got.matched) == ("a\nb\n", "oops\n", True)
    waiting = asyncio.create_task(store.recv(job_id, timeout_s=10, max_bytes=1000, until=None, strip=False))
    await asyncio.sleep(0)
    output.stderr(b"late\n")
    got = await waiting
    assert (got.output, got.stderr, got.ended) == ("", "late\n", False)
    quiet = await store.recv(job_id, timeout_s=0.05, max_bytes=1000, until=None, strip=False)
    assert (quiet.bytes, quiet.timed_out) == (0, True)
    work.release.set()
    final = await store.recv(job_id, timeout_s=5, max_bytes=1000, until=None, strip=False)
    assert final.ended is True
    assert output.total == len(b"hello\na\nb\noops\nlate\n")


async def test_task_ids_are_random_128_bits_and_found() -> None:
    store: JobStore[str] = JobStore(max_jobs=8, retention_s=600, buffer_bytes=4096)
    ids = []
    for _ in range(3):
        job_id, work = await adopt(store, task=True)
        task_id = store.get(job_id).task_id
        assert task_id is not None and re.fullmatch("[0-9a-f]{32}", task_id)
        found = store.find_task(task_id)
        assert found is not None and found.job_id == job_id
        ids.append(task_id)
        work.release.set()
    assert len(set(ids)) == 3
    assert store.find_task("0" * 32) is None


async def test_shutdown_kills_running_jobs_and_refuses_new_ones() -> None:
    store: JobStore[str] = JobStore(max_jobs=4, retention_s=600, buffer_bytes=4096)
    job_id, work = await adopt(store)
    await store.aclose()
    assert work.task.cancelled()
    end = store.get(job_id).end
    assert end is not None and end.outcome == "cancelled"
    assert store.full() is True
    with pytest.raises(SpawnFailed):
        await adopt(store)


async def test_read_jobs_are_kept_within_twice_the_cap() -> None:
    clock = Clock()
    store: JobStore[str] = JobStore(max_jobs=2, retention_s=600, buffer_bytes=4096, clock=clock)
    finished = []
    for _ in range(5):
        job_id, work = await adopt(store)
        work.release.set()
        await store.wait_end(store.get(job_id), 5)
        clock.now += 1
        assert (await store.recv(job_id, timeout_s=5, max_bytes=100, until=None, strip=False)).ended
        finished.append(job_id)
    kept = [job.job_id for job in store.jobs()]
    assert kept == finished[-4:]  # 2 x MAX_JOBS, the oldest read ones forgotten first
    running, _ = await adopt(store)
    assert [job.job_id for job in store.jobs()] == [*finished[-3:], running]
