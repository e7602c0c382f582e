"""asyncssh and socket errors -> relay-shell errors, in one place for the whole SSH layer.

``RemoteUnreachable.reason`` is one of::

    dns       the name does not resolve
    refused   nothing listens / the network or a jump host cannot reach it
    timeout   no answer in time
    auth      the server refused every key (or a key could not be loaded)
    host_key  the host key is unknown (strict), changed or revoked
    closed    the server dropped the connection (e.g. sshd MaxStartups)
    protocol  the SSH conversation failed (no common algorithm, bad banner, ...)
"""

from __future__ import annotations

import errno
import socket
from typing import Final

import asyncssh

from relay_shell.errors import RemoteUnreachable

REASONS: Final = ("dns", "refused", "timeout", "auth", "host_key", "closed", "protocol")
_UNREACHABLE_ERRNOS = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL})


def classify(exc: BaseException) -> tuple[str, str]:
    """``(reason, detail)`` for an exception raised while connecting."""
    detail = str(exc) or type(exc).__name__
    result: tuple[str, str]
    match exc:
        case asyncssh.HostKeyNotVerifiable():
            result = ("host_key", detail)
        case asyncssh.PermissionDenied():
            result = ("auth", f"authentication refused: {detail}")
        case asyncssh.KeyImportError() | asyncssh.KeyEncryptionError():
            result = ("auth", f"cannot load the private key: {detail}")
        case asyncssh.ConnectionLost():
            result = ("closed", f"connection closed by the server during the handshake: {detail}")
        case asyncssh.DisconnectError():
            result = _classify_disconnect(exc, detail)
        case asyncssh.ChannelOpenError():
            result = ("refused", f"the jump host could not open a tunnel: {exc.reason or detail}")
        case socket.gaierror():
            result = ("dns", f"name does not resolve: {exc.strerror or detail}")
        case ConnectionRefusedError():
            result = ("refused", "connection refused (nothing listening on that port?)")
        case TimeoutError():
            result = ("timeout", detail if str(exc) else "no answer in time")
        case ConnectionResetError() | BrokenPipeError() | ConnectionAbortedError():
            result = ("closed", f"connection reset by the server: {detail}")
        case OSError() if exc.errno in _UNREACHABLE_ERRNOS:
            result = ("refused", f"unreachable: {exc.strerror or detail}")
        case _:
            result = ("protocol", f"{type(exc).__name__}: {detail}")
    return result


def _classify_disconnect(exc: asyncssh.DisconnectError, detail: str) -> tuple[str, str]:
    if exc.code == asyncssh.DISC_HOST_KEY_NOT_VERIFIABLE:
        return "host_key", detail
    if exc.code in (asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE, asyncssh.DISC_ILLEGAL_USER_NAME):
        return "auth", f"authentication refused: {detail}"
    if exc.code == asyncssh.DISC_CONNECTION_LOST:
        return "closed", detail
    return "protocol", detail


def unreachable(
    host: str, exc: BaseException, *, via: str | None = None, problem: str | None = None
) -> RemoteUnreachable:
    """The :class:`RemoteUnreachable` for ``exc``; ``problem`` replaces the detail (host key text)."""
    reason, detail = classify(exc)
    if problem is not None:
        detail = problem
    if via is not None:
        detail = f"via {via}: {detail}"
    return RemoteUnreachable(host, reason, detail)


def is_handshake_drop(exc: BaseException) -> bool:
    """A connection dropped during the handshake: what sshd does above ``MaxStartups``; retryable."""
    return isinstance(exc, asyncssh.ConnectionLost | ConnectionResetError | BrokenPipeError) or (
        isinstance(exc, asyncssh.DisconnectError) and exc.code == asyncssh.DISC_CONNECTION_LOST
    )
