"""A one-shot child process, named by a pidfd from its start and reaped only through it.

``subprocess.Popen`` starts it (its vfork path: no ``preexec_fn``); a pidfd is opened right
away, the event loop watches it for the exit, and ``waitid(P_PIDFD, ...)`` reaps exactly
this process. There is no child watcher, no protocol or transport object and no second
pidfd per child (``asyncio.create_subprocess_exec`` adds all three), and nothing here
ever waits for another pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


class ChildProcess:
    """A started child: :meth:`exited` waits for its end, :meth:`wait` reaps it, :meth:`close`
    releases the pidfd (reaping later, on the loop, a child still running then)."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid
        self._pidfd = os.pidfd_open(popen.pid)
        self._gate: asyncio.Future[Exception | None] | None = None

    def reap_after(self, gate: asyncio.Future[Exception | None]) -> None:
        """Never reap the child before ``gate`` is done (a write naming its pid may be in flight:
        reaped, the pid could be reused by another process). :meth:`close` then reaps it later."""
        self._gate = gate

    def _gated(self) -> bool:
        return self._gate is not None and not self._gate.done()

    @property
    def returncode(self) -> int | None:
        """The exit status once reaped (``-N``: killed by signal N), else None."""
        return self._popen.returncode

    async def exited(self) -> None:
        """Return once the child has exited (not reaped: it stays a zombie until :meth:`wait`)."""
        if self.returncode is not None:
            return
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()
        loop.add_reader(self._pidfd, _resolve, readable)
        try:
            await readable
        finally:
            loop.remove_reader(self._pidfd)

    def exit_status(self) -> int | None:
        """After :meth:`exited`: the status as :attr:`returncode` will give it, without reaping the
        child (its pid, and its ``/proc`` entry, stay ours); None while it runs."""
        if self._popen.returncode is not None:
            return self._popen.returncode
        result = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if result is None:
            return None
        return result.si_status if result.si_code == os.CLD_EXITED else -result.si_status

    async def wait(self) -> int:
        """Wait for the exit (and the gate of :meth:`reap_after`), reap the child; its exit status."""
        if self.returncode is None:
            await self.exited()
            if self._gate is not None:
                await asyncio.shield(self._gate)
            self._reap()
        return self._popen.returncode

    def _reap(self) -> bool:
        """Reap the child if it exited (never blocks); True once it is reaped."""
        if self._popen.returncode is not None:
            return True
        if self._pidfd < 0 or self._gated():
            return False
        try:
            result = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED | os.WNOHANG)
        except ChildProcessError:  # reaped by someone else: no status to report
            self._popen.returncode = -1
            return True
        if result is None:
            return False
        exited = result.si_code == os.CLD_EXITED
        self._popen.returncode = result.si_status if exited else -result.si_status
        return True

    def close(self) -> None:
        """Release the pidfd; a child not reaped yet is reaped on the loop when it exits."""
        if self._pidfd < 0:
            return
        if self._reap():
            os.close(self._pidfd)
            self._pidfd = -1
            return
        if self._gate is not None and not self._gate.done():  # closed again once it is done
            self._gate.add_done_callback(lambda _: self.close())
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop to wait on: leave the pidfd to the garbage collector's close
            return
        loop.add_reader(self._pidfd, self._reap_late, loop)

    def _reap_late(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._reap():
            loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1


def spawn_child(
    argv: Sequence[str],
    *,
    stdin: int,
    stdout: int,
    stderr: int,
    env: Mapping[str, str],
    cwd: Path | None,
    preexec_fn: Callable[[], None] | None = None,
) -> ChildProcess:
    """Start ``argv`` in a session of its own with the given descriptors (or ``subprocess.DEVNULL``
    / ``subprocess.STDOUT``); ``preexec_fn`` runs in the child after ``setsid`` and before
    ``exec`` (it costs the vfork path). Raises OSError or ValueError when it cannot be started,
    ``subprocess.SubprocessError`` when ``preexec_fn`` failed (the child never ran ``argv``)."""
    popen = subprocess.Popen(
        list(argv),
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        env=env,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=preexec_fn,  # noqa: PLW1509 (one write(2) to an open descriptor, no lock taken)
    )
    try:
        return ChildProcess(popen)
    except OSError:  # no pidfd (out of descriptors): the child must not run on unwatched
        with contextlib.suppress(OSError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait()
        raise


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
