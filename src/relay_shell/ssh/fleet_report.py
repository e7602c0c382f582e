"""The text of a multi-host result (fan-out, multi-host upload), within one byte budget.

Order, so that what needs attention survives a cut::

    ABORTED: <why>                       only when the rollout stopped
    fo-0123456789ab · 12 hosts: 9 ok, 2 failed, 1 unreachable · batch 4 · max_fail 2
    web3: failed (exit 3)                failures first (failed, timeout, unreachable, denied),
      ...output...                       hosts with the same status line and output grouped
    web1,web2,web4: ok (exit 0)          then the successes, grouped the same way
    web9,...: skipped: not started: ...  then the hosts that never started

A group names at most :data:`MAX_NAMES_PER_GROUP` hosts (then ``+N more``); every host's row
is in the structured result. When the whole text exceeds the budget it is cut at a UTF-8
character boundary and ends with a marker saying so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

MAX_NAMES_PER_GROUP = 50
CUT_MARKER = "\n[... cut to the output budget; every host's row is in structuredContent.results ...]"
STATUS_ORDER = ("ok", "failed", "timeout", "unreachable", "denied", "skipped")
NOT_OK = frozenset({"failed", "timeout", "unreachable", "denied"})


class ReportRow(Protocol):
    @property
    def host(self) -> str: ...

    @property
    def status(self) -> str: ...


def recap_counts(rows: Sequence[ReportRow]) -> dict[str, int]:
    """Hosts per status, statuses in a fixed order, absent ones left out."""
    counts = dict.fromkeys(STATUS_ORDER, 0)
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    return {status: count for status, count in counts.items() if count}


def recap_line(fanout_id: str, counts: Mapping[str, int], rollout: str) -> str:
    """``fo-... · 12 hosts: 9 ok, 3 failed · batch 4 · max_fail 2``."""
    total = sum(counts.values())
    parts = ", ".join(f"{count} {status}" for status, count in counts.items())
    line = f"{fanout_id} · {total} host{'s' if total != 1 else ''}: {parts}"
    return f"{line} · {rollout}" if rollout else line


def render_fleet[Row: ReportRow](
    rows: Sequence[Row],
    *,
    detail: Callable[[Row], str],
    header: str,
    abort_reason: str | None,
    budget: int,
) -> str:
    """The text described in the module docstring; ``detail(row)`` is a row's group text
    (status line, then its output), so rows with equal details share one block."""
    lines = [f"ABORTED: {abort_reason}"] if abort_reason else []
    lines.append(header)
    for section in (NOT_OK, frozenset({"ok"}), frozenset({"skipped"})):
        groups: dict[str, list[str]] = {}
        for row in rows:
            if row.status in section:
                groups.setdefault(detail(row), []).append(row.host)
        lines.extend(f"{_names(hosts)}: {text}" for text, hosts in groups.items())
    return cut_to_budget("\n".join(lines), budget)


def _names(hosts: Sequence[str]) -> str:
    shown = ",".join(hosts[:MAX_NAMES_PER_GROUP])
    more = len(hosts) - MAX_NAMES_PER_GROUP
    return f"{shown} (+{more} more)" if more > 0 else shown


def cut_to_budget(text: str, budget: int) -> str:
    """``text`` if it fits in ``budget`` bytes, else its head (whole characters) and :data:`CUT_MARKER`."""
    encoded = text.encode()
    if len(encoded) <= budget:
        return text
    room = max(0, budget - len(CUT_MARKER.encode()))
    return encoded[:room].decode("utf-8", errors="ignore") + CUT_MARKER
