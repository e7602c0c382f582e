"""The server side of a SOCKS5 handshake (RFC 1928): CONNECT, no authentication.

:func:`socks5_request` reads a client's greeting and request on a ``D`` forward's listener
and returns the destination it asks for, or why it was refused (a reply has then been
sent); the caller opens the channel and answers with :func:`socks5_reply`. Each requested
destination passes a :data:`DestinationCheck` before anything is opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

from relay_shell.errors import InvalidInput
from relay_shell.ssh.targets import format_host_port, validate_hostname

SOCKS_HANDSHAKE_TIMEOUT_S = 30.0

DestinationCheck = Callable[[str, int], str | None]
"""``(host, port) -> None`` to allow a SOCKS destination, or the reason it is refused."""

_SOCKS_VERSION = 5
_SOCKS_NO_AUTH = 0x00
_SOCKS_NO_ACCEPTABLE = 0xFF
_SOCKS_CONNECT = 0x01

# Reply codes
SOCKS_SUCCEEDED = 0x00
SOCKS_NOT_ALLOWED = 0x02
SOCKS_REFUSED = 0x05
SOCKS_COMMAND_UNSUPPORTED = 0x07
SOCKS_ADDRESS_UNSUPPORTED = 0x08


async def socks5_reply(writer: asyncio.StreamWriter, code: int) -> None:
    """Send the reply ``code`` (bound address 0.0.0.0:0); a client already gone is ignored."""
    writer.write(bytes([_SOCKS_VERSION, code, 0, 1, 0, 0, 0, 0, 0, 0]))
    with contextlib.suppress(OSError):
        await writer.drain()


async def socks5_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, check: DestinationCheck | None
) -> tuple[str, int] | str:
    """Run the server side of a SOCKS5 handshake: the requested (host, port), or why it was refused.

    Raises:
        EOFError, TimeoutError, OSError: the client went away, stalled or broke the protocol.
    """
    async with asyncio.timeout(SOCKS_HANDSHAKE_TIMEOUT_S):
        version, count = await reader.readexactly(2)
        methods = await reader.readexactly(count)
        if version != _SOCKS_VERSION or _SOCKS_NO_AUTH not in methods:
            writer.write(bytes([_SOCKS_VERSION, _SOCKS_NO_ACCEPTABLE]))
            return "SOCKS client did not offer SOCKS5 without authentication"
        writer.write(bytes([_SOCKS_VERSION, _SOCKS_NO_AUTH]))
        version, command, _, address_type = await reader.readexactly(4)
        host: str | None = None
        if address_type == 1:
            host = socket.inet_ntop(socket.AF_INET, await reader.readexactly(4))
        elif address_type == 4:
            host = socket.inet_ntop(socket.AF_INET6, await reader.readexactly(16))
        elif address_type == 3:
            length = (await reader.readexactly(1))[0]
            host = _socks_domain(await reader.readexactly(length))
        port = int.from_bytes(await reader.readexactly(2), "big") if host is not None else 0
    if host is None or port == 0:
        await socks5_reply(writer, SOCKS_ADDRESS_UNSUPPORTED)
        return "SOCKS request with an unsupported or invalid address"
    if version != _SOCKS_VERSION or command != _SOCKS_CONNECT:
        await socks5_reply(writer, SOCKS_COMMAND_UNSUPPORTED)
        return f"SOCKS command {command} is not supported (CONNECT only)"
    refusal = check(host, port) if check is not None else None
    if refusal is not None:
        await socks5_reply(writer, SOCKS_NOT_ALLOWED)
        return f"SOCKS destination {format_host_port(host, port)} refused: {refusal}"
    return host, port


def _socks_domain(raw: bytes) -> str | None:
    """A requested domain name if it is a valid host name (no control characters, no options)."""
    try:
        return validate_hostname(raw.decode("ascii"), argument="destination")
    except (UnicodeDecodeError, InvalidInput):
        return None
