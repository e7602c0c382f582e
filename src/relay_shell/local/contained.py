"""One containment: what a call or a session started, with the two ways of holding it.

:class:`Contained` is the handle; :class:`CgroupContained` and :class:`SubreaperContained`
are the mechanisms (ADR 0016). Each is created empty by
:class:`relay_shell.local.containment.ContainmentService`, takes its root process with
:meth:`Contained.adopt` right after the spawn, ends everything it holds with
:meth:`Contained.kill` and is released by :meth:`Contained.close`. It is an object of its
own, so work that outlives a call can keep it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import signal
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from relay_shell.errors import SpawnFailed
from relay_shell.local.cgroups import CgroupDir, read_small, unified_cgroup
from relay_shell.local.mover import MOVER, MoveTicket
from relay_shell.local.mover import RELEASE_LINE as MOVER_RELEASE_LINE
from relay_shell.local.processes import (
    PidHandles,
    ProcessEntry,
    boot_ticks_now,
    descendants,
    process_table,
    read_entry,
)
from relay_shell.local.programs import check_program

log = logging.getLogger("relay_shell.containment")

Mechanism = Literal["cgroup", "subreaper"]

KILL_ROUNDS = 5
"""Re-scans after SIGKILL: a fork racing with one kill is caught by the next."""
FREEZE_SCANS = 50
"""Subreaper: scans (each stopping what it found) before a kill, until one finds nothing new."""
HOLD_PROGRAM = "/bin/sh"
HOLD_PROGRAM_ANY_NAME = "/bin/bash"
"""The hold when the environment has names that are not shell identifiers (dash drops them)."""
HOLD_NAME = "relay-shell-hold"
HOLD_FOR_INPUT = 'IFS= read -r RELAY_SHELL_HOLD || exit 125; unset RELAY_SHELL_HOLD; exec "$@"'
HOLD_NO_INPUT = 'IFS= read -r RELAY_SHELL_HOLD || exit 125; unset RELAY_SHELL_HOLD; exec "$@" </dev/null'
JOIN_LINE = "PATH=/dev/null echo 0 >{procs} || exit 125; unset RELAY_SHELL_HOLD"
"""The first line of a self-joining ``/bin/sh -c`` text (dash only, see :func:`join_argv`): the
shell writes ``0`` (itself) into ``{procs}``, its call's ``cgroup.procs``, or exits 125."""
JOIN_FAILED = 125
"""The exit status of a self-joining child whose join failed (it ran nothing of the command)."""
_SHELL_IS_DASH: dict[tuple[int, int], bool] = {}
MAX_ARG_STRLEN = os.sysconf("SC_PAGE_SIZE") * 32
"""The kernel's bound on one argument string, its NUL included (``execve`` fails with E2BIG)."""
LOADER_PREFIXES = ("LD_",)
LOADER_NAMES = frozenset({"GLIBC_TUNABLES", "GCONV_PATH", "LOCPATH"})
"""Variables the dynamic loader or the C library acts on when a program starts, before its
``main``: ``LD_PRELOAD``, ``LD_AUDIT`` and ``LD_LIBRARY_PATH`` load code of the caller's
choosing into whatever is executed first."""


def loader_variable(env: Mapping[str, str]) -> str | None:
    """The first name in ``env`` that the loader or the C library acts on at start-up, or None.

    Such code runs in the first program executed, before any line of it: in a hold or a
    self-joining shell that is before the process is in its cgroup, so a child with such an
    environment joins before ``exec`` instead (:attr:`Launch.joins_before_exec`).
    """
    return next((name for name in env if name.startswith(LOADER_PREFIXES) or name in LOADER_NAMES), None)


def hold_argv(argv: Sequence[str], *, input_follows: bool, program: str = HOLD_PROGRAM) -> list[str]:
    """``argv`` behind the hold: ``sh -p`` waits for :data:`RELEASE_LINE`, then ``exec``s it.

    ``-p`` (privileged mode): where the shell is bash, no function is imported from the
    environment (an exported ``read`` would otherwise run before the release) and no
    start-up file is read; the variables still reach the command.
    """
    return [program, "-p", "-c", HOLD_FOR_INPUT if input_follows else HOLD_NO_INPUT, HOLD_NAME, *argv]


def hold_program(env: Mapping[str, str]) -> str:
    """The shell to hold a child whose environment is ``env``.

    A shell passes on only the variables it imported: dash (Debian's ``/bin/sh``) drops
    names that are not identifiers (``A.B``, ``BASH_FUNC_f%%``), bash keeps them.

    Raises:
        SpawnFailed: such a name, and no bash to keep it.
    """
    odd = next((name for name in env if not (name.isascii() and name.isidentifier())), None)
    if odd is None:
        return HOLD_PROGRAM
    if os.access(HOLD_PROGRAM_ANY_NAME, os.X_OK):
        return HOLD_PROGRAM_ANY_NAME
    raise SpawnFailed(
        f"the environment variable {odd!r} is not a shell identifier: it cannot be passed to a "
        f"contained command without {HOLD_PROGRAM_ANY_NAME}"
    )


def join_argv(argv: Sequence[str], procs: Path) -> list[str] | None:
    """``/bin/sh -c TEXT`` that joins its cgroup itself first, or None when it cannot be trusted to.

    The first line of the ``-c`` text writes ``0`` (the writing process: the shell itself)
    into ``procs`` (the call's ``cgroup.procs``, single-quoted) or exits
    :data:`JOIN_FAILED`; TEXT follows on a line of its own. dash parses and runs a ``-c``
    text one complete command at a time, so the join is over before a byte of TEXT is
    parsed, and TEXT parses exactly as it would alone, one line further down; a failed join
    exits before TEXT is read. No process, write or hand-back of the server is needed.

    Why the environment cannot subvert the join: dash (only dash: ``argv[0]`` must be exactly
    :data:`HOLD_PROGRAM` and be dash) imports no function or alias from the environment and
    reads no start-up file when not interactive; ``echo`` is a regular built-in, which a
    ``%builtin`` entry of ``PATH`` would let a ``PATH`` directory override, but a ``PATH``
    assignment before the command without ``%builtin`` makes dash take the built-in before
    any search (and ``/dev/null`` could not hold a program anyway); the line has no
    expansion (``IFS`` plays no part) and ``0`` names the writer, whatever ``$$`` would say;
    ``exit`` and ``unset`` are special built-ins. The caller tells a failed join from TEXT's
    own ``exit 125`` by the exited child's cgroup (:meth:`CgroupContained.join_failure`).

    What TEXT sees differently from ``/bin/sh -c TEXT`` alone: the line numbers in the
    shell's own messages are one more (``sh: 2: ...: not found``; Debian's dash has no
    ``$LINENO``), its argv (``ps``) shows the join's line, and a ``RELAY_SHELL_HOLD``
    variable is unset, as every hold does; nothing else (``$0``, positional parameters,
    ``$?``, options, traps, stdin, the exported environment).

    Not taken (None): a shell named by any other path than :data:`HOLD_PROGRAM` (a link that
    names dash when this is called may name bash, which runs ``BASH_ENV`` first, when it is
    executed), or that is not dash; a TEXT that starts with ``-`` or ``+`` (alone, dash reads
    it as more options and never runs it); a TEXT that fits the kernel's bound on one
    argument (:data:`MAX_ARG_STRLEN`) alone but not with the join's line.
    """
    if len(argv) != 3 or argv[0] != HOLD_PROGRAM or argv[1] != "-c" or not is_dash(argv[0]):
        return None
    if argv[2].startswith(("-", "+")):
        return None
    text = f"{JOIN_LINE.format(procs=shlex.quote(os.fspath(procs)))}\n{argv[2]}"
    if len(text) >= MAX_ARG_STRLEN // 4:
        try:
            size = len(os.fsencode(text))
        except UnicodeEncodeError:  # not encodable: the spawn itself fails with it (SpawnFailed)
            return None
        if size >= MAX_ARG_STRLEN:
            return None
    return [argv[0], "-c", text]


def is_dash(program: str) -> bool:
    """True when ``program`` is dash (one ``stat`` per call; the name resolved once per file)."""
    try:
        status = os.stat(program)
    except OSError:
        return False
    key = (status.st_dev, status.st_ino)
    known = _SHELL_IS_DASH.get(key)
    if known is None:
        known = os.path.basename(os.path.realpath(program)) == "dash"
        _SHELL_IS_DASH[key] = known
    return known


RELEASE_LINE = MOVER_RELEASE_LINE
"""What the server writes on a held child's stdin once the child is in its cgroup."""

LIVE_ROOTS: dict[int, Contained] = {}
"""Root pid -> containment, for every live containment of this process (any service)."""


@dataclass(frozen=True)
class Launch:
    """How to start a one-shot child inside a containment.

    ``held``: the child's stdin must be a pipe; it waits for :data:`RELEASE_LINE` on it
    before it runs the command (which then reads the rest of that pipe, or ``/dev/null``
    when no input follows). Without the line (EOF) it exits 125 having run nothing.

    ``joins``: the child joins its cgroup itself before it runs anything of the command
    (:func:`join_argv`); its stdin is the command's own. Exit :data:`JOIN_FAILED` outside the
    cgroup means the join failed (:meth:`CgroupContained.join_failure`).

    ``joins_before_exec``: ``argv`` is the command itself, spawned with
    :meth:`Contained.joiner` as its ``preexec_fn`` (the fork path): it is in its cgroup
    before ``exec``, so nothing its environment makes the loader run is outside it
    (:func:`loader_variable`). A failed join fails the spawn.
    """

    argv: list[str]
    held: bool
    joins: bool = False
    joins_before_exec: bool = False


class Contained(ABC):
    """What one call or session started: kill it with :meth:`kill`, release it with :meth:`close`."""

    mechanism: Mechanism

    def __init__(self, label: str, on_close: Callable[[Contained], None]) -> None:
        self.label = label
        self.root: int | None = None
        self._on_close = on_close
        self._closed = False
        self._settled = False  # the root has exited and nothing of it is left: nothing can appear

    @abstractmethod
    def launch(
        self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path | None, input_follows: bool
    ) -> Launch:
        """The argv to spawn for ``argv``. Raises SpawnFailed when the program cannot be found."""

    @abstractmethod
    def adopt(self, pid: int) -> None:
        """Take the freshly spawned ``pid`` (this containment's root) in. Raises SpawnFailed."""

    def joiner(self) -> Callable[[], None] | None:
        """For a child started with a ``preexec_fn`` anyway: a callable that joins from inside it.

        Call :meth:`release_joiner` after the spawn, whether it worked or not.
        """
        return None

    def release_joiner(self) -> None:
        """Release what :meth:`joiner` opened; nothing by default."""
        return None

    @abstractmethod
    def members(self) -> list[int]:
        """The live processes in this containment now (the root too, while it runs)."""

    async def _track(self, handles: PidHandles) -> int:
        """Track the members (and anything to reap) in ``handles``; returns how many are live."""
        members = self.members()
        for pid in members:
            handles.track(pid)
        return len(members)

    @abstractmethod
    async def _kill_rest(self, handles: PidHandles, grace_s: float) -> None:
        """SIGKILL whatever is still in the containment, until it is empty (bounded rounds)."""

    def _release(self) -> None:
        """Remove what backs the containment; the base only forgets the root."""
        LIVE_ROOTS.pop(self.root or 0, None)

    async def kill(self, grace_s: float) -> int:
        """End every process in the containment: SIGTERM (and SIGCONT), ``grace_s``, SIGKILL.

        Returns how many processes were running when it was called. The root is signalled
        too while it runs, but never reaped here (its owner waits for it); other processes
        that exited as children of this server (adopted orphans) are reaped.
        """
        if self._settled:
            return 0
        with PidHandles() as handles:
            running = await self._track(handles)
            if running:
                handles.signal(signal.SIGTERM)
                handles.signal(signal.SIGCONT)  # a stopped process acts on TERM only once continued
                await handles.wait_exited(grace_s)
                await self._kill_rest(handles, grace_s)
            if len(handles):
                handles.reap(skip=() if self.root is None else (self.root,))
        # Nothing alive and the root gone: no process is left that could start another.
        self._settled = running == 0 and self.root is not None and not _alive(self.root)
        return running

    async def close(self, grace_s: float) -> None:
        """Kill what is left and release the containment. Idempotent; logs OSError, never raises it."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.kill(grace_s)
        except OSError as exc:
            log.warning("containment %s: killing what is left failed: %s", self.label, exc)
        try:
            self._release()
        except OSError as exc:
            log.warning("containment %s: release failed: %s", self.label, exc)
        finally:
            self._on_close(self)


class CgroupContained(Contained):
    """A cgroup v2 directory of its own; ``cgroup.kill`` ends everything in it."""

    mechanism: Mechanism = "cgroup"

    def __init__(self, label: str, on_close: Callable[[Contained], None], directory: CgroupDir) -> None:
        super().__init__(label, on_close)
        self.directory = directory
        self._join_fd: int | None = None

    def launch(
        self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path | None, input_follows: bool
    ) -> Launch:
        if loader_variable(env) is not None:  # code would run in the hold or the joining shell
            return Launch(argv=list(argv), held=False, joins_before_exec=True)
        check_program(argv[0], env, cwd)
        program = hold_program(env)
        joining = join_argv(argv, self.directory.path / "cgroup.procs") if program == HOLD_PROGRAM else None
        if joining is not None:
            return Launch(argv=joining, held=False, joins=True)
        return Launch(argv=hold_argv(argv, input_follows=input_follows, program=program), held=True)

    def adopt(self, pid: int) -> None:
        try:
            if self._join_fd is None:  # a child that used the joiner is in already
                self.directory.add(pid)
        except OSError as exc:
            raise self.move_failed(exc) from exc
        self.root = pid
        LIVE_ROOTS[pid] = self

    def adopt_joining(self, pid: int) -> None:
        """Take in the freshly spawned ``pid`` of a :attr:`Launch.joins` launch, which joins itself."""
        self.root = pid
        LIVE_ROOTS[pid] = self

    def join_failure(self, pid: int) -> SpawnFailed | None:
        """For a self-joining child that exited :data:`JOIN_FAILED`, not reaped yet: the error of a
        failed join (it ran nothing), or None when it exited inside its cgroup (TEXT's own 125).

        An exited child keeps its cgroup until it is reaped, and ``/proc/<pid>/cgroup`` still
        names it; the pid is ours until then. A join that failed left the child where the
        server is, above the call's cgroup; a child that exited in the call's cgroup or below
        it (TEXT may make and enter a cgroup of its own there) was contained.
        """
        try:
            where = unified_cgroup(read_small(f"/proc/{pid}/cgroup").decode(errors="replace"))
        except OSError as exc:
            where, reason = None, str(exc)
        else:
            reason = f"it exited in {where}"
        inside = self.directory.hierarchy_path
        if where is not None and inside and (where == inside or where.startswith(inside.rstrip("/") + "/")):
            return None
        return SpawnFailed(
            f"cannot move the process into its cgroup {self.directory.path}: it failed to join it ({reason})"
        )

    def move_failed(self, exc: Exception) -> SpawnFailed:
        """The error of a call whose child could not be moved in (it ran nothing)."""
        return SpawnFailed(f"cannot move the process into its cgroup {self.directory.path}: {exc}")

    def move(self, pid: int, *, release_fd: int = -1) -> MoveTicket:
        """Move the held ``pid`` in from the mover thread, which then writes the release line on
        ``release_fd`` (if given: it now owns it). The root is taken at once; the outcome comes
        later (:meth:`MoveTicket.outcome`, then :meth:`move_failed`)."""
        self.root = pid
        LIVE_ROOTS[pid] = self
        return MOVER.submit(pid, self.directory.add, release_fd=release_fd)

    def joiner(self) -> Callable[[], None]:
        fd = os.open(self.directory.path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
        self._join_fd = fd

        def join() -> None:  # in the child between fork and exec: one write(2), nothing else
            os.write(fd, b"0")

        return join

    def release_joiner(self) -> None:
        if self._join_fd is not None:
            os.close(self._join_fd)
            self._join_fd = None

    def members(self) -> list[int]:
        return self.directory.all_procs()

    async def _kill_rest(self, handles: PidHandles, grace_s: float) -> None:
        for _ in range(KILL_ROUNDS):
            if not self.directory.populated():
                return
            for pid in self.directory.all_procs():
                handles.track(pid)
            self.directory.kill()
            await handles.wait_exited(grace_s)

    def _release(self) -> None:
        super()._release()
        if not self.directory.remove():
            log.warning(
                "containment %s: %s is still busy; it is swept at the next start",
                self.label,
                self.directory.path,
            )


class SubreaperContained(Contained):
    """A session, its descendants and the orphans the server adopted (see :func:`attribute`)."""

    mechanism: Mechanism = "subreaper"

    def __init__(self, label: str, on_close: Callable[[Contained], None]) -> None:
        super().__init__(label, on_close)
        self.opened_ticks = boot_ticks_now()

    def launch(
        self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path | None, input_follows: bool
    ) -> Launch:
        return Launch(argv=list(argv), held=False)  # the session is set before exec: no window

    def adopt(self, pid: int) -> None:
        self.root = pid
        LIVE_ROOTS[pid] = self

    def members(self) -> list[int]:
        table = process_table()
        return sorted(pid for pid in self._owned(table) if table[pid].alive)

    async def _track(self, handles: PidHandles) -> int:
        table = await asyncio.to_thread(process_table)  # a read of every /proc/<pid>/stat: off the loop
        owned = self._owned(table)
        for pid in owned:  # zombies too: the ones the server adopted are reaped after the kill
            handles.track(pid, start_ticks=table[pid].start_ticks)
        return sum(1 for pid in owned if table[pid].alive)

    def _owned(self, table: Mapping[int, ProcessEntry]) -> set[int]:
        if self.root is None:
            return set()
        return attribute(
            table,
            root=self.root,
            opened_ticks=self.opened_ticks,
            server_pid=os.getpid(),
            server_session=os.getsid(0),
            other_roots={pid for pid in LIVE_ROOTS if pid != self.root},
        )

    async def _kill_rest(self, handles: PidHandles, grace_s: float) -> None:
        # Without cgroup.kill there is no atomic kill: stop everything found, scan again until a
        # scan finds nothing new (a stopped process forks no more), then kill it all.
        for _ in range(KILL_ROUNDS):
            for _ in range(FREEZE_SCANS):
                table = await asyncio.to_thread(process_table)
                owned = self._owned(table)
                fresh = [pid for pid in owned if pid not in handles.pids]
                for pid in owned:
                    handles.track(pid, start_ticks=table[pid].start_ticks)
                handles.signal(signal.SIGSTOP)
                if not fresh:
                    break
            if not any(table[pid].alive for pid in owned):
                return
            handles.signal(signal.SIGKILL)
            await handles.wait_exited(grace_s)


def attribute(
    table: Mapping[int, ProcessEntry],
    *,
    root: int,
    opened_ticks: int,
    server_pid: int,
    server_session: int,
    other_roots: set[int],
) -> set[int]:
    """The processes a subreaper containment owns (live and zombie), from one process table.

    Owned: the root, every member of its session (the root is a session leader, and only
    ``setsid`` leaves a session), every descendant of those, and every orphan the server
    adopted that is in a session of its own (it called ``setsid``) and started after the
    containment opened, with its descendants. Never: the server, another live
    containment's root, session or descendants, or a child of the server in the server's
    own session (nothing a call starts is).
    """
    skip = {server_pid} | other_roots
    seeds = {root}
    for entry in table.values():
        if entry.session == root or (
            entry.ppid == server_pid
            and entry.pid not in skip
            and entry.session not in skip
            and entry.session != server_session
            and entry.start_ticks >= opened_ticks
        ):
            seeds.add(entry.pid)
    others = {entry.pid for entry in table.values() if entry.session in other_roots}
    return descendants(table, seeds, skip=skip | others) & table.keys()


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie is not alive)."""
    entry = read_entry(pid)
    return entry is not None and entry.alive
