"""The authorization flow in a real headless Chromium (Selenium, Debian's chromium and chromedriver).

A real ``relay-shell`` serves HTTP with builtin OAuth; the operator hash comes from the real
``relay-shell --set-operator-passphrase``; the client's redirect URI is a small loopback
HTTP server of this test, so the browser really follows the redirect after the form post
(which the page's CSP ``form-action`` must allow). The browser is what an operator uses,
with no JavaScript of ours on the page.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import secrets
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from tests.components import missing
from tests.conftest import read_audit
from tests.http.consent_flow import PASSPHRASE
from tests.http.test_auth_e2e import bearer_client
from tests.http.test_http_e2e import RELAY, RelayProcess, running_relay, server_env

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_S = 30
READ, OPERATE, ADMIN = "relay-shell:read", "relay-shell:operate", "relay-shell:admin"
ALL = f"{READ} {OPERATE} {ADMIN}"


# -- the client's side: its redirect URI and its PKCE pair ------------------------------------


class Callback:
    """A loopback HTTP server standing for the MCP client's redirect URI; it queues every query."""

    def __init__(self) -> None:
        self.received: queue.Queue[dict[str, str]] = queue.Queue()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                target = urlsplit(self.path)
                if target.path != "/callback":  # the browser's favicon request, say
                    self.send_error(404)
                    return
                received.put({key: values[0] for key, values in parse_qs(target.query).items()})
                body = b"<!doctype html><title>client</title><p id=done>back in the client</p>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/callback"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def next(self) -> dict[str, str]:
        """The next query the client received (bounded wait)."""
        return self.received.get(timeout=WAIT_S)

    def nothing_received(self) -> bool:
        return self.received.empty()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Login:
    """One authorization the client starts: its URL and its PKCE verifier."""

    url: str
    verifier: str
    state: str


def start_login(relay: RelayProcess, client_id: str, redirect_uri: str, scope: str) -> Login:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    state = secrets.token_urlsafe(8)
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "scope": scope,
        "state": state,
    }
    return Login(f"{relay.base_url}/authorize?{urlencode(query)}", verifier, state)


def exchange(
    relay: RelayProcess, client_id: str, redirect_uri: str, code: str, verifier: str
) -> dict[str, Any]:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": client_id,
        "code_verifier": verifier,
    }
    with relay.http() as http:
        response = http.post("/token", data=form)
    assert response.status_code == 200, response.text
    return dict(response.json())


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def operator_hash(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The hash line printed by the real ``relay-shell --set-operator-passphrase`` (passphrase on stdin)."""
    home = tmp_path_factory.mktemp("hash")
    done = subprocess.run(
        [RELAY, "--set-operator-passphrase"],
        input=PASSPHRASE + "\n",
        env=server_env(home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("RELAY_SHELL_AUTH_OPERATOR_HASH='$argon2id$") and lines[0].endswith("'")
    assert PASSPHRASE not in done.stdout + done.stderr
    return lines[0].split("=", 1)[1].strip("'")


@pytest.fixture(scope="module")
def callback() -> Iterator[Callback]:
    server = Callback()
    yield server
    server.close()


@dataclass
class Deployment:
    relay: RelayProcess
    client_id: str
    redirect_uri: str
    env: dict[str, str]


def deploy(state_dir: Path, operator_hash: str, callback: Callback, **extra: str) -> Iterator[Deployment]:
    env = {
        "RELAY_SHELL_AUTH_ENABLED": "true",
        "RELAY_SHELL_AUTH_ISSUER": "http://127.0.0.1:{port}",
        "RELAY_SHELL_AUTH_OPERATOR_HASH": operator_hash,
        **extra,
    }
    with running_relay(state_dir, **env) as relay:
        with relay.http() as http:
            registered = http.post(
                "/register",
                json={
                    "redirect_uris": [callback.url],
                    "token_endpoint_auth_method": "none",
                    "grant_types": ["authorization_code", "refresh_token"],
                    "response_types": ["code"],
                    "scope": ALL,
                    "client_name": "Browser Test Client",
                },
            )
        assert registered.status_code == 201, registered.text
        env = {name: value.replace("{port}", str(relay.port)) for name, value in env.items()}
        full_env = server_env(
            state_dir, RELAY_SHELL_TRANSPORT="http", RELAY_SHELL_HTTP_PORT=str(relay.port), **env
        )
        yield Deployment(relay, str(registered.json()["client_id"]), callback.url, full_env)


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, operator_hash: str, callback: Callback
) -> Iterator[Deployment]:
    yield from deploy(tmp_path_factory.mktemp("browser-relay"), operator_hash, callback)


@pytest.fixture(scope="module")
def capped(
    tmp_path_factory: pytest.TempPathFactory, operator_hash: str, callback: Callback
) -> Iterator[Deployment]:
    """The same, with RELAY_SHELL_AUTH_MAX_SCOPE=relay-shell:operate."""
    yield from deploy(
        tmp_path_factory.mktemp("browser-capped"), operator_hash, callback, RELAY_SHELL_AUTH_MAX_SCOPE=OPERATE
    )


HEADLESS_ARGUMENTS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def start_chromium(profile: Path, *extra: str) -> webdriver.Chrome:
    """Headless Chromium with a private profile, driven through chromedriver (both fail the test,
    naming the package, when missing)."""
    if not os.access(CHROMIUM, os.X_OK):
        missing(CHROMIUM, "apt-get install chromium")
    if not os.access(CHROMEDRIVER, os.X_OK):
        missing(CHROMEDRIVER, "apt-get install chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (*HEADLESS_ARGUMENTS, *extra, f"--user-data-dir={profile}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    return driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


# -- what the browser does ---------------------------------------------------------------------


def open_consent(browser: webdriver.Chrome, login: Login, relay: RelayProcess) -> str:
    """Navigate to the client's /authorize URL; the browser lands on the consent page. Its request id."""
    browser.get(login.url)
    assert browser.current_url.startswith(f"{relay.base_url}/consent?request="), browser.current_url
    return parse_qs(urlsplit(browser.current_url).query)["request"][0]


def offered_scopes(browser: webdriver.Chrome) -> list[str]:
    return [str(box.get_attribute("value")) for box in browser.find_elements(By.NAME, "scope")]


def submit(
    browser: webdriver.Chrome,
    *,
    tick: tuple[str, ...] = (),
    passphrase: str | None = None,
    approval_code: str | None = None,
    decision: str = "approve",
) -> None:
    """Fill the form like a person (tick, type) and press a button; wait for the next page."""
    for box in browser.find_elements(By.NAME, "scope"):
        if box.get_attribute("value") in tick and not box.is_selected():
            box.click()
    if passphrase is not None:
        browser.find_element(By.NAME, "passphrase").send_keys(passphrase)
    if approval_code is not None:
        browser.find_element(By.NAME, "approval_code").send_keys(approval_code)
    before = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.CSS_SELECTOR, f'button[name="decision"][value="{decision}"]').click()
    WebDriverWait(browser, WAIT_S).until(lambda driver: _replaced(before))


def _replaced(element: Any) -> bool:
    """True once ``element`` no longer belongs to the current page (a new document has loaded)."""
    try:
        element.tag_name  # noqa: B018 - touching it raises once the document is gone
    except Exception:
        return True
    return False


def notice(browser: webdriver.Chrome) -> str:
    return str(browser.find_element(By.CSS_SELECTOR, ".notice").text)


def consent_records(relay: RelayProcess) -> list[dict[str, Any]]:
    return [record for record in read_audit(relay.audit_path) if record["tool"] == "oauth_consent"]


def approve_login_cli(
    deployment: Deployment, request_id: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RELAY, "--approve-login", request_id, *extra],
        env=deployment.env,
        cwd=deployment.relay.state_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )


# -- the tests ---------------------------------------------------------------------------------


def test_no_code_without_proof_wrong_passphrase_counted_granted_scopes_are_the_ticked_ones(
    deployment: Deployment, browser: webdriver.Chrome, callback: Callback
) -> None:
    relay = deployment.relay
    login = start_login(relay, deployment.client_id, deployment.redirect_uri, ALL)
    open_consent(browser, login, relay)
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Browser Test Client" in body and deployment.client_id in body and deployment.redirect_uri in body
    assert offered_scopes(browser) == [READ, OPERATE, ADMIN]
    assert not any(box.is_selected() for box in browser.find_elements(By.NAME, "scope"))

    submit(browser, tick=(READ,))  # no passphrase, no code
    assert "Enter the operator passphrase or an approval code" in notice(browser)
    submit(browser, tick=(READ,), passphrase="not the passphrase")
    assert "Wrong passphrase. 4 attempt(s) left" in notice(browser)
    assert [record["event"] for record in consent_records(relay)][-1] == "wrong_passphrase"
    assert callback.nothing_received()

    submit(browser, tick=(READ, OPERATE), passphrase=PASSPHRASE)
    answer = callback.next()
    assert browser.find_element(By.ID, "done").text == "back in the client"
    assert answer["state"] == login.state and answer["iss"] == relay.base_url
    tokens = exchange(relay, deployment.client_id, deployment.redirect_uri, answer["code"], login.verifier)
    assert tokens["scope"].split() == [READ, OPERATE]  # admin was asked, not ticked: not granted
    approved = consent_records(relay)[-1]
    assert (approved["event"], approved["args"]["granted"]) == ("approved", [READ, OPERATE])
    assert PASSPHRASE not in relay.audit_path.read_text()


def test_the_page_renders_under_its_csp(deployment: Deployment, browser: webdriver.Chrome) -> None:
    relay = deployment.relay
    browser.get_log("browser")  # drop earlier messages
    open_consent(browser, start_login(relay, deployment.client_id, deployment.redirect_uri, READ), relay)
    submit(browser, tick=(READ,))  # brings up the notice, styled by the page's one style block
    assert browser.find_element(By.CSS_SELECTOR, ".notice").value_of_css_property("border-top-color") in (
        "rgb(187, 0, 0)",
        "rgba(187, 0, 0, 1)",
    )
    messages = [entry["message"] for entry in browser.get_log("browser")]
    assert not [message for message in messages if "Content Security Policy" in message], messages


def test_a_forged_scope_is_refused_even_from_the_page(
    capped: Deployment, browser: webdriver.Chrome, callback: Callback
) -> None:
    relay = capped.relay
    login = start_login(relay, capped.client_id, capped.redirect_uri, ALL)
    open_consent(browser, login, relay)
    assert offered_scopes(browser) == [READ, OPERATE]  # AUTH_MAX_SCOPE=operate: admin is not offered
    assert ADMIN in browser.find_element(By.TAG_NAME, "body").text  # but shown as not grantable
    browser.execute_script(  # an edited page: a ticked admin box the server never offered
        "const box = document.createElement('input'); box.type = 'checkbox'; box.name = 'scope';"
        "box.value = arguments[0]; box.checked = true; document.querySelector('form').appendChild(box);",
        ADMIN,
    )
    submit(browser, tick=(OPERATE,), passphrase=PASSPHRASE)
    assert "Not grantable for this request: relay-shell:admin" in notice(browser)
    assert callback.nothing_received()
    submit(browser, tick=(READ, OPERATE), passphrase=PASSPHRASE)
    tokens = exchange(relay, capped.client_id, capped.redirect_uri, callback.next()["code"], login.verifier)
    assert tokens["scope"].split() == [READ, OPERATE]


async def test_read_token_client_id_and_own_pkce_do_not_make_an_admin(
    deployment: Deployment, browser: webdriver.Chrome, callback: Callback
) -> None:
    relay = deployment.relay
    # a read token, legitimately granted
    login = start_login(relay, deployment.client_id, deployment.redirect_uri, READ)
    open_consent(browser, login, relay)
    submit(browser, tick=(READ,), passphrase=PASSPHRASE)
    read = exchange(
        relay, deployment.client_id, deployment.redirect_uri, callback.next()["code"], login.verifier
    )
    assert read["scope"] == READ
    # the attacker: the client id (audit_tail shows it), their own PKCE pair, admin asked
    attack = start_login(relay, deployment.client_id, deployment.redirect_uri, ADMIN)
    request_id = open_consent(browser, attack, relay)
    for guess in (read["access_token"], read["refresh_token"], deployment.client_id):
        submit(browser, tick=(ADMIN,), passphrase=guess)
        assert "Wrong passphrase" in notice(browser)
    submit(browser, tick=(ADMIN,), approval_code=read["access_token"][:11])
    assert "Wrong approval code" in notice(browser)
    submit(browser, tick=(ADMIN,))
    assert "Enter the operator passphrase" in notice(browser)
    assert callback.nothing_received()
    state = json.loads((relay.state_dir / "oauth" / "state.json").read_text())
    assert state["pending"][request_id]["attempts"] == 4
    assert not any(ADMIN in grant["scopes"] for grant in state["grants"].values())  # no admin grant exists
    async with bearer_client(relay, read["access_token"]) as client:
        # touch: tier 1 (id is a known-safe read, tier 0, which the read scope allows)
        refused = await client.call_tool("shell_exec", {"command": "touch /nonexistent-dir/proof"})
    assert refused.is_error is True
    assert refused.structured_content is not None
    assert refused.structured_content["error"]["reason"] == "scope"


def test_an_approval_code_approves_only_its_own_request(
    deployment: Deployment, browser: webdriver.Chrome, callback: Callback
) -> None:
    relay = deployment.relay
    first = start_login(relay, deployment.client_id, deployment.redirect_uri, OPERATE)
    first_id = open_consent(browser, first, relay)
    shown = approve_login_cli(deployment, first_id)
    assert shown.returncode == 0, shown.stderr
    assert (
        "Browser Test Client" in shown.stdout
        and OPERATE in shown.stdout
        and deployment.redirect_uri in shown.stdout
    )
    issued = approve_login_cli(deployment, first_id, "--json")
    assert issued.returncode == 0, issued.stderr
    code = json.loads(issued.stdout)["approval_code"]  # replaces the code printed just before

    second = start_login(relay, deployment.client_id, deployment.redirect_uri, ADMIN)
    open_consent(browser, second, relay)
    submit(browser, tick=(ADMIN,), approval_code=code)
    assert "Wrong approval code" in notice(browser)
    assert callback.nothing_received()

    browser.get(f"{relay.base_url}/consent?request={first_id}")  # back to the first request's page
    submit(browser, tick=(OPERATE,), approval_code=code)
    tokens = exchange(
        relay, deployment.client_id, deployment.redirect_uri, callback.next()["code"], first.verifier
    )
    assert tokens["scope"] == OPERATE
    assert approve_login_cli(deployment, first_id).returncode == 2  # the request is used up


def test_deny_sends_the_client_access_denied(
    deployment: Deployment, browser: webdriver.Chrome, callback: Callback
) -> None:
    relay = deployment.relay
    login = start_login(relay, deployment.client_id, deployment.redirect_uri, READ)
    open_consent(browser, login, relay)
    submit(browser, decision="deny")
    answer = callback.next()
    assert answer["error"] == "access_denied" and answer["state"] == login.state
    assert "code" not in answer
