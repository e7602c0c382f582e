"""Records that another process hands to the audit file's one writer (the operator's commands).

A server is the only writer of its audit file, so an operator command run beside it
(``--approve-login``, ``--revoke-grant``) cannot append there. It submits its record instead:
one JSON line appended to ``<audit file>.inbox`` under an exclusive ``flock``. The server
takes the inbox in (its watcher thread a few times a second, and before each write), writes
each record into the trail marked ``submitted: inbox``, and empties the inbox; a server that
is not running takes it in when it next starts. The submitting command waits (bounded) until
a running server has taken its record in.

The inbox is not authenticated: whoever may write it (root, the service account) can submit
records, which is why they are marked. At most :data:`MAX_INBOX_BYTES` are taken in at once;
the rest is dropped and the drop recorded.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import time
from collections.abc import Mapping
from pathlib import Path

from relay_shell.errors import AuditUnavailable
from relay_shell.governance.audit.chain import json_safe
from relay_shell.governance.audit.formats import dumps_jsonl, parse_line
from relay_shell.governance.audit.records import format_timestamp, utc_now

log = logging.getLogger("relay_shell.audit")

INBOX_SUFFIX = ".inbox"
MAX_INBOX_BYTES = 1024 * 1024
_FLAGS = os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK


def inbox_path(audit_path: Path) -> Path:
    """Where records for the writer of ``audit_path`` are submitted."""
    return audit_path.with_name(audit_path.name + INBOX_SUFFIX)


class InboxSubmitter:
    """Submits records for the running writer of an audit file (a sink's ``write``/``check``)."""

    def __init__(self, audit_path: Path, *, writer_running: bool) -> None:
        """``writer_running``: a server holds the audit file, so :meth:`write` waits (bounded)
        until it has taken the record in."""
        self.audit_path = audit_path
        self.path = inbox_path(audit_path)
        self.writer_running = writer_running
        self._degraded = False
        self.last_error: str | None = None

    @property
    def degraded(self) -> bool:
        return self._degraded

    def check(self) -> bool:
        """True when the inbox can take a record."""
        try:
            os.close(self._open())
        except OSError as exc:
            self._degraded, self.last_error = True, f"audit inbox {self.path}: {exc.strerror or exc}"
            return False
        self._degraded, self.last_error = False, None
        return True

    def write(self, record: Mapping[str, object]) -> dict[str, object]:
        """Append ``record`` (JSON-safe copy, with the submission time as ``ts``; returned) as one
        line, then wait for a running writer to take it in. Raises AuditUnavailable."""
        safe = json_safe({"ts": format_timestamp(utc_now()), **record})
        assert isinstance(safe, dict)
        data = (dumps_jsonl(safe) + "\n").encode("utf-8")
        try:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
        except OSError as exc:
            self._degraded, self.last_error = True, f"audit inbox {self.path}: {exc.strerror or exc}"
            raise AuditUnavailable(self.last_error) from exc
        if self.writer_running and not self.wait_taken():
            log.warning("the running server has not taken the record from %s in yet; it will", self.path)
        return dict(safe)

    def wait_taken(self, timeout_s: float = 5.0) -> bool:
        """Wait (bounded) until a running writer emptied the inbox; False when it did not."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if os.stat(self.path).st_size == 0:
                    return True
            except FileNotFoundError:
                return True
            time.sleep(0.02)  # polling a file another process empties; bounded by the deadline
        return False

    def close(self) -> None:
        """Nothing is held between writes."""

    def _open(self) -> int:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _FLAGS, 0o600)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise OSError(errno.EINVAL, "not a regular file", str(self.path))
            _owned_like_the_audit_file(fd, info, self.audit_path)
        except BaseException:
            os.close(fd)
            raise
        return fd


def _owned_like_the_audit_file(fd: int, info: os.stat_result, audit_path: Path) -> None:
    """Root submitting for a service: the inbox belongs to the audit file's owner, who empties it."""
    if os.geteuid() != 0:
        return
    try:
        owner = os.stat(audit_path)
    except FileNotFoundError:
        return
    if (info.st_uid, info.st_gid) != (owner.st_uid, owner.st_gid):
        os.fchown(fd, owner.st_uid, owner.st_gid)


def take_inbox(path: Path) -> tuple[list[dict[str, object]], int]:
    """The records waiting in the inbox at ``path`` (emptied), and how many bytes were dropped."""
    try:
        fd = os.open(path, os.O_RDWR | _FLAGS)
    except FileNotFoundError:
        return [], 0
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return [], 0
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size == 0:
            return [], 0
        data = os.pread(fd, min(size, MAX_INBOX_BYTES), 0)
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)
    complete, newline, _partial = data.rpartition(b"\n")
    records = [record for line in complete.split(b"\n") if (record := parse_line(line)) is not None]
    return records, size - len(complete) - len(newline)


class InboxProbe:
    """Whether the inbox at ``path`` holds anything, asked before every write: one system call
    that raises nothing in the usual cases.

    While the inbox does not exist (no operator command ever submitted), an ``access`` answers
    (a ``stat`` of a missing file would cost a raised exception each time); once it exists, a
    ``stat`` tells its size. Which of the two is asked first is only a hint remembered from
    the last answer: a wrong hint costs one more call, never a different answer. Safe to call
    from any thread.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._exists = True

    def has_submissions(self) -> bool:
        if not self._exists and not os.access(self.path, os.F_OK, effective_ids=_EFFECTIVE_IDS):
            return False
        try:
            size = os.stat(self.path).st_size
        except OSError:
            self._exists = False
            return False
        self._exists = True
        return size > 0


_EFFECTIVE_IDS = os.access in os.supports_effective_ids
