"""Someone else changes the audit file: every class of change is seen, recorded and latched.

Each case changes the file the way an agent with the writer's own account could (append a
line, append a correctly chained record, cut the start, truncate, edit in place, delete,
swap the path for a symlink or another file), then checks that the sink:

- is tampered at once (``check()`` False, state ``tampered``) and stays so ("until reset");
- wrote a ``kind: tamper`` record naming the change into the file it holds open;
- never adopted anything it did not write (its chain continues from its own last record);
- and that ``--verify-audit`` reports the damage with a line.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from relay_shell.governance.audit.chain import link
from relay_shell.governance.audit.formats import to_jsonl
from relay_shell.governance.audit.verify import verify_chain
from relay_shell.governance.audit.writer import AuditSink, SinkState


def call(number: int) -> dict[str, object]:
    return {"tool": "shell_exec", "tier": 1, "outcome": "ok", "args": {"command": f"echo {number}"}}


def records_in(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.startswith(b"{")]


def forged_after(record: dict[str, object]) -> str:
    """A record that continues ``record`` exactly as the writer would (the chain has no secret)."""
    forged: dict[str, object] = {
        "ts": "2030-01-01T00:00:00.000Z",
        "seq": int(str(record["seq"])) + 1,
        "instance_id": record["instance_id"],
        "tool": "shell_exec",
        "tier": 1,
        "outcome": "ok",
        "args": {"command": "echo harmless"},
        "prev": record["chain"],
    }
    forged["chain"] = link(str(record["chain"]), forged)
    return to_jsonl(forged)


def append_line(path: Path, last: dict[str, object]) -> None:
    with path.open("a") as handle:
        handle.write('{"tool":"shell_exec","outcome":"ok"}\n')


def append_chained(path: Path, last: dict[str, object]) -> None:
    with path.open("a") as handle:
        handle.write(forged_after(last) + "\n")


def delete_first_records(path: Path, last: dict[str, object]) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    with path.open("r+b") as handle:  # in place, same inode
        handle.truncate(0)
        handle.write(b"".join(lines[2:]))


def truncate(path: Path, last: dict[str, object]) -> None:
    os.truncate(path, 0)


def edit_last_byte(path: Path, last: dict[str, object]) -> None:
    data = bytearray(path.read_bytes())
    index = data.rindex(b"echo 2")
    data[index + 5] = ord("3")
    with path.open("r+b") as handle:
        handle.write(bytes(data))


def unlink(path: Path, last: dict[str, object]) -> None:
    path.unlink()


def symlink_to_null(path: Path, last: dict[str, object]) -> None:
    temporary = path.with_name("link")
    temporary.symlink_to("/dev/null")
    os.replace(temporary, path)  # ln -sf /dev/null PATH


def swap_for_a_copy(path: Path, last: dict[str, object]) -> None:
    copy = path.with_name("copy")
    copy.write_bytes(path.read_bytes()[:-10] + b"\n")
    copy.chmod(0o600)
    os.replace(copy, path)


CHANGES: dict[str, tuple[Callable[[Path, dict[str, object]], None], str]] = {
    "append a line": (append_line, "appended"),
    "append a chained record": (append_chained, "appended"),
    "delete the first records": (delete_first_records, "truncated"),
    "truncate": (truncate, "truncated"),
    "edit the last record in place": (edit_last_byte, "rewritten"),
    "delete the file": (unlink, "deleted"),
    "symlink to /dev/null": (symlink_to_null, "deleted"),
    "swap for another file": (swap_for_a_copy, "deleted"),
}


@pytest.mark.parametrize("name", list(CHANGES))
def test_a_change_by_someone_else_is_recorded_and_latched(tmp_path: Path, name: str) -> None:
    change, reason = CHANGES[name]
    path = tmp_path / "audit.jsonl"
    sink = AuditSink(path)
    sink.write(call(1))
    last = sink.write(call(2))
    inode = path.stat().st_ino

    change(path, last)

    assert sink.check() is False
    assert sink.state is SinkState.TAMPERED
    assert sink.last_error is not None and reason in sink.last_error
    after = sink.write(call(3))
    assert sink.check() is False  # latched: only a restart resets it

    held = sink.held_file()
    assert held is not None
    assert held.stat().st_ino == inode
    ours = records_in(held)
    tamper = next(record for record in ours if record.get("kind") == "tamper")
    assert tamper["reason"] == reason
    assert tamper["prev"] == last["chain"]  # nothing foreign adopted
    assert after["prev"] == tamper["chain"]
    sink.close()


@pytest.mark.parametrize(
    ("name", "first_line"),
    [("append a line", 4), ("append a chained record", 4), ("edit the last record in place", 3)],
)
def test_verify_names_the_line_of_a_change(tmp_path: Path, name: str, first_line: int) -> None:
    change, _reason = CHANGES[name]
    path = tmp_path / "audit.jsonl"
    sink = AuditSink(path)
    sink.write(call(1))
    last = sink.write(call(2))
    change(path, last)
    sink.write(call(3))
    sink.close()

    report = verify_chain(path)
    assert report.ok is False
    kinds = {finding.kind for finding in report.findings}
    assert "tamper" in kinds
    lines = sorted(finding.line for finding in report.findings if finding.line is not None)
    assert lines[0] == first_line  # header, two records: the foreign line is the 4th, the edited one the 3rd


def test_an_edit_before_the_tail_escapes_the_writer_but_not_verify(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = AuditSink(path)
    for number in range(40):  # the edit lies before the tail the writer compares
        sink.write(call(number))
    data = path.read_bytes()
    index = data.index(b"echo 1")
    with path.open("r+b") as handle:
        handle.seek(index + 5)
        handle.write(b"9")
    assert sink.check() is True  # the tail is intact: this is what the chain is for
    sink.close()
    report = verify_chain(path)
    assert (report.ok, report.first_bad_line) == (False, 3)


def test_a_rotated_path_replaced_by_a_non_empty_file_is_a_swap(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = AuditSink(path)
    sink.write(call(1))
    os.rename(path, tmp_path / "audit.jsonl.1")
    path.write_text('{"forged":true}\n')
    path.chmod(0o600)
    assert sink.check() is False
    assert sink.state is SinkState.TAMPERED
    assert records_in(tmp_path / "audit.jsonl.1")[-1]["reason"] == "swapped"


def test_a_new_file_owned_by_someone_else_is_not_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = AuditSink(path)
    sink.write(call(1))
    os.rename(path, tmp_path / "audit.jsonl.1")
    path.touch(mode=0o600)
    os.chown(path, 65534, 65534)
    assert sink.check() is False
    tamper = records_in(tmp_path / "audit.jsonl.1")[-1]
    assert (tamper["kind"], tamper["reason"]) == ("tamper", "unsafe new file")


def test_append_only_attribute_lifted_then_truncated(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = AuditSink(path)
    sink.write(call(1))
    if subprocess.run(["chattr", "+a", str(path)], capture_output=True, check=False).returncode != 0:
        pytest.skip("this filesystem does not support chattr +a")
    try:
        with pytest.raises(PermissionError):
            os.truncate(path, 0)  # the attribute is really in force
        assert sink.check() is True
        sink.write(call(2))  # the sink appends under +a
        subprocess.run(["chattr", "-a", str(path)], check=True)
        os.truncate(path, 0)  # what root (or CAP_LINUX_IMMUTABLE) can do
        assert sink.check() is False
        assert sink.state is SinkState.TAMPERED
    finally:
        subprocess.run(["chattr", "-a", str(path)], check=False)
    assert records_in(path)[-1]["reason"] == "truncated"


def test_a_tampered_sink_echoes_every_record_to_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    sink = AuditSink(path)
    last = sink.write(call(1))
    append_chained(path, last)
    written = sink.write(call(2))
    err = capsys.readouterr().err
    assert json.dumps(written["chain"]) in err


def test_a_file_whose_first_records_were_cut_does_not_start_with_a_header(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = AuditSink(path)
    for number in range(4):
        sink.write(call(number))
    sink.close()
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[2:]))  # what is left still chains

    report = verify_chain(path)
    assert report.ok is False
    assert [(finding.kind, finding.line) for finding in report.findings] == [("removed", 1)]
    assert "header" in (report.problem or "")
