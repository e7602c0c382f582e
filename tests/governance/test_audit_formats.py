"""JSON Lines, CEF and LEEF encoders: one line per record, no forged field or record."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay_shell import __version__
from relay_shell.governance.audit.formats import from_cef, from_leef, parse_line, to_cef, to_jsonl, to_leef

HOSTILE = "a|b=c\nCEF:0|forged"
LINE_BREAKS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def hostile_record() -> dict[str, object]:
    return {
        "ts": "2025-01-02T03:04:05.678Z",
        "seq": 7,
        "tool": "exec|x",
        "tier": 3,
        "outcome": "ok",
        "args": {"command": HOSTILE, "note": "tab\there \\ back=slash"},
        "target": "web1 seq=99",
        "extra": HOSTILE + "\tLEEF:1.0|forged|x|1|y|k=v",
    }


def assert_one_line(line: str) -> None:
    assert len(line.splitlines()) == 1
    assert not any(char in line for char in LINE_BREAKS)


def test_jsonl_is_compact_utf8_and_escapes_line_separators() -> None:
    record = {"tool": "exec", "args": {"command": "é ✓ \u2028 \x85 \x7f"}}
    line = to_jsonl(record)
    assert line == '{"tool":"exec","args":{"command":"é ✓ \\u2028 \\u0085 \\u007f"}}'
    assert_one_line(line)
    assert json.loads(line) == record


def test_cef_header_and_extension_with_hostile_values() -> None:
    record = hostile_record()
    line = to_cef(record)

    assert_one_line(line)
    assert line.startswith(f"CEF:0|relay-shell|relay-shell|{__version__}|exec\\|x|exec\\|x ok|9|")
    # a SIEM splits the header on the first 7 unescaped "|": the 8th part is the extension
    parts = re.split(r"(?<!\\)\|", line, maxsplit=7)
    assert len(parts) == 8
    assert parts[6] == "9"
    assert parts[7].startswith("ts=")
    # every unescaped "=" of the extension starts a field: exactly one per record key
    keys = re.findall(r"(?:^| )([A-Za-z0-9_]+)=", re.sub(r"\\.", "", parts[7]))
    assert keys == list(record)
    decoded = from_cef(line)
    assert decoded is not None
    assert list(decoded) == list(record)
    assert decoded["args"] == json.dumps(record["args"], ensure_ascii=False, separators=(",", ":"))
    assert decoded["target"] == "web1 seq=99"
    assert decoded["extra"] == record["extra"]
    assert decoded["seq"] == 7


def test_cef_extension_escapes_equals_backslash_and_newlines() -> None:
    line = to_cef({"tool": "t", "v": "a=b\\c\r\nd"})
    assert line.endswith("|tool=t v=a\\=b\\\\c\\r\\nd")


def test_leef_attributes_are_tab_delimited_and_escaped() -> None:
    record = hostile_record()
    line = to_leef(record)

    assert_one_line(line)
    assert line.startswith(f"LEEF:1.0|relay-shell|relay-shell|{__version__}|exec\\|x|")
    attributes = line.split("|ts=", 1)[1]
    assert attributes.count("\t") == len(record) - 1
    keys = [attribute.split("=", 1)[0] for attribute in ("ts=" + attributes).split("\t")]
    assert keys == list(record)
    decoded = from_leef(line)
    assert decoded is not None
    assert decoded["extra"] == record["extra"]
    assert decoded["tier"] == 3


def test_keys_are_sanitized_and_kept_unique() -> None:
    decoded = from_cef(to_cef({"tool": "t", "a b": "1", "a=b": "2", "a_b": "3", "": "4"}))
    assert decoded == {"tool": "t", "a_b": "1", "a_b_2": "2", "a_b_3": "3", "_": "4"}


@pytest.mark.parametrize(
    "line",
    [
        "",
        "CEF:0|only|three",
        "LEEF:1.0|a|b|c|d|novalue",
        "LEEF:1.0|a|b|c|d|bad key=v",
        "CEF:1|a|b|c|d|e|f|k=v",
    ],
)
def test_decoders_reject_foreign_lines(line: str) -> None:
    assert from_cef(line) is None
    assert from_leef(line) is None


def test_parse_line_detects_the_format() -> None:
    record = {"tool": "exec", "seq": 3}
    assert parse_line(to_jsonl(record).encode()) == record
    assert parse_line(to_cef(record).encode()) == record
    assert parse_line(to_leef(record).encode()) == record
    assert parse_line(b"\xff\xfe") is None
    assert parse_line(b"[1]") is None
    assert parse_line(b"syslog noise") is None


def test_lone_surrogates_do_not_break_the_encoders() -> None:
    record = {"tool": "exec", "args": "bad \udcff byte"}
    for encode in (to_cef, to_leef, to_jsonl):
        line = encode(record)
        line.encode("utf-8")
        assert "\\udcff" in line


text_dicts = st.dictionaries(st.text(max_size=12), st.text(max_size=40), max_size=8)


@settings(max_examples=300, deadline=None)
@given(record=text_dicts, tool=st.text(max_size=12))
def test_cef_is_always_one_line_and_decodes_back(record: dict[str, str], tool: str) -> None:
    full = {"tool": tool, **record}
    line = to_cef(full)
    assert_one_line(line)
    decoded = from_cef(line)
    assert decoded is not None
    assert [str(value) for value in decoded.values()] == list(full.values())


@settings(max_examples=300, deadline=None)
@given(record=text_dicts, tool=st.text(max_size=12))
def test_leef_is_always_one_line_and_decodes_back(record: dict[str, str], tool: str) -> None:
    full = {"tool": tool, **record}
    line = to_leef(full)
    assert_one_line(line)
    decoded = from_leef(line)
    assert decoded is not None
    assert [str(value) for value in decoded.values()] == list(full.values())


@settings(max_examples=200, deadline=None)
@given(record=text_dicts)
def test_jsonl_is_always_one_line(record: dict[str, str]) -> None:
    line = to_jsonl(record)
    assert_one_line(line)
    assert json.loads(line) == record
