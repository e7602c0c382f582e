"""File-backed OAuth 2.1 authorization server for one operator (docs/adr/0005-oauth-builtin.md, builtin mode).

:class:`FileOAuthProvider` implements the SDK's ``OAuthAuthorizationServerProvider``; the
HTTP app mounts it with ``create_auth_routes`` (``/register``, ``/authorize``, ``/token``,
``/revoke`` and the RFC 8414 metadata), using :func:`client_registration_options` and
:func:`revocation_options`, and verifies bearer tokens with ``ProviderTokenVerifier``.

Trust model. relay-shell has no login page and no user database: it serves one operator
who owns the host. Its authorization server therefore does not ask anyone anything:

- Dynamic client registration is open until the FIRST client registers, then closed: any
  further registration (another client, or the same ``client_id`` with other redirect URIs)
  is refused. The operator registers their own MCP client right after starting the server
  (the HTTP transport is loopback-only by default and, behind the edge, CIDR-restricted);
  if their client is refused, someone registered first, which the log and ``state.json``
  show, and the operator resets by stopping the server and deleting ``state.json``.
- ``/authorize`` for that single client is pre-approved by the operator's act of
  registering it: the code is redirected immediately. It can only travel to a redirect URI
  registered by that client (https, loopback http, or a native app's private-use scheme),
  and it is worthless without the PKCE verifier the requester holds, so a third party who
  starts an authorization gets nothing it can use.
- Scopes: the requested ones, which must all be relay-shell scopes (else ``invalid_scope``);
  none requested grants ``relay-shell:operate``. Scopes cap tiers on top of the policy mode,
  which stays the operator's real control in builtin mode.

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
"""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    AuthorizeError,
    OAuthAuthorizationServerProvider,
    RefreshToken,
    RegistrationError,
    TokenError,
    construct_redirect_uri,
)
from mcp.server.auth.settings import ClientRegistrationOptions, RevocationOptions
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from pydantic import AnyHttpUrl, AnyUrl, ConfigDict, TypeAdapter, ValidationError

from relay_shell.errors import ConfigError
from relay_shell.http.oauth_state import (
    CodeRecord,
    OAuthState,
    OAuthStateUnavailable,
    SpentRecord,
    StateStore,
    TokenRecord,
    check_state_dir,
    token_digest,
)
from relay_shell.http.scopes import ALL_SCOPES, SCOPE_OPERATE

__all__ = [
    "FileOAuthProvider",
    "OAuthStateUnavailable",
    "check_state_dir",
    "client_registration_options",
    "revocation_options",
]

logger = logging.getLogger(__name__)

OPERATOR_SUBJECT = "operator"
"""The resource owner of every builtin token: the one operator who runs the server."""
DEFAULT_SCOPES: tuple[str, ...] = (SCOPE_OPERATE,)
TOKEN_BYTES = 32
# An S256 challenge is the unpadded base64url of a SHA-256 digest: exactly 43 characters.
S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
_ISSUER_URL = TypeAdapter(AnyHttpUrl, config=ConfigDict(url_preserve_empty_path=True))


def client_registration_options() -> ClientRegistrationOptions:
    """Registration enabled; a client may be registered for any relay-shell scope."""
    return ClientRegistrationOptions(
        enabled=True, valid_scopes=list(ALL_SCOPES), default_scopes=list(ALL_SCOPES)
    )


def revocation_options() -> RevocationOptions:
    """The RFC 7009 revocation endpoint enabled."""
    return RevocationOptions(enabled=True)


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def redirect_uri_problem(uri: AnyUrl) -> str | None:
    """Why ``uri`` is not an acceptable OAuth 2.1 redirect URI, or ``None`` when it is."""
    if uri.fragment is not None:
        return f"redirect URI {uri} must not contain a fragment"
    if uri.scheme == "https":
        return None
    if uri.scheme == "http":
        return (
            None if _is_loopback(uri.host) else f"redirect URI {uri}: plain http is allowed on loopback only"
        )
    if "." in uri.scheme:  # RFC 8252 §7.1 private-use scheme (reverse domain name)
        return None
    return f"redirect URI {uri}: scheme {uri.scheme!r} is not allowed"


def granted_scopes(requested: list[str] | None) -> list[str]:
    """The scopes to grant for an authorization request (see the module docstring).

    Raises:
        AuthorizeError: ``invalid_scope`` when a requested scope is not a relay-shell scope.
    """
    wanted = [scope for scope in requested or [] if scope]
    unknown = sorted(set(wanted) - set(ALL_SCOPES))
    if unknown:
        raise AuthorizeError("invalid_scope", f"unknown scope(s): {' '.join(unknown)}")
    if not wanted:
        return list(DEFAULT_SCOPES)
    return [scope for scope in ALL_SCOPES if scope in wanted]


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
    ) -> None:
        """Open (creating 0700 if missing) the state in ``state_dir``.

        ``issuer`` is this server's public base URL (sent as RFC 9207 ``iss``); tokens are
        bound to ``resource_url``, by default ``issuer`` + ``/mcp``.

        Raises:
            ConfigError: the directory is group/world accessible, unusable, or its state
                file is corrupt; or ``issuer`` is not an http(s) URL.
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
        self._store = StateStore(state_dir, clock=clock)

    @property
    def issuer(self) -> str:
        return self._issuer

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
        """Issue a code at once (the operator pre-approved their client) and redirect to it.

        Raises:
            AuthorizeError: not an S256 challenge, a scope outside relay-shell's, or a
                ``resource`` other than this server's.
        """
        if not S256_CHALLENGE.fullmatch(params.code_challenge):
            raise AuthorizeError("invalid_request", "code_challenge must be an S256 PKCE challenge")
        scopes = granted_scopes(params.scopes)
        if params.resource is not None and params.resource.rstrip("/") != self._resource_url.rstrip("/"):
            raise AuthorizeError("invalid_target", f"this server only issues tokens for {self._resource_url}")
        code = secrets.token_urlsafe(TOKEN_BYTES)
        record = CodeRecord(
            client_id=client.client_id,
            scopes=scopes,
            expires_at=self._clock() + self._code_ttl,
            code_challenge=params.code_challenge,
            redirect_uri=str(params.redirect_uri),
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            resource=self._resource_url,
            subject=OPERATOR_SUBJECT,
            family=secrets.token_hex(16),
        )

        def change(state: OAuthState) -> bool:
            if state.client is None or state.client.client_id != client.client_id:
                return False
            state.codes[token_digest(code)] = record
            return True

        if not await self._store.update(change):
            raise AuthorizeError("unauthorized_client", "client is not registered")
        return construct_redirect_uri(
            str(params.redirect_uri), code=code, state=params.state, iss=self._issuer
        )

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> AuthorizationCode | None:
        """The live code for this client, else ``None`` (a replayed code revokes its family)."""
        digest = token_digest(authorization_code)

        def change(state: OAuthState) -> CodeRecord | None:
            return _live_record(state, state.codes, digest, client.client_id)

        record = await self._store.update(change)
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

        def change(state: OAuthState) -> OAuthToken | TokenError:
            record = _live_record(state, state.codes, digest, client.client_id)
            if record is None:
                return TokenError("invalid_grant", "authorization code is invalid, expired or already used")
            del state.codes[digest]
            state.spent[digest] = SpentRecord(family=record.family, expires_at=record.expires_at)
            return self._issue_pair(state, record, access_scopes=record.scopes)

        return _token_or_raise(await self._store.update(change))

    # -- refresh tokens --------------------------------------------------------------------

    async def load_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: str
    ) -> RefreshToken | None:
        """The live refresh token for this client, else ``None`` (a replayed one revokes its family)."""
        digest = token_digest(refresh_token)

        def change(state: OAuthState) -> TokenRecord | None:
            return _live_record(state, state.refresh, digest, client.client_id)

        record = await self._store.update(change)
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

        def change(state: OAuthState) -> OAuthToken | TokenError:
            record = _live_record(state, state.refresh, digest, client.client_id)
            if record is None:
                return TokenError("invalid_grant", "refresh token is invalid, expired or already used")
            if not set(scopes) <= set(record.scopes):
                return TokenError("invalid_scope", "requested scopes exceed the original grant")
            del state.refresh[digest]
            state.access.pop(record.partner, None)
            state.spent[digest] = SpentRecord(family=record.family, expires_at=record.expires_at)
            return self._issue_pair(state, record, access_scopes=scopes or record.scopes)

        return _token_or_raise(await self._store.update(change))

    # -- access tokens and revocation ------------------------------------------------------

    async def load_access_token(self, token: str) -> AccessToken | None:
        """The live access token, else ``None``; a refresh token or code is never one."""
        state = self._store.read()
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

    async def revoke_token(self, token: AccessToken | RefreshToken) -> None:
        """Revoke the access + refresh pair ``token`` belongs to; unknown tokens are ignored."""
        digest = token_digest(token.token)

        def change(state: OAuthState) -> None:
            record = state.access.get(digest) or state.refresh.get(digest)
            if record is not None:
                state.revoke_family(record.family)

        await self._store.update(change)

    # -- internals -------------------------------------------------------------------------

    def _issue_pair(
        self, state: OAuthState, grant: CodeRecord | TokenRecord, *, access_scopes: list[str]
    ) -> OAuthToken:
        """Mint an access + refresh pair for ``grant``'s family; only their digests are stored."""
        now = self._clock()
        access_token = secrets.token_urlsafe(TOKEN_BYTES)
        refresh_token = secrets.token_urlsafe(TOKEN_BYTES)
        access_digest, refresh_digest = token_digest(access_token), token_digest(refresh_token)
        state.access[access_digest] = grant_token(
            grant, scopes=access_scopes, expires_at=now + self._access_ttl, partner=refresh_digest
        )
        state.refresh[refresh_digest] = grant_token(
            grant, scopes=grant.scopes, expires_at=now + self._refresh_ttl, partner=access_digest
        )
        return OAuthToken(
            access_token=access_token,
            expires_in=self._access_ttl,
            scope=" ".join(access_scopes),
            refresh_token=refresh_token,
        )


def grant_token(
    grant: CodeRecord | TokenRecord, *, scopes: list[str], expires_at: float, partner: str
) -> TokenRecord:
    """A token record of ``grant``'s client, resource, subject and family."""
    return TokenRecord(
        client_id=grant.client_id,
        scopes=scopes,
        expires_at=expires_at,
        resource=grant.resource,
        subject=grant.subject,
        family=grant.family,
        partner=partner,
    )


def _live_record[Record: CodeRecord | TokenRecord](
    state: OAuthState, table: dict[str, Record], digest: str, client_id: str
) -> Record | None:
    """The record stored in ``table`` under ``digest`` if it is ``client_id``'s, else ``None``.

    ``StateStore.update`` has already pruned expired entries, so an expired secret is simply
    absent. An absent one is handed to :meth:`OAuthState.replayed`, which revokes the family
    of a spent code or rotated refresh token presented again.
    """
    record = table.get(digest)
    if record is None:
        state.replayed(digest)
        return None
    return record if record.client_id == client_id else None


def _token_or_raise(outcome: OAuthToken | TokenError) -> OAuthToken:
    if isinstance(outcome, TokenError):
        raise outcome
    return outcome
