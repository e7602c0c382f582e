"""What every record shares: its timestamp format, and the ids of the calls it belongs to."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def format_timestamp(moment: datetime) -> str:
    """``2025-01-31T12:00:00.123Z``: UTC, millisecond precision. Naive times are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def new_call_id() -> str:
    """A server-made call id: 128 random bits as 32 hex digits."""
    return secrets.token_hex(16)
