"""Containment: everything a call or a session starts is tracked until it is gone (ADR 0016).

A :class:`ContainmentService` (one per server) opens one
:class:`~relay_shell.local.contained.Contained` per call or PTY session; whatever is still
running in it when its owner is done is killed, then it is released. Two mechanisms,
chosen by ``RELAY_SHELL_CONTAINMENT``:

- ``cgroup``: a cgroup v2 directory per call under the server's own cgroup
  (:mod:`relay_shell.local.cgroups`); ``cgroup.kill`` ends everything in it, ``setsid``
  and double forks included. A ``/bin/sh -c TEXT`` child where ``/bin/sh`` is dash joins
  its cgroup itself, as the first command of its text, before TEXT is parsed
  (:func:`relay_shell.local.contained.join_argv`); any other one-shot child is started
  **held**: ``/bin/sh`` waits on its stdin for one line that the server writes only after
  it has moved the process into the cgroup. Either way nothing of the command runs outside
  it, and no ``preexec_fn`` is needed (``subprocess`` keeps its vfork path). A PTY child, which has a ``preexec_fn`` anyway
  (to take its controlling terminal), joins its cgroup there.
- ``subreaper``: the server is the child subreaper of everything below it, so nothing a
  call starts can re-parent outside the server's tree; a call owns its session, its
  descendants and the orphans that left their session after the call opened
  (:func:`relay_shell.local.contained.attribute`).

``auto`` takes ``cgroup`` when the hierarchy is there and writable, else ``subreaper``.
The per-process parts (the cgroup directory, the subreaper flag, the stale sweep) are
made once per process and shared by every service in it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import itertools
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from relay_shell.config import ContainmentMode
from relay_shell.errors import ConfigError, SpawnFailed
from relay_shell.local import cgroups
from relay_shell.local.contained import (
    LIVE_ROOTS,
    CgroupContained,
    Contained,
    Mechanism,
    SubreaperContained,
)
from relay_shell.local.processes import read_entry

log = logging.getLogger("relay_shell.containment")

PR_SET_CHILD_SUBREAPER = 36
KILL_GRACE_S = 2.0


class ContainmentService:
    """Opens a containment per call or session with the mechanism the settings chose.

    Creating one also makes sure that children do not inherit an ignored SIGINT or SIGQUIT
    (:func:`restore_inherited_signals`).

    Raises:
        ConfigError: ``cgroup`` was asked for and cannot work here (the reason is named),
            or the subreaper flag cannot be set.
    """

    def __init__(self, mode: ContainmentMode, *, kill_grace_s: float = KILL_GRACE_S) -> None:
        restore_inherited_signals()
        self.kill_grace_s = kill_grace_s
        self._live: set[Contained] = set()
        self._counter = 0
        self._closing = False
        self._host: CgroupHost | None = None
        self.fallback_reason: str | None = None
        """Why ``auto`` did not take ``cgroup`` (None when it did or was not asked)."""
        if mode is not ContainmentMode.SUBREAPER:
            host = _PROCESS.cgroup_host()
            if isinstance(host, CgroupHost):
                self._host = host
            elif mode is ContainmentMode.CGROUP:
                raise ConfigError(f"RELAY_SHELL_CONTAINMENT=cgroup, but {host}")
            else:
                self.fallback_reason = host
                log.info("containment: no usable cgroup v2 (%s); using the child subreaper", host)
        self._holds_subreaper = self._host is None
        if self._holds_subreaper:
            _PROCESS.hold_subreaper()
        self.mechanism: Mechanism = "cgroup" if self._host is not None else "subreaper"

    @property
    def swept(self) -> list[cgroups.SweptCgroup]:
        """Stale cgroups of killed servers this process removed when it made its own."""
        return list(self._host.swept) if self._host is not None else []

    def __len__(self) -> int:
        """How many containments are open (calls running, sessions alive)."""
        return len(self._live)

    def open(self, label: str) -> Contained:
        """A new, empty containment named ``<label>-<n>``.

        Raises:
            SpawnFailed: no cgroup could be made for it, or the service is shutting down.
        """
        if self._closing:
            raise SpawnFailed("the server is shutting down: nothing new is started")
        # Numbered by the process's directory when there is one, so that no two containments of
        # this process (of any service) ever get the same cgroup path: a child still on its way
        # into a removed cgroup can never find a later call's cgroup under that path.
        self._counter = self._host.next_number() if self._host is not None else self._counter + 1
        name = f"{label}-{self._counter}"
        contained: Contained
        if self._host is not None:
            try:
                contained = CgroupContained(name, self._live.discard, self._host.new_dir(name))
            except OSError as exc:
                raise SpawnFailed(f"cannot create a cgroup for this call: {exc}") from exc
        else:
            contained = SubreaperContained(name, self._live.discard)
        self._live.add(contained)
        return contained

    @asynccontextmanager
    async def contain(self, label: str) -> AsyncIterator[Contained]:
        """:meth:`open`, then ``close`` on the way out, shielded from cancellation."""
        contained = self.open(label)
        try:
            yield contained
        finally:
            with anyio.CancelScope(shield=True):
                await contained.close(self.kill_grace_s)

    async def aclose(self) -> None:
        """Kill and release every containment still open, then refuse new ones (shutdown)."""
        self._closing = True
        live = list(self._live)
        if live:
            with anyio.CancelScope(shield=True):
                await asyncio.gather(*(contained.close(self.kill_grace_s) for contained in live))
        if self._host is not None and not LIVE_ROOTS:
            self._host.release()
        if self._holds_subreaper:
            self._holds_subreaper = False
            _PROCESS.release_subreaper()


class CgroupHost:
    """This process's directory of per-call cgroups, ``<own cgroup>/relay-shell-<pid>-<start>``."""

    def __init__(
        self, own: Path, directory: Path, swept: list[cgroups.SweptCgroup], hierarchy_path: str = ""
    ) -> None:
        self.own = own
        self.directory = directory
        self.hierarchy_path = hierarchy_path
        """``directory`` inside the cgroup v2 hierarchy, as ``/proc/<pid>/cgroup`` names it."""
        self.swept = swept
        self.pid = os.getpid()
        self._numbers = itertools.count(1)

    def next_number(self) -> int:
        """A number never given before in this process: one per containment, whatever its service."""
        return next(self._numbers)

    def new_dir(self, name: str) -> cgroups.CgroupDir:
        """A new empty cgroup ``name`` in this process's directory. Raises OSError.

        One ``mkdir`` per call: this process's directory is made again only when it is gone
        (released at an earlier shutdown), since a ``mkdir`` in cgroupfs is not free even when
        it fails with EEXIST.
        """
        path = self.directory / name
        try:
            os.mkdir(path)
        except FileNotFoundError:
            self.directory.mkdir(exist_ok=True)
            os.mkdir(path)
        return cgroups.CgroupDir(path, f"{self.hierarchy_path}/{name}" if self.hierarchy_path else "")

    def release(self) -> None:
        """Remove the directory if nothing runs in it (else the next start sweeps it)."""
        with contextlib.suppress(OSError):
            cgroups.CgroupDir(self.directory).remove()


class _ProcessState:
    """What is made once per process: the cgroup directory (or why not), the subreaper flag."""

    def __init__(self) -> None:
        self._host: CgroupHost | str | None = None
        self._host_pid = 0
        self._subreaper_holders = 0
        self._subreaper_pid = 0

    def cgroup_host(self) -> CgroupHost | str:
        """This process's cgroup directory, made (and stale siblings swept) on first use; else why not."""
        if self._host is None or self._host_pid != os.getpid():  # a forked child starts over
            self._host = make_cgroup_host()
            self._host_pid = os.getpid()
            if isinstance(self._host, CgroupHost):
                atexit.register(self._host.release)
        return self._host

    def hold_subreaper(self) -> None:
        """Make this process the child subreaper of everything below it, for one more holder.

        Raises:
            ConfigError: the kernel refused.
        """
        if self._subreaper_pid != os.getpid():  # a forked child starts over
            self._subreaper_holders = 0
        if self._subreaper_holders == 0:
            _set_subreaper(True)
            self._subreaper_pid = os.getpid()
        self._subreaper_holders += 1

    def release_subreaper(self) -> None:
        """One holder less; the last one clears the flag (orphans go to init again)."""
        self._subreaper_holders = max(0, self._subreaper_holders - 1)
        if self._subreaper_holders == 0 and self._subreaper_pid == os.getpid():
            with contextlib.suppress(ConfigError):
                _set_subreaper(False)


def _set_subreaper(on: bool) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0, 0, 0, 0) != 0:
        raise ConfigError(f"cannot set the child subreaper flag: {os.strerror(ctypes.get_errno())}")


_PROCESS = _ProcessState()


def cgroup_unavailable() -> str | None:
    """None when this process can use the cgroup mechanism, else the reason it cannot."""
    host = _PROCESS.cgroup_host()
    return host if isinstance(host, str) else None


def make_cgroup_host() -> CgroupHost | str:
    """Create this process's cgroup directory and sweep stale siblings; or say why it cannot."""
    me = read_entry(os.getpid())
    made = _make_cgroup_dir(cgroups.server_dir_name(os.getpid(), me.start_ticks if me else 0))
    if isinstance(made, str):
        return made
    own, directory, hierarchy_path = made
    return CgroupHost(own, directory, cgroups.sweep_stale(own), hierarchy_path)


def probe_cgroup() -> str | None:
    """For ``--check-config``: None when a cgroup could be made here, else why not (no sweep)."""
    made = _make_cgroup_dir(f"relay-shell-check-{os.getpid()}")
    if isinstance(made, str):
        return made
    with contextlib.suppress(OSError):
        made[1].rmdir()
    return None


def _make_cgroup_dir(name: str) -> tuple[Path, Path, str] | str:
    """Create ``name`` under this process's own cgroup v2; (own, directory, the directory's path
    inside the hierarchy) or why it cannot."""
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
        own_cgroup = Path("/proc/self/cgroup").read_text()
    except OSError as exc:
        return f"cannot read /proc/self ({exc})"
    own = cgroups.locate_own_cgroup(mountinfo, own_cgroup)
    if own is None or not (own / "cgroup.procs").exists():
        return "no cgroup v2 hierarchy holds this process (/proc/self/mountinfo, /proc/self/cgroup)"
    directory = own / name
    try:
        directory.mkdir(exist_ok=True)
    except OSError as exc:
        return f"cannot create a cgroup under {own} ({exc.strerror}); under systemd use Delegate=yes"
    if not (directory / "cgroup.kill").exists():
        with contextlib.suppress(OSError):
            directory.rmdir()
        return f"{own} has no cgroup.kill (Linux 5.14 or later is needed)"
    own_path = cgroups.unified_cgroup(own_cgroup) or "/"
    return own, directory, f"{own_path.rstrip('/')}/{name}"


def _ignore_signal(signum: int, frame: object) -> None:
    """Stands in for an inherited SIG_IGN: the server still ignores the signal, its children do not."""


def restore_inherited_signals() -> None:
    """Replace an inherited SIG_IGN for SIGINT and SIGQUIT by a handler that does nothing.

    A process started in the background by a shell (or by a test runner) has SIGINT and
    SIGQUIT ignored, and ``exec`` keeps an ignored signal ignored: every command and session
    would inherit it (^C would do nothing in a session). A handler, unlike SIG_IGN, is reset
    to the default action by ``exec``, so children start with the default while the server
    keeps ignoring the signal. Only possible from the main thread; elsewhere a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for number in (signal.SIGINT, signal.SIGQUIT):
        if signal.getsignal(number) == signal.SIG_IGN:
            signal.signal(number, _ignore_signal)
