"""The HTTP edge checks every route shares: one strict Host/Origin check and request-body caps.

:class:`EdgeGuard` is an ASGI middleware wrapped around the whole app, so it runs before
routing, authentication and every handler: ``/mcp``, the OAuth routes, ``/consent``,
``/metrics``, the probes, the well-known metadata and a 404 alike.

**Authorities.** :func:`parse_authority` is the only parser of a ``Host`` value or of the
authority of an ``Origin``. It accepts exactly ``host[:port]`` where host is a DNS name
(letters, digits, hyphens, dot-separated labels), a dotted-quad IPv4 address or a bracketed
IPv6 address without a zone, and port is 1-65535 written without leading zeros. Anything
else is refused: userinfo and ``@`` (``127.0.0.1:8080@evil.example``), paths, spaces,
percent-escapes, empty labels and trailing dots, non-ASCII. A parsed value must then equal
one entry of the allowed set (:func:`allowed_authorities`): the host compared whole (case
folded, IPv6 compressed) and, when the entry names a port, the port too. The allowed set is
the loopback names (any port, so an SSH tunnel works), the bind address, each
``RELAY_SHELL_HTTP_ALLOWED_HOSTS`` entry and the issuer's host. An ``Origin``, when present,
must be ``http://`` or ``https://`` plus an allowed authority and nothing else. ``null`` is
refused unless the browser also says ``Sec-Fetch-Site: same-origin``: that is how a browser
posts a page's own form under ``Referrer-Policy: no-referrer`` (which the TLS edge sets on
every response), while a sandboxed or ``data:`` page elsewhere sends ``null`` with
``cross-site``. A refused Host is answered 421, a refused Origin 403; exactly one Host header
is required.

**Bodies.** Each route has a byte cap (:func:`body_cap`): ``/mcp`` twice
``RELAY_SHELL_MAX_INPUT_BYTES`` plus 64 KiB (the JSON-RPC envelope and string escaping),
``/register`` 64 KiB, every other route 16 KiB. A declared ``Content-Length`` over the cap is
answered 413 before any body byte is read. Otherwise the body is not buffered here: the
route reads it through a counting ``receive`` (:class:`_BodyGuard`) that stops at the first
message past the cap (the route gets :class:`BodyTooLarge`, never more bytes) and turns
whatever the route then answers into 413. So nothing extra is held in memory, a route that
refuses before reading (the bearer check of ``/mcp``) reads nothing, and the connection is
closed after a 413 so the rest of the body is never read.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relay_shell.config import Settings
from relay_shell.errors import ConfigError

KIB = 1024
MCP_PATH = "/mcp"
MCP_BODY_OVERHEAD = 64 * KIB
REGISTER_BODY_CAP = 64 * KIB
FORM_BODY_CAP = 16 * KIB
MAX_AUTHORITY_CHARS = 300
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 - names of wildcard binds, not a bind

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_AUTHORITY = re.compile(
    rf"(?:\[(?P<ipv6>[0-9a-f:.]{{2,45}})\]|(?P<name>{_LABEL}(?:\.{_LABEL})*))(?::(?P<port>[1-9][0-9]{{0,4}}))?"
)
_DOTTED_QUAD = re.compile(r"[0-9.]+")


@dataclass(frozen=True)
class Authority:
    """A parsed ``host[:port]``: host lower-cased (IPv6 compressed, no brackets), port or ``None``."""

    host: str
    port: int | None = None

    def matches(self, allowed: Authority) -> bool:
        """True when this authority is ``allowed``: the same host, and the same port if it names one."""
        return self.host == allowed.host and (allowed.port is None or allowed.port == self.port)


def parse_authority(text: str) -> Authority | None:
    """``host[:port]`` parsed strictly (see the module docstring), or ``None`` when it is anything else."""
    if not text or len(text) > MAX_AUTHORITY_CHARS or not text.isascii():
        return None
    found = _AUTHORITY.fullmatch(text.lower())
    if found is None:
        return None
    port = int(found["port"]) if found["port"] else None
    host = _canonical_host(found["ipv6"], found["name"])
    if host is None or (port is not None and port > 65535):
        return None
    return Authority(host, port)


def _canonical_host(ipv6: str | None, name: str | None) -> str | None:
    """An IPv6 or dotted-quad address in its canonical form, a name as is; ``None`` if not an address."""
    try:
        if ipv6 is not None:
            return str(ipaddress.IPv6Address(ipv6))
        if name is not None and _DOTTED_QUAD.fullmatch(name):
            return str(ipaddress.IPv4Address(name))
    except ValueError:
        return None
    return name


def parse_origin(text: str) -> Authority | None:
    """The authority of an ``Origin`` that is exactly ``http(s)://host[:port]``, else ``None``."""
    for scheme in ("http://", "https://"):
        if text.lower().startswith(scheme):
            return parse_authority(text[len(scheme) :])
    return None


def _configured_authority(text: str, variable: str) -> Authority:
    parsed = parse_authority(text.strip())
    if parsed is None:
        raise ConfigError(f"{variable}: {text.strip()!r} is not a host name or address with an optional port")
    return parsed


def allowed_authorities(settings: Settings) -> tuple[Authority, ...]:
    """The Host/Origin authorities this server answers to (see the module docstring).

    Raises:
        ConfigError: an ``RELAY_SHELL_HTTP_ALLOWED_HOSTS`` entry or the issuer's host is not
            a plain ``host[:port]``.
    """
    allowed: list[Authority] = [Authority(host) for host in LOOPBACK_NAMES]
    bind = settings.http_host.strip().strip("[]")
    if bind not in WILDCARD_BINDS:
        allowed.append(_configured_authority(f"[{bind}]" if ":" in bind else bind, "RELAY_SHELL_HTTP_HOST"))
    for entry in (settings.http_allowed_hosts or "").split(","):
        if entry.strip():
            allowed.append(_configured_authority(entry, "RELAY_SHELL_HTTP_ALLOWED_HOSTS"))
    issuer_host = urlsplit(settings.auth_issuer).netloc
    if issuer_host:
        allowed.append(_configured_authority(issuer_host, "RELAY_SHELL_AUTH_ISSUER"))
    return tuple(dict.fromkeys(allowed))


def sdk_host_patterns(allowed: Iterable[Authority]) -> tuple[list[str], list[str]]:
    """The same set in the SDK's ``TransportSecuritySettings`` notation (a second, looser check on /mcp)."""
    hosts: set[str] = set()
    for authority in allowed:
        host = f"[{authority.host}]" if ":" in authority.host else authority.host
        if authority.port is None:
            hosts.update({host, f"{host}:*"})
        else:
            hosts.add(f"{host}:{authority.port}")
    origins = {f"{scheme}://{host}" for host in hosts for scheme in ("http", "https")}
    return sorted(hosts), sorted(origins)


def body_cap(path: str, settings: Settings) -> int:
    """The largest request body, in bytes, the server reads for ``path``."""
    if path == MCP_PATH:
        return 2 * settings.max_input_bytes + MCP_BODY_OVERHEAD
    if path == "/register":
        return REGISTER_BODY_CAP
    return FORM_BODY_CAP


_WATCHED = {b"host": 0, b"origin": 1, b"sec-fetch-site": 2, b"content-length": 3, b"transfer-encoding": 4}
MAX_VERDICTS = 256


class EdgeGuard:
    """ASGI middleware: strict Host/Origin on every request, then the route's body cap.

    The headers it reads are picked from the raw list in one pass. The Host/Origin verdict
    is a function of those header values alone (the allowed set is fixed at start), so it
    is kept per distinct set of values (at most :data:`MAX_VERDICTS`; values past that are
    judged every time): the same answer, without parsing the same ``Host`` on every request.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.allowed = allowed_authorities(settings)
        self._verdicts: dict[tuple[tuple[bytes, ...], ...], tuple[int, str] | None] = {}

    def host_allowed(self, values: list[str]) -> bool:
        """Exactly one Host header whose value parses and is in the allowed set."""
        if len(values) != 1:
            return False
        parsed = parse_authority(values[0])
        return parsed is not None and any(parsed.matches(entry) for entry in self.allowed)

    def origin_allowed(self, values: list[str], fetch_site: list[str]) -> bool:
        """No Origin header, or exactly one naming an allowed http(s) authority (or a same-origin ``null``)."""
        if not values:
            return True
        if len(values) != 1:
            return False
        if values[0] == "null":
            return fetch_site == ["same-origin"]
        parsed = parse_origin(values[0])
        return parsed is not None and any(parsed.matches(entry) for entry in self.allowed)

    def _verdict(
        self, host: list[bytes], origin: list[bytes], fetch_site: list[bytes]
    ) -> tuple[int, str] | None:
        """Why the request's Host or Origin is refused (status, text), or ``None`` when both pass;
        judged from the raw header values and kept per distinct values."""
        key = (tuple(host), tuple(origin), tuple(fetch_site))
        try:
            return self._verdicts[key]
        except KeyError:
            pass
        verdict: tuple[int, str] | None = None
        if not self.host_allowed([value.decode("latin-1") for value in host]):
            verdict = 421, "Invalid Host header"
        elif not self.origin_allowed(
            [value.decode("latin-1") for value in origin], [value.decode("latin-1") for value in fetch_site]
        ):
            verdict = 403, "Invalid Origin header"
        if len(self._verdicts) < MAX_VERDICTS:
            self._verdicts[key] = verdict
        return verdict

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        picked: tuple[list[bytes], ...] = ([], [], [], [], [])
        for name, value in scope["headers"]:
            slot = _WATCHED.get(name)
            if slot is not None:
                picked[slot].append(value)
        host, origin, fetch_site, length, transfer = picked
        refused = self._verdict(host, origin, fetch_site)
        declared = length[0].decode("latin-1") if length else None
        if refused is None and scope["type"] == "http":
            refused = self._declared_too_large(scope, declared)
        if refused is not None:
            await _refuse(scope, receive, send, *refused)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        chunked = bool(transfer) and b"chunked" in transfer[0].lower()
        expected = int(declared) if declared is not None else (None if chunked else 0)
        guard = _BodyGuard(receive, send, body_cap(str(scope.get("path", "")), self.settings), expected)
        # The route stopped at the cap (the exception bare, or out of a task group: suppress
        # takes it out of an exception group too, and re-raises anything else).
        with contextlib.suppress(BodyTooLarge):
            await self.app(scope, guard.receive, guard.send)
        if guard.exceeded and not guard.started:
            await _refuse(scope, receive, send, 413, guard.refusal_text())

    def _declared_too_large(self, scope: Scope, declared: str | None) -> tuple[int, str] | None:
        """413 when the declared ``Content-Length`` passes the route's cap, 400 when it is no number."""
        if declared is None:
            return None
        if not declared.isdigit():
            return 400, "Invalid Content-Length header"
        cap = body_cap(str(scope.get("path", "")), self.settings)
        return (413, f"Request body too large (limit {cap} bytes)") if int(declared) > cap else None


class BodyTooLarge(Exception):
    """Raised to the route by :class:`_BodyGuard` when the body passes its cap."""


class _BodyGuard:
    """A ``receive`` that counts body bytes and a ``send`` that answers 413 once the cap is passed.

    An answer that starts before the whole body came in (a route that refuses without reading,
    such as the bearer check) gets ``Connection: close``, so the server never reads the rest
    of that body to reach a next request on the connection.
    """

    def __init__(self, receive: Receive, send: Send, cap: int, expected: int | None) -> None:
        """``expected`` is the declared body length, 0 for no body, ``None`` for a chunked one."""
        self._receive = receive
        self._send = send
        self.cap = cap
        self.received = 0
        self.complete = expected == 0
        self.exceeded = False
        self.started = False  # the route's answer began before the cap was passed

    def refusal_text(self) -> str:
        return f"Request body too large (limit {self.cap} bytes)"

    async def receive(self) -> Message:
        """The next message; :class:`BodyTooLarge` instead of any body byte past the cap."""
        if self.exceeded:
            raise BodyTooLarge(self.refusal_text())
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.cap:
                self.exceeded = True
                raise BodyTooLarge(self.refusal_text())
            self.complete = self.complete or not message.get("more_body", False)
        return message

    async def send(self, message: Message) -> None:
        """Pass the route's answer on, unless the body passed the cap before it began (then drop it)."""
        if self.exceeded and not self.started:
            return
        if message["type"] == "http.response.start":
            self.started = True
            headers = list(message.get("headers", []))
            if not self.complete and not any(name.lower() == b"connection" for name, _ in headers):
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await self._send(message)


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, text: str) -> None:
    """A plain-text refusal; the connection is closed after it (an unread body is never read)."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    response = PlainTextResponse(text, status_code=status, headers={"Connection": "close"})
    await response(scope, receive, send)
