"""What ssh_fanout and the multi-host ssh_upload share at the MCP edge: the rollout parameters
and the shaping of a rolled-out result (text, fields, audit extras).

The rules themselves (patterns, batches, failure budget, canaries, the text layout) live in
``relay_shell.ssh`` (``hostpatterns``, ``fleet``, ``fleet_report``); this module only turns
their reports into an :class:`Outcome`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Protocol

from pydantic import Field

from relay_shell.governance.call import Outcome

if TYPE_CHECKING:
    from relay_shell.ssh.fleet import FanoutHistory, Rollout

Batch = Annotated[int | str | None, Field()]
MaxFail = Annotated[int | str | None, Field()]
Canary = Annotated[int, Field(ge=0)]
"""batch, max_fail and canary are explained once, in ssh_fanout's description (guidance/tools.md)."""
Concurrency = Annotated[int, Field(ge=1)]


class Row(Protocol):
    @property
    def host(self) -> str: ...

    @property
    def status(self) -> str: ...


def rollout_outcome[R: Row](
    *,
    fanout_id: str,
    rows: Sequence[R],
    batches: Sequence[Sequence[str]],
    rollout: Rollout,
    abort_reason: str | None,
    detail: Callable[[R], str],
    fields: Callable[[R], dict[str, object]],
    budget: int,
) -> Outcome:
    """The result of a rolled-out call: text within ``budget`` bytes, one row per host, a recap.

    ``recap`` counts hosts per status; when the rollout stopped it also has ``aborted: true``
    and ``reason``. A stop is a result, not an error. The audit extras say which hosts ran,
    which were skipped and why, and how the batches were cut.
    """
    from relay_shell.ssh.fleet_report import recap_counts, recap_line, render_fleet

    counts = recap_counts(rows)
    recap: dict[str, object] = dict(counts)
    if abort_reason is not None:
        recap.update(aborted=True, reason=abort_reason)
    header = recap_line(fanout_id, counts, rollout.describe())
    text = render_fleet(rows, detail=detail, header=header, abort_reason=abort_reason, budget=budget)
    not_ok = [row for row in rows if row.status != "ok"]
    audit: dict[str, object] = {
        "fanout_id": fanout_id,
        "recap": recap,
        "hosts": [row.host for row in rows],
        "rollout": {"batch": rollout.batch, "max_fail": rollout.max_fail, "canary": rollout.canary},
        "batches": [len(batch) for batch in batches],
        "started": [row.host for row in rows if row.status not in ("skipped", "denied")],
        "skipped": [row.host for row in rows if row.status == "skipped"],
        "aborted": abort_reason is not None,
    }
    if abort_reason is not None:
        audit["abort_reason"] = abort_reason
    return Outcome(
        text=text,
        data={"fanout_id": fanout_id, "results": [fields(row) for row in rows], "recap": recap},
        exit_code=1 if not_ok else 0,
        audit_extra=audit,
    )


def record_history(history: FanoutHistory, fanout_id: str, rows: Sequence[Row], owner: str | None) -> None:
    """Keep every host's status for ``failed:``/``ok:``/``skipped:`` terms of later calls by
    ``owner`` (the calling principal) or an admin (``tools/hosts.py``)."""
    history.record(fanout_id, [(row.host, row.status) for row in rows], owner)


def notes_room(notes: Sequence[str]) -> int:
    """Bytes the pipeline appends to the text for ``notes`` (``\\nnote: ...`` each)."""
    return sum(len(f"\nnote: {note}".encode()) for note in notes)
