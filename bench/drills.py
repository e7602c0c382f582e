"""Survival drills against the real ``relay-shell`` over stdio; each row says survived or failed.

- D1 a child that ignores SIGTERM, under a 2 s timeout: the call ends with kind ``timeout``
  and no process of the command is left (the group got SIGKILL after the grace).
- D2 200 concurrent ``shell_exec`` calls on one connection: every one answered, each with its
  own output.
- D3 sshd killed (listener and sessions) in the middle of an ``ssh_exec``: a clear error
  before the call's deadline; after sshd restarts on the same port, the next call reconnects.
- D4 the audit directory becomes unwritable mid-run (it is moved away and a regular file takes
  its name, since root ignores permission bits): every tier >= 1 call afterwards is refused
  with kind ``unavailable`` and none of their commands ran; a tier-0 call is still answered.
  Then the directory comes back and a tier-1 call runs again (reported in the note).

    .venv/bin/python bench/drills.py
"""

from __future__ import annotations

import asyncio
import time

from common import (
    Figure,
    RelayStdio,
    measure,
    pids_with_marker,
    relay_stdio,
    remove_tree,
    run_main,
    state_dir,
    wait_until,
)
from tests.sshd import ClientKey, start_sshd

CONCURRENT = 200
SSH_DEADLINE_S = 20.0


def verdict(figure: Figure, survived: bool, note: str) -> None:
    figure.value = "survived" if survived else "failed"
    figure.floor = "-"
    figure.judge(survived)
    figure.note = note


async def sigterm_ignored(relay: RelayStdio, figure: Figure) -> None:
    marker = f"300.{time.monotonic_ns() % 10**9:09d}"
    started = time.perf_counter()
    result = await relay.call("shell_exec", {"command": f"trap '' TERM; sleep {marker}", "timeout": 2})
    elapsed = time.perf_counter() - started
    gone = await wait_until(lambda: not pids_with_marker(marker), 5.0)
    survived = result.error_kind == "timeout" and gone and elapsed < 2 + 10
    verdict(
        figure,
        survived,
        f"kind {result.error_kind} after {elapsed:.1f} s (timeout 2 s + kill grace); "
        f"processes left: {pids_with_marker(marker) or 'none'}.",
    )


async def concurrent_calls(relay: RelayStdio, figure: Figure) -> None:
    async def one(index: int) -> bool:
        result = await relay.call("shell_exec", {"command": f"echo call-{index}"})
        return not result.is_error and result.data.get("output") == f"call-{index}\n"

    started = time.perf_counter()
    async with asyncio.timeout(120):
        answers = await asyncio.gather(*(one(index) for index in range(CONCURRENT)), return_exceptions=True)
    elapsed = time.perf_counter() - started
    good = sum(1 for answer in answers if answer is True)
    raised = [answer for answer in answers if isinstance(answer, BaseException)]
    note = f"{good}/{CONCURRENT} answered correctly in {elapsed:.1f} s"
    if raised:
        note += f"; {len(raised)} raised, first: {type(raised[0]).__name__}: {raised[0]}"
    verdict(figure, good == CONCURRENT, note + ".")


async def sshd_killed(figure: Figure) -> None:
    state = state_dir()
    key = ClientKey.create(state)
    instance = start_sshd(key)
    try:
        async with relay_stdio(state) as relay:
            base = {"host": instance.target(), "key_path": str(key.private_path)}
            warm = await relay.call("ssh_exec", {**base, "command": "true"})
            if warm.is_error:
                raise RuntimeError(f"ssh_exec does not work at all: {warm.text[:300]}")
            marker = f"30.{time.monotonic_ns() % 10**9:09d}"
            call = asyncio.create_task(
                relay.call("ssh_exec", {**base, "command": f"sleep {marker}", "timeout": SSH_DEADLINE_S})
            )
            if not await wait_until(lambda: bool(pids_with_marker(marker)), 10.0):
                raise RuntimeError("the remote command never started")
            killed_at = time.perf_counter()
            instance.stop()
            result = await call
            answered_s = time.perf_counter() - killed_at
            instance.restart()
            again = await relay.call("ssh_exec", {**base, "command": "echo back"})
        clear = result.is_error and result.error_kind not in (None, "timeout") and answered_s < SSH_DEADLINE_S
        reconnected = (
            not again.is_error and (again.data.get("stdout") or again.data.get("output")) == "back\n"
        )
        first_line = result.text.splitlines()[0][:160] if result.text else ""
        verdict(
            figure,
            clear and reconnected,
            f"error kind {result.error_kind} {answered_s:.2f} s after the kill (deadline {SSH_DEADLINE_S:g} s): "
            f"{first_line!r}; after restart on port {instance.port}: "
            f"{'reconnected' if reconnected else 'FAILED: ' + again.text[:160]}.",
        )
    finally:
        instance.remove()
        remove_tree(state)


async def audit_unwritable(figure: Figure) -> None:
    state = state_dir()
    audit_dir = state / "auditdir"
    try:
        async with relay_stdio(state, RELAY_SHELL_AUDIT_PATH=str(audit_dir / "audit.jsonl")) as relay:
            if (await relay.call("shell_exec", {"command": "true"})).is_error:
                raise RuntimeError("shell_exec does not work before the drill")
            audit_dir.rename(state / "auditdir.moved")
            audit_dir.write_text("a regular file where the audit directory was\n")
            outcomes = []
            for index in range(3):
                marker = state / f"ran-{index}"
                result = await relay.call("shell_exec", {"command": f"touch {marker}"})
                outcomes.append((result.error_kind, marker.exists()))
            tier0 = await relay.call("server_info", {})
            audit_dir.unlink()
            (state / "auditdir.moved").rename(audit_dir)
            recovered = await relay.call("shell_exec", {"command": f"touch {state / 'ran-after'}"})
        ran = [index for index, (_, exists) in enumerate(outcomes) if exists]
        refused = all(kind == "unavailable" for kind, _ in outcomes)
        logged = "audit write failed" in relay.stderr_path.read_text(errors="replace")
        note = (
            f"tier-1 calls after the break: kinds {[kind for kind, _ in outcomes]}, commands that ran: "
            f"{ran or 'none'}{' (their records only reached stderr)' if ran and logged else ''}; "
            f"tier-0 server_info {'answered' if not tier0.is_error else 'refused'}; after the directory "
            f"came back: {'ran' if not recovered.is_error else 'refused (' + str(recovered.error_kind) + ')'}."
        )
        if ran:
            note += (
                " The sink is only marked degraded by a failed write, so the first call after the break "
                "passes admission, runs, and then cannot be recorded; checking that the audit path is "
                "still writable before executing a tier >= 1 call (not only after) would close it."
            )
        verdict(figure, refused and not ran and not tier0.is_error, note)
    finally:
        remove_tree(state)


async def main() -> list[Figure]:
    figures: list[Figure] = []
    state = state_dir()
    try:
        async with relay_stdio(state) as relay:
            await measure(
                figures, "D1", "child ignoring SIGTERM under a timeout", "survived",
                lambda figure: sigterm_ignored(relay, figure),
            )  # fmt: skip
            await measure(
                figures, "D2", f"{CONCURRENT} concurrent shell_exec calls", "survived",
                lambda figure: concurrent_calls(relay, figure),
            )  # fmt: skip
    finally:
        remove_tree(state)
    await measure(figures, "D3", "sshd killed during ssh_exec, then restarted", "survived", sshd_killed)
    await measure(figures, "D4", "audit directory unwritable mid-run", "survived", audit_unwritable)
    return figures


if __name__ == "__main__":
    run_main(main)
