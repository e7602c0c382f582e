"""Wiring of builtin OAuth into the HTTP server: provider, consent page, public-client revocation.

:func:`build_builtin_auth` makes the pieces from the settings and the server's audit sink;
:class:`BuiltinAuth` then gives the SDK its ``auth`` settings and provider
(:meth:`BuiltinAuth.server_kwargs`), adds ``GET``/``POST /consent`` to the server
(:meth:`BuiltinAuth.add_routes`) and, once the SDK has built its routes, puts our
revocation endpoint in place of the SDK's at ``/revoke`` (:meth:`BuiltinAuth.replace_revocation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mcp.server.auth.routes import cors_middleware
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette
from starlette.routing import Route

from relay_shell.config import Settings
from relay_shell.governance.audit.writer import AuditSink
from relay_shell.http.consent import ConsentService
from relay_shell.http.consent_page import ConsentEndpoints
from relay_shell.http.oauth_events import OAuthAudit
from relay_shell.http.oauth_rules import client_registration_options, revocation_options
from relay_shell.http.oauth_store import CONSENT_PATH, FileOAuthProvider
from relay_shell.http.operator_auth import PassphraseVerifier
from relay_shell.http.revoke import RevocationEndpoint

REVOKE_PATH = "/revoke"


@dataclass(frozen=True)
class BuiltinAuth:
    """The builtin authorization server of one HTTP server."""

    settings: Settings
    provider: FileOAuthProvider
    consent: ConsentEndpoints
    revocation: RevocationEndpoint

    def server_kwargs(self) -> dict[str, Any]:
        """``auth`` and ``auth_server_provider`` for the MCP server."""
        issuer = self.settings.auth_issuer.rstrip("/")
        auth = AuthSettings(
            issuer_url=issuer,  # type: ignore[arg-type]
            resource_server_url=self.settings.resource_url,  # type: ignore[arg-type]
            client_registration_options=client_registration_options(),
            revocation_options=revocation_options(),
            validate_token_resource=False,
        )
        return {"auth": auth, "auth_server_provider": self.provider}

    def add_routes(self, server: MCPServer[Any]) -> None:
        """``GET /consent`` (the page) and ``POST /consent`` (the decision)."""
        server.custom_route(CONSENT_PATH, methods=["GET"])(self.consent.show)
        server.custom_route(CONSENT_PATH, methods=["POST"])(self.consent.decide)

    def replace_revocation(self, app: Starlette) -> None:
        """Swap the SDK's ``/revoke`` (which demands a client secret) for ours.

        Raises:
            RuntimeError: the app has no ``/revoke`` route to replace.
        """
        ours = Route(
            REVOKE_PATH,
            endpoint=cors_middleware(self.revocation.handle, ["POST", "OPTIONS"]),
            methods=["POST", "OPTIONS"],
        )
        for index, route in enumerate(app.router.routes):
            if isinstance(route, Route) and route.path == REVOKE_PATH:
                app.router.routes[index] = ours
                return
        raise RuntimeError("the SDK's app has no /revoke route")


def build_builtin_auth(settings: Settings, audit: AuditSink | None) -> BuiltinAuth:
    """The provider (state upgraded, events audited), the consent page and ``/revoke``.

    Raises:
        ConfigError: the state directory or file, the issuer, or the operator hash is unusable.
    """
    events = OAuthAudit(audit, policy_mode=settings.policy_mode.value, required=settings.audit_required)
    provider = FileOAuthProvider(
        settings.expand(settings.auth_state_dir),
        issuer=settings.auth_issuer.rstrip("/"),
        access_ttl=settings.auth_access_ttl,
        refresh_ttl=settings.auth_refresh_ttl,
        code_ttl=settings.auth_code_ttl,
        max_scope=settings.auth_max_scope.value,
        events=events,
    )
    verifier = PassphraseVerifier(settings.auth_operator_hash) if settings.auth_operator_hash else None
    consent = ConsentEndpoints(
        ConsentService(provider, verifier=verifier),
        secure_cookie=settings.auth_issuer.lower().startswith("https://"),
        cookie_max_age=settings.auth_code_ttl,
    )
    return BuiltinAuth(settings, provider, consent, RevocationEndpoint(provider))
