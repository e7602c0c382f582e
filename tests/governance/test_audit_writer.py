"""The audit sink: records on disk, file modes, resume, rotation, degraded state, locking."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from pathlib import Path

import pytest

from relay_shell.config import AuditFormat
from relay_shell.errors import AuditUnavailable
from relay_shell.governance.audit.chain import GENESIS, canonical_json
from relay_shell.governance.audit.formats import parse_line
from relay_shell.governance.audit.verify import verify_chain
from relay_shell.governance.audit.writer import AuditSink, format_timestamp

FIXED = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def fixed_clock() -> datetime:
    return FIXED


def call(number: int = 0, **extra: object) -> dict[str, object]:
    record: dict[str, object] = {
        "tool": "exec",
        "tier": 1,
        "decision": "allowed",
        "outcome": "ok",
        "args": {"command": f"echo {number}"},
        "exit_code": 0,
        "duration_ms": 3,
    }
    record.update(extra)
    return record


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def audit_path(tmp_path: Path) -> Path:
    return tmp_path / "logs" / "audit.jsonl"


def test_round_trip_records_are_chained_and_verify(audit_path: Path) -> None:
    sink = AuditSink(audit_path, clock=fixed_clock)
    returned = [sink.write(call(number)) for number in range(3)]
    sink.close()

    on_disk = read_jsonl(audit_path)
    assert on_disk == returned
    assert [record["seq"] for record in on_disk] == [1, 2, 3]
    assert on_disk[0]["prev"] == GENESIS
    assert on_disk[1]["prev"] == on_disk[0]["chain"]
    assert on_disk[2]["prev"] == on_disk[1]["chain"]
    for record in on_disk:
        assert record["ts"] == "2025-01-02T03:04:05.678Z"
        without_chain = {key: value for key, value in record.items() if key != "chain"}
        expected = hashlib.sha256(str(record["prev"]).encode() + canonical_json(without_chain)).hexdigest()
        assert record["chain"] == expected
    assert list(on_disk[0])[:2] == ["ts", "seq"]
    assert list(on_disk[0])[-2:] == ["prev", "chain"]
    assert sink.seq == 3
    assert sink.chain_head == on_disk[2]["chain"]
    assert verify_chain(audit_path).ok


def test_lines_are_compact_utf8_without_ascii_escapes(audit_path: Path) -> None:
    sink = AuditSink(audit_path)
    sink.write(call(args={"command": "echo héllo ✓"}))
    raw = audit_path.read_bytes()
    assert raw.endswith(b"\n")
    assert raw.count(b"\n") == 1
    assert "héllo ✓".encode() in raw
    assert b'", "' not in raw
    assert b'": ' not in raw


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), "2025-01-02T03:04:05.678Z"),
        (datetime(2025, 1, 2, 3, 4, 5), "2025-01-02T03:04:05.000Z"),
        (
            datetime(2025, 1, 2, 5, 4, 5, 1000, tzinfo=timezone(timedelta(hours=2))),
            "2025-01-02T03:04:05.001Z",
        ),
    ],
)
def test_timestamps_are_utc_with_milliseconds(moment: datetime, expected: str) -> None:
    assert format_timestamp(moment) == expected


def test_sink_owns_seq_prev_chain_but_keeps_a_given_ts(audit_path: Path) -> None:
    sink = AuditSink(audit_path, clock=fixed_clock)
    forged = sink.write(call(seq=99, prev="f" * 64, chain="e" * 64, ts="2020-01-01T00:00:00.000Z"))
    as_datetime = sink.write(call(ts=datetime(2024, 6, 1, tzinfo=UTC)))
    assert forged["seq"] == 1
    assert forged["prev"] == GENESIS
    assert forged["chain"] != "e" * 64
    assert forged["ts"] == "2020-01-01T00:00:00.000Z"
    assert as_datetime["ts"] == "2024-06-01T00:00:00.000Z"
    assert verify_chain(audit_path).ok


class Color(StrEnum):
    RED = "red"


def test_values_json_cannot_hold_are_written_safely_and_still_verify(audit_path: Path) -> None:
    sink = AuditSink(audit_path)
    written = sink.write(
        call(
            args={"cwd": Path("/srv"), "mode": Color.RED, "set": {2, 1}, "nan": float("nan"), 3: "int key"},
            target=("web1", "web2"),
            undecodable="name-\udcff",
        )
    )
    assert written["args"] == {"cwd": "/srv", "mode": "red", "set": [1, 2], "nan": "nan", "3": "int key"}
    assert written["target"] == ["web1", "web2"]
    assert written["undecodable"] == "name-\\udcff"
    assert read_jsonl(audit_path) == [written]
    assert verify_chain(audit_path).ok


def test_file_is_created_0600_in_a_new_0700_directory(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "audit.jsonl"
    old_umask = os.umask(0o277)  # would give 0400: the sink must still make it 0600
    try:
        AuditSink(path).write(call())
    finally:
        os.umask(old_umask)
    assert mode_of(path) == 0o600
    assert mode_of(path.parent) == 0o700


def test_existing_directory_and_file_modes_are_left_alone(tmp_path: Path) -> None:
    directory = tmp_path / "shared"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    path = directory / "audit.jsonl"
    path.touch()
    path.chmod(0o640)
    AuditSink(path).write(call())
    assert mode_of(directory) == 0o755
    assert mode_of(path) == 0o640


def test_chain_and_seq_resume_in_a_new_sink(audit_path: Path) -> None:
    first = AuditSink(audit_path)
    first.write(call(1))
    last = first.write(call(2))
    first.close()

    second = AuditSink(audit_path)
    assert second.seq == 2
    assert second.chain_head == last["chain"]
    resumed = second.write(call(3))
    assert resumed["seq"] == 3
    assert resumed["prev"] == last["chain"]
    report = verify_chain(audit_path)
    assert report.ok
    assert report.records == 3


def test_resume_after_a_record_larger_than_the_read_blocks(audit_path: Path) -> None:
    big = AuditSink(audit_path).write(call(args={"script": "x" * (2 * 1024 * 1024)}))
    resumed = AuditSink(audit_path).write(call(2))
    assert (resumed["seq"], resumed["prev"]) == (2, big["chain"])
    assert verify_chain(audit_path).ok


def test_write_after_close_reopens_and_continues(audit_path: Path) -> None:
    sink = AuditSink(audit_path)
    first = sink.write(call(1))
    sink.close()
    sink.close()
    second = sink.write(call(2))
    assert (second["seq"], second["prev"]) == (2, first["chain"])
    assert sink.path == audit_path
    assert verify_chain(audit_path).ok


def test_check_follows_a_rotation_and_creates_the_new_file(audit_path: Path) -> None:
    sink = AuditSink(audit_path)
    sink.write(call(1))
    os.rename(audit_path, audit_path.with_name("audit.jsonl.1"))
    assert sink.check() is True
    assert audit_path.exists()
    assert mode_of(audit_path) == 0o600
    assert sink.seq == 1


def test_torn_last_line_does_not_swallow_the_next_record(audit_path: Path) -> None:
    AuditSink(audit_path).write(call(1))
    with audit_path.open("ab") as handle:
        handle.write(b'{"ts":"2025-01-01T00:00:00.000Z","seq":2,"tool":"ex')  # crash mid-write

    sink = AuditSink(audit_path)
    assert sink.seq == 1  # the torn record is not trusted
    written = sink.write(call(3))

    lines = audit_path.read_bytes().split(b"\n")
    assert parse_line(lines[1]) is None
    assert parse_line(lines[2]) == written
    report = verify_chain(audit_path)
    assert (report.ok, report.first_bad_line) == (False, 2)


def test_rotation_by_rename_creates_a_new_0600_file_and_continues_the_chain(audit_path: Path) -> None:
    sink = AuditSink(audit_path)
    sink.write(call(1))
    before = sink.write(call(2))
    rotated = audit_path.with_name("audit.jsonl.1")
    os.rename(audit_path, rotated)

    after = sink.write(call(3))
    sink.write(call(4))

    assert mode_of(audit_path) == 0o600
    assert [record["seq"] for record in read_jsonl(rotated)] == [1, 2]
    new_records = read_jsonl(audit_path)
    assert [record["seq"] for record in new_records] == [3, 4]
    assert after["prev"] == before["chain"]
    assert verify_chain(rotated).ok
    report = verify_chain(audit_path)
    assert (report.ok, report.records) == (True, 2)


def test_rotation_picks_up_what_another_writer_appended_to_the_old_file(audit_path: Path) -> None:
    first, second = AuditSink(audit_path), AuditSink(audit_path)
    first.write(call(1))
    second.write(call(2))
    last_in_old_file = first.write(call(3))  # ``second`` has not seen this one yet
    os.rename(audit_path, audit_path.with_name("audit.jsonl.1"))

    after = second.write(call(4))
    assert (after["seq"], after["prev"]) == (4, last_in_old_file["chain"])
    assert first.write(call(5))["prev"] == after["chain"]
    assert [record["seq"] for record in read_jsonl(audit_path)] == [4, 5]
    assert verify_chain(audit_path).ok


def test_removed_file_and_directory_are_recreated(audit_path: Path) -> None:
    sink = AuditSink(audit_path)
    first = sink.write(call(1))
    shutil.rmtree(audit_path.parent)
    second = sink.write(call(2))
    assert second["prev"] == first["chain"]
    assert read_jsonl(audit_path) == [second]
    assert mode_of(audit_path.parent) == 0o700


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="logrotate is not installed")
def test_real_logrotate_with_create(tmp_path: Path, audit_path: Path) -> None:
    sink = AuditSink(audit_path)
    last = sink.write(call(1))
    config = tmp_path / "logrotate.conf"
    config.write_text(f"{audit_path} {{\n  daily\n  rotate 3\n  create 0600 root root\n  missingok\n}}\n")
    result = subprocess.run(
        ["logrotate", "-f", "-s", str(tmp_path / "state"), str(config)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert audit_path.with_name("audit.jsonl.1").exists()
    assert audit_path.stat().st_size == 0  # logrotate created the new, empty file

    after = sink.write(call(2))
    assert after["prev"] == last["chain"]
    assert after["seq"] == 2
    assert read_jsonl(audit_path) == [after]
    assert mode_of(audit_path) == 0o600
    assert verify_chain(audit_path).ok


def test_append_only_attribute_is_compatible(audit_path: Path) -> None:
    audit_path.parent.mkdir()
    AuditSink(audit_path).write(call(1))
    if subprocess.run(["chattr", "+a", str(audit_path)], capture_output=True, check=False).returncode != 0:
        pytest.skip("this filesystem does not support chattr +a")
    try:
        with pytest.raises(PermissionError):
            audit_path.write_text("overwritten\n")  # the attribute is really in force
        sink = AuditSink(audit_path)
        assert not sink.degraded
        sink.write(call(2))
        sink.write(call(3))
    finally:
        subprocess.run(["chattr", "-a", str(audit_path)], check=True)
    report = verify_chain(audit_path)
    assert (report.ok, report.records) == (True, 3)


def test_chain_disabled_writes_no_chain_fields_but_keeps_seq(audit_path: Path) -> None:
    sink = AuditSink(audit_path, chain=False)
    assert sink.chain_head is None
    sink.write(call(1, prev="a" * 64, chain="b" * 64))
    AuditSink(audit_path, chain=False).write(call(2))
    records = read_jsonl(audit_path)
    assert [record["seq"] for record in records] == [1, 2]
    assert all("prev" not in record and "chain" not in record for record in records)
    report = verify_chain(audit_path)
    assert (report.ok, report.first_bad_line) == (False, 1)


def test_unwritable_path_starts_degraded_and_write_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a regular file, not a directory\n")
    path = blocker / "audit.jsonl"

    sink = AuditSink(path)
    assert sink.degraded
    assert sink.last_error is not None
    assert str(path) in sink.last_error
    with pytest.raises(AuditUnavailable, match="cannot be written") as raised:
        sink.write(call())
    assert raised.value.kind == "unavailable"
    assert sink.degraded
    assert sink.seq == 0
    assert sink.check() is False

    blocker.unlink()  # the operator fixes it
    assert sink.check() is True
    assert not sink.degraded
    assert sink.last_error is None
    assert sink.write(call())["seq"] == 1
    assert verify_chain(path).ok


def test_failed_write_keeps_state_and_a_later_write_recovers(audit_path: Path) -> None:
    sink = AuditSink(audit_path)
    first = sink.write(call(1))
    moved = audit_path.parent.with_name("moved")
    os.rename(audit_path.parent, moved)
    audit_path.parent.write_text("now a file\n")

    with pytest.raises(AuditUnavailable):
        sink.write(call(2))
    assert sink.degraded
    assert (sink.seq, sink.chain_head) == (1, first["chain"])

    audit_path.parent.unlink()
    os.rename(moved, audit_path.parent)
    second = sink.write(call(3))  # no check() needed
    assert not sink.degraded
    assert sink.last_error is None
    assert (second["seq"], second["prev"]) == (2, first["chain"])
    assert verify_chain(audit_path).ok


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_write_error_after_open_is_unavailable() -> None:
    sink = AuditSink(Path("/dev/full"))  # opens fine, every write fails with ENOSPC
    assert not sink.degraded
    with pytest.raises(AuditUnavailable, match="No space left"):
        sink.write(call())
    assert sink.degraded
    assert sink.seq == 0
    sink.close()


def test_echo_stderr_prints_each_line(audit_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sink = AuditSink(audit_path, echo_stderr=True)
    sink.write(call(1))
    sink.write(call(2))
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == audit_path.read_text(encoding="utf-8")


def test_threads_writing_1000_records_keep_one_valid_chain(audit_path: Path) -> None:
    sink = AuditSink(audit_path)
    start = threading.Barrier(8)

    def worker(worker_number: int) -> None:
        start.wait(timeout=10)
        for number in range(125):
            sink.write(call(worker_number * 1000 + number))

    threads = [threading.Thread(target=worker, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)

    seqs = [record["seq"] for record in read_jsonl(audit_path)]
    assert seqs == list(range(1, 1001))
    report = verify_chain(audit_path)
    assert (report.ok, report.records) == (True, 1000)


def test_two_sinks_on_one_path_interleave_without_forking_the_chain(audit_path: Path) -> None:
    first, second = AuditSink(audit_path), AuditSink(audit_path)
    for number in range(5):
        first.write(call(number))
        second.write(call(number))
        second.write(call(number))

    def hammer(sink: AuditSink) -> None:
        for number in range(200):
            sink.write(call(number))

    threads = [threading.Thread(target=hammer, args=(sink,)) for sink in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    seqs = [record["seq"] for record in read_jsonl(audit_path)]
    assert seqs == list(range(1, 416))
    assert max(first.seq, second.seq) == 415
    assert verify_chain(audit_path).ok


WRITER_SCRIPT = """
import sys
from pathlib import Path
from relay_shell.governance.audit.writer import AuditSink
sink = AuditSink(Path(sys.argv[1]))
print("ready", flush=True)
sys.stdin.readline()
for number in range(int(sys.argv[2])):
    sink.write({"tool": "exec", "tier": 1, "outcome": "ok", "args": {"n": number}})
sink.close()
"""


def test_two_processes_on_one_path_keep_one_chain(audit_path: Path) -> None:
    AuditSink(audit_path).write(call(0))
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER_SCRIPT, str(audit_path), "300"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
        for process in processes:  # release both writers at once
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        for process in processes:
            assert process.wait(timeout=60) == 0
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)

    seqs = [record["seq"] for record in read_jsonl(audit_path)]
    assert seqs == list(range(1, 602))
    report = verify_chain(audit_path)
    assert (report.ok, report.records) == (True, 601)


@pytest.mark.parametrize("fmt", [AuditFormat.CEF, AuditFormat.LEEF])
def test_cef_and_leef_sinks_write_one_line_per_record_and_resume_seq(
    audit_path: Path, fmt: AuditFormat
) -> None:
    sink = AuditSink(audit_path, fmt=fmt, chain=True)
    assert sink.chain_head is None
    first = sink.write(call(1, args={"command": "a|b=c\nCEF:0|forged"}))
    sink.close()
    second = AuditSink(audit_path, fmt=fmt).write(call(2))

    lines = audit_path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{fmt.value.upper()}:")
    assert "prev" not in first
    assert "chain" not in first
    assert second["seq"] == 2
    decoded = [parse_line(line.encode()) for line in lines]
    assert decoded[0] is not None
    assert decoded[0]["args"] == '{"command":"a|b=c\\nCEF:0|forged"}'
    assert [record["seq"] for record in decoded if record is not None] == [1, 2]
