"""cgroup v2 for containment: find the hierarchy, own a directory in it, sweep stale ones.

The cgroup2 mount is found through ``/proc/self/mountinfo`` (never a fixed path: it is
``/sys/fs/cgroup`` on a unified host, ``/sys/fs/cgroup/unified`` beside v1 controllers) and
the server's own cgroup through the ``0::`` line of ``/proc/self/cgroup`` (under systemd
with ``Delegate=yes``, the service's cgroup). The process keeps one directory there,
``relay-shell-<pid>-<start ticks>``, and one child of it per call or session. The name
says which process made it, so a later server can tell a live sibling (another server in
the same cgroup) from the remains of a killed one and sweep only the latter.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from relay_shell.local.processes import PidHandles, read_entry

log = logging.getLogger("relay_shell.containment")

SERVER_DIR_PREFIX = "relay-shell-"
SERVER_DIR = re.compile(r"\Arelay-shell-(\d+)-(\d+)\Z")
SWEEP_WAIT_S = 5.0


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as ``\\ooo`` octal."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)


def cgroup2_mounts(mountinfo: str) -> list[tuple[str, Path]]:
    """(root inside the hierarchy, mount point) of every cgroup2 mount in a mountinfo text."""
    mounts: list[tuple[str, Path]] = []
    for line in mountinfo.splitlines():
        head, separator, tail = line.partition(" - ")
        fields = head.split()
        if not separator or len(fields) < 5 or not tail.split() or tail.split()[0] != "cgroup2":
            continue
        mounts.append((_unescape(fields[3]), Path(_unescape(fields[4]))))
    return mounts


def unified_cgroup(proc_cgroup: str) -> str | None:
    """The path of the ``0::`` (cgroup v2) line of a ``/proc/<pid>/cgroup`` text."""
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            path = line[3:]
            return None if path.endswith(" (deleted)") else path
    return None


def locate_own_cgroup(mountinfo: str, proc_cgroup: str) -> Path | None:
    """The directory of this process's cgroup v2, or None when there is none to use."""
    own = unified_cgroup(proc_cgroup)
    if own is None:
        return None
    for root, mount_point in cgroup2_mounts(mountinfo):
        if own == root or own.startswith(root.rstrip("/") + "/"):
            relative = own[len(root) :].lstrip("/")
            return mount_point / relative if relative else mount_point
    return None


def read_small(path: str) -> bytes:
    """The whole of a small cgroupfs file, read with plain system calls (checked on every call,
    so no buffered text file object is built for it). Raises OSError."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


@dataclass
class CgroupDir:
    """One cgroup directory: its members, ``cgroup.kill``, removal.

    ``hierarchy_path``: its path inside the cgroup v2 hierarchy, as ``/proc/<pid>/cgroup``
    names it (empty when not known).
    """

    path: Path
    hierarchy_path: str = ""

    def procs(self) -> list[int]:
        """Pids in this cgroup (not its children); zombies are not listed."""
        try:
            text = read_small(os.path.join(self.path, "cgroup.procs"))
        except FileNotFoundError:
            return []
        return [int(word) for word in text.split()]

    def add(self, pid: int) -> None:
        """Move process ``pid`` (all its threads) into this cgroup. Raises OSError."""
        fd = os.open(os.path.join(self.path, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, str(pid).encode())
        finally:
            os.close(fd)

    def populated(self) -> bool:
        """True while a live process is in this cgroup or below it."""
        try:
            text = read_small(os.path.join(self.path, "cgroup.events"))
        except FileNotFoundError:
            return False
        return b"populated 1" in text

    def kill(self) -> None:
        """SIGKILL every process in this cgroup and below, forks racing with it included."""
        with contextlib.suppress(FileNotFoundError):
            fd = os.open(self.path / "cgroup.kill", os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, b"1")
            finally:
                os.close(fd)

    def remove(self) -> bool:
        """rmdir, child cgroups first (a command running as root can make some). False while busy."""
        for attempt in range(2):
            try:
                self.path.rmdir()
                return True
            except FileNotFoundError:
                return True
            except OSError as exc:
                if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                    raise
            if attempt == 0 and not all(CgroupDir(child).remove() for child in self.children()):
                return False
        return False

    def children(self) -> list[Path]:
        """The child cgroups (directories) of this one."""
        try:
            return [entry for entry in self.path.iterdir() if entry.is_dir()]
        except FileNotFoundError:
            return []

    def all_procs(self) -> list[int]:
        """Pids in this cgroup and every cgroup below it (one read when it is empty)."""
        if not self.populated():
            return []
        found = self.procs()
        for child in self.children():
            found.extend(CgroupDir(child).all_procs())
        return found


@dataclass(frozen=True)
class SweptCgroup:
    """A directory a killed server left behind, removed at start."""

    path: Path
    processes_killed: int
    removed: bool


def server_dir_name(pid: int, start_ticks: int) -> str:
    return f"{SERVER_DIR_PREFIX}{pid}-{start_ticks}"


def owner_alive(name: str) -> bool:
    """True when the process named in a ``relay-shell-<pid>-<start>`` directory still runs."""
    match = SERVER_DIR.match(name)
    if match is None:
        return True  # not ours: never touched
    entry = read_entry(int(match.group(1)))
    return entry is not None and entry.alive and entry.start_ticks == int(match.group(2))


def kill_and_remove(directory: CgroupDir, wait_s: float = SWEEP_WAIT_S) -> SweptCgroup:
    """Kill everything in ``directory`` (and below), wait for it to go, remove the tree.

    Synchronous: used at start-up before the event loop serves anything.
    """
    members = directory.all_procs()
    with PidHandles() as handles:
        for pid in members:
            handles.track(pid)
        directory.kill()
        handles.wait_exited_blocking(wait_s)
        handles.reap()
    removed = directory.remove()
    return SweptCgroup(path=directory.path, processes_killed=len(members), removed=removed)


def sweep_stale(own: Path) -> list[SweptCgroup]:
    """Remove the per-server directories under ``own`` whose server is gone.

    Each one found is logged; its processes (the calls a killed server left running) are
    killed first.
    """
    swept: list[SweptCgroup] = []
    try:
        children = sorted(own.iterdir())
    except OSError:
        return swept
    for child in children:
        if child.is_dir() and SERVER_DIR.match(child.name) and not owner_alive(child.name):
            try:
                result = kill_and_remove(CgroupDir(child))
            except OSError as exc:
                log.warning("cannot sweep the stale cgroup %s: %s", child, exc)
                continue
            log.warning(
                "swept the stale cgroup %s left by a server that is gone: %d process(es) killed%s",
                child,
                result.processes_killed,
                "" if result.removed else " (still busy, not removed)",
            )
            swept.append(result)
    return swept
