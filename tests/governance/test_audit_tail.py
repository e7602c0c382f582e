"""Reading the newest audit records backwards, in bounded blocks."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay_shell.config import AuditFormat
from relay_shell.errors import AuditUnavailable
from relay_shell.governance.audit import tail as tail_module
from relay_shell.governance.audit.tail import BLOCK_SIZE, lines_backwards, tail_records
from relay_shell.governance.audit.writer import AuditSink

TOOLS = ("exec", "ssh_exec", "session_send", "audit_tail")
OUTCOMES = ("ok", "error", "denied", "timeout")


def fill(path: Path, count: int, fmt: AuditFormat = AuditFormat.JSONL) -> None:
    sink = AuditSink(path, fmt=fmt)
    for number in range(count):
        sink.write(
            {
                "tool": TOOLS[number % 4],
                "tier": number % 4,
                "outcome": OUTCOMES[number % 3],
                "args": {"command": f"echo {number} " + "x" * 100},
            }
        )
    sink.close()


@pytest.fixture(scope="module")
def big_trail(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tail") / "audit.jsonl"
    fill(path, 3000)
    assert path.stat().st_size > 4 * BLOCK_SIZE
    return path


def expected_seqs(count: int, lines: int, keep: Callable[[int], bool]) -> list[int]:
    matching = [number + 2 for number in range(count) if keep(number)]  # seq 1 is the file's header
    return matching[-lines:]


def test_last_records_oldest_first(big_trail: Path) -> None:
    records = tail_records(big_trail, 5)
    assert [record["seq"] for record in records] == [2997, 2998, 2999, 3000, 3001]
    assert all("chain" in record for record in records)


@pytest.mark.parametrize(
    ("filters", "keep"),
    [
        ({"tool": "ssh_exec"}, lambda n: n % 4 == 1),
        ({"outcome": "denied"}, lambda n: n % 3 == 2),
        ({"min_tier": 3}, lambda n: n % 4 == 3),
        ({"tool": "exec", "outcome": "error"}, lambda n: n % 4 == 0 and n % 3 == 1),
        ({"min_tier": 2, "outcome": "ok"}, lambda n: n % 4 >= 2 and n % 3 == 0),
    ],
)
def test_filters(big_trail: Path, filters: dict[str, Any], keep: Callable[[int], bool]) -> None:
    records = tail_records(big_trail, 40, **filters)
    assert [record["seq"] for record in records] == expected_seqs(3000, 40, keep)


def test_filter_matching_nothing_scans_everything_and_returns_empty(big_trail: Path) -> None:
    assert tail_records(big_trail, 10, tool="no_such_tool") == []


def test_more_lines_than_records_returns_all(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    fill(path, 7)
    assert [record["seq"] for record in tail_records(path, 100)] == list(range(1, 9))


def test_reads_only_the_end_of_a_large_file(big_trail: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read_sizes: list[int] = []
    real_pread = os.pread

    def counting_pread(fd: int, length: int, offset: int) -> bytes:
        read_sizes.append(length)
        return real_pread(fd, length, offset)

    monkeypatch.setattr(tail_module.os, "pread", counting_pread)
    assert len(tail_records(big_trail, 10)) == 10
    assert sum(read_sizes) <= BLOCK_SIZE
    assert max(read_sizes) <= BLOCK_SIZE


def test_unparsable_and_torn_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    fill(path, 3)
    with path.open("ab") as handle:
        handle.write(b"garbage\n\xff\xfe\n[1,2]\n\n")
    fill(path, 1)
    with path.open("ab") as handle:
        handle.write(b'{"seq":99,"tool":"ex')
    assert [record["seq"] for record in tail_records(path, 10)] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("fmt", [AuditFormat.CEF, AuditFormat.LEEF])
def test_cef_and_leef_files_are_read_back(tmp_path: Path, fmt: AuditFormat) -> None:
    path = tmp_path / "audit.log"
    fill(path, 12, fmt)
    records = tail_records(path, 3, min_tier=1)
    assert [record["seq"] for record in records] == [11, 12, 13]
    assert [record["tool"] for record in records] == ["ssh_exec", "session_send", "audit_tail"]
    assert isinstance(records[0]["args"], str)


@pytest.mark.parametrize("lines", [0, -1])
def test_no_lines_asked(big_trail: Path, lines: int) -> None:
    assert tail_records(big_trail, lines) == []


def test_missing_file_has_no_records(tmp_path: Path) -> None:
    assert tail_records(tmp_path / "absent.jsonl", 5) == []


def test_unreadable_path_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(AuditUnavailable, match="cannot be read"):
        tail_records(blocker / "audit.jsonl", 5)


def backwards(data: bytes, block_size: int, max_line: int = 1 << 20) -> list[bytes]:
    memory_fd = os.memfd_create("tail-test")
    try:
        os.write(memory_fd, data)
        return list(lines_backwards(memory_fd, len(data), block_size=block_size, max_line=max_line))
    finally:
        os.close(memory_fd)


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=12).filter(lambda item: b"\n" not in item), max_size=12),
    block_size=st.integers(min_value=1, max_value=20),
)
def test_lines_backwards_matches_split(lines: list[bytes], block_size: int) -> None:
    data = b"\n".join(lines)
    assert backwards(data, block_size) == list(reversed(data.split(b"\n")))


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=12).filter(lambda item: b"\n" not in item), max_size=12),
    block_size=st.integers(min_value=1, max_value=20),
    max_line=st.integers(min_value=0, max_value=10),
)
def test_lines_backwards_skips_overlong_lines(lines: list[bytes], block_size: int, max_line: int) -> None:
    data = b"\n".join(lines)
    expected = [line for line in reversed(data.split(b"\n")) if len(line) <= max_line]
    assert backwards(data, block_size, max_line) == expected
