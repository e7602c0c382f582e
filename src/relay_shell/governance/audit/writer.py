"""The audit sink: one line per record, append-only, hash-chained, rotation-safe (ADR 0009).

File handling:

- The file and its directory are created when missing: the file 0600, the directory 0700
  (only a directory we create; an existing one is left alone). The file is opened
  ``O_APPEND``, so ``chattr +a`` files work.
- Before every write the path is ``stat``-ed: when it vanished or now names another inode
  (logrotate renamed it, with or without ``create``), the sink reopens (creating) it.
- Writes hold a ``threading.Lock`` and an exclusive ``flock`` on the file. Under the
  ``flock`` the sink compares the file size with the size its own last write left; when
  another writer (another sink, another process) appended since, the last record is re-read
  from the file's end and the sequence number and chain continue from it. So several
  writers on one file neither interleave lines nor fork the chain.
- Records are not ``fsync``-ed: a completed ``write(2)`` survives a crash of this process,
  which is the failure that matters for an audit of what the process did; a power loss can
  lose the last records still in the page cache. ``fsync`` per record would cost about a
  millisecond on common disks, far above the per-record budget.

Records: the sink owns ``ts`` (added when absent, UTC ISO-8601 with milliseconds and
``Z``), ``seq`` (last sequence number in the file + 1, so it is monotonic across restarts
and rotation), and for chained JSON Lines ``prev`` and ``chain`` (see :mod:`chain`).
Caller values for ``seq``, ``prev`` and ``chain`` are dropped. With ``chain=False``, and
always for CEF and LEEF, records carry no ``prev``/``chain``. The chain resumes from the
file's last record at open; a brand-new file after a rotation continues from the head in
memory, so its first ``prev`` points into the previous file.

Failure: the constructor never raises; if the file cannot be opened the sink starts
``degraded``. :meth:`AuditSink.write` raises :class:`AuditUnavailable` (and marks the sink
degraded) when it cannot write; the next successful write or :meth:`AuditSink.check`
clears the state. ``close`` closes the file; a later write reopens it.
"""

from __future__ import annotations

import fcntl
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from relay_shell.config import AuditFormat
from relay_shell.errors import AuditUnavailable
from relay_shell.governance.audit.chain import (
    CHAIN_FIELD,
    GENESIS,
    PREV_FIELD,
    is_chain_value,
    json_safe,
    link,
)
from relay_shell.governance.audit.formats import dumps_jsonl, parse_line, to_cef, to_leef
from relay_shell.governance.audit.tail import lines_backwards
from relay_shell.governance.audit.verify import MAX_LINE_BYTES

FILE_MODE = 0o600
DIRECTORY_MODE = 0o700
RESUME_SCAN_BYTES = 2 * MAX_LINE_BYTES
"""How far back from the end the sink looks for the last readable record."""

_SINK_FIELDS = frozenset({"ts", "seq", PREV_FIELD, CHAIN_FIELD})


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def format_timestamp(moment: datetime) -> str:
    """``2025-01-31T12:00:00.123Z``: UTC, millisecond precision. Naive times are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class AuditSink:
    """Appends audit records to one file. Thread-safe; safe with other writers of the file."""

    def __init__(
        self,
        path: Path,
        *,
        fmt: AuditFormat = AuditFormat.JSONL,
        chain: bool = True,
        echo_stderr: bool = False,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._path = Path(path)
        self._format = AuditFormat(fmt)
        self._chained = chain and self._format is AuditFormat.JSONL
        self._echo_stderr = echo_stderr
        self._clock = clock
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the open file
        self._known_size: int | None = None  # file size after our last write; None: re-read
        self._needs_newline = False  # the file ends in a torn line: start ours on a new one
        self._seq = 0
        self._head = GENESIS
        self._degraded = False
        self._last_error: str | None = None
        self.check()

    @property
    def path(self) -> Path:
        return self._path

    @property
    def degraded(self) -> bool:
        """True while the file cannot be opened or written."""
        return self._degraded

    @property
    def last_error(self) -> str | None:
        """Why the sink is degraded; None when it is not."""
        return self._last_error

    @property
    def chain_head(self) -> str | None:
        """The ``chain`` of the last record (``GENESIS`` before any); None when not chaining."""
        return self._head if self._chained else None

    @property
    def seq(self) -> int:
        """The ``seq`` of the last record written or found in the file (0 before any)."""
        return self._seq

    def check(self) -> bool:
        """(Re)open or create the file and re-read its end; True, and not degraded, on success."""
        with self._lock:
            try:
                with self._locked_file():
                    pass
            except OSError as exc:
                self._mark_degraded(exc)
                return False
            self._degraded, self._last_error = False, None
            return True

    def write(self, record: Mapping[str, object]) -> dict[str, object]:
        """Append ``record`` as one line and return it as written (JSON-safe, sink fields added).

        Raises :class:`AuditUnavailable` when the line cannot be written; nothing is then
        half-recorded in memory (``seq`` and the chain head do not move).
        """
        with self._lock:
            try:
                with self._locked_file() as fd:
                    written, line = self._compose(record)
                    data = (("\n" if self._needs_newline else "") + line + "\n").encode("utf-8")
                    _write_all(fd, data)
                    self._known_size = (self._known_size or 0) + len(data)
                    self._needs_newline = False
            except OSError as exc:
                self._known_size = None
                message = self._mark_degraded(exc)
                raise AuditUnavailable(message) from exc
            self._seq = _as_int(written["seq"])
            if self._chained:
                self._head = str(written[CHAIN_FIELD])
            self._degraded, self._last_error = False, None
            if self._echo_stderr:
                _echo(line)
            return written

    def close(self) -> None:
        """Close the file (idempotent). A later :meth:`write` reopens it."""
        with self._lock:
            self._close_fd()

    def _compose(self, record: Mapping[str, object]) -> tuple[dict[str, object], str]:
        """The record as it will be written, and its line."""
        timestamp = record.get("ts")
        if timestamp is None:
            timestamp = self._clock()
        written: dict[str, object] = {
            "ts": format_timestamp(timestamp) if isinstance(timestamp, datetime) else json_safe(timestamp),
            "seq": self._seq + 1,
        }
        for key, value in record.items():
            if key not in _SINK_FIELDS:
                written[str(key)] = value
        safe = json_safe(written)
        assert isinstance(safe, dict)
        written = dict(safe)
        if self._format is AuditFormat.CEF:
            return written, to_cef(written)
        if self._format is AuditFormat.LEEF:
            return written, to_leef(written)
        if self._chained:
            written[PREV_FIELD] = self._head
            written[CHAIN_FIELD] = link(self._head, written)
        return written, dumps_jsonl(written)

    @contextmanager
    def _locked_file(self) -> Iterator[int]:
        """The open file, exclusively ``flock``-ed, with ``seq``/head in step with its end."""
        fd = self._current_fd()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            self._sync(fd)
            yield fd
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _current_fd(self) -> int:
        """The fd of the file the path names now, reopening after rotation or removal."""
        if self._fd is not None:
            try:
                current = os.stat(self._path)
            except FileNotFoundError:
                current = None
            if current is not None and (current.st_dev, current.st_ino) == self._identity:
                return self._fd
            # Rotated: first take what other writers appended to the old file before it moved.
            old_fd = self._fd
            fcntl.flock(old_fd, fcntl.LOCK_EX)
            try:
                self._sync(old_fd)
            finally:
                fcntl.flock(old_fd, fcntl.LOCK_UN)
            self._close_fd()
        fd = _open_append(self._path)
        opened = os.fstat(fd)
        self._fd, self._identity, self._known_size = fd, (opened.st_dev, opened.st_ino), None
        return fd

    def _sync(self, fd: int) -> None:
        """Under the flock: if the file changed since our last write, continue from its end."""
        size = os.fstat(fd).st_size
        if size == self._known_size:
            return
        self._known_size = size
        self._needs_newline = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
        if size == 0:
            return  # a new (rotated) file: continue from the head in memory
        for line in lines_backwards(fd, size, max_line=MAX_LINE_BYTES, max_scan=RESUME_SCAN_BYTES):
            last = parse_line(line) if line else None
            if last is None:
                continue
            seq = last.get("seq")
            if isinstance(seq, int) and not isinstance(seq, bool):
                self._seq = max(self._seq, seq)
            if self._chained and is_chain_value(last.get(CHAIN_FIELD)):
                self._head = str(last[CHAIN_FIELD])
            return

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd, self._identity, self._known_size = self._fd, None, None, None
            os.close(fd)

    def _mark_degraded(self, exc: OSError) -> str:
        message = f"audit trail {self._path} cannot be written: {exc.strerror or exc}"
        if exc.filename is not None and str(exc.filename) != str(self._path):
            message += f" ({exc.filename})"
        self._degraded, self._last_error = True, message
        return message


def _open_append(path: Path) -> int:
    """Open ``path`` for append (and reading its end), creating it 0600 and its directory 0700."""
    parent = path.parent
    if not parent.is_dir():
        os.makedirs(parent, mode=DIRECTORY_MODE, exist_ok=True)
        os.chmod(parent, DIRECTORY_MODE)
    flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
    for _attempt in range(3):
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except FileExistsError:
            pass
        else:
            os.fchmod(fd, FILE_MODE)  # the umask may only have narrowed it; make it exact
            return fd
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            continue  # removed between the two opens: create it
        return fd
    raise FileNotFoundError(2, "the file keeps disappearing", str(path))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _as_int(value: object) -> int:
    return value if isinstance(value, int) else 0


def _echo(line: str) -> None:
    """Best effort: a closed or broken stderr must not fail an audit write that succeeded."""
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        return
