"""Loopback network helpers shared by tests and benches (no pytest, no relay-shell imports).

listening_inodes(port) / listens_on(pid, port)   who holds a TCP listener
start_echo_server() -> (server, port)            a TCP echo server on 127.0.0.1
round_trip(port, payload, socks_to=None)         send and read back, optionally via SOCKS5
wait_refused(port) -> True                       poll until nothing accepts on the port
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from pathlib import Path

WAIT_S = 10.0


def listening_inodes(port: int) -> set[str]:
    """Socket inodes of the TCP listeners on ``port`` (any address)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    return inodes


def listens_on(pid: int, port: int) -> bool:
    """True when process ``pid`` itself holds the listening socket of ``port`` (not a stranger)."""
    wanted = {f"socket:[{inode}]" for inode in listening_inodes(port)}
    if not wanted:
        return False
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) in wanted:
                    return True
    return False


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def start_echo_server() -> tuple[asyncio.Server, int]:
    """A TCP echo server on 127.0.0.1 and its port (close it with ``server.close()``)."""
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


async def round_trip(port: int, payload: bytes, *, socks_to: int | None = None) -> bytes:
    """Send ``payload`` to 127.0.0.1:``port`` and read as many bytes back.

    With ``socks_to`` the port is a SOCKS5 proxy: greeting without auth, then CONNECT to
    127.0.0.1:``socks_to``; a refused CONNECT fails the assertion with the reply.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        async with asyncio.timeout(WAIT_S):
            if socks_to is not None:
                writer.write(b"\x05\x01\x00")
                assert await reader.readexactly(2) == b"\x05\x00"
                writer.write(
                    b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + socks_to.to_bytes(2, "big")
                )
                reply = await reader.readexactly(10)
                assert reply[:2] == b"\x05\x00", reply
            writer.write(payload)
            return await reader.readexactly(len(payload))
    finally:
        writer.close()


async def wait_refused(port: int) -> bool:
    """Poll until nothing accepts on the port (a remote side closes asynchronously); True then."""
    async with asyncio.timeout(WAIT_S):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except ConnectionRefusedError:
                return True
            except ConnectionResetError:  # the listener closed while this connect was queued
                await asyncio.sleep(0.02)
                continue
            writer.close()
            await asyncio.sleep(0.02)
