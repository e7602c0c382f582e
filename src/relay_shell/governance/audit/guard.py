"""One audit file that this process alone writes, checked before every write.

:class:`GuardedFile` owns an open file descriptor and an exclusive ``flock`` on it, held
until :meth:`GuardedFile.close`. It remembers what the file must look like: its inode, its
size and its last :data:`TAIL_BYTES` bytes, which are either what this process last wrote
or what it found at open. :meth:`GuardedFile.inspect` compares that with the file and the
path and returns a :class:`Verdict`:

- ``ok``: the path names the open inode and the content ends where this writer left it;
- ``rotated``: the content is intact and the path is gone or names a new *empty regular*
  file, while the old file still has a name (logrotate's ``create``: rename, then create);
- ``tampered``: anything else: bytes appended or cut, the tail rewritten, the file deleted,
  the path a symlink, a non-regular file or a different non-empty file.

The usual inspection is two system calls: the path's ``lstat`` naming the open inode proves
the file still has a name and tells its size; a ``pread`` of the tail compares the bytes.
After a write, one ``fstat`` of the open file proves no append raced it (:meth:`GuardedFile.settle`).

Why size and tail are enough: every record's ``chain`` commits to all the bytes before it,
and the last record's ``chain`` sits in the last line. An edit anywhere that keeps the
chain valid must rewrite that last line (caught here); an edit that does not keep it valid
breaks the chain at the edited line (caught by ``--verify-audit``).

Opening is strict: ``O_NOFOLLOW``, a regular file, owned by this process's user, not
writable by group or others. A file that fails these is :class:`UnsafeFile`; a file another
process has locked is :class:`FileInUse` (one writer per file).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

FILE_MODE = 0o600
DIRECTORY_MODE = 0o700
TAIL_BYTES = 4096
"""How much of the file's end is compared before each write: the whole last record as a rule,
and at least its ``chain``, which commits to everything before it."""

_OPEN_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK


class UnsafeFile(Exception):
    """The path is not a file this process may trust as its audit file (the message says why)."""


class FileInUse(Exception):
    """Another process holds the writer lock of the file."""

    def __init__(self, path: Path, holder: int | None) -> None:
        who = f"process {holder}" if holder is not None else "another process"
        super().__init__(f"{path} is locked by {who}: only one relay-shell may write an audit file")
        self.holder = holder


class Condition(StrEnum):
    OK = "ok"
    ROTATED = "rotated"
    TAMPERED = "tampered"


@dataclass(frozen=True)
class Verdict:
    """What :meth:`GuardedFile.inspect` found. ``reason`` and ``detail`` explain a non-ok verdict."""

    condition: Condition
    reason: str = ""
    detail: dict[str, object] | None = None


OK = Verdict(Condition.OK)


class GuardedFile:
    """An audit file opened and locked by this process, with the state it must keep."""

    def __init__(self, path: Path, fd: int, created: bool) -> None:
        self.path = path
        self.fd = fd
        self.created = created
        opened = os.fstat(fd)
        self.identity = (opened.st_dev, opened.st_ino)
        self.size = opened.st_size
        self.tail = _read_tail(fd, opened.st_size)

    @classmethod
    def open(cls, path: Path, *, create: bool = True, require_empty: bool = False) -> GuardedFile:
        """Open (creating when ``create``) and lock ``path``.

        Raises :class:`UnsafeFile` (symlink, not a regular file, wrong owner or mode, or not
        empty when ``require_empty``), :class:`FileInUse`, or ``OSError`` when the file or its
        directory cannot be created or opened.
        """
        fd, created = _open(path, create)
        try:
            _check_safe(path, os.fstat(fd))
            holder = _lock(fd)
            if holder is not False:
                raise FileInUse(path, holder if isinstance(holder, int) else None)
            if require_empty and os.fstat(fd).st_size != 0:
                raise UnsafeFile(f"{path} is not the new empty file a rotation creates")
            return cls(path, fd, created)
        except BaseException:
            os.close(fd)
            raise

    def inspect(self) -> Verdict:
        """Compare the file and the path with what this writer expects (see the module doc).

        The usual case costs two system calls: an ``lstat`` of the path that names the inode
        this writer holds open (so the file still has a name, and that ``lstat`` tells its size
        as an ``fstat`` would) and a ``pread`` of the tail. Only when the path names something
        else, or nothing, is the open file asked for its link count and size with ``fstat``.
        """
        try:
            named: os.stat_result | OSError = os.lstat(self.path)
        except OSError as exc:
            named = exc
        if isinstance(named, os.stat_result) and (named.st_dev, named.st_ino) == self.identity:
            return self._bytes_verdict(named) or OK
        content = self._content_verdict()
        if content is not None:
            return content
        return self._path_verdict(named)

    def inspect_content(self) -> Verdict:
        """Only the bytes: size and tail (used once a change was recorded, so that a lasting
        condition such as a deleted file or a symlink at the path is recorded once)."""
        return self._bytes_verdict(os.fstat(self.fd)) or OK

    def append(self, data: bytes) -> int:
        """Write ``data`` at the end; returns how many bytes landed (all, unless it raises).

        On ``OSError`` the bytes that did land are already accounted for in :attr:`size` and
        :attr:`tail`, so the file still matches this writer's expectation; the exception
        carries ``written`` (an int attribute) with their count.
        """
        view = memoryview(data)
        done = 0
        try:
            while done < len(data):
                count = os.write(self.fd, view[done:])
                if count <= 0:
                    raise OSError(errno.EIO, "short write")
                done += count
        except OSError as exc:
            self._advance(data[:done])
            exc.written = done  # type: ignore[attr-defined]
            raise
        self._advance(data)
        return done

    def settle(self) -> Verdict:
        """After a write: the size must be exactly what this writer expects (no concurrent append)."""
        size = os.fstat(self.fd).st_size
        if size == self.size:
            return OK
        return self._rebaseline_verdict(size)

    def rebaseline(self) -> None:
        """Accept the file as it is now (after a tamper has been recorded)."""
        size = os.fstat(self.fd).st_size
        self.size, self.tail = size, _read_tail(self.fd, size)

    def ends_with_newline(self) -> bool:
        return not self.tail or self.tail.endswith(b"\n")

    def linked(self) -> bool:
        """Whether the open file still has a name somewhere (it was renamed, not deleted)."""
        return os.fstat(self.fd).st_nlink > 0

    def close(self) -> None:
        """Release the lock and the descriptor (idempotent)."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def _advance(self, written: bytes) -> None:
        self.size += len(written)
        self.tail = (self.tail + written)[-TAIL_BYTES:]

    def _content_verdict(self) -> Verdict | None:
        opened = os.fstat(self.fd)
        if opened.st_nlink == 0:
            return Verdict(Condition.TAMPERED, "deleted", {"path": str(self.path)})
        return self._bytes_verdict(opened)

    def _bytes_verdict(self, opened: os.stat_result) -> Verdict | None:
        if opened.st_size != self.size:
            return self._rebaseline_verdict(opened.st_size)
        if self.size and _read_tail(self.fd, self.size) != self.tail:
            return Verdict(Condition.TAMPERED, "rewritten", {"size": self.size, "tail_bytes": len(self.tail)})
        return None

    def _rebaseline_verdict(self, size: int) -> Verdict:
        reason = "appended" if size > self.size else "truncated"
        return Verdict(Condition.TAMPERED, reason, {"expected_size": self.size, "found_size": size})

    def _path_verdict(self, named: os.stat_result | OSError) -> Verdict:
        """What the path names (``named``: its ``lstat``, or the error it raised), the content
        being intact."""
        if isinstance(named, FileNotFoundError):
            return Verdict(Condition.ROTATED, "path gone, old file renamed")
        if isinstance(named, OSError):
            # A component of the path is no longer a directory: the file is unreachable, but
            # it still has a name, so nothing is lost yet; creating a new one will fail.
            return Verdict(Condition.ROTATED, f"path unreachable ({named.strerror})")
        if (named.st_dev, named.st_ino) == self.identity:
            return OK
        return _replacement_verdict(self.path, named)


def _replacement_verdict(path: Path, named: os.stat_result) -> Verdict:
    """Another inode at the path: a rotation only when it is a new empty regular file."""
    if stat.S_ISLNK(named.st_mode):
        return Verdict(Condition.TAMPERED, "symlink", {"path": str(path)})
    if not stat.S_ISREG(named.st_mode):
        return Verdict(Condition.TAMPERED, "not a regular file", {"path": str(path)})
    if named.st_size != 0:
        return Verdict(Condition.TAMPERED, "swapped", {"path": str(path), "found_size": named.st_size})
    return Verdict(Condition.ROTATED, "new empty file at the path")


def holder_of(path: Path) -> int | None:
    """The pid holding an exclusive ``flock`` on ``path``'s inode, when ``/proc/locks`` tells."""
    try:
        info = os.stat(path)
        lines = Path("/proc/locks").read_text(encoding="ascii", errors="replace").splitlines()
    except OSError:
        return None
    wanted = f":{info.st_ino}"
    for line in lines:
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].endswith(wanted):
            try:
                return int(fields[4])
            except ValueError:
                return None
    return None


def probe(path: Path) -> str | None:
    """Check ``path`` the way a writer would open it, without writing or keeping it open.

    Returns None when a writer could use it now, or a remark that does not make it unusable:
    ``"in use by process N"`` when a running writer holds it, or, for root checking a file
    another user owns (the service's), that only that user may write it. Raises
    :class:`UnsafeFile` or ``OSError`` like :meth:`GuardedFile.open`.
    """
    fd, _created = _open(path, create=True)
    try:
        info = os.fstat(fd)
        checker_is_root = os.geteuid() == 0
        _check_safe(path, info, owner=not checker_is_root)
        if checker_is_root and info.st_uid != 0:
            return f"owned by uid {info.st_uid}: only a server running as that user may write it"
        holder = _lock(fd)
        if holder is False:
            return None
        return f"in use by process {holder}" if isinstance(holder, int) else "in use by another process"
    finally:
        os.close(fd)


def _open(path: Path, create: bool) -> tuple[int, bool]:
    """Open ``path`` for appending: created 0600 (directory 0700) when missing and ``create``."""
    parent = path.parent
    if create and not parent.is_dir():
        os.makedirs(parent, mode=DIRECTORY_MODE, exist_ok=True)
        os.chmod(parent, DIRECTORY_MODE)
    for _attempt in range(3):
        if create:
            try:
                fd = os.open(path, _OPEN_FLAGS | os.O_CREAT | os.O_EXCL, FILE_MODE)
            except FileExistsError:
                pass
            else:
                os.fchmod(fd, FILE_MODE)  # the umask may only have narrowed it; make it exact
                return fd, True
        try:
            return os.open(path, _OPEN_FLAGS), False
        except FileNotFoundError:
            if not create:
                raise
            continue  # removed between the two opens: create it
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeFile(f"{path} is a symbolic link; the audit file must be a regular file") from exc
            raise
    raise FileNotFoundError(errno.ENOENT, "the file keeps disappearing", str(path))


def _check_safe(path: Path, info: os.stat_result, *, owner: bool = True) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeFile(f"{path} is not a regular file")
    if owner and info.st_uid != os.geteuid():
        raise UnsafeFile(f"{path} is owned by uid {info.st_uid}, not by this process (uid {os.geteuid()})")
    if info.st_mode & 0o022:
        raise UnsafeFile(f"{path} is writable by group or others (mode {stat.S_IMODE(info.st_mode):04o})")


def _lock(fd: int) -> int | bool:
    """Take the writer lock: False when taken, else the holder's pid (or True when unknown)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder_of_fd(fd) or True
    return False


def _holder_of_fd(fd: int) -> int | None:
    try:
        return holder_of(Path(f"/proc/self/fd/{fd}"))
    except OSError:
        return None


def _read_tail(fd: int, size: int) -> bytes:
    start = max(0, size - TAIL_BYTES)
    return os.pread(fd, size - start, start) if size else b""
