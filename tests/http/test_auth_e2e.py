"""OAuth on the real ``relay-shell`` HTTP server: the builtin flow end to end (through the consent
page, approved with the operator passphrase), scopes capping tiers, the principal in the audit
trail, and 401 with resource metadata for unauthenticated calls."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import read_audit
from tests.http.consent_flow import cheap_hash, consent_sync
from tests.http.test_http_e2e import RelayProcess, running_relay

REDIRECT = "http://127.0.0.1:9/callback"
DENY = "relay-e2e-never-[0-9]+"
"""A deny pattern no test runs into: server_info shows it to admin principals only."""
OPERATOR_HASH = cheap_hash()


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    with running_relay(
        tmp_path_factory.mktemp("relay-auth"),
        RELAY_SHELL_AUTH_ENABLED="true",
        RELAY_SHELL_AUTH_ISSUER="http://127.0.0.1:{port}",
        RELAY_SHELL_POLICY_DENY=DENY,
        RELAY_SHELL_AUTH_OPERATOR_HASH=OPERATOR_HASH,
    ) as server:
        yield server


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


@pytest.fixture(scope="module")
def client_id(relay: RelayProcess) -> str:
    with relay.http() as http:
        response = http.post(
            "/register",
            json={
                "redirect_uris": [REDIRECT],
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "scope": "relay-shell:read relay-shell:operate relay-shell:admin",
                "client_name": "relay-e2e",
            },
        )
        assert response.status_code == 201, response.text
        second = http.post(
            "/register", json={"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
        )
        assert second.status_code == 400  # single-client lockdown
    return str(response.json()["client_id"])


def token_for(relay: RelayProcess, client_id: str, scope: str) -> dict[str, Any]:
    verifier, challenge = pkce()
    with relay.http() as http:
        authorize = http.get(
            "/authorize",
            params={
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": REDIRECT,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "scope": scope,
                "state": "xyz",
            },
        )
        assert authorize.status_code in (302, 307), authorize.text
        assert authorize.headers["location"].startswith(f"{relay.base_url}/consent?request=")
        approved = consent_sync(http, authorize.headers["location"], scopes=scope.split())
        assert approved.status_code == 303, approved.text
        query = parse_qs(urlsplit(approved.headers["location"]).query)
        assert query["state"] == ["xyz"]
        form = {
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": REDIRECT,
            "client_id": client_id,
            "code_verifier": verifier,
        }
        token = http.post("/token", data=form)
        assert token.status_code == 200, token.text
    result = dict(token.json())
    result["_form"] = form
    return result


@contextlib.asynccontextmanager
async def bearer_client(relay: RelayProcess, access_token: str) -> Any:
    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {access_token}"}, timeout=30, trust_env=False
    )
    async with http, Client(streamable_http_client(relay.mcp_url, http_client=http)) as client:
        yield client


async def test_code_replay_is_refused_and_revokes_the_grant(relay: RelayProcess, client_id: str) -> None:
    token = token_for(relay, client_id, "relay-shell:read")
    async with bearer_client(relay, token["access_token"]) as client:
        assert (await client.call_tool("server_info", {})).is_error is False
    with relay.http() as http:
        assert http.post("/token", data=token["_form"]).status_code == 400  # codes are single use
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        revoked = http.post("/mcp", json=ping, headers={"Authorization": f"Bearer {token['access_token']}"})
        assert revoked.status_code == 401  # the replay revoked what the code had issued


def test_unauthenticated_mcp_is_401_with_resource_metadata(relay: RelayProcess) -> None:
    with relay.http() as http:
        response = http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert response.status_code == 401
        challenge = response.headers["www-authenticate"]
        assert "resource_metadata=" in challenge
        metadata_url = challenge.split('resource_metadata="', 1)[1].split('"', 1)[0]
        metadata = http.get(urlsplit(metadata_url).path).json()
        assert metadata["resource"].rstrip("/") == f"{relay.base_url}/mcp"
        assert metadata["authorization_servers"]


async def test_read_scope_caps_tier_and_principal_is_audited(relay: RelayProcess, client_id: str) -> None:
    token = token_for(relay, client_id, "relay-shell:read")
    async with bearer_client(relay, token["access_token"]) as client:
        info = await client.call_tool("server_info", {})
        assert info.is_error is False
        read = await client.call_tool("shell_exec", {"command": "true"})  # a known-safe read: tier 0
        assert read.is_error is False
        refused = await client.call_tool("shell_exec", {"command": "touch /nonexistent-dir/proof"})
        assert refused.is_error is True
        assert refused.structured_content["error"]["kind"] == "denied"
        assert refused.structured_content["error"]["reason"] == "scope"
    records = read_audit(relay.audit_path)
    last = records[-1]
    assert last["tool"] == "shell_exec"
    assert last["decision"] == "denied"
    assert last["client_id"] == client_id
    assert last["principal"]  # the token's subject
    assert token["access_token"] not in relay.audit_path.read_text()


@pytest.mark.parametrize(
    ("scope", "sees_patterns"), [("relay-shell:read", False), ("relay-shell:admin", True)]
)
async def test_server_info_shows_the_deny_pattern_to_admins_only(
    relay: RelayProcess, client_id: str, scope: str, sees_patterns: bool
) -> None:
    token = token_for(relay, client_id, scope)
    async with bearer_client(relay, token["access_token"]) as client:
        info = await client.call_tool("server_info", {})
    assert info.is_error is False
    text = "".join(block.text for block in info.content)
    policy = info.structured_content["policy"]
    assert "deny list set; allow list not set" in text
    assert policy["deny_list"] is True
    assert (DENY in text, policy.get("deny")) == (sees_patterns, DENY if sees_patterns else None)
    assert ("shown to admin principals only" in text) is not sees_patterns


async def test_admin_scope_runs_and_refresh_rotates(relay: RelayProcess, client_id: str) -> None:
    token = token_for(relay, client_id, "relay-shell:admin")
    async with bearer_client(relay, token["access_token"]) as client:
        ran = await client.call_tool("shell_exec", {"command": "echo authorized"})
        assert ran.structured_content["output"] == "authorized\n"
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    with relay.http() as http:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": token["refresh_token"],
            "client_id": client_id,
        }
        rotated = http.post("/token", data=form).json()
        old = http.post("/mcp", json=ping, headers={"Authorization": f"Bearer {token['access_token']}"})
        assert old.status_code == 401  # rotation revoked the old pair
        as_bearer = http.post(
            "/mcp", json=ping, headers={"Authorization": f"Bearer {rotated['refresh_token']}"}
        )
        assert as_bearer.status_code == 401  # a refresh token is never an access token
    async with bearer_client(relay, rotated["access_token"]) as client:
        assert (await client.call_tool("server_info", {})).is_error is False
    with relay.http() as http:
        # the SDK's revocation form requires the client_secret field; a public client sends it empty
        revoked = http.post(
            "/revoke", data={"token": rotated["access_token"], "client_id": client_id, "client_secret": ""}
        )
        assert revoked.status_code == 200, revoked.text
        after = http.post("/mcp", json=ping, headers={"Authorization": f"Bearer {rotated['access_token']}"})
        assert after.status_code == 401
        assert http.post("/token", data=form).status_code == 400  # the first refresh token stays spent
    state_files = [p for p in (relay.state_dir / "oauth").rglob("*") if p.is_file()]
    blob = b"".join(p.read_bytes() for p in state_files)
    for value in (
        token["access_token"],
        token["refresh_token"],
        rotated["access_token"],
        rotated["refresh_token"],
    ):
        assert value.encode() not in blob
    assert (relay.state_dir / "oauth").stat().st_mode & 0o077 == 0
