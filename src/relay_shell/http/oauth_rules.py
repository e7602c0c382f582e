"""The rules of the builtin OAuth server that need no state: clients, redirect URIs, scopes, PKCE.

- Registration is enabled for any relay-shell scope (:func:`client_registration_options`);
  the RFC 7009 revocation endpoint is on (:func:`revocation_options`).
- A redirect URI must be https, plain http on a loopback host, or an RFC 8252 private-use
  scheme (reverse domain name), and never carry a fragment (:func:`redirect_uri_problem`).
- Scopes asked must all be relay-shell scopes; asking none means ``relay-shell:operate``
  (:func:`asked_scopes`): admin power must be asked for by name.
- A PKCE challenge must look like an S256 digest (:data:`S256_CHALLENGE`), so a client that
  sends its plain verifier as the "challenge" gets no code.
"""

from __future__ import annotations

import ipaddress
import re

from mcp.server.auth.provider import AuthorizeError
from mcp.server.auth.settings import ClientRegistrationOptions, RevocationOptions
from pydantic import AnyUrl

from relay_shell.http.scopes import ALL_SCOPES, SCOPE_OPERATE

DEFAULT_SCOPES: tuple[str, ...] = (SCOPE_OPERATE,)
# An S256 challenge is the unpadded base64url of a SHA-256 digest: exactly 43 characters.
S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")


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


def asked_scopes(requested: list[str] | None) -> list[str]:
    """The scopes an authorization request asks for, narrowest first (see the module docstring).

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
