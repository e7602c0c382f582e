"""The audit sink: records on disk, headers, modes, one writer per file, resume, rotation, failure."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import stat
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from pathlib import Path

import pytest

from relay_shell.config import AuditFormat
from relay_shell.errors import AuditUnavailable, ConfigError
from relay_shell.governance.audit.chain import GENESIS, canonical_json
from relay_shell.governance.audit.formats import parse_line
from relay_shell.governance.audit.verify import verify_chain, verify_trail
from relay_shell.governance.audit.writer import AuditSink, SinkState, format_timestamp
from tests.components import need

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


def calls_of(path: Path) -> list[dict[str, object]]:
    """The records of calls (not the sink's own header, tamper and recovery records)."""
    return [record for record in read_jsonl(path) if "kind" not in record]


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
    header = on_disk[0]
    assert (header["kind"], header["reason"], header["seq"], header["prev"]) == (
        "header",
        "start",
        1,
        GENESIS,
    )
    assert (header["pid"], header["instance_id"], header["previous_seq"]) == (
        os.getpid(),
        sink.instance_id,
        None,
    )
    assert on_disk[1:] == returned
    assert [record["seq"] for record in on_disk] == [1, 2, 3, 4]
    for before, after in itertools.pairwise(on_disk):
        assert after["prev"] == before["chain"]
    for record in on_disk:
        assert record["ts"] == "2025-01-02T03:04:05.678Z"
        assert record["instance_id"] == sink.instance_id
        without_chain = {key: value for key, value in record.items() if key != "chain"}
        expected = hashlib.sha256(str(record["prev"]).encode() + canonical_json(without_chain)).hexdigest()
        assert record["chain"] == expected
    assert sink.seq == 4
    assert sink.chain_head == on_disk[3]["chain"]
    assert verify_chain(audit_path).ok


def test_a_chained_line_is_the_hashed_bytes_with_the_chain_last(audit_path: Path) -> None:
    sink = AuditSink(audit_path)
    written = sink.write(call(args={"b": 1, "a": "é"}))
    line = audit_path.read_bytes().splitlines()[-1]
    without_chain = {key: value for key, value in written.items() if key != "chain"}
    body = canonical_json(without_chain)
    assert line == body[:-1] + b',"chain":"' + str(written["chain"]).encode() + b'"}'
    assert list(json.loads(line))[-1] == "chain"


def test_lines_are_compact_utf8_without_ascii_escapes(audit_path: Path) -> None:
    sink = AuditSink(audit_path)
    sink.write(call(args={"command": "echo héllo ✓"}))
    raw = audit_path.read_bytes()
    assert raw.endswith(b"\n")
    assert raw.count(b"\n") == 2
    assert "héllo ✓".encode() in raw
    assert b'", "' not in raw
    assert b'": ' not in raw


def test_line_breaking_characters_are_escaped_and_still_verify(audit_path: Path) -> None:
    sink = AuditSink(audit_path)
    written = sink.write(call(args={"command": "a\u2028b\x85c\x7f"}))
    raw = audit_path.read_bytes()
    assert raw.count(b"\n") == 2
    assert "\u2028".encode() not in raw
    assert b"\\u2028" in raw
    assert read_jsonl(audit_path)[-1] == written
    assert verify_chain(audit_path).ok


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


def test_sink_owns_seq_prev_chain_instance_but_keeps_a_given_ts(audit_path: Path) -> None:
    sink = AuditSink(audit_path, clock=fixed_clock)
    head = sink.chain_head
    forged = sink.write(
        call(seq=99, prev="f" * 64, chain="e" * 64, instance_id="forged", ts="2020-01-01T00:00:00.000Z")
    )
    as_datetime = sink.write(call(ts=datetime(2024, 6, 1, tzinfo=UTC)))
    assert forged["seq"] == 2
    assert forged["prev"] == head
    assert forged["chain"] != "e" * 64
    assert forged["instance_id"] == sink.instance_id
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
    assert calls_of(audit_path) == [written]
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


def test_a_second_sink_on_the_same_file_refuses_naming_the_holder(audit_path: Path) -> None:
    first = AuditSink(audit_path)
    with pytest.raises(ConfigError, match=rf"locked by process {os.getpid()}"):
        AuditSink(audit_path)
    first.write(call(1))
    first.close()
    AuditSink(audit_path).close()  # free again once the first one closed


HOLDER = """
import sys
from pathlib import Path
from relay_shell.errors import ConfigError
from relay_shell.governance.audit.writer import AuditSink
try:
    AuditSink(Path(sys.argv[1]))
except ConfigError as exc:
    print(exc)
    sys.exit(3)
"""


def test_a_second_process_on_the_same_file_refuses(audit_path: Path) -> None:
    sink = AuditSink(audit_path)
    sink.write(call(1))
    done = subprocess.run(
        [sys.executable, "-c", HOLDER, str(audit_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert f"locked by process {os.getpid()}" in done.stdout
    assert [record["seq"] for record in read_jsonl(audit_path)] == [1, 2]  # nothing written by it


@pytest.mark.parametrize("unsafe", ["symlink", "fifo", "group-writable", "other-owner"])
def test_an_unsafe_file_refuses_to_start(tmp_path: Path, unsafe: str) -> None:
    path = tmp_path / "audit.jsonl"
    if unsafe == "symlink":
        (tmp_path / "real").touch(mode=0o600)
        path.symlink_to(tmp_path / "real")
    elif unsafe == "fifo":
        os.mkfifo(path, 0o600)
    else:
        path.touch(mode=0o600)
        if unsafe == "group-writable":
            path.chmod(0o620)
        else:
            os.chown(path, 65534, 65534)
    with pytest.raises(ConfigError, match="RELAY_SHELL_AUDIT_PATH"):
        AuditSink(path)


def test_chain_and_seq_resume_in_a_new_sink_with_a_header(audit_path: Path) -> None:
    first = AuditSink(audit_path)
    first.write(call(1))
    last = first.write(call(2))
    first.close()

    second = AuditSink(audit_path)
    header = read_jsonl(audit_path)[-1]
    assert (header["kind"], header["reason"], header["instance_id"]) == (
        "header",
        "start",
        second.instance_id,
    )
    assert (header["prev"], header["previous_chain"], header["previous_seq"]) == (
        last["chain"],
        last["chain"],
        3,
    )
    assert second.instance_id != first.instance_id
    resumed = second.write(call(3))
    assert resumed["seq"] == 5
    report = verify_chain(audit_path)
    assert (report.ok, report.records) == (True, 5)


def test_resume_after_a_record_larger_than_the_read_blocks(audit_path: Path) -> None:
    sink = AuditSink(audit_path)
    big = sink.write(call(args={"script": "x" * (2 * 1024 * 1024)}))
    sink.close()
    AuditSink(audit_path).close()
    assert read_jsonl(audit_path)[-1]["prev"] == big["chain"]
    assert verify_chain(audit_path).ok


def test_write_after_close_reopens_with_a_reopen_header(audit_path: Path) -> None:
    sink = AuditSink(audit_path)
    first = sink.write(call(1))
    sink.close()
    sink.close()
    second = sink.write(call(2))
    records = read_jsonl(audit_path)
    assert (records[2]["kind"], records[2]["reason"], records[2]["prev"]) == (
        "header",
        "reopen",
        first["chain"],
    )
    assert second["prev"] == records[2]["chain"]
    assert verify_chain(audit_path).ok


def test_torn_last_line_does_not_swallow_the_next_record(audit_path: Path) -> None:
    AuditSink(audit_path).close()
    with audit_path.open("ab") as handle:
        handle.write(b'{"ts":"2025-01-01T00:00:00.000Z","seq":2,"tool":"ex')  # crash mid-write

    sink = AuditSink(audit_path)
    assert sink.seq == 2  # the torn record is not trusted: seq 1 header, then our header
    written = sink.write(call(3))

    lines = audit_path.read_bytes().split(b"\n")
    assert parse_line(lines[1]) is None
    assert parse_line(lines[3]) == written
    report = verify_chain(audit_path)
    assert (report.ok, report.first_bad_line) == (False, 2)


def test_rotation_by_rename_continues_the_chain_in_a_new_file_with_a_header(audit_path: Path) -> None:
    sink = AuditSink(audit_path)
    sink.write(call(1))
    before = sink.write(call(2))
    rotated = audit_path.with_name("audit.jsonl.1")
    os.rename(audit_path, rotated)

    after = sink.write(call(3))
    sink.write(call(4))

    assert mode_of(audit_path) == 0o600
    assert [record["seq"] for record in read_jsonl(rotated)] == [1, 2, 3]
    new_records = read_jsonl(audit_path)
    header = new_records[0]
    assert (header["kind"], header["reason"], header["prev"]) == ("header", "rotation", before["chain"])
    assert header["previous_file"] == str(rotated)
    assert after["prev"] == header["chain"]
    assert [record["seq"] for record in new_records] == [4, 5, 6]
    assert sink.state is SinkState.HEALTHY
    report = verify_trail([audit_path, rotated])  # any order: sorted by seq
    assert (report.ok, report.records, report.files) == (True, 6, (str(rotated), str(audit_path)))


def test_check_follows_a_rotation_and_creates_the_new_file(audit_path: Path) -> None:
    sink = AuditSink(audit_path)
    sink.write(call(1))
    os.rename(audit_path, audit_path.with_name("audit.jsonl.1"))
    assert sink.check() is True
    assert mode_of(audit_path) == 0o600
    assert read_jsonl(audit_path)[0]["reason"] == "rotation"


def test_real_logrotate_with_create(tmp_path: Path, audit_path: Path) -> None:
    sink = AuditSink(audit_path)
    last = sink.write(call(1))
    config = tmp_path / "logrotate.conf"
    config.write_text(f"{audit_path} {{\n  daily\n  rotate 3\n  create 0600 root root\n  missingok\n}}\n")
    result = subprocess.run(
        [need("logrotate", "logrotate"), "-f", "-s", str(tmp_path / "state"), str(config)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert audit_path.with_name("audit.jsonl.1").exists()
    assert audit_path.stat().st_size == 0  # logrotate created the new, empty file

    after = sink.write(call(2))
    header, *rest = read_jsonl(audit_path)
    assert (header["reason"], header["prev"]) == ("rotation", last["chain"])
    assert rest == [after]
    assert mode_of(audit_path) == 0o600
    assert sink.check() is True
    assert verify_trail([audit_path, audit_path.with_name("audit.jsonl.1")]).ok


def test_copytruncate_is_not_supported_and_seen_as_a_truncation(tmp_path: Path, audit_path: Path) -> None:
    sink = AuditSink(audit_path)
    sink.write(call(1))
    config = tmp_path / "logrotate.conf"
    config.write_text(f"{audit_path} {{\n  daily\n  rotate 3\n  copytruncate\n  missingok\n}}\n")
    result = subprocess.run(
        [need("logrotate", "logrotate"), "-f", "-s", str(tmp_path / "state"), str(config)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert sink.check() is False
    assert sink.state is SinkState.TAMPERED
    tamper = read_jsonl(audit_path)[-1]
    assert (tamper["kind"], tamper["reason"]) == ("tamper", "truncated")


def test_an_empty_file_continues_from_the_newest_rotated_sibling(audit_path: Path) -> None:
    sink = AuditSink(audit_path)
    last = sink.write(call(1))
    sink.close()
    os.rename(audit_path, audit_path.with_name("audit.jsonl-20250101"))
    audit_path.touch(mode=0o600)  # logrotate's create while no server ran

    AuditSink(audit_path).close()
    header = read_jsonl(audit_path)[0]
    assert (header["prev"], header["previous_seq"], header["seq"]) == (last["chain"], 2, 3)
    assert verify_trail([audit_path, audit_path.with_name("audit.jsonl-20250101")]).ok


def test_unwritable_path_starts_unwritable_and_recovers_with_a_record_of_the_loss(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a regular file, not a directory\n")
    path = blocker / "audit.jsonl"

    sink = AuditSink(path)
    assert sink.degraded
    assert sink.state is SinkState.UNWRITABLE
    assert sink.last_error is not None
    assert str(path) in sink.last_error
    with pytest.raises(AuditUnavailable, match="cannot be written") as raised:
        sink.write(call())
    assert raised.value.kind == "unavailable"
    assert sink.seq == 0
    assert sink.check() is False

    blocker.unlink()  # the operator fixes it
    assert sink.check() is True
    assert not sink.degraded
    assert sink.last_error is None
    header, recovery = read_jsonl(path)
    assert header["kind"] == "header"
    assert (recovery["kind"], recovery["lost_records"]) == ("recovery", 1)
    assert sink.write(call())["seq"] == 3
    report = verify_chain(path)
    assert report.ok is False
    assert [finding.kind for finding in report.findings] == ["lost"]  # the lost record stays a finding


def test_failed_write_keeps_state_and_a_later_write_recovers(audit_path: Path) -> None:
    sink = AuditSink(audit_path)
    first = sink.write(call(1))
    moved = audit_path.parent.with_name("moved")
    os.rename(audit_path.parent, moved)
    audit_path.parent.write_text("now a file\n")

    with pytest.raises(AuditUnavailable):
        sink.write(call(2))
    assert sink.degraded
    assert (sink.seq, sink.chain_head) == (2, first["chain"])

    audit_path.parent.unlink()
    os.rename(moved, audit_path.parent)
    second = sink.write(call(3))  # no check() needed
    assert not sink.degraded
    recovery = read_jsonl(audit_path)[-2]
    assert (recovery["kind"], recovery["lost_records"], recovery["prev"]) == ("recovery", 1, first["chain"])
    assert (second["seq"], second["prev"]) == (4, recovery["chain"])


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
    assert seqs == list(range(1, 1002))
    assert sink.state is SinkState.HEALTHY
    report = verify_chain(audit_path)
    assert (report.ok, report.records) == (True, 1001)


def test_begin_and_end_write_the_phases_of_a_call(audit_path: Path) -> None:
    sink = AuditSink(audit_path)
    start = sink.begin({"tool": "shell_exec", "tier": 2, "call_id": "c" * 32}, anchor=True)
    end = sink.end({"tool": "shell_exec", "tier": 2, "call_id": "c" * 32, "outcome": "ok"})
    assert (start["phase"], end["phase"]) == ("start", "end")
    assert end["prev"] == start["chain"]
    sink.begin({"tool": "shell_exec", "tier": 1, "call_id": "d" * 32}, anchor=False)
    report = verify_chain(audit_path)
    assert report.ok is False
    assert [(finding.kind, finding.line) for finding in report.findings] == [("unfinished", 4)]
    assert "d" * 32 in (report.problem or "")


@pytest.mark.parametrize("fmt", [AuditFormat.CEF, AuditFormat.LEEF])
def test_cef_and_leef_sinks_write_one_line_per_record_and_resume_seq(
    audit_path: Path, fmt: AuditFormat
) -> None:
    sink = AuditSink(audit_path, fmt=fmt, chain=True)
    assert sink.chain_head is None
    first = sink.write(call(1, args={"command": "a|b=c\nCEF:0|forged"}))
    sink.close()
    second_sink = AuditSink(audit_path, fmt=fmt)
    second = second_sink.write(call(2))
    second_sink.close()

    lines = audit_path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4  # header, record, header, record
    assert lines[0].startswith(f"{fmt.value.upper()}:")
    assert "prev" not in first
    assert "chain" not in first
    assert second["seq"] == 4
    decoded = [parse_line(line.encode()) for line in lines]
    assert decoded[1] is not None
    assert decoded[1]["args"] == '{"command":"a|b=c\\nCEF:0|forged"}'
    assert [record["seq"] for record in decoded if record is not None] == [1, 2, 3, 4]


def test_verify_reads_rotated_gzip_generations_in_seq_order(audit_path: Path) -> None:
    import gzip

    sink = AuditSink(audit_path)
    sink.write(call(1))
    rotated = audit_path.with_name("audit.jsonl-20250101")
    os.rename(audit_path, rotated)
    sink.write(call(2))
    sink.close()
    compressed = rotated.with_name(rotated.name + ".gz")
    compressed.write_bytes(gzip.compress(rotated.read_bytes()))
    rotated.unlink()

    report = verify_trail([audit_path, compressed])
    assert (report.ok, report.records, report.files) == (True, 4, (str(compressed), str(audit_path)))
    data = gzip.decompress(compressed.read_bytes()).replace(b"echo 1", b"echo 9")
    compressed.write_bytes(gzip.compress(data))
    broken = verify_trail([audit_path, compressed])
    assert (broken.ok, broken.first_bad_line, broken.findings[0].file) == (False, 2, str(compressed))


@pytest.mark.skipif(os.geteuid() != 0, reason="checking another user's file is what root does")
def test_root_checking_the_services_file_gets_a_remark_not_a_failure(tmp_path: Path) -> None:
    from relay_shell.governance.audit.guard import UnsafeFile, probe

    path = tmp_path / "audit.jsonl"
    path.touch(mode=0o600)
    os.chown(path, 65534, 65534)
    assert probe(path) == "owned by uid 65534: only a server running as that user may write it"
    path.chmod(0o660)
    with pytest.raises(UnsafeFile, match="writable by group or others"):
        probe(path)
    held = tmp_path / "held.jsonl"
    sink = AuditSink(held)
    assert probe(held) == f"in use by process {os.getpid()}"
    sink.close()
    assert probe(held) is None


def test_the_inbox_probe_answers_whatever_it_saw_last(tmp_path: Path) -> None:
    from relay_shell.governance.audit.inbox import InboxProbe

    inbox = tmp_path / "audit.jsonl.inbox"
    probe = InboxProbe(inbox)
    assert probe.has_submissions() is False  # missing
    assert probe.has_submissions() is False  # still missing (asked with access)
    inbox.write_bytes(b"")
    assert probe.has_submissions() is False  # there, empty
    inbox.write_bytes(b'{"tool":"x"}\n')
    assert probe.has_submissions() is True
    inbox.unlink()
    assert probe.has_submissions() is False
    inbox.write_bytes(b'{"tool":"y"}\n')  # created again after it was seen missing
    assert probe.has_submissions() is True
    inbox.unlink()
    inbox.symlink_to(tmp_path / "elsewhere")  # dangling: nothing to take in
    assert probe.has_submissions() is False


def test_a_submission_to_an_inbox_first_seen_missing_lands_before_the_next_record(audit_path: Path) -> None:
    from relay_shell.governance.audit.inbox import InboxSubmitter, inbox_path

    sink = AuditSink(audit_path)  # no watcher thread: only the writes take submissions in
    sink.write({"tool": "first"})
    assert not inbox_path(audit_path).exists()
    InboxSubmitter(audit_path, writer_running=False).write({"tool": "oauth_revoke", "event": "revoked"})
    sink.write({"tool": "second"})
    sink.close()
    assert [(record["tool"], record.get("submitted")) for record in read_jsonl(audit_path)[1:]] == [
        ("first", None),
        ("oauth_revoke", "inbox"),
        ("second", None),
    ]
    assert inbox_path(audit_path).stat().st_size == 0
    assert verify_chain(audit_path).ok


def test_a_process_beside_the_writer_submits_through_the_inbox(audit_path: Path) -> None:
    from relay_shell.governance.audit.inbox import InboxSubmitter, inbox_path

    sink = AuditSink(audit_path)
    sink.start_heartbeat(3600)  # its watcher takes submissions in a few times a second
    submitter = InboxSubmitter(audit_path, writer_running=True)
    submitted = submitter.write({"tool": "oauth_revoke", "event": "revoked", "seq": 99, "chain": "x" * 64})
    assert inbox_path(audit_path).stat().st_size == 0  # write() waited until the writer took it in
    with inbox_path(audit_path).open("ab") as inbox:
        inbox.write(b'{"tool":"torn"')  # a submission cut short
    assert sink.check() is True
    sink.close()

    taken = read_jsonl(audit_path)[1:]
    assert [(record["tool"], record.get("submitted")) for record in taken] == [
        ("oauth_revoke", "inbox"),
        ("audit_inbox", None),
    ]
    assert taken[0]["ts"] == submitted["ts"]  # when the operator acted
    assert (taken[0]["seq"], taken[0]["instance_id"]) == (
        2,
        sink.instance_id,
    )  # the writer's, not the submitter's
    assert taken[1]["dropped_bytes"] == len(b'{"tool":"torn"')
    assert verify_chain(audit_path).ok
