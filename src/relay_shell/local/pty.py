"""Local PTY sessions: a child on a pseudo-terminal, driven by the event loop (docs/tools.md).

The child gets its own session and process group with the PTY slave as its controlling
terminal, so job control, ^C and SIGWINCH behave as in a real terminal. The master fd is
non-blocking and watched with ``loop.add_reader``/``add_writer`` only while a read or write
waits: no thread per read, no polling. The child is reaped by asyncio's child watcher.

Setting the controlling terminal needs ``ioctl(TIOCSCTTY)`` in the child after ``setsid()``
and before ``exec``; :func:`_child_setup` makes that one call, run as ``preexec_fn`` (the
only way ``subprocess`` offers; it does not allocate or take locks). Since the child runs
code before ``exec`` anyway, it joins its containment's cgroup there too (one ``write``),
so nothing of the session ever runs outside it. Closing the session ends everything in
the containment, daemons that left the session included.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import shutil
import signal
import struct
import subprocess
import termios
from collections.abc import Callable, Mapping
from pathlib import Path

from relay_shell.errors import ExecFailed, SessionEnded, SpawnFailed
from relay_shell.local.contained import Contained
from relay_shell.local.environment import build_child_env
from relay_shell.sessions import KILL_GRACE_S
from relay_shell.sessions.terminal import SIGNALS, parse_signal, validate_terminal_size

READ_CHUNK = 65536
# After the child exits, processes it left behind may still hold the terminal: read what
# is already there for at most this long, then report the end of output.
DRAIN_AFTER_EXIT_S = 1.0
# termios lacks IUTF8 before Python 3.13; this is its Linux value.
IUTF8 = getattr(termios, "IUTF8", 0o040000)
PTY_DEFAULTS: Mapping[str, str] = {"TERM": "xterm-256color"}


def _child_setup(join: Callable[[], None] | None) -> Callable[[], None]:
    """What runs in the child between setsid() and exec: join the containment, take the ctty."""

    def setup() -> None:
        if join is not None:
            join()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # stdin (the slave) becomes the controlling terminal

    return setup


def shell_argv(command: str) -> list[str]:
    """``""`` -> an interactive bash (``sh -i`` without bash); otherwise ``/bin/sh -c command``.

    The default bash gets a fixed line editor (emacs mode, no start-up files; ``INPUTRC`` is
    set to an empty file by :func:`spawn_local_pty`), the one the classifier's line model
    follows.
    """
    if not command:
        bash = shutil.which("bash") or ("/bin/bash" if Path("/bin/bash").exists() else None)
        return [bash, "--noprofile", "--norc", "-o", "emacs", "-i"] if bash else ["/bin/sh", "-i"]
    return ["/bin/sh", "-c", command]


async def spawn_local_pty(
    command: str,
    *,
    cols: int,
    rows: int,
    cwd: Path | None,
    env: Mapping[str, str | None],
    contained: Contained,
) -> LocalPtyTransport:
    """Start ``command`` on a new PTY of ``cols`` x ``rows``, inside ``contained``.

    ``command`` ``""`` runs an interactive bash; anything else runs via ``/bin/sh -c`` (so a
    command that is not found is not a spawn failure: the session ends with exit 127).
    ``env`` is an overlay on the server's environment as for one-shot exec (``None`` unsets),
    plus ``TERM=xterm-256color`` when unset. ``cwd`` ``None`` is the server's directory.
    The transport owns ``contained`` from then on and closes it with the session.

    Raises:
        InvalidInput: ``cols``/``rows`` out of range.
        SpawnFailed: no PTY available, the cwd or the shell is missing, or the child failed
            before exec.
    """
    validate_terminal_size(cols, rows)
    argv = shell_argv(command)
    child_env = build_child_env(env, extra_defaults=PTY_DEFAULTS)
    if not command and "INPUTRC" not in env:
        child_env["INPUTRC"] = "/dev/null"  # no key bindings but readline's own
    try:
        master_fd, slave_fd = os.openpty()
    except OSError as exc:
        raise SpawnFailed(f"cannot allocate a pseudo-terminal: {exc}") from exc
    try:
        _set_window_size(slave_fd, cols, rows)
        attributes = termios.tcgetattr(slave_fd)
        attributes[0] |= IUTF8  # line editing (backspace) treats UTF-8 characters as one
        termios.tcsetattr(slave_fd, termios.TCSANOW, attributes)
        os.set_blocking(master_fd, False)
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=slave_fd,
            stdout=slave_fd,
            stderr=slave_fd,
            env=child_env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_child_setup(contained.joiner()),  # see the module docstring
        )
        contained.adopt(process.pid)
    except (OSError, ValueError, subprocess.SubprocessError, termios.error) as exc:
        os.close(master_fd)
        raise SpawnFailed(f"cannot start {argv[0]!r} on a terminal: {exc}") from exc
    except BaseException:
        os.close(master_fd)
        raise
    finally:
        os.close(slave_fd)  # the child has its copies; the master sees EOF when they close
        contained.release_joiner()
    return LocalPtyTransport(process, master_fd, contained)


def _set_window_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _session_members(session_id: int) -> dict[int, int]:
    """pid -> process group of the live (non-zombie) processes in session ``session_id``."""
    members: dict[int, int] = {}
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", encoding="utf-8", errors="replace") as stat_file:
                    stat = stat_file.read()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            if len(fields) > 3 and fields[3] == str(session_id) and fields[0] not in ("Z", "X"):
                members[int(entry.name)] = int(fields[2])
    return members


async def _wait_until_gone(pids: set[int], timeout_s: float) -> None:
    """Wait until every process in ``pids`` has exited (via pidfds: no polling), or the timeout."""
    loop = asyncio.get_running_loop()
    pidfds: list[int] = []
    exits: list[asyncio.Future[None]] = []
    try:
        for pid in pids:
            try:
                pidfd = os.pidfd_open(pid)
            except OSError:  # already gone
                continue
            pidfds.append(pidfd)
            exited: asyncio.Future[None] = loop.create_future()
            exits.append(exited)
            loop.add_reader(pidfd, _resolve, exited)
        if exits:
            await asyncio.wait(exits, timeout=timeout_s)
    finally:
        for pidfd in pidfds:
            loop.remove_reader(pidfd)
            os.close(pidfd)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _signal_groups(groups: set[int], number: int) -> None:
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, number)


class LocalPtyTransport:
    """A local child on a PTY; implements :class:`relay_shell.sessions.Transport`."""

    def __init__(self, process: asyncio.subprocess.Process, master_fd: int, contained: Contained) -> None:
        self._process = process
        self._master_fd = master_fd
        self._contained = contained
        self._loop = asyncio.get_running_loop()
        self._released = False
        self._end_of_output = False
        self._drain_deadline: float | None = None
        self._read_waiter: asyncio.Future[None] | None = None
        self._write_waiter: asyncio.Future[None] | None = None
        self._closing: asyncio.Future[None] | None = None
        self._exited = asyncio.ensure_future(process.wait())
        self._exited.add_done_callback(lambda _: self._wake_reader())

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def foreground_is_child(self) -> bool | None:
        """Whether the terminal's foreground process group is the child's (its shell);
        None once the terminal is closed."""
        if self._released:
            return None
        try:
            return os.tcgetpgrp(self._master_fd) == self._process.pid
        except OSError:
            return None

    @property
    def exit_status(self) -> int | None:
        code = self._process.returncode
        if code is None:
            return None
        return 128 - code if code < 0 else code

    def echo_enabled(self) -> bool | None:
        """Whether typed text is shown now, from the terminal's flags (read on the master).

        True with ECHO on; False with ECHO off in canonical mode: a password prompt (``read
        -s``, sudo, passwd, ssh, getpass keep ICANON and turn ECHO off), where what is typed
        is a secret. ``None`` when it cannot be told: ECHO and ICANON both off (a line editor
        such as readline or a full-screen program draws the text itself, or a raw-mode
        prompt hides it), and once the terminal is closed."""
        if self._released:
            return None
        try:
            flags = termios.tcgetattr(self._master_fd)[3]
        except termios.error:
            return None
        if flags & termios.ECHO:
            return True
        return False if flags & termios.ICANON else None

    async def read(self) -> bytes:
        """The next chunk of output; ``b""`` once the terminal is closed and the child exited.

        Not to be called concurrently with itself.
        """
        while (data := self._read_available()) is None:
            if not self._exited.done():
                await self._wait_ready(readable=True, timeout_s=None)
                continue
            if self._drain_deadline is None:
                self._drain_deadline = self._loop.time() + DRAIN_AFTER_EXIT_S
            remaining = self._drain_deadline - self._loop.time()
            if remaining <= 0:
                self._end_of_output = True
            else:
                await self._wait_ready(readable=True, timeout_s=remaining)
        if not data and not self._released:
            await asyncio.shield(self._exited)  # EIO can come before the exit: report both together
        return data

    def _read_available(self) -> bytes | None:
        """Output ready now; ``None`` if none yet; ``b""`` at the end of output (then always)."""
        if self._released or self._end_of_output:
            self._end_of_output = True
            return b""
        try:
            data = os.read(self._master_fd, READ_CHUNK)
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno != errno.EIO:  # EIO: every slave fd is closed
                raise ExecFailed(f"reading the terminal failed: {exc}") from exc
            data = b""
        if not data:
            self._end_of_output = True
        return data

    async def write(self, data: bytes) -> None:
        """Write all of ``data`` (waits while the terminal's input queue is full).

        Raises:
            SessionEnded: the terminal is closed.
        """
        view = memoryview(data)
        while view:
            if self._released:
                raise SessionEnded("the session's terminal is closed")
            try:
                written = os.write(self._master_fd, view)
            except BlockingIOError:
                await self._wait_ready(readable=False, timeout_s=None)
                continue
            except OSError as exc:
                raise SessionEnded(f"the session's terminal is closed: {exc}") from exc
            view = view[written:]

    async def resize(self, cols: int, rows: int) -> None:
        """Set the window size on the master; the kernel sends SIGWINCH to the foreground job."""
        validate_terminal_size(cols, rows)
        if self._released:
            raise SessionEnded("the session's terminal is closed")
        try:
            _set_window_size(self._master_fd, cols, rows)
        except OSError as exc:
            raise ExecFailed(f"resizing the terminal failed: {exc}") from exc

    async def signal(self, name: str) -> None:
        """Send a signal to the child's process group and to the terminal's foreground job.

        The foreground job is what a terminal signals on ^C; with an interactive shell it is
        the running command, in a process group of its own.

        Raises:
            InvalidInput: unknown signal name.
            SessionEnded: the child has exited.
        """
        number = SIGNALS[parse_signal(name)]
        if self._process.returncode is not None:
            raise SessionEnded("the session's process has exited")
        groups = {self._process.pid}
        if not self._released:
            with contextlib.suppress(OSError):
                foreground = os.tcgetpgrp(self._master_fd)
                if foreground > 0:
                    groups.add(foreground)
        _signal_groups(groups, number)

    async def close(self, grace_s: float = KILL_GRACE_S) -> None:
        """End every process of the child's session and release the master fd. Idempotent.

        Each process group of the session gets SIGTERM (and SIGCONT, so stopped jobs can act
        on it) and the child SIGHUP, as when a terminal closes (interactive shells ignore
        TERM). After ``grace_s`` whatever is left gets SIGKILL. Then everything else in the
        session's containment is killed the same way (daemons that started a session of
        their own included) and the containment is released.
        """
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._shut_down(grace_s))
        await asyncio.shield(self._closing)

    async def _shut_down(self, grace_s: float) -> None:
        session_id = self._process.pid
        try:
            members = _session_members(session_id)
            groups = set(members.values())
            _signal_groups(groups, signal.SIGTERM)
            _signal_groups(groups, signal.SIGCONT)
            if self._process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(session_id, signal.SIGHUP)
            await _wait_until_gone(set(members), grace_s)
            leftovers = _session_members(session_id)
            _signal_groups(set(leftovers.values()), signal.SIGKILL)
            await _wait_until_gone(set(leftovers), grace_s)
            await asyncio.wait({self._exited}, timeout=grace_s)  # reaped: exit_status is set
        finally:
            try:
                await self._contained.close(grace_s)
            finally:
                self._release()

    def _release(self) -> None:
        if self._released:
            return
        self._released = True
        self._loop.remove_reader(self._master_fd)
        self._loop.remove_writer(self._master_fd)
        os.close(self._master_fd)
        self._wake_reader()
        self._wake_writer()

    async def _wait_ready(self, *, readable: bool, timeout_s: float | None) -> None:
        """Wait until the master is readable (or writable), the child exits, or close()."""
        waiter = self._loop.create_future()
        if readable:
            self._read_waiter = waiter
            self._loop.add_reader(self._master_fd, self._wake_reader)
        else:
            self._write_waiter = waiter
            self._loop.add_writer(self._master_fd, self._wake_writer)
        try:
            async with asyncio.timeout(timeout_s):
                await waiter
        except TimeoutError:
            pass
        finally:
            if not self._released:
                if readable:
                    self._loop.remove_reader(self._master_fd)
                else:
                    self._loop.remove_writer(self._master_fd)
            if readable:
                self._read_waiter = None
            else:
                self._write_waiter = None

    def _wake_reader(self) -> None:
        if self._read_waiter is not None and not self._read_waiter.done():
            self._read_waiter.set_result(None)

    def _wake_writer(self) -> None:
        if self._write_waiter is not None and not self._write_waiter.done():
            self._write_waiter.set_result(None)
