"""The consent page over ASGI with the SDK's real routes: who gets a code, for which scopes, how often.

Each test drives a fresh provider (hand-driven clock, audit file in a temp dir) through
``/authorize`` -> ``/consent`` -> the client's redirect, the way an attacker holding the
client id and their own PKCE pair would, and the way the operator would.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from relay_shell.errors import ConfigError
from relay_shell.governance.audit.writer import AuditSink
from relay_shell.http.consent import CONSENT_ATTEMPTS, ConsentService, issue_approval_code
from relay_shell.http.consent_page import COOKIE, STYLE, STYLE_HASH
from relay_shell.http.oauth_events import OAuthAudit, request_ref
from relay_shell.http.oauth_state import STATE_VERSION
from relay_shell.http.oauth_store import FileOAuthProvider
from relay_shell.http.operator_auth import PassphraseVerifier, TokenBucket
from relay_shell.http.scopes import ALL_SCOPES, SCOPE_ADMIN, SCOPE_OPERATE, SCOPE_READ
from tests.conftest import read_audit
from tests.http.conftest import FakeClock
from tests.http.consent_flow import PASSPHRASE, ConsentPage, cheap_hash, dict_list, form_data, parse_page
from tests.http.test_oauth_builtin import (
    ISSUER,
    REDIRECT,
    Driver,
    build_app,
    make_provider,
    pkce_pair,
)

CODE_TTL = 600
OPERATOR_HASH = cheap_hash()


class CountingVerifier(PassphraseVerifier):
    """The real verifier, counting how many passphrases it was asked to check."""

    calls = 0

    def verify_now(self, passphrase: str) -> bool:
        self.calls += 1
        return super().verify_now(passphrase)


@dataclass
class Bench:
    """One authorization server under test, with its driver, clock, verifier, bucket and audit."""

    provider: FileOAuthProvider
    driver: Driver
    verifier: CountingVerifier
    bucket: TokenBucket
    clock: FakeClock
    audit_path: Path
    state_dir: Path

    @property
    def http(self) -> httpx2.AsyncClient:
        return self.driver.http

    def audit(self, tool: str | None = None) -> list[dict[str, Any]]:
        return [record for record in read_audit(self.audit_path) if tool is None or record["tool"] == tool]

    def events(self, tool: str) -> list[str]:
        return [record["event"] for record in self.audit(tool)]

    async def start(self, scope: str | None = None, state: str = "s1") -> tuple[str, str]:
        """``/authorize`` as any holder of the client id would: the consent URL and the PKCE verifier."""
        verifier, challenge = pkce_pair()
        query = {
            "response_type": "code",
            "client_id": self.driver.client_id,
            "redirect_uri": REDIRECT,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": state,
        }
        if scope is not None:
            query["scope"] = scope
        response = await self.http.get("/authorize", params=query)
        assert response.status_code == 302, response.text
        location = response.headers["location"]
        assert location.startswith(f"{ISSUER}/consent?request="), location  # never a code here
        return location, verifier

    async def page(self, location: str) -> ConsentPage:
        shown = await self.http.get(location)
        assert shown.status_code == 200, shown.text
        return parse_page(shown.text)

    async def post(self, page: ConsentPage, **fields: Any) -> httpx2.Response:
        return await self.http.post("/consent", data=dict_list(form_data(page, **fields)))

    def pending(self) -> dict[str, Any]:
        return dict(json.loads((self.state_dir / "state.json").read_text())["pending"])


def redirect_query(response: httpx2.Response) -> dict[str, str]:
    assert response.status_code == 303, response.text
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    return {key: values[0] for key, values in parse_qs(location.query).items()}


BenchFactory = Callable[..., Awaitable[Bench]]


@pytest.fixture
async def make_bench(tmp_path: Path, clock: FakeClock) -> AsyncIterator[BenchFactory]:
    async with contextlib.AsyncExitStack() as stack:

        async def make(
            *,
            max_scope: str = SCOPE_ADMIN,
            capacity: int = 10,
            audit_path: Path | None = None,
            client_name: str = "claude-code",
            operator_hash: str | None = OPERATOR_HASH,
        ) -> Bench:
            audit_path = audit_path or tmp_path / "audit.jsonl"
            events = OAuthAudit(AuditSink(audit_path), policy_mode="open", required=True)
            state_dir = tmp_path / "oauth"
            provider = make_provider(state_dir, clock, code_ttl=CODE_TTL, max_scope=max_scope, events=events)
            verifier = CountingVerifier(operator_hash or OPERATOR_HASH)
            bucket = TokenBucket(capacity=capacity, refill_s=6.0, clock=clock)
            service = ConsentService(provider, verifier=verifier if operator_hash else None, bucket=bucket)
            transport = httpx2.ASGITransport(app=build_app(provider, service))
            http = await stack.enter_async_context(httpx2.AsyncClient(transport=transport, base_url=ISSUER))
            driver = Driver(http)
            registered = await driver.register(client_name=client_name)
            assert registered.status_code == 201, registered.text
            return Bench(provider, driver, verifier, bucket, clock, audit_path, state_dir)

        yield make


# -- the escalation: client id + own PKCE pair + a read token is not enough --------------------


async def test_read_token_holder_cannot_mint_an_admin_token(make_bench: BenchFactory) -> None:
    bench = await make_bench()
    # the operator's own login, for read only
    location, verifier = await bench.start(SCOPE_READ)
    code = redirect_query(await bench.post(await bench.page(location), passphrase=PASSPHRASE))["code"]
    read = (await bench.driver.exchange(code, verifier)).json()
    assert read["scope"] == SCOPE_READ
    # the attacker: the same client id (audit_tail shows it), their own PKCE pair, admin asked
    location, _ = await bench.start(SCOPE_ADMIN)
    page = await bench.page(location)
    for attempt in (
        {},  # no proof at all
        {"passphrase": ""},
        {"passphrase": read["access_token"]},  # the read token is no proof
        {"approval_code": read["access_token"]},
    ):
        refused = await bench.post(page, **attempt)
        assert refused.status_code in (400, 403, 410)
        assert "location" not in refused.headers
    # no code anywhere: the state holds no code beyond the spent one, the attacker's request is pending
    state = json.loads((bench.state_dir / "state.json").read_text())
    assert state["codes"] == {}
    assert list(state["grants"]) == [
        (await bench.driver.whoami(read["access_token"])).json()["subject"]
    ]  # only the operator's grant


async def test_no_proof_issues_no_code_and_uses_no_attempt(make_bench: BenchFactory) -> None:
    bench = await make_bench()
    location, _ = await bench.start()
    page = await bench.page(location)
    refused = await bench.post(page)
    assert refused.status_code == 400
    assert "Enter the operator passphrase or an approval code" in refused.text
    assert next(iter(bench.pending().values()))["attempts"] == 0
    assert bench.verifier.calls == 0


# -- wrong proofs are counted; the fifth closes the request ------------------------------------


async def test_wrong_passphrases_are_counted_and_close_the_request(make_bench: BenchFactory) -> None:
    bench = await make_bench()
    location, _ = await bench.start(SCOPE_ADMIN)
    page = await bench.page(location)
    for attempt in range(1, CONSENT_ATTEMPTS):
        wrong = await bench.post(page, passphrase=f"wrong {attempt}")
        assert wrong.status_code == 403
        assert f"{CONSENT_ATTEMPTS - attempt} attempt(s) left" in wrong.text
        assert next(iter(bench.pending().values()))["attempts"] == attempt
        page = parse_page(wrong.text)  # the page comes back with a fresh CSRF token
    last = await bench.post(page, passphrase="wrong again")
    assert last.status_code == 410
    assert next(iter(bench.pending().values()))["dead"] is True
    # even the right passphrase now gets nothing, and it is never checked
    calls = bench.verifier.calls
    closed = await bench.post(page, passphrase=PASSPHRASE)
    assert closed.status_code == 410
    assert bench.verifier.calls == calls
    assert (await bench.http.get(location)).status_code == 410
    assert bench.events("oauth_consent") == ["wrong_passphrase"] * CONSENT_ATTEMPTS + ["attempts_exhausted"]
    for record in bench.audit("oauth_consent"):
        assert record["tier"] == 0 and record["outcome"] == "denied" and record["decision"] == "denied"
        assert record["args"]["request"] == request_ref(parse_qs(urlsplit(location).query)["request"][0])
    assert PASSPHRASE not in bench.audit_path.read_text()
    assert "wrong 1" not in bench.audit_path.read_text()


async def test_concurrent_guesses_never_exceed_the_attempts(make_bench: BenchFactory) -> None:
    bench = await make_bench(capacity=100)
    location, _ = await bench.start()
    page = await bench.page(location)
    answers = await asyncio.gather(*(bench.post(page, passphrase=f"guess {n}") for n in range(20)))
    assert bench.verifier.calls == CONSENT_ATTEMPTS  # 20 guesses, 5 checked
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) <= {403, 410}
    assert statuses.count(410) >= 20 - CONSENT_ATTEMPTS
    assert next(iter(bench.pending().values()))["dead"] is True
    assert all("location" not in answer.headers for answer in answers)


async def test_concurrent_right_answers_issue_one_code(make_bench: BenchFactory) -> None:
    bench = await make_bench()
    location, _ = await bench.start()
    page = await bench.page(location)
    answers = await asyncio.gather(*(bench.post(page, passphrase=PASSPHRASE) for _ in range(4)))
    assert sorted(answer.status_code for answer in answers)[0] == 303
    assert sum(answer.status_code == 303 for answer in answers) == 1
    assert bench.events("oauth_consent").count("approved") == 1


# -- what is granted ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "ticked"),
    [
        (" ".join(ALL_SCOPES), [SCOPE_READ]),
        (" ".join(ALL_SCOPES), [SCOPE_OPERATE, SCOPE_ADMIN]),
        (f"{SCOPE_READ} {SCOPE_OPERATE}", [SCOPE_OPERATE]),
        (None, [SCOPE_OPERATE]),  # nothing asked: operate is what is asked
    ],
)
async def test_granted_scopes_are_the_ticked_ones(
    make_bench: BenchFactory, asked: str | None, ticked: list[str]
) -> None:
    bench = await make_bench()
    location, verifier = await bench.start(asked)
    page = await bench.page(location)
    assert page.scopes == [scope for scope in ALL_SCOPES if scope in (asked or SCOPE_OPERATE).split()]
    assert page.checked == []  # nothing ticked in advance
    code = redirect_query(await bench.post(page, scopes=ticked, passphrase=PASSPHRASE))["code"]
    tokens = (await bench.driver.exchange(code, verifier)).json()
    assert tokens["scope"].split() == ticked
    me = (await bench.driver.whoami(tokens["access_token"])).json()
    assert me["scopes"] == ticked
    approved = bench.audit("oauth_consent")[-1]
    assert (approved["event"], approved["args"]["granted"], approved["principal"]) == (
        "approved",
        ticked,
        me["subject"],
    )
    assert bench.audit("oauth_token")[-1]["event"] == "issued"


@pytest.mark.parametrize(
    ("asked", "posted"),
    [
        (SCOPE_READ, [SCOPE_ADMIN]),  # more than asked
        (SCOPE_READ, [SCOPE_READ, SCOPE_OPERATE]),
        (SCOPE_READ, ["relay-shell:root"]),
        (SCOPE_READ, [SCOPE_READ, SCOPE_READ]),
        (SCOPE_READ, []),  # nothing ticked
    ],
)
async def test_forged_scopes_are_refused_without_using_an_attempt(
    make_bench: BenchFactory, asked: str, posted: list[str]
) -> None:
    bench = await make_bench()
    location, _ = await bench.start(asked)
    refused = await bench.post(await bench.page(location), scopes=posted, passphrase=PASSPHRASE)
    assert refused.status_code == 400
    assert next(iter(bench.pending().values()))["attempts"] == 0
    assert json.loads((bench.state_dir / "state.json").read_text())["codes"] == {}


async def test_max_scope_caps_what_is_offered_and_granted(make_bench: BenchFactory) -> None:
    bench = await make_bench(max_scope=SCOPE_OPERATE)
    location, verifier = await bench.start(" ".join(ALL_SCOPES))
    page = await bench.page(location)
    assert page.scopes == [SCOPE_READ, SCOPE_OPERATE]
    forged = await bench.post(page, scopes=[SCOPE_ADMIN], passphrase=PASSPHRASE)
    assert forged.status_code == 400
    page = parse_page(forged.text)
    code = redirect_query(await bench.post(page, scopes=[SCOPE_READ, SCOPE_OPERATE], passphrase=PASSPHRASE))[
        "code"
    ]
    tokens = (await bench.driver.exchange(code, verifier)).json()
    assert tokens["scope"].split() == [SCOPE_READ, SCOPE_OPERATE]
    # refresh cannot widen past the grant either
    assert (await bench.driver.refresh(tokens["refresh_token"], scope=SCOPE_ADMIN)).json()[
        "error"
    ] == "invalid_scope"


async def test_asking_only_above_the_max_scope_is_refused_at_authorize(make_bench: BenchFactory) -> None:
    bench = await make_bench(max_scope=SCOPE_READ)
    _, challenge = pkce_pair()
    answer = await bench.driver.authorize(challenge, scope=SCOPE_ADMIN)
    assert answer["error"] == "invalid_scope"
    assert bench.pending() == {}


async def test_two_consents_are_two_principals(make_bench: BenchFactory) -> None:
    bench = await make_bench()
    subjects = []
    for _ in range(2):
        location, verifier = await bench.start(SCOPE_READ)
        code = redirect_query(await bench.post(await bench.page(location), passphrase=PASSPHRASE))["code"]
        tokens = (await bench.driver.exchange(code, verifier)).json()
        subjects.append((await bench.driver.whoami(tokens["access_token"])).json()["subject"])
    assert subjects[0] != subjects[1]
    assert all(re.fullmatch(r"g-[0-9a-f]{16}", subject) for subject in subjects)


# -- deny, expiry, CSRF ------------------------------------------------------------------------


async def test_deny_redirects_with_access_denied_and_ends_the_request(make_bench: BenchFactory) -> None:
    bench = await make_bench()
    location, _ = await bench.start(state="xyz")
    answer = redirect_query(await bench.post(await bench.page(location), decision="deny"))
    assert answer["error"] == "access_denied"
    assert answer["state"] == "xyz"
    assert answer["iss"] == ISSUER
    assert "code" not in answer
    assert (await bench.http.get(location)).status_code == 404
    assert bench.events("oauth_consent") == ["denied"]


async def test_expired_request_is_gone(make_bench: BenchFactory) -> None:
    bench = await make_bench()
    location, _ = await bench.start()
    page = await bench.page(location)
    bench.clock.advance(CODE_TTL + 1)
    assert (await bench.http.get(location)).status_code == 404
    assert (await bench.post(page, passphrase=PASSPHRASE)).status_code == 404


@pytest.mark.parametrize(
    "case", ["no csrf", "no cookie", "other cookie", "other request's csrf", "not ascii"]
)
async def test_csrf_must_match_the_cookie_and_the_request(make_bench: BenchFactory, case: str) -> None:
    bench = await make_bench()
    location, _ = await bench.start()
    other_location, _ = await bench.start()
    page = await bench.page(location)
    other = await bench.page(other_location)  # this GET also set the cookie to the other page's token
    fields = dict_list(form_data(page, passphrase=PASSPHRASE))
    if case == "no csrf":
        fields.pop("csrf")
        bench.http.cookies.set(COOKIE, page.hidden["csrf"], path="/consent")
    elif case == "no cookie":
        bench.http.cookies.clear()
    elif case == "other cookie":
        bench.http.cookies.set(COOKIE, "x" * 43, path="/consent")
    elif case == "not ascii":
        fields["csrf"] = ["\u00e9" * 43]
    else:  # matches the cookie, but was handed out for the other request
        fields["csrf"] = [other.hidden["csrf"]]
    refused = await bench.http.post("/consent", data=fields)
    assert refused.status_code == 400
    assert bench.verifier.calls == 0
    assert all(record["attempts"] == 0 for record in bench.pending().values())


# -- approval codes ----------------------------------------------------------------------------


async def test_an_approval_code_approves_its_own_request_only(make_bench: BenchFactory) -> None:
    bench = await make_bench()
    first, verifier = await bench.start(SCOPE_OPERATE)
    second, _ = await bench.start(SCOPE_ADMIN)
    first_id = parse_qs(urlsplit(first).query)["request"][0]
    issued = await issue_approval_code(bench.provider.store, first_id, clock=bench.clock)
    assert issued is not None
    code, record, client = issued
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}", code)
    assert (record.scopes, client is not None and client.client_name) == ([SCOPE_OPERATE], "claude-code")
    on_second = await bench.post(await bench.page(second), approval_code=code)
    assert on_second.status_code == 403
    assert "Wrong approval code" in on_second.text
    answer = redirect_query(
        await bench.post(await bench.page(first), approval_code=code.lower().replace("-", " "))
    )
    tokens = (await bench.driver.exchange(answer["code"], verifier)).json()
    assert tokens["scope"] == SCOPE_OPERATE
    assert bench.verifier.calls == 0  # no passphrase involved
    assert bench.events("oauth_consent") == ["wrong_approval_code", "approved"]
    assert bench.audit("oauth_consent")[-1]["args"]["method"] == "approval_code"
    assert (
        code not in bench.audit_path.read_text() and code not in (bench.state_dir / "state.json").read_text()
    )


async def test_an_approval_code_expires(make_bench: BenchFactory) -> None:
    bench = await make_bench()
    location, _ = await bench.start()
    issued = await issue_approval_code(
        bench.provider.store, parse_qs(urlsplit(location).query)["request"][0], clock=bench.clock
    )
    assert issued is not None
    bench.clock.advance(301)
    refused = await bench.post(await bench.page(location), approval_code=issued[0])
    assert refused.status_code == 403


async def test_approval_code_for_an_unknown_or_closed_request(make_bench: BenchFactory) -> None:
    bench = await make_bench()
    assert await issue_approval_code(bench.provider.store, "no-such-request", clock=bench.clock) is None
    location, _ = await bench.start()
    page = await bench.page(location)
    for attempt in range(CONSENT_ATTEMPTS):
        page = (
            parse_page((await bench.post(page, passphrase=f"wrong {attempt}")).text) if attempt < 4 else page
        )
    await bench.post(page, passphrase="wrong last")
    request_id = parse_qs(urlsplit(location).query)["request"][0]
    assert await issue_approval_code(bench.provider.store, request_id, clock=bench.clock) is None


# -- the global limit on passphrase checks -----------------------------------------------------


async def test_passphrase_flood_is_rate_limited_but_approval_codes_still_work(
    make_bench: BenchFactory,
) -> None:
    bench = await make_bench(capacity=3)
    for _ in range(3):  # the flood: fresh requests, wrong passphrases, until the bucket is empty
        location, _ = await bench.start()
        assert (await bench.post(await bench.page(location), passphrase="guess")).status_code == 403
    location, _ = await bench.start()
    page = await bench.page(location)
    limited = await bench.post(page, passphrase=PASSPHRASE)
    assert limited.status_code == 429
    again = await bench.post(parse_page(limited.text), passphrase=PASSPHRASE)
    assert again.status_code == 429
    request_id = parse_qs(urlsplit(location).query)["request"][0]
    assert bench.pending()[request_id]["attempts"] == 0  # still pending, the refusals not counted
    assert bench.verifier.calls == 3
    assert bench.events("oauth_consent").count("rate_limited") == 1  # one record per episode
    # the operator on the host is not locked out
    issued = await issue_approval_code(bench.provider.store, request_id, clock=bench.clock)
    assert issued is not None
    approved = await bench.post(parse_page(again.text), approval_code=issued[0])
    assert "code" in redirect_query(approved)
    # and the passphrase works again one refill later
    bench.clock.advance(6.0)
    location, _ = await bench.start()
    assert (await bench.post(await bench.page(location), passphrase=PASSPHRASE)).status_code == 303


async def test_without_a_passphrase_configured_only_codes_work(make_bench: BenchFactory) -> None:
    bench = await make_bench(operator_hash=None)
    location, _ = await bench.start()
    page = await bench.page(location)
    assert page.passphrase_field is False and page.approval_field is True
    refused = await bench.post(page, passphrase=PASSPHRASE)
    assert refused.status_code == 400
    assert "No operator passphrase is set" in refused.text


# -- the page itself ---------------------------------------------------------------------------


async def test_the_page_is_strict_and_escapes_what_the_client_chose(make_bench: BenchFactory) -> None:
    bench = await make_bench(client_name='<script>alert("x")</script>')
    location, _ = await bench.start(" ".join(ALL_SCOPES))
    response = await bench.http.get(location)
    csp = response.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives == {
        "default-src": "'none'",
        "style-src": f"'sha256-{STYLE_HASH}'",
        "form-action": "'self' http://127.0.0.1:33418",
        "frame-ancestors": "'none'",
        "base-uri": "'none'",
    }
    assert __import__("base64").b64encode(hashlib.sha256(STYLE.encode()).digest()).decode() == STYLE_HASH
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["cache-control"] == "no-store"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/consent" in cookie
    body = response.text
    assert "<script" not in body
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in body
    assert not re.search(r"""\b(?:src|href)\s*=""", body)  # no external asset, no link
    page = parse_page(body)
    assert (page.action, page.method) == ("/consent", "post")
    assert page.decisions == ["approve", "deny"]
    assert set(page.hidden) == {"request", "csrf"}
    assert page.scopes == list(ALL_SCOPES)
    assert "relay-shell --approve-login " + page.hidden["request"] in body


async def test_secrets_of_the_consent_are_never_stored_in_clear(make_bench: BenchFactory) -> None:
    bench = await make_bench()
    location, verifier = await bench.start()
    page = await bench.page(location)
    request_id = page.hidden["request"]
    issued = await issue_approval_code(bench.provider.store, request_id, clock=bench.clock)
    assert issued is not None
    state = (bench.state_dir / "state.json").read_text()
    assert page.hidden["csrf"] not in state
    assert issued[0] not in state and issued[0].replace("-", "") not in state
    answer = redirect_query(await bench.post(page, passphrase=PASSPHRASE))
    tokens = (await bench.driver.exchange(answer["code"], verifier)).json()
    audit = bench.audit_path.read_text()
    for secret in (
        answer["code"],
        tokens["access_token"],
        tokens["refresh_token"],
        page.hidden["csrf"],
        PASSPHRASE,
        request_id,
    ):
        assert secret not in audit


# -- audit trail of tokens and revocations -----------------------------------------------------


async def test_token_and_revocation_events_are_audited(make_bench: BenchFactory) -> None:
    bench = await make_bench()
    location, verifier = await bench.start()
    answer = redirect_query(await bench.post(await bench.page(location), passphrase=PASSPHRASE))
    tokens = (await bench.driver.exchange(answer["code"], verifier)).json()
    grant = (await bench.driver.whoami(tokens["access_token"])).json()["subject"]
    rotated = (await bench.driver.refresh(tokens["refresh_token"])).json()
    assert (
        await bench.driver.refresh(tokens["refresh_token"])
    ).status_code == 400  # replay: revokes the grant
    location, verifier = await bench.start()
    answer = redirect_query(await bench.post(await bench.page(location), passphrase=PASSPHRASE))
    second = (await bench.driver.exchange(answer["code"], verifier)).json()
    assert (await bench.driver.revoke(second["access_token"])).status_code == 200
    assert [(r["event"], r["principal"] == grant) for r in bench.audit("oauth_token")] == [
        ("issued", True),
        ("refreshed", True),
        ("issued", False),
    ]
    revokes = bench.audit("oauth_revoke")
    assert [(record["event"], record["args"].get("via")) for record in revokes] == [
        ("replay", None),
        ("revoked", "revoke_endpoint"),
    ]
    assert revokes[0]["principal"] == grant
    assert all(record["tier"] == 0 and record["client_id"] == bench.driver.client_id for record in revokes)
    text = bench.audit_path.read_text()
    for token in (tokens, rotated, second):
        assert token["access_token"] not in text and token["refresh_token"] not in text


async def test_nothing_is_granted_while_the_audit_cannot_be_written(
    make_bench: BenchFactory, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    bench = await make_bench(audit_path=blocker / "audit.jsonl")
    location, _ = await bench.start()
    refused = await bench.post(await bench.page(location), passphrase=PASSPHRASE)
    assert refused.status_code == 503
    assert "location" not in refused.headers
    assert json.loads((bench.state_dir / "state.json").read_text())["codes"] == {}


# -- the upgrade from the format without consent -----------------------------------------------


def test_tokens_issued_before_consent_are_revoked_on_upgrade(tmp_path: Path, clock: FakeClock) -> None:
    state_dir = tmp_path / "oauth"
    state_dir.mkdir(mode=0o700)
    token = "legacy-access-token"
    record = {
        "client_id": "c1",
        "scopes": [SCOPE_ADMIN],
        "expires_at": clock() + 3600,
        "resource": ISSUER + "/mcp",
        "subject": "operator",
        "family": "f" * 32,
        "partner": "p" * 64,
    }
    legacy = {
        "version": 1,
        "client": {"client_id": "c1", "redirect_uris": [REDIRECT]},
        "codes": {},
        "access": {hashlib.sha256(token.encode()).hexdigest(): record},
        "refresh": {"p" * 64: {**record, "partner": hashlib.sha256(token.encode()).hexdigest()}},
        "spent": {},
    }
    (state_dir / "state.json").write_text(json.dumps(legacy))
    audit_path = tmp_path / "audit.jsonl"
    events = OAuthAudit(AuditSink(audit_path))  # one writer per audit file: both starts share it
    provider = make_provider(state_dir, clock, code_ttl=CODE_TTL, events=events)
    assert asyncio.run(provider.load_access_token(token)) is None
    stored = json.loads((state_dir / "state.json").read_text())
    assert stored["version"] == STATE_VERSION
    assert stored["access"] == stored["refresh"] == {}
    assert stored["client"]["client_id"] == "c1"  # the registration is kept
    records = read_audit(audit_path)
    assert [(r["tool"], r["event"], r["principal"]) for r in records] == [
        ("oauth_revoke", "upgrade", "f" * 32)
    ]
    # a second start has nothing left to upgrade
    FileOAuthProvider(
        state_dir,
        issuer=ISSUER,
        access_ttl=1,
        refresh_ttl=60,
        code_ttl=10,
        clock=clock,
        events=events,
    )
    assert len(read_audit(audit_path)) == 1


def test_a_newer_state_format_is_refused(tmp_path: Path, clock: FakeClock) -> None:
    state_dir = tmp_path / "oauth"
    state_dir.mkdir(mode=0o700)
    (state_dir / "state.json").write_text(json.dumps({"version": STATE_VERSION + 1}))
    with pytest.raises(ConfigError, match="newer"):
        FileOAuthProvider(state_dir, issuer=ISSUER, access_ttl=60, refresh_ttl=60, code_ttl=10, clock=clock)
