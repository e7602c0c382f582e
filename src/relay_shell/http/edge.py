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
answered 413 before any body byte is read; otherwise the body is read message by message and
reading stops as soon as the running total passes the cap (413). At most the cap is ever
held in memory; the connection is closed after a 413 so the rest is never read.
"""

from __future__ import annotations

import ipaddress
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import Headers
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


class EdgeGuard:
    """ASGI middleware: strict Host/Origin on every request, then the route's body cap."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.allowed = allowed_authorities(settings)

    def host_allowed(self, headers: Headers) -> bool:
        """Exactly one Host header whose value parses and is in the allowed set."""
        values = headers.getlist("host")
        if len(values) != 1:
            return False
        parsed = parse_authority(values[0])
        return parsed is not None and any(parsed.matches(entry) for entry in self.allowed)

    def origin_allowed(self, headers: Headers) -> bool:
        """No Origin header, or exactly one naming an allowed http(s) authority (or a same-origin ``null``)."""
        values = headers.getlist("origin")
        if not values:
            return True
        if len(values) != 1:
            return False
        if values[0] == "null":
            return headers.getlist("sec-fetch-site") == ["same-origin"]
        parsed = parse_origin(values[0])
        return parsed is not None and any(parsed.matches(entry) for entry in self.allowed)

    def refusal(self, headers: Headers) -> tuple[int, str] | None:
        """Why the request's Host or Origin is refused (status, text), or ``None`` when both pass."""
        if not self.host_allowed(headers):
            return 421, "Invalid Host header"
        if not self.origin_allowed(headers):
            return 403, "Invalid Origin header"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refused = self.refusal(headers)
        if refused is None and scope["type"] == "http":
            refused, receive = await self._capped_body(scope, headers, receive)
        if refused is not None:
            await _refuse(scope, receive, send, *refused)
            return
        await self.app(scope, receive, send)

    async def _capped_body(
        self, scope: Scope, headers: Headers, receive: Receive
    ) -> tuple[tuple[int, str] | None, Receive]:
        """The body read up to the route's cap, and a ``receive`` that replays it; or a refusal."""
        cap = body_cap(str(scope.get("path", "")), self.settings)
        too_large = (413, f"Request body too large (limit {cap} bytes)")
        declared = headers.get("content-length")
        if declared is not None and not declared.isdigit():
            return (400, "Invalid Content-Length header"), receive
        if declared is not None and int(declared) > cap:
            return too_large, receive
        buffered = await _read_capped(receive, cap)
        if buffered is None:
            return too_large, receive

        async def replay() -> Message:
            return buffered.popleft() if buffered else await receive()

        return None, replay


async def _read_capped(receive: Receive, cap: int) -> deque[Message] | None:
    """The request's body messages (joined into one) and what followed, or ``None`` past ``cap``."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return deque([{"type": "http.request", "body": bytes(body), "more_body": True}, message])
        chunk = message.get("body", b"")
        if len(body) + len(chunk) > cap:
            return None
        body += chunk
        if not message.get("more_body", False):
            return deque([{"type": "http.request", "body": bytes(body), "more_body": False}])


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, text: str) -> None:
    """A plain-text refusal; the connection is closed after it (an unread body is never read)."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    response = PlainTextResponse(text, status_code=status, headers={"Connection": "close"})
    await response(scope, receive, send)
