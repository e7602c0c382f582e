"""Rolling work over many hosts: batches, a failure budget, canaries; and the fan-out history.

Pure orchestration (no asyncssh): the caller supplies one coroutine per host and gets one
result per host back, in input order. The rules:

- hosts run in consecutive *batches*; a batch starts only when every host of the previous
  one has ended, and inside a batch at most ``concurrency`` hosts are in flight;
- ``canary`` hosts run first, as batch 0; the moment one of them does not end ``ok``, no
  other host starts;
- once more than ``max_fail`` hosts have failed (``failed``, ``timeout`` or
  ``unreachable``; canaries count), no other host starts;
- a host that did not start because of a stop is ``skipped`` (its result comes from the
  caller's ``skip`` factory) and nothing was sent to it. Hosts already running finish.

The decision to start is taken while holding the concurrency slot and a failure is counted
before the slot is released, so with ``concurrency`` 1 the host after the failure that
exceeds the budget never starts.
"""

from __future__ import annotations

import asyncio
import math
import re
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from relay_shell.errors import InvalidInput

HostStatus = Literal["ok", "failed", "timeout", "unreachable", "denied", "skipped"]
FAILURE_STATUSES: frozenset[str] = frozenset({"failed", "timeout", "unreachable"})
_AMOUNT = re.compile(r"([0-9]{1,9})(%?)")


class HasStatus(Protocol):
    @property
    def status(self) -> str: ...


@dataclass(frozen=True)
class Rollout:
    """How many hosts run together and when to stop (all already checked against the host count).

    ``batch`` is the number of hosts per batch after the canaries (``None``: all at once),
    ``max_fail`` the failures tolerated (``None``: no limit), ``canary`` the hosts of batch 0.
    ``describe()`` is what a result shows (``batch 4 · max_fail 2 · canary 1``).
    """

    batch: int | None = None
    max_fail: int | None = None
    canary: int = 0
    batch_text: str = ""
    max_fail_text: str = ""

    def describe(self) -> str:
        parts = []
        if self.canary:
            parts.append(f"canary {self.canary}")
        if self.batch is not None:
            parts.append(f"batch {self.batch_text or self.batch}")
        if self.max_fail is not None:
            parts.append(f"max_fail {self.max_fail_text or self.max_fail}")
        return " · ".join(parts)

    def batches(self, count: int) -> list[list[int]]:
        """The indices ``0..count-1`` split into batches: canaries first, then ``batch``-sized runs."""
        canary = min(self.canary, count)
        groups = [list(range(canary))] if canary else []
        size = self.batch or max(1, count - canary)
        groups.extend(list(range(start, min(start + size, count))) for start in range(canary, count, size))
        return groups

    def rounds(self, count: int, width: int) -> int:
        """Per-host deadlines the slowest run of ``count`` hosts can take, ``width`` at once per batch."""
        return max(1, sum(-(-len(batch) // max(1, width)) for batch in self.batches(count)))

    @property
    def first_batch_number(self) -> int:
        """Batch numbers shown to a client: the canary batch is 0, the others count from 1."""
        return 0 if self.canary else 1


def _amount(value: int | str, argument: str, *, minimum: int) -> tuple[int | None, int | None]:
    """``(count, None)`` for a whole number, ``(None, percent)`` for ``"N%"``."""
    if isinstance(value, bool):
        raise InvalidInput(argument, 'must be a whole number or a percentage like "25%"')
    count: int | None
    percent: int | None
    if isinstance(value, int):
        count, percent = value, None
    else:
        match = _AMOUNT.fullmatch(value.strip())
        if match is None:
            raise InvalidInput(argument, f'must be a whole number or a percentage like "25%" (got {value!r})')
        count, percent = (None, int(match[1])) if match[2] else (int(match[1]), None)
    if percent is not None and not max(minimum, 0) <= percent <= 100:
        raise InvalidInput(argument, f"a percentage must be between {max(minimum, 0)}% and 100%")
    if count is not None and count < minimum:
        raise InvalidInput(argument, f"must be at least {minimum} (got {count})")
    return count, percent


def plan_rollout(batch: int | str | None, max_fail: int | str | None, canary: int, hosts: int) -> Rollout:
    """Validate ``batch`` (>= 1 or 1%-100%), ``max_fail`` (>= 0 or 0%-100%) and ``canary`` (>= 0).

    Percentages are of ``hosts`` (the hosts that will run), rounded down; a batch is never
    smaller than one host.

    Raises:
        InvalidInput: naming the argument.
    """
    if isinstance(canary, bool) or not isinstance(canary, int) or canary < 0:
        raise InvalidInput("canary", "must be a whole number, 0 or more")
    size: int | None = None
    batch_text = ""
    if batch is not None:
        count, percent = _amount(batch, "batch", minimum=1)
        size = count if count is not None else max(1, math.floor(hosts * (percent or 0) / 100))
        batch_text = f"{batch}" if count is not None else f"{percent}% = {size}"
    budget: int | None = None
    max_fail_text = ""
    if max_fail is not None:
        count, percent = _amount(max_fail, "max_fail", minimum=0)
        budget = count if count is not None else math.floor(hosts * (percent or 0) / 100)
        max_fail_text = f"{max_fail}" if count is not None else f"{percent}% = {budget}"
    return Rollout(size, budget, canary, batch_text, max_fail_text)


@dataclass
class RolloutReport[Result]:
    """One result per host (input order), the batches run, and why the rollout stopped (if it did)."""

    results: list[Result]
    batches: list[list[int]]
    started: list[int]
    skipped: list[int]
    aborted: bool = False
    reason: str | None = None


@dataclass
class _Stop:
    rollout: Rollout
    label: Callable[[int], str]
    failures: list[int] = field(default_factory=list)
    reason: str | None = None
    skip_reason: str = ""

    def count(self, index: int, status: str, canary: bool) -> None:
        """Account for one ended host; stop the rollout when a rule says so."""
        failed = status in FAILURE_STATUSES
        if failed:
            self.failures.append(index)
        if self.reason is not None:
            return
        if canary and status != "ok":
            self.reason = f"canary {self.label(index)} ended {status}"
            self.skip_reason = f"not started: canary {self.label(index)} ended {status}"
        elif failed and self.rollout.max_fail is not None and len(self.failures) > self.rollout.max_fail:
            names = ", ".join(self.label(number) for number in self.failures[:10])
            more = f" and {len(self.failures) - 10} more" if len(self.failures) > 10 else ""
            count = len(self.failures)
            budget = self.rollout.max_fail_text or self.rollout.max_fail
            self.reason = (
                f"{count} host{'s' if count != 1 else ''} failed ({names}{more}), more than max_fail {budget}"
            )
            self.skip_reason = f"not started: more hosts than max_fail {self.rollout.max_fail} failed"


async def run_rollout[Result: HasStatus](
    count: int,
    rollout: Rollout,
    *,
    concurrency: int,
    run_one: Callable[[int], Awaitable[Result]],
    skip: Callable[[int, str], Result],
    label: Callable[[int], str],
    on_done: Callable[[], Awaitable[None]] | None = None,
) -> RolloutReport[Result]:
    """Run hosts ``0..count-1`` under ``rollout`` (see the module docstring).

    ``run_one(index)`` must not raise for a host's failure (it returns a result whose
    ``status`` says so); ``skip(index, reason)`` makes the result of a host that never
    started; ``on_done()`` is awaited after every host. Cancellation cancels the hosts in
    flight (each is expected to clean up after itself) and propagates.
    """
    batches = rollout.batches(count)
    results: dict[int, Result] = {}
    started: list[int] = []
    stop = _Stop(rollout, label)
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(index: int, canary: bool) -> None:
        async with gate:
            if stop.reason is not None:
                results[index] = skip(index, stop.skip_reason)
            else:
                started.append(index)
                results[index] = await run_one(index)
                stop.count(index, results[index].status, canary)
        if on_done is not None:
            await on_done()

    for number, members in enumerate(batches):
        canary = number == 0 and rollout.canary > 0
        if stop.reason is not None:
            for index in members:
                results[index] = skip(index, stop.skip_reason)
                if on_done is not None:
                    await on_done()
            continue
        async with asyncio.TaskGroup() as tasks:
            for index in members:
                tasks.create_task(one(index, canary))
    ran = set(started)
    skipped = [index for index in range(count) if index not in ran]
    return RolloutReport(
        results=[results[index] for index in range(count)],
        batches=batches,
        started=sorted(started),
        skipped=skipped,
        aborted=stop.reason is not None,
        reason=stop.reason,
    )


@dataclass(frozen=True)
class TargetsReport[Result]:
    """Every target's result in input order, the names of each batch, and why it stopped (if)."""

    results: list[Result]
    batches: list[list[str]]
    aborted: bool
    reason: str | None


async def run_targets[Result: HasStatus, Spec](
    targets: Sequence[tuple[str, Spec | None, str | None]],
    rollout: Rollout,
    *,
    concurrency: int,
    run_host: Callable[[str, Spec, int], Awaitable[Result]],
    denied: Callable[[str, str], Result],
    skipped: Callable[[str, str, int], Result],
    on_done: Callable[[], Awaitable[None]] | None = None,
) -> TargetsReport[Result]:
    """:func:`run_rollout` over planned targets: ``(name, spec, None)`` runs, ``(name, None, reason)``
    was denied by policy (reported by ``denied(name, reason)``, never started, outside the batches).

    ``run_host(name, spec, batch)`` and ``skipped(name, reason, batch)`` get the batch number
    (0 for canaries, then from 1).
    """
    runnable = [index for index, (_, spec, _) in enumerate(targets) if spec is not None]
    batches = rollout.batches(len(runnable))
    batch_of = {
        member: rollout.first_batch_number + number
        for number, group in enumerate(batches)
        for member in group
    }
    rows: dict[int, Result] = {}
    for index, (name, spec, denial) in enumerate(targets):
        if spec is None:
            rows[index] = denied(name, denial or "denied")
            if on_done is not None:
                await on_done()

    async def run_one(position: int) -> Result:
        name, spec, _ = targets[runnable[position]]
        assert spec is not None
        return await run_host(name, spec, batch_of[position])

    report = await run_rollout(
        len(runnable), rollout, concurrency=concurrency, run_one=run_one,
        skip=lambda position, reason: skipped(targets[runnable[position]][0], reason, batch_of[position]),
        label=lambda position: targets[runnable[position]][0], on_done=on_done,
    )  # fmt: skip
    rows.update(zip(runnable, report.results, strict=True))
    return TargetsReport(
        results=[rows[index] for index in range(len(targets))],
        batches=[[targets[runnable[position]][0] for position in group] for group in batches],
        aborted=report.aborted,
        reason=report.reason,
    )


@dataclass(frozen=True)
class FanoutEntry:
    """One remembered fan-out: the principal that ran it (``None`` without OAuth) and its
    ``(host, status)`` pairs in input order."""

    owner: str | None
    outcomes: tuple[tuple[str, str], ...]


class FanoutHistory:
    """The per-host outcomes of the last ``capacity`` fan-outs, for ``failed:``/``ok:``/``skipped:`` terms.

    In memory only; the oldest entry is forgotten when a new one would exceed the capacity.
    Each entry keeps its owner: who may read it back is the tools' decision (``entry``);
    ``lookup`` reads any entry and is for callers that have already decided.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._entries: OrderedDict[str, FanoutEntry] = OrderedDict()

    def new_id(self) -> str:
        """A fresh ``fo-`` + 12 hex digits id, not in the history."""
        while True:
            fanout_id = f"fo-{secrets.token_hex(6)}"
            if fanout_id not in self._entries:
                return fanout_id

    def record(self, fanout_id: str, outcomes: Sequence[tuple[str, str]], owner: str | None = None) -> None:
        """Keep ``(host, status)`` pairs (in order) under ``fanout_id``, owned by ``owner``; forget
        the oldest beyond capacity."""
        self._entries[fanout_id] = FanoutEntry(owner, tuple(outcomes))
        self._entries.move_to_end(fanout_id)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def entry(self, fanout_id: str) -> FanoutEntry | None:
        """The fan-out with its owner, or ``None`` when unknown or forgotten."""
        return self._entries.get(fanout_id)

    def lookup(self, fanout_id: str) -> tuple[tuple[str, str], ...] | None:
        """The outcomes of ``fanout_id`` whoever ran it (no ownership check)."""
        found = self._entries.get(fanout_id)
        return None if found is None else found.outcomes

    def __len__(self) -> int:
        return len(self._entries)
