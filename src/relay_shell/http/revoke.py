"""RFC 7009 token revocation that public clients can use.

The SDK's revocation handler requires a ``client_secret`` form field even from a client
registered with ``token_endpoint_auth_method: none``, so a public client (every MCP client
that registers dynamically) could not revoke its own tokens. This endpoint replaces it at
``/revoke``:

- ``client_id`` names the client; a public client is identified by it alone (holding the
  token is the proof, as RFC 7009 §2.1 allows), a confidential client must authenticate
  exactly as at ``/token`` (the SDK's ``ClientAuthenticator``);
- the token is looked up as an access token, then as a refresh token (in the other order
  with ``token_type_hint=refresh_token``); one of this client's is revoked with its whole
  grant (:meth:`FileOAuthProvider.revoke_token`);
- an unknown token, or another client's, is answered 200 like a revoked one (RFC 7009 §2.2),
  so the endpoint tells nobody whether a token exists.
"""

from __future__ import annotations

from mcp.server.auth.middleware.client_auth import AuthenticationError, ClientAuthenticator
from mcp.server.auth.provider import AccessToken, RefreshToken
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from relay_shell.http.oauth_store import FileOAuthProvider

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _error(status: int, error: str, description: str) -> Response:
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=NO_STORE
    )


class RevocationEndpoint:
    """The ``/revoke`` handler over the builtin provider (see the module docstring)."""

    def __init__(self, provider: FileOAuthProvider) -> None:
        self._provider = provider
        self._authenticator = ClientAuthenticator(provider)

    async def handle(self, request: Request) -> Response:
        """Revoke the posted token if it is this client's; 200 whether or not it was found."""
        form = await request.form()
        token, client_id, hint = form.get("token"), form.get("client_id"), form.get("token_type_hint")
        if not isinstance(token, str) or not token:
            return _error(400, "invalid_request", "token is required")
        if not isinstance(client_id, str) or not client_id:
            return _error(401, "invalid_client", "client_id is required")
        client = await self._provider.get_client(client_id)
        if client is None:
            return _error(401, "invalid_client", "unknown client")
        if client.token_endpoint_auth_method != "none":
            try:
                client = await self._authenticator.authenticate_request(request)
            except AuthenticationError as exc:
                return _error(401, "invalid_client", exc.message)
        found = await self._find(token, client_id, refresh_first=hint == "refresh_token")
        if found is not None and found.client_id == client.client_id:
            await self._provider.revoke_token(found, via="revoke_endpoint")
        return Response(status_code=200, headers=NO_STORE)

    async def _find(
        self, token: str, client_id: str, *, refresh_first: bool
    ) -> AccessToken | RefreshToken | None:
        client = await self._provider.get_client(client_id)
        if client is None:
            return None
        as_access = await self._provider.load_access_token(token)
        if as_access is not None and not refresh_first:
            return as_access
        as_refresh = await self._provider.load_refresh_token(client, token)
        return as_refresh or as_access
