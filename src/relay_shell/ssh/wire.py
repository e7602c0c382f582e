"""One socket write per SSH packet on our connections (docs/architecture.md, "SSH").

asyncssh sends an ``SSH_MSG_IGNORE`` packet ahead of every encrypted connection-layer
packet (a channel open, a request, data, EOF, close), and writes each of the two to the
socket on its own: two ``send()`` calls per packet, each of which may wake the server's
sshd. :func:`coalesce_packet_writes` makes the connection hand the transport each packet
together with whatever was produced while it was being built (that ``IGNORE``, or a key
re-exchange it triggered) in one write. The bytes on the wire, their order, and every
packet asyncssh chooses to send are unchanged; only how they are split into writes
differs.

It wraps two methods asyncssh's connection object looks up on itself (``send_packet`` and
``_send``); where they are missing (another asyncssh), the connection is left as it is.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncssh


def coalesce_packet_writes(connection: asyncssh.SSHClientConnection) -> bool:
    """Make ``connection`` write each packet (with the packets built for it) at once.

    Returns whether it did (``False``: this asyncssh lacks the methods, nothing changed).
    """
    send: Callable[[bytes], None] | None = getattr(connection, "_send", None)
    send_packet: Callable[..., None] | None = getattr(connection, "send_packet", None)
    if not callable(send) or not callable(send_packet):
        return False
    pending: list[bytes] | None = None

    def send_or_hold(data: bytes) -> None:
        if pending is None:
            send(data)
        else:
            pending.append(data)

    def send_packet_at_once(pkttype: int, *args: bytes, **options: object) -> None:
        nonlocal pending
        if pending is not None:  # built while another packet is (the IGNORE ahead of it)
            send_packet(pkttype, *args, **options)
            return
        pending = []
        try:
            send_packet(pkttype, *args, **options)
        finally:
            data, pending = b"".join(pending), None
            if data:
                send(data)

    setattr(connection, "_send", send_or_hold)  # noqa: B010 (an instance attribute over the method)
    setattr(connection, "send_packet", send_packet_at_once)  # noqa: B010
    return True
