"""The streamable HTTP transport: /mcp, /healthz, /readyz, /metrics, OAuth.

TLS is the edge's job (deploy/Caddyfile); this binds loopback by default. Every route sits
behind :class:`relay_shell.http.edge.EdgeGuard`: one strict Host/Origin check (the loopback
names, the bind address, ``RELAY_SHELL_HTTP_ALLOWED_HOSTS`` and the issuer's host) and a
request-body cap per route, enforced by the server itself.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import signal
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import anyio
import uvicorn
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from relay_shell.app import RelayServer, Services, build_server, build_services
from relay_shell.config import AuthMode, Settings
from relay_shell.http.edge import MCP_PATH, EdgeGuard, allowed_authorities, body_cap, sdk_host_patterns
from relay_shell.http.wire import CoalescingH11Protocol
from relay_shell.startup import announce

if TYPE_CHECKING:
    from relay_shell.http.builtin_auth import BuiltinAuth

log = logging.getLogger("relay_shell.http")

KEEP_ALIVE_S = 75
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _jwt_kwargs(settings: Settings) -> dict[str, Any]:
    """Auth settings and the JWT verifier for MCPServer, empty unless OAuth is on in ``jwt`` mode."""
    if not settings.auth_enabled or settings.auth_mode is not AuthMode.JWT:
        return {}
    issuer = settings.auth_issuer.rstrip("/")
    from relay_shell.http.jwt_auth import JwtTokenVerifier

    assert settings.auth_jwks_url is not None
    verifier = JwtTokenVerifier(
        jwks_url=settings.auth_jwks_url,
        issuer=settings.auth_jwt_issuer or issuer,
        audience=settings.auth_audience or settings.resource_url,
        algorithms=settings.jwt_algorithms,
    )
    auth = AuthSettings(
        issuer_url=settings.auth_jwt_issuer or issuer,  # type: ignore[arg-type]
        resource_server_url=settings.resource_url,  # type: ignore[arg-type]
        validate_token_resource=False,
    )
    return {"auth": auth, "token_verifier": verifier}


def metrics_authorized(token: str | None, authorization: str | None) -> bool:
    """True when no metrics token is set, or ``authorization`` is ``Bearer <token>`` (constant-time)."""
    if token is None:
        return True
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())


def build_builtin(settings: Settings, services: Services) -> BuiltinAuth | None:
    """The builtin authorization server when OAuth is on in ``builtin`` mode, else ``None``; it
    also gives ``services`` the watch that ends a revoked grant's work (``http/grant_watch.py``).

    Raises:
        ConfigError: the OAuth state, the issuer or the operator hash is unusable.
    """
    if not settings.auth_enabled or settings.auth_mode is not AuthMode.BUILTIN:
        return None
    from relay_shell.http.builtin_auth import build_builtin_auth
    from relay_shell.http.grant_watch import GrantWatch

    builtin = build_builtin_auth(settings, services.audit)
    services.watchers.append(
        GrantWatch(builtin.provider.store, services).periodic()
    )  # a revoked grant's work ends
    return builtin


def build_http_server(
    settings: Settings, services: Services | None = None, builtin: BuiltinAuth | None = None
) -> RelayServer:
    """A RelayServer with auth wiring and the health/metrics (and, builtin, consent) routes registered."""
    svc = services or build_services(settings)
    auth_kwargs = builtin.server_kwargs() if builtin is not None else _jwt_kwargs(settings)
    server = build_server(settings, svc, **auth_kwargs)
    if builtin is not None:
        builtin.add_routes(server)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        writable = svc.audit.check()
        body = {
            "status": "ready" if writable else "degraded",
            "audit_writable": writable,
            "audit_path": str(svc.audit.path),
        }
        return JSONResponse(body, status_code=200 if writable else 503)

    async def metrics(request: Request) -> Response:
        if not metrics_authorized(settings.metrics_token, request.headers.get("authorization")):
            return PlainTextResponse(
                "metrics need a bearer token",
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        svc.audit.check()  # relay_shell_audit_degraded tells the sink's state now, not at the last write
        return PlainTextResponse(svc.metrics.render(), media_type=PROMETHEUS_CONTENT_TYPE)

    server.custom_route("/healthz", methods=["GET"])(healthz)
    server.custom_route("/readyz", methods=["GET"])(readyz)
    server.custom_route("/metrics", methods=["GET"])(metrics)
    return server


def build_http_app(server: RelayServer, builtin: BuiltinAuth | None = None) -> Starlette:
    """The ASGI app: the SDK's routes and ours, every request through :class:`EdgeGuard` first.

    With ``builtin``, its revocation endpoint replaces the SDK's ``/revoke``.

    Raises:
        ConfigError: an allowed host or the issuer's host is not a plain ``host[:port]``.
    """
    settings = server.services.settings
    hosts, origins = sdk_host_patterns(allowed_authorities(settings))
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )
    app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        transport_security=security,
        host=settings.http_host,
        max_request_body_size=body_cap(MCP_PATH, settings),
    )
    if builtin is not None:
        builtin.replace_revocation(app)
    app.add_middleware(EdgeGuard, settings=settings)
    return app


def build_http_stack(settings: Settings, services: Services | None = None) -> tuple[RelayServer, Starlette]:
    """The server and the ASGI app of these settings, builtin OAuth wired when enabled.

    Raises:
        ConfigError: an allowed host, the issuer or the OAuth state is unusable.
    """
    svc = services or build_services(settings)
    builtin = build_builtin(settings, svc)
    server = build_http_server(settings, svc, builtin)
    return server, build_http_app(server, builtin)


class HttpStartFailed(RuntimeError):
    """The HTTP listener could not start (the address is taken, or not ours to bind)."""


class _RelayUvicorn(uvicorn.Server):
    """A uvicorn server that leaves SIGTERM/SIGINT/SIGHUP to :func:`serve_http`.

    Stock uvicorn re-raises a caught signal after its own shutdown so that the default
    action ends the process: relay-shell would then die by SIGTERM (exit 143) before
    tearing its sessions, forwards and connections down. ``on_listening`` runs once the
    listener is open (the start-up line).
    """

    def __init__(self, config: uvicorn.Config, on_listening: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self._on_listening = on_listening

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self._on_listening is not None and not self.should_exit:
            self._on_listening()


async def _stop_on_signal(server: uvicorn.Server) -> None:
    """First signal: graceful shutdown; a second one: stop waiting for open connections."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            if server.should_exit:
                server.force_exit = True
            else:
                log.warning("received %s, shutting down", signal.Signals(signum).name)
                server.should_exit = True


async def _serve_until_signal(server: uvicorn.Server) -> bool:
    """Run uvicorn until a signal stops it; False when it could not start at all."""
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(_stop_on_signal, server)
        try:
            await server.serve()
        except SystemExit:  # uvicorn's report of a failed start; it has logged the reason
            return False
        finally:
            tasks.cancel_scope.cancel()
    return True


async def serve_http(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT/SIGHUP, then tear every session, forward and connection down.

    Raises :class:`HttpStartFailed` when the listener cannot be opened.
    """
    services = build_services(settings)
    _, app = build_http_stack(settings, services)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=5,
        # Longer than any client's or the edge's idle keep-alive (httpx 5 s, Caddy 2 s), so the
        # client always closes an idle connection first and never reuses one we just closed.
        timeout_keep_alive=KEEP_ALIVE_S,
        # h11 (httptools is not a dependency) writing each loop turn's bytes at once (http/wire.py)
        http=CoalescingH11Protocol,
        # The access log is never shown at the warning level; off, uvicorn does not format its
        # arguments for every response either.
        access_log=False,
    )
    try:
        # uvicorn runs the app's lifespan, which enters the server's: services start there and
        # stop when uvicorn shuts down; aclose below is idempotent and covers a failed start.
        started = await _serve_until_signal(
            _RelayUvicorn(config, on_listening=lambda: announce(settings, services.facts()))
        )
    finally:
        with anyio.CancelScope(shield=True):
            await services.aclose()
    if not started:
        raise HttpStartFailed(f"cannot serve HTTP on {settings.http_host}:{settings.http_port}")
