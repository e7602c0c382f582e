"""Anchors and shipping against a real journald (own namespace) and a real rsyslog (TCP and TLS).

The sink runs in this process, so the writer's journald ``_PID`` is this test's pid; a
forged entry is sent by a child process with the same identifier.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay_shell.config import load_settings
from relay_shell.errors import AuditUnavailable
from relay_shell.governance.audit.anchor_check import (
    AnchorEntry,
    check_anchors,
    journal_entry,
    read_anchor_file,
)
from relay_shell.governance.audit.anchoring import Anchoring
from relay_shell.governance.audit.chain import link
from relay_shell.governance.audit.channels import JournaldChannel, SyslogChannel, journal_payload
from relay_shell.governance.audit.formats import to_jsonl
from relay_shell.governance.audit.wiring import build_sink
from relay_shell.governance.audit.writer import AuditSink
from relay_shell.local.journal import journal_entries, namespace_of
from tests.audit_peers import Journald, journald, rsyslog

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="starting journald and rsyslog needs root")


@pytest.fixture(scope="module")
def journal() -> Iterator[Journald]:
    with journald() as started:
        yield started


def call(number: int, tier: int = 1) -> dict[str, object]:
    return {
        "tool": "shell_exec",
        "tier": tier,
        "args": {"command": f"echo {number}"},
        "call_id": f"{number:032x}",
    }


def sink_to(path: Path, anchor: object = None, ship: object = None) -> AuditSink:
    def factory(instance_id: str) -> Anchoring:
        return Anchoring(anchor=anchor, ship=ship, file=path.absolute(), instance_id=instance_id)  # type: ignore[arg-type]

    return AuditSink(path, anchoring=factory)


def journal_anchors(journal: Journald) -> list[AnchorEntry]:
    namespace = namespace_of(str(journal.socket))
    return [
        journal_entry(entry, index=index, destination="journal")
        for index, entry in enumerate(journal_entries("relay-shell-audit", namespace), start=1)
    ]


def run_calls(sink: AuditSink, count: int, tier: int = 1) -> list[dict[str, object]]:
    written = []
    for number in range(count):
        sink.begin(call(number, tier), anchor=tier >= 2)
        written.append(sink.end({**call(number, tier), "outcome": "ok"}))
    return written


def test_journald_anchors_carry_the_chain_and_the_writers_pid(tmp_path: Path, journal: Journald) -> None:
    path = tmp_path / "audit.jsonl"
    sink = sink_to(path, JournaldChannel(journal.socket))
    start = sink.begin(call(1, tier=2), anchor=True)
    sink.end({**call(1, tier=2), "outcome": "ok"})
    sink.close()
    header = json.loads(path.read_text().splitlines()[0])

    entries = journal.wait_for(1, RELAY_AUDIT_INSTANCE=sink.instance_id, RELAY_AUDIT_KIND="shutdown")
    ours = [entry for entry in entries if entry.get("RELAY_AUDIT_INSTANCE") == sink.instance_id]
    assert [entry["RELAY_AUDIT_KIND"] for entry in ours] == ["header", "start", "shutdown"]
    assert [entry["RELAY_AUDIT_ANCHOR_SEQ"] for entry in ours] == ["1", "2", "3"]
    assert {entry["_PID"] for entry in ours} == {str(os.getpid())}
    assert {entry["RELAY_AUDIT_FILE"] for entry in ours} == {str(path.absolute())}
    assert (ours[0]["RELAY_AUDIT_SEQ"], ours[0]["RELAY_AUDIT_CHAIN"]) == ("1", header["chain"])
    assert (ours[1]["RELAY_AUDIT_CHAIN"], ours[1]["RELAY_AUDIT_CALL_ID"]) == (
        start["chain"],
        start["call_id"],
    )

    report = check_anchors([path], journal_anchors(journal), [str(path.absolute())])
    assert report.ok, report.findings


def test_an_entry_from_another_pid_is_forged(tmp_path: Path, journal: Journald) -> None:
    path = tmp_path / "audit.jsonl"
    sink = sink_to(path, JournaldChannel(journal.socket))
    written = run_calls(sink, 2)
    sink.close()
    fields = {
        "MESSAGE": "relay-shell audit anchor: head",
        "SYSLOG_IDENTIFIER": "relay-shell-audit",
        "_PID": "1",  # a client cannot set trusted fields: journald drops this one
        "RELAY_AUDIT_KIND": "head",
        "RELAY_AUDIT_SEQ": str(written[-1]["seq"]),
        "RELAY_AUDIT_CHAIN": str(written[-1]["chain"]),
        "RELAY_AUDIT_INSTANCE": sink.instance_id,
        "RELAY_AUDIT_FILE": str(path.absolute()),
        "RELAY_AUDIT_ANCHOR_SEQ": "3",
    }
    sender = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "s.sendto(sys.stdin.buffer.read(), sys.argv[1])\n"
    )
    subprocess.run(
        [sys.executable, "-c", sender, str(journal.socket)],
        input=journal_payload(fields),
        check=True,
        timeout=30,
    )
    journal.wait_for(3, RELAY_AUDIT_INSTANCE=sink.instance_id)  # header, shutdown, forged

    report = check_anchors([path], journal_anchors(journal), [str(path.absolute())])
    assert report.ok is False
    forged = [finding for finding in report.findings if finding.kind == "forged-anchor"]
    assert len(forged) == 1
    assert forged[0].anchor is not None
    assert forged[0].anchor["pid"] not in (None, 1, os.getpid())
    assert "not by the writer" in forged[0].message


def test_records_cut_from_the_end_are_a_missing_head(tmp_path: Path, journal: Journald) -> None:
    path = tmp_path / "audit.jsonl"
    sink = sink_to(path, JournaldChannel(journal.socket))
    run_calls(sink, 3)
    sink.close()
    journal.wait_for(1, RELAY_AUDIT_INSTANCE=sink.instance_id, RELAY_AUDIT_KIND="shutdown")
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-2]))  # the chain of what is left is still intact

    report = check_anchors([path], journal_anchors(journal), [str(path.absolute())])
    assert report.ok is False
    [missing] = [finding for finding in report.findings if finding.kind == "missing-head"]
    assert missing.anchor is not None and missing.anchor["kind"] == "shutdown"
    assert f"seq {len(lines)}" in missing.message


def test_a_chained_record_appended_after_shutdown_is_a_forged_tail(tmp_path: Path, journal: Journald) -> None:
    path = tmp_path / "audit.jsonl"
    sink = sink_to(path, JournaldChannel(journal.socket))
    last = run_calls(sink, 1)[-1]
    sink.close()
    journal.wait_for(1, RELAY_AUDIT_INSTANCE=sink.instance_id, RELAY_AUDIT_KIND="shutdown")
    forged = {**last, "seq": int(str(last["seq"])) + 1, "prev": last["chain"], "outcome": "ok"}
    forged.pop("chain")
    forged["chain"] = link(str(last["chain"]), forged)
    with path.open("a") as handle:
        handle.write(to_jsonl(forged) + "\n")

    report = check_anchors([path], journal_anchors(journal), [str(path.absolute())])
    assert report.ok is False
    [tail] = [finding for finding in report.findings if finding.kind == "forged-tail"]
    assert tail.line == len(path.read_text().splitlines())


def test_a_rewritten_trail_contradicts_its_anchors(tmp_path: Path, journal: Journald) -> None:
    path = tmp_path / "audit.jsonl"
    sink = sink_to(path, JournaldChannel(journal.socket))
    run_calls(sink, 2, tier=2)
    sink.close()
    journal.wait_for(1, RELAY_AUDIT_INSTANCE=sink.instance_id, RELAY_AUDIT_KIND="shutdown")
    # Rewrite the whole file with an innocent command and a freshly computed chain.
    records = [json.loads(line) for line in path.read_text().splitlines()]
    previous = str(records[0]["prev"])
    rewritten = []
    for original in records:
        record = {**original, "prev": previous}
        record.pop("chain")
        if record.get("args"):
            record["args"] = {"command": "true"}
        record["chain"] = previous = link(previous, record)
        rewritten.append(to_jsonl(record))
    path.write_text("\n".join(rewritten) + "\n")

    report = check_anchors([path], journal_anchors(journal), [str(path.absolute())])
    assert report.ok is False
    edited = [finding for finding in report.findings if finding.kind == "edited"]
    assert {finding.line for finding in edited} >= {2}  # the first start record (anchored, tier 2)


def test_anchor_gaps_in_a_file_of_journal_entries(tmp_path: Path, journal: Journald) -> None:
    path = tmp_path / "audit.jsonl"
    sink = sink_to(path, JournaldChannel(journal.socket))
    run_calls(sink, 3, tier=2)
    sink.close()
    entries = journal.wait_for(1, RELAY_AUDIT_INSTANCE=sink.instance_id, RELAY_AUDIT_KIND="shutdown")
    ours = [entry for entry in entries if entry.get("RELAY_AUDIT_INSTANCE") == sink.instance_id]
    export = tmp_path / "anchors.json"
    export.write_text("".join(json.dumps(entry) + "\n" for entry in ours))
    assert check_anchors([path], read_anchor_file(export), [str(path.absolute())]).ok
    del ours[2]  # one anchor suppressed
    export.write_text("".join(json.dumps(entry) + "\n" for entry in ours))

    report = check_anchors([path], read_anchor_file(export), [str(path.absolute())])
    assert report.ok is False
    kinds = {finding.kind for finding in report.findings}
    assert "gap" in kinds
    assert "unanchored" in kinds  # the start record whose anchor went missing


def test_a_large_shipped_record_goes_through_a_memfd(tmp_path: Path, journal: Journald) -> None:
    path = tmp_path / "audit.jsonl"
    sink = sink_to(path, ship=JournaldChannel(journal.socket))
    big = sink.write({"tool": "shell_exec", "args": {"script": "x" * 300_000}})
    sink.close()
    entries = journal.wait_for(1, RELAY_AUDIT_INSTANCE=sink.instance_id, RELAY_AUDIT_SEQ=str(big["seq"]))
    [shipped] = [
        entry
        for entry in entries
        if entry.get("RELAY_AUDIT_SEQ") == str(big["seq"])
        and entry.get("RELAY_AUDIT_INSTANCE") == sink.instance_id
    ]
    assert json.loads(shipped["MESSAGE"]) == big


def test_journald_stopped_fails_the_next_start(tmp_path: Path) -> None:
    with journald() as private:
        sink = sink_to(tmp_path / "audit.jsonl", JournaldChannel(private.socket))
        sink.begin(call(1, tier=2), anchor=True)
        private.stop()
        with pytest.raises(AuditUnavailable, match="anchor"):
            sink.begin(call(2, tier=2), anchor=True)
        assert sink.check() is False
        assert sink.degraded
        sink.close()


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_rsyslog_receives_anchors_and_every_shipped_record(tmp_path: Path, tls: bool) -> None:
    with rsyslog(tmp_path / "collector", tls=tls) as collector:
        settings = load_settings(
            audit_path=tmp_path / "audit.jsonl",
            audit_anchor=collector.spec,
            audit_ship=collector.spec,
            audit_tls_ca=collector.tls_ca or "",
        )
        sink = build_sink(settings)
        written = run_calls(sink, 3, tier=2)
        sink.close()
        lines = collector.wait_for(1, 'kind="shutdown"')
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    shipped = [line for line in lines if 'kind="record"' in line]
    assert len(shipped) == len(records)
    assert json.loads(shipped[-1].split("] ", 1)[1]) == written[-1]  # the full record, as written
    report = check_anchors(
        [tmp_path / "audit.jsonl"],
        read_anchor_file(collector.output),
        [str((tmp_path / "audit.jsonl").absolute())],
    )
    assert report.ok, report.findings


def shipping_sink(path: Path, port: int, clock: list[float]) -> AuditSink:
    channel = SyslogChannel("127.0.0.1", port)

    def factory(instance_id: str) -> Anchoring:
        return Anchoring(
            anchor=None, ship=channel, file=path.absolute(), instance_id=instance_id, clock=lambda: clock[0]
        )

    return AuditSink(path, anchoring=factory)


def record_numbers(lines: list[str]) -> list[int]:
    found = (re.search(r'kind="record".* anchor_seq="([0-9]+)"', line) for line in lines)
    return sorted(int(match.group(1)) for match in found if match is not None)


def test_collector_down_refuses_and_recovers_without_a_gap(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with rsyslog(tmp_path / "collector") as collector:
        clock = [0.0]
        sink = shipping_sink(path, collector.port, clock)
        run_calls(sink, 1)
        assert sink.check() is True
        collector.wait_for(3, 'kind="record"')  # stored before the stop (in-flight loss: the next test)
        collector.stop()
        assert sink.check() is False  # the closed connection is noticed before any send
        with pytest.raises(AuditUnavailable, match="shipped"):
            sink.begin(call(2), anchor=False)
        sink.end({**call(2), "outcome": "unavailable"})  # queued: the file has it
        collector.start()
        clock[0] += 5  # past the retry interval
        assert sink.check() is True
        sink.close()
        lines = collector.wait_for(len(path.read_text().splitlines()), 'kind="record"')
    assert record_numbers(lines) == list(range(1, len(path.read_text().splitlines()) + 1))  # resent in order


def test_a_collector_crash_loses_what_was_in_flight_and_verify_shows_the_gap(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with rsyslog(tmp_path / "collector") as collector:
        clock = [0.0]
        sink = shipping_sink(path, collector.port, clock)
        collector.wait_for(1, 'kind="record"')  # the header arrived
        run_calls(sink, 2)  # handed to TCP, maybe not yet written by the collector
        collector.stop(crash=True)
        collector.start()
        clock[0] += 5
        assert sink.check() is True
        sink.write({"tool": "after-the-crash"})
        sink.close()
        lines = collector.wait_for(1, "after-the-crash")
    numbers = record_numbers(lines)
    report = check_anchors([path], read_anchor_file(collector.output), [str(path.absolute())])
    if numbers == list(range(1, len(numbers) + 1)):
        assert report.ok, report.findings  # nothing was in flight at the crash
    else:
        assert report.ok is False
        assert {finding.kind for finding in report.findings} >= {"gap"}


def test_syslog_channel_refused_when_nothing_listens() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(OSError):
        SyslogChannel("127.0.0.1", port).probe()


def test_the_head_is_anchored_every_interval_and_only_when_it_moved(
    tmp_path: Path, journal: Journald
) -> None:
    path = tmp_path / "audit.jsonl"
    sink = sink_to(path, JournaldChannel(journal.socket))
    sink.start_heartbeat(0.05)
    last = sink.write(call(1))
    entries = journal.wait_for(1, RELAY_AUDIT_INSTANCE=sink.instance_id, RELAY_AUDIT_KIND="head")
    heads = [
        e
        for e in entries
        if e.get("RELAY_AUDIT_INSTANCE") == sink.instance_id and e["RELAY_AUDIT_KIND"] == "head"
    ]
    assert (heads[0]["RELAY_AUDIT_SEQ"], heads[0]["RELAY_AUDIT_CHAIN"]) == (str(last["seq"]), last["chain"])
    sink.close()
    final = journal.wait_for(1, RELAY_AUDIT_INSTANCE=sink.instance_id, RELAY_AUDIT_KIND="shutdown")
    ours = [e for e in final if e.get("RELAY_AUDIT_INSTANCE") == sink.instance_id]
    assert [e["RELAY_AUDIT_KIND"] for e in ours].count("head") == 1  # the head did not move again
    assert ours[-1]["RELAY_AUDIT_KIND"] == "shutdown"


def test_an_instance_anchored_from_another_systemd_unit_is_reported(
    tmp_path: Path, journal: Journald
) -> None:
    path = tmp_path / "audit.jsonl"
    first = sink_to(path, JournaldChannel(journal.socket))
    run_calls(first, 1)
    first.close()
    second = sink_to(
        path, JournaldChannel(journal.socket)
    )  # think: started by cron while the service was down
    run_calls(second, 1)
    second.close()
    entries = journal.wait_for(1, RELAY_AUDIT_INSTANCE=second.instance_id, RELAY_AUDIT_KIND="shutdown")
    ours = [e for e in entries if e.get("RELAY_AUDIT_INSTANCE") in (first.instance_id, second.instance_id)]
    export = tmp_path / "anchors.json"
    export.write_text("".join(json.dumps(e) + "\n" for e in ours))
    assert check_anchors([path], read_anchor_file(export), [str(path.absolute())]).ok
    for entry in ours:  # what journald would have stamped for a service and for a cron job
        entry["_SYSTEMD_UNIT"] = (
            "relay-shell.service" if entry["RELAY_AUDIT_INSTANCE"] == first.instance_id else "cron.service"
        )
    export.write_text("".join(json.dumps(e) + "\n" for e in ours))

    report = check_anchors([path], read_anchor_file(export), [str(path.absolute())])
    assert [finding.kind for finding in report.findings] == ["foreign-unit"]
    assert "cron.service" in report.findings[0].message
