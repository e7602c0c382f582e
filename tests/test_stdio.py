"""The bounded stdio line reader: lines up to the limit pass, longer ones are replaced unparsed."""

from __future__ import annotations

import io
import json

import pytest

from relay_shell.stdio import OVERSIZED_METHOD, BoundedLineReader, line_limit

LIMIT = 100


def read_all(data: bytes, limit: int = LIMIT) -> list[str]:
    reader = BoundedLineReader(io.BufferedReader(io.BytesIO(data), buffer_size=16), limit)
    lines = []
    while line := reader.readline():
        lines.append(line)
    return lines


def notice(line: str) -> dict[str, object]:
    message = json.loads(line)
    assert message["method"] == OVERSIZED_METHOD
    return dict(message["params"])


def test_lines_within_the_limit_pass_unchanged() -> None:
    exact = b"x" * LIMIT + b"\n"  # the limit counts the line's content, the newline is beyond it
    assert read_all(b'{"a":1}\n' + exact + b"tail") == ['{"a":1}\n', exact.decode(), "tail"]
    (refused,) = read_all(b"x" * (LIMIT + 1) + b"\n")
    assert notice(refused)["bytes"] == LIMIT + 2


def test_an_oversized_line_becomes_one_notice_and_reading_goes_on() -> None:
    big = b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"x":"' + b"y" * 5000 + b'"}}\n'
    lines = read_all(big + b'{"next":true}\n')
    assert len(lines) == 2
    assert notice(lines[0]) == {"id": 7, "bytes": len(big), "limit": LIMIT}
    assert lines[1] == '{"next":true}\n'


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b'{"jsonrpc":"2.0","id":"req-1","method":"x","params":{"a":"', "req-1"),
        (b'{"jsonrpc":"2.0","method":"x","id":-3,"params":{"a":"', -3),
        (b'{"jsonrpc":"2.0","method":"x","params":{"id":5,"a":"', None),  # nested: not the request's id
        (b'{"jsonrpc":"2.0","method":"x","params":["', None),
        (b'not json at all "id": 9 ', None),
    ],
)
def test_the_request_id_is_taken_only_from_the_top_level(head: bytes, expected: object) -> None:
    (line,) = read_all(head + b"z" * 500 + b'"}}\n')
    assert notice(line)["id"] == expected


def test_an_oversized_last_line_without_newline_is_still_refused() -> None:
    (line,) = read_all(b"q" * 1000)
    assert notice(line)["bytes"] == 1000


def test_the_line_limit_leaves_room_for_escaping_and_the_envelope() -> None:
    assert line_limit(1024 * 1024) == 4 * 1024 * 1024 + 64 * 1024
