"""The streamable HTTP transport (docs/deployment.md): /mcp, /healthz, /readyz, /metrics, OAuth.

TLS is the edge's job (deploy/Caddyfile); this binds loopback by default. DNS-rebinding
protection is always on: the accepted Host values are the bind address plus
``RELAY_SHELL_HTTP_ALLOWED_HOSTS`` (the public name the edge forwards) and the issuer's host.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import anyio
import uvicorn
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from relay_shell.app import RelayServer, Services, build_server, build_services
from relay_shell.config import AuthMode, Settings
from relay_shell.startup import announce

log = logging.getLogger("relay_shell.http")

KEEP_ALIVE_S = 75
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def allowed_hosts(settings: Settings) -> tuple[list[str], list[str]]:
    """Host header values and origins accepted by the DNS-rebinding check."""
    hosts = {"127.0.0.1:*", "localhost:*", "[::1]:*", f"{settings.http_host}:*"}
    extra = [h.strip() for h in (settings.http_allowed_hosts or "").split(",") if h.strip()]
    issuer_host = urlsplit(settings.auth_issuer).netloc
    if issuer_host:
        extra.append(issuer_host)
    for name in extra:
        hosts.add(name)
        if ":" not in name.rsplit("]", 1)[-1]:
            hosts.add(f"{name}:*")
    origins = {f"http://{h}" for h in hosts} | {f"https://{h}" for h in hosts}
    return sorted(hosts), sorted(origins)


def _auth_kwargs(settings: Settings) -> dict[str, Any]:
    """Auth settings and provider/verifier for MCPServer, empty when auth is off."""
    if not settings.auth_enabled:
        return {}
    issuer = settings.auth_issuer.rstrip("/")
    if settings.auth_mode is AuthMode.BUILTIN:
        from relay_shell.http.oauth_store import (
            FileOAuthProvider,
            client_registration_options,
            revocation_options,
        )

        provider = FileOAuthProvider(
            settings.expand(settings.auth_state_dir),
            issuer=issuer,
            access_ttl=settings.auth_access_ttl,
            refresh_ttl=settings.auth_refresh_ttl,
            code_ttl=settings.auth_code_ttl,
        )
        auth = AuthSettings(
            issuer_url=issuer,  # type: ignore[arg-type]
            resource_server_url=settings.resource_url,  # type: ignore[arg-type]
            client_registration_options=client_registration_options(),
            revocation_options=revocation_options(),
            validate_token_resource=False,
        )
        return {"auth": auth, "auth_server_provider": provider}
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


def build_http_server(settings: Settings, services: Services | None = None) -> RelayServer:
    """A RelayServer with auth wiring and the health/metrics routes registered."""
    svc = services or build_services(settings)
    server = build_server(settings, svc, **_auth_kwargs(settings))

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
        svc.audit.check()  # relay_shell_audit_degraded tells the sink's state now, not at the last write
        return PlainTextResponse(svc.metrics.render(), media_type=PROMETHEUS_CONTENT_TYPE)

    server.custom_route("/healthz", methods=["GET"])(healthz)
    server.custom_route("/readyz", methods=["GET"])(readyz)
    server.custom_route("/metrics", methods=["GET"])(metrics)
    return server


def build_http_app(server: RelayServer) -> Starlette:
    settings = server.services.settings
    hosts, origins = allowed_hosts(settings)
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )
    return server.streamable_http_app(
        streamable_http_path="/mcp", transport_security=security, host=settings.http_host
    )


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
    server = build_http_server(settings)
    app = build_http_app(server)
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
    )
    services = server.services
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
