"""relay-shell's own work per call, phase by phase, in one process and nearly independent of load.

Not a figure of the table: a profiling aid for P1 (what a ``shell_exec true`` or a
``server_info`` costs besides the protocol and the spawn). relay-shell is built in this
process (default settings, audit on, no anchor) and each phase of a call is run on its own
with the values a real call gives it, in tight loops; a phase's figure is the CPU time of
this thread per run (``time.thread_time``, the best of three loops), so a busy machine moves
it far less than a wall time. The phases:

- ``call_tool``: the input size, unknown-argument and stray-boolean checks and the argument
  validation ``RelayServer.call_tool`` does before the tool body;
- ``classify``: the parse of ``true`` (``Analyzer.analyze``);
- ``admit``: the policy decision on it;
- ``execute (server_info)``: ``describe()``, server_info's executor;
- ``execute (detach)``: the yield-capable wrapper of a command-running call (a task for the
  work, its live output, the wait) around an executor that returns at once;
- ``audit``: the record of a finished call (arguments bounded and redacted), the sink's
  write (the file's checks, the chain, one line), the metrics;
- ``adapter``: the wire result.

Run it with two trees' interpreters to compare them (``/path/to/other/.venv/bin/python
bench/phases.py``: each venv imports its own ``src``).

    .venv/bin/python bench/phases.py [--loops 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import time
from collections.abc import Awaitable, Callable

from common import in_process_settings, remove_tree, state_dir

from relay_shell.app import _check_known, _check_no_stray_booleans, build_server
from relay_shell.governance.bounds import check_input_size
from relay_shell.governance.call import Background, Call, Identity, Outcome, Plan, Reply
from relay_shell.governance.policy import build_probe, decide
from relay_shell.governance.record import CallState, compose_record
from relay_shell.local.commands import prepare_exec
from relay_shell.tools.adapter import tool_result
from relay_shell.tools.server_info import describe
from relay_shell.vocabulary import AuditOutcome, Tier

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def best_us(run: Callable[[], object], loops: int) -> float:
    """CPU microseconds of this thread per ``run()``: the best of three loops, after a warm-up."""
    for _ in range(200):
        run()
    best = float("inf")
    for _ in range(3):
        started = time.thread_time_ns()
        for _ in range(loops):
            run()
        best = min(best, (time.thread_time_ns() - started) / loops / 1000)
    return best


async def best_us_async(run: Callable[[], Awaitable[object]], loops: int) -> float:
    """:func:`best_us` for a coroutine (the event loop's turns it causes included)."""
    for _ in range(200):
        await run()
    best = float("inf")
    for _ in range(3):
        started = time.thread_time_ns()
        for _ in range(loops):
            await run()
        best = min(best, (time.thread_time_ns() - started) / loops / 1000)
    return best


async def no_op(request: None, call: Call) -> Outcome:
    return Outcome(text="")


async def main(loops: int) -> None:
    state = state_dir()
    try:
        os.chdir(state)
        settings = in_process_settings(state)
        server = build_server(settings)
        svc = server.services
        gc.collect()
        gc.freeze()  # as cli.main does: the server's own objects are not rescanned
        identity = Identity(request_id="3", client_id="bench/1")
        arguments: dict[str, object] = {"command": "true"}
        tool = server._tool_manager.get_tool("shell_exec")
        assert tool is not None
        prepared = prepare_exec("true", stdin="", env=None, cwd="", use_shell=True, merge_stderr=True)
        analyzer = svc.pipeline.analyzer
        analysis = analyzer.analyze(prepared.call)
        reply = Reply(
            text="exit 0 · 0.00 s\n",
            data={"output": "", "truncated": False, "output_bytes": 0, "exit_code": 0, "tier": 0},
        )

        def finished() -> CallState:
            state = CallState(tool="shell_exec", args=arguments, binding=arguments, identity=identity)
            state.tier, state.commands, state.rules = Tier.READ_ONLY, ("true",), ("read.known_safe",)
            state.outcome_kind = AuditOutcome.OK
            state.outcome = Outcome(text="", exit_code=0, stream_sha256=EMPTY_SHA256, stream_len=0)
            return state

        def checks() -> None:
            check_input_size(arguments, settings.max_input_bytes)
            _check_known(arguments, tool.parameters)
            _check_no_stray_booleans(arguments, tool.parameters)
            tool.fn_metadata.validate_arguments(arguments)

        record = compose_record(finished(), reply, 0.002, "open")
        probe = build_probe("shell_exec", prepared.probe, [])
        phases: list[tuple[str, float]] = [
            ("call_tool: argument checks and validation", best_us(checks, loops)),
            ("classify: the parse of `true`", best_us(lambda: analyzer.analyze(prepared.call), loops)),
            (
                "admit: the policy decision",
                best_us(
                    lambda: decide(svc.pipeline.policy, "shell_exec", 0, probe, analysis=analysis), loops
                ),
            ),
            ("execute (server_info): describe()", best_us(lambda: describe(svc, identity), loops)),
        ]
        detacher = svc.pipeline.detacher
        assert detacher is not None
        plan = Plan(no_op, None, timeout_s=60.0, background=Background(40.0, "true", None, False, 65536))

        async def progress(value: float, total: float | None, message: str | None) -> None:
            return None

        call = Call(
            tool="shell_exec", tier=Tier.READ_ONLY, timeout_s=60.0, identity=identity, progress=progress
        )
        waiting = CallState(tool="shell_exec", args=arguments, binding=arguments, identity=identity)
        phases.append(
            (
                "execute (detach): the yield-capable wrapper, no-op executor",
                await best_us_async(
                    lambda: detacher.execute(waiting, plan, call, plan.background, after_s=40.0, task=False),
                    loops,
                ),
            )
        )
        phases += [
            (
                "audit: the record (arguments bounded and redacted)",
                best_us(lambda: compose_record(finished(), reply, 0.002, "open"), loops),
            ),
            (
                "audit: the sink's write (checks, chain, line)",
                best_us(lambda: svc.audit.write(record), loops),
            ),
            (
                "metrics: the call counted",
                best_us(
                    lambda: svc.metrics.record_call(
                        tool="shell_exec",
                        tier=0,
                        mode="open",
                        outcome="ok",
                        duration_s=0.002,
                        truncated=False,
                    ),
                    loops,
                ),
            ),
            ("adapter: the wire result", best_us(lambda: tool_result(reply, None), loops)),
        ]
        for label, micros in phases:
            print(f"{micros:8.1f} us  {label}")
    finally:
        remove_tree(state)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--loops", type=int, default=3000)
    asyncio.run(main(parser.parse_args().loops))
