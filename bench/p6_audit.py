"""P6: the audit trail's cost: one chained record, and ``--verify-audit`` on 100,000 records.

- P6a: ``AuditSink.write`` of RECORDS records shaped like a ``shell_exec`` call's record, one
  after another, into a fresh file (chained JSON Lines, the default). Value: wall time per
  record. Floor: the same records as ``json.dumps`` + ``os.write`` on an ``O_APPEND`` fd (no
  chain, no lock, no rotation check). Target: < 0.2 ms per record.
- P6b: ``relay-shell --verify-audit PATH`` on that file (process start included). Floor: the
  same interpreter reading the file and parsing every line with ``json.loads``. Target: < 2 s.

    .venv/bin/python bench/p6_audit.py
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from common import PYTHON, RELAY, Figure, measure, profile_command, ratio, remove_tree, run_main, state_dir

from relay_shell.governance.audit.writer import AuditSink

RECORDS = 100_000
TARGET_RECORD_MS = 0.2
TARGET_VERIFY_S = 2.0
PARSE_ONLY = "import json,sys\nwith open(sys.argv[1],'rb') as f:\n    for line in f: json.loads(line)\n"


def sample_record(index: int) -> dict[str, object]:
    """What the pipeline writes for a small ``shell_exec`` (values vary per record)."""
    return {
        "tool": "shell_exec",
        "tier": 1,
        "decision": "allowed",
        "outcome": "ok",
        "args": {"command": f"systemctl status nginx --no-pager # {index}", "timeout": None, "cwd": None},
        "target": None,
        "exit_code": 0,
        "duration_ms": 3 + index % 40,
        "output_sha256": f"{index:064x}",
        "output_len": 812,
        "stream_sha256": f"{index * 7:064x}",
        "stream_len": 790,
        "request_id": str(index),
        "client_id": None,
        "principal": None,
        "policy_mode": "open",
        "rule": None,
        "patterns_version": 3,
    }


def write_sink(path: Path) -> float:
    sink = AuditSink(path)
    try:
        started = time.perf_counter()
        for index in range(RECORDS):
            sink.write(sample_record(index))
        return time.perf_counter() - started
    finally:
        sink.close()


def write_raw(path: Path) -> float:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        started = time.perf_counter()
        for index in range(RECORDS):
            line = json.dumps(sample_record(index), separators=(",", ":")) + "\n"
            os.write(fd, line.encode())
        return time.perf_counter() - started
    finally:
        os.close(fd)


def run_timed(argv: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run(
        argv, check=False, capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"}
    )
    return time.perf_counter() - started, done


async def audit_figures(write: Figure, verify: Figure, state: Path) -> None:
    trail = state / "audit.jsonl"
    sink_s = write_sink(trail)
    raw_s = write_raw(state / "raw.jsonl")
    per_record_ms = sink_s / RECORDS * 1000
    write.value = f"{per_record_ms:.4f} ms/record"
    write.floor = f"{raw_s / RECORDS * 1000:.4f} ms/record"
    write.ratio = ratio(sink_s, raw_s)
    write.judge(per_record_ms < TARGET_RECORD_MS)
    write.details = {"records": RECORDS, "sink_total_s": round(sink_s, 2), "bytes": trail.stat().st_size}
    write.note = (
        f"{RECORDS} records ({trail.stat().st_size / RECORDS:.0f} bytes each) in {sink_s:.2f} s; the floor "
        "is json.dumps + os.write without chain, locks or rotation check."
    )
    verify_s, done = min(
        (run_timed([RELAY, "--verify-audit", str(trail)]) for _ in range(2)), key=lambda pair: pair[0]
    )
    if done.returncode != 0 or f"{RECORDS} records" not in done.stdout:
        raise RuntimeError(f"--verify-audit failed ({done.returncode}): {done.stdout} {done.stderr[-300:]}")
    parse_s = min(run_timed([PYTHON, "-c", PARSE_ONLY, str(trail)])[0] for _ in range(2))
    start_s = min(run_timed([RELAY, "--version"])[0] for _ in range(2))
    verify.value, verify.floor = f"{verify_s:.2f} s", f"{parse_s:.2f} s"
    verify.ratio = ratio(verify_s, parse_s)
    verify.judge(verify_s < TARGET_VERIFY_S)
    verify.details = {"records": RECORDS, "relay_version_start_s": round(start_s, 3)}
    verify.note = (
        f"best of 2, process start included (`relay-shell --version` alone: {start_s:.2f} s); the floor "
        "parses every line with json.loads in the same interpreter, without the chain check."
    )
    if verify.holds == "no":
        profile = profile_command([RELAY, "--verify-audit", str(trail)], state / "p6b.pyspy")
        verify.note += f" Profile of one run: {profile}"


async def main() -> list[Figure]:
    figures: list[Figure] = []
    verify = Figure(
        key="P6b", title=f"--verify-audit on {RECORDS:,} records", target=f"< {TARGET_VERIFY_S:g} s"
    )
    state = state_dir()

    async def both(write: Figure) -> None:
        try:
            await audit_figures(write, verify, state)
        except Exception as exc:
            if verify.holds == "error" and not verify.note:
                verify.note = f"bench failed: {type(exc).__name__}: {exc}"[:600]
            raise

    try:
        await measure(
            figures, "P6a", "audit record, chained (AuditSink.write)", f"< {TARGET_RECORD_MS} ms", both
        )
    finally:
        remove_tree(state)
    figures.append(verify)
    return figures


if __name__ == "__main__":
    run_main(main)
