"""File transfers over SFTP (docs/tools.md): upload and download, recursive, attributes kept.

Destination rules (those of ``cp -r`` and ``scp``): when the destination is an existing
directory the source is copied *into* it under its own name; otherwise the destination
is the new name. A directory copied onto an existing directory of the same name merges
into it. Refused before any byte moves: a source directory onto an existing file, and a
source file onto an existing directory (the effective destination, after "into").

Sources are walked first (files, directories, links, total bytes), so progress is
``bytes done / total``. Symbolic links inside a tree are copied as links; a link given as
the source itself is followed. Sources other than regular files, directories and links
(FIFOs, devices, sockets) are refused: reading one could block forever. Modes and
access/modification times are preserved. A transfer cut short by its deadline leaves
the files written so far in place (the error says so). Copying into an existing tree
overwrites its files; a link whose name already exists there is left as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import posixpath
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import asyncssh

from relay_shell.errors import ExecFailed, ExecTimeout, InvalidInput, LimitReached, RemoteFailed
from relay_shell.ssh.pool import ConnectionPool
from relay_shell.ssh.targets import HostSpec

PROGRESS_INTERVAL_S = 1.0
MAX_ENTRIES = 100_000  # files, directories and links in one transfer
MAX_LISTED_FILES = 200  # files named in a result
CLOSE_WAIT_S = 2.0
HASH_CHUNK = 1 << 20

ProgressCallback = Callable[[int, int], Awaitable[None]]
"""``(bytes_done, bytes_total)``, awaited at the start, about once a second, and at the end."""

Kind = Literal["file", "dir", "link", "other"]


@dataclass(frozen=True)
class TransferredFile:
    """A regular file of a transfer: its path relative to the destination ("" = the destination) and size."""

    path: str
    size: int


@dataclass(frozen=True)
class TransferResult:
    """A completed transfer. ``files`` lists at most :data:`MAX_LISTED_FILES` of ``file_count``."""

    direction: Literal["upload", "download"]
    source: str
    destination: str
    files: tuple[TransferredFile, ...]
    file_count: int
    directory_count: int
    link_count: int
    bytes: int
    bytes_total: int
    sha256: str | None
    duration_ms: int


@dataclass
class _Tree:
    """What a walk of the source found."""

    is_dir: bool
    files: list[TransferredFile] = field(default_factory=list)
    directories: int = 0
    link_paths: set[str] = field(default_factory=set)

    @property
    def links(self) -> int:
        return len(self.link_paths)

    @property
    def total(self) -> int:
        return sum(entry.size for entry in self.files)

    def add(self, kind: Kind, relative: str, size: int, where: str, argument: str) -> None:
        if kind == "file":
            self.files.append(TransferredFile(relative, size))
        elif kind == "dir":
            self.directories += 1
        elif kind == "link":
            self.link_paths.add(relative)
        else:
            raise InvalidInput(
                argument, f"{where} is not a regular file, directory or symbolic link (refusing to copy it)"
            )
        if len(self.files) + self.directories + self.links > MAX_ENTRIES:
            raise LimitReached("SFTP transfer entries", MAX_ENTRIES, f"entries under {where}")


def _kind_of_mode(mode: int) -> Kind:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    return "link" if stat.S_ISLNK(mode) else "other"


def _kind_of_attrs(attrs: asyncssh.SFTPAttrs) -> Kind:
    if attrs.permissions is not None:
        return _kind_of_mode(attrs.permissions)
    kinds: dict[int, Kind] = {
        asyncssh.FILEXFER_TYPE_REGULAR: "file",
        asyncssh.FILEXFER_TYPE_DIRECTORY: "dir",
        asyncssh.FILEXFER_TYPE_SYMLINK: "link",
    }
    return kinds.get(attrs.type, "other")


def check_local_source(path: Path, recursive: bool) -> os.stat_result:
    """The top-level checks of an upload source (cheap: one stat), before any connection.

    Raises:
        InvalidInput: (``local_path``) missing, unreadable or not a file/directory;
            (``recursive``) a directory without ``recursive``.
    """
    try:
        top = path.stat()
    except FileNotFoundError:
        raise InvalidInput("local_path", f"no such file or directory: {path}") from None
    except OSError as exc:
        raise InvalidInput("local_path", f"cannot read {path}: {exc.strerror or exc}") from None
    kind = _kind_of_mode(top.st_mode)
    if kind not in ("file", "dir"):
        raise InvalidInput("local_path", f"{path} is not a regular file or a directory")
    if kind == "dir" and not recursive:
        raise InvalidInput("recursive", f"{path} is a directory: set recursive=true to copy a tree")
    return top


def check_local_destination(path: Path) -> None:
    """A download destination must be an existing directory, or a path whose parent is one.

    Raises:
        InvalidInput: (``local_path``) the parent directory is missing.
    """
    if not path.exists() and not path.parent.is_dir():
        raise InvalidInput("local_path", f"the directory {path.parent} does not exist here")


def scan_local_source(path: Path, recursive: bool) -> _Tree:
    """Walk a local source (following it if it is a link, not the links inside).

    Raises:
        InvalidInput: (``local_path``) missing, unreadable, a directory without ``recursive``,
            or a special file; (LimitReached) more than MAX_ENTRIES entries.
    """
    top = check_local_source(path, recursive)
    if not stat.S_ISDIR(top.st_mode):
        return _Tree(is_dir=False, files=[TransferredFile("", top.st_size)])
    tree = _Tree(is_dir=True)

    def failed(exc: OSError) -> None:
        raise InvalidInput("local_path", f"cannot read {exc.filename}: {exc.strerror or exc}")

    root = Path(os.path.realpath(path))
    for directory, dirnames, filenames in os.walk(root, onerror=failed):
        for name in [*dirnames, *filenames]:
            entry = Path(directory) / name
            info = entry.lstat()
            tree.add(
                _kind_of_mode(info.st_mode),
                str(entry.relative_to(root)),
                info.st_size,
                str(entry),
                "local_path",
            )
    return tree


def _local_source(path: str, recursive: bool) -> tuple[_Tree, str, str]:
    """The walked tree, the path to copy from (a source link followed) and the name to copy to."""
    tree = scan_local_source(Path(path), recursive)
    return tree, os.path.realpath(path), Path(os.path.abspath(path)).name


async def _scan_remote_source(sftp: asyncssh.SFTPClient, path: str, recursive: bool, display: str) -> _Tree:
    try:
        top = await sftp.stat(path)
    except asyncssh.SFTPNoSuchFile:
        raise InvalidInput("remote_path", f"no such file or directory on {display}: {path}") from None
    kind = _kind_of_attrs(top)
    if kind == "file":
        return _Tree(is_dir=False, files=[TransferredFile("", top.size or 0)])
    if kind != "dir":
        raise InvalidInput("remote_path", f"{path} on {display} is not a regular file or a directory")
    if not recursive:
        raise InvalidInput(
            "recursive", f"{path} on {display} is a directory: set recursive=true to copy a tree"
        )
    tree = _Tree(is_dir=True)
    pending = [""]
    while pending:
        relative = pending.pop()
        async for name in sftp.scandir(posixpath.join(path, relative) if relative else path):
            filename = name.filename if isinstance(name.filename, str) else name.filename.decode()
            if filename in (".", ".."):
                continue
            child = posixpath.join(relative, filename) if relative else filename
            child_kind = _kind_of_attrs(name.attrs)
            tree.add(child_kind, child, name.attrs.size or 0, posixpath.join(path, child), "remote_path")
            if child_kind == "dir":
                pending.append(child)
    return tree


async def _remote_kind(sftp: asyncssh.SFTPClient, path: str) -> Kind | None:
    try:
        return _kind_of_attrs(await sftp.stat(path))
    except asyncssh.SFTPNoSuchFile:
        return None


async def _local_kind(_: asyncssh.SFTPClient, path: str) -> Kind | None:
    try:
        return _kind_of_mode(os.stat(path).st_mode)
    except FileNotFoundError:
        return None


KindLookup = Callable[[asyncssh.SFTPClient, str], Awaitable[Kind | None]]


async def _effective_destination(
    sftp: asyncssh.SFTPClient, kind_of: KindLookup, destination: str, name: str, tree: _Tree, argument: str
) -> tuple[str, bool]:
    """The path the source will have and whether it merges into an existing directory."""
    destination_kind = await kind_of(sftp, destination)
    target, target_kind = destination, destination_kind
    if destination_kind == "dir" and name:
        target = posixpath.join(destination, name)
        target_kind = await kind_of(sftp, target)
    if tree.is_dir and target_kind not in (None, "dir"):
        raise InvalidInput(argument, f"{target} exists and is not a directory, but the source is a directory")
    if not tree.is_dir and target_kind == "dir":
        raise InvalidInput(argument, f"{target} is an existing directory, but the source is a file")
    return target, tree.is_dir and target_kind == "dir"


class _Progress:
    """Aggregates asyncssh's per-file progress callbacks into bytes done for the whole transfer."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0
        self.target = ""  # the effective destination, once known
        self._current: dict[bytes, int] = {}

    def handler(self, source: bytes, destination: bytes, copied: int, size: int) -> None:
        self.done += copied - self._current.pop(source, 0)
        if copied < size:
            self._current[source] = copied

    async def report_until(self, finished: asyncio.Event, on_progress: ProgressCallback) -> None:
        await on_progress(self.done, self.total)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PROGRESS_INTERVAL_S):
                    await finished.wait()
            if finished.is_set():
                return
            await on_progress(self.done, self.total)


def _failure(display: str, exc: BaseException, fallback_path: str) -> ExecFailed:
    """Translate an SFTP (remote side) or OSError (local side) failure, naming the path."""
    raw = getattr(exc, "dstpath", None) or getattr(exc, "srcpath", None)
    path = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw or fallback_path)
    if isinstance(exc, asyncssh.SFTPPermissionDenied):
        return RemoteFailed(f"{display}: permission denied: {path}")
    if isinstance(exc, asyncssh.SFTPNoSuchFile):
        return RemoteFailed(f"{display}: no such file or directory: {path}")
    if isinstance(exc, asyncssh.SFTPError):
        return RemoteFailed(f"{display}: SFTP failed on {path}: {exc.reason}")
    if isinstance(exc, OSError):
        named = exc.filename2 or exc.filename  # filename2: the link's own path when creating a link
        where = named.decode(errors="replace") if isinstance(named, bytes) else str(named or path)
        return ExecFailed(f"local file error on {where}: {exc.strerror or exc}")
    return RemoteFailed(f"{display}: transfer failed: {exc}")


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class _Job:
    """One transfer, described independently of its direction."""

    direction: Literal["upload", "download"]
    source: str
    destination: str
    recursive: bool
    display: str

    @property
    def local_source(self) -> bool:
        return self.direction == "upload"


async def _run(
    pool: ConnectionPool,
    spec: HostSpec,
    job: _Job,
    *,
    timeout_s: float,
    on_progress: ProgressCallback | None,
) -> TransferResult:
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + timeout_s
    progress = _Progress()
    try:
        async with asyncio.timeout_at(deadline), pool.lease(spec, deadline=deadline) as lease:

            async def opener(connection: asyncssh.SSHClientConnection) -> asyncssh.SFTPClient:
                return await connection.start_sftp_client()

            sftp = await lease.open_channel(opener, deadline=deadline)
            try:
                tree, target = await _copy(sftp, job, progress, on_progress)
            except (asyncssh.SFTPError, OSError) as exc:
                raise _failure(job.display, exc, progress.target or job.destination) from exc
            finally:
                sftp.exit()
                with contextlib.suppress(TimeoutError, asyncssh.Error, OSError):
                    async with asyncio.timeout(CLOSE_WAIT_S):
                        await sftp.wait_closed()
    except TimeoutError:
        raise ExecTimeout(
            f"{job.display}: {job.direction} timed out after {loop.time() - started:.1f} s (limit {timeout_s:g} s) "
            f"with {progress.done} of {progress.total} bytes moved; files written so far remain at "
            f"{progress.target or job.destination}"
        ) from None
    local_target = target if job.direction == "download" else job.source
    digest = None if tree.is_dir else await asyncio.to_thread(_sha256_file, local_target)
    return TransferResult(
        direction=job.direction,
        source=job.source,
        destination=target,
        files=tuple(tree.files[:MAX_LISTED_FILES]),
        file_count=len(tree.files),
        directory_count=tree.directories,
        link_count=tree.links,
        bytes=progress.done,
        bytes_total=progress.total,
        sha256=digest,
        duration_ms=round((loop.time() - started) * 1000),
    )


async def _copy(
    sftp: asyncssh.SFTPClient, job: _Job, progress: _Progress, on_progress: ProgressCallback | None
) -> tuple[_Tree, str]:
    """Walk the source, settle the destination, copy with progress. Returns the tree and the target."""
    if job.local_source:
        tree, real_source, name = await asyncio.to_thread(_local_source, job.source, job.recursive)
        kind_of: KindLookup = _remote_kind
        argument = "remote_path"
    else:
        tree = await _scan_remote_source(sftp, job.source, job.recursive, job.display)
        real_source = await sftp.realpath(job.source)
        name = posixpath.basename(job.source.rstrip("/"))
        if name in ("", ".", ".."):
            name = posixpath.basename(real_source)
        kind_of, argument = _local_kind, "local_path"
    target, merge = await _effective_destination(sftp, kind_of, job.destination, name, tree, argument)
    sources: list[str] = [real_source]
    if merge:  # copy the children into the existing directory (a plain copy would nest it)
        children = await _list_children(sftp, job, real_source)
        sources = [posixpath.join(real_source, child) for child in children]
    progress.total, progress.target = tree.total, target
    finished = asyncio.Event()
    reporter = asyncio.ensure_future(progress.report_until(finished, on_progress)) if on_progress else None
    try:
        if sources:
            transfer = sftp.put if job.local_source else sftp.get
            await transfer(
                sources, target, recurse=True, preserve=True, follow_symlinks=False,
                progress_handler=progress.handler, error_handler=_link_errors_ignored(tree, real_source),
            )  # fmt: skip
    finally:
        finished.set()
        if reporter is not None:
            await reporter
    if on_progress is not None:
        await on_progress(progress.done, progress.total)
    return tree, target


def _link_errors_ignored(tree: _Tree, root: str) -> Callable[[Exception], None]:
    """An asyncssh error handler: re-raise everything except two harmless failures on links.

    OpenSSH's sftp-server answers a generic failure to ``lsetstat`` on a link (Linux links
    have no mode of their own; the link was created just before), and it does the same,
    like the local side's EEXIST, for a link whose name already exists when copying into
    an existing tree: that link is left as it is.
    """

    def handle(exc: Exception) -> None:
        source = getattr(exc, "srcpath", b"")
        text = source.decode(errors="surrogateescape") if isinstance(source, bytes) else str(source)
        harmless = isinstance(exc, asyncssh.SFTPFailure | FileExistsError)
        if harmless and posixpath.relpath(text, root) in tree.link_paths:
            return
        raise exc

    return handle


async def _list_children(sftp: asyncssh.SFTPClient, job: _Job, directory: str) -> list[str]:
    if job.local_source:
        return sorted(os.listdir(directory))
    names = [name.filename async for name in sftp.scandir(directory)]
    decoded = [name if isinstance(name, str) else name.decode() for name in names]
    return sorted(name for name in decoded if name not in (".", ".."))


async def upload(
    pool: ConnectionPool,
    spec: HostSpec,
    local_path: Path,
    remote_path: str,
    *,
    recursive: bool = False,
    timeout_s: float,
    on_progress: ProgressCallback | None = None,
) -> TransferResult:
    """Copy ``local_path`` to ``remote_path`` on ``spec`` within ``timeout_s`` (connect included).

    Raises:
        InvalidInput: the local source is missing / a directory without ``recursive`` / special;
            the destination exists as the wrong kind (``remote_path``).
        RemoteFailed: permission denied or another SFTP error, naming the remote path.
        ExecFailed: a local read error. ExecTimeout: the deadline passed (partial files remain).
        RemoteUnreachable, LimitReached: as for any pooled connection.
    """
    check_local_source(local_path, recursive)  # before connecting
    job = _Job("upload", str(local_path), remote_path, recursive, spec.display())
    return await _run(pool, spec, job, timeout_s=timeout_s, on_progress=on_progress)


async def download(
    pool: ConnectionPool,
    spec: HostSpec,
    remote_path: str,
    local_path: Path,
    *,
    recursive: bool = False,
    timeout_s: float,
    on_progress: ProgressCallback | None = None,
) -> TransferResult:
    """Copy ``remote_path`` on ``spec`` to ``local_path`` within ``timeout_s`` (connect included).

    Raises:
        InvalidInput: the remote source is missing (``remote_path``) or a directory without
            ``recursive``; the local destination exists as the wrong kind (``local_path``).
        RemoteFailed: permission denied or another SFTP error reading the remote side.
        ExecFailed: a local write error, naming the local path. ExecTimeout, RemoteUnreachable,
            LimitReached: as for :func:`upload`.
    """
    job = _Job("download", remote_path, str(local_path), recursive, spec.display())
    return await _run(pool, spec, job, timeout_s=timeout_s, on_progress=on_progress)
