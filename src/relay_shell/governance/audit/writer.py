"""The audit sink: the only writer of its file, hash-chained, anchored outside the file (ADR 0019).

- **One writer.** The file is opened and locked for the sink's life through
  :class:`guard.GuardedFile`; a second sink gets :class:`ConfigError` naming the holder.
  Every record carries the sink's ``instance_id``; each start and each new file begins with
  a ``kind: header`` record.
- **No change unnoticed.** Before each write (and in :meth:`AuditSink.check`) the path, size
  and tail must be what the sink left. Anything else latches the sink *tampered*: a ``kind:
  tamper`` record goes into the file it still holds, to stderr and to the anchor, and
  :meth:`check` stays False until the process restarts. It never adopts foreign records.
- **Rotation** only in logrotate's ``create`` style; the new file's header chains from the
  old file. ``copytruncate`` is a truncation.
- **Failure.** An unopenable file or a failed or short write makes the sink *unwritable*
  at once (:meth:`write` raises :class:`AuditUnavailable`); when writes succeed again a
  ``kind: recovery`` record counts the lost records and the bytes of a torn line.
- **Records.** The sink owns ``ts``, ``seq``, ``instance_id`` and, for chained JSON Lines,
  ``prev`` and ``chain`` (:mod:`compose` turns a record into its line). :meth:`begin` / :meth:`end` write a call's ``phase: start`` and
  ``phase: end`` records.
- **Anchors and shipping** (:mod:`anchoring`): headers, tamper and recovery records and the
  starts the caller asks for are anchored synchronously; the head by :meth:`anchor_head`
  (every interval from :meth:`start_heartbeat`) and at :meth:`close`. A failing channel
  makes :meth:`check` False; :meth:`begin` raises when its anchor or shipment fails.

Records are not ``fsync``-ed (ADR 0009).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from enum import StrEnum
from pathlib import Path

import relay_shell
from relay_shell.config import AuditFormat
from relay_shell.errors import AuditUnavailable, ConfigError
from relay_shell.governance.audit.anchoring import Anchoring
from relay_shell.governance.audit.chain import CHAIN_FIELD, GENESIS
from relay_shell.governance.audit.compose import LineFormat, compose
from relay_shell.governance.audit.guard import (
    DIRECTORY_MODE,
    FILE_MODE,
    Condition,
    FileInUse,
    GuardedFile,
    UnsafeFile,
    Verdict,
)
from relay_shell.governance.audit.inbox import InboxProbe, inbox_path, take_inbox
from relay_shell.governance.audit.records import format_timestamp, new_call_id, utc_now
from relay_shell.governance.audit.resume import Resumed, last_record_of, previous_generation

__all__ = [
    "DIRECTORY_MODE",
    "FILE_MODE",
    "AuditSink",
    "SinkState",
    "format_timestamp",
    "new_call_id",
    "utc_now",
]

log = logging.getLogger("relay_shell.audit")

INBOX_POLL_S = 0.2
"""How often the watcher thread looks for submitted records."""


class SinkState(StrEnum):
    HEALTHY = "healthy"
    UNWRITABLE = "unwritable"
    TAMPERED = "tampered"


class AuditSink:
    """Appends audit records to one file it alone writes. Thread-safe.

    Raises :class:`ConfigError` at construction when another process holds the file or the
    path is not a safe regular file; any other problem leaves it *unwritable* (see
    :attr:`state`) instead.
    """

    def __init__(
        self,
        path: Path,
        *,
        fmt: AuditFormat = AuditFormat.JSONL,
        chain: bool = True,
        echo_stderr: bool = False,
        clock: Callable[[], datetime] = utc_now,
        anchoring: Callable[[str], Anchoring] | None = None,
    ) -> None:
        self._path = Path(path)
        self._inbox = inbox_path(self._path)
        self._submissions = InboxProbe(self._inbox)
        self._format = AuditFormat(fmt)
        self._chained = chain and self._format is AuditFormat.JSONL
        self._echo_stderr = echo_stderr
        self.instance_id = secrets.token_hex(12)
        self._started = clock()
        self._anchoring = anchoring(self.instance_id) if anchoring is not None else None
        self._line_format = LineFormat(self._format, self._chained, self.instance_id, clock)
        self._lock = threading.RLock()
        self._file: GuardedFile | None = None
        self._opened_once = False
        self._seq = 0
        self._head = GENESIS
        self._state = SinkState.UNWRITABLE
        self._last_error: str | None = None
        self._lost = 0  # records that could not be written since the last success
        self._torn = 0  # bytes of a short write left at the end of the file
        self._anchored_head: tuple[int, str] | None = None
        # (reason, resumed record, previous file name) of a header the current file still owes
        self._pending_header: tuple[str, Resumed | None, str | None] | None = None
        self._heartbeat: threading.Thread | None = None
        self._stop = threading.Event()
        with self._lock, contextlib.suppress(AuditUnavailable):  # unwritable: check() keeps trying
            self._open(first=True)

    # -- state ---------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    @property
    def state(self) -> SinkState:
        return self._state

    @property
    def degraded(self) -> bool:
        """True while the file cannot be written, was tampered with, or a channel fails."""
        return self._state is not SinkState.HEALTHY or self._channel_error() is not None

    @property
    def last_error(self) -> str | None:
        """Why the sink is degraded; None when it is not."""
        if self._state is not SinkState.HEALTHY:
            return self._last_error
        return self._channel_error()

    @property
    def chain_head(self) -> str | None:
        """The ``chain`` of the last record (``GENESIS`` before any); None when not chaining."""
        return self._head if self._chained else None

    @property
    def seq(self) -> int:
        """The ``seq`` of the last record written or found in the file (0 before any)."""
        return self._seq

    def held_file(self) -> Path | None:
        """A path that reads the file the sink holds open (``/proc/self/fd/N``), even after its
        name was deleted or swapped; None while no file is open."""
        return Path(f"/proc/self/fd/{self._file.fd}") if self._file is not None else None

    def status(self) -> dict[str, object]:
        """For server_info: state, instance, and the anchor and ship channels."""
        status: dict[str, object] = {"state": self._state.value, "instance_id": self.instance_id}
        if self._anchoring is not None:
            status.update(self._anchoring.status())
        return status

    def check(self) -> bool:
        """Inspect the file (recording tampering, following a rotation, recovering after a
        failure) and the channels; True when records can be written and anchored now."""
        with self._lock:
            try:
                self._ready()
            except AuditUnavailable:
                return False
            if self._state is not SinkState.HEALTHY:
                return False
            return self._anchoring is None or self._anchoring.healthy()

    # -- writing -------------------------------------------------------------------------

    def write(self, record: Mapping[str, object]) -> dict[str, object]:
        """Append ``record`` as one line and return it as written (JSON-safe, sink fields added).

        Raises :class:`AuditUnavailable` when the line cannot be written; ``seq`` and the chain
        head then do not move. A tampered sink still writes (into its own file, and to stderr).
        """
        with self._lock:
            try:
                self._ready()
            except AuditUnavailable:
                self._lost += 1  # the caller's record was not written
                raise
            return self._append(record)

    def begin(self, record: Mapping[str, object], *, anchor: bool) -> dict[str, object]:
        """Write a call's ``phase: start`` record, anchored synchronously when ``anchor``.

        Raises :class:`AuditUnavailable` when the record was not written, or was written but
        could not be anchored or shipped (the caller then must not run the call).
        """
        with self._lock:
            written = self.write({**record, "phase": "start"})
            if anchor:
                self._send_anchor("start", written)
            problem = self._channel_error()
            if problem is not None:
                raise AuditUnavailable(
                    f"the audit record of this call could not be anchored or shipped: {problem}"
                )
            return written

    def end(self, record: Mapping[str, object]) -> dict[str, object]:
        """Write a call's ``phase: end`` record (same ``call_id`` as its start)."""
        return self.write({**record, "phase": "end"})

    def anchor_head(self, kind: str = "head") -> None:
        """Anchor the current head when it moved since the last anchor (always at shutdown)."""
        with self._lock:
            if self._anchoring is None or not self._chained or self._file is None:
                return
            head = (self._seq, self._head)
            if head == self._anchored_head and kind == "head":
                return
            self._send_anchor(kind, {"seq": self._seq, "chain": self._head})
            self._anchored_head = head

    def start_heartbeat(self, interval_s: float) -> None:
        """Start the daemon thread that, until :meth:`close`, takes in submitted records a few
        times a second and anchors the head every ``interval_s`` seconds."""
        if self._heartbeat is not None:
            return

        def beat() -> None:
            anchored_at = time.monotonic()
            while not self._stop.wait(INBOX_POLL_S):
                if self._submissions.has_submissions():
                    with self._lock, contextlib.suppress(AuditUnavailable):
                        self._ready()
                if self._anchoring is None or time.monotonic() - anchored_at < interval_s:
                    continue
                anchored_at = time.monotonic()
                try:
                    self.anchor_head()
                except AuditUnavailable as exc:  # kept as the channel error; the next beat retries
                    log.warning("audit: the head was not anchored: %s", exc)

        self._heartbeat = threading.Thread(target=beat, name="relay-shell-audit-anchor", daemon=True)
        self._heartbeat.start()

    def close(self) -> None:
        """Anchor the head as ``shutdown``, close channels and the file (idempotent).

        A later :meth:`write` reopens the file, with a new header.
        """
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
            self._heartbeat = None
        with self._lock:
            if self._file is not None:
                try:
                    self.anchor_head("shutdown")
                except AuditUnavailable as exc:
                    log.error("audit: the shutdown anchor was not sent: %s", exc)
                self._file.close()
                self._file = None
            if self._anchoring is not None:
                self._anchoring.close()
            self._stop = threading.Event()

    # -- the file ------------------------------------------------------------------------

    def _ready(self) -> GuardedFile:
        """The file, inspected: tampering recorded, rotation followed, what it owes written."""
        if self._file is None:
            self._open(first=False)
        guarded = self._file
        assert guarded is not None
        try:
            verdict = (
                guarded.inspect() if self._state is not SinkState.TAMPERED else guarded.inspect_content()
            )
        except OSError as exc:
            raise self._unwritable(exc) from exc
        if verdict.condition is Condition.TAMPERED:
            self._record_tamper(verdict)
        elif verdict.condition is Condition.ROTATED:
            self._rotate(guarded)
        elif self._pending_header is not None or self._state is SinkState.UNWRITABLE:
            self._catch_up()
        if self._submissions.has_submissions():
            self._take_submissions()
        assert self._file is not None
        return self._file

    def _take_submissions(self) -> None:
        """Write what other processes submitted (:mod:`inbox`) into the trail, marked as such."""
        records, dropped = take_inbox(self._inbox)
        for record in records:
            self._append({**record, "submitted": "inbox"})
        if dropped:
            self._append({"tool": "audit_inbox", "tier": 0, "outcome": "error", "dropped_bytes": dropped})

    def _open(self, *, first: bool) -> None:
        """Open and lock the file, resume its chain, write this instance's header."""
        try:
            guarded = GuardedFile.open(self._path)
        except (UnsafeFile, FileInUse) as exc:
            if first:
                raise ConfigError(f"RELAY_SHELL_AUDIT_PATH: {exc}") from exc
            raise self._unwritable(OSError(str(exc))) from exc
        except OSError as exc:
            raise self._unwritable(exc) from exc
        resumed = last_record_of(guarded)
        if resumed is None and guarded.size == 0:
            resumed = previous_generation(self._path)
        if resumed is not None:
            self._seq = max(self._seq, resumed.seq)
            if self._chained and resumed.chain is not None:
                self._head = resumed.chain
        self._file = guarded
        self._pending_header = ("start" if not self._opened_once else "reopen", resumed, None)
        self._opened_once = True
        self._catch_up()

    def _rotate(self, old: GuardedFile) -> None:
        """Continue in the new file at the path with a header chaining from the old one."""
        try:
            new = GuardedFile.open(self._path, require_empty=True)
        except (UnsafeFile, FileInUse) as exc:
            self._record_tamper(Verdict(Condition.TAMPERED, "unsafe new file", {"problem": str(exc)}))
            return
        except OSError as exc:
            raise self._unwritable(exc) from exc
        previous_name = _current_name(old.fd)
        old.close()
        self._file = new
        resumed = Resumed(self._seq, self._head if self._chained else None)
        self._pending_header = ("rotation", resumed, previous_name)
        self._catch_up()

    def _catch_up(self) -> None:
        """Write what the file owes (its header, then a recovery record), then be healthy."""
        if self._pending_header is not None:
            reason, resumed, previous_name = self._pending_header
            self._header(reason, resumed, previous_name)
            self._pending_header = None
        if self._lost or self._torn:
            written = self._append(
                {
                    "kind": "recovery",
                    "lost_records": self._lost,
                    "torn_bytes": self._torn,
                    "error": self._last_error,
                }
            )
            self._lost, self._torn = 0, 0
            self._try_anchor("recovery", written)
        if self._state is SinkState.UNWRITABLE:
            self._state, self._last_error = SinkState.HEALTHY, None

    def _header(self, reason: str, resumed: Resumed | None, previous_file: str | None) -> None:
        record: dict[str, object] = {
            "kind": "header",
            "reason": reason,
            "pid": os.getpid(),
            "started": format_timestamp(self._started),
            "version": relay_shell.__version__,
            "file": str(self._path),
            "previous_chain": self._head if self._chained else None,
            "previous_seq": resumed.seq if resumed is not None else None,
        }
        if previous_file is not None:
            record["previous_file"] = previous_file
        written = self._append(record)
        self._try_anchor("header", written)

    def _record_tamper(self, verdict: Verdict) -> None:
        """Latch the tampered state and record the event in our own file, on stderr and as an anchor."""
        first = self._state is not SinkState.TAMPERED
        self._state = SinkState.TAMPERED
        self._last_error = (
            f"the audit file {self._path} was changed by another process ({verdict.reason}); "
            "records continue in the file relay-shell holds open; restart relay-shell to reset"
        )
        log.error("audit: %s %s", self._last_error, verdict.detail or {})
        guarded = self._file
        assert guarded is not None
        try:
            guarded.rebaseline()
            written = self._append(
                {"kind": "tamper", "reason": verdict.reason, "detail": verdict.detail or {}}, settle=False
            )
        except AuditUnavailable:
            return
        self._try_anchor("tamper", written)
        if first:
            self._echo_stderr = True

    def _append(self, record: Mapping[str, object], *, settle: bool = True) -> dict[str, object]:
        """Compose, write and account one record (raises AuditUnavailable on failure).

        With ``settle`` the file's size is checked afterwards, so an append racing ours is
        recorded as tampering too.
        """
        guarded = self._file
        if guarded is None:
            raise AuditUnavailable(self._last_error or f"audit trail {self._path} is not open")
        written, line = compose(record, self._line_format, seq=self._seq + 1, head=self._head)
        separator = "" if guarded.ends_with_newline() else "\n"
        data = (separator + line + "\n").encode("utf-8")
        try:
            guarded.append(data)
        except OSError as exc:
            landed = getattr(exc, "written", 0)
            if landed >= len(data) - 1:
                self._advance(written)  # all but the newline: the record is there
            elif landed:
                # The unterminated line at the end is now this partial one (a separator that
                # landed ended the previous torn line, which stays a malformed line).
                self._torn = landed - len(separator)
            if "kind" not in record:
                self._lost += 1  # the sink's own records are not counted: the recovery record says it all
            raise self._unwritable(exc) from exc
        self._advance(written)
        if self._echo_stderr:
            _echo(line)
        if self._anchoring is not None and self._anchoring.ships:
            try:
                self._anchoring.ship(line, written)
            except OSError:
                log.warning("audit: record %s not shipped: %s", written["seq"], self._anchoring.error)
        if settle:
            try:
                settled = guarded.settle()
            except OSError as exc:
                raise self._unwritable(exc) from exc
            if settled.condition is Condition.TAMPERED:
                self._record_tamper(settled)
        return written

    def _advance(self, written: Mapping[str, object]) -> None:
        seq = written["seq"]
        self._seq = seq if isinstance(seq, int) else self._seq
        if self._chained:
            self._head = str(written[CHAIN_FIELD])

    def _unwritable(self, exc: OSError) -> AuditUnavailable:
        """Mark the sink unwritable (unless tampered, which wins) and build the error to raise."""
        message = f"audit trail {self._path} cannot be written: {exc.strerror or exc}"
        if exc.filename is not None and str(exc.filename) != str(self._path):
            message += f" ({exc.filename})"
        if self._state is not SinkState.TAMPERED:
            self._state, self._last_error = SinkState.UNWRITABLE, message
        return AuditUnavailable(message)

    # -- channels ------------------------------------------------------------------------

    def _send_anchor(self, kind: str, written: Mapping[str, object]) -> None:
        if self._anchoring is None or not self._chained:
            return
        try:
            self._anchoring.anchor(kind, written)
        except OSError as exc:
            raise AuditUnavailable(f"audit anchor failed: {self._anchoring.error or exc}") from exc

    def _try_anchor(self, kind: str, written: Mapping[str, object]) -> None:
        """Anchor a sink event; a failure is kept as the channel error (check() is then False)."""
        try:
            self._send_anchor(kind, written)
        except AuditUnavailable as exc:
            log.warning("audit: %s", exc)

    def _channel_error(self) -> str | None:
        return self._anchoring.error if self._anchoring is not None else None


def _current_name(fd: int) -> str | None:
    """Where an open file lives now (``/proc/self/fd``), e.g. the name logrotate gave it."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def _echo(line: str) -> None:
    """Best effort: a closed or broken stderr must not fail an audit write that succeeded."""
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        return
