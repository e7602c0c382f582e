"""Where audit anchors and shipped records go: journald (native protocol) or syslog (RFC 5424).

A :class:`Channel` sends one entry: a human-readable message plus structured fields. It
raises ``OSError`` when the entry could not be handed over, so the sink can degrade:

- :class:`JournaldChannel` writes datagrams to the journal's socket in the documented
  native protocol (``KEY=value`` lines, a length-prefixed form for values holding a
  newline). An entry too large for one datagram is written to a sealed ``memfd`` whose
  descriptor is passed instead, as journald expects. A stopped journald
  (``ECONNREFUSED``, ``ENOENT``) or a queue that stays full beyond the timeout raise.
  Journald stamps every entry with trusted ``_PID``, ``_UID``... fields that a client
  cannot set, which is what lets ``--verify-audit`` tell the writer's anchors apart.
- :class:`SyslogChannel` sends RFC 5424 messages over TCP or TLS with octet-counting
  framing (RFC 6587 / RFC 5425): ``<len> <message>``. The structured fields travel as one
  SD element ``[audit@32473 key="value" ...]`` (32473 is the private enterprise number
  RFC 5612 reserves for documentation). The connection is made on first use and again
  after a failure; before each send a peer that has closed the connection is noticed, so
  a stopped collector fails the next send instead of swallowing it into a dead socket.
  ``logging.handlers.SysLogHandler`` is not used: it frames neither RFC 5424 nor octet
  counting and has no TLS.
"""

from __future__ import annotations

import array
import errno
import fcntl
import os
import select
import socket
import ssl
import struct
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

DEFAULT_JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
SEND_TIMEOUT_S = 2.0
SD_ID = "audit@32473"
APP_NAME = "relay-shell-audit"
SYSLOG_FACILITY_AUDIT = 13  # "log audit"


class Channel(Protocol):
    """One destination for anchors or records."""

    @property
    def kind(self) -> str:
        """``journald`` or ``syslog``."""
        ...

    @property
    def target(self) -> str:
        """Where entries go (a socket path or ``host:port``), for server_info and errors."""
        ...

    def send(self, message: str, fields: Mapping[str, str], *, severity: int = 6) -> None:
        """Hand one entry over; raises ``OSError`` when that is not possible."""
        ...

    def probe(self) -> None:
        """Raise ``OSError`` when the destination is known to be gone (cheap; no entry sent)."""
        ...

    def close(self) -> None:
        """Release the connection (idempotent); a later send reconnects."""
        ...


class JournaldChannel:
    """The journal's native protocol over its datagram socket."""

    kind = "journald"

    def __init__(
        self, socket_path: Path = DEFAULT_JOURNAL_SOCKET, *, timeout_s: float = SEND_TIMEOUT_S
    ) -> None:
        self.socket_path = socket_path
        self._timeout_s = timeout_s
        self._socket: socket.socket | None = None
        self._probe_socket: socket.socket | None = None

    @property
    def target(self) -> str:
        return str(self.socket_path)

    def send(self, message: str, fields: Mapping[str, str], *, severity: int = 6) -> None:
        payload = journal_payload(
            {"MESSAGE": message, "PRIORITY": str(severity), "SYSLOG_IDENTIFIER": APP_NAME, **fields}
        )
        sock = self._connected()
        try:
            sock.sendto(payload, str(self.socket_path))
        except OSError as exc:
            if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                self.close()
                raise
            self._send_memfd(sock, payload)

    def probe(self) -> None:
        """A journald listens on the socket (a connect, which a stale socket file refuses).

        The connect is made on a socket kept for probing: a datagram socket may connect again,
        and each connect looks the path up anew, as a fresh socket's would.
        """
        if self._probe_socket is None:
            self._probe_socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            self._probe_socket.connect(str(self.socket_path))
        except OSError:
            self._probe_socket.close()
            self._probe_socket = None
            raise

    def close(self) -> None:
        for held in (self._socket, self._probe_socket):
            if held is not None:
                held.close()
        self._socket = self._probe_socket = None

    def _connected(self) -> socket.socket:
        if self._socket is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            sock.settimeout(self._timeout_s)
            self._socket = sock
        return self._socket

    def _send_memfd(self, sock: socket.socket, payload: bytes) -> None:
        """Large entries: a sealed memfd whose descriptor travels in SCM_RIGHTS."""
        fd = os.memfd_create("relay-shell-audit", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
            sock.sendmsg([], rights, 0, str(self.socket_path))
        finally:
            os.close(fd)


def journal_listening(socket_path: Path) -> None:
    """Raise ``OSError`` unless a journald listens on ``socket_path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as probe:
        probe.connect(str(socket_path))


def journal_payload(fields: Mapping[str, str]) -> bytes:
    """Serialise fields in the native protocol: ``KEY=value\\n``, or ``KEY\\n<u64 le len>value\\n``."""
    parts: list[bytes] = []
    for key, value in fields.items():
        data = value.encode("utf-8", "backslashreplace")
        name = key.encode("ascii")
        if b"\n" in data:
            parts.append(name + b"\n" + struct.pack("<Q", len(data)) + data + b"\n")
        else:
            parts.append(name + b"=" + data + b"\n")
    return b"".join(parts)


class SyslogChannel:
    """RFC 5424 over TCP or TLS, octet-counting framing."""

    kind = "syslog"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
        timeout_s: float = SEND_TIMEOUT_S,
        hostname: str | None = None,
    ) -> None:
        self.host, self.port, self._tls = host, port, tls
        self._timeout_s = timeout_s
        self._hostname = _header_token(hostname or socket.gethostname(), 255)
        self._socket: socket.socket | None = None

    @property
    def target(self) -> str:
        scheme = "syslog+tls" if self._tls is not None else "syslog+tcp"
        return f"{scheme}://{self.host}:{self.port}"

    def send(self, message: str, fields: Mapping[str, str], *, severity: int = 6) -> None:
        frame = syslog_frame(
            message,
            fields,
            severity=severity,
            hostname=self._hostname,
            msgid=fields.get("RELAY_AUDIT_KIND", "-"),
        )
        sock = self._connected()
        try:
            sock.sendall(frame)
        except OSError:
            self.close()
            raise

    def probe(self) -> None:
        self._connected()

    def close(self) -> None:
        if self._socket is not None:
            try:
                self._socket.close()
            finally:
                self._socket = None

    def _connected(self) -> socket.socket:
        """The live connection: a peer that closed it is dropped and redialled (raises on failure)."""
        if self._socket is not None and _peer_closed(self._socket):
            self.close()
        if self._socket is None:
            raw = socket.create_connection((self.host, self.port), timeout=self._timeout_s)
            try:
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock = self._tls.wrap_socket(raw, server_hostname=self.host) if self._tls else raw
            except BaseException:
                raw.close()
                raise
            sock.settimeout(self._timeout_s)
            self._socket = sock
        return self._socket


def _peer_closed(sock: socket.socket) -> bool:
    """True when the collector closed the connection (syslog collectors never send data)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    sock.setblocking(False)
    try:
        data = sock.recv(4096)
    except ssl.SSLWantReadError:
        return False  # only TLS records without application data (session tickets)
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.settimeout(SEND_TIMEOUT_S)
    return data == b""


def syslog_frame(
    message: str,
    fields: Mapping[str, str],
    *,
    severity: int,
    hostname: str,
    msgid: str,
    pid: int | None = None,
) -> bytes:
    """One octet-counted RFC 5424 message: ``<len> <PRI>1 TS HOST APP PID MSGID [SD] MSG``."""
    priority = SYSLOG_FACILITY_AUDIT * 8 + max(0, min(7, severity))
    timestamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    params = " ".join(f'{_sd_name(key)}="{_sd_escape(value)}"' for key, value in fields.items())
    header = (
        f"<{priority}>1 {timestamp} {hostname} {APP_NAME} {pid or os.getpid()} "
        f"{_header_token(msgid, 32)} [{SD_ID} {params}] "
    )
    body = (header + message.replace("\n", " ")).encode("utf-8", "backslashreplace")
    return str(len(body)).encode("ascii") + b" " + body


def _sd_name(key: str) -> str:
    """SD parameter names: the field name without its prefix, lower case (``seq``, ``chain``)."""
    return _header_token(key.removeprefix("RELAY_AUDIT_").lower(), 32)


def _sd_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]").replace("\n", " ")


def _header_token(text: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, at most ``limit`` characters, ``-`` if empty."""
    cleaned = "".join(char for char in text if "!" <= char <= "~")[:limit]
    return cleaned or "-"
