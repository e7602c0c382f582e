"""The stdio wire served from the event loop: the line splitter, and the real server when its
stdin and stdout are pipes (the loop), regular files (the threaded fallback), or when the
client closes its end of stdout."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import pty
import random
import select
import socket
import subprocess
import termios
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.shared.message import SessionMessage
from mcp_types import JSONRPCRequest, JSONRPCResponse

from relay_shell import stdio_pipes
from relay_shell.stdio import ID_WINDOW, OVERSIZED_METHOD, BoundedLineReader
from relay_shell.stdio_pipes import LineSplitter, PipeLines, PipeOut
from tests.conftest import initialize_line, pids_with_marker, read_trail
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


async def test_end_of_input_and_the_exit_are_not_held_by_answers_nobody_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The wire is full of an unread answer: a request that arrives meanwhile waits, but end of
    input still reaches the server (it is handed on, then the end), and the end of serving
    drops what cannot be written once the flush time is over instead of waiting for ever."""
    monkeypatch.setattr(stdio_pipes, "FLUSH_S", 0.2)
    in_read, in_write = os.pipe()
    out_read, out_write = os.pipe()
    loop = asyncio.get_running_loop()
    lines = PipeLines(1 << 20)
    out = PipeOut(lines.stop)
    lines.on_end = out.nudge
    await loop.connect_read_pipe(lambda: lines, os.fdopen(in_read, "rb", buffering=0))
    await loop.connect_write_pipe(lambda: out, os.fdopen(out_write, "wb", buffering=0))
    unread = SessionMessage(JSONRPCResponse(jsonrpc="2.0", id=1, result={"pad": "x" * (3 << 20)}))
    try:
        with anyio.fail_after(20):
            async with stdio_pipes._serving(lines, out) as (read_stream, write_stream):
                await write_stream.send(unread)
                os.write(in_write, request(2, "ping"))
                while len(out._waiters) < 2:  # the writer and the reader both wait for the client
                    await anyio.sleep(0.01)
                os.close(in_write)
                handed = await read_stream.receive()
                assert isinstance(handed, SessionMessage) and handed.message == JSONRPCRequest(
                    jsonrpc="2.0", id=2, method="ping"
                )
                with pytest.raises(anyio.EndOfStream):
                    await read_stream.receive()
            await out.close()
    finally:
        out.abort()
        os.close(out_read)
    assert out.lost or out._aborted


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


# --- hostile and broken clients -----------------------------------------------------------------


def spawn(tmp_path: Path, stdin: Any, stdout: Any, **env: str) -> subprocess.Popen[bytes]:
    """The real server with its stderr in ``tmp_path / "stderr"``."""
    with (tmp_path / "stderr").open("wb") as stderr:
        return subprocess.Popen(
            [RELAY], env=server_env(tmp_path, **env), cwd=tmp_path, bufsize=0,
            stdin=stdin, stdout=stdout, stderr=stderr,
        )  # fmt: skip


def no_traceback(tmp_path: Path) -> None:
    logged = (tmp_path / "stderr").read_text(errors="replace")
    assert "Traceback" not in logged and "server failed" not in logged, logged


def padded_list(request_id: int) -> bytes:
    """A tools/list request of about 32 KiB (its answer is as large)."""
    return request(request_id, "tools/list", {"_meta": {"pad": "p" * 32000}})


def push(fd: int, data: bytes, stall_s: float) -> int:
    """How much of ``data`` the non-blocking ``fd`` takes before it is all written or stays
    full for ``stall_s`` seconds."""
    written = 0
    while written < len(data) and select.select([], [fd], [], stall_s)[1]:
        with contextlib.suppress(BlockingIOError):
            written += os.write(fd, data[written : written + 65536])
    return written


def test_a_client_that_does_not_read_is_not_read_either_and_the_loop_goes_on(tmp_path: Path) -> None:
    """4,000 small requests sent before reading any answer are all taken and answered. Past
    that, answers piling up unread make the server stop taking requests (bounded memory)
    instead of starting a handler for every line; a call already running still ends and is
    audited; once the client reads again every request is answered and the server exits 0."""
    process = spawn(tmp_path, subprocess.PIPE, subprocess.PIPE)
    assert process.stdin is not None and process.stdout is not None
    to_server, from_server = process.stdin.fileno(), process.stdout.fileno()
    gate = tmp_path / "go"
    waiting = request(2, "tools/call", {"name": "shell_exec", "arguments": {
        "command": f"while [ ! -e {gate} ]; do sleep 0.02; done; echo through", "timeout": 60}})  # fmt: skip
    os.write(to_server, initialize_line() + INITIALIZED + waiting)
    assert read_answers(from_server, 1)[0]["id"] == 1
    os.set_blocking(to_server, False)
    batch = b"".join(request(n, "ping") for n in range(3, 4003))
    assert push(to_server, batch, 10.0) == len(batch), "a batch of small requests was not all taken"
    assert sorted(answer["id"] for answer in read_answers(from_server, 4000)) == list(range(3, 4003))
    flood = b"".join(padded_list(n) for n in range(4003, 4123))
    written = push(to_server, flood, 1.0)
    assert written < len(flood) * 3 // 4, f"the server took {written} bytes while nobody read its answers"
    gate.touch()  # the call ends and is audited while the wire is still full
    deadline = time.monotonic() + 30
    while not [r for r in read_trail(tmp_path / "audit.jsonl") if r.get("phase") == "end"]:
        assert time.monotonic() < deadline, "the running call was not audited while the wire was full"
        time.sleep(0.02)
    received = bytearray()
    while True:  # read again: the rest is taken, every request answered, then end of input
        wants_write = [to_server] if written < len(flood) else []
        readable, writable, _ = select.select([from_server], wants_write, [], 30)
        assert readable or writable, "the server stalled with a reading client"
        if writable:
            with contextlib.suppress(BlockingIOError):
                written += os.write(to_server, flood[written : written + 65536])
        if readable:
            if not (chunk := os.read(from_server, 1 << 20)):
                break
            received += chunk
            if received.count(b"\n") == 121:  # all answered: end of input
                process.stdin.close()
    assert wait_exit(process) == 0
    answers = answers_by_id(bytes(received))
    assert sorted(answers) == [2, *range(4003, 4123)]
    assert answers[2]["result"]["structuredContent"]["output"] == "through\n"
    assert all(answers[n]["result"]["tools"] for n in range(4003, 4123))
    no_traceback(tmp_path)


HOSTILE_LINES = [
    request(2, "ping")[:-1] + b"\r\n",
    request(3, "ping")[:-1] + b"\0\n",  # not JSON: no answer, serving goes on
    b'{"jsonrpc":"2.0","id":"\xff\xfe","method":"ping"}\n',  # invalid UTF-8, replaced
    b"\n",
    b" \t \n",
    b"\0\0\0\n",
    b"\xc3\n",
    b'{"jsonrpc":"2.0","id":4,"method":"ping","params":{"pad":"' + b"y" * 70_000 + b'"}}\n',  # over the cap
    b'{"jsonrpc":"2.0","id":5,"method":"ping","params":{"pad":"' + b"y" * 69_000 + b'"}}\n',  # just under
    b"[]\n",
    b'{"jsonrpc":"2.0","id":6,"method":"ping"}{"jsonrpc":"2.0","id":7,"method":"ping"}\n',
    b'{"jsonrpc":"2.0","id":8,"method":"no/such"}\n',
    request(9, "ping"),
]


@pytest.mark.parametrize("path", ["loop", "threaded"])
def test_hostile_lines_get_the_same_answers_on_both_paths(tmp_path: Path, path: str) -> None:
    """The same bytes (CRLF, NUL, invalid UTF-8, blank, over and under the cap, two objects on
    one line), the first lines fed a byte at a time: the loop (here over two sockets) and the
    threaded transport (stdout a file) answer exactly alike and serve on. Over the socket the
    client also writes into its stdout and shuts down that side's sending: both ignored;
    closing the socket ends serving cleanly at the next answer."""
    client_in, server_in = socket.socketpair()
    client_out, server_out = socket.socketpair()
    answers_path = tmp_path / "answers.jsonl"
    with server_in, server_out, answers_path.open("wb") as answers_file:
        process = spawn(
            tmp_path,
            server_in,
            server_out if path == "loop" else answers_file,
            RELAY_SHELL_MAX_INPUT_BYTES="1024",
        )
    try:
        if path == "loop":
            client_out.sendall(b"not for the server\n")
            client_out.shutdown(socket.SHUT_WR)
        head = initialize_line() + INITIALIZED + HOSTILE_LINES[0]
        for offset in range(len(head)):  # every cut of the first lines
            client_in.sendall(head[offset : offset + 1])
        client_in.sendall(b"".join(HOSTILE_LINES[1:]))
        if path == "loop":
            answers = read_answers(client_out.fileno(), 7)
            client_out.close()
            client_in.sendall(request(10, "ping"))  # its answer cannot be written: serving ends
        else:
            answers = answers_in(answers_path, 7)
            client_in.shutdown(socket.SHUT_WR)
        assert wait_exit(process) == 0
    finally:
        if process.poll() is None:
            process.kill()
        client_in.close()
        client_out.close()
    by_id = answers_by_id(b"\n".join(json.dumps(answer).encode() for answer in answers))
    assert sorted(by_id, key=str) == [1, 2, 4, 5, 8, 9, "\ufffd\ufffd"]
    assert all(by_id[n]["result"] == {} for n in (2, 5, 9, "\ufffd\ufffd"))
    assert by_id[4]["error"]["code"] == -32600 and by_id[8]["error"]["code"] == -32601
    no_traceback(tmp_path)


def test_end_of_input_while_calls_run_cancels_and_audits_them(tmp_path: Path) -> None:
    """stdin closes while a long shell_exec and a job run: both are killed and audited as
    cancelled, the server exits 0 without a traceback. The commands it ran never had the wire
    (no descriptor of theirs is one of its pipes), and the pipes' open files, which the parent
    shares, were never made non-blocking (the server polls its own opening of each)."""
    into_read, into_write = os.pipe()
    out_read, out_write = os.pipe()
    wire = {f"pipe:[{os.fstat(fd).st_ino}]" for fd in (into_read, out_read)}
    marker = f"relay-stdio-eof-{time.monotonic_ns()}"
    look = request(
        2, "tools/call", {"name": "shell_exec", "arguments": {"command": "readlink /proc/$$/fd/*"}}
    )
    running = request(
        3, "tools/call", {"name": "shell_exec", "arguments": {"command": f"sleep 300 # {marker}-a"}}
    )
    job = request(4, "tools/call", {"name": "shell_exec", "arguments": {
        "command": f"sleep 300 # {marker}-b", "yield_after": 1}})  # fmt: skip
    process = spawn(tmp_path, into_read, out_write)
    try:
        os.write(into_write, initialize_line() + INITIALIZED + look + running + job)
        answers = answers_by_id(b"\n".join(json.dumps(a).encode() for a in read_answers(out_read, 3)))
        seen = answers[2]["result"]["structuredContent"]["output"].split()
        assert seen and not wire & set(seen), seen
        assert answers[4]["result"]["structuredContent"]["status"] == "running"
        assert os.get_blocking(into_read) and os.get_blocking(out_write)
        deadline = time.monotonic() + 30
        while len(pids_with_marker(marker)) < 2:
            assert time.monotonic() < deadline, "the calls did not start"
            time.sleep(0.02)
        os.close(into_write)
        assert wait_exit(process) == 0
        assert os.get_blocking(into_read) and os.get_blocking(out_write)
    finally:
        if process.poll() is None:
            process.kill()
        for fd in (into_read, out_read, out_write):
            os.close(fd)
    assert pids_with_marker(marker) == []
    trail = read_trail(tmp_path / "audit.jsonl")
    job_id = answers[4]["result"]["structuredContent"]["job_id"]
    assert [r["outcome"] for r in trail if r.get("phase") == "end" and r["request_id"] == "3"] == [
        "cancelled"
    ]
    assert [r["outcome"] for r in trail if r.get("tool") == "job_end" and r["job_id"] == job_id] == [
        "cancelled"
    ]
    no_traceback(tmp_path)
