"""The consent flow in headless Chromium through the shipped Caddy edge (deploy/Caddyfile).

The edge forwards ``/authorize`` and ``/consent`` and sets its own security headers on every
response, ``Referrer-Policy: no-referrer`` among them, so the browser posts the consent form
with ``Origin: null`` (and ``Sec-Fetch-Site: same-origin``): relay-shell must accept that and
nothing else. The browser reaches ``https://relay.localhost:PORT`` (Caddy's local CA; the
certificate check is waived for the browser only), the operator approves with the
passphrase, and the client's loopback redirect URI receives the code.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.e2e.test_caddy_edge import DOMAIN, PinnedToLoopback, free_port, start_caddy, stop
from tests.http.consent_flow import PASSPHRASE, cheap_hash
from tests.http.test_consent_browser import (
    OPERATE,
    READ,
    WAIT_S,
    Callback,
    start_chromium,
    start_login,
    submit,
)
from tests.http.test_http_e2e import RelayProcess, running_relay

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def callback() -> Iterator[Callback]:
    server = Callback()
    yield server
    server.close()


@contextlib.contextmanager
def edge_browser(profile: Path) -> Iterator[webdriver.Chrome]:
    driver = start_chromium(
        profile,
        "--ignore-certificate-errors",  # Caddy's local CA, for this browser only
        f"--host-resolver-rules=MAP {DOMAIN} 127.0.0.1",
    )
    try:
        yield driver
    finally:
        driver.quit()


async def test_consent_through_the_edge(tmp_path: Path, callback: Callback) -> None:
    https_port = free_port()
    public = f"https://{DOMAIN}:{https_port}"
    (tmp_path / "edge").mkdir()
    with running_relay(
        tmp_path / "relay",
        RELAY_SHELL_AUTH_ENABLED="true",
        RELAY_SHELL_AUTH_ISSUER=public,
        RELAY_SHELL_HTTP_ALLOWED_HOSTS=DOMAIN,
        RELAY_SHELL_AUTH_OPERATOR_HASH=cheap_hash(),
    ) as relay:
        caddy, _, context = start_caddy(tmp_path / "edge", relay.port, "127.0.0.1/32", https_port)
        try:
            await run_flow(relay, public, context, callback, tmp_path / "profile")
        finally:
            assert stop(caddy) == 0


async def run_flow(
    relay: RelayProcess, public: str, context: object, callback: Callback, profile: Path
) -> None:
    import httpx2

    transport = PinnedToLoopback(context)  # type: ignore[arg-type]
    async with httpx2.AsyncClient(transport=transport, base_url=public, timeout=WAIT_S) as http:
        registered = await http.post(
            "/register",
            json={
                "redirect_uris": [callback.url],
                "token_endpoint_auth_method": "none",
                "client_name": "Edge Client",
            },
        )
        assert registered.status_code == 201, registered.text
        client_id = registered.json()["client_id"]
        edge_relay = RelayProcess(relay.process, relay.port, relay.state_dir, relay.log_path)
        login = start_login(edge_relay, client_id, callback.url, f"{READ} {OPERATE}")
        url = login.url.replace(relay.base_url, public)
        shown = await http.get((await http.get(url)).headers["location"])
        assert shown.status_code == 200
        # the edge's own headers replace the page's (one of each): the flow below must work with them
        assert shown.headers.get_list("referrer-policy") == ["no-referrer"]
        assert len(shown.headers.get_list("content-security-policy")) == 1
        with edge_browser(profile) as browser:
            browser.get(url)
            assert browser.current_url.startswith(f"{public}/consent?request="), browser.current_url
            assert "Edge Client" in browser.find_element(By.TAG_NAME, "body").text
            submit(browser, tick=(READ,), passphrase=PASSPHRASE)
            answer = callback.next()
        assert answer["iss"] == public
        token = await http.post(
            "/token",
            data={
                "grant_type": "authorization_code",
                "code": answer["code"],
                "redirect_uri": callback.url,
                "client_id": client_id,
                "code_verifier": login.verifier,
            },
        )
        assert token.status_code == 200, token.text
        assert token.json()["scope"] == READ
        revoked = await http.post(
            "/revoke", data={"token": token.json()["access_token"], "client_id": client_id}
        )
        assert revoked.status_code == 200
    records = [json.loads(line) for line in relay.audit_path.read_text().splitlines()]
    assert [record["event"] for record in records if record.get("tool", "").startswith("oauth_")] == [
        "approved",
        "issued",
        "revoked",
    ]
