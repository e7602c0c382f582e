"""A record as the sink writes it: the sink's own fields added, made JSON-safe, one line.

The sink owns ``ts``, ``seq`` and ``instance_id`` and, for chained JSON Lines, ``prev`` and
``chain``: whatever the caller put under those names is dropped. The line is JSON Lines
(chained or not), CEF or LEEF, by the sink's format. Pure: the sink passes its position.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from relay_shell.config import AuditFormat
from relay_shell.governance.audit.chain import CHAIN_FIELD, PREV_FIELD, chained_line, json_key, json_safe
from relay_shell.governance.audit.formats import dumps_jsonl, escape_line_breakers, to_cef, to_leef
from relay_shell.governance.audit.records import format_timestamp

SINK_FIELDS = frozenset({"ts", "seq", "instance_id", PREV_FIELD, CHAIN_FIELD})
"""The fields only the sink writes."""


@dataclass(frozen=True)
class LineFormat:
    """How one sink writes its lines: the format, whether JSON Lines are chained, its clock."""

    fmt: AuditFormat
    chained: bool
    instance_id: str
    clock: Callable[[], datetime]


def compose(
    record: Mapping[str, object], line_format: LineFormat, *, seq: int, head: str
) -> tuple[dict[str, object], str]:
    """``record`` as written at position ``seq`` after the chain ``head``, and its line.

    ``ts`` is the record's own (a datetime is formatted) or the clock's now.
    """
    timestamp = record.get("ts")
    if timestamp is None:
        timestamp = line_format.clock()
    written: dict[str, object] = {
        "ts": format_timestamp(timestamp) if isinstance(timestamp, datetime) else json_safe(timestamp),
        "seq": seq,
        "instance_id": line_format.instance_id,
    }
    # Made JSON-safe while copied (one pass, as json_safe of the whole record would do it).
    for key, value in record.items():
        if key not in SINK_FIELDS:
            written[json_key(str(key))] = json_safe(value)
    if line_format.fmt is AuditFormat.CEF:
        return written, to_cef(written)
    if line_format.fmt is AuditFormat.LEEF:
        return written, to_leef(written)
    if not line_format.chained:
        return written, dumps_jsonl(written)
    written[PREV_FIELD] = head
    chain, body = chained_line(head, written)
    written[CHAIN_FIELD] = chain
    return written, escape_line_breakers(body.decode("utf-8"))
