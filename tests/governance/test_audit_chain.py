"""Canonical JSON, chain links and the chain verifier."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay_shell.governance.audit.chain import GENESIS, canonical_json, is_chain_value, json_safe, link
from relay_shell.governance.audit.formats import to_jsonl
from relay_shell.governance.audit.verify import verify_chain
from relay_shell.governance.audit.writer import AuditSink


def write_trail(path: Path, count: int, **extra: object) -> list[dict[str, object]]:
    """A header (line 1) and ``count`` call records (lines 2...)."""
    sink = AuditSink(path)
    records = [
        sink.write({"tool": "exec", "tier": 1, "outcome": "ok", "args": {"command": f"echo {n}"}, **extra})
        for n in range(count)
    ]
    sink.close()
    return records


def chained_line(prev: str, record: dict[str, object]) -> str:
    linked = {**record, "prev": prev}
    linked["chain"] = link(prev, linked)
    return to_jsonl(linked)


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert (
        canonical_json({"b": 1, "a": {"d": [1, "é"], "c": None}})
        == '{"a":{"c":null,"d":[1,"é"]},"b":1}'.encode()
    )


def test_link_is_sha256_of_prev_and_canonical_record() -> None:
    record = {"seq": 1, "prev": GENESIS, "tool": "exec"}
    expected = hashlib.sha256(
        GENESIS.encode() + b'{"prev":"' + GENESIS.encode() + b'","seq":1,"tool":"exec"}'
    )
    assert link(GENESIS, record) == expected.hexdigest()
    assert link(GENESIS, {**record, "chain": "ignored"}) == expected.hexdigest()
    assert link("1" * 64, record) != expected.hexdigest()
    assert is_chain_value(link(GENESIS, record))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"a": (1, 2)}, {"a": [1, 2]}),
        ({1: "x"}, {"1": "x"}),
        (float("inf"), "inf"),
        (b"\xffab", "\ufffdab"),
        ("\udc80", "\\udc80"),
        (Path("/x"), "/x"),
        (True, True),
        (None, None),
    ],
)
def test_json_safe(value: object, expected: object) -> None:
    assert json_safe(value) == expected


def test_clean_trail_verifies(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_trail(path, 5)
    report = verify_chain(path)
    assert (report.ok, report.records, report.first_bad_line, report.problem) == (True, 6, None, None)
    assert (report.findings, report.files) == ((), (str(path),))


@pytest.mark.parametrize(
    ("needle", "replacement"),
    [
        ("echo 1", "echo 7"),  # a value
        ('"tier":1', '"tier":2'),  # a number
        ('"seq":3', '"seq":9'),  # the sequence number
        ('"tool"', '"toal"'),  # a key
    ],
)
def test_one_changed_byte_is_reported_on_its_line(tmp_path: Path, needle: str, replacement: str) -> None:
    path = tmp_path / "audit.jsonl"
    write_trail(path, 3)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    assert needle in lines[2]
    lines[2] = lines[2].replace(needle, replacement, 1)
    path.write_text("".join(lines), encoding="utf-8")

    report = verify_chain(path)
    assert report.ok is False
    assert report.first_bad_line == 3
    assert report.records == 3  # the header, the first record, and the last (whose prev names the lost one)
    assert report.problem


@pytest.mark.parametrize("field", ["prev", "chain"])
def test_a_changed_hash_digit_is_reported(tmp_path: Path, field: str) -> None:
    path = tmp_path / "audit.jsonl"
    records = write_trail(path, 3)
    value = str(records[1][field])
    flipped = ("1" if value[10] != "1" else "2").join((value[:10], value[11:]))
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[2] = lines[2].replace(f'"{field}":"{value}"', f'"{field}":"{flipped}"')
    assert flipped in lines[2]
    path.write_text("".join(lines))

    report = verify_chain(path)
    assert (report.ok, report.first_bad_line) == (False, 3)


def test_equivalent_json_spelling_is_still_an_edit(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_trail(path, 2, ratio=1e16)
    text = path.read_text(encoding="utf-8")
    assert "1e+16" in text
    path.write_text(text.replace("1e+16", "1E+16", 1))  # parses to the same value
    report = verify_chain(path)
    assert (report.ok, report.first_bad_line) == (False, 2)


def test_removed_record_breaks_the_next_link(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_trail(path, 4)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:2] + lines[3:]))
    report = verify_chain(path)
    assert (report.ok, report.first_bad_line) == (False, 3)
    assert report.problem is not None
    assert "prev" in report.problem


def test_swapped_records_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_trail(path, 4)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[2], lines[3] = lines[3], lines[2]
    path.write_text("".join(lines))
    report = verify_chain(path)
    assert (report.ok, report.first_bad_line) == (False, 3)


def test_seq_must_increase_even_when_links_are_right(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = chained_line(GENESIS, {"seq": 5, "tool": "a"})
    second = chained_line(json.loads(first)["chain"], {"seq": 5, "tool": "b"})
    path.write_text(first + "\n" + second + "\n")
    report = verify_chain(path)
    assert (report.ok, report.first_bad_line) == (False, 2)
    assert report.problem is not None
    assert "seq" in report.problem


def test_first_prev_of_a_rotated_file_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = chained_line("ab" * 32, {"seq": 41, "tool": "a"})
    second = chained_line(json.loads(first)["chain"], {"seq": 42, "tool": "b"})
    path.write_text(first + "\n" + second + "\n")
    report = verify_chain(path)
    assert (report.ok, report.records, report.first_bad_line, report.findings) == (True, 2, None, ())


@pytest.mark.parametrize(
    ("content", "bad_line"),
    [
        (b"", None),
        (b"\n", 1),
        (b"not json\n", 1),
        (b"[1, 2]\n", 1),
        (b'{"seq": NaN}\n', 1),
        (b'{"seq":1,"tool":"\xff"}\n', 1),
    ],
)
def test_malformed_lines(tmp_path: Path, content: bytes, bad_line: int | None) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(content)
    report = verify_chain(path)
    assert report.first_bad_line == bad_line
    assert report.ok is (bad_line is None)


def test_torn_last_line_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_trail(path, 2)
    text = path.read_text(encoding="utf-8")
    path.write_text(text + text.splitlines()[0][:30])
    report = verify_chain(path)
    assert (report.ok, report.first_bad_line, report.records) == (False, 4, 3)


def test_missing_file_is_a_failure_without_a_line(tmp_path: Path) -> None:
    report = verify_chain(tmp_path / "absent.jsonl")
    assert (report.ok, report.first_bad_line, report.records) == (False, None, 0)
    assert report.problem is not None
    assert "absent.jsonl" in report.problem


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=st.dictionaries(st.text(max_size=10), json_values, max_size=5))
def test_any_arguments_round_trip_through_the_chain(
    tmp_path_factory: pytest.TempPathFactory, args: object
) -> None:
    path = tmp_path_factory.mktemp("prop") / "audit.jsonl"
    sink = AuditSink(path)
    written = [sink.write({"tool": "exec", "args": args}) for _ in range(2)]
    sink.close()
    assert [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()][1:] == written
    assert verify_chain(path).ok


def test_a_line_that_is_not_utf8_is_refused_even_when_its_bytes_hash_to_its_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_trail(path, 3)
    lines = path.read_bytes().split(b"\n")[:-1]
    last = lines[-1]
    suffix = len(b',"chain":"') + 64 + len(b'"}')
    body = last[:-suffix].replace(b"echo 2", b"echo \xff")  # inside a JSON string: parses when replaced
    prev = json.loads(last)["prev"]
    chain = hashlib.sha256(prev.encode("ascii") + body + b"}").hexdigest()
    lines[-1] = body + b',"chain":"' + chain.encode("ascii") + b'"}'
    path.write_bytes(b"\n".join(lines) + b"\n")
    report = verify_chain(path)
    assert (report.ok, report.first_bad_line) == (False, len(lines))
    assert [finding.kind for finding in report.findings] == ["malformed"]
    assert report.problem == "not valid UTF-8"
