"""The builtin OAuth server through the SDK's real routes, driven over ASGI.

The app mounts ``create_auth_routes`` with :class:`FileOAuthProvider`, our consent page and
``/revoke`` (as :class:`BuiltinAuth` wires them), and a protected ``/mcp`` route behind the
SDK's own bearer middleware (``ProviderTokenVerifier``), as the MCP HTTP app does; ``/mcp``
answers with :func:`current_principal`. Every code goes through the consent page with the
operator passphrase, the scopes asked all ticked.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import hashlib
import json
import os
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import BearerAuthBackend, RequireAuthMiddleware
from mcp.server.auth.provider import AccessToken, ProviderTokenVerifier, RegistrationError
from mcp.server.auth.routes import create_auth_routes
from mcp.server.auth.settings import AuthSettings
from mcp.shared.auth import OAuthClientInformationFull
from pydantic import AnyUrl
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route, request_response

from relay_shell.config import Settings
from relay_shell.errors import ConfigError
from relay_shell.http import oauth_state
from relay_shell.http.builtin_auth import REVOKE_PATH, BuiltinAuth
from relay_shell.http.consent import ConsentService
from relay_shell.http.consent_page import ConsentEndpoints
from relay_shell.http.oauth_store import (
    FileOAuthProvider,
    OAuthStateUnavailable,
    check_state_dir,
    client_registration_options,
    revocation_options,
)
from relay_shell.http.operator_auth import PassphraseVerifier
from relay_shell.http.revoke import RevocationEndpoint
from relay_shell.http.scopes import SCOPE_ADMIN, SCOPE_OPERATE, SCOPE_READ, current_principal
from tests.http.conftest import FakeClock
from tests.http.consent_flow import cheap_hash, consent_async

ISSUER = "http://127.0.0.1:8080"
RESOURCE = ISSUER + "/mcp"
REDIRECT = "http://127.0.0.1:33418/callback"
ACCESS_TTL, REFRESH_TTL, CODE_TTL = 600, 86400, 60


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


async def whoami(request: Request) -> JSONResponse:
    principal = current_principal()
    assert principal is not None
    return JSONResponse(
        {
            "subject": principal.subject,
            "client_id": principal.client_id,
            "scopes": list(principal.scopes),
            "max_tier": principal.max_tier,
        }
    )


GRANT_ID = re.compile(r"g-[0-9a-f]{16}")
OPERATOR_HASH = cheap_hash()


def builtin_for(provider: FileOAuthProvider, service: ConsentService | None = None) -> BuiltinAuth:
    service = service or ConsentService(provider, verifier=PassphraseVerifier(OPERATOR_HASH))
    consent = ConsentEndpoints(service, secure_cookie=False, cookie_max_age=60)
    return BuiltinAuth(Settings(), provider, consent, RevocationEndpoint(provider))


def build_app(provider: FileOAuthProvider, service: ConsentService | None = None) -> Starlette:
    """The SDK's wiring of ``streamable_http_app`` with auth, with ``/mcp`` answering ``whoami``."""
    auth = AuthSettings(
        issuer_url=ISSUER,  # type: ignore[arg-type]
        resource_server_url=RESOURCE,  # type: ignore[arg-type]
        validate_token_resource=True,
        client_registration_options=client_registration_options(),
        revocation_options=revocation_options(),
    )
    routes: list[BaseRoute] = list(
        create_auth_routes(
            provider,
            auth.issuer_url,
            client_registration_options=auth.client_registration_options,
            revocation_options=auth.revocation_options,
        )
    )
    routes.append(Route("/mcp", endpoint=RequireAuthMiddleware(request_response(whoami), [])))
    builtin = builtin_for(provider, service)
    routes += [
        Route("/consent", endpoint=builtin.consent.show, methods=["GET"]),
        Route("/consent", endpoint=builtin.consent.decide, methods=["POST"]),
    ]
    backend = BearerAuthBackend(ProviderTokenVerifier(provider), resource_server_url=auth.resource_server_url)
    middleware = [Middleware(AuthenticationMiddleware, backend=backend), Middleware(AuthContextMiddleware)]
    app = Starlette(routes=routes, middleware=middleware)
    builtin.replace_revocation(app)
    assert any(getattr(route, "path", None) == REVOKE_PATH for route in app.router.routes)
    return app


@dataclass
class Driver:
    """One OAuth client talking to the app; remembers every secret value it was handed."""

    http: httpx2.AsyncClient
    client_id: str = ""
    client_secret: str | None = None
    issued: list[str] = field(default_factory=list)
    consents: list[str] = field(default_factory=list)

    async def register(self, redirect_uris: list[str] | None = None, **extra: object) -> httpx2.Response:
        body: dict[str, object] = {"redirect_uris": redirect_uris or [REDIRECT], "client_name": "test"}
        body.update(extra)
        response = await self.http.post("/register", json=body)
        if response.status_code == 201:
            info = response.json()
            self.client_id, self.client_secret = info["client_id"], info.get("client_secret")
        return response

    async def authorize(self, challenge: str | None, **params: str) -> dict[str, str]:
        """The query parameters of the redirect the client finally gets (code or error).

        A request /authorize accepts goes through the consent page: the operator approves
        with the passphrase, ticking every scope the page offers.
        """
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": REDIRECT,
            "state": "s1",
        }
        if challenge is not None:
            query["code_challenge"] = challenge
            query["code_challenge_method"] = "S256"
        query.update(params)
        response = await self.http.get("/authorize", params=query)
        assert response.status_code == 302, response.text
        if response.headers["location"].startswith(f"{ISSUER}/consent?"):
            self.consents.append(response.headers["location"])
            response = await consent_async(self.http, response.headers["location"])
            assert response.status_code == 303, response.text
        location = urlsplit(response.headers["location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
        answer = {key: values[0] for key, values in parse_qs(location.query).items()}
        if "code" in answer:
            self.issued.append(answer["code"])
        return answer

    async def token(self, **form: str) -> httpx2.Response:
        data = {"client_id": self.client_id, **form}
        if self.client_secret:
            data["client_secret"] = self.client_secret
        response = await self.http.post("/token", data=data)
        if response.status_code == 200:
            body = response.json()
            self.issued += [body["access_token"], body["refresh_token"]]
        return response

    async def exchange(self, code: str, verifier: str) -> httpx2.Response:
        return await self.token(
            grant_type="authorization_code", code=code, code_verifier=verifier, redirect_uri=REDIRECT
        )

    async def refresh(self, refresh_token: str, **form: str) -> httpx2.Response:
        return await self.token(grant_type="refresh_token", refresh_token=refresh_token, **form)

    async def revoke(self, token: str) -> httpx2.Response:
        data = {"client_id": self.client_id, "token": token}
        if self.client_secret:
            data["client_secret"] = self.client_secret
        return await self.http.post("/revoke", data=data)

    async def whoami(self, access_token: str) -> httpx2.Response:
        return await self.http.get("/mcp", headers={"Authorization": f"Bearer {access_token}"})

    async def grant(self, **params: str) -> dict[str, str]:
        """Authorize and exchange in one go: the token response."""
        verifier, challenge = pkce_pair()
        answer = await self.authorize(challenge, **params)
        response = await self.exchange(answer["code"], verifier)
        assert response.status_code == 200, response.text
        tokens: dict[str, str] = response.json()
        return tokens


def make_provider(
    state_dir: Path, clock: FakeClock, *, code_ttl: int = CODE_TTL, **options: Any
) -> FileOAuthProvider:
    """The provider of these tests (their issuer and lifetimes); ``options`` go to its constructor."""
    return FileOAuthProvider(
        state_dir,
        issuer=ISSUER,
        access_ttl=ACCESS_TTL,
        refresh_ttl=REFRESH_TTL,
        code_ttl=code_ttl,
        clock=clock,
        **options,
    )


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "oauth"


@pytest.fixture
def provider(state_dir: Path, clock: FakeClock) -> FileOAuthProvider:
    return make_provider(state_dir, clock)


@pytest.fixture
async def driver(provider: FileOAuthProvider) -> AsyncIterator[Driver]:
    transport = httpx2.ASGITransport(app=build_app(provider))
    async with httpx2.AsyncClient(transport=transport, base_url=ISSUER) as http:
        yield Driver(http)


@pytest.fixture
async def registered(driver: Driver) -> Driver:
    response = await driver.register()
    assert response.status_code == 201, response.text
    return driver


# -- the happy path --------------------------------------------------------------------------


async def test_full_flow_register_authorize_token_refresh_revoke(driver: Driver) -> None:
    registration = await driver.register(token_endpoint_auth_method="client_secret_post")
    assert registration.status_code == 201
    assert driver.client_secret

    metadata = (await driver.http.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["issuer"] == ISSUER
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["revocation_endpoint"] == ISSUER + "/revoke"

    verifier, challenge = pkce_pair()
    answer = await driver.authorize(challenge)
    assert answer["state"] == "s1"
    assert answer["iss"] == metadata["issuer"]  # RFC 9207, compared as a plain string by clients

    first = await driver.exchange(answer["code"], verifier)
    assert first.status_code == 200, first.text
    tokens = first.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == ACCESS_TTL
    assert tokens["scope"] == SCOPE_OPERATE  # nothing requested: operate

    me = await driver.whoami(tokens["access_token"])
    assert me.status_code == 200
    grant = me.json()["subject"]
    assert GRANT_ID.fullmatch(grant)  # the principal is the operator's consent, the grant
    assert me.json() == {
        "subject": grant,
        "client_id": driver.client_id,
        "scopes": [SCOPE_OPERATE],
        "max_tier": 2,
    }

    rotated = await driver.refresh(tokens["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()
    assert {new["access_token"], new["refresh_token"]}.isdisjoint(
        {tokens["access_token"], tokens["refresh_token"]}
    )
    assert (await driver.whoami(tokens["access_token"])).status_code == 401  # the old pair is revoked
    assert (await driver.whoami(new["access_token"])).json()["subject"] == grant  # a refresh keeps the grant

    assert (await driver.revoke(new["refresh_token"])).status_code == 200
    assert (await driver.whoami(new["access_token"])).status_code == 401  # revoking one half revokes the pair
    after = await driver.refresh(new["refresh_token"])
    assert after.status_code == 400
    assert after.json()["error"] == "invalid_grant"


async def test_revoking_the_access_token_revokes_its_refresh_token(registered: Driver) -> None:
    tokens = await registered.grant()
    assert (await registered.revoke(tokens["access_token"])).status_code == 200
    assert (await registered.whoami(tokens["access_token"])).status_code == 401
    assert (await registered.refresh(tokens["refresh_token"])).json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("requested", "granted", "max_tier"),
    [
        (None, [SCOPE_OPERATE], 2),
        (SCOPE_READ, [SCOPE_READ], 0),
        (f"{SCOPE_ADMIN} {SCOPE_READ}", [SCOPE_READ, SCOPE_ADMIN], 3),
    ],
)
async def test_granted_scopes_and_their_tier(
    registered: Driver, requested: str | None, granted: list[str], max_tier: int
) -> None:
    tokens = await registered.grant(**({"scope": requested} if requested else {}))
    assert tokens["scope"].split() == granted
    me = (await registered.whoami(tokens["access_token"])).json()
    assert me["scopes"] == granted
    assert me["max_tier"] == max_tier


async def test_refresh_can_narrow_scopes_but_not_widen_them(registered: Driver) -> None:
    tokens = await registered.grant(scope=f"{SCOPE_READ} {SCOPE_OPERATE}")
    wider = await registered.refresh(tokens["refresh_token"], scope=SCOPE_ADMIN)
    assert wider.json()["error"] == "invalid_scope"
    narrower = await registered.refresh(tokens["refresh_token"], scope=SCOPE_READ)
    assert narrower.status_code == 200, narrower.text
    assert narrower.json()["scope"] == SCOPE_READ
    # the grant itself is kept: the next refresh may ask for operate again
    again = await registered.refresh(narrower.json()["refresh_token"], scope=SCOPE_OPERATE)
    assert again.json()["scope"] == SCOPE_OPERATE


async def test_resource_indicator_must_name_this_server(
    registered: Driver, provider: FileOAuthProvider
) -> None:
    tokens = await registered.grant(resource=RESOURCE)
    loaded = await provider.load_access_token(tokens["access_token"])
    assert loaded is not None
    assert loaded.resource == RESOURCE
    _, challenge = pkce_pair()
    answer = await registered.authorize(challenge, resource="https://elsewhere.example/mcp")
    assert answer["error"] == "invalid_target"
    assert "code" not in answer


# -- registration is locked to one client ----------------------------------------------------


async def test_second_registration_is_refused(registered: Driver, state_dir: Path) -> None:
    second = await registered.http.post("/register", json={"redirect_uris": ["http://127.0.0.1:9999/cb"]})
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_client_metadata"
    assert "registration is closed" in second.json()["error_description"]
    stored = json.loads((state_dir / "state.json").read_text())
    assert stored["client"]["client_id"] == registered.client_id
    assert stored["client"]["redirect_uris"] == [REDIRECT]


async def test_re_registering_the_same_client_is_refused(provider: FileOAuthProvider) -> None:
    first = OAuthClientInformationFull(client_id="c1", redirect_uris=[AnyUrl(REDIRECT)])
    await provider.register_client(first)
    moved = first.model_copy(update={"redirect_uris": [AnyUrl("http://127.0.0.1:1/evil")]})
    with pytest.raises(RegistrationError) as refused:
        await provider.register_client(moved)
    assert refused.value.error == "invalid_redirect_uri"
    with pytest.raises(RegistrationError):
        await provider.register_client(first)  # even unchanged: registration is closed
    client = await provider.get_client("c1")
    assert client is not None
    assert client.redirect_uris == [AnyUrl(REDIRECT)]


@pytest.mark.parametrize(
    "redirect_uri",
    ["http://evil.example/cb", "ftp://127.0.0.1/cb", "https://example.com/cb#fragment"],
)
async def test_unsafe_redirect_uris_are_refused(driver: Driver, redirect_uri: str) -> None:
    response = await driver.register(redirect_uris=[redirect_uri])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_redirect_uri"
    assert (await driver.register()).status_code == 201  # a refused attempt does not close registration


@pytest.mark.parametrize(
    "redirect_uri",
    ["https://claude.ai/api/mcp/auth_callback", "http://localhost:6274/cb", "com.example.app:/cb"],
)
async def test_acceptable_redirect_uris(driver: Driver, redirect_uri: str) -> None:
    assert (await driver.register(redirect_uris=[redirect_uri])).status_code == 201


# -- codes -----------------------------------------------------------------------------------


async def test_code_reuse_is_refused_and_revokes_the_grant(registered: Driver) -> None:
    verifier, challenge = pkce_pair()
    code = (await registered.authorize(challenge))["code"]
    first = await registered.exchange(code, verifier)
    assert first.status_code == 200
    again = await registered.exchange(code, verifier)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    # a replayed code means it leaked: the tokens issued for it are revoked (RFC 6749 §4.1.2)
    assert (await registered.whoami(first.json()["access_token"])).status_code == 401


async def test_twenty_concurrent_exchanges_of_one_code_succeed_once(registered: Driver) -> None:
    verifier, challenge = pkce_pair()
    code = (await registered.authorize(challenge))["code"]
    responses = await asyncio.gather(*(registered.exchange(code, verifier) for _ in range(20)))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] + [400] * 19


async def test_concurrent_exchanges_across_two_provider_instances(
    registered: Driver, state_dir: Path, clock: FakeClock
) -> None:
    """Two providers on one directory (as two processes would be): the file lock serialises them."""
    other = make_provider(state_dir, clock)
    transport = httpx2.ASGITransport(app=build_app(other))
    async with httpx2.AsyncClient(transport=transport, base_url=ISSUER) as http:
        twin = Driver(http, client_id=registered.client_id, client_secret=registered.client_secret)
        verifier, challenge = pkce_pair()
        code = (await registered.authorize(challenge))["code"]
        attempts = [registered.exchange(code, verifier) for _ in range(5)]
        attempts += [twin.exchange(code, verifier) for _ in range(5)]
        responses = await asyncio.gather(*attempts)
    assert sorted(response.status_code for response in responses) == [200] + [400] * 9


async def test_expired_code_is_refused(registered: Driver, clock: FakeClock) -> None:
    verifier, challenge = pkce_pair()
    code = (await registered.authorize(challenge))["code"]
    clock.advance(CODE_TTL + 1)
    response = await registered.exchange(code, verifier)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


async def test_wrong_pkce_verifier_is_refused(registered: Driver) -> None:
    _, challenge = pkce_pair()
    code = (await registered.authorize(challenge))["code"]
    wrong = await registered.exchange(code, pkce_pair()[0])
    assert wrong.status_code == 400
    assert wrong.json() == {"error": "invalid_grant", "error_description": "incorrect code_verifier"}


async def test_missing_pkce_verifier_is_refused(registered: Driver) -> None:
    _, challenge = pkce_pair()
    code = (await registered.authorize(challenge))["code"]
    response = await registered.token(grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "code_verifier" in response.json()["error_description"]


@pytest.mark.parametrize(
    ("challenge", "extra"),
    [
        (None, {}),  # no challenge at all
        ("a-plain-verifier-used-as-its-own-challenge", {}),  # not an S256 digest
        ("x" * 43, {"code_challenge_method": "plain"}),  # plain method
    ],
)
async def test_authorize_without_an_s256_challenge_issues_no_code(
    registered: Driver, challenge: str | None, extra: dict[str, str]
) -> None:
    answer = await registered.authorize(challenge, **extra)
    assert "code" not in answer
    assert answer["error"] == "invalid_request"
    assert answer["state"] == "s1"


async def test_unknown_scope_issues_no_code(registered: Driver) -> None:
    _, challenge = pkce_pair()
    answer = await registered.authorize(challenge, scope="relay-shell:root")
    assert answer["error"] == "invalid_scope"
    assert "code" not in answer


# -- refresh tokens and access tokens --------------------------------------------------------


async def test_refresh_reuse_after_rotation_is_refused_and_revokes_the_grant(registered: Driver) -> None:
    tokens = await registered.grant()
    rotated = (await registered.refresh(tokens["refresh_token"])).json()
    replay = await registered.refresh(tokens["refresh_token"])
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    # the replay revoked the family: whoever holds the rotated pair loses it too
    assert (await registered.whoami(rotated["access_token"])).status_code == 401
    assert (await registered.refresh(rotated["refresh_token"])).json()["error"] == "invalid_grant"


async def test_refresh_token_is_never_an_access_token(
    registered: Driver, provider: FileOAuthProvider
) -> None:
    tokens = await registered.grant()
    assert (await registered.whoami(tokens["refresh_token"])).status_code == 401
    assert await provider.load_access_token(tokens["refresh_token"]) is None
    assert (await registered.refresh(tokens["access_token"])).json()["error"] == "invalid_grant"
    assert (await registered.whoami(tokens["access_token"])).status_code == 200  # untouched by the attempts


async def test_access_token_expires(
    registered: Driver, provider: FileOAuthProvider, clock: FakeClock
) -> None:
    tokens = await registered.grant()
    clock.advance(ACCESS_TTL - 1)
    assert (await registered.whoami(tokens["access_token"])).status_code == 200
    clock.advance(2)
    assert (await registered.whoami(tokens["access_token"])).status_code == 401
    assert await provider.load_access_token(tokens["access_token"]) is None
    fresh = await registered.refresh(tokens["refresh_token"])  # the refresh token outlives it
    assert fresh.status_code == 200
    assert (await registered.whoami(fresh.json()["access_token"])).status_code == 200


async def test_refresh_token_expires(registered: Driver, clock: FakeClock) -> None:
    tokens = await registered.grant()
    clock.advance(REFRESH_TTL + 1)
    response = await registered.refresh(tokens["refresh_token"])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


async def test_tokens_survive_a_restart(registered: Driver, state_dir: Path, clock: FakeClock) -> None:
    tokens = await registered.grant()
    reopened = make_provider(state_dir, clock)
    loaded = await reopened.load_access_token(tokens["access_token"])
    assert loaded is not None
    assert loaded.client_id == registered.client_id
    assert loaded.subject is not None
    assert GRANT_ID.fullmatch(loaded.subject)
    assert loaded.subject in json.loads((state_dir / "state.json").read_text())["grants"]


# -- what is on disk -------------------------------------------------------------------------


async def test_no_code_or_token_value_is_stored(registered: Driver, state_dir: Path) -> None:
    tokens = await registered.grant(scope=SCOPE_ADMIN)
    rotated = (await registered.refresh(tokens["refresh_token"])).json()
    _, challenge = pkce_pair()
    await registered.authorize(challenge)  # a pending, never exchanged code
    await registered.grant()
    await registered.revoke(rotated["access_token"])
    assert len(registered.issued) == 9  # 3 codes, 3 access tokens, 3 refresh tokens

    files = [path for path in state_dir.rglob("*") if path.is_file()]
    assert {path.name for path in files} == {"state.json", "state.lock"}
    contents = [path.read_bytes() for path in files]
    for value in registered.issued:
        assert not any(value.encode() in blob for blob in contents)
    state = (state_dir / "state.json").read_bytes()
    # what is stored instead: the digest (of the last grant's live access token, for one)
    last_access = registered.issued[-2]
    assert hashlib.sha256(last_access.encode()).hexdigest().encode() in state
    assert os.stat(state_dir / "state.json").st_mode & 0o777 == 0o600


async def test_state_dir_is_created_private(state_dir: Path, clock: FakeClock) -> None:
    make_provider(state_dir, clock)
    assert state_dir.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o701, 0o707])
def test_group_or_world_accessible_state_dir_is_refused(state_dir: Path, clock: FakeClock, mode: int) -> None:
    state_dir.mkdir()
    os.chmod(state_dir, mode)
    with pytest.raises(ConfigError) as refused:
        make_provider(state_dir, clock)
    assert str(state_dir) in refused.value.message
    assert f"{mode:04o}" in refused.value.message
    with pytest.raises(ConfigError):
        check_state_dir(state_dir)
    assert state_dir.stat().st_mode & 0o777 == mode  # refused, never "fixed"


def test_check_state_dir_cases(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    check_state_dir(private)
    check_state_dir(tmp_path / "missing" / "oauth")  # can be created: fine, and not created
    assert not (tmp_path / "missing").exists()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        check_state_dir(a_file)


def test_corrupt_state_file_refuses_to_start(state_dir: Path, clock: FakeClock) -> None:
    state_dir.mkdir(mode=0o700)
    (state_dir / "state.json").write_text("{not json")
    with pytest.raises(ConfigError, match="corrupt"):
        make_provider(state_dir, clock)


async def test_updates_wait_for_the_cross_process_file_lock(
    registered: Driver, provider: FileOAuthProvider, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While another process holds ``state.lock``, nothing is issued; once released, it is."""
    monkeypatch.setattr(oauth_state, "LOCK_WAIT_S", 0.05)
    _, challenge = pkce_pair()
    holder = os.open(state_dir / "state.lock", os.O_RDWR)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(OAuthStateUnavailable, match="stayed locked"):
            await provider.revoke_token(AccessToken(token="anything", client_id="c", scopes=[]))
        refused = await registered.authorize(challenge)  # the SDK turns the failure into server_error
        assert refused["error"] == "server_error"
        assert "code" not in refused
    finally:
        os.close(holder)
    assert "code" in await registered.authorize(challenge)
