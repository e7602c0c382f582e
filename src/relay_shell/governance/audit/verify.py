"""Verify an audit trail (``relay-shell --verify-audit``): one or more files, plain or ``.gz``.

The files are put in order by the ``seq`` of their first record and streamed line by line
(memory bounded by the longest accepted line and a window of recent chains). Every line is
checked, and every problem is reported with its file and 1-based line, not only the first:

1. it is a complete line (a last line without a newline is a torn write), UTF-8, at most
   :data:`MAX_LINE_BYTES`, a JSON object written exactly as the sink writes it;
2. ``seq`` is an integer greater than that of the record it follows;
3. ``prev`` and ``chain`` are 64 hex digits and ``chain == link(prev, record without chain)``;
4. ``prev`` is the ``chain`` of the record before it. When it is the chain of an *earlier*
   record instead, the lines in between are off the writer's chain (a fork; after a
   ``kind: tamper`` record the writer itself recorded the foreign lines). When it matches
   no recent record, records were removed or edited. A file's first record must continue
   the previous file's last (the first file's first ``prev`` cannot be checked);
5. ``kind: tamper`` records (the writer saw someone else change the file) and ``kind:
   recovery`` records that admit lost records are problems; a torn line right before a
   recovery record that accounts for exactly its bytes is not;
6. every ``phase: start`` record has a ``phase: end`` with its ``call_id`` (for a call that
   yielded to a job, ``outcome: running``, the job's ``job_end`` record); those without are
   reported as ``unfinished`` (a crash, ``kill -9`` or power loss mid-call; a server still
   running also has its calls and jobs in flight).

Anchors (:mod:`anchor_check`) add the checks the file cannot make on its own. Without
them, records cut from the end of the newest file, or a trail rewritten as a whole with a
freshly computed chain, are invisible: the chain has no secret.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from relay_shell.governance.audit.chain import (
    CHAIN_FIELD,
    PREV_FIELD,
    is_chain_value,
    link,
    split_chained_line,
)
from relay_shell.governance.audit.findings import (
    MAX_FINDINGS,
    Finding,
    RecordSeen,
    TrailFacts,
    VerifyReport,
    as_int,
)
from relay_shell.governance.audit.formats import dumps_jsonl

__all__ = [
    "Finding",
    "RecordSeen",
    "TrailFacts",
    "VerifyReport",
    "order_files",
    "verify_chain",
    "verify_trail",
]

MAX_LINE_BYTES = 16 * 1024 * 1024
WINDOW = 65_536
"""How many recent chains a fork or a tamper record may point back to."""
READ_BLOCK = 1024 * 1024


def verify_chain(path: Path) -> VerifyReport:
    """Verify one file (see :func:`verify_trail`)."""
    return verify_trail([path])


def verify_trail(paths: Sequence[Path], facts: TrailFacts | None = None) -> VerifyReport:
    """Walk the files of one trail in ``seq`` order; never raises for file problems.

    An unreadable or missing file is a finding without a line. An empty trail is ``ok``.
    ``facts``, when given, is filled for :func:`anchor_check.check_anchors`.
    """
    walker = _Walker(facts or TrailFacts())
    ordered = order_files(paths)
    for path in ordered:
        walker.walk_file(path)
    walker.finish()
    findings = tuple(walker.findings)
    first = findings[0] if findings else None
    return VerifyReport(
        ok=not findings,
        records=walker.records,
        first_bad_line=first.line if first else None,
        problem=first.message if first else None,
        findings=findings,
        notes=tuple(walker.notes),
        files=tuple(str(path) for path in ordered),
    )


def order_files(paths: Sequence[Path]) -> list[Path]:
    """The files by the ``seq`` of their first record (unreadable or empty ones first)."""
    if len(paths) < 2:
        return list(paths)
    keyed: list[tuple[int, int, Path]] = []
    for index, path in enumerate(paths):
        keyed.append((_first_seq(path), index, path))
    keyed.sort()
    return [path for _seq, _index, path in keyed]


def _first_seq(path: Path) -> int:
    try:
        with _open(path) as handle:
            for raw in _lines(handle):
                try:
                    value = json.loads(raw)
                except ValueError:
                    continue
                seq = value.get("seq") if isinstance(value, dict) else None
                if isinstance(seq, int) and not isinstance(seq, bool):
                    return seq
    except OSError:
        return -1
    return -1


def _open(path: Path) -> BinaryIO:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _lines(handle: BinaryIO) -> Iterator[bytes]:
    while raw := handle.readline(MAX_LINE_BYTES + 1):
        yield raw


TOO_LONG = b"\x00too long"
"""Stands for a line over :data:`MAX_LINE_BYTES` (its bytes are not kept)."""


@dataclass(frozen=True)
class Torn:
    """The file's last line, without a newline: a torn write (or a write in progress)."""

    data: bytes


class _LineSource:
    """A file's complete lines without their newline, in batches (one per 1 MiB read).

    A line over :data:`MAX_LINE_BYTES` comes as :data:`TOO_LONG`; a last line without a
    newline is left in :attr:`tail` once the iteration ends.
    """

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self.tail: bytes | None = None

    def __iter__(self) -> Iterator[list[bytes]]:
        carry, skipping = b"", False
        while block := self._handle.read(READ_BLOCK):
            lines = block.split(b"\n")
            if len(lines) == 1:  # no newline in this block: the line goes on
                if not skipping:
                    carry += block
                    if len(carry) > MAX_LINE_BYTES:
                        carry, skipping = b"", True
                continue
            first = TOO_LONG if skipping else carry + lines[0]
            lines[0] = TOO_LONG if len(first) > MAX_LINE_BYTES else first
            carry, skipping = lines.pop(), False
            if len(carry) > MAX_LINE_BYTES:
                carry, skipping = b"", True
            yield lines
        if skipping:
            yield [TOO_LONG]
        elif carry:
            self.tail = carry


class _Walker:
    """Checks one line after another across the files of a trail."""

    def __init__(self, facts: TrailFacts) -> None:
        self.facts = facts
        self.records = 0
        self.findings: list[Finding] = []
        self.notes: list[str] = []
        self._window: dict[str, tuple[int, str, int]] = {}  # chain -> seq, file, line
        self._previous: tuple[str, int] | None = None  # chain, seq of the last record
        self._open_calls: dict[str, tuple[str, int, object]] = {}  # call_id -> file, line, tool
        self._torn: tuple[int, str, int] | None = None  # index of a torn-line finding, its file and length
        self._file = ""
        self._first_in_file = True

    def walk_file(self, path: Path) -> None:
        self._file, self._first_in_file = str(path), True
        try:
            with _open(path) as handle:
                source = _LineSource(handle)
                line = self._walk(source)
                if source.tail is not None:
                    self._check_line(Torn(source.tail), line + 1)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            self._report("unreadable", f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}", None)
        if self._previous is not None:
            self.facts.last_chain, self.facts.last_seq = self._previous

    def _walk(self, blocks: Iterable[list[bytes]]) -> int:
        """The hot loop. The common line (laid out as the sink writes it, its own bytes hashing
        to its chain, following the previous record) is accepted here with one parse; any other
        goes to :meth:`_check_line`, which reports whatever is wrong with it."""
        scan, sha256, file, open_calls = _SCAN_ONCE, hashlib.sha256, self._file, self._open_calls
        observe = self.facts.observe if self.facts.watching else None
        line = 0
        for block in blocks:
            for raw in block:
                line += 1
                previous = None if self._first_in_file else self._previous  # a file's first line: full check
                if previous is not None and raw[-_SUFFIX:-_CHAIN_END] == b',"chain":"' and raw[-2:] == b'"}':
                    try:
                        text = raw.decode("utf-8")  # strict: the sink never writes anything else
                        record, end = scan(text, 0)
                    except (UnicodeDecodeError, StopIteration):
                        record, end, text = None, -1, ""
                    if type(record) is dict and end == len(text):
                        prev, seq, chain = (
                            record.get(PREV_FIELD),
                            record.get("seq"),
                            record.pop(CHAIN_FIELD, None),
                        )
                        if (
                            prev == previous[0]
                            and type(seq) is int
                            and seq > previous[1]
                            and type(chain) is str
                        ):
                            digest = sha256(prev.encode("ascii"))
                            digest.update(raw[:-_SUFFIX])
                            digest.update(b"}")
                            if digest.hexdigest() == chain and raw[-_CHAIN_END:-2] == chain.encode("ascii"):
                                self._first_in_file, self._previous = False, (chain, seq)
                                self.records += 1
                                self._remember(chain, seq, line)
                                kind, phase = record.get("kind"), record.get("phase")
                                if kind is not None:
                                    self._sink_event(record, str(kind), line)
                                elif phase == "start":
                                    open_calls[str(record.get("call_id"))] = (file, line, record.get("tool"))
                                elif phase == "end" or record.get("tool") == "job_end":
                                    self._close_call(record)
                                if observe is not None:
                                    observe(record, seq, chain, (file, line))
                                self._torn = None
                                continue
                self._check_line(raw, line)
        return line

    def _remember(self, chain: str, seq: int, line: int) -> None:
        """Keep the chain in the window a later fork or tamper record may point back to."""
        window = self._window
        window[chain] = (seq, self._file, line)
        if len(window) > 2 * WINDOW:  # amortised: drop the older half at once
            self._window = dict(list(window.items())[-WINDOW:])

    def finish(self) -> None:
        for call_id, (file, line, tool) in self._open_calls.items():
            self._report(
                "unfinished", f"call {call_id} ({tool}) started here and has no end record", line, file=file
            )

    def _report(self, kind: str, message: str, line: int | None, *, file: str | None = None) -> None:
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(Finding(kind, message, file if file is not None else self._file, line))

    def _check_line(self, raw: bytes | Torn, line: int) -> None:
        """The complete check of one line (see the module docstring), reporting what is wrong."""
        if isinstance(raw, Torn):
            self._report("torn", "incomplete last line (no newline): a torn write", line)
            return
        if raw is TOO_LONG:
            self._report("malformed", f"line longer than {MAX_LINE_BYTES} bytes", line)
            return
        parsed = _parse(raw)
        if isinstance(parsed, str):
            self._torn = (len(self.findings), self._file, len(raw))
            self._report("malformed", parsed, line)
            return
        record, chain = parsed
        if chain is None:
            invalid = _check_record(raw, record)
            if invalid is not None:
                self._report("edited", invalid, line)
                return
            chain = str(record.pop(CHAIN_FIELD))
        self._link(record, chain, line)
        self._account(record, chain, line)
        self._torn = None

    def _link(self, record: dict[str, object], chain: str, line: int) -> None:
        """Where this record's ``prev`` points: the record before it, an earlier one, or nowhere."""
        prev, seq = str(record[PREV_FIELD]), as_int(record["seq"])
        previous = self._previous
        if previous is not None and prev != previous[0]:
            earlier = self._window.get(prev)
            if self._first_in_file:
                self._report(
                    "gap",
                    "the file's first record does not continue the previous file (records missing)",
                    line,
                )
            elif earlier is not None:
                kind = "foreign" if record.get("kind") == "tamper" else "fork"
                first_off = earlier[2] + 1 if earlier[1] == self._file else 1
                self._report(
                    kind,
                    f"lines {first_off}..{line - 1} are not on the writer's chain: line {line} continues "
                    f"line {earlier[2]}"
                    + (", and records someone else's change" if kind == "foreign" else " (a fork)"),
                    first_off,
                )
            else:
                self._report(
                    "removed", "prev matches no earlier record (records were removed or edited)", line
                )
            if earlier is not None and seq <= earlier[0]:
                self._report(
                    "seq", f"seq {seq} does not increase (the record it follows has {earlier[0]})", line
                )
        elif previous is not None and seq <= previous[1]:
            self._report("seq", f"seq {seq} does not increase (previous record has {previous[1]})", line)
        if self._first_in_file and "instance_id" in record and record.get("kind") != "header":
            self._report(
                "removed",
                "the file does not start with a header record (its first records were removed)",
                line,
            )
        self._first_in_file, self._previous = False, (chain, seq)
        self.records += 1
        self._remember(chain, seq, line)

    def _account(self, record: dict[str, object], chain: str, line: int) -> None:
        """Calls, sink events and the facts anchors are checked against."""
        seq = as_int(record["seq"])
        kind, phase = record.get("kind"), record.get("phase")
        if kind is not None:
            self._sink_event(record, str(kind), line)
        elif phase == "start":
            self._open_calls[str(record.get("call_id"))] = (self._file, line, record.get("tool"))
        elif phase == "end" or record.get("tool") == "job_end":
            self._close_call(record)
        self.facts.observe(record, seq, chain, (self._file, line))

    def _close_call(self, record: dict[str, object]) -> None:
        """An end record closes its call, unless the call yielded to a job (``outcome: running``):
        then its ``job_end`` record does."""
        if record.get("phase") == "end" and record.get("outcome") == "running":
            return
        self._open_calls.pop(str(record.get("call_id")), None)

    def _sink_event(self, record: dict[str, object], kind: str, line: int) -> None:
        if kind == "tamper":
            detail = json.dumps(record.get("detail"), sort_keys=True)
            self._report(
                "tamper",
                f"the writer recorded a change by someone else: {record.get('reason')} {detail}",
                line,
            )
        elif kind == "recovery":
            self._recovery(record, line)

    def _recovery(self, record: dict[str, object], line: int) -> None:
        torn, lost = as_int(record.get("torn_bytes")), as_int(record.get("lost_records"))
        pending = self._torn
        if torn and pending is not None and pending[1] == self._file and pending[2] == torn:
            self.findings.pop(pending[0])
            self.notes.append(
                f"{self._file}: the torn line before line {line} is accounted for by its recovery record"
            )
        if lost:
            self._report(
                "lost",
                f"the writer could not write {lost} record(s) before this line ({record.get('error')})",
                line,
            )


def _check_record(line: bytes, record: dict[str, object]) -> str | None:
    """The slow check of a line whose own bytes did not hash to its chain: written exactly as
    the sink writes, ``seq`` and chain fields well-formed, and the chain recomputed."""
    if dumps_jsonl(record) != line.decode("utf-8"):
        return "line differs from how the record was written (edited by hand?)"
    if not isinstance(record.get("seq"), int) or isinstance(record.get("seq"), bool):
        return "seq is missing or not an integer"
    prev, chain = record.get(PREV_FIELD), record.get(CHAIN_FIELD)
    if not is_chain_value(prev) or not is_chain_value(chain):
        return "prev/chain missing or not 64 hex digits (was the trail written with AUDIT_CHAIN=false?)"
    assert isinstance(prev, str)
    if link(prev, record) != chain:
        return "chain does not match the record's content (the record was modified)"
    return None


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


# Built once: json.loads with parse_constant would build an equal decoder on every line.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
# The C scanner behind decode(), called directly: one parse without decode()'s Python layers.
_SCAN_ONCE: Callable[[str, int], tuple[object, int]] = _DECODER.scan_once  # type: ignore[attr-defined]
_CHAIN_END = 64 + len('"}')
_SUFFIX = len(',"chain":"') + _CHAIN_END


def _parse(line: bytes) -> tuple[dict[str, object], str | None] | str:
    """The record of a line, and its chain when the line's own bytes hash to it (the fast path).

    Returns a problem string when the line is not a JSON object.
    """
    if not line:
        return "empty line"
    try:
        value = _DECODER.decode(line.decode("utf-8"))
    except UnicodeDecodeError:
        return "not valid UTF-8"
    except ValueError:
        return "not a JSON object"
    if not isinstance(value, dict):
        return "not a JSON object"
    record: dict[str, object] = value
    return record, _own_bytes_chain(line, record)


def _own_bytes_chain(line: bytes, record: dict[str, object]) -> str | None:
    """The chain, taken out of ``record``, when the line is laid out as the sink writes it and
    ``sha256(prev || its bytes without the chain)`` is that chain; else None (``record`` kept)."""
    split = split_chained_line(line)
    if split is None:
        return None
    body, chain = split
    prev, seq = record.get(PREV_FIELD), record.get("seq")
    well_formed = isinstance(prev, str) and is_chain_value(prev) and record.get(CHAIN_FIELD) == chain
    if not well_formed or not isinstance(seq, int) or isinstance(seq, bool):
        return None
    assert isinstance(prev, str)
    digest = hashlib.sha256(prev.encode("ascii"))
    digest.update(body)
    if digest.hexdigest() != chain:
        return None
    del record[CHAIN_FIELD]
    return chain
