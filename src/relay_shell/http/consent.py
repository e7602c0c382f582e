"""The operator's consent: a pending authorization request becomes a code only with proof of presence.

``/authorize`` (:meth:`FileOAuthProvider.authorize`) records a pending request and sends the
browser to ``/consent?request=ID``; the page (:mod:`relay_shell.http.consent_page`) posts
back ``request``, ``csrf``, ``passphrase`` or ``approval_code``, the ticked ``scope`` values
and ``decision`` (``approve`` or ``deny``). :class:`ConsentService` decides:

1. the request must exist, be live and not closed (``404`` unknown or expired, ``410`` closed);
2. the CSRF token must equal the page's cookie and be one handed out for this request (``400``);
3. ``deny`` ends the request and redirects to the client with ``error=access_denied``;
4. ``approve`` needs at least one scope, each among the scopes the request asked that the
   server may grant (``RELAY_SHELL_AUTH_MAX_SCOPE``); anything else is refused (``400``);
5. then a proof of presence: an approval code (bound to this request by
   ``relay-shell --approve-login ID``, valid 5 minutes) or the operator passphrase (Argon2id,
   drawing from the server-wide :class:`TokenBucket`, ``429`` when empty). Each proof tried
   uses one of the request's 5 attempts, reserved under the state lock *before* it is
   checked, so concurrent guesses cannot exceed 5; the fifth failure closes the request;
6. success issues a single-use code for the ticked scopes under a new grant id and redirects
   to the client's registered redirect URI with ``code``, ``state`` and ``iss``. Nothing is
   granted while the audit trail is required and cannot be written (``503``).

Every decision, failed proof, closed request and rate-limit refusal is audited as
``oauth_consent`` (:mod:`relay_shell.http.oauth_events`).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mcp.server.auth.provider import construct_redirect_uri
from mcp.shared.auth import OAuthClientInformationFull

from relay_shell.http.oauth_events import OAuthOutcome, request_ref
from relay_shell.http.oauth_state import (
    MAX_CSRF_TOKENS,
    ApprovalRecord,
    CodeRecord,
    ConsentMethod,
    GrantRecord,
    OAuthState,
    PendingRecord,
    StateStore,
    token_digest,
)
from relay_shell.http.oauth_store import TOKEN_BYTES, FileOAuthProvider
from relay_shell.http.operator_auth import (
    PassphraseVerifier,
    TokenBucket,
    approval_digest,
    new_approval_code,
)
from relay_shell.http.scopes import ALL_SCOPES, grantable_scopes

CONSENT_ATTEMPTS = 5
APPROVAL_TTL_S = 300
MAX_FIELD_CHARS = 256

UNKNOWN = "This login request is unknown or has expired. Start the login again from your MCP client."
CLOSED = "This login request was closed after too many failed attempts. Start the login again from your MCP client."


def new_grant_id() -> str:
    """A fresh grant id: ``g-`` and 16 hex digits."""
    return "g-" + secrets.token_hex(8)


@dataclass(frozen=True)
class ConsentRequest:
    """What the consent page shows about one pending request."""

    request_id: str
    client_id: str
    client_name: str | None
    redirect_uri: str
    asked: tuple[str, ...]
    grantable: tuple[str, ...]
    expires_at: float
    attempts_left: int
    dead: bool


@dataclass(frozen=True)
class ConsentForm:
    """The posted consent form, plus the CSRF cookie that came with it."""

    request_id: str
    csrf: str
    cookie: str
    decision: str
    scopes: tuple[str, ...] = ()
    passphrase: str = ""
    approval_code: str = ""


@dataclass(frozen=True)
class ConsentOutcome:
    """The answer: a redirect to the client (303), or the page again with a status and a message."""

    status: int
    redirect: str | None = None
    message: str = ""
    request: ConsentRequest | None = field(default=None)


def describe(
    request_id: str, record: PendingRecord, client: OAuthClientInformationFull | None, max_scope: str
) -> ConsentRequest:
    """The page's view of ``record``."""
    return ConsentRequest(
        request_id=request_id,
        client_id=record.client_id,
        client_name=client.client_name if client is not None else None,
        redirect_uri=record.redirect_uri,
        asked=tuple(record.scopes),
        grantable=grantable_scopes(record.scopes, max_scope),
        expires_at=record.expires_at,
        attempts_left=max(0, CONSENT_ATTEMPTS - record.attempts),
        dead=record.dead or record.attempts >= CONSENT_ATTEMPTS,
    )


async def issue_approval_code(
    store: StateStore, request_id: str, *, clock: Callable[[], float] = time.time
) -> tuple[str, PendingRecord, OAuthClientInformationFull | None] | None:
    """Bind a fresh approval code to the live request ``request_id``; ``None`` when there is none.

    The code replaces any earlier one of the request and lives :data:`APPROVAL_TTL_S`
    seconds, never past the request. Returns the code, the request and the client.
    """
    code = new_approval_code()
    now = clock()

    def change(state: OAuthState) -> tuple[PendingRecord, OAuthClientInformationFull | None] | None:
        record = state.pending.get(request_id)
        if record is None or record.dead:
            return None
        expires_at = min(now + APPROVAL_TTL_S, record.expires_at)
        record.approval = ApprovalRecord(digest=approval_digest(code), expires_at=expires_at)
        return record.model_copy(deep=True), state.client

    found = await store.update(change)
    return None if found is None else (code, *found)


class ConsentService:
    """Decides consent forms against the builtin provider's state (see the module docstring)."""

    def __init__(
        self,
        provider: FileOAuthProvider,
        *,
        verifier: PassphraseVerifier | None,
        bucket: TokenBucket | None = None,
    ) -> None:
        """Decide for ``provider``'s requests (and with its clock); ``verifier`` is ``None`` without a passphrase."""
        self._provider = provider
        self._store = provider.store
        self._events = provider.events
        self._verifier = verifier
        self._bucket = bucket or TokenBucket()
        self._clock = provider.clock
        self._limited = False  # inside a rate-limit episode (only its first refusal is audited)

    @property
    def passphrase_enabled(self) -> bool:
        return self._verifier is not None

    def now(self) -> float:
        """The provider's clock."""
        return self._clock()

    def request(self, request_id: str) -> ConsentRequest | None:
        """The live pending request ``request_id`` (closed ones included), else ``None``."""
        if not request_id or len(request_id) > MAX_FIELD_CHARS:
            return None
        state = self._store.read()
        record = state.pending.get(request_id)
        if record is None or record.expires_at <= self._clock():
            return None
        return describe(request_id, record, state.client, self._provider.max_scope)

    async def issue_csrf(self, request_id: str) -> str | None:
        """A fresh CSRF token for the form of a live, open request (its digest is kept), else ``None``."""
        token = secrets.token_urlsafe(32)

        def change(state: OAuthState) -> bool:
            record = state.pending.get(request_id)
            if record is None or record.dead:
                return False
            record.csrf = [*record.csrf, token_digest(token)][-MAX_CSRF_TOKENS:]
            return True

        return token if await self._store.update(change) else None

    async def decide(self, form: ConsentForm) -> ConsentOutcome:
        """Apply one posted form (see the module docstring for the order of the checks)."""
        checked = self._check_form(form)
        if isinstance(checked, ConsentOutcome):
            return checked
        if form.decision == "deny":
            return await self._deny(checked)
        return await self._approve_with_proof(form, checked)

    def _check_form(self, form: ConsentForm) -> ConsentRequest | ConsentOutcome:
        """The request the form is for, or the refusal of a form that cannot be decided."""
        view = self.request(form.request_id)
        if view is None:
            return ConsentOutcome(404, message=UNKNOWN)
        if view.dead:
            return ConsentOutcome(410, message=CLOSED)
        if not self._csrf_ok(form):
            message = "This form has expired or did not come from this page: use the form below."
            return ConsentOutcome(400, message=message, request=view)
        if form.decision not in ("approve", "deny"):
            return ConsentOutcome(400, message="Choose Approve or Deny.", request=view)
        problem = _scope_problem(form.scopes, view) if form.decision == "approve" else None
        if problem is not None:
            return ConsentOutcome(400, message=problem, request=view)
        return view

    async def _approve_with_proof(self, form: ConsentForm, view: ConsentRequest) -> ConsentOutcome:
        """Check the proof of presence (one attempt reserved first), then grant the ticked scopes."""
        method, refusal = self._proof_method(form, view)
        if method is None:
            assert refusal is not None
            return refusal
        record = await self._reserve_attempt(view.request_id)
        if record is None:
            return ConsentOutcome(410, message=CLOSED)
        if not await self._proof_holds(method, form, record):
            return await self._failed(view, method)
        granted = tuple(scope for scope in ALL_SCOPES if scope in form.scopes)
        return await self._approve(view, granted, method)

    def _csrf_ok(self, form: ConsentForm) -> bool:
        if (
            not form.csrf
            or len(form.csrf) > MAX_FIELD_CHARS
            or not hmac.compare_digest(form.csrf.encode(), form.cookie.encode())
        ):
            return False
        record = self._store.read().pending.get(form.request_id)
        return record is not None and token_digest(form.csrf) in record.csrf

    def _proof_method(
        self, form: ConsentForm, view: ConsentRequest
    ) -> tuple[ConsentMethod | None, ConsentOutcome | None]:
        """Which proof the form offers, or the refusal when it offers none that can be checked now."""
        if form.approval_code.strip():
            return "approval_code", None
        if not form.passphrase:
            return None, ConsentOutcome(
                400, message="Enter the operator passphrase or an approval code.", request=view
            )
        if self._verifier is None:
            message = "No operator passphrase is set on this server: use an approval code."
            return None, ConsentOutcome(400, message=message, request=view)
        if not self._bucket.take():
            wait_s = max(1, round(self._bucket.retry_after_s()))
            if not self._limited:
                self._limited = True
                self._record("rate_limited", view, outcome="denied", retry_after_s=wait_s)
            message = (
                f"Too many passphrase attempts on this server. Wait {wait_s} s, or use an approval code."
            )
            return None, ConsentOutcome(429, message=message, request=view)
        self._limited = False
        return "passphrase", None

    async def _reserve_attempt(self, request_id: str) -> PendingRecord | None:
        """Count one proof attempt before checking it; ``None`` when the request is gone or closed."""

        def change(state: OAuthState) -> PendingRecord | None:
            record = state.pending.get(request_id)
            if record is None or record.dead:
                return None
            if record.attempts >= CONSENT_ATTEMPTS:
                record.dead = True
                return None
            record.attempts += 1
            return record.model_copy(deep=True)

        return await self._store.update(change)

    async def _proof_holds(self, method: ConsentMethod, form: ConsentForm, record: PendingRecord) -> bool:
        if method == "approval_code":
            approval = record.approval
            if approval is None or approval.expires_at <= self._clock():
                return False
            return hmac.compare_digest(approval.digest, approval_digest(form.approval_code))
        assert self._verifier is not None
        return await self._verifier.verify(form.passphrase)

    async def _failed(self, view: ConsentRequest, method: ConsentMethod) -> ConsentOutcome:
        """Record a wrong proof; the request closes when it was the last attempt allowed."""

        def change(state: OAuthState) -> PendingRecord | None:
            record = state.pending.get(view.request_id)
            if record is not None and record.attempts >= CONSENT_ATTEMPTS:
                record.dead = True
            return None if record is None else record.model_copy(deep=True)

        record = await self._store.update(change)
        event = "wrong_passphrase" if method == "passphrase" else "wrong_approval_code"
        if record is None:  # expired, or approved in another tab meanwhile
            self._record(event, view, outcome="denied", attempts_left=0)
            return ConsentOutcome(404, message=UNKNOWN)
        attempts_left = max(0, CONSENT_ATTEMPTS - record.attempts)
        self._record(event, view, outcome="denied", attempts_left=attempts_left)
        if record.dead:
            self._record("attempts_exhausted", view, outcome="denied")
            return ConsentOutcome(410, message=CLOSED)
        what = "passphrase" if method == "passphrase" else "approval code"
        message = f"Wrong {what}. {attempts_left} attempt(s) left for this request."
        return ConsentOutcome(403, message=message, request=self.request(view.request_id))

    async def _approve(
        self, view: ConsentRequest, granted: tuple[str, ...], method: ConsentMethod
    ) -> ConsentOutcome:
        """Issue the code for ``granted`` under a new grant and redirect to the client."""
        if not self._events.can_grant():
            message = "The audit trail cannot be written: nothing can be granted until it is repaired."
            return ConsentOutcome(503, message=message, request=self.request(view.request_id))
        code, grant_id, now = secrets.token_urlsafe(TOKEN_BYTES), new_grant_id(), self._clock()

        def change(state: OAuthState) -> PendingRecord | None:
            record = state.pending.get(view.request_id)
            if (
                record is None
                or record.dead
                or state.client is None
                or state.client.client_id != record.client_id
            ):
                return None
            del state.pending[view.request_id]
            state.codes[token_digest(code)] = CodeRecord(
                client_id=record.client_id,
                scopes=list(granted),
                expires_at=now + self._provider.code_ttl,
                code_challenge=record.code_challenge,
                redirect_uri=record.redirect_uri,
                redirect_uri_provided_explicitly=record.redirect_uri_provided_explicitly,
                resource=record.resource,
                subject=grant_id,
                family=grant_id,
            )
            state.grants[grant_id] = GrantRecord(
                client_id=record.client_id, scopes=list(granted), created_at=now, method=method
            )
            return record

        record = await self._store.update(change)
        if record is None:
            return ConsentOutcome(410, message=CLOSED)
        self._record("approved", view, grant=grant_id, granted=list(granted), method=method)
        redirect = construct_redirect_uri(
            record.redirect_uri, code=code, state=record.state, iss=self._provider.issuer
        )
        return ConsentOutcome(303, redirect=redirect)

    async def _deny(self, view: ConsentRequest) -> ConsentOutcome:
        def change(state: OAuthState) -> PendingRecord | None:
            record = state.pending.get(view.request_id)
            if record is None or record.dead:
                return None
            return state.pending.pop(view.request_id)

        record = await self._store.update(change)
        if record is None:
            return ConsentOutcome(410, message=CLOSED)
        self._record("denied", view, outcome="denied")
        redirect = construct_redirect_uri(
            record.redirect_uri,
            error="access_denied",
            error_description="the operator denied this request",
            state=record.state,
            iss=self._provider.issuer,
        )
        return ConsentOutcome(303, redirect=redirect)

    def _record(
        self,
        event: str,
        view: ConsentRequest,
        *,
        outcome: OAuthOutcome = "ok",
        grant: str | None = None,
        **details: object,
    ) -> None:
        self._events.record(
            "oauth_consent",
            event,
            outcome=outcome,
            client_id=view.client_id,
            grant=grant,
            details={
                "request": request_ref(view.request_id),
                "client_name": view.client_name,
                "asked": list(view.asked),
                **details,
            },
        )


def _scope_problem(scopes: tuple[str, ...], view: ConsentRequest) -> str | None:
    """Why the ticked ``scopes`` cannot be granted, or ``None`` when they can."""
    if not scopes:
        return "Tick at least one scope to grant."
    if len(scopes) != len(set(scopes)):
        return "A scope was sent twice."
    extra = [scope for scope in scopes if scope not in view.grantable]
    if extra:
        return f"Not grantable for this request: {' '.join(extra)[:MAX_FIELD_CHARS]}."
    return None
