"""One-shot local processes with bounded time and memory (docs/architecture.md, "Local execution").

The child runs in its own session and process group, inside a containment
(:mod:`relay_shell.local.containment`) that the caller opened for the call. Output is
streamed into an :class:`~relay_shell.capture.OutputCapture` (bounded whatever it prints).
When the child exits, whatever it left running in the containment (background jobs,
``nohup``, ``setsid``, double forks) is killed before the output is drained; on a timeout,
a cancellation or any other exit path the process group and the containment get SIGTERM,
then SIGKILL after a grace, before this module returns or re-raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from relay_shell.capture import (
    OutputCapture,
    OutputTap,
    SplitCapture,
    capture_fields,
    new_capture,
    render_capture,
)
from relay_shell.errors import ExecTimeout, PartialOutput, SpawnFailed
from relay_shell.local.child import ChildProcess, spawn_child
from relay_shell.local.contained import JOIN_FAILED, RELEASE_LINE, CgroupContained, Contained, Launch
from relay_shell.local.mover import MoveTicket
from relay_shell.local.pipes import InputPipe, OutputPipe, drain_pipe, feed_pipe
from relay_shell.report import ExecReport, signal_name

KILL_GRACE_S = 2.0
DRAIN_AFTER_EXIT_S = 1.0
PROGRESS_INTERVAL_S = 1.0

ProgressCallback = Callable[[float, int], Awaitable[None]]


@dataclass(frozen=True)
class ProcessSpec:
    """What to run: argv, stdin bytes (``None`` -> /dev/null), environment, cwd."""

    argv: Sequence[str]
    env: dict[str, str]
    cwd: Path | None = None
    stdin: bytes | None = None
    merge_stderr: bool = True


async def run_process(
    spec: ProcessSpec,
    *,
    timeout_s: float,
    budget: int,
    contained: Contained,
    on_progress: ProgressCallback | None = None,
    kill_grace_s: float = KILL_GRACE_S,
    tap: OutputTap | None = None,
) -> ExecReport:
    """Run ``spec`` to completion within ``timeout_s``, inside ``contained``.

    ``tap`` also receives the output as it arrives (the live stream of a job).

    Returns the report for any exit status (non-zero is not an error); a child killed by
    signal N reports ``128 + N`` and the signal's name. Whatever the command left running in
    ``contained`` when it exited has been killed (``left_running`` counts it); ``pipe_held``
    says that something outside the containment kept the output pipe open after that.
    ``contained`` stays open for the caller to close.

    Raises:
        SpawnFailed: the program could not be started (or not contained: then it never ran).
        ExecTimeout: the deadline passed; everything in the containment was killed; carries
            partial output.
        asyncio.CancelledError: re-raised after everything in the containment was killed.
    """
    capture = new_capture(budget, merge=spec.merge_stderr, tap=tap)
    started = time.monotonic()
    child = await _spawn(spec, contained)
    try:
        async with asyncio.timeout(timeout_s):
            ended = await _pump(child, spec.stdin, capture, started, on_progress, contained, kill_grace_s)
        if isinstance(ended, SpawnFailed):
            raise ended
    except TimeoutError:
        with anyio.CancelScope(shield=True):
            await _stop(child, contained, kill_grace_s, capture)
        elapsed = time.monotonic() - started
        raise ExecTimeout(
            f"timed out after {elapsed:.1f} s (limit {timeout_s:g} s); everything it started was killed",
            PartialOutput(render_capture(capture), capture_fields(capture)),
        ) from None
    except BaseException:
        with anyio.CancelScope(shield=True):
            await _stop(child, contained, kill_grace_s, capture)
        raise
    finally:
        child.close()  # the drains close the outputs; this is for an exit before they started
    pipe_held, left_running = ended
    process = child.process
    returncode = process.returncode if process.returncode is not None else -1
    return ExecReport(
        exit_code=128 - returncode if returncode < 0 else returncode,
        signal=signal_name(-returncode) if returncode < 0 else None,
        capture=capture,
        duration_ms=round((time.monotonic() - started) * 1000),
        pipe_held=pipe_held,
        pid=process.pid,
        left_running=left_running,
    )


@dataclass
class _Child:
    """A started child: its process, its output pipes (stdout, then stderr when the streams are
    kept apart), our end of its stdin when input follows, and the move of a held child that
    is still in flight (its outcome is checked when the child exits)."""

    process: ChildProcess
    outputs: list[OutputPipe]
    stdin: InputPipe | None = None
    move: MoveTicket | None = None
    joins: bool = False

    def close(self) -> None:
        for pipe in self.outputs:
            pipe.close()
        if self.stdin is not None:
            self.stdin.close()
        self.process.close()


async def _spawn(spec: ProcessSpec, contained: Contained) -> _Child:
    """Start the child and have it moved into ``contained``; a held child runs once released.

    A self-joining child (:attr:`Launch.joins`) needs nothing more: it joins its cgroup
    before it runs anything of the command (a failed join is found when it exits, in
    :func:`_pump`). Without input, a held child is moved and released by the mover thread
    (:meth:`CgroupContained.move`) while the loop goes on; with input, the call's own pump
    waits for the move (under the call's deadline), then writes the release line and the
    input follows it.

    Raises:
        SpawnFailed: the program could not be started, or the child could not be contained
            (it is then killed before it ran anything of the command).
    """
    launch = contained.launch(spec.argv, env=spec.env, cwd=spec.cwd, input_follows=spec.stdin is not None)
    outputs: list[OutputPipe] = []
    stdin: InputPipe | None = None
    try:
        outputs.extend(OutputPipe() for _ in range(1 if spec.merge_stderr else 2))
        stdin = InputPipe() if launch.held or spec.stdin is not None else None
        process = spawn_child(
            launch.argv,
            stdin=stdin.read_fd if stdin is not None else subprocess.DEVNULL,
            stdout=outputs[0].write_fd,
            stderr=subprocess.STDOUT if spec.merge_stderr else outputs[1].write_fd,
            env=spec.env,
            cwd=spec.cwd,
            preexec_fn=contained.joiner() if launch.joins_before_exec else None,
        )
    except BaseException as exc:
        for pipe in outputs:
            pipe.close()
        if stdin is not None:
            stdin.close()
        if isinstance(exc, subprocess.SubprocessError) and isinstance(contained, CgroupContained):
            raise contained.move_failed(exc) from exc  # the join before exec failed: nothing ran
        if isinstance(exc, (OSError, ValueError)):
            raise SpawnFailed(f"cannot start {spec.argv[0]!r}: {exc}") from exc
        raise
    finally:
        contained.release_joiner()
    for pipe in outputs:  # the child has its copies: end of file comes when it (and its heirs) close them
        pipe.close_write()
    if stdin is not None:
        stdin.close_read()
    child = _Child(process, outputs, stdin, joins=launch.joins)
    try:
        await _contain(child, launch, spec.stdin is not None, contained)
    except BaseException:  # not contained (or cancelled meanwhile): still held, nothing of the command ran
        with anyio.CancelScope(shield=True):
            gated = _abandon_move(child)
            _signal_group(process.pid, signal.SIGKILL)
            await (process.exited() if gated else process.wait())
        child.close()
        raise
    return child


async def _contain(child: _Child, launch: Launch, input_follows: bool, contained: Contained) -> None:
    """Take the freshly started child into ``contained``; a held child is moved by the mover
    thread, which also releases it when no input follows (else :func:`_release_and_feed` does,
    under the call's deadline, once the move is done)."""
    pid = child.process.pid
    if (launch.joins or launch.joins_before_exec) and isinstance(contained, CgroupContained):
        contained.adopt_joining(pid)  # it joined before exec, or joins first thing after it
        return
    if not launch.held:
        contained.adopt(pid)
        return
    if not isinstance(contained, CgroupContained) or child.stdin is None:
        raise SpawnFailed("a held child needs a cgroup and a stdin pipe")
    if input_follows:
        child.move = contained.move(pid)
        return
    child.move = contained.move(pid, release_fd=child.stdin.take_write())
    child.stdin = None


async def _release_and_feed(child: _Child, data: bytes) -> None:
    """Feed ``data`` to the child's stdin; a held child first gets the release line, once it is
    in its cgroup. A failed move closes the pipe instead: the hold reads end of file and
    exits 125 having run nothing (the caller reports the move's error)."""
    pipe = child.stdin
    assert pipe is not None
    if child.move is not None:
        if await child.move.outcome() is not None:
            pipe.close()
            return
        with contextlib.suppress(OSError):  # an empty pipe has room for it (or the child is gone)
            os.write(pipe.write_fd, RELEASE_LINE)
    await feed_pipe(pipe, data)


def _abandon_move(child: _Child) -> bool:
    """Tear down the held child's move: never moved or released after this. True when a write
    naming its pid may still be in flight: the child is then reaped only after it."""
    if child.move is None:
        return False
    child.move.abandon()
    gate = child.move.in_flight()
    if gate is None:
        return False
    child.process.reap_after(gate)
    return True


async def _pump(
    child: _Child,
    stdin: bytes | None,
    capture: OutputCapture | SplitCapture,
    started: float,
    on_progress: ProgressCallback | None,
    contained: Contained,
    kill_grace_s: float,
) -> tuple[bool, int] | SpawnFailed:
    """Feed stdin, read output, wait for exit, kill what the command left running, drain.

    Returns (the pipe outlived the containment's processes, how many processes were left
    running), or the error of a held child that could not be moved (it ran nothing).
    """
    process = child.process
    async with asyncio.TaskGroup() as tasks:
        if stdin is not None and child.stdin is not None:
            tasks.create_task(_release_and_feed(child, stdin))
        readers = [
            tasks.create_task(drain_pipe(pipe, sink))
            for pipe, sink in zip(child.outputs, _sinks(capture), strict=True)
        ]
        ticker = tasks.create_task(_tick(capture, started, on_progress)) if on_progress else None
        # Watch the exit itself (the pidfd), not the pipes' end, which a background child holding
        # them would postpone: then kill what the command left running (which closes the pipes
        # it held), drain what is left to read, and reap the child.
        await process.exited()
        failure = await _containment_failure(child, contained)
        if failure is not None:
            for task in (*readers, *([ticker] if ticker else [])):
                task.cancel()
            return failure
        left_running = await contained.kill(kill_grace_s)
        _, pending = await asyncio.wait(readers, timeout=DRAIN_AFTER_EXIT_S)
        for reader in pending:  # held by something outside the containment: stop reading
            reader.cancel()
        await process.wait()
        if ticker is not None:
            ticker.cancel()
    return bool(pending), left_running


async def _containment_failure(child: _Child, contained: Contained) -> SpawnFailed | None:
    """For a held or self-joining child that has exited (not reaped): the error when it was never
    contained (it then ran nothing of the command), else None."""
    if child.move is not None and (error := await child.move.outcome()) is not None:
        assert isinstance(contained, CgroupContained)
        return contained.move_failed(error)
    if child.joins and child.process.exit_status() == JOIN_FAILED:
        assert isinstance(contained, CgroupContained)
        return contained.join_failure(child.process.pid)
    return None


async def _tick(capture: OutputCapture | SplitCapture, started: float, on_progress: ProgressCallback) -> None:
    while True:
        await asyncio.sleep(PROGRESS_INTERVAL_S)
        await on_progress(time.monotonic() - started, capture.total)


def _sinks(capture: OutputCapture | SplitCapture) -> list[Callable[[bytes], None]]:
    """Where each output pipe's bytes go, in the order of the pipes (stdout, then stderr)."""
    if isinstance(capture, SplitCapture):
        return [capture.feed_stdout, capture.feed_stderr]
    return [capture.feed]


def _signal_group(group: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, number)


async def _stop(
    child: _Child, contained: Contained, grace_s: float, capture: OutputCapture | SplitCapture
) -> None:
    """Kill the child's process group and everything in its containment: TERM, a grace, KILL.

    A held child whose move is still in flight is never moved or released after this starts,
    nor reaped before that write is over (:meth:`ChildProcess.close` reaps it later). Then
    read what the killed processes had written and nobody read yet (at most
    ``DRAIN_AFTER_EXIT_S``: the writers are gone, so the pipes end at once unless something
    outside the containment holds them), so a timed-out or cancelled call reports all of it.
    """
    process = child.process
    gated = _abandon_move(child)
    _signal_group(process.pid, signal.SIGTERM)  # start_new_session: the child leads its group
    await contained.kill(grace_s)
    _signal_group(process.pid, signal.SIGKILL)
    if process.returncode is None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_s):
                await (process.exited() if gated else process.wait())
    with contextlib.suppress(TimeoutError, OSError):
        async with asyncio.timeout(DRAIN_AFTER_EXIT_S):
            for pipe, sink in zip(child.outputs, _sinks(capture), strict=True):
                if pipe.read_fd >= 0:
                    await drain_pipe(pipe, sink)
