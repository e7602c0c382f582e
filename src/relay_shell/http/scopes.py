"""OAuth scopes and the principal behind an HTTP request (docs/adr/0005-oauth-builtin.md).

A token's scopes cap the policy tier a call may reach, on top of the policy mode:

    scope                  highest tier allowed
    relay-shell:read       0  (read-only diagnostics)
    relay-shell:operate    2  (everything but tier 3)
    relay-shell:admin      3  (all tiers)
    none of the above     -1  (nothing: every call is refused)

When a token carries several, the highest wins. Unknown scope strings are ignored.

:func:`current_principal` reads the principal the SDK's bearer middleware stored for the
current request (``mcp.server.auth.middleware.auth_context``); it is ``None`` when the
request was not authenticated (stdio, or HTTP with auth disabled). The SDK's
``AccessToken`` carries ``subject`` (the JWT ``sub``, or the builtin server's operator)
next to ``client_id``, so the principal needs no side channel.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mcp.server.auth.middleware.auth_context import get_access_token

SCOPE_READ = "relay-shell:read"
SCOPE_OPERATE = "relay-shell:operate"
SCOPE_ADMIN = "relay-shell:admin"
ALL_SCOPES: tuple[str, ...] = (SCOPE_READ, SCOPE_OPERATE, SCOPE_ADMIN)

NO_TIER = -1
"""The ceiling of a token with none of our scopes: no tier, so no call is allowed."""

SCOPE_TIERS: dict[str, int] = {SCOPE_READ: 0, SCOPE_OPERATE: 2, SCOPE_ADMIN: 3}


def tier_ceiling(scopes: Iterable[str]) -> int:
    """The highest policy tier ``scopes`` allow: 0, 2 or 3, or :data:`NO_TIER` (-1) for none."""
    return max((SCOPE_TIERS[scope] for scope in scopes if scope in SCOPE_TIERS), default=NO_TIER)


@dataclass(frozen=True)
class Principal:
    """Who is calling over authenticated HTTP: recorded in audit and used as a tier cap."""

    subject: str | None
    client_id: str | None
    scopes: tuple[str, ...]

    @property
    def max_tier(self) -> int:
        """The highest tier this principal's scopes allow (see :func:`tier_ceiling`)."""
        return tier_ceiling(self.scopes)


def current_principal() -> Principal | None:
    """The authenticated principal of the current request, or ``None`` without authentication."""
    token = get_access_token()
    if token is None:
        return None
    return Principal(
        subject=token.subject or None, client_id=token.client_id or None, scopes=tuple(token.scopes)
    )
