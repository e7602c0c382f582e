"""Probes of the transport and OAuth settings: the real command for the listener, the HTTP app
over ASGI (with its lifespan) for Host checks, OAuth and JWT verification."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import jwt

from relay_shell.app import RelayServer
from tests.http.consent_flow import PASSPHRASE, consent_async
from tests.settings.harness import INITIALIZE, MCP_HEADERS, Harness

REDIRECT = "http://127.0.0.1:9/callback"
# A JWT's default claims: what a server with default settings expects from its identity provider.
DEFAULT_ISSUER = "http://127.0.0.1:8080"
DEFAULT_AUDIENCE = DEFAULT_ISSUER + "/mcp"


def healthz(base_url: str) -> int:
    with httpx2.Client(base_url=base_url, timeout=10.0, trust_env=False) as http:
        return http.get("/healthz").status_code


async def transport(h: Harness) -> None:  # RELAY_SHELL_TRANSPORT=http
    with h.command() as (_, serving):
        assert serving == f"http://127.0.0.1:{h.values['port']}/mcp"
        assert healthz(f"http://127.0.0.1:{h.values['port']}") == 200


async def http_host(h: Harness) -> None:  # RELAY_SHELL_HTTP_HOST=127.0.0.2
    port = h.values["port"]
    with h.command() as (_, serving):
        assert serving == f"http://127.0.0.2:{port}/mcp"
        assert healthz(f"http://127.0.0.2:{port}") == 200
        try:
            healthz(f"http://127.0.0.1:{port}")
        except httpx2.ConnectError:
            pass
        else:
            raise AssertionError("the server also answers on 127.0.0.1")


async def http_port(h: Harness) -> None:  # RELAY_SHELL_HTTP_PORT=<a free port>
    with h.command() as (_, serving):
        assert serving == f"http://127.0.0.1:{h.values['port']}/mcp"
        assert healthz(f"http://127.0.0.1:{h.values['port']}") == 200


async def http_allowed_hosts(h: Harness) -> None:  # RELAY_SHELL_HTTP_ALLOWED_HOSTS=relay.example.com
    async with h.http() as (http, _):
        response = await http.post(
            "/mcp", json=INITIALIZE, headers={**MCP_HEADERS, "host": "relay.example.com"}
        )
        assert response.status_code == 200, response.text


async def auth_enabled(h: Harness) -> None:  # RELAY_SHELL_AUTH_ENABLED=true
    async with h.http() as (http, _):
        response = await http.post("/mcp", json=INITIALIZE, headers=MCP_HEADERS)
        assert response.status_code == 401


async def auth_issuer(h: Harness) -> None:  # RELAY_SHELL_AUTH_ISSUER=https://relay.example.com:9443
    async with h.http() as (http, _):
        response = await http.get("/.well-known/oauth-authorization-server")
        assert response.status_code == 200
        assert response.json()["issuer"].rstrip("/") == "https://relay.example.com:9443"
        assert response.json()["token_endpoint"] == "https://relay.example.com:9443/token"


async def auth_state_dir(h: Harness) -> None:  # RELAY_SHELL_AUTH_STATE_DIR=<tmp>/custom-oauth
    async with h.http() as (http, _):
        response = await http.post(
            "/register", json={"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
        )
        assert response.status_code == 201, response.text
    state = h.tmp / "custom-oauth"
    assert state.is_dir() and any(state.iterdir())


def provider_of(server: RelayServer) -> Any:
    """The builtin OAuth provider the server was built with (the SDK keeps it on the server)."""
    provider = getattr(server, "_auth_server_provider", None)
    assert provider is not None, "no builtin OAuth provider"
    return provider


async def oauth_grant(h: Harness) -> dict[str, float]:
    """Register, authorize (the operator approves with the passphrase), exchange the code over HTTP;
    return when each credential expires.

    Keys: ``code`` and ``refresh`` (epoch seconds, from the provider the server uses),
    ``access_in`` (the token response's ``expires_in``), ``before`` / ``after`` (the clock
    around the flow).
    """
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    before = time.time()
    async with h.http() as (http, server):
        registered = await http.post(
            "/register", json={"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
        )
        assert registered.status_code == 201, registered.text
        client_id = registered.json()["client_id"]
        query = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "scope": "relay-shell:read",
            "state": "s",
        }
        authorized = await http.get("/authorize", params=query)
        assert authorized.status_code in (302, 307), authorized.text
        approved = await consent_async(http, authorized.headers["location"], passphrase=PASSPHRASE)
        assert approved.status_code == 303, approved.text
        code = parse_qs(urlsplit(approved.headers["location"]).query)["code"][0]
        provider = provider_of(server)
        client = await provider.get_client(client_id)
        code_record = await provider.load_authorization_code(client, code)
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": client_id,
            "code_verifier": verifier,
        }
        token = await http.post("/token", data=form)
        assert token.status_code == 200, token.text
        refresh = await provider.load_refresh_token(client, token.json()["refresh_token"])
    return {
        "code": float(code_record.expires_at),
        "refresh": float(refresh.expires_at),
        "access_in": float(token.json()["expires_in"]),
        "before": before,
        "after": time.time(),
    }


def expires_after(grant: dict[str, float], key: str, seconds: float) -> None:
    """``grant[key]`` is ``seconds`` after some moment of the flow (whole seconds either way)."""
    assert grant["before"] + seconds - 1 <= grant[key] <= grant["after"] + seconds + 1, (grant, seconds)


async def auth_access_ttl(h: Harness) -> None:  # RELAY_SHELL_AUTH_ACCESS_TTL=45
    assert (await oauth_grant(h))["access_in"] == 45


async def auth_refresh_ttl(h: Harness) -> None:  # RELAY_SHELL_AUTH_REFRESH_TTL=7200
    expires_after(await oauth_grant(h), "refresh", 7200)


async def auth_code_ttl(h: Harness) -> None:  # RELAY_SHELL_AUTH_CODE_TTL=17
    expires_after(await oauth_grant(h), "code", 17)


def bearer(h: Harness, algorithm: str = "RS256", **claims: Any) -> str:
    """A token signed by the test identity provider's ``algorithm`` key, default claims overridden."""
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": DEFAULT_ISSUER,
        "aud": DEFAULT_AUDIENCE,
        "sub": "alice",
        "client_id": "relay-settings",
        "scope": "relay-shell:read",
        "iat": now,
        "exp": now + 600,
    }
    body.update(claims)
    kid, key = h.peers.signers[algorithm]
    return jwt.encode(body, key, algorithm=algorithm, headers={"kid": kid})


async def accepted(h: Harness, *tokens: str) -> list[bool]:
    """Whether ``/mcp`` admits each token (initialize answered) or refuses it (401)."""
    answers = []
    async with h.http() as (http, _):
        for token in tokens:
            response = await http.post(
                "/mcp", json=INITIALIZE, headers={**MCP_HEADERS, "authorization": f"Bearer {token}"}
            )
            assert response.status_code in (200, 401), response.text
            answers.append(response.status_code == 200)
    return answers


async def auth_mode(h: Harness) -> None:  # RELAY_SHELL_AUTH_MODE=jwt
    assert await accepted(h, bearer(h)) == [True]
    async with h.http() as (http, _):
        assert (await http.post("/register", json={"redirect_uris": [REDIRECT]})).status_code == 404


async def auth_jwks_url(h: Harness) -> None:  # RELAY_SHELL_AUTH_JWKS_URL=<the test JWKS>
    assert await accepted(h, bearer(h)) == [True]


async def auth_jwt_issuer(h: Harness) -> None:  # RELAY_SHELL_AUTH_JWT_ISSUER=https://idp.example
    assert await accepted(h, bearer(h, iss="https://idp.example")) == [True]


async def auth_audience(h: Harness) -> None:  # RELAY_SHELL_AUTH_AUDIENCE=api://relay-shell
    assert await accepted(h, bearer(h, aud="api://relay-shell")) == [True]


async def auth_jwt_algorithms(h: Harness) -> None:  # RELAY_SHELL_AUTH_JWT_ALGORITHMS=ES256
    assert await accepted(h, bearer(h, "ES256"), bearer(h, "RS256")) == [True, False]


async def auth_operator_hash(h: Harness) -> None:  # RELAY_SHELL_AUTH_OPERATOR_HASH=<hash of PASSPHRASE>
    grant = await oauth_grant(h)  # the consent page accepts the operator's passphrase
    assert grant["access_in"] > 0


async def auth_max_scope(h: Harness) -> None:  # RELAY_SHELL_AUTH_MAX_SCOPE=relay-shell:read
    async with h.http() as (http, _):
        registered = await http.post(
            "/register", json={"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
        )
        assert registered.status_code == 201, registered.text
        _, challenge = _pkce()
        query = {
            "response_type": "code",
            "client_id": registered.json()["client_id"],
            "redirect_uri": REDIRECT,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "scope": "relay-shell:admin",
            "state": "s",
        }
        authorized = await http.get("/authorize", params=query)
        assert authorized.status_code in (302, 307), authorized.text
        answer = parse_qs(urlsplit(authorized.headers["location"]).query)
        assert answer.get("error") == ["invalid_scope"], authorized.headers["location"]


METRICS_TOKEN = "relay-metrics-token-0123456789"


async def metrics_token(h: Harness) -> None:  # RELAY_SHELL_METRICS_TOKEN=relay-metrics-token-0123456789
    async with h.http() as (http, _):
        assert (await http.get("/metrics")).status_code == 401
        allowed = await http.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
        assert allowed.status_code == 200
        assert "relay_shell_tool_calls_total" in allowed.text


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge
