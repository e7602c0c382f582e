"""The stdio wire served from the event loop: the line splitter, and the real server when its
stdin and stdout are pipes (the loop), regular files (the threaded fallback), or when the
client closes its end of stdout."""

from __future__ import annotations

import io
import json
import os
import pty
import random
import select
import subprocess
import termios
import time
from pathlib import Path
from typing import Any

import pytest

from relay_shell.stdio import ID_WINDOW, OVERSIZED_METHOD, BoundedLineReader
from relay_shell.stdio_pipes import LineSplitter
from tests.conftest import initialize_line
from tests.e2e.test_stdio import RELAY, server_env

LIMIT = 100
INITIALIZED = b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n'


def split(data: bytes, cuts: list[int], limit: int = LIMIT) -> list[bytes]:
    """What the splitter yields for ``data`` fed in pieces cut at ``cuts``, then ended."""
    splitter = LineSplitter(limit)
    lines: list[bytes] = []
    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        lines.extend(splitter.feed(data[start:end]))
    return lines + splitter.finish()


def threaded(data: bytes, limit: int = LIMIT) -> list[bytes]:
    """What the threaded transport's reader yields for the same bytes."""
    reader = BoundedLineReader(io.BufferedReader(io.BytesIO(data), buffer_size=16), limit)
    lines = []
    while line := reader.readline():
        lines.append(line.encode())
    return lines


def notice(line: bytes) -> dict[str, object]:
    message = json.loads(line)
    assert message["method"] == OVERSIZED_METHOD
    return dict(message["params"])


def test_lines_within_the_limit_pass_whole_and_longer_ones_become_notices() -> None:
    exact = b"x" * LIMIT + b"\n"
    assert split(b'{"a":1}\n' + exact + b"tail", [3, 9, 50]) == [b'{"a":1}\n', exact, b"tail"]
    big = b'{"jsonrpc":"2.0","id":7,"method":"x","params":{"x":"' + b"y" * 5000 + b'"}}\n'
    first, after = split(big + b'{"next":true}\n', [10, 4000, len(big) - 1, len(big) + 2])
    assert notice(first) == {"id": 7, "bytes": len(big), "limit": LIMIT}
    assert after == b'{"next":true}\n'
    (last,) = split(b"q" * 1000, [100, 101])  # oversized and unterminated at end of input
    assert notice(last)["bytes"] == 1000


def test_the_id_of_an_oversized_line_is_read_across_pieces() -> None:
    line = b'{"jsonrpc":"2.0","id":"req-42","method":"x","params":{"a":"' + b"z" * 500 + b'"}}\n'
    for cut in range(1, 40):  # the id's bytes split at every place
        (refused,) = split(line, [cut])
        assert notice(refused)["id"] == "req-42"


def test_an_oversized_line_is_never_kept_whole() -> None:
    splitter = LineSplitter(LIMIT)
    assert splitter.feed(b"{" + b"a" * 50) == []
    assert splitter.feed(b"b" * (ID_WINDOW * 4)) == []
    assert len(splitter._partial) == 0 and splitter._head is not None and len(splitter._head) <= ID_WINDOW
    (refused,) = splitter.feed(b"c" * 10 + b"\n")
    assert notice(refused)["bytes"] == 51 + ID_WINDOW * 4 + 11


@pytest.mark.parametrize("seed", range(40))
def test_any_cut_gives_what_the_threaded_reader_gives(seed: int) -> None:
    chooser = random.Random(seed)
    pieces = [
        b"x" * chooser.choice([0, 1, LIMIT - 1, LIMIT, LIMIT + 1, LIMIT + 2, 3 * LIMIT, ID_WINDOW + 7])
        + (b"\n" if chooser.random() < 0.9 else b"")
        for _ in range(chooser.randint(1, 12))
    ]
    pieces.insert(chooser.randint(0, len(pieces)), b'{"id": 5, "v": "\xc3\xa9\xff"}\n')  # bad UTF-8 too
    data = b"".join(pieces)
    cuts = sorted(chooser.sample(range(1, max(2, len(data))), min(len(data) - 1, chooser.randint(0, 30))))
    expected = [line.decode("utf-8", "replace") for line in threaded(data)]
    assert [line.decode("utf-8", "replace") for line in split(data, cuts)] == expected


# --- the real server ---------------------------------------------------------------------------


def request(request_id: int, method: str, params: dict[str, Any] | None = None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return json.dumps(message).encode() + b"\n"


def server_info(request_id: int) -> bytes:
    return request(request_id, "tools/call", {"name": "server_info", "arguments": {}})


def answers_by_id(text: bytes) -> dict[object, dict[str, Any]]:
    """The JSON-RPC answers in ``text`` by request id."""
    return {message.get("id"): message for message in map(json.loads, text.splitlines())}


def read_answers(fd: int, count: int, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Exactly ``count`` answer lines read from ``fd`` within ``timeout_s``."""
    received = b""
    deadline = time.monotonic() + timeout_s
    while received.count(b"\n") < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0 and select.select([fd], [], [], remaining)[0], "no answer from the server"
        chunk = os.read(fd, 1 << 16)
        assert chunk, "the server closed stdout"
        received += chunk
    return [json.loads(line) for line in received.splitlines()]


def wait_exit(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> int:
    try:
        return process.wait(timeout=timeout_s)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_pipelined_requests_and_a_line_cut_across_writes_are_all_answered(tmp_path: Path) -> None:
    """Requests in one burst and a line written in two pieces: every one is answered once.
    Meanwhile fd 0 reads /dev/null, fd 1 writes to stderr, and the wire is on private fds."""
    stderr_path = tmp_path / "stderr"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [RELAY], env=server_env(tmp_path), cwd=tmp_path, bufsize=0,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
        )  # fmt: skip
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write(initialize_line() + INITIALIZED + b"".join(server_info(n) for n in range(2, 30)))
        process.stdin.flush()
        cut = server_info(30)
        process.stdin.write(cut[:17])
        process.stdin.flush()
        process.stdin.write(cut[17:] + request(31, "ping"))
        process.stdin.flush()
        answers = read_answers(process.stdout.fileno(), 31)
        fds = Path(f"/proc/{process.pid}/fd")
        assert (os.readlink(fds / "0"), os.readlink(fds / "1")) == ("/dev/null", str(stderr_path))
        wire = {os.readlink(fd) for fd in fds.iterdir() if int(fd.name) > 2}
        assert {
            f"pipe:[{os.fstat(stream.fileno()).st_ino}]" for stream in (process.stdin, process.stdout)
        } <= wire
        process.stdin.close()
        assert wait_exit(process) == 0
        assert process.stdout.read() == b""  # nothing else was written
    finally:
        if process.poll() is None:
            process.kill()
    by_id = {answer["id"]: answer for answer in answers}
    assert sorted(by_id) == list(range(1, 32))
    assert all(by_id[n]["result"]["structuredContent"]["version"] for n in range(2, 31))
    assert by_id[31]["result"] == {}


def answers_in(path: Path, count: int) -> list[dict[str, Any]]:
    """The first ``count`` answers the server writes to the file at ``path`` (a bounded poll)."""
    deadline = time.monotonic() + 30
    while (text := path.read_bytes()).count(b"\n") < count:
        assert time.monotonic() < deadline, f"fewer than {count} answers in {path}"
        time.sleep(0.02)
    return [json.loads(line) for line in text.splitlines()]


def test_a_tty_and_a_file_are_served_by_the_threaded_transport(tmp_path: Path) -> None:
    """Neither can be polled safely: a terminal on stdin is left blocking for its other users,
    a regular file on stdout gets every answer in order, and EOF (^D) still ends serving."""
    controller, terminal = pty.openpty()
    attributes = termios.tcgetattr(terminal)
    attributes[3] &= ~termios.ECHO
    termios.tcsetattr(terminal, termios.TCSANOW, attributes)
    answers_path = tmp_path / "answers.jsonl"
    try:
        with answers_path.open("wb") as stdout:
            process = subprocess.Popen(
                [RELAY], env=server_env(tmp_path), cwd=tmp_path, stdin=terminal, stdout=stdout
            )
        os.write(controller, initialize_line())
        assert answers_in(answers_path, 1)[0]["id"] == 1
        assert os.get_blocking(terminal)  # the same open file as the server's stdin
        os.write(controller, INITIALIZED + server_info(2))
        assert answers_in(answers_path, 2)[1]["result"]["isError"] is False
        os.write(controller, request(3, "ping"))
        assert answers_in(answers_path, 3)[2] == {"jsonrpc": "2.0", "id": 3, "result": {}}
        os.write(controller, b"\x04")
        assert wait_exit(process) == 0
    finally:
        os.close(controller)
        os.close(terminal)


def test_a_client_that_closes_its_end_of_stdout_ends_serving_cleanly(tmp_path: Path) -> None:
    """No answer can reach it any more: the server exits 0, without a traceback, whether it
    saw the close while idle or on writing the answer to the call sent after it."""
    stderr_path = tmp_path / "stderr"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [RELAY], env=server_env(tmp_path), cwd=tmp_path,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
        )  # fmt: skip
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(initialize_line() + INITIALIZED)
    process.stdin.flush()
    assert select.select([process.stdout], [], [], 30)[0]
    assert b'"result"' in process.stdout.readline()
    process.stdout.close()
    try:  # the server may already be gone: then the pipe is broken, which is fine too
        process.stdin.write(server_info(2))
        process.stdin.flush()
    except BrokenPipeError:
        pass
    assert wait_exit(process) == 0
    logged = stderr_path.read_text(errors="replace")
    assert "Traceback" not in logged and "server failed" not in logged
