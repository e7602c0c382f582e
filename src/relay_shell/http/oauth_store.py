"""File-backed OAuth 2.1 authorization server for one operator (builtin mode).

:class:`FileOAuthProvider` implements the SDK's ``OAuthAuthorizationServerProvider``; the
HTTP app mounts it with ``create_auth_routes`` (``/register``, ``/authorize``, ``/token``
and the RFC 8414 metadata; ``/revoke`` is :mod:`relay_shell.http.revoke`) and verifies
bearer tokens with ``ProviderTokenVerifier``. Stateless rules (redirect URIs, scopes,
PKCE) are in :mod:`relay_shell.http.oauth_rules`.

Who may authorize. relay-shell has no user database: it serves one operator who owns the
host, and every grant needs that operator's consent.

- Dynamic client registration is open until the FIRST client registers, then closed (for
  another client, and for the same ``client_id`` with other redirect URIs); the operator
  resets by stopping the server and deleting ``state.json``.
- ``/authorize`` issues no code. It records a *pending request* (client, redirect URI,
  scopes asked, PKCE challenge, state) under a random id and redirects the browser to the
  consent page, ``/consent?request=ID`` (:mod:`relay_shell.http.consent`). A code exists only
  once the operator has proved presence there, and carries only the scopes they ticked. The
  client id is public (``audit_tail`` shows it) and PKCE proves only who started a flow, so
  holding either is worth nothing without the operator.
- When none of the scopes asked is within ``RELAY_SHELL_AUTH_MAX_SCOPE``, the request is
  refused with ``invalid_scope`` at once.
- Each consent is a *grant* with its own id (``g-`` + 16 hex digits): the subject of every
  token issued from it, so each grant is a principal of its own. Operators list and revoke
  grants with ``relay-shell --list-grants`` / ``--revoke-grant``.

Token hygiene. Codes and tokens are 256-bit random values handed out once and stored only
as SHA-256 digests, so a copy of the state directory grants nothing. (The client secret of
a confidential client is kept as issued: the SDK's client authenticator compares it in
plain, and on its own it grants nothing without a code or refresh token.) Codes are
single-use and live ``code_ttl`` seconds; access tokens ``access_ttl``; refresh tokens
``refresh_ttl`` from their issue and are rotated on every use, the old access + refresh
pair revoked. Every code, access and refresh token of one authorization shares a
*family*; presenting a spent code or refresh token again is treated as theft (RFC 9700
§4.14) and revokes the family. Expiry is checked lazily on every use with an injectable
clock. An access token and a refresh token live in separate tables, so neither is ever
accepted as the other.

Storage (:mod:`relay_shell.http.oauth_state`): one JSON file in a 0700 directory (refused
at start when group/world accessible), changed only by atomic, locked read-modify-writes,
so a code or a refresh token cannot be spent twice, even concurrently. Tables are bounded.
A state file from before consent existed is upgraded at start: its tokens are revoked.

Events (:mod:`relay_shell.http.oauth_events`): tokens issued and refreshed are audited as
``oauth_token``, revocations (by the client, by replay detection, by the upgrade) as
``oauth_revoke``.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    AuthorizeError,
    OAuthAuthorizationServerProvider,
    RefreshToken,
    RegistrationError,
    TokenError,
)
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from pydantic import AnyHttpUrl, AnyUrl, ConfigDict, TypeAdapter, ValidationError

from relay_shell.errors import ConfigError
from relay_shell.http.oauth_dir import check_state_dir
from relay_shell.http.oauth_events import OAuthAudit
from relay_shell.http.oauth_rules import (
    S256_CHALLENGE,
    asked_scopes,
    client_registration_options,
    redirect_uri_problem,
    revocation_options,
)
from relay_shell.http.oauth_state import (
    CodeRecord,
    OAuthState,
    OAuthStateUnavailable,
    PendingRecord,
    SpentRecord,
    StateStore,
    TokenRecord,
    token_digest,
)
from relay_shell.http.scopes import ALL_SCOPES, SCOPE_ADMIN, grantable_scopes

__all__ = [
    "FileOAuthProvider",
    "OAuthStateUnavailable",
    "check_state_dir",
    "client_registration_options",
    "revocation_options",
]

logger = logging.getLogger(__name__)

CONSENT_PATH = "/consent"
TOKEN_BYTES = 32
REQUEST_ID_BYTES = 24
_ISSUER_URL = TypeAdapter(AnyHttpUrl, config=ConfigDict(url_preserve_empty_path=True))


class FileOAuthProvider(OAuthAuthorizationServerProvider[AuthorizationCode, RefreshToken, AccessToken]):
    """The builtin authorization server's store (see the module docstring for the rules)."""

    def __init__(
        self,
        state_dir: Path,
        *,
        issuer: str,
        access_ttl: int,
        refresh_ttl: int,
        code_ttl: int,
        clock: Callable[[], float] = time.time,
        resource_url: str | None = None,
        max_scope: str = SCOPE_ADMIN,
        events: OAuthAudit | None = None,
    ) -> None:
        """Open (creating 0700 if missing, upgrading an older format) the state in ``state_dir``.

        ``issuer`` is this server's public base URL (sent as RFC 9207 ``iss``); tokens are
        bound to ``resource_url``, by default ``issuer`` + ``/mcp``. ``max_scope`` is the
        widest scope a consent may grant; ``events`` receives the audit records.

        Raises:
            ConfigError: the directory is group/world accessible, unusable, or its state
                file is corrupt or newer; or ``issuer`` is not an http(s) URL.
        """
        try:
            self._issuer = str(_ISSUER_URL.validate_python(issuer))
        except ValidationError as exc:
            raise ConfigError(f"OAuth issuer {issuer!r} is not an http(s) URL") from exc
        self._resource_url = resource_url or issuer.rstrip("/") + "/mcp"
        self._access_ttl = access_ttl
        self._refresh_ttl = refresh_ttl
        self._code_ttl = code_ttl
        self._clock = clock
        self._max_scope = max_scope
        self.events = events or OAuthAudit(None)
        self._store = StateStore(state_dir, clock=clock)
        try:
            revoked = self._store.upgrade()
        except OAuthStateUnavailable as exc:
            raise ConfigError(exc.message) from exc
        for family in revoked:
            logger.warning("OAuth grant %s was issued without consent: revoked by the upgrade", family)
            self.events.record(
                "oauth_revoke", "upgrade", grant=family, details={"reason": "issued before consent"}
            )

    @property
    def issuer(self) -> str:
        return self._issuer

    @property
    def store(self) -> StateStore:
        """The state file (the consent page and the admin commands work on it too)."""
        return self._store

    @property
    def code_ttl(self) -> int:
        return self._code_ttl

    @property
    def clock(self) -> Callable[[], float]:
        """The clock every expiry of this provider is measured with."""
        return self._clock

    @property
    def max_scope(self) -> str:
        return self._max_scope

    @property
    def resource_url(self) -> str:
        return self._resource_url

    # -- clients ---------------------------------------------------------------------------

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        """The registered client when ``client_id`` is its id, else ``None``."""
        client = self._store.read().client
        return client if client is not None and client.client_id == client_id else None

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        """Record the one client; refuse every registration after it.

        Raises:
            RegistrationError: a client is already registered (``invalid_redirect_uri`` when
                it is the same id with other redirect URIs), a redirect URI is not allowed,
                or a scope is not a relay-shell scope.
        """
        for uri in client_info.redirect_uris or []:
            problem = redirect_uri_problem(uri)
            if problem is not None:
                raise RegistrationError("invalid_redirect_uri", problem)
        unknown = sorted(set((client_info.scope or "").split()) - set(ALL_SCOPES))
        if unknown:
            raise RegistrationError("invalid_client_metadata", f"unknown scope(s): {' '.join(unknown)}")

        def change(state: OAuthState) -> RegistrationError | None:
            existing = state.client
            if existing is None:
                state.client = client_info
                return None
            if (
                existing.client_id == client_info.client_id
                and existing.redirect_uris != client_info.redirect_uris
            ):
                return RegistrationError(
                    "invalid_redirect_uri",
                    "this client is already registered; its redirect URIs cannot change",
                )
            return RegistrationError(
                "invalid_client_metadata",
                "registration is closed: this server already has its single client (the operator resets it)",
            )

        refusal = await self._store.update(change)
        if refusal is not None:
            logger.warning("OAuth client registration refused: %s", refusal.error_description)
            raise refusal
        logger.info(
            "OAuth client registered: %s (%s)", client_info.client_id, client_info.client_name or "unnamed"
        )

    # -- authorization codes ---------------------------------------------------------------

    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        """Record a pending request and send the browser to the consent page; no code yet.

        Raises:
            AuthorizeError: not an S256 challenge, a scope outside relay-shell's, no scope
                within the server's maximum, or a ``resource`` other than this server's.
        """
        if not S256_CHALLENGE.fullmatch(params.code_challenge):
            raise AuthorizeError("invalid_request", "code_challenge must be an S256 PKCE challenge")
        scopes = asked_scopes(params.scopes)
        if not grantable_scopes(scopes, self._max_scope):
            raise AuthorizeError("invalid_scope", f"this server grants at most {self._max_scope}")
        if params.resource is not None and params.resource.rstrip("/") != self._resource_url.rstrip("/"):
            raise AuthorizeError("invalid_target", f"this server only issues tokens for {self._resource_url}")
        request_id = secrets.token_urlsafe(REQUEST_ID_BYTES)
        now = self._clock()
        record = PendingRecord(
            client_id=client.client_id,
            redirect_uri=str(params.redirect_uri),
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            scopes=scopes,
            code_challenge=params.code_challenge,
            state=params.state,
            resource=self._resource_url,
            created_at=now,
            expires_at=now + self._code_ttl,
        )

        def change(state: OAuthState) -> bool:
            if state.client is None or state.client.client_id != client.client_id:
                return False
            state.pending[request_id] = record
            return True

        if not await self._store.update(change):
            raise AuthorizeError("unauthorized_client", "client is not registered")
        return f"{self._issuer.rstrip('/')}{CONSENT_PATH}?{urlencode({'request': request_id})}"

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> AuthorizationCode | None:
        """The live code for this client, else ``None`` (a replayed code revokes its family)."""
        digest = token_digest(authorization_code)
        replays: list[str] = []

        def change(state: OAuthState) -> CodeRecord | None:
            return state.live_record(state.codes, digest, client.client_id, replays)

        record = await self._store.update(change)
        self._record_replays(replays, client.client_id)
        if record is None:
            return None
        return AuthorizationCode(
            code=authorization_code,
            scopes=record.scopes,
            expires_at=record.expires_at,
            client_id=record.client_id,
            code_challenge=record.code_challenge,
            redirect_uri=AnyUrl(record.redirect_uri),
            redirect_uri_provided_explicitly=record.redirect_uri_provided_explicitly,
            resource=record.resource,
            subject=record.subject,
        )

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: AuthorizationCode
    ) -> OAuthToken:
        """Spend the code (exactly once, even concurrently) for an access + refresh pair.

        Raises:
            TokenError: ``invalid_grant`` when the code is unknown, spent, expired or not this client's.
        """
        digest = token_digest(authorization_code.code)
        replays: list[str] = []
        issued: list[CodeRecord] = []

        def change(state: OAuthState) -> OAuthToken | TokenError:
            record = state.live_record(state.codes, digest, client.client_id, replays)
            if record is None:
                return TokenError("invalid_grant", "authorization code is invalid, expired or already used")
            del state.codes[digest]
            state.spent[digest] = SpentRecord(family=record.family, expires_at=record.expires_at)
            issued.append(record)
            return self._issue_pair(state, record, access_scopes=record.scopes)

        token = _token_or_raise(await self._store.update(change))
        self._record_replays(replays, client.client_id)
        for record in issued:
            self.events.record(
                "oauth_token",
                "issued",
                client_id=record.client_id,
                grant=record.family,
                details={"scopes": record.scopes},
            )
        return token

    # -- refresh tokens --------------------------------------------------------------------

    async def load_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: str
    ) -> RefreshToken | None:
        """The live refresh token for this client, else ``None`` (a replayed one revokes its family)."""
        digest = token_digest(refresh_token)
        replays: list[str] = []

        def change(state: OAuthState) -> TokenRecord | None:
            return state.live_record(state.refresh, digest, client.client_id, replays)

        record = await self._store.update(change)
        self._record_replays(replays, client.client_id)
        if record is None:
            return None
        return RefreshToken(
            token=refresh_token,
            client_id=record.client_id,
            scopes=record.scopes,
            expires_at=int(record.expires_at),
            resource=record.resource,
            subject=record.subject,
        )

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: RefreshToken, scopes: list[str]
    ) -> OAuthToken:
        """Rotate: revoke the presented refresh token and its access token, issue a new pair.

        The new access token carries ``scopes`` (a subset of the grant); the new refresh
        token keeps the whole grant.

        Raises:
            TokenError: ``invalid_grant`` when the token is unknown, already rotated, expired
                or not this client's; ``invalid_scope`` when ``scopes`` exceed the grant.
        """
        digest = token_digest(refresh_token.token)
        replays: list[str] = []
        rotated: list[tuple[TokenRecord, list[str]]] = []

        def change(state: OAuthState) -> OAuthToken | TokenError:
            record = state.live_record(state.refresh, digest, client.client_id, replays)
            if record is None:
                return TokenError("invalid_grant", "refresh token is invalid, expired or already used")
            if not set(scopes) <= set(record.scopes):
                return TokenError("invalid_scope", "requested scopes exceed the original grant")
            del state.refresh[digest]
            state.access.pop(record.partner, None)
            state.spent[digest] = SpentRecord(family=record.family, expires_at=record.expires_at)
            rotated.append((record, scopes or record.scopes))
            return self._issue_pair(state, record, access_scopes=scopes or record.scopes)

        token = _token_or_raise(await self._store.update(change))
        self._record_replays(replays, client.client_id)
        for record, access_scopes in rotated:
            self.events.record(
                "oauth_token",
                "refreshed",
                client_id=record.client_id,
                grant=record.family,
                details={"scopes": access_scopes},
            )
        return token

    # -- access tokens and revocation ------------------------------------------------------

    async def load_access_token(self, token: str) -> AccessToken | None:
        """The live access token, else ``None``; a refresh token or code is never one.

        Runs for every request; the state file is parsed again only when it changed
        (:meth:`StateStore.snapshot`), the token's digest, expiry and client are checked each time.
        """
        state = self._store.snapshot()
        record = state.access.get(token_digest(token))
        if record is None or record.expires_at <= self._clock():
            return None
        if state.client is None or state.client.client_id != record.client_id:
            return None
        return AccessToken(
            token=token,
            client_id=record.client_id,
            scopes=record.scopes,
            expires_at=int(record.expires_at),
            resource=record.resource,
            subject=record.subject,
            claims={"iss": self._issuer},
        )

    async def revoke_token(self, token: AccessToken | RefreshToken, *, via: str = "revoke_endpoint") -> None:
        """Revoke the grant ``token`` belongs to (every code and token of it); unknown tokens are ignored."""
        digest = token_digest(token.token)

        def change(state: OAuthState) -> TokenRecord | None:
            record = state.access.get(digest) or state.refresh.get(digest)
            if record is not None:
                state.revoke_family(record.family, via=via)
            return record

        record = await self._store.update(change)
        if record is not None:
            self.events.record(
                "oauth_revoke",
                "revoked",
                client_id=record.client_id,
                grant=record.family,
                details={"via": via},
            )

    def _record_replays(self, families: list[str], client_id: str) -> None:
        for family in families:
            self.events.record(
                "oauth_revoke",
                "replay",
                client_id=client_id,
                grant=family,
                details={"reason": "a spent code or refresh token was presented again"},
            )

    # -- internals -------------------------------------------------------------------------

    def _issue_pair(
        self, state: OAuthState, grant: CodeRecord | TokenRecord, *, access_scopes: list[str]
    ) -> OAuthToken:
        """Mint an access + refresh pair for ``grant``'s family; only their digests are stored."""
        now = self._clock()
        access_token = secrets.token_urlsafe(TOKEN_BYTES)
        refresh_token = secrets.token_urlsafe(TOKEN_BYTES)
        access_digest, refresh_digest = token_digest(access_token), token_digest(refresh_token)
        state.access[access_digest] = TokenRecord.for_grant(
            grant, scopes=access_scopes, expires_at=now + self._access_ttl, partner=refresh_digest
        )
        state.refresh[refresh_digest] = TokenRecord.for_grant(
            grant, scopes=grant.scopes, expires_at=now + self._refresh_ttl, partner=access_digest
        )
        return OAuthToken(
            access_token=access_token,
            expires_in=self._access_ttl,
            scope=" ".join(access_scopes),
            refresh_token=refresh_token,
        )


def _token_or_raise(outcome: OAuthToken | TokenError) -> OAuthToken:
    if isinstance(outcome, TokenError):
        raise outcome
    return outcome
