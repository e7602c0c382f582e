"""The output pipe drain: every byte once, in order, large reads for a bulk producer, the fd closed."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import subprocess

import pytest

from relay_shell.capture import OutputCapture
from relay_shell.local.pipes import F_GETPIPE_SZ, GROWN_PIPE_BYTES, READ_CHUNK, OutputPipe, drain_pipe
from relay_shell.sessions.output import OutputBuffer


def fd_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


async def test_a_bulk_producer_is_read_whole_in_large_chunks_and_the_pipe_closed() -> None:
    pipe = OutputPipe()
    read_fd = pipe.read_fd
    assert fcntl.fcntl(read_fd, F_GETPIPE_SZ) == 65536
    os.write(pipe.write_fd, b"x" * 65536)  # the producer was faster than the reader: a full pipe
    size = 64 * 1024 * 1024
    child = subprocess.Popen(["head", "-c", str(size), "/dev/zero"], stdout=pipe.write_fd)
    pipe.close_write()
    chunks: list[int] = []
    digest = hashlib.sha256()
    capacity_seen: list[int] = []

    def sink(chunk: bytes) -> None:
        chunks.append(len(chunk))
        digest.update(chunk)
        if len(chunks) == 1:
            capacity_seen.append(fcntl.fcntl(read_fd, F_GETPIPE_SZ))

    total = await drain_pipe(pipe, sink)
    assert child.wait(timeout=30) == 0
    assert total == sum(chunks) == size + 65536
    assert digest.hexdigest() == hashlib.sha256(b"x" * 65536 + bytes(size)).hexdigest()
    assert chunks[0] == 65536 and max(chunks) <= READ_CHUNK
    assert capacity_seen == [GROWN_PIPE_BYTES]  # grown once a read found it full
    assert pipe.read_fd == -1 and pipe.write_fd == -1
    assert not fd_open(read_fd)


async def test_a_quiet_producer_keeps_the_default_pipe() -> None:
    pipe = OutputPipe()
    read_fd = pipe.read_fd
    os.write(pipe.write_fd, b"hello\n")
    pipe.close_write()
    seen: list[int] = []
    await drain_pipe(pipe, lambda chunk: seen.append(fcntl.fcntl(read_fd, F_GETPIPE_SZ)))
    assert seen == [65536]


async def test_the_bytes_arrive_in_order_once() -> None:
    pipe = OutputPipe()
    payload = b"".join(f"{index:08d}\n".encode() for index in range(200_000))
    writer = os.fdopen(os.dup(pipe.write_fd), "wb")
    pipe.close_write()
    received = bytearray()

    async def write() -> None:
        await asyncio.to_thread(lambda: (writer.write(payload), writer.close()))

    await asyncio.gather(write(), drain_pipe(pipe, received.extend))
    assert bytes(received) == payload


async def test_a_cancelled_drain_leaves_the_rest_to_read_and_close_is_once() -> None:
    pipe = OutputPipe()
    read_fd = pipe.read_fd
    task = asyncio.create_task(drain_pipe(pipe, lambda chunk: None))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pipe.read_fd == read_fd  # still open: what a killed command wrote can still be read
    os.write(pipe.write_fd, b"written before the kill")
    pipe.close_write()
    rest = bytearray()
    assert await drain_pipe(pipe, rest.extend) == len(b"written before the kill")
    assert bytes(rest) == b"written before the kill"
    assert pipe.read_fd == -1  # a drain that ends closes the pipe
    pipe.close()  # idempotent, and never touches a number reused since
    assert pipe.write_fd == -1
    assert not fd_open(read_fd)


async def test_a_failing_sink_ends_the_drain_with_its_error() -> None:
    pipe = OutputPipe()
    os.write(pipe.write_fd, b"boom")

    def sink(chunk: bytes) -> None:
        raise RuntimeError(f"refused {chunk!r}")

    with pytest.raises(RuntimeError, match="refused b'boom'"):
        await drain_pipe(pipe, sink)
    assert pipe.read_fd == -1
    pipe.close()


async def test_a_closed_pipe_is_refused() -> None:
    pipe = OutputPipe()
    pipe.close()
    with pytest.raises(ValueError, match="closed"):
        await drain_pipe(pipe, lambda chunk: None)


async def test_the_capture_of_a_drained_stream_has_its_hash_head_and_tail() -> None:
    pipe = OutputPipe()
    payload = os.urandom(3 * 1024 * 1024)
    writer = os.fdopen(os.dup(pipe.write_fd), "wb")
    pipe.close_write()
    capture = OutputCapture(3000)
    await asyncio.gather(
        asyncio.to_thread(lambda: (writer.write(payload), writer.close())), drain_pipe(pipe, capture.feed)
    )
    assert capture.total == len(payload)
    assert capture.sha256 == hashlib.sha256(payload).hexdigest()
    assert capture.kept == payload[:1000] + payload[-2000:]


@pytest.mark.parametrize("first", [0, 100, 1000])
@pytest.mark.parametrize("size", [1023, 1024, 1025, 5000])
async def test_a_chunk_larger_than_the_live_buffer_keeps_its_last_bytes(first: int, size: int) -> None:
    buffer = OutputBuffer(1024)
    reference = bytearray()
    buffer.append(b"a" * first)
    buffer.append(bytes(range(256)) * (size // 256) + b"z" * (size % 256))
    reference += b"a" * first + bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    kept = bytes(reference[-1024:])
    # bytes 0x80..0xbf are UTF-8 continuation bytes: a cut never leaves them at the head
    skip = 0
    while skip < 3 and skip < len(kept) and 0x80 <= kept[skip] < 0xC0 and len(reference) > 1024:
        skip += 1
    assert buffer.produced == first + size
    assert buffer.buffered == len(kept) - skip
    assert buffer.dropped == len(reference) - len(kept) + skip


async def test_a_chunk_larger_than_the_live_buffer_is_read_back_as_its_last_bytes() -> None:
    buffer = OutputBuffer(1000)
    buffer.append(b"old text\n")
    line = b"".join(f"line {index:05d}\n".encode() for index in range(500))
    buffer.append(line)
    buffer.finish()
    result = await buffer.take(5.0, 10_000, None, False, lambda: 0)
    assert result.output == line[-1000:].decode()
    assert result.dropped_bytes == len(b"old text\n") + len(line) - 1000
    assert result.ended
