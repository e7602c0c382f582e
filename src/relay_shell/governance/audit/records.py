"""What every record shares: its timestamp format, the ids of the calls it belongs to, and what writes it."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Protocol


class RecordSink(Protocol):
    """What writes audit records: the server's :class:`~writer.AuditSink`, or an
    :class:`~inbox.InboxSubmitter` for a process beside the running server."""

    @property
    def degraded(self) -> bool: ...

    def check(self) -> bool: ...

    def write(self, record: Mapping[str, object]) -> dict[str, object]: ...


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


_last_second: list[tuple[datetime, str]] = [(datetime.min.replace(tzinfo=UTC), "")]
"""The whole second formatted last and its text: records come many to a second, and strftime
costs more than the rest of a timestamp."""


def format_timestamp(moment: datetime) -> str:
    """``2025-01-31T12:00:00.123Z``: UTC, millisecond precision. Naive times are taken as UTC."""
    if moment.tzinfo is not UTC:
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    second = moment.replace(microsecond=0)
    cached = _last_second[0]  # one read: another thread may replace it meanwhile, never half of it
    if cached[0] != second:
        cached = (second, second.strftime("%Y-%m-%dT%H:%M:%S."))
        _last_second[0] = cached
    return f"{cached[1]}{moment.microsecond // 1000:03d}Z"


def new_call_id() -> str:
    """A server-made call id: 128 random bits as 32 hex digits."""
    return secrets.token_hex(16)
