"""The coalescing transport under uvicorn's h11 protocol: same bytes, same order, one write per loop turn."""

from __future__ import annotations

import asyncio
import socket

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from uvicorn.server import ServerState

from relay_shell.http.wire import CoalescingH11Protocol, CoalescingTransport


class RecordingTransport(asyncio.Transport):
    """An inner transport that records what reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.writers: list[asyncio.Task[object] | None] = []  # the task each write was made in
        self.events: list[str] = []
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))
        self.writers.append(asyncio.current_task())
        self.events.append("write")

    def close(self) -> None:
        self.closing = True
        self.events.append("close")

    def abort(self) -> None:
        self.closing = True
        self.events.append("abort")

    def is_closing(self) -> bool:
        return self.closing

    def write_eof(self) -> None:
        self.events.append("eof")

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


async def next_turn() -> None:
    """Let the loop run the callbacks scheduled so far (the flush is one of them)."""
    await asyncio.sleep(0)


async def test_writes_of_one_turn_leave_as_one_write_in_order() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(bytearray(b"body"))
    transport.write(b"")
    transport.write(memoryview(b"!"))
    assert inner.writes == []
    assert transport.get_write_buffer_size() == 7 + len(b"HTTP/1.1 200 OK\r\n\r\nbody!")
    await next_turn()
    assert inner.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody!"]
    transport.write(b"next")
    await next_turn()
    assert inner.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody!", b"next"]
    assert transport.get_write_buffer_size() == 7


async def test_close_and_eof_write_the_pending_bytes_first_abort_drops_them() -> None:
    loop = asyncio.get_running_loop()
    inner = RecordingTransport()
    closing = CoalescingTransport(inner, loop)
    closing.write(b"last words")
    closing.close()
    assert inner.events == ["write", "close"]
    assert inner.writes == [b"last words"]
    await next_turn()
    assert inner.writes == [b"last words"]  # the scheduled flush found nothing left

    inner = RecordingTransport()
    ending = CoalescingTransport(inner, loop)
    ending.write(b"tail")
    ending.write_eof()
    assert inner.events == ["write", "eof"]

    inner = RecordingTransport()
    aborted = CoalescingTransport(inner, loop)
    aborted.write(b"never sent")
    aborted.abort()
    await next_turn()
    assert inner.events == ["abort"]
    assert inner.writes == []


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _json(request: Request) -> Response:
    return JSONResponse({"echo": (await request.body()).decode()})


async def _stream(request: Request) -> Response:
    async def parts() -> object:
        for index in range(3):
            yield f"data: {index}\n\n"

    return StreamingResponse(parts(), media_type="text/event-stream")


async def _exchange(port: int, request: bytes, until: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        received = b""
        async with asyncio.timeout(10):
            while until not in received:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                received += chunk
        return received
    finally:
        writer.close()


@pytest.mark.parametrize("keep_alive", [True, False])
async def test_uvicorn_answers_through_the_coalescing_protocol(keep_alive: bool) -> None:
    """A JSON answer, a chunked stream and two requests on one connection arrive whole and in order."""
    app = Starlette(routes=[Route("/json", _json, methods=["POST"]), Route("/stream", _stream)])
    port = _free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", http=CoalescingH11Protocol
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.01)
        connection = b"keep-alive" if keep_alive else b"close"
        post = (
            b"POST /json HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nConnection: "
            + connection
            + b"\r\n\r\nhi"
        )
        stream = b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        answer = await _exchange(
            port, post + stream if keep_alive else post, b"0\r\n\r\n" if keep_alive else b"}"
        )
        head, _, rest = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert rest.startswith(b'{"echo":"hi"}')
        if keep_alive:
            second = rest[len(b'{"echo":"hi"}') :]
            assert second.startswith(b"HTTP/1.1 200 OK")
            assert b"transfer-encoding: chunked" in second.lower()
            body = second.partition(b"\r\n\r\n")[2]
            assert [line for line in body.split(b"\r\n") if line.startswith(b"data:")] == [
                b"data: 0\n\n",
                b"data: 1\n\n",
                b"data: 2\n\n",
            ]
            assert body.endswith(b"0\r\n\r\n")
    finally:
        server.should_exit = True
        await serving


async def test_a_complete_answer_is_one_write_made_before_the_request_task_ends() -> None:
    """Head and body of a JSON answer in one write, made by the request's own task (no extra turn)."""
    app = Starlette(routes=[Route("/json", _json, methods=["POST"])])
    config = uvicorn.Config(app, log_level="warning", lifespan="off", http=CoalescingH11Protocol)
    config.load()
    state = ServerState()
    protocol = CoalescingH11Protocol(config=config, server_state=state, app_state={})
    inner = RecordingTransport()
    protocol.connection_made(inner)
    protocol.data_received(b"POST /json HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\nhi")
    (request_task,) = state.tasks
    async with asyncio.timeout(10):
        await request_task
    assert inner.writers == [request_task]
    head, _, body = inner.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert body == b'{"echo":"hi"}'
    protocol.connection_lost(None)
