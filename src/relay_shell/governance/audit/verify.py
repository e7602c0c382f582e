"""Verify the hash chain of a JSON Lines audit file (``relay-shell --verify-audit``).

The file is streamed line by line (memory bounded by the longest accepted line). For every
line the verifier checks, in order, and stops at the first failure, naming its 1-based line:

1. it is a complete line (a last line without a newline is a torn write), UTF-8, at most
   :data:`MAX_LINE_BYTES`;
2. it is a JSON object written exactly as the sink writes it (re-encoding the parsed object
   gives the same bytes: an edit that keeps the same JSON value, such as reordered keys or
   a changed number spelling, is still caught);
3. ``seq`` is an integer greater than the previous record's;
4. ``prev`` and ``chain`` are 64 hex digits, ``prev`` equals the previous record's
   ``chain``, and ``chain`` equals ``link(prev, record without chain)``.

The ``prev`` of the first record is not checked: after a rotation it points into the
previous file, which this file cannot show (GENESIS for a brand-new trail). What a chain
cannot show: records removed from the end of the file, or a whole file rewritten with a
freshly computed chain; anchor the head elsewhere (ship it to a SIEM) to detect those.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from relay_shell.governance.audit.chain import CHAIN_FIELD, PREV_FIELD, is_chain_value, link
from relay_shell.governance.audit.formats import dumps_jsonl

MAX_LINE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of :func:`verify_chain`. ``records`` counts the records that checked out."""

    ok: bool
    records: int
    first_bad_line: int | None
    problem: str | None


def verify_chain(path: Path) -> VerifyReport:
    """Walk ``path`` and check every record and link; never raises for file problems.

    An unreadable or missing file is reported as ``ok=False`` with ``first_bad_line=None``
    and the reason in ``problem``. An empty file is ``ok`` with zero records.
    """
    walker = _ChainWalker()
    line_number = 0
    try:
        with open(path, "rb") as handle:
            while raw := handle.readline(MAX_LINE_BYTES + 1):
                line_number += 1
                problem = walker.check(raw)
                if problem is not None:
                    return VerifyReport(False, walker.records, line_number, problem)
    except OSError as exc:
        return VerifyReport(False, walker.records, None, f"cannot read {path}: {exc.strerror or exc}")
    return VerifyReport(True, walker.records, None, None)


class _ChainWalker:
    """Checks one line after another, remembering the previous record's seq and chain."""

    def __init__(self) -> None:
        self.records = 0
        self._previous_seq: int | None = None
        self._previous_chain: str | None = None

    def check(self, raw: bytes) -> str | None:
        """The problem with this line, or None (and the walker advances past it)."""
        if not raw.endswith(b"\n"):
            if len(raw) > MAX_LINE_BYTES:
                return f"line longer than {MAX_LINE_BYTES} bytes"
            return "incomplete last line (no newline): a torn write"
        record, parse_problem = _parse(raw[:-1])
        if record is None:
            return parse_problem
        # The parsed dict is ours: taking "chain" out lets link() hash it without a copy.
        chain = record.pop(CHAIN_FIELD, None)
        link_problem = self._check_links(record, chain)
        if link_problem is not None:
            return link_problem
        self.records += 1
        self._previous_seq = record["seq"] if isinstance(record["seq"], int) else None
        self._previous_chain = str(chain)
        return None

    def _check_links(self, record: dict[str, object], chain: object) -> str | None:
        seq = record.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool):
            return "seq is missing or not an integer"
        if self._previous_seq is not None and seq <= self._previous_seq:
            return f"seq {seq} does not increase (previous record has {self._previous_seq})"
        prev = record.get(PREV_FIELD)
        if not is_chain_value(prev) or not is_chain_value(chain):
            return "prev/chain missing or not 64 hex digits (was the trail written with AUDIT_CHAIN=false?)"
        if self._previous_chain is not None and prev != self._previous_chain:
            return "prev does not match the chain of the previous record (a record was removed or moved)"
        assert isinstance(prev, str)
        if link(prev, record) != chain:
            return "chain does not match the record's content (the record was modified)"
        return None


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


# Built once: json.loads with parse_constant would build an equal decoder on every line.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _parse(line: bytes) -> tuple[dict[str, object] | None, str]:
    if not line:
        return None, "empty line"
    try:
        text = line.decode("utf-8")
        value = _DECODER.decode(text)
    except UnicodeDecodeError:
        return None, "not valid UTF-8"
    except ValueError:
        return None, "not a JSON object"
    if not isinstance(value, dict):
        return None, "not a JSON object"
    record: dict[str, object] = value
    if dumps_jsonl(record) != text:
        return None, "line differs from how the record was written (edited by hand?)"
    return record, ""
