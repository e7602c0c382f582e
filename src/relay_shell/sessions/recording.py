"""Session recordings: one asciicast v2 file per PTY session, for an operator to replay.

Opt-in by ``RELAY_SHELL_SESSION_RECORD_DIR``. The directory is created 0700 (an existing one
we own is tightened to 0700); each file is created ``O_EXCL | O_NOFOLLOW`` 0600 inside it
(through a directory fd, so a symlink planted at the file name is refused). The format is
asciicast v2 (``asciinema play FILE``): a JSON header line (``version`` 2, ``width``,
``height``, ``timestamp``, ``title``, ``command``, ``env.TERM``), then one JSON array per
event, ``[seconds, code, data]``: ``"o"`` output, ``"r"`` resize (``"COLSxROWS"``) and, only
with ``RELAY_SHELL_SESSION_RECORD_INPUT``, ``"i"`` input. Times come from a monotonic clock
and never decrease.

Input is written only when the terminal's echo mode is known (:class:`EchoProbe`, local
PTYs: ``tcgetattr`` on the master); input typed while ECHO is off in canonical mode is
replaced whole by ``[REDACTED]`` (a password prompt: ``sudo``, ``passwd``, ``ssh``, ``read
-s``); with ECHO and ICANON both off (a line editor such as readline, or a full-screen
program, draws the text itself and it is seen in the output) nothing is written.
An SSH terminal's mode is not visible from the client, so SSH input is never recorded.

Size: at ``max_bytes`` the recording stops, with a last output event saying so. Writes are
buffered (flushed at 64 KiB, after 1 s, and at the end) so the event loop only ever makes
one short ``write(2)`` to the page cache; ``fsync`` runs once, at the end, in a worker thread.
A write error stops the recording (the session goes on) and is reported in its summary.
The size and SHA-256 count the bytes actually written, so they are the file's when it ends.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import hashlib
import json
import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from relay_shell.errors import SpawnFailed

log = logging.getLogger("relay_shell.sessions")

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
FLUSH_BYTES = 64 * 1024
FLUSH_DELAY_S = 1.0
REDACTED = "[REDACTED]"
MAX_HEADER_TEXT = 2048  # a command can be 100,000 characters; the header keeps its start
_STOP_RESERVE = 512  # room kept for the event that says the recording stopped
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": "), allow_nan=False)


@runtime_checkable
class EchoProbe(Protocol):
    """A transport that can tell whether its terminal echoes input (local PTYs)."""

    def echo_enabled(self) -> bool | None:
        """True/False for the terminal's ECHO flag now; None when it cannot be read."""


@dataclass(frozen=True)
class RecordingSettings:
    """Where and how sessions are recorded (from ``RELAY_SHELL_SESSION_RECORD_*``)."""

    directory: Path
    record_input: bool
    max_bytes: int


@dataclass(frozen=True)
class RecordingSummary:
    """A finished recording, for the session's end record."""

    path: str
    bytes: int
    sha256: str
    truncated: bool
    input_recorded: bool
    error: str | None


def prepare_directory(directory: Path) -> None:
    """Create ``directory`` 0700 (parents too); tighten an existing one we own to 0700.

    Raises:
        SpawnFailed: it cannot be created, or it is not a directory.
    """
    try:
        directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
        status = directory.stat()
        if not stat.S_ISDIR(status.st_mode):
            raise SpawnFailed(f"the recording directory {directory} is not a directory")
        if status.st_uid == os.geteuid() and stat.S_IMODE(status.st_mode) != DIRECTORY_MODE:
            directory.chmod(DIRECTORY_MODE)
    except OSError as exc:
        raise SpawnFailed(f"cannot use the recording directory {directory}: {exc.strerror or exc}") from exc


def recording_name(session_id: str, moment: datetime) -> str:
    """``20261206T101500Z-sh-0123456789ab.cast``: sorts by start time, unique by session id."""
    return f"{moment:%Y%m%dT%H%M%S}Z-{session_id}.cast"


class Recording:
    """The asciicast v2 file of one session. Event methods never raise; :meth:`close` once at the end."""

    def __init__(
        self,
        fd: int,
        path: Path,
        settings: RecordingSettings,
        clock: Callable[[], float],
    ) -> None:
        self.path = path
        self._fd: int | None = fd
        self._settings = settings
        self._clock = clock
        self._started = clock()
        self._last_time = 0.0
        self._buffer = bytearray()
        self._written = 0
        self._hash = hashlib.sha256()
        self._output_decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._input_decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._flush_handle: asyncio.TimerHandle | None = None
        self.truncated = False
        self.input_recorded = False
        self.error: str | None = None
        self._summary: RecordingSummary | None = None

    @classmethod
    def start(
        cls,
        settings: RecordingSettings,
        session_id: str,
        *,
        cols: int,
        rows: int,
        command: str,
        title: str,
        term: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> Recording:
        """Create the file and write the header.

        Raises:
            SpawnFailed: the directory or the file cannot be created.
        """
        prepare_directory(settings.directory)
        moment = datetime.now(UTC)
        name = recording_name(session_id, moment)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            directory_fd = os.open(settings.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                fd = os.open(name, flags, FILE_MODE, dir_fd=directory_fd)
            finally:
                os.close(directory_fd)
        except OSError as exc:
            raise SpawnFailed(f"cannot create the session recording {name}: {exc.strerror or exc}") from exc
        recording = cls(fd, settings.directory / name, settings, clock)
        header = {
            "version": 2,
            "width": cols,
            "height": rows,
            "timestamp": int(moment.timestamp()),
            "title": title[:MAX_HEADER_TEXT],
            "command": command if len(command) <= MAX_HEADER_TEXT else command[:MAX_HEADER_TEXT] + "...",
            "env": {"TERM": term[:MAX_HEADER_TEXT]},
        }
        recording._append(_ENCODER.encode(header))
        recording.flush()
        return recording

    @property
    def active(self) -> bool:
        return self._fd is not None and not self.truncated

    def output(self, data: bytes) -> None:
        """Record terminal output (decoded as UTF-8, a character cut between chunks kept whole)."""
        if self.active:
            text = self._output_decoder.decode(data)
            if text:
                self._event("o", text)

    def input(self, data: bytes, echo: bool | None) -> None:
        """Record typed input if input recording is on and the echo mode is known (see the module)."""
        if not self.active or not self._settings.record_input or echo is None:
            return
        text = self._input_decoder.decode(data) if echo else REDACTED
        if not echo:
            self._input_decoder.reset()
        if text:
            self.input_recorded = True
            self._event("i", text)

    def resize(self, cols: int, rows: int) -> None:
        if self.active:
            self._event("r", f"{cols}x{rows}")

    def flush(self) -> None:
        """Write what is buffered (one ``write(2)``); a failure stops the recording."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._fd is None or not self._buffer:
            return
        data = memoryview(bytes(self._buffer))
        self._buffer.clear()
        try:
            while data:
                written = os.write(self._fd, data)
                self._hash.update(data[:written])  # only what is in the file
                self._written += written
                data = data[written:]
        except OSError as exc:
            self._fail(f"writing failed: {exc.strerror or exc}")

    async def close(self) -> RecordingSummary:
        """Flush, fsync (in a worker thread) and close; idempotent. Returns the summary."""
        if self._summary is None:
            self.flush()
            fd, self._fd = self._fd, None
            if fd is not None:
                try:
                    await asyncio.to_thread(os.fsync, fd)
                except OSError as exc:
                    self.error = self.error or f"fsync failed: {exc.strerror or exc}"
                finally:
                    os.close(fd)
            self._summary = RecordingSummary(
                path=str(self.path),
                bytes=self._written,
                sha256=self._hash.hexdigest(),
                truncated=self.truncated,
                input_recorded=self.input_recorded,
                error=self.error,
            )
        return self._summary

    # -- internals -----------------------------------------------------------------------

    def _event(self, code: str, data: str) -> None:
        elapsed = max(self._last_time, round(self._clock() - self._started, 6))
        self._last_time = elapsed
        line = _ENCODER.encode([elapsed, code, data])
        if (
            self._written + len(self._buffer) + len(line.encode()) + 1
            > self._settings.max_bytes - _STOP_RESERVE
        ):
            note = (
                f"\r\n[relay-shell: recording stopped at {self._settings.max_bytes} bytes "
                "(RELAY_SHELL_SESSION_RECORD_MAX_BYTES)]\r\n"
            )
            self._append(_ENCODER.encode([elapsed, "o", note]))
            self.truncated = True
            self.flush()
            return
        self._append(line)

    def _append(self, line: str) -> None:
        self._buffer += line.encode() + b"\n"
        if len(self._buffer) >= FLUSH_BYTES:
            self.flush()
        elif self._flush_handle is None:
            with contextlib.suppress(RuntimeError):  # no running loop (header, tests): flushed by the caller
                self._flush_handle = asyncio.get_running_loop().call_later(FLUSH_DELAY_S, self.flush)

    def _fail(self, reason: str) -> None:
        log.error("session recording %s stopped: %s", self.path, reason)
        self.error = reason
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
