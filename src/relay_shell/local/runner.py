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
from relay_shell.local.contained import RELEASE_LINE, Contained
from relay_shell.report import ExecReport, signal_name

READ_CHUNK = 256 * 1024
"""Largest read from a child's pipe, also the StreamReader limit (it buffers up to 2x this)."""
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
    process = await _spawn(spec, contained)
    try:
        async with asyncio.timeout(timeout_s):
            pipe_held, left_running = await _pump(
                process, spec.stdin, capture, started, on_progress, contained, kill_grace_s
            )
    except TimeoutError:
        with anyio.CancelScope(shield=True):
            await _stop(process, contained, kill_grace_s, capture)
        elapsed = time.monotonic() - started
        raise ExecTimeout(
            f"timed out after {elapsed:.1f} s (limit {timeout_s:g} s); everything it started was killed",
            PartialOutput(render_capture(capture), capture_fields(capture)),
        ) from None
    except BaseException:
        with anyio.CancelScope(shield=True):
            await _stop(process, contained, kill_grace_s, capture)
        raise
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


async def _spawn(spec: ProcessSpec, contained: Contained) -> asyncio.subprocess.Process:
    """Start the child, move it into ``contained``, then let a held child run.

    Raises:
        SpawnFailed: the program could not be started, or the child could not be contained
            (it is then killed before it ran anything of the command).
    """
    launch = contained.launch(spec.argv, env=spec.env, cwd=spec.cwd, input_follows=spec.stdin is not None)
    stdin_pipe = launch.held or spec.stdin is not None
    try:
        process = await asyncio.create_subprocess_exec(
            *launch.argv,
            stdin=asyncio.subprocess.PIPE if stdin_pipe else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT if spec.merge_stderr else asyncio.subprocess.PIPE,
            env=spec.env,
            cwd=spec.cwd,
            start_new_session=True,
            limit=READ_CHUNK,
        )
    except (OSError, ValueError) as exc:
        raise SpawnFailed(f"cannot start {spec.argv[0]!r}: {exc}") from exc
    try:
        await contained.adopt_off_loop(process.pid)
    except BaseException:  # not contained (or cancelled meanwhile): still held, nothing of the command ran
        with anyio.CancelScope(shield=True):
            _signal_group(process.pid, signal.SIGKILL)
            await process.wait()
        raise
    if launch.held and process.stdin is not None:
        process.stdin.write(RELEASE_LINE)
        if spec.stdin is None:
            process.stdin.close()
    return process


async def _pump(
    process: asyncio.subprocess.Process,
    stdin: bytes | None,
    capture: OutputCapture | SplitCapture,
    started: float,
    on_progress: ProgressCallback | None,
    contained: Contained,
    kill_grace_s: float,
) -> tuple[bool, int]:
    """Feed stdin, read output, wait for exit, kill what the command left running, drain.

    Returns (the pipe outlived the containment's processes, how many processes were left running).
    """
    async with asyncio.TaskGroup() as tasks:
        if stdin is not None and process.stdin is not None:
            tasks.create_task(_feed_stdin(process.stdin, stdin))
        readers = []
        if isinstance(capture, SplitCapture):
            assert process.stdout is not None
            assert process.stderr is not None
            readers.append(tasks.create_task(_read_stream(process.stdout, capture.feed_stdout)))
            readers.append(tasks.create_task(_read_stream(process.stderr, capture.feed_stderr)))
        else:
            assert process.stdout is not None
            readers.append(tasks.create_task(_read_stream(process.stdout, capture.feed)))
        ticker = tasks.create_task(_tick(capture, started, on_progress)) if on_progress else None
        # Process.wait() also waits for the pipes to close, which a background child holding
        # them would postpone: watch the exit itself, then kill what the command left running
        # (which closes the pipes it held) and drain what is left to read.
        await _child_exited(process.pid)
        left_running = await contained.kill(kill_grace_s)
        _, pending = await asyncio.wait(readers, timeout=DRAIN_AFTER_EXIT_S)
        for reader in pending:
            reader.cancel()
        if pending:  # held by something outside the containment: stop reading
            _close_output_pipes(process)
        await process.wait()
        if ticker is not None:
            ticker.cancel()
    return bool(pending), left_running


async def _child_exited(pid: int) -> None:
    """Return once process ``pid`` has exited (a pidfd on the event loop; no polling)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:  # already exited and reaped
        return
    loop = asyncio.get_running_loop()
    exited = loop.create_future()

    def on_readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, on_readable)
    try:
        await exited
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


def _close_output_pipes(process: asyncio.subprocess.Process) -> None:
    """Close our read ends of stdout/stderr so the transport (and wait()) can finish."""
    transport = getattr(process, "_transport", None)
    if transport is None:
        return
    for fd in (1, 2):
        pipe = transport.get_pipe_transport(fd)
        if pipe is not None:
            pipe.close()


async def _feed_stdin(writer: asyncio.StreamWriter, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        writer.write(data)
        await writer.drain()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError, OSError):
        writer.close()
        await writer.wait_closed()


async def _read_stream(reader: asyncio.StreamReader, sink: Callable[[bytes], None]) -> None:
    while chunk := await reader.read(READ_CHUNK):
        sink(chunk)


async def _tick(capture: OutputCapture | SplitCapture, started: float, on_progress: ProgressCallback) -> None:
    while True:
        await asyncio.sleep(PROGRESS_INTERVAL_S)
        await on_progress(time.monotonic() - started, capture.total)


def _signal_group(group: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, number)


async def _stop(
    process: asyncio.subprocess.Process,
    contained: Contained,
    grace_s: float,
    capture: OutputCapture | SplitCapture,
) -> None:
    """Kill the child's process group and everything in its containment: TERM, a grace, KILL.

    Then read what the killed processes had written and nobody read yet (at most
    ``DRAIN_AFTER_EXIT_S``: the writers are gone, so the pipes end at once unless something
    outside the containment holds them), so a timed-out or cancelled call reports all of it.
    """
    _signal_group(process.pid, signal.SIGTERM)  # start_new_session: the child leads its group
    await contained.kill(grace_s)
    _signal_group(process.pid, signal.SIGKILL)
    if process.returncode is None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_s):
                await process.wait()
    if isinstance(capture, SplitCapture):
        left = [(process.stdout, capture.feed_stdout), (process.stderr, capture.feed_stderr)]
    else:
        left = [(process.stdout, capture.feed)]
    with contextlib.suppress(TimeoutError, OSError):
        async with asyncio.timeout(DRAIN_AFTER_EXIT_S):
            for stream, sink in left:
                if stream is not None:
                    await _read_stream(stream, sink)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.feed_eof()
