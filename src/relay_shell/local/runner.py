"""One-shot local processes with bounded time and memory (docs/architecture.md, "Local execution").

The child runs in its own session and process group. Output is streamed into an
:class:`~relay_shell.governance.bounds.OutputCapture` (bounded whatever it prints). On a
timeout, a cancellation or any other exit path the whole process group gets SIGTERM,
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

from relay_shell.capture import OutputCapture, SplitCapture, capture_fields, render_capture
from relay_shell.errors import ExecTimeout, PartialOutput, SpawnFailed
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
    on_progress: ProgressCallback | None = None,
    kill_grace_s: float = KILL_GRACE_S,
) -> ExecReport:
    """Run ``spec`` to completion within ``timeout_s``.

    Returns the report for any exit status (non-zero is not an error); a child killed by
    signal N reports ``128 + N`` and the signal's name. ``pipe_held`` says that background
    processes kept the output pipe open after the child exited.

    Raises:
        SpawnFailed: the program could not be started.
        ExecTimeout: the deadline passed; the process group was killed; carries partial output.
        asyncio.CancelledError: re-raised after the process group was killed.
    """
    capture: OutputCapture | SplitCapture = (
        OutputCapture(budget) if spec.merge_stderr else SplitCapture(budget)
    )
    started = time.monotonic()
    try:
        process = await asyncio.create_subprocess_exec(
            *spec.argv,
            stdin=asyncio.subprocess.PIPE if spec.stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT if spec.merge_stderr else asyncio.subprocess.PIPE,
            env=spec.env,
            cwd=spec.cwd,
            start_new_session=True,
            limit=READ_CHUNK,
        )
    except (OSError, ValueError) as exc:
        raise SpawnFailed(f"cannot start {spec.argv[0]!r}: {exc}") from exc

    group = _ProcessGroup(process)
    try:
        async with asyncio.timeout(timeout_s):
            pipe_held = await _pump(process, spec.stdin, capture, started, on_progress)
    except TimeoutError:
        with anyio.CancelScope(shield=True):
            await group.kill(kill_grace_s)
        elapsed = time.monotonic() - started
        raise ExecTimeout(
            f"timed out after {elapsed:.1f} s (limit {timeout_s:g} s); the process group was killed",
            PartialOutput(render_capture(capture), capture_fields(capture)),
        ) from None
    except BaseException:
        with anyio.CancelScope(shield=True):
            await group.kill(kill_grace_s)
        raise
    returncode = process.returncode if process.returncode is not None else -1
    return ExecReport(
        exit_code=128 - returncode if returncode < 0 else returncode,
        signal=signal_name(-returncode) if returncode < 0 else None,
        capture=capture,
        duration_ms=round((time.monotonic() - started) * 1000),
        pipe_held=pipe_held,
        pid=process.pid,
    )


async def _pump(
    process: asyncio.subprocess.Process,
    stdin: bytes | None,
    capture: OutputCapture | SplitCapture,
    started: float,
    on_progress: ProgressCallback | None,
) -> bool:
    """Feed stdin, read output to EOF, wait for exit. Returns True if the pipe outlived the child."""
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
        # them can postpone forever: watch the exit itself, drain briefly, then stop reading.
        await _child_exited(process.pid)
        _, pending = await asyncio.wait(readers, timeout=DRAIN_AFTER_EXIT_S)
        for reader in pending:
            reader.cancel()
        if pending:
            _close_output_pipes(process)
        await process.wait()
        if ticker is not None:
            ticker.cancel()
    return bool(pending)


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


class _ProcessGroup:
    """Kills a child's whole process group: TERM, a grace, then KILL."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.pgid = process.pid  # start_new_session: the child leads its own group

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)

    async def kill(self, grace_s: float) -> None:
        self._signal(signal.SIGTERM)
        if self.process.returncode is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace_s):
                    await self.process.wait()
        # Members other than the leader may ignore TERM; KILL whatever is left of the group.
        self._signal(signal.SIGKILL)
        if self.process.returncode is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace_s):
                    await self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.feed_eof()
